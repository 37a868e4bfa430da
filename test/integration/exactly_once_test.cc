// Exactly once where replies go missing and writers collide, with the real klined binary.
// Invariants: every trade is in Redis exactly once (Redis equals the independent computation
// of stack.h) when (1) a FLUSH that Redis ran loses its reply, again and again, right after a
// late trade; (2) Redis loses its scripts in the middle of a pipelined flush of late trades;
// (3) two instances write one symbol whose trades a producer split over two partitions; and
// (4) a trade that breaks the one-partition-in-id-order rule is reported as out of order,
// never silently as a duplicate.
#include "stack.h"

#include <librdkafka/rdkafka.h>

#include "tcp_proxy.h"

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// Five trades in each of minutes 0-5 after m0, for each symbol; ids from *id.
std::vector<RefTrade> Minutes(const std::vector<std::string>& symbols, int64_t m0, int64_t* id) {
  std::vector<RefTrade> out;
  for (const std::string& sym : symbols) {
    for (int minute = 0; minute < 6; ++minute) {
      for (int k = 0; k < 5; ++k) {
        ++*id;
        out.push_back(RefTrade{sym, *id, m0 + minute * 60000 + k * 1000, 100000 + *id % 977,
                               1 + *id % 40, k % 2 == 0});
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("exactly once: a late trade's FLUSH ran but its reply was lost, three times over") {
  // The reply of the FLUSH call carrying each late trade is swallowed after Redis ran it and
  // the connection closed: klined cannot know the write landed. Its retry must not apply the
  // late trade a second time (the old retry re-read the stored candle, which already held
  // it, and merged it again).
  Stack stack(false, "", "", "  persist_interval_ms: 3600000\n");
  kt::TcpProxy proxy(stack.redis.host(), stack.redis.port());
  stack.UseRedisAddress(proxy.address());
  const int64_t m0 = MinuteAgo(30);
  int64_t id = 1000;
  std::vector<RefTrade> all = Minutes({"LATE1", "OTHER"}, m0, &id);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, all);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(all), seconds(60)), klined->OutputTail());
  for (int round = 1; round <= 3; ++round) {
    CAPTURE(round);
    // A late trade into minute 2 (in history): the highest id there, so its new last id.
    const RefTrade late{"LATE1", ++id, m0 + 2 * 60000 + 30000 + round, 4242 + round, 7, false};
    proxy.LoseRepliesTo("\"L\":" + std::to_string(late.id) + ",", 1);
    all.push_back(late);
    Produce(&producer, {late});
    REQUIRE_MESSAGE(WaitUntil([&] { return proxy.replies_lost() == round; }, seconds(30)),
                    klined->OutputTail());
    REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(all), seconds(60)), klined->OutputTail());
  }
  // Trades after the lost replies flow as before.
  std::vector<RefTrade> after = {RefTrade{"LATE1", ++id, m0 + 5 * 60000 + 50000, 999, 3, true},
                                 RefTrade{"OTHER", ++id, m0 + 5 * 60000 + 51000, 998, 4, false}};
  all.insert(all.end(), after.begin(), after.end());
  Produce(&producer, after);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(all), seconds(60)), klined->OutputTail());
  stack.CheckCandles(all, {"LATE1", "OTHER"});
  CHECK(MetricValue(stack.Metrics(), "klined_writes_refused_total") >= 1);
  StopCleanly(*klined);
}

TEST_CASE(
    "exactly once: Redis loses its scripts in the middle of a pipelined flush of late trades") {
  // The flush of 12 symbols' late trades is one pipeline; after its first call ran, SCRIPT
  // FLUSH empties Redis's script cache, so the calls after it answer NOSCRIPT. Only those may
  // be sent again: re-sending the first one (the old behaviour re-sent the whole pipeline)
  // made its compare-and-set fail, and the re-planned retry merged its late trade twice.
  Stack stack(false, "shards: 1\n", "", "  persist_interval_ms: 3600000\n");
  kt::TcpProxy proxy(stack.redis.host(), stack.redis.port());
  stack.UseRedisAddress(proxy.address());
  std::vector<std::string> symbols;
  for (int k = 0; k < 12; ++k) symbols.push_back("NS" + std::to_string(k));
  const int64_t m0 = MinuteAgo(30);
  int64_t id = 5000;
  std::vector<RefTrade> all = Minutes(symbols, m0, &id);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, all);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(all), seconds(60)), klined->OutputTail());
  kt::RedisClient side = stack.Redis();
  for (int round = 1; round <= 2; ++round) {
    CAPTURE(round);
    std::vector<RefTrade> late;
    for (const std::string& sym : symbols) {
      late.push_back(RefTrade{sym, ++id, m0 + 60000 + 40000 + round, 3000 + round, 2, false});
    }
    // Split the flush pipeline that carries the first symbol's late candle.
    proxy.SplitNext("\"L\":" + std::to_string(late.front().id) + ",", [&side] {
      side.Command({"SCRIPT", "FLUSH"});
    });
    all.insert(all.end(), late.begin(), late.end());
    Produce(&producer, late);
    REQUIRE_MESSAGE(WaitUntil([&] { return proxy.splits() == round; }, seconds(30)),
                    klined->OutputTail());
    REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(all), seconds(60)), klined->OutputTail());
  }
  stack.CheckCandles(all, symbols);
  StopCleanly(*klined);
}

TEST_CASE("exactly once: two instances write one symbol split over two partitions") {
  // A producer that does not key by symbol sends SPLIT's odd ids to one partition and its
  // even ids to another, each consumed by a different instance. Each instance's write is a
  // compare-and-set on what it last saw stored: the loser reloads and re-applies its trades
  // (per-partition watermarks drop nothing of the other's), so Redis holds every trade once.
  // The old FLUSH wrote candles unconditionally: the last writer's candles won.
  Stack stack;
  int port_a = 0, port_b = 0;
  auto a = stack.StartInstance("klined-a", &port_a);
  auto b = stack.StartInstance("klined-b", &port_b);
  // Wait until the group has split the 4 partitions between the two.
  auto assigned = [&stack](int port) {
    const std::string m = stack.Metrics(port);
    std::set<int> parts;
    for (int p = 0; p < 4; ++p) {
      if (m.find("klined_consumer_lag_messages{partition=\"" + std::to_string(p) + "\"}") !=
          std::string::npos) {
        parts.insert(p);
      }
    }
    return parts;
  };
  std::set<int> pa, pb;
  REQUIRE_MESSAGE(WaitUntil(
                      [&] {
                        pa = assigned(port_a);
                        pb = assigned(port_b);
                        return !pa.empty() && !pb.empty() && pa.size() + pb.size() == 4;
                      },
                      seconds(60)),
                  a->OutputTail() << b->OutputTail());
  // Every partition must have been read once (an empty topic reports lag only once fetched):
  // produce a warm-up trade of another symbol to each.
  kt::Producer producer(stack.broker.bootstrap());
  const int64_t m0 = MinuteAgo(20);
  std::vector<RefTrade> warm;
  for (int p = 0; p < 4; ++p) {
    warm.push_back(RefTrade{"WARM" + std::to_string(p), 1, m0, 1000, 1, false});
    Produce(&producer, {warm.back()}, p);
  }
  REQUIRE(stack.WaitForWatermarks(LastIds(warm), seconds(30)));
  const int part_a = *pa.begin(), part_b = *pb.begin();
  std::vector<RefTrade> all;
  int64_t id = 100;
  for (int round = 0; round < 6; ++round) {
    std::vector<RefTrade> odd, even;
    for (int k = 0; k < 20; ++k) {
      ++id;
      const RefTrade t{"SPLIT",           id,         m0 + round * 60000 + k * 2000,
                       200000 + id % 311, 1 + id % 9, id % 3 == 0};
      (id % 2 ? odd : even).push_back(t);
      all.push_back(t);
    }
    Produce(&producer, odd, part_a);
    Produce(&producer, even, part_b);
  }
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(all), seconds(60)), a->OutputTail()
                                                                          << b->OutputTail());
  // Both instances converge: wait until neither holds a refused write back.
  REQUIRE(WaitUntil(
      [&] {
        kt::RedisClient rc = stack.Redis();
        auto cur = rc.Get("kline:{SPLIT}:1h");
        auto want = Expected(all, "SPLIT", "1h", 3600000,
                             cur ? std::stoll(cur->substr(5, cur->find(',') - 5)) : 0);
        return cur == want.second;
      },
      seconds(30)));
  stack.CheckCandles(all, {"SPLIT"});
  const double ooo = MetricValue(stack.Metrics(port_a), "klined_trades_out_of_order_total") +
                     MetricValue(stack.Metrics(port_b), "klined_trades_out_of_order_total");
  CHECK(ooo > 0);
  StopCleanly(*a);
  StopCleanly(*b);
}

TEST_CASE("exactly once: out of order is counted, logged and dead-lettered, never a duplicate") {
  Stack stack;
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  const int64_t m0 = MinuteAgo(10);
  std::vector<RefTrade> in_order;
  for (int64_t id = 100; id <= 110; ++id) {
    if (id == 105) continue;
    in_order.push_back(RefTrade{"ORD", id, m0 + id * 100, 5000 + id, 1, false});
  }
  Produce(&producer, in_order, 1);
  REQUIRE(stack.WaitForWatermarks(LastIds(in_order), seconds(30)));
  // 105 arrives after 110 on the same partition: below the watermark, never applied.
  const RefTrade reordered{"ORD", 105, m0 + 10500, 5105, 1, false};
  Produce(&producer, {reordered}, 1);
  // 106 again: a duplicate (a producer retry).
  Produce(&producer, {in_order[5]}, 1);
  // 111 from a second partition: applied (above the watermark) but reported.
  const RefTrade elsewhere{"ORD", 111, m0 + 11100, 5111, 2, true};
  Produce(&producer, {elsewhere}, 2);
  std::vector<RefTrade> applied = in_order;
  applied.push_back(elsewhere);
  REQUIRE(stack.WaitForWatermarks(LastIds(applied), seconds(30)));
  REQUIRE(WaitUntil(
      [&] {
        return MetricValue(stack.Metrics(), "klined_trades_duplicate_total") >= 1 &&
               MetricValue(stack.Metrics(), "klined_trades_out_of_order_total") >= 2;
      },
      seconds(30)));
  stack.CheckCandles(applied, {"ORD"});
  const std::string m = stack.Metrics();
  CHECK(MetricValue(m, "klined_trades_out_of_order_total") == 2);
  CHECK(MetricValue(m, "klined_trades_duplicate_total") == 1);
  CHECK(MetricValue(m, "klined_trades_rejected_total{reason=\"out_of_order\"}") == 1);
  const auto dlq = kt::ConsumeAll(stack.broker.bootstrap(), "trades-dlq", seconds(10), 1);
  REQUIRE(dlq.size() == 1);
  CHECK(dlq[0].Header("klined-reject-reason") == std::optional<std::string>("out_of_order"));
  CHECK(dlq[0].value.find("\"t\":105,") != std::string::npos);
  CHECK(klined->Stderr().find("event=trade.out_of_order symbol=ORD id=105 partition=1") !=
        std::string::npos);
  StopCleanly(*klined);
}
