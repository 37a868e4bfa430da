// klinectl recompute with the real binaries: 3 hours of trades streamed (Kafka timestamps =
// trade times), one of them late in its partition, so klined drops it as out of order; the
// range's candles then corrupted in MySQL (changed, deleted rows) and in Redis history
// (changed members), klined still running. Invariants: after recompute every candle equals
// the independent computation over every trade in Kafka, in MySQL, in Redis history and
// current, including the empty candles after the range that carry the close the dropped
// trade set; a dry run writes nothing; a second run changes nothing; the reader starts near
// the range (not at offset 0); a range whose start the topic no longer retains is refused
// with exit 4.
#include <algorithm>

#include "stack.h"

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("recompute: a corrupted hour in MySQL and Redis comes back equal to the trades") {
  Stack stack;  // intervals [1m, 5m, 1h]
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT"};
  const int64_t now = NowMs();
  // The range: from the hour that opened two hours ago to the minute of `held_out` below.
  const int64_t from = now - now % 3600000 - 2 * 3600000;
  std::vector<RefTrade> trades;
  size_t held_out = 0;  // a BTCUSDT trade klined never applies (see below)
  std::mt19937_64 rng(7);
  for (const std::string& sym : symbols) {
    int64_t t = now - 3 * 3600000;
    int64_t price = 30000;
    for (int64_t id = 500; t < now - 3000; ++id) {
      price = std::max<int64_t>(1, price + static_cast<int64_t>(rng() % 201) - 100);
      trades.push_back(
          RefTrade{sym, id, t, price, 1 + static_cast<int64_t>(rng() % 900), rng() % 3 == 0});
      // Now and then ten minutes of silence: empty candles whose carry recompute must redo.
      t += 5000 + static_cast<int64_t>(rng() % 40000) + (rng() % 50 == 0 ? 600000 : 0);
      if (sym == "BTCUSDT" && held_out == 0 && t >= from + 20 * 60000) {
        // The last trade before a quarter of an hour of silence, at a price of its own: the
        // close it sets is carried by the empty candles after it.
        held_out = trades.size() - 1;
        trades.back().price_cents = price += 37;
        t += 15 * 60000;
      }
    }
    // A last trade a moment ago closes every earlier candle (see derive_test.cc).
    trades.push_back(RefTrade{sym, trades.back().id + 1,
                              std::max(trades.back().time_ms, now - 2000), 30000, 1, false});
  }
  const RefTrade late = trades[held_out];
  const int64_t to = late.time_ms - late.time_ms % 60000 + 59999;
  std::vector<RefTrade> applied = trades;
  applied.erase(applied.begin() + static_cast<std::ptrdiff_t>(held_out));

  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  // In time order, as a feed publishes (each partition's timestamps ascend), except that the
  // held-out trade comes right after the next trade of its symbol (a producer that
  // reordered): below that partition's watermark and never applied, so klined counts it out
  // of order and drops it. It is in Kafka, stamped inside the range: recompute counts it.
  std::vector<RefTrade> by_time = applied;
  std::stable_sort(by_time.begin(), by_time.end(),
                   [](const RefTrade& a, const RefTrade& b) { return a.time_ms < b.time_ms; });
  const auto next = std::find_if(by_time.begin(), by_time.end(), [&](const RefTrade& t) {
    return t.symbol == late.symbol && t.id == late.id + 1;
  });
  REQUIRE(next != by_time.end());
  by_time.insert(next + 1, late);
  Produce(&producer, by_time, -1, /*stamped=*/true);
  REQUIRE(stack.WaitForWatermarks(LastIds(applied), seconds(60)));
  REQUIRE(WaitUntil(
      [&] { return MetricValue(stack.Metrics(), "klined_trades_out_of_order_total") == 1; },
      seconds(30)));
  kt::RedisClient rc = stack.Redis();
  auto settled = [&] {
    return WaitUntil(
        [&] {
          return stack.NothingPending() && rc.Integer({"SCARD", "kline:late"}) == 0;
        },
        seconds(60));
  };
  REQUIRE(settled());
  stack.CheckMysql(applied, symbols);  // the baseline: klined stored what it applied

  // Corrupted too, in both stores.
  const std::string in_range =
      " AND open_time BETWEEN " + std::to_string(from) + " AND " + std::to_string(to);
  stack.mysql.Query("UPDATE kline SET high=high+1, trades=trades+3 WHERE symbol='BTCUSDT'" +
                    in_range);
  stack.mysql.Query("DELETE FROM kline WHERE symbol='ETHUSDT' AND `interval`='5m'" + in_range);
  stack.mysql.Query("UPDATE kline SET close=close+7 WHERE symbol='ETHUSDT' AND `interval`='1m'" +
                    in_range);
  for (const auto& [sym, iv] : std::vector<std::pair<std::string, std::string>>{
           {"BTCUSDT", "1m"}, {"ETHUSDT", "1h"}, {"ETHUSDT", "5m"}}) {
    const std::string hist = "kline:{" + sym + "}:" + iv + ":hist";
    const auto members = rc.Strings(
        {"ZRANGEBYSCORE", hist, std::to_string(from), std::to_string(to), "LIMIT", "0", "3"});
    REQUIRE(!members.empty());
    for (const std::string& m : members) {
      std::string bad = m;
      bad.replace(bad.find("\"n\":"), 4, "\"n\":9");  // a count no trade made
      rc.Integer({"ZREM", hist, m});
      rc.Integer({"ZADD", hist, std::to_string(std::stoll(m.substr(5, m.find(',') - 5))), bad});
    }
  }
  const auto corrupt_rows = stack.MysqlCandles("BTCUSDT", "1h");

  const Stack::Ran dry = stack.Klinectl(
      {"recompute", "--from", std::to_string(from), "--to", std::to_string(to), "--dry-run"},
      "recompute-dry");
  CAPTURE(dry.out);
  CAPTURE(dry.err);
  CHECK(dry.code == 0);
  CHECK(dry.out.find("recompute (dry run): ") == 0);
  CHECK(stack.MysqlCandles("BTCUSDT", "1h") == corrupt_rows);

  const Stack::Ran run = stack.Klinectl(
      {"recompute", "--from", std::to_string(from), "--to", std::to_string(to)}, "recompute");
  CAPTURE(run.out);
  CAPTURE(run.err);
  REQUIRE(run.code == 0);
  CHECK(run.out.find("; 0 changed by klined meanwhile or busy") != std::string::npos);
  // The reader started at the range less a minute of skew (found by a binary search over
  // timestamps: the mock broker does not look offsets up by time), not at the topic's start.
  const size_t read_at = run.out.find(" messages read");
  REQUIRE(read_at != std::string::npos);
  const size_t read_from = run.out.rfind(' ', read_at - 1) + 1;
  CHECK(std::stoll(run.out.substr(read_from, read_at - read_from)) ==
        std::count_if(trades.begin(), trades.end(),
                      [&](const RefTrade& t) { return t.time_ms >= from - 60000; }));
  REQUIRE(settled());
  stack.CheckCandles(trades, symbols);
  stack.CheckMysql(trades, symbols);

  const Stack::Ran again = stack.Klinectl(
      {"recompute", "--from", std::to_string(from), "--to", std::to_string(to)}, "recompute-2");
  CAPTURE(again.out);
  CHECK(again.code == 0);
  CHECK(again.out.find(" 0 candles changed in MySQL, 0 changed in Redis") != std::string::npos);

  // The mock broker keeps ~5 MiB per partition: 8 MiB more on each moves every low watermark
  // past the range's messages.
  const std::string filler = "{\"e\":\"filler\",\"pad\":\"" + std::string(100000, 'x') + "\"}";
  for (int p = 0; p < 4; ++p) {
    for (int i = 0; i < 80; ++i) producer.Produce("trades", std::nullopt, filler, p);
  }
  producer.Flush();
  const Stack::Ran refused = stack.Klinectl(
      {"recompute", "--from", std::to_string(from), "--to", std::to_string(to)}, "recompute-old");
  CAPTURE(refused.err);
  CHECK(refused.code == 4);
  CHECK(refused.err.find("Kafka no longer retains the range") != std::string::npos);
  StopCleanly(*klined);
}
