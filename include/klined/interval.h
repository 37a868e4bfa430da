// K-line intervals and bucket arithmetic under a fixed UTC offset.
//
// DESIGN
// Buckets are aligned in local time (UTC + offset): fixed-length intervals from 1970-01-01
// 00:00 local, 1w from Monday 00:00 local, 1M from the 1st of the month 00:00 local. All
// times are ms since the Unix epoch (UTC); open_time is the bucket start and close_time the
// next bucket's start - 1. Pure functions of (interval, time, offset): no state, no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace klined {

enum class Interval : uint8_t {
  k1s,
  k1m,
  k3m,
  k5m,
  k15m,
  k30m,
  k1h,
  k2h,
  k4h,
  k6h,
  k8h,
  k12h,
  k1d,
  k3d,
  k1w,
  k1M,
};
inline constexpr int kIntervalCount = 16;

inline constexpr std::array<Interval, kIntervalCount> kAllIntervals = {
    Interval::k1s, Interval::k1m, Interval::k3m, Interval::k5m, Interval::k15m, Interval::k30m,
    Interval::k1h, Interval::k2h, Interval::k4h, Interval::k6h, Interval::k8h,  Interval::k12h,
    Interval::k1d, Interval::k3d, Interval::k1w, Interval::k1M,
};

// "1s", "1m", ... "1w", "1M" (case-sensitive: "1m" is a minute, "1M" a month).
std::string_view IntervalName(Interval iv);
std::optional<Interval> ParseInterval(std::string_view name);

// A fixed offset from UTC, e.g. +08:00 or -05:30, in ms.
struct UtcOffset {
  int64_t ms = 0;
  friend constexpr bool operator==(UtcOffset, UtcOffset) = default;
};
// Accepts exactly `+HH:MM` or `-HH:MM` with HH <= 23 and MM <= 59 ("Z" is not accepted).
std::optional<UtcOffset> ParseUtcOffset(std::string_view text);

// Open time of the bucket holding time t_ms. Defined for every int64 time a trade can carry
// (t >= 0) and for negative times too (floor semantics).
int64_t BucketOpen(Interval iv, int64_t t_ms, UtcOffset tz);
// Open time of the bucket after the one that opens at open_ms (open_ms must be a bucket open).
int64_t NextBucketOpen(Interval iv, int64_t open_ms, UtcOffset tz);
// Close time of the bucket that opens at open_ms: NextBucketOpen - 1.
inline int64_t BucketClose(Interval iv, int64_t open_ms, UtcOffset tz) {
  return NextBucketOpen(iv, open_ms, tz) - 1;
}
// True if every bucket of `coarse` is a union of whole buckets of `fine` (fine != coarse), in
// every offset: fixed lengths dividing each other (all aligned at 1970-01-01 00:00 local), or
// a fine length dividing a day for 1w (Monday 00:00 local) and 1M. Lets a candle of coarse
// be rebuilt exactly by merging fine's candles in its bucket.
bool Nests(Interval fine, Interval coarse);

// Number of bucket steps from the bucket opening at from_open to the one opening at to_open
// (both bucket opens, from_open <= to_open): 0 for the same bucket, 1 for the next one, ...
// The empty buckets strictly between them number BucketsBetween - 1.
int64_t BucketsBetween(Interval iv, int64_t from_open, int64_t to_open, UtcOffset tz);

}  // namespace klined
