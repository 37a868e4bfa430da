// Pure planning of the timer jobs (no Redis): what a rollover writes for one interval, and
// where the timer loop schedules the next run.
#include <doctest/doctest.h>

#include <string>

#include "jobs/rollover.h"
#include "jobs/timer_loop.h"
#include "klined/candle.h"

namespace klined {
namespace {

// 2024-01-01 00:00:00 UTC (a Monday, the 1st of a month).
constexpr int64_t kNewYear = 1704067200000;

std::string Current(Interval iv, int64_t open, const char* price, int64_t n) {
  Candle c = Candle::Empty(iv, open, UtcOffset{}, Decimal::FromInt(0));
  Trade t;
  t.symbol = Symbol("BTCUSDT");
  t.id = 41;
  t.time_ms = open + 1;
  REQUIRE(ParseStoredDecimal(price, &t.price) == DecimalError::kOk);
  t.qty = Decimal::FromInt(1);
  t.quote = t.price;
  if (n > 0) REQUIRE(c.Apply(t));
  return CandleJson(c, "BTCUSDT", /*closed=*/false);
}

}  // namespace

TEST_CASE("jobs plan: rollover closes the current candle, fills the gap, opens now's bucket") {
  const int64_t open = kNewYear - 3 * 60000;  // 23:57
  const std::string stored = Current(Interval::k1m, open, "42.5", 1);
  IntervalRoll roll;
  bool bad = true;
  REQUIRE(
      PlanRollover(stored, "BTCUSDT", Interval::k1m, kNewYear + 1234, UtcOffset{}, &roll, &bad));
  CHECK_FALSE(bad);
  REQUIRE(roll.closed.size() == 3);  // 23:57 (closed), 23:58 and 23:59 (empty)
  std::string closed = stored;
  closed.replace(closed.size() - 6, 6, "true}");
  CHECK(roll.closed[0] == closed);
  CHECK(roll.closed[1] ==
        "{\"t\":1704067080000,\"T\":1704067139999,\"s\":\"BTCUSDT\",\"i\":\"1m\",\"f\":-1,"
        "\"L\":-1,\"o\":\"42.5\",\"h\":\"42.5\",\"l\":\"42.5\",\"c\":\"42.5\",\"v\":\"0\","
        "\"q\":\"0\",\"V\":\"0\",\"Q\":\"0\",\"n\":0,\"x\":true}");
  CHECK(roll.next_current ==
        "{\"t\":1704067200000,\"T\":1704067259999,\"s\":\"BTCUSDT\",\"i\":\"1m\",\"f\":-1,"
        "\"L\":-1,\"o\":\"42.5\",\"h\":\"42.5\",\"l\":\"42.5\",\"c\":\"42.5\",\"v\":\"0\","
        "\"q\":\"0\",\"V\":\"0\",\"Q\":\"0\",\"n\":0,\"x\":false}");
}

TEST_CASE("jobs plan: nothing due in the current bucket or for a candle from the future") {
  IntervalRoll roll;
  bool bad = true;
  const std::string cur = Current(Interval::k1M, kNewYear, "1", 1);
  CHECK_FALSE(
      PlanRollover(cur, "BTCUSDT", Interval::k1M, kNewYear + 86400000LL * 30, {}, &roll, &bad));
  CHECK_FALSE(bad);
  CHECK_FALSE(PlanRollover(cur, "BTCUSDT", Interval::k1M, kNewYear - 1, {}, &roll, &bad));
  CHECK_FALSE(bad);
  // A month later: one closed candle (January), the current one is February.
  REQUIRE(PlanRollover(cur, "BTCUSDT", Interval::k1M, kNewYear + 86400000LL * 31, {}, &roll, &bad));
  CHECK(roll.closed.size() == 1);
  // Garbage, or another interval's/symbol's candle under this key: refused, flagged.
  CHECK_FALSE(PlanRollover("{\"t\":1}", "BTCUSDT", Interval::k1M, kNewYear, {}, &roll, &bad));
  CHECK(bad);
  CHECK_FALSE(PlanRollover(cur, "BTCUSDT", Interval::k1m, kNewYear + 600000, {}, &roll, &bad));
  CHECK(bad);
  CHECK_FALSE(
      PlanRollover(cur, "ETHUSDT", Interval::k1M, kNewYear + 86400000LL * 40, {}, &roll, &bad));
  CHECK(bad);
}

TEST_CASE("jobs plan: a long gap is filled over several runs, gapless") {
  const std::string stored = Current(Interval::k1s, kNewYear, "7", 1);
  IntervalRoll roll;
  bool bad = true, truncated = false;
  // 1 day of 1s candles due: this run closes the stored one and 9 empties, and the new
  // current is the bucket right after them (not now's), so the next run goes on from there.
  REQUIRE(PlanRollover(stored, "BTCUSDT", Interval::k1s, kNewYear + 86400000, {}, &roll, &bad, 10,
                       &truncated));
  CHECK(truncated);
  REQUIRE(roll.closed.size() == 10);
  CHECK(roll.closed_open.front() == kNewYear);
  CHECK(roll.closed_open.back() == kNewYear + 9000);
  CHECK(roll.next_current.starts_with("{\"t\":1704067210000,"));
  CHECK(roll.next_current.ends_with(
      "\"c\":\"7\",\"v\":\"0\",\"q\":\"0\",\"V\":\"0\",\"Q\":\"0\",\"n\":0,\"x\":false}"));
  // Exactly at the bound: not truncated.
  REQUIRE(PlanRollover(stored, "BTCUSDT", Interval::k1s, kNewYear + 10000, {}, &roll, &bad, 10,
                       &truncated));
  CHECK_FALSE(truncated);
  CHECK(roll.closed.size() == 10);
  CHECK(roll.next_current.starts_with("{\"t\":1704067210000,"));
}

TEST_CASE("jobs plan: the next boundary is the earliest of every configured interval") {
  const SeriesLayout minutes{{Interval::k1m, Interval::k1h, Interval::k1M}, {}};
  CHECK(TimerLoop::NextBoundary(minutes, kNewYear) == kNewYear + 60000);
  CHECK(TimerLoop::NextBoundary(minutes, kNewYear - 1) == kNewYear);
  const SeriesLayout monthly{{Interval::k1w, Interval::k1M}, {}};
  // Monday Jan 1: the next week starts Jan 8, before February.
  CHECK(TimerLoop::NextBoundary(monthly, kNewYear) == kNewYear + 7 * 86400000LL);
  CHECK(TimerLoop::LatestBoundary(minutes, kNewYear + 61000) == kNewYear + 60000);
  CHECK(TimerLoop::LatestBoundary(monthly, kNewYear + 1) == kNewYear);
  const SeriesLayout tz{{Interval::k1d}, UtcOffset{8 * 3600000}};
  // In +08:00 a day starts at 16:00 UTC.
  CHECK(TimerLoop::NextBoundary(tz, kNewYear) == kNewYear + 16 * 3600000LL);
}

}  // namespace klined
