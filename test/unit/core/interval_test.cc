// Tests for include/klined/interval.h.
//
// Expected opens in the tables below were computed independently of src/core/interval.cc with
// Python's datetime (calendar fields: replace(minute=...), weekday(), replace(day=1), month
// rollover), then hardcoded; each row's comment shows the local time and the local bucket
// open that Python produced.
#include "klined/interval.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace klined {
namespace {

constexpr int64_t kDayMs = 86'400'000;

UtcOffset Tz(std::string_view text) {
  const std::optional<UtcOffset> tz = ParseUtcOffset(text);
  REQUIRE(tz.has_value());
  return *tz;
}

// Interval, offset, a trade time, its bucket open and the next bucket's open.
struct AlignCase {
  Interval iv;
  const char* tz;
  int64_t t;
  int64_t open;
  int64_t next;
};

void CheckAlign(const AlignCase& c) {
  CAPTURE(IntervalName(c.iv));
  CAPTURE(c.tz);
  CAPTURE(c.t);
  const UtcOffset tz = Tz(c.tz);
  CHECK(BucketOpen(c.iv, c.t, tz) == c.open);
  CHECK(NextBucketOpen(c.iv, c.open, tz) == c.next);
  CHECK(BucketClose(c.iv, c.open, tz) == c.next - 1);
  CHECK(BucketOpen(c.iv, c.open, tz) == c.open);
  CHECK(BucketOpen(c.iv, c.next - 1, tz) == c.open);
  CHECK(BucketOpen(c.iv, c.next, tz) == c.next);
  CHECK(BucketsBetween(c.iv, c.open, c.next, tz) == 1);
}

TEST_CASE("Interval: names round trip in declaration order") {
  const char* const kExpected[kIntervalCount] = {"1s", "1m", "3m", "5m",  "15m", "30m", "1h", "2h",
                                                 "4h", "6h", "8h", "12h", "1d",  "3d",  "1w", "1M"};
  for (int i = 0; i < kIntervalCount; ++i) {
    const Interval iv = kAllIntervals[static_cast<size_t>(i)];
    CHECK(static_cast<int>(iv) == i);
    CHECK(IntervalName(iv) == kExpected[i]);
    const std::optional<Interval> parsed = ParseInterval(kExpected[i]);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == iv);
  }
  // Case matters: a minute and a month.
  CHECK(ParseInterval("1m") == Interval::k1m);
  CHECK(ParseInterval("1M") == Interval::k1M);
}

TEST_CASE("Interval: ParseInterval rejects near misses") {
  for (const char* bad : {"",   "1h ", " 1h", "60m", "1H", "1S", "1D", "1W", "1mo",  "1",  "m",
                          "m1", "01m", "1 m", "24h", "7d", "2w", "1y", "3M", "1M\n", "12H"}) {
    CAPTURE(bad);
    CHECK_FALSE(ParseInterval(bad).has_value());
  }
  CHECK_FALSE(ParseInterval(std::string_view("1m\0", 3)).has_value());
}

TEST_CASE("Interval: ParseUtcOffset accepts +HH:MM and -HH:MM") {
  struct Case {
    const char* text;
    int64_t ms;
  };
  const Case kCases[] = {
      {"+00:00", 0},
      {"-00:00", 0},
      {"+08:00", 8 * 3'600'000},
      {"-05:30", -(5 * 3'600'000 + 30 * 60'000)},
      {"+05:45", 5 * 3'600'000 + 45 * 60'000},
      {"+23:59", 23 * 3'600'000 + 59 * 60'000},
      {"-23:59", -(23 * 3'600'000 + 59 * 60'000)},
      {"+14:00", 14 * 3'600'000},
  };
  for (const Case& c : kCases) {
    CAPTURE(c.text);
    const std::optional<UtcOffset> tz = ParseUtcOffset(c.text);
    REQUIRE(tz.has_value());
    CHECK(tz->ms == c.ms);
  }
}

TEST_CASE("Interval: ParseUtcOffset rejects everything else") {
  // "\u2212" is U+2212 MINUS SIGN (UTF-8 e2 88 92), which looks like '-' but is not accepted.
  for (const char* bad :
       {"",       "Z",      "z",      "UTC",       "+8:00",  "+08",     "+0800",
        "08:00",  "+24:00", "-24:00", "+08:60",    "+99:99", "+08:00 ", " +08:00",
        "+08-00", "+0a:00", "+08:0a", "+08:00:00", "++8:00", "+-8:00",  "\u221208:00"}) {
    CAPTURE(bad);
    CHECK_FALSE(ParseUtcOffset(bad).has_value());
  }
}

TEST_CASE("Interval: every interval aligns an unaligned instant in three offsets") {
  // Local times: +00:00 13:47:29.123, +08:00 21:47:29.123, -05:30 08:17:29.123 (same day).
  const AlignCase kCases[] = {
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 13:47:29.000
      {Interval::k1s, "+00:00", 1709214449123, 1709214449000, 1709214450000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 13:47:00.000
      {Interval::k1m, "+00:00", 1709214449123, 1709214420000, 1709214480000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 13:45:00.000
      {Interval::k3m, "+00:00", 1709214449123, 1709214300000, 1709214480000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 13:45:00.000
      {Interval::k5m, "+00:00", 1709214449123, 1709214300000, 1709214600000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 13:45:00.000
      {Interval::k15m, "+00:00", 1709214449123, 1709214300000, 1709215200000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 13:30:00.000
      {Interval::k30m, "+00:00", 1709214449123, 1709213400000, 1709215200000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 13:00:00.000
      {Interval::k1h, "+00:00", 1709214449123, 1709211600000, 1709215200000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 12:00:00.000
      {Interval::k2h, "+00:00", 1709214449123, 1709208000000, 1709215200000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 12:00:00.000
      {Interval::k4h, "+00:00", 1709214449123, 1709208000000, 1709222400000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 12:00:00.000
      {Interval::k6h, "+00:00", 1709214449123, 1709208000000, 1709229600000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 08:00:00.000
      {Interval::k8h, "+00:00", 1709214449123, 1709193600000, 1709222400000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 12:00:00.000
      {Interval::k12h, "+00:00", 1709214449123, 1709208000000, 1709251200000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 00:00:00.000
      {Interval::k1d, "+00:00", 1709214449123, 1709164800000, 1709251200000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-29 Thu 00:00:00.000
      {Interval::k3d, "+00:00", 1709214449123, 1709164800000, 1709424000000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-26 Mon 00:00:00.000
      {Interval::k1w, "+00:00", 1709214449123, 1708905600000, 1709510400000},
      // local 2024-02-29 Thu 13:47:29.123 -> 2024-02-01 Thu 00:00:00.000
      {Interval::k1M, "+00:00", 1709214449123, 1706745600000, 1709251200000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 21:47:29.000
      {Interval::k1s, "+08:00", 1709214449123, 1709214449000, 1709214450000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 21:47:00.000
      {Interval::k1m, "+08:00", 1709214449123, 1709214420000, 1709214480000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 21:45:00.000
      {Interval::k3m, "+08:00", 1709214449123, 1709214300000, 1709214480000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 21:45:00.000
      {Interval::k5m, "+08:00", 1709214449123, 1709214300000, 1709214600000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 21:45:00.000
      {Interval::k15m, "+08:00", 1709214449123, 1709214300000, 1709215200000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 21:30:00.000
      {Interval::k30m, "+08:00", 1709214449123, 1709213400000, 1709215200000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 21:00:00.000
      {Interval::k1h, "+08:00", 1709214449123, 1709211600000, 1709215200000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 20:00:00.000
      {Interval::k2h, "+08:00", 1709214449123, 1709208000000, 1709215200000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 20:00:00.000
      {Interval::k4h, "+08:00", 1709214449123, 1709208000000, 1709222400000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 18:00:00.000
      {Interval::k6h, "+08:00", 1709214449123, 1709200800000, 1709222400000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 16:00:00.000
      {Interval::k8h, "+08:00", 1709214449123, 1709193600000, 1709222400000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 12:00:00.000
      {Interval::k12h, "+08:00", 1709214449123, 1709179200000, 1709222400000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 00:00:00.000
      {Interval::k1d, "+08:00", 1709214449123, 1709136000000, 1709222400000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-29 Thu 00:00:00.000
      {Interval::k3d, "+08:00", 1709214449123, 1709136000000, 1709395200000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-26 Mon 00:00:00.000
      {Interval::k1w, "+08:00", 1709214449123, 1708876800000, 1709481600000},
      // local 2024-02-29 Thu 21:47:29.123 -> 2024-02-01 Thu 00:00:00.000
      {Interval::k1M, "+08:00", 1709214449123, 1706716800000, 1709222400000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 08:17:29.000
      {Interval::k1s, "-05:30", 1709214449123, 1709214449000, 1709214450000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 08:17:00.000
      {Interval::k1m, "-05:30", 1709214449123, 1709214420000, 1709214480000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 08:15:00.000
      {Interval::k3m, "-05:30", 1709214449123, 1709214300000, 1709214480000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 08:15:00.000
      {Interval::k5m, "-05:30", 1709214449123, 1709214300000, 1709214600000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 08:15:00.000
      {Interval::k15m, "-05:30", 1709214449123, 1709214300000, 1709215200000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 08:00:00.000
      {Interval::k30m, "-05:30", 1709214449123, 1709213400000, 1709215200000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 08:00:00.000
      {Interval::k1h, "-05:30", 1709214449123, 1709213400000, 1709217000000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 08:00:00.000
      {Interval::k2h, "-05:30", 1709214449123, 1709213400000, 1709220600000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 08:00:00.000
      {Interval::k4h, "-05:30", 1709214449123, 1709213400000, 1709227800000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 06:00:00.000
      {Interval::k6h, "-05:30", 1709214449123, 1709206200000, 1709227800000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 08:00:00.000
      {Interval::k8h, "-05:30", 1709214449123, 1709213400000, 1709242200000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 00:00:00.000
      {Interval::k12h, "-05:30", 1709214449123, 1709184600000, 1709227800000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 00:00:00.000
      {Interval::k1d, "-05:30", 1709214449123, 1709184600000, 1709271000000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-29 Thu 00:00:00.000
      {Interval::k3d, "-05:30", 1709214449123, 1709184600000, 1709443800000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-26 Mon 00:00:00.000
      {Interval::k1w, "-05:30", 1709214449123, 1708925400000, 1709530200000},
      // local 2024-02-29 Thu 08:17:29.123 -> 2024-02-01 Thu 00:00:00.000
      {Interval::k1M, "-05:30", 1709214449123, 1706765400000, 1709271000000},
  };
  for (const AlignCase& c : kCases) CheckAlign(c);
}

TEST_CASE("Interval: epoch, week, month, leap-year and offset boundaries") {
  const AlignCase kCases[] = {
      // local 1970-01-01 Thu 00:00:00.000 -> 1970-01-01 Thu 00:00:00.000; the epoch
      {Interval::k1s, "+00:00", 0, 0, 1000},
      // local 1969-12-31 Wed 23:59:59.999 -> 1969-12-31 Wed 23:59:59.000; just before the epoch
      {Interval::k1s, "+00:00", -1, -1000, 0},
      // local 1970-01-01 Thu 00:00:00.999 -> 1970-01-01 Thu 00:00:00.000
      {Interval::k1s, "+00:00", 999, 0, 1000},
      // local 1970-01-01 Thu 00:00:01.000 -> 1970-01-01 Thu 00:00:01.000
      {Interval::k1s, "+00:00", 1000, 1000, 2000},
      // local 1970-01-01 Thu 00:00:00.000 -> 1970-01-01 Thu 00:00:00.000; the epoch
      {Interval::k1m, "+00:00", 0, 0, 60000},
      // local 1969-12-31 Wed 23:59:59.999 -> 1969-12-31 Wed 23:59:00.000
      {Interval::k1m, "+00:00", -1, -60000, 0},
      // local 1970-01-01 Thu 00:00:59.999 -> 1970-01-01 Thu 00:00:00.000
      {Interval::k1m, "+00:00", 59999, 0, 60000},
      // local 1970-01-01 Thu 00:01:00.000 -> 1970-01-01 Thu 00:01:00.000
      {Interval::k1m, "+00:00", 60000, 60000, 120000},
      // local 1970-01-01 Thu 00:00:00.000 -> 1970-01-01 Thu 00:00:00.000; the epoch
      {Interval::k1d, "+00:00", 0, 0, 86400000},
      // local 1969-12-31 Wed 23:59:59.999 -> 1969-12-31 Wed 00:00:00.000
      {Interval::k1d, "+00:00", -1, -86400000, 0},
      // local 1970-01-01 Thu 08:00:00.000 -> 1970-01-01 Thu 00:00:00.000; epoch is 08:00 local
      {Interval::k1d, "+08:00", 0, -28800000, 57600000},
      // local 1969-12-31 Wed 18:30:00.000 -> 1969-12-31 Wed 00:00:00.000; epoch is the previous
      // local day
      {Interval::k1d, "-05:30", 0, -66600000, 19800000},
      // local 1970-01-01 Thu 00:00:00.000 -> 1970-01-01 Thu 00:00:00.000; the epoch
      {Interval::k3d, "+00:00", 0, 0, 259200000},
      // local 1969-12-31 Wed 23:59:59.999 -> 1969-12-29 Mon 00:00:00.000
      {Interval::k3d, "+00:00", -1, -259200000, 0},
      // local 1970-01-03 Sat 23:59:59.999 -> 1970-01-01 Thu 00:00:00.000
      {Interval::k3d, "+00:00", 259199999, 0, 259200000},
      // local 1970-01-04 Sun 00:00:00.000 -> 1970-01-04 Sun 00:00:00.000
      {Interval::k3d, "+00:00", 259200000, 259200000, 518400000},
      // local 1970-01-01 Thu 00:00:00.000 -> 1969-12-29 Mon 00:00:00.000; 1970-01-01 was a Thursday
      {Interval::k1w, "+00:00", 0, -259200000, 345600000},
      // local 1969-12-31 Wed 23:59:59.999 -> 1969-12-29 Mon 00:00:00.000
      {Interval::k1w, "+00:00", -1, -259200000, 345600000},
      // local 1970-01-04 Sun 23:59:59.999 -> 1969-12-29 Mon 00:00:00.000; Sunday before the first
      // Monday
      {Interval::k1w, "+00:00", 345599999, -259200000, 345600000},
      // local 1970-01-05 Mon 00:00:00.000 -> 1970-01-05 Mon 00:00:00.000; first Monday after the
      // epoch
      {Interval::k1w, "+00:00", 345600000, 345600000, 950400000},
      // local 1970-01-01 Thu 00:00:00.000 -> 1970-01-01 Thu 00:00:00.000; the epoch
      {Interval::k1M, "+00:00", 0, 0, 2678400000},
      // local 1969-12-31 Wed 23:59:59.999 -> 1969-12-01 Mon 00:00:00.000; December 1969
      {Interval::k1M, "+00:00", -1, -2678400000, 0},
      // local 1970-01-01 Thu 07:59:59.999 -> 1970-01-01 Thu 00:00:00.000; already January 1970
      // local
      {Interval::k1M, "+08:00", -1, -28800000, 2649600000},
      // local 1969-12-31 Wed 18:30:00.000 -> 1969-12-01 Mon 00:00:00.000; still December 1969 local
      {Interval::k1M, "-05:30", 0, -2658600000, 19800000},
      // local 2024-11-21 Thu 00:00:59.999 -> 2024-11-21 Thu 00:00:00.000; contract example
      {Interval::k1m, "+00:00", 1732147259999, 1732147200000, 1732147260000},
      // local 2024-11-21 Thu 00:00:00.000 -> 2024-11-21 Thu 00:00:00.000
      {Interval::k1m, "+00:00", 1732147200000, 1732147200000, 1732147260000},
      // local 2024-03-10 Sun 23:59:00.000 -> 2024-03-04 Mon 00:00:00.000; Sunday 23:59 UTC
      {Interval::k1w, "+00:00", 1710115140000, 1709510400000, 1710115200000},
      // local 2024-03-11 Mon 07:59:00.000 -> 2024-03-11 Mon 00:00:00.000; Sunday 23:59 UTC is
      // Monday 07:59 at +08:00
      {Interval::k1w, "+08:00", 1710115140000, 1710086400000, 1710691200000},
      // local 2024-03-10 Sun 23:59:59.999 -> 2024-03-04 Mon 00:00:00.000; Sunday 23:59:59.999 local
      {Interval::k1w, "+08:00", 1710086399999, 1709481600000, 1710086400000},
      // local 2024-03-11 Mon 00:00:00.000 -> 2024-03-11 Mon 00:00:00.000; Monday 00:00 local
      // exactly
      {Interval::k1w, "+08:00", 1710086400000, 1710086400000, 1710691200000},
      // local 2024-03-10 Sun 21:30:00.000 -> 2024-03-04 Mon 00:00:00.000; Monday 03:00 UTC is still
      // Sunday at -05:30
      {Interval::k1w, "-05:30", 1710126000000, 1709530200000, 1710135000000},
      // local 2024-03-11 Mon 00:00:00.000 -> 2024-03-11 Mon 00:00:00.000; Monday 00:00 local
      // exactly
      {Interval::k1w, "-05:30", 1710135000000, 1710135000000, 1710739800000},
      // local 2024-03-10 Sun 23:59:59.999 -> 2024-03-10 Sun 00:00:00.000; last ms of a local day
      {Interval::k1d, "+08:00", 1710086399999, 1710000000000, 1710086400000},
      // local 2024-03-11 Mon 00:00:00.000 -> 2024-03-11 Mon 00:00:00.000; first ms of the next
      // local day
      {Interval::k1d, "+08:00", 1710086400000, 1710086400000, 1710172800000},
      // local 2024-03-10 Sun 03:59:59.999 -> 2024-03-10 Sun 00:00:00.000
      {Interval::k4h, "-05:30", 1710062999999, 1710048600000, 1710063000000},
      // local 2024-03-10 Sun 04:00:00.000 -> 2024-03-10 Sun 04:00:00.000
      {Interval::k4h, "-05:30", 1710063000000, 1710063000000, 1710077400000},
      // local 2024-03-10 Sun 12:00:00.000 -> 2024-03-10 Sun 12:00:00.000; noon local
      {Interval::k12h, "+08:00", 1710043200000, 1710043200000, 1710086400000},
      // local 2023-12-31 Sun 23:59:59.999 -> 2023-12-01 Fri 00:00:00.000; last ms of 2023
      {Interval::k1M, "+00:00", 1704067199999, 1701388800000, 1704067200000},
      // local 2024-01-01 Mon 00:00:00.000 -> 2024-01-01 Mon 00:00:00.000; first ms of 2024
      {Interval::k1M, "+00:00", 1704067200000, 1704067200000, 1706745600000},
      // local 2024-01-01 Mon 00:00:00.000 -> 2024-01-01 Mon 00:00:00.000; 2024-01-01 00:00 local
      {Interval::k1M, "+08:00", 1704038400000, 1704038400000, 1706716800000},
      // local 2023-12-31 Sun 23:59:59.999 -> 2023-12-01 Fri 00:00:00.000; last ms of 2023 local
      {Interval::k1M, "+08:00", 1704038399999, 1701360000000, 1704038400000},
      // local 2023-12-31 Sun 21:30:00.000 -> 2023-12-01 Fri 00:00:00.000; still 2023-12-31 local
      {Interval::k1M, "-05:30", 1704078000000, 1701408600000, 1704087000000},
      // local 2024-02-29 Thu 21:30:00.000 -> 2024-02-01 Thu 00:00:00.000; Feb 29 local in a leap
      // year
      {Interval::k1M, "-05:30", 1709262000000, 1706765400000, 1709271000000},
      // local 2024-02-29 Thu 12:00:00.000 -> 2024-02-01 Thu 00:00:00.000; leap day 2024
      {Interval::k1M, "+00:00", 1709208000000, 1706745600000, 1709251200000},
      // local 2024-03-01 Fri 00:00:00.000 -> 2024-03-01 Fri 00:00:00.000; after leap day 2024
      {Interval::k1M, "+00:00", 1709251200000, 1709251200000, 1711929600000},
      // local 2024-02-29 Thu 23:59:59.999 -> 2024-02-29 Thu 00:00:00.000
      {Interval::k1d, "+00:00", 1709251199999, 1709164800000, 1709251200000},
      // local 2000-02-29 Tue 12:00:00.000 -> 2000-02-01 Tue 00:00:00.000; 2000 is a leap year
      // (divisible by 400)
      {Interval::k1M, "+00:00", 951825600000, 949363200000, 951868800000},
      // local 2100-02-28 Sun 23:59:59.999 -> 2100-02-01 Mon 00:00:00.000; 2100 is not a leap year
      {Interval::k1M, "+00:00", 4107542399999, 4105123200000, 4107542400000},
      // local 2100-03-01 Mon 00:00:00.000 -> 2100-03-01 Mon 00:00:00.000
      {Interval::k1M, "+00:00", 4107542400000, 4107542400000, 4110220800000},
      // local 2100-02-28 Sun 23:59:59.999 -> 2100-02-28 Sun 00:00:00.000; next day is Mar 1 in 2100
      {Interval::k1d, "+00:00", 4107542399999, 4107456000000, 4107542400000},
      // local 1900-02-28 Wed 12:00:00.000 -> 1900-02-01 Thu 00:00:00.000; 1900 is not a leap year;
      // negative time
      {Interval::k1M, "+00:00", -2203934400000, -2206310400000, -2203891200000},
      // local 1900-01-01 Mon 12:00:00.000 -> 1900-01-01 Mon 00:00:00.000; 1900-01-01 was a Monday
      {Interval::k1w, "+00:00", -2208945600000, -2208988800000, -2208384000000},
      // local 1900-01-01 Mon 06:30:00.000 -> 1899-12-30 Sat 00:00:00.000
      {Interval::k3d, "-05:30", -2208945600000, -2209141800000, -2208882600000},
      // local 2096-03-01 Thu 04:00:00.000 -> 2096-03-01 Thu 00:00:00.000; leap day 2096 is Mar 1
      // local
      {Interval::k1M, "+08:00", 3981384000000, 3981369600000, 3984048000000},
      // local 2109-05-15 Wed 07:35:11.104 -> 2109-05-01 Wed 00:00:00.000; t = 2^42
      {Interval::k1M, "+00:00", 4398046511104, 4396809600000, 4399488000000},
      // local 2109-05-15 Wed 02:05:11.104 -> 2109-05-13 Mon 00:00:00.000
      {Interval::k1w, "-05:30", 4398046511104, 4397866200000, 4398471000000},
      // local 2109-05-15 Wed 15:35:11.104 -> 2109-05-13 Mon 00:00:00.000
      {Interval::k3d, "+08:00", 4398046511104, 4397817600000, 4398076800000},
  };
  for (const AlignCase& c : kCases) CheckAlign(c);
}

TEST_CASE("Interval: BucketsBetween counts months arithmetically") {
  struct Case {
    Interval iv;
    const char* tz;
    int64_t from;
    int64_t to;
    int64_t steps;
  };
  // Month opens computed with Python's datetime(y, m, 1) minus the offset.
  const Case kCases[] = {
      {Interval::k1M, "+00:00", 1698796800000, 1709251200000, 4},     // 2023-11 -> 2024-03 local
      {Interval::k1M, "+08:00", 1701360000000, 1704038400000, 1},     // 2023-12 -> 2024-01 local
      {Interval::k1M, "-05:30", 1704087000000, 1706765400000, 1},     // 2024-01 -> 2024-02 local
      {Interval::k1M, "+00:00", 0, 4107542400000, 1562},              // 1970-01 -> 2100-03 local
      {Interval::k1M, "+00:00", -2678400000, 0, 1},                   // 1969-12 -> 1970-01 local
      {Interval::k1M, "+00:00", -2206310400000, 949363200000, 1200},  // 1900-02 -> 2000-02 local
      {Interval::k1M, "-05:30", 1706765400000, 1706765400000, 0},     // 2024-02 -> 2024-02 local
  };
  for (const Case& c : kCases) {
    CAPTURE(c.tz);
    CAPTURE(c.from);
    CAPTURE(c.to);
    CHECK(BucketsBetween(c.iv, c.from, c.to, Tz(c.tz)) == c.steps);
  }
}

TEST_CASE("Interval: month close times follow month lengths and leap years") {
  struct Case {
    const char* tz;
    int64_t open;
    int64_t close;
  };
  // Open of the local month and its last ms, from Python's datetime.
  const Case kCases[] = {
      {"+00:00", 1706745600000, 1709251199999},    // 2024-02: 29 days
      {"+00:00", 1675209600000, 1677628799999},    // 2023-02: 28 days
      {"+00:00", 949363200000, 951868799999},      // 2000-02: 29 days
      {"+00:00", 4105123200000, 4107542399999},    // 2100-02: 28 days
      {"+00:00", -2206310400000, -2203891200001},  // 1900-02: 28 days
      {"+00:00", 1701388800000, 1704067199999},    // 2023-12: 31 days
      {"+00:00", 1711929600000, 1714521599999},    // 2024-04: 30 days
      {"+00:00", 1704067200000, 1706745599999},    // 2024-01: 31 days
      {"+08:00", 1706716800000, 1709222399999},    // 2024-02: 29 days
      {"+08:00", 1675180800000, 1677599999999},    // 2023-02: 28 days
      {"+08:00", 949334400000, 951839999999},      // 2000-02: 29 days
      {"+08:00", 4105094400000, 4107513599999},    // 2100-02: 28 days
      {"+08:00", -2206339200000, -2203920000001},  // 1900-02: 28 days
      {"+08:00", 1701360000000, 1704038399999},    // 2023-12: 31 days
      {"+08:00", 1711900800000, 1714492799999},    // 2024-04: 30 days
      {"+08:00", 1704038400000, 1706716799999},    // 2024-01: 31 days
      {"-05:30", 1706765400000, 1709270999999},    // 2024-02: 29 days
      {"-05:30", 1675229400000, 1677648599999},    // 2023-02: 28 days
      {"-05:30", 949383000000, 951888599999},      // 2000-02: 29 days
      {"-05:30", 4105143000000, 4107562199999},    // 2100-02: 28 days
      {"-05:30", -2206290600000, -2203871400001},  // 1900-02: 28 days
      {"-05:30", 1701408600000, 1704086999999},    // 2023-12: 31 days
      {"-05:30", 1711949400000, 1714541399999},    // 2024-04: 30 days
      {"-05:30", 1704087000000, 1706765399999},    // 2024-01: 31 days
  };
  for (const Case& c : kCases) {
    CAPTURE(c.tz);
    CAPTURE(c.open);
    const UtcOffset tz = Tz(c.tz);
    CHECK(BucketOpen(Interval::k1M, c.open, tz) == c.open);
    CHECK(BucketClose(Interval::k1M, c.open, tz) == c.close);
    CHECK(BucketOpen(Interval::k1M, c.close, tz) == c.open);
    CHECK(BucketsBetween(Interval::k1M, c.open, c.close + 1, tz) == 1);
  }
}

TEST_CASE("Interval: BucketsBetween for fixed-length intervals") {
  const UtcOffset utc = Tz("+00:00");
  const UtcOffset plus8 = Tz("+08:00");
  CHECK(BucketsBetween(Interval::k1m, 0, 0, utc) == 0);
  CHECK(BucketsBetween(Interval::k1m, 0, 60'000, utc) == 1);
  CHECK(BucketsBetween(Interval::k1m, -60'000, 60'000, utc) == 2);
  CHECK(BucketsBetween(Interval::k1s, 0, 86'400'000, utc) == 86'400);
  CHECK(BucketsBetween(Interval::k1d, 0, 366 * kDayMs, utc) == 366);
  CHECK(BucketsBetween(Interval::k3d, 0, 30 * kDayMs, utc) == 10);
  // 1w at +08:00: 2024-03-10 16:00 UTC (Monday 00:00 local) to 2024-12-29 16:00 UTC (Monday
  // 2024-12-30 00:00 local) is 42 weeks.
  CHECK(BucketsBetween(Interval::k1w, 1710086400000, 1710086400000 + 42 * 7 * kDayMs, plus8) == 42);
  // 12h across the 2023 -> 2024 year end at +08:00: 2023-12-31 12:00 local to 2024-01-01
  // 12:00 local.
  CHECK(BucketsBetween(Interval::k12h, 1703995200000, 1704081600000, plus8) == 2);
}

TEST_CASE("Interval: NextBucketOpen walks months across Dec->Jan and leap Februaries") {
  // Month opens at +08:00 from Python: 2023-11-01 .. 2024-04-01 local.
  const UtcOffset tz = Tz("+08:00");
  const int64_t kOpens[] = {1698768000000, 1701360000000, 1704038400000,
                            1706716800000, 1709222400000, 1711900800000};
  for (size_t i = 0; i + 1 < std::size(kOpens); ++i) {
    CAPTURE(i);
    CHECK(NextBucketOpen(Interval::k1M, kOpens[i], tz) == kOpens[i + 1]);
    CHECK(BucketsBetween(Interval::k1M, kOpens[0], kOpens[i], tz) == static_cast<int64_t>(i));
  }
}

TEST_CASE("Interval: randomized open <= t < next and idempotence") {
  std::mt19937_64 rng(20240229);
  std::uniform_int_distribution<int64_t> time_dist(0, int64_t{1} << 42);
  // Every valid offset is a whole number of minutes in [-23:59, +23:59].
  std::uniform_int_distribution<int64_t> offset_minutes(-(23 * 60 + 59), 23 * 60 + 59);
  std::vector<UtcOffset> offsets = {Tz("+00:00"), Tz("+08:00"), Tz("-05:30"), Tz("+23:59"),
                                    Tz("-23:59")};
  for (int i = 0; i < 8; ++i) offsets.push_back(UtcOffset{offset_minutes(rng) * 60'000});

  for (int i = 0; i < 20'000; ++i) {
    const int64_t t = i < 2 ? (i == 0 ? 0 : int64_t{1} << 42) : time_dist(rng);
    const UtcOffset tz = offsets[static_cast<size_t>(i) % offsets.size()];
    for (Interval iv : kAllIntervals) {
      const int64_t open = BucketOpen(iv, t, tz);
      const int64_t next = NextBucketOpen(iv, open, tz);
      if (!(open <= t && t < next)) {
        CAPTURE(IntervalName(iv));
        CAPTURE(t);
        CAPTURE(tz.ms);
        FAIL("t outside its bucket: open " << open << " next " << next);
      }
      if (BucketOpen(iv, open, tz) != open || BucketOpen(iv, next, tz) != next ||
          BucketOpen(iv, next - 1, tz) != open || BucketsBetween(iv, open, next, tz) != 1) {
        CAPTURE(IntervalName(iv));
        CAPTURE(t);
        CAPTURE(tz.ms);
        FAIL("bucket not idempotent or not contiguous: open " << open << " next " << next);
      }
    }
    // Local alignment, checked from the definition rather than the implementation's route.
    const int64_t local_day_open = BucketOpen(Interval::k1d, t, tz) + tz.ms;
    CHECK(local_day_open % kDayMs == 0);
    // 1970-01-05 was a Monday: weeks open at 4 days past a multiple of 7 days, local.
    const int64_t local_week_open = BucketOpen(Interval::k1w, t, tz) + tz.ms;
    CHECK(((local_week_open - 4 * kDayMs) % (7 * kDayMs) + 7 * kDayMs) % (7 * kDayMs) == 0);
  }
}

TEST_CASE("Interval: randomized BucketsBetween agrees with stepping") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> time_dist(-(int64_t{1} << 42), int64_t{1} << 42);
  std::uniform_int_distribution<int64_t> step_dist(0, 40);
  const UtcOffset offsets[] = {Tz("+00:00"), Tz("+08:00"), Tz("-05:30")};
  for (int i = 0; i < 2'000; ++i) {
    const UtcOffset tz = offsets[i % 3];
    const Interval iv = kAllIntervals[static_cast<size_t>(i) % kAllIntervals.size()];
    const int64_t from = BucketOpen(iv, time_dist(rng), tz);
    const int64_t steps = step_dist(rng);
    int64_t to = from;
    for (int64_t s = 0; s < steps; ++s) to = NextBucketOpen(iv, to, tz);
    CAPTURE(IntervalName(iv));
    CAPTURE(from);
    CAPTURE(tz.ms);
    CHECK(BucketsBetween(iv, from, to, tz) == steps);
  }
}

TEST_CASE("Interval: BucketOpen does not overflow at the ends of the int64 range") {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kLongestBucketMs = 31 * kDayMs;
  for (const char* text : {"+00:00", "+23:59", "-23:59", "+08:00", "-05:30"}) {
    const UtcOffset tz = Tz(text);
    for (Interval iv : kAllIntervals) {
      CAPTURE(IntervalName(iv));
      CAPTURE(text);
      const int64_t open = BucketOpen(iv, kMax, tz);
      CHECK(open <= kMax);
      CHECK(open > kMax - kLongestBucketMs);
      CHECK(BucketOpen(iv, open, tz) == open);
      // Far enough from INT64_MIN that the bucket open is representable.
      const int64_t low = kMin + kLongestBucketMs;
      const int64_t low_open = BucketOpen(iv, low, tz);
      CHECK(low_open <= low);
      CHECK(NextBucketOpen(iv, low_open, tz) > low);
      CHECK(BucketOpen(iv, low_open, tz) == low_open);
    }
  }
}

TEST_CASE("Interval: negative times use floor semantics") {
  const UtcOffset utc = Tz("+00:00");
  for (Interval iv : kAllIntervals) {
    CAPTURE(IntervalName(iv));
    const int64_t open = BucketOpen(iv, -1, utc);
    CHECK(open < 0);
    if (iv == Interval::k1w) {
      // The epoch fell on a Thursday, so -1 and 0 share the week of Monday 1969-12-29.
      CHECK(open == -3 * kDayMs);
      CHECK(BucketOpen(iv, 0, utc) == open);
    } else {
      // Every other interval has a bucket opening at the epoch itself.
      CHECK(BucketOpen(iv, 0, utc) == 0);
      CHECK(NextBucketOpen(iv, open, utc) == 0);
    }
  }
}

}  // namespace
}  // namespace klined

namespace klined {

TEST_CASE("interval: Nests says which intervals' buckets are unions of another's") {
  CHECK(Nests(Interval::k1m, Interval::k5m));
  CHECK(Nests(Interval::k1s, Interval::k1M));
  CHECK(Nests(Interval::k1h, Interval::k1d));
  CHECK(Nests(Interval::k12h, Interval::k1d));
  CHECK(Nests(Interval::k1d, Interval::k3d));
  CHECK(Nests(Interval::k1d, Interval::k1w));
  CHECK(Nests(Interval::k8h, Interval::k1M));
  CHECK(Nests(Interval::k3m, Interval::k15m));
  CHECK_FALSE(Nests(Interval::k3m, Interval::k5m));
  CHECK_FALSE(Nests(Interval::k1m, Interval::k1m));
  CHECK_FALSE(Nests(Interval::k5m, Interval::k1m));
  CHECK_FALSE(Nests(Interval::k3d, Interval::k1w));
  CHECK_FALSE(Nests(Interval::k1w, Interval::k1M));
  CHECK_FALSE(Nests(Interval::k1M, Interval::k1M));
  // Every fine bucket that starts inside a coarse bucket ends inside it, in any offset.
  for (const UtcOffset tz :
       {UtcOffset{0}, UtcOffset{8 * 3600000}, UtcOffset{-(5 * 3600000 + 1800000)}}) {
    for (Interval fine : kAllIntervals) {
      for (Interval coarse : kAllIntervals) {
        if (!Nests(fine, coarse)) continue;
        CAPTURE(IntervalName(fine));
        CAPTURE(IntervalName(coarse));
        const int64_t open = BucketOpen(coarse, 1732147200000 + 12345678, tz);
        const int64_t next = NextBucketOpen(coarse, open, tz);
        CHECK(BucketOpen(fine, open, tz) == open);
        CHECK(BucketOpen(fine, next, tz) == next);
      }
    }
  }
}

}  // namespace klined
