// The deterministic part of klined-tradegen: symbols, prices, quantities, ids, faults.
//
// DESIGN
// A Generator is a pure function of its options and seed: the n-th call to Next() yields the
// same trade (symbol, id, price, quantity, side, fault) on every run, whatever the wall clock
// or the sink's speed. Time is the only input from outside: the caller passes "now" (wall
// clock), or, with a fixed time start, the generator's own simulated clock is used and the
// whole output is byte-identical across runs.
//
// Prices and quantities are integers in units of 10^-decimals of their symbol (price decimals
// + quantity decimals <= 18, the contract's limit), so no binary floating point ever becomes
// a price: doubles only shape the random step sizes, which are rounded to whole ticks/lots.
// Popularity is Zipf-like (weight 1/rank^s); bursts and quiet periods are regimes measured in
// trades, so pacing changes never change the sequence.
// Single-threaded; no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace klined::tradegen {

// xoshiro256** seeded through splitmix64: fast, and identical on every platform (the standard
// library's distributions are implementation-defined, so none is used).
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  double Uniform();            // [0, 1)
  uint64_t Below(uint64_t n);  // [0, n), n > 0
  double Normalish();          // mean 0, stddev 1 (Irwin-Hall of 4 uniforms)
  bool Chance(double p) { return p > 0 && Uniform() < p; }

 private:
  uint64_t s_[4];
};

struct SymbolSpec {
  std::string name;
  int price_decimals = 2;   // tick = 10^-price_decimals
  int qty_decimals = 3;     // lot = 10^-qty_decimals
  int64_t start_price = 0;  // in ticks
  double weight = 1;        // Zipf popularity
};

// The first entries are real markets with realistic prices and precisions; the rest are
// SYM0016USDT, SYM0017USDT, ... with precisions derived from their index (not the seed, so a
// symbol looks the same in every run).
std::vector<SymbolSpec> MakeSymbols(int count, double zipf_s);

struct GeneratorOptions {
  int symbols = 20;
  double zipf_s = 1.0;
  uint64_t seed = 1;
  int64_t start_id = 1;
  // Simulated clock start in ms (>= 0), or -1: trade times are the caller's wall clock.
  int64_t time_start_ms = -1;
  // Simulated clock speed, trades per second (used only with time_start_ms >= 0).
  double sim_rate = 1000;
  bool bursts = true;
  double dup_rate = 0, malformed_rate = 0, late_rate = 0;  // fractions of good trades
};

enum class Kind : uint8_t { kTrade, kDuplicate, kMalformed };

struct GenTrade {
  Kind kind = Kind::kTrade;
  int symbol = 0;  // index into symbols()
  int64_t id = 0;
  int64_t price = 0;     // ticks
  int64_t qty = 0;       // lots
  int64_t time_ms = 0;   // T
  int64_t event_ms = 0;  // E: when it was generated
  bool maker = false;
  bool late = false;  // kTrade whose time lies before its minute (a late trade)
  std::string text;   // kDuplicate: the original's JSON; kMalformed: the bad message
};

class Generator {
 public:
  explicit Generator(const GeneratorOptions& options);

  // The next event: a good trade, or (at the configured rates) a duplicate of a recent trade
  // or a malformed message. now_ms is the wall clock, ignored with a simulated clock.
  void Next(int64_t now_ms, GenTrade* out);

  // Appends a trade's Binance JSON: {"e":"trade","E":..,"s":..,"t":..,"p":"..","q":"..",
  // "T":..,"m":..}.
  void AppendJson(const GenTrade& t, std::string* out) const;

  // Rate multiplier of the current regime (1 on average): the caller's pacing follows it.
  double RateFactor() const { return regime_factor_; }
  const std::vector<SymbolSpec>& symbols() const { return symbols_; }
  bool simulated_clock() const { return options_.time_start_ms >= 0; }

 private:
  int PickSymbol();
  void NextRegime();
  void MakeMalformed(int64_t now_ms, GenTrade* out);

  GeneratorOptions options_;
  Rng rng_;
  std::vector<SymbolSpec> symbols_;
  std::vector<double> cdf_;  // cumulative Zipf weights, normalised to 1
  std::vector<int64_t> next_id_, price_;
  std::vector<std::string> last_json_;  // per symbol, for duplicates
  int64_t regime_left_ = 0;             // trades left in the current regime
  double regime_factor_ = 1;
  double sim_ms_ = 0;  // simulated clock offset from time_start_ms
};

// Formats units * 10^-decimals as a contract decimal string ("43000.10", "5", "0.0012").
void AppendScaled(int64_t units, int decimals, std::string* out);

}  // namespace klined::tradegen
