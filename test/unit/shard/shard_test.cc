// Shard against an in-memory SeriesStore: what the event loop does when a write fails, is
// refused because storage moved (a lost reply that landed, a second writer), finds a symbol's
// stored state unreadable, or meets an eviction barrier; and that what it holds is bounded.
// The store below keeps what a real one would (current candles, per-source watermarks, the
// stamp the FLUSH script compares) and can be told to fail, to lose replies of writes it made,
// or to report a symbol corrupt. Expected candles come from a SymbolSeries that is given
// every trade once, in order, on the test thread.
#include "shard/shard.h"

#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "klined/candle.h"
#include "klined/decimal.h"

namespace klined {
namespace {

constexpr int64_t kT0 = 1732147200000;  // 2024-11-21 00:00:00 UTC

// What the fake Redis holds of one symbol.
struct Stored {
  std::string stamp;  // B:wmp as the FLUSH script compares it
  SourceMarks marks;
  std::vector<std::optional<Candle>> current;
  std::map<std::pair<size_t, int64_t>, Candle> history;  // (interval, open time)
  int writes = 0;
  size_t last_write_closed = 0;  // closed candles carried by the last write
};

// Shared by the store (shard and flusher threads) and the test thread.
struct FakeRedis {
  std::mutex mu;
  std::map<std::string, Stored> symbols;
  int fail_writes = 0;            // the next N writes do nothing and get no reply
  int lose_replies = 0;           // the next N writes land, but their replies are lost
  std::set<std::string> corrupt;  // Load reports these kCorrupt
  bool down = false;              // Load and PrepareFlush fail (unreachable)

  Stored Get(const std::string& sym) {
    std::lock_guard lock(mu);
    return symbols[sym];
  }
  template <class F>
  void With(F f) {
    std::lock_guard lock(mu);
    f(*this);
  }
};

class FakeStore final : public SeriesStore {
 public:
  explicit FakeStore(FakeRedis* redis) : redis_(redis) {}

  bool Load(std::span<SymbolSeries* const> series, std::vector<LoadStatus>* status) override {
    std::lock_guard lock(redis_->mu);
    if (redis_->down) return false;
    status->assign(series.size(), LoadStatus::kLoaded);
    for (size_t k = 0; k < series.size(); ++k) {
      const std::string sym(series[k]->symbol().view());
      if (redis_->corrupt.contains(sym)) {
        (*status)[k] = LoadStatus::kCorrupt;
        continue;
      }
      Stored& st = redis_->symbols[sym];
      st.current.resize(series[k]->interval_count());
      series[k]->Restore(st.marks, st.current);
      series[k]->set_storage_stamp(st.stamp);
    }
    return true;
  }

  struct Job : FlushJob {
    std::vector<SymbolSeries*> series;
    std::vector<SymbolSeries::FlushTicket> tickets;
    struct Call {
      std::string sym, base, stamp;
      SourceMarks marks;
      std::vector<std::optional<Candle>> current;
      std::vector<std::pair<size_t, Candle>> closed;
    };
    std::vector<Call> calls;
    std::vector<int> result;  // 1 ok, -1 refused, 0 unanswered
  };

  std::unique_ptr<FlushJob> PrepareFlush(std::span<SymbolSeries* const> series) override {
    {
      std::lock_guard lock(redis_->mu);
      if (redis_->down) return nullptr;
    }
    auto job = std::make_unique<Job>();
    for (SymbolSeries* s : series) {
      REQUIRE(s->late().empty());  // this store does not resolve late trades
      job->series.push_back(s);
      job->tickets.push_back(s->BeginFlush());
      Job::Call c;
      c.sym = std::string(s->symbol().view());
      c.base = s->storage_stamp();
      c.marks = s->flush_marks();
      c.stamp = FormatMarks(c.marks);
      for (size_t i = 0; i < s->interval_count(); ++i) {
        const Candle* cur = s->current(i);
        c.current.push_back(cur ? std::optional<Candle>(*cur) : std::nullopt);
        for (const Candle& closed : s->closed(i)) c.closed.emplace_back(i, closed);
      }
      job->calls.push_back(std::move(c));
    }
    job->result.assign(series.size(), 0);
    return job;
  }

  void ExecuteFlush(FlushJob* base) override {
    Job* job = static_cast<Job*>(base);
    std::lock_guard lock(redis_->mu);
    if (redis_->fail_writes > 0) {
      --redis_->fail_writes;
      job->error = "write failed";
      return;
    }
    const bool lose = redis_->lose_replies > 0;
    if (lose) --redis_->lose_replies;
    for (size_t k = 0; k < job->calls.size(); ++k) {
      const Job::Call& c = job->calls[k];
      Stored& st = redis_->symbols[c.sym];
      if (st.stamp != c.base) {  // the FLUSH script's compare-and-set
        job->result[k] = -1;
        continue;
      }
      st.current = c.current;
      for (const auto& [i, candle] : c.closed) st.history[{i, candle.open_time}] = candle;
      st.marks = c.marks;
      st.stamp = c.stamp;
      ++st.writes;
      st.last_write_closed = c.closed.size();
      job->result[k] = 1;
    }
    if (lose) {
      job->result.assign(job->calls.size(), 0);
      job->error = "reply lost";
    }
  }

  FlushReport FinishFlush(FlushJob* base) override {
    Job* job = static_cast<Job*>(base);
    FlushReport r;
    for (size_t k = 0; k < job->series.size(); ++k) {
      SymbolSeries* s = job->series[k];
      if (job->result[k] == 1) {
        s->CommitFlush(job->tickets[k]);
        s->set_storage_stamp(job->calls[k].stamp);
        ++r.written;
        continue;
      }
      s->AbortFlush();
      if (job->result[k] == -1) r.refused.push_back(s);
    }
    r.failed = job->series.size() - r.written;
    r.ok = r.failed == 0;
    return r;
  }

  void RequestRestore(std::string_view symbol) override { restores.emplace_back(symbol); }
  std::vector<std::string> restores;  // symbols RequestRestore was called for
  std::string LastError() const override { return "fake"; }
  uint64_t Errors() const override { return 0; }
  uint64_t Reconnects() const override { return 0; }
  const StoreStats& stats() const override { return stats_; }

 private:
  FakeRedis* redis_;
  StoreStats stats_;
};

const SeriesLayout kLayout{{Interval::k1m, Interval::k1h}, UtcOffset{}};

Trade MakeTrade(std::string_view sym, int32_t source, TradeId id, int64_t time_ms) {
  Trade t;
  t.symbol = Symbol(sym);
  t.source = source;
  t.id = id;
  t.time_ms = time_ms;
  t.price = Decimal::FromInt(100 + id % 7);
  t.qty = Decimal::FromInt(1 + id % 3);
  t.quote = Decimal::FromInt((100 + id % 7) * (1 + id % 3));
  t.buyer_maker = id % 2 == 0;
  return t;
}

// A shard on a fake Redis, driven like the consumer drives it.
struct Rig {
  explicit Rig(ShardOptions o = {}) {
    o.flush_interval_ms = 20;
    shard = std::make_unique<Shard>(0, &kLayout, o, std::make_unique<FakeStore>(&redis));
    shard->Start();
  }
  ~Rig() { shard->Stop(MonotonicMs() + 5000); }

  // Submits the trades as one round; returns its sequence number.
  uint64_t Send(const std::vector<Trade>& trades) {
    ShardBatch* b = nullptr;
    for (int i = 0; i < 5000 && (b = shard->AcquireBatch()) == nullptr; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(b != nullptr);
    b->trades = trades;
    b->seq = ++seq;
    shard->Submit(b);
    return seq;
  }
  bool WaitFor(const std::function<bool()>& done, int64_t ms = 5000) {
    const int64_t until = MonotonicMs() + ms;
    while (MonotonicMs() < until) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return done();
  }
  bool WaitFlushed(uint64_t s) {
    return WaitFor([&] { return shard->flushed_seq() >= s; });
  }

  FakeRedis redis;
  std::unique_ptr<Shard> shard;
  uint64_t seq = 0;
};

// Every trade once, in order: what storage must end up holding.
std::vector<std::optional<Candle>> Reference(const std::vector<Trade>& trades,
                                             std::string_view sym) {
  SymbolSeries ref(&kLayout, Symbol(sym));
  for (const Trade& t : trades) {
    if (t.symbol.view() == sym) (void)ref.Apply(t);
  }
  std::vector<std::optional<Candle>> out;
  for (size_t i = 0; i < ref.interval_count(); ++i) {
    const Candle* c = ref.current(i);
    out.push_back(c ? std::optional<Candle>(*c) : std::nullopt);
  }
  return out;
}

void CheckStored(Rig& rig, const std::vector<Trade>& trades, const std::string& sym) {
  CAPTURE(sym);
  const Stored st = rig.redis.Get(sym);
  const auto want = Reference(trades, sym);
  REQUIRE(st.current.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    REQUIRE(st.current[i].has_value() == want[i].has_value());
    if (want[i]) CHECK(CandleJson(*st.current[i], sym, false) == CandleJson(*want[i], sym, false));
  }
}

}  // namespace

TEST_CASE("shard: a write that failed is retried; nothing is confirmed before it lands") {
  Rig rig;
  rig.redis.With([](FakeRedis& r) { r.fail_writes = 2; });
  std::vector<Trade> trades;
  for (TradeId id = 1; id <= 10; ++id) trades.push_back(MakeTrade("AAA", 0, id, kT0 + id * 100));
  const uint64_t s = rig.Send(trades);
  REQUIRE(rig.WaitFlushed(s));
  CHECK(rig.shard->stats().flush_failures.Get() >= 2);
  CheckStored(rig, trades, "AAA");
  CHECK(rig.redis.Get("AAA").stamp == "0:10");
  CHECK(rig.shard->stats().held_trades.Get() == 0);
}

TEST_CASE("shard: a write whose reply was lost but which landed is not applied twice") {
  Rig rig;
  std::vector<Trade> trades;
  for (TradeId id = 1; id <= 10; ++id) trades.push_back(MakeTrade("AAA", 0, id, kT0 + id * 100));
  rig.redis.With([](FakeRedis& r) { r.lose_replies = 1; });
  rig.Send(trades);
  // The first write landed; its reply did not come, so the shard retries: storage now holds
  // what it did not know, the retry is refused, and the shard reloads and re-applies.
  REQUIRE(rig.WaitFor([&] { return rig.shard->stats().reloads.Get() >= 1; }));
  std::vector<Trade> more = {MakeTrade("AAA", 0, 11, kT0 + 1100)};
  trades.insert(trades.end(), more.begin(), more.end());
  REQUIRE(rig.WaitFlushed(rig.Send(more)));
  CheckStored(rig, trades, "AAA");  // 11 trades, not 21
  CHECK(rig.redis.Get("AAA").current[0]->count == 11);
  CHECK(rig.shard->stats().writes_refused.Get() >= 1);
  CHECK(rig.shard->stats().trades_applied.Get() == 11);
}

TEST_CASE("shard: another writer moved storage: reload, re-apply, and both writers' trades stay") {
  Rig rig;
  std::vector<Trade> mine, theirs;
  for (TradeId id = 1; id <= 9; id += 2) mine.push_back(MakeTrade("BBB", 0, id, kT0 + id * 100));
  REQUIRE(rig.WaitFlushed(rig.Send(mine)));
  // A second instance (consuming another partition: a producer that did not key by symbol)
  // loads what is stored, applies its trades and writes.
  for (TradeId id = 2; id <= 10; id += 2) theirs.push_back(MakeTrade("BBB", 1, id, kT0 + id * 100));
  rig.redis.With([&](FakeRedis& r) {
    Stored& st = r.symbols["BBB"];
    SymbolSeries other(&kLayout, Symbol("BBB"));
    other.Restore(st.marks, st.current);
    for (const Trade& t : theirs) (void)other.Apply(t);
    for (size_t i = 0; i < other.interval_count(); ++i) st.current[i] = *other.current(i);
    st.marks = other.marks();
    st.stamp = FormatMarks(st.marks);
  });
  std::vector<Trade> later;
  for (TradeId id = 11; id <= 13; ++id) later.push_back(MakeTrade("BBB", 0, id, kT0 + id * 100));
  REQUIRE(rig.WaitFlushed(rig.Send(later)));
  std::vector<Trade> all = mine;
  all.insert(all.end(), theirs.begin(), theirs.end());
  all.insert(all.end(), later.begin(), later.end());
  CheckStored(rig, all, "BBB");
  CHECK(rig.redis.Get("BBB").current[0]->count == 13);
  CHECK(rig.redis.Get("BBB").stamp == "0:13,1:10");
  CHECK(rig.shard->stats().writes_refused.Get() == 1);
  CHECK(rig.shard->stats().reloads.Get() == 1);
}

TEST_CASE("shard: a symbol whose stored state is unreadable is quarantined; the rest flows") {
  ShardOptions o;
  o.quarantine_retry_ms = 100;
  Rig rig(o);
  rig.redis.With([](FakeRedis& r) { r.corrupt.insert("BAD"); });
  std::vector<Trade> trades;
  for (TradeId id = 1; id <= 6; ++id) {
    trades.push_back(MakeTrade(id % 2 ? "BAD" : "GOOD", 0, id, kT0 + id * 100));
  }
  REQUIRE(rig.WaitFlushed(rig.Send(trades)));  // offsets can be committed: BAD is handed out
  CheckStored(rig, trades, "GOOD");
  std::vector<DeadLetter> dead;
  rig.shard->TakeDeadLetters(&dead);
  REQUIRE(dead.size() == 3);
  for (const DeadLetter& d : dead) {
    CHECK(d.trade.symbol.view() == "BAD");
    CHECK(d.reason == RejectReason::kStoreCorrupt);
  }
  CHECK(rig.shard->stats().quarantined.Get() == 1);
  CHECK(rig.shard->stats().trades_store_corrupt.Get() == 3);
  // The value is fixed: after the retry interval the symbol loads and its trades apply.
  rig.redis.With([](FakeRedis& r) { r.corrupt.clear(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  const std::vector<Trade> after = {MakeTrade("BAD", 0, 7, kT0 + 700)};
  REQUIRE(rig.WaitFlushed(rig.Send(after)));
  CheckStored(rig, after, "BAD");
  CHECK(rig.shard->stats().quarantined.Get() == 0);
}

TEST_CASE("shard: while writes fail, what it holds stops at the bound; then all of it lands") {
  ShardOptions o;
  o.max_pending_trades = 1000;
  o.max_batches = 64;
  Rig rig(o);
  rig.redis.With([](FakeRedis& r) { r.fail_writes = 1 << 30; });
  std::vector<Trade> all;
  TradeId id = 0;
  // Rounds of 100 trades until the shard stops taking them and the pool runs dry.
  uint64_t last = 0;
  for (int round = 0; round < 60; ++round) {
    ShardBatch* b = rig.shard->AcquireBatch();
    if (b == nullptr) break;
    for (int k = 0; k < 100; ++k) {
      ++id;
      b->trades.push_back(MakeTrade("CCC", 0, id, kT0 + id));
    }
    all.insert(all.end(), b->trades.begin(), b->trades.end());
    b->seq = last = ++rig.seq;
    rig.shard->Submit(b);
  }
  rig.WaitFor([&] { return rig.shard->stats().held_trades.Get() >= 1000; }, 2000);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(rig.shard->stats().held_trades.Get() <= 1000 + 100);
  CHECK(rig.shard->flushed_seq() == 0);
  rig.redis.With([](FakeRedis& r) { r.fail_writes = 0; });
  REQUIRE(rig.WaitFlushed(last));
  CheckStored(rig, all, "CCC");
  CHECK(rig.shard->stats().held_trades.Get() == 0);
}

TEST_CASE("shard: a symbol idle for 13 days at 1s: its next trade is accepted, its write small") {
  // 13 days at 1s are 1,123,200 buckets: more than max_gap_candles (1,000,000), so gap-filling
  // in memory rejected every later trade of the symbol, and short of that it would have sent
  // every empty candle the rollover had already written in one FLUSH call.
  static const SeriesLayout k1s{{Interval::k1s, Interval::k1m, Interval::k1h}, UtcOffset{}};
  FakeRedis redis;
  ShardOptions o;
  o.flush_interval_ms = 20;
  Shard shard(0, &k1s, o, std::make_unique<FakeStore>(&redis));
  shard.Start();
  uint64_t seq = 0;
  auto send = [&](const Trade& t) {
    ShardBatch* b = shard.AcquireBatch();
    REQUIRE(b != nullptr);
    b->trades = {t};
    b->seq = ++seq;
    shard.Submit(b);
    const int64_t until = MonotonicMs() + 5000;
    while (shard.flushed_seq() < seq && MonotonicMs() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(shard.flushed_seq() >= seq);
  };
  const Trade first = MakeTrade("IDLE", 0, 1, kT0 + 500);
  send(first);
  // 13 simulated days: the rollover moved storage on (empty candles carrying the close up to
  // a bucket 13 days later); the shard still holds the symbol as it was.
  const int64_t later = kT0 + 13 * 86'400'000LL;
  redis.With([&](FakeRedis& r) {
    Stored& st = r.symbols["IDLE"];
    for (size_t i = 0; i < st.current.size(); ++i) {
      const Interval iv = k1s.intervals[i];
      st.current[i] = Candle::Empty(iv, BucketOpen(iv, later, k1s.tz), k1s.tz, first.price);
    }
  });
  const Trade next = MakeTrade("IDLE", 0, 2, later + 5000);
  send(next);
  const Stored st = redis.Get("IDLE");
  CHECK(shard.stats().trades_applied.Get() == 2);
  CHECK(shard.stats().trades_out_of_range.Get() == 0);
  CHECK(shard.stats().refreshes.Get() == 1);
  REQUIRE(st.current[0].has_value());
  CHECK(st.current[0]->open_time == BucketOpen(Interval::k1s, next.time_ms, k1s.tz));
  CHECK(st.current[0]->count == 1);
  CHECK(st.current[0]->open.ToString() == "102");
  CHECK(st.last_write_closed <= 10);  // the 5 seconds storage lacked, per interval at most
  shard.Stop(MonotonicMs() + 5000);
}

TEST_CASE("shard: an idle symbol leaves memory and is loaded again on its next trade") {
  ShardOptions o;
  o.idle_release_ms = 50;
  Rig rig(o);
  std::vector<Trade> trades = {MakeTrade("SLOW", 0, 1, kT0)};
  REQUIRE(rig.WaitFlushed(rig.Send(trades)));
  REQUIRE(rig.WaitFor([&] { return rig.shard->stats().released.Get() == 1; }));
  CHECK(rig.shard->stats().symbols.Get() == 0);
  trades.push_back(MakeTrade("SLOW", 0, 2, kT0 + 1));
  REQUIRE(rig.WaitFlushed(rig.Send({trades.back()})));
  CheckStored(rig, trades, "SLOW");
  CHECK(rig.shard->stats().loads.Get() == 2);
}

TEST_CASE("shard: an eviction barrier flushes, then forgets; a lost assignment discards") {
  Rig rig;
  std::vector<Trade> trades = {MakeTrade("DDD", 0, 1, kT0), MakeTrade("DDD", 0, 2, kT0 + 1)};
  rig.Send(trades);
  ShardBatch* b = rig.shard->AcquireBatch();
  REQUIRE(b != nullptr);
  b->seq = ++rig.seq;
  b->evict = true;
  rig.shard->Submit(b);
  REQUIRE(rig.WaitFlushed(rig.seq));
  CheckStored(rig, trades, "DDD");
  REQUIRE(rig.WaitFor([&] { return rig.shard->stats().symbols.Get() == 0; }));
  // Lost: the unflushed trade is dropped (its offsets were never committed; the next owner
  // replays it), and the series is loaded again from storage on its next trade.
  rig.redis.With([](FakeRedis& r) { r.fail_writes = 1 << 30; });
  rig.Send({MakeTrade("DDD", 0, 3, kT0 + 2)});
  b = rig.shard->AcquireBatch();
  REQUIRE(b != nullptr);
  b->seq = ++rig.seq;
  b->evict = true;
  b->discard = true;
  rig.shard->Submit(b);
  REQUIRE(rig.WaitFlushed(rig.seq));
  CHECK(rig.redis.Get("DDD").current[0]->count == 2);
  CHECK(rig.shard->stats().held_trades.Get() == 0);
  rig.redis.With([](FakeRedis& r) { r.fail_writes = 0; });
  trades.push_back(MakeTrade("DDD", 0, 3, kT0 + 2));
  REQUIRE(rig.WaitFlushed(rig.Send({trades.back()})));
  CheckStored(rig, trades, "DDD");
}

}  // namespace klined
