// klinectl retire with the real binaries. Invariants: a retired symbol leaves PREFIX:symbols
// (so the rollover stops rolling it and the API stops listing it) for PREFIX:retired, its
// stored candles stay; the census counts it (klined_symbols_retired); a new trade brings it
// back, and its candles then equal the independent computation, as if it had never been
// retired (the shard gap-fills what the rollover did not write).
#include "stack.h"

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("retire: a retired symbol stops rolling, keeps its candles, and a trade revives it") {
  Stack stack(false, "intervals: [1s, 1m]\n");
  const std::vector<std::string> symbols = {"OLDUSDT", "BTCUSDT"};
  std::vector<RefTrade> trades = MakeTrades(symbols, 30, 5);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  kt::RedisClient rc = stack.Redis();

  const Stack::Ran dry = stack.Klinectl({"retire", "OLDUSDT", "--dry-run"}, "retire-dry");
  CHECK(dry.code == 0);
  CHECK(dry.out == "would retire OLDUSDT\n");
  CHECK(rc.Integer({"SISMEMBER", "kline:symbols", "OLDUSDT"}) == 1);
  const Stack::Ran retired = stack.Klinectl({"retire", "OLDUSDT"}, "retire");
  CHECK(retired.code == 0);
  CHECK(retired.out == "retired OLDUSDT\n");
  CHECK(rc.Integer({"SISMEMBER", "kline:symbols", "OLDUSDT"}) == 0);
  CHECK(rc.Integer({"SISMEMBER", "kline:retired", "OLDUSDT"}) == 1);
  const Stack::Ran again = stack.Klinectl({"retire", "OLDUSDT"}, "retire-again");
  CHECK(again.code == 1);
  CHECK(again.err.find("OLDUSDT is not active") != std::string::npos);

  // The rollover rolls BTCUSDT's 1s candle on, not OLDUSDT's; its history stays.
  const auto open_of = [&](const std::string& key) {
    const std::string cur = rc.Get(key).value_or("{\"t\":0,");
    return std::stoll(cur.substr(5, cur.find(',') - 5));
  };
  const int64_t old_open = open_of("kline:{OLDUSDT}:1s");
  const int64_t btc_open = open_of("kline:{BTCUSDT}:1s");
  const int64_t old_hist = rc.Integer({"ZCARD", "kline:{OLDUSDT}:1m:hist"});
  REQUIRE(WaitUntil([&] { return open_of("kline:{BTCUSDT}:1s") >= btc_open + 3000; }, seconds(10)));
  CHECK(open_of("kline:{OLDUSDT}:1s") == old_open);
  CHECK(rc.Integer({"ZCARD", "kline:{OLDUSDT}:1m:hist"}) == old_hist);
  // The census follows each complete trim pass (every 10 s, the first 5 s after the lease).
  std::string census;
  REQUIRE_MESSAGE(
      WaitUntil(
          [&] {
            const std::string m = stack.Metrics();
            census =
                "retired=" + std::to_string(MetricValue(m, "klined_symbols_retired")) +
                " active=" + std::to_string(MetricValue(m, "klined_symbols_active")) +
                " trim_failures=" + std::to_string(MetricValue(m, "klined_trim_failures_total")) +
                " takeovers=" + std::to_string(MetricValue(m, "klined_lease_takeovers_total"));
            return MetricValue(m, "klined_symbols_retired") == 1 &&
                   MetricValue(m, "klined_symbols_active") == 1;
          },
          seconds(30)),
      census << "\n"
             << klined->OutputTail());

  // A trade brings it back: active again, counted so, candles as if never retired.
  // In the buckets of the symbol's last trade: the shard's write stamp would let FLUSH_FAST
  // write it, which does not add a symbol back; retiring voids the stamp, so it is a FLUSH.
  int64_t last_t = 0;
  for (const RefTrade& t : trades) {
    if (t.symbol == "OLDUSDT") last_t = std::max(last_t, t.time_ms);
  }
  const RefTrade revive{"OLDUSDT", 2000, last_t, 77777, 3, true};
  Produce(&producer, {revive});
  trades.push_back(revive);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  CHECK(rc.Integer({"SISMEMBER", "kline:symbols", "OLDUSDT"}) == 1);
  REQUIRE(WaitUntil(
      [&] {
        const std::string m = stack.Metrics();
        return MetricValue(m, "klined_symbols_retired") == 0 &&
               MetricValue(m, "klined_symbols_active") == 2 &&
               rc.Integer({"SISMEMBER", "kline:retired", "OLDUSDT"}) == 0;
      },
      seconds(20)));
  for (const auto& [iv, len] :
       std::vector<std::pair<std::string, int64_t>>{{"1s", 1000}, {"1m", 60000}}) {
    const std::string key = "kline:{OLDUSDT}:" + iv;
    CAPTURE(key);
    // Current candle, and the newest 50 closed ones (older 1s history is trimmed).
    REQUIRE(WaitUntil(
        [&] {
          const std::optional<std::string> cur = rc.Get(key);
          if (!cur) return false;
          const auto [hist, want_cur] = Expected(trades, "OLDUSDT", iv, len, open_of(key));
          std::vector<std::string> got = rc.Strings({"ZRANGE", key + ":hist", "-50", "-1"});
          const std::vector<std::string> want(hist.end() - std::min<ptrdiff_t>(50, ssize(hist)),
                                              hist.end());
          return *cur == want_cur && got == want;
        },
        seconds(10)));
  }
  StopCleanly(*klined);
}

TEST_CASE("retire: limits.retire_idle_after retires an idle symbol, not a trading one") {
  // IDLEUSDT takes no trade after the start, BTCUSDT one every 200 ms: after 2 s without a
  // trade (seen by two censuses) only IDLEUSDT is retired; a trade brings it back.
  Stack stack(false, "intervals: [1s, 1m]\nlimits:\n  retire_idle_after: 2000\n");
  const std::vector<std::string> symbols = {"IDLEUSDT", "BTCUSDT"};
  std::vector<RefTrade> trades = MakeTrades(symbols, 10, 6);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  kt::RedisClient rc = stack.Redis();
  int64_t id = 5000;
  const auto deadline = std::chrono::steady_clock::now() + seconds(40);
  bool retired = false;
  while (!retired && std::chrono::steady_clock::now() < deadline) {
    const RefTrade t{"BTCUSDT", ++id, NowMs() - 100, 60000, 1, true};
    Produce(&producer, {t});
    trades.push_back(t);
    std::this_thread::sleep_for(milliseconds(200));
    retired = rc.Integer({"SISMEMBER", "kline:retired", "IDLEUSDT"}) == 1;
  }
  REQUIRE(retired);
  CHECK(rc.Integer({"SISMEMBER", "kline:symbols", "IDLEUSDT"}) == 0);
  CHECK(rc.Integer({"SISMEMBER", "kline:symbols", "BTCUSDT"}) == 1);
  CHECK(rc.Integer({"SISMEMBER", "kline:retired", "BTCUSDT"}) == 0);
  CHECK(MetricValue(stack.Metrics(), "klined_symbols_auto_retired_total") == 1);
  CHECK(klined->Stderr().find("event=trim.retired symbol=IDLEUSDT") != std::string::npos);

  const RefTrade back{"IDLEUSDT", 9000, NowMs() - 100, 12345, 2, false};
  Produce(&producer, {back});
  trades.push_back(back);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  CHECK(rc.Integer({"SISMEMBER", "kline:symbols", "IDLEUSDT"}) == 1);
  StopCleanly(*klined);
}
