// Timer jobs end to end, with the real klined binary: rollover of idle symbols into gapless
// history and MySQL, and the active/standby lease (kill -9, SIGTERM hand-over, a paused
// holder). Invariants: every (symbol, 1s) series is gapless up to now and MySQL holds every
// closed candle exactly as Redis does; exactly one instance runs the jobs, and a standby
// takes over within 2 x lease.ttl_ms of the holder's death.
#include "stack.h"

#include <optional>
#include <set>

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

namespace {

constexpr char kJobsTail[] =
    "intervals: [1s, 1m]\nlease:\n  ttl_ms: 1000\nrollover_grace_ms: 500\n";

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "t" and the given string field of a candle JSON.
int64_t OpenTime(const std::string& json) { return std::stoll(json.substr(5, json.find(',') - 5)); }
std::string Field(const std::string& json, const std::string& name) {
  const std::string key = "\"" + name + "\":";
  size_t b = json.find(key) + key.size();
  if (json[b] == '"') ++b;
  size_t e = b;
  while (json[e] != '"' && json[e] != ',' && json[e] != '}') ++e;
  return json.substr(b, e - b);
}
// MySQL DECIMAL(38,18) text -> canonical decimal text.
std::string Canonical(std::string d) {
  if (d.find('.') != std::string::npos) {
    while (d.back() == '0') d.pop_back();
    if (d.back() == '.') d.pop_back();
  }
  return d;
}

bool Held(const Stack& stack, int port) {
  return MetricValue(stack.Metrics(port), "klined_lease_held") == 1;
}

// Waits until `pred` holds, up to `timeout`; returns how long it took.
template <class Pred>
std::optional<milliseconds> WaitFor(Pred pred, milliseconds timeout,
                                    milliseconds step = milliseconds(20)) {
  const auto start = Clock::now();
  while (Clock::now() - start < timeout) {
    if (pred()) return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    std::this_thread::sleep_for(step);
  }
  return std::nullopt;
}

void ProduceTrades(Stack* stack, const std::vector<RefTrade>& trades) {
  kt::Producer producer(stack->broker.bootstrap());
  for (const RefTrade& t : trades) producer.Produce("trades", t.symbol, TradeJson(t));
  producer.Flush();
}

// Every 1s candle of `sym` in Redis is gapless up to a current candle within 1.5 s of now,
// and every closed one equals its MySQL row. Returns the number of closed candles.
size_t CheckGaplessAndPersisted(Stack* stack, const std::string& sym) {
  kt::RedisClient rc = stack->redis.Connect();
  const auto hist = rc.Strings({"ZRANGE", "kline:{" + sym + "}:1s:hist", "0", "-1"});
  const auto cur = rc.Get("kline:{" + sym + "}:1s");
  REQUIRE(cur.has_value());
  REQUIRE(!hist.empty());
  CHECK(NowMs() - OpenTime(*cur) < 1500);
  for (size_t i = 1; i < hist.size(); ++i) {
    CAPTURE(hist[i]);
    CHECK(OpenTime(hist[i]) == OpenTime(hist[i - 1]) + 1000);
    if (Field(hist[i], "n") == "0") CHECK(Field(hist[i], "o") == Field(hist[i - 1], "c"));
  }
  CHECK(OpenTime(*cur) == OpenTime(hist.back()) + 1000);
  const auto rows = stack->mysql.Query(
      "SELECT open_time, open, high, low, close, volume, trades, first_trade_id FROM kline "
      "WHERE symbol='" +
      sym + "' AND `interval`='1s' ORDER BY open_time");
  std::map<int64_t, std::vector<std::string>> by_time;
  for (const auto& r : rows) by_time[std::stoll(r[0])] = r;
  for (const std::string& h : hist) {
    CAPTURE(h);
    auto it = by_time.find(OpenTime(h));
    REQUIRE(it != by_time.end());
    const auto& r = it->second;
    CHECK(Canonical(r[1]) == Field(h, "o"));
    CHECK(Canonical(r[2]) == Field(h, "h"));
    CHECK(Canonical(r[3]) == Field(h, "l"));
    CHECK(Canonical(r[4]) == Field(h, "c"));
    CHECK(Canonical(r[5]) == Field(h, "v"));
    CHECK(r[6] == Field(h, "n"));
    CHECK(r[7] == Field(h, "f"));
  }
  return hist.size();
}

}  // namespace

TEST_CASE("failover: idle symbols roll over into gapless history, and MySQL holds it all") {
  Stack stack(false, kJobsTail);
  auto klined = stack.StartKlined("klined");
  const int64_t now = NowMs();
  ProduceTrades(&stack, {RefTrade{"BTCUSDT", 1, now - 2500, 4321050, 1500, false},
                         RefTrade{"BTCUSDT", 2, now - 2400, 4321100, 2000, true},
                         RefTrade{"ETHUSDT", 7, now - 2000, 312025, 10, false}});
  // Several 1s boundaries pass with no trade at all: the lease holder rolls both symbols.
  REQUIRE_MESSAGE(WaitFor([&] { return Held(stack, stack.metrics_port); }, seconds(15)),
                  klined->OutputTail());
  std::this_thread::sleep_for(seconds(5));
  // Let the last closed candles reach MySQL (persist_interval_ms 500).
  std::this_thread::sleep_for(milliseconds(1500));
  for (const std::string sym : {"BTCUSDT", "ETHUSDT"}) {
    CAPTURE(sym);
    CHECK(CheckGaplessAndPersisted(&stack, sym) >= 5);
  }
  StopCleanly(*klined);
}

TEST_CASE("failover: kill -9 of the lease holder; the standby takes over within 2 x ttl") {
  Stack stack(false, kJobsTail);
  int port_a = 0, port_b = 0;
  auto a = stack.StartInstance("klined-a", &port_a);
  REQUIRE_MESSAGE(WaitFor([&] { return Held(stack, port_a); }, seconds(15)), a->OutputTail());
  auto b = stack.StartInstance("klined-b", &port_b);
  REQUIRE(WaitFor([&] { return !stack.Metrics(port_b).empty(); }, seconds(15)));
  std::this_thread::sleep_for(seconds(1));
  CHECK_FALSE(Held(stack, port_b));  // exactly one holder

  const int64_t now = NowMs();
  std::vector<RefTrade> trades;
  for (int i = 1; i <= 50; ++i) {
    trades.push_back(RefTrade{i % 2 ? "BTCUSDT" : "ETHUSDT", 100 + i, now - 3000 + i * 20,
                              4000000 + i, 100 + i, i % 3 == 0});
  }
  ProduceTrades(&stack, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));

  a->Kill();
  const auto took = WaitFor([&] { return Held(stack, port_b); }, seconds(10), milliseconds(10));
  REQUIRE(took.has_value());
  MESSAGE("standby took over after " << took->count() << " ms (ttl 1000 ms)");
  CHECK(took->count() <= 2000);

  // The survivor (now owning every partition) keeps the series gapless and persisted.
  std::this_thread::sleep_for(seconds(4));
  for (const std::string sym : {"BTCUSDT", "ETHUSDT"}) {
    CAPTURE(sym);
    CheckGaplessAndPersisted(&stack, sym);
  }
  // And the trades were counted exactly once: the 1m candles equal the reference.
  kt::RedisClient rc = stack.redis.Connect();
  for (const std::string sym : {"BTCUSDT", "ETHUSDT"}) {
    int64_t n = 0;
    for (const auto& h : rc.Strings({"ZRANGE", "kline:{" + sym + "}:1m:hist", "0", "-1"})) {
      n += std::stoll(Field(h, "n"));
    }
    n += std::stoll(Field(*rc.Get("kline:{" + sym + "}:1m"), "n"));
    CHECK(n == 25);
  }
  b->Terminate();
  CHECK(b->Wait(seconds(30)).has_value());
}

TEST_CASE("failover: SIGTERM hands the lease over at once; a paused holder stops its jobs") {
  Stack stack(false, kJobsTail);
  int port_a = 0, port_b = 0;
  auto a = stack.StartInstance("klined-a", &port_a);
  REQUIRE_MESSAGE(WaitFor([&] { return Held(stack, port_a); }, seconds(15)), a->OutputTail());
  auto b = stack.StartInstance("klined-b", &port_b);
  REQUIRE(WaitFor([&] { return !stack.Metrics(port_b).empty(); }, seconds(15)));

  SUBCASE("SIGTERM: released, the standby holds well before the ttl would have expired") {
    a->Terminate();
    const auto took = WaitFor([&] { return Held(stack, port_b); }, seconds(10), milliseconds(10));
    REQUIRE(took.has_value());
    MESSAGE("hand-over after " << took->count() << " ms");
    CHECK(took->count() < 1000);
    auto st = a->Wait(seconds(30));
    REQUIRE(st.has_value());
    CHECK(st->Code() == 0);
  }
  SUBCASE("SIGSTOP past the ttl, then SIGCONT: the paused holder must not act on a lost lease") {
    a->Pause();
    const auto took = WaitFor([&] { return Held(stack, port_b); }, seconds(10), milliseconds(10));
    REQUIRE(took.has_value());
    CHECK(took->count() <= 2000);
    std::this_thread::sleep_for(seconds(2));
    a->Resume();
    // A wakes up past its deadline: it reports not holding; B keeps the lease.
    REQUIRE(WaitFor([&] { return !Held(stack, port_a); }, seconds(5)));
    std::this_thread::sleep_for(seconds(2));
    CHECK_FALSE(Held(stack, port_a));
    CHECK(Held(stack, port_b));
    a->Terminate();
    CHECK(a->Wait(seconds(30)).has_value());
  }
  b->Terminate();
  CHECK(b->Wait(seconds(30)).has_value());
}

TEST_CASE("failover: MySQL down for a while under load; everything reaches it afterwards") {
  Stack stack(false, kJobsTail, "  history_limit: 3\n");
  auto klined = stack.StartKlined("klined");
  REQUIRE_MESSAGE(WaitFor([&] { return Held(stack, stack.metrics_port); }, seconds(15)),
                  klined->OutputTail());
  stack.mysql.Stop();
  std::vector<RefTrade> trades;
  const auto start = Clock::now();
  int64_t id = 0;
  while (Clock::now() - start < seconds(4)) {  // trades keep arriving while MySQL is down
    std::vector<RefTrade> batch;
    for (int k = 0; k < 20; ++k) {
      batch.push_back(
          RefTrade{"BTCUSDT", ++id, NowMs(), 4000000 + id % 50, 10 + id % 7, id % 2 == 0});
    }
    ProduceTrades(&stack, batch);
    trades.insert(trades.end(), batch.begin(), batch.end());
    std::this_thread::sleep_for(milliseconds(200));
  }
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  CHECK(MetricValue(stack.Metrics(), "klined_persist_failures_total") > 0);
  // Nothing unpersisted was trimmed: all closed 1s candles are still in Redis (limit is 3).
  kt::RedisClient rc = stack.redis.Connect();
  CHECK(rc.Integer({"ZCARD", "kline:{BTCUSDT}:1s:hist"}) > 3);
  stack.mysql.Start();
  REQUIRE(WaitFor(
      [&] {
        return rc.Integer({"HLEN", "kline:{BTCUSDT}:pending"}) == 0;
      },
      seconds(20)));
  // MySQL has every closed 1s candle from the first trade's second on, gapless.
  const auto rows = stack.mysql.Query(
      "SELECT open_time, trades FROM kline WHERE symbol='BTCUSDT' AND `interval`='1s' "
      "ORDER BY open_time");
  REQUIRE(rows.size() >= 4);
  int64_t total = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i > 0) CHECK(std::stoll(rows[i][0]) == std::stoll(rows[i - 1][0]) + 1000);
    total += std::stoll(rows[i][1]);
  }
  total += std::stoll(Field(*rc.Get("kline:{BTCUSDT}:1s"), "n"));
  CHECK(total == static_cast<int64_t>(trades.size()));
  klined->Terminate();
  CHECK(klined->Wait(seconds(30)).has_value());
}
