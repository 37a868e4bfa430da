// Bucket arithmetic for K-line intervals under a fixed UTC offset.
//
// DESIGN
// BucketOpen runs once per trade per interval, so it does no loops, no I/O, no allocation and
// no libc time calls. Fixed-length intervals (1s .. 3d, and 1w with its Monday anchor) are a
// floor-modulo by a compile-time constant, which the compiler turns into a multiply. 1M is
// the only calendar interval: it converts a day number to a civil date with Howard Hinnant's
// civil_from_days / days_from_civil (proleptic Gregorian, exact for every int64 day count we
// can reach), which are branch-light integer formulas without tables.
//
// Overflow: the local time t + offset is never formed as one sum. Instead each operand is
// reduced modulo the bucket length (or the day) first, so every intermediate stays within a
// couple of bucket lengths and BucketOpen is exact for every t whose bucket open is itself
// representable as an int64: all t >= 0, up to INT64_MAX, and any negative t not within one
// bucket of INT64_MIN. NextBucketOpen is open + length and so needs the next open to fit.
#include "klined/interval.h"
#include "core/civil_date.h"

namespace klined {
namespace {

constexpr int64_t kSecondMs = 1000;
constexpr int64_t kMinuteMs = 60 * kSecondMs;
constexpr int64_t kHourMs = 60 * kMinuteMs;
constexpr int64_t kDayMs = 24 * kHourMs;
constexpr int64_t kWeekMs = 7 * kDayMs;
// Fixed-length buckets are aligned at 1970-01-01 00:00 local, except 1w, aligned at Monday
// 00:00 local; 1970-01-05 was the first Monday after the epoch (1970-01-01 was a Thursday).
constexpr int64_t kWeekAnchorMs = 4 * kDayMs;

constexpr std::array<std::string_view, kIntervalCount> kNames = {
    "1s", "1m", "3m", "5m",  "15m", "30m", "1h", "2h",
    "4h", "6h", "8h", "12h", "1d",  "3d",  "1w", "1M",
};

// Floor modulo for a positive divisor: the result is in [0, d).
constexpr int64_t FloorMod(int64_t x, int64_t d) {
  const int64_t r = x % d;
  return r < 0 ? r + d : r;
}

// Floor division for a positive divisor.
constexpr int64_t FloorDiv(int64_t x, int64_t d) {
  const int64_t q = x / d;
  return (x % d < 0) ? q - 1 : q;
}

// Open of the fixed-length bucket holding t, buckets aligned so that one opens at local time
// `anchor` (ms after 1970-01-01 00:00 local). kLen is a template argument so the modulo by it
// compiles to a multiply. Equivalent to t - floor_mod(t + tz - anchor, kLen), computed without
// forming t + tz.
template <int64_t kLen>
int64_t FixedOpen(int64_t t, int64_t tz, int64_t anchor) {
  const int64_t shift = FloorMod(tz, kLen) - FloorMod(anchor, kLen);  // in (-kLen, kLen)
  int64_t into = FloorMod(t, kLen) + shift;  // in (-kLen, 2 * kLen): one correction suffices
  if (into < 0) {
    into += kLen;
  } else if (into >= kLen) {
    into -= kLen;
  }
  return t - into;
}

using civil::CivilDate;
using civil::CivilFromDays;
using civil::DaysFromCivil;

// The local calendar day holding t and how far into it t lies, without forming t + tz.
struct LocalDay {
  int64_t days;   // days since 1970-01-01 local
  int64_t ms_in;  // [0, kDayMs)
};
constexpr LocalDay ToLocalDay(int64_t t, int64_t tz) {
  const int64_t ms = FloorMod(t, kDayMs) + FloorMod(tz, kDayMs);  // [0, 2 * kDayMs)
  const int64_t carry = ms >= kDayMs ? 1 : 0;
  return {FloorDiv(t, kDayMs) + FloorDiv(tz, kDayMs) + carry, ms - carry * kDayMs};
}

// Month index (year * 12 + month - 1) of the local month holding t.
int64_t LocalMonthIndex(int64_t t, int64_t tz) {
  const CivilDate c = CivilFromDays(ToLocalDay(t, tz).days);
  return c.year * 12 + static_cast<int64_t>(c.month) - 1;
}

int64_t MonthOpen(int64_t t, int64_t tz) {
  const LocalDay local = ToLocalDay(t, tz);
  const CivilDate c = CivilFromDays(local.days);
  return t - local.ms_in - static_cast<int64_t>(c.day - 1) * kDayMs;
}

int64_t NextMonthOpen(int64_t t, int64_t tz) {
  const LocalDay local = ToLocalDay(t, tz);
  const CivilDate c = CivilFromDays(local.days);
  const int64_t next_days =
      c.month == 12 ? DaysFromCivil(c.year + 1, 1, 1) : DaysFromCivil(c.year, c.month + 1, 1);
  return t - local.ms_in + (next_days - local.days) * kDayMs;
}

// Length of a fixed-length interval; 0 for 1M.
constexpr int64_t FixedLength(Interval iv) {
  switch (iv) {
    case Interval::k1s:
      return kSecondMs;
    case Interval::k1m:
      return kMinuteMs;
    case Interval::k3m:
      return 3 * kMinuteMs;
    case Interval::k5m:
      return 5 * kMinuteMs;
    case Interval::k15m:
      return 15 * kMinuteMs;
    case Interval::k30m:
      return 30 * kMinuteMs;
    case Interval::k1h:
      return kHourMs;
    case Interval::k2h:
      return 2 * kHourMs;
    case Interval::k4h:
      return 4 * kHourMs;
    case Interval::k6h:
      return 6 * kHourMs;
    case Interval::k8h:
      return 8 * kHourMs;
    case Interval::k12h:
      return 12 * kHourMs;
    case Interval::k1d:
      return kDayMs;
    case Interval::k3d:
      return 3 * kDayMs;
    case Interval::k1w:
      return kWeekMs;
    case Interval::k1M:
      return 0;
  }
  return 0;
}

constexpr bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::string_view IntervalName(Interval iv) {
  const auto i = static_cast<size_t>(iv);
  return i < kNames.size() ? kNames[i] : std::string_view();
}

std::optional<Interval> ParseInterval(std::string_view name) {
  for (Interval iv : kAllIntervals) {
    if (kNames[static_cast<size_t>(iv)] == name) return iv;
  }
  return std::nullopt;
}

std::optional<UtcOffset> ParseUtcOffset(std::string_view text) {
  if (text.size() != 6 || (text[0] != '+' && text[0] != '-') || text[3] != ':') {
    return std::nullopt;
  }
  if (!IsDigit(text[1]) || !IsDigit(text[2]) || !IsDigit(text[4]) || !IsDigit(text[5])) {
    return std::nullopt;
  }
  const int hh = (text[1] - '0') * 10 + (text[2] - '0');
  const int mm = (text[4] - '0') * 10 + (text[5] - '0');
  if (hh > 23 || mm > 59) return std::nullopt;
  const int64_t ms = hh * kHourMs + mm * kMinuteMs;
  return UtcOffset{text[0] == '-' ? -ms : ms};
}

int64_t BucketOpen(Interval iv, int64_t t_ms, UtcOffset tz) {
  // One case per interval so each modulo is by a constant.
  switch (iv) {
    case Interval::k1s:
      return FixedOpen<kSecondMs>(t_ms, tz.ms, 0);
    case Interval::k1m:
      return FixedOpen<kMinuteMs>(t_ms, tz.ms, 0);
    case Interval::k3m:
      return FixedOpen<3 * kMinuteMs>(t_ms, tz.ms, 0);
    case Interval::k5m:
      return FixedOpen<5 * kMinuteMs>(t_ms, tz.ms, 0);
    case Interval::k15m:
      return FixedOpen<15 * kMinuteMs>(t_ms, tz.ms, 0);
    case Interval::k30m:
      return FixedOpen<30 * kMinuteMs>(t_ms, tz.ms, 0);
    case Interval::k1h:
      return FixedOpen<kHourMs>(t_ms, tz.ms, 0);
    case Interval::k2h:
      return FixedOpen<2 * kHourMs>(t_ms, tz.ms, 0);
    case Interval::k4h:
      return FixedOpen<4 * kHourMs>(t_ms, tz.ms, 0);
    case Interval::k6h:
      return FixedOpen<6 * kHourMs>(t_ms, tz.ms, 0);
    case Interval::k8h:
      return FixedOpen<8 * kHourMs>(t_ms, tz.ms, 0);
    case Interval::k12h:
      return FixedOpen<12 * kHourMs>(t_ms, tz.ms, 0);
    case Interval::k1d:
      return FixedOpen<kDayMs>(t_ms, tz.ms, 0);
    case Interval::k3d:
      return FixedOpen<3 * kDayMs>(t_ms, tz.ms, 0);
    case Interval::k1w:
      return FixedOpen<kWeekMs>(t_ms, tz.ms, kWeekAnchorMs);
    case Interval::k1M:
      return MonthOpen(t_ms, tz.ms);
  }
  return t_ms;  // unreachable for a valid Interval
}

int64_t NextBucketOpen(Interval iv, int64_t open_ms, UtcOffset tz) {
  if (iv == Interval::k1M) return NextMonthOpen(open_ms, tz.ms);
  return open_ms + FixedLength(iv);
}

int64_t BucketsBetween(Interval iv, int64_t from_open, int64_t to_open, UtcOffset tz) {
  if (iv == Interval::k1M)
    return LocalMonthIndex(to_open, tz.ms) - LocalMonthIndex(from_open, tz.ms);
  return (to_open - from_open) / FixedLength(iv);
}

bool Nests(Interval fine, Interval coarse) {
  if (fine == coarse || fine == Interval::k1M) return false;
  const int64_t f = FixedLength(fine);
  if (coarse == Interval::k1M || coarse == Interval::k1w) {
    return fine != Interval::k1w && kDayMs % f == 0;
  }
  const int64_t c = FixedLength(coarse);
  return fine != Interval::k1w && c > f && c % f == 0;
}

}  // namespace klined
