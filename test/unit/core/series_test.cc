// SymbolSeries: the shard's authoritative per-symbol state.
#include "klined/series.h"

#include <doctest/doctest.h>

#include <string>

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

TEST_CASE("series: first trade opens the bucket, duplicates are dropped") {
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
  CHECK(s.Apply(MakeTrade(9, kT0 + 6000, "1", "1")).outcome == SymbolSeries::Outcome::kDuplicate);
  CHECK(s.current(0)->count == 1);
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
  s.Restore(41, std::span<const std::optional<Candle>>(&stored, 1));
  CHECK(s.watermark() == 41);
  CHECK(s.Apply(MakeTrade(41, kT0 + 1, "1", "1")).outcome == SymbolSeries::Outcome::kDuplicate);
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
