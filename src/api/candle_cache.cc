// The L1 cache; see candle_cache.h.
#include "api/candle_cache.h"

#include <algorithm>
#include <chrono>

#include "api/rest_format.h"
#include "base/clock.h"
#include "base/log.h"

namespace klined::api {
namespace {

constexpr size_t kSeenKeys = 4096;          // keys remembered as missed once
constexpr size_t kMaxPending = 10000;       // messages kept while one entry is being read
constexpr int64_t kRetryFailedMs = 1000;    // after a read that failed (Redis down)
constexpr int64_t kRetryUnusableMs = 5000;  // after a read whose rows could not be cached
constexpr size_t kEntryOverhead = 256;      // bytes an entry costs besides its rows
constexpr size_t kPageOverhead = 128;

std::string PageKey(std::string_view entry_key, int64_t lo, int64_t hi, size_t limit,
                    bool newest_first) {
  return std::string(entry_key) + "|" + std::to_string(lo) + "|" + std::to_string(hi) + "|" +
         std::to_string(limit) + (newest_first ? "|n" : "|o");
}

size_t RowBytes(const CandleCache::Row& r) { return sizeof r + r.text.capacity() + 16; }

CandleCache::Row RowOf(const Candle& c) {
  CandleCache::Row r;
  r.open_time = c.open_time;
  AppendKlineRow(c, &r.text);
  return r;
}

int64_t OpenOf(const CandleCache::Row* r) { return r->open_time; }

void Compose(const std::vector<const CandleCache::Row*>& rows, std::string* body) {
  size_t n = 2;
  for (const CandleCache::Row* r : rows) n += r->text.size() + 1;
  body->clear();
  body->reserve(n);
  body->push_back('[');
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i > 0) body->push_back(',');
    body->append(rows[i]->text);
  }
  body->push_back(']');
}

}  // namespace

struct CandleCache::Entry {
  std::string key;
  std::string symbol;
  Interval interval = Interval::k1m;
  bool live = false;        // Redis confirmed the subscription
  bool loading = false;     // a request owns its read (subscription wait, then snapshot)
  bool ready = false;       // rows hold the run (see DESIGN)
  bool removed = false;     // evicted: a read in flight is void
  bool at_seam = false;     // rows start at the oldest candle Redis holds
  uint64_t generation = 0;  // Lost and Drop bump it: a read in flight is void
  int64_t retry_at_ms = 0;
  std::deque<Row> rows;
  // The last body composed from rows alone, for the same query again (a chart's newest 500
  // asked over and over): one copy instead of a row-by-row composition. Any change clears it.
  std::string memo_query;
  std::string memo_body;
  size_t memo_bytes = 0;                                // counted in bytes
  std::vector<std::pair<Candle, std::string>> pending;  // messages during the read
  size_t bytes = kEntryOverhead;
  std::list<Lru>::iterator lru;
};

struct CandleCache::Page {
  std::vector<Row> rows;
  int64_t expires_ms = 0;
  bool loading = true;
  size_t bytes = kPageOverhead;
  std::list<Lru>::iterator lru;
};

CandleCache::CandleCache(CacheOptions options, Subscriptions* subscriptions)
    : options_(std::move(options)),
      subscriptions_(subscriptions),
      jitter_(static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count())) {}

CandleCache::~CandleCache() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = true;
  cv_.notify_all();
}

void CandleCache::Account(int64_t delta) {
  bytes_ = static_cast<size_t>(static_cast<int64_t>(bytes_) + delta);
  stats_.bytes.store(bytes_, std::memory_order_relaxed);
}

void CandleCache::Charge(Entry* e, int64_t delta) {
  e->bytes = static_cast<size_t>(static_cast<int64_t>(e->bytes) + delta);
  Account(delta);
}

void CandleCache::Touch(std::list<Lru>::iterator* at, bool page, const std::string& key) {
  if (*at != lru_.end()) {
    lru_.splice(lru_.begin(), lru_, *at);
  } else {
    lru_.push_front(Lru{page, key});
  }
  *at = lru_.begin();
}

std::shared_ptr<CandleCache::Entry> CandleCache::Admit(const std::string& key,
                                                       const RangeQuery& q) {
  if (!seen_.contains(key)) {
    if (seen_.size() >= kSeenKeys) seen_.clear();
    seen_.insert(key);
    return nullptr;
  }
  seen_.erase(key);
  auto e = std::make_shared<Entry>();
  e->key = key;
  e->symbol = std::string(q.symbol);
  e->interval = q.interval;
  e->lru = lru_.end();
  Touch(&e->lru, false, key);
  entries_.emplace(key, e);
  stats_.entries.store(entries_.size(), std::memory_order_relaxed);
  Account(static_cast<int64_t>(e->bytes));
  subscriptions_->Want(e->symbol, e->interval);
  return e;
}

void CandleCache::ClearMemo(Entry* e) {
  if (e->memo_bytes == 0) return;
  e->memo_body = std::string();
  e->memo_query = std::string();
  Charge(e, -static_cast<int64_t>(e->memo_bytes));
  e->memo_bytes = 0;
}

void CandleCache::Drop(Entry* e) {
  ClearMemo(e);
  int64_t freed = 0;
  for (const Row& r : e->rows) freed += static_cast<int64_t>(RowBytes(r));
  e->rows.clear();
  Charge(e, -freed);
  e->ready = false;
  e->at_seam = false;
  ++e->generation;
}

void CandleCache::Apply(Entry* e, const Candle& c, std::string text) {
  ClearMemo(e);
  const int64_t t = c.open_time;
  const int64_t back = e->rows.back().open_time;
  if (t > back) {
    if (t != NextBucketOpen(e->interval, back, options_.time_zone)) {
      // A bucket after a gap: the run cannot be continued; read it again when asked.
      stats_.invalidations.fetch_add(1, std::memory_order_relaxed);
      return Drop(e);
    }
    Charge(e, static_cast<int64_t>(RowBytes(e->rows.emplace_back(Row{t, std::move(text)}))));
    while (e->rows.size() > options_.rows) {
      Charge(e, -static_cast<int64_t>(RowBytes(e->rows.front())));
      e->rows.pop_front();
      e->at_seam = false;
    }
    return;
  }
  if (t < e->rows.front().open_time) {
    // Older than the run. Below an at-seam run Redis holds nothing, so a write there means
    // the picture is not what it was read as: read it again.
    if (e->at_seam) {
      stats_.invalidations.fetch_add(1, std::memory_order_relaxed);
      Drop(e);
    }
    return;
  }
  auto it = std::lower_bound(e->rows.begin(), e->rows.end(), t,
                             [](const Row& r, int64_t v) { return r.open_time < v; });
  if (it == e->rows.end() || it->open_time != t) {
    stats_.invalidations.fetch_add(1, std::memory_order_relaxed);
    return Drop(e);
  }
  const int64_t before = static_cast<int64_t>(RowBytes(*it));
  it->text = std::move(text);
  Charge(e, static_cast<int64_t>(RowBytes(*it)) - before);
}

void CandleCache::Load(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Entry>& e,
                       CacheSource* source) {
  const uint64_t generation = e->generation;
  e->pending.clear();
  const std::string symbol = e->symbol;
  const Interval iv = e->interval;
  lock.unlock();

  // The newest `rows` history members and the current candle, in one snapshot.
  RangeQuery q{symbol, iv, std::nullopt, std::nullopt, options_.rows};
  RedisPart part;
  const ReadStatus status = source->ReadRedisPart(q, &part);
  std::deque<Row> rows;
  bool usable = status == ReadStatus::kOk && part.current.has_value() &&
                part.rows.size() == part.range_members;
  if (usable) {
    for (const Candle& c : part.rows) rows.push_back(RowOf(c));
    rows.push_back(RowOf(*part.current));
    for (size_t i = 0; usable && i + 1 < rows.size(); ++i) {
      usable = NextBucketOpen(iv, rows[i].open_time, options_.time_zone) == rows[i + 1].open_time;
    }
  }
  // All of history read: the run starts at the seam.
  const bool at_seam =
      usable && part.range_members < options_.rows && rows.front().open_time == part.seam;
  while (rows.size() > options_.rows) rows.pop_front();

  lock.lock();
  e->loading = false;
  cv_.notify_all();
  if (e->removed || e->generation != generation || !usable) {
    if (status != ReadStatus::kOk) {
      e->retry_at_ms = MonotonicMs() + kRetryFailedMs;
    } else if (!usable) {
      // A corrupt member, a gap, no current candle: serve it from Redis for a while.
      stats_.invalidations.fetch_add(1, std::memory_order_relaxed);
      e->retry_at_ms = MonotonicMs() + kRetryUnusableMs;
      LOG_RATE(kInfo, "api.cache_unusable",
               "symbol=" << symbol << " interval=" << IntervalName(iv)
                         << " detail=\"stored rows are not one gapless run ending with a current "
                            "candle; served from Redis\"");
    }
    e->pending.clear();
    return;
  }
  int64_t added = 0;
  for (const Row& r : rows) added += static_cast<int64_t>(RowBytes(r));
  e->rows = std::move(rows);
  Charge(e.get(), added);
  e->at_seam = at_seam;
  e->ready = true;
  stats_.loads.fetch_add(1, std::memory_order_relaxed);
  std::vector<std::pair<Candle, std::string>> pending;
  pending.swap(e->pending);
  for (auto& [c, text] : pending) {
    if (!e->ready) break;
    Apply(e.get(), c, std::move(text));
  }
  Evict();
}

CandleCache::Answer CandleCache::FromEntry(std::unique_lock<std::mutex>& lock, const RangeQuery& q,
                                           Entry* e, CacheSource* source,
                                           std::vector<std::shared_ptr<const Page>>* pages,
                                           std::string* body, ReadStatus* status) {
  const int64_t lo = q.start_ms.value_or(kMinTime);
  const int64_t hi = q.end_ms.value_or(kMaxTime);
  std::string query = std::to_string(lo) + "|" + std::to_string(hi) + "|" + std::to_string(q.limit);
  if (!e->memo_body.empty() && e->memo_query == query) {
    *body = e->memo_body;
    return Answer::kAnswered;
  }
  // The entry's rows as Stitch's Redis part: the current candle last, the history rows of
  // the range bounded by `limit` from the end the rule reads from.
  const auto hist_end = e->rows.end() - 1;
  auto from = std::lower_bound(e->rows.begin(), hist_end, lo,
                               [](const Row& r, int64_t v) { return r.open_time < v; });
  auto to = std::upper_bound(e->rows.begin(), hist_end, hi,
                             [](int64_t v, const Row& r) { return v < r.open_time; });
  std::vector<const Row*> view;
  if (from < to) {
    const size_t n = static_cast<size_t>(to - from);
    if (n > q.limit) {
      if (q.start_ms) {
        to = from + static_cast<ptrdiff_t>(q.limit);
      } else {
        from = to - static_cast<ptrdiff_t>(q.limit);
      }
    }
    view.reserve(static_cast<size_t>(to - from));
    for (auto it = from; it != to; ++it) view.push_back(&*it);
  }
  const Row* current = &e->rows.back();
  const bool at_seam = e->at_seam;
  bool need_source = false;
  bool used_page = false;  // the body holds MySQL rows (which expire): not memoized
  std::optional<std::tuple<int64_t, int64_t, size_t, bool>> need_page;
  // No I/O under the lock: MySQL's rows come from a page held, or the caller reads one.
  auto fetch = [&](int64_t flo, int64_t fhi, size_t limit, bool newest_first,
                   std::vector<const Row*>* out) {
    if (!at_seam) {  // below the run is Redis's too: this entry cannot answer
      need_source = true;
      return ReadStatus::kMysqlDown;
    }
    const std::string key = PageKey(e->key, flo, fhi, limit, newest_first);
    if (!UseFreshPage(key, pages, out)) {
      need_page.emplace(flo, fhi, limit, newest_first);
      return ReadStatus::kMysqlDown;
    }
    used_page = true;
    return ReadStatus::kOk;
  };
  std::vector<const Row*> rows;
  const ReadStatus s =
      Stitch<const Row*>(q, &current, e->rows.front().open_time, std::span<const Row* const>(view),
                         view.size(), OpenOf, fetch, &rows);
  if (s == ReadStatus::kOk) {
    Compose(rows, body);
    if (!used_page) {
      ClearMemo(e);
      e->memo_query = std::move(query);
      e->memo_body = *body;
      e->memo_bytes = e->memo_body.capacity() + e->memo_query.capacity();
      Charge(e, static_cast<int64_t>(e->memo_bytes));
    }
    return Answer::kAnswered;
  }
  if (need_source || !need_page) return Answer::kNeedsSource;
  // Read the page without the lock; the caller then tries the entry again.
  const auto [flo, fhi, limit, newest_first] = *need_page;
  const std::string symbol = e->symbol;
  const Interval iv = e->interval;
  std::vector<const Row*> ignored;
  lock.unlock();
  *status = PageRows(source, symbol, iv, flo, fhi, limit, newest_first, pages, &ignored);
  lock.lock();
  return *status == ReadStatus::kOk ? Answer::kRetry : Answer::kFailed;
}

bool CandleCache::UseFreshPage(const std::string& key,
                               std::vector<std::shared_ptr<const Page>>* held,
                               std::vector<const Row*>* out) {
  auto it = pages_.find(key);
  if (it == pages_.end() || it->second->loading || it->second->expires_ms <= MonotonicMs()) {
    return false;
  }
  stats_.page_hits.fetch_add(1, std::memory_order_relaxed);
  Touch(&it->second->lru, true, key);
  held->push_back(it->second);
  out->clear();
  for (const Row& r : it->second->rows) out->push_back(&r);
  return true;
}

void CandleCache::ErasePage(std::unordered_map<std::string, std::shared_ptr<Page>>::iterator it) {
  lru_.erase(it->second->lru);
  Account(-static_cast<int64_t>(it->second->bytes));
  pages_.erase(it);
  stats_.pages.store(pages_.size(), std::memory_order_relaxed);
}

ReadStatus CandleCache::PageRows(CacheSource* source, std::string_view symbol, Interval iv,
                                 int64_t lo, int64_t hi, size_t limit, bool newest_first,
                                 std::vector<std::shared_ptr<const Page>>* held,
                                 std::vector<const Row*>* out) {
  const std::string key = PageKey(EventKey(symbol, iv), lo, hi, limit, newest_first);
  std::unique_lock<std::mutex> lock(mu_);
  for (int round = 0;; ++round) {
    if (UseFreshPage(key, held, out)) return ReadStatus::kOk;
    auto it = pages_.find(key);
    if (it != pages_.end() && it->second->loading && round == 0) {
      stats_.waits.fetch_add(1, std::memory_order_relaxed);
      std::shared_ptr<Page> p = it->second;
      cv_.wait_for(lock, std::chrono::milliseconds(options_.load_wait_ms),
                   [&] { return !p->loading || stopping_; });
      continue;
    }
    break;
  }
  // This request reads the page (or, when another read of it is still in flight after the
  // wait, reads on its own without keeping the result).
  std::shared_ptr<Page> page;
  auto it = pages_.find(key);
  if (it == pages_.end() || !it->second->loading) {
    if (it != pages_.end()) ErasePage(it);  // expired
    page = std::make_shared<Page>();
    page->lru = lru_.end();
    Touch(&page->lru, true, key);
    pages_.emplace(key, page);
    Account(static_cast<int64_t>(page->bytes));
    stats_.pages.store(pages_.size(), std::memory_order_relaxed);
  }
  lock.unlock();
  stats_.page_misses.fetch_add(1, std::memory_order_relaxed);
  std::vector<Candle> candles;
  const ReadStatus s = source->MysqlRange(symbol, iv, lo, hi, limit, newest_first, &candles);
  auto result = std::make_shared<Page>();
  if (s == ReadStatus::kOk) {
    result->rows.reserve(candles.size());
    for (const Candle& c : candles) result->rows.push_back(RowOf(c));
  }
  lock.lock();
  if (page) {
    page->loading = false;
    cv_.notify_all();
    auto at = pages_.find(key);
    const bool mine = at != pages_.end() && at->second == page;
    if (s != ReadStatus::kOk || !mine) {
      if (mine) ErasePage(at);
    } else {
      page->rows = std::move(result->rows);
      size_t b = kPageOverhead;
      for (const Row& r : page->rows) b += RowBytes(r);
      Account(static_cast<int64_t>(b) - static_cast<int64_t>(page->bytes));
      page->bytes = b;
      std::uniform_real_distribution<double> u(0.8, 1.2);
      page->expires_ms = MonotonicMs() + static_cast<int64_t>(options_.page_ttl_ms * u(jitter_));
      result = page;
      Evict();
    }
  }
  if (s != ReadStatus::kOk) return s;
  held->push_back(result);
  out->clear();
  for (const Row& r : result->rows) out->push_back(&r);
  return ReadStatus::kOk;
}

ReadStatus CandleCache::FromSource(const RangeQuery& q, CacheSource* source, std::string* body) {
  stats_.misses.fetch_add(1, std::memory_order_relaxed);
  RedisPart part;
  if (const ReadStatus s = source->ReadRedisPart(q, &part); s != ReadStatus::kOk) return s;
  std::vector<Row> redis_rows;
  redis_rows.reserve(part.rows.size() + 1);
  for (const Candle& c : part.rows) redis_rows.push_back(RowOf(c));
  std::optional<Row> current;
  if (part.current) current = RowOf(*part.current);
  std::vector<const Row*> view;
  view.reserve(redis_rows.size());
  for (const Row& r : redis_rows) view.push_back(&r);
  const Row* current_ptr = current ? &*current : nullptr;
  std::vector<std::shared_ptr<const Page>> pages;
  auto fetch = [&](int64_t lo, int64_t hi, size_t limit, bool newest_first,
                   std::vector<const Row*>* out) {
    return PageRows(source, q.symbol, q.interval, lo, hi, limit, newest_first, &pages, out);
  };
  std::vector<const Row*> rows;
  const ReadStatus s = Stitch<const Row*>(q, current_ptr ? &current_ptr : nullptr, part.seam,
                                          std::span<const Row* const>(view), part.range_members,
                                          OpenOf, fetch, &rows);
  if (s == ReadStatus::kOk) Compose(rows, body);
  return s;
}

ReadStatus CandleCache::Klines(const RangeQuery& q, CacheSource* source, std::string* body) {
  const std::string key = EventKey(q.symbol, q.interval);
  std::unique_lock<std::mutex> lock(mu_);
  std::shared_ptr<Entry> e;
  bool read_redis = false;  // this request made the entry's read: not a hit
  if (auto it = entries_.find(key); it != entries_.end()) {
    e = it->second;
    Touch(&e->lru, false, key);
  } else if ((e = Admit(key, q))) {
    // The new entry's first request owns its read, the subscription first.
    e->loading = true;
    cv_.wait_for(lock, std::chrono::milliseconds(options_.subscribe_wait_ms),
                 [&] { return e->live || e->removed || stopping_; });
    if (e->live && !e->removed && !stopping_) {
      Load(lock, e, source);
      read_redis = true;
    } else {
      e->loading = false;
      e->retry_at_ms = MonotonicMs() + kRetryFailedMs;
      cv_.notify_all();
    }
  }
  if (e && !e->ready && !e->removed) {
    if (e->loading) {
      stats_.waits.fetch_add(1, std::memory_order_relaxed);
      cv_.wait_for(lock, std::chrono::milliseconds(options_.load_wait_ms),
                   [&] { return !e->loading || stopping_; });
    } else if (e->live && MonotonicMs() >= e->retry_at_ms) {
      e->loading = true;
      Load(lock, e, source);
      read_redis = true;
    }
  }
  std::vector<std::shared_ptr<const Page>> pages;  // keeps the rows of the pages used alive
  for (int attempt = 0; e && e->ready && !e->removed && attempt < 3; ++attempt) {
    ReadStatus status = ReadStatus::kOk;
    const Answer a = FromEntry(lock, q, e.get(), source, &pages, body, &status);
    if (a == Answer::kAnswered) {
      (read_redis ? stats_.misses : stats_.hits).fetch_add(1, std::memory_order_relaxed);
      return ReadStatus::kOk;
    }
    if (a == Answer::kFailed) return status;  // the page's MySQL read failed
    if (a == Answer::kNeedsSource) break;
  }
  lock.unlock();
  return FromSource(q, source, body);
}

void CandleCache::Deliver(std::shared_ptr<const SymbolEvents> events) {
  std::vector<std::pair<std::string, Row>> rows;  // formatted without the lock
  rows.reserve(events->candles.size());
  for (const Candle& c : events->candles)
    rows.emplace_back(EventKey(events->symbol, c.interval), RowOf(c));
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < rows.size(); ++i) {
    auto it = entries_.find(rows[i].first);
    if (it == entries_.end()) continue;
    Entry* e = it->second.get();
    if (e->ready) {
      Apply(e, events->candles[i], std::move(rows[i].second.text));
    } else if (e->loading && e->live) {
      if (e->pending.size() >= kMaxPending) {
        ++e->generation;  // too much arrived during one read: void it
        e->pending.clear();
        continue;
      }
      e->pending.emplace_back(events->candles[i], std::move(rows[i].second.text));
    }
  }
  Evict();
}

void CandleCache::Subscribed(const std::string& symbol, const std::string& kind) {
  const std::optional<Interval> iv = ParseInterval(kind);
  if (!iv) return;  // entries are intervals only
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(EventKey(symbol, *iv));
  if (it != entries_.end()) it->second->live = true;
  cv_.notify_all();
}

void CandleCache::Lost() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [key, e] : entries_) {
    e->live = false;
    if (e->ready) stats_.invalidations.fetch_add(1, std::memory_order_relaxed);
    Drop(e.get());
    e->pending.clear();
  }
}

void CandleCache::Evict() {
  auto it = lru_.end();
  while (bytes_ > options_.max_bytes && it != lru_.begin()) {
    --it;
    const auto next = std::next(it);
    if (it->page) {
      auto p = pages_.find(it->key);
      if (p == pages_.end() || p->second->loading) continue;
      ErasePage(p);  // its LRU place, `it`, too
    } else {
      auto en = entries_.find(it->key);
      if (en == entries_.end() || en->second->loading) continue;
      Entry* e = en->second.get();
      e->removed = true;
      Account(-static_cast<int64_t>(e->bytes));
      subscriptions_->Unwant(e->symbol, e->interval);
      entries_.erase(en);
      stats_.entries.store(entries_.size(), std::memory_order_relaxed);
      lru_.erase(it);
    }
    stats_.evictions.fetch_add(1, std::memory_order_relaxed);
    it = next;
  }
}

}  // namespace klined::api
