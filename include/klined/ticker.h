// The 24h rolling ticker of one symbol (contract section 4, `ticker:{SYMBOL}`).
//
// DESIGN
// The window at time now is the 1440 UTC minutes [minute(now) - 1439, minute(now)], the current
// one included; it is independent of the configured time_zone (a 1m candle of any whole-minute
// offset is also a UTC minute). The window's newest minute ("end") is the largest minute ever
// given to Advance or carried by an applied trade: the window never moves back.
//
// The aggregates are the candle monoid over the window's minutes: volume, quote volume and
// count are sums; open is the price of the lowest id of the window's first minute with trades;
// high/low are max/min prices; last is the price/qty of the highest id in the window;
// firstId/lastId the lowest/highest id in the window.
//
// Memory (target <= 64 KiB per active symbol including its ~3 KiB of candles): a per-minute
// record of full Decimals would be ~130 KiB, so the state is split three ways.
// - The current minute ("hot") is held in full width and takes every in-order trade: Apply's
//   fast path is a few checked 128-bit adds and compares, no encoding, no allocation.
// - Every other minute of the window lives in a fixed ring of 1440 compact slots holding only
//   what expiry and the open need: v, q, open (8-byte "compact decimals": a 59-bit mantissa and
//   a power of ten, exact; a value that does not fit goes to an exact side pool), n (uint32)
//   and f (uint32 offset from a base id, rebased when needed, exact side list otherwise).
//   32 bytes a minute: 46,080 bytes. Volume, quote volume and count are running sums over the
//   window; an expiring minute's exact v/q/n are subtracted.
// - high, low and last come from monotonic deques of the committed minutes ((slot, compact
//   price) 10 bytes for high/low; (minute, id, price, qty) for last). A minute enters them when
//   it stops being the current one; an entry is dropped once a later-or-equal minute has an at
//   least as good value, so the front is the window's extreme. A random walk keeps a few dozen
//   entries; a steady 24h trend keeps up to 1440 in one of the two (14.4 KiB), still within the
//   budget. Late trades into an older minute update its slot and insert into the deques
//   (middle insertion is supported), so out-of-order data is merged exactly.
// Expiry work is bounded by the minutes passed (at most 1440) and the rescan of firstId when
// the minute holding it leaves (<= 1440 slots, at most once per minute per symbol).
//
// Rendering choices (documented contract of AppendJson):
// - priceChangePercent = 100 * (last - open) / open rounded half-to-even to 3 places;
//   weightedAvgPrice = quoteVolume / volume rounded half-to-even to 8 places; both exact
//   (128-bit long division, no floating point), written canonically (trailing zeros stripped).
// - openTime = first minute of the window * 60000; closeTime = now_ms (or the end minute's last
//   ms if a trade from the future moved the window past now).
// - Empty window: volume/quoteVolume "0", count 0, firstId/lastId -1, change and percent "0";
//   open/high/low/last/weightedAvgPrice are the last known trade's price and lastQty its qty
//   ("0" for all when no trade was ever seen).
// - After Rebuild (restart), lastQty of a trade known only through a candle is unknown: "0"
//   until a trade with a higher id arrives.
//
// Threading: owned by one shard; no locks, no I/O. Allocation happens only when a deque or the
// side pools grow past their previous maximum.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "klined/candle.h"
#include "klined/decimal.h"
#include "klined/trade.h"

namespace klined {

class TickerWindow {
 public:
  static constexpr int kMinutes = 1440;
  static constexpr int64_t kMinuteMs = 60000;

  TickerWindow();

  // Folds a trade into its minute. A trade in a minute past the window's end advances the
  // window first; one older than the window is ignored (returns true). Returns false, leaving
  // the state unchanged, if a sum would pass 20 integer digits (the trade is refused for the
  // ticker only) or a minute would hold more than 2^32 - 1 trades. A refused trade from a later
  // minute still moves the window's end there (time has passed either way).
  [[nodiscard]] bool Apply(const Trade& t);

  // Folds the trades aggregated in `c` (all of one UTC minute, the one holding time_ms; c.n >
  // 0) as Apply would fold them one by one; last_qty is the qty of the highest id among them.
  // All-or-nothing: false, with the state unchanged, on the bounds Apply refuses.
  [[nodiscard]] bool ApplyMinute(int64_t time_ms, const Candle& c, Decimal last_qty);

  // Moves the window's end to minute(now_ms) if that is later, expiring minutes that left it.
  void Advance(int64_t now_ms);

  // Advance(now_ms), then appends the ticker JSON (see DESIGN for the field choices).
  void AppendJson(std::string_view symbol, int64_t now_ms, std::string* out);

  // Resets and rebuilds from stored 1m candles (any order; empty ones are skipped), the window
  // ending at minute(now_ms) (or a later candle's minute). Candles older than the window only
  // seed the last known price. Returns false if a candle was refused (sum overflow).
  [[nodiscard]] bool Rebuild(std::span<const Candle> one_minute_candles, int64_t now_ms);

  // Bytes owned by this window: sizeof plus heap capacity.
  size_t MemoryBytes() const;

  // ---- Persistence (PREFIX:{SYMBOL}:tks, written with the symbol's candles) ----------------
  // The state of the window's minutes before the newest one that took a trade (StateEnd()),
  // in a compact binary form: what a restart restores instead of re-reading a day of 1m
  // candles; the caller then merges the stored 1m candles of minutes >= end(), as Rebuild
  // would, and advances. Minutes from StateEnd() on are the ones trades still arrive in, so a
  // state taken during a catch-up (trade times far behind the clock) stays valid as the
  // catch-up goes on.
  void AppendState(std::string* out) const;
  // Replaces this window by a state AppendState wrote, ending where it ended (end()). False
  // (the window is then empty) if `state` is not one.
  [[nodiscard]] bool RestoreState(std::string_view state);
  // The window's newest minute.
  int64_t end() const { return end_; }
  // Where a state written now would end: the newest minute with a trade (or end()).
  int64_t StateEnd() const {
    return frontier_ == kNoMinute32 ? end_ : std::min<int64_t>(frontier_, end_);
  }
  // Persisted-state bookkeeping, for the caller that writes the state. The window counts
  // changes to minutes before the end of the state last written (which that state lacks).
  // True when a write is due: none yet, a stale one, or one `every_minutes` behind the newest
  // trade's minute and at least `min_gap_ms` after the last write (now_ms: the caller's clock,
  // so a catch-up rewrites it at most that often).
  bool StateDue(int64_t every_minutes, int64_t now_ms, int64_t min_gap_ms) const {
    return persisted_end_ == kNoMinute32 || stale_changes_ != 0 ||
           (StateEnd() - persisted_end_ >= every_minutes &&
            static_cast<uint32_t>(now_ms / 1000) - persisted_at_s_ >= min_gap_ms / 1000);
  }
  // A state is being written (AppendState now): changes from here on count against its end.
  // Returns the token for EndPersist.
  uint64_t BeginPersist(int64_t now_ms) {
    persisted_end_ = static_cast<int32_t>(StateEnd());
    persisted_at_s_ = static_cast<uint32_t>(now_ms / 1000);
    return stale_changes_;
  }
  // The write carrying it is confirmed (ok) or not (then the next StateDue is true).
  void EndPersist(bool ok, uint64_t token) {
    if (ok) {
      stale_changes_ -= std::min<uint32_t>(stale_changes_, static_cast<uint32_t>(token));
    } else {
      ++stale_changes_;
    }
  }

  // Snapshot of the aggregates, for tests and the bench (after Advance).
  struct Stats {
    Decimal open, high, low, last, last_qty, volume, quote_volume;
    TradeId first_id = kNoTradeId, last_id = kNoTradeId;
    int64_t count = 0;
    int64_t open_time = 0;
  };
  Stats GetStats() const;

  // Exact value * 10^shift / divisor rounded half-to-even to `places` decimals, appended in
  // canonical form ("0" for zero, no "-0"). divisor must be non-zero. Exposed for tests.
  static void AppendQuotient(Decimal value, Decimal divisor, int shift, int places,
                             std::string* out);

 private:
  // Full-width aggregate of one minute (the hot minute, a late trade, a rebuilt candle).
  struct Minute {
    Decimal v, q, open, high, low, close, last_qty;
    TradeId f = kNoTradeId, l = kNoTradeId;
    int64_t n = 0;
  };
  struct [[gnu::packed]] PriceEntry {
    uint64_t price;  // compact decimal
    uint16_t slot;   // minute % kMinutes; the minute is recovered from the window
  };
  struct LastEntry {
    int64_t minute;
    TradeId id;
    Decimal price, qty;
  };
  // A FIFO with middle insertion/erasure over a ring (the deques of the window). It holds at
  // most one entry per window minute (+1 while inserting), so growth stops at kMinutes + 1
  // slots instead of the next power of two (2048 would cost 6 KiB more in a 24h trend).
  template <class E>
  class Ring {
   public:
    size_t size() const { return size_; }
    size_t capacity() const { return buf_.capacity(); }
    E& operator[](size_t i) { return buf_[Index(i)]; }
    const E& operator[](size_t i) const { return buf_[Index(i)]; }
    void PopFront() {
      head_ = Index(1);
      --size_;
    }
    void Insert(size_t pos, const E& e);
    void Erase(size_t pos, size_t count);
    void Clear() { head_ = size_ = 0; }

   private:
    size_t Index(size_t i) const {
      const size_t k = head_ + i;
      return k >= buf_.size() ? k - buf_.size() : k;
    }
    std::vector<E> buf_;
    size_t head_ = 0, size_ = 0;
  };

  static constexpr int64_t kNoMinute = INT64_MIN;
  static constexpr uint32_t kWideId = UINT32_MAX;

  int64_t start() const { return end_ - (kMinutes - 1); }
  static int Slot(int64_t minute) {
    return static_cast<int>(((minute % kMinutes) + kMinutes) % kMinutes);
  }
  int64_t SlotMinute(uint16_t slot) const;  // the window minute stored at slot

  // Compact decimals (non-negative values only).
  uint64_t Encode(Decimal d);
  Decimal Decode(uint64_t c) const;
  void Release(uint64_t c);
  uint64_t EncodeFreeing(uint64_t old, Decimal d) {
    Release(old);
    return Encode(d);
  }
  // Compact first ids.
  void StoreFirstId(int slot, TradeId f);
  TradeId LoadFirstId(int slot) const;
  void ClearFirstId(int slot);

  static Minute FromCandle(const Candle& c);
  bool MergeIntoWindow(int64_t minute, const Minute& m);
  void CommitHot();
  // Stores minute m into its empty slot (sums, open, first id, count).
  void FillSlot(int slot, int64_t minute, const Minute& m);
  void InsertExtremes(int64_t minute, const Minute& m);
  void Expire(int64_t new_end);
  void ClearAll();
  void RescanFirstId();
  void SeekFirstCommitted(int64_t from);
  void NoteLastKnown(TradeId id, Decimal price, Decimal qty);

  int64_t end_ = kNoMinute;

  // Running sums over the whole window (hot minute included).
  Decimal volume_, quote_volume_;
  int64_t count_ = 0;
  TradeId first_id_ = kNoTradeId;        // min f over the window
  int64_t first_committed_ = kNoMinute;  // earliest committed minute with trades

  Minute hot_;  // minute end_, n == 0 when it has no trade

  // Compact slots of committed minutes (n_ == 0: empty).
  std::array<uint64_t, kMinutes> v_{}, q_{}, open_{};
  std::array<uint32_t, kMinutes> n_{}, f_{};
  TradeId id_base_ = kNoTradeId;

  Ring<PriceEntry> highs_, lows_;
  Ring<LastEntry> lasts_;

  // Exact fallbacks for values the compact forms cannot hold.
  std::vector<Decimal> pool_;
  std::vector<uint32_t> pool_free_;
  std::vector<std::pair<uint16_t, TradeId>> wide_ids_;

  // The highest-id trade ever applied (for an empty window).
  TradeId last_known_id_ = kNoTradeId;
  Decimal last_known_price_, last_known_qty_;

  // State bookkeeping in 32 bits where it fits (a minute number until the year 6053): the
  // window's memory budget is tight (ticker_test).
  static constexpr int32_t kNoMinute32 = INT32_MIN;
  int32_t frontier_ = kNoMinute32;       // the newest minute any trade or candle went into
  int32_t persisted_end_ = kNoMinute32;  // see StateDue
  uint32_t stale_changes_ = 0;
  uint32_t persisted_at_s_ = 0;  // the caller's clock at the last write, in seconds (mod 2^32)
};

}  // namespace klined
