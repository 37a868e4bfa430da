// A trade as the engine sees it, after decoding and validation.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "klined/decimal.h"

namespace klined {

using TradeId = int64_t;
inline constexpr TradeId kNoTradeId = -1;  // f/L of an empty candle
inline constexpr int32_t kNoSource = -1;   // Trade::source of a trade from no partition

// A symbol held inline (1..32 chars of A-Z a-z 0-9 . _ -), so a Trade is a flat value that
// moves through lock-free queues without allocation.
class Symbol {
 public:
  static constexpr size_t kMaxLen = 32;
  Symbol() = default;
  // Callers validate first (IsValidSymbol); longer input is truncated, never overflowed.
  explicit Symbol(std::string_view s) {
    len_ = static_cast<uint8_t>(s.size() < kMaxLen ? s.size() : kMaxLen);
    std::memcpy(data_, s.data(), len_);
  }
  std::string_view view() const { return {data_, len_}; }
  friend bool operator==(const Symbol& a, const Symbol& b) { return a.view() == b.view(); }

 private:
  char data_[kMaxLen] = {};
  uint8_t len_ = 0;
};

bool IsValidSymbol(std::string_view s);

struct Trade {
  Decimal price;             // > 0
  Decimal qty;               // > 0, base quantity
  Decimal quote;             // price x qty, exact
  TradeId id = 0;            // 1 .. 2^63-1, increasing per symbol
  int64_t time_ms = 0;       // trade time, ms since the Unix epoch (UTC), >= 0
  bool buyer_maker = false;  // true: the seller was the taker (not counted in V/Q)
  // The input stream the trade came from (its Kafka partition; kNoSource when none, e.g. a
  // tool): watermarks are kept per source, since only one source's trades come in id order.
  int32_t source = kNoSource;
  Symbol symbol;

  friend bool operator==(const Trade&, const Trade&) = default;
};

}  // namespace klined
