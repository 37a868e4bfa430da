// Candle hot paths: applying decoded trades to one symbol's current candles of every default
// interval (what a shard does per trade), and writing candle JSON (what a flush does per dirty
// candle).
//
// Run: meson setup build && ninja -C build bench/core_bench &&
//      build/bench/core_bench --benchmark_filter='Candle'
// items_per_second is trades/s for the Apply benchmarks and candles/s for the JSON ones.
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench_trades.h"
#include "klined/candle.h"
#include "klined/decimal.h"
#include "klined/interval.h"
#include "klined/trade.h"

namespace klined {
namespace {

using bench::kDefaultIntervals;
using bench::kStartMs;
using bench::kTz;
constexpr size_t kTradeCount = 1 << 16;

// One symbol's trades 0-7 ms apart (~250 trades/s: a 1m candle holds ~15000 trades, and the
// run rolls 1m, 3m, 5m, ... candles as the engine would).
std::vector<Trade> MakeTrades() { return bench::MakeTrades(kTradeCount, 1, 1'000'000'000, 8); }

// Moves the trades past the previous pass so time and ids keep increasing across passes.
void NextPass(std::vector<Trade>* trades) {
  const int64_t span = trades->back().time_ms - trades->front().time_ms + 1;
  for (Trade& t : *trades) {
    t.time_ms += span;
    t.id += static_cast<TradeId>(kTradeCount);
  }
}

struct SymbolCandles {
  std::array<Candle, kDefaultIntervals.size()> current;
  int64_t rolls = 0;

  explicit SymbolCandles(const Trade& first) {
    for (size_t k = 0; k < current.size(); ++k) {
      const Interval iv = kDefaultIntervals[k];
      current[k] = Candle::Empty(iv, BucketOpen(iv, first.time_ms, kTz), kTz, first.price);
    }
  }

  // Starts the bucket holding t.time_ms, carrying the previous close. The engine would first
  // move the old candle to history (and emit empty candles for skipped buckets).
  void Roll(size_t k, const Trade& t) {
    const Interval iv = kDefaultIntervals[k];
    current[k] = Candle::Empty(iv, BucketOpen(iv, t.time_ms, kTz), kTz, current[k].close);
    ++rolls;
  }
};

// The engine's path: a trade is in the current candle iff open_time <= T <= close_time; only
// a trade outside it pays for BucketOpen (to find the new bucket).
void BM_CandleApplyAllIntervals(benchmark::State& state) {
  std::vector<Trade> trades = MakeTrades();
  SymbolCandles sc(trades.front());
  for (auto _ : state) {
    for (const Trade& t : trades) {
      for (size_t k = 0; k < kDefaultIntervals.size(); ++k) {
        Candle& c = sc.current[k];
        if (t.time_ms > c.close_time || t.time_ms < c.open_time) [[unlikely]] {
          sc.Roll(k, t);
        }
        if (!c.Apply(t)) [[unlikely]] {
          state.SkipWithError("sum out of range");
        }
      }
    }
    state.PauseTiming();
    NextPass(&trades);
    state.ResumeTiming();
  }
  benchmark::DoNotOptimize(sc.current);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * trades.size()));
  state.counters["rolls_per_pass"] =
      benchmark::Counter(static_cast<double>(sc.rolls) / static_cast<double>(state.iterations()));
}
BENCHMARK(BM_CandleApplyAllIntervals);

// The same, deciding membership with BucketOpen(iv, T) == open_time on every trade and
// interval: the cost of bucket arithmetic per trade, for comparison with the range check.
void BM_CandleApplyAllIntervalsBucketOpenEachTrade(benchmark::State& state) {
  std::vector<Trade> trades = MakeTrades();
  SymbolCandles sc(trades.front());
  for (auto _ : state) {
    for (const Trade& t : trades) {
      for (size_t k = 0; k < kDefaultIntervals.size(); ++k) {
        Candle& c = sc.current[k];
        const int64_t open = BucketOpen(kDefaultIntervals[k], t.time_ms, kTz);
        if (open != c.open_time) [[unlikely]] {
          c = Candle::Empty(kDefaultIntervals[k], open, kTz, c.close);
          ++sc.rolls;
        }
        if (!c.Apply(t)) [[unlikely]] {
          state.SkipWithError("sum out of range");
        }
      }
    }
    state.PauseTiming();
    NextPass(&trades);
    state.ResumeTiming();
  }
  benchmark::DoNotOptimize(sc.current);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * trades.size()));
}
BENCHMARK(BM_CandleApplyAllIntervalsBucketOpenEachTrade);

// Candles as a flush sees them: a mix of busy, quiet and empty ones.
std::vector<Candle> MakeCandles() {
  const std::vector<Trade> trades = MakeTrades();
  std::vector<Candle> candles;
  std::mt19937_64 rng(2);
  size_t next = 0;
  for (int i = 0; i < 1024; ++i) {
    const Interval iv = kDefaultIntervals[static_cast<size_t>(i) % kDefaultIntervals.size()];
    Candle c = Candle::Empty(iv, BucketOpen(iv, kStartMs, kTz), kTz, trades[0].price);
    const size_t n = i % 8 == 0 ? 0 : 1 + rng() % 500;
    for (size_t k = 0; k < n; ++k) {
      if (!c.Apply(trades[next++ % trades.size()])) std::abort();
    }
    candles.push_back(c);
  }
  return candles;
}

void BM_CandleAppendJson(benchmark::State& state) {
  const std::vector<Candle> candles = MakeCandles();
  std::string out;
  for (auto _ : state) {
    for (const Candle& c : candles) {
      out.clear();  // a flush reuses its buffer
      AppendCandleJson(c, "BTCUSDT", false, &out);
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * candles.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * candles.size() * out.size()));
}
BENCHMARK(BM_CandleAppendJson);

void BM_CandleParseJson(benchmark::State& state) {
  std::vector<std::string> jsons;
  for (const Candle& c : MakeCandles()) jsons.push_back(CandleJson(c, "BTCUSDT", true));
  for (auto _ : state) {
    for (const std::string& s : jsons) {
      Candle c;
      std::string_view sym;
      bool closed;
      if (!ParseCandleJson(s, &c, &sym, &closed)) state.SkipWithError("parse failed");
      benchmark::DoNotOptimize(c);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * jsons.size()));
}
BENCHMARK(BM_CandleParseJson);

}  // namespace
}  // namespace klined

BENCHMARK_MAIN();
