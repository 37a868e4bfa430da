// Tests for src/api/candle_cache.h: every answer equals Binance's range rules over the whole
// series (an independent computation over a model of Redis and MySQL that evolves by
// flushes, rollovers, late updates, re-carries and trims, each publishing what it writes, as
// the scripts do); hits cost no read; concurrent misses of one pair make one read (single
// flight); the bytes stay bounded; a lost subscriber connection, a gap in the stream and
// unreadable stored rows are never served from the cache.
#include "api/candle_cache.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "api/rest_format.h"

namespace klined::api {
namespace {

constexpr int64_t kT0 = 1732147200000;  // 2024-11-21 00:00 UTC
constexpr int64_t kMin = 60000;
constexpr Interval kIv = Interval::k1m;

Candle Bucket(int64_t open, int64_t trades, int64_t price) {
  Candle c = Candle::Empty(kIv, open, UtcOffset{}, Decimal::FromInt(price));
  c.count = trades;
  if (trades > 0) {
    c.first_id = open / 1000;
    c.last_id = open / 1000 + trades - 1;
    c.volume = Decimal::FromInt(trades);
  }
  return c;
}

// One symbol's stored series: MySQL's rows below the seam, Redis's history and current from
// it on. Reads answer as MarketReader does; each write returns the candles it publishes.
class Model : public CacheSource {
 public:
  explicit Model(size_t history_limit) : history_limit_(history_limit) {}

  ReadStatus ReadRedisPart(const RangeQuery& q, RedisPart* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++redis_reads;
    if (slow_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(slow_ms));
    *out = RedisPart{};
    if (redis_down) return ReadStatus::kRedisDown;
    out->current = current_;
    out->seam = hist_.empty() ? current_.open_time : hist_.front().open_time;
    const int64_t lo = q.start_ms.value_or(kMinTime), hi = q.end_ms.value_or(kMaxTime);
    std::vector<Candle> in;
    for (const Candle& c : hist_) {
      if (c.open_time >= lo && c.open_time <= hi) in.push_back(c);
    }
    if (q.start_ms) {
      if (in.size() > q.limit) in.resize(q.limit);
    } else if (in.size() > q.limit) {
      in.erase(in.begin(), in.end() - static_cast<ptrdiff_t>(q.limit));
    }
    out->range_members = in.size();
    for (const Candle& c : in) {
      if (!corrupt_.contains(c.open_time)) out->rows.push_back(c);
    }
    return ReadStatus::kOk;
  }

  ReadStatus MysqlRange(std::string_view, Interval, int64_t lo, int64_t hi, size_t limit,
                        bool newest_first, std::vector<Candle>* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++mysql_reads;
    out->clear();
    for (const Candle& c : mysql_) {
      if (c.open_time >= lo && c.open_time <= hi) out->push_back(c);
    }
    if (!newest_first && out->size() > limit) out->resize(limit);
    if (newest_first && out->size() > limit) {
      out->erase(out->begin(), out->end() - static_cast<ptrdiff_t>(limit));
    }
    return ReadStatus::kOk;
  }

  // The whole series, ascending: what every answer is cut from.
  std::vector<Candle> All() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Candle> all = mysql_;
    all.insert(all.end(), hist_.begin(), hist_.end());
    all.push_back(current_);
    return all;
  }

  // Writes, as the scripts do them; each returns what it publishes.
  std::vector<Candle> Start(int64_t open, size_t closed, size_t in_mysql) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < closed; ++i) {
      Candle c = Bucket(open + static_cast<int64_t>(i) * kMin, int64_t(i % 3), 100 + int64_t(i));
      (i < in_mysql ? mysql_ : hist_).push_back(c);
    }
    current_ = Bucket(open + static_cast<int64_t>(closed) * kMin, 1, 500);
    return {};
  }
  std::vector<Candle> Trade() {  // FLUSH: the current candle gains a trade
    std::lock_guard<std::mutex> lock(mu_);
    current_.count += 1;
    current_.last_id += 1;
    current_.close = Decimal::FromInt(current_.count + 700);
    return {current_};
  }
  std::vector<Candle> Rollover(int buckets) {  // ROLLOVER: closes, fillers, a new current
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Candle> out;
    for (int i = 0; i < buckets; ++i) {
      hist_.push_back(current_);
      out.push_back(current_);
      current_ = Candle::Empty(kIv, current_.open_time + kMin, UtcOffset{}, current_.close);
    }
    out.push_back(current_);
    return out;
  }
  std::vector<Candle> Late(size_t back) {  // FLUSH: a late trade, and its close re-carried
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Candle> out;
    if (hist_.empty()) return out;
    const size_t at = hist_.size() - 1 - std::min(back, hist_.size() - 1);
    Candle& c = hist_[at];
    c.count += 1;
    c.close = Decimal::FromInt(900 + c.count);
    out.push_back(c);
    size_t i = at + 1;
    for (; i < hist_.size() && hist_[i].count == 0; ++i) {
      hist_[i] = Candle::Empty(kIv, hist_[i].open_time, UtcOffset{}, c.close);
      out.push_back(hist_[i]);
    }
    if (i == hist_.size() && current_.count == 0) {
      current_ = Candle::Empty(kIv, current_.open_time, UtcOffset{}, c.close);
      out.push_back(current_);
    }
    return out;
  }
  void Trim() {  // persist + TRIM: the oldest history beyond the limit moves to MySQL
    std::lock_guard<std::mutex> lock(mu_);
    while (hist_.size() > history_limit_) {
      mysql_.push_back(hist_.front());
      hist_.erase(hist_.begin());
    }
  }
  void Corrupt(int64_t open) {
    std::lock_guard<std::mutex> lock(mu_);
    corrupt_[open] = true;
  }
  int64_t CurrentOpen() {
    std::lock_guard<std::mutex> lock(mu_);
    return current_.open_time;
  }

  std::atomic<int> redis_reads{0};
  std::atomic<int> mysql_reads{0};
  std::atomic<int> slow_ms{0};
  std::atomic<bool> redis_down{false};

 private:
  std::mutex mu_;
  size_t history_limit_;
  std::vector<Candle> mysql_, hist_;
  Candle current_;
  std::map<int64_t, bool> corrupt_;
};

// Confirms every subscription from a thread of its own (as the hub does, later).
class Subs : public Subscriptions {
 public:
  ~Subs() override { Join(); }
  void Want(const std::string& symbol, Interval iv) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++wants;
    if (cache != nullptr && confirm) {
      pending_.push_back(std::async(std::launch::async, [this, symbol, iv] {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        cache->Subscribed(symbol, std::string(IntervalName(iv)));
      }));
    }
  }
  void Unwant(const std::string&, Interval) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++unwants;
  }
  void Join() {
    std::vector<std::future<void>> p;
    {
      std::lock_guard<std::mutex> lock(mu_);
      p.swap(pending_);
    }
    for (auto& f : p) f.wait();
  }
  CandleCache* cache = nullptr;
  bool confirm = true;
  int wants = 0, unwants = 0;

 private:
  std::mutex mu_;
  std::vector<std::future<void>> pending_;
};

void Publish(CandleCache* cache, const std::string& symbol, const std::vector<Candle>& candles) {
  if (candles.empty()) return;
  auto e = std::make_shared<SymbolEvents>();
  e->symbol = symbol;
  e->candles = candles;
  cache->Deliver(e);
}

// Binance's rules over the whole series, formatted: the independent answer.
std::string Expected(const std::vector<Candle>& all, const RangeQuery& q) {
  const int64_t lo = q.start_ms.value_or(kMinTime), hi = q.end_ms.value_or(kMaxTime);
  std::vector<Candle> in;
  for (const Candle& c : all) {
    if (c.open_time >= lo && c.open_time <= hi) in.push_back(c);
  }
  if (q.start_ms && in.size() > q.limit) in.resize(q.limit);
  if (!q.start_ms && in.size() > q.limit) {
    in.erase(in.begin(), in.end() - static_cast<ptrdiff_t>(q.limit));
  }
  std::string body = "[";
  for (size_t i = 0; i < in.size(); ++i) {
    if (i > 0) body.push_back(',');
    AppendKlineRow(in[i], &body);
  }
  return body + "]";
}

CacheOptions Options(size_t rows, size_t max_bytes = 10u << 20) {
  CacheOptions o;
  o.max_bytes = max_bytes;
  o.rows = rows;
  o.page_ttl_ms = 60000;
  return o;
}

RangeQuery Random(std::mt19937_64* rng, int64_t first, int64_t last) {
  RangeQuery q;
  q.symbol = "BTCUSDT";
  q.interval = kIv;
  const int64_t span = (last - first) / kMin + 3;
  auto at = [&] { return first + (static_cast<int64_t>((*rng)() % span) - 1) * kMin; };
  switch ((*rng)() % 5) {
    case 0:
      break;  // the newest
    case 1:
      q.start_ms = at();
      break;
    case 2:
      q.end_ms = at();
      break;
    case 3:
      q.start_ms = at();
      q.end_ms = *q.start_ms + static_cast<int64_t>((*rng)() % 40) * kMin;
      break;
    default:
      q.start_ms = 0;
      break;  // paging forward from 0
  }
  static constexpr size_t kLimits[] = {1, 2, 5, 17, 60, 150, 500, 1000};
  q.limit = kLimits[(*rng)() % 8];
  return q;
}

// A model, its subscriptions and a cache over them.
struct Fixture {
  explicit Fixture(size_t history_limit, CacheOptions o) : model(history_limit), cache(o, &subs) {
    subs.cache = &cache;
  }
  Model model;
  Subs subs;
  CandleCache cache;
};

}  // namespace

TEST_CASE("cache: property: every answer equals the rules over the whole series, as it changes") {
  for (const auto& [history_limit, rows, in_mysql] :
       {std::tuple<size_t, size_t, size_t>{40, 30, 25}, {100, 100, 0}, {1000, 1000, 200}}) {
    CAPTURE(history_limit);
    Model model(history_limit);
    Subs subs;
    CandleCache cache(Options(rows), &subs);
    subs.cache = &cache;
    std::mt19937_64 rng(history_limit);
    model.Start(kT0, history_limit / 2 + in_mysql, in_mysql);
    std::string body;
    for (int step = 0; step < 3000; ++step) {
      switch (rng() % 10) {
        case 0:
          Publish(&cache, "BTCUSDT", model.Rollover(1));
          break;
        case 1:
          Publish(&cache, "BTCUSDT", model.Rollover(1 + int(rng() % 4)));
          break;
        case 2:
          Publish(&cache, "BTCUSDT", model.Late(rng() % 12));
          break;
        case 3:
          model.Trim();
          break;
        case 4:
          if (rng() % 50 == 0) cache.Lost(), cache.Subscribed("BTCUSDT", "1m");
          break;
        default:
          Publish(&cache, "BTCUSDT", model.Trade());
          break;
      }
      const RangeQuery q = Random(&rng, kT0, model.CurrentOpen());
      CAPTURE(step);
      CAPTURE(q.limit);
      CAPTURE(q.start_ms.value_or(-1));
      CAPTURE(q.end_ms.value_or(-1));
      REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
      REQUIRE(body == Expected(model.All(), q));
      subs.Join();
    }
    MESSAGE("history " << history_limit << ": hits " << cache.stats().hits.load() << ", misses "
                       << cache.stats().misses.load() << ", page hits "
                       << cache.stats().page_hits.load() << ", Redis reads "
                       << model.redis_reads.load() << ", MySQL reads " << model.mysql_reads.load());
    // Queries are spread over the whole series: those reaching below a run that does not
    // start at the seam read Redis (more of them the shorter the run).
    CHECK(cache.stats().hits.load() > (rows >= 1000 ? 2000u : 300u));
    CHECK(cache.stats().page_hits.load() > 0);
    CHECK(cache.stats().invalidations.load() > 0);  // the Lost steps
  }
}

TEST_CASE("cache: a hit makes no read; a pair becomes an entry on its second miss") {
  Fixture f(1000, Options(1000));
  Model& model = f.model;
  Subs& subs = f.subs;
  CandleCache& cache = f.cache;
  model.Start(kT0, 300, 0);
  RangeQuery q{"BTCUSDT", kIv, std::nullopt, std::nullopt, 500};
  std::string body;
  REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
  CHECK(subs.wants == 0);  // one miss: not an entry yet
  REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
  CHECK(subs.wants == 1);
  CHECK(cache.stats().loads.load() == 1);
  const int reads = model.redis_reads.load();
  for (int i = 0; i < 100; ++i) {
    // Asked twice between writes: the second is the body composed for the first (memo),
    // which every write clears.
    if (i % 3 == 0) Publish(&cache, "BTCUSDT", model.Trade());
    if (i % 7 == 0) Publish(&cache, "BTCUSDT", model.Rollover(1));
    REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
    REQUIRE(body == Expected(model.All(), q));
  }
  CHECK(model.redis_reads.load() == reads);
  CHECK(cache.stats().hits.load() == 100);
  CHECK(cache.stats().misses.load() == 2);
}

TEST_CASE("cache: concurrent misses of one pair wait for one read (single flight)") {
  Fixture f(1000, Options(1000));
  Model& model = f.model;
  CandleCache& cache = f.cache;
  model.Start(kT0, 300, 0);
  RangeQuery q{"BTCUSDT", kIv, std::nullopt, std::nullopt, 500};
  std::string body;
  REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);  // the first miss
  const int before = model.redis_reads.load();
  model.slow_ms = 100;
  const std::string expected = Expected(model.All(), q);
  std::vector<std::thread> threads;
  std::atomic<int> right{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      std::string b;
      if (cache.Klines(q, &model, &b) == ReadStatus::kOk && b == expected) ++right;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(right == 8);
  CHECK(model.redis_reads.load() - before == 1);
  CHECK(cache.stats().waits.load() >= 1);
  CHECK(cache.stats().loads.load() == 1);
}

TEST_CASE("cache: bytes stay within the bound; the least recently used go, unsubscribed") {
  Model model(1000);
  Subs subs;
  const size_t bound = 400u << 10;
  CandleCache cache(Options(1000, bound), &subs);
  subs.cache = &cache;
  model.Start(kT0, 999, 0);
  std::vector<std::string> symbols;
  for (int i = 0; i < 20; ++i) symbols.push_back("SYM" + std::to_string(i));
  std::string body;
  size_t peak = 0;
  for (int round = 0; round < 3; ++round) {
    for (const std::string& s : symbols) {
      RangeQuery q{s, kIv, std::nullopt, std::nullopt, 1000};
      REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
      REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
      subs.Join();
      peak = std::max<size_t>(peak, cache.stats().bytes.load());
    }
  }
  MESSAGE("peak " << peak << " bytes of a " << bound << " bound; entries "
                  << cache.stats().entries.load() << ", evictions "
                  << cache.stats().evictions.load());
  // An entry of 1000 rows is ~200 KB: at most the bound plus the entry being added.
  CHECK(peak <= bound + (250u << 10));
  CHECK(cache.stats().bytes.load() <= bound);
  CHECK(cache.stats().evictions.load() > 0);
  CHECK(subs.unwants == static_cast<int>(cache.stats().evictions.load()));
}

TEST_CASE("cache: never served from the cache: a lost stream, a gap, unreadable rows") {
  Fixture f(1000, Options(1000));
  Model& model = f.model;
  Subs& subs = f.subs;
  CandleCache& cache = f.cache;
  model.Start(kT0, 100, 0);
  RangeQuery q{"BTCUSDT", kIv, std::nullopt, std::nullopt, 50};
  std::string body;
  cache.Klines(q, &model, &body);
  cache.Klines(q, &model, &body);
  subs.Join();
  REQUIRE(cache.stats().loads.load() == 1);

  SUBCASE("the subscriber's connection ended: writes meanwhile are read from Redis") {
    cache.Lost();
    model.Trade();  // not published to the cache: the connection was down
    REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
    CHECK(body == Expected(model.All(), q));
    cache.Subscribed("BTCUSDT", "1m");
    REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);  // read again
    CHECK(body == Expected(model.All(), q));
    CHECK(cache.stats().loads.load() == 2);
  }
  SUBCASE("a message that does not continue the run: the entry is read again") {
    std::vector<Candle> rolled = model.Rollover(3);
    rolled.erase(rolled.begin() + 1);  // a bucket missing from the stream
    Publish(&cache, "BTCUSDT", rolled);
    CHECK(cache.stats().invalidations.load() == 1);
    REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
    CHECK(body == Expected(model.All(), q));
    CHECK(cache.stats().loads.load() == 2);
  }
  SUBCASE("a stored member that does not parse: not cached, served from Redis") {
    Model bad(1000);
    bad.Start(kT0, 100, 0);
    bad.Corrupt(kT0 + 50 * kMin);
    RangeQuery b{"ETHUSDT", kIv, std::nullopt, std::nullopt, 10};
    cache.Klines(b, &bad, &body);
    cache.Klines(b, &bad, &body);
    subs.Join();
    CHECK(cache.stats().loads.load() == 1);  // ETHUSDT's was not kept
    const int reads = bad.redis_reads.load();
    REQUIRE(cache.Klines(b, &bad, &body) == ReadStatus::kOk);
    CHECK(bad.redis_reads.load() == reads + 1);
  }
  SUBCASE("Redis down: the read fails, nothing is cached, it recovers") {
    cache.Lost();
    cache.Subscribed("BTCUSDT", "1m");
    model.redis_down = true;
    CHECK(cache.Klines(q, &model, &body) == ReadStatus::kRedisDown);
    model.redis_down = false;
    REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
    CHECK(body == Expected(model.All(), q));
  }
}

TEST_CASE("cache: MySQL pages are reused until they expire, with jittered lifetimes") {
  Model model(40);
  Subs subs;
  CacheOptions o = Options(30);
  o.page_ttl_ms = 200;
  CandleCache cache(o, &subs);
  subs.cache = &cache;
  model.Start(kT0, 400, 380);  // 380 rows only in MySQL
  RangeQuery q{"BTCUSDT", kIv, int64_t{0}, std::nullopt, 100};
  std::string body;
  for (int i = 0; i < 10; ++i) {
    REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
    REQUIRE(body == Expected(model.All(), q));
  }
  CHECK(model.mysql_reads.load() == 1);
  CHECK(cache.stats().page_hits.load() == 9);
  std::this_thread::sleep_for(std::chrono::milliseconds(260));  // past 200 x 1.2
  REQUIRE(cache.Klines(q, &model, &body) == ReadStatus::kOk);
  CHECK(model.mysql_reads.load() == 2);
}

}  // namespace klined::api
