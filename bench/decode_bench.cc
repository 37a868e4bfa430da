// TradeDecoder throughput on Binance trade-stream messages (items/s = messages decoded).
//   meson setup build-dec && ninja -C build-dec bench/core_bench
//   build-dec/bench/core_bench --benchmark_filter=Decode
// Target: >= 3 M messages/s per core for the single-trade message.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "klined/trade_decoder.h"

namespace {

constexpr int64_t kNow = 1732147200123 + 1000;

constexpr std::string_view kBinanceTrade =
    R"({"e":"trade","E":1732147200123,"s":"BTCUSDT","t":123456789,"p":"43210.50",)"
    R"("q":"0.00120","T":1732147200120,"m":true})";

std::string ArrayOf(int n) {
  std::string msg = "[";
  for (int i = 0; i < n; ++i) {
    if (i > 0) msg += ',';
    msg += kBinanceTrade;
  }
  return msg + "]";
}

void Run(benchmark::State& state, std::string_view msg, uint32_t trades_per_message,
         bool fast_path = true) {
  klined::TradeDecoder decoder;
  decoder.set_fast_path(fast_path);
  std::vector<klined::Trade> out;
  out.reserve(trades_per_message);
  for (auto _ : state) {
    out.clear();
    const klined::DecodeResult r = decoder.Decode(msg, kNow, &out);
    benchmark::DoNotOptimize(out.data());
    if (r.accepted != trades_per_message) state.SkipWithError("decode failed");
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(msg.size()));
  state.counters["trades/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * trades_per_message, benchmark::Counter::kIsRate);
}

void BM_DecodeBinanceTrade(benchmark::State& state) { Run(state, kBinanceTrade, 1); }
BENCHMARK(BM_DecodeBinanceTrade);

// The same message through the general reader only (the fast path off): the baseline.
void BM_DecodeBinanceTradeGeneral(benchmark::State& state) {
  Run(state, kBinanceTrade, 1, /*fast_path=*/false);
}
BENCHMARK(BM_DecodeBinanceTradeGeneral);

void BM_DecodeBinanceArray10(benchmark::State& state) {
  const std::string msg = ArrayOf(10);
  Run(state, msg, 10);
}
BENCHMARK(BM_DecodeBinanceArray10);

}  // namespace
