// The end-to-end test stack (real redis-server, mariadbd, the Kafka test broker and the real
// klined binary) and the independent candle computation the tests compare Redis against.
// Shared by the integration suites; it shares no code with klined itself.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "http_get.h"
#include "kafka_broker.h"
#include "mariadb_server.h"
#include "redis_cluster.h"
#include "redis_server.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace kt = klined::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace klined_it {

__extension__ typedef __int128 I128;

// ---- the independent reference -------------------------------------------------------
// Prices have 2 decimals (cents), quantities 3: price*qty has 5. Sums in 128-bit integers.
struct RefTrade {
  std::string symbol;
  int64_t id;
  int64_t time_ms;
  int64_t price_cents;
  int64_t qty_milli;
  bool maker;
};

inline std::string Scaled(I128 v, int scale) {
  std::string digits;
  I128 x = v;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(x % 10)));
    x /= 10;
  } while (x != 0);
  while (static_cast<int>(digits.size()) <= scale) digits.insert(digits.begin(), '0');
  std::string out = digits.substr(0, digits.size() - scale);
  std::string frac = digits.substr(digits.size() - scale);
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  if (!frac.empty()) out += "." + frac;
  return out;
}

struct RefCandle {
  int64_t open = 0;
  std::vector<const RefTrade*> trades;
};

inline std::string RefJson(const std::string& sym, const std::string& iv, int64_t open, int64_t len,
                           const std::vector<const RefTrade*>& trades, int64_t carry_cents,
                           bool closed) {
  I128 v = 0, q = 0, tv = 0, tq = 0;
  int64_t hi = 0, lo = INT64_MAX, first = -1, last = -1, o = carry_cents, c = carry_cents;
  for (const RefTrade* t : trades) {
    v += t->qty_milli;
    q += static_cast<I128>(t->price_cents) * t->qty_milli;
    if (!t->maker) {
      tv += t->qty_milli;
      tq += static_cast<I128>(t->price_cents) * t->qty_milli;
    }
    hi = std::max(hi, t->price_cents);
    lo = std::min(lo, t->price_cents);
    if (first < 0 || t->id < first) first = t->id, o = t->price_cents;
    if (t->id > last) last = t->id, c = t->price_cents;
  }
  if (trades.empty()) hi = lo = carry_cents;
  char head[256];
  std::snprintf(head, sizeof head,
                "{\"t\":%lld,\"T\":%lld,\"s\":\"%s\",\"i\":\"%s\",\"f\":%lld,\"L\":%lld,",
                static_cast<long long>(open), static_cast<long long>(open + len - 1), sym.c_str(),
                iv.c_str(), static_cast<long long>(first), static_cast<long long>(last));
  return std::string(head) + "\"o\":\"" + Scaled(o, 2) + "\",\"h\":\"" + Scaled(hi, 2) +
         "\",\"l\":\"" + Scaled(lo, 2) + "\",\"c\":\"" + Scaled(c, 2) + "\",\"v\":\"" +
         Scaled(v, 3) + "\",\"q\":\"" + Scaled(q, 5) + "\",\"V\":\"" + Scaled(tv, 3) +
         "\",\"Q\":\"" + Scaled(tq, 5) + "\",\"n\":" + std::to_string(trades.size()) +
         ",\"x\":" + (closed ? "true" : "false") + "}";
}

// Expected (history members oldest first, current) for one symbol and fixed-length interval.
// The series runs gapless from the first trade's bucket to end_open (the bucket storage's
// current candle is in: the lease holder rolls idle series forward to now), or to the last
// trade's bucket when end_open is 0.
inline std::pair<std::vector<std::string>, std::string> Expected(const std::vector<RefTrade>& all,
                                                                 const std::string& sym,
                                                                 const std::string& iv, int64_t len,
                                                                 int64_t end_open = 0) {
  std::map<int64_t, std::vector<const RefTrade*>> buckets;
  for (const RefTrade& t : all) {
    if (t.symbol == sym) buckets[t.time_ms - t.time_ms % len].push_back(&t);
  }
  std::vector<std::string> hist;
  std::string current;
  const int64_t first = buckets.begin()->first;
  const int64_t last = std::max(buckets.rbegin()->first, end_open);
  int64_t carry = 0;
  for (int64_t open = first; open <= last; open += len) {
    auto it = buckets.find(open);
    std::vector<const RefTrade*> ts =
        it == buckets.end() ? std::vector<const RefTrade*>{} : it->second;
    std::string json = RefJson(sym, iv, open, len, ts, carry, open != last);
    if (!ts.empty()) {
      const RefTrade* hi = ts[0];
      for (const RefTrade* t : ts)
        if (t->id > hi->id) hi = t;
      carry = hi->price_cents;
    }
    (open == last ? current : hist.emplace_back()) = json;
  }
  return {hist, current};
}

inline std::string TradeJson(const RefTrade& t) {
  return "{\"e\":\"trade\",\"s\":\"" + t.symbol + "\",\"t\":" + std::to_string(t.id) + ",\"p\":\"" +
         Scaled(t.price_cents, 2) + "\",\"q\":\"" + Scaled(t.qty_milli, 3) +
         "\",\"T\":" + std::to_string(t.time_ms) + ",\"m\":" + (t.maker ? "true" : "false") + "}";
}

// MySQL DECIMAL(38,18) text -> canonical decimal text.
inline std::string Canonical(std::string d) {
  if (d.find('.') != std::string::npos) {
    while (d.back() == '0') d.pop_back();
    if (d.back() == '.') d.pop_back();
  }
  return d;
}

// ---- the stack -------------------------------------------------------------------------
inline const std::vector<std::pair<std::string, int64_t>> kIntervals = {
    {"1m", 60000}, {"5m", 300000}, {"1h", 3600000}};

struct Stack {
  // `tail` is appended to every config (later keys override: yaml-cpp keeps the last), e.g.
  // "intervals: [1s, 1m]\nlease:\n  ttl_ms: 1000\n".
  // redis_extra: more keys of the redis section, e.g. "  history_limit: 3\n"; mysql_extra
  // the same for the mysql section (its persist_interval_ms replaces the default 500).
  explicit Stack(bool redis_aof = false, std::string tail = "", std::string redis_extra = "",
                 std::string mysql_extra = "")
      : redis(kt::RedisOptions{.appendonly = redis_aof, .extra_config = {}}),
        config_tail(std::move(tail)),
        redis_extra(std::move(redis_extra)),
        mysql_extra(std::move(mysql_extra)) {
    kt::WriteFile(config, ConfigYaml(metrics_port));
  }

  kt::TempDir dir{"klined-pipeline"};
  kt::RedisServer redis;
  // KLINED_TEST_CLUSTER=1 (make test-cluster; a sample in make test): klined runs against a Redis
  // Cluster of three primaries and three replicas (redis.cluster: true, the seed list) instead of
  // `redis`. The stack's own checks read through
  // Redis(), which follows the cluster's redirects; a case that reads `redis` directly is not
  // one of the cluster run's.
  std::unique_ptr<kt::RedisCluster> cluster = ClusterFromEnv();
  kt::MariaDbServer mysql;
  kt::KafkaBroker broker{kt::KafkaBrokerOptions{1, {{"trades", 4}, {"trades-dlq", 1}}}};
  std::string config_tail;
  std::string redis_extra;
  std::string mysql_extra;
  int metrics_port = kt::FreePort();
  std::filesystem::path config = dir / "klined.yaml";

  // klined connects to Redis here (e.g. a kt::TcpProxy in front of it) instead of directly;
  // rewrites the config file.
  void UseRedisAddress(std::string address) {
    redis_address = std::move(address);
    kt::WriteFile(config, ConfigYaml(metrics_port));
  }
  std::string redis_address;  // empty: redis.address()

  std::string ConfigYaml(int port) const {
    std::string y =
        "kafka:\n  brokers: \"" + broker.bootstrap() +
        "\"\n  topic: trades\n  group: klined-it\n  dead_letter_topic: trades-dlq\n"
        "  properties:\n    session.timeout.ms: \"6000\"\n    heartbeat.interval.ms: \"500\"\n"
        "redis:\n  address: \"" +
        (cluster                 ? cluster->Seeds()
         : redis_address.empty() ? redis.address()
                                 : redis_address) +
        "\"\n" + (cluster ? "  cluster: true\n" : "") + redis_extra +
        "mysql:\n  host: 127.0.0.1\n  port: " + std::to_string(mysql.port()) +
        "\n  user: " + mysql.user() + "\n  password: \"" + mysql.password() +
        "\"\n  database: " + mysql.database() + "\n" +
        (mysql_extra.find("persist_interval_ms:") == std::string::npos
             ? "  persist_interval_ms: 500\n"
             : "") +
        mysql_extra + "metrics:\n  listen: \"127.0.0.1:" + std::to_string(port) + "\"\n";
    if (config_tail.find("intervals:") == std::string::npos) y += "intervals: [1m, 5m, 1h]\n";
    if (config_tail.find("flush_interval_ms:") == std::string::npos)
      y += "flush_interval_ms: 100\n";
    if (config_tail.find("shards:") == std::string::npos) y += "shards: 2\n";
    // Every instance serves the API on a port of its own (any free one unless a test sets it).
    if (config_tail.find("api:") == std::string::npos) y += "api:\n  listen: \"127.0.0.1:0\"\n";
    return y + config_tail;
  }

  // A second (third...) instance's config file, with its own metrics port (*port, if asked).
  std::filesystem::path InstanceConfig(const std::string& name, int* port = nullptr) {
    const int p = kt::FreePort();
    if (port != nullptr) *port = p;
    const auto path = dir / (name + ".yaml");
    kt::WriteFile(path, ConfigYaml(p));
    return path;
  }

  // A second (third...) instance: its own config file and metrics port.
  std::unique_ptr<kt::Subprocess> StartInstance(const std::string& name, int* port) {
    return StartKlinedWith(name, InstanceConfig(name, port));
  }

  std::unique_ptr<kt::Subprocess> StartKlinedWith(const std::string& name,
                                                  const std::filesystem::path& cfg) {
    const char* build = std::getenv("KLINED_BUILD");
    const std::string bin = std::string(build ? build : "build") + "/src/app/klined";
    return std::make_unique<kt::Subprocess>(
        bin, std::vector<std::string>{"--config", cfg.string()},
        kt::SubprocessOptions{.log_dir = dir.path(), .name = name, .env = {}, .cwd = {}});
  }

  std::unique_ptr<kt::Subprocess> StartKlined(const std::string& name) {
    return StartKlinedWith(name, config);
  }

  // klined on a Redis Cluster from now on, whatever the environment (rewrites the config).
  void UseCluster() {
    if (!cluster) cluster = std::make_unique<kt::RedisCluster>(3, 1);
    kt::WriteFile(config, ConfigYaml(metrics_port));
  }

  static std::unique_ptr<kt::RedisCluster> ClusterFromEnv() {
    const char* env = std::getenv("KLINED_TEST_CLUSTER");
    if (env == nullptr || std::string(env) != "1") return nullptr;
    return std::make_unique<kt::RedisCluster>(3, 1);
  }

  // A client of the Redis klined writes: `redis`, or a live node of the cluster (following
  // its redirects, so any key reads through it).
  kt::RedisClient Redis() {
    if (!cluster) return redis.Connect();
    for (auto& node : cluster->nodes()) {
      if (node->running() && node->process().Running()) return node->Connect();
    }
    FAIL("no live node in the cluster");
    return redis.Connect();
  }

  // (committed, end) of the test topic's consumer group, summed over its partitions.
  std::pair<int64_t, int64_t> CommittedTotal() const {
    int64_t committed = 0;
    int64_t end = 0;
    for (const auto& [c, e] : kt::CommittedAndEnd(broker.bootstrap(), "klined-it", "trades", 4)) {
      committed += std::max<int64_t>(c, 0);
      end += e;
    }
    return {committed, end};
  }
  bool AllCommitted() const {
    const auto [committed, end] = CommittedTotal();
    return committed == end;
  }

  // A client of each Redis klined writes: `redis`, or every live node of the cluster (for
  // what one node answers of its own: KEYS, CLIENT KILL).
  std::vector<kt::RedisClient> Nodes() {
    std::vector<kt::RedisClient> out;
    if (!cluster) {
      out.push_back(redis.Connect());
      return out;
    }
    for (auto& node : cluster->nodes()) {
      if (node->running() && node->process().Running()) out.push_back(node->Connect());
    }
    return out;
  }

  // No candle waits for MySQL in the Redis klined writes (on every node).
  bool NothingPending() {
    for (kt::RedisClient& rc : Nodes()) {
      if (!rc.NothingPending()) return false;
    }
    return true;
  }

  // Waits until every symbol's watermark reached its last trade id.
  bool WaitForWatermarks(const std::map<std::string, int64_t>& last_id, seconds timeout) {
    kt::RedisClient rc = Redis();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      bool all = true;
      for (const auto& [sym, id] : last_id) {
        auto wm = rc.Get("kline:{" + sym + "}:wm");
        all &= wm.has_value() && *wm == std::to_string(id);
      }
      if (all) return true;
      std::this_thread::sleep_for(milliseconds(100));
    }
    for (const auto& [sym, id] : last_id) {
      MESSAGE(sym << " want " << id << " have "
                  << rc.Get("kline:{" + sym + "}:wm").value_or("none"));
    }
    return false;
  }

  // Redis (or `server`, e.g. a promoted replica) equals the independent computation.
  void CheckCandles(const std::vector<RefTrade>& trades, const std::vector<std::string>& symbols,
                    const kt::RedisServer* server = nullptr) {
    kt::RedisClient rc = server != nullptr ? server->Connect() : Redis();
    for (const std::string& sym : symbols) {
      for (const auto& [iv, len] : kIntervals) {
        const std::string base = "kline:{" + sym + "}:" + iv;
        CAPTURE(base);
        // Read current, history, current: equal currents mean no rollover ran in between.
        std::optional<std::string> cur;
        std::vector<std::string> hist;
        for (int attempt = 0; attempt < 10; ++attempt) {
          cur = rc.Get(base);
          hist = rc.Strings({"ZRANGE", base + ":hist", "0", "-1"});
          if (rc.Get(base) == cur) break;
        }
        REQUIRE(cur.has_value());
        const int64_t end_open = std::stoll(cur->substr(5, cur->find(',') - 5));
        auto [want_hist, want_current] = Expected(trades, sym, iv, len, end_open);
        CHECK(*cur == want_current);
        CHECK(hist == want_hist);
      }
      CHECK(rc.Integer({"SISMEMBER", "kline:symbols", sym}) == 1);
    }
  }

  // Runs klinectl with this stack's config file to completion.
  struct Ran {
    int code = -1;
    std::string out, err;
  };
  Ran Klinectl(std::vector<std::string> args, const std::string& name) {
    const char* build = std::getenv("KLINED_BUILD");
    const std::string bin = std::string(build ? build : "build") + "/src/tools/klinectl/klinectl";
    args.insert(args.begin(), {"--config", config.string()});
    kt::Subprocess p(
        bin, args,
        kt::SubprocessOptions{.log_dir = dir.path(), .name = name, .env = {}, .cwd = {}});
    const auto st = p.Wait(std::chrono::milliseconds(120000));
    REQUIRE_MESSAGE(st.has_value(), p.OutputTail());
    return Ran{st->Code(), p.Stdout(), p.Stderr()};
  }

  // Every row of (sym, iv) in MySQL's kline table as closed-candle JSON (RefJson's form),
  // oldest first.
  std::vector<std::string> MysqlCandles(const std::string& sym, const std::string& iv) {
    std::vector<std::string> out;
    for (const auto& r : mysql.Query(
             "SELECT open_time, close_time, first_trade_id, last_trade_id, open, high, low, "
             "close, volume, quote_volume, taker_buy_volume, taker_buy_quote_volume, trades "
             "FROM kline WHERE symbol='" + sym + "' AND `interval`='" + iv +
             "' ORDER BY open_time")) {
      out.push_back("{\"t\":" + r[0] + ",\"T\":" + r[1] + ",\"s\":\"" + sym + "\",\"i\":\"" + iv +
                    "\",\"f\":" + r[2] + ",\"L\":" + r[3] + ",\"o\":\"" + Canonical(r[4]) +
                    "\",\"h\":\"" + Canonical(r[5]) + "\",\"l\":\"" + Canonical(r[6]) +
                    "\",\"c\":\"" + Canonical(r[7]) + "\",\"v\":\"" + Canonical(r[8]) +
                    "\",\"q\":\"" + Canonical(r[9]) + "\",\"V\":\"" + Canonical(r[10]) +
                    "\",\"Q\":\"" + Canonical(r[11]) + "\",\"n\":" + r[12] + ",\"x\":true}");
    }
    return out;
  }

  // Every symbol's MySQL rows, each interval, equal the independent computation's closed
  // candles (those before the current one in Redis).
  void CheckMysql(const std::vector<RefTrade>& trades, const std::vector<std::string>& symbols) {
    kt::RedisClient rc = Redis();
    for (const std::string& sym : symbols) {
      for (const auto& [iv, len] : kIntervals) {
        CAPTURE(sym);
        CAPTURE(iv);
        const auto cur = rc.Get("kline:{" + sym + "}:" + iv);
        REQUIRE(cur.has_value());
        const int64_t end_open = std::stoll(cur->substr(5, cur->find(',') - 5));
        const std::vector<std::string> got = MysqlCandles(sym, iv);
        const std::vector<std::string> want = Expected(trades, sym, iv, len, end_open).first;
        CHECK(got == want);
        if (got != want) {  // the first difference, readable
          size_t i = 0;
          while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
          MESSAGE("rows " << got.size() << " want " << want.size() << "; first difference at "
                          << i << ": " << (i < got.size() ? got[i] : "-") << " want "
                          << (i < want.size() ? want[i] : "-"));
        }
      }
    }
  }

  std::string Metrics(int port = 0) const {
    return kt::HttpGet(port ? port : metrics_port, "/metrics");
  }
};

// SIGTERM, then klined must drain and exit 0 within 30 s.
inline void StopCleanly(kt::Subprocess& klined) {
  klined.Terminate();
  auto st = klined.Wait(std::chrono::seconds(30));
  REQUIRE(st.has_value());
  CHECK(st->Code() == 0);
}

inline std::vector<RefTrade> MakeTrades(const std::vector<std::string>& symbols, int per_symbol,
                                        uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::vector<RefTrade> out;
  for (const std::string& sym : symbols) {
    int64_t price = 10000 + static_cast<int64_t>(rng() % 90000);
    int64_t t = now - 20 * 60000;  // the last 20 minutes: several closed 1m/5m buckets
    for (int i = 1; i <= per_symbol; ++i) {
      price = std::max<int64_t>(1, price + static_cast<int64_t>(rng() % 201) - 100);
      t += static_cast<int64_t>(rng() % (18 * 60000 / per_symbol + 1));
      // Now and then a long pause, so some 1m buckets stay empty (gap filling).
      if (rng() % 50 == 0) t += 3 * 60000;
      t = std::min(t, now - 1000);
      out.push_back(RefTrade{sym, 1000 + i, t, price, 1 + static_cast<int64_t>(rng() % 5000),
                             rng() % 2 == 0});
    }
  }
  return out;
}

inline std::map<std::string, int64_t> LastIds(const std::vector<RefTrade>& trades) {
  std::map<std::string, int64_t> last;
  for (const RefTrade& t : trades) last[t.symbol] = std::max(last[t.symbol], t.id);
  return last;
}

// The minute boundary `minutes` before now (wall clock, ms).
inline int64_t MinuteAgo(int minutes) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  return now - now % 60000 - minutes * 60000;
}

// Produces trades to "trades", keyed by symbol (to `partition` if given), and waits for every
// delivery.
// stamped: each message's Kafka timestamp is its trade's time (else the time it is sent).
inline void Produce(kt::Producer* producer, const std::vector<RefTrade>& trades,
                    int32_t partition = -1 /* RD_KAFKA_PARTITION_UA */, bool stamped = false) {
  for (const RefTrade& t : trades) {
    producer->Produce("trades", t.symbol, TradeJson(t), partition, {}, stamped ? t.time_ms : 0);
  }
  producer->Flush();
}

// Polls pred every 20 ms until it holds or timeout passes; its last answer.
template <class Pred>
bool WaitUntil(Pred pred, seconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return pred();
}

// One field of a flat JSON object as written (a number, or a string's contents); "?" if absent.
// For the reference's candle JSON and klined's API replies.
inline std::string Field(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  size_t at = json.find(k);
  if (at == std::string::npos) return "?";
  at += k.size();
  if (json[at] == '"') return json.substr(at + 1, json.find('"', at + 1) - at - 1);
  return json.substr(at, json.find_first_of(",}", at) - at);
}

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Waits until klined's API on `port` knows `sym` (its known-symbol set is refreshed every
// api.symbols_refresh_ms).
inline bool WaitApiKnows(int port, const std::string& sym) {
  return WaitUntil(
      [&] {
        return kt::HttpFetch(port, "/api/v3/klines?interval=1m&limit=1&symbol=" + sym).status ==
               200;
      },
      seconds(20));
}

inline std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < text.size()) {
    const size_t nl = std::min(text.find('\n', at), text.size());
    out.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

inline double MetricValue(const std::string& text, const std::string& series) {
  double sum = 0;
  size_t pos = 0;
  while ((pos = text.find(series, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      const size_t sp = text.find(' ', pos + series.size());
      if (text.compare(pos + series.size(), 1, " ") == 0 || text[pos + series.size()] == '{') {
        sum += std::stod(text.substr(sp + 1, text.find('\n', sp) - sp - 1));
      }
    }
    pos += series.size();
  }
  return sum;
}

}  // namespace klined_it
