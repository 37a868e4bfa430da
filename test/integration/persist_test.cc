// Persistence of closed candles to MySQL/MariaDB (src/jobs/persist.h), against a real
// redis-server and a real mariadbd. Invariants checked:
//  - every candle the shard path (KlineStore::Flush) marks pending reaches the contract's
//    `kline` table with exactly its values (every column compared as text, DECIMALs exact),
//    empty candles with first/last trade id -1; what reached MySQL leaves B:pending;
//  - a candle re-written after persistence is upserted again, and an entry re-written while
//    a run is in flight stays pending (compare-and-delete);
//  - MySQL down: nothing is deleted from Redis, and after it comes back everything lands;
//  - late trades beyond Redis are merged into MySQL exactly once, even when a run repeats a
//    record after a crash between COMMIT and the Redis delete; the following empty candles
//    (MySQL and Redis) take the new close;
//  - fenced by the lease: once a newer holder (epoch 2) is active, an ex-holder's worker
//    (epoch 1, its token no longer the lease's) changes nothing, neither in MySQL (upserts,
//    late merges) nor in Redis (PENDING_DONE, LATE_DONE);
//  - MySQL TLS (MysqlConn, as the worker and the startup probe use it): each mode against a
//    server with TLS and one without; from `required` on no connection is ever in the clear;
//  - a pending entry that does not parse never blocks the rest: it is persisted from its
//    history member when that one is good, else moved to the symbol's quarantine hash, so
//    trimming goes on; a B:pending that is not a hash is counted, not fatal.
// KLINED_PERSIST_BENCH=1 also runs "persist bench": upsert and end-to-end throughput.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "io/mysql/kline_table.h"
#include "io/mysql/mysql_conn.h"
#include "io/redis/kline_store.h"
#include "io/redis/redis_conn.h"
#include "jobs/persist.h"
#include "jobs/trim.h"
#include "klined/candle.h"
#include "klined/series.h"
#include "klined/trade_decoder.h"
#include "mariadb_server.h"
#include "redis_server.h"
#include "routed.h"
#include "temp_dir.h"

namespace kt = klined::test;
using klined::Candle;
using klined::Interval;

namespace {

constexpr int64_t kT0 = 1732147200000;  // a 1m and 5m boundary
constexpr int64_t kMin = 60'000;
const char* const kSym = "BTCUSDT";

struct Servers {
  kt::RedisServer redis;
  kt::MariaDbServer db;

  klined::PersistOptions Options() const {
    klined::PersistOptions o;
    o.redis.address = redis.address();
    o.key_prefix = "kline";
    o.mysql.host = db.host();
    o.mysql.port = db.port();
    o.mysql.user = db.user();
    o.mysql.password = db.password();
    o.mysql.database = db.database();
    o.persist_interval_ms = 50;
    return o;
  }
  klined::MysqlOptions Mysql() const { return Options().mysql; }
};

klined::Trade MakeTrade(const std::string& sym, int64_t id, const std::string& p,
                        const std::string& q, int64_t time, bool maker) {
  klined::TradeDecoder dec;
  std::vector<klined::Trade> out;
  const std::string json = "{\"s\":\"" + sym + "\",\"t\":" + std::to_string(id) + ",\"p\":\"" + p +
                           "\",\"q\":\"" + q + "\",\"T\":" + std::to_string(time) +
                           ",\"m\":" + (maker ? "true" : "false") + "}";
  auto r = dec.Decode(json, time, &out);
  REQUIRE(r.accepted == 1);
  return out[0];
}

klined::RedisOptions RedisAt(const kt::RedisServer& redis) {
  klined::RedisOptions o;
  o.address = redis.address();
  return o;
}

// The shard's write path: a SymbolSeries flushed by the real KlineStore (FLUSH script).
struct Shard {
  klined::SeriesLayout layout{{Interval::k1m, Interval::k5m}, {}};
  klined::KlineStore store;
  klined::SymbolSeries series;

  explicit Shard(const kt::RedisServer& redis, const std::string& sym = kSym)
      : store(RedisAt(redis), "kline", &layout), series(&layout, klined::Symbol(sym)) {
    std::vector<std::optional<Candle>> none(layout.intervals.size());
    series.Restore({}, none);
  }
  void Apply(const klined::Trade& t) {
    REQUIRE(series.Apply(t).outcome == klined::SymbolSeries::Outcome::kApplied);
  }
  void Flush() {
    klined::SymbolSeries* s = &series;
    auto report = store.Flush({&s, 1});
    REQUIRE(report.ok);
  }
};

// MySQL's text for a DECIMAL(38,18): the canonical decimal with 18 fractional digits.
std::string Dec18(klined::Decimal d) {
  std::string s = d.ToString();
  size_t dot = s.find('.');
  if (dot == std::string::npos) {
    s += ".";
    dot = s.size() - 1;
  }
  s.append(18 - (s.size() - dot - 1), '0');
  return s;
}

klined::Decimal Dec(std::string_view text) {
  klined::Decimal d;
  REQUIRE(klined::ParseStoredDecimal(text, &d) == klined::DecimalError::kOk);
  return d;
}

kt::Row ExpectedRow(const Candle& c) {
  return {std::string(klined::IntervalName(c.interval)),
          std::to_string(c.open_time),
          std::to_string(c.close_time),
          Dec18(c.open),
          Dec18(c.high),
          Dec18(c.low),
          Dec18(c.close),
          Dec18(c.volume),
          Dec18(c.quote_volume),
          Dec18(c.taker_volume),
          Dec18(c.taker_quote_volume),
          std::to_string(c.count),
          std::to_string(c.empty() ? -1 : c.first_id),
          std::to_string(c.empty() ? -1 : c.last_id)};
}

std::vector<kt::Row> MysqlRows(const kt::MariaDbServer& db, const std::string& sym) {
  return db.Query(
      "SELECT `interval`,open_time,close_time,open,high,low,close,volume,quote_volume,"
      "taker_buy_volume,taker_buy_quote_volume,trades,first_trade_id,last_trade_id FROM kline "
      "WHERE symbol='" +
      sym + "' ORDER BY `interval`, open_time");
}

// Every closed candle Redis holds for the symbol, as MySQL should show it (same order).
std::vector<kt::Row> RedisHistoryRows(kt::RedisClient& r, const std::string& sym,
                                      std::vector<Candle>* candles = nullptr) {
  std::vector<kt::Row> rows;
  for (const char* iv : {"1m", "5m"}) {  // the ORDER BY `interval` order
    for (const std::string& json :
         r.Strings({"ZRANGE", "kline:{" + sym + "}:" + iv + ":hist", "0", "-1"})) {
      Candle c;
      std::string_view s;
      bool closed = false;
      REQUIRE(klined::ParseCandleJson(json, &c, &s, &closed));
      CHECK(closed);
      rows.push_back(ExpectedRow(c));
      if (candles) candles->push_back(c);
    }
  }
  return rows;
}

template <typename F>
bool WaitFor(F f, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return f();
}

}  // namespace

TEST_CASE("persist: flushed candles reach MySQL exactly; empty candles have -1 ids") {
  Servers s;
  Shard shard(s.redis);
  // Minute 0: two trades whose sums need all 18 fractional digits.
  shard.Apply(MakeTrade(kSym, 1, "43210.123456789012345678", "3", kT0 + 1000, false));
  shard.Apply(MakeTrade(kSym, 2, "0.000000000000000001", "7", kT0 + 2000, true));
  // Minutes 1 and 2 empty; minute 3 traded; minute 6 closes them (and 5m bucket 0).
  shard.Apply(MakeTrade(kSym, 3, "99999999999999999999", "0.5", kT0 + 3 * kMin, false));
  shard.Apply(MakeTrade(kSym, 4, "1.5", "2", kT0 + 6 * kMin + 5, false));
  shard.Flush();

  auto r = s.redis.Connect();
  CHECK(r.Strings({"SMEMBERS", "kline:pending"}) == std::vector<std::string>{kSym});
  CHECK(r.Integer({"HLEN", "kline:{BTCUSDT}:pending"}) == 7);  // 6 x 1m + 1 x 5m

  klined::PersistWorker worker(s.Options());
  auto report = worker.RunOnce();
  REQUIRE_MESSAGE(report.ok, report.error);
  CHECK(report.pending_seen == 7);
  CHECK(report.upserted == 7);
  CHECK(report.deleted == 7);
  CHECK(worker.stats().candles_upserted.Get() == 7);
  CHECK(worker.stats().batches.Get() == 1);
  CHECK(r.Integer({"EXISTS", "kline:{BTCUSDT}:pending"}) == 0);
  CHECK(r.Strings({"SMEMBERS", "kline:pending"}).empty());

  // The schema is the contract's.
  auto cols = s.db.Query(
      "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE "
      "TABLE_SCHEMA='klined' AND TABLE_NAME='kline' ORDER BY ORDINAL_POSITION");
  REQUIRE(cols.size() == 15);
  CHECK(cols[4] == kt::Row{"open", "decimal(38,18)"});
  CHECK(cols[12] == kt::Row{"trades", "bigint(20)"});

  auto rows = MysqlRows(s.db, kSym);
  CHECK(rows == RedisHistoryRows(r, kSym));
  REQUIRE(rows.size() == 7);
  // Hand-computed, independent of Decimal: minute 0, minute 1 (empty), minute 3.
  CHECK(rows[0] == kt::Row{"1m", std::to_string(kT0), std::to_string(kT0 + kMin - 1),
                           "43210.123456789012345678", "43210.123456789012345678",
                           "0.000000000000000001", "0.000000000000000001", "10.000000000000000000",
                           "129630.370370367037037041", "3.000000000000000000",
                           "129630.370370367037037034", "2", "1", "2"});
  CHECK(rows[1] == kt::Row{"1m", std::to_string(kT0 + kMin), std::to_string(kT0 + 2 * kMin - 1),
                           "0.000000000000000001", "0.000000000000000001", "0.000000000000000001",
                           "0.000000000000000001", "0.000000000000000000", "0.000000000000000000",
                           "0.000000000000000000", "0.000000000000000000", "0", "-1", "-1"});
  CHECK(rows[3][3] == "99999999999999999999.000000000000000000");
  CHECK(rows[3][8] == "49999999999999999999.500000000000000000");
  CHECK(rows[6][0] == "5m");
  CHECK(rows[6][11] == "3");

  // KlineTable::Read parses the DECIMAL text back exactly.
  klined::MysqlConn conn(s.Mysql());
  REQUIRE(conn.EnsureConnected());
  klined::KlineTable table(&conn, 500, {});
  bool ok = false;
  auto c0 = table.Read(kSym, Interval::k1m, kT0, &ok);
  REQUIRE(ok);
  REQUIRE(c0);
  CHECK(klined::CandleJson(*c0, kSym, true) ==
        r.Strings({"ZRANGEBYSCORE", "kline:{BTCUSDT}:1m:hist", std::to_string(kT0),
                   std::to_string(kT0)})[0]);
  CHECK_FALSE(table.Read(kSym, Interval::k1m, kT0 - kMin, &ok));
  CHECK(ok);

  // A stale version (fewer trades, e.g. from a worker that lost the lease) never overwrites.
  Candle stale = *c0;
  stale.count = 1;
  stale.close = klined::Decimal::FromInt(1);
  REQUIRE(table.Upsert(std::vector<klined::StoredCandle>{{kSym, stale}}) ==
          klined::WriteStatus::kOk);
  CHECK(MysqlRows(s.db, kSym) == rows);

  // A second run finds nothing to do.
  report = worker.RunOnce();
  CHECK(report.ok);
  CHECK(report.upserted == 0);
}

TEST_CASE("persist: entries no index names (a writer died before its add) are found by the sweep") {
  // The index sets live outside the symbol's slot, so writers add a symbol to them after the
  // write: one that dies in between leaves entries PREFIX:pending / PREFIX:late do not name.
  Servers s;
  Shard shard(s.redis);
  shard.Apply(MakeTrade(kSym, 1, "10", "1", kT0 + 1000, false));
  shard.Apply(MakeTrade(kSym, 2, "11", "1", kT0 + 2 * kMin + 5, false));
  shard.Flush();
  auto r = s.redis.Connect();
  REQUIRE(r.Integer({"HLEN", "kline:{BTCUSDT}:pending"}) == 2);
  CHECK(r.Strings({"SMEMBERS", "kline:symbols"}) == std::vector<std::string>{kSym});
  r.Command({"SREM", "kline:pending", kSym});  // the add that never happened
  r.Command({"HSET", "kline:{BTCUSDT}:late", "1m|" + std::to_string(kT0) + "|150",
             "{\"s\":\"BTCUSDT\",\"t\":150,\"p\":\"9\",\"q\":\"1\",\"T\":" +
                 std::to_string(kT0 + 10) + ",\"m\":false}"});
  klined::PersistWorker worker(s.Options());
  worker.SetActive(true, "host:1:x:5", 5);  // a new active period: the sweep runs first
  auto report = worker.RunOnce();
  REQUIRE_MESSAGE(report.ok, report.error);
  CHECK(report.upserted == 2);
  CHECK(report.late_applied == 1);
  // The late trade's re-carry rewrote minute 1 (empty, carrying the close): pending again,
  // and named by the index this time (LATE_DONE reports it); the next run persists it.
  CHECK(r.Strings({"SMEMBERS", "kline:pending"}) == std::vector<std::string>{kSym});
  report = worker.RunOnce();
  REQUIRE_MESSAGE(report.ok, report.error);
  CHECK(r.Integer({"EXISTS", "kline:{BTCUSDT}:pending"}) == 0);
  CHECK(r.Integer({"EXISTS", "kline:{BTCUSDT}:late"}) == 0);
  CHECK(r.Strings({"SMEMBERS", "kline:pending"}).empty());
  CHECK(r.Strings({"SMEMBERS", "kline:late"}).empty());
  CHECK(MysqlRows(s.db, kSym).size() == 2);
  CHECK(r.Get("kline:{BTCUSDT}:fence") == "5");
}

TEST_CASE("persist: a re-written candle is upserted again; compare-and-delete keeps changes") {
  Servers s;
  Shard shard(s.redis);
  shard.Apply(MakeTrade(kSym, 10, "100", "1", kT0 + 10, false));
  shard.Apply(MakeTrade(kSym, 20, "101", "1", kT0 + kMin + 10, false));
  shard.Apply(MakeTrade(kSym, 30, "102", "1", kT0 + 2 * kMin + 10, false));
  shard.Flush();
  klined::PersistWorker worker(s.Options());
  REQUIRE(worker.RunOnce().ok);
  auto r = s.redis.Connect();

  SUBCASE("late trade after persistence: the candle is pending again and re-upserted") {
    // Trade 35 falls in minute 0, which the shard no longer holds: resolved against Redis
    // history by the FLUSH (put_hist marks it pending again).
    shard.Apply(MakeTrade(kSym, 35, "99.5", "2", kT0 + 20, true));
    shard.Flush();
    CHECK(r.Integer({"HLEN", "kline:{BTCUSDT}:pending"}) == 1);
    auto report = worker.RunOnce();
    REQUIRE(report.ok);
    CHECK(report.upserted == 1);
    auto rows = MysqlRows(s.db, kSym);
    CHECK(rows == RedisHistoryRows(r, kSym));
    CHECK(rows[0][5] == "99.500000000000000000");  // low
    CHECK(rows[0][6] == "99.500000000000000000");  // close: trade 35 is the last id
    CHECK(rows[0][7] == "3.000000000000000000");   // volume
    CHECK(rows[0][11] == "2");
    CHECK(rows[0][13] == "35");
    CHECK(r.Integer({"EXISTS", "kline:{BTCUSDT}:pending"}) == 0);
  }

  SUBCASE("an entry re-written while the run is in flight stays pending") {
    shard.Apply(MakeTrade(kSym, 40, "103", "1", kT0 + 3 * kMin + 10, false));
    shard.Flush();  // closes minute 2: pending
    const std::string field = "1m|" + std::to_string(kT0 + 2 * kMin);
    const std::string first = r.Strings({"HGETALL", "kline:{BTCUSDT}:pending"})[1];
    // Hold minute 2's row locked so the worker's upsert waits, then change the entry.
    auto blocker = s.db.Connect();
    kt::RunQuery(blocker.get(), "START TRANSACTION");
    kt::RunQuery(blocker.get(), "INSERT INTO kline VALUES ('BTCUSDT','1m'," +
                                    std::to_string(kT0 + 2 * kMin) + ",0,1,1,1,1,0,0,0,0,0,-1,-1)");
    klined::PersistRunReport report;
    std::thread run([&] { report = worker.RunOnce(); });
    // The worker's upsert is waiting for the row lock.
    const bool waiting = WaitFor(
        [&] {
          return s.db.Query(
                     "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE "
                     "INFO LIKE 'INSERT INTO kline (%'")[0][0] == "1";
        },
        std::chrono::seconds(10));
    Candle changed_candle;
    std::string_view json_symbol;
    bool closed = false;
    REQUIRE(klined::ParseCandleJson(first, &changed_candle, &json_symbol, &closed));
    changed_candle.volume = klined::Decimal::FromInt(5);  // as if re-written meanwhile
    const std::string changed = klined::CandleJson(changed_candle, kSym, true);
    r.Command({"HSET", "kline:{BTCUSDT}:pending", field, changed});
    kt::RunQuery(blocker.get(), "ROLLBACK");
    run.join();
    REQUIRE(waiting);
    REQUIRE_MESSAGE(report.ok, report.error);
    CHECK(report.upserted == 1);
    CHECK(report.deleted == 0);
    CHECK(r.Strings({"HGETALL", "kline:{BTCUSDT}:pending"}) ==
          std::vector<std::string>{field, changed});
    CHECK(r.Strings({"SMEMBERS", "kline:pending"}) == std::vector<std::string>{kSym});
    CHECK(MysqlRows(s.db, kSym)[2][7] == "1.000000000000000000");
    // The next run carries the newer value and then clears it.
    report = worker.RunOnce();
    REQUIRE(report.ok);
    CHECK(report.deleted == 1);
    CHECK(MysqlRows(s.db, kSym)[2][7] == "5.000000000000000000");
    CHECK(r.Strings({"SMEMBERS", "kline:pending"}).empty());
  }
}

TEST_CASE("persist: a corrupt pending entry is repaired from history or quarantined") {
  Servers s;
  Shard shard(s.redis);
  // Minutes 0..4 traded, minute 6 closes minutes 0..5 (5 empty) and the first 5m bucket.
  for (int m : {0, 1, 2, 3, 4, 6}) {
    shard.Apply(MakeTrade(kSym, 10 + m, std::to_string(100 + m) + ".5", "1", kT0 + m * kMin + 7,
                          m % 2 == 0));
  }
  shard.Flush();
  auto r = s.redis.Connect();
  const std::vector<kt::Row> good_rows = RedisHistoryRows(r, kSym);  // before any corruption
  REQUIRE(good_rows.size() == 7);
  const std::string pending = "kline:{BTCUSDT}:pending";
  const std::string hist = "kline:{BTCUSDT}:1m:hist";
  auto field = [](int m) { return "1m|" + std::to_string(kT0 + m * kMin); };
  // Minute 1: garbage in B:pending, history intact -> persisted from history.
  r.Command({"HSET", pending, field(1), "{\"t\":1732147260000,\"T\":"});
  // Minute 3: a well-formed candle of another minute under minute 3's field -> from history.
  const std::string minute4 = r.Strings(
      {"ZRANGEBYSCORE", hist, std::to_string(kT0 + 4 * kMin), std::to_string(kT0 + 4 * kMin)})[0];
  r.Command({"HSET", pending, field(3), minute4});
  // Minute 2: garbage in B:pending and in history -> quarantined.
  const std::string bad2 = "{\"t\":1732147320000,\"s\":\"BTCUSDT\",\"o\":\"1e5\"}";
  r.Command({"HSET", pending, field(2), bad2});
  r.Command(
      {"ZREMRANGEBYSCORE", hist, std::to_string(kT0 + 2 * kMin), std::to_string(kT0 + 2 * kMin)});
  r.Command({"ZADD", hist, std::to_string(kT0 + 2 * kMin), "not a candle"});
  // Another symbol's B:pending is not a hash at all.
  r.Command({"SET", "kline:{ETHUSDT}:pending", "oops"});
  r.Command({"SADD", "kline:pending", "ETHUSDT"});

  klined::PersistWorker worker(s.Options());
  auto report = worker.RunOnce();
  REQUIRE_MESSAGE(report.ok, report.error);
  // Every good candle and both repaired ones reached MySQL exactly; minute 2 did not.
  std::vector<kt::Row> want = good_rows;
  want.erase(want.begin() + 2);
  CHECK(MysqlRows(s.db, kSym) == want);
  // Minute 2 left B:pending for the quarantine hash, unchanged, and the symbol is indexed.
  CHECK(r.Integer({"EXISTS", pending}) == 0);
  CHECK(r.Strings({"HGETALL", "kline:{BTCUSDT}:quarantine"}) ==
        std::vector<std::string>{field(2), bad2});
  CHECK(r.Strings({"SMEMBERS", "kline:quarantine"}) == std::vector<std::string>{kSym});
  CHECK(r.Strings({"SMEMBERS", "kline:pending"}) == std::vector<std::string>{"ETHUSDT"});
  CHECK(worker.stats().bad_entries.Get() == 4);  // minutes 1, 2, 3 and ETHUSDT's reply
  CHECK(worker.stats().repaired.Get() == 2);
  CHECK(worker.stats().quarantined.Get() == 1);
  CHECK(report.quarantined == 1);
  CHECK(report.deleted == 6);  // 4 good fields and the 2 repaired ones

  // Nothing of BTCUSDT is pending any more: trimming keeps exactly the limit.
  klined::test::Routed conn(RedisAt(s.redis));
  klined::TrimStats trim_stats;
  klined::TrimJob trim(&conn.router, "kline", &shard.layout, 1, &trim_stats);
  const klined::TrimResult t = trim.RunOnce();
  CHECK(t.complete);
  CHECK(r.Integer({"ZCARD", hist}) == 1);
  CHECK(t.removed == 5);

  // A second run has nothing to do and leaves the quarantine alone.
  report = worker.RunOnce();
  REQUIRE_MESSAGE(report.ok, report.error);
  CHECK(report.upserted == 0);
  CHECK(r.Integer({"HLEN", "kline:{BTCUSDT}:quarantine"}) == 1);
  CHECK(worker.stats().quarantined.Get() == 1);
}

TEST_CASE("persist: MySQL down while candles keep arriving: nothing deleted, all lands later") {
  Servers s;
  Shard shard(s.redis);
  klined::PersistWorker worker(s.Options());
  int64_t id = 1;
  auto trade_minute = [&](int m) {
    shard.Apply(MakeTrade(kSym, id, std::to_string(100 + id) + ".25", "0.1", kT0 + m * kMin + id,
                          id % 2 == 0));
    ++id;
    shard.Flush();
  };
  for (int m = 0; m < 3; ++m) trade_minute(m);
  REQUIRE(worker.RunOnce().ok);

  s.db.Stop();
  auto r = s.redis.Connect();
  for (int m = 3; m < 12; m += 2) trade_minute(m);  // empty minutes between
  const long long pending = r.Integer({"HLEN", "kline:{BTCUSDT}:pending"});
  CHECK(pending > 0);
  for (int i = 0; i < 3; ++i) {
    auto report = worker.RunOnce();
    CHECK_FALSE(report.ok);
    CHECK(r.Integer({"HLEN", "kline:{BTCUSDT}:pending"}) == pending);
    CHECK(r.Strings({"SMEMBERS", "kline:pending"}) == std::vector<std::string>{kSym});
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(worker.stats().failures.Get() >= 3);
  CHECK(worker.mysql_errors() >= 1);

  s.db.Start();
  // The worker's own thread catches up (reconnect after its backoff).
  worker.Start();
  worker.SetActive(true, "", 0);
  trade_minute(13);
  CHECK(WaitFor(
      [&] {
        return r.Strings({"SMEMBERS", "kline:pending"}).empty();
      },
      std::chrono::seconds(15)));
  worker.Stop();
  CHECK(worker.mysql_reconnects() >= 1);
  CHECK(MysqlRows(s.db, kSym) == RedisHistoryRows(r, kSym));
  CHECK(MysqlRows(s.db, kSym).size() == 13 + 2);  // minutes 0..12 and 5m buckets 0, 1
}

TEST_CASE("persist: late trades beyond Redis are merged into MySQL exactly once") {
  Servers s;
  auto r = s.redis.Connect();
  klined::MysqlConn conn(s.Mysql());
  REQUIRE(conn.EnsureConnected());
  klined::KlineTable table(&conn, 500, {});
  REQUIRE(table.EnsureSchema());
  const klined::UtcOffset utc{};
  auto at = [](int m) { return kT0 + m * kMin; };

  // In MySQL, trimmed from Redis: minute 0 traded (close 10), minute 1 empty, minute 2 traded
  // (close 20), minute 3 empty. Redis holds later candles only where a subcase says so.
  Candle m0 = Candle::Empty(Interval::k1m, at(0), utc, {});
  REQUIRE(m0.Apply(MakeTrade(kSym, 100, "10", "1", at(0) + 1, false)));
  Candle m2 = Candle::Empty(Interval::k1m, at(2), utc, {});
  REQUIRE(m2.Apply(MakeTrade(kSym, 200, "20", "1", at(2) + 1, false)));
  std::vector<klined::StoredCandle> stored = {
      {kSym, m0},
      {kSym, Candle::Empty(Interval::k1m, at(1), utc, m0.close)},
      {kSym, m2},
      {kSym, Candle::Empty(Interval::k1m, at(3), utc, m2.close)},
  };
  REQUIRE(table.Upsert(stored) == klined::WriteStatus::kOk);

  auto add_record = [&](int m, int64_t tid, const std::string& p, int64_t time) {
    const std::string field = "1m|" + std::to_string(at(m)) + "|" + std::to_string(tid);
    const std::string json = "{\"s\":\"BTCUSDT\",\"t\":" + std::to_string(tid) + ",\"p\":\"" + p +
                             "\",\"q\":\"2\",\"T\":" + std::to_string(time) + ",\"m\":false}";
    r.Command({"HSET", "kline:{BTCUSDT}:late", field, json});
    r.Command({"SADD", "kline:late", kSym});
    return MakeTrade(kSym, tid, p, "2", time, false);
  };
  klined::PersistWorker worker(s.Options());

  SUBCASE("applied once, and repeated after a crash between COMMIT and HDEL: counted once") {
    const klined::Trade t = add_record(0, 150, "12", at(0) + 30);
    // The crash: an earlier run committed the merge but died before deleting the record.
    auto first = table.ApplyLateTrade(kSym, Interval::k1m, at(0), t);
    REQUIRE(first.outcome == klined::LateOutcome::kApplied);
    CHECK(first.close_changed);
    CHECK(first.recarried_rows == 1);  // minute 1; minute 2 has trades
    REQUIRE(first.next_traded);
    CHECK(*first.next_traded == at(2));
    // Applying it again directly is refused too.
    CHECK(table.ApplyLateTrade(kSym, Interval::k1m, at(0), t).outcome ==
          klined::LateOutcome::kDuplicate);

    auto report = worker.RunOnce();
    REQUIRE_MESSAGE(report.ok, report.error);
    CHECK(report.late_seen == 1);
    CHECK(report.late_applied == 0);
    CHECK(report.late_duplicates == 1);
    CHECK(r.Integer({"EXISTS", "kline:{BTCUSDT}:late"}) == 0);
    CHECK(r.Strings({"SMEMBERS", "kline:late"}).empty());

    auto rows = MysqlRows(s.db, kSym);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0] == kt::Row{"1m", std::to_string(at(0)), std::to_string(at(1) - 1),
                             "10.000000000000000000", "12.000000000000000000",
                             "10.000000000000000000", "12.000000000000000000",
                             "3.000000000000000000", "34.000000000000000000",
                             "3.000000000000000000", "34.000000000000000000", "2", "100", "150"});
    CHECK(rows[1][3] == "12.000000000000000000");  // re-carried: o h l c
    CHECK(rows[1][6] == "12.000000000000000000");
    CHECK(rows[1][11] == "0");
    CHECK(rows[2][6] == "20.000000000000000000");  // traded: unchanged
    CHECK(rows[3][6] == "20.000000000000000000");  // after a traded candle: unchanged
    CHECK(s.db.Query("SELECT COUNT(*) FROM kline_late_applied")[0][0] == "1");

    // A second record for the same candle is applied by the run itself; an older trade id
    // moves only the open, not the close.
    add_record(0, 99, "9", at(0) + 40);
    report = worker.RunOnce();
    REQUIRE(report.ok);
    CHECK(report.late_applied == 1);
    CHECK(worker.stats().late_applied.Get() == 1);
    CHECK(worker.stats().late_duplicates.Get() == 1);
    rows = MysqlRows(s.db, kSym);
    CHECK(rows[0][3] == "9.000000000000000000");  // open: trade 99 is now the first id
    CHECK(rows[0][5] == "9.000000000000000000");  // low
    CHECK(rows[0][6] == "12.000000000000000000");
    CHECK(rows[0][11] == "3");
    CHECK(rows[0][12] == "99");
    // Nothing left; a further run changes nothing.
    report = worker.RunOnce();
    CHECK(report.ok);
    CHECK(report.late_seen == 0);
    CHECK(MysqlRows(s.db, kSym) == rows);
  }

  SUBCASE("the new close is re-carried into Redis history that follows, and persisted") {
    // Minute 3 onwards still in Redis: minute 3 empty in history, minute 4 the current
    // candle, empty. A late trade into minute 2 (MySQL only) changes its close.
    Candle m3 = Candle::Empty(Interval::k1m, at(3), utc, m2.close);
    Candle m4 = Candle::Empty(Interval::k1m, at(4), utc, m2.close);
    r.Command({"ZADD", "kline:{BTCUSDT}:1m:hist", std::to_string(at(3)),
               klined::CandleJson(m3, kSym, true)});
    r.Command({"SET", "kline:{BTCUSDT}:1m", klined::CandleJson(m4, kSym, false)});
    add_record(2, 250, "21.5", at(2) + 50);
    auto report = worker.RunOnce();
    REQUIRE_MESSAGE(report.ok, report.error);
    CHECK(report.late_applied == 1);
    m3.open = m3.high = m3.low = m3.close = Dec("21.5");
    m4.open = m4.high = m4.low = m4.close = m3.close;
    CHECK(r.Strings({"ZRANGE", "kline:{BTCUSDT}:1m:hist", "0", "-1"}) ==
          std::vector<std::string>{klined::CandleJson(m3, kSym, true)});
    CHECK(r.Get("kline:{BTCUSDT}:1m") == klined::CandleJson(m4, kSym, false));
    // Minute 3 is pending again with the new close, and the next run persists it.
    CHECK(r.Strings({"SMEMBERS", "kline:pending"}) == std::vector<std::string>{kSym});
    report = worker.RunOnce();
    REQUIRE(report.ok);
    CHECK(report.upserted == 1);
    auto rows = MysqlRows(s.db, kSym);
    CHECK(rows[2][6] == "21.500000000000000000");
    CHECK(rows[3] == ExpectedRow(m3));
  }

  SUBCASE("an unreadable member where the close is re-carried stops the carry; all else goes on") {
    // Minute 3 in Redis history is not a candle (no open time) but looks like an empty one
    // (prices and "n":0): the re-carry into it raised a Lua error, so LATE_DONE failed, the
    // record stayed, and every later run failed the same way for every symbol.
    const std::string broken = "x\"o\":\"1\",\"h\":\"1\",\"l\":\"1\",\"c\":\"1\",\"n\":0,";
    r.Command({"ZADD", "kline:{BTCUSDT}:1m:hist", std::to_string(at(3)), broken});
    add_record(2, 260, "22", at(2) + 55);
    auto report = worker.RunOnce();
    REQUIRE_MESSAGE(report.ok, report.error);
    CHECK(report.late_applied == 1);
    CHECK(r.Integer({"EXISTS", "kline:{BTCUSDT}:late"}) == 0);
    CHECK(r.Strings({"ZRANGE", "kline:{BTCUSDT}:1m:hist", "0", "-1"}) ==
          std::vector<std::string>{broken});
    CHECK(MysqlRows(s.db, kSym)[2][6] == "22.000000000000000000");
    CHECK(worker.stats().script_errors.Get() == 0);
  }

  SUBCASE("no row in MySQL: the series starts there, gap filled up to the stored series") {
    add_record(-3, 50, "8", at(-3) + 5);
    auto report = worker.RunOnce();
    REQUIRE_MESSAGE(report.ok, report.error);
    CHECK(report.late_applied == 1);
    auto rows = MysqlRows(s.db, kSym);
    REQUIRE(rows.size() == 7);
    CHECK(rows[0] == kt::Row{"1m", std::to_string(at(-3)), std::to_string(at(-2) - 1),
                             "8.000000000000000000", "8.000000000000000000", "8.000000000000000000",
                             "8.000000000000000000", "2.000000000000000000",
                             "16.000000000000000000", "2.000000000000000000",
                             "16.000000000000000000", "1", "50", "50"});
    for (int i = 1; i <= 2; ++i) {
      CHECK(rows[i] == ExpectedRow(Candle::Empty(Interval::k1m, at(-3 + i), utc,
                                                 klined::Decimal::FromInt(8))));
    }
    CHECK(rows[3][6] == "10.000000000000000000");  // the old series start: unchanged
  }

  SUBCASE("a bad record is counted and dropped, never applied") {
    r.Command({"HSET", "kline:{BTCUSDT}:late", "1m|" + std::to_string(at(0)) + "|7",
               "{\"s\":\"BTCUSDT\",\"t\":8,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":false}"});
    r.Command({"SADD", "kline:late", kSym});
    auto report = worker.RunOnce();
    REQUIRE(report.ok);
    CHECK(worker.stats().late_rejected.Get() == 1);
    CHECK(r.Strings({"SMEMBERS", "kline:late"}).empty());
    CHECK(MysqlRows(s.db, kSym)[0][11] == "1");
  }
}

TEST_CASE("persist: fenced by the lease: an ex-holder's worker changes nothing") {
  Servers s;
  auto r = s.redis.Connect();
  const klined::UtcOffset utc{};
  auto at = [](int m) { return kT0 + m * kMin; };
  const std::string token1 = "host-a:1:aaaa:1", token2 = "host-b:2:bbbb:2";
  auto fence = [&] {
    const auto rows = s.db.Query("SELECT epoch FROM kline_fence");
    return rows.empty() ? std::string("none") : rows[0][0];
  };
  r.Command({"SET", "kline:lease", token1});
  klined::PersistWorker old_holder(s.Options());
  old_holder.SetActive(true, token1, 1);
  // Minute 0 traded (close 10), minute 1 empty carrying 10: both pending, persisted by epoch 1.
  Shard shard(s.redis);
  shard.Apply(MakeTrade(kSym, 100, "10", "1", at(0) + 1, false));
  shard.Apply(MakeTrade(kSym, 200, "30", "1", at(2) + 1, false));
  shard.Flush();
  auto report = old_holder.RunOnce();
  REQUIRE_MESSAGE(report.ok, report.error);
  REQUIRE(report.upserted == 2);
  const std::string pending = "kline:{BTCUSDT}:pending";
  const std::string m1_json = r.Strings({"ZRANGEBYSCORE", "kline:{BTCUSDT}:1m:hist",
                                         std::to_string(at(1)), std::to_string(at(1))})[0];
  // The ex-holder was paused with these read (it will write them when it resumes).
  auto add_stale = [&] {
    r.Command({"HSET", pending, "1m|" + std::to_string(at(1)), m1_json});
    r.Command({"SADD", "kline:pending", kSym});
  };
  auto add_late = [&] {
    r.Command({"HSET", "kline:{BTCUSDT}:late", "1m|" + std::to_string(at(0)) + "|150",
               "{\"s\":\"BTCUSDT\",\"t\":150,\"p\":\"12\",\"q\":\"2\",\"T\":" +
                   std::to_string(at(0) + 30) + ",\"m\":false}"});
    r.Command({"SADD", "kline:late", kSym});
  };

  SUBCASE(
      "Redis: once a newer holder wrote the symbol, PENDING_DONE and LATE_DONE change nothing") {
    // The fence is per symbol (B:fence, raised by every job call): epoch 1's run raised it
    // to 1; a newer holder's (epoch 2) call raised it to 2. (A symbol the newer holder has not
    // touched yet the ex-holder may still clean up: the jobs are idempotent, and its MySQL
    // writes are fenced by kline_fence, below.)
    CHECK(r.Get("kline:{BTCUSDT}:fence") == "1");
    r.Command({"SET", "kline:lease", token2});
    r.Command({"SET", "kline:{BTCUSDT}:fence", "2"});
    add_stale();
    const auto before = r.Strings({"HGETALL", pending});
    report = old_holder.RunOnce();
    CHECK_FALSE(report.ok);
    CHECK(report.fenced);
    CHECK(r.Strings({"HGETALL", pending}) == before);
    CHECK(r.Strings({"SMEMBERS", "kline:pending"}) == std::vector<std::string>{kSym});
    r.Command({"DEL", pending});
    r.Command({"SREM", "kline:pending", kSym});
    add_late();
    const auto late_before = r.Strings({"HGETALL", "kline:{BTCUSDT}:late"});
    const auto hist_before = r.Strings({"ZRANGE", "kline:{BTCUSDT}:1m:hist", "0", "-1"});
    report = old_holder.RunOnce();
    CHECK_FALSE(report.ok);
    CHECK(report.fenced);
    CHECK(r.Strings({"HGETALL", "kline:{BTCUSDT}:late"}) == late_before);
    CHECK(r.Strings({"SMEMBERS", "kline:late"}) == std::vector<std::string>{kSym});
    CHECK(r.Strings({"ZRANGE", "kline:{BTCUSDT}:1m:hist", "0", "-1"}) == hist_before);
    CHECK(old_holder.stats().fenced.Get() == 2);
    // The new holder does the work: the record was merged once (kline_late_applied), and
    // its cleanup and re-carry happen now.
    klined::PersistWorker new_holder(s.Options());
    new_holder.SetActive(true, token2, 2);
    report = new_holder.RunOnce();
    REQUIRE_MESSAGE(report.ok, report.error);
    CHECK(r.Integer({"EXISTS", "kline:{BTCUSDT}:late"}) == 0);
    CHECK(s.db.Query("SELECT COUNT(*) FROM kline_late_applied")[0][0] == "1");
  }

  SUBCASE("MySQL: once epoch 2 raised the fence, epoch 1's upserts and late merges are refused") {
    r.Command({"SET", "kline:lease", token2});
    klined::PersistWorker new_holder(s.Options());
    new_holder.SetActive(true, token2, 2);
    report = new_holder.RunOnce();  // raises kline_fence to 2
    REQUIRE_MESSAGE(report.ok, report.error);
    CHECK(fence() == "2");
    // The new holder's late trade into minute 0 re-carried the close 12 into minute 1.
    add_late();
    report = new_holder.RunOnce();
    REQUIRE_MESSAGE(report.ok, report.error);
    const std::vector<kt::Row> rows = MysqlRows(s.db, kSym);
    REQUIRE(rows.size() == 2);
    REQUIRE(rows[1][6] == "12.000000000000000000");
    // The ex-holder resumes with the stale empty candle (close 10) it had read: refused.
    add_stale();
    const auto before = r.Strings({"HGETALL", pending});
    report = old_holder.RunOnce();
    CHECK_FALSE(report.ok);
    CHECK(report.fenced);
    CHECK(MysqlRows(s.db, kSym) == rows);
    CHECK(r.Strings({"HGETALL", pending}) == before);
    // The same through KlineTable directly: an upsert and a late merge under epoch 1.
    klined::MysqlConn conn(s.Mysql());
    REQUIRE(conn.EnsureConnected());
    klined::KlineTable table(&conn, 500, utc);
    table.set_fence_epoch(1);
    Candle stale = Candle::Empty(Interval::k1m, at(1), utc, Dec("10"));
    CHECK(table.Upsert(std::vector<klined::StoredCandle>{{kSym, stale}}) ==
          klined::WriteStatus::kFenced);
    const klined::LateResult late = table.ApplyLateTrade(
        kSym, Interval::k1m, at(0), MakeTrade(kSym, 160, "9", "1", at(0) + 40, false));
    CHECK(late.outcome == klined::LateOutcome::kFenced);
    CHECK(MysqlRows(s.db, kSym) == rows);
    CHECK(s.db.Query("SELECT COUNT(*) FROM kline_late_applied")[0][0] == "1");
    // Raising never lowers it; epoch 2 still writes.
    REQUIRE(table.RaiseFence(1));
    CHECK(fence() == "2");
    table.set_fence_epoch(2);
    CHECK(table.Upsert(std::vector<klined::StoredCandle>{{kSym, stale}}) ==
          klined::WriteStatus::kOk);
  }
}

TEST_CASE("persist: MySQL TLS modes against a server with TLS and one without") {
  kt::MariaDbServer tls_db(kt::MariaDbOptions{.extra_args = {}, .tls = true});
  kt::MariaDbServer plain_db;
  kt::TempDir other("klined-other-ca");
  kt::MakeTestCertificates(other.path());
  using Mode = klined::MysqlTlsMode;
  auto options = [](const kt::MariaDbServer& db, Mode mode, const std::string& ca) {
    klined::MysqlOptions o;
    o.host = db.host();
    o.port = db.port();
    o.user = db.user();
    o.password = db.password();
    o.database = db.database();
    o.tls = mode;
    o.tls_ca = ca;
    return o;
  };
  // The session's cipher as the server reports it; "" = in the clear.
  auto cipher = [](klined::MysqlConn& c) {
    REQUIRE(c.Query("SHOW SESSION STATUS LIKE 'Ssl_cipher'"));
    klined::MysqlResult r = c.StoreResult();
    REQUIRE(r != nullptr);
    MYSQL_ROW row = mysql_fetch_row(r.get());
    REQUIRE(row != nullptr);
    return std::string(row[1] ? row[1] : "");
  };
  const std::string ca = tls_db.ca().string();
  const std::string wrong_ca = (other / "ca.pem").string();

  SUBCASE("a server with TLS") {
    for (auto [mode, with_ca, encrypted] :
         {std::tuple{Mode::kDisabled, false, false}, std::tuple{Mode::kPreferred, false, true},
          std::tuple{Mode::kRequired, false, true}, std::tuple{Mode::kRequired, true, true},
          std::tuple{Mode::kVerifyCa, true, true}, std::tuple{Mode::kVerifyIdentity, true, true}}) {
      CAPTURE(std::string(klined::TlsModeName(mode)));
      CAPTURE(with_ca);
      klined::MysqlConn conn(options(tls_db, mode, with_ca ? ca : ""));
      REQUIRE_MESSAGE(conn.EnsureConnected(), conn.error());
      CHECK(cipher(conn).empty() == !encrypted);
    }
    for (Mode mode : {Mode::kRequired, Mode::kVerifyCa, Mode::kVerifyIdentity}) {
      CAPTURE(std::string(klined::TlsModeName(mode)));
      klined::MysqlConn conn(options(tls_db, mode, wrong_ca));  // did not sign the server's
      CHECK_FALSE(conn.EnsureConnected());
      CHECK_MESSAGE(conn.error().find("certificate") != std::string::npos, conn.error());
    }
    klined::MysqlConn missing(options(tls_db, Mode::kVerifyCa, "/nonexistent/ca.pem"));
    CHECK_FALSE(missing.EnsureConnected());
    CHECK(missing.error() ==
          "mysql.ssl_ca /nonexistent/ca.pem: cannot read: No such file or directory");
    // The persistence worker over a verified TLS connection.
    kt::RedisServer redis;
    Shard shard(redis);
    shard.Apply(MakeTrade(kSym, 1, "100", "1", kT0 + 5, false));
    shard.Apply(MakeTrade(kSym, 2, "101", "1", kT0 + kMin + 5, false));
    shard.Flush();
    klined::PersistOptions po;
    po.redis = RedisAt(redis);
    po.mysql = options(tls_db, Mode::kVerifyIdentity, ca);
    klined::PersistWorker worker(po);
    const auto report = worker.RunOnce();
    REQUIRE_MESSAGE(report.ok, report.error);
    CHECK(report.upserted == 1);
    CHECK(MysqlRows(tls_db, kSym).size() == 1);
  }

  SUBCASE("a server without TLS") {
    for (Mode mode : {Mode::kDisabled, Mode::kPreferred}) {
      CAPTURE(std::string(klined::TlsModeName(mode)));
      klined::MysqlConn conn(options(plain_db, mode, ""));
      REQUIRE_MESSAGE(conn.EnsureConnected(), conn.error());
      CHECK(cipher(conn).empty());
    }
    for (Mode mode : {Mode::kRequired, Mode::kVerifyCa, Mode::kVerifyIdentity}) {
      CAPTURE(std::string(klined::TlsModeName(mode)));
      klined::MysqlConn conn(options(plain_db, mode, ca));
      CHECK_FALSE(conn.EnsureConnected());
      CHECK(!conn.error().empty());
    }
    klined::MysqlConn required(options(plain_db, Mode::kRequired, ""));
    CHECK_FALSE(required.EnsureConnected());
    CHECK(required.error() ==
          "TLS required (mysql.ssl_mode required) but the server did not offer it");
  }
}

TEST_CASE("persist bench" * doctest::skip(std::getenv("KLINED_PERSIST_BENCH") == nullptr)) {
  Servers s;
  const int symbols = 1000, minutes = 100;  // 100,000 candles
  std::vector<klined::StoredCandle> candles;
  candles.reserve(symbols * minutes);
  for (int k = 0; k < symbols; ++k) {
    const std::string sym = "SYM" + std::to_string(k) + "USDT";
    for (int m = 0; m < minutes; ++m) {
      Candle c = Candle::Empty(Interval::k1m, kT0 + m * kMin, {}, {});
      REQUIRE(
          c.Apply(MakeTrade(sym, m * 2 + 1, "43210.12345678", "0.0123", c.open_time + 1, false)));
      REQUIRE(c.Apply(MakeTrade(sym, m * 2 + 2, "43211.5", "1.75", c.open_time + 2, true)));
      candles.push_back({sym, c});
    }
  }
  klined::MysqlConn conn(s.Mysql());
  REQUIRE(conn.EnsureConnected());
  klined::KlineTable table(&conn, 500, {});
  REQUIRE(table.EnsureSchema());
  for (std::string phase : {"insert", "update"}) {
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(table.Upsert(candles) == klined::WriteStatus::kOk);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("KlineTable::Upsert (" << phase << ", batch 500): " << candles.size() << " rows in "
                                   << sec << " s = " << candles.size() / sec << " rows/s");
  }

  // End to end: the same candles pending in Redis (minutes shifted so they are new rows).
  auto r = s.redis.Connect();
  for (const auto& sc : candles) {
    Candle c = sc.candle;
    c.open_time += minutes * kMin;
    c.close_time += minutes * kMin;
    redisAppendCommand(r.get(), "HSET kline:{%s}:pending %s|%lld %s", sc.symbol.c_str(), "1m",
                       static_cast<long long>(c.open_time),
                       klined::CandleJson(c, sc.symbol, true).c_str());
    redisAppendCommand(r.get(), "SADD kline:pending %s", sc.symbol.c_str());
  }
  for (size_t i = 0; i < candles.size() * 2; ++i) {
    void* reply = nullptr;
    REQUIRE(redisGetReply(r.get(), &reply) == REDIS_OK);
    freeReplyObject(reply);
  }
  klined::PersistWorker worker(s.Options());
  auto t0 = std::chrono::steady_clock::now();
  auto report = worker.RunOnce();
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(report.ok);
  CHECK(report.upserted == candles.size());
  CHECK(r.Strings({"SMEMBERS", "kline:pending"}).empty());
  MESSAGE("PersistWorker::RunOnce (Redis pending -> MySQL -> compare-and-delete): "
          << report.upserted << " candles in " << sec << " s = " << report.upserted / sec
          << " candles/s");
}
