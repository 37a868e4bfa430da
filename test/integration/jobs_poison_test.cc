// Timer jobs against stored values klined did not write, with a real redis-server.
// Invariant: one symbol's unreadable current candle or a key of another type is skipped,
// counted and logged; the rollover and trim passes go on for every other symbol (and for the
// symbol's other intervals) instead of stopping at it on every run.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "io/redis/kline_store.h"
#include "io/redis/redis_conn.h"
#include "jobs/rollover.h"
#include "jobs/trim.h"
#include "klined/series.h"
#include "redis_server.h"
#include "routed.h"

namespace kt = klined::test;

namespace {

using klined::Interval;

const klined::SeriesLayout kLayout{{Interval::k1m, Interval::k5m}, {}};
constexpr int64_t kT0 = 1700000000000 - 1700000000000 % 300000;  // a 5m boundary

klined::Trade MakeTrade(std::string_view sym, int64_t id, int64_t time_ms) {
  klined::Trade t;
  t.symbol = klined::Symbol(sym);
  t.id = id;
  t.time_ms = time_ms;
  t.price = klined::Decimal::FromInt(100 + id);
  t.qty = klined::Decimal::FromInt(1);
  t.quote = t.price;
  return t;
}

std::string Base(const std::string& sym) { return "kline:{" + sym + "}"; }

int64_t OpenOf(const std::optional<std::string>& json) {
  REQUIRE(json.has_value());
  return std::stoll(json->substr(5, json->find(',') - 5));
}

}  // namespace

TEST_CASE("jobs poison: rollover and trim skip what they cannot read and go on with the rest") {
  kt::RedisServer redis;
  auto c = redis.Connect();
  klined::RedisOptions o;
  o.address = redis.address();
  klined::KlineStore store(o, "kline", &kLayout);
  for (const char* sym : {"OK1", "BADHIST", "BADCUR", "OK2"}) {
    klined::SymbolSeries s(&kLayout, klined::Symbol(sym));
    REQUIRE(s.Apply(MakeTrade(sym, 1, kT0 + 1000)).outcome ==
            klined::SymbolSeries::Outcome::kApplied);
    klined::SymbolSeries* p = &s;
    REQUIRE(store.Flush(std::span<klined::SymbolSeries* const>(&p, 1)).ok);
  }
  // BADHIST's 1m history is a string; BADCUR's 5m current candle is not a candle.
  c.Command({"SET", Base("BADHIST") + ":1m:hist", "oops"});
  c.Command({"SET", Base("BADCUR") + ":5m", "garbage"});

  klined::test::Routed conn(o);
  klined::RolloverStats stats;
  klined::RolloverJob job(&conn.router, "kline", &kLayout, &stats);
  // One minute later (the step path) and twenty minutes later (the planned path).
  for (int64_t now : {kT0 + 61000, kT0 + 20 * 60000 + 1000}) {
    CAPTURE(now);
    const klined::RolloverResult r = job.RunOnce(now);
    CHECK(r.complete);
    for (const char* sym : {"OK1", "OK2"}) {
      CHECK(OpenOf(c.Get(Base(sym) + ":1m")) == now - now % 60000);
      CHECK(OpenOf(c.Get(Base(sym) + ":5m")) == now - now % 300000);
    }
    // BADHIST's 1m stays where it was (its history cannot take the closed candle); its 5m
    // rolls. BADCUR's 1m rolls; its unreadable 5m is left for a person.
    CHECK(OpenOf(c.Get(Base("BADHIST") + ":1m")) == kT0);
    CHECK(OpenOf(c.Get(Base("BADHIST") + ":5m")) == now - now % 300000);
    CHECK(OpenOf(c.Get(Base("BADCUR") + ":1m")) == now - now % 60000);
    CHECK(c.Get(Base("BADCUR") + ":5m") == std::optional<std::string>("garbage"));
    CHECK(c.Get(Base("BADHIST") + ":1m:hist") == std::optional<std::string>("oops"));
  }
  CHECK(stats.skipped.Get() >= 4);  // each run: BADHIST's 1m and BADCUR's 5m
  CHECK(stats.failures.Get() == 0);

  klined::TrimStats trim_stats;
  klined::TrimJob trim(&conn.router, "kline", &kLayout, /*history_limit=*/1, &trim_stats);
  const klined::TrimResult t = trim.RunOnce("");
  CHECK(t.complete);
  CHECK(trim_stats.skipped.Get() == 1);  // BADHIST
  CHECK(trim_stats.failures.Get() == 0);
}
