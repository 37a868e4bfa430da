// End-to-end benchmarks of klined on this machine, each against a baseline measured in the
// same run (machines here are noisy):
//   catch-up   pre-fill the test broker, then time until every trade is in Redis, for
//              (a) a bare librdkafka consumer doing nothing (the ceiling),
//              (b) klined,
//              (c) the design klined replaces: one Lua read-compare-update per trade per
//                  interval (measured for a fixed time, extrapolated as a rate).
//   calls      Redis calls (Lua flush calls) per trade.
//   latency    trade-to-Redis latency at a steady produce rate (p50, p99).
// Usage: e2e_bench [--trades N] [--symbols S] [--partitions P] [--shards K] [--rate R]
//                  [--latency-seconds T] [--span-seconds S] [--skip-baseline]
// Needs KLINED_BUILD (the build dir) to find klined and the test broker.
// Experiments, each "key=value,key=value" added to klined's config: KLINED_BENCH_KAFKA
// (kafka.*, e.g. batch_size=20000), KLINED_BENCH_KAFKA_PROPS (librdkafka properties under
// kafka.properties), KLINED_BENCH_CONFIG (top-level keys, e.g. flush_interval_ms=200).
// KLINED_BENCH_LOG sets klined's log level (default warn). KLINED_BENCH_CMDSTATS=1 prints
// Redis's INFO commandstats after the catch-up (which commands the Lua calls spend time in).
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "bench_util.h"
#include "http_get.h"
#include "kafka_broker.h"
#include "mariadb_server.h"
#include "redis_cluster.h"
#include "redis_server.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace kt = klined::test;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

struct Options {
  int64_t trades = 2'000'000;
  int symbols = 1000;
  int partitions = 64;
  int shards = 0;
  int64_t rate = 100'000;
  int latency_seconds = 15;
  int span_seconds = 120;  // trade-time span of the pre-filled trades (candle churn)
  bool baseline = true;
  int cluster = 0;  // > 0: a Redis Cluster of that many primaries (no replicas), not one Redis
};

double Secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string SymbolName(int i, char prefix = 'S') {
  char b[32];
  std::snprintf(b, sizeof b, "%c%04dUSDT", prefix, i);
  return b;
}

// Trades: symbol popularity uniform or skewed (Zipf-like, weight 1/rank^zipf), price random
// walk, 2+3 decimals. Catch-up runs use uniform popularity: keyed by symbol, a skewed mix
// overflows the test broker's ~5 MiB per partition and it silently drops the oldest data.
class Generator {
 public:
  Generator(int symbols, uint64_t seed, char prefix = 'S', double zipf = 0)
      : rng_(seed), prefix_(prefix), next_id_(symbols, 0), price_(symbols) {
    double total = 0;
    for (int i = 0; i < symbols; ++i) total += 1.0 / std::pow(i + 1, zipf);
    double acc = 0;
    for (int i = 0; i < symbols; ++i) {
      acc += 1.0 / std::pow(i + 1, zipf) / total;
      cdf_.push_back(acc);
      price_[i] = 10000 + static_cast<int64_t>(rng_() % 5'000'000);
    }
  }
  // Writes one trade message into *out; returns the symbol index.
  int Next(int64_t time_ms, std::string* out) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    const int s = static_cast<int>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    const int sym = std::min<int>(s, static_cast<int>(cdf_.size()) - 1);
    price_[sym] = std::max<int64_t>(1, price_[sym] + static_cast<int64_t>(rng_() % 21) - 10);
    const int64_t id = ++next_id_[sym];
    char b[256];
    const int n = std::snprintf(
        b, sizeof b,
        "{\"e\":\"trade\",\"E\":%lld,\"s\":\"%c%04dUSDT\",\"t\":%lld,\"p\":\"%lld.%02lld\","
        "\"q\":\"%lld.%03lld\",\"T\":%lld,\"m\":%s}",
        static_cast<long long>(time_ms), prefix_, sym, static_cast<long long>(id),
        static_cast<long long>(price_[sym] / 100), static_cast<long long>(price_[sym] % 100),
        static_cast<long long>(rng_() % 10), static_cast<long long>(rng_() % 1000 + 1),
        static_cast<long long>(time_ms), rng_() % 2 ? "true" : "false");
    out->assign(b, static_cast<size_t>(n));
    return sym;
  }
  const std::vector<int64_t>& last_ids() const { return next_id_; }

 private:
  std::mt19937_64 rng_;
  char prefix_;
  std::vector<double> cdf_;
  std::vector<int64_t> next_id_;
  std::vector<int64_t> price_;
};

using KafkaProps = std::vector<std::pair<const char*, const char*>>;

// A librdkafka client with the given properties (the bench's own fixed settings).
rd_kafka_t* MakeClient(rd_kafka_type_t type, const KafkaProps& props) {
  rd_kafka_conf_t* c = rd_kafka_conf_new();
  char err[256];
  for (const auto& [k, v] : props) rd_kafka_conf_set(c, k, v, err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(type, c, err, sizeof err);
  if (type == RD_KAFKA_CONSUMER) rd_kafka_poll_set_consumer(rk);
  return rk;
}

void Subscribe(rd_kafka_t* rk, const std::string& topic) {
  rd_kafka_topic_partition_list_t* t = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(t, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, t);
  rd_kafka_topic_partition_list_destroy(t);
}

rd_kafka_t* MakeProducer(const std::string& bootstrap, const char* linger_ms) {
  return MakeClient(RD_KAFKA_PRODUCER, {{"bootstrap.servers", bootstrap.c_str()},
                                        {"linger.ms", linger_ms},
                                        {"batch.num.messages", "10000"},
                                        {"queue.buffering.max.messages", "2000000"},
                                        {"queue.buffering.max.kbytes", "1048576"},
                                        {"compression.type", "none"}});
}

void Produce(rd_kafka_t* p, const std::string& topic, const std::string& key,
             const std::string& value) {
  while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic.c_str()),
                           RD_KAFKA_V_KEY(key.data(), key.size()),
                           RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                           RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
    rd_kafka_poll(p, 10);
  }
}

// The ceiling: a consumer group member that reads every message and does nothing else.
double BareConsumerSeconds(const std::string& bootstrap, const std::string& topic, int64_t expect) {
  rd_kafka_t* rk = MakeClient(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstrap.c_str()},
                                                  {"group.id", "bare-ceiling"},
                                                  {"auto.offset.reset", "earliest"},
                                                  {"enable.auto.commit", "false"},
                                                  {"queued.min.messages", "1000000"},
                                                  {"queued.max.messages.kbytes", "262144"},
                                                  {"fetch.wait.max.ms", "50"},
                                                  {"session.timeout.ms", "6000"},
                                                  {"heartbeat.interval.ms", "500"}});
  Subscribe(rk, topic);
  rd_kafka_queue_t* q = rd_kafka_queue_get_consumer(rk);
  std::vector<rd_kafka_message_t*> msgs(2000);
  int64_t got = 0;
  Clock::time_point first{};
  const auto deadline = Clock::now() + seconds(300);
  while (got < expect && Clock::now() < deadline) {
    const ssize_t n = rd_kafka_consume_batch_queue(q, 50, msgs.data(), msgs.size());
    for (ssize_t i = 0; i < n; ++i) {
      if (msgs[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (got++ == 0) first = Clock::now();
      }
      rd_kafka_message_destroy(msgs[i]);
    }
  }
  const double s = Secs(Clock::now() - first);
  rd_kafka_queue_destroy(q);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return got >= expect ? s : -1;
}

// The design klined replaces: for each trade and each interval, one Lua call that reads the
// candle, compares the bucket, updates it (in doubles, as those designs do) and writes it
// back. Runs for `budget` and returns trades/s.
double PerTradeDesignRate(const std::string& bootstrap, const std::string& topic,
                          const std::string& redis_host, int redis_port, seconds budget) {
  static const char kScript[] = R"LUA(
local cur = redis.call('GET', KEYS[1])
local t, p, q = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if cur then
  local c = cjson.decode(cur)
  if c.t == t then
    c.h = math.max(c.h, p); c.l = math.min(c.l, p); c.c = p; c.v = c.v + q; c.n = c.n + 1
    redis.call('SET', KEYS[1], cjson.encode(c))
    return 1
  end
  redis.call('ZADD', KEYS[1] .. ':hist', c.t, cur)
end
redis.call('SET', KEYS[1], cjson.encode({t = t, o = p, h = p, l = p, c = p, v = q, n = 1}))
return 1
)LUA";
  redisContext* rc = redisConnect(redis_host.c_str(), redis_port);
  redisReply* r = static_cast<redisReply*>(redisCommand(rc, "SCRIPT LOAD %s", kScript));
  const std::string sha(r->str, r->len);
  freeReplyObject(r);
  rd_kafka_t* rk = MakeClient(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstrap.c_str()},
                                                  {"group.id", "per-trade-baseline"},
                                                  {"auto.offset.reset", "earliest"},
                                                  {"session.timeout.ms", "6000"},
                                                  {"heartbeat.interval.ms", "500"}});
  Subscribe(rk, topic);
  static const int64_t kLens[] = {60000,    180000,   300000,    900000,    1800000,
                                  3600000,  7200000,  14400000,  21600000,  28800000,
                                  43200000, 86400000, 259200000, 604800000, 2592000000};
  int64_t done = 0;
  Clock::time_point first{};
  while (true) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) {
      if (done > 0 && Clock::now() - first > budget) break;
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (done == 0) first = Clock::now();
      // Minimal field extraction (the old designs parsed with a JSON library; this is cheaper).
      const std::string v(static_cast<const char*>(m->payload), m->len);
      auto field = [&v](const char* name) {
        const size_t k = v.find(name);
        size_t b = k + std::strlen(name);
        if (v[b] == '"') ++b;
        size_t e = b;
        while (e < v.size() && v[e] != '"' && v[e] != ',' && v[e] != '}') ++e;
        return v.substr(b, e - b);
      };
      const std::string sym = field("\"s\":"), p = field("\"p\":"), q = field("\"q\":");
      const int64_t time = std::atoll(field("\"T\":").c_str());
      for (int64_t len : kLens) {
        const std::string key = "old:" + sym + ":" + std::to_string(len);
        const std::string open = std::to_string(time - time % len);
        redisReply* rr =
            static_cast<redisReply*>(redisCommand(rc, "EVALSHA %s 1 %s %s %s %s", sha.c_str(),
                                                  key.c_str(), open.c_str(), p.c_str(), q.c_str()));
        if (rr != nullptr) freeReplyObject(rr);
      }
      ++done;
    }
    rd_kafka_message_destroy(m);
    if (done > 0 && Clock::now() - first > budget) break;
  }
  const double rate = done / Secs(Clock::now() - first);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  redisFree(rc);
  return rate;
}

std::string Scrape(int port) { return "\n" + kt::HttpGet(port, "/metrics"); }

// Of klined's flush calls (metrics: a Scrape), how many went as FLUSH_FAST and how many of
// those found the write stamp void, the symbols refused; then Redis's own time in klined's
// Lua calls (FLUSH, the first-sight loads, rollover) from INFO commandstats, all of it with
// dump_cmdstats, of each Redis node. `when` follows "Redis EVALSHA" (" so far").
void PrintFlushStats(const std::string& metrics, const std::vector<redisContext*>& nodes,
                     const char* when, bool dump_cmdstats) {
  std::printf(
      "of the flush calls: FLUSH_FAST %.0f, FLUSH_FAST that found the write stamp void "
      "%.0f; symbols refused (reloaded) %.0f\n",
      kt::MetricSum(metrics, "klined_flush_fast_total"),
      kt::MetricSum(metrics, "klined_flush_fast_missed_total"),
      kt::MetricSum(metrics, "klined_writes_refused_total"));
  for (size_t n = 0; n < nodes.size(); ++n) {
    auto* info = static_cast<redisReply*>(redisCommand(nodes[n], "INFO commandstats"));
    if (info == nullptr) continue;
    const std::string s = info->type == REDIS_REPLY_STRING ? std::string(info->str, info->len) : "";
    freeReplyObject(info);
    if (dump_cmdstats) std::printf("%s\n", s.c_str());
    const size_t at = s.find("cmdstat_evalsha:");
    if (at != std::string::npos) {
      std::printf("Redis EVALSHA%s%s: %s\n", when,
                  nodes.size() > 1 ? (" (primary " + std::to_string(n) + ")").c_str() : "",
                  s.substr(at + 16, s.find('\r', at) - at - 16).c_str());
    }
  }
}

// True once every symbol's watermark in Redis reached last_ids (pipelined GETs).
// Extra YAML lines from an environment variable "key=value,key=value" (for experiments
// with consumer settings), each indented by `indent`.
std::string ExtraYaml(const char* env, const std::string& indent, bool quote = false) {
  const char* v = std::getenv(env);
  std::string out;
  std::string item;
  std::istringstream in(v != nullptr ? v : "");
  while (std::getline(in, item, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) continue;
    const std::string q = quote ? "\"" : "";
    out += indent + item.substr(0, eq) + ": " + q + item.substr(eq + 1) + q + "\n";
  }
  return out;
}

// Every node is asked for every watermark; on a cluster the nodes that do not serve a
// symbol's slot answer MOVED (an error, ignored) and the one that does answers.
bool AllInRedis(const std::vector<redisContext*>& nodes, const std::vector<int64_t>& last_ids) {
  std::vector<char> done(last_ids.size(), 0);
  for (redisContext* rc : nodes) {
    for (size_t i = 0; i < last_ids.size(); ++i) {
      if (last_ids[i] == 0) continue;
      redisAppendCommand(rc, "GET kline:{%s}:wm", SymbolName(static_cast<int>(i)).c_str());
    }
    for (size_t i = 0; i < last_ids.size(); ++i) {
      if (last_ids[i] == 0) continue;
      void* r = nullptr;
      redisGetReply(rc, &r);
      auto* rr = static_cast<redisReply*>(r);
      if (rr != nullptr && rr->type == REDIS_REPLY_STRING && std::atoll(rr->str) >= last_ids[i]) {
        done[i] = 1;
      }
      if (rr != nullptr) freeReplyObject(rr);
    }
  }
  for (size_t i = 0; i < last_ids.size(); ++i) {
    if (last_ids[i] != 0 && !done[i]) return false;
  }
  return true;
}

// A Redis server's CPU seconds so far (INFO cpu: used_cpu_sys + used_cpu_user).
double RedisCpuSeconds(redisContext* rc) {
  auto* info = static_cast<redisReply*>(redisCommand(rc, "INFO cpu"));
  if (info == nullptr) return 0;
  const std::string s = info->type == REDIS_REPLY_STRING ? std::string(info->str, info->len) : "";
  freeReplyObject(info);
  double sum = 0;
  for (const char* f : {"used_cpu_sys:", "used_cpu_user:"}) {
    const size_t at = s.find(f);
    if (at != std::string::npos) sum += std::atof(s.c_str() + at + std::strlen(f));
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::atoll(argv[++i]); };
    if (a == "--trades")
      o.trades = next();
    else if (a == "--symbols")
      o.symbols = static_cast<int>(next());
    else if (a == "--partitions")
      o.partitions = static_cast<int>(next());
    else if (a == "--shards")
      o.shards = static_cast<int>(next());
    else if (a == "--rate")
      o.rate = next();
    else if (a == "--latency-seconds")
      o.latency_seconds = static_cast<int>(next());
    else if (a == "--span-seconds")
      o.span_seconds = static_cast<int>(next());
    else if (a == "--skip-baseline")
      o.baseline = false;
    else if (a == "--cluster")
      o.cluster = static_cast<int>(next());
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  std::string cmdline;
  for (int i = 0; i < argc; ++i) cmdline += std::string(i ? " " : "") + argv[i];
  std::printf("command: %s\nmachine: %u cores\n", cmdline.c_str(),
              std::thread::hardware_concurrency());

  if (o.cluster > 0 && (o.latency_seconds > 0 || o.baseline)) {
    std::fprintf(stderr,
                 "--cluster measures the catch-up only: add --latency-seconds 0 "
                 "--skip-baseline\n");
    return 2;
  }
  kt::TempDir dir("klined-bench");
  // One Redis, or a cluster of o.cluster primaries (their CPU split is the figure).
  std::unique_ptr<kt::RedisServer> single;
  std::unique_ptr<kt::RedisCluster> cluster;
  if (o.cluster > 0) {
    cluster = std::make_unique<kt::RedisCluster>(o.cluster, 0);
  } else {
    single = std::make_unique<kt::RedisServer>();
  }
  std::vector<redisContext*> nodes;  // every primary (all the cluster's nodes are)
  if (cluster) {
    for (auto& n : cluster->nodes()) nodes.push_back(redisConnect("127.0.0.1", n->port()));
  } else {
    nodes.push_back(redisConnect("127.0.0.1", single->port()));
  }
  const std::string redis_address = cluster ? cluster->Seeds() : single->address();
  kt::MariaDbServer mysql;
  kt::KafkaBroker broker(kt::KafkaBrokerOptions{1, {{"trades", o.partitions}, {"lat", 8}}});

  // 1. Pre-fill.
  Generator gen(o.symbols, 1);
  rd_kafka_t* prod = MakeProducer(broker.bootstrap(), "20");
  std::string msg;
  const int64_t span_ms = int64_t{o.span_seconds} * 1000;
  const int64_t t0 = klined::WallMs() - span_ms - 1000;
  auto fill_start = Clock::now();
  for (int64_t i = 0; i < o.trades; ++i) {
    const int s = gen.Next(t0 + i * span_ms / o.trades, &msg);
    Produce(prod, "trades", SymbolName(s), msg);
  }
  rd_kafka_flush(prod, 120000);
  std::printf("prefill: %lld trades, %d symbols, %d partitions in %.1f s\n",
              static_cast<long long>(o.trades), o.symbols, o.partitions,
              Secs(Clock::now() - fill_start));
  // Everything must still be retained, or the runs below would compare different data.
  int64_t retained = 0;
  for (int p = 0; p < o.partitions; ++p) {
    int64_t lo = 0, hi = 0;
    rd_kafka_query_watermark_offsets(prod, "trades", p, &lo, &hi, 10000);
    retained += hi - lo;
  }
  if (retained != o.trades) {
    std::fprintf(stderr,
                 "the test broker kept %lld of %lld messages (retention ~5 MiB per "
                 "partition): use more partitions or fewer trades\n",
                 static_cast<long long>(retained), static_cast<long long>(o.trades));
    return 1;
  }

  // 2. (a) ceiling.
  const double bare = BareConsumerSeconds(broker.bootstrap(), "trades", o.trades);

  // 2. (b) klined catch-up.
  const int metrics_port = kt::FreePort();
  const auto config = dir / "klined.yaml";
  kt::WriteFile(
      config,
      "kafka:\n  brokers: \"" + broker.bootstrap() + "\"\n  group: bench\n" +
          ExtraYaml("KLINED_BENCH_KAFKA", "  ") +
          "  properties:\n    session.timeout.ms: \"6000\"\n"
          "    heartbeat.interval.ms: \"500\"\n" +
          ExtraYaml("KLINED_BENCH_KAFKA_PROPS", "    ", true) + "redis:\n  address: \"" +
          redis_address + "\"\n" + (cluster ? "  cluster: true\n" : "") +
          "mysql:\n  port: " + std::to_string(mysql.port()) + "\n  user: " + mysql.user() +
          "\n  password: \"" + mysql.password() + "\"\n  database: " + mysql.database() +
          "\nshards: " + std::to_string(o.shards) + "\n" + ExtraYaml("KLINED_BENCH_CONFIG", "") +
          "\napi:\n  listen: \"127.0.0.1:0\"\nmetrics:\n  listen: \"127.0.0.1:" +
          std::to_string(metrics_port) + "\"\nlog:\n  level: " +
          (std::getenv("KLINED_BENCH_LOG") ? std::getenv("KLINED_BENCH_LOG") : "warn") + "\n");
  const char* build = std::getenv("KLINED_BUILD");
  kt::Subprocess klined(std::string(build ? build : "build") + "/src/app/klined",
                        {"--config", config.string()},
                        {.log_dir = dir.path(), .name = "klined", .env = {}, .cwd = {}});
  std::vector<double> cpu_before;
  for (redisContext* n : nodes) cpu_before.push_back(RedisCpuSeconds(n));
  Clock::time_point first{};
  while (Clock::now() < Clock::time_point::max()) {
    if (kt::MetricSum(Scrape(metrics_port), "klined_kafka_messages_total") > 0) {
      first = Clock::now();
      break;
    }
    if (!klined.Running()) {
      std::fprintf(stderr, "klined exited:\n%s\n", klined.OutputTail().c_str());
      return 1;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  const auto deadline = Clock::now() + seconds(600);
  // Polling every symbol's watermark in Redis is itself load on Redis and on this machine's
  // two cores (10,000 GETs per poll at 10k symbols), so first wait, on klined's cheap
  // counter, until every trade is applied in memory; only then poll Redis, until every
  // trade is there.
  while (kt::MetricSum(Scrape(metrics_port), "klined_trades_applied_total") < o.trades &&
         Clock::now() < deadline && klined.Running()) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  while (!AllInRedis(nodes, gen.last_ids()) && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  const double catchup = Secs(Clock::now() - first);
  const std::string metrics = Scrape(metrics_port);
  const double calls = kt::MetricSum(metrics, "klined_flushed_symbols_total");
  const double applied = kt::MetricSum(metrics, "klined_trades_applied_total");

  std::printf(
      "\n| catch-up of %lld trades | seconds | trades/s | vs ceiling |\n|---|---|---|---|\n",
      static_cast<long long>(o.trades));
  std::printf("| bare librdkafka consumer (ceiling) | %.2f | %.0f | 1.00 |\n", bare,
              o.trades / bare);
  std::printf("| klined (%d shards) | %.2f | %.0f | %.2f |\n", o.shards, catchup,
              o.trades / catchup, bare / catchup);
  std::printf("\nRedis calls per trade (catch-up): %.5f (%.0f flush calls for %.0f trades)\n",
              calls / applied, calls, applied);
  // Redis CPU over the catch-up (klined's start included), per node and per million trades.
  double cpu_total = 0;
  std::vector<double> cpu;
  for (size_t i = 0; i < nodes.size(); ++i) {
    cpu.push_back(RedisCpuSeconds(nodes[i]) - cpu_before[i]);
    cpu_total += cpu.back();
  }
  std::printf("Redis CPU over the catch-up: %.2f s in all, %.3f s per million trades\n", cpu_total,
              cpu_total * 1e6 / static_cast<double>(o.trades));
  for (size_t i = 0; i < nodes.size() && cluster; ++i) {
    std::printf("  primary %zu: %.2f s, %.3f s per million trades, %.0f%% of the total\n", i,
                cpu[i], cpu[i] * 1e6 / static_cast<double>(o.trades),
                cpu_total > 0 ? 100 * cpu[i] / cpu_total : 0.0);
  }
  PrintFlushStats(metrics, nodes, "", std::getenv("KLINED_BENCH_CMDSTATS") != nullptr);
  std::printf("consumer waits for a free shard batch (back-pressure): %.0f\n",
              kt::MetricSum(metrics, "klined_backpressure_waits_total"));
  std::printf("klined memory after the catch-up: peak RSS %s, RSS %s\n",
              klined::bench::ProcStatus(klined.pid(), "VmHWM").c_str(),
              klined::bench::ProcStatus(klined.pid(), "VmRSS").c_str());

  // 3. latency at a steady rate: the produce time of every trade of 8 sampled symbols
  //    (their own names, prefix L), and when the sampler first sees its id in Redis.
  if (o.latency_seconds > 0) {
    constexpr int kSampled = 8;
    Generator lat_gen(o.symbols, 2, 'L');
    // linger 5 ms: part of the measured latency, but keeps the producer from falling behind.
    rd_kafka_t* lat_prod = MakeProducer(broker.bootstrap(), "5");
    const size_t cap = static_cast<size_t>(o.rate) * static_cast<size_t>(o.latency_seconds) + 16;
    std::vector<std::vector<Clock::time_point>> sent_at(kSampled,
                                                        std::vector<Clock::time_point>(cap));
    std::array<std::atomic<int64_t>, kSampled> sent_id{};  // ids 1..sent_id[s] have sent_at
    std::atomic<bool> producing{true};
    std::vector<double> lat_ms;
    std::vector<std::vector<double>> lat_by_second(static_cast<size_t>(o.latency_seconds) + 1);
    const auto lat_start = Clock::now();
    std::thread sampler([&] {
      redisContext* sc = redisConnect("127.0.0.1", single->port());
      std::array<int64_t, kSampled> seen{};
      while (true) {
        bool pending = false;
        for (int s = 0; s < kSampled; ++s) {
          redisReply* r = static_cast<redisReply*>(
              redisCommand(sc, "GET kline:{%s}:wm", SymbolName(s, 'L').c_str()));
          const auto now = Clock::now();
          const int64_t wm = r && r->type == REDIS_REPLY_STRING ? std::atoll(r->str) : 0;
          if (r) freeReplyObject(r);
          const int64_t upto = std::min<int64_t>(wm, sent_id[s].load(std::memory_order_acquire));
          for (; seen[s] < upto; ++seen[s]) {
            const auto sent = sent_at[s][static_cast<size_t>(seen[s])];
            lat_ms.push_back(std::chrono::duration<double, std::milli>(now - sent).count());
            const size_t sec = std::min(lat_by_second.size() - 1,
                                        static_cast<size_t>(std::max(0.0, Secs(sent - lat_start))));
            lat_by_second[sec].push_back(lat_ms.back());
          }
          pending |= seen[s] < sent_id[s].load();
        }
        if (!producing.load() && !pending) break;
        std::this_thread::sleep_for(milliseconds(2));
      }
      redisFree(sc);
    });
    // The baseline: a bare consumer assigned every partition at its end (no group, no join)
    // that only notes when each sampled trade arrives from the broker. If it falls behind
    // too, the broker (not klined) limits the rate.
    std::vector<double> base_ms;
    std::atomic<bool> base_ready{false};
    std::thread baseline([&] {
      const std::string bootstrap = broker.bootstrap();
      rd_kafka_t* rk = MakeClient(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstrap.c_str()},
                                                      {"group.id", "lat-baseline"},
                                                      {"enable.auto.commit", "false"},
                                                      {"fetch.wait.max.ms", "10"}});
      rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(o.partitions);
      for (int p = 0; p < o.partitions; ++p) {
        rd_kafka_topic_partition_list_add(parts, "trades", p)->offset = RD_KAFKA_OFFSET_END;
      }
      rd_kafka_assign(rk, parts);
      rd_kafka_topic_partition_list_destroy(parts);
      base_ready.store(true);
      std::array<int64_t, kSampled> got{};
      while (true) {
        rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 10);
        const auto now = Clock::now();
        if (m != nullptr) {
          if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->key_len == 9 &&
              static_cast<const char*>(m->key)[0] == 'L') {
            const int s = std::atoi(static_cast<const char*>(m->key) + 1);
            const std::string v(static_cast<const char*>(m->payload), m->len);
            const size_t t = v.find("\"t\":");
            const int64_t id = std::atoll(v.c_str() + t + 4);
            if (s < kSampled && id >= 1 && id <= sent_id[s].load(std::memory_order_acquire)) {
              base_ms.push_back(std::chrono::duration<double, std::milli>(
                                    now - sent_at[s][static_cast<size_t>(id - 1)])
                                    .count());
              got[s] = id;
            }
          }
          rd_kafka_message_destroy(m);
          continue;
        }
        if (!producing.load()) {
          bool all = true;
          for (int s = 0; s < kSampled; ++s) all &= got[s] >= sent_id[s].load();
          if (all) break;
        }
      }
      rd_kafka_consumer_close(rk);
      rd_kafka_destroy(rk);
    });
    while (!base_ready.load()) std::this_thread::sleep_for(milliseconds(10));
    std::this_thread::sleep_for(seconds(1));  // let it reach the partitions' ends
    const auto start = Clock::now();
    int64_t n = 0;
    while (Clock::now() - start < seconds(o.latency_seconds)) {
      const int64_t due =
          static_cast<int64_t>(Secs(Clock::now() - start) * static_cast<double>(o.rate));
      for (; n < due; ++n) {
        const int s = lat_gen.Next(klined::WallMs(), &msg);
        if (s < kSampled) {
          const int64_t id = lat_gen.last_ids()[static_cast<size_t>(s)];
          if (static_cast<size_t>(id) < cap) {
            sent_at[s][static_cast<size_t>(id - 1)] = Clock::now();
            sent_id[s].store(id, std::memory_order_release);
          }
        }
        Produce(lat_prod, "trades", SymbolName(s, 'L'), msg);
      }
      rd_kafka_poll(lat_prod, 0);
      std::this_thread::sleep_for(milliseconds(1));
    }
    const auto flush_start = Clock::now();
    rd_kafka_flush(lat_prod, 30000);
    std::printf(
        "producer: %lld trades in %d s, final flush %.0f ms (a long one means the "
        "producer, not klined, fell behind)\n",
        static_cast<long long>(n), o.latency_seconds, Secs(Clock::now() - flush_start) * 1000);
    rd_kafka_destroy(lat_prod);
    producing.store(false);
    sampler.join();
    baseline.join();
    std::sort(base_ms.begin(), base_ms.end());
    if (!base_ms.empty()) {
      std::printf(
          "baseline (bare consumer, produce -> received, same trades): p50 %.1f ms, "
          "p99 %.1f ms, max %.1f ms\n",
          base_ms[base_ms.size() / 2], base_ms[base_ms.size() * 99 / 100], base_ms.back());
    }
    std::sort(lat_ms.begin(), lat_ms.end());
    if (std::getenv("KLINED_BENCH_LATENCY_SERIES") != nullptr) {
      for (size_t i = 0; i < lat_by_second.size(); ++i) {
        auto& v = lat_by_second[i];
        if (v.empty()) continue;
        std::sort(v.begin(), v.end());
        std::printf("  second %zu: n=%zu p50 %.0f ms p99 %.0f ms\n", i, v.size(), v[v.size() / 2],
                    v[v.size() * 99 / 100]);
      }
    }
    if (!lat_ms.empty()) {
      std::printf(
          "\nlatency at %lld trades/s for %d s (%zu samples, 2 ms sampling): p50 %.1f ms, "
          "p99 %.1f ms, max %.1f ms (flush interval 333 ms)\n",
          static_cast<long long>(o.rate), o.latency_seconds, lat_ms.size(),
          lat_ms[lat_ms.size() / 2], lat_ms[lat_ms.size() * 99 / 100], lat_ms.back());
    }
    const std::string now = Scrape(metrics_port);
    std::printf("flush calls so far: %.0f\n", kt::MetricSum(now, "klined_flushed_symbols_total"));
    PrintFlushStats(now, nodes, " so far", false);
  }
  klined.Stop(seconds(30));
  rd_kafka_destroy(prod);

  // 4. (c) the replaced design, measured last on the same data (fresh consumer group).
  if (o.baseline) {
    const double per_trade =
        PerTradeDesignRate(broker.bootstrap(), "trades", "127.0.0.1", single->port(), seconds(10));
    std::printf("\n| design | trades/s | klined speed-up |\n|---|---|---|\n");
    std::printf("| one Lua call per trade per interval (15) | %.0f | %.0fx |\n", per_trade,
                (o.trades / catchup) / per_trade);
  }
  for (redisContext* n : nodes) redisFree(n);
  return 0;
}
