#include "tools/tradegen/generator.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace klined::tradegen {

namespace {

uint64_t SplitMix(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void AppendInt(int64_t v, std::string* out) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

// Real markets: name, start price in ticks, price decimals, quantity decimals.
struct RealMarket {
  const char* name;
  int64_t start_ticks;
  int price_decimals, qty_decimals;
};
constexpr RealMarket kRealMarkets[] = {
    {"BTCUSDT", 4300000, 2, 5}, {"ETHUSDT", 230000, 2, 4}, {"BNBUSDT", 3100, 1, 3},
    {"SOLUSDT", 6000, 2, 2},    {"XRPUSDT", 6000, 4, 0},   {"DOGEUSDT", 8000, 5, 0},
    {"ADAUSDT", 5000, 4, 1},    {"TRXUSDT", 10000, 5, 1},  {"AVAXUSDT", 2000, 2, 2},
    {"LINKUSDT", 14000, 3, 2},  {"DOTUSDT", 5000, 3, 2},   {"MATICUSDT", 8000, 4, 1},
    {"LTCUSDT", 7000, 2, 3},    {"SHIBUSDT", 900, 8, 0},   {"PEPEUSDT", 12000, 10, 0},
};
constexpr int kRealCount = sizeof kRealMarkets / sizeof kRealMarkets[0];

// Regimes: rate factor and length range in seconds of nominal rate. The factors are divided
// by the mean trade-weighted factor so that the long-run rate is the requested one.
struct Regime {
  double factor, min_s, max_s, probability;
};
constexpr Regime kRegimes[] = {
    {1.0, 2.0, 10.0, 0.6},  // normal
    {4.0, 0.5, 2.0, 0.2},   // burst
    {0.15, 1.0, 4.0, 0.2},  // quiet
};

double MeanFactor() {
  double time = 0, trades = 0;
  for (const Regime& r : kRegimes) {
    const double mean_s = (r.min_s + r.max_s) / 2;
    time += r.probability * mean_s;
    trades += r.probability * mean_s * r.factor;
  }
  return trades / time;
}

constexpr double kPriceSigma = 2e-5;                 // per-trade relative price step (stddev)
constexpr double kReversion = 1e-5;                  // pull towards the start price, per trade
constexpr int64_t kMaxQtyLots = 1000000000000000LL;  // 10^15 lots: far below 20 digits

}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& s : s_) s = SplitMix(&x);
}

uint64_t Rng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double Rng::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

uint64_t Rng::Below(uint64_t n) {
  assert(n > 0);
  return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
}

double Rng::Normalish() {
  // Irwin-Hall(4): variance 4/12, so scale by sqrt(3). Bounded tails are fine here.
  return (Uniform() + Uniform() + Uniform() + Uniform() - 2.0) * 1.7320508075688772;
}

std::vector<SymbolSpec> MakeSymbols(int count, double zipf_s) {
  std::vector<SymbolSpec> out;
  out.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    SymbolSpec s;
    if (i < kRealCount) {
      const RealMarket& m = kRealMarkets[i];
      s.name = m.name;
      s.start_price = m.start_ticks;
      s.price_decimals = m.price_decimals;
      s.qty_decimals = m.qty_decimals;
    } else {
      char name[32];
      std::snprintf(name, sizeof name, "SYM%04dUSDT", i + 1);
      s.name = name;
      uint64_t x = static_cast<uint64_t>(i) * 7919;
      const uint64_t h = SplitMix(&x);
      const int exponent = static_cast<int>(h % 9) - 4;                     // price ~ 10^-4 .. 10^4
      const int64_t mantissa = 100 + static_cast<int64_t>((h >> 8) % 900);  // 1.00 .. 9.99
      s.price_decimals = std::clamp(5 - exponent, 0, 9);
      s.qty_decimals = std::clamp(exponent + 2, 0, 8);
      // price = mantissa / 100 * 10^exponent, in ticks of 10^-price_decimals.
      int64_t ticks = mantissa;
      for (int k = exponent + s.price_decimals - 2; k > 0; --k) ticks *= 10;
      s.start_price = ticks;
    }
    assert(s.price_decimals + s.qty_decimals <= 18);
    s.weight = 1.0 / std::pow(static_cast<double>(i + 1), zipf_s);
    out.push_back(std::move(s));
  }
  return out;
}

void AppendScaled(int64_t units, int decimals, std::string* out) {
  char digits[24];
  auto r = std::to_chars(digits, digits + sizeof digits, units);
  std::string_view d(digits, static_cast<size_t>(r.ptr - digits));
  if (decimals == 0) {
    out->append(d);
    return;
  }
  const size_t dec = static_cast<size_t>(decimals);
  if (d.size() <= dec) {
    out->append("0.");
    out->append(dec - d.size(), '0');
    out->append(d);
  } else {
    out->append(d.substr(0, d.size() - dec));
    out->push_back('.');
    out->append(d.substr(d.size() - dec));
  }
}

Generator::Generator(const GeneratorOptions& options)
    : options_(options),
      rng_(options.seed),
      symbols_(MakeSymbols(options.symbols, options.zipf_s)) {
  double total = 0;
  for (const SymbolSpec& s : symbols_) total += s.weight;
  double acc = 0;
  for (const SymbolSpec& s : symbols_) {
    acc += s.weight / total;
    cdf_.push_back(acc);
  }
  cdf_.back() = 1.0;
  next_id_.assign(symbols_.size(), options.start_id);
  for (const SymbolSpec& s : symbols_) price_.push_back(s.start_price);
  last_json_.resize(symbols_.size());
  NextRegime();
}

int Generator::PickSymbol() {
  const double u = rng_.Uniform();
  auto it = std::upper_bound(cdf_.begin(), cdf_.end(), u);
  if (it == cdf_.end()) --it;
  return static_cast<int>(it - cdf_.begin());
}

void Generator::NextRegime() {
  static const double kNorm = MeanFactor();
  if (!options_.bursts) {
    regime_factor_ = 1;
    regime_left_ = INT64_MAX;
    return;
  }
  double u = rng_.Uniform();
  const Regime* r = &kRegimes[0];
  for (const Regime& candidate : kRegimes) {
    r = &candidate;
    if (u < candidate.probability) break;
    u -= candidate.probability;
  }
  const double seconds = r->min_s + (r->max_s - r->min_s) * rng_.Uniform();
  regime_factor_ = r->factor / kNorm;
  regime_left_ = std::max<int64_t>(1, std::llround(seconds * options_.sim_rate * regime_factor_));
}

void Generator::MakeMalformed(int64_t now_ms, GenTrade* out) {
  // Kinds of bad input klined must reject and dead-letter: each is one message.
  const int sym = PickSymbol();
  out->kind = Kind::kMalformed;
  out->symbol = sym;
  const std::string& name = symbols_[static_cast<size_t>(sym)].name;
  std::string& t = out->text;
  t.clear();
  const std::string ts = std::to_string(now_ms);
  switch (rng_.Below(6)) {
    case 0:  // truncated JSON
      t = "{\"e\":\"trade\",\"E\":" + ts + ",\"s\":\"" + name + "\",\"t\":";
      break;
    case 1:  // missing price
      t = "{\"e\":\"trade\",\"E\":" + ts + ",\"s\":\"" + name +
          "\",\"t\":1,\"q\":\"1\",\"T\":" + ts + ",\"m\":false}";
      break;
    case 2:  // negative price
      t = "{\"e\":\"trade\",\"E\":" + ts + ",\"s\":\"" + name +
          "\",\"t\":1,\"p\":\"-1.5\",\"q\":\"1\",\"T\":" + ts + ",\"m\":false}";
      break;
    case 3:  // bad symbol
      t = "{\"e\":\"trade\",\"E\":" + ts +
          ",\"s\":\"BAD SYMBOL!\",\"t\":1,\"p\":\"1\",\"q\":\"1\","
          "\"T\":" +
          ts + ",\"m\":false}";
      break;
    case 4:  // not JSON at all
      t = "not a trade";
      break;
    default:  // zero quantity
      t = "{\"e\":\"trade\",\"E\":" + ts + ",\"s\":\"" + name +
          "\",\"t\":1,\"p\":\"1\",\"q\":\"0\",\"T\":" + ts + ",\"m\":true}";
      break;
  }
}

void Generator::Next(int64_t now_ms, GenTrade* out) {
  if (simulated_clock()) now_ms = options_.time_start_ms + static_cast<int64_t>(sim_ms_);
  out->late = false;
  out->event_ms = now_ms;
  // Faults are drawn against good trades: per good trade, dup_rate duplicates and
  // malformed_rate bad messages on average.
  const double fault_total = options_.dup_rate + options_.malformed_rate;
  if (fault_total > 0) {
    const double u = rng_.Uniform() * (1 + fault_total);
    if (u >= 1) {
      if (u - 1 < options_.malformed_rate) {
        MakeMalformed(now_ms, out);
        return;
      }
      const int sym = PickSymbol();
      if (!last_json_[static_cast<size_t>(sym)].empty()) {
        out->kind = Kind::kDuplicate;
        out->symbol = sym;
        out->text = last_json_[static_cast<size_t>(sym)];
        return;
      }
      // Nothing to duplicate yet for that symbol: a good trade instead.
    }
  }

  if (--regime_left_ <= 0) NextRegime();
  if (simulated_clock()) sim_ms_ += 1000.0 / (options_.sim_rate * regime_factor_);

  const int sym = PickSymbol();
  const size_t i = static_cast<size_t>(sym);
  const SymbolSpec& spec = symbols_[i];
  out->kind = Kind::kTrade;
  out->symbol = sym;
  out->id = next_id_[i]++;

  // Random walk in whole ticks, pulled gently back towards the start price.
  const double p = static_cast<double>(price_[i]);
  const double step = rng_.Normalish() * std::max(p * kPriceSigma, 0.35) +
                      (static_cast<double>(spec.start_price) - p) * kReversion;
  price_[i] = std::max<int64_t>(1, price_[i] + std::llround(step));
  out->price = price_[i];

  // Notional ~ lognormal around 90 quote units, converted to whole lots.
  const double notional = std::exp(4.5 + 1.5 * rng_.Normalish());
  const double lots = notional * std::pow(10.0, spec.price_decimals + spec.qty_decimals) /
                      static_cast<double>(out->price);
  out->qty = std::clamp<int64_t>(std::llround(lots), 1, kMaxQtyLots);
  out->maker = rng_.Uniform() < 0.5;

  out->time_ms = now_ms;
  if (rng_.Chance(options_.late_rate)) {
    // Before the start of the trade's minute: its 1m bucket (and maybe more) is closed.
    const int64_t late = now_ms - now_ms % 60000 - 1 - static_cast<int64_t>(rng_.Below(60000));
    if (late >= 0) {
      out->time_ms = late;
      out->late = true;
    }
  }
  if (options_.dup_rate > 0) {  // kept only when duplicates may be asked for (a copy per trade)
    std::string& last = last_json_[i];
    last.clear();
    AppendJson(*out, &last);
  }
}

void Generator::AppendJson(const GenTrade& t, std::string* out) const {
  if (t.kind != Kind::kTrade) {
    out->append(t.text);
    return;
  }
  const SymbolSpec& spec = symbols_[static_cast<size_t>(t.symbol)];
  out->append("{\"e\":\"trade\",\"E\":");
  AppendInt(t.event_ms, out);
  out->append(",\"s\":\"");
  out->append(spec.name);
  out->append("\",\"t\":");
  AppendInt(t.id, out);
  out->append(",\"p\":\"");
  AppendScaled(t.price, spec.price_decimals, out);
  out->append("\",\"q\":\"");
  AppendScaled(t.qty, spec.qty_decimals, out);
  out->append("\",\"T\":");
  AppendInt(t.time_ms, out);
  out->append(t.maker ? ",\"m\":true}" : ",\"m\":false}");
}

}  // namespace klined::tradegen
