// Redis losing its data under a running klined (FLUSHALL: as a restart without persistence or
// a failover to an empty node). Invariant: klined notices (klined_redis_data_loss_total, a log
// line) and writes back everything its shards hold: afterwards every current candle and
// watermark equals the independent computation over all trades, those before the loss
// included; it is never silently a fresh start.
#include "stack.h"

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("redis loss: FLUSHALL under klined is detected and memory is written back") {
  // 1d as well: its current bucket holds the trades flushed before the loss (the shorter
  // ones may have rolled past them).
  Stack stack(false, "intervals: [1m, 5m, 1h, 1d]\n");
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT"};
  std::vector<RefTrade> trades = MakeTrades(symbols, 80, 11);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));

  kt::RedisClient rc = stack.redis.Connect();
  rc.Command({"FLUSHALL"});

  // More trades of the same symbols, in the current buckets.
  std::vector<RefTrade> more;
  const int64_t t0 = NowMs() - 300;
  for (const std::string& sym : symbols) {
    for (int i = 1; i <= 5; ++i)
      more.push_back(RefTrade{sym, 1080 + i, t0 + i, 30000 + i, i, true});
  }
  Produce(&producer, more);
  trades.insert(trades.end(), more.begin(), more.end());
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(30)), klined->OutputTail());

  // Every current candle holds every trade of its bucket, those flushed before the loss too.
  for (const std::string& sym : symbols) {
    std::vector<std::pair<std::string, int64_t>> intervals = kIntervals;
    intervals.emplace_back("1d", 86400000);
    for (const auto& [iv, len] : intervals) {
      const std::string key = "kline:{" + sym + "}:" + iv;
      CAPTURE(key);
      std::optional<std::string> cur;
      REQUIRE(WaitUntil(
          [&] {
            cur = rc.Get(key);
            if (!cur) return false;
            const int64_t open = std::stoll(cur->substr(5, cur->find(',') - 5));
            return *cur == Expected(trades, sym, iv, len, open).second;
          },
          seconds(10)));
    }
    CHECK(rc.Integer({"SISMEMBER", "kline:symbols", sym}) == 1);
  }
  const std::string m = stack.Metrics();
  CHECK(MetricValue(m, "klined_redis_data_loss_total") == static_cast<double>(symbols.size()));
  CHECK(klined->Stderr().find("shard.redis_data_loss") != std::string::npos);
  StopCleanly(*klined);
}

TEST_CASE("redis loss: klinectl restore-redis rebuilds history from MySQL, idempotently") {
  // After the loss klined writes back its current candles; closed history is only in MySQL.
  // restore-redis (reading klined's own config) fills it back: Redis then equals the
  // independent computation again, history included; a dry run writes nothing and a second
  // run writes nothing more.
  Stack stack;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT"};
  std::vector<RefTrade> trades = MakeTrades(symbols, 60, 12);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  kt::RedisClient rc = stack.redis.Connect();
  // Every closed candle persisted (nothing pending), then the loss.
  REQUIRE(WaitUntil(
      [&] {
        return rc.NothingPending() &&
               rc.Integer({"SCARD", "kline:late"}) == 0 &&
               rc.Integer({"EXISTS", "kline:{BTCUSDT}:1m:hist"}) == 1;
      },
      seconds(30)));
  // The loss, with the dataset marker put back at once: klined's own restore (the next test)
  // stays idle, so what comes back here is the tool's work.
  rc.Command({"MULTI"});
  rc.Command({"FLUSHALL"});
  rc.Command({"SET", "kline:dataset", "set-by-the-test"});
  rc.Command({"EXEC"});
  std::vector<RefTrade> more;
  const int64_t t0 = NowMs() - 300;
  for (const std::string& sym : symbols) {
    for (int i = 1; i <= 3; ++i)
      more.push_back(RefTrade{sym, 1060 + i, t0 + i, 40000 + i, i, false});
  }
  Produce(&producer, more);
  trades.insert(trades.end(), more.begin(), more.end());
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));

  auto run = [&](std::vector<std::string> args, const std::string& name) {
    const Stack::Ran r = stack.Klinectl(std::move(args), name);
    CHECK_MESSAGE(r.code == 0, r.err);
    return r.out;
  };
  const auto written = [](const std::string& out) {
    const size_t at = out.find(" symbols, ");
    return at == std::string::npos ? -1 : std::stoll(out.substr(at + 10));
  };
  const int64_t hist_before = rc.Integer({"ZCARD", "kline:{BTCUSDT}:1m:hist"});
  const std::string dry = run({"restore-redis", "--dry-run"}, "restore-dry");
  CAPTURE(dry);
  CHECK(dry.find("(dry run)") != std::string::npos);
  CHECK(written(dry) > 0);
  CHECK(rc.Integer({"ZCARD", "kline:{BTCUSDT}:1m:hist"}) == hist_before);

  const std::string real = run({"restore-redis"}, "restore");
  CAPTURE(real);
  CHECK(written(real) > 0);
  CHECK(written(real) <= written(dry));
  const std::string again = run({"restore-redis"}, "restore-again");
  CAPTURE(again);
  CHECK(written(again) == 0);

  stack.CheckCandles(trades, symbols);
  // Redis wins at an open time it holds (a late trade's update may not be in MySQL yet).
  const std::string hist = "kline:{ETHUSDT}:5m:hist";
  const std::vector<std::string> oldest = rc.Strings({"ZRANGE", hist, "0", "0", "WITHSCORES"});
  REQUIRE(oldest.size() == 2);
  rc.Command({"ZREM", hist, oldest[0]});
  rc.Command({"ZADD", hist, oldest[1], "newer-in-redis"});
  CHECK(written(run({"restore-redis", "--symbols", "ETHUSDT"}, "restore-eth")) == 0);
  CHECK(rc.Strings({"ZRANGEBYSCORE", hist, oldest[1], oldest[1]}) ==
        std::vector<std::string>{"newer-in-redis"});
  // Nothing restored is pending: persistence does not write it twice.
  CHECK(rc.Integer({"SCARD", "kline:pending"}) <= 3);  // at most what a boundary just closed
  StopCleanly(*klined);
}

TEST_CASE("redis loss: FLUSHALL under load: the dataset marker notices, history comes back") {
  // Trades keep coming while Redis loses everything. The persistence worker finds its dataset
  // marker (PREFIX:dataset) gone and restores every symbol's history from MySQL by itself
  // (holes only), the shards write back what memory holds, and klinectl recompute over the
  // minutes before the loss brings back what was only in Redis; afterwards Redis (current
  // and history) and MySQL equal the independent computation over every trade.
  Stack stack;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT"};
  std::vector<RefTrade> trades = MakeTrades(symbols, 60, 13);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  kt::RedisClient rc = stack.redis.Connect();
  REQUIRE(WaitUntil(
      [&] {
        return rc.NothingPending() &&
               rc.Integer({"EXISTS", "kline:dataset"}) == 1;
      },
      seconds(30)));

  std::vector<RefTrade> more;
  const int64_t t0 = NowMs() - 2000;
  for (int i = 1; i <= 40; ++i) {
    for (const std::string& sym : symbols) {
      more.push_back(RefTrade{sym, 1060 + i, t0 + 10 * i, 40000 + 7 * i, i, i % 2 == 0});
    }
  }
  std::thread feeder([&] {
    kt::Producer p(stack.broker.bootstrap());
    for (size_t at = 0; at < more.size(); at += 12) {
      Produce(&p, std::vector<RefTrade>(more.begin() + static_cast<std::ptrdiff_t>(at),
                                        more.begin() + static_cast<std::ptrdiff_t>(
                                                           std::min(more.size(), at + 12))));
      std::this_thread::sleep_for(milliseconds(40));
    }
  });
  std::this_thread::sleep_for(milliseconds(150));
  const int64_t lost_at = NowMs();
  rc.Command({"FLUSHALL"});
  feeder.join();
  trades.insert(trades.end(), more.begin(), more.end());
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(30)), klined->OutputTail());
  REQUIRE_MESSAGE(WaitUntil(
                      [&] {
                        return rc.Integer({"EXISTS", "kline:dataset"}) == 1 &&
                               rc.NothingPending();
                      },
                      seconds(30)),
                  klined->OutputTail());
  // Candles the shards closed and wrote just before the loss, not yet persisted, are in
  // neither store any more (nor in memory): the restore's log line names the recompute that
  // brings them back from Kafka (from the first bucket after MySQL's newest candle).
  const std::string log = klined->Stderr();
  const size_t hint = log.find("recompute_from=", log.find("event=persist.dataset_restored"));
  REQUIRE(hint != std::string::npos);
  const int64_t from = std::stoll(log.substr(hint + 15));
  CHECK(from < lost_at);
  const Stack::Ran rec = stack.Klinectl(
      {"recompute", "--from", std::to_string(from), "--to", std::to_string(NowMs())}, "recompute");
  CAPTURE(rec.out);
  CAPTURE(rec.err);
  CHECK(rec.code == 0);
  REQUIRE(WaitUntil([&] { return rc.NothingPending(); }, seconds(30)));
  stack.CheckCandles(trades, symbols);
  stack.CheckMysql(trades, symbols);
  const std::string m = stack.Metrics();
  CHECK(MetricValue(m, "klined_redis_dataset_losses_total") == 1);
  CHECK(MetricValue(m, "klined_redis_restored_candles_total") > 0);
  StopCleanly(*klined);
}

TEST_CASE("redis loss: while klined is down, restore-redis brings back history, current candles and watermarks") {
  // Redis loses everything while no klined runs (every closed candle was persisted; the
  // current buckets were empty). restore-redis rebuilds history from MySQL and, since no
  // klined holds the lease, each symbol's watermark and empty current candles carrying the
  // last close; a klined started afterwards resumes a gapless series: Redis and MySQL equal
  // the independent computation over every trade.
  Stack stack;  // intervals [1m, 5m, 1h]
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT"};
  const int64_t now = NowMs();
  std::vector<RefTrade> trades;
  std::mt19937_64 rng(17);
  for (const std::string& sym : symbols) {
    int64_t id = 2000;
    for (int64_t t = now - 3 * 3600000; t < now - 4500000; t += 20000 + rng() % 100000) {
      trades.push_back(RefTrade{sym, ++id, t, 20000 + static_cast<int64_t>(rng() % 500),
                                1 + static_cast<int64_t>(rng() % 99), rng() % 2 == 0});
    }
  }
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  // A new lease holder's first rollover is a full sweep of every known symbol: it closes
  // their candles up to now at once (the running one would wait for the next boundary).
  StopCleanly(*klined);
  klined = stack.StartKlined("klined-1b");
  kt::RedisClient rc = stack.redis.Connect();
  // Every closed candle up to the open buckets is in MySQL (the rollover closed the rest).
  for (const std::string& sym : symbols) {
    for (const auto& [iv, len] : kIntervals) {
      CAPTURE(sym);
      CAPTURE(iv);
      REQUIRE(WaitUntil(
          [&, len = len, iv = iv] {
            const int64_t before = NowMs() - NowMs() % len - len;
            return stack.mysql
                       .Query("SELECT COUNT(*) FROM kline WHERE symbol='" + sym +
                              "' AND `interval`='" + iv +
                              "' AND open_time=" + std::to_string(before))
                       .at(0)
                       .at(0) == "1";
          },
          seconds(60)));
    }
  }
  REQUIRE(WaitUntil([&] { return rc.NothingPending(); }, seconds(30)));
  StopCleanly(*klined);
  REQUIRE(rc.Integer({"EXISTS", "kline:lease"}) == 0);  // handed over at exit
  rc.Command({"FLUSHALL"});

  const Stack::Ran run = stack.Klinectl({"restore-redis"}, "restore");
  CAPTURE(run.out);
  CAPTURE(run.err);
  REQUIRE(run.code == 0);
  CHECK(run.out.find("no klined running: 9 current candles and 3 watermarks restored") !=
        std::string::npos);
  for (const std::string& sym : symbols) {
    CHECK(rc.Get("kline:{" + sym + "}:wm") == std::to_string(LastIds(trades)[sym]));
  }

  // The next klined takes the restored state as it is: its rollover carries the restored
  // closes up to now (no fresh start, no gap).
  auto again = stack.StartKlined("klined-2");
  REQUIRE_MESSAGE(WaitUntil([&] { return rc.Integer({"EXISTS", "kline:dataset"}) == 1; },
                            seconds(30)),
                  again->OutputTail());
  REQUIRE(WaitUntil([&] { return rc.NothingPending(); }, seconds(30)));
  stack.CheckCandles(trades, symbols);
  stack.CheckMysql(trades, symbols);
  StopCleanly(*again);
}

TEST_CASE("redis loss: one symbol's keys vanish: its shard writes back memory and history returns") {
  // Only one symbol's data disappears (its keys deleted: what a failover to an empty node
  // does to the slots it owned), the dataset marker stays. The shard holding it notices at
  // its next write and asks for a restore (PREFIX:restore); the persistence worker rebuilds
  // that symbol's history from MySQL; Redis equals the independent computation again.
  Stack stack;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT"};
  std::vector<RefTrade> trades = MakeTrades(symbols, 60, 14);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  kt::RedisClient rc = stack.redis.Connect();
  REQUIRE(WaitUntil(
      [&] {
        return rc.NothingPending() &&
               rc.Integer({"EXISTS", "kline:dataset"}) == 1;
      },
      seconds(30)));
  for (const std::string& key : rc.Strings({"KEYS", "kline:{BTCUSDT}*"})) {
    rc.Integer({"DEL", key});
  }
  std::vector<RefTrade> more;
  for (const std::string& sym : symbols) {
    for (int i = 1; i <= 3; ++i) {
      more.push_back(RefTrade{sym, LastIds(trades)[sym] + i, NowMs() - 500 + i, 31000 + i, i, true});
    }
  }
  Produce(&producer, more);
  trades.insert(trades.end(), more.begin(), more.end());
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(30)), klined->OutputTail());
  REQUIRE(WaitUntil(
      [&] {
        return rc.Integer({"EXISTS", "kline:restore"}) == 0 &&
               rc.Integer({"ZCARD", "kline:{BTCUSDT}:1m:hist"}) > 5 &&
               rc.NothingPending();
      },
      seconds(30)));
  stack.CheckCandles(trades, symbols);
  stack.CheckMysql(trades, symbols);
  const std::string m = stack.Metrics();
  CHECK(MetricValue(m, "klined_redis_data_loss_total") == 1);
  CHECK(MetricValue(m, "klined_redis_restored_candles_total") > 0);
  CHECK(klined->Stderr().find("event=persist.symbols_restored") != std::string::npos);
  StopCleanly(*klined);
}
