// SymbolSeries: the shard's authoritative per-symbol state.
#include "klined/series.h"

#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "trade_text.h"

namespace klined {
namespace {

constexpr int64_t kT0 = 1732147200000;  // 2024-11-21 00:00:00 UTC, a 1m (and 1h, 1d) boundary

Trade MakeTrade(TradeId id, int64_t time_ms, std::string_view price, std::string_view qty,
                bool maker = false) {
  return test::TradeFromText(id, time_ms, price, qty, maker);
}

SeriesLayout OneMinute() { return SeriesLayout{{Interval::k1m}, UtcOffset{}}; }

}  // namespace

TEST_CASE("series: first trade opens the bucket, duplicates are dropped, reorders refused") {
  const SeriesLayout layout = OneMinute();
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  CHECK(s.current(0) == nullptr);
  auto r = s.Apply(MakeTrade(10, kT0 + 5000, "100.5", "2"));
  CHECK(r.outcome == SymbolSeries::Outcome::kApplied);
  REQUIRE(s.current(0) != nullptr);
  CHECK(s.current(0)->open_time == kT0);
  CHECK(s.current(0)->close_time == kT0 + 59999);
  CHECK(s.current(0)->count == 1);
  CHECK(s.watermark() == 10);
  CHECK(s.dirty());
  CHECK(s.Apply(MakeTrade(10, kT0 + 6000, "1", "1")).outcome == SymbolSeries::Outcome::kDuplicate);
  // Below the watermark of its source and never applied: out of order, not a duplicate.
  const auto r9 = s.Apply(MakeTrade(9, kT0 + 6000, "1", "1"));
  CHECK(r9.outcome == SymbolSeries::Outcome::kOutOfOrder);
  CHECK(r9.out_of_order);
  CHECK(s.current(0)->count == 1);
  CHECK(s.watermark() == 10);
}

namespace {
Trade FromSource(int32_t source, TradeId id, int64_t time_ms) {
  Trade t = test::TradeFromText(id, time_ms, std::to_string(100 + id), "1", false);
  t.source = source;
  return t;
}
}  // namespace

TEST_CASE("series: a second source's trades are applied once each and reported out of order") {
  const SeriesLayout layout = OneMinute();
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  using O = SymbolSeries::Outcome;
  for (TradeId id : {1, 3, 5}) {
    const auto r = s.Apply(FromSource(0, id, kT0 + id));
    CHECK(r.outcome == O::kApplied);
    CHECK_FALSE(r.out_of_order);
  }
  // A producer that did not key by symbol: source 1 brings 2, 4 (below the watermark) and 6.
  auto r = s.Apply(FromSource(1, 2, kT0 + 2));
  CHECK(r.outcome == O::kApplied);
  CHECK(r.out_of_order);  // a second source, and below the watermark
  r = s.Apply(FromSource(1, 4, kT0 + 4));
  CHECK(r.outcome == O::kApplied);
  CHECK(r.out_of_order);  // below the watermark
  r = s.Apply(FromSource(1, 6, kT0 + 6));
  CHECK(r.outcome == O::kApplied);
  CHECK_FALSE(r.out_of_order);  // a known source, above the watermark
  // Re-sent by either source: duplicates, counted once.
  CHECK(s.Apply(FromSource(0, 3, kT0 + 3)).outcome == O::kDuplicate);
  CHECK(s.Apply(FromSource(1, 2, kT0 + 2)).outcome == O::kDuplicate);
  CHECK(s.Apply(FromSource(0, 5, kT0 + 5)).outcome == O::kDuplicate);
  CHECK(s.current(0)->count == 6);
  CHECK(s.current(0)->first_id == 1);
  CHECK(s.current(0)->last_id == 6);
  CHECK(s.watermark() == 6);
  CHECK(FormatMarks(s.marks()) == "0:5,1:6");
}

TEST_CASE("series: the last applied ids tell a reordered trade from a re-sent one") {
  const SeriesLayout layout = OneMinute();
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  using O = SymbolSeries::Outcome;
  for (TradeId id = 1; id <= 20; ++id) {
    if (id != 15) CHECK(s.Apply(FromSource(0, id, kT0 + id)).outcome == O::kApplied);
  }
  CHECK(s.Apply(FromSource(0, 15, kT0 + 15)).outcome == O::kOutOfOrder);  // never applied
  CHECK(s.Apply(FromSource(0, 16, kT0 + 16)).outcome == O::kDuplicate);   // re-sent
  // Older than the ids remembered: indistinguishable from a replay, so a duplicate.
  static_assert(SymbolSeries::kRecentIds < 15);
  CHECK(s.Apply(FromSource(0, 5, kT0 + 5)).outcome == O::kDuplicate);
  CHECK(s.current(0)->count == 19);
}

TEST_CASE("series: restored marks: a floor for every source, exact marks per source") {
  const SeriesLayout layout = OneMinute();
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  std::optional<Candle> none;
  s.Restore(SourceMarks{100, {{3, 150}}}, std::span<const std::optional<Candle>>(&none, 1));
  CHECK(s.watermark() == 150);
  using O = SymbolSeries::Outcome;
  CHECK(s.Apply(FromSource(3, 120, kT0)).outcome == O::kDuplicate);  // below source 3's mark
  CHECK(s.Apply(FromSource(4, 90, kT0)).outcome == O::kDuplicate);   // below the floor
  const auto r = s.Apply(FromSource(4, 120, kT0));  // above the floor: never applied
  CHECK(r.outcome == O::kApplied);
  CHECK(r.out_of_order);
  CHECK(s.Apply(FromSource(4, 120, kT0)).outcome == O::kDuplicate);
  CHECK(FormatMarks(s.marks()) == "*:100,3:150,4:120");
  CHECK(FormatMarks(s.stored_marks()) == "*:100,3:150");
}

TEST_CASE("series: the marks a flush carries, and what storage holds once it is confirmed") {
  const SeriesLayout layout = OneMinute();
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  (void)s.Apply(FromSource(2, 7, kT0));
  const auto ticket = s.BeginFlush();
  (void)s.Apply(FromSource(2, 8, kT0 + 1));  // after the snapshot
  CHECK(FormatMarks(s.flush_marks()) == "2:7");
  CHECK(FormatMarks(s.stored_marks()).empty());
  s.CommitFlush(ticket);
  CHECK(FormatMarks(s.stored_marks()) == "2:7");
  CHECK(FormatMarks(s.marks()) == "2:8");
  const auto again = s.BeginFlush();
  s.AbortFlush();  // a failed write changes nothing stored
  (void)again;
  CHECK(FormatMarks(s.stored_marks()) == "2:7");
}

TEST_CASE("series: marks text: FormatMarks and ParseMarks agree, and ParseMarks is strict") {
  for (const char* text : {"", "*:5", "*:5,0:7,3:9", "-1:4", "-1:4,0:2", "2147483647:1"}) {
    SourceMarks m;
    CAPTURE(text);
    REQUIRE(ParseMarks(text, &m));
    CHECK(FormatMarks(m) == text);
  }
  SourceMarks m;
  for (const char* bad : {"x", "0:", ":5", "0:5,", "3:1,2:1", "3:1,3:2", "0:-1", "*:1,*:2",
                          "0:5,*:1", "0:5,,1:2", "2147483648:1", "0:1x", " 0:1", "*:x"}) {
    CAPTURE(bad);
    CHECK_FALSE(ParseMarks(bad, &m));
  }
  SourceMarks r;
  r.Raise(5, 10);
  r.Raise(1, 3);
  r.Raise(5, 7);  // never lowers
  CHECK(FormatMarks(r) == "1:3,5:10");
  CHECK(r.Of(5) == 10);
  CHECK(r.Of(9) == 0);
  CHECK(r.Max() == 10);
}

TEST_CASE("series: a later bucket closes the current one and gap-fills with the close") {
  const SeriesLayout layout = OneMinute();
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  (void)s.Apply(MakeTrade(1, kT0 + 1000, "100", "1"));
  (void)s.Apply(MakeTrade(2, kT0 + 2000, "101", "1"));
  (void)s.Apply(MakeTrade(3, kT0 + 3 * 60000 + 10, "99", "1"));  // two empty minutes between
  REQUIRE(s.closed(0).size() == 3);
  CHECK(s.closed(0)[0].open_time == kT0);
  CHECK(s.closed(0)[0].close.ToString() == "101");
  for (int k = 1; k <= 2; ++k) {
    const Candle& e = s.closed(0)[k];
    CHECK(e.open_time == kT0 + k * 60000);
    CHECK(e.empty());
    CHECK(e.first_id == -1);
    CHECK(e.open.ToString() == "101");
    CHECK(e.close.ToString() == "101");
  }
  CHECK(s.current(0)->open_time == kT0 + 3 * 60000);
  CHECK(s.current(0)->open.ToString() == "99");
  CHECK(s.closed_count() == 3);
  s.MarkFlushed();
  CHECK(s.closed(0).empty());
  CHECK_FALSE(s.dirty());
}

TEST_CASE("series: an older trade held in memory merges and re-carries its close") {
  const SeriesLayout layout = OneMinute();
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  (void)s.Apply(MakeTrade(1, kT0 + 1000, "100", "1"));
  (void)s.Apply(MakeTrade(2, kT0 + 2 * 60000 + 5, "105", "1"));  // closes kT0, one empty
  // Trade id 3 belongs to minute 0 (time went backwards): it is that bucket's new close.
  auto r = s.Apply(MakeTrade(3, kT0 + 30000, "90", "1"));
  CHECK(r.outcome == SymbolSeries::Outcome::kApplied);
  CHECK(r.late_intervals == 0);
  REQUIRE(s.closed(0).size() == 2);
  CHECK(s.closed(0)[0].count == 2);
  CHECK(s.closed(0)[0].close.ToString() == "90");
  CHECK(s.closed(0)[0].low.ToString() == "90");
  CHECK(s.closed(0)[1].close.ToString() == "90");  // empty minute re-carried
  CHECK(s.current(0)->close.ToString() == "105");  // has its own trade: unchanged
}

TEST_CASE("series: a trade older than anything held is queued as late") {
  const SeriesLayout layout{{Interval::k1m, Interval::k1h}, UtcOffset{}};
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  (void)s.Apply(MakeTrade(1, kT0 + 5 * 60000, "100", "1"));
  s.MarkFlushed();
  auto r = s.Apply(MakeTrade(2, kT0 + 1000, "101", "1"));
  CHECK(r.outcome == SymbolSeries::Outcome::kApplied);
  CHECK(r.late_intervals == 1);  // 1m is late; the 1h bucket is the current one
  REQUIRE(s.late().size() == 1);
  CHECK(s.late()[0].slot == 0);
  CHECK(s.late()[0].trade.id == 2);
  CHECK(s.current(1)->count == 2);
  CHECK(s.watermark() == 2);
  s.MarkFlushed();
  CHECK(s.late().empty());
}

TEST_CASE("series: restore installs stored state and an empty current takes carried closes") {
  const SeriesLayout layout = OneMinute();
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  std::optional<Candle> stored =
      Candle::Empty(Interval::k1m, kT0, UtcOffset{}, Decimal::FromInt(7));
  s.Restore(SourceMarks{41, {}}, std::span<const std::optional<Candle>>(&stored, 1));
  CHECK(s.watermark() == 41);
  CHECK(s.Apply(MakeTrade(41, kT0 + 1, "1", "1")).outcome == SymbolSeries::Outcome::kDuplicate);
  // Below what storage holds: taken as applied (a replay), never as out of order.
  CHECK(s.Apply(MakeTrade(30, kT0 + 1, "1", "1")).outcome == SymbolSeries::Outcome::kDuplicate);
  s.CarryIntoEmptyCurrent(0, Decimal::FromInt(8));
  CHECK(s.current(0)->close.ToString() == "8");
  (void)s.Apply(MakeTrade(42, kT0 + 60000 + 1, "9", "1"));
  REQUIRE(s.closed(0).size() == 1);
  CHECK(s.closed(0)[0].close.ToString() == "8");
}

TEST_CASE("series: a sum past 20 integer digits rejects the trade in every interval") {
  const SeriesLayout layout{{Interval::k1m, Interval::k1h}, UtcOffset{}};
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  (void)s.Apply(MakeTrade(1, kT0, "1", "99999999999999999999"));
  const Candle before_1m = *s.current(0);
  const Candle before_1h = *s.current(1);
  auto r = s.Apply(MakeTrade(2, kT0 + 1, "1", "1"));
  CHECK(r.outcome == SymbolSeries::Outcome::kOutOfRange);
  CHECK(*s.current(0) == before_1m);
  CHECK(*s.current(1) == before_1h);
  CHECK(s.watermark() == 1);
}

}  // namespace klined

namespace klined {

TEST_CASE("series: an async flush commits exactly its snapshot; later changes stay for the next") {
  const SeriesLayout layout = OneMinute();
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  (void)s.Apply(MakeTrade(1, kT0 + 1000, "100", "1"));
  (void)s.Apply(MakeTrade(2, kT0 + 60000 + 1, "101", "1"));   // closes minute 0
  (void)s.Apply(MakeTrade(3, kT0 + 120000 + 1, "102", "1"));  // closes minute 1
  REQUIRE(s.closed(0).size() == 2);
  const SymbolSeries::FlushTicket ticket = s.BeginFlush();
  CHECK(s.in_flight());
  // While the write is in flight: a new bucket closes, and an in-memory late trade changes
  // minute 1 (already in the snapshot) and re-carries nothing (minute 2 has trades).
  (void)s.Apply(MakeTrade(4, kT0 + 180000 + 1, "103", "1"));  // closes minute 2
  (void)s.Apply(MakeTrade(5, kT0 + 60000 + 2, "99", "1"));    // into closed minute 1
  s.CommitFlush(ticket);
  CHECK_FALSE(s.in_flight());
  CHECK(s.dirty());  // changed after the snapshot
  // Minute 0 was written and is forgotten; minute 1 changed after the snapshot and is kept
  // (with everything after it); minute 2 closed after the snapshot and is kept.
  REQUIRE(s.closed(0).size() == 2);
  CHECK(s.closed(0)[0].open_time == kT0 + 60000);
  CHECK(s.closed(0)[0].count == 2);
  CHECK(s.closed(0)[1].open_time == kT0 + 120000);
  CHECK(s.closed_count() == 2);
}

TEST_CASE("series: an aborted flush keeps everything; an unchanged one clears dirty") {
  const SeriesLayout layout{{Interval::k1m, Interval::k1h}, UtcOffset{}};
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  (void)s.Apply(MakeTrade(1, kT0 + 5 * 60000, "100", "1"));
  (void)s.Apply(MakeTrade(2, kT0 + 6 * 60000, "100", "1"));
  s.MarkFlushed();
  (void)s.Apply(MakeTrade(3, kT0 + 1000, "101", "1"));  // late for 1m
  (void)s.Apply(MakeTrade(4, kT0 + 7 * 60000, "100", "1"));
  auto ticket = s.BeginFlush();
  (void)s.Apply(MakeTrade(5, kT0 + 2000, "101", "1"));  // another late one, after the snapshot
  s.AbortFlush();
  CHECK(s.late().size() == 2);
  CHECK(s.closed(0).size() == 1);
  CHECK(s.dirty());
  ticket = s.BeginFlush();
  s.CommitFlush(ticket);
  CHECK(s.late().empty());
  CHECK(s.closed(0).empty());
  CHECK_FALSE(s.dirty());
}

}  // namespace klined

namespace klined {
namespace {

// An independent model of what Apply must do: every interval's candles by open time, each
// trade checked against, then applied to, the candle of its bucket in every interval.
class ReferenceSeries {
 public:
  explicit ReferenceSeries(const SeriesLayout* layout)
      : layout_(layout), candles_(layout->intervals.size()) {}

  SymbolSeries::Outcome Apply(const Trade& t) {
    if (t.id <= watermark_) return SymbolSeries::Outcome::kDuplicate;
    for (size_t i = 0; i < candles_.size(); ++i) {
      const auto it = candles_[i].find(BucketOpen(layout_->intervals[i], t.time_ms, layout_->tz));
      Decimal scratch;
      if (it != candles_[i].end() && (!Decimal::Add(it->second.volume, t.qty, &scratch) ||
                                      !Decimal::Add(it->second.quote_volume, t.quote, &scratch))) {
        return SymbolSeries::Outcome::kOutOfRange;
      }
    }
    for (size_t i = 0; i < candles_.size(); ++i) {
      const Interval iv = layout_->intervals[i];
      const int64_t open = BucketOpen(iv, t.time_ms, layout_->tz);
      auto it =
          candles_[i].try_emplace(open, Candle::Empty(iv, open, layout_->tz, Decimal())).first;
      REQUIRE(it->second.Apply(t));
    }
    watermark_ = t.id;
    return SymbolSeries::Outcome::kApplied;
  }

  const std::map<int64_t, Candle>& candles(size_t i) const { return candles_[i]; }

 private:
  const SeriesLayout* layout_;
  std::vector<std::map<int64_t, Candle>> candles_;
  TradeId watermark_ = 0;
};

// The trade aggregate of a candle (what the reference knows; carried prices are not).
void CheckSameTrades(const Candle& got, const Candle& want) {
  CHECK(got.count == want.count);
  CHECK(got.volume == want.volume);
  CHECK(got.quote_volume == want.quote_volume);
  CHECK(got.taker_volume == want.taker_volume);
  CHECK(got.taker_quote_volume == want.taker_quote_volume);
  CHECK(got.open == want.open);
  CHECK(got.high == want.high);
  CHECK(got.low == want.low);
  CHECK(got.close == want.close);
  CHECK(got.first_id == want.first_id);
  CHECK(got.last_id == want.last_id);
}

}  // namespace

// The pending aggregate (trades inside every current bucket, folded in later) must not change
// any outcome or candle: same refusals at the 20-digit bound, same candles, wherever the
// folds happen (reads of current() force them at random points here).
TEST_CASE("series: property: outcomes and candles equal a per-interval model, folds anywhere") {
  const SeriesLayout layout{{Interval::k1m, Interval::k3m, Interval::k1h}, UtcOffset{}};
  int tickers_compared = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    SymbolSeries s(&layout, Symbol("BTCUSDT"));
    ReferenceSeries ref(&layout);
    TickerWindow ref_ticker;  // fed trade by trade; the series feeds it folded minutes
    bool ticker_whole = true;
    int64_t latest = kT0;  // the first trade opens every interval's first bucket
    int64_t time = kT0;
    TradeId id = 1;
    size_t refused = 0;
    for (int k = 0; k < 400; ++k) {
      const uint64_t roll = rng() % 100;
      if (k == 0) {
        time = kT0;
      } else if (roll < 5) {
        time = kT0 + static_cast<int64_t>(rng() % static_cast<uint64_t>(latest - kT0 + 1));
      } else if (roll < 8) {
        time = latest + static_cast<int64_t>(rng() % (5 * 60000));
      } else {
        time = latest + static_cast<int64_t>(rng() % 2000);
      }
      latest = std::max(latest, time);
      const TradeId trade_id = k > 0 && rng() % 20 == 0 ? id - 1 : id++;  // some duplicates
      // Below 1 the volume reaches the bound first, above 1 the quote volume does.
      const std::string price = (rng() % 2 == 0 ? "0." : "") + std::to_string(1 + rng() % 9);
      const std::string qty = rng() % 10 == 0 ? "10000000000000000000" : "0.5";
      const Trade t = MakeTrade(trade_id, time, price, qty, rng() % 2 == 0);
      const SymbolSeries::Outcome want = ref.Apply(t);
      CHECK(s.Apply(t).outcome == want);
      // 24h sums pass 20 digits sooner than a candle's: the ticker then refuses trade by trade
      // here but a minute at a time in the series, so only such runs are not compared.
      if (want == SymbolSeries::Outcome::kApplied) ticker_whole &= ref_ticker.Apply(t);
      refused += want == SymbolSeries::Outcome::kOutOfRange;
      if (rng() % 7 == 0) (void)s.current(rng() % layout.intervals.size());  // forces a fold
    }
    CHECK(refused > 0);       // the bound was exercised
    CHECK(s.late().empty());  // every bucket was held in memory
    for (size_t i = 0; i < layout.intervals.size(); ++i) {
      std::vector<Candle> held = s.closed(i);
      REQUIRE(s.current(i) != nullptr);
      held.push_back(*s.current(i));
      size_t traded = 0;
      for (const Candle& c : held) {
        if (c.empty()) {
          CHECK(ref.candles(i).count(c.open_time) == 0);
          continue;
        }
        ++traded;
        const auto it = ref.candles(i).find(c.open_time);
        REQUIRE(it != ref.candles(i).end());
        CheckSameTrades(c, it->second);
      }
      CHECK(traded == ref.candles(i).size());
    }
    (void)s.current(0);  // folds what is pending
    s.ticker()->Advance(latest);
    ref_ticker.Advance(latest);
    if (!ticker_whole) continue;
    ++tickers_compared;
    const TickerWindow::Stats got = s.ticker()->GetStats();
    const TickerWindow::Stats want = ref_ticker.GetStats();
    CHECK(got.volume == want.volume);
    CHECK(got.quote_volume == want.quote_volume);
    CHECK(got.count == want.count);
    CHECK(got.open == want.open);
    CHECK(got.high == want.high);
    CHECK(got.low == want.low);
    CHECK(got.last == want.last);
    CHECK(got.last_qty == want.last_qty);
    CHECK(got.first_id == want.first_id);
    CHECK(got.last_id == want.last_id);
  }
  CHECK(tickers_compared > 100);
}

}  // namespace klined

namespace klined {

// The bound: <= 64 KiB per active symbol, its candles included. Worst case for the
// ticker: every minute of 24 h traded in a steady trend (one extremes deque holds every
// minute); all 15 default intervals; flushed every minute as a shard would.
TEST_CASE("series: memory per active symbol (15 intervals, 24h ticker in a trend) <= 64 KiB") {
  SeriesLayout layout;
  for (const char* name : {"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                           "1d", "3d", "1w", "1M"}) {
    layout.intervals.push_back(*ParseInterval(name));
  }
  SymbolSeries s(&layout, Symbol("BTCUSDT"));
  std::mt19937_64 rng(7);
  int64_t level = 50000;
  TradeId id = 1;
  for (int m = 0; m < 2 * 1440; ++m) {
    level += 3;
    for (int k = 0; k < 20; ++k) {
      const Trade t = MakeTrade(id++, kT0 + m * 60000 + k * 2000,
                                std::to_string(level) + "." + std::to_string(rng() % 100),
                                "0." + std::to_string(1 + rng() % 99999));
      REQUIRE(s.Apply(t).outcome == SymbolSeries::Outcome::kApplied);
    }
    s.MarkFlushed();
  }
  std::string json;
  s.ticker()->AppendJson("BTCUSDT", kT0 + 2 * 1440 * 60000, &json);
  const size_t bytes = s.MemoryBytes();
  MESSAGE("series bytes per active symbol: " << bytes << " (sizeof " << sizeof(SymbolSeries)
                                             << ")");
  CHECK(bytes <= 64 * 1024);
}

}  // namespace klined
