// The market-data API's REST figures, against the real klined (roles: [api]) on a real
// redis-server and mariadbd, in one run (machines here are noisy: only ratios within a run
// mean much):
//   hot path   GET /api/v3/klines limit 500 and limit 1 with keep-alive (wrk), answered from
//              the L1 cache, against the same server answering a prebuilt body of the same
//              size (a file of api.web_root, served from memory: the server library's
//              ceiling, through the same loop, parser and writer); rounds alternate;
//   no cache   the same klines requests with api.cache_bytes 0 (every request reads Redis),
//              a second klined on the same data;
//   MySQL      klines limit 1000 older than Redis holds, each a page not read before (every
//              request reads MySQL): latency p50 / p99 over --mysql-requests;
//   latest     GET /api/v3/klines/latest over --symbols symbols (one pipelined read): p50 /
//              p99 over --latest-requests.
// Usage: api_bench [--symbols N] [--seconds S] [--rounds R] [--connections C]
//                  [--mysql-rows N] [--mysql-requests N] [--latest-requests N]
// Needs KLINED_BUILD (the build dir) and wrk.
#include <mysql.h>

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "http_get.h"
#include "io/mysql/kline_table.h"
#include "klined/candle.h"
#include "klined/decimal.h"
#include "klined/interval.h"
#include "mariadb_server.h"
#include "redis_server.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace kt = klined::test;
using klined::Candle;
using klined::Decimal;
using klined::Interval;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

constexpr int64_t kMin = 60000;

struct Options {
  int symbols = 10000;
  int seconds = 5;
  int rounds = 3;
  int connections = 32;
  int mysql_rows = 200000;
  int mysql_requests = 300;
  int latest_requests = 50;
};

Candle Bucket(int64_t open, int64_t i) {
  Candle c =
      Candle::Empty(Interval::k1m, open, klined::UtcOffset{},
                    Decimal::FromRaw(Decimal::kOne * (43000 + i % 500) + 5 * (Decimal::kOne / 10)));
  c.count = 10 + i % 90;
  c.first_id = 1000 * i + 1;
  c.last_id = c.first_id + c.count - 1;
  c.high = Decimal::FromRaw(c.open.raw() + Decimal::kOne * 25);
  c.volume = Decimal::FromRaw(Decimal::kOne * (10 + i % 97) + Decimal::kOne / 1000 * 345);
  c.quote_volume = Decimal::FromRaw(Decimal::kOne * 533512 + Decimal::kOne / 100 * 75);
  c.taker_volume = Decimal::FromRaw(Decimal::kOne * 6 + Decimal::kOne / 10);
  c.taker_quote_volume = Decimal::FromRaw(Decimal::kOne * 263601 + Decimal::kOne / 10 * 4);
  return c;
}

std::string Sym(int i) { return i == 0 ? "BTCUSDT" : "S" + std::to_string(i) + "USDT"; }

// Redis: every symbol known with a current 1m candle; BTCUSDT with 999 closed ones below it.
// MySQL: BTCUSDT's mysql_rows 1m candles before Redis's oldest.
void Fill(const kt::RedisServer& redis, const kt::MariaDbServer& mysql, const Options& o,
          int64_t now_open) {
  redisContext* c = redisConnect(redis.host().c_str(), redis.port());
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < o.symbols; ++i) {
    cmds.push_back({"SADD", "kline:symbols", Sym(i)});
    cmds.push_back({"SET", "kline:{" + Sym(i) + "}:1m",
                    klined::CandleJson(Bucket(now_open, i), Sym(i), false)});
    if (cmds.size() >= 2000) {
      klined::bench::Pipeline(c, cmds, "api_bench");
      cmds.clear();
    }
  }
  std::vector<std::string> zadd = {"ZADD", "kline:{BTCUSDT}:1m:hist"};
  for (int k = 1; k <= 999; ++k) {
    const int64_t t = now_open - k * kMin;
    zadd.push_back(std::to_string(t));
    zadd.push_back(klined::CandleJson(Bucket(t, k), "BTCUSDT", true));
  }
  cmds.push_back(zadd);
  klined::bench::Pipeline(c, cmds, "api_bench");
  redisFree(c);

  MYSQL* m = mysql_init(nullptr);
  if (!mysql_real_connect(m, "127.0.0.1", mysql.user().c_str(), mysql.password().c_str(),
                          mysql.database().c_str(), static_cast<unsigned>(mysql.port()), nullptr,
                          0)) {
    std::fprintf(stderr, "api_bench: MySQL: %s\n", mysql_error(m));
    std::exit(1);
  }
  auto run = [&](const std::string& sql) {
    if (mysql_query(m, sql.c_str()) != 0) {
      std::fprintf(stderr, "api_bench: MySQL: %s\n", mysql_error(m));
      std::exit(1);
    }
  };
  run(klined::kCreateKlineTable);
  const int64_t oldest_redis = now_open - 999 * kMin;
  std::string sql;
  for (int k = 1; k <= o.mysql_rows; ++k) {
    const Candle b = Bucket(oldest_redis - k * kMin, k);
    if (sql.empty())
      sql = "INSERT INTO kline VALUES ";
    else
      sql += ",";
    sql += "('BTCUSDT','1m'," + std::to_string(b.open_time) + "," + std::to_string(b.close_time) +
           "," + b.open.ToString() + "," + b.high.ToString() + "," + b.low.ToString() + "," +
           b.close.ToString() + "," + b.volume.ToString() + "," + b.quote_volume.ToString() + "," +
           b.taker_volume.ToString() + "," + b.taker_quote_volume.ToString() + "," +
           std::to_string(b.count) + "," + std::to_string(b.first_id) + "," +
           std::to_string(b.last_id) + ")";
    if (k % 2000 == 0 || k == o.mysql_rows) {
      run(sql);
      sql.clear();
    }
  }
  mysql_close(m);
}

struct Klined {
  int port = 0;
  int metrics_port = 0;
  std::optional<kt::Subprocess> process;
};

Klined StartKlined(const kt::RedisServer& redis, const kt::MariaDbServer& mysql,
                   const kt::TempDir& dir, const std::string& name, int64_t cache_bytes) {
  Klined k;
  k.port = kt::FreePort();
  k.metrics_port = kt::FreePort();
  const auto config = dir / (name + ".yaml");
  kt::WriteFile(
      config, "roles: [api]\nredis:\n  address: \"" + redis.address() + "\"\nmysql:\n  port: " +
                  std::to_string(mysql.port()) + "\n  user: " + mysql.user() + "\n  password: \"" +
                  mysql.password() + "\"\n  database: " + mysql.database() +
                  "\nintervals: [1m]\napi:\n  listen: \"127.0.0.1:" + std::to_string(k.port) +
                  "\"\n  threads: 1\n  weight_per_minute: 0\n  web_root: \"" +
                  (dir / "web").string() + "\"\n  cache_bytes: " + std::to_string(cache_bytes) +
                  "\nmetrics:\n  listen: \"127.0.0.1:" + std::to_string(k.metrics_port) +
                  "\"\nlog:\n  level: warn\n");
  const char* build = std::getenv("KLINED_BUILD");
  k.process.emplace(
      std::string(build ? build : "build") + "/src/app/klined",
      std::vector<std::string>{"--config", config.string()},
      kt::SubprocessOptions{.log_dir = dir.path(), .name = name, .env = {}, .cwd = {}});
  const auto deadline = Clock::now() + seconds(60);
  while (kt::HttpFetch(k.port, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1").status != 200) {
    if (!k.process->Running() || Clock::now() > deadline) {
      std::fprintf(stderr, "api_bench: %s did not answer:\n%s\n", name.c_str(),
                   k.process->OutputTail().c_str());
      std::exit(1);
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return k;
}

// wrk's requests per second for `path` (keep-alive).
double Wrk(int port, const std::string& path, const Options& o) {
  const std::string cmd = "wrk -t1 -c" + std::to_string(o.connections) + " -d" +
                          std::to_string(o.seconds) +
                          "s 'http://127.0.0.1:" + std::to_string(port) + path + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return 0;
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int rc = pclose(p);
  const size_t at = out.find("Requests/sec:");
  if (rc != 0 || at == std::string::npos || out.find("Non-2xx") != std::string::npos) {
    std::fprintf(stderr, "api_bench: wrk failed for %s:\n%s\n", path.c_str(), out.c_str());
    std::exit(1);
  }
  return std::atof(out.c_str() + at + 13);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Milliseconds of one GET each (a new connection per request, as HttpFetch does).
std::vector<double> Latencies(int port, const std::vector<std::string>& paths) {
  std::vector<double> ms;
  for (const std::string& path : paths) {
    const auto t0 = Clock::now();
    const kt::HttpResponse r = kt::HttpFetch(port, path);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (r.status != 200) {
      std::fprintf(stderr, "api_bench: %s: HTTP %d\n", path.c_str(), r.status);
      std::exit(1);
    }
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  klined::bench::IntFlags(argc, argv,
                          {{"--symbols", &o.symbols},
                           {"--seconds", &o.seconds},
                           {"--rounds", &o.rounds},
                           {"--connections", &o.connections},
                           {"--mysql-rows", &o.mysql_rows},
                           {"--mysql-requests", &o.mysql_requests},
                           {"--latest-requests", &o.latest_requests}});

  kt::TempDir dir("klined-api-bench");
  kt::RedisServer redis;
  kt::MariaDbServer mysql;
  const int64_t now_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  // A bucket far from the next boundary would not matter: no writer runs, nothing rolls.
  const int64_t now_open = now_ms - now_ms % kMin;
  Fill(redis, mysql, o, now_open);
  std::filesystem::create_directories(dir / "web");

  Klined cached = StartKlined(redis, mysql, dir, "cached", 10 << 20);
  const std::string k500 = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=500";
  const std::string k1 = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1";
  // The prebuilt bodies: exactly the klines replies.
  kt::WriteFile(dir / "web" / "static500.json", kt::HttpFetch(cached.port, k500).body);
  kt::WriteFile(dir / "web" / "static1.json", kt::HttpFetch(cached.port, k1).body);
  Klined direct = StartKlined(redis, mysql, dir, "direct", 0);

  std::printf("api_bench: klined roles [api], api.threads 1; wrk -t1 -c%d -d%ds; %d rounds\n",
              o.connections, o.seconds, o.rounds);
  for (const auto& [label, path, file] :
       {std::tuple<const char*, std::string, std::string>{"limit 500", k500, "/static500.json"},
        {"limit 1", k1, "/static1.json"}}) {
    std::vector<double> hot, ceiling, none;
    for (int r = 0; r < o.rounds; ++r) {
      ceiling.push_back(Wrk(cached.port, file, o));
      hot.push_back(Wrk(cached.port, path, o));
      none.push_back(Wrk(direct.port, path, o));
    }
    const double h = Median(hot), c = Median(ceiling), n = Median(none);
    std::printf(
        "klines %-9s cached %9.0f req/s  static body %9.0f req/s  ratio %.2f  |  no cache "
        "%9.0f req/s (%.2f of static)\n",
        label, h, c, h / c, n, n / c);
  }
  const std::string m = "\n" + kt::HttpGet(cached.metrics_port, "/metrics");
  std::printf(
      "cache: hits %.0f, misses %.0f, loads %.0f, invalidations %.0f, entries %.0f, "
      "waits %.0f, pub/sub symbols %.0f\n",
      kt::MetricSum(m, "klined_api_cache_hits_total"),
      kt::MetricSum(m, "klined_api_cache_misses_total"),
      kt::MetricSum(m, "klined_api_cache_loads_total"),
      kt::MetricSum(m, "klined_api_cache_invalidations_total"),
      kt::MetricSum(m, "klined_api_cache_entries"),
      kt::MetricSum(m, "klined_api_cache_waits_total"),
      kt::MetricSum(m, "klined_api_pubsub_symbols"));

  // MySQL range reads: limit 1000 at a start not asked before (a new page each time).
  std::mt19937_64 rng(7);
  const int64_t oldest_redis = now_open - 999 * kMin;
  std::vector<std::string> paths;
  for (int i = 0; i < o.mysql_requests; ++i) {
    const int64_t back =
        1000 + static_cast<int64_t>(rng() % static_cast<uint64_t>(o.mysql_rows - 1000));
    paths.push_back("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000&startTime=" +
                    std::to_string(oldest_redis - back * kMin + static_cast<int64_t>(i % 7)));
  }
  std::vector<double> ms = Latencies(cached.port, paths);
  std::printf("MySQL range, limit 1000, a new page each: p50 %.2f ms  p99 %.2f ms  (%d requests)\n",
              klined::bench::Percentile(ms, 0.5), klined::bench::Percentile(ms, 0.99),
              o.mysql_requests);
  // The floor of those: the same server's static body of the same size, one connection each.
  const std::string body1000 = kt::HttpFetch(cached.port, paths[0]).body;
  kt::WriteFile(dir / "web" / "static1000.json", body1000);
  std::vector<double> floor = Latencies(
      cached.port,
      std::vector<std::string>(static_cast<size_t>(o.mysql_requests), "/static1000.json"));
  std::printf("  static body of the same size (%zu bytes): p50 %.2f ms  p99 %.2f ms\n",
              body1000.size(), klined::bench::Percentile(floor, 0.5),
              klined::bench::Percentile(floor, 0.99));

  std::vector<double> latest =
      Latencies(cached.port, std::vector<std::string>(static_cast<size_t>(o.latest_requests),
                                                      "/api/v3/klines/latest?interval=1m"));
  const size_t latest_bytes =
      kt::HttpFetch(cached.port, "/api/v3/klines/latest?interval=1m").body.size();
  std::printf(
      "klines/latest over %d symbols (%zu bytes): p50 %.2f ms  p99 %.2f ms  (%d requests)\n",
      o.symbols, latest_bytes, klined::bench::Percentile(latest, 0.5),
      klined::bench::Percentile(latest, 0.99), o.latest_requests);
  return 0;
}
