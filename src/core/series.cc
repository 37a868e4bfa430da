#include "klined/series.h"

#include <algorithm>
#include <cassert>
#include <charconv>

namespace klined {

size_t RecarryClose(Decimal close, Candle* first, Candle* last) {
  size_t changed = 0;
  for (Candle* c = first; c != last && c->empty(); ++c, ++changed) {
    c->open = c->high = c->low = c->close = close;
  }
  return changed;
}

TradeId SourceMarks::Of(int32_t source) const {
  for (const Mark& m : by_source) {
    if (m.source == source) return std::max(m.id, any);
  }
  return any;
}

TradeId SourceMarks::Max() const {
  TradeId max = any;
  for (const Mark& m : by_source) max = std::max(max, m.id);
  return max;
}

void SourceMarks::Raise(int32_t source, TradeId id) {
  auto it = std::lower_bound(by_source.begin(), by_source.end(), source,
                             [](const Mark& m, int32_t s) { return m.source < s; });
  if (it != by_source.end() && it->source == source) {
    it->id = std::max(it->id, id);
  } else {
    by_source.insert(it, Mark{source, id});
  }
}

namespace {

std::string MarkDec(int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

bool MarkInt(std::string_view s, int64_t* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

std::string FormatMarks(const SourceMarks& marks) {
  std::string out;
  if (marks.any > 0) out.append("*:").append(MarkDec(marks.any));
  for (const SourceMarks::Mark& m : marks.by_source) {
    if (!out.empty()) out += ',';
    out.append(MarkDec(m.source)).append(":").append(MarkDec(m.id));
  }
  return out;
}

bool ParseMarks(std::string_view text, SourceMarks* out) {
  out->any = 0;
  out->by_source.clear();
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view entry = text.substr(pos, end - pos);
    const size_t colon = entry.find(':');
    int64_t id = 0;
    if (colon == std::string_view::npos || !MarkInt(entry.substr(colon + 1), &id) || id < 0) {
      return false;
    }
    const std::string_view source = entry.substr(0, colon);
    int64_t src = 0;
    if (source == "*" && pos == 0) {
      out->any = id;
    } else if (MarkInt(source, &src) && src >= INT32_MIN && src <= INT32_MAX &&
               (out->by_source.empty() || out->by_source.back().source < src)) {
      out->by_source.push_back(SourceMarks::Mark{static_cast<int32_t>(src), id});
    } else {
      return false;
    }
    pos = end + 1;
    if (end == text.size()) break;
    if (pos == text.size()) return false;  // a trailing comma
  }
  return true;
}

SymbolSeries::SymbolSeries(const SeriesLayout* layout, Symbol symbol)
    : layout_(layout), symbol_(symbol), slots_(layout->intervals.size()) {
  // A 1s or 1m bucket of a whole-minute offset lies in one UTC minute, and so does the
  // intersection of the current buckets, hence every pending aggregate.
  for (const Interval iv : layout->intervals) {
    ticker_by_minute_ |= (iv == Interval::k1s || iv == Interval::k1m) && layout->tz.ms % 60000 == 0;
  }
}

void SymbolSeries::Restore(const SourceMarks& marks,
                           std::span<const std::optional<Candle>> current) {
  assert(current.size() == slots_.size());
  marks_ = marks;
  flush_marks_ = marks;
  stored_marks_ = marks;
  write_token_ = 0;  // storage's current candles are not known to be a write of ours
  hot_mark_ = 0;
  watermark_ = marks.Max();
  // What storage holds was applied by someone: below the watermark, unseen ids are replays.
  recent_.fill(0);
  recent_next_ = 0;
  recent_floor_ = watermark_;
  assert(pending_.empty());
  for (size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].has_current = current[i].has_value() ? 1 : 0;
    if (current[i]) slots_[i].current = *current[i];
  }
  RefreshFastRange();
}

void SymbolSeries::RefreshFastRange() {
  int64_t from = INT64_MIN;
  int64_t to = INT64_MAX;
  Decimal max_volume;
  Decimal max_quote;
  for (const Slot& s : slots_) {
    if (!s.has_current) {
      fast_from_ = INT64_MAX;
      fast_to_ = INT64_MIN;
      return;
    }
    from = std::max(from, s.current.open_time);
    to = std::min(to, s.current.close_time);
    max_volume = std::max(max_volume, s.current.volume);
    max_quote = std::max(max_quote, s.current.quote_volume);
  }
  fast_from_ = from;
  fast_to_ = to;
  // Sums are never negative (prices and quantities are positive), so these are in range.
  volume_room_ = Decimal::FromRaw(Decimal::kMaxRaw - max_volume.raw());
  quote_room_ = Decimal::FromRaw(Decimal::kMaxRaw - max_quote.raw());
}

void SymbolSeries::FoldPending() {
  if (pending_.empty()) return;
  // A sum the ticker cannot hold (far beyond any candle's) only leaves the ticker behind.
  if (ticker_by_minute_) (void)ticker_.ApplyMinute(fast_from_, pending_, pending_last_qty_);
  for (Slot& s : slots_) {
    // The aggregate belongs to every current bucket; Merge checks that it is the same one.
    pending_.interval = s.current.interval;
    pending_.open_time = s.current.open_time;
    pending_.close_time = s.current.close_time;
    const bool ok = Merge(s.current, pending_, &s.current);  // fits: the headroom said so
    assert(ok);
    (void)ok;
  }
  // Every current candle grew by the same sums, so the fullest one did too: the headroom
  // shrinks by exactly them (both fit, see Apply), and the buckets are unchanged.
  volume_room_ = Decimal::FromRaw(volume_room_.raw() - pending_.volume.raw());
  quote_room_ = Decimal::FromRaw(quote_room_.raw() - pending_.quote_volume.raw());
  pending_ = Candle();
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

int64_t SymbolSeries::GapBefore(const Trade& t) const {
  const Slot& s = slots_.front();
  if (!s.has_current || t.time_ms <= s.current.close_time) return 0;
  const Interval iv = layout_->intervals.front();
  return BucketsBetween(iv, s.current.open_time, BucketOpen(iv, t.time_ms, layout_->tz),
                        layout_->tz) -
         1;
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
  slot->changed_from = std::min(slot->changed_from, static_cast<uint32_t>(idx));
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

SymbolSeries::ApplyResult SymbolSeries::Stale(const Trade& t) const {
  if (t.id <= recent_floor_) return {Outcome::kDuplicate, 0, false};
  for (const TradeId r : recent_) {
    if (r == t.id) return {Outcome::kDuplicate, 0, false};
  }
  return {Outcome::kOutOfOrder, 0, true};
}

bool SymbolSeries::NoteApplied(const Trade& t) {
  bool out_of_order = t.id < watermark_;
  std::vector<SourceMarks::Mark>& v = marks_.by_source;
  if (hot_mark_ < v.size() && v[hot_mark_].source == t.source) [[likely]] {
    v[hot_mark_].id = t.id;  // above the source's mark: Apply checked
  } else {
    auto it = std::lower_bound(v.begin(), v.end(), t.source,
                               [](const SourceMarks::Mark& m, int32_t s) { return m.source < s; });
    if (it == v.end() || it->source != t.source) {
      out_of_order |= !v.empty();  // a second source: the producer did not key by symbol
      it = v.insert(it, SourceMarks::Mark{t.source, t.id});
    } else {
      it->id = t.id;
    }
    hot_mark_ = static_cast<size_t>(it - v.begin());
  }
  watermark_ = std::max(watermark_, t.id);
  recent_floor_ = std::max(recent_floor_, recent_[recent_next_]);  // the id overwritten
  recent_[recent_next_] = t.id;
  recent_next_ = recent_next_ + 1 == kRecentIds ? 0 : recent_next_ + 1;
  return out_of_order;
}

SymbolSeries::ApplyResult SymbolSeries::Apply(const Trade& t) {
  // The source's watermark; the last trade's source is cached (one compare, usually).
  const std::vector<SourceMarks::Mark>& by_source = marks_.by_source;
  const TradeId mark = hot_mark_ < by_source.size() && by_source[hot_mark_].source == t.source
                           ? std::max(by_source[hot_mark_].id, marks_.any)
                           : marks_.Of(t.source);
  if (t.id <= mark) [[unlikely]]
    return Stale(t);
  if (t.time_ms < fast_from_ || t.time_ms > fast_to_) [[unlikely]] {
    FoldPending();
    const ApplyResult r = ApplySlow(t);
    RefreshFastRange();
    return r;
  }
  // In every current bucket: one aggregate instead of every interval's candle. The check
  // is the one WouldOverflow makes, against the fullest current candle.
  Decimal v, q;
  if (!Decimal::Add(pending_.volume, t.qty, &v) || v > volume_room_ ||
      !Decimal::Add(pending_.quote_volume, t.quote, &q) || q > quote_room_) [[unlikely]] {
    return {Outcome::kOutOfRange, 0, false};
  }
  if (t.id > pending_.last_id) pending_last_qty_ = t.qty;
  const bool ok = pending_.Apply(t);  // fits: within the headroom, itself within range
  assert(ok);
  (void)ok;
  const bool out_of_order = NoteApplied(t);
  dirty_ = true;
  ++version_;
  if (!ticker_by_minute_) (void)ticker_.Apply(t);  // else at the fold, as one minute
  return {Outcome::kApplied, 0, out_of_order};
}

// A trade outside some interval's current bucket (a new bucket, a late or gap-filling one),
// with nothing pending: interval by interval.
SymbolSeries::ApplyResult SymbolSeries::ApplySlow(const Trade& t) {
  assert(pending_.empty());
  if (WouldOverflow(t)) return {Outcome::kOutOfRange, 0, false};
  if (GapTooLarge(t)) return {Outcome::kGapTooLarge, 0, false};
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
      s.has_current = 1;
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
  const bool out_of_order = NoteApplied(t);
  dirty_ = true;
  ++version_;
  // A sum the ticker cannot hold (far beyond any candle's) only leaves the ticker behind.
  (void)ticker_.Apply(t);
  return {Outcome::kApplied, late_intervals, out_of_order};
}

size_t SymbolSeries::MemoryBytes() const {
  size_t bytes = sizeof(*this) - sizeof(ticker_) + ticker_.MemoryBytes();
  bytes += slots_.capacity() * sizeof(Slot) + late_.capacity() * sizeof(LateTrade);
  for (const SourceMarks* m : {&marks_, &flush_marks_, &stored_marks_}) {
    bytes += m->by_source.capacity() * sizeof(SourceMarks::Mark);
  }
  bytes += storage_stamp_.capacity() > 15 ? storage_stamp_.capacity() + 1 : 0;
  for (const Slot& s : slots_) bytes += s.closed.capacity() * sizeof(Candle);
  return bytes;
}

void SymbolSeries::CarryIntoEmptyCurrent(size_t i, Decimal close) {
  FoldPending();
  Slot& s = slots_[i];
  if (s.has_current && RecarryClose(close, &s.current, &s.current + 1) > 0) ++version_;
}

SymbolSeries::FlushTicket SymbolSeries::BeginFlush() {
  assert(!in_flight_);
  FoldPending();
  in_flight_ = true;
  for (Slot& s : slots_) {
    assert(s.closed.size() < (size_t{1} << 31));
    s.closed_in_flight = static_cast<uint32_t>(s.closed.size()) & 0x7fffffffu;
    s.changed_from = Slot::kNone;
  }
  late_in_flight_ = late_.size();
  flush_marks_ = marks_;  // reuses its capacity: no allocation once a symbol's sources are known
  return FlushTicket{version_};
}

void SymbolSeries::CommitFlush(const FlushTicket& ticket) {
  assert(in_flight_);
  in_flight_ = false;
  for (Slot& s : slots_) {
    const size_t done = std::min<size_t>(s.closed_in_flight, s.changed_from);
    s.closed.erase(s.closed.begin(), s.closed.begin() + static_cast<ptrdiff_t>(done));
    // A symbol holds its closed candles only until they are written: give the buffer back
    // (one allocation per bucket roll, none per trade) so idle memory is the current state.
    if (s.closed.empty()) s.closed.shrink_to_fit();
    closed_count_ -= done;
    s.closed_in_flight = 0;
    s.changed_from = Slot::kNone;
  }
  late_.erase(late_.begin(), late_.begin() + static_cast<ptrdiff_t>(late_in_flight_));
  late_in_flight_ = 0;
  stored_marks_ = flush_marks_;
  if (version_ == ticket.version) dirty_ = false;
}

void SymbolSeries::AbortFlush() {
  assert(in_flight_);
  in_flight_ = false;
  for (Slot& s : slots_) {
    s.closed_in_flight = 0;
    s.changed_from = Slot::kNone;
  }
  late_in_flight_ = 0;
}

}  // namespace klined
