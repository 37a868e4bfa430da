// 24h ticker hot paths: TickerWindow::Apply per trade (what a shard adds per trade) and
// AppendJson per symbol (what a flush writes per dirty symbol), plus the bytes a full window
// holds (every one of the 1440 minutes traded).
//
// Run: meson setup build && ninja -C build bench/core_bench &&
//      build/bench/core_bench --benchmark_filter='Ticker'
// items_per_second is trades/s for Apply and tickers/s for AppendJson; the counter
// bytes_per_symbol is TickerWindow::MemoryBytes() after the run (sizeof + heap capacity).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "klined/decimal.h"
#include "klined/ticker.h"
#include "klined/trade.h"

namespace klined {
namespace {

constexpr int64_t kStartMs = 1732147200000;

ParsedDecimal ParseOrDie(const std::string& s) {
  ParsedDecimal p;
  if (ParseDecimalString(s, &p) != DecimalError::kOk) std::abort();
  return p;
}

// BTCUSDT-like trades, ~250/s (a 1m bucket holds ~15000), over `minutes` minutes.
std::vector<Trade> MakeTrades(int64_t minutes) {
  std::mt19937_64 rng(7);
  std::vector<Trade> trades;
  int64_t time = kStartMs;
  TradeId id = 1'000'000'000;
  int64_t level = 43000;
  while (time < kStartMs + minutes * 60000) {
    if (rng() % 64 == 0) level += static_cast<int64_t>(rng() % 21) - 10;
    const ParsedDecimal price =
        ParseOrDie(std::to_string(level) + "." + std::to_string(rng() % 100));
    const ParsedDecimal qty = ParseOrDie("0." + std::to_string(1 + rng() % 99999));
    Trade t;
    t.price = price.value;
    t.qty = qty.value;
    if (MultiplyExact(price, qty, &t.quote) != DecimalError::kOk) std::abort();
    t.id = id++;
    t.time_ms = time;
    time += static_cast<int64_t>(rng() % 8);
    t.symbol = Symbol("BTCUSDT");
    trades.push_back(t);
  }
  return trades;
}

void BM_TickerApply(benchmark::State& state) {
  // 26 h of trades: the window fills, then every minute expires one.
  static const std::vector<Trade> trades = MakeTrades(26 * 60);
  TickerWindow w;
  size_t i = 0;
  for (auto _ : state) {
    if (i == trades.size()) {
      state.PauseTiming();
      w = TickerWindow();
      i = 0;
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(w.Apply(trades[i++]));
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_symbol"] = static_cast<double>(w.MemoryBytes());
}
BENCHMARK(BM_TickerApply);

void BM_TickerAppendJson(benchmark::State& state) {
  static const std::vector<Trade> trades = MakeTrades(25 * 60);
  TickerWindow w;
  for (const Trade& t : trades) {
    if (!w.Apply(t)) std::abort();
  }
  const int64_t now = trades.back().time_ms;
  std::string out;
  for (auto _ : state) {
    out.clear();
    w.AppendJson("BTCUSDT", now, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_symbol"] = static_cast<double>(w.MemoryBytes());
  state.counters["json_bytes"] = static_cast<double>(out.size());
}
BENCHMARK(BM_TickerAppendJson);

}  // namespace
}  // namespace klined
