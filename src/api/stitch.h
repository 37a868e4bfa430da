// Binance's range rules over klined's two stores: the rows of one GET /api/v3/klines, from a
// Redis part (the current candle and the history members of the range, all at or after the
// seam) and MySQL below the seam. One function for the two callers: MarketReader (a Redis
// snapshot read) and CandleCache (the same rows kept in the L1 cache, MySQL pages cached).
//
// Rules (see market_reader.h): startTime given = the oldest `limit` rows with open time in
// [startTime, endTime]; otherwise the newest `limit` with open time <= endTime. Ascending,
// the current candle last when in range. MySQL is asked only for open times below the seam,
// so rows never repeat and never skip there.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "klined/interval.h"

namespace klined::api {

inline constexpr int64_t kMinTime = std::numeric_limits<int64_t>::min();
inline constexpr int64_t kMaxTime = std::numeric_limits<int64_t>::max();

struct RangeQuery {
  std::string_view symbol;
  Interval interval = Interval::k1m;
  std::optional<int64_t> start_ms;
  std::optional<int64_t> end_ms;
  size_t limit = 500;
};

enum class ReadStatus : uint8_t { kOk, kRedisDown, kMysqlDown };

// Row: any type open_of(row) gives the open time of. `rows` are the Redis part's history rows
// of the range, ascending: startTime given, the first `limit` at or after it; otherwise the
// last `limit` at or before endTime. `range_members` is how many members the range read
// returned (unparsable ones included: they mean Redis did not run out). `current` may be null.
// fetch(lo, hi, limit, newest_first, std::vector<Row>* out) reads MySQL's rows of open times
// [lo, hi], ascending into *out, and returns a ReadStatus; its failure is the result.
template <class Row, class OpenOf, class Fetch>
ReadStatus Stitch(const RangeQuery& q, const Row* current, int64_t seam, std::span<const Row> rows,
                  size_t range_members, OpenOf open_of, Fetch&& fetch, std::vector<Row>* out) {
  out->clear();
  if (q.limit == 0) return ReadStatus::kOk;
  const int64_t lo = q.start_ms.value_or(kMinTime);
  const int64_t hi = q.end_ms.value_or(kMaxTime);
  if (lo > hi) return ReadStatus::kOk;
  const bool current_in_range =
      current != nullptr && open_of(*current) >= lo && open_of(*current) <= hi;
  auto before_current = [&] { return out->empty() || open_of(out->back()) < open_of(*current); };

  if (q.start_ms) {
    // MySQL first (open times before the seam), then Redis history, then the current candle.
    if (lo < seam) {
      const ReadStatus s = fetch(lo, std::min(hi, seam - 1), q.limit, /*newest_first=*/false, out);
      if (s != ReadStatus::kOk) return s;
    }
    for (const Row& r : rows) {
      if (out->size() >= q.limit) break;
      if (open_of(r) >= seam && (out->empty() || open_of(out->back()) < open_of(r))) {
        out->push_back(r);
      }
    }
    if (current_in_range && out->size() < q.limit && before_current()) out->push_back(*current);
    return ReadStatus::kOk;
  }

  // Newest `limit`: the current candle, then history downwards, then MySQL below the seam when
  // Redis ran out before `limit`.
  const size_t have = rows.size() + (current_in_range ? 1 : 0);
  if (have < q.limit && range_members < q.limit) {
    const int64_t mysql_hi = std::min(hi, seam - 1);
    if (mysql_hi >= lo) {
      const ReadStatus s = fetch(lo, mysql_hi, q.limit - have, /*newest_first=*/true, out);
      if (s != ReadStatus::kOk) return s;
    }
  }
  for (const Row& r : rows) {
    if (open_of(r) >= seam && (out->empty() || open_of(out->back()) < open_of(r))) {
      out->push_back(r);
    }
  }
  if (current_in_range && before_current()) out->push_back(*current);
  if (out->size() > q.limit) {
    out->erase(out->begin(), out->end() - static_cast<ptrdiff_t>(q.limit));
  }
  return ReadStatus::kOk;
}

}  // namespace klined::api
