// End-to-end: the real klined binary against a real redis-server and the librdkafka mock
// cluster. Invariant checked: for every symbol and interval, Redis holds exactly the candles
// an independent computation (below, sharing no code with klined) derives from the trades
// produced: gapless history with x=true, the current candle with x=false, each trade counted
// once however often it was sent, and every bad message counted and dead-lettered.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kafka_broker.h"
#include "mariadb_server.h"
#include "redis_server.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace kt = klined::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

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

std::string Scaled(I128 v, int scale) {
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

std::string RefJson(const std::string& sym, const std::string& iv, int64_t open, int64_t len,
                    const std::vector<const RefTrade*>& trades, int64_t carry_cents, bool closed) {
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
std::pair<std::vector<std::string>, std::string> Expected(const std::vector<RefTrade>& all,
                                                          const std::string& sym,
                                                          const std::string& iv, int64_t len) {
  std::map<int64_t, std::vector<const RefTrade*>> buckets;
  for (const RefTrade& t : all) {
    if (t.symbol == sym) buckets[t.time_ms - t.time_ms % len].push_back(&t);
  }
  std::vector<std::string> hist;
  std::string current;
  const int64_t first = buckets.begin()->first, last = buckets.rbegin()->first;
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

std::string TradeJson(const RefTrade& t) {
  return "{\"e\":\"trade\",\"s\":\"" + t.symbol + "\",\"t\":" + std::to_string(t.id) + ",\"p\":\"" +
         Scaled(t.price_cents, 2) + "\",\"q\":\"" + Scaled(t.qty_milli, 3) +
         "\",\"T\":" + std::to_string(t.time_ms) + ",\"m\":" + (t.maker ? "true" : "false") + "}";
}

// ---- the stack -------------------------------------------------------------------------
const std::vector<std::pair<std::string, int64_t>> kIntervals = {
    {"1m", 60000}, {"5m", 300000}, {"1h", 3600000}};

struct Stack {
  explicit Stack(bool redis_aof = false)
      : redis(kt::RedisOptions{.appendonly = redis_aof, .extra_config = {}}) {
    Init();
  }

  kt::TempDir dir{"klined-pipeline"};
  kt::RedisServer redis;
  kt::MariaDbServer mysql;
  kt::KafkaBroker broker{kt::KafkaBrokerOptions{1, {{"trades", 4}, {"trades-dlq", 1}}}};
  int metrics_port = kt::FreePort();
  std::filesystem::path config = dir / "klined.yaml";

  void Init() {
    kt::WriteFile(
        config, "kafka:\n  brokers: \"" + broker.bootstrap() +
                    "\"\n  topic: trades\n  group: klined-it\n  dead_letter_topic: trades-dlq\n"
                    "  properties:\n    session.timeout.ms: \"6000\"\n"
                    "    heartbeat.interval.ms: \"500\"\n"
                    "redis:\n  address: \"" +
                    redis.address() +
                    "\"\n"
                    "mysql:\n  host: 127.0.0.1\n  port: " +
                    std::to_string(mysql.port()) + "\n  user: " + mysql.user() +
                    "\n  password: \"" + mysql.password() + "\"\n  database: " + mysql.database() +
                    "\n"
                    "intervals: [1m, 5m, 1h]\nflush_interval_ms: 100\nshards: 2\n"
                    "metrics:\n  listen: \"127.0.0.1:" +
                    std::to_string(metrics_port) + "\"\n");
  }

  std::unique_ptr<kt::Subprocess> StartKlined(const std::string& name) {
    const char* build = std::getenv("KLINED_BUILD");
    const std::string bin = std::string(build ? build : "build") + "/src/app/klined";
    auto p = std::make_unique<kt::Subprocess>(
        bin, std::vector<std::string>{"--config", config.string()},
        kt::SubprocessOptions{.log_dir = dir.path(), .name = name, .env = {}, .cwd = {}});
    return p;
  }

  // Waits until every symbol's watermark reached its last trade id.
  bool WaitForWatermarks(const std::map<std::string, int64_t>& last_id, seconds timeout) {
    kt::RedisClient rc = redis.Connect();
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

  void CheckCandles(const std::vector<RefTrade>& trades, const std::vector<std::string>& symbols) {
    kt::RedisClient rc = redis.Connect();
    for (const std::string& sym : symbols) {
      for (const auto& [iv, len] : kIntervals) {
        auto [hist, current] = Expected(trades, sym, iv, len);
        const std::string base = "kline:{" + sym + "}:" + iv;
        CAPTURE(base);
        CHECK(rc.Get(base) == current);
        CHECK(rc.Strings({"ZRANGE", base + ":hist", "0", "-1"}) == hist);
      }
      CHECK(rc.Integer({"SISMEMBER", "kline:symbols", sym}) == 1);
    }
  }

  std::string Metrics() {
    std::string out;
    const std::string cmd = "curl -s http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics";
    FILE* f = popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    if (f) pclose(f);
    return out;
  }
};

std::vector<RefTrade> MakeTrades(const std::vector<std::string>& symbols, int per_symbol,
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

std::map<std::string, int64_t> LastIds(const std::vector<RefTrade>& trades) {
  std::map<std::string, int64_t> last;
  for (const RefTrade& t : trades) last[t.symbol] = std::max(last[t.symbol], t.id);
  return last;
}

double MetricValue(const std::string& text, const std::string& series) {
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

}  // namespace

TEST_CASE("pipeline: Redis equals the independent computation; duplicates and bad input handled") {
  Stack stack;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOL_USDT", "doge.usdt",
                                            "XRP-USD", "A",       "BNBUSDT",  "ADAUSDT"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 300, 42);
  auto klined = stack.StartKlined("klined");

  kt::Producer producer(stack.broker.bootstrap());
  int sent = 0;
  for (const RefTrade& t : trades) {
    producer.Produce("trades", t.symbol, TradeJson(t));
    // Re-send every 7th trade (a producer retry): must count once.
    if (++sent % 7 == 0) producer.Produce("trades", t.symbol, TradeJson(t));
  }
  // Bad input: malformed JSON, a bad symbol, and an array with one good and one bad element.
  producer.Produce("trades", std::nullopt, "{\"s\":\"BTCUSDT\",\"t\":");
  producer.Produce("trades", std::nullopt,
                   "{\"s\":\"BAD SYMBOL\",\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1}");
  // (Its good element carries the time of ETHUSDT's first trade: a trade from 1970 would make
  // the series start there, which is a separate, known gap-fill cost issue.)
  const std::string t0 = std::to_string(trades[300].time_ms);
  producer.Produce("trades", std::string("ETHUSDT"),
                   "[{\"s\":\"ETHUSDT\",\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":" + t0 +
                       "},"
                       "{\"s\":\"ETHUSDT\",\"t\":2,\"p\":-1,\"q\":\"1\",\"T\":" +
                       t0 + "}]");
  producer.Flush();

  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  stack.CheckCandles(trades, symbols);

  // The array's good element has id 1 <= ETHUSDT's watermark: a duplicate, like the re-sends.
  const std::string metrics = stack.Metrics();
  CHECK(MetricValue(metrics, "klined_trades_duplicate_total") == doctest::Approx(sent / 7 + 1));
  CHECK(MetricValue(metrics, "klined_trades_rejected_total{reason=\"malformed_json\"}") == 1);
  CHECK(MetricValue(metrics, "klined_trades_rejected_total{reason=\"bad_symbol\"}") == 1);
  CHECK(MetricValue(metrics, "klined_trades_rejected_total{reason=\"non_positive\"}") == 1);
  const auto dlq = kt::ConsumeAll(stack.broker.bootstrap(), "trades-dlq", seconds(10), 3);
  REQUIRE(dlq.size() == 3);
  std::multiset<std::string> reasons;
  for (const auto& m : dlq) reasons.insert(m.Header("klined-reject-reason").value_or("?"));
  CHECK(reasons == std::multiset<std::string>{"bad_symbol", "malformed_json", "non_positive"});

  klined->Terminate();
  auto st = klined->Wait(seconds(30));
  REQUIRE(st.has_value());
  CHECK(st->Exited());
  CHECK(st->Code() == 0);
}

TEST_CASE("pipeline: kill -9 mid-stream, restart, resend everything: no loss, no double count") {
  Stack stack;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "LTCUSDT", "DOTUSDT"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 400, 7);
  auto klined = stack.StartKlined("klined-1");
  kt::Producer producer(stack.broker.bootstrap());
  const size_t half = trades.size() / 2;
  for (size_t i = 0; i < half; ++i)
    producer.Produce("trades", trades[i].symbol, TradeJson(trades[i]));
  producer.Flush();
  // Let part of it reach Redis, then kill without any chance to flush or commit.
  kt::RedisClient rc = stack.redis.Connect();
  for (int i = 0; i < 300 && !rc.Get("kline:{" + symbols[0] + "}:wm").has_value(); ++i) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  klined->Kill();
  klined->Wait(seconds(10));
  for (size_t i = half; i < trades.size(); ++i)
    producer.Produce("trades", trades[i].symbol, TradeJson(trades[i]));
  producer.Flush();
  auto klined2 = stack.StartKlined("klined-2");
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(90)), klined2->OutputTail());
  stack.CheckCandles(trades, symbols);
  klined2->Terminate();
  auto st = klined2->Wait(seconds(30));
  REQUIRE(st.has_value());
  CHECK(st->Code() == 0);
}

namespace {

// Produces `trades` keyed by symbol, then waits until Redis has each symbol's last id.
void ProduceAndWait(Stack* stack, kt::Producer* producer, const std::vector<RefTrade>& trades,
                    const std::vector<RefTrade>& all_so_far, kt::Subprocess* klined,
                    int32_t partition = RD_KAFKA_PARTITION_UA) {
  for (const RefTrade& t : trades) producer->Produce("trades", t.symbol, TradeJson(t), partition);
  producer->Flush();
  REQUIRE_MESSAGE(stack->WaitForWatermarks(LastIds(all_so_far), seconds(60)), klined->OutputTail());
}

}  // namespace

TEST_CASE(
    "pipeline: late trades update history and re-carry closes; older ones extend the series") {
  Stack stack;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int64_t m0 = now - now % 60000 - 30 * 60000;  // a minute boundary 30 minutes ago
  std::vector<RefTrade> all;
  int64_t id = 100;
  // Minutes 0-2 and 6-9 have trades; 3-5 are empty and carry minute 2's close.
  for (int minute : {0, 1, 2, 6, 7, 8, 9}) {
    for (int k = 0; k < 5; ++k) {
      all.push_back(RefTrade{"BTCUSDT", ++id, m0 + minute * 60000 + k * 1000, 5000000 + id,
                             1000 + k, k % 2 == 0});
    }
  }
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  ProduceAndWait(&stack, &producer, all, all, klined.get());
  stack.CheckCandles(all, {"BTCUSDT"});

  // A late trade in minute 2 (already in history): the highest id there, so minute 2's new
  // close, re-carried into the empty minutes 3-5.
  std::vector<RefTrade> late = {RefTrade{"BTCUSDT", ++id, m0 + 2 * 60000 + 59000, 4242, 7, false}};
  all.insert(all.end(), late.begin(), late.end());
  ProduceAndWait(&stack, &producer, late, all, klined.get());
  stack.CheckCandles(all, {"BTCUSDT"});

  // Older than the stored series: the series now starts 3 minutes earlier (and the 5m/1h
  // buckets it lands in are merged or extended the same way).
  late = {RefTrade{"BTCUSDT", ++id, m0 - 3 * 60000 + 500, 3131, 2, true}};
  all.insert(all.end(), late.begin(), late.end());
  ProduceAndWait(&stack, &producer, late, all, klined.get());
  stack.CheckCandles(all, {"BTCUSDT"});

  // A bucket trimmed from Redis: the trade goes to B:late for the MySQL worker, atomically
  // with the watermark; the other intervals still take it in Redis.
  kt::RedisClient rc = stack.redis.Connect();
  const std::string first_open = std::to_string(m0 - 3 * 60000);
  rc.Command({"ZREMRANGEBYSCORE", "kline:{BTCUSDT}:1m:hist", first_open, first_open});
  rc.Command({"HSET", "kline:{BTCUSDT}:trimmed", "1m", first_open});
  const RefTrade trimmed{"BTCUSDT", ++id, m0 - 3 * 60000 + 900, 2929, 5, false};
  producer.Produce("trades", trimmed.symbol, TradeJson(trimmed));
  producer.Flush();
  all.push_back(trimmed);
  REQUIRE(stack.WaitForWatermarks(LastIds(all), seconds(30)));
  CHECK(rc.Get("kline:{BTCUSDT}:wm") == std::to_string(trimmed.id));
  const auto rec = rc.Command(
      {"HGET", "kline:{BTCUSDT}:late", "1m|" + first_open + "|" + std::to_string(trimmed.id)});
  REQUIRE(rec);
  REQUIRE(rec->type == REDIS_REPLY_STRING);
  CHECK(std::string(rec->str, rec->len) ==
        "{\"s\":\"BTCUSDT\",\"t\":" + std::to_string(trimmed.id) +
            ",\"p\":\"29.29\",\"q\":\"0.005\",\"T\":" + std::to_string(trimmed.time_ms) +
            ",\"m\":false}");
  CHECK(rc.Integer({"SISMEMBER", "kline:late", "BTCUSDT"}) == 1);
  for (const auto& [iv, len] : kIntervals) {
    if (iv == "1m") continue;
    auto [hist, current] = Expected(all, "BTCUSDT", iv, len);
    CHECK(rc.Get("kline:{BTCUSDT}:" + iv) == current);
    CHECK(rc.Strings({"ZRANGE", "kline:{BTCUSDT}:" + iv + ":hist", "0", "-1"}) == hist);
  }
  klined->Terminate();
  CHECK(klined->Wait(seconds(30)).has_value());
}

TEST_CASE("pipeline: Redis restarted and down for a while mid-stream: nothing lost or doubled") {
  Stack stack(/*redis_aof=*/true);
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 300, 11);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  const size_t third = trades.size() / 3;
  std::vector<RefTrade> part(trades.begin(), trades.begin() + third);
  // Symbols' trades are interleaved per symbol in MakeTrades; produce by index ranges.
  for (size_t i = 0; i < third; ++i)
    producer.Produce("trades", trades[i].symbol, TradeJson(trades[i]));
  producer.Flush();
  std::this_thread::sleep_for(milliseconds(800));
  stack.redis.Restart();  // quick restart (AOF keeps the data)
  for (size_t i = third; i < 2 * third; ++i)
    producer.Produce("trades", trades[i].symbol, TradeJson(trades[i]));
  producer.Flush();
  std::this_thread::sleep_for(milliseconds(500));
  stack.redis.Stop();  // down for a while: klined keeps merging, commits nothing
  for (size_t i = 2 * third; i < trades.size(); ++i)
    producer.Produce("trades", trades[i].symbol, TradeJson(trades[i]));
  producer.Flush();
  std::this_thread::sleep_for(seconds(3));
  CHECK(klined->Running());
  stack.redis.Start();
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  stack.CheckCandles(trades, symbols);
  klined->Terminate();
  auto st = klined->Wait(seconds(30));
  REQUIRE(st.has_value());
  CHECK(st->Code() == 0);
}

TEST_CASE("pipeline: one symbol's trades split across partitions reach one owner shard") {
  Stack stack;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "XRPUSDT", "ADAUSDT", "DOTUSDT"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 200, 5);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  // Chunks of each symbol's id sequence go to different explicit partitions (as a producer
  // that does not key by symbol would), in order, each chunk applied before the next is sent.
  std::vector<RefTrade> sent;
  for (int chunk = 0; chunk < 4; ++chunk) {
    std::vector<RefTrade> batch;
    for (const std::string& sym : symbols) {
      int seen = 0;
      for (const RefTrade& t : trades) {
        if (t.symbol != sym) continue;
        if (seen++ / 50 == chunk) batch.push_back(t);
      }
    }
    sent.insert(sent.end(), batch.begin(), batch.end());
    ProduceAndWait(&stack, &producer, batch, sent, klined.get(), /*partition=*/chunk % 4);
  }
  stack.CheckCandles(trades, symbols);
  klined->Terminate();
  CHECK(klined->Wait(seconds(30)).has_value());
}
