// The API's L1 cache: the newest candles of hot (symbol, interval) pairs, in the process,
// shared by the API loops, bounded in bytes, kept fresh by the pub/sub stream.
//
// DESIGN
// An entry holds one pair's newest candles as Binance kline rows (text, ready to copy into a
// reply), ascending, a contiguous run of buckets ending with the current candle: at most
// `rows` of them (min(1000, redis.history_limit)), so every one of them is also still in
// Redis (trimming keeps the newest history_limit), and every later change of them is a
// write by FLUSH, ROLLOVER or LATE_DONE, each of which publishes every candle it writes on
// the symbol's channel (lua_scripts.h). `at_seam` says the run starts at the oldest candle
// Redis holds: everything older is MySQL's, so a range reaching below is this run plus a
// MySQL read below it, as MarketReader stitches it (stitch.h, the one copy of the rules).
//
// Freshness without a TTL: an entry is read from Redis only after the hub has Redis's
// confirmation that the symbol is subscribed (EventHub, EventSink::Subscribed), so every
// change after the snapshot arrives as a message; messages that arrive while the snapshot is
// being read are kept and applied on top of it, in order (the last write of a bucket wins:
// exact, since the stream is complete from the subscription on). A message that does not
// continue the run (a bucket after a gap) drops the entry's rows (read again on the next
// request); the subscriber's connection ending (Lost) drops every entry's rows. So a hit is
// never staler than the last write whose message has arrived, and costs no Redis call.
//
// The seed's three failure modes:
// - penetration: unknown symbols and intervals never reach here (RestHandler answers them
//   from the known-symbol set);
// - breakdown (stampede): one request reads a missing entry (or page) while every other
//   request for it waits for that read (single flight, counted as waits) and then answers
//   from it; a pair becomes an entry on its second miss (one-off reads do not churn it);
// - avalanche: nothing is kept by a lifetime except MySQL pages (the rows older than an
//   at-seam entry, or older than Redis): those live page_ttl_ms x a uniform [0.8, 1.2), so
//   pages read together do not expire together.
// Bytes: every entry and page counts its rows' text and bookkeeping; past max_bytes the
// least recently used go (an entry with a read in flight is kept), and an entry's
// subscription with it.
//
// Threads: the API loops call Klines (a loop blocks on the reads it makes, as MarketReader's
// callers do, or waits for another loop's read of the same pair); the hub's thread calls the
// EventSink methods. One mutex guards everything and is never held across I/O.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "api/event_hub.h"
#include "api/market_reader.h"
#include "api/stitch.h"
#include "klined/candle.h"
#include "klined/interval.h"

namespace klined::api {

struct CacheOptions {
  size_t max_bytes = 10u << 20;  // 0 = no cache
  size_t rows = 1000;            // candles per entry: min(1000, redis.history_limit)
  int64_t page_ttl_ms = 30000;
  int64_t subscribe_wait_ms = 500;  // a new entry waits this long for its subscription
  int64_t load_wait_ms = 3000;      // a request waits this long for another's read
  UtcOffset time_zone;
};

// Where an entry's subscription goes (the EventHub in klined).
class Subscriptions {
 public:
  virtual ~Subscriptions() = default;
  virtual void Want(const std::string& symbol, Interval iv) = 0;
  virtual void Unwant(const std::string& symbol, Interval iv) = 0;
};

// Counters (any thread; relaxed).
struct CacheStats {
  std::atomic<uint64_t> hits{0};           // klines answered with no Redis read
  std::atomic<uint64_t> misses{0};         // klines that read Redis
  std::atomic<uint64_t> page_hits{0};      // MySQL ranges answered from a page
  std::atomic<uint64_t> page_misses{0};    // MySQL ranges read from MySQL
  std::atomic<uint64_t> waits{0};          // requests that waited for another's read
  std::atomic<uint64_t> loads{0};          // entries read from Redis
  std::atomic<uint64_t> evictions{0};      // entries and pages dropped for bytes
  std::atomic<uint64_t> invalidations{0};  // entries dropped: a gap in the stream, Lost, bad rows
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> entries{0};
  std::atomic<uint64_t> pages{0};
};

class CandleCache : public EventSink {
 public:
  CandleCache(CacheOptions options, Subscriptions* subscriptions);
  ~CandleCache() override;
  CandleCache(const CandleCache&) = delete;
  CandleCache& operator=(const CandleCache&) = delete;

  // The reply body of q (a JSON array of kline rows), reading through `source` what the
  // cache does not hold. kOk with *body set, else why not (body untouched).
  ReadStatus Klines(const RangeQuery& q, CacheSource* source, std::string* body);

  // EventSink (the hub's thread).
  void Deliver(std::shared_ptr<const SymbolEvents> events) override;
  void Subscribed(const std::string& symbol, const std::string& kind) override;
  void Lost() override;

  const CacheStats& stats() const { return stats_; }

  struct Row {
    int64_t open_time = 0;
    std::string text;  // AppendKlineRow's
  };

 private:
  struct Entry;
  struct Page;
  struct Lru {  // one list over entries and pages, most recent first
    bool page = false;
    std::string key;
  };

  enum class Answer : uint8_t {
    kAnswered,     // *body is the reply
    kNeedsSource,  // the entry cannot answer q (it reaches below the run): read Redis
    kRetry,        // a MySQL page was read (lock released meanwhile): try the entry again
    kFailed,       // that page's read failed: *status says why
  };
  // q from an entry that is ready. Lock held on entry and exit.
  Answer FromEntry(std::unique_lock<std::mutex>& lock, const RangeQuery& q, Entry* e,
                   CacheSource* source, std::vector<std::shared_ptr<const Page>>* pages,
                   std::string* body, ReadStatus* status);
  ReadStatus FromSource(const RangeQuery& q, CacheSource* source, std::string* body);
  // MySQL rows of [lo, hi] through the page cache; *held keeps them alive.
  ReadStatus PageRows(CacheSource* source, std::string_view symbol, Interval iv, int64_t lo,
                      int64_t hi, size_t limit, bool newest_first,
                      std::vector<std::shared_ptr<const Page>>* held, std::vector<const Row*>* out);
  // The page of key, if read and not expired, answers (a hit): *held keeps it, *out points
  // at its rows. False when there is no such page. Lock held.
  bool UseFreshPage(const std::string& key, std::vector<std::shared_ptr<const Page>>* held,
                    std::vector<const Row*>* out);
  // Removes a page, its LRU place and its bytes. Lock held.
  void ErasePage(std::unordered_map<std::string, std::shared_ptr<Page>>::iterator it);
  // The entry of key, made on its second miss; null when it is not (yet) an entry.
  std::shared_ptr<Entry> Admit(const std::string& key, const RangeQuery& q);
  // Reads e from Redis (this request is e's single flight). Lock held on entry and exit.
  void Load(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Entry>& e,
            CacheSource* source);
  void Apply(Entry* e, const Candle& c, std::string text);
  void Drop(Entry* e);
  void ClearMemo(Entry* e);  // its rows go; it stays (subscribed), read again on the next request
  void Touch(std::list<Lru>::iterator* at, bool page, const std::string& key);
  void Account(int64_t delta);
  void Charge(Entry* e, int64_t delta);  // e's bytes and the total
  void Evict();

  const CacheOptions options_;
  Subscriptions* const subscriptions_;
  CacheStats stats_;

  std::mutex mu_;
  std::condition_variable cv_;  // a read finished, or a subscription was confirmed
  std::unordered_map<std::string, std::shared_ptr<Entry>> entries_;  // "SYMBOL|1m"
  std::unordered_map<std::string, std::shared_ptr<Page>> pages_;
  std::list<Lru> lru_;
  std::unordered_set<std::string> seen_;  // keys missed once (admission on the second)
  size_t bytes_ = 0;
  std::minstd_rand jitter_;
  bool stopping_ = false;
};

// The EventHub as an entry's Subscriptions (the cache is the hub's sink `sink`).
class HubSubscriptions : public Subscriptions {
 public:
  HubSubscriptions(EventHub* hub, size_t sink) : hub_(hub), sink_(sink) {}
  void Want(const std::string& symbol, Interval iv) override {
    hub_->Want(sink_, symbol, std::string(IntervalName(iv)));
  }
  void Unwant(const std::string& symbol, Interval iv) override {
    hub_->Unwant(sink_, symbol, std::string(IntervalName(iv)));
  }

 private:
  EventHub* hub_;
  size_t sink_;
};

}  // namespace klined::api
