// Restart at many symbols: how long a fresh klined takes until every symbol has applied one
// new trade, when Redis holds what a running klined leaves behind, measured three ways in
// one run (machines here are noisy):
//   no-state   every symbol has `--history` closed 1m candles (with trades) in Redis, the 24h
//              ticker's source, but no ticker state (what a klined before the state left):
//              the ticker is rebuilt from the 1m history; this start writes the state;
//   history    the same, with the ticker state that start wrote with the candles;
//   baseline   only watermarks and current candles (no history, no ticker state).
// Each start: one new trade per symbol is waiting in Kafka; the figure is from spawning klined
// to klined_trades_applied_total reaching the symbol count (then every watermark is checked
// in Redis). The target: history within 1.25x of baseline.
// Usage: restart_bench [--symbols N] [--history H] [--shards K] [--partitions P]
// Needs KLINED_BUILD (the build dir) to find klined and the test broker.
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "bench_util.h"
#include "http_get.h"
#include "kafka_broker.h"
#include "klined/candle.h"
#include "klined/decimal.h"
#include "klined/interval.h"
#include "klined/series.h"
#include "klined/ticker.h"
#include "mariadb_server.h"
#include "redis_server.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace kt = klined::test;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

struct Options {
  int symbols = 10000;
  int history = 1000;
  int shards = 2;
  int partitions = 16;
};

std::string SymbolName(int i) {
  char b[32];
  std::snprintf(b, sizeof b, "R%05dUSDT", i);
  return b;
}

std::string Scrape(int port) {
  try {
    return "\n" + kt::HttpGet(port, "/metrics");
  } catch (const std::exception&) {
    return "";
  }
}

klined::Trade MakeTrade(const std::string& sym, int64_t id, int64_t time_ms, int64_t cents,
                        int64_t milli) {
  klined::Trade t;
  t.symbol = klined::Symbol(sym);
  t.id = id;
  t.time_ms = time_ms;
  // Prices in cents, quantities in thousandths: price x qty has 5 decimals, exactly.
  t.price = klined::Decimal::FromRaw(static_cast<__int128>(cents) * 10'000'000'000'000'000);
  t.qty = klined::Decimal::FromRaw(static_cast<__int128>(milli) * 1'000'000'000'000'000);
  t.quote = klined::Decimal::FromRaw(static_cast<__int128>(cents) * milli * 10'000'000'000'000);
  t.buyer_maker = id % 2 == 0;
  return t;
}

void Check(redisContext* rc, const char* what) {
  if (rc->err != 0) {
    std::fprintf(stderr, "redis %s: %s\n", what, rc->errstr);
    std::exit(1);
  }
}

// What a running klined leaves in Redis for each symbol: its trades over the last `history`
// minutes (a few per minute), applied to a SymbolSeries and written the way a flush would
// (current candles, closed 1m candles, watermarks, the ticker state when `ticker_state`).
void Populate(const kt::RedisServer& redis, const Options& o, bool with_history) {
  const klined::SeriesLayout layout{
      std::vector<klined::Interval>(klined::kAllIntervals.begin() + 1, klined::kAllIntervals.end()),
      {}};
  redisContext* rc = redisConnect("127.0.0.1", redis.port());
  Check(rc, "connect");
  const int64_t now = klined::WallMs();
  const int64_t start = now - now % 60000 - int64_t{o.history} * 60000;
  std::mt19937_64 rng(7);
  size_t pending = 0;
  auto drain = [&] {
    for (; pending > 0; --pending) {
      void* r = nullptr;
      if (redisGetReply(rc, &r) != REDIS_OK) Check(rc, "reply");
      freeReplyObject(r);
    }
  };
  for (int i = 0; i < o.symbols; ++i) {
    const std::string sym = SymbolName(i);
    const std::string base = "kline:{" + sym + "}";
    klined::SymbolSeries s(&layout, klined::Symbol(sym));
    std::vector<std::string> zadd = {"ZADD", base + ":1m:hist"};
    int64_t id = 0;
    int64_t cents = 100000 + static_cast<int64_t>(rng() % 100000);
    for (int m = 0; m < o.history; ++m) {
      for (int k = 0; k < 3; ++k) {
        cents = std::max<int64_t>(1, cents + static_cast<int64_t>(rng() % 41) - 20);
        (void)s.Apply(MakeTrade(sym, ++id, start + m * 60000 + k * 15000, cents,
                                1 + static_cast<int64_t>(rng() % 900)));
      }
      if (!with_history) continue;
      for (const klined::Candle& c : s.closed(0)) {
        zadd.push_back(std::to_string(c.open_time));
        zadd.push_back(klined::CandleJson(c, sym, true));
      }
      (void)s.BeginFlush();
      s.CommitFlush({});
    }
    std::vector<std::string> cmd = {"MSET", base + ":wm", std::to_string(id), base + ":wmp",
                                    std::to_string(i % o.partitions) + ":" + std::to_string(id)};
    for (size_t k = 0; k < s.interval_count(); ++k) {
      cmd.push_back(base + ":" + std::string(klined::IntervalName(s.interval(k))));
      cmd.push_back(klined::CandleJson(*s.current(k), sym, false));
    }
    for (const auto* argv : {&cmd, &zadd}) {
      if (argv->size() <= 2) continue;
      klined::bench::AppendArgv(rc, *argv);
      ++pending;
    }
    redisAppendCommand(rc, "SADD kline:symbols %s", sym.c_str());
    ++pending;
    if (pending > 300) drain();
  }
  drain();
  redisFree(rc);
}

struct Timing {
  double from_spawn = 0;  // process start to every symbol's new trade applied
  double from_first = 0;  // the first message consumed to the same (no group join in it)
  double redis_cpu = 0;   // Redis's CPU seconds over the same
};

// Redis's used_cpu_sys + used_cpu_user (INFO cpu), in seconds.
double RedisCpu(const kt::RedisServer& redis) {
  redisContext* rc = redisConnect("127.0.0.1", redis.port());
  auto* r = static_cast<redisReply*>(redisCommand(rc, "INFO cpu"));
  double cpu = 0;
  if (r != nullptr && r->type == REDIS_REPLY_STRING) {
    const std::string info(r->str, r->len);
    for (const char* key : {"used_cpu_sys:", "used_cpu_user:"}) {
      const size_t at = info.find(key);
      if (at != std::string::npos) cpu += std::atof(info.c_str() + at + std::strlen(key));
    }
  }
  freeReplyObject(r);
  redisFree(rc);
  return cpu;
}

// Starts klined on the stack, one new trade per symbol waiting in Kafka (ids above
// `first_id`); returns how long until every one was applied.
Timing TimeRestart(const kt::RedisServer& redis, const kt::MariaDbServer& mysql,
                   const kt::KafkaBroker& broker, const Options& o, const kt::TempDir& dir,
                   const std::string& name, int64_t id) {
  // The previous instance's group session must be over (session.timeout.ms 6 s), or joining
  // the group waits for it: that wait is not klined's and would differ between runs.
  std::this_thread::sleep_for(seconds(7));
  {
    kt::Producer producer(broker.bootstrap());
    const int64_t now = klined::WallMs();
    for (int i = 0; i < o.symbols; ++i) {
      const std::string sym = SymbolName(i);
      producer.Produce("trades", sym,
                       "{\"s\":\"" + sym + "\",\"t\":" + std::to_string(id) +
                           ",\"p\":\"1001.5\",\"q\":\"0.5\",\"T\":" + std::to_string(now) +
                           ",\"m\":false}",
                       i % o.partitions);
    }
    producer.Flush(seconds(60));
  }
  const int metrics_port = kt::FreePort();
  const auto config = dir / (name + ".yaml");
  kt::WriteFile(
      config, "kafka:\n  brokers: \"" + broker.bootstrap() +
                  "\"\n  group: restart\n  properties:\n    session.timeout.ms: \"6000\"\n"
                  "    heartbeat.interval.ms: \"500\"\nredis:\n  address: \"" +
                  redis.address() + "\"\nmysql:\n  port: " + std::to_string(mysql.port()) +
                  "\n  user: " + mysql.user() + "\n  password: \"" + mysql.password() +
                  "\"\n  database: " + mysql.database() + "\nshards: " + std::to_string(o.shards) +
                  "\napi:\n  listen: \"127.0.0.1:0\"\nmetrics:\n  listen: \"127.0.0.1:" +
                  std::to_string(metrics_port) + "\"\nlog:\n  level: warn\n");
  const char* build = std::getenv("KLINED_BUILD");
  const double cpu_before = RedisCpu(redis);
  const auto spawned = Clock::now();
  kt::Subprocess klined(std::string(build ? build : "build") + "/src/app/klined",
                        {"--config", config.string()},
                        {.log_dir = dir.path(), .name = name, .env = {}, .cwd = {}});
  const auto deadline = spawned + seconds(600);
  const bool timeline = std::getenv("KLINED_BENCH_TIMELINE") != nullptr;
  // KLINED_BENCH_PERF=<run name>: perf record klined during that run (perf.<name>.data).
  std::optional<kt::Subprocess> perf;
  if (const char* p = std::getenv("KLINED_BENCH_PERF"); p != nullptr && name == p) {
    perf.emplace(
        "perf",
        std::vector<std::string>{"record", "-F", "999", "-a", "-g", "-o", "perf." + name + ".data"},
        kt::SubprocessOptions{.log_dir = dir.path(), .name = "perf", .env = {}, .cwd = {}});
  }
  double last_print = 0;
  std::optional<Clock::time_point> first;
  while (true) {
    const std::string m = Scrape(metrics_port);
    if (!first && kt::MetricSum(m, "klined_kafka_messages_total") > 0) first = Clock::now();
    if (kt::MetricSum(m, "klined_trades_applied_total") >= o.symbols) break;
    const double t = std::chrono::duration<double>(Clock::now() - spawned).count();
    if (timeline && t - last_print >= 0.25) {
      last_print = t;
      std::printf("  %s t=%.2f ready=%.0f loads=%.0f applied=%.0f messages=%.0f\n", name.c_str(), t,
                  kt::MetricSum(m, "klined_ready"), kt::MetricSum(m, "klined_symbol_loads_total"),
                  kt::MetricSum(m, "klined_trades_applied_total"),
                  kt::MetricSum(m, "klined_kafka_messages_total"));
    }
    if (!klined.Running() || Clock::now() > deadline) {
      std::fprintf(stderr, "%s: klined did not apply every trade:\n%s\n", name.c_str(),
                   klined.OutputTail().c_str());
      std::exit(1);
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  const auto done = Clock::now();
  const Timing timing{std::chrono::duration<double>(done - spawned).count(),
                      std::chrono::duration<double>(done - first.value_or(spawned)).count(),
                      RedisCpu(redis) - cpu_before};
  if (perf) {
    perf->Signal(SIGINT);
    perf->Wait(seconds(30));
  }
  // Every trade reached Redis too.
  redisContext* rc = redisConnect("127.0.0.1", redis.port());
  Check(rc, "connect");
  for (int i = 0; i < o.symbols; ++i) {
    bool there = false;
    for (int attempt = 0; attempt < 500 && !there; ++attempt) {
      auto* r =
          static_cast<redisReply*>(redisCommand(rc, "GET kline:{%s}:wm", SymbolName(i).c_str()));
      there = r != nullptr && r->type == REDIS_REPLY_STRING && std::to_string(id) == r->str;
      freeReplyObject(r);
      if (!there) std::this_thread::sleep_for(milliseconds(20));
    }
    if (!there) {
      std::fprintf(stderr, "%s: %s's watermark is not %lld\n", name.c_str(), SymbolName(i).c_str(),
                   static_cast<long long>(id));
      std::exit(1);
    }
  }
  redisFree(rc);
  klined.Stop(seconds(30));
  return timing;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--symbols") {
      o.symbols = v;
    } else if (a == "--history") {
      o.history = v;
    } else if (a == "--shards") {
      o.shards = v;
    } else if (a == "--partitions") {
      o.partitions = v;
    } else {
      std::fprintf(stderr,
                   "usage: restart_bench [--symbols N] [--history H] [--shards K] "
                   "[--partitions P]\n");
      return 2;
    }
  }
  kt::TempDir dir("klined-restart");
  kt::RedisServer redis;
  kt::MariaDbServer mysql;
  kt::KafkaBroker broker{kt::KafkaBrokerOptions{1, {{"trades", o.partitions}}}};
  std::printf("restart_bench --symbols %d --history %d --shards %d --partitions %d\n", o.symbols,
              o.history, o.shards, o.partitions);
  const auto t0 = Clock::now();
  Populate(redis, o, /*with_history=*/true);
  std::printf("populated %d symbols x %d 1m candles in %.1f s\n", o.symbols, o.history,
              std::chrono::duration<double>(Clock::now() - t0).count());
  auto state_bytes = [&redis, &o] {
    redisContext* c = redisConnect("127.0.0.1", redis.port());
    long long sum = 0;
    for (int i = 0; i < o.symbols; i += 97) {
      auto* r =
          static_cast<redisReply*>(redisCommand(c, "STRLEN kline:{%s}:tks", SymbolName(i).c_str()));
      if (r != nullptr && r->type == REDIS_REPLY_INTEGER) sum += r->integer;
      freeReplyObject(r);
    }
    redisFree(c);
    return sum / ((o.symbols + 96) / 97);
  };
  // The trades' ids continue above each symbol's history (3 per minute). The first start
  // finds history but no ticker state (what an older klined left): it rebuilds each ticker
  // from a day of 1m candles, and writes the state with its first flush of each symbol.
  const int64_t base_id = int64_t{o.history} * 3;
  const Timing no_state = TimeRestart(redis, mysql, broker, o, dir, "no-state", base_id + 1);
  std::printf("ticker state written by that start: %lld bytes per symbol on average\n",
              state_bytes());
  const Timing with_state = TimeRestart(redis, mysql, broker, o, dir, "history", base_id + 2);
  // Then neither history nor ticker state: the baseline.
  redisContext* rc = redisConnect("127.0.0.1", redis.port());
  Check(rc, "connect");
  for (int i = 0; i < o.symbols; ++i) {
    redisAppendCommand(rc, "DEL kline:{%s}:1m:hist kline:{%s}:tks", SymbolName(i).c_str(),
                       SymbolName(i).c_str());
  }
  for (int i = 0; i < o.symbols; ++i) {
    void* r = nullptr;
    if (redisGetReply(rc, &r) != REDIS_OK) Check(rc, "reply");
    freeReplyObject(r);
  }
  redisFree(rc);
  const Timing baseline = TimeRestart(redis, mysql, broker, o, dir, "baseline", base_id + 3);
  std::printf(
      "until every symbol applied a new trade, from process start (from the first message "
      "consumed):\n");
  for (const auto& [label, t] :
       {std::pair{"history + ticker state", with_state}, std::pair{"history, no state", no_state},
        std::pair{"baseline", baseline}}) {
    std::printf("  %-24s %6.2f s (%5.2f s), Redis CPU %.2f s\n", label, t.from_spawn, t.from_first,
                t.redis_cpu);
  }
  std::printf("ratio to baseline: %.2f (%.2f); without the state %.2f (%.2f)\n",
              with_state.from_spawn / baseline.from_spawn,
              with_state.from_first / baseline.from_first,
              no_state.from_spawn / baseline.from_spawn, no_state.from_first / baseline.from_first);
  return 0;
}
