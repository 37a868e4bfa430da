// SymbolSeries::Apply: what a shard does per trade (duplicate check, range check, every
// interval's candle, the 24h ticker), over 1 and 1,000 symbols whose trades interleave as
// they do in a catch-up (1,000 symbols x 15 candles do not fit in L1/L2).
//
// Run: meson setup build && ninja -C build bench/core_bench &&
//      build/bench/core_bench --benchmark_filter='Series'
// items_per_second is trades/s.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "klined/decimal.h"
#include "klined/interval.h"
#include "klined/series.h"
#include "klined/trade.h"

namespace klined {
namespace {

ParsedDecimal ParseOrDie(const std::string& s) {
  ParsedDecimal p;
  if (ParseDecimalString(s, &p) != DecimalError::kOk) std::abort();
  return p;
}

// The contract's default interval set, in a non-zero time zone.
SeriesLayout DefaultLayout() {
  SeriesLayout layout;
  for (const char* name : {"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                           "1d", "3d", "1w", "1M"}) {
    const std::optional<Interval> iv = ParseInterval(name);
    if (!iv) std::abort();
    layout.intervals.push_back(*iv);
  }
  layout.tz = UtcOffset{8 * 3600000};
  return layout;
}

// 65,536 trades round-robin over `symbols` symbols, ~1 ms apart overall, ids increasing per
// symbol; prices ~43000 with 2 decimals, quantities with up to 5.
std::vector<Trade> MakeTrades(size_t symbols) {
  std::mt19937_64 rng(1);
  std::vector<Trade> trades(1 << 16);
  int64_t time = 1732147200000;
  for (size_t i = 0; i < trades.size(); ++i) {
    Trade& t = trades[i];
    const ParsedDecimal price =
        ParseOrDie(std::to_string(42000 + rng() % 2000) + "." + std::to_string(rng() % 100));
    const ParsedDecimal qty = ParseOrDie("0." + std::to_string(1 + rng() % 99999));
    t.price = price.value;
    t.qty = qty.value;
    if (MultiplyExact(price, qty, &t.quote) != DecimalError::kOk) std::abort();
    t.id = static_cast<TradeId>(1'000'000 + i);
    t.time_ms = time;
    time += static_cast<int64_t>(rng() % 3);
    t.buyer_maker = rng() % 2 == 0;
    t.symbol = Symbol("S" + std::to_string(i % symbols));
  }
  return trades;
}

void BM_SeriesApply(benchmark::State& state) {
  const auto symbols = static_cast<size_t>(state.range(0));
  const SeriesLayout layout = DefaultLayout();
  std::vector<Trade> trades = MakeTrades(symbols);
  std::vector<std::unique_ptr<SymbolSeries>> series;
  for (size_t s = 0; s < symbols; ++s) {
    series.push_back(std::make_unique<SymbolSeries>(&layout, trades[s].symbol));
  }
  const int64_t span = trades.back().time_ms - trades.front().time_ms + 1;
  for (auto _ : state) {
    for (size_t i = 0; i < trades.size(); ++i) {
      SymbolSeries* s = series[i % symbols].get();
      if (s->Apply(trades[i]).outcome != SymbolSeries::Outcome::kApplied) {
        state.SkipWithError("trade not applied");
      }
    }
    state.PauseTiming();
    // What a flush does: forget the closed candles; then move time and ids on.
    for (auto& s : series) s->MarkFlushed();
    for (Trade& t : trades) {
      t.time_ms += span;
      t.id += static_cast<TradeId>(trades.size());
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * trades.size()));
}
BENCHMARK(BM_SeriesApply)->Arg(1)->Arg(1000);

}  // namespace
}  // namespace klined
