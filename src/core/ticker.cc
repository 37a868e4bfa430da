// TickerWindow: see include/klined/ticker.h for the design and the rendering choices.
#include "klined/ticker.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>

namespace klined {
namespace {

using decimal_internal::Pow10;

// Compact decimal: bits 63..59 hold e (0..30), bits 58..0 a mantissa m, value raw = m * 10^e.
// e == 31 marks a value kept exactly in the side pool; the low 32 bits index it.
constexpr int kExpShift = 59;
constexpr uint64_t kMantissaMask = (uint64_t{1} << kExpShift) - 1;
constexpr uint64_t kWideTag = uint64_t{31} << kExpShift;
constexpr int kMaxExp = 30;

constexpr std::array<UInt128, kMaxExp + 1> MakePow10Table() {
  std::array<UInt128, kMaxExp + 1> t{};
  for (int i = 0; i <= kMaxExp; ++i) t[i] = Pow10(i);
  return t;
}
constexpr std::array<UInt128, kMaxExp + 1> kPow10 = MakePow10Table();

bool IsWide(uint64_t c) { return (c & kWideTag) == kWideTag; }

int64_t MinuteOf(int64_t ms) { return ms >= 0 ? ms / 60000 : -((-ms + 59999) / 60000); }

// Writes the decimal digits of v (no sign) ending at buf + 40; returns them.
std::string_view FormatUInt128(UInt128 v, char* buf) {
  char* end = buf + 40;
  char* p = end;
  do {
    if (v > UINT64_MAX) {  // peel base-10^19 chunks so the rest is 64-bit arithmetic
      constexpr uint64_t k19 = 10'000'000'000'000'000'000ull;
      uint64_t chunk = static_cast<uint64_t>(v % k19);
      v /= k19;
      for (int i = 0; i < 19; ++i, chunk /= 10) *--p = static_cast<char>('0' + chunk % 10);
      continue;
    }
    uint64_t w = static_cast<uint64_t>(v);
    do {
      *--p = static_cast<char>('0' + w % 10);
      w /= 10;
    } while (w != 0);
    v = 0;
  } while (v != 0);
  return {p, static_cast<size_t>(end - p)};
}

char* PutLiteral(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Ring

template <class E>
void TickerWindow::Ring<E>::Insert(size_t pos, const E& e) {
  assert(pos <= size_);
  if (size_ == buf_.size()) {  // grow, linearized
    std::vector<E> bigger(std::min<size_t>(std::max<size_t>(8, 2 * buf_.size()), kMinutes + 1));
    for (size_t i = 0; i < size_; ++i) bigger[i] = (*this)[i];
    buf_.swap(bigger);
    head_ = 0;
  }
  ++size_;
  for (size_t i = size_ - 1; i > pos; --i) (*this)[i] = (*this)[i - 1];
  (*this)[pos] = e;
}

template <class E>
void TickerWindow::Ring<E>::Erase(size_t pos, size_t count) {
  assert(pos + count <= size_);
  for (size_t i = pos; i + count < size_; ++i) (*this)[i] = (*this)[i + count];
  size_ -= count;
}

// Inserts e (for `minute`) into a monotonic deque ordered by minute, whose values get strictly
// worse from front to back. at_least(a, b): a's value is at least as good as b's. An entry
// whose value is matched or beaten by an entry of a later-or-equal minute can never be the
// window's extreme again, so it is dropped (or e is, returning false: the caller frees it).
template <class Deque, class E, class MinuteFn, class AtLeast, class ReleaseFn>
static bool InsertMonotone(Deque* d, const E& e, int64_t minute, MinuteFn minute_of,
                           AtLeast at_least, ReleaseFn release) {
  size_t j = d->size();  // first index whose minute >= minute (searching from the back: the
  while (j > 0 && minute_of((*d)[j - 1]) >= minute) --j;  // common insert is at the back)
  if (j < d->size() && at_least((*d)[j], e)) return false;
  size_t end = j;
  if (end < d->size() && minute_of((*d)[end]) == minute) ++end;  // this minute's old value
  size_t begin = j;
  while (begin > 0 && at_least(e, (*d)[begin - 1])) --begin;
  for (size_t i = begin; i < end; ++i) release((*d)[i]);
  d->Erase(begin, end - begin);
  d->Insert(begin, e);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Compact values

uint64_t TickerWindow::Encode(Decimal d) {
  assert(!d.IsNegative());
  UInt128 m = static_cast<UInt128>(d.raw());
  if (m == 0) return 0;
  int e = 0;
  for (int k : {16, 8, 4, 2, 1}) {  // strips up to 31 trailing zeros, capped at kMaxExp
    if (e + k <= kMaxExp && m % kPow10[k] == 0) {
      m /= kPow10[k];
      e += k;
    }
  }
  if (m <= kMantissaMask) return (static_cast<uint64_t>(e) << kExpShift) | static_cast<uint64_t>(m);
  uint32_t idx;
  if (!pool_free_.empty()) {
    idx = pool_free_.back();
    pool_free_.pop_back();
    pool_[idx] = d;
  } else {
    idx = static_cast<uint32_t>(pool_.size());
    pool_.push_back(d);
  }
  return kWideTag | idx;
}

Decimal TickerWindow::Decode(uint64_t c) const {
  if (IsWide(c)) return pool_[static_cast<uint32_t>(c)];
  const int e = static_cast<int>(c >> kExpShift);
  return Decimal::FromRaw(static_cast<Int128>((c & kMantissaMask) * kPow10[e]));
}

void TickerWindow::Release(uint64_t c) {
  if (IsWide(c)) pool_free_.push_back(static_cast<uint32_t>(c));
}

void TickerWindow::StoreFirstId(int slot, TradeId f) {
  auto fits = [&](TradeId base, TradeId id) {
    return id >= base && static_cast<uint64_t>(id - base) < kWideId;
  };
  if (id_base_ == kNoTradeId) id_base_ = f > (int64_t{1} << 31) ? f - (int64_t{1} << 31) : 0;
  if (!fits(id_base_, f)) {
    // Rebase on the lowest first id of the window if every first id then fits (ids grow
    // over time: this runs once per ~2^31 ids).
    TradeId lo = f, hi = f;
    for (int s = 0; s < kMinutes; ++s) {
      if (n_[s] == 0 || s == slot) continue;
      const TradeId x = LoadFirstId(s);
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    if (static_cast<uint64_t>(hi - lo) < kWideId) {
      std::array<TradeId, kMinutes> ids;
      for (int s = 0; s < kMinutes; ++s) ids[s] = n_[s] != 0 && s != slot ? LoadFirstId(s) : 0;
      wide_ids_.clear();
      id_base_ = lo;
      for (int s = 0; s < kMinutes; ++s) {
        if (n_[s] != 0 && s != slot) f_[s] = static_cast<uint32_t>(ids[s] - lo);
      }
    }
  }
  if (fits(id_base_, f)) {
    f_[slot] = static_cast<uint32_t>(f - id_base_);
  } else {
    f_[slot] = kWideId;
    wide_ids_.emplace_back(static_cast<uint16_t>(slot), f);
  }
}

TradeId TickerWindow::LoadFirstId(int slot) const {
  if (f_[slot] != kWideId) return id_base_ + f_[slot];
  for (const auto& [s, id] : wide_ids_) {
    if (s == slot) return id;
  }
  assert(false);
  return kNoTradeId;
}

void TickerWindow::ClearFirstId(int slot) {
  if (f_[slot] == kWideId) {
    std::erase_if(wide_ids_, [slot](const auto& p) { return p.first == slot; });
  }
  f_[slot] = 0;
}

// ---------------------------------------------------------------------------------------------
// Window

TickerWindow::TickerWindow() = default;

int64_t TickerWindow::SlotMinute(uint16_t slot) const {
  const int64_t s = start();
  return s + (static_cast<int64_t>(slot) - Slot(s) + kMinutes) % kMinutes;
}

void TickerWindow::NoteLastKnown(TradeId id, Decimal price, Decimal qty) {
  if (id > last_known_id_) {
    last_known_id_ = id;
    last_known_price_ = price;
    last_known_qty_ = qty;
  }
}

bool TickerWindow::Apply(const Trade& t) {
  const int64_t minute = MinuteOf(t.time_ms);
  if (minute == end_ && hot_.n != 0) [[likely]] {  // the hot minute is the frontier already
    Decimal v, q;
    if (!Decimal::Add(volume_, t.qty, &v) || !Decimal::Add(quote_volume_, t.quote, &q) ||
        hot_.n == UINT32_MAX) [[unlikely]] {
      return false;
    }
    volume_ = v;
    quote_volume_ = q;
    ++count_;
    // The hot minute's sums are parts of the window sums that just fit, so they fit too.
    (void)Decimal::Add(hot_.v, t.qty, &hot_.v);
    (void)Decimal::Add(hot_.q, t.quote, &hot_.q);
    ++hot_.n;
    if (t.id < hot_.f) {
      hot_.f = t.id;
      hot_.open = t.price;
      if (t.id < first_id_) first_id_ = t.id;
    }
    if (t.id > hot_.l) {
      hot_.l = t.id;
      hot_.close = t.price;
      hot_.last_qty = t.qty;
      NoteLastKnown(t.id, t.price, t.qty);
    }
    if (t.price > hot_.high) hot_.high = t.price;
    if (t.price < hot_.low) hot_.low = t.price;
    return true;
  }
  Minute m;
  m.v = t.qty;
  m.q = t.quote;
  m.open = m.high = m.low = m.close = t.price;
  m.last_qty = t.qty;
  m.f = m.l = t.id;
  m.n = 1;
  return MergeIntoWindow(minute, m);
}

TickerWindow::Minute TickerWindow::FromCandle(const Candle& c) {
  Minute m;
  m.v = c.volume;
  m.q = c.quote_volume;
  m.open = c.open;
  m.high = c.high;
  m.low = c.low;
  m.close = c.close;
  m.f = c.first_id;
  m.l = c.last_id;
  m.n = c.count;  // last_qty: 0 unless the caller knows it
  return m;
}

bool TickerWindow::ApplyMinute(int64_t time_ms, const Candle& c, Decimal last_qty) {
  assert(c.count > 0);
  Minute m = FromCandle(c);
  m.last_qty = last_qty;
  return MergeIntoWindow(MinuteOf(time_ms), m);
}

bool TickerWindow::MergeIntoWindow(int64_t minute, const Minute& m) {
  if (end_ == kNoMinute || minute > end_) Expire(minute);
  if (minute < start()) return true;  // older than the window: not part of the ticker
  if (frontier_ == kNoMinute32 || minute > frontier_) frontier_ = static_cast<int32_t>(minute);
  const int slot = Slot(minute);
  const bool hot = minute == end_;
  const uint64_t n_before = hot ? static_cast<uint64_t>(hot_.n) : n_[slot];
  Decimal v, q;
  if (!Decimal::Add(volume_, m.v, &v) || !Decimal::Add(quote_volume_, m.q, &q) ||
      n_before + static_cast<uint64_t>(m.n) > UINT32_MAX) {
    return false;
  }
  volume_ = v;
  quote_volume_ = q;
  count_ += m.n;
  if (first_id_ == kNoTradeId || m.f < first_id_) first_id_ = m.f;
  NoteLastKnown(m.l, m.close, m.last_qty);

  if (hot) {
    if (hot_.n == 0) {
      hot_ = m;
      return true;
    }
    (void)Decimal::Add(hot_.v, m.v, &hot_.v);
    (void)Decimal::Add(hot_.q, m.q, &hot_.q);
    hot_.n += m.n;
    if (m.f < hot_.f) {
      hot_.f = m.f;
      hot_.open = m.open;
    }
    if (m.l > hot_.l) {
      hot_.l = m.l;
      hot_.close = m.close;
      hot_.last_qty = m.last_qty;
    }
    hot_.high = std::max(hot_.high, m.high);
    hot_.low = std::min(hot_.low, m.low);
    return true;
  }

  // A minute before the current one: update its compact slot (slow path, late data).
  if (minute < persisted_end_) ++stale_changes_;  // the persisted state lacks it
  if (n_[slot] == 0) {
    FillSlot(slot, minute, m);
  } else {
    Decimal sv, sq;
    (void)Decimal::Add(Decode(v_[slot]), m.v, &sv);
    (void)Decimal::Add(Decode(q_[slot]), m.q, &sq);
    v_[slot] = EncodeFreeing(v_[slot], sv);
    q_[slot] = EncodeFreeing(q_[slot], sq);
    if (m.f < LoadFirstId(slot)) {
      open_[slot] = EncodeFreeing(open_[slot], m.open);
      ClearFirstId(slot);
      StoreFirstId(slot, m.f);
    }
    n_[slot] += static_cast<uint32_t>(m.n);
  }
  InsertExtremes(minute, m);
  return true;
}

void TickerWindow::FillSlot(int slot, int64_t minute, const Minute& m) {
  v_[slot] = Encode(m.v);
  q_[slot] = Encode(m.q);
  open_[slot] = Encode(m.open);
  StoreFirstId(slot, m.f);
  n_[slot] = static_cast<uint32_t>(m.n);
  if (first_committed_ == kNoMinute || minute < first_committed_) first_committed_ = minute;
}

void TickerWindow::InsertExtremes(int64_t minute, const Minute& m) {
  const auto slot_minute = [this](const PriceEntry& e) { return SlotMinute(e.slot); };
  const auto release = [this](const PriceEntry& e) { Release(e.price); };
  const uint16_t slot = static_cast<uint16_t>(Slot(minute));
  const PriceEntry hi{Encode(m.high), slot};
  if (!InsertMonotone(
          &highs_, hi, minute, slot_minute,
          [this](const PriceEntry& a, const PriceEntry& b) {
            return Decode(a.price) >= Decode(b.price);
          },
          release)) {
    Release(hi.price);
  }
  const PriceEntry lo{Encode(m.low), slot};
  if (!InsertMonotone(
          &lows_, lo, minute, slot_minute,
          [this](const PriceEntry& a, const PriceEntry& b) {
            return Decode(a.price) <= Decode(b.price);
          },
          release)) {
    Release(lo.price);
  }
  (void)InsertMonotone(
      &lasts_, LastEntry{minute, m.l, m.close, m.last_qty}, minute,
      [](const LastEntry& e) { return e.minute; },
      [](const LastEntry& a, const LastEntry& b) { return a.id >= b.id; }, [](const LastEntry&) {});
}

void TickerWindow::CommitHot() {
  if (hot_.n == 0) return;
  const int slot = Slot(end_);
  assert(n_[slot] == 0);  // the current minute's slot is never committed before it ends
  FillSlot(slot, end_, hot_);
  InsertExtremes(end_, hot_);
  hot_ = Minute{};
}

void TickerWindow::Advance(int64_t now_ms) {
  const int64_t minute = MinuteOf(now_ms);
  if (end_ == kNoMinute || minute > end_) Expire(minute);
}

void TickerWindow::Expire(int64_t new_end) {
  if (end_ == kNoMinute) {
    end_ = new_end;
    return;
  }
  if (new_end <= end_) return;
  CommitHot();
  const int64_t new_start = new_end - (kMinutes - 1);
  if (new_start > end_) {  // the whole window left
    ClearAll();
    frontier_ = kNoMinute32;
    end_ = new_end;
    return;
  }
  // Deque minutes are recovered against the old window, so pop before moving end_.
  while (highs_.size() != 0 && SlotMinute(highs_[0].slot) < new_start) {
    Release(highs_[0].price);
    highs_.PopFront();
  }
  while (lows_.size() != 0 && SlotMinute(lows_[0].slot) < new_start) {
    Release(lows_[0].price);
    lows_.PopFront();
  }
  while (lasts_.size() != 0 && lasts_[0].minute < new_start) lasts_.PopFront();
  bool rescan = false;
  for (int64_t mm = start(); mm < new_start; ++mm) {
    const int s = Slot(mm);
    if (n_[s] == 0) continue;
    // Exact: these values were added when the minute entered the window.
    (void)Decimal::Sub(volume_, Decode(v_[s]), &volume_);
    (void)Decimal::Sub(quote_volume_, Decode(q_[s]), &quote_volume_);
    count_ -= n_[s];
    if (LoadFirstId(s) == first_id_) rescan = true;
    Release(v_[s]);
    Release(q_[s]);
    Release(open_[s]);
    v_[s] = q_[s] = open_[s] = 0;
    ClearFirstId(s);
    n_[s] = 0;
  }
  end_ = new_end;
  if (first_committed_ != kNoMinute && first_committed_ < new_start) SeekFirstCommitted(new_start);
  if (rescan) RescanFirstId();
}

void TickerWindow::SeekFirstCommitted(int64_t from) {
  first_committed_ = kNoMinute;
  for (int64_t mm = from; mm < end_; ++mm) {
    if (n_[Slot(mm)] != 0) {
      first_committed_ = mm;
      return;
    }
  }
}

void TickerWindow::RescanFirstId() {
  first_id_ = hot_.n != 0 ? hot_.f : kNoTradeId;
  for (int s = 0; s < kMinutes; ++s) {
    if (n_[s] == 0) continue;
    const TradeId f = LoadFirstId(s);
    if (first_id_ == kNoTradeId || f < first_id_) first_id_ = f;
  }
}

void TickerWindow::ClearAll() {
  v_.fill(0);
  q_.fill(0);
  open_.fill(0);
  n_.fill(0);
  f_.fill(0);
  pool_.clear();
  pool_free_.clear();
  wide_ids_.clear();
  highs_.Clear();
  lows_.Clear();
  lasts_.Clear();
  hot_ = Minute{};
  volume_ = quote_volume_ = Decimal();
  count_ = 0;
  first_id_ = kNoTradeId;
  first_committed_ = kNoMinute;
}

bool TickerWindow::Rebuild(std::span<const Candle> one_minute_candles, int64_t now_ms) {
  ClearAll();
  frontier_ = kNoMinute32;
  persisted_end_ = kNoMinute32;  // nothing persisted matches this window: write one
  stale_changes_ = 0;
  end_ = kNoMinute;
  id_base_ = kNoTradeId;
  last_known_id_ = kNoTradeId;
  last_known_price_ = last_known_qty_ = Decimal();
  Advance(now_ms);
  bool ok = true;
  for (const Candle& c : one_minute_candles) {
    if (c.count == 0) continue;
    const Minute m = FromCandle(c);  // last_qty stays 0: a candle does not carry it
    const int64_t minute = MinuteOf(c.open_time);
    if (minute < start()) {
      NoteLastKnown(m.l, m.close, m.last_qty);
      continue;
    }
    if (!MergeIntoWindow(minute, m)) ok = false;
  }
  return ok;
}

TickerWindow::Stats TickerWindow::GetStats() const {
  Stats s;
  s.open_time = end_ == kNoMinute ? 0 : start() * kMinuteMs;
  if (count_ == 0) {
    s.open = s.high = s.low = s.last = last_known_price_;
    s.last_qty = last_known_qty_;
    return s;
  }
  const bool hot = hot_.n != 0;
  s.open = first_committed_ != kNoMinute ? Decode(open_[Slot(first_committed_)]) : hot_.open;
  bool have = hot;
  s.high = hot_.high;
  s.low = hot_.low;
  if (highs_.size() != 0) {
    const Decimal h = Decode(highs_[0].price);
    s.high = have ? std::max(s.high, h) : h;
  }
  if (lows_.size() != 0) {
    const Decimal l = Decode(lows_[0].price);
    s.low = have ? std::min(s.low, l) : l;
  }
  if (lasts_.size() != 0 && (!hot || lasts_[0].id > hot_.l)) {
    s.last = lasts_[0].price;
    s.last_qty = lasts_[0].qty;
    s.last_id = lasts_[0].id;
  } else {
    s.last = hot_.close;
    s.last_qty = hot_.last_qty;
    s.last_id = hot_.l;
  }
  s.volume = volume_;
  s.quote_volume = quote_volume_;
  s.first_id = first_id_;
  s.count = count_;
  return s;
}

size_t TickerWindow::MemoryBytes() const {
  return sizeof(*this) + highs_.capacity() * sizeof(PriceEntry) +
         lows_.capacity() * sizeof(PriceEntry) + lasts_.capacity() * sizeof(LastEntry) +
         pool_.capacity() * sizeof(Decimal) + pool_free_.capacity() * sizeof(uint32_t) +
         wide_ids_.capacity() * sizeof(wide_ids_[0]);
}

// ---------------------------------------------------------------------------------------------
// Persisted state

namespace {

constexpr uint32_t kStateMagic = 0x3253544b;  // "KTS2"

// Little-endian fixed-width fields; the reader checks every bound.
class StateWriter {
 public:
  explicit StateWriter(std::string* out) : out_(out) {}
  template <class T>
  void Put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_->append(b, sizeof(T));
  }
  void PutDecimal(Decimal d) { Put(static_cast<UInt128>(d.raw())); }
  // LEB128: 7 bits a byte, most values of a state take 1-5 bytes instead of 8.
  void PutVar(uint64_t v) {
    while (v >= 0x80) {
      out_->push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    out_->push_back(static_cast<char>(v));
  }

 private:
  std::string* out_;
};

class StateReader {
 public:
  explicit StateReader(std::string_view in) : in_(in) {}
  template <class T>
  bool Get(T* v) {
    if (in_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetDecimal(Decimal* d) {
    UInt128 raw = 0;
    if (!Get(&raw)) return false;
    const Int128 r = static_cast<Int128>(raw);
    if (r < -Decimal::kMaxRaw || r > Decimal::kMaxRaw) return false;
    *d = Decimal::FromRaw(r);
    return true;
  }
  bool GetVar(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ == in_.size()) return false;
      const auto b = static_cast<uint8_t>(in_[pos_++]);
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return shift < 63 || b <= 1;
    }
    return false;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

// A checksum of the state, 8 bytes a step (a byte-wise FNV-1a was most of a restart's cost:
// one serial multiply per byte of ~35 KiB per symbol).
uint64_t StateChecksum(std::string_view s) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ s.size();
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  h = (h ^ tail) * 0xc4ceb9fe1a85ec53ULL;
  return h ^ (h >> 29);
}

// A compact decimal as a varint: its 5 exponent bits moved below the mantissa, so the small
// mantissas of real prices and sums give short varints.
uint64_t CompactToVar(uint64_t c) { return (c << 5) | (c >> kExpShift); }
uint64_t VarToCompact(uint64_t v) { return (v >> 5) | ((v & 31) << kExpShift); }

}  // namespace

void TickerWindow::AppendState(std::string* out) const {
  const size_t begin = out->size();
  StateWriter w(out);
  // The minutes before `e`: the caller merges the 1m candles of e and later again.
  const int64_t e = StateEnd();
  const auto in_state = [this, e](int64_t minute) { return minute >= start() && minute < e; };
  w.Put(kStateMagic);
  w.Put(e);
  w.Put(id_base_);
  w.Put(last_known_id_);
  w.PutDecimal(last_known_price_);
  w.PutDecimal(last_known_qty_);
  Decimal v, q;
  int64_t n = 0;
  int64_t first = kNoMinute;
  for (int64_t mm = start(); mm < e; ++mm) {
    const int s = Slot(mm);
    if (n_[s] == 0) continue;
    (void)Decimal::Add(v, Decode(v_[s]), &v);  // parts of sums that fit
    (void)Decimal::Add(q, Decode(q_[s]), &q);
    n += n_[s];
    if (first == kNoMinute) first = mm;
  }
  w.PutDecimal(v);
  w.PutDecimal(q);
  w.Put(n);
  w.Put(first);
  w.Put(static_cast<uint32_t>(pool_.size()));
  for (const Decimal d : pool_) w.PutDecimal(d);
  w.Put(static_cast<uint32_t>(pool_free_.size()));
  for (const uint32_t i : pool_free_) w.Put(i);
  w.Put(static_cast<uint32_t>(wide_ids_.size()));
  for (const auto& [slot, id] : wide_ids_) {
    w.Put(slot);
    w.Put(id);
  }
  uint16_t slots = 0;
  for (int s = 0; s < kMinutes; ++s)
    slots += n_[s] != 0 && in_state(SlotMinute(static_cast<uint16_t>(s)));
  w.Put(slots);
  int prev = -1;
  for (int s = 0; s < kMinutes; ++s) {
    if (n_[s] == 0 || !in_state(SlotMinute(static_cast<uint16_t>(s)))) continue;
    w.PutVar(static_cast<uint64_t>(s - prev));  // slots ascending: a small step
    prev = s;
    w.PutVar(CompactToVar(v_[s]));
    w.PutVar(CompactToVar(q_[s]));
    w.PutVar(CompactToVar(open_[s]));
    w.PutVar(n_[s]);
    w.PutVar(f_[s]);
  }
  // Deque entries of later minutes go too: merging those minutes again puts them back (an
  // entry they dominated stays dominated, and expires first).
  for (const Ring<PriceEntry>* r : {&highs_, &lows_}) {
    uint16_t kept = 0;
    for (size_t i = 0; i < r->size(); ++i) kept += in_state(SlotMinute((*r)[i].slot));
    w.Put(kept);
    for (size_t i = 0; i < r->size(); ++i) {
      if (!in_state(SlotMinute((*r)[i].slot))) continue;
      w.PutVar(CompactToVar((*r)[i].price));
      w.PutVar((*r)[i].slot);
    }
  }
  uint16_t lasts = 0;
  for (size_t i = 0; i < lasts_.size(); ++i) lasts += in_state(lasts_[i].minute);
  w.Put(lasts);
  for (size_t i = 0; i < lasts_.size(); ++i) {
    if (!in_state(lasts_[i].minute)) continue;
    w.Put(lasts_[i].minute);
    w.Put(lasts_[i].id);
    w.PutDecimal(lasts_[i].price);
    w.PutDecimal(lasts_[i].qty);
  }
  w.Put(StateChecksum(std::string_view(*out).substr(begin)));
}

bool TickerWindow::RestoreState(std::string_view state) {
  ClearAll();
  end_ = kNoMinute;
  id_base_ = kNoTradeId;
  last_known_id_ = kNoTradeId;
  last_known_price_ = last_known_qty_ = Decimal();
  persisted_end_ = kNoMinute32;
  stale_changes_ = 0;
  auto fail = [this] {
    ClearAll();
    end_ = kNoMinute;
    id_base_ = kNoTradeId;
    last_known_id_ = kNoTradeId;
    last_known_price_ = last_known_qty_ = Decimal();
    return false;
  };
  if (state.size() < sizeof(uint64_t)) return fail();
  uint64_t sum = 0;
  std::memcpy(&sum, state.data() + state.size() - sizeof sum, sizeof sum);
  state.remove_suffix(sizeof sum);
  if (StateChecksum(state) != sum) return fail();
  StateReader r(state);
  uint32_t magic = 0, pool_n = 0, free_n = 0, wide_n = 0;
  uint16_t slots = 0;
  if (!r.Get(&magic) || magic != kStateMagic || !r.Get(&end_) || end_ == kNoMinute ||
      !r.Get(&id_base_) || !r.Get(&last_known_id_) || !r.GetDecimal(&last_known_price_) ||
      !r.GetDecimal(&last_known_qty_) || !r.GetDecimal(&volume_) || !r.GetDecimal(&quote_volume_) ||
      !r.Get(&count_) || !r.Get(&first_committed_) || !r.Get(&pool_n) ||
      pool_n > 6 * kMinutes + 3) {
    return fail();
  }
  pool_.resize(pool_n);
  for (Decimal& d : pool_) {
    if (!r.GetDecimal(&d)) return fail();
  }
  if (!r.Get(&free_n) || free_n > pool_n) return fail();
  pool_free_.resize(free_n);
  for (uint32_t& i : pool_free_) {
    if (!r.Get(&i) || i >= pool_n) return fail();
  }
  if (!r.Get(&wide_n) || wide_n > kMinutes) return fail();
  wide_ids_.resize(wide_n);
  for (auto& [slot, id] : wide_ids_) {
    if (!r.Get(&slot) || slot >= kMinutes || !r.Get(&id)) return fail();
  }
  auto compact_ok = [pool_n](uint64_t c) {
    return !IsWide(c) ? (c >> kExpShift) <= kMaxExp : static_cast<uint32_t>(c) < pool_n;
  };
  if (!r.Get(&slots) || slots > kMinutes) return fail();
  int64_t slot = -1;
  for (uint16_t k = 0; k < slots; ++k) {
    uint64_t step = 0, v = 0, q = 0, open = 0, n = 0, f = 0;
    if (!r.GetVar(&step) || step == 0 || step > kMinutes || !r.GetVar(&v) || !r.GetVar(&q) ||
        !r.GetVar(&open) || !r.GetVar(&n) || !r.GetVar(&f) || n == 0 || n > UINT32_MAX ||
        f > UINT32_MAX) {
      return fail();
    }
    slot += static_cast<int64_t>(step);
    if (slot >= kMinutes) return fail();
    const auto s = static_cast<size_t>(slot);
    v_[s] = VarToCompact(v);
    q_[s] = VarToCompact(q);
    open_[s] = VarToCompact(open);
    n_[s] = static_cast<uint32_t>(n);
    f_[s] = static_cast<uint32_t>(f);
    if (!compact_ok(v_[s]) || !compact_ok(q_[s]) || !compact_ok(open_[s])) return fail();
  }
  for (Ring<PriceEntry>* ring : {&highs_, &lows_}) {
    uint16_t n = 0;
    if (!r.Get(&n) || n > kMinutes) return fail();
    for (uint16_t k = 0; k < n; ++k) {
      uint64_t price = 0, at = 0;
      if (!r.GetVar(&price) || !r.GetVar(&at) || at >= kMinutes) return fail();
      PriceEntry e{};
      e.price = VarToCompact(price);
      e.slot = static_cast<uint16_t>(at);
      if (!compact_ok(e.price)) return fail();
      ring->Insert(ring->size(), e);
    }
  }
  uint16_t lasts = 0;
  if (!r.Get(&lasts) || lasts > kMinutes) return fail();
  for (uint16_t k = 0; k < lasts; ++k) {
    LastEntry e{};
    if (!r.Get(&e.minute) || !r.Get(&e.id) || !r.GetDecimal(&e.price) || !r.GetDecimal(&e.qty)) {
      return fail();
    }
    lasts_.Insert(lasts_.size(), e);
  }
  if (!r.done() || count_ < 0) return fail();
  for (int s = 0; s < kMinutes; ++s) {
    if (n_[s] == 0 || f_[s] != kWideId) continue;
    bool found = false;
    for (const auto& [slot, id] : wide_ids_) found |= slot == s;
    if (!found) return fail();
  }
  RescanFirstId();
  frontier_ = kNoMinute32;                      // the caller merges the minutes from end_ on
  persisted_end_ = static_cast<int32_t>(end_);  // what was just read is what storage holds
  return true;
}

// Long division producing one decimal digit per step: with r < Y < 2^127, floor(10r / Y) and
// 10r mod Y are found by adding r ten times modulo Y, so no intermediate passes 2Y < 2^128 and
// the quotient's integer part may be as long as it likes (it is written as digits).
void TickerWindow::AppendQuotient(Decimal value, Decimal divisor, int shift, int places,
                                  std::string* out) {
  assert(!divisor.IsZero());
  const bool negative = value.IsNegative() != divisor.IsNegative();
  const UInt128 x = static_cast<UInt128>(value.IsNegative() ? -value.raw() : value.raw());
  const UInt128 y = static_cast<UInt128>(divisor.IsNegative() ? -divisor.raw() : divisor.raw());
  // At most 39 integer digits (x / y < 2^127), shift + places more, one carry: a stack buffer.
  assert(shift + places <= 20);
  char digits[64];
  size_t len = 0;
  {
    std::string_view q = FormatUInt128(x / y, digits + 1);
    std::memmove(digits + 1, q.data(), q.size());
    len = q.size() + 1;
    digits[0] = '0';  // room for a carry out of the top digit
  }
  UInt128 r = x % y;
  for (int i = 0; i < shift + places; ++i) {
    UInt128 acc = 0;
    int d = 0;
    for (int k = 0; k < 10; ++k) {
      acc += r;
      if (acc >= y) {
        acc -= y;
        ++d;
      }
    }
    r = acc;
    digits[len++] = static_cast<char>('0' + d);
  }
  // Half-to-even on the remainder r / y.
  const UInt128 rest = y - r;
  const bool up = r > rest || (r == rest && (digits[len - 1] - '0') % 2 == 1);
  if (up) {
    size_t i = len;
    while (digits[i - 1] == '9') digits[--i] = '0';  // stops at digits[0] == '0' at the latest
    ++digits[i - 1];
  }
  const size_t int_len = len - static_cast<size_t>(places);
  size_t lead = 0;
  while (lead + 1 < int_len && digits[lead] == '0') ++lead;
  size_t frac_end = len;
  while (frac_end > int_len && digits[frac_end - 1] == '0') --frac_end;
  const bool zero = frac_end == int_len && int_len - lead == 1 && digits[lead] == '0';
  if (zero) {
    out->push_back('0');
    return;
  }
  if (negative) out->push_back('-');
  out->append(digits + lead, int_len - lead);
  if (frac_end > int_len) {
    out->push_back('.');
    out->append(digits + int_len, frac_end - int_len);
  }
}

void TickerWindow::AppendJson(std::string_view symbol, int64_t now_ms, std::string* out) {
  Advance(now_ms);
  const Stats s = GetStats();
  const bool seen = last_known_id_ != kNoTradeId || count_ != 0;
  Decimal change;
  (void)Decimal::Sub(s.last, s.open, &change);  // both in [0, kMaxRaw]: cannot overflow
  int64_t close_time = now_ms;
  if (end_ != kNoMinute && MinuteOf(now_ms) < end_) close_time = end_ * kMinuteMs + kMinuteMs - 1;

  out->reserve(out->size() + 512 + symbol.size());
  out->append(R"({"symbol":")");
  out->append(symbol);
  out->append(R"(","priceChange":")");
  change.AppendTo(out);
  out->append(R"(","priceChangePercent":")");
  if (s.count == 0 || s.open.IsZero()) {
    out->push_back('0');
  } else {
    AppendQuotient(change, s.open, 2, 3, out);
  }
  out->append(R"(","weightedAvgPrice":")");
  if (s.count == 0 || s.volume.IsZero()) {
    (seen ? s.last : Decimal()).AppendTo(out);
  } else {
    AppendQuotient(s.quote_volume, s.volume, 0, 8, out);
  }
  const std::pair<std::string_view, Decimal> decimals[] = {
      {R"(","openPrice":")", s.open},
      {R"(","highPrice":")", s.high},
      {R"(","lowPrice":")", s.low},
      {R"(","lastPrice":")", s.last},
      {R"(","lastQty":")", s.last_qty},
      {R"(","volume":")", s.volume},
      {R"(","quoteVolume":")", s.quote_volume},
  };
  char buf[Decimal::kMaxChars + 32];
  for (const auto& [key, d] : decimals) {
    out->append(key);
    out->append(buf, d.Format(buf));
  }
  const std::pair<std::string_view, int64_t> ints[] = {
      {R"(","openTime":)", s.open_time}, {R"(,"closeTime":)", close_time},
      {R"(,"firstId":)", s.first_id},    {R"(,"lastId":)", s.last_id},
      {R"(,"count":)", s.count},
  };
  for (const auto& [key, v] : ints) {
    char* p = PutLiteral(buf, key);
    p = std::to_chars(p, buf + sizeof(buf), v).ptr;
    out->append(buf, p);
  }
  out->push_back('}');
}

}  // namespace klined
