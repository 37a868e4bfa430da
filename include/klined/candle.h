// One K-line (OHLCV candle) and its merge algebra.
//
// DESIGN
// A Candle's trade aggregate is a commutative monoid keyed by trade id: open/close are the
// prices of the lowest/highest trade id, high/low the max/min price, volumes and counts sums.
// Merge(a, b) therefore never depends on arrival order or batching, which is what lets shards
// merge batches and lets a late trade be folded into a stored candle exactly.
// The identity is the empty candle (n = 0). An empty candle still carries prices: every
// o/h/l/c equals the close of the previous candle of the series (the "carry"); the carry is
// not part of the monoid: merging two empty candles keeps the first one's carry.
// Sums are checked: a result past 20 integer digits is refused (out_of_range), never wrapped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "klined/decimal.h"
#include "klined/interval.h"
#include "klined/trade.h"

namespace klined {

struct Candle {
  int64_t open_time = 0;   // bucket start, ms UTC
  int64_t close_time = 0;  // next bucket start - 1
  Interval interval = Interval::k1m;
  TradeId first_id = kNoTradeId;  // f; -1 when empty
  TradeId last_id = kNoTradeId;   // L; -1 when empty
  Decimal open, high, low, close;
  Decimal volume;              // v: sum qty
  Decimal quote_volume;        // q: sum price x qty
  Decimal taker_volume;        // V: sum qty over trades with buyer_maker false
  Decimal taker_quote_volume;  // Q: the same for price x qty
  int64_t count = 0;           // n

  bool empty() const { return count == 0; }

  // An empty candle for the bucket opening at open_time, carrying `carry` as o/h/l/c.
  static Candle Empty(Interval iv, int64_t open_time, UtcOffset tz, Decimal carry);

  // Folds one trade in (the trade's time must fall in this bucket; the caller checks).
  // Returns false, leaving the candle unchanged, if a sum would pass 20 integer digits.
  [[nodiscard]] bool Apply(const Trade& t);

  friend bool operator==(const Candle&, const Candle&) = default;
};

// a + b for candles of the same bucket (same interval and open_time). False, with *out
// untouched, if a sum would pass 20 integer digits. out may alias a or b.
[[nodiscard]] bool Merge(const Candle& a, const Candle& b, Candle* out);

// The contract's candle JSON, byte for byte:
// {"t":..,"T":..,"s":"SYM","i":"1m","f":..,"L":..,"o":"..","h":"..","l":"..","c":"..",
//  "v":"..","q":"..","V":"..","Q":"..","n":..,"x":false}
void AppendCandleJson(const Candle& c, std::string_view symbol, bool closed, std::string* out);
std::string CandleJson(const Candle& c, std::string_view symbol, bool closed);

// Parses candle JSON as written by AppendCandleJson (fields in any order; unknown fields are
// an error). On success fills *out, *symbol (a view into json) and *closed.
bool ParseCandleJson(std::string_view json, Candle* out, std::string_view* symbol, bool* closed);

}  // namespace klined
