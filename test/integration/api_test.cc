// The market-data API (contract section 8) against the real binary, Redis, MariaDB and the
// test broker: REST rows equal the independent computation (stack.h), across the Redis/MySQL
// seam, under Binance's range rules; errors are Binance's; limits hold; roles split the work.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>

#include "io/redis/cluster/slot_map.h"
#include "stack.h"
#include "ws_client.h"

using namespace klined_it;

namespace {

// The Binance kline row of a reference candle: [t,"o","h","l","c","v",T,"q",n,"V","Q","0"].
std::string RefRow(const std::string& json) {
  auto q = [&](const char* k) { return "\"" + Field(json, k) + "\""; };
  return "[" + Field(json, "t") + "," + q("o") + "," + q("h") + "," + q("l") + "," + q("c") + "," +
         q("v") + "," + Field(json, "T") + "," + q("q") + "," + Field(json, "n") + "," + q("V") +
         "," + q("Q") + ",\"0\"]";
}

// The rows of a klines reply (a JSON array of flat arrays), each as its text.
std::vector<std::string> Rows(const std::string& body) {
  std::vector<std::string> rows;
  if (body.size() < 2 || body.front() != '[' || body.back() != ']') return rows;
  size_t at = 1;
  while (at < body.size() - 1) {
    if (body[at] == ',') ++at;
    const size_t end = body.find(']', at);
    if (body[at] != '[' || end == std::string::npos) return {};
    rows.push_back(body.substr(at, end - at + 1));
    at = end + 1;
  }
  return rows;
}

int64_t OpenOf(const std::string& row) { return std::stoll(row.substr(1, row.find(',') - 1)); }

// The reference rows of (sym, iv) through the bucket opening at end_open (its current candle).
std::vector<std::string> RefRows(const std::vector<RefTrade>& trades, const std::string& sym,
                                 const std::string& iv, int64_t len, int64_t end_open) {
  auto [hist, current] = Expected(trades, sym, iv, len, end_open);
  std::vector<std::string> rows;
  for (const std::string& h : hist) rows.push_back(RefRow(h));
  rows.push_back(RefRow(current));
  return rows;
}

std::vector<std::string> Slice(const std::vector<std::string>& v, size_t from, size_t to) {
  return std::vector<std::string>(v.begin() + static_cast<ptrdiff_t>(from),
                                  v.begin() + static_cast<ptrdiff_t>(to));
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string ApiTail(int port, const std::string& more = "") {
  return "api:\n  listen: \"127.0.0.1:" + std::to_string(port) + "\"\n  symbols_refresh_ms: 200\n" +
         more;
}

}  // namespace

TEST_CASE("api: klines rows equal the independent computation across the Redis/MySQL seam") {
  const int api_port = kt::FreePort();
  // history_limit 4: most closed candles are trimmed from Redis once MySQL has them, so the
  // longer ranges are stitched from both.
  Stack stack(false, ApiTail(api_port, "  weight_per_minute: 0\n"), "  history_limit: 4\n");
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 300, 1234);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  kt::RedisClient rc = stack.Redis();
  REQUIRE_MESSAGE(WaitUntil(
                      [&] {
                        for (const std::string& s : symbols) {
                          for (const auto& [iv, len] : kIntervals) {
                            if (iv == "1h") continue;
                            if (rc.Integer({"ZCARD", "kline:{" + s + "}:" + iv + ":hist"}) > 4)
                              return false;
                          }
                        }
                        return true;
                      },
                      seconds(60)),
                  klined->OutputTail());
  for (const std::string& s : symbols) REQUIRE(WaitApiKnows(api_port, s));

  for (const std::string& sym : symbols) {
    for (const auto& [iv, len] : kIntervals) {
      const std::string base = "/api/v3/klines?symbol=" + sym + "&interval=" + iv;
      CAPTURE(base);
      // Neither bound: the newest `limit`, here all of them (a 1m series of ~21 candles).
      const kt::HttpResponse full = kt::HttpFetch(api_port, base + "&limit=1000");
      REQUIRE(full.status == 200);
      CHECK(full.Header("Content-Type").find("application/json") == 0);
      const std::vector<std::string> rows = Rows(full.body);
      REQUIRE(!rows.empty());
      const std::vector<std::string> ref = RefRows(trades, sym, iv, len, OpenOf(rows.back()));
      CHECK(rows == ref);
      // uiKlines: the same rows.
      CHECK(Rows(kt::HttpFetch(api_port,
                               "/api/v3/uiKlines?symbol=" + sym + "&interval=" + iv + "&limit=1000")
                     .body) == ref);
      if (iv != "1m") continue;  // the 5m and 1h series are too short for the range cases
      REQUIRE(ref.size() >= 12);
      // startTime only: the oldest `limit` from it (startTime=0 works: clients page from it).
      CHECK(Rows(kt::HttpFetch(api_port, base + "&startTime=0&limit=5").body) == Slice(ref, 0, 5));
      // A start inside a bucket: open times >= startTime.
      CHECK(Rows(kt::HttpFetch(api_port, base + "&startTime=" + std::to_string(OpenOf(ref[3]) + 1) +
                                             "&limit=3")
                     .body) == Slice(ref, 4, 7));
      // endTime only: the newest `limit` at or before it.
      CHECK(Rows(kt::HttpFetch(api_port,
                               base + "&endTime=" + std::to_string(OpenOf(ref[10])) + "&limit=3")
                     .body) == Slice(ref, 8, 11));
      // Both: from start, capped at end, at most `limit`.
      const std::string both = base + "&startTime=" + std::to_string(OpenOf(ref[2])) +
                               "&endTime=" + std::to_string(OpenOf(ref[6]));
      CHECK(Rows(kt::HttpFetch(api_port, both).body) == Slice(ref, 2, 7));
      CHECK(Rows(kt::HttpFetch(api_port, both + "&limit=2").body) == Slice(ref, 2, 4));
      // The default limit (500) covers the whole series.
      std::vector<std::string> dflt = Rows(kt::HttpFetch(api_port, base).body);
      REQUIRE(!dflt.empty());
      CHECK(dflt == RefRows(trades, sym, iv, len, OpenOf(dflt.back())));
      // limit=1: the current candle.
      std::vector<std::string> one = Rows(kt::HttpFetch(api_port, base + "&limit=1").body);
      REQUIRE(one.size() == 1);
      CHECK(one.front() == RefRows(trades, sym, iv, len, OpenOf(one.front())).back());
      // Paging forward as python-binance does: startTime=0, then the last open time + 1.
      std::vector<std::string> paged;
      int64_t start = 0;
      for (int page = 0; page < 100; ++page) {
        std::vector<std::string> got = Rows(
            kt::HttpFetch(api_port, base + "&limit=4&startTime=" + std::to_string(start)).body);
        paged.insert(paged.end(), got.begin(), got.end());
        if (got.size() < 4) break;
        start = OpenOf(got.back()) + 1;
      }
      REQUIRE(!paged.empty());
      CHECK(paged == RefRows(trades, sym, iv, len, OpenOf(paged.back())));
      // The configured time zone is accepted in Binance's forms; the rows do not change.
      CHECK(Rows(kt::HttpFetch(api_port, base + "&startTime=0&limit=5&timeZone=0").body) ==
            Slice(ref, 0, 5));
      CHECK(Rows(kt::HttpFetch(api_port, base + "&startTime=0&limit=5&timeZone=%2B00:00").body) ==
            Slice(ref, 0, 5));
    }
  }
  // The seam was crossed: ranges older than Redis holds were read from MySQL.
  const std::string metrics = stack.Metrics();
  CHECK(MetricValue(metrics, "klined_api_mysql_reads_total") > 0);
  CHECK(MetricValue(metrics, "klined_api_mysql_failures_total") == 0);
  CHECK(MetricValue(metrics, "klined_api_corrupt_values_total") == 0);
  CHECK(MetricValue(metrics, "klined_api_responses_total{endpoint=\"klines\",outcome=\"ok\"}") > 0);
  StopCleanly(*klined);
}

TEST_CASE("api: klines/latest, 24h tickers, prices, exchangeInfo, ping and time") {
  const int api_port = kt::FreePort();
  Stack stack(false, ApiTail(api_port, "  weight_per_minute: 0\n"));
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHBTC", "XYZ"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 200, 99);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  for (const std::string& s : symbols) REQUIRE(WaitApiKnows(api_port, s));

  CHECK(kt::HttpFetch(api_port, "/api/v3/ping").body == "{}");
  const kt::HttpResponse time = kt::HttpFetch(api_port, "/api/v3/time");
  REQUIRE(time.status == 200);
  const int64_t server_time = std::stoll(Field(time.body, "serverTime"));
  CHECK(std::abs(server_time - MinuteAgo(0)) < 120000);

  // klines/latest: one row per symbol, [symbol, <the 12 fields>], each the current candle.
  const kt::HttpResponse latest = kt::HttpFetch(api_port, "/api/v3/klines/latest?interval=5m");
  REQUIRE(latest.status == 200);
  for (const std::string& sym : symbols) {
    CAPTURE(sym);
    const std::string head = "[\"" + sym + "\",";
    const size_t at = latest.body.find(head);
    REQUIRE(at != std::string::npos);
    const std::string row = "[" + latest.body.substr(at + head.size(), latest.body.find(']', at) -
                                                                           at - head.size() + 1);
    CHECK(row == RefRows(trades, sym, "5m", 300000, OpenOf(row)).back());
  }
  CHECK(kt::HttpFetch(api_port, "/api/v3/klines/latest").status == 400);
  CHECK(kt::HttpFetch(api_port, "/api/v3/klines/latest?interval=7m").status == 400);

  // 24h ticker: every trade is from the last 20 minutes, so the window holds them all.
  for (const std::string& sym : symbols) {
    CAPTURE(sym);
    std::vector<const RefTrade*> mine;
    for (const RefTrade& t : trades)
      if (t.symbol == sym) mine.push_back(&t);
    const RefTrade* last =
        *std::max_element(mine.begin(), mine.end(),
                          [](const RefTrade* a, const RefTrade* b) { return a->id < b->id; });
    I128 volume = 0;
    for (const RefTrade* t : mine) volume += t->qty_milli;
    const kt::HttpResponse full = kt::HttpFetch(api_port, "/api/v3/ticker/24hr?symbol=" + sym);
    REQUIRE(full.status == 200);
    CHECK(full.body.front() == '{');
    CHECK(Field(full.body, "symbol") == sym);
    CHECK(Field(full.body, "lastPrice") == Scaled(last->price_cents, 2));
    CHECK(Field(full.body, "volume") == Scaled(volume, 3));
    CHECK(Field(full.body, "count") == std::to_string(mine.size()));
    CHECK(Field(full.body, "firstId") == "1001");
    CHECK(Field(full.body, "lastId") == std::to_string(1000 + mine.size()));
    // Binance's FULL field order.
    CHECK(full.body.find("\"priceChange\"") < full.body.find("\"prevClosePrice\""));
    CHECK(full.body.find("\"lastQty\"") < full.body.find("\"bidPrice\""));
    CHECK(full.body.find("\"quoteVolume\"") < full.body.find("\"openTime\""));
    const kt::HttpResponse mini =
        kt::HttpFetch(api_port, "/api/v3/ticker/24hr?type=MINI&symbol=" + sym);
    CHECK(mini.body.find("priceChange") == std::string::npos);
    CHECK(Field(mini.body, "lastPrice") == Scaled(last->price_cents, 2));
    const kt::HttpResponse price = kt::HttpFetch(api_port, "/api/v3/ticker/price?symbol=" + sym);
    CHECK(price.body ==
          "{\"symbol\":\"" + sym + "\",\"price\":\"" + Scaled(last->price_cents, 2) + "\"}");
  }
  // symbols=[...] and all: arrays.
  const kt::HttpResponse two =
      kt::HttpFetch(api_port, "/api/v3/ticker/24hr?symbols=%5B%22BTCUSDT%22,%22XYZ%22%5D");
  REQUIRE(two.status == 200);
  CHECK(two.body.front() == '[');
  CHECK(two.body.find("\"BTCUSDT\"") != std::string::npos);
  CHECK(two.body.find("\"XYZ\"") != std::string::npos);
  CHECK(two.body.find("\"ETHBTC\"") == std::string::npos);
  const kt::HttpResponse all = kt::HttpFetch(api_port, "/api/v3/ticker/price");
  for (const std::string& s : symbols) CHECK(all.body.find("\"" + s + "\"") != std::string::npos);

  // exchangeInfo lists every known symbol, split by the quote-asset list.
  const kt::HttpResponse info = kt::HttpFetch(api_port, "/api/v3/exchangeInfo");
  REQUIRE(info.status == 200);
  for (const std::string& s : symbols)
    CHECK(info.body.find("\"symbol\":\"" + s + "\"") != std::string::npos);
  CHECK(info.body.find("\"symbol\":\"ETHBTC\",\"status\":\"TRADING\",\"baseAsset\":\"ETH\"") !=
        std::string::npos);
  CHECK(info.body.find("\"quoteAsset\":\"BTC\"") != std::string::npos);
  StopCleanly(*klined);
}

TEST_CASE("api: every bad request gets Binance's error; unknown symbols cost no Redis read") {
  const int api_port = kt::FreePort();
  // No weight limit at first (the error cases would use it up); then SIGHUP sets one.
  Stack stack(false, ApiTail(api_port, "  weight_per_minute: 0\n"));
  const std::vector<RefTrade> trades = MakeTrades({"BTCUSDT"}, 50, 5);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  REQUIRE(WaitApiKnows(api_port, "BTCUSDT"));

  struct Case {
    std::string target;
    int status;
    std::string code;
  };
  const std::vector<Case> cases = {
      {"/api/v3/klines?symbol=NOPE&interval=1m", 400, "-1121"},
      {"/api/v3/klines?symbol=BTCUSDT&interval=7m", 400, "-1120"},
      {"/api/v3/klines?symbol=BTCUSDT&interval=1s", 400, "-1120"},  // not configured
      {"/api/v3/klines?interval=1m", 400, "-1102"},
      {"/api/v3/klines?symbol=BTCUSDT", 400, "-1102"},
      {"/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=0", 400, "-1130"},
      {"/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1001", 400, "-1130"},
      {"/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=abc", 400, "-1100"},
      {"/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=x", 400, "-1100"},
      {"/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=5&endTime=4", 400, "-1023"},
      {"/api/v3/ticker/24hr?symbol=BTCUSDT&symbols=%5B%22BTCUSDT%22%5D", 400, "-1128"},
      {"/api/v3/ticker/24hr?symbol=NOPE", 400, "-1121"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.target);
    const kt::HttpResponse r = kt::HttpFetch(api_port, c.target);
    CHECK(r.status == c.status);
    CHECK(Field(r.body, "code") == c.code);
    CHECK(r.body.find("\"msg\":\"") != std::string::npos);
  }
  CHECK(kt::HttpFetch(api_port, "/api/v3/klines?symbol=NOPE&interval=1m").body ==
        "{\"code\":-1121,\"msg\":\"Invalid symbol.\"}");
  // A time zone other than the configured one is refused.
  const kt::HttpResponse tz =
      kt::HttpFetch(api_port, "/api/v3/klines?symbol=BTCUSDT&interval=1m&timeZone=8");
  CHECK(tz.status == 400);
  CHECK(Field(tz.body, "code").front() == '-');
  CHECK(kt::HttpFetch(api_port, "/api/v3/nothing").status == 404);
  CHECK(kt::HttpFetch(api_port, "/").status == 404);  // no web_root configured
  CHECK(kt::HttpRaw(api_port, "POST /api/v3/ping HTTP/1.0\r\nContent-Length: 0\r\n\r\n").status ==
        405);
  // HEAD: GET's status and headers (its Content-Length too), no body.
  const kt::HttpResponse head = kt::HttpRaw(api_port, "HEAD /api/v3/time HTTP/1.0\r\n\r\n");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(std::stoi(head.Header("Content-Length").empty() ? "0" : head.Header("Content-Length")) ==
        static_cast<int>(kt::HttpFetch(api_port, "/api/v3/time").body.size()));
  CHECK(kt::HttpRaw(api_port, "HEAD /api/v3/klines?symbol=NOPE&interval=1m HTTP/1.0\r\n\r\n")
            .status == 400);
  // Oversized headers and garbage: an HTTP error and a close, and the server goes on.
  CHECK(kt::HttpRaw(api_port,
                    "GET /api/v3/ping HTTP/1.1\r\nX: " + std::string(10000, 'a') + "\r\n\r\n")
            .status == 431);
  CHECK(kt::HttpRaw(api_port, "\x16\x03\x01 garbage\r\n\r\n").status == 400);
  CHECK(kt::HttpFetch(api_port, "/api/v3/ping").status == 200);

  // SIGHUP sets a weight limit of 40 a minute (api.weight_per_minute is reloadable).
  auto reload = [&](const std::string& api_more) {
    stack.config_tail = ApiTail(api_port, api_more);
    kt::WriteFile(stack.config, stack.ConfigYaml(stack.metrics_port));
    const size_t seen = Count(klined->OutputTail(1 << 20), "event=config.reloaded");
    klined->Signal(SIGHUP);
    REQUIRE(WaitUntil(
        [&] { return Count(klined->OutputTail(1 << 20), "event=config.reloaded") > seen; },
        seconds(10)));
  };
  reload("  weight_per_minute: 40\n");
  // Penetration: unknown symbols are answered from the known-symbol set, no Redis read each.
  const double reads_before = MetricValue(stack.Metrics(), "klined_api_redis_reads_total");
  // The limit counts these too (2 each, and the weight this minute already used): at most 20
  // succeed in one minute window, 40 across a window boundary.
  int limited = 0, invalid = 0;
  std::string limited_body, weight_header;
  for (int i = 0; i < 30; ++i) {
    const kt::HttpResponse r =
        kt::HttpFetch(api_port, "/api/v3/klines?interval=1m&symbol=NOPE" + std::to_string(i));
    weight_header = r.Header("X-MBX-USED-WEIGHT-1M");
    if (r.status == 429) {
      ++limited;
      limited_body = r.body;
      CHECK(!r.Header("Retry-After").empty());
    } else if (r.status == 400) {
      ++invalid;
    }
  }
  CHECK(limited >= 1);
  CHECK(limited + invalid == 30);
  CHECK(Field(limited_body, "code") == "-1003");
  CHECK(!weight_header.empty());
  const std::string metrics = stack.Metrics();
  // The known-symbol refresher's reads (every 200 ms) are the only Redis reads meanwhile.
  CHECK(MetricValue(metrics, "klined_api_redis_reads_total") - reads_before < 25);
  CHECK(MetricValue(metrics,
                    "klined_api_responses_total{endpoint=\"klines\",outcome=\"rate_limited\"}") ==
        limited);
  CHECK(MetricValue(metrics, "klined_api_http_errors_total") >= 2);

  // And back to 0 (no limit): nothing is refused any more.
  reload("  weight_per_minute: 0\n");
  int refused_after = 0;
  for (int i = 0; i < 40; ++i) {
    refused_after += kt::HttpFetch(api_port, "/api/v3/exchangeInfo").status == 429 ? 1 : 0;
  }
  CHECK(refused_after == 0);
  StopCleanly(*klined);
}

TEST_CASE("api: roles split the work; Redis or MySQL down answers 503 and recovers") {
  const int api_port = kt::FreePort();
  Stack stack(true, ApiTail(api_port, "  weight_per_minute: 0\n") + "roles: [ingest, jobs]\n",
              "  history_limit: 3\n");
  const std::vector<RefTrade> trades = MakeTrades({"BTCUSDT"}, 200, 77);
  auto writer = stack.StartKlined("writer");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), writer->OutputTail());
  // Without the api role nothing listens on api.listen.
  CHECK(kt::HttpFetch(api_port, "/api/v3/ping").status == 0);

  // A reader: roles [api] only. It consumes nothing and never takes the lease, and answers for
  // a symbol another instance consumes.
  const int reader_port = kt::FreePort();
  int reader_metrics = 0;
  stack.config_tail = ApiTail(reader_port, "  weight_per_minute: 0\n") + "roles: [api]\n";
  auto reader = stack.StartInstance("reader", &reader_metrics);
  REQUIRE_MESSAGE(WaitApiKnows(reader_port, "BTCUSDT"), reader->OutputTail());
  kt::RedisClient rc = stack.redis.Connect();
  REQUIRE(WaitUntil(
      [&] {
        return rc.Integer({"ZCARD", "kline:{BTCUSDT}:1m:hist"}) <= 3;
      },
      seconds(60)));
  const std::string base = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000";
  std::vector<std::string> rows = Rows(kt::HttpFetch(reader_port, base).body);
  REQUIRE(!rows.empty());
  CHECK(rows == RefRows(trades, "BTCUSDT", "1m", 60000, OpenOf(rows.back())));
  const std::string rm = stack.Metrics(reader_metrics);
  CHECK(rm.find("klined_lease_held") == std::string::npos);
  CHECK(MetricValue(rm, "klined_trades_applied_total") == 0);

  // MySQL down: a range older than Redis holds is 503 (-1001); the newest rows still answer.
  stack.mysql.Stop();
  const kt::HttpResponse old_range =
      kt::HttpFetch(reader_port, "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=0&limit=3");
  CHECK(old_range.status == 503);
  CHECK(Field(old_range.body, "code") == "-1001");
  CHECK(kt::HttpFetch(reader_port, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=2").status ==
        200);
  stack.mysql.Start();
  CHECK(WaitUntil(
      [&] {
        return kt::HttpFetch(reader_port,
                             "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=0&limit=3")
                   .status == 200;
      },
      seconds(30)));

  // Redis down: 503; back: 200 again.
  stack.redis.Stop();
  CHECK(kt::HttpFetch(reader_port, base).status == 503);
  stack.redis.Start();
  CHECK(WaitUntil([&] { return kt::HttpFetch(reader_port, base).status == 200; }, seconds(30)));
  rows = Rows(kt::HttpFetch(reader_port, base).body);
  REQUIRE(!rows.empty());
  CHECK(rows == RefRows(trades, "BTCUSDT", "1m", 60000, OpenOf(rows.back())));
  CHECK(MetricValue(stack.Metrics(reader_metrics), "klined_api_redis_failures_total") >= 1);
  CHECK(MetricValue(stack.Metrics(reader_metrics), "klined_api_mysql_failures_total") >= 1);
  StopCleanly(*reader);
  StopCleanly(*writer);
}

// ---- WebSocket streams -------------------------------------------------------------------

namespace {

// The k object of a kline event, as the reference JSON's fields (same names but "B").
struct Kline {
  std::string interval;
  int64_t open = 0;
  bool closed = false;
  std::string text;  // the k object
};

std::optional<Kline> KlineOf(const std::string& event) {
  const size_t k = event.find("\"k\":{");
  if (event.find("\"e\":\"kline\"") == std::string::npos || k == std::string::npos) {
    return std::nullopt;
  }
  Kline out;
  out.text = event.substr(k + 4, event.rfind('}') - k - 4);
  out.interval = Field(out.text, "i");
  out.open = std::stoll(Field(out.text, "t"));
  out.closed = Field(out.text, "x") == "true";
  return out;
}

// The event's candle fields equal the reference candle's (t T s i f L o h l c v q V Q n x).
void CheckKline(const Kline& k, const std::string& ref_json) {
  for (const char* f :
       {"t", "T", "s", "i", "f", "L", "o", "h", "l", "c", "v", "q", "V", "Q", "n", "x"}) {
    CAPTURE(f);
    CHECK(Field(k.text, f) == Field(ref_json, f));
  }
  CHECK(Field(k.text, "B") == "0");
}

// A client frame as a client library writes it: masked, final unless `first_byte` says not.
std::string ClientFrame(uint8_t first_byte, const std::string& payload) {
  std::string f;
  f.push_back(static_cast<char>(first_byte));
  f.push_back(static_cast<char>(0x80 | payload.size()));  // < 126 bytes here
  const char mask[4] = {0x11, 0x22, 0x33, 0x44};
  f.append(mask, 4);
  for (size_t i = 0; i < payload.size(); ++i)
    f.push_back(static_cast<char>(payload[i] ^ mask[i & 3]));
  return f;
}

// Live trades of `sym` at the wall clock, ids from first_id, one every `gap_ms`.
std::vector<RefTrade> LiveTrades(kt::Producer* producer, const std::string& sym, int64_t first_id,
                                 int count, int gap_ms, std::mt19937_64* rng) {
  std::vector<RefTrade> out;
  for (int i = 0; i < count; ++i) {
    RefTrade t{sym,
               first_id + i,
               NowMs(),
               10000 + static_cast<int64_t>((*rng)() % 500),
               1 + static_cast<int64_t>((*rng)() % 900),
               (*rng)() % 2 == 0};
    producer->Produce("trades", t.symbol, TradeJson(t));
    producer->Flush();
    out.push_back(t);
    std::this_thread::sleep_for(milliseconds(gap_ms));
  }
  return out;
}

}  // namespace

TEST_CASE("api ws: kline events equal the independent computation; closes are pushed") {
  const int api_port = kt::FreePort();
  Stack stack(false, ApiTail(api_port, "  weight_per_minute: 0\n") + "intervals: [1s, 1m]\n");
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  std::mt19937_64 rng(2024);
  std::vector<RefTrade> trades = LiveTrades(&producer, "BTCUSDT", 1, 1, 0, &rng);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  REQUIRE(WaitApiKnows(api_port, "BTCUSDT"));

  kt::WsClient ws;
  REQUIRE_MESSAGE(ws.Open(api_port, "/ws"), ws.error());
  ws.Send(
      R"({"method":"SUBSCRIBE","params":["btcusdt@kline_1s","btcusdt@kline_1m","btcusdt@ticker"],"id":1})");
  REQUIRE(ws.Read(seconds(5)) == std::optional<std::string>(R"({"result":null,"id":1})"));
  kt::WsClient combined;
  REQUIRE_MESSAGE(combined.Open(api_port, "/stream?streams=btcusdt@kline_1m"), combined.error());
  kt::WsClient direct;  // /ws/<stream>: subscribed by the URL
  REQUIRE_MESSAGE(direct.Open(api_port, "/ws/btcusdt@kline_1s"), direct.error());
  // The subscriptions reach Redis within the hub's poll (50 ms); give them a moment.
  std::this_thread::sleep_for(milliseconds(300));

  const std::vector<RefTrade> live = LiveTrades(&producer, "BTCUSDT", 2, 30, 100, &rng);
  trades.insert(trades.end(), live.begin(), live.end());
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  // The last trade's 1s bucket closes within a second plus the rollover grace.
  const int64_t last_1s = trades.back().time_ms - trades.back().time_ms % 1000;

  std::map<std::pair<std::string, int64_t>, Kline> last_event;
  std::string last_ticker;
  bool saw_last_close = false;
  size_t unchanged_repeats = 0;
  // Read until the last trade's 1s bucket has closed, then on for a second: under load a
  // rollover can close that bucket before the last trade's flush, which then arrives as a late
  // update of the closed candle (published before the watermarks above were reached, so it is
  // already on its way).
  auto until = std::chrono::steady_clock::now() + seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    std::optional<std::string> msg = ws.Read(milliseconds(200));
    if (!msg) continue;
    if (msg->rfind("{\"e\":\"24hrTicker\",", 0) == 0) {
      last_ticker = *msg;
      continue;
    }
    std::optional<Kline> k = KlineOf(*msg);
    REQUIRE_MESSAGE(k.has_value(), *msg);
    CHECK(Field(*msg, "s") == "BTCUSDT");
    // No candle is pushed twice unchanged (the k object; the event time differs): a flush
    // that leaves a candle as it was publishes nothing for it.
    auto prev = last_event.find({k->interval, k->open});
    if (prev != last_event.end() && prev->second.text == k->text) {
      ++unchanged_repeats;
      MESSAGE("pushed again unchanged: " << *msg);
    }
    last_event[{k->interval, k->open}] = *k;
    if (!saw_last_close && k->interval == "1s" && k->open == last_1s && k->closed) {
      saw_last_close = true;
      until = std::chrono::steady_clock::now() + seconds(1);
    }
  }
  REQUIRE(saw_last_close);
  CHECK(unchanged_repeats == 0);
  // Every bucket's last event is the reference candle of that bucket (all its trades, the
  // close flag of a candle that has closed), including the empty ones the rollover pushed.
  // The series' end: the newest bucket seen, or the one after it when that one closed (its
  // successor's event was still on the way when we stopped reading).
  int64_t end_1s = 0, end_1m = 0;
  for (const auto& [key, k] : last_event) {
    int64_t& end = key.first == "1s" ? end_1s : end_1m;
    end = std::max(end, key.second + (k.closed ? (key.first == "1s" ? 1000 : 60000) : 0));
  }
  const auto [hist_1s, cur_1s] = Expected(trades, "BTCUSDT", "1s", 1000, end_1s);
  const auto [hist_1m, cur_1m] = Expected(trades, "BTCUSDT", "1m", 60000, end_1m);
  std::map<std::pair<std::string, int64_t>, std::string> ref;
  for (const std::string& h : hist_1s) ref[{"1s", std::stoll(Field(h, "t"))}] = h;
  ref[{"1s", end_1s}] = cur_1s;
  for (const std::string& h : hist_1m) ref[{"1m", std::stoll(Field(h, "t"))}] = h;
  ref[{"1m", end_1m}] = cur_1m;
  size_t traded_closes = 0;
  for (const auto& [key, k] : last_event) {
    CAPTURE(key.first);
    CAPTURE(key.second);
    REQUIRE(ref.contains(key));
    // A bucket still open when we stopped reading may have had a later update (its close).
    if (!k.closed && key.second != (key.first == "1s" ? end_1s : end_1m)) continue;
    CheckKline(k, ref[key]);
    traded_closes += k.closed && Field(k.text, "n") != "0" ? 1 : 0;
  }
  CHECK(traded_closes >= 2);  // 30 trades over 3 s: several traded 1s candles closed
  // Every traded 1s bucket of the live trades got its close event.
  for (const RefTrade& t : live) {
    const int64_t b = t.time_ms - t.time_ms % 1000;
    CAPTURE(b);
    CHECK((last_event.contains({"1s", b}) && last_event[{"1s", b}].closed));
  }

  // <symbol>@ticker: the 24h ticker after the last flush holds every trade.
  REQUIRE(!last_ticker.empty());
  CHECK(Field(last_ticker, "s") == "BTCUSDT");
  CHECK(Field(last_ticker, "c") == Scaled(trades.back().price_cents, 2));
  CHECK(Field(last_ticker, "n") == std::to_string(trades.size()));
  CHECK(Field(last_ticker, "F") == "1");
  CHECK(Field(last_ticker, "L") == std::to_string(trades.back().id));
  CHECK(Field(last_ticker, "b") == "0");

  // /stream wraps: {"stream":"btcusdt@kline_1m","data":{...}}; /ws/<stream> is subscribed.
  std::optional<std::string> wrapped = combined.Read(seconds(5));
  REQUIRE(wrapped.has_value());
  CHECK(wrapped->rfind("{\"stream\":\"btcusdt@kline_1m\",\"data\":{\"e\":\"kline\"", 0) == 0);
  std::optional<std::string> d = direct.Read(seconds(5));
  REQUIRE(d.has_value());
  CHECK(Field(*d, "i") == "1s");

  // LIST_SUBSCRIPTIONS, then UNSUBSCRIBE: no more 1s events after its reply.
  ws.Send(R"({"method":"LIST_SUBSCRIPTIONS","id":"two"})");
  ws.Send(R"({"method":"UNSUBSCRIBE","params":["btcusdt@kline_1s"],"id":3})");
  bool listed = false, unsubscribed = false;
  int late_1s = 0;
  const auto until2 = std::chrono::steady_clock::now() + seconds(4);
  while (std::chrono::steady_clock::now() < until2) {
    std::optional<std::string> msg = ws.Read(milliseconds(200));
    if (!msg) continue;
    if (msg->find("\"id\":\"two\"") != std::string::npos) {
      listed = msg->find("\"btcusdt@kline_1s\"") != std::string::npos &&
               msg->find("\"btcusdt@kline_1m\"") != std::string::npos;
    } else if (*msg == R"({"result":null,"id":3})") {
      unsubscribed = true;
    } else if (unsubscribed && Field(*msg, "i") == "1s") {
      ++late_1s;
    }
  }
  CHECK(listed);
  CHECK(unsubscribed);
  CHECK(late_1s == 0);

  // SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE of a symbol no one else wants, within one poll of the
  // hub: the symbol ends subscribed on Redis (the net change decides, not the order of the
  // commands the hub would otherwise send).
  LiveTrades(&producer, "ETHUSDT", 1, 1, 0, &rng);  // a known symbol no client wants yet
  REQUIRE(WaitApiKnows(api_port, "ETHUSDT"));
  kt::WsClient again;
  REQUIRE_MESSAGE(again.Open(api_port, "/ws"), again.error());
  again.Send(R"({"method":"SUBSCRIBE","params":["ethusdt@kline_1m"],"id":1})");
  again.Send(R"({"method":"UNSUBSCRIBE","params":["ethusdt@kline_1m"],"id":2})");
  again.Send(R"({"method":"SUBSCRIBE","params":["ethusdt@kline_1m"],"id":3})");
  for (int id = 1; id <= 3; ++id) {
    const std::optional<std::string> reply = again.Read(seconds(5));
    CHECK(reply.value_or("(none)") == R"({"result":null,"id":)" + std::to_string(id) + "}");
  }
  std::this_thread::sleep_for(milliseconds(300));
  LiveTrades(&producer, "ETHUSDT", 2, 1, 0, &rng);
  std::optional<std::string> eth_event = again.Read(seconds(5));
  REQUIRE_MESSAGE(eth_event.has_value(), "no event after SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE");
  CHECK(Field(*eth_event, "s") == "ETHUSDT");
  CHECK(Field(*eth_event, "i") == "1m");

  const std::string metrics = stack.Metrics();
  CHECK(MetricValue(metrics, "klined_api_ws_connections") == 4);
  CHECK(MetricValue(metrics, "klined_api_pubsub_messages_total") > 0);
  CHECK(MetricValue(metrics, "klined_api_pubsub_bad_total") == 0);
  StopCleanly(*klined);
}

TEST_CASE("api ws: on a Redis Cluster a streamed symbol's slot moves; its stream goes on") {
  // The node that served the slot ends the hub's subscription (sunsubscribe) when the slot
  // leaves it; the hub subscribes everything again on the refreshed topology, so the stream
  // resumes from the slot's new primary. Events published between the move and the new
  // subscription are not seen (as after a lost connection); every 1s candle traded from a
  // second after the move on gets its updates and its close, equal to the reference.
  const int api_port = kt::FreePort();
  Stack stack(false, ApiTail(api_port, "  weight_per_minute: 0\n") + "intervals: [1s, 1m]\n");
  stack.UseCluster();
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  std::mt19937_64 rng(77);
  std::vector<RefTrade> trades = LiveTrades(&producer, "MVUSDT", 1, 1, 0, &rng);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  REQUIRE(WaitApiKnows(api_port, "MVUSDT"));
  kt::WsClient ws;
  REQUIRE_MESSAGE(ws.Open(api_port, "/ws/mvusdt@kline_1s"), ws.error());
  std::this_thread::sleep_for(milliseconds(300));  // the subscription reaches Redis

  std::vector<RefTrade> live;
  std::thread feeder([&] { live = LiveTrades(&producer, "MVUSDT", 2, 45, 100, &rng); });
  std::this_thread::sleep_for(milliseconds(1000));
  const uint16_t slot = klined::cluster::KeySlot("MVUSDT");
  kt::RedisServer& to = stack.cluster->OtherPrimary(slot);
  stack.cluster->MoveSlot(slot, to);
  REQUIRE(&stack.cluster->PrimaryOf(slot) == &to);
  const int64_t moved_ms = NowMs();
  feeder.join();
  trades.insert(trades.end(), live.begin(), live.end());
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(30)), klined->OutputTail());

  const int64_t last_1s = trades.back().time_ms - trades.back().time_ms % 1000;
  std::map<int64_t, Kline> last_event;  // per 1s bucket
  auto until = std::chrono::steady_clock::now() + seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    std::optional<std::string> msg = ws.Read(milliseconds(200));
    if (!msg) continue;
    std::optional<Kline> k = KlineOf(*msg);
    REQUIRE_MESSAGE(k.has_value(), *msg);
    last_event[k->open] = *k;
    if (k->open == last_1s && k->closed) until = std::chrono::steady_clock::now() + seconds(1);
  }
  const int64_t from = moved_ms - moved_ms % 1000 + 2000;  // a second after the move's second
  size_t checked = 0;
  int64_t checked_last = 0;
  for (const RefTrade& t : live) {
    const int64_t b = t.time_ms - t.time_ms % 1000;
    if (b < from || (checked > 0 && b == checked_last)) continue;
    CAPTURE(b);
    REQUIRE(last_event.contains(b));
    CHECK(last_event[b].closed);
    // The reference's closed candle of bucket b: history once the next bucket is current.
    std::vector<RefTrade> upto;
    for (const RefTrade& u : trades) {
      if (u.time_ms < b + 1000) upto.push_back(u);
    }
    const std::vector<std::string> hist = Expected(upto, "MVUSDT", "1s", 1000, b + 1000).first;
    REQUIRE(!hist.empty());
    CHECK(Field(hist.back(), "t") == std::to_string(b));
    CheckKline(last_event[b], hist.back());
    checked_last = b;
    ++checked;
  }
  MESSAGE(checked << " traded 1s candles after the move checked, of " << last_event.size()
                  << " buckets streamed");
  CHECK(checked >= 2);  // ~3 s of trades after the move
  const std::string metrics = stack.Metrics();
  CHECK(MetricValue(metrics, "klined_api_pubsub_moved_total") >= 1);
  CHECK(MetricValue(metrics, "klined_api_pubsub_reconnects_total") >= 1);
  StopCleanly(*klined);
}

TEST_CASE(
    "api ws: FLUSH publishes only what API instances stream; a killed instance's part "
    "expires") {
  const int api_port = kt::FreePort();
  const std::string tail = "intervals: [1s, 1m]\n";
  Stack stack(
      false,
      ApiTail(api_port, "  weight_per_minute: 0\n  watch_ttl_ms: 1500\n  cache_bytes: 0\n") + tail);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  std::mt19937_64 rng(31);
  int64_t id = 1;
  auto trade = [&] {
    const std::vector<RefTrade> t = LiveTrades(&producer, "BTCUSDT", id++, 1, 0, &rng);
    REQUIRE(stack.WaitForWatermarks(LastIds(t), seconds(30)));
  };
  trade();
  REQUIRE(WaitApiKnows(api_port, "BTCUSDT"));

  // Everything published on the symbol's channel. Only FLUSH publishes a current candle with
  // trades (x:false, n > 0): the rollover's new currents are empty.
  std::mutex mu;
  std::vector<std::string> lines;
  std::thread listener([&] {
    kt::RedisClient sub(stack.redis.host(), stack.redis.port(), seconds(60));
    freeReplyObject(redisCommand(sub.get(), "SSUBSCRIBE kline:{BTCUSDT}:events"));
    while (true) {
      void* r = nullptr;
      if (redisGetReply(sub.get(), &r) != REDIS_OK) return;
      auto* rep = static_cast<redisReply*>(r);
      std::string payload;
      if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3) {
        payload.assign(rep->element[2]->str, rep->element[2]->len);
      }
      freeReplyObject(rep);
      if (payload == "stop") return;
      std::lock_guard<std::mutex> lock(mu);
      std::istringstream in(payload);
      for (std::string l; std::getline(in, l);) lines.push_back(l);
    }
  });
  // The intervals of the FLUSH currents published since the last call.
  auto flushed = [&] {
    std::this_thread::sleep_for(milliseconds(500));  // the publish reaches the listener
    std::lock_guard<std::mutex> lock(mu);
    std::set<std::string> out;
    for (const std::string& l : lines) {
      if (l.rfind("{\"t\":", 0) == 0 && Field(l, "x") == "false" && Field(l, "n") != "0") {
        out.insert(Field(l, "i"));
      }
    }
    lines.clear();
    return out;
  };
  kt::RedisClient rc = stack.redis.Connect();
  auto watch = [&] { return rc.Get("kline:{BTCUSDT}:watch").value_or("(none)"); };
  std::this_thread::sleep_for(milliseconds(300));  // the listener is subscribed

  // Nobody streams the symbol: FLUSH publishes nothing.
  CHECK(watch() == "(none)");
  flushed();
  trade();
  CHECK(flushed() == std::set<std::string>{});

  // A client of this instance streams 1m: only 1m is published.
  kt::WsClient a;
  REQUIRE(a.Open(api_port, "/ws/btcusdt@kline_1m"));
  CHECK(WaitUntil([&] { return watch() == ",1m,"; }, seconds(5)));
  trade();
  CHECK(flushed() == std::set<std::string>{"1m"});
  CHECK(a.Read(seconds(5)).has_value());

  // A second instance's client streams 1s: the watch is the union.
  const int b_port = kt::FreePort();
  int b_metrics = 0;
  stack.config_tail =
      ApiTail(b_port, "  weight_per_minute: 0\n  watch_ttl_ms: 1500\n") + "roles: [api]\n" + tail;
  auto b_instance = stack.StartInstance("b", &b_metrics);
  REQUIRE_MESSAGE(WaitApiKnows(b_port, "BTCUSDT"), b_instance->OutputTail());
  kt::WsClient b;
  REQUIRE(b.Open(b_port, "/ws/btcusdt@kline_1s"));
  CHECK(WaitUntil(
      [&] {
        const std::string w = watch();
        return w.find(",1s,") != std::string::npos && w.find(",1m,") != std::string::npos;
      },
      seconds(5)));
  trade();
  CHECK(flushed().contains("1m"));

  // kill -9 of that instance: its part expires within its ttl (1.5 s) and the 1s candles are no
  // longer published; the live instance's part stays.
  b_instance->Kill();
  CHECK(WaitUntil([&] { return watch() == ",1m,"; }, seconds(10)));
  flushed();
  trade();
  CHECK(flushed() == std::set<std::string>{"1m"});

  // The last client leaves: the watch goes.
  a.Close();
  CHECK(WaitUntil([&] { return watch() == "(none)"; }, seconds(5)));
  rc.Command({"SPUBLISH", "kline:{BTCUSDT}:events", "stop"});
  listener.join();
  CHECK(MetricValue(stack.Metrics(), "klined_api_watch_writes_total") > 0);
  StopCleanly(*klined);
}

TEST_CASE("api ws: bad input gets Binance's errors and the connection stays; limits close") {
  const int api_port = kt::FreePort();
  Stack stack(false, ApiTail(api_port,
                             "  weight_per_minute: 0\n  ws_max_streams: 2\n"
                             "  ws_messages_per_second: 10\n"));
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  std::mt19937_64 rng(7);
  const std::vector<RefTrade> trades = LiveTrades(&producer, "ETHUSDT", 1, 1, 0, &rng);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(60)));
  REQUIRE(WaitApiKnows(api_port, "ETHUSDT"));

  kt::WsClient ws;
  REQUIRE_MESSAGE(ws.Open(api_port, "/ws/0"), ws.error());  // ccxt's form: acts as /ws
  struct Case {
    std::string send;
    std::string code;
    std::string id;
  };
  const std::vector<Case> cases = {
      {"not json", "3", "null"},
      {R"({"method":"SUBSCRIBE","params":["ethusdt@kline_1m"],"id":1)", "3", "null"},
      {R"(["SUBSCRIBE"])", "2", "null"},
      {R"({"method":"PUBLISH","params":[],"id":5})", "2", "5"},
      {R"({"method":"SUBSCRIBE","params":["ethusdt@kline_1m"],"id":6,"x":1})", "0", "6"},
      {R"({"method":"SUBSCRIBE","params":"ethusdt@kline_1m","id":7})", "1", "7"},
      {R"({"method":"SUBSCRIBE","params":["ethusdt@kline_1m"],"id":-1})", "1", "null"},
      {R"({"method":"SUBSCRIBE","params":["ethusdt@depth"],"id":8})", "2", "8"},
      {R"({"method":"SUBSCRIBE","params":["nope@kline_1m"],"id":9})", "2", "9"},
      {R"({"method":"SUBSCRIBE","params":["ethusdt@kline_7m"],"id":10})", "2", "10"},
      {R"({"method":"SUBSCRIBE","id":11})", "2", "11"},
      {R"({"method":"SUBSCRIBE","params":["ethusdt@kline_1m","ethusdt@kline_5m","ethusdt@kline_1h"],"id":12})",
       "2", "12"},  // past ws_max_streams (2)
  };
  for (const Case& c : cases) {
    CAPTURE(c.send);
    ws.Send(c.send);
    std::optional<std::string> reply = ws.Read(seconds(5));
    REQUIRE(reply.has_value());
    CHECK(reply->rfind("{\"error\":{\"code\":" + c.code + ",\"msg\":\"", 0) == 0);
    CHECK(reply->find("},\"id\":" + c.id + "}") != std::string::npos);
    std::this_thread::sleep_for(milliseconds(120));  // under 10 messages a second
  }
  ws.SendBinary("\x01\x02");
  std::optional<std::string> bin = ws.Read(seconds(5));
  REQUIRE(bin.has_value());
  CHECK(bin->rfind("{\"error\":{\"code\":3,", 0) == 0);
  // Still usable: a valid request is answered.
  std::this_thread::sleep_for(milliseconds(120));
  ws.Send(R"({"method":"SUBSCRIBE","params":["ethusdt@kline_1m","ETHUSDT@kline_5m"],"id":20})");
  CHECK(ws.Read(seconds(5)) == std::optional<std::string>(R"({"result":null,"id":20})"));
  CHECK(!ws.Closed());

  // A plain GET of /ws is not an upgrade: 404.
  CHECK(kt::HttpFetch(api_port, "/ws").status == 404);

  // A ping is answered with a pong; a message in fragments, with a ping between them, is
  // one message.
  ws.Ping();
  CHECK(WaitUntil([&] { return ws.pongs() == 1; }, seconds(5)));
  std::this_thread::sleep_for(milliseconds(120));
  const std::string list = R"({"method":"LIST_SUBSCRIPTIONS","id":21})";
  ws.SendRaw(ClientFrame(0x01, list.substr(0, 10)) + ClientFrame(0x89, "p") +
             ClientFrame(0x80, list.substr(10)));
  std::optional<std::string> listed = ws.Read(seconds(5));
  REQUIRE(listed.has_value());
  CHECK(listed->rfind(R"({"result":[)", 0) == 0);
  CHECK(listed->find(R"("id":21})") != std::string::npos);
  CHECK(WaitUntil([&] { return ws.pongs() == 2; }, seconds(5)));
  CHECK(!ws.Closed());

  // A frame over 4 KiB closes the connection (1009), a text frame that is not UTF-8 too (1007).
  kt::WsClient big;
  REQUIRE(big.Open(api_port, "/ws"));
  big.Send(std::string(5000, 'x'));
  CHECK(WaitUntil([&] { return big.Closed(); }, seconds(5)));
  CHECK(big.close_code() == 1009);
  kt::WsClient bad_text;
  REQUIRE(bad_text.Open(api_port, "/ws"));
  bad_text.SendRaw(ClientFrame(0x81, "{\"method\":\"\xff\"}"));
  CHECK(WaitUntil([&] { return bad_text.Closed(); }, seconds(5)));
  CHECK(bad_text.close_code() == 1007);
  // The client's close is answered with a close frame (a clean close).
  kt::WsClient leaving;
  REQUIRE(leaving.Open(api_port, "/ws"));
  leaving.Close();
  CHECK(WaitUntil([&] { return leaving.closed_cleanly(); }, seconds(5)));
  // A flood (more than 10 messages a second) closes it too.
  kt::WsClient flood;
  REQUIRE(flood.Open(api_port, "/ws"));
  for (int i = 0; i < 30; ++i) flood.Send(R"({"method":"LIST_SUBSCRIPTIONS","id":1})");
  CHECK(WaitUntil([&] { return flood.Closed(); }, seconds(5)));
  const std::string metrics = stack.Metrics();
  CHECK(MetricValue(metrics, "klined_api_ws_closed_total{reason=\"flood\"}") == 1);
  CHECK(MetricValue(metrics, "klined_api_ws_closed_total{reason=\"error\"}") == 2);
  CHECK(MetricValue(metrics, "klined_api_ws_closed_total{reason=\"client\"}") == 1);
  CHECK(MetricValue(metrics, "klined_api_ws_error_replies_total") == cases.size() + 1);
  StopCleanly(*klined);
}

TEST_CASE("api ws: a stalled client is conflated, then disconnected; the others keep up") {
  const int api_port = kt::FreePort();
  // A small send queue (32 KiB: above one flush's burst of 40 events, ~14 KiB), so the stalled
  // client passes it within seconds once its socket buffers are full.
  Stack stack(false, ApiTail(api_port, "  weight_per_minute: 0\n  ws_send_queue_bytes: 32768\n") +
                         "intervals: [1s, 1m]\n");
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  std::mt19937_64 rng(99);
  std::vector<std::string> symbols;
  std::vector<RefTrade> first;
  for (int s = 0; s < 20; ++s) {
    symbols.push_back("S" + std::to_string(s) + "USDT");
    std::vector<RefTrade> t = LiveTrades(&producer, symbols.back(), 1, 1, 0, &rng);
    first.insert(first.end(), t.begin(), t.end());
  }
  REQUIRE(stack.WaitForWatermarks(LastIds(first), seconds(60)));
  for (const std::string& s : symbols) REQUIRE(WaitApiKnows(api_port, s));

  std::string subscribe = R"({"method":"SUBSCRIBE","params":[)";
  for (size_t i = 0; i < symbols.size(); ++i) {
    std::string lower = symbols[i];
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    subscribe += (i ? "," : "") + ("\"" + lower + "@kline_1s\",\"" + lower + "@kline_1m\"");
  }
  subscribe += R"(],"id":1})";
  kt::WsClient slow, fast;
  REQUIRE(slow.Open(api_port, "/ws"));
  REQUIRE(fast.Open(api_port, "/ws"));
  slow.Send(subscribe);
  fast.Send(subscribe);
  REQUIRE(slow.Read(seconds(5)) == std::optional<std::string>(R"({"result":null,"id":1})"));
  REQUIRE(fast.Read(seconds(5)) == std::optional<std::string>(R"({"result":null,"id":1})"));
  slow.PauseReading();

  // Trades on every symbol for up to 20 s, until the server drops the stalled client; the
  // reading client keeps receiving all the while (no gap of a second without an event).
  std::atomic<bool> stop{false};
  std::thread trader([&] {
    int64_t id = 2;
    while (!stop.load()) {
      for (const std::string& s : symbols) {
        RefTrade t{s, id, NowMs(), 10000 + static_cast<int64_t>(rng() % 500), 1, false};
        producer.Produce("trades", t.symbol, TradeJson(t));
      }
      producer.Flush();
      ++id;
      std::this_thread::sleep_for(milliseconds(20));
    }
  });
  const auto start = std::chrono::steady_clock::now();
  auto longest_gap = milliseconds(0);
  auto last_event = std::chrono::steady_clock::now();
  size_t fast_events = 0;
  bool dropped = false;
  while (std::chrono::steady_clock::now() - start < seconds(20)) {
    if (fast.Read(milliseconds(100))) {
      ++fast_events;
      const auto now = std::chrono::steady_clock::now();
      longest_gap =
          std::max(longest_gap, std::chrono::duration_cast<milliseconds>(now - last_event));
      last_event = now;
    }
    if (!dropped &&
        MetricValue(stack.Metrics(), "klined_api_ws_closed_total{reason=\"slow\"}") == 1) {
      dropped = true;
      // Keep reading a little longer: the fast client is not affected by the drop.
      const auto after = std::chrono::steady_clock::now();
      while (std::chrono::steady_clock::now() - after < seconds(2)) {
        if (fast.Read(milliseconds(100))) ++fast_events;
      }
      break;
    }
  }
  stop.store(true);
  trader.join();
  CHECK(dropped);
  CHECK(!fast.Closed());
  CHECK(fast_events > 100);
  CHECK(longest_gap < milliseconds(1000));
  const std::string metrics = stack.Metrics();
  CHECK(MetricValue(metrics, "klined_api_ws_conflated_total") > 0);
  CHECK(MetricValue(metrics, "klined_api_ws_connections") == 1);
  StopCleanly(*klined);
}

namespace {

// The klines rows of `query` equal the reference rows that end where they end, once the
// cache has caught up with the writes whose messages are on their way (a few ms): polled for
// up to 3 s. A stale cache never catches up.
bool RestMatches(int api_port, const std::vector<RefTrade>& trades, const std::string& sym,
                 const std::string& iv, int64_t len, const std::string& query, std::string* last) {
  const auto until = std::chrono::steady_clock::now() + seconds(3);
  while (true) {
    const std::vector<std::string> rows = Rows(
        kt::HttpFetch(api_port, "/api/v3/klines?symbol=" + sym + "&interval=" + iv + query).body);
    if (!rows.empty()) {
      std::vector<std::string> ref = RefRows(trades, sym, iv, len, OpenOf(rows.back()));
      if (ref.size() > rows.size()) ref.erase(ref.begin(), ref.end() - ptrdiff_t(rows.size()));
      if (rows == ref) return true;
      *last = "rows " + std::to_string(rows.size()) + ", first differing: ";
      for (size_t i = 0; i < rows.size() && i < ref.size(); ++i) {
        if (rows[i] != ref[i]) {
          *last += rows[i] + " vs " + ref[i];
          break;
        }
      }
    }
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(milliseconds(50));
  }
}

}  // namespace

TEST_CASE(
    "api cache: hits equal the independent computation through trades, late trades, "
    "re-carries and a lost subscriber") {
  const int api_port = kt::FreePort();
  Stack stack(false, ApiTail(api_port, "  weight_per_minute: 0\n") + "intervals: [1s, 1m]\n");
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  std::mt19937_64 rng(77);
  std::vector<RefTrade> trades = LiveTrades(&producer, "BTCUSDT", 1, 5, 100, &rng);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  REQUIRE(WaitApiKnows(api_port, "BTCUSDT"));
  std::string diff;
  auto check_all = [&](const std::string& when) {
    CAPTURE(when);
    CHECK_MESSAGE(RestMatches(api_port, trades, "BTCUSDT", "1s", 1000, "&limit=1000", &diff), diff);
    CHECK_MESSAGE(RestMatches(api_port, trades, "BTCUSDT", "1s", 1000, "&limit=3", &diff), diff);
    CHECK_MESSAGE(RestMatches(api_port, trades, "BTCUSDT", "1m", 60000, "", &diff), diff);
  };
  check_all("first reads");  // a miss each, then entries
  check_all("entries");
  const double loads = MetricValue(stack.Metrics(), "klined_api_cache_loads_total");
  CHECK(loads >= 2);

  // Live trades: every answer from the cache follows them.
  for (int round = 0; round < 5; ++round) {
    const std::vector<RefTrade> more =
        LiveTrades(&producer, "BTCUSDT", trades.back().id + 1, 3, 100, &rng);
    trades.insert(trades.end(), more.begin(), more.end());
    REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
    check_all("live trades");
  }

  // A late trade into the last traded 1s bucket after two seconds of empty ones: its close is
  // re-carried into the empty candles after it (FLUSH publishes those too).
  std::this_thread::sleep_for(milliseconds(2500));
  RefTrade late = trades.back();
  late.id += 1;
  late.price_cents += 777;
  producer.Produce("trades", late.symbol, TradeJson(late));
  producer.Flush();
  trades.push_back(late);
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  check_all("a late trade re-carried");

  // The subscriber's connection is killed: the cache drops what it held (messages may have
  // been missed) and reads Redis again once resubscribed.
  for (kt::RedisClient& rc : stack.Nodes()) rc.Command({"CLIENT", "KILL", "TYPE", "pubsub"});
  const std::vector<RefTrade> after =
      LiveTrades(&producer, "BTCUSDT", trades.back().id + 1, 3, 50, &rng);
  trades.insert(trades.end(), after.begin(), after.end());
  REQUIRE(stack.WaitForWatermarks(LastIds(trades), seconds(30)));
  check_all("after the subscriber's reconnect");

  const std::string metrics = stack.Metrics();
  CHECK(MetricValue(metrics, "klined_api_cache_hits_total{layer=\"candles\"}") > 10);
  CHECK(MetricValue(metrics, "klined_api_pubsub_reconnects_total") >= 1);
  CHECK(MetricValue(metrics, "klined_api_cache_invalidations_total") >= 1);
  CHECK(MetricValue(metrics, "klined_api_cache_loads_total") > loads);
  CHECK(MetricValue(metrics, "klined_api_cache_bytes") > 0);
  CHECK(MetricValue(metrics, "klined_api_cache_entries{layer=\"candles\"}") == 2);  // 1s, 1m
  MESSAGE("cache: hits " << MetricValue(metrics, "klined_api_cache_hits_total{layer=\"candles\"}")
                         << ", misses "
                         << MetricValue(metrics, "klined_api_cache_misses_total{layer=\"candles\"}")
                         << ", loads " << MetricValue(metrics, "klined_api_cache_loads_total")
                         << ", bytes " << MetricValue(metrics, "klined_api_cache_bytes"));
  StopCleanly(*klined);
}
