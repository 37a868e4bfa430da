// The contract's Redis key layout (section 4), spelled once for the readers that use it.
// Every per-symbol key carries the symbol as a Redis Cluster hash tag, `{SYMBOL}`, so all of a
// symbol's keys share one slot.
// (The write path's scripts and jobs still spell their keys themselves; moving them here is
// part of the Redis Cluster issue.)
#pragma once

#include <string>
#include <string_view>

#include "klined/interval.h"

namespace klined {

class KeyLayout {
 public:
  KeyLayout(std::string prefix, std::string ticker_prefix)
      : prefix_(std::move(prefix)), ticker_prefix_(std::move(ticker_prefix)) {}

  // PREFIX:{SYMBOL}
  std::string Base(std::string_view symbol) const {
    std::string k;
    k.reserve(prefix_.size() + symbol.size() + 3);
    k.append(prefix_).append(":{").append(symbol).append("}");
    return k;
  }
  // PREFIX:{SYMBOL}:INTERVAL: the current candle (string).
  std::string Current(std::string_view symbol, Interval iv) const {
    return Base(symbol).append(":").append(IntervalName(iv));
  }
  // PREFIX:{SYMBOL}:INTERVAL:hist: closed candles (sorted set, score = open time).
  std::string History(std::string_view symbol, Interval iv) const {
    return Current(symbol, iv).append(":hist");
  }
  // TICKER_PREFIX:{SYMBOL}: the 24h ticker JSON.
  std::string Ticker(std::string_view symbol) const {
    return std::string(ticker_prefix_).append(":{").append(symbol).append("}");
  }
  // PREFIX:{SYMBOL}:events: the shard channel FLUSH and ROLLOVER publish written candles on.
  std::string Events(std::string_view symbol) const { return Base(symbol).append(":events"); }
  // PREFIX:symbols: every symbol with an applied trade (set).
  std::string Symbols() const { return prefix_ + ":symbols"; }

 private:
  std::string prefix_;
  std::string ticker_prefix_;
};

}  // namespace klined
