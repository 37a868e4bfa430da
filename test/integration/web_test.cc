// Client software from npm against the real stack (redis-server, mariadbd, the Kafka test
// broker, the klined binary). Invariants checked:
//  - ccxt's `binance` class, unchanged but for its base URLs (test/web/ccxt_client.mjs says
//    what it needs), loads klined's markets, pages fetchOHLCV forward from since=0 and reads
//    fetchTicker; every OHLCV row equals the independent computation (stack.h), as numbers,
//    and the ticker equals the trades' figures; it asks klined for nothing it lacks;
//  - the chart page (web/, served by klined from api.web_root) in Debian's chromium draws
//    exactly the REST rows of its symbol and interval (which equal the independent
//    computation), lists the known symbols and the configured intervals, and a trade produced
//    after it loaded moves its last bar to the reference candle with that trade; live mode is
//    the WebSocket when the server upgrades /ws, else the REST polling fallback.
// The npm packages come from scripts/npm-install.sh (make test runs it); without them, node
// or chromium these cases FAIL, saying what to install.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "source_dir.h"
#include "stack.h"
#include "ws_client.h"

using namespace klined_it;
namespace fs = std::filesystem;
using kt::BuildDir;
using kt::SourceDir;

namespace {

// ---- a small JSON reader for the node clients' output ----------------------------------
struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  double number = 0;
  std::string text;  // a string's contents
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> fields;

  const Json& operator[](const std::string& key) const {
    for (const auto& [k, v] : fields)
      if (k == key) return v;
    throw std::runtime_error("no key " + key);
  }
  const Json& operator[](size_t i) const {
    if (i >= items.size()) throw std::runtime_error("index out of range");
    return items[i];
  }
  bool Has(const std::string& key) const {
    for (const auto& f : fields)
      if (f.first == key) return true;
    return false;
  }
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}
  Json ParseDocument() {
    Json v = Value();
    Space();
    if (at_ != s_.size()) Fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void Fail(const std::string& why) const {
    throw std::runtime_error("JSON: " + why + " at offset " + std::to_string(at_));
  }
  void Space() {
    while (at_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[at_]))) ++at_;
  }
  bool Eat(char c) {
    Space();
    if (at_ < s_.size() && s_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  void Expect(char c) {
    if (!Eat(c)) Fail(std::string("expected '") + c + "'");
  }
  std::string String() {
    Expect('"');
    std::string out;
    while (at_ < s_.size() && s_[at_] != '"') {
      char c = s_[at_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= s_.size()) Fail("bad escape");
      c = s_[at_++];
      static constexpr std::string_view kEscapes = "n\nt\tr\rb\bf\f";
      if (const size_t k = kEscapes.find(c); k != std::string_view::npos && k % 2 == 0) {
        out += kEscapes[k + 1];
      } else if (c == 'u') {
        if (at_ + 4 > s_.size()) Fail("bad \\u");
        const unsigned cp = std::stoul(std::string(s_.substr(at_, 4)), nullptr, 16);
        at_ += 4;
        if (cp < 0x80) {
          out += static_cast<char>(cp);
        } else if (cp < 0x800) {
          out += static_cast<char>(0xC0 | (cp >> 6));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
          out += static_cast<char>(0xE0 | (cp >> 12));
          out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        }
      } else {
        out += c;  // " \ /
      }
    }
    if (at_ >= s_.size()) Fail("unterminated string");
    ++at_;
    return out;
  }
  Json Value() {
    Space();
    if (at_ >= s_.size()) Fail("unexpected end");
    Json v;
    const char c = s_[at_];
    if (c == '{') {
      v.kind = Json::kObject;
      ++at_;
      if (Eat('}')) return v;
      do {
        Space();
        std::string key = String();
        Expect(':');
        v.fields.emplace_back(std::move(key), Value());
      } while (Eat(','));
      Expect('}');
    } else if (c == '[') {
      v.kind = Json::kArray;
      ++at_;
      if (Eat(']')) return v;
      do v.items.push_back(Value());
      while (Eat(','));
      Expect(']');
    } else if (c == '"') {
      v.kind = Json::kString;
      v.text = String();
    } else if (s_.substr(at_, 4) == "true" || s_.substr(at_, 5) == "false") {
      v.kind = Json::kBool;
      v.boolean = s_[at_] == 't';
      at_ += v.boolean ? 4 : 5;
    } else if (s_.substr(at_, 4) == "null") {
      at_ += 4;
    } else {
      v.kind = Json::kNumber;
      const std::string rest(s_.substr(at_, 64));
      char* end = nullptr;
      v.number = std::strtod(rest.c_str(), &end);
      if (end == rest.c_str()) Fail("bad value");
      at_ += static_cast<size_t>(end - rest.c_str());
    }
    return v;
  }

  std::string_view s_;
  size_t at_ = 0;
};

Json ParseJson(std::string_view s) { return JsonParser(s).ParseDocument(); }

// ---- the reference, as the numbers a client library sees -------------------------------
// A double as its shortest exact text, so two vectors of them compare and print readably.
std::string Num(double d) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}
std::string Num(const std::string& decimal) { return Num(std::strtod(decimal.c_str(), nullptr)); }

// The reference candles of (sym, iv) through the bucket opening at end_open, oldest first.
std::vector<std::string> RefCandles(const std::vector<RefTrade>& trades, const std::string& sym,
                                    const std::string& iv, int64_t len, int64_t end_open) {
  auto [hist, current] = Expected(trades, sym, iv, len, end_open);
  hist.push_back(current);
  return hist;
}

// "t o h l c v" of a reference candle, each as the number its decimal string reads as.
std::string RefOhlcv(const std::string& candle) {
  return Field(candle, "t") + " " + Num(Field(candle, "o")) + " " + Num(Field(candle, "h")) + " " +
         Num(Field(candle, "l")) + " " + Num(Field(candle, "c")) + " " + Num(Field(candle, "v"));
}
// "t o h l c" (no volume: the chart's bars).
std::string RefOhlc(const std::string& candle) {
  const std::string s = RefOhlcv(candle);
  return s.substr(0, s.rfind(' '));
}

// ---- the environment: source tree, node, npm packages, chromium -------------------------
// Empty when node, the npm packages and chromium are all there; else what is missing and how
// to install it. The cases fail on it: `make test` installs all of them.
std::string MissingForWeb(const fs::path& src) {
  std::string missing;
  try {
    kt::FindBinary("node");
  } catch (const std::exception&) {
    missing += "node is not on PATH (scripts/install-deps.sh installs Debian's nodejs); ";
  }
  for (const char* pkg : {"ccxt", "puppeteer-core", "lightweight-charts"}) {
    if (!fs::exists(src / "web" / "node_modules" / pkg / "package.json")) {
      missing += std::string("web/node_modules/") + pkg + " is missing; ";
    }
  }
  if (!fs::exists(src / "web" / "vendor" / "lightweight-charts.standalone.production.js")) {
    missing += "web/vendor/lightweight-charts.standalone.production.js is missing; ";
  }
  if (missing.find("web/") != std::string::npos) {
    missing += "run scripts/npm-install.sh (make test does); ";
  }
  return missing;
}

std::string WebTail(int port, const fs::path& web_root) {
  return "api:\n  listen: \"127.0.0.1:" + std::to_string(port) +
         "\"\n  symbols_refresh_ms: 200\n  weight_per_minute: 0\n  web_root: \"" +
         web_root.string() + "\"\n";
}

// Whether the server upgrades GET /ws to a WebSocket.
bool ServerUpgradesWs(int port) {
  kt::WsClient probe;
  return probe.Open(port, "/ws");
}

// Runs a node client to its end (at most `timeout`); its exit status.
kt::ExitStatus RunToEnd(kt::Subprocess& p, seconds timeout) {
  auto st = p.Wait(timeout);
  if (st) return *st;
  return p.Stop(milliseconds(5000));
}

// The stdout line of a node client that starts with `prefix`, parsed.
Json Line(const std::string& out, const std::string& prefix) {
  std::istringstream lines(out);
  for (std::string l; std::getline(lines, l);) {
    if (l.rfind(prefix, 0) == 0) return ParseJson(l);
  }
  throw std::runtime_error("no output line starting with " + prefix);
}

}  // namespace

TEST_CASE("web: ccxt's binance class reads klined unchanged") {
  const fs::path src = SourceDir();
  const std::string missing = MissingForWeb(src);
  REQUIRE_MESSAGE(missing.empty(), missing);
  const int api_port = kt::FreePort();
  Stack stack(false, WebTail(api_port, src / "web"));
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHBTC"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 200, 4242);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  for (const std::string& s : symbols) REQUIRE(WaitApiKnows(api_port, s));

  // Pages of 7: the ~21-candle 1m series takes several calls (since = last open time + 1).
  kt::Subprocess ccxt(
      "node",
      {(src / "test" / "web" / "ccxt_client.mjs").string(), "--base",
       "http://127.0.0.1:" + std::to_string(api_port), "--symbol", "BTC/USDT", "--timeframe", "1m",
       "--page-limit", "7"},
      kt::SubprocessOptions{.log_dir = stack.dir.path(), .name = "ccxt", .env = {}, .cwd = {}});
  const kt::ExitStatus st = RunToEnd(ccxt, seconds(40));
  REQUIRE_MESSAGE(st.Code() == 0, st.Describe() << "\n" << ccxt.OutputTail());
  const Json out = ParseJson(ccxt.Stdout());
  MESSAGE("ccxt " << out["ccxt"].text << ": " << out["ohlcv"].items.size() << " OHLCV rows in "
                  << out["pages"].number << " pages");

  // Markets: klined's symbols as spot markets, split by the quote-asset list.
  std::vector<std::string> markets;
  for (const Json& m : out["markets"].items) markets.push_back(m.text);
  CHECK(markets == std::vector<std::string>{"BTC/USDT", "ETH/BTC"});
  CHECK(out["market"]["id"].text == "BTCUSDT");
  CHECK(out["market"]["base"].text == "BTC");
  CHECK(out["market"]["quote"].text == "USDT");
  CHECK(out["market"]["spot"].boolean);
  CHECK(out["market"]["active"].boolean);

  // OHLCV rows [t, o, h, l, c, v] as numbers: the whole gapless series, equal to the
  // reference's decimals read as numbers.
  std::vector<std::string> got;
  for (const Json& row : out["ohlcv"].items) {
    REQUIRE(row.items.size() == 6);
    std::string s = Num(row[0].number);
    for (size_t i = 1; i < 6; ++i) s += " " + Num(row[i].number);
    got.push_back(s);
  }
  REQUIRE(!got.empty());
  const int64_t end_open = static_cast<int64_t>(out["ohlcv"].items.back()[0].number);
  std::vector<std::string> want;
  for (const std::string& c : RefCandles(trades, "BTCUSDT", "1m", 60000, end_open))
    want.push_back(RefOhlcv(c));
  CHECK(got.size() >= 15);
  CHECK(got == want);
  CHECK(out["pages"].number == std::floor(static_cast<double>(want.size()) / 7) + 1);

  // fetchTicker: the 24h window holds every trade (all from the last 20 minutes).
  const RefTrade* first = nullptr;
  const RefTrade* last = nullptr;
  I128 volume = 0, quote = 0;
  int64_t high = 0, low = INT64_MAX;
  for (const RefTrade& t : trades) {
    if (t.symbol != "BTCUSDT") continue;
    if (first == nullptr || t.id < first->id) first = &t;
    if (last == nullptr || t.id > last->id) last = &t;
    volume += t.qty_milli;
    quote += static_cast<I128>(t.price_cents) * t.qty_milli;
    high = std::max(high, t.price_cents);
    low = std::min(low, t.price_cents);
  }
  const Json& ticker = out["ticker"];
  CHECK(ticker["symbol"].text == "BTC/USDT");
  CHECK(Num(ticker["last"].number) == Num(Scaled(last->price_cents, 2)));
  CHECK(Num(ticker["close"].number) == Num(Scaled(last->price_cents, 2)));
  CHECK(Num(ticker["open"].number) == Num(Scaled(first->price_cents, 2)));
  CHECK(Num(ticker["high"].number) == Num(Scaled(high, 2)));
  CHECK(Num(ticker["low"].number) == Num(Scaled(low, 2)));
  CHECK(Num(ticker["baseVolume"].number) == Num(Scaled(volume, 3)));
  CHECK(Num(ticker["quoteVolume"].number) == Num(Scaled(quote, 5)));

  // Only klined's spot endpoints were asked for (nothing under the 404 base of the others).
  size_t klines_calls = 0;
  for (const Json& r : out["requests"].items) {
    CAPTURE(r.text);
    CHECK(r.text.rfind("/api/v3/", 0) == 0);
    klines_calls += r.text.rfind("/api/v3/klines?", 0) == 0 ? 1 : 0;
  }
  CHECK(out["requests"][0].text == "/api/v3/exchangeInfo");
  CHECK(klines_calls == static_cast<size_t>(out["pages"].number));
  CHECK(out["requests"].items.back().text == "/api/v3/ticker/24hr?symbol=BTCUSDT");
  StopCleanly(*klined);
}

TEST_CASE("web: the chart page draws the REST rows and moves with a live trade") {
  const fs::path src = SourceDir();
  const std::string missing = MissingForWeb(src);
  REQUIRE_MESSAGE(missing.empty(), missing);
  REQUIRE_MESSAGE(access("/usr/bin/chromium", X_OK) == 0,
                  "/usr/bin/chromium is missing: scripts/install-deps.sh installs Debian's "
                  "chromium");
  const int api_port = kt::FreePort();
  Stack stack(false, WebTail(api_port, src / "web"));
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT"};
  std::vector<RefTrade> trades = MakeTrades(symbols, 200, 777);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  for (const std::string& s : symbols) REQUIRE(WaitApiKnows(api_port, s));

  // klined serves the page and its assets from web_root.
  const kt::HttpResponse index = kt::HttpFetch(api_port, "/");
  REQUIRE(index.status == 200);
  CHECK(index.Header("Content-Type").find("text/html") == 0);
  CHECK(index.body.find("chart.js") != std::string::npos);
  CHECK(kt::HttpFetch(api_port, "/chart.js").status == 200);
  CHECK(kt::HttpFetch(api_port, "/vendor/lightweight-charts.standalone.production.js").status ==
        200);
  const bool ws = ServerUpgradesWs(api_port);

  const std::string sym = "ETHUSDT";
  const fs::path shot = stack.dir / "chart.png";
  // The trade produced below, and the close the client waits for.
  const RefTrade* prev = nullptr;
  for (const RefTrade& t : trades)
    if (t.symbol == sym && (prev == nullptr || t.id > prev->id)) prev = &t;
  const RefTrade live{sym, prev->id + 1, 0, prev->price_cents + 1234, 1500, false};
  kt::Subprocess chart(
      "node",
      {(src / "test" / "web" / "chart_client.mjs").string(), "--url",
       "http://127.0.0.1:" + std::to_string(api_port) + "/?symbol=" + sym + "&interval=1m",
       "--screenshot", shot.string(), "--timeout-ms", "15000", "--until-close",
       Scaled(live.price_cents, 2)},
      kt::SubprocessOptions{.log_dir = stack.dir.path(), .name = "chart", .env = {}, .cwd = {}});
  const auto loaded_line = chart.WaitForLine("{\"phase\":\"loaded\"", milliseconds(40000));
  REQUIRE_MESSAGE(loaded_line.has_value(), chart.OutputTail());
  // The REST rows right after the page drew them (a rollover in between adds a row at the end).
  const std::vector<std::string> rest_rows = [&] {
    std::vector<std::string> rows;
    const Json body = ParseJson(
        kt::HttpFetch(api_port, "/api/v3/klines?symbol=" + sym + "&interval=1m&limit=1000").body);
    for (const Json& r : body.items) {
      rows.push_back(Num(r[0].number) + " " + Num(r[1].text) + " " + Num(r[2].text) + " " +
                     Num(r[3].text) + " " + Num(r[4].text));
    }
    return rows;
  }();

  const Json loaded = ParseJson(*loaded_line);
  std::vector<std::string> bars;
  for (const Json& b : loaded["bars"].items) {
    bars.push_back(Num(b["time"].number * 1000) + " " + Num(b["open"].number) + " " +
                   Num(b["high"].number) + " " + Num(b["low"].number) + " " +
                   Num(b["close"].number));
  }
  REQUIRE(bars.size() >= 15);
  const std::string mode = loaded["liveMode"].text;
  MESSAGE("chart page: " << bars.size() << " bars of " << loaded["stream"].text << " drawn in "
                         << loaded["loadMs"].number << " ms, live mode " << mode
                         << " (server upgrades /ws: " << std::string(ws ? "yes" : "no") << ")");
  CHECK(mode == (ws ? "ws" : "poll"));
  CHECK(loaded["stream"].text == "ethusdt@kline_1m");
  std::vector<std::string> pick_symbols, pick_intervals;
  for (const Json& s : loaded["symbols"].items) pick_symbols.push_back(s.text);
  for (const Json& s : loaded["intervals"].items) pick_intervals.push_back(s.text);
  CHECK(pick_symbols == symbols);
  CHECK(pick_intervals == std::vector<std::string>{"1m", "5m", "1h"});
  // The bars are the REST rows (a prefix of them, should a rollover have come in between),
  // which are the independent computation.
  REQUIRE(rest_rows.size() >= bars.size());
  CHECK(bars == std::vector<std::string>(rest_rows.begin(),
                                         rest_rows.begin() + static_cast<ptrdiff_t>(bars.size())));
  const int64_t end_open = static_cast<int64_t>(loaded["bars"].items.back()["time"].number) * 1000;
  std::vector<std::string> want;
  for (const std::string& c : RefCandles(trades, sym, "1m", 60000, end_open))
    want.push_back(RefOhlc(c));
  CHECK(bars == want);

  // A trade now, in the current bucket: the last bar moves to the candle holding it.
  RefTrade now = live;
  now.time_ms = NowMs();
  trades.push_back(now);
  Produce(&producer, {now});
  const kt::ExitStatus st = RunToEnd(chart, seconds(30));
  CHECK_MESSAGE(st.Code() == 0, st.Describe() << "\n" << chart.OutputTail());
  const Json moved = Line(chart.Stdout(), "{\"phase\":\"moved\"");
  MESSAGE("after the trade: last bar moved " << std::string(moved["changed"].boolean ? "" : "NOT ")
                                             << "in " << moved["waitedMs"].number
                                             << " ms, live mode " << moved["liveMode"].text);
  // KLINED_WEB_SCREENSHOT=FILE keeps the page's screenshot (the temp dir goes with the test).
  if (const char* keep = std::getenv("KLINED_WEB_SCREENSHOT"); keep != nullptr && *keep != 0) {
    fs::copy_file(shot, keep, fs::copy_options::overwrite_existing);
  }
  REQUIRE(moved["changed"].boolean);
  const Json& b = moved["last"];
  const int64_t bucket = now.time_ms - now.time_ms % 60000;
  const std::vector<std::string> ref = RefCandles(trades, sym, "1m", 60000, bucket);
  CHECK(Num(b["time"].number * 1000) + " " + Num(b["open"].number) + " " + Num(b["high"].number) +
            " " + Num(b["low"].number) + " " + Num(b["close"].number) ==
        RefOhlc(ref.back()));
  CHECK(moved["liveMode"].text == mode);
  CHECK(fs::file_size(shot) > 10000);
  StopCleanly(*klined);
}
