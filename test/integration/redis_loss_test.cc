// Redis losing its data under a running klined (FLUSHALL: as a restart without persistence or
// a failover to an empty node). Invariant: klined notices (klined_redis_data_loss_total, a log
// line) and writes back everything its shards hold: afterwards every current candle and
// watermark equals the independent computation over all trades, those before the loss
// included; it is never silently a fresh start.
#include "stack.h"

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("redis loss: FLUSHALL under klined is detected and memory is written back") {
  // 1d as well: its current bucket holds the trades flushed before the loss (the shorter
  // ones may have rolled past them).
  Stack stack(false, "intervals: [1m, 5m, 1h, 1d]\n");
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT"};
  std::vector<RefTrade> trades = MakeTrades(symbols, 80, 11);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));

  kt::RedisClient rc = stack.redis.Connect();
  rc.Command({"FLUSHALL"});

  // More trades of the same symbols, in the current buckets.
  std::vector<RefTrade> more;
  const int64_t t0 = NowMs() - 300;
  for (const std::string& sym : symbols) {
    for (int i = 1; i <= 5; ++i)
      more.push_back(RefTrade{sym, 1080 + i, t0 + i, 30000 + i, i, true});
  }
  Produce(&producer, more);
  trades.insert(trades.end(), more.begin(), more.end());
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(30)), klined->OutputTail());

  // Every current candle holds every trade of its bucket, those flushed before the loss too.
  for (const std::string& sym : symbols) {
    std::vector<std::pair<std::string, int64_t>> intervals = kIntervals;
    intervals.emplace_back("1d", 86400000);
    for (const auto& [iv, len] : intervals) {
      const std::string key = "kline:{" + sym + "}:" + iv;
      CAPTURE(key);
      std::optional<std::string> cur;
      REQUIRE(WaitUntil(
          [&] {
            cur = rc.Get(key);
            if (!cur) return false;
            const int64_t open = std::stoll(cur->substr(5, cur->find(',') - 5));
            return *cur == Expected(trades, sym, iv, len, open).second;
          },
          seconds(10)));
    }
    CHECK(rc.Integer({"SISMEMBER", "kline:symbols", sym}) == 1);
  }
  const std::string m = stack.Metrics();
  CHECK(MetricValue(m, "klined_redis_data_loss_total") == static_cast<double>(symbols.size()));
  CHECK(klined->Stderr().find("shard.redis_data_loss") != std::string::npos);
  StopCleanly(*klined);
}
