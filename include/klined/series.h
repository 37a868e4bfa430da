// The authoritative in-memory candles of one symbol across the configured intervals.
//
// DESIGN
// A SymbolSeries is owned by exactly one shard (the one the symbol hashes to) and touched only
// on that shard's thread. It holds, per interval, the current candle and the candles closed
// since the last successful flush (oldest first, gap-filled, so they are contiguous buckets),
// plus the symbol's watermark: the highest trade id applied. Trades at or below the
// watermark are duplicates. A trade older than an interval's oldest held candle is "late"
// for that interval: it is queued here and resolved against storage by the next flush, in
// the same atomic write as the watermark that covers it (so a crash can neither lose it nor
// count it twice).
//
// Most trades land in the current candle of every interval: those whose time lies in the
// intersection of the current buckets (usually the finest interval's bucket). Such a trade
// is folded into one pending aggregate instead of fifteen candles, and the aggregate is
// merged into every current candle (Merge is exact and order-free) before anything reads or
// moves them: a trade outside the intersection, a flush, a read of current(). Its sum check
// is exact too: the aggregate may grow only while every current candle plus the aggregate
// stays within 20 integer digits (the headroom of the fullest current candle). When a 1s or
// 1m interval bounds the aggregate to one UTC minute, the 24h ticker is fed the aggregate at
// the fold too (one minute merge instead of one per trade).
//
// Flushing writes absolute candle values, so a retried flush is harmless. A flush is
// asynchronous: BeginFlush() snapshots what is being sent (the shard keeps applying trades
// meanwhile), and CommitFlush() forgets exactly what that write carried once it is
// confirmed: closed candles and late trades added, or closed candles changed, after the
// snapshot stay for the next flush, and the series stays dirty if it changed at all.
// AbortFlush() keeps everything for a retry.
//
// Watermarks are kept per source (the Kafka partition a trade came from): the contract has
// one symbol's trades arrive from one partition in id order, so within a source an id at or
// below its watermark is a replay (a duplicate). Trades that break the rule are applied when
// they can be exactly once and always reported (ApplyResult::out_of_order): a trade from a
// second source, or one below the symbol's watermark (the highest id from any source). One
// at or below its own source's watermark that was never applied (reordered within its
// source) cannot be told from a replay after a restart, so it is refused (kOutOfOrder) for
// the caller to dead-letter; the last kRecentIds applied ids tell the two apart.
// Pure logic: no I/O, no threads, no allocation per trade (a closed-candle buffer is
// allocated when a bucket rolls and given back once written).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "klined/candle.h"
#include "klined/interval.h"
#include "klined/ticker.h"
#include "klined/trade.h"

namespace klined {

// Which intervals, in which time zone; fixed at startup, shared read-only by every shard.
struct SeriesLayout {
  std::vector<Interval> intervals;
  UtcOffset tz;
  // Operational bound: a trade that would gap-fill more empty candles than this in one
  // interval (e.g. a series starting in 1970 followed by a trade today) is rejected as
  // out_of_range instead of stalling the shard and flooding storage.
  int64_t max_gap_candles = 1'000'000;
};

// The highest trade id applied from each source, and a floor for all of them. What storage
// records with the candles, so a reload knows per source what is already in.
struct SourceMarks {
  struct Mark {
    int32_t source;
    TradeId id;
    friend bool operator==(const Mark&, const Mark&) = default;
  };
  // Ids at or below this are taken as applied from every source: storage written before
  // per-source marks, or marks repaired from the symbol's watermark alone.
  TradeId any = 0;
  std::vector<Mark> by_source;  // sorted by source, one entry per source seen

  // The watermark of `source`: the highest id known applied from it.
  TradeId Of(int32_t source) const;
  // The symbol's watermark: the highest id applied from any source.
  TradeId Max() const;
  // Raises source's mark to id (adds the source if new).
  void Raise(int32_t source, TradeId id);
  friend bool operator==(const SourceMarks&, const SourceMarks&) = default;
};

// The text form storage keeps (B:wmp) and logs show: "source:id" entries sorted by source,
// comma-separated, "*:id" first for the floor of every source; "" for no marks.
std::string FormatMarks(const SourceMarks& marks);
// False (and *out unspecified) if `text` is not what FormatMarks writes.
bool ParseMarks(std::string_view text, SourceMarks* out);

class SymbolSeries {
 public:
  enum class Outcome : uint8_t {
    kApplied,      // in every interval's candle (late_mask says which need the late path)
    kDuplicate,    // id <= its source's watermark, and applied before: dropped
    kOutOfRange,   // a candle sum would pass 20 integer digits: rejected, nothing changed
    kGapTooLarge,  // the trade would gap-fill more than max_gap_candles: rejected, unchanged
    kOutOfOrder,   // id <= its source's watermark but never applied: refused, unchanged
  };
  struct ApplyResult {
    Outcome outcome = Outcome::kApplied;
    uint32_t late_intervals = 0;  // intervals for which the trade was queued as late
    // kApplied, but the trade broke the one-source-in-id-order rule: it came from a source
    // other than the ones seen so far, or its id is below the symbol's watermark.
    bool out_of_order = false;
  };
  // Applied ids remembered to tell a replay from a reordered trade (see DESIGN).
  static constexpr size_t kRecentIds = 8;
  // A trade whose bucket in interval `slot` is older than anything held in memory.
  struct LateTrade {
    uint32_t slot;
    Trade trade;
  };

  SymbolSeries(const SeriesLayout* layout, Symbol symbol);

  // Installs what storage holds for a symbol this shard sees for the first time (start,
  // restart, rebalance, a reload). current[i] is the stored current candle of interval i, if
  // any. Ids at or below marks.Max() that this series has not seen count as applied.
  void Restore(const SourceMarks& marks, std::span<const std::optional<Candle>> current);

  // Folds a trade into every interval. All-or-nothing: on kOutOfRange nothing changed.
  ApplyResult Apply(const Trade& t);
  // The empty candles t would gap-fill in the finest interval (which has the most): 0 when t
  // lands in or before its current bucket. One compare for a trade in the current bucket.
  int64_t GapBefore(const Trade& t) const;
  // The owner's clock when the series last took a trade (the shard releases idle ones).
  int64_t touched_ms() const { return touched_ms_; }
  void set_touched_ms(int64_t ms) { touched_ms_ = ms; }

  const Symbol& symbol() const { return symbol_; }
  // The highest id applied from any source.
  TradeId watermark() const { return watermark_; }
  const SourceMarks& marks() const { return marks_; }
  // The marks of the last write confirmed (CommitFlush), or of the load: what storage holds.
  const SourceMarks& stored_marks() const { return stored_marks_; }
  // The marks as of the last BeginFlush: what the write in flight carries.
  const SourceMarks& flush_marks() const { return flush_marks_; }
  // The store's compare-and-set token: what storage held when this series last matched it
  // (set by the store on a load and on a confirmed write; opaque here).
  const std::string& storage_stamp() const { return storage_stamp_; }
  void set_storage_stamp(std::string stamp) { storage_stamp_ = std::move(stamp); }
  // The store's write stamp: nonzero while storage's current candles are known to be exactly
  // what the last confirmed write sent (set and cleared by the store; 0 after a load).
  uint64_t write_token() const { return write_token_; }
  void set_write_token(uint64_t token) { write_token_ = token; }
  bool dirty() const { return dirty_; }
  size_t interval_count() const { return slots_.size(); }
  Interval interval(size_t i) const { return layout_->intervals[i]; }
  // Null until the interval has a candle. Folds pending trades in first (see DESIGN), which
  // changes no value a reader can see; hence not const.
  const Candle* current(size_t i) {
    FoldPending();
    return slots_[i].has_current ? &slots_[i].current : nullptr;
  }
  // Closed since the last flush, oldest first, contiguous buckets.
  const std::vector<Candle>& closed(size_t i) const { return slots_[i].closed; }
  size_t closed_count() const { return closed_count_; }
  const std::vector<LateTrade>& late() const { return late_; }

  // The symbol's 24h rolling ticker (ticker:{SYMBOL}), fed by every applied trade (pending
  // ones at the next fold, see DESIGN: BeginFlush folds before a flush renders it).
  // Rendering advances its window, hence mutable.
  TickerWindow* ticker() { return &ticker_; }

  // Bytes owned by this series: sizeof, the ticker's heap, every interval's slot and the
  // capacity of the closed-candle and late-trade buffers.
  size_t MemoryBytes() const;

  // Storage re-carried `close` up to this interval's current candle (a late trade changed an
  // earlier close): an empty current candle takes it too.
  void CarryIntoEmptyCurrent(size_t i, Decimal close);

  // What one in-flight flush carried (see BeginFlush).
  struct FlushTicket {
    uint64_t version = 0;
  };
  // Snapshots the state about to be encoded for a write. One flush in flight at a time.
  FlushTicket BeginFlush();
  // The write carrying the snapshot succeeded.
  void CommitFlush(const FlushTicket& ticket);
  // The write failed or was refused: everything is kept and sent again next time.
  void AbortFlush();
  bool in_flight() const { return in_flight_; }
  // Synchronous shorthand: BeginFlush + CommitFlush (tests, and writes done inline).
  void MarkFlushed() { CommitFlush(BeginFlush()); }
  // Marks the series for the next flush (e.g. after a rollover elsewhere changed storage).
  void MarkDirty() { dirty_ = true; }

 private:
  struct Slot {
    Candle current;
    std::vector<Candle> closed;
    // 32-bit indexes keep a slot at 208 bytes (the per-symbol memory bound): a series holds
    // far fewer closed candles (the shard stops intake past limits.max_closed_candles, and
    // one trade gap-fills at most limits.max_gap_candles <= 10^9).
    uint32_t closed_in_flight : 31 = 0;  // closed[0, n) were in the snapshot
    uint32_t has_current : 1 = 0;
    uint32_t changed_from = kNone;  // closed[i >= this] changed after the snapshot
    static constexpr uint32_t kNone = UINT32_MAX;
  };

  // Closes the current candle of slot and opens the bucket at open, gap-filling in between.
  void RollTo(Slot* slot, Interval iv, int64_t open);
  // A trade whose bucket is among the closed-but-unflushed candles: merge it there and
  // re-carry its close into the empty candles that follow. False if not held in memory.
  bool ApplyToClosed(Slot* slot, Interval iv, int64_t open, const Trade& t);
  // Merges the pending aggregate into every current candle and empties it (the fast range
  // stays valid: the buckets do not move, the headroom shrinks by the folded sums).
  void FoldPending();
  // Recomputes the intersection of the current buckets and the sum headroom (after the
  // current candles changed).
  void RefreshFastRange();
  ApplyResult ApplySlow(const Trade& t);
  // A trade at or below its source's watermark: a duplicate, or reordered (kOutOfOrder).
  ApplyResult Stale(const Trade& t) const;
  // After a trade was applied: marks, watermark, recent ids. True if it broke the order.
  bool NoteApplied(const Trade& t);
  bool WouldOverflow(const Trade& t) const;
  bool GapTooLarge(const Trade& t) const;

  const SeriesLayout* layout_;
  Symbol symbol_;
  TradeId watermark_ = 0;
  SourceMarks marks_;
  SourceMarks flush_marks_;
  SourceMarks stored_marks_;
  std::string storage_stamp_;
  uint64_t write_token_ = 0;
  size_t hot_mark_ = 0;  // marks_.by_source index of the last trade's source (a lookup cache)
  int64_t touched_ms_ = 0;
  // The last kRecentIds applied ids, oldest overwritten first; every applied id above
  // recent_floor_ is among them (ids at or below it are taken as applied).
  std::array<TradeId, kRecentIds> recent_{};
  size_t recent_next_ = 0;
  TradeId recent_floor_ = 0;
  bool dirty_ = false;
  bool in_flight_ = false;
  uint64_t version_ = 0;  // bumped by every change
  size_t late_in_flight_ = 0;
  size_t closed_count_ = 0;
  std::vector<Slot> slots_;
  // Trades in [fast_from_, fast_to_] land in every current candle: they are merged here and
  // folded in later. Empty range until every interval has a current candle.
  Candle pending_;
  Decimal pending_last_qty_;       // qty of pending_'s highest id (the ticker's lastQty)
  bool ticker_by_minute_ = false;  // pending_ always lies in one UTC minute (see DESIGN)
  int64_t fast_from_ = INT64_MAX;
  int64_t fast_to_ = INT64_MIN;
  Decimal volume_room_;  // kMaxRaw minus the largest current volume: pending_ must fit it
  Decimal quote_room_;   // the same for the quote volume
  std::vector<LateTrade> late_;
  TickerWindow ticker_;
};

// Re-carries `close` into the empty candles of [first, last), stopping at the first
// non-empty candle. Returns the number of candles changed. Shared by the series and the
// storage late path.
size_t RecarryClose(Decimal close, Candle* first, Candle* last);

}  // namespace klined
