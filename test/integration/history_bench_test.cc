// Throughput of the history tools against the real stack, in one run beside their ceiling:
//  1. the ceilings: MySQL's own bulk read of the kline table (rows/s), the reads klinectl
//     makes (newest history_limit rows per symbol and interval) through a bare client, and
//     its own bulk insert of derive 2h's output (rows/s);
//  2. klinectl restore-redis into an empty Redis (candles/s);
//  3. klinectl derive --interval 2h --source 1h and 1d from 1h (rows read/s, candles/s);
//  4. a running klined's automatic restore after a FLUSHALL (seconds, candles/s).
// The kline table is filled directly with multi-row INSERTs: 1,000 symbols x the stack's
// 3 intervals (1m, 5m, 1h) x 1,000 closed candles (redis.history_limit), all valid
// (aligned open times, close_time = open_time + len - 1, o=h=l=c, q = p x v, n >= 1).
// Only with KLINED_HISTORY_BENCH=1 (about 2-3 minutes); figures as MESSAGE lines.
#include <mysql.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "io/mysql/kline_table.h"
#include "stack.h"

using namespace klined_it;  // NOLINT: the shared stack
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

constexpr int kSymbols = 1000;
constexpr int kCandles = 1000;  // per (symbol, interval): the default redis.history_limit

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string SymbolName(int k) {
  char name[16];
  std::snprintf(name, sizeof name, "H%04dUSDT", k);
  return name;
}

void Exec(MYSQL* conn, const std::string& sql) {
  INFO(sql.substr(0, 200));
  REQUIRE(mysql_real_query(conn, sql.data(), sql.size()) == 0);
  // Statements that return rows are not used here; drain anything anyway.
  if (MYSQL_RES* r = mysql_store_result(conn)) mysql_free_result(r);
}

// The figure after `prefix` in the line of `out` that starts with it; -1 if absent.
long long After(const std::string& out, const std::string& prefix, const std::string& key) {
  const size_t line = out.find(prefix);
  if (line == std::string::npos) return -1;
  const size_t at = out.find(key, line);
  if (at == std::string::npos) return -1;
  size_t num = at;
  while (num > line && out[num - 1] == ' ') --num;
  while (num > line && std::isdigit(static_cast<unsigned char>(out[num - 1]))) --num;
  return std::atoll(out.c_str() + num);
}

// Redis's own time in EVALSHA (the RESTORE_HISTORY calls) since the last CONFIG RESETSTAT,
// in seconds (INFO commandstats), and resets the statistics.
double EvalshaSeconds(kt::RedisClient& rc) {
  const kt::RedisReplyPtr r = rc.Command({"INFO", "commandstats"});
  double usec = 0;
  const std::string info = r == nullptr || r->str == nullptr ? "" : std::string(r->str, r->len);
  const size_t at = info.find("cmdstat_evalsha:");
  if (at != std::string::npos) {
    const size_t u = info.find("usec=", at);
    if (u != std::string::npos) usec = std::atof(info.c_str() + u + 5);
  }
  rc.Command({"CONFIG", "RESETSTAT"});
  return usec / 1e6;
}

// A price per symbol with cents; q = p x v and Q = p x V exactly (v = 2.5, V = 1).
struct Prices {
  explicit Prices(int k) : cents(1000 + 37LL * k) {}
  long long cents;
  std::string p = std::to_string(cents / 100) + "." + std::to_string(cents % 100 / 10) +
                  std::to_string(cents % 10);
  std::string q = Scaled(static_cast<I128>(cents) * 2500, 5);
  std::string tq = Scaled(static_cast<I128>(cents) * 1000, 5);
};

std::string InsertHead(const std::string& table) {
  return "INSERT INTO " + table +
         " (symbol,`interval`,open_time,close_time,open,high,low,close,volume,quote_volume,"
         "taker_buy_volume,taker_buy_quote_volume,trades,first_trade_id,last_trade_id) VALUES ";
}

// One row's VALUES tuple: a valid closed candle of 3 trades, o = h = l = c.
std::string RowSql(const std::string& sym, const std::string& iv, int64_t open, int64_t len,
                   const Prices& x, long long first) {
  return "('" + sym + "','" + iv + "'," + std::to_string(open) + "," +
         std::to_string(open + len - 1) + "," + x.p + "," + x.p + "," + x.p + "," + x.p + ",2.5," +
         x.q + ",1," + x.tq + ",3," + std::to_string(first) + "," + std::to_string(first + 2) + ")";
}

}  // namespace

TEST_CASE("history bench" * doctest::skip(std::getenv("KLINED_HISTORY_BENCH") == nullptr)) {
  const auto total0 = std::chrono::steady_clock::now();
  Stack stack;
  // The fixture's server is sized for small tests (16 MiB buffer pool, 4 MiB redo log): give
  // it what a production server would, so the ~3 M rows are read from memory and the fill
  // does not wait on checkpoints. Same server for the ceiling and the tools.
  stack.mysql.Query("SET GLOBAL innodb_buffer_pool_size=2147483648");
  stack.mysql.Query("SET GLOBAL innodb_log_file_size=536870912");
  kt::MysqlConnection db = stack.mysql.Connect();
  REQUIRE(db != nullptr);
  // klined's schema, as its persistence worker creates it (derive's upserts check
  // kline_fence; it fails without the table).
  Exec(db.get(), klined::kCreateKlineTable);
  Exec(db.get(), klined::kCreateLateAppliedTable);
  Exec(db.get(), klined::kCreateFenceTable);

  // ---- fill: PK order (symbol, interval name, open_time), 1,000 rows per INSERT ----------
  const int64_t now = NowMs();
  // Sorted by name: the clustered index then only appends.
  const std::vector<std::pair<std::string, int64_t>> by_name = {
      {"1h", 3600000}, {"1m", 60000}, {"5m", 300000}};
  constexpr int kRowsPerInsert = 1000;
  // Symbols [begin, end) on a connection of its own; false (and *error) on a MySQL error.
  const auto fill = [&](int begin, int end, uint64_t* rows, std::string* error) {
    kt::MysqlConnection conn = stack.mysql.Connect();
    std::string sql;
    sql.reserve(1 << 20);
    const auto run = [&](const std::string& stmt) {
      if (mysql_real_query(conn.get(), stmt.data(), stmt.size()) == 0) return true;
      *error = mysql_error(conn.get());
      return false;
    };
    for (int k = begin; k < end; ++k) {
      const std::string sym = SymbolName(k);
      const Prices prices(k);
      if (!run("START TRANSACTION")) return false;
      for (const auto& [iv, len] : by_name) {
        // The newest closed bucket is the one before the current one.
        const int64_t newest = now - now % len - len;
        int in_batch = 0;
        for (int j = 0; j < kCandles; ++j) {
          const int64_t open = newest - static_cast<int64_t>(kCandles - 1 - j) * len;
          const long long first = 3LL * j + 1;
          if (in_batch == 0) {
            sql.assign(InsertHead("kline"));
          } else {
            sql.push_back(',');
          }
          sql += RowSql(sym, iv, open, len, prices, first);
          if (++in_batch == kRowsPerInsert || j == kCandles - 1) {
            if (!run(sql)) return false;
            *rows += static_cast<uint64_t>(in_batch);
            in_batch = 0;
          }
        }
      }
      if (!run("COMMIT")) return false;
    }
    return true;
  };
  // Two connections, half the symbols each (the machine's two cores).
  auto t0 = std::chrono::steady_clock::now();
  uint64_t part_rows[2] = {0, 0};
  std::string part_error[2];
  bool part_ok[2] = {false, false};
  {
    std::thread second(
        [&] { part_ok[1] = fill(kSymbols / 2, kSymbols, &part_rows[1], &part_error[1]); });
    part_ok[0] = fill(0, kSymbols / 2, &part_rows[0], &part_error[0]);
    second.join();
  }
  REQUIRE_MESSAGE(part_ok[0], part_error[0]);
  REQUIRE_MESSAGE(part_ok[1], part_error[1]);
  const uint64_t rows = part_rows[0] + part_rows[1];
  const double fill_s = Since(t0);
  const auto size = stack.mysql.Query(
      "SELECT @@innodb_buffer_pool_size, data_length + index_length FROM "
      "information_schema.tables WHERE table_schema='klined' AND table_name='kline'");
  REQUIRE(size.size() == 1);
  MESSAGE("fill: " << rows << " kline rows by multi-row INSERT (" << kRowsPerInsert
                   << " rows each, 2 connections) in " << fill_s << " s = " << rows / fill_s
                   << " rows/s; table " << std::stoll(size[0][1]) / (1 << 20)
                   << " MiB, buffer pool " << std::stoll(size[0][0]) / (1 << 20) << " MiB");
  REQUIRE(rows == static_cast<uint64_t>(kSymbols) * kIntervals.size() * kCandles);

  // ---- 1. the ceiling: every (symbol, interval)'s newest 1,000 rows, as klinectl reads ---
  // The same statement as KlineTable::ReadRange(newest_first), over TCP as the klined user,
  // rows fetched and dropped.
  const auto read_all = [&](const std::vector<std::pair<std::string, int64_t>>& intervals,
                            bool newest_first) {
    uint64_t n = 0;
    for (int k = 0; k < kSymbols; ++k) {
      for (const auto& [iv, len] : intervals) {
        const std::string q =
            "SELECT open_time,close_time,open,high,low,close,volume,quote_volume,"
            "taker_buy_volume,taker_buy_quote_volume,trades,first_trade_id,last_trade_id FROM "
            "kline WHERE symbol='" +
            SymbolName(k) + "' AND `interval`='" + iv +
            "' AND open_time>=-9223372036854775808 AND open_time<=9223372036854775807 ORDER BY "
            "open_time " +
            (newest_first ? "DESC" : "ASC") + " LIMIT 1000";
        REQUIRE(mysql_real_query(db.get(), q.data(), q.size()) == 0);
        MYSQL_RES* res = mysql_store_result(db.get());
        REQUIRE(res != nullptr);
        while (mysql_fetch_row(res) != nullptr) ++n;
        mysql_free_result(res);
      }
    }
    return n;
  };
  t0 = std::chrono::steady_clock::now();
  const uint64_t ceiling_rows = read_all(kIntervals, true);
  const double ceiling_s = Since(t0);
  const double ceiling = static_cast<double>(ceiling_rows) / ceiling_s;
  MESSAGE("ceiling: MySQL bulk read, " << ceiling_rows << " rows (newest 1000 per symbol and "
                                       << "interval, 3000 queries) in " << ceiling_s
                                       << " s = " << ceiling << " rows/s");
  REQUIRE(ceiling_rows == rows);

  // ---- 1b. the write ceiling: MySQL's own bulk insert of derive 2h's output -------------
  // 1,000 symbols x 500 new 2h rows into an empty copy of the table, one 500-row INSERT and
  // one transaction per symbol on one connection: derive's batches, without its fence check.
  Exec(db.get(), "CREATE TABLE kline_write_ceiling LIKE kline");
  t0 = std::chrono::steady_clock::now();
  uint64_t written_rows = 0;
  {
    const int64_t len = 2 * 3600000;
    const int64_t newest = now - now % len - len;
    std::string sql;
    for (int k = 0; k < kSymbols; ++k) {
      const Prices prices(k);
      sql.assign(InsertHead("kline_write_ceiling"));
      for (int j = 0; j < kCandles / 2; ++j) {
        if (j != 0) sql.push_back(',');
        sql += RowSql(SymbolName(k), "2h", newest - (kCandles / 2 - 1 - j) * len, len, prices,
                      6LL * j + 1);
      }
      Exec(db.get(), "START TRANSACTION");
      Exec(db.get(), sql);
      Exec(db.get(), "COMMIT");
      written_rows += kCandles / 2;
    }
  }
  const double write_ceiling_s = Since(t0);
  const double write_ceiling = static_cast<double>(written_rows) / write_ceiling_s;
  Exec(db.get(), "DROP TABLE kline_write_ceiling");
  MESSAGE("write ceiling: MySQL bulk insert, " << written_rows << " new 2h rows (500 per "
                                               << "INSERT and transaction) in " << write_ceiling_s
                                               << " s = " << write_ceiling << " rows/s");

  // ---- 2. klinectl restore-redis into an empty Redis ------------------------------------
  kt::RedisClient rc = stack.redis.Connect();
  REQUIRE(rc.Integer({"DBSIZE"}) == 0);
  EvalshaSeconds(rc);
  t0 = std::chrono::steady_clock::now();
  const Stack::Ran restore = stack.Klinectl({"restore-redis"}, "restore");
  const double restore_s = Since(t0);
  const double restore_redis_s = EvalshaSeconds(rc);
  CAPTURE(restore.out);
  CAPTURE(restore.err);
  REQUIRE(restore.code == 0);
  const long long restored = After(restore.out, "restore-redis: ", " candles written");
  CHECK(restored == static_cast<long long>(rows));
  const double restore_rate = static_cast<double>(restored) / restore_s;
  MESSAGE("klinectl restore-redis: "
          << restored << " candles in " << restore_s << " s = " << restore_rate
          << " candles/s = " << restore_rate / ceiling << " of the ceiling; Redis's "
          << "own time in its RESTORE calls " << restore_redis_s << " s ("
          << restore.out.substr(0, restore.out.find('\n')) << ")");
  CHECK(rc.Integer({"ZCARD", "kline:{" + SymbolName(7) + "}:1m:hist"}) == kCandles);

  // ---- 3. klinectl derive -------------------------------------------------------------------
  // First 2h as a dry run (reads, merges and Redis's hole check; no MySQL or Redis write):
  // the difference to the real run is the cost of the writes.
  for (const auto& [target, dry] :
       std::vector<std::pair<std::string, bool>>{{"2h", true}, {"2h", false}, {"1d", false}}) {
    std::vector<std::string> args = {"derive", "--interval", target, "--source", "1h"};
    if (dry) args.emplace_back("--dry-run");
    EvalshaSeconds(rc);
    t0 = std::chrono::steady_clock::now();
    const Stack::Ran d = stack.Klinectl(args, "derive-" + target + (dry ? "-dry" : ""));
    const double sec = Since(t0);
    const double redis_s = EvalshaSeconds(rc);
    CAPTURE(d.out);
    CAPTURE(d.err);
    REQUIRE(d.code == 0);
    const std::string head = dry ? "derive (dry run): " : "derive: ";
    const long long derived =
        After(d.out, head, dry ? " closed candles would be" : " closed candles upserted");
    const long long redis_added = After(d.out, head, dry ? " would be added" : " added to Redis");
    // Every symbol's 1,000 1h rows are read; 2h gets 500 buckets (or 499 and one left out,
    // incomplete), 1d the 41 or 42 whole days.
    CHECK(derived > 0);
    const double read_rate = static_cast<double>(kSymbols) * kCandles / sec;
    MESSAGE("klinectl derive --interval "
            << target << " --source 1h" << std::string(dry ? " --dry-run" : "") << ": "
            << kSymbols * kCandles << " rows read, " << derived
            << std::string(dry ? " candles derived, nothing written (" : " candles upserted (")
            << redis_added
            << std::string(dry ? " holes in Redis history) in " : " into Redis history) in ") << sec
            << " s = " << read_rate << " rows read/s (" << read_rate / ceiling
            << " of the ceiling), " << derived / sec << " candles derived/s ("
            << derived / sec / write_ceiling << " of the write ceiling); Redis's own time in its "
            << "RESTORE calls " << redis_s << " s");
  }

  // ---- 4. klined's automatic restore after a FLUSHALL --------------------------------------
  // Redis holds every history from restore-redis but no dataset marker: klined's first check
  // walks every symbol, finds everything in place and sets it (persist.dataset_marked).
  t0 = std::chrono::steady_clock::now();
  auto klined = stack.StartKlined("klined");
  REQUIRE_MESSAGE(WaitUntil(
                      [&] {
                        return rc.Integer({"EXISTS", "kline:dataset"}) == 1;
                      },
                      seconds(120)),
                  klined->OutputTail());
  const double check_s = Since(t0);
  const double restored_before =
      MetricValue(stack.Metrics(), "klined_redis_restored_candles_total");
  MESSAGE("klined start to dataset marker set (first check over a full Redis, "
          << kSymbols << " symbols, nothing to restore): " << check_s << " s; restored "
          << restored_before);

  t0 = std::chrono::steady_clock::now();
  rc.Command({"FLUSHALL"});
  const double flush_s = Since(t0);
  REQUIRE(rc.Integer({"DBSIZE"}) == 0);
  EvalshaSeconds(rc);
  t0 = std::chrono::steady_clock::now();
  // Meanwhile, about once a second, the duration of klined's last persistence run (each run
  // restores the next 20 symbols; runs start every mysql.persist_interval_ms, 500 here).
  double run_max = 0, run_sum = 0;
  int run_samples = 0;
  auto next_scrape = std::chrono::steady_clock::now() + milliseconds(1000);
  REQUIRE_MESSAGE(WaitUntil(
                      [&] {
                        if (std::chrono::steady_clock::now() >= next_scrape) {
                          next_scrape += milliseconds(1000);
                          const double d =
                              MetricValue(stack.Metrics(), "klined_persist_duration_seconds");
                          run_max = std::max(run_max, d);
                          run_sum += d;
                          ++run_samples;
                        }
                        return rc.Integer({"EXISTS", "kline:dataset"}) == 1;
                      },
                      seconds(120)),
                  klined->OutputTail());
  const double auto_s = Since(t0);
  const double auto_redis_s = EvalshaSeconds(rc);
  const std::string metrics = stack.Metrics();
  const double auto_restored =
      MetricValue(metrics, "klined_redis_restored_candles_total") - restored_before;
  const std::string log = klined->Stderr();
  CHECK(log.find("event=persist.dataset_restored") != std::string::npos);
  CHECK(auto_restored == static_cast<double>(rows));
  MESSAGE("klined automatic restore after FLUSHALL ("
          << flush_s << " s itself), " << kSymbols << " symbols: marker back after " << auto_s
          << " s, " << static_cast<long long>(auto_restored) << " candles restored = "
          << auto_restored / auto_s << " candles/s = " << auto_restored / auto_s / ceiling
          << " of the ceiling; Redis's own time in "
          << "EVALSHA " << auto_redis_s << " s; a persistence run (20 "
          << "symbols) took " << run_sum / std::max(run_samples, 1) << " s on average, " << run_max
          << " s at most (" << run_samples << " samples)");
  CHECK(rc.Integer({"ZCARD", "kline:{" + SymbolName(999) + "}:1h:hist"}) == kCandles);
  StopCleanly(*klined);
  MESSAGE("history bench total: " << Since(total0) << " s");
}
