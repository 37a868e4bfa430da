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
#include <string>
#include <vector>

#include "bench_trades.h"
#include "klined/decimal.h"
#include "klined/interval.h"
#include "klined/series.h"
#include "klined/trade.h"

namespace klined {
namespace {

// The contract's default interval set, in a non-zero time zone.
SeriesLayout DefaultLayout() {
  SeriesLayout layout;
  layout.intervals.assign(bench::kDefaultIntervals.begin(), bench::kDefaultIntervals.end());
  layout.tz = bench::kTz;
  return layout;
}

// 65,536 trades round-robin over `symbols` symbols, ~1 ms apart overall, ids increasing per
// symbol.
std::vector<Trade> MakeTrades(size_t symbols) {
  return bench::MakeTrades(1 << 16, symbols, 1'000'000, 3);
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
