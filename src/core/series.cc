#include "klined/series.h"

#include <algorithm>
#include <cassert>

namespace klined {

size_t RecarryClose(Decimal close, Candle* first, Candle* last) {
  size_t changed = 0;
  for (Candle* c = first; c != last && c->empty(); ++c, ++changed) {
    c->open = c->high = c->low = c->close = close;
  }
  return changed;
}

SymbolSeries::SymbolSeries(const SeriesLayout* layout, Symbol symbol)
    : layout_(layout), symbol_(symbol), slots_(layout->intervals.size()) {}

void SymbolSeries::Restore(TradeId watermark, std::span<const std::optional<Candle>> current) {
  assert(current.size() == slots_.size());
  watermark_ = watermark;
  for (size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].has_current = current[i].has_value();
    if (current[i]) slots_[i].current = *current[i];
  }
}

bool SymbolSeries::WouldOverflow(const Trade& t) const {
  // The trade lands in the current candle, a closed one, or a new (empty) one; checking
  // every candle it could touch against its sums is cheaper than undoing a partial apply.
  auto overflows = [&t](const Candle& c) {
    Decimal scratch;
    return !Decimal::Add(c.volume, t.qty, &scratch) ||
           !Decimal::Add(c.quote_volume, t.quote, &scratch);
  };
  for (const Slot& s : slots_) {
    if (!s.has_current) continue;
    if (t.time_ms >= s.current.open_time) {
      if (t.time_ms <= s.current.close_time && overflows(s.current)) return true;
      continue;
    }
    for (const Candle& c : s.closed) {
      if (t.time_ms >= c.open_time && t.time_ms <= c.close_time && overflows(c)) return true;
    }
  }
  return false;
}

bool SymbolSeries::GapTooLarge(const Trade& t) const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (!s.has_current || t.time_ms <= s.current.close_time) continue;
    const Interval iv = layout_->intervals[i];
    const int64_t open = BucketOpen(iv, t.time_ms, layout_->tz);
    if (BucketsBetween(iv, s.current.open_time, open, layout_->tz) - 1 > layout_->max_gap_candles) {
      return true;
    }
  }
  return false;
}

void SymbolSeries::RollTo(Slot* slot, Interval iv, int64_t open) {
  const UtcOffset tz = layout_->tz;
  const Decimal carry = slot->current.close;  // an empty candle's close is its carry
  slot->closed.push_back(slot->current);
  ++closed_count_;
  for (int64_t next = NextBucketOpen(iv, slot->current.open_time, tz); next < open;
       next = NextBucketOpen(iv, next, tz)) {
    slot->closed.push_back(Candle::Empty(iv, next, tz, carry));
    ++closed_count_;
  }
  slot->current = Candle::Empty(iv, open, tz, carry);
}

bool SymbolSeries::ApplyToClosed(Slot* slot, Interval iv, int64_t open, const Trade& t) {
  std::vector<Candle>& closed = slot->closed;
  if (closed.empty() || open < closed.front().open_time) return false;
  const auto idx =
      static_cast<size_t>(BucketsBetween(iv, closed.front().open_time, open, layout_->tz));
  assert(idx < closed.size() && closed[idx].open_time == open);  // closed is contiguous
  Candle& c = closed[idx];
  // It (and the empty candles re-carried after it) changed after a snapshot: resend them.
  slot->changed_from = std::min(slot->changed_from, idx);
  const bool applied = c.Apply(t);  // WouldOverflow ran first
  assert(applied);
  (void)applied;
  Candle* const after = closed.data() + idx + 1;
  Candle* const end = closed.data() + closed.size();
  if (RecarryClose(c.close, after, end) == static_cast<size_t>(end - after)) {
    RecarryClose(c.close, &slot->current, &slot->current + 1);
  }
  return true;
}

SymbolSeries::ApplyResult SymbolSeries::Apply(const Trade& t) {
  if (t.id <= watermark_) return {Outcome::kDuplicate, 0};
  if (WouldOverflow(t)) return {Outcome::kOutOfRange, 0};
  if (GapTooLarge(t)) return {Outcome::kGapTooLarge, 0};
  const UtcOffset tz = layout_->tz;
  uint32_t late_intervals = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    const Interval iv = layout_->intervals[i];
    // Fast path: most trades land in the current bucket, which needs no calendar math.
    if (s.has_current && t.time_ms >= s.current.open_time && t.time_ms <= s.current.close_time) {
      const bool ok = s.current.Apply(t);
      assert(ok);
      (void)ok;
      continue;
    }
    const int64_t open = BucketOpen(iv, t.time_ms, tz);
    if (!s.has_current) {
      s.current = Candle::Empty(iv, open, tz, Decimal());
      s.has_current = true;
    } else if (open > s.current.open_time) {
      RollTo(&s, iv, open);
    } else {
      if (!ApplyToClosed(&s, iv, open, t)) {
        late_.push_back(LateTrade{static_cast<uint32_t>(i), t});
        ++late_intervals;
      }
      continue;
    }
    const bool ok = s.current.Apply(t);
    assert(ok);
    (void)ok;
  }
  watermark_ = t.id;
  dirty_ = true;
  ++version_;
  // A sum the ticker cannot hold (far beyond any candle's) only leaves the ticker behind.
  (void)ticker_.Apply(t);
  return {Outcome::kApplied, late_intervals};
}

void SymbolSeries::CarryIntoEmptyCurrent(size_t i, Decimal close) {
  Slot& s = slots_[i];
  if (s.has_current && RecarryClose(close, &s.current, &s.current + 1) > 0) ++version_;
}

SymbolSeries::FlushTicket SymbolSeries::BeginFlush() {
  assert(!in_flight_);
  in_flight_ = true;
  for (Slot& s : slots_) {
    s.closed_in_flight = s.closed.size();
    s.changed_from = SIZE_MAX;
  }
  late_in_flight_ = late_.size();
  return FlushTicket{version_};
}

void SymbolSeries::CommitFlush(const FlushTicket& ticket) {
  assert(in_flight_);
  in_flight_ = false;
  for (Slot& s : slots_) {
    const size_t done = std::min(s.closed_in_flight, s.changed_from);
    s.closed.erase(s.closed.begin(), s.closed.begin() + static_cast<ptrdiff_t>(done));
    closed_count_ -= done;
    s.closed_in_flight = 0;
    s.changed_from = SIZE_MAX;
  }
  late_.erase(late_.begin(), late_.begin() + static_cast<ptrdiff_t>(late_in_flight_));
  late_in_flight_ = 0;
  if (version_ == ticket.version) dirty_ = false;
}

void SymbolSeries::AbortFlush() {
  assert(in_flight_);
  in_flight_ = false;
  for (Slot& s : slots_) {
    s.closed_in_flight = 0;
    s.changed_from = SIZE_MAX;
  }
  late_in_flight_ = 0;
}

}  // namespace klined
