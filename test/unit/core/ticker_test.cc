// TickerWindow: the 24h rolling ticker against a brute-force reference that keeps every trade
// and recomputes the window per query, the exact JSON shape, exact division, rebuild from 1m
// candles, and the memory bound.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "klined/candle.h"
#include "klined/decimal.h"
#include "klined/interval.h"
#include "klined/ticker.h"
#include "klined/trade.h"
#include "trade_text.h"

namespace klined {
namespace {

constexpr int64_t kT0 = 1732147200000;  // 2024-11-21 00:00 UTC
constexpr int64_t kMin = 60000;

Decimal Dec(std::string_view s) { return test::StoredDec(s); }

Trade MakeTrade(TradeId id, const std::string& price, const std::string& qty, int64_t time_ms) {
  return test::TradeFromText(id, time_ms, price, qty, /*buyer_maker=*/false);
}

int64_t MinuteOf(int64_t ms) { return ms / kMin; }

// Keeps every accepted trade; recomputes the window from scratch.
class Reference {
 public:
  void Advance(int64_t now_ms) { end_ = std::max(end_, MinuteOf(now_ms)); }
  void Apply(const Trade& t) {
    Advance(t.time_ms);
    if (MinuteOf(t.time_ms) < end_ - 1439) return;
    trades_.push_back(t);
  }
  TickerWindow::Stats Get() const {
    TickerWindow::Stats s;
    s.open_time = (end_ - 1439) * kMin;
    const Trade* last_known = nullptr;
    int64_t first_minute = INT64_MAX;
    for (const Trade& t : trades_) {
      if (last_known == nullptr || t.id > last_known->id) last_known = &t;
      const int64_t m = MinuteOf(t.time_ms);
      if (m < end_ - 1439) continue;
      first_minute = std::min(first_minute, m);
    }
    const Trade *open = nullptr, *last = nullptr;
    for (const Trade& t : trades_) {
      const int64_t m = MinuteOf(t.time_ms);
      if (m < end_ - 1439) continue;
      if (m == first_minute && (open == nullptr || t.id < open->id)) open = &t;
      if (last == nullptr || t.id > last->id) last = &t;
      if (s.count == 0 || t.price > s.high) s.high = t.price;
      if (s.count == 0 || t.price < s.low) s.low = t.price;
      if (s.count == 0 || t.id < s.first_id) s.first_id = t.id;
      REQUIRE(Decimal::Add(s.volume, t.qty, &s.volume));
      REQUIRE(Decimal::Add(s.quote_volume, t.quote, &s.quote_volume));
      ++s.count;
    }
    if (s.count == 0) {
      if (last_known != nullptr) {
        s.open = s.high = s.low = s.last = last_known->price;
        s.last_qty = last_known->qty;
      }
      return s;
    }
    s.open = open->price;
    s.last = last->price;
    s.last_qty = last->qty;
    s.last_id = last->id;
    return s;
  }
  int64_t end() const { return end_; }
  const std::vector<Trade>& trades() const { return trades_; }

 private:
  int64_t end_ = INT64_MIN / 2;
  std::vector<Trade> trades_;
};

void CheckSame(const TickerWindow::Stats& a, const TickerWindow::Stats& b, bool check_qty = true) {
  CHECK(a.open.ToString() == b.open.ToString());
  CHECK(a.high.ToString() == b.high.ToString());
  CHECK(a.low.ToString() == b.low.ToString());
  CHECK(a.last.ToString() == b.last.ToString());
  if (check_qty) CHECK(a.last_qty.ToString() == b.last_qty.ToString());
  CHECK(a.volume.ToString() == b.volume.ToString());
  CHECK(a.quote_volume.ToString() == b.quote_volume.ToString());
  CHECK(a.first_id == b.first_id);
  CHECK(a.last_id == b.last_id);
  CHECK(a.count == b.count);
  CHECK(a.open_time == b.open_time);
}

std::string RandomPrice(std::mt19937_64& rng, int64_t level) {
  // Mostly 2 decimals near `level`; sometimes 8 decimals and a large integer part so the
  // compact forms overflow into the exact side pool.
  if (rng() % 50 == 0) {
    return std::to_string(100000000000 + rng() % 1000000000) + "." +
           std::to_string(rng() % 100000000);
  }
  return std::to_string(std::max<int64_t>(1, level)) + "." + std::to_string(rng() % 100);
}

std::string RandomQty(std::mt19937_64& rng) {
  if (rng() % 40 == 0)
    return std::to_string(rng() % 100000) + "." + std::to_string(1 + rng() % 99999999);
  return "0." + std::to_string(1 + rng() % 99999);
}

// One random scenario: ~3 days with bursts, empty hours, a >24h gap, late trades (in an older
// minute still inside the window, some with lower ids), trades older than the window, id jumps
// past 2^32 (first-id rebase / wide ids), and random Advance calls.
void RunRandom(uint64_t seed, int steps) {
  std::mt19937_64 rng(seed);
  TickerWindow w;
  Reference ref;
  int64_t now = kT0 + static_cast<int64_t>(rng() % kMin);
  TradeId next_id = 1000 + static_cast<TradeId>(rng() % 1000);
  int64_t level = 43000;
  std::set<TradeId> used_ids;
  for (int i = 0; i < steps; ++i) {
    const uint64_t what = rng() % 1000;
    if (what < 20) {  // time passes without trades: up to 3 h, rarely more than a day
      now += static_cast<int64_t>(rng() % (3 * 3600 * 1000));
      if (rng() % 20 == 0) now += 25 * 3600 * 1000;
      w.Advance(now);
      ref.Advance(now);
    } else if (what < 30) {
      w.Advance(now - static_cast<int64_t>(rng() % 100000));  // never moves back
    } else {
      now += static_cast<int64_t>(rng() % 40000);
      level += static_cast<int64_t>(rng() % 41) - 20;
      int64_t time = now;
      TradeId id = next_id++;
      if (what < 80) {  // late: an older minute, maybe still inside the window, maybe not
        time = now - static_cast<int64_t>(rng() % (26 * 3600 * 1000));
        if (rng() % 2 == 0) id = std::max<TradeId>(1, id - static_cast<TradeId>(rng() % 500));
        id += 1'000'000'000'000;  // distinct from the in-order ids (ids are unique per symbol)
      }
      if (what > 997) next_id += int64_t{1} << 33;
      if (!used_ids.insert(id).second) continue;  // trade ids are unique per symbol
      const Trade t =
          MakeTrade(id, RandomPrice(rng, level), RandomQty(rng), std::max<int64_t>(0, time));
      REQUIRE(w.Apply(t));
      ref.Apply(t);
    }
    if (i % 37 == 0 || i == steps - 1) {
      w.Advance(now);
      ref.Advance(now);
      INFO("seed " << seed << " step " << i);
      CheckSame(w.GetStats(), ref.Get());
    }
  }
}

TEST_CASE("ticker: matches a brute-force reference on random streams over > 24 h") {
  for (uint64_t seed = 1; seed <= 6; ++seed) RunRandom(seed, 6000);
}

TEST_CASE("ticker: empty window keeps the last known trade's prices") {
  TickerWindow w;
  std::string json;
  w.AppendJson("X", kT0, &json);
  CHECK(json ==
        R"({"symbol":"X","priceChange":"0","priceChangePercent":"0","weightedAvgPrice":"0",)"
        R"("openPrice":"0","highPrice":"0","lowPrice":"0","lastPrice":"0","lastQty":"0",)"
        R"("volume":"0","quoteVolume":"0","openTime":1732060860000,"closeTime":1732147200000,)"
        R"("firstId":-1,"lastId":-1,"count":0})");
  REQUIRE(w.Apply(MakeTrade(7, "10.5", "2", kT0 + 1000)));
  json.clear();
  w.AppendJson("X", kT0 + 25 * 3600 * 1000, &json);
  CHECK(json ==
        R"({"symbol":"X","priceChange":"0","priceChangePercent":"0","weightedAvgPrice":"10.5",)"
        R"("openPrice":"10.5","highPrice":"10.5","lowPrice":"10.5","lastPrice":"10.5",)"
        R"("lastQty":"2","volume":"0","quoteVolume":"0","openTime":1732150860000,)"
        R"("closeTime":1732237200000,"firstId":-1,"lastId":-1,"count":0})");
}

TEST_CASE("ticker: contract JSON shape, exact values") {
  TickerWindow w;
  REQUIRE(w.Apply(MakeTrade(100, "30000.10", "0.5", kT0 + 5 * kMin)));
  REQUIRE(w.Apply(MakeTrade(101, "31000", "0.25", kT0 + 5 * kMin + 10)));
  REQUIRE(w.Apply(MakeTrade(102, "29000.5", "1", kT0 + 70 * kMin)));
  REQUIRE(
      w.Apply(MakeTrade(99, "29999", "0.1", kT0 + 3 * kMin)));  // late, lower id, earlier minute
  std::string json;
  w.AppendJson("BTCUSDT", kT0 + 80 * kMin + 123, &json);
  // open = id 99 (first minute with trades), last = id 102; change = 29000.5 - 29999 = -998.5;
  // percent = -3.32844428... -> -3.328; quote = 15000.05 + 7750 + 29000.5 + 2999.9 = 54750.45,
  // vwap = 54750.45 / 1.85 = 29594.837837837... -> 29594.83783784. The window of now opens
  // 1439 minutes before now's minute.
  CHECK(json == R"({"symbol":"BTCUSDT","priceChange":"-998.5","priceChangePercent":"-3.328",)"
                R"("weightedAvgPrice":"29594.83783784","openPrice":"29999","highPrice":"31000",)"
                R"("lowPrice":"29000.5","lastPrice":"29000.5","lastQty":"1","volume":"1.85",)"
                R"("quoteVolume":"54750.45","openTime":1732065660000,"closeTime":1732152000123,)"
                R"("firstId":99,"lastId":102,"count":4})");
  // 24 h later the first minutes leave: only id 102's minute (kT0 + 70 min) remains.
  json.clear();
  w.AppendJson("BTCUSDT", kT0 + 70 * kMin + 1439 * kMin, &json);
  CHECK(json == R"({"symbol":"BTCUSDT","priceChange":"0","priceChangePercent":"0",)"
                R"("weightedAvgPrice":"29000.5","openPrice":"29000.5","highPrice":"29000.5",)"
                R"("lowPrice":"29000.5","lastPrice":"29000.5","lastQty":"1","volume":"1",)"
                R"("quoteVolume":"29000.5","openTime":1732151400000,"closeTime":1732237740000,)"
                R"("firstId":102,"lastId":102,"count":1})");
}

std::string Quotient(std::string_view v, std::string_view d, int shift, int places) {
  std::string out;
  TickerWindow::AppendQuotient(Dec(v), Dec(d), shift, places, &out);
  return out;
}

TEST_CASE("ticker: exact division rounds half to even") {
  CHECK(Quotient("1", "3", 0, 8) == "0.33333333");
  CHECK(Quotient("2", "3", 0, 8) == "0.66666667");
  CHECK(Quotient("-2", "3", 0, 8) == "-0.66666667");
  CHECK(Quotient("0.000000005", "1", 0, 8) == "0");  // tie, 0 is even; no "-0"
  CHECK(Quotient("-0.000000005", "1", 0, 8) == "0");
  CHECK(Quotient("0.000000015", "1", 0, 8) == "0.00000002");
  CHECK(Quotient("0.000000025", "1", 0, 8) == "0.00000002");
  CHECK(Quotient("0.0000000250000001", "1", 0, 8) == "0.00000003");
  CHECK(Quotient("0.999999995", "1", 0, 8) == "1");  // carry through every digit
  CHECK(Quotient("99.9999", "1", 2, 3) == "9999.99");
  CHECK(Quotient("-1", "3", 2, 3) == "-33.333");
  CHECK(Quotient("1", "8", 2, 3) == "12.5");
  CHECK(Quotient("5", "2", 0, 0) == "2");
  CHECK(Quotient("7", "2", 0, 0) == "4");
  CHECK(Quotient("10", "10", 2, 3) == "100");
  // Extremes: no intermediate passes 2^128 even when the quotient has 40+ digits.
  CHECK(Quotient("99999999999999999999.999999999999999999", "0.000000000000000001", 2, 3) ==
        "9999999999999999999999999999999999999900");
  CHECK(Quotient("99999999999999999999.999999999999999999",
                 "99999999999999999999.999999999999999998", 0, 8) == "1");
  CHECK(Quotient("0.000000000000000001", "99999999999999999999.999999999999999999", 0, 8) == "0");
}

TEST_CASE("ticker: overflowing sums refuse the trade and leave the state unchanged") {
  TickerWindow w;
  REQUIRE(w.Apply(MakeTrade(1, "1", "99999999999999999999", kT0)));
  const TickerWindow::Stats before = w.GetStats();
  CHECK_FALSE(w.Apply(MakeTrade(2, "1", "1", kT0)));  // the current minute (fast path)
  CheckSame(w.GetStats(), before);
  // A refused trade of a later minute may still move the window's end (time passed); its
  // sums are not taken.
  w.Advance(kT0 + kMin);
  const TickerWindow::Stats later = w.GetStats();
  CHECK_FALSE(w.Apply(MakeTrade(3, "1", "1", kT0 + kMin)));  // a new current minute
  CHECK_FALSE(w.Apply(MakeTrade(4, "1", "1", kT0 + 10)));    // late, into a committed minute
  CheckSame(w.GetStats(), later);
  CHECK(later.count == 1);
}

// 1m candles of the reference trades, as the shard would have stored them.
std::vector<Candle> OneMinuteCandles(const std::vector<Trade>& trades) {
  std::map<int64_t, Candle> by_minute;
  for (const Trade& t : trades) {
    const int64_t open = BucketOpen(Interval::k1m, t.time_ms, UtcOffset{0});
    auto [it, fresh] = by_minute.try_emplace(open);
    if (fresh) it->second = Candle::Empty(Interval::k1m, open, UtcOffset{0}, Decimal());
    Candle one = Candle::Empty(Interval::k1m, open, UtcOffset{0}, Decimal());
    REQUIRE(one.Apply(t));
    REQUIRE(Merge(it->second, one, &it->second));
  }
  std::vector<Candle> out;
  for (auto& [open, c] : by_minute) out.push_back(c);
  return out;
}

TEST_CASE("ticker: Rebuild from 1m candles equals the incremental state (but lastQty)") {
  for (uint64_t seed = 11; seed <= 14; ++seed) {
    std::mt19937_64 rng(seed);
    TickerWindow w;
    Reference ref;
    int64_t now = kT0;
    TradeId id = 5;
    for (int i = 0; i < 4000; ++i) {
      now += static_cast<int64_t>(rng() % 60000);
      int64_t time = now;
      TradeId tid = id++;
      if (rng() % 10 == 0) {
        time = now - static_cast<int64_t>(rng() % (3 * 3600 * 1000));
        tid += 1'000'000'000'000;
      }
      const Trade t = MakeTrade(tid, RandomPrice(rng, 100 + i % 50), RandomQty(rng),
                                std::max<int64_t>(0, time));
      REQUIRE(w.Apply(t));
      ref.Apply(t);
    }
    // Candles in a +08:00 deployment are the same UTC minutes.
    const std::vector<Candle> candles = OneMinuteCandles(ref.trades());
    std::vector<Candle> shuffled = candles;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    TickerWindow rebuilt;
    REQUIRE(rebuilt.Rebuild(shuffled, now));
    w.Advance(now);
    const TickerWindow::Stats a = w.GetStats(), b = rebuilt.GetStats();
    CheckSame(a, b, /*check_qty=*/false);
    CHECK(b.last_qty.ToString() == "0");
    // The next trade makes lastQty known again.
    const Trade next = MakeTrade(10'000'000'000'000, "101", "3.5", now + 1);
    REQUIRE(w.Apply(next));
    REQUIRE(rebuilt.Apply(next));
    CheckSame(w.GetStats(), rebuilt.GetStats());
  }
}

TEST_CASE("ticker: a persisted state plus the later minutes' trades is the same window") {
  // Random streams with late trades (some older than the persisted state's end), wide ids and
  // prices beyond the compact form (side pool, see RandomPrice). The state is persisted the
  // way a flush does it, whenever StateDue says so; at the end (a crash) the last persisted
  // state, restored elsewhere and given the trades of minutes at or after its end (what a
  // restart merges from 1m candles), must give the same ticker as the window that saw every
  // trade, now and as the window slides on.
  for (uint64_t seed = 21; seed <= 28; ++seed) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    TickerWindow w;
    std::vector<Trade> trades;
    int64_t now = kT0;
    TradeId id = 5;
    std::string state;
    int64_t state_end = 0;
    int writes = 0;
    const int steps = 1000 + static_cast<int>(rng() % 3000);
    for (int i = 0; i < steps; ++i) {
      now += static_cast<int64_t>(rng() % 90000);
      int64_t time = now;
      TradeId tid = id++;
      if (rng() % 8 == 0) {
        time = now - static_cast<int64_t>(rng() % (5 * 3600 * 1000));
        tid += 1'000'000'000'000;
      }
      if (rng() % 500 == 0) tid += int64_t{1} << 40;  // ids that do not fit 32 bits
      const Trade t = MakeTrade(tid, RandomPrice(rng, 100 + i % 50), RandomQty(rng),
                                std::max<int64_t>(0, time));
      if (!w.Apply(t)) continue;
      trades.push_back(t);
      if (rng() % 3 == 0) w.Advance(now);  // a flush renders the ticker at wall-clock time
      if (w.StateDue(10, now, 0)) {
        state.clear();
        const uint64_t token = w.BeginPersist(now);
        w.AppendState(&state);
        state_end = w.StateEnd();
        w.EndPersist(true, token);
        ++writes;
      }
    }
    CHECK(writes > 1);
    TickerWindow restored;
    REQUIRE(restored.RestoreState(state));
    CHECK(restored.end() == state_end);
    for (const Trade& t : trades) {
      if (t.time_ms / kMin >= state_end) REQUIRE(restored.Apply(t));
    }
    for (int step = 0; step < 30; ++step) {
      w.Advance(now);
      restored.Advance(now);
      CheckSame(w.GetStats(), restored.GetStats());
      std::string a, b;
      w.AppendJson("BTCUSDT", now, &a);
      restored.AppendJson("BTCUSDT", now, &b);
      CHECK(a == b);
      now += static_cast<int64_t>(rng() % (3 * 3600 * 1000));
    }
  }
}

TEST_CASE("ticker: a persisted state that is not one is refused, leaving an empty window") {
  TickerWindow w;
  REQUIRE(w.Apply(MakeTrade(7, "101.5", "2", kT0 + 1000)));
  REQUIRE(w.Apply(MakeTrade(8, "102", "1", kT0 + 5 * kMin)));
  w.Advance(kT0 + 10 * kMin);
  CHECK(w.StateEnd() == kT0 / kMin + 5);  // minute 5 has the newest trade: not in the state
  std::string state;
  w.AppendState(&state);
  TickerWindow r;
  REQUIRE(r.RestoreState(state));
  CHECK(r.end() == kT0 / kMin + 5);
  CHECK(r.GetStats().count == 1);
  std::string bad = state;
  bad[bad.size() / 2] ^= 1;
  for (const std::string& b :
       {bad, state.substr(0, state.size() - 1), std::string("garbage"), std::string()}) {
    TickerWindow x;
    CHECK_FALSE(x.RestoreState(b));
    CHECK(x.GetStats().count == 0);
    CHECK(x.StateDue(10, 0, 0));
  }
  // Bookkeeping: a change before the persisted end makes a write due at once.
  CHECK_FALSE(r.StateDue(10, 0, 0));
  REQUIRE(r.Apply(MakeTrade(9, "99", "1", kT0 + 2 * kMin)));  // before the state's end
  CHECK(r.StateDue(10, 0, 0));
  const uint64_t token = r.BeginPersist(0);
  r.EndPersist(true, token);
  CHECK_FALSE(r.StateDue(10, 0, 0));
  r.Advance(kT0 + 30 * kMin);
  CHECK_FALSE(r.StateDue(10, 0, 0));  // time passing without trades adds nothing to write
  REQUIRE(r.Apply(MakeTrade(10, "98", "1", kT0 + 25 * kMin)));  // 20 minutes on
  CHECK(r.StateDue(10, 20'000, 10'000));
  CHECK_FALSE(r.StateDue(10, 5'000, 10'000));  // but not within the minimum gap
}

// Every minute of the window has trades (~20 a minute); returns MemoryBytes.
size_t FullWindowBytes(int64_t drift_per_minute, uint64_t seed) {
  std::mt19937_64 rng(seed);
  TickerWindow w;
  int64_t level = 50000;
  TradeId id = 3'000'000'000;
  for (int m = 0; m < 2 * 1440; ++m) {
    level += drift_per_minute != 0 ? drift_per_minute : static_cast<int64_t>(rng() % 41) - 20;
    for (int k = 0; k < 20; ++k) {
      const Trade t =
          MakeTrade(id++, std::to_string(level) + "." + std::to_string(rng() % 100),
                    "0." + std::to_string(1 + rng() % 99999), kT0 + m * kMin + k * 2000);
      REQUIRE(w.Apply(t));
    }
  }
  w.Advance(kT0 + (2 * 1440 - 1) * kMin);
  REQUIRE(w.GetStats().count == 1440 * 20);
  return w.MemoryBytes();
}

TEST_CASE("ticker: memory per symbol with every minute traded stays within 60 KiB") {
  const size_t random_walk = FullWindowBytes(0, 1);
  const size_t down_trend = FullWindowBytes(-3, 2);  // highs deque holds every minute
  const size_t up_trend = FullWindowBytes(3, 3);     // lows deque holds every minute
  MESSAGE("ticker bytes: random walk " << random_walk << ", down trend " << down_trend
                                       << ", up trend " << up_trend << ", sizeof "
                                       << sizeof(TickerWindow));
  CHECK(random_walk <= 60 * 1024);
  CHECK(down_trend <= 60 * 1024);
  CHECK(up_trend <= 60 * 1024);
}

}  // namespace
}  // namespace klined
