// Tests for src/api/rest_format.h: kline rows, the 24h ticker converted from what
// TickerWindow::AppendJson stores (byte for byte, FULL and MINI, and every malformed input
// refused with the output untouched), the price ticker, exchangeInfo and its base/quote split.
#include "api/rest_format.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "../core/trade_text.h"
#include "klined/candle.h"
#include "klined/ticker.h"

namespace klined::api {
namespace {

constexpr int64_t kT0 = 1732147200000;  // 2024-11-21 00:00 UTC
constexpr int64_t kMin = 60000;

Decimal Dec(std::string_view s) { return test::StoredDec(s); }

// The stored ticker of ticker_test.cc's "contract JSON shape" case, as TickerWindow writes it.
constexpr std::string_view kStored =
    R"({"symbol":"BTCUSDT","priceChange":"-998.5","priceChangePercent":"-3.328",)"
    R"("weightedAvgPrice":"29594.83783784","openPrice":"29999","highPrice":"31000",)"
    R"("lowPrice":"29000.5","lastPrice":"29000.5","lastQty":"1","volume":"1.85",)"
    R"("quoteVolume":"54750.45","openTime":1732065660000,"closeTime":1732152000123,)"
    R"("firstId":99,"lastId":102,"count":4})";

constexpr std::string_view kFull =
    R"({"symbol":"BTCUSDT","priceChange":"-998.5","priceChangePercent":"-3.328",)"
    R"("weightedAvgPrice":"29594.83783784","prevClosePrice":"29999","lastPrice":"29000.5",)"
    R"("lastQty":"1","bidPrice":"0","bidQty":"0","askPrice":"0","askQty":"0",)"
    R"("openPrice":"29999","highPrice":"31000","lowPrice":"29000.5","volume":"1.85",)"
    R"("quoteVolume":"54750.45","openTime":1732065660000,"closeTime":1732152000123,)"
    R"("firstId":99,"lastId":102,"count":4})";

constexpr std::string_view kMini =
    R"({"symbol":"BTCUSDT","openPrice":"29999","highPrice":"31000","lowPrice":"29000.5",)"
    R"("lastPrice":"29000.5","volume":"1.85","quoteVolume":"54750.45",)"
    R"("openTime":1732065660000,"closeTime":1732152000123,"firstId":99,"lastId":102,"count":4})";

std::string Replace(std::string_view s, std::string_view from, std::string_view to) {
  std::string r(s);
  const size_t at = r.find(from);
  REQUIRE(at != std::string::npos);
  r.replace(at, from.size(), to);
  return r;
}

TEST_CASE("api format: AppendJsonString escapes quotes, backslashes and control bytes") {
  std::string out = "x";
  AppendJsonString("a\"b\\c/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9", &out);
  CHECK(out == "x\"a\\\"b\\\\c/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\xc3\xa9\"");
  out.clear();
  AppendJsonString(std::string_view("\0z", 2), &out);
  CHECK(out == "\"\\u0000z\"");
  out.clear();
  AppendJsonString("", &out);
  CHECK(out == "\"\"");
}

TEST_CASE("api format: kline rows have the 12 Binance fields with canonical decimals") {
  Candle c = test::ContractExampleCandle();  // contract section 3's example
  std::string out = "[";
  AppendKlineRow(c, &out);
  CHECK(out == R"([[1732147200000,"43210.5","43250","43200.1","43249.9","12.5",1732147259999,)"
               R"("540123.75",80,"6.1","263601.4","0"])");
  out.clear();
  AppendSymbolKlineRow("BTCUSDT", c, &out);
  CHECK(out == R"(["BTCUSDT",1732147200000,"43210.5","43250","43200.1","43249.9","12.5",)"
               R"(1732147259999,"540123.75",80,"6.1","263601.4","0"])");

  // An empty candle: the carried close in o/h/l/c, zeros as "0"; tiny and huge decimals exact.
  const Candle e =
      Candle::Empty(Interval::k1m, 1732147260000, UtcOffset{}, Dec("0.000000000000000001"));
  out.clear();
  AppendKlineRow(e, &out);
  CHECK(out ==
        R"([1732147260000,"0.000000000000000001","0.000000000000000001",)"
        R"("0.000000000000000001","0.000000000000000001","0",1732147319999,"0",0,"0","0","0"])");
  c.volume = Dec("99999999999999999999.999999999999999999");
  out.clear();
  AppendKlineRow(c, &out);
  CHECK(out.find(R"(,"99999999999999999999.999999999999999999",)") != std::string::npos);
}

TEST_CASE("api format: 24hr ticker FULL and MINI from the stored JSON, byte for byte") {
  std::string out = "[";
  REQUIRE(AppendTicker(kStored, /*mini=*/false, &out));
  CHECK(out == "[" + std::string(kFull));
  out.clear();
  REQUIRE(AppendTicker(kStored, /*mini=*/true, &out));
  CHECK(out == kMini);
  out = "x";
  REQUIRE(AppendTickerPrice(kStored, &out));
  CHECK(out == R"(x{"symbol":"BTCUSDT","price":"29000.5"})");

  // What TickerWindow writes today converts (the stored form and this scanner agree).
  TickerWindow w;
  auto trade = [](TradeId id, std::string_view p, std::string_view q, int64_t t) {
    return test::TradeFromText(id, t, p, q, /*buyer_maker=*/false);
  };
  REQUIRE(w.Apply(trade(100, "30000.10", "0.5", kT0 + 5 * kMin)));
  REQUIRE(w.Apply(trade(101, "31000", "0.25", kT0 + 5 * kMin + 10)));
  REQUIRE(w.Apply(trade(102, "29000.5", "1", kT0 + 70 * kMin)));
  REQUIRE(w.Apply(trade(99, "29999", "0.1", kT0 + 3 * kMin)));
  std::string stored;
  w.AppendJson("BTCUSDT", kT0 + 80 * kMin + 123, &stored);
  CHECK(stored == kStored);
  out.clear();
  REQUIRE(AppendTicker(stored, false, &out));
  CHECK(out == kFull);
  // An empty window (firstId/lastId -1, zeros) converts too.
  TickerWindow empty;
  stored.clear();
  empty.AppendJson("X", kT0, &stored);
  out.clear();
  REQUIRE(AppendTicker(stored, true, &out));
  CHECK(out == R"({"symbol":"X","openPrice":"0","highPrice":"0","lowPrice":"0","lastPrice":"0",)"
               R"("volume":"0","quoteVolume":"0","openTime":1732060860000,)"
               R"("closeTime":1732147200000,"firstId":-1,"lastId":-1,"count":0})");
}

TEST_CASE("api format: the <symbol>@ticker event is Binance's 24hrTicker, byte for byte") {
  std::string out;
  REQUIRE(AppendTickerEvent(kStored, 1732152000200, &out));
  CHECK(out == R"({"e":"24hrTicker","E":1732152000200,"s":"BTCUSDT","p":"-998.5","P":"-3.328",)"
               R"("w":"29594.83783784","x":"29999","c":"29000.5","Q":"1","b":"0","B":"0","a":"0",)"
               R"("A":"0","o":"29999","h":"31000","l":"29000.5","v":"1.85","q":"54750.45",)"
               R"("O":1732065660000,"C":1732152000123,"F":99,"L":102,"n":4})");
  out = "keep";
  CHECK_FALSE(AppendTickerEvent(R"({"symbol":"X"})", 1, &out));
  CHECK(out == "keep");
}

TEST_CASE("api format: the stored ticker scanner accepts JSON's freedoms") {
  // Whitespace, another member order, unknown string/integer members, escapes copied as sent.
  const std::string spaced =
      " {\n  \"count\" : 4 ,\"lastId\":102,\t\"firstId\":99,\"closeTime\":1732152000123,"
      "\"openTime\":1732065660000,\"quoteVolume\":\"54750.45\",\"volume\":\"1.85\","
      "\"lastQty\":\"1\",\"lastPrice\":\"29000.5\",\"lowPrice\":\"29000.5\",\"highPrice\":"
      "\"31000\",\"openPrice\":\"29999\",\"weightedAvgPrice\":\"29594.83783784\","
      "\"priceChangePercent\":\"-3.328\",\"priceChange\":\"-998.5\",\"symbol\":\"BTCUSDT\","
      "\"future\":\"x\",\"n\":-0\r\n} \n";
  std::string out;
  REQUIRE(AppendTicker(spaced, false, &out));
  CHECK(out == kFull);
  const std::string escaped = Replace(kStored, R"("BTCUSDT")", R"("BTC\u0055SD\"T\\")");
  out.clear();
  REQUIRE(AppendTickerPrice(escaped, &out));
  CHECK(out == R"({"symbol":"BTC\u0055SD\"T\\","price":"29000.5"})");
  // A percent past Decimal's 20 integer digits is still a decimal string.
  const std::string huge =
      Replace(kStored, R"("-3.328")", R"("-123456789012345678901234567890.123")");
  out.clear();
  REQUIRE(AppendTicker(huge, false, &out));
  CHECK(out.find(R"("priceChangePercent":"-123456789012345678901234567890.123")") !=
        std::string::npos);
}

TEST_CASE("api format: malformed stored tickers are refused and the output is untouched") {
  std::vector<std::string> bad;
  for (const std::string_view key :
       {"symbol", "priceChange", "priceChangePercent", "weightedAvgPrice", "openPrice", "highPrice",
        "lowPrice", "lastPrice", "lastQty", "volume", "quoteVolume", "openTime", "closeTime",
        "firstId", "lastId", "count"}) {
    const std::string quoted = "\"" + std::string(key) + "\":";
    bad.push_back(Replace(kStored, quoted, "\"" + std::string(key) + "_\":"));  // missing
  }
  const std::pair<std::string_view, std::string_view> edits[] = {
      {R"("count":4)", R"("count":"4")"},          // integer field as a string
      {R"("volume":"1.85")", R"("volume":1.85)"},  // a JSON number, not a string
      {R"("volume":"1.85")", R"("volume":185)"},   // integer where a decimal string belongs
      {R"("volume":"1.85")", R"("volume":"1.")"},  // not of -?digits(.digits)?
      {R"("volume":"1.85")", R"("volume":".5")"},
      {R"("volume":"1.85")", R"("volume":"1e5")"},
      {R"("volume":"1.85")", R"("volume":"")"},
      {R"("volume":"1.85")", R"("volume":"+1")"},
      {R"("volume":"1.85")", R"("volume":"--1")"},
      {R"("volume":"1.85")", R"("volume":"1.2.3")"},
      {R"("volume":"1.85")", R"("volume":"1\u0030")"},
      {R"("volume":"1.85")", R"("volume":null)"},
      {R"("count":4)", R"("count":4.0)"},
      {R"("count":4)", R"("count":4e0)"},
      {R"("count":4)", R"("count":04)"},
      {R"("count":4)", R"("count":-)"},
      {R"("count":4)", R"("count":9223372036854775808)"},  // past int64
      {R"("count":4)", R"("count":true)"},
      {R"("count":4)", R"("count":4,"x":{})"},  // nested values
      {R"("count":4)", R"("count":4,"x":[1])"},
      {R"("count":4)", R"("count":4,"x":false)"},
      {R"("count":4)", R"("count":4,"count":4)"},  // duplicate key
      {R"("count":4)", R"("count":4,)"},
      {R"("count":4)", R"("count":4,,"y":1)"},
      {R"("symbol":"BTCUSDT")", R"("symbol":"")"},  // empty symbol
      {R"("symbol":"BTCUSDT")", R"("symbol":"BTC\xUSDT")"},
      {R"("symbol":"BTCUSDT")", R"("symbol":"BTC\u00G1")"},
      {R"("symbol":"BTCUSDT")", R"("symbol":"BTC\u00")"},
      {R"("symbol":"BTCUSDT")", "\"symbol\":\"BTC\nUSDT\""},  // raw control byte
      {R"("symbol":"BTCUSDT")", R"("symbol":BTCUSDT)"},
      {R"("symbol":"BTCUSDT")", R"('symbol':"BTCUSDT")"},
      {R"({"symbol")", R"([{"symbol")"},
  };
  for (const auto& [from, to] : edits) bad.push_back(Replace(kStored, from, to));
  bad.push_back(std::string(kStored) + "x");
  bad.push_back(std::string(kStored) + "}");
  bad.push_back(std::string(kStored) + "{}");
  bad.push_back("");
  bad.push_back("{}");
  bad.push_back("[]");
  bad.push_back("null");
  // More than 32 members, though all 16 required ones are there.
  std::string wide(kStored.substr(0, kStored.size() - 1));
  for (int i = 0; i < 17; ++i) wide += ",\"u" + std::to_string(i) + "\":1";
  bad.push_back(wide + "}");
  // Every proper prefix of a good one.
  for (size_t n = 0; n < kStored.size(); ++n) bad.emplace_back(kStored.substr(0, n));

  for (const std::string& s : bad) {
    CAPTURE(s);
    std::string out = "keep";
    CHECK_FALSE(AppendTicker(s, false, &out));
    CHECK_FALSE(AppendTicker(s, true, &out));
    CHECK_FALSE(AppendTickerPrice(s, &out));
    CHECK(out == "keep");
  }
  // 32 members in all is still fine.
  std::string at_bound(kStored.substr(0, kStored.size() - 1));
  for (int i = 0; i < 16; ++i) at_bound += ",\"u" + std::to_string(i) + "\":1";
  std::string out;
  CHECK(AppendTickerPrice(at_bound + "}", &out));
}

TEST_CASE("api format: random bytes and mutations never crash the scanner") {
  std::mt19937_64 rng(7);
  const std::string alphabet = "{}[]\":,-0123456789.eE\\u tnrfalse";
  for (int i = 0; i < 20000; ++i) {
    std::string s(kStored);
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const size_t at = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          s.erase(at, 1 + rng() % 3);
          break;
        default:
          s.insert(at, 1, alphabet[rng() % alphabet.size()]);
      }
      if (s.empty()) s = "{";
    }
    std::string out = "keep";
    if (!AppendTicker(s, false, &out)) CHECK(out == "keep");
  }
}

std::vector<std::string> Strings(std::initializer_list<std::string_view> l) {
  return std::vector<std::string>(l.begin(), l.end());
}

TEST_CASE("api format: base/quote split takes the longest quote asset that ends the symbol") {
  struct Case {
    std::string_view symbol, base, quote;
  };
  std::vector<std::string> quotes = Strings({"USDT", "USD", "T"});
  for (int round = 0; round < 6; ++round) {  // the list's order does not matter
    CAPTURE(round);
    for (const Case& c :
         {Case{"BTCUSDT", "BTC", "USDT"}, Case{"BTCUSD", "BTC", "USD"}, Case{"BTCT", "BTC", "T"},
          Case{"USDT", "USD", "T"}, Case{"T", "T", "UNKNOWN"}, Case{"BTCEUR", "BTCEUR", "UNKNOWN"},
          Case{"btcusdt", "btcusdt", "UNKNOWN"}}) {
      CAPTURE(c.symbol);
      const SymbolAssets a = SplitSymbol(c.symbol, quotes);
      CHECK(a.base == c.base);
      CHECK(a.quote == c.quote);
    }
    std::next_permutation(quotes.begin(), quotes.end());
  }
  const std::vector<std::string> defaults(kDefaultQuoteAssets.begin(), kDefaultQuoteAssets.end());
  for (const Case& c : {Case{"BTCUSDT", "BTC", "USDT"}, Case{"ETHBTC", "ETH", "BTC"},
                        Case{"BTCFDUSD", "BTC", "FDUSD"}, Case{"BTCTUSD", "BTC", "TUSD"},
                        Case{"BNBETH", "BNB", "ETH"}, Case{"EURUSDT", "EUR", "USDT"},
                        Case{"USDTTRY", "USDT", "TRY"}, Case{"1000SATSUSDC", "1000SATS", "USDC"},
                        Case{"USDT", "USDT", "UNKNOWN"}, Case{"XYZ", "XYZ", "UNKNOWN"}}) {
    CAPTURE(c.symbol);
    const SymbolAssets a = SplitSymbol(c.symbol, defaults);
    CHECK(a.base == c.base);
    CHECK(a.quote == c.quote);
  }
  // Empty entries are ignored; an empty list splits nothing.
  CHECK(SplitSymbol("BTCUSDT", Strings({"", "USDT"})).quote == "USDT");
  CHECK(SplitSymbol("BTCUSDT", {}).quote == kUnknownQuoteAsset);
}

constexpr std::string_view kBtcUsdtInfo =
    R"({"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","baseAssetPrecision":18,)"
    R"("quoteAsset":"USDT","quotePrecision":18,"quoteAssetPrecision":18,)"
    R"("baseCommissionPrecision":18,"quoteCommissionPrecision":18,)"
    R"("orderTypes":["LIMIT","LIMIT_MAKER","MARKET","STOP_LOSS","STOP_LOSS_LIMIT",)"
    R"("TAKE_PROFIT","TAKE_PROFIT_LIMIT"],"icebergAllowed":true,"ocoAllowed":true,)"
    R"("otoAllowed":true,"quoteOrderQtyMarketAllowed":true,"allowTrailingStop":false,)"
    R"("cancelReplaceAllowed":false,"isSpotTradingAllowed":true,"isMarginTradingAllowed":false,)"
    R"("filters":[{"filterType":"PRICE_FILTER","minPrice":"0","maxPrice":"0",)"
    R"("tickSize":"0.000000000000000001"},{"filterType":"LOT_SIZE",)"
    R"("minQty":"0.000000000000000001","maxQty":"99999999999999999999",)"
    R"("stepSize":"0.000000000000000001"}],"permissions":["SPOT"],"permissionSets":[["SPOT"]],)"
    R"("defaultSelfTradePreventionMode":"NONE","allowedSelfTradePreventionModes":["NONE"]})";

TEST_CASE("api format: exchangeInfo in Binance's shape") {
  const std::vector<std::string> quotes(kDefaultQuoteAssets.begin(), kDefaultQuoteAssets.end());
  std::string out;
  AppendExchangeInfoSymbol("BTCUSDT", quotes, &out);
  CHECK(out == kBtcUsdtInfo);

  const std::vector<std::string> symbols = Strings({"BTCUSDT", "odd\"one"});
  out.clear();
  AppendExchangeInfo(symbols, quotes, 1732147200123, 6000, &out);
  std::string odd;
  AppendExchangeInfoSymbol("odd\"one", quotes, &odd);
  CHECK(odd.find(R"({"symbol":"odd\"one","status":"TRADING","baseAsset":"odd\"one",)") == 0);
  CHECK(odd.find(R"("quoteAsset":"UNKNOWN",)") != std::string::npos);
  CHECK(out == R"({"timezone":"UTC","serverTime":1732147200123,"rateLimits":[{"rateLimitType":)"
               R"("REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000}],)"
               R"("exchangeFilters":[],"symbols":[)" +
                   std::string(kBtcUsdtInfo) + "," + odd + "]}");
  // Unlimited: no REQUEST_WEIGHT entry (Binance's limits are all optional); no symbols.
  out.clear();
  AppendExchangeInfo({}, quotes, 5, 0, &out);
  CHECK(out == R"({"timezone":"UTC","serverTime":5,"rateLimits":[],"exchangeFilters":[],)"
               R"("symbols":[]})");
  out.clear();
  AppendServerTime(1499827319559, &out);
  CHECK(out == R"({"serverTime":1499827319559})");
}

}  // namespace
}  // namespace klined::api
