// Decoded trades and the default interval set for the core micro-benchmarks (candle_bench.cc,
// series_bench.cc): one generator, so both measure the same kind of stream.
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "klined/decimal.h"
#include "klined/interval.h"
#include "klined/trade.h"

namespace klined::bench {

// The contract's default interval set (1s is opt-in).
inline constexpr std::array<Interval, 15> kDefaultIntervals = {
    Interval::k1m,  Interval::k3m, Interval::k5m, Interval::k15m, Interval::k30m,
    Interval::k1h,  Interval::k2h, Interval::k4h, Interval::k6h,  Interval::k8h,
    Interval::k12h, Interval::k1d, Interval::k3d, Interval::k1w,  Interval::k1M,
};
inline constexpr UtcOffset kTz{8 * 3600000};  // a non-zero offset, as a deployment may use
inline constexpr int64_t kStartMs = 1732147200000;

// BTCUSDT-like trades (seed 1): price ~43000 with up to 2 decimals, quantity with up to 5,
// ids increasing from first_id, 0..max_gap_ms-1 ms apart, round-robin over `symbols`
// symbols named S0, S1, ...
inline std::vector<Trade> MakeTrades(size_t count, size_t symbols, TradeId first_id,
                                     uint64_t max_gap_ms) {
  auto parse = [](const std::string& s) {
    ParsedDecimal p;
    if (ParseDecimalString(s, &p) != DecimalError::kOk) std::abort();
    return p;
  };
  std::mt19937_64 rng(1);
  std::vector<Trade> trades(count);
  int64_t time = kStartMs;
  for (size_t i = 0; i < count; ++i) {
    Trade& t = trades[i];
    const ParsedDecimal price =
        parse(std::to_string(42000 + rng() % 2000) + "." + std::to_string(rng() % 100));
    const ParsedDecimal qty = parse("0." + std::to_string(1 + rng() % 99999));
    t.price = price.value;
    t.qty = qty.value;
    if (MultiplyExact(price, qty, &t.quote) != DecimalError::kOk) std::abort();
    t.id = first_id + static_cast<TradeId>(i);
    t.time_ms = time;
    time += static_cast<int64_t>(rng() % max_gap_ms);
    t.buyer_maker = rng() % 2 == 0;
    t.symbol = Symbol("S" + std::to_string(i % symbols));
  }
  return trades;
}

}  // namespace klined::bench
