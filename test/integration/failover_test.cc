// Timer jobs end to end, with the real klined binary: rollover of idle symbols into gapless
// history and MySQL, and the active/standby lease (kill -9, SIGTERM hand-over, a paused
// holder). Invariants: every (symbol, 1s) series is gapless up to now and MySQL holds every
// closed candle exactly as Redis does; exactly one instance runs the jobs, and a standby
// takes over within 2 x lease.ttl_ms of the holder's death.
#include "stack.h"

#include "io/redis/cluster/slot_map.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <set>

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

namespace {

constexpr char kJobsTail[] =
    "intervals: [1s, 1m]\nlease:\n  ttl_ms: 1000\nrollover_grace_ms: 500\n";

// "t" of a candle JSON (Field, in stack.h, reads the others).
int64_t OpenTime(const std::string& json) { return std::stoll(json.substr(5, json.find(',') - 5)); }

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

// Every candle of `hist` (JSON, closed) has its row in MySQL's kline table, equal. The
// newest may have closed just now, so the rows get a few persistence intervals to appear.
void CheckInMysql(Stack* stack, const std::string& sym, const std::string& iv,
                  const std::vector<std::string>& hist) {
  std::map<int64_t, std::vector<std::string>> by_time;
  WaitFor(
      [&] {
        by_time.clear();
        for (auto& r : stack->mysql.Query(
                 "SELECT open_time, open, high, low, close, volume, trades, first_trade_id "
                 "FROM kline WHERE symbol='" +
                 sym + "' AND `interval`='" + iv + "'")) {
          by_time[std::stoll(r[0])] = std::move(r);
        }
        return std::all_of(hist.begin(), hist.end(),
                           [&](const std::string& h) { return by_time.contains(OpenTime(h)); });
      },
      seconds(10), milliseconds(200));
  for (const std::string& h : hist) {
    CAPTURE(h);
    const auto it = by_time.find(OpenTime(h));
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
}

// Every 1s candle of `sym` in Redis is gapless up to a current candle within 1.5 s of now,
// and every closed one equals its MySQL row. Returns the number of closed candles.
size_t CheckGaplessAndPersisted(Stack* stack, const std::string& sym) {
  kt::RedisClient rc = stack->Redis();
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
  CheckInMysql(stack, sym, "1s", hist);
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
  std::this_thread::sleep_for(seconds(5));  // idle for 5 s: what is tested
  // CheckInMysql waits for the newest closed candles to reach MySQL.
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
  // Exactly one holder: b, up and retrying every 250 ms, never gets the lease for a second.
  CHECK_FALSE(WaitFor([&] { return Held(stack, port_b); }, seconds(1), milliseconds(50)));

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

  // The survivor keeps the series gapless and persisted: once it has rolled several
  // boundaries on its own (its current 1s candles 3 s past the takeover).
  const int64_t took_over = NowMs();
  kt::RedisClient survivor = stack.Redis();
  REQUIRE(WaitFor(
      [&] {
        for (const std::string sym : {"BTCUSDT", "ETHUSDT"}) {
          const auto cur = survivor.Get("kline:{" + sym + "}:1s");
          if (!cur || OpenTime(*cur) < took_over + 3000) return false;
        }
        return true;
      },
      seconds(15)));
  for (const std::string sym : {"BTCUSDT", "ETHUSDT"}) {
    CAPTURE(sym);
    CheckGaplessAndPersisted(&stack, sym);
  }
  // And the trades were counted exactly once: the 1m candles equal the reference.
  kt::RedisClient rc = stack.Redis();
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
    std::this_thread::sleep_for(seconds(2));  // paused past the takeover: what is tested
    a->Resume();
    // A wakes up past its deadline: it reports not holding; B keeps the lease, for the next
    // two seconds too.
    REQUIRE(WaitFor([&] { return !Held(stack, port_a); }, seconds(5)));
    CHECK_FALSE(WaitFor([&] { return Held(stack, port_a) || !Held(stack, port_b); }, seconds(2),
                        milliseconds(50)));
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
    std::this_thread::sleep_for(milliseconds(200));  // the load's pace
  }
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  CHECK(MetricValue(stack.Metrics(), "klined_persist_failures_total") > 0);
  // Nothing unpersisted was trimmed: all closed 1s candles are still in Redis (limit is 3).
  kt::RedisClient rc = stack.Redis();
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

TEST_CASE("failover: SIGTERM while Redis is stopped under trades: exits within the drain bound") {
  // The drain's flush cannot finish with Redis stopped (SIGSTOP: connections hang rather than
  // fail). klined must still exit within its drain bound (drain_timeout_ms, 5 s here, plus
  // the few seconds of timeouts of calls in flight), and a new instance must then replay what
  // was not committed: nothing lost.
  Stack stack(false, std::string(kJobsTail) + "drain_timeout_ms: 5000\n");
  auto klined = stack.StartKlined("klined");
  REQUIRE_MESSAGE(WaitFor([&] { return Held(stack, stack.metrics_port); }, seconds(15)),
                  klined->OutputTail());
  const int64_t now = NowMs();
  std::vector<RefTrade> trades;
  for (int i = 1; i <= 40; ++i) {
    trades.push_back(RefTrade{i % 2 ? "BTCUSDT" : "ETHUSDT", i, now - 4000 + i * 10, 4000000 + i,
                              100 + i, i % 3 == 0});
  }
  ProduceTrades(&stack, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));

  stack.redis.process().Pause();
  // Known symbols are applied in memory; a new one cannot even be loaded from Redis, so its
  // shard holds the batch and the batch pool runs dry behind it.
  std::map<std::string, int64_t> want_n = {{"BTCUSDT", 40}, {"ETHUSDT", 40}};
  std::vector<RefTrade> more;
  SUBCASE("known symbols") {
    for (int i = 41; i <= 80; ++i) {
      more.push_back(RefTrade{i % 2 ? "BTCUSDT" : "ETHUSDT", i, NowMs() - 500 + i, 4000000 + i,
                              100 + i, i % 3 == 0});
    }
  }
  SUBCASE("a symbol new to this instance") {
    for (int i = 1; i <= 20; ++i) {
      more.push_back(RefTrade{"SOLUSDT", i, NowMs() - 500 + i, 150000 + i, 100 + i, false});
    }
    want_n = {{"BTCUSDT", 20}, {"ETHUSDT", 20}, {"SOLUSDT", 20}};
  }
  ProduceTrades(&stack, more);
  trades.insert(trades.end(), more.begin(), more.end());
  // Consumed (routed to the shards), not flushed.
  REQUIRE_MESSAGE(WaitFor(
                      [&] {
                        return MetricValue(stack.Metrics(), "klined_trades_consumed_total") ==
                               static_cast<double>(trades.size());
                      },
                      seconds(15)),
                  klined->OutputTail());

  const auto t0 = Clock::now();
  klined->Terminate();
  const auto st = klined->Wait(seconds(5 + 12));
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
  stack.redis.process().Resume();
  REQUIRE_MESSAGE(st.has_value(), "still draining after " << took.count() << " ms\n"
                                                          << klined->OutputTail());
  MESSAGE("exited " << took.count() << " ms after SIGTERM with Redis stopped");
  CHECK(st->Code() == 0);
  CHECK(klined->Stderr().find("event=drain.incomplete") != std::string::npos);

  // What the drain could not flush was not committed: the next instance replays it (or the
  // writes Redis still had buffered land when it resumes); either way each trade counts once.
  auto again = stack.StartKlined("klined-2");
  REQUIRE_MESSAGE(
      WaitFor([&] { return MetricValue(stack.Metrics(), "klined_ready") == 1; }, seconds(30)),
      again->OutputTail());
  CHECK_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), again->OutputTail());
  kt::RedisClient rc = stack.Redis();
  for (const auto& [sym, want] : want_n) {
    int64_t n = std::stoll(Field(*rc.Get("kline:{" + sym + "}:1m"), "n"));
    for (const auto& h : rc.Strings({"ZRANGE", "kline:{" + sym + "}:1m:hist", "0", "-1"})) {
      n += std::stoll(Field(h, "n"));
    }
    CHECK_MESSAGE(n == want, sym);
  }
  StopCleanly(*again);
}

// Chaos soak (make chaos; KLINED_CHAOS_SECONDS=N, not in the default run): two instances in
// one group under a stream of trades with duplicates and bad messages, while at random they
// are killed with SIGKILL or SIGTERM and restarted, and Redis is restarted or stopped for a
// while. At the end every candle in Redis must equal the independent computation (each trade
// once) and every closed candle must be in MySQL exactly as in Redis.
// KLINED_CHAOS_CLUSTER=1 (make chaos-cluster): the same on a Redis Cluster of three primaries
// and three replicas with redis.wait_replicas 1, its faults a primary killed with SIGKILL
// (its replica promoted, the old primary back as a replica), two primaries paused past the
// node timeout (CLUSTERDOWN on the third) and a busy symbol's slot moved, keys a few at a
// time (MOVED, ASK, TRYAGAIN).
TEST_CASE(
    "chaos: kill -9, SIGTERM, Redis restarts and outages under load; nothing lost or doubled" *
    doctest::skip(std::getenv("KLINED_CHAOS_SECONDS") == nullptr)) {
  const int chaos_seconds = std::atoi(std::getenv("KLINED_CHAOS_SECONDS"));
  const uint64_t seed = std::getenv("KLINED_CHAOS_SEED")
                            ? std::strtoull(std::getenv("KLINED_CHAOS_SEED"), nullptr, 10)
                            : static_cast<uint64_t>(NowMs());
  const char* cluster_env = std::getenv("KLINED_CHAOS_CLUSTER");
  const bool on_cluster = cluster_env != nullptr && std::string(cluster_env) == "1";
  MESSAGE("chaos: " << chaos_seconds << " s, KLINED_CHAOS_SEED=" << seed
                    << std::string(on_cluster ? ", on a 3+3 Redis Cluster" : ""));
  std::mt19937_64 rng(seed);
  Stack stack(/*redis_aof=*/true, "",
              on_cluster ? "  wait_replicas: 1\n  wait_timeout_ms: 500\n" : "");
  if (on_cluster) stack.UseCluster();
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT",
                                            "ADAUSDT", "DOTUSDT", "LTCUSDT", "BNBUSDT"};
  // Rounds of trades: each symbol's trades of a round in id order (ids rise with time, as in a
  // real feed), interleaved by time across symbols. A later round's ids are higher but its
  // times start 20 minutes back again, so from the second round on most trades are late
  // (their buckets already closed).
  std::vector<RefTrade> trades;
  int rounds = 0;
  auto add_round = [&] {
    std::vector<RefTrade> round = MakeTrades(symbols, 2500, seed + rounds);
    for (RefTrade& t : round) t.id += int64_t{100000} * rounds;
    std::stable_sort(round.begin(), round.end(),
                     [](const RefTrade& x, const RefTrade& y) { return x.time_ms < y.time_ms; });
    trades.insert(trades.end(), round.begin(), round.end());
    ++rounds;
  };
  add_round();

  struct Instance {
    std::string name;
    std::filesystem::path config;
    std::unique_ptr<kt::Subprocess> proc;
    int starts = 0;
  };
  std::array<Instance, 2> inst{Instance{"a", stack.config, nullptr, 0},
                               Instance{"b", stack.InstanceConfig("b"), nullptr, 0}};
  auto restart = [&](Instance& i) {  // logs a-0, a-1, ...
    i.proc = stack.StartKlinedWith(i.name + "-" + std::to_string(i.starts++), i.config);
  };
  for (Instance& i : inst) restart(i);

  // Cluster faults: the primaries now (one per third of the slots, as created; a slot moved
  // by a fault stays with its symbol).
  constexpr std::array<int, 3> kThirds = {0, 5461, 10923};
  auto primaries = [&] {
    std::vector<kt::RedisServer*> out;
    for (int slot : kThirds) out.push_back(&stack.cluster->PrimaryOf(slot));
    return out;
  };
  auto kill_primary = [&] {
    const int third = kThirds[rng() % 3];
    kt::RedisServer& victim = stack.cluster->PrimaryOf(third);
    victim.process().Kill();
    victim.process().Wait(milliseconds(5000));
    // Its replica promoted (a restart before that would bring back an empty primary).
    REQUIRE(WaitFor([&] { return &stack.cluster->PrimaryOf(third) != &victim; }, seconds(20)));
    stack.cluster->WaitHealthy();
    std::this_thread::sleep_for(milliseconds(rng() % 1000));
    victim.Start();  // back as the promoted node's replica
    stack.cluster->WaitHealthy();
    stack.cluster->WaitSynced();
  };
  auto no_majority = [&] {
    std::vector<kt::RedisServer*> p = primaries();
    std::shuffle(p.begin(), p.end(), rng);
    p[0]->process().Pause();
    p[1]->process().Pause();
    std::this_thread::sleep_for(milliseconds(2000 + rng() % 1500));  // node timeout 1 s
    p[0]->process().Resume();
    p[1]->process().Resume();
    stack.cluster->WaitHealthy();
  };
  auto move_slot = [&] {
    const uint16_t slot = klined::cluster::KeySlot(symbols[rng() % symbols.size()]);
    stack.cluster->MoveSlot(slot, stack.cluster->OtherPrimary(slot), {}, 2, milliseconds(30));
  };

  kt::Producer producer(stack.broker.bootstrap());
  std::map<std::string, int> events;
  size_t next = 0;
  std::vector<std::pair<size_t, size_t>> chunks;
  const auto start = Clock::now();
  while (Clock::now() - start < seconds(chaos_seconds)) {
    // A round a minute at most: the test broker keeps ~5 MiB per partition.
    if (next == trades.size() && Clock::now() - start > seconds(60) * rounds) add_round();
    if (next < trades.size()) {
      const size_t n = std::min<size_t>(trades.size() - next, 20 + rng() % 300);
      for (size_t k = next; k < next + n; ++k)
        producer.Produce("trades", trades[k].symbol, TradeJson(trades[k]));
      chunks.emplace_back(next, next + n);
      next += n;
    }
    producer.Flush();
    std::this_thread::sleep_for(milliseconds(100 + rng() % 400));
    Instance& victim = inst[rng() % 2];
    switch (rng() % 20) {
      case 0:
      case 1:
        victim.proc->Kill();
        victim.proc->Wait(seconds(10));
        std::this_thread::sleep_for(milliseconds(rng() % 1500));
        restart(victim);
        ++events["kill -9 + restart"];
        break;
      case 2: {
        victim.proc->Terminate();
        const auto st = victim.proc->Wait(seconds(60));
        CHECK_MESSAGE(st.has_value(), victim.proc->OutputTail());
        if (st.has_value()) CHECK(st->Code() == 0);
        restart(victim);
        ++events["SIGTERM + restart"];
        break;
      }
      case 3:
        if (on_cluster) {
          kill_primary();
          ++events["primary kill -9, failover, back as a replica"];
        } else {
          stack.redis.Restart();
          ++events["Redis restart"];
        }
        break;
      case 4:
        if (on_cluster) {
          no_majority();
          ++events["two primaries paused (CLUSTERDOWN)"];
        } else {
          stack.redis.Stop();
          std::this_thread::sleep_for(milliseconds(500 + rng() % 2000));
          stack.redis.Start();
          ++events["Redis down for a while"];
        }
        break;
      case 5:
      case 6:
        if (!chunks.empty()) {  // an earlier chunk again: duplicates
          const auto [b, e] = chunks[rng() % chunks.size()];
          for (size_t k = b; k < e; ++k)
            producer.Produce("trades", trades[k].symbol, TradeJson(trades[k]));
          ++events["chunk re-sent"];
        }
        break;
      case 7:
        producer.Produce("trades", "BTCUSDT", "{\"e\":\"trade\",\"s\":");
        ++events["malformed message"];
        break;
      case 8:
        if (on_cluster) {
          move_slot();
          ++events["slot moved under load"];
        }
        break;
      default:
        break;
    }
  }
  // Everything not yet sent, then both instances must be up and catch up.
  for (size_t k = next; k < trades.size(); ++k)
    producer.Produce("trades", trades[k].symbol, TradeJson(trades[k]));
  producer.Flush();
  for (Instance& i : inst) {
    if (!i.proc->Running()) {
      MESSAGE("instance " << i.name << " had exited:\n" << i.proc->OutputTail());
      CHECK(false);
      restart(i);
    }
  }
  for (const auto& [what, count] : events) MESSAGE(what << ": " << count);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(180)),
                  inst[0].proc->OutputTail() << inst[1].proc->OutputTail());
  stack.CheckCandles(trades, symbols);

  // MySQL: once nothing is pending, every closed candle in Redis has its row, equal.
  kt::RedisClient rc = stack.Redis();
  REQUIRE(WaitFor([&] { return stack.NothingPending(); }, seconds(60)));
  size_t compared = 0;
  for (const std::string& sym : symbols) {
    for (const auto& [iv, len] : kIntervals) {
      const auto hist = rc.Strings({"ZRANGE", "kline:{" + sym + "}:" + iv + ":hist", "0", "-1"});
      CheckInMysql(&stack, sym, iv, hist);
      compared += hist.size();
    }
  }
  MESSAGE("chaos: " << trades.size() << " trades in " << rounds << " rounds, " << compared
                    << " closed candles equal in Redis and MySQL");
  for (Instance& i : inst) StopCleanly(*i.proc);
}
