// Timer jobs against a real redis-server: the lease (exclusivity, takeover, release, local
// deadline), rollover (gapless empty candles, pending marks, idempotence, racing shard
// flushes), trimming (limit kept, unpersisted candles never removed) and the TimerLoop.
// Expected candles are built here by hand (snprintf of the contract's JSON from integer
// prices), not with klined's candle code.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "io/redis/cluster/slot_map.h"
#include "io/redis/kline_store.h"
#include "io/redis/redis_conn.h"
#include "jobs/lease.h"
#include "jobs/rollover.h"
#include "jobs/timer_loop.h"
#include "jobs/trim.h"
#include "klined/candle.h"
#include "klined/series.h"
#include "redis_cluster.h"
#include "redis_server.h"
#include "routed.h"

namespace kt = klined::test;
using std::chrono::milliseconds;

namespace {

using klined::Interval;

int64_t WallMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Polls `pred` every 5 ms until it holds or the wall clock reaches `deadline_ms`; true if it
// held. For waits whose bound is a wall-clock contract (a rollover within the grace period
// after a boundary), on a machine that may be slow (ASan, shared cores).
template <class Pred>
bool WaitUntilWallMs(int64_t deadline_ms, Pred pred) {
  for (;;) {
    if (pred()) return true;
    if (WallMs() >= deadline_ms) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

// Sleeps until the next wall-clock second starts: the boundary whose rollover a test checks
// (time passing is what is tested here, not a synchronization).
int64_t SleepToNextSecond() {
  const int64_t boundary = (WallMs() / 1000 + 1) * 1000;
  std::this_thread::sleep_for(milliseconds(boundary - WallMs()));
  return boundary;
}

klined::RedisOptions Opts(const kt::RedisServer& redis) {
  klined::RedisOptions o;
  o.address = redis.address();
  return o;
}

klined::Trade MakeTrade(std::string_view sym, int64_t id, int64_t time_ms, int64_t price) {
  klined::Trade t;
  t.symbol = klined::Symbol(sym);
  t.id = id;
  t.time_ms = time_ms;
  t.price = klined::Decimal::FromInt(price);
  t.qty = klined::Decimal::FromInt(1);
  t.quote = klined::Decimal::FromInt(price);
  t.buyer_maker = true;  // V and Q stay "0": keeps the reference simple
  return t;
}

// The reference: integer prices, quantity 1, all maker trades.
struct RefTrade {
  int64_t id, time, price;
};

int64_t Len(const std::string& iv) { return iv == "1s" ? 1000 : 60000; }

std::string RefJson(const std::string& sym, const std::string& iv, int64_t open,
                    const std::vector<RefTrade>& trades, int64_t carry, bool closed) {
  int64_t first = -1, last = -1, o = carry, c = carry, h = carry, l = carry, q = 0;
  for (size_t k = 0; k < trades.size(); ++k) {
    const RefTrade& t = trades[k];
    if (k == 0) h = l = t.price;
    h = std::max(h, t.price);
    l = std::min(l, t.price);
    q += t.price;
    if (first < 0 || t.id < first) first = t.id, o = t.price;
    if (t.id > last) last = t.id, c = t.price;
  }
  const long long n = static_cast<long long>(trades.size());
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "{\"t\":%lld,\"T\":%lld,\"s\":\"%s\",\"i\":\"%s\",\"f\":%lld,\"L\":%lld,"
                "\"o\":\"%lld\",\"h\":\"%lld\",\"l\":\"%lld\",\"c\":\"%lld\",\"v\":\"%lld\","
                "\"q\":\"%lld\",\"V\":\"0\",\"Q\":\"0\",\"n\":%lld,\"x\":%s}",
                (long long)open, (long long)(open + Len(iv) - 1), sym.c_str(), iv.c_str(),
                (long long)first, (long long)last, (long long)o, (long long)h, (long long)l,
                (long long)c, n, (long long)q, n, closed ? "true" : "false");
  return buf;
}

// Expected history (oldest first) and current candle of one interval: gapless from the first
// trade's bucket to the bucket of now_ms (the current one).
struct RefSeries {
  std::vector<std::string> hist;
  std::string current;
};
RefSeries Reference(const std::string& sym, const std::string& iv,
                    const std::vector<RefTrade>& trades, int64_t now_ms) {
  const int64_t len = Len(iv);
  std::map<int64_t, std::vector<RefTrade>> buckets;
  for (const RefTrade& t : trades) buckets[t.time / len * len].push_back(t);
  RefSeries out;
  const int64_t now_open = now_ms / len * len;
  int64_t carry = 0;
  for (int64_t o = buckets.begin()->first; o <= now_open; o += len) {
    auto it = buckets.find(o);
    const std::vector<RefTrade> none;
    const std::vector<RefTrade>& ts = it == buckets.end() ? none : it->second;
    const std::string json = RefJson(sym, iv, o, ts, carry, o < now_open);
    if (o < now_open) {
      out.hist.push_back(json);
    } else {
      out.current = json;
    }
    int64_t last = -1;
    for (const RefTrade& t : ts) {
      if (t.id > last) last = t.id, carry = t.price;
    }
  }
  return out;
}

std::string Base(const std::string& sym) { return "kline:{" + sym + "}"; }

std::vector<std::string> Hist(kt::RedisClient& c, const std::string& sym, const std::string& iv) {
  return c.Strings({"ZRANGE", Base(sym) + ":" + iv + ":hist", "0", "-1"});
}

// Checks one interval of one symbol in Redis (history and current candle) against the
// reference computed from its trades; returns the reference.
RefSeries CheckAgainstReference(kt::RedisClient& c, const std::string& sym, const std::string& iv,
                                const std::vector<RefTrade>& trades, int64_t now_ms) {
  const RefSeries want = Reference(sym, iv, trades, now_ms);
  const std::vector<std::string> got = Hist(c, sym, iv);
  CHECK(got.size() == want.hist.size());
  CHECK(got == want.hist);
  CHECK(c.Get(Base(sym) + ":" + iv) == want.current);
  return want;
}

// Everything of one symbol, for before/after comparisons.
std::map<std::string, std::vector<std::string>> Snapshot(kt::RedisClient& c,
                                                         const std::string& sym) {
  std::map<std::string, std::vector<std::string>> s;
  for (const char* iv : {"1s", "1m"}) {
    s[std::string(iv) + ":hist"] =
        c.Strings({"ZRANGE", Base(sym) + ":" + iv + ":hist", "0", "-1", "WITHSCORES"});
    s[iv] = {c.Get(Base(sym) + ":" + iv).value_or("")};
  }
  s["pending"] = c.Strings({"HGETALL", Base(sym) + ":pending"});
  s["trimmed"] = c.Strings({"HGETALL", Base(sym) + ":trimmed"});
  return s;
}

// A shard's view of one symbol: a SymbolSeries flushed through the real KlineStore.
struct Shard {
  Shard(const kt::RedisServer& redis, const klined::SeriesLayout* layout, std::string sym)
      : store(Opts(redis), "kline", layout), series(layout, klined::Symbol(sym)) {}
  void Apply(const klined::Trade& t) {
    REQUIRE(series.Apply(t).outcome == klined::SymbolSeries::Outcome::kApplied);
  }
  // Flushes until written (a late-trade CAS conflict leaves the series dirty).
  void Flush() {
    for (int k = 0; k < 20 && series.dirty(); ++k) {
      klined::SymbolSeries* p = &series;
      store.Flush(std::span<klined::SymbolSeries* const>(&p, 1));
    }
    REQUIRE_FALSE(series.dirty());
  }
  klined::KlineStore store;
  klined::SymbolSeries series;
};

const klined::SeriesLayout kLayout{{Interval::k1s, Interval::k1m}, {}};
// 2023-11-14 22:13:00 UTC: a minute boundary, so 1s and 1m buckets are easy to reason about.
constexpr int64_t kT0 = 1700000000000 - 1700000000000 % 60000;

}  // namespace

// ---- lease -------------------------------------------------------------------------------

TEST_CASE("jobs lease: one holder at a time; renewals keep it; release hands over at once") {
  kt::RedisServer redis;
  auto c = redis.Connect();
  klined::LeaseStats sa, sb;
  klined::Lease a(Opts(redis), "kline", 1000, &sa);
  klined::Lease b(Opts(redis), "kline", 1000, &sb);
  REQUIRE(a.Poll());
  CHECK_FALSE(b.Poll());
  // The epoch is Redis's clock in ms at the first acquisition (then +1 at least each time).
  const long long redis_ms = c.Integer(
      {"EVAL", "local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)", "0"});
  CHECK(a.epoch() <= redis_ms);
  CHECK(a.epoch() > redis_ms - 5000);
  CHECK(a.token().ends_with(":" + std::to_string(a.epoch())));
  CHECK(c.Get("kline:lease") == a.token());
  CHECK(c.Get("kline:lease:epoch{kline:lease}") == std::to_string(a.epoch()));
  CHECK(sa.held.Get() == 1);
  CHECK(sb.held.Get() == 0);
  // Three ttls of renewals: a keeps it throughout, b never gets it.
  const auto until = std::chrono::steady_clock::now() + milliseconds(3000);
  while (std::chrono::steady_clock::now() < until) {
    CHECK(a.Poll());
    CHECK_FALSE(b.Poll());
    std::this_thread::sleep_for(milliseconds(20));
  }
  CHECK(sa.renew_failures.Get() == 0);
  // Release: compare-and-delete; b acquires on its next retry (<= 250 ms), not after the ttl.
  a.Release();
  CHECK_FALSE(a.Holding());
  CHECK_FALSE(c.Get("kline:lease").has_value());
  const auto released = std::chrono::steady_clock::now();
  while (!b.Poll() && std::chrono::steady_clock::now() - released < milliseconds(2000)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  REQUIRE(b.Holding());
  CHECK(std::chrono::steady_clock::now() - released < milliseconds(400));
  CHECK(b.epoch() > a.epoch());
  CHECK(sb.takeovers.Get() == 1);
  // A stale release by the old holder changes nothing.
  a.Release();
  CHECK(c.Get("kline:lease") == b.token());
  b.Release();
}

TEST_CASE("jobs lease: a standby takes over within 2 x ttl of the holder's last renewal") {
  kt::RedisServer redis;
  klined::LeaseStats sa, sb;
  const int64_t ttl = 1000;
  klined::Lease a(Opts(redis), "kline", ttl, &sa);
  klined::Lease b(Opts(redis), "kline", ttl, &sb);
  REQUIRE(a.Poll());
  const auto died = std::chrono::steady_clock::now();  // a never polls again
  bool a_stopped_first = true;
  while (!b.Poll()) {
    REQUIRE(std::chrono::steady_clock::now() - died < milliseconds(3 * ttl));
    std::this_thread::sleep_for(milliseconds(5));
  }
  // The old holder had stopped considering itself holding before b could acquire.
  a_stopped_first = !a.Holding();
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - died);
  MESSAGE("takeover after " << took.count() << " ms (ttl " << ttl << " ms)");
  CHECK(a_stopped_first);
  CHECK(took.count() >= ttl - 100);  // not before the key could expire
  CHECK(took.count() <= 2 * ttl);
  CHECK(b.epoch() > a.epoch());
  // The old holder, polling again, finds its deadline passed and does not get it back.
  CHECK_FALSE(a.Poll());
  CHECK(b.Poll());
}

TEST_CASE("jobs lease: a holder whose renewals are delayed reports not-holding before expiry") {
  kt::RedisServer redis;
  auto c = redis.Connect();
  klined::LeaseStats sa;
  const int64_t ttl = 1000;
  klined::Lease a(Opts(redis), "kline", ttl, &sa);
  REQUIRE(a.Poll());
  const std::string token = a.token();
  // No Poll() (as if the process were paused or the thread stuck): Holding() turns false on
  // its own, while Redis still has the key with our token.
  while (a.Holding()) std::this_thread::sleep_for(milliseconds(2));
  CHECK_FALSE(a.HoldingFromAnyThread());
  CHECK(c.Get("kline:lease") == token);
  const long long pttl = c.Integer({"PTTL", "kline:lease"});
  MESSAGE("key still alive for " << pttl << " ms after the holder stopped");
  CHECK(pttl >= a.margin_ms() - 100);
  // Resumed: it notices, hands back the stale key and re-acquires normally (new epoch).
  const int64_t first = a.epoch();
  CHECK(a.Poll());
  CHECK(a.epoch() > first);
  CHECK(a.token() != token);
}

TEST_CASE("jobs lease: the shortest ttl (300 ms) is held for seconds without flapping") {
  // lease.ttl_ms accepts 300. The local deadline must stay well after the next renewal
  // (ttl/3 after the last one), or the holder drops its own lease at every renewal.
  kt::RedisServer redis;
  klined::LeaseStats stats;
  const int64_t ttl = 300;
  klined::Lease a(Opts(redis), "kline", ttl, &stats);
  REQUIRE(a.Poll());
  CHECK(a.margin_ms() <= ttl / 3);  // deadline at least two renewal periods after a renewal
  for (int64_t t : {300, 600, 1000, 3000, 600000}) {
    CHECK(klined::Lease::MarginMs(t) <= t / 3);
    CHECK(klined::Lease::MarginMs(t) >= std::min<int64_t>(200, t / 3));
  }
  CHECK(klined::Lease::MarginMs(3000) == 600);  // the default: unchanged
  const auto until = std::chrono::steady_clock::now() + milliseconds(3000);
  int samples = 0, holding = 0;
  while (std::chrono::steady_clock::now() < until) {
    const bool before = a.Holding();  // as the jobs see it between polls
    const bool after = a.Poll();
    holding += before && after;
    ++samples;
    std::this_thread::sleep_for(milliseconds(5));  // the poll cadence, not a synchronization
  }
  MESSAGE(holding << " of " << samples << " samples holding; renew failures "
                  << stats.renew_failures.Get());
  CHECK(holding == samples);
  CHECK(stats.takeovers.Get() == 1);
  a.Release();
}

TEST_CASE("jobs lease: epochs keep increasing when Redis loses the epoch key") {
  // A newer epoch must outrank every older one wherever one was recorded: symbols' fences
  // (B:fence) and MySQL's kline_fence outlive a Redis that lost its data (or, on a cluster,
  // the node of the lease's slot). A counter that restarted at 1 would fence every later
  // holder out of MySQL for good.
  kt::RedisServer redis;
  auto c = redis.Connect();
  klined::LeaseStats sa, sb;
  klined::Lease a(Opts(redis), "kline", 1000, &sa);
  klined::Lease b(Opts(redis), "kline", 1000, &sb);
  const auto acquire = [](klined::Lease& l) {  // the retry is due within 250 ms
    const auto until = std::chrono::steady_clock::now() + milliseconds(2000);
    while (!l.Poll() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    return l.Holding();
  };
  REQUIRE(acquire(a));
  const int64_t first = a.epoch();
  a.Release();
  REQUIRE(acquire(b));
  const int64_t second = b.epoch();
  CHECK(second > first);
  b.Release();
  c.Command({"FLUSHALL"});
  REQUIRE(acquire(a));
  CHECK(a.epoch() > second);
  a.Release();
  // A recorded epoch ahead of the clock: the next is one more (never equal, never behind).
  c.Command({"SET", "kline:lease:epoch{kline:lease}", std::to_string(a.epoch() + 1000000)});
  REQUIRE(acquire(b));
  CHECK(b.epoch() == a.epoch() + 1000001);
  b.Release();
}

// ---- rollover ----------------------------------------------------------------------------

TEST_CASE("jobs rollover: idle symbols get gapless empty candles, pending, idempotent") {
  kt::RedisServer redis;
  auto c = redis.Connect();
  Shard shard(redis, &kLayout, "IDLE");
  std::vector<RefTrade> ref;
  ref.push_back({7, kT0 + 59500, 105});
  shard.Apply(MakeTrade("IDLE", 7, kT0 + 59500, 105));
  ref.push_back({8, kT0 + 59600, 101});
  shard.Apply(MakeTrade("IDLE", 8, kT0 + 59600, 101));
  shard.Flush();

  klined::test::Routed conn(Opts(redis));
  klined::RolloverStats stats;
  klined::RolloverJob job(&conn.router, "kline", &kLayout, &stats);
  // Several steps across 1s boundaries and two minute boundaries.
  for (int64_t now : {kT0 + 59900, kT0 + 61200, kT0 + 64000, kT0 + 125001}) {
    const klined::RolloverResult r = job.RunOnce(now);
    REQUIRE(r.complete);
    CHECK(r.unresolved == 0);
    for (const char* iv : {"1s", "1m"}) {
      const RefSeries want = CheckAgainstReference(c, "IDLE", iv, ref, now);
      // Every closed candle is pending for MySQL, with its exact JSON.
      for (const std::string& h : want.hist) {
        const std::string t = h.substr(5, h.find(',') - 5);
        auto got = c.Command({"HGET", Base("IDLE") + ":pending", std::string(iv) + "|" + t});
        REQUIRE(got->type == REDIS_REPLY_STRING);
        CHECK(std::string(got->str, got->len) == h);
      }
    }
  }
  CHECK(c.Strings({"SMEMBERS", "kline:pending"}) == std::vector<std::string>{"IDLE"});
  CHECK(Hist(c, "IDLE", "1s").size() == 66);  // buckets +59 s .. +124 s
  CHECK(stats.candles_closed.Get() == 66 + 2);
  // Idempotent: the same run again changes nothing at all.
  const auto before = Snapshot(c, "IDLE");
  const klined::RolloverResult again = job.RunOnce(kT0 + 125001);
  CHECK(again.complete);
  CHECK(again.symbols == 1);
  CHECK(again.symbols_rolled == 0);
  CHECK(again.candles_closed == 0);
  CHECK(Snapshot(c, "IDLE") == before);
  // A stale run (an older `now`) changes nothing either.
  CHECK(job.RunOnce(kT0 + 64000).symbols_rolled == 0);
  CHECK(Snapshot(c, "IDLE") == before);
  // Fenced: a newer lease holder (epoch 9) wrote the symbol; a run under epoch 8 is refused
  // and writes nothing; one under epoch 9 goes on.
  c.Command({"SET", "kline:{IDLE}:fence", "9"});
  CHECK_FALSE(job.RunOnce(kT0 + 200000, "8").complete);
  CHECK(Snapshot(c, "IDLE") == before);
  CHECK(c.Get("kline:{IDLE}:fence") == "9");
  CHECK(job.RunOnce(kT0 + 200000, "9").complete);
  CHECK(Snapshot(c, "IDLE") != before);
  // Garbage in the fence never fences everyone out: replaced by the caller's epoch.
  c.Command({"SET", "kline:{IDLE}:fence", "not-a-number"});
  CHECK(job.RunOnce(kT0 + 201000, "10").complete);
  CHECK(c.Get("kline:{IDLE}:fence") == "10");
}

TEST_CASE("jobs rollover: hundreds of symbols in chunks and long pipelines, each exact") {
  // More symbols than the step path writes per pipeline part (64) and than one chunk holds,
  // each with its own close: every one rolled, none mixed up with another.
  kt::RedisServer redis;
  auto c = redis.Connect();
  klined::KlineStore store(Opts(redis), "kline", &kLayout);
  constexpr int kSymbols = 300;
  std::vector<std::unique_ptr<klined::SymbolSeries>> series;
  std::vector<klined::SymbolSeries*> ptrs;
  std::vector<std::vector<RefTrade>> refs(kSymbols);
  for (int k = 0; k < kSymbols; ++k) {
    const std::string sym = "MANY" + std::to_string(k);
    series.push_back(std::make_unique<klined::SymbolSeries>(&kLayout, klined::Symbol(sym)));
    refs[k].push_back({1, kT0 + 59000 + k, 100 + k});
    REQUIRE(series.back()->Apply(MakeTrade(sym, 1, kT0 + 59000 + k, 100 + k)).outcome ==
            klined::SymbolSeries::Outcome::kApplied);
    ptrs.push_back(series.back().get());
  }
  REQUIRE(store.Flush(std::span<klined::SymbolSeries* const>(ptrs)).ok);
  klined::test::Routed conn(Opts(redis));
  klined::RolloverStats stats;
  klined::RolloverJob job(&conn.router, "kline", &kLayout, &stats);
  job.set_chunk(128);
  const int64_t now = kT0 + 60500;  // one step for 1s (at +59 s) and for 1m
  const klined::RolloverResult r = job.RunOnce(now);
  REQUIRE(r.complete);
  CHECK(r.symbols_rolled == kSymbols);
  CHECK(r.candles_closed == 2 * kSymbols);
  for (int k = 0; k < kSymbols; ++k) {
    const std::string sym = "MANY" + std::to_string(k);
    for (const char* iv : {"1s", "1m"}) {
      CheckAgainstReference(c, sym, iv, refs[k], now);
    }
  }
}

TEST_CASE("jobs rollover: a shard flush after a rollover neither loses trades nor undoes it") {
  kt::RedisServer redis;
  auto c = redis.Connect();
  Shard shard(redis, &kLayout, "RACE");
  klined::test::Routed conn(Opts(redis));
  klined::RolloverStats stats;
  klined::RolloverJob job(&conn.router, "kline", &kLayout, &stats);
  std::vector<RefTrade> ref;
  auto trade = [&](int64_t id, int64_t t, int64_t p) {
    ref.push_back({id, t, p});
    shard.Apply(MakeTrade("RACE", id, t, p));
  };
  trade(1, kT0 + 100, 50);
  shard.Flush();
  trade(2, kT0 + 900, 70);  // in memory only when the rollover runs
  REQUIRE(job.RunOnce(kT0 + 3500).complete);
  // The rollover closed the stored (one-trade) candle and created empties carrying 50.
  CHECK(Hist(c, "RACE", "1s").size() == 3);
  // The stale shard flushes its current candle of bucket kT0: storage is ahead, so the
  // candle goes to history and its close (70) is re-carried; the rollover is not undone.
  shard.Flush();
  for (const char* iv : {"1s", "1m"}) {
    CheckAgainstReference(c, "RACE", iv, ref, kT0 + 3500);
  }
  // Rolling again changes nothing; then trades resume in the current bucket.
  const auto before = Snapshot(c, "RACE");
  CHECK(job.RunOnce(kT0 + 3500).symbols_rolled == 0);
  CHECK(Snapshot(c, "RACE") == before);
  trade(3, kT0 + 3600, 60);
  shard.Flush();
  trade(4, kT0 + 5200, 65);
  shard.Flush();
  REQUIRE(job.RunOnce(kT0 + 7000).complete);
  for (const char* iv : {"1s", "1m"}) {
    CheckAgainstReference(c, "RACE", iv, ref, kT0 + 7000);
  }
}

TEST_CASE("jobs rollover: concurrent shard flushes (with late trades) and rollovers converge") {
  // A shard thread applies trades (some late) and flushes; a timer thread rolls over at the
  // same simulated clock, concurrently. In the end Redis must hold exactly the reference:
  // every trade counted once, gapless, nothing undone by either side.
  kt::RedisServer redis;
  auto c = redis.Connect();
  const std::vector<std::string> syms = {"A", "B", "C"};
  std::vector<std::unique_ptr<Shard>> shards;
  for (const std::string& s : syms) shards.push_back(std::make_unique<Shard>(redis, &kLayout, s));
  std::map<std::string, std::vector<RefTrade>> ref;
  std::atomic<int64_t> sim_now{kT0 + 1000};
  std::atomic<bool> done{false};
  klined::test::Routed conn(Opts(redis));
  klined::RolloverStats stats;
  klined::RolloverJob job(&conn.router, "kline", &kLayout, &stats);
  uint64_t runs = 0;
  std::thread timer([&] {
    while (!done.load()) {
      job.RunOnce(sim_now.load());
      ++runs;
    }
  });
  std::mt19937_64 rng(42);
  int64_t id = 1;
  for (int step = 0; step < 400; ++step) {
    const int64_t now = sim_now.load();
    for (size_t k = 0; k < syms.size(); ++k) {
      if (rng() % 3 == 0) continue;  // idle this step: only the rollover moves it
      int64_t t = now - static_cast<int64_t>(rng() % 400);
      if (rng() % 10 == 0 && now > kT0 + 4000) t = now - 1000 - static_cast<int64_t>(rng() % 2500);
      const int64_t p = 100 + static_cast<int64_t>(rng() % 50);
      ref[syms[k]].push_back({id, t, p});
      shards[k]->Apply(MakeTrade(syms[k], id, t, p));
      ++id;
      if (rng() % 2 == 0) shards[k]->Flush();
    }
    // Mostly small steps (the one-bucket step path); now and then a jump of a few buckets,
    // so the planned compare-and-set path races the flushes too.
    sim_now.fetch_add(step % 7 == 0 ? 1500 + static_cast<int64_t>(rng() % 2000)
                                    : 61 + static_cast<int64_t>(rng() % 200));
    if (step % 50 == 0) std::this_thread::sleep_for(milliseconds(1));
  }
  done.store(true);
  timer.join();
  for (auto& s : shards) {
    s->series.MarkDirty();
    s->Flush();
  }
  const int64_t end = sim_now.load() + 1500;
  for (int k = 0; k < 5; ++k) {
    const klined::RolloverResult r = job.RunOnce(end);
    REQUIRE(r.complete);
    if (r.symbols_rolled == 0) break;
  }
  MESSAGE("rollover runs " << runs << ", CAS conflicts " << stats.cas_conflicts.Get() << ", trades "
                           << id - 1);
  for (const std::string& s : syms) {
    for (const char* iv : {"1s", "1m"}) {
      CheckAgainstReference(c, s, iv, ref[s], end);
    }
  }
}

TEST_CASE("jobs rollover: a long gap is filled over several runs, gapless and complete") {
  kt::RedisServer redis;
  auto c = redis.Connect();
  Shard shard(redis, &kLayout, "LONG");
  shard.Apply(MakeTrade("LONG", 1, kT0 + 5, 9));
  shard.Flush();
  klined::test::Routed conn(Opts(redis));
  klined::RolloverStats stats;
  klined::RolloverJob job(&conn.router, "kline", &kLayout, &stats);
  const int64_t now = kT0 + 2500 * 1000 + 1;  // 2,500 1s buckets later
  klined::RolloverResult r = job.RunOnce(now);
  CHECK(r.complete);
  CHECK(r.truncated == 1);  // the 1s interval, capped at kMaxClosedPerRun
  CHECK(Hist(c, "LONG", "1s").size() == static_cast<size_t>(klined::kMaxClosedPerRun));
  int runs = 1;
  while (r.truncated > 0 && runs < 10) {
    r = job.RunOnce(now);
    ++runs;
  }
  CHECK(runs == 3);
  for (const char* iv : {"1s", "1m"}) {
    CheckAgainstReference(c, "LONG", iv, {{1, kT0 + 5, 9}}, now);
  }
  CHECK(c.Integer({"HLEN", Base("LONG") + ":pending"}) == 2500 + 41);
}

// ---- trimming ----------------------------------------------------------------------------

TEST_CASE("jobs trim: keeps exactly the limit once persisted, never an unpersisted one") {
  kt::RedisServer redis;
  auto c = redis.Connect();
  Shard shard(redis, &kLayout, "TRIM");
  shard.Apply(MakeTrade("TRIM", 1, kT0 + 10, 42));
  shard.Flush();
  klined::test::Routed conn(Opts(redis));
  klined::RolloverStats rstats;
  klined::RolloverJob rollover(&conn.router, "kline", &kLayout, &rstats);
  REQUIRE(rollover.RunOnce(kT0 + 30000).complete);  // 30 closed 1s candles, all pending
  REQUIRE(Hist(c, "TRIM", "1s").size() == 30);
  const std::string pending = Base("TRIM") + ":pending";
  auto persist = [&](int64_t from, int64_t to) {  // as MySQL persistence does: HDEL
    for (int64_t t = from; t < to; t += 1000) {
      c.Command({"HDEL", pending, "1s|" + std::to_string(kT0 + t)});
    }
  };
  klined::TrimStats stats;
  klined::TrimJob trim(&conn.router, "kline", &kLayout, 10, &stats);
  // Nothing persisted: nothing trimmed.
  klined::TrimResult r = trim.RunOnce();
  REQUIRE(r.complete);
  CHECK(r.removed == 0);
  CHECK(Hist(c, "TRIM", "1s").size() == 30);
  CHECK_FALSE(c.Get(Base("TRIM") + ":trimmed").has_value());
  // All but the candle at +5 s persisted: it stays, the other 19 older ones go.
  persist(0, 5000);
  persist(6000, 30000);
  r = trim.RunOnce();
  CHECK(r.removed == 19);
  std::vector<std::string> h =
      c.Strings({"ZRANGE", Base("TRIM") + ":1s:hist", "0", "-1", "WITHSCORES"});
  REQUIRE(h.size() == 22);
  CHECK(h[1] == std::to_string(kT0 + 5000));
  CHECK(h[3] == std::to_string(kT0 + 20000));
  auto trimmed = c.Command({"HGET", Base("TRIM") + ":trimmed", "1s"});
  REQUIRE(trimmed->type == REDIS_REPLY_STRING);
  CHECK(std::string(trimmed->str) == std::to_string(kT0 + 19000));
  // Once it is persisted too: exactly the limit remains.
  persist(5000, 6000);
  CHECK(trim.RunOnce().removed == 1);
  CHECK(Hist(c, "TRIM", "1s").size() == 10);
  CHECK(trim.RunOnce().removed == 0);  // idempotent
  // A reloaded, lower limit applies to the next run; the 1m history (1 candle) is untouched.
  trim.set_history_limit(4);
  CHECK(trim.RunOnce().removed == 6);
  CHECK(Hist(c, "TRIM", "1s").size() == 4);
  CHECK(Hist(c, "TRIM", "1m").empty());
  trimmed = c.Command({"HGET", Base("TRIM") + ":trimmed", "1s"});
  CHECK(std::string(trimmed->str) == std::to_string(kT0 + 25000));
  CHECK(stats.removed.Get() == 26);
  // Interrupted before the first chunk: nothing done, and the pass resumes on the next call.
  trim.set_history_limit(2);
  const klined::TrimResult cut = trim.RunOnce({}, [] { return false; });
  CHECK_FALSE(cut.complete);
  CHECK(cut.interrupted);
  CHECK(Hist(c, "TRIM", "1s").size() == 4);
  CHECK(trim.RunOnce().removed == 2);
  CHECK(stats.failures.Get() == 0);
}

TEST_CASE("jobs trim: an interrupted pass resumes where it stopped") {
  kt::RedisServer redis;
  auto c = redis.Connect();
  klined::test::Routed conn(Opts(redis));
  klined::RolloverStats rstats;
  klined::RolloverJob rollover(&conn.router, "kline", &kLayout, &rstats);
  std::vector<std::unique_ptr<Shard>> shards;
  for (int k = 0; k < 40; ++k) {
    const std::string sym = "S" + std::to_string(k);
    shards.push_back(std::make_unique<Shard>(redis, &kLayout, sym));
    shards.back()->Apply(MakeTrade(sym, 1, kT0 + 10, 3));
    shards.back()->Flush();
  }
  REQUIRE(rollover.RunOnce(kT0 + 5000).complete);  // 5 closed 1s candles each
  for (int k = 0; k < 40; ++k) c.Command({"DEL", Base("S" + std::to_string(k)) + ":pending"});
  klined::TrimStats stats;
  klined::TrimJob trim(&conn.router, "kline", &kLayout, 1, &stats);
  trim.set_chunk(4);
  // Allow two chunks per call: the pass needs several calls, and covers every symbol once.
  int calls = 0;
  klined::TrimResult r;
  do {
    int budget = 2;
    r = trim.RunOnce({}, [&] { return budget-- > 0; });
    ++calls;
  } while (!r.complete && calls < 100);
  CHECK(r.complete);
  CHECK(calls > 2);
  for (int k = 0; k < 40; ++k) CHECK(Hist(c, "S" + std::to_string(k), "1s").size() == 1);
  CHECK(stats.removed.Get() == 40 * 4);
  CHECK(stats.runs.Get() == 1);
}

// ---- the loop ------------------------------------------------------------------------------

TEST_CASE("jobs timer loop: rolls idle symbols at real 1s boundaries; hand-over on Stop") {
  kt::RedisServer redis;
  auto c = redis.Connect();
  Shard shard(redis, &kLayout, "LOOP");
  const int64_t start = WallMs();
  shard.Apply(MakeTrade("LOOP", 1, start, 77));
  shard.Flush();
  klined::TimerLoopOptions o;
  o.redis = Opts(redis);
  o.layout = &kLayout;
  o.lease_ttl_ms = 1000;
  std::atomic<int> a_on{0}, a_off{0}, b_on{0};
  std::atomic<int64_t> a_epoch{-1}, b_epoch{-1};
  std::string a_token, b_token;  // written on the loop's thread before the count is bumped
  klined::TimerLoop a(o, [&](bool on, const std::string& token, int64_t epoch) {
    if (on) a_token = token, a_epoch.store(epoch);
    (on ? a_on : a_off).fetch_add(1);
  });
  klined::TimerLoop b(o, [&](bool on, const std::string& token, int64_t epoch) {
    if (on) b_token = token, b_epoch.store(epoch), b_on.fetch_add(1);
  });
  a.Start();
  while (a_on.load() == 0 && WallMs() - start < 10000) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  REQUIRE(a.active());
  // The hand-off carries the lease's token and fencing epoch (persistence fences with them).
  CHECK(a_epoch.load() > 0);
  CHECK(a_token == c.Get("kline:lease"));
  b.Start();
  // After a boundary, within the grace period (rollover_grace_ms): the current candle is in
  // the current bucket and the history gapless from the trade's bucket (the reference).
  auto rolled = [&](const std::string& sym, const std::vector<RefTrade>& trades, int64_t boundary) {
    RefSeries want;
    std::optional<std::string> current;
    std::vector<std::string> hist;
    WaitUntilWallMs(boundary + o.rollover_grace_ms, [&] {
      want = Reference(sym, "1s", trades, WallMs());
      current = c.Get(Base(sym) + ":1s");
      hist = Hist(c, sym, "1s");
      return current == want.current && hist == want.hist;
    });
    CHECK(current == want.current);
    CHECK(hist == want.hist);
  };
  const std::vector<RefTrade> loop_trades = {{1, start, 77}};
  for (int k = 0; k < 2; ++k) rolled("LOOP", loop_trades, SleepToNextSecond());
  // A symbol new to Redis, first flushed just after a boundary's rollover with a trade of the
  // bucket before it: the follow-up run (boundary + grace/2) rolls it within the grace period
  // too. The flush must come after the boundary's run and well before the follow-up; on a
  // slow machine a second may miss that window, then the next one is used.
  int64_t boundary = 0;
  for (int attempt = 0; attempt < 5 && boundary == 0; ++attempt) {
    const int64_t b_at = SleepToNextSecond();
    const RefSeries loop_now = Reference("LOOP", "1s", loop_trades, b_at);
    WaitUntilWallMs(b_at + 400, [&] { return c.Get(Base("LOOP") + ":1s") == loop_now.current; });
    if (WallMs() < b_at + 300) boundary = b_at;
  }
  REQUIRE(boundary != 0);
  Shard late(redis, &kLayout, "NEWSYM");
  late.Apply(MakeTrade("NEWSYM", 1, boundary - 200, 5));
  late.Flush();
  REQUIRE(WallMs() < boundary + 400);
  RefSeries want_new = Reference("NEWSYM", "1s", {{1, boundary - 200, 5}}, boundary);
  std::optional<std::string> new_current;
  WaitUntilWallMs(boundary + o.rollover_grace_ms, [&] {
    new_current = c.Get(Base("NEWSYM") + ":1s");
    return new_current == want_new.current;
  });
  CHECK(new_current == want_new.current);
  CHECK_FALSE(b.active());
  CHECK(b_on.load() == 0);
  // Stop: a steps down and releases; b takes over well before the ttl would have expired.
  const auto stop = std::chrono::steady_clock::now();
  a.Stop();
  CHECK(a_off.load() == 1);
  while (!b.active() && std::chrono::steady_clock::now() - stop < milliseconds(2000)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  REQUIRE(b.active());
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - stop);
  MESSAGE("hand-over after Stop: " << took.count() << " ms");
  CHECK(took.count() < 500);
  while (b_on.load() == 0) std::this_thread::sleep_for(milliseconds(1));  // set just after
  CHECK(b_epoch.load() > a_epoch.load());
  CHECK(b_token.ends_with(":" + std::to_string(b_epoch.load())));
  rolled("LOOP", loop_trades, SleepToNextSecond());  // b runs the rollover now
  CHECK(b.lease_stats().held.Get() == 1);
  b.Stop();
  CHECK_FALSE(c.Get("kline:lease").has_value());
}

// ---- throughput (opt-in) -------------------------------------------------------------------

TEST_CASE("jobs rollover throughput: 10k symbols x 15 intervals (KLINED_ROLLOVER_BENCH=1)") {
  if (std::getenv("KLINED_ROLLOVER_BENCH") == nullptr) return;
  // KLINED_ROLLOVER_CLUSTER=N: on a Redis Cluster of N primaries (no replicas), the job's
  // per-node pipelines running at once; CPU summed over the nodes.
  const int primaries = std::getenv("KLINED_ROLLOVER_CLUSTER")
                            ? std::atoi(std::getenv("KLINED_ROLLOVER_CLUSTER"))
                            : 0;
  std::unique_ptr<kt::RedisServer> single;
  std::unique_ptr<kt::RedisCluster> cluster;
  std::vector<kt::RedisServer*> servers;
  if (primaries > 0) {
    cluster = std::make_unique<kt::RedisCluster>(primaries, 0);
    for (auto& node : cluster->nodes()) servers.push_back(node.get());
  } else {
    single = std::make_unique<kt::RedisServer>();
    servers.push_back(single.get());
  }
  klined::cluster::TopologyOptions topo =
      klined::cluster::SingleNode(Opts(*servers[0]), "kline:wait");
  if (cluster) {
    topo.cluster = true;
    topo.seeds.clear();
    for (kt::RedisServer* s : servers) topo.seeds.push_back(s->address());
  }
  klined::cluster::Topology topology(topo);
  REQUIRE(topology.Refresh());
  const klined::SeriesLayout layout{
      {Interval::k1m, Interval::k3m, Interval::k5m, Interval::k15m, Interval::k30m, Interval::k1h,
       Interval::k2h, Interval::k4h, Interval::k6h, Interval::k8h, Interval::k12h, Interval::k1d,
       Interval::k3d, Interval::k1w, Interval::k1M},
      {}};
  const int n = std::getenv("KLINED_ROLLOVER_SYMBOLS")
                    ? std::atoi(std::getenv("KLINED_ROLLOVER_SYMBOLS"))
                    : 10000;
  // 2024-01-01 00:00 UTC is a Monday and the 1st: every interval but 3d has a boundary there.
  // KLINED_ROLLOVER_AFTER_MS moves the boundary later (e.g. 60000: only 1m is due).
  const int64_t boundary =
      1704067200000 + (std::getenv("KLINED_ROLLOVER_AFTER_MS")
                           ? std::atoll(std::getenv("KLINED_ROLLOVER_AFTER_MS"))
                           : 0);
  {
    klined::cluster::Router router(&topology);
    klined::cluster::Batch batch(&router);
    klined::KlineStore store(&topology, "kline", &layout);
    std::vector<std::unique_ptr<klined::SymbolSeries>> series;
    std::vector<klined::SymbolSeries*> ptrs;
    for (int k = 0; k < n; ++k) {
      const std::string sym = "SYM" + std::to_string(k);
      series.push_back(std::make_unique<klined::SymbolSeries>(&layout, klined::Symbol(sym)));
      REQUIRE(series.back()->Apply(MakeTrade(sym, 1, boundary - 1000, 100 + k % 7)).outcome ==
              klined::SymbolSeries::Outcome::kApplied);
      ptrs.push_back(series.back().get());
    }
    for (size_t k = 0; k < ptrs.size(); k += 1000) {
      const size_t m = std::min<size_t>(1000, ptrs.size() - k);
      REQUIRE(store.Flush(std::span<klined::SymbolSeries* const>(ptrs.data() + k, m)).ok);
    }
    // Steady state: every history key exists already (holding an older candle), as it does
    // in production; otherwise the run would mostly measure Redis creating 140k keys.
    for (int k = 0; k < n; ++k) {
      const std::string sym = "SYM" + std::to_string(k);
      for (Interval iv : layout.intervals) {
        const int64_t old = klined::BucketOpen(iv, boundary - 86400000LL * 100, {});
        const std::string key = Base(sym) + ":" + std::string(klined::IntervalName(iv)) + ":hist";
        batch.Append(klined::cluster::KeySlot(key),
                     {"ZADD", key, std::to_string(old),
                      klined::CandleJson(klined::Candle::Empty(iv, old, {}, {}), sym, true)});
      }
      if (k % 1000 == 999 || k == n - 1) {
        for (size_t r = 0; r < (k % 1000 + 1) * layout.intervals.size(); ++r) {
          REQUIRE(batch.Next() != nullptr);
        }
      }
    }
  }
  klined::cluster::Router router(&topology);
  klined::RolloverStats stats;
  klined::RolloverJob job(&router, "kline", &layout, &stats);
  for (kt::RedisServer* server : servers) server->Connect().Command({"CONFIG", "RESETSTAT"});
  // CPU time too (the client thread's and the servers'): the machine may be shared.
  auto redis_cpu_ms = [&] {
    double sum = 0;
    for (kt::RedisServer* server : servers) {
      auto info = server->Connect().Command({"INFO", "cpu"});
      const std::string s(info->str, info->len);
      auto field = [&](const char* name) {
        const size_t at = s.find(name);
        return at == std::string::npos ? 0.0 : std::atof(s.c_str() + at + std::strlen(name));
      };
      sum += 1000 * (field("used_cpu_user:") + field("used_cpu_sys:"));
    }
    return sum;
  };
  auto thread_cpu_ms = [] {
    rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return 1000.0 * (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
  };
  if (std::getenv("KLINED_ROLLOVER_PERF")) {  // profile the server during the run only
    const std::string cmd = "perf record -q -g -o " +
                            std::string(std::getenv("KLINED_ROLLOVER_PERF")) + " -p " +
                            std::to_string(servers[0]->process().pid()) + " >/dev/null 2>&1 &";
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::this_thread::sleep_for(milliseconds(500));
  }
  const double redis0 = redis_cpu_ms(), client0 = thread_cpu_ms();
  const auto t0 = std::chrono::steady_clock::now();
  // As the timer loop runs it at a boundary: the intervals with a boundary there.
  const klined::RolloverResult r = job.RunOnce(boundary + 5, {}, {}, boundary - 1);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const double client_ms = thread_cpu_ms() - client0, redis_ms = redis_cpu_ms() - redis0;
  REQUIRE(r.complete);
  CHECK(r.symbols_rolled == static_cast<uint64_t>(n));
  uint64_t due = 0;  // intervals with a boundary there (3d buckets count from 1970-01-01)
  for (Interval iv : layout.intervals) {
    due += klined::BucketOpen(iv, boundary - 1000, {}) != klined::BucketOpen(iv, boundary, {});
  }
  if (boundary == 1704067200000) CHECK(due == 14);
  CHECK(r.candles_closed == static_cast<uint64_t>(n) * due);
  MESSAGE("rolled " << n << " symbols x 15 intervals (" << r.candles_closed
                    << " candles closed) in " << ms << " ms");
  std::printf(
      "rollover: %d symbols x 15 intervals (%llu candles closed) in %.1f ms wall; cpu: "
      "klined thread %.1f ms, redis-server %.1f ms (%zu server%s)\n",
      n, static_cast<unsigned long long>(r.candles_closed), ms, client_ms, redis_ms, servers.size(),
      servers.size() == 1 ? "" : "s, summed");
  // The full sweep (every interval of every symbol checked; nothing due now).
  const double redis1 = redis_cpu_ms();
  const auto t1 = std::chrono::steady_clock::now();
  const klined::RolloverResult sweep = job.RunOnce(boundary + 6);
  const double sweep_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  CHECK(sweep.complete);
  CHECK(sweep.candles_closed == 0);
  std::printf("full sweep with nothing due: %.1f ms wall; redis-server cpu %.1f ms\n", sweep_ms,
              redis_cpu_ms() - redis1);
  if (std::getenv("KLINED_ROLLOVER_STATS")) {
    auto info = servers[0]->Connect().Command({"INFO", "commandstats"});
    std::printf("%s\n", info->str);
  }
}
