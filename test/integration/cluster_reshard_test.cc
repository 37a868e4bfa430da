// The real klined binary on a Redis Cluster of three primaries and three replicas while the
// slots of its busiest symbols move to other primaries under load, keys a few at a time (as
// `redis-cli --cluster reshard` does): a symbol's keys sit on two nodes for a while, so its
// calls meet ASK, TRYAGAIN and, after each move, MOVED. Invariant: nothing is lost or counted
// twice: Redis and MySQL equal the independent computation afterwards, and every move
// completes (a call served on the importing node before the symbol's keys arrived would have
// written a key there that the migration then cannot move: BUSYKEY).
#include "stack.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "io/redis/cluster/slot_map.h"

using namespace klined_it;  // NOLINT: the shared stack and reference
using klined::cluster::KeySlot;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// `n` symbols STEM0USDT... and their trades in time order: every symbol busy at once (each
// symbol's ids stay in order).
std::vector<RefTrade> BusyTrades(const std::string& stem, int n, int per_symbol, uint64_t seed,
                                 std::vector<std::string>* symbols) {
  for (int i = 0; i < n; ++i) symbols->push_back(stem + std::to_string(i) + "USDT");
  std::vector<RefTrade> trades = MakeTrades(*symbols, per_symbol, seed);
  std::stable_sort(trades.begin(), trades.end(),
                   [](const RefTrade& a, const RefTrade& b) { return a.time_ms < b.time_ms; });
  return trades;
}

// Produces trades [0, upto) and waits until Redis has them.
void ProduceFirst(Stack& stack, kt::Producer& producer, const std::vector<RefTrade>& trades,
                  size_t upto, kt::Subprocess& klined) {
  Produce(&producer, std::vector<RefTrade>(trades.begin(), trades.begin() + upto));
  std::map<std::string, int64_t> first_ids;
  for (size_t i = 0; i < upto; ++i) first_ids[trades[i].symbol] = trades[i].id;
  REQUIRE_MESSAGE(stack.WaitForWatermarks(first_ids, seconds(60)), klined.OutputTail());
}

// Produces trades [from, end) in batches of `batch`, `pause` apart (a feeder thread's body).
void Feed(kt::Producer& producer, const std::vector<RefTrade>& trades, size_t from, size_t batch,
          milliseconds pause) {
  for (size_t at = from; at < trades.size(); at += batch) {
    const size_t end = std::min(trades.size(), at + batch);
    Produce(&producer, std::vector<RefTrade>(trades.begin() + at, trades.begin() + end));
    std::this_thread::sleep_for(pause);
  }
}

}  // namespace

TEST_CASE("cluster reshard: busy symbols' slots move under load; Redis and MySQL stay exact") {
  Stack stack;
  stack.UseCluster();
  std::vector<std::string> symbols;
  const std::vector<RefTrade> trades = BusyTrades("RS", 12, 400, 2029, &symbols);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  ProduceFirst(stack, producer, trades, 400, *klined);

  // The rest flows in small batches while four symbols' slots move, two keys per MIGRATE.
  std::atomic<bool> done{false};
  std::thread feeder([&] {
    Feed(producer, trades, 400, 40, milliseconds(60));
    done = true;
  });
  for (int i = 0; i < 4; ++i) {
    const uint16_t slot = KeySlot(symbols[i]);
    kt::RedisServer& to = stack.cluster->OtherPrimary(slot);
    CAPTURE(symbols[i]);
    stack.cluster->MoveSlot(slot, to, {}, 2, milliseconds(120));
    CHECK(&stack.cluster->PrimaryOf(slot) == &to);
  }
  feeder.join();
  CHECK(done);

  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  stack.CheckCandles(trades, symbols);
  REQUIRE(WaitUntil([&] { return stack.NothingPending(); }, seconds(30)));
  stack.CheckMysql(trades, symbols);
  const std::string m = stack.Metrics();
  CHECK(MetricValue(m, "klined_redis_cluster_moved_total") > 0);
  MESSAGE("ask=" << MetricValue(m, "klined_redis_cluster_ask_total")
                 << " tryagain=" << MetricValue(m, "klined_redis_cluster_tryagain_total")
                 << " moved=" << MetricValue(m, "klined_redis_cluster_moved_total"));
  CHECK(MetricValue(m, "klined_redis_cluster_ask_total") +
            MetricValue(m, "klined_redis_cluster_tryagain_total") >
        0);
  StopCleanly(*klined);
}

TEST_CASE("cluster failover: a primary SIGKILLed under load with wait_replicas 1 loses nothing") {
  // Its replica is promoted (cluster-node-timeout 1 s here); klined's calls for that node's
  // slots fail, then go to the new primary; what it wrote there before the kill and was
  // committed is on the replica (WAIT), what was not is re-read from Kafka.
  Stack stack(false, "", "  wait_replicas: 1\n  wait_timeout_ms: 500\n");
  stack.UseCluster();
  std::vector<std::string> symbols;
  const std::vector<RefTrade> trades = BusyTrades("FO", 12, 300, 4051, &symbols);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  const size_t half = trades.size() / 2;
  ProduceFirst(stack, producer, trades, half, *klined);

  std::thread feeder([&] { Feed(producer, trades, half, 30, milliseconds(50)); });
  std::this_thread::sleep_for(milliseconds(300));
  kt::RedisServer& victim = stack.cluster->PrimaryOf(KeySlot(symbols[0]));
  victim.process().Kill();
  feeder.join();
  stack.cluster->WaitHealthy();  // the replica promoted
  CHECK(&stack.cluster->PrimaryOf(KeySlot(symbols[0])) != &victim);
  // The victim comes back as the promoted node's replica: with wait_replicas 1 that node's
  // writes can be confirmed again (until then its offsets are held, as they must be).
  victim.process().Wait(milliseconds(5000));
  victim.Start();
  stack.cluster->WaitHealthy();

  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  stack.CheckCandles(trades, symbols);
  REQUIRE(WaitUntil([&] { return stack.NothingPending(); }, seconds(30)));
  stack.CheckMysql(trades, symbols);
  // klined goes on: every offset is committed in the end (the waits on the dead node are
  // settled), and it stops cleanly.
  REQUIRE_MESSAGE(WaitUntil([&] { return stack.AllCommitted(); }, seconds(30)),
                  klined->OutputTail());
  StopCleanly(*klined);
}
