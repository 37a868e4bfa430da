// redis.wait_replicas with the real binary, a primary and a replica. Invariants: Kafka offsets
// are committed only for trades the replica has (WAIT); while the replica is stopped the
// trades still reach the primary, offsets stay where they were and the wait timeouts are
// counted; once it is back, the commits catch up; and after the primary is SIGKILLed right
// after a commit, the promoted replica holds exactly the independent computation.
#include "stack.h"

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

bool ReplicaInSync(kt::RedisServer& replica) {
  kt::RedisClient rc = replica.Connect();
  kt::RedisReplyPtr r = rc.Command({"INFO", "replication"});
  return std::string(r->str, r->len).find("master_link_status:up") != std::string::npos;
}

}  // namespace

TEST_CASE("durable commits: offsets wait for the replica; a SIGKILLed primary loses nothing") {
  Stack stack(false, "", "  wait_replicas: 1\n  wait_timeout_ms: 200\n");
  kt::RedisServer replica(kt::RedisOptions{
      .appendonly = false,
      .extra_config = {"replicaof 127.0.0.1 " + std::to_string(stack.redis.port())}});
  REQUIRE(WaitUntil([&] { return ReplicaInSync(replica); }, seconds(20)));

  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"};
  std::vector<RefTrade> trades = MakeTrades(symbols, 60, 7);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  REQUIRE_MESSAGE(WaitUntil([&] { return stack.AllCommitted(); }, seconds(30)),
                  klined->OutputTail());
  const int64_t committed_before = stack.CommittedTotal().first;

  // The replica stops acknowledging: new trades reach the primary, their offsets must not
  // be committed.
  replica.process().Pause();
  std::vector<RefTrade> more;
  const int64_t t0 = NowMs() - 500;
  for (const std::string& sym : symbols) {
    for (int i = 1; i <= 10; ++i) {
      more.push_back(RefTrade{sym, 1060 + i, t0 + i, 20000 + i, 1 + i, i % 2 == 0});
    }
  }
  Produce(&producer, more);
  trades.insert(trades.end(), more.begin(), more.end());
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  std::this_thread::sleep_for(milliseconds(1500));  // several flush intervals and wait timeouts
  CHECK(stack.CommittedTotal().first == committed_before);
  CHECK(MetricValue(stack.Metrics(), "klined_redis_replica_wait_timeouts_total") >= 1);

  // Back: the wait succeeds and the commits catch up.
  replica.process().Resume();
  REQUIRE_MESSAGE(WaitUntil([&] { return stack.AllCommitted(); }, seconds(30)),
                  klined->OutputTail());
  CHECK(stack.CommittedTotal().first > committed_before);

  // The primary dies right after the commit; the replica is promoted and has everything.
  stack.redis.process().Kill();
  stack.redis.process().Wait(milliseconds(5000));
  replica.Connect().Command({"REPLICAOF", "NO", "ONE"});
  stack.CheckCandles(trades, symbols, &replica);
  klined->Kill();
}
