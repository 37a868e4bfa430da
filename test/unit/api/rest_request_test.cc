// Tests for src/api/rest_request.h: Binance's error bodies byte for byte, target parsing and
// percent-decoding, the klines and ticker parameter rules (each error path, the documented
// check order, the range rules, timeZone forms), and the request weights.
#include "api/rest_request.h"

#include <doctest/doctest.h>

#include <array>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "klined/interval.h"

namespace klined::api {
namespace {

Params P(std::string_view query) {
  std::string path;
  Params params;
  ApiError error;
  REQUIRE(ParseTarget("/x?" + std::string(query), &path, &params, &error));
  return params;
}

const std::set<std::string, std::less<>> kKnown = {"BTCUSDT", "ETHUSDT", "btcusdt", "A.B_C-1"};
bool Known(std::string_view s) { return kKnown.find(s) != kKnown.end(); }

constexpr std::array<Interval, 4> kConfigured = {Interval::k1m, Interval::k5m, Interval::k1h,
                                                 Interval::k1M};
constexpr UtcOffset kUtc{0};
constexpr UtcOffset kPlus8{8 * 3'600'000};

std::variant<KlinesQuery, ApiError> Klines(std::string_view query, UtcOffset tz = kUtc) {
  return ParseKlinesQuery(P(query), kConfigured, tz, Known);
}

// The body of the error a query must fail with.
std::string KlinesError(std::string_view query, UtcOffset tz = kUtc) {
  const auto r = Klines(query, tz);
  if (!std::holds_alternative<ApiError>(r)) return "<accepted>";
  const ApiError& e = std::get<ApiError>(r);
  CHECK(e.http_status == 400);
  return ErrorBody(e);
}

KlinesQuery KlinesOk(std::string_view query, UtcOffset tz = kUtc) {
  auto r = Klines(query, tz);
  if (const ApiError* e = std::get_if<ApiError>(&r)) FAIL_CHECK(ErrorBody(*e));
  REQUIRE(std::holds_alternative<KlinesQuery>(r));
  return std::get<KlinesQuery>(r);
}

std::string TickerError(std::string_view query, bool allow_type = true) {
  const auto r = ParseTickerQuery(P(query), Known, allow_type);
  if (!std::holds_alternative<ApiError>(r)) return "<accepted>";
  CHECK(std::get<ApiError>(r).http_status == 400);
  return ErrorBody(std::get<ApiError>(r));
}

TickerQuery TickerOk(std::string_view query, bool allow_type = true) {
  auto r = ParseTickerQuery(P(query), Known, allow_type);
  if (const ApiError* e = std::get_if<ApiError>(&r)) FAIL_CHECK(ErrorBody(*e));
  REQUIRE(std::holds_alternative<TickerQuery>(r));
  return std::get<TickerQuery>(r);
}

constexpr std::string_view kSymbolMissing =
    R"({"code":-1102,"msg":"Mandatory parameter 'symbol' was not sent, was empty/null, or )"
    R"(malformed."})";
constexpr std::string_view kIntervalMissing =
    R"({"code":-1102,"msg":"Mandatory parameter 'interval' was not sent, was empty/null, or )"
    R"(malformed."})";
constexpr std::string_view kBadInterval = R"({"code":-1120,"msg":"Invalid interval."})";
constexpr std::string_view kBadSymbol = R"({"code":-1121,"msg":"Invalid symbol."})";
constexpr std::string_view kStartAfterEnd =
    R"({"code":-1023,"msg":"Start time is greater than end time."})";

std::string IllegalBody(std::string_view param) {
  return R"({"code":-1100,"msg":"Illegal characters found in parameter ')" + std::string(param) +
         R"('; legal range is '^[0-9]{1,20}$'."})";
}
std::string InvalidBody(std::string_view param) {
  return R"({"code":-1130,"msg":"Data sent for parameter ')" + std::string(param) +
         R"(' is not valid."})";
}

TEST_CASE("api request: error bodies and statuses are Binance's, byte for byte") {
  struct Case {
    ApiError e;
    int status;
    std::string_view body;
  };
  const Case cases[] = {
      {InvalidSymbol(), 400, kBadSymbol},
      {InvalidInterval(), 400, kBadInterval},
      {MandatoryMissing("symbol"), 400, kSymbolMissing},
      {IllegalChars("limit", kDigitsRange), 400,
       R"({"code":-1100,"msg":"Illegal characters found in parameter 'limit'; legal range is )"
       R"('^[0-9]{1,20}$'."})"},
      {IllegalCharsInRequest(), 400,
       R"({"code":-1100,"msg":"Illegal characters found in a parameter."})"},
      {InvalidData("limit"), 400,
       R"({"code":-1130,"msg":"Data sent for parameter 'limit' is not valid."})"},
      {StartAfterEnd(), 400, kStartAfterEnd},
      {BadCombination(), 400,
       R"({"code":-1128,"msg":"Combination of optional parameters invalid."})"},
      {SymbolAndSymbols(), 400,
       R"({"code":-1128,"msg":"Combination of optional parameters invalid. Recommendation: )"
       R"('symbol' and 'symbols' cannot both be sent."})"},
      {TooManyParameters(), 400,
       R"({"code":-1101,"msg":"Too many parameters sent for this endpoint."})"},
      {TooManyValues("symbols", 1000), 400,
       R"({"code":-1101,"msg":"Too many values sent for parameter 'symbols', maximum allowed up )"
       R"(to 1000."})"},
      {DuplicateSymbols(), 400,
       R"({"code":-1151,"msg":"Symbol is present multiple times in the list."})"},
      {InvalidTickerType(), 400, R"({"code":-1139,"msg":"Invalid ticker type."})"},
      {TooManyRequests(6000), 429,
       R"({"code":-1003,"msg":"Too much request weight used; current limit is 6000 request )"
       R"(weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling )"
       R"(the API."})"},
      {UnknownPath(), 404, R"({"code":-1020,"msg":"This operation is not supported."})"},
      {MethodNotAllowed(), 405, R"({"code":-1020,"msg":"This operation is not supported."})"},
      {InternalError(), 500,
       R"({"code":-1001,"msg":"Internal error; unable to process your request. Please try )"
       R"(again."})"},
      {ServerBusy(), 503,
       R"({"code":-1008,"msg":"Server is currently overloaded with other requests. Please try )"
       R"(again in a few minutes."})"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.body);
    CHECK(c.e.http_status == c.status);
    CHECK(ErrorBody(c.e) == c.body);
  }
  // The symbols legal range, as a JSON string: its backslashes and quotes escaped.
  CHECK(ErrorBody(IllegalChars("symbols", kSymbolsRange)) ==
        R"({"code":-1100,"msg":"Illegal characters found in parameter 'symbols'; legal range is )"
        R"('^\\[(\"[A-Za-z0-9._-]{1,32}\"(,\"[A-Za-z0-9._-]{1,32}\"){0,}){0,1}\\]$'."})");
  std::string out = "x";
  AppendErrorBody(ApiError{400, -1, "a\"b\\c\nd\x01"}, &out);
  CHECK(out == R"(x{"code":-1,"msg":"a\"b\\c\nd\u0001"})");
}

TEST_CASE("api request: ParseTarget splits the path and percent-decodes parameters") {
  std::string path;
  Params params;
  REQUIRE(ParseTarget(
      "/api/v3/klines?symbol=BTC%55SDT&interval=1m&a+b=c+d%2b%2Be&flag&&=v&x=", &path, &params));
  CHECK(path == "/api/v3/klines");
  REQUIRE(params.size() == 6);
  CHECK(params[0].key == "symbol");
  CHECK(params[0].value == "BTCUSDT");
  CHECK(params[2].key == "a b");
  CHECK(params[2].value == "c d++e");
  CHECK(params[3].key == "flag");
  CHECK(params[3].value.empty());
  CHECK(params[4].key.empty());
  CHECK(params[4].value == "v");
  CHECK(*params.Find("interval") == "1m");
  CHECK(params.Find("x") != nullptr);
  CHECK(params.Find("x")->empty());
  CHECK_FALSE(params.Get("x").has_value());  // empty counts as not sent
  CHECK_FALSE(params.Get("flag").has_value());
  CHECK_FALSE(params.Get("missing").has_value());
  CHECK(params.Find("missing") == nullptr);

  // The path is decoded too, but '+' stays '+'; the first occurrence of a key wins.
  REQUIRE(ParseTarget("/a%2Fb+c?k=1&k=2&K=3", &path, &params));
  CHECK(path == "/a/b+c");
  CHECK(*params.Get("k") == "1");
  CHECK(*params.Get("K") == "3");
  // The JSON list of the docs, URL-encoded.
  REQUIRE(ParseTarget("/t?symbols=%5B%22BTCUSDT%22,%22BNBUSDT%22%5D", &path, &params));
  CHECK(*params.Get("symbols") == R"(["BTCUSDT","BNBUSDT"])");
  // No query; a bare '?'; outputs are cleared first.
  REQUIRE(ParseTarget("/api/v3/ping", &path, &params));
  CHECK(path == "/api/v3/ping");
  CHECK(params.empty());
  REQUIRE(ParseTarget("/p?", &path, &params));
  CHECK(path == "/p");
  CHECK(params.empty());

  Request r;
  REQUIRE(ParseTarget("/q?a=%00", &r));
  CHECK(r.path == "/q");
  CHECK(*r.params.Find("a") == std::string(1, '\0'));
}

TEST_CASE("api request: ParseTarget refuses malformed escapes, other forms and 65 parameters") {
  const std::string_view bad[] = {
      "/x?a=%",   "/x?a=%2",        "/x?a=%zz", "/x?a=%2G",  "/x?a=%G2", "/x?%=1",
      "/x?a%4=1", "/x%?a=1",        "/x%4",     "/%",        "",         "x?a=1",
      "*",        "http://h/x?a=1", "/x?a=1%",  "/x?a=%%41",
  };
  for (const std::string_view t : bad) {
    CAPTURE(t);
    std::string path = "old";
    Params params;
    ApiError error;
    CHECK_FALSE(ParseTarget(t, &path, &params, &error));
    CHECK(ErrorBody(error) == R"({"code":-1100,"msg":"Illegal characters found in a parameter."})");
    CHECK_FALSE(ParseTarget(t, &path, &params));  // no error out: still refused
  }
  std::string query;
  for (int i = 0; i < 64; ++i) query += "p" + std::to_string(i) + "=1&";
  std::string path;
  Params params;
  ApiError error;
  REQUIRE(ParseTarget("/x?" + query, &path, &params, &error));
  CHECK(params.size() == 64);
  CHECK_FALSE(ParseTarget("/x?" + query + "p64=1", &path, &params, &error));
  CHECK(error == TooManyParameters());
  CHECK(error.code == -1101);
  // Empty pairs do not count.
  CHECK(ParseTarget("/x?" + query + "&&&", &path, &params, &error));

  std::string out;
  CHECK(PercentDecode("%41%62+", true, &out));
  CHECK(out == "Ab ");
  CHECK(PercentDecode("%41%62+", false, &out));
  CHECK(out == "Ab+");
  CHECK_FALSE(PercentDecode("%4", true, &out));
}

TEST_CASE("api klines: defaults and a full query") {
  KlinesQuery q = KlinesOk("symbol=BTCUSDT&interval=1m");
  CHECK(q.symbol == "BTCUSDT");
  CHECK(q.interval == Interval::k1m);
  CHECK_FALSE(q.start_ms.has_value());
  CHECK_FALSE(q.end_ms.has_value());
  CHECK(q.limit == 500);

  q = KlinesOk("interval=1M&symbol=btcusdt&startTime=0&endTime=1732147259999&limit=1000&foo=bar");
  CHECK(q.symbol == "btcusdt");  // the contract's symbols may be lower case
  CHECK(q.interval == Interval::k1M);
  CHECK(q.start_ms == 0);  // startTime=0 is a time, not "absent"
  CHECK(q.end_ms == 1732147259999);
  CHECK(q.limit == 1000);
  CHECK(KlinesOk("symbol=BTCUSDT&interval=1m&limit=1").limit == 1);
  CHECK(KlinesOk("symbol=BTCUSDT&interval=1m&limit=0001").limit == 1);  // digits, in range
  // Empty optional parameters count as not sent.
  q = KlinesOk("symbol=BTCUSDT&interval=5m&startTime=&endTime=&limit=&timeZone=");
  CHECK_FALSE(q.start_ms.has_value());
  CHECK_FALSE(q.end_ms.has_value());
  CHECK(q.limit == 500);
  CHECK(KlinesOk("symbol=A.B_C-1&interval=1h").symbol == "A.B_C-1");
}

TEST_CASE("api klines: mandatory parameters, symbol grammar and unknown symbols") {
  CHECK(KlinesError("interval=1m") == kSymbolMissing);
  CHECK(KlinesError("symbol=&interval=1m") == kSymbolMissing);
  CHECK(KlinesError("symbol=BTCUSDT") == kIntervalMissing);
  CHECK(KlinesError("symbol=BTCUSDT&interval=") == kIntervalMissing);
  CHECK(KlinesError("") == kSymbolMissing);
  const std::string illegal_symbol =
      R"({"code":-1100,"msg":"Illegal characters found in parameter 'symbol'; legal range is )"
      R"('^[A-Za-z0-9._-]{1,32}$'."})";
  for (const std::string_view s : {"BTC%2FUSDT", "BTC+USDT", "BTC%22", "%C3%A9",
                                   "ABCDEFGHIJABCDEFGHIJABCDEFGHIJABC"}) {  // 33 chars
    CAPTURE(s);
    CHECK(KlinesError("symbol=" + std::string(s) + "&interval=1m") == illegal_symbol);
  }
  // Grammatical but unknown (32 chars is the longest legal symbol); case matters.
  CHECK(KlinesError("symbol=ABCDEFGHIJABCDEFGHIJABCDEFGHIJAB&interval=1m") == kBadSymbol);
  CHECK(KlinesError("symbol=NOPE&interval=1m") == kBadSymbol);
  CHECK(KlinesError("symbol=BtcUsdt&interval=1m") == kBadSymbol);
}

TEST_CASE("api klines: limit bounds") {
  for (const std::string_view v : {"abc", "-5", "+5", "5.0", "1e3", "%205", "5%20", "0x10",
                                   "123456789012345678901"}) {  // 21 digits
    CAPTURE(v);
    CHECK(KlinesError("symbol=BTCUSDT&interval=1m&limit=" + std::string(v)) ==
          IllegalBody("limit"));
  }
  for (const std::string_view v : {"0", "1001", "00000", "99999999999999999999"}) {
    CAPTURE(v);
    CHECK(KlinesError("symbol=BTCUSDT&interval=1m&limit=" + std::string(v)) ==
          InvalidBody("limit"));
  }
  CHECK(KlinesOk("symbol=BTCUSDT&interval=1m&limit=999").limit == 999);
}

TEST_CASE("api klines: startTime and endTime range rules") {
  for (const std::string_view key : {"startTime", "endTime"}) {
    CAPTURE(key);
    const std::string base = "symbol=BTCUSDT&interval=1m&" + std::string(key) + "=";
    for (const std::string_view v : {"-1", "abc", "1.5", "+1", "123456789012345678901", " 1"}) {
      CAPTURE(v);
      CHECK(KlinesError(base + std::string(v)) == IllegalBody(key));
    }
    // int64 holds 9223372036854775807; one more has 19 digits, fits the regex, not the value.
    CHECK(KlinesError(base + "9223372036854775808") == InvalidBody(key));
    CHECK(KlinesError(base + "99999999999999999999") == InvalidBody(key));
  }
  KlinesQuery q = KlinesOk("symbol=BTCUSDT&interval=1m&startTime=9223372036854775807");
  CHECK(q.start_ms == INT64_MAX);
  q = KlinesOk("symbol=BTCUSDT&interval=1m&startTime=5&endTime=5");  // equal is fine
  CHECK(q.start_ms == 5);
  CHECK(q.end_ms == 5);
  CHECK(KlinesOk("symbol=BTCUSDT&interval=1m&endTime=0").end_ms == 0);
  CHECK(KlinesError("symbol=BTCUSDT&interval=1m&startTime=6&endTime=5") == kStartAfterEnd);
  CHECK(KlinesError("symbol=BTCUSDT&interval=1m&startTime=1&endTime=0") == kStartAfterEnd);
}

TEST_CASE("api klines: interval must parse and be configured") {
  for (const std::string_view v : {"1s", "3m", "2m", "1H", "1mm", "m1", "1d", "%201m"}) {
    CAPTURE(v);  // 1s, 3m and 1d are Binance intervals, not configured here
    CHECK(KlinesError("symbol=BTCUSDT&interval=" + std::string(v)) == kBadInterval);
  }
  CHECK(KlinesOk("symbol=BTCUSDT&interval=1M").interval == Interval::k1M);
  CHECK(KlinesOk("symbol=BTCUSDT&interval=1h").interval == Interval::k1h);
  const std::array<Interval, 1> only_1s = {Interval::k1s};
  const auto r = ParseKlinesQuery(P("symbol=BTCUSDT&interval=1s"), only_1s, kUtc, Known);
  REQUIRE(std::holds_alternative<KlinesQuery>(r));
  CHECK(std::get<KlinesQuery>(r).interval == Interval::k1s);
}

TEST_CASE("api klines: timeZone forms and the configured offset") {
  struct Form {
    std::string_view text;
    int64_t minutes;
  };
  const Form ok[] = {
      {"0", 0},        {"8", 480},       {"+8", 480},      {"-1", -60},    {"08:00", 480},
      {"+08:00", 480}, {"-5:30", -330},  {"05:45", 345},   {"-1:00", -60}, {"+14:00", 840},
      {"14", 840},     {"-12:00", -720}, {"-12", -720},    {"+00:00", 0},  {"-0", 0},
      {"00", 0},       {"+5:59", 359},   {"-11:59", -719},
  };
  for (const Form& f : ok) {
    CAPTURE(f.text);
    const std::optional<UtcOffset> tz = ParseTimeZone(f.text);
    REQUIRE(tz.has_value());
    CHECK(tz->ms == f.minutes * 60'000);
  }
  for (const std::string_view bad :
       {"",       "+",         "-",   "+14:01", "15",  "-13",    "-12:01", "+8:0",
        "+8:000", "8:60",      "008", "8:",     ":30", "+-8",    "8.5",    "Z",
        "UTC",    "+08:00:00", " 8",  "8 ",     "a",   "+0a:00", "1:5"}) {
    CAPTURE(bad);
    CHECK_FALSE(ParseTimeZone(bad).has_value());
  }

  const std::string base = "symbol=BTCUSDT&interval=1m&timeZone=";
  for (const std::string_view v : {"8", "%2B8", "08:00", "%2B08:00", "8:00", "%2B8:00"}) {
    CAPTURE(v);
    KlinesOk(base + std::string(v), kPlus8);
  }
  // A valid offset other than the configured one, or no offset at all: -1130 'timeZone'.
  for (const std::string_view v : {"0", "9", "+08:30", "abc", "+15:00", "+8:0"}) {
    CAPTURE(v);
    CHECK(KlinesError(base + std::string(v), kPlus8) == InvalidBody("timeZone"));
  }
  KlinesOk(base + "0", kUtc);
  KlinesOk(base + "-0:00", kUtc);
  KlinesOk("symbol=BTCUSDT&interval=1m", kPlus8);  // absent: the configured offset
  CHECK(KlinesError(base + "8", kUtc) == InvalidBody("timeZone"));
  // Note: '+' in a query is a space unless sent as %2B (Binance's clients encode it).
  CHECK(KlinesError(base + "+8", kUtc) == InvalidBody("timeZone"));
}

TEST_CASE("api klines: the documented check order") {
  // Every parameter wrong at once: each fix reveals the next check in the documented order.
  std::string q = "timeZone=9&startTime=7&endTime=6&limit=0&interval=7m&symbol=NOPE%2F";
  CHECK(KlinesError("interval=7m&symbol=") == kSymbolMissing);
  CHECK(KlinesError("symbol=NOPE%2F") == kIntervalMissing);
  CHECK(KlinesError(q).find("parameter 'symbol'") != std::string::npos);
  q = "timeZone=9&startTime=x&endTime=y&limit=z&interval=7m&symbol=NOPE";
  CHECK(KlinesError(q) == IllegalBody("startTime"));
  q = "timeZone=9&startTime=7&endTime=y&limit=z&interval=7m&symbol=NOPE";
  CHECK(KlinesError(q) == IllegalBody("endTime"));
  q = "timeZone=9&startTime=7&endTime=6&limit=z&interval=7m&symbol=NOPE";
  CHECK(KlinesError(q) == IllegalBody("limit"));
  q = "timeZone=9&startTime=7&endTime=6&limit=0&interval=7m&symbol=NOPE";
  CHECK(KlinesError(q) == InvalidBody("limit"));
  q = "timeZone=9&startTime=7&endTime=6&limit=10&interval=7m&symbol=NOPE";
  CHECK(KlinesError(q) == kBadInterval);
  q = "timeZone=9&startTime=7&endTime=6&limit=10&interval=1m&symbol=NOPE";
  CHECK(KlinesError(q) == InvalidBody("timeZone"));
  q = "timeZone=0&startTime=7&endTime=6&limit=10&interval=1m&symbol=NOPE";
  CHECK(KlinesError(q) == kStartAfterEnd);
  q = "timeZone=0&startTime=6&endTime=6&limit=10&interval=1m&symbol=NOPE";
  CHECK(KlinesError(q) == kBadSymbol);
  q = "timeZone=0&startTime=6&endTime=6&limit=10&interval=1m&symbol=BTCUSDT";
  CHECK(KlinesOk(q).limit == 10);
}

TEST_CASE("api klines/latest: interval mandatory and configured") {
  auto r = ParseLatestKlinesQuery(P("interval=5m"), kConfigured);
  REQUIRE(std::holds_alternative<Interval>(r));
  CHECK(std::get<Interval>(r) == Interval::k5m);
  r = ParseLatestKlinesQuery(P("interval="), kConfigured);
  REQUIRE(std::holds_alternative<ApiError>(r));
  CHECK(ErrorBody(std::get<ApiError>(r)) == kIntervalMissing);
  r = ParseLatestKlinesQuery(P("symbol=BTCUSDT&interval=3d"), kConfigured);
  REQUIRE(std::holds_alternative<ApiError>(r));
  CHECK(ErrorBody(std::get<ApiError>(r)) == kBadInterval);
}

TEST_CASE("api ticker: symbol, symbols, all, and type") {
  TickerQuery q = TickerOk("");
  CHECK(q.all);
  CHECK_FALSE(q.single);
  CHECK(q.symbols.empty());
  CHECK_FALSE(q.mini);

  q = TickerOk("symbol=BTCUSDT");
  CHECK(q.single);
  CHECK_FALSE(q.all);
  CHECK(q.symbols == std::vector<std::string>{"BTCUSDT"});

  q = TickerOk(R"(symbols=["ETHUSDT","BTCUSDT","btcusdt"])");
  CHECK_FALSE(q.single);
  CHECK_FALSE(q.all);
  CHECK(q.symbols == std::vector<std::string>{"ETHUSDT", "BTCUSDT", "btcusdt"});  // request order
  q = TickerOk("symbols=%5B%22BTCUSDT%22%5D&type=MINI");
  CHECK(q.symbols == std::vector<std::string>{"BTCUSDT"});
  CHECK_FALSE(q.single);  // a list of one is still an array reply
  CHECK(q.mini);
  CHECK_FALSE(TickerOk("symbol=BTCUSDT&type=FULL").mini);
  CHECK_FALSE(TickerOk("type=").mini);
  CHECK(TickerOk("symbol=&symbols=").all);  // empty values are not sent

  const std::string bad_type = R"({"code":-1139,"msg":"Invalid ticker type."})";
  for (const std::string_view t : {"mini", "Full", "MINI ", "X"}) {
    CAPTURE(t);
    CHECK(TickerError("type=" + std::string(t)) == bad_type);
  }
  // /api/v3/ticker/price has no type: it is ignored there.
  CHECK_FALSE(TickerOk("type=X", /*allow_type=*/false).mini);
  CHECK_FALSE(TickerOk("type=MINI", /*allow_type=*/false).mini);
}

TEST_CASE("api ticker: refused combinations, lists and symbols") {
  CHECK(TickerError(R"(symbol=BTCUSDT&symbols=["ETHUSDT"])") == ErrorBody(SymbolAndSymbols()));
  CHECK(TickerError(R"(symbol=NOPE&symbols=garbage)") == ErrorBody(SymbolAndSymbols()));

  const std::string illegal_list = ErrorBody(IllegalChars("symbols", kSymbolsRange));
  for (const std::string_view list :
       {R"(BTCUSDT)", R"("BTCUSDT")", R"(["BTCUSDT", "ETHUSDT"])", R"([ "BTCUSDT"])",
        R"(["BTCUSDT",])", R"([,"BTCUSDT"])", R"(["BTCUSDT""ETHUSDT"])", R"(['BTCUSDT'])",
        R"([BTCUSDT])", R"([""])", R"(["BTC/USDT"])", R"(["BTCUSDT")", R"("BTCUSDT"])",
        R"([["BTCUSDT"]])", R"(["BTCUSDT"] )", R"(["BTC"USDT"])", R"(["BTCUSDT",""])", "[",
        R"(["ABCDEFGHIJABCDEFGHIJABCDEFGHIJABC"])"}) {
    CAPTURE(list);
    CHECK(TickerError("symbols=" + std::string(list)) == illegal_list);
  }
  CHECK(TickerError("symbols=[]") ==
        R"({"code":-1102,"msg":"Mandatory parameter 'symbols' was not sent, was empty/null, or )"
        R"(malformed."})");
  CHECK(TickerError(R"(symbols=["BTCUSDT","ETHUSDT","BTCUSDT"])") ==
        R"({"code":-1151,"msg":"Symbol is present multiple times in the list."})");
  CHECK(TickerError(R"(symbol=BTC%2FUSDT)") ==
        R"({"code":-1100,"msg":"Illegal characters found in parameter 'symbol'; legal range is )"
        R"('^[A-Za-z0-9._-]{1,32}$'."})");
  CHECK(TickerError("symbol=NOPE") == kBadSymbol);
  CHECK(TickerError(R"(symbols=["BTCUSDT","NOPE"])") == kBadSymbol);
  CHECK(TickerError(R"(symbols=["BTCUSDT","NOPE"]&type=X)") ==
        R"({"code":-1139,"msg":"Invalid ticker type."})");  // type before the symbol lookup

  // Up to kMaxTickerSymbols entries; one more is -1101 (a malformed tail is still -1100).
  auto list = [](int n, std::string_view tail) {
    std::string s = "symbols=[";
    for (int i = 0; i < n; ++i) s += (i ? ",\"S" : "\"S") + std::to_string(i) + "\"";
    return s + std::string(tail);
  };
  auto all_known = [](std::string_view) { return true; };
  const auto r = ParseTickerQuery(P(list(kMaxTickerSymbols, "]")), all_known, true);
  REQUIRE(std::holds_alternative<TickerQuery>(r));
  CHECK(std::get<TickerQuery>(r).symbols.size() == 1000);
  auto e = ParseTickerQuery(P(list(kMaxTickerSymbols + 1, "]")), all_known, true);
  REQUIRE(std::holds_alternative<ApiError>(e));
  CHECK(ErrorBody(std::get<ApiError>(e)) ==
        R"({"code":-1101,"msg":"Too many values sent for parameter 'symbols', maximum allowed up )"
        R"(to 1000."})");
  e = ParseTickerQuery(P(list(kMaxTickerSymbols + 1, ",]")), all_known, true);
  REQUIRE(std::holds_alternative<ApiError>(e));
  CHECK(ErrorBody(std::get<ApiError>(e)) == illegal_list);
}

TEST_CASE("api weights: Binance's per endpoint and by symbol count") {
  auto weight = [](std::string_view path, std::string_view query) {
    return RequestWeight(path, P(query));
  };
  CHECK(weight(kPathPing, "") == 1);
  CHECK(weight(kPathTime, "") == 1);
  CHECK(weight(kPathExchangeInfo, "") == 20);
  CHECK(weight(kPathKlines, "symbol=BTCUSDT&interval=1m") == 2);
  CHECK(weight(kPathUiKlines, "") == 2);  // invalid: base weight
  CHECK(weight(kPathKlinesLatest, "interval=1m") == 2);
  CHECK(KlinesWeight() == 2);

  auto symbols = [](int n) {
    std::string s = "symbols=[";
    for (int i = 0; i < n; ++i) s += (i ? ",\"S" : "\"S") + std::to_string(i) + "\"";
    return s + "]";
  };
  CHECK(weight(kPathTicker24hr, "symbol=BTCUSDT") == 2);
  CHECK(weight(kPathTicker24hr, "") == 80);
  CHECK(weight(kPathTicker24hr, "type=MINI") == 80);
  CHECK(weight(kPathTicker24hr, symbols(1)) == 2);
  CHECK(weight(kPathTicker24hr, symbols(20)) == 2);
  CHECK(weight(kPathTicker24hr, symbols(21)) == 40);
  CHECK(weight(kPathTicker24hr, symbols(100)) == 40);
  CHECK(weight(kPathTicker24hr, symbols(101)) == 80);
  CHECK(weight(kPathTicker24hr, symbols(1000)) == 80);
  CHECK(weight(kPathTicker24hr, symbols(1001)) == 2);  // refused (-1101): base weight
  CHECK(weight(kPathTicker24hr, "symbols=[BTCUSDT]") == 2);
  CHECK(weight(kPathTicker24hr, "symbols=[]") == 2);
  CHECK(weight(kPathTicker24hr, "symbol=BTCUSDT&" + symbols(50)) == 2);
  CHECK(weight(kPathTickerPrice, "symbol=BTCUSDT") == 2);
  CHECK(weight(kPathTickerPrice, "") == 4);
  CHECK(weight(kPathTickerPrice, symbols(1)) == 4);
  CHECK(weight(kPathTickerPrice, symbols(500)) == 4);
  CHECK(weight(kPathTickerPrice, "symbols=[x") == 2);
  CHECK(Ticker24hrWeight(0, true) == 80);
  CHECK(Ticker24hrWeight(5, false) == 2);
  CHECK(TickerPriceWeight(true) == 2);
  CHECK(TickerPriceWeight(false) == 4);
  CHECK(weight("/", "") == 1);
  CHECK(weight("/api/v3/depth", "symbol=BTCUSDT") == 1);
  CHECK(weight("/api/v3/klines/", "") == 1);  // exact paths only
}

}  // namespace
}  // namespace klined::api
