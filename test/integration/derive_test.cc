// klinectl derive with the real binaries.
//  1. A week of trades streamed with 1m, 5m and 1h, then 2h, 4h and 3d derived from the
//     stored 1h candles (2h from 1m as well). Every derived closed candle equals the
//     independent computation over the trades, in MySQL and in Redis history; a dry run
//     writes nothing; a second run changes nothing; a MySQL write refused halfway stops the
//     run with nothing in Redis that MySQL lacks, and a rerun completes it.
//  2. The same week through a klined that had 2h, 4h and 3d from the start: its rows of those
//     intervals are deleted from MySQL and Redis history, derived back (4h from the derived
//     2h, 3d from the derived 4h), and equal what it had written, byte for byte.
#include "stack.h"

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

constexpr int64_t k2h = 7200000;

// A week of trades for each symbol, the last one a moment before the returned `now`. The
// expected candles end at the 2h and 4h buckets open at this start; a run that crosses a 2h
// boundary would derive one bucket more than computed, so a start in the last 90 s before one
// waits for it to pass.
std::vector<RefTrade> WeekOfTrades(const std::vector<std::string>& symbols, int64_t* now_out) {
  if (NowMs() % k2h > k2h - 90000) {
    std::this_thread::sleep_for(milliseconds(k2h - NowMs() % k2h + 1000));
  }
  const int64_t now = NowMs();
  *now_out = now;
  std::vector<RefTrade> trades;
  std::mt19937_64 rng(21);
  for (const std::string& sym : symbols) {
    int64_t t = now - 7 * 86400000 + static_cast<int64_t>(rng() % 3600000);
    int64_t price = 50000;
    for (int64_t id = 1000; t < now - 2000; ++id) {
      price = std::max<int64_t>(1, price + static_cast<int64_t>(rng() % 201) - 100);
      trades.push_back(
          RefTrade{sym, id, t, price, 1 + static_cast<int64_t>(rng() % 900), rng() % 2 == 0});
      // Mostly 10 to 30 minutes apart, now and then three hours of silence (empty candles).
      t += 600000 + static_cast<int64_t>(rng() % 1200000) + (rng() % 40 == 0 ? 10800000 : 0);
    }
    // A last trade a moment ago: its flush closes the candles before it, so the source rows
    // below are in MySQL without waiting for a rollover (an hour of silence at the end would
    // leave the previous hour's 1h candle current until the next rollover run, up to a minute).
    trades.push_back(RefTrade{sym, trades.back().id + 1,
                              std::max(trades.back().time_ms, now - 3000), 50000, 1, false});
  }
  return trades;
}

// Streams the trades through klined and waits until every closed candle is in MySQL: nothing
// pending, and each row of `rows` (interval, open time) there. (The failure this once had: the run
// began 8 minutes after a 2h boundary, a symbol's last trade was from the hour before it, and that
// 1h candle was still current in Redis, so the 2h bucket was left out as incomplete.)
void StreamAndPersist(Stack* stack, const std::vector<std::string>& symbols,
                      const std::vector<RefTrade>& trades,
                      const std::vector<std::pair<std::string, int64_t>>& rows) {
  kt::Producer producer(stack->broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE(stack->WaitForWatermarks(LastIds(trades), seconds(60)));
  kt::RedisClient rc = stack->Redis();
  REQUIRE(WaitUntil(
      [&] {
        return stack->NothingPending() && rc.Integer({"SCARD", "kline:late"}) == 0;
      },
      seconds(60)));
  for (const std::string& sym : symbols) {
    for (const auto& [iv, at] : rows) {
      CAPTURE(sym);
      CAPTURE(iv);
      REQUIRE(WaitUntil(
          [&] {
            return stack->mysql
                       .Query("SELECT COUNT(*) FROM kline WHERE symbol='" + sym +
                              "' AND `interval`='" + iv + "' AND open_time=" + std::to_string(at))
                       .at(0)
                       .at(0) == "1";
          },
          seconds(90)));
    }
  }
}

}  // namespace

TEST_CASE("derive: 2h, 4h and 3d from stored candles equal the independent computation") {
  Stack stack;  // intervals [1m, 5m, 1h]
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT"};
  // The expected candles end at the 2h and 4h buckets open at this start; a run that crosses
  // a 2h boundary would derive one bucket more than computed, so a start in the last 90 s
  // before one waits for it to pass.
  int64_t now = 0;
  const std::vector<RefTrade> trades = WeekOfTrades(symbols, &now);
  auto klined = stack.StartKlined("klined");
  // The source candles just before the open 2h bucket: the 1h one and the 1m one.
  const int64_t open2h = now - now % k2h;
  StreamAndPersist(&stack, symbols, trades, {{"1h", open2h - 3600000}, {"1m", open2h - 60000}});
  kt::RedisClient rc = stack.Redis();
  const Stack::Ran dry = stack.Klinectl({"derive", "--interval", "2h", "--dry-run"}, "derive-dry");
  CAPTURE(dry.out);
  CAPTURE(dry.err);
  CHECK(dry.code == 0);
  CHECK(dry.out.find("derive (dry run): 2h from 1h") == 0);
  CHECK(stack.Klinectl({"candles", "BTCUSDT", "2h"}, "none-yet").code == 1);

  for (const auto& [iv, len] : std::vector<std::pair<std::string, int64_t>>{
           {"2h", 7200000}, {"4h", 14400000}, {"3d", 259200000}}) {
    // From 1h (the coarsest configured interval nesting in both), and for 2h also from 1m:
    // the same candles either way.
    for (const std::string source : {"1h", "1m"}) {
      CAPTURE(iv);
      CAPTURE(source);
      const Stack::Ran run =
          stack.Klinectl({"derive", "--interval", iv, "--source", source}, "derive-" + iv + source);
      CAPTURE(run.out);
      CAPTURE(run.err);
      REQUIRE(run.code == 0);
      for (const std::string& sym : symbols) {
        const int64_t current_open = now - now % len;  // the open bucket: not derived
        const std::vector<std::string> want = Expected(trades, sym, iv, len, current_open).first;
        REQUIRE(!want.empty());
        const Stack::Ran got =
            stack.Klinectl({"candles", sym, iv, "--limit", "1000", "--json"}, "candles-" + sym);
        CAPTURE(sym);
        CHECK(SplitLines(got.out) == want);
        // Redis history holds the same candles (the newest history_limit of them).
        CHECK(rc.Strings({"ZRANGE", "kline:{" + sym + "}:" + iv + ":hist", "0", "-1"}) == want);
      }
      if (iv != "2h") break;
    }
  }
  // A second run: MySQL rows are upserted with equal values, Redis gets nothing new.
  const Stack::Ran again = stack.Klinectl({"derive", "--interval", "2h"}, "derive-again");
  CHECK(again.code == 0);
  CHECK(again.out.find(", 0 added to Redis history") != std::string::npos);
  // A MySQL write that fails halfway (a trigger refuses ETHUSDT's 6h rows; BTCUSDT, before
  // it, is written): exit 2 naming it, nothing of ETHUSDT in Redis history (MySQL is written
  // before Redis), BTCUSDT's complete; a rerun completes ETHUSDT.
  stack.mysql.Query(
      "CREATE TRIGGER refuse_eth BEFORE INSERT ON kline FOR EACH ROW IF NEW.symbol = 'ETHUSDT' "
      "AND NEW.`interval` = '6h' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; "
      "END IF");
  const Stack::Ran refused = stack.Klinectl({"derive", "--interval", "6h"}, "derive-refused");
  CAPTURE(refused.out);
  CAPTURE(refused.err);
  CHECK(refused.code == 2);
  CHECK(refused.err.find("writing ETHUSDT's 6h candles to MySQL: refused") != std::string::npos);
  constexpr int64_t k6h = 3 * k2h;
  const auto want6h = [&](const std::string& sym) {
    return Expected(trades, sym, "6h", k6h, now - now % k6h).first;
  };
  CHECK(stack.MysqlCandles("BTCUSDT", "6h") == want6h("BTCUSDT"));
  CHECK(rc.Strings({"ZRANGE", "kline:{BTCUSDT}:6h:hist", "0", "-1"}) == want6h("BTCUSDT"));
  CHECK(stack.MysqlCandles("ETHUSDT", "6h").empty());
  CHECK(rc.Integer({"EXISTS", "kline:{ETHUSDT}:6h:hist"}) == 0);
  stack.mysql.Query("DROP TRIGGER refuse_eth");
  const Stack::Ran rerun = stack.Klinectl({"derive", "--interval", "6h"}, "derive-rerun");
  CHECK(rerun.code == 0);
  for (const std::string& sym : symbols) {
    CAPTURE(sym);
    CHECK(stack.MysqlCandles(sym, "6h") == want6h(sym));
    CHECK(rc.Strings({"ZRANGE", "kline:{" + sym + "}:6h:hist", "0", "-1"}) == want6h(sym));
  }
  StopCleanly(*klined);
  // A database klined's persistence never wrote to has no kline_fence table: derive creates
  // klined's bookkeeping tables before it writes (it once failed there with exit 2).
  stack.mysql.Query("DROP TABLE kline_fence");
  const Stack::Ran fresh = stack.Klinectl({"derive", "--interval", "2h"}, "derive-no-fence");
  CAPTURE(fresh.err);
  CHECK(fresh.code == 0);
}

TEST_CASE("derive: the candles a klined with 2h, 4h and 3d from the start wrote, derived back") {
  Stack stack(false, "intervals: [1m, 5m, 1h, 2h, 4h, 3d]\n");
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT"};
  int64_t now = 0;
  const std::vector<RefTrade> trades = WeekOfTrades(symbols, &now);
  const std::vector<std::pair<std::string, int64_t>> derived = {
      {"2h", k2h}, {"4h", 2 * k2h}, {"3d", 36 * k2h}};
  std::vector<std::pair<std::string, int64_t>> last_closed;  // (interval, open time)
  for (const auto& [iv, len] : derived) last_closed.emplace_back(iv, now - now % len - len);
  auto klined = stack.StartKlined("klined");
  StreamAndPersist(&stack, symbols, trades, last_closed);
  // Stopped: no rollover writes these intervals while they are gone and derived back.
  StopCleanly(*klined);
  kt::RedisClient rc = stack.Redis();
  std::map<std::string, std::vector<std::string>> mysql_had, redis_had;
  for (const std::string& sym : symbols) {
    for (const auto& [iv, len] : derived) {
      const std::string key = sym + " " + iv;
      mysql_had[key] = stack.MysqlCandles(sym, iv);
      redis_had[key] = rc.Strings({"ZRANGE", "kline:{" + sym + "}:" + iv + ":hist", "0", "-1"});
      CAPTURE(key);
      // A week holds 2 or 3 closed 3d buckets, and every one klined closed reached both.
      CHECK(mysql_had[key].size() >= (iv == "3d" ? 2u : 40u));
      CHECK(redis_had[key] == mysql_had[key]);
      rc.Integer({"DEL", "kline:{" + sym + "}:" + iv + ":hist"});
    }
  }
  stack.mysql.Query("DELETE FROM kline WHERE `interval` IN ('2h', '4h', '3d')");
  for (const auto& [iv, source] :
       std::vector<std::pair<std::string, std::string>>{{"2h", "1h"}, {"4h", "2h"}, {"3d", "4h"}}) {
    // The default source: the coarsest configured interval nesting in the target, i.e. the
    // one derived just before.
    const Stack::Ran run = stack.Klinectl({"derive", "--interval", iv}, "derive-" + iv);
    CAPTURE(run.out);
    CAPTURE(run.err);
    REQUIRE(run.code == 0);
    CHECK(run.out.find("derive: " + iv + " from " + source + ",") == 0);
    for (const std::string& sym : symbols) {
      const std::string key = sym + " " + iv;
      CAPTURE(key);
      CHECK(stack.MysqlCandles(sym, iv) == mysql_had[key]);
      CHECK(rc.Strings({"ZRANGE", "kline:{" + sym + "}:" + iv + ":hist", "0", "-1"}) ==
            redis_had[key]);
    }
  }
}
