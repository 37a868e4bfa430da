// TradeDecoder: the contract's section 1 (trade message format, limits, rejection rules) and
// the decisions documented at the top of src/core/trade_decoder.cc.
#include "klined/trade_decoder.h"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

namespace klined {
namespace {

constexpr int64_t kNow = 1732147200123 + 1000;  // 1 s after the sample's event time

constexpr std::string_view kBinance =
    R"({"e":"trade","E":1732147200123,"s":"BTCUSDT","t":123456789,"p":"43210.50",)"
    R"("q":"0.00120","T":1732147200120,"m":true})";

Decimal Dec(std::string_view s) {
  ParsedDecimal p;
  REQUIRE(ParseDecimalString(s, &p) == DecimalError::kOk);
  return p.value;
}

struct Decoded {
  DecodeResult result;
  std::vector<Trade> trades;
};

Decoded Run(std::string_view message, TradeFieldMap fields = {}, int64_t now = kNow) {
  TradeDecoder decoder(std::move(fields));
  Decoded d;
  d.result = decoder.Decode(message, now, &d.trades);
  CHECK(d.trades.size() == d.result.accepted);
  return d;
}

// A trade object with the default names and the given members replacing or adding to
// good ones: Obj({{"p", "\"0\""}}) has p = "0". A member with an empty value is removed.
std::string Obj(std::initializer_list<std::pair<std::string, std::string>> edits) {
  std::vector<std::pair<std::string, std::string>> members = {
      {"s", R"("BTCUSDT")"}, {"t", "7"},    {"p", R"("2.5")"},
      {"q", R"("4")"},       {"T", "1000"}, {"m", "false"}};
  for (const auto& [name, value] : edits) {
    bool found = false;
    for (auto& m : members) {
      if (m.first == name) {
        m.second = value;
        found = true;
      }
    }
    if (!found) members.emplace_back(name, value);
  }
  std::string out = "{";
  for (const auto& [name, value] : members) {
    if (value.empty()) continue;
    if (out.size() > 1) out += ',';
    out += '"' + name + "\":" + value;
  }
  return out + "}";
}

// Decodes a one-trade message expected to be rejected and returns its reason.
RejectReason ReasonOf(std::string_view message, TradeFieldMap fields = {}, int64_t now = kNow) {
  const Decoded d = Run(message, std::move(fields), now);
  CHECK_MESSAGE(d.result.accepted == 0, message);
  CHECK_MESSAGE(d.result.rejected == 1, message);
  CHECK(d.result.by_reason[static_cast<size_t>(d.result.first_reason)] == 1);
  return d.result.first_reason;
}

// Decodes a one-trade message expected to be accepted.
Trade Accept(std::string_view message, TradeFieldMap fields = {}, int64_t now = kNow) {
  const Decoded d = Run(message, std::move(fields), now);
  REQUIRE_MESSAGE(d.result.accepted == 1, message);
  REQUIRE(d.result.rejected == 0);
  return d.trades[0];
}

TEST_CASE("decoder: realistic Binance message decodes every field exactly") {
  const Trade t = Accept(kBinance);
  CHECK(t.symbol.view() == "BTCUSDT");
  CHECK(t.id == 123456789);
  CHECK(t.time_ms == 1732147200120);
  CHECK(t.price == Dec("43210.5"));
  CHECK(t.qty == Dec("0.0012"));
  CHECK(t.quote == Dec("51.8526"));
  CHECK(t.buyer_maker);
}

TEST_CASE("decoder: reject reason names are the metric labels") {
  CHECK(RejectReasonName(RejectReason::kMalformedJson) == "malformed_json");
  CHECK(RejectReasonName(RejectReason::kMissingField) == "missing_field");
  CHECK(RejectReasonName(RejectReason::kBadType) == "bad_type");
  CHECK(RejectReasonName(RejectReason::kBadSymbol) == "bad_symbol");
  CHECK(RejectReasonName(RejectReason::kNonPositive) == "non_positive");
  CHECK(RejectReasonName(RejectReason::kOutOfRange) == "out_of_range");
  CHECK(RejectReasonName(RejectReason::kTooPrecise) == "too_precise");
  CHECK(RejectReasonName(RejectReason::kFutureTime) == "future_time");
}

TEST_CASE("decoder: IsValidSymbol") {
  CHECK(IsValidSymbol("BTCUSDT"));
  CHECK(IsValidSymbol("a"));
  CHECK(IsValidSymbol("btc-usd_1.perp"));
  CHECK(IsValidSymbol(std::string(32, 'X')));
  CHECK_FALSE(IsValidSymbol(""));
  CHECK_FALSE(IsValidSymbol(std::string(33, 'X')));
  CHECK_FALSE(IsValidSymbol("BTC USDT"));
  CHECK_FALSE(IsValidSymbol("BTC/USDT"));
  CHECK_FALSE(IsValidSymbol(std::string_view("BTC\0", 4)));
  CHECK_FALSE(IsValidSymbol("BTC\xC3\xA9"));
}

TEST_CASE("decoder: malformed_json for the whole message") {
  const char* cases[] = {
      "",
      " \n\t ",
      "null",
      "42",
      R"("BTCUSDT")",
      "true",
      "\xEF\xBB\xBF{}",  // BOM
      R"({"s":"BTCUSDT"} x)",
      R"({"s":"BTCUSDT"}{})",
      R"([{}] ])",
      R"({"s":"BTCUSDT",})",
      R"({,"s":"BTCUSDT"})",
      R"({"s" "BTCUSDT"})",
      R"({"s":})",
      R"({s:"BTCUSDT"})",
      R"({'s':'BTCUSDT'})",
      R"([1,])",
      R"([,1])",
      R"([1 2])",
      R"({"x":01})",
      R"({"x":-})",
      R"({"x":1.})",
      R"({"x":.5})",
      R"({"x":1e})",
      R"({"x":1e+})",
      R"({"x":+1})",
      R"({"x":0x10})",
      R"({"x":NaN})",
      R"({"x":Infinity})",
      R"({"x":tru})",
      R"({"x":nul})",
      R"({"x":True})",
      R"({"x":"\x"})",
      R"({"x":"\u12G4"})",
      R"({"x":"\uD800"})",        // lone high surrogate
      R"({"x":"\uD800\u0041"})",  // high surrogate not followed by a low one
      R"({"x":"\uDC00"})",        // lone low surrogate
      "{\"x\":\"a\tb\"}",         // raw control character
      "{\"x\":\"\x01\"}",
      "{\"x\":\"\xC3\"}",              // truncated UTF-8
      "{\"x\":\"\xC0\xAF\"}",          // overlong
      "{\"x\":\"\xED\xA0\x80\"}",      // UTF-8 encoded surrogate
      "{\"x\":\"\xF4\x90\x80\x80\"}",  // past U+10FFFF
      "{\"x\":\"\xFF\"}",
      "{\"x\xFF\":1}",
      "{\"x\":1}\xA0",  // NBSP is not JSON whitespace
      "{\"x\":1\f}",    // form feed neither
      R"({"x":[1,2})",
      R"({"x":{"a":1]})",
  };
  for (const char* c : cases) {
    const std::string shown_c = c;
    CAPTURE(shown_c);
    const Decoded d = Run(c);
    CHECK(d.result.accepted == 0);
    CHECK(d.result.rejected == 1);
    CHECK(d.result.first_reason == RejectReason::kMalformedJson);
    CHECK(d.result.by_reason[0] == 1);
  }
}

TEST_CASE("decoder: missing_field") {
  for (const char* f : {"s", "t", "p", "q", "T"}) {
    const std::string shown_f = f;
    CAPTURE(shown_f);
    CHECK(ReasonOf(Obj({{f, ""}})) == RejectReason::kMissingField);
  }
  CHECK(ReasonOf("{}") == RejectReason::kMissingField);
  // Case matters: "S" is not "s".
  CHECK(ReasonOf(Obj({{"s", ""}, {"S", R"("BTCUSDT")"}})) == RejectReason::kMissingField);
  // "m" is optional.
  CHECK_FALSE(Accept(Obj({{"m", ""}})).buyer_maker);
}

TEST_CASE("decoder: bad_type") {
  const std::pair<const char*, const char*> cases[] = {
      {"s", "1"},         {"s", "null"},      {"s", R"(["BTCUSDT"])"},
      {"t", R"("7")"},    {"t", "7.0"},       {"t", "7e0"},
      {"t", "1e3"},       {"t", "true"},      {"t", "null"},
      {"p", "null"},      {"p", "true"},      {"p", "{}"},
      {"p", R"("")"},     {"p", R"("-2.5")"}, {"p", R"("+2.5")"},
      {"p", R"(".5")"},   {"p", R"("5.")"},   {"p", R"("2.5e3")"},
      {"p", R"(" 2.5")"}, {"p", R"("2,5")"},  {"p", R"("0x10")"},
      {"q", R"("abc")"},  {"q", "[4]"},       {"T", "1000.0"},
      {"T", "1e3"},       {"T", R"("1000")"}, {"T", R"("2024-11-21")"},
      {"T", "false"},     {"m", "0"},         {"m", "1"},
      {"m", R"("true")"}, {"m", "{}"},
  };
  for (const auto& [field, value] : cases) {
    const std::string shown_field = field;
    CAPTURE(shown_field);
    const std::string shown_value = value;
    CAPTURE(shown_value);
    CHECK(ReasonOf(Obj({{field, value}})) == RejectReason::kBadType);
  }
}

TEST_CASE("decoder: bad_symbol") {
  const char* cases[] = {
      R"("")",
      R"("BTC USDT")",
      R"("BTC/USDT")",
      R"("BTC:USDT")",
      R"("BTC\u00e9")",
      R"("BTC\u0000")",
      R"("BTC\n")",
      "\"BTC\xC3\xA9\"",
      R"("123456789012345678901234567890123")",  // 33 chars
  };
  for (const char* c : cases) {
    const std::string shown_c = c;
    CAPTURE(shown_c);
    CHECK(ReasonOf(Obj({{"s", c}})) == RejectReason::kBadSymbol);
  }
  CHECK(Accept(Obj({{"s", R"("12345678901234567890123456789012")"}})).symbol.view() ==
        "12345678901234567890123456789012");
  CHECK(Accept(Obj({{"s", R"("eth-usd_2.x")"}})).symbol.view() == "eth-usd_2.x");
}

TEST_CASE("decoder: non_positive") {
  const std::pair<const char*, const char*> cases[] = {
      {"p", R"("0")"},
      {"p", R"("0.000")"},
      {"p", R"("000")"},
      {"p", "0"},
      {"p", "-0"},
      {"p", "0.0e5"},
      {"p", "-2.5"},
      {"p", "-1e99"},
      {"p", "-0.0000000000000000000001"},
      {"q", R"("0.0")"},
      {"q", "-4"},
      {"q", "0e-7"},
      {"p", R"("0.0000000000000000000")"},  // 19 zero decimals: zero, not too precise
  };
  for (const auto& [field, value] : cases) {
    const std::string shown_field = field;
    CAPTURE(shown_field);
    const std::string shown_value = value;
    CAPTURE(shown_value);
    CHECK(ReasonOf(Obj({{field, value}})) == RejectReason::kNonPositive);
  }
}

TEST_CASE("decoder: out_of_range") {
  const std::pair<const char*, const char*> cases[] = {
      {"t", "0"},
      {"t", "-0"},
      {"t", "-1"},
      {"t", "9223372036854775808"},  // 2^63
      {"t", "99999999999999999999999"},
      {"p", R"("123456789012345678901")"},  // 21 integer digits
      {"p", "123456789012345678901"},
      {"p", "1.23456789012345678901e20"},
      {"q", "1e21"},
      {"q", R"("100000000000000000000.5")"},
      {"T", "-1"},
      {"T", "9223372036854775808"},
      {"T", R"("1969-12-31T23:59:59.999Z")"},
      {"T", R"("1970-01-01T00:30:00+01:00")"},
  };
  for (const auto& [field, value] : cases) {
    const std::string shown_field = field;
    CAPTURE(shown_field);
    const std::string shown_value = value;
    CAPTURE(shown_value);
    CHECK(ReasonOf(Obj({{field, value}})) == RejectReason::kOutOfRange);
  }
  // Product past 20 integer digits: 10^10 * 10^11.
  CHECK(ReasonOf(Obj({{"p", R"("10000000000")"}, {"q", R"("100000000000")"}})) ==
        RejectReason::kOutOfRange);

  // The edges that are still in range.
  CHECK(Accept(Obj({{"t", "1"}})).id == 1);
  CHECK(Accept(Obj({{"t", "9223372036854775807"}})).id == INT64_MAX);
  CHECK(Accept(Obj({{"p", R"("12345678901234567890")"}, {"q", R"("1")"}})).price ==
        Dec("12345678901234567890"));
  CHECK(
      Accept(Obj({{"p", R"("0000000000000000000000012345678901234567890.0000")"}, {"q", R"("1")"}}))
          .price == Dec("12345678901234567890"));
  CHECK(Accept(Obj({{"T", "0"}})).time_ms == 0);
  CHECK(Accept(Obj({{"T", R"("1970-01-01T00:00:00Z")"}})).time_ms == 0);
}

TEST_CASE("decoder: too_precise") {
  // 18 fractional digits each is fine on its own; the pair must share 18.
  CHECK(ReasonOf(Obj({{"p", R"("1.0000000000000000001")"}})) == RejectReason::kTooPrecise);
  CHECK(ReasonOf(Obj({{"q", "1e-19"}})) == RejectReason::kTooPrecise);
  CHECK(ReasonOf(Obj({{"p", R"("0.000000001")"}, {"q", R"("0.0000000001")"}})) ==
        RejectReason::kTooPrecise);  // 9 + 10
  CHECK(ReasonOf(Obj({{"p", R"("1.123456789012345678")"}, {"q", R"("1.5")"}})) ==
        RejectReason::kTooPrecise);  // 18 + 1

  // Trailing fractional zeros do not count.
  const Trade a = Accept(Obj({{"p", R"("0.000000001000000")"}, {"q", R"("0.000000001")"}}));
  CHECK(a.quote == Dec("0.000000000000000001"));
  const Trade b = Accept(Obj({{"p", R"("1.123456789012345678")"}, {"q", R"("3.000")"}}));
  CHECK(b.quote == Dec("3.370370367037037034"));
}

TEST_CASE("decoder: future_time against now_ms + max_future_skew_ms") {
  const std::string at_limit = Obj({{"T", std::to_string(kNow + 60000)}});
  const std::string past_limit = Obj({{"T", std::to_string(kNow + 60001)}});
  CHECK(Accept(at_limit).time_ms == kNow + 60000);
  CHECK(ReasonOf(past_limit) == RejectReason::kFutureTime);
  CHECK(ReasonOf(Obj({{"T", "9223372036854775807"}})) == RejectReason::kFutureTime);
  CHECK(ReasonOf(Obj({{"T", R"("2999-01-01T00:00:00Z")"}})) == RejectReason::kFutureTime);

  TradeDecoder decoder;
  decoder.set_max_future_skew_ms(0);
  std::vector<Trade> out;
  CHECK(decoder.Decode(Obj({{"T", std::to_string(kNow)}}), kNow, &out).accepted == 1);
  const DecodeResult r = decoder.Decode(Obj({{"T", std::to_string(kNow + 1)}}), kNow, &out);
  CHECK(r.first_reason == RejectReason::kFutureTime);
  // A skew that would overflow now_ms + skew saturates instead of wrapping.
  TradeDecoder lenient({}, INT64_MAX);
  CHECK(lenient.Decode(Obj({{"T", "9223372036854775807"}}), kNow, &out).accepted == 1);
}

TEST_CASE("decoder: per-element check order") {
  // duplicate > missing > type (s t p q T m) > symbol > values (t p q p*q T).
  CHECK(ReasonOf(R"({"s":"B C","t":7,"t":8})") == RejectReason::kMalformedJson);
  CHECK(ReasonOf(R"({"s":1,"t":"x","p":null,"q":-1})") == RejectReason::kMissingField);
  CHECK(ReasonOf(Obj({{"s", "1"}, {"t", "0"}, {"p", "-1"}})) == RejectReason::kBadType);
  CHECK(ReasonOf(Obj({{"s", R"("B C")"}, {"m", "1"}})) == RejectReason::kBadType);
  CHECK(ReasonOf(Obj({{"s", R"("B C")"}, {"p", R"("1e3")"}})) == RejectReason::kBadType);
  CHECK(ReasonOf(Obj({{"s", R"("B C")"}, {"t", "0"}, {"p", "0"}})) == RejectReason::kBadSymbol);
  CHECK(ReasonOf(Obj({{"t", "0"}, {"p", "0"}, {"T", "-1"}})) == RejectReason::kOutOfRange);
  CHECK(ReasonOf(Obj({{"p", "0"}, {"q", "1e99"}})) == RejectReason::kNonPositive);
  CHECK(ReasonOf(Obj({{"p", "1e99"}, {"q", "0"}})) == RejectReason::kOutOfRange);
  CHECK(ReasonOf(Obj({{"p", "1e-19"}, {"q", "0"}})) == RejectReason::kTooPrecise);
  CHECK(ReasonOf(Obj({{"q", "1e-10"}, {"p", "1e-10"}, {"T", "-1"}})) == RejectReason::kTooPrecise);
  CHECK(ReasonOf(Obj({{"q", "1e-10"}, {"T", "99999999999999"}})) == RejectReason::kFutureTime);
}

TEST_CASE("decoder: a duplicate mapped member rejects its object only") {
  const std::string dup_s = R"({"s":"A","t":1,"p":"1","q":"1","T":1,"s":"A"})";
  const std::string dup_m = R"({"s":"A","t":1,"p":"1","q":"1","T":1,"m":true,"m":true})";
  CHECK(ReasonOf(dup_s) == RejectReason::kMalformedJson);
  CHECK(ReasonOf(dup_m) == RejectReason::kMalformedJson);
  // Also when the duplicate is spelt with an escape.
  CHECK(ReasonOf(R"({"s":"A","t":1,"p":"1","q":"1","T":1,"\u0073":"A"})") ==
        RejectReason::kMalformedJson);
  // Ignored members may repeat.
  CHECK(Accept(R"({"e":1,"e":2,"s":"A","t":1,"p":"1","q":"1","T":1})").id == 1);
  // In an array the other elements still count.
  const Decoded d = Run("[" + dup_s + "," + Obj({}) + "]");
  CHECK(d.result.accepted == 1);
  CHECK(d.result.rejected == 1);
  CHECK(d.result.first_reason == RejectReason::kMalformedJson);
}

TEST_CASE("decoder: arrays judge each element on its own") {
  const std::string msg = "[" + Obj({{"t", "1"}}) + "," + Obj({{"t", "2"}, {"p", "0"}}) + ",42," +
                          Obj({{"t", "3"}, {"s", R"("A B")"}}) + "," + Obj({{"t", "4"}}) + "," +
                          Obj({{"t", "5"}, {"p", "0"}}) + ",[]," + Obj({{"t", "6"}, {"q", ""}}) +
                          "," + Obj({{"t", "7"}}) + "]";
  std::vector<Trade> out(1);  // existing contents are kept
  TradeDecoder decoder;
  const DecodeResult r = decoder.Decode(msg, kNow, &out);
  CHECK(r.accepted == 3);
  CHECK(r.rejected == 6);
  CHECK(r.first_reason == RejectReason::kNonPositive);
  CHECK(r.by_reason[static_cast<size_t>(RejectReason::kNonPositive)] == 2);
  CHECK(r.by_reason[static_cast<size_t>(RejectReason::kBadType)] == 2);
  CHECK(r.by_reason[static_cast<size_t>(RejectReason::kBadSymbol)] == 1);
  CHECK(r.by_reason[static_cast<size_t>(RejectReason::kMissingField)] == 1);
  CHECK(r.by_reason[static_cast<size_t>(RejectReason::kMalformedJson)] == 0);
  REQUIRE(out.size() == 4);
  CHECK(out[1].id == 1);
  CHECK(out[2].id == 4);
  CHECK(out[3].id == 7);

  // Non-object elements of every type are bad_type.
  const Decoded all_bad = Run(R"([1, "x", null, true, false, [], [{}], -0.5e3])");
  CHECK(all_bad.result.rejected == 8);
  CHECK(all_bad.result.by_reason[static_cast<size_t>(RejectReason::kBadType)] == 8);
  CHECK(all_bad.result.first_reason == RejectReason::kBadType);
}

TEST_CASE("decoder: empty array and empty message arrays") {
  for (const char* msg : {"[]", " [ ] ", "\n[\r\n\t]\n"}) {
    const Decoded d = Run(msg);
    CHECK(d.result.accepted == 0);
    CHECK(d.result.rejected == 0);
  }
}

TEST_CASE("decoder: a malformed array drops every trade of its message") {
  const std::string good = Obj({});
  std::vector<Trade> out(2);
  TradeDecoder decoder;
  const DecodeResult r =
      decoder.Decode("[" + good + "," + good + "," + Obj({{"p", "0"}}) + ",}", kNow, &out);
  CHECK(out.size() == 2);  // only what was there before
  CHECK(r.accepted == 0);
  CHECK(r.rejected == 1);
  CHECK(r.first_reason == RejectReason::kMalformedJson);
  CHECK(r.by_reason[static_cast<size_t>(RejectReason::kMalformedJson)] == 1);
  CHECK(r.by_reason[static_cast<size_t>(RejectReason::kNonPositive)] == 0);
}

TEST_CASE("decoder: custom field mapping with ISO-8601 timestamps") {
  TradeFieldMap f;
  f.id = "tradeId";
  f.symbol = "symbol";
  f.price = "price";
  f.qty = "quantity";
  f.time = "timestamp";
  f.buyer_maker = "isBuyerMaker";
  f.time_format = TimeFormat::kIso8601;
  auto msg = [](std::string_view ts) {
    return std::string(R"({"tradeId":42,"symbol":"ETHUSDT","price":"3000.25","quantity":2,)") +
           R"("timestamp":")" + std::string(ts) + R"(","isBuyerMaker":false,"s":1,"t":"x"})";
  };
  const Trade t = Accept(msg("2024-11-21T00:00:00Z"), f);
  CHECK(t.id == 42);
  CHECK(t.symbol.view() == "ETHUSDT");
  CHECK(t.price == Dec("3000.25"));
  CHECK(t.qty == Dec("2"));
  CHECK(t.quote == Dec("6000.5"));
  CHECK_FALSE(t.buyer_maker);
  constexpr int64_t k20241121 = 1732147200000;
  const std::pair<const char*, int64_t> times[] = {
      {"2024-11-21T00:00:00Z", k20241121},
      {"2024-11-21t00:00:00z", k20241121},
      {"2024-11-21 00:00:00Z", k20241121},
      {"2024-11-21T00:00:00.123Z", k20241121 + 123},
      {"2024-11-21T00:00:00.1Z", k20241121 + 100},
      {"2024-11-21T00:00:00.12Z", k20241121 + 120},
      {"2024-11-21T00:00:00.123999999Z", k20241121 + 123},  // floored to the ms
      {"2024-11-21T00:00:00.000000001Z", k20241121},
      {"2024-11-21T08:00:00+08:00", k20241121},
      {"2024-11-21T08:00:00.5+08:00", k20241121 + 500},
      {"2024-11-20T19:30:00-04:30", k20241121},
      {"2024-11-21T00:00:00+00:00", k20241121},
      {"2024-11-21T00:00:00-00:00", k20241121},
      {"2024-02-29T00:00:00Z", 1709164800000},
      {"2000-02-29T12:34:56.789Z", 951827696789},
      {"1970-01-01T00:00:00Z", 0},
      {"1970-01-01T00:00:00.001Z", 1},
      {"1970-01-01T01:00:00+01:00", 0},
  };
  for (const auto& [ts, ms] : times) {
    const std::string shown_ts = ts;
    CAPTURE(shown_ts);
    CHECK(Accept(msg(ts), f).time_ms == ms);
  }
  const char* bad[] = {
      "2024-11-21T00:00:00",  // no zone: ambiguous
      "2024-11-21T00:00:00.Z",     "2024-11-21T00:00:00.1234567891Z",
      "2024-11-21T00:00Z",         "2024-11-21",
      "2024-13-01T00:00:00Z",      "2024-00-01T00:00:00Z",
      "2023-02-29T00:00:00Z",      "1900-02-29T00:00:00Z",
      "2024-04-31T00:00:00Z",      "2024-11-00T00:00:00Z",
      "2024-11-21T24:00:00Z",      "2024-11-21T00:60:00Z",
      "2024-11-21T00:00:60Z",      "2024-11-21T00:00:00+8:00",
      "2024-11-21T00:00:00+0800",  "2024-11-21T00:00:00+24:00",
      "2024-11-21T00:00:00+08:60", "2024-11-21T00:00:00Z ",
      " 2024-11-21T00:00:00Z",     "2024-11-21X00:00:00Z",
      "2024/11/21T00:00:00Z",      "24-11-21T00:00:00Z",
      "2024-11-21T00:00:00ZZ",     "+2024-11-21T00:00:00Z",
      "2024-1a-21T00:00:00Z",      "",
  };
  for (const char* ts : bad) {
    const std::string shown_ts = ts;
    CAPTURE(shown_ts);
    CHECK(ReasonOf(msg(ts), f) == RejectReason::kBadType);
  }
  // kIso8601 refuses epoch integers; kEpochMs refuses strings; kAuto takes either.
  CHECK(ReasonOf(R"({"tradeId":1,"symbol":"A","price":1,"quantity":1,"timestamp":5})", f) ==
        RejectReason::kBadType);
  TradeFieldMap epoch = f;
  epoch.time_format = TimeFormat::kEpochMs;
  CHECK(ReasonOf(msg("2024-11-21T00:00:00Z"), epoch) == RejectReason::kBadType);
  TradeFieldMap autof = f;
  autof.time_format = TimeFormat::kAuto;
  CHECK(Accept(msg("2024-11-21T00:00:00Z"), autof).time_ms == k20241121);
  CHECK(
      Accept(R"({"tradeId":1,"symbol":"A","price":1,"quantity":1,"timestamp":5})", autof).time_ms ==
      5);
  // The default names are ordinary ignored members under this mapping.
  CHECK(ReasonOf(kBinance, f) == RejectReason::kMissingField);
}

TEST_CASE("decoder: JSON number prices are converted exactly") {
  const std::pair<const char*, const char*> cases[] = {
      {"4.321e4", "43210"},
      {"4.321E+4", "43210"},
      {"43210.50", "43210.5"},
      {"1e-8", "0.00000001"},
      {"0.1", "0.1"},
      {"123456789012345678.9", "123456789012345678.9"},
      {"0.000000000000000001", "0.000000000000000001"},
      {"1.5e-17", "0.000000000000000015"},
      {"12345e-4", "1.2345"},
      {"1e19", "10000000000000000000"},
      {"0.00000000000000000000000001e26", "1"},
  };
  for (const auto& [num, exact] : cases) {
    const std::string shown_num = num;
    CAPTURE(shown_num);
    const Trade t = Accept(Obj({{"p", num}, {"q", "1"}}));
    CHECK(t.price == Dec(exact));
    CHECK(t.quote == Dec(exact));
  }
  const Trade t = Accept(Obj({{"p", "4.321e4"}, {"q", "2.5e-3"}}));
  CHECK(t.qty == Dec("0.0025"));
  CHECK(t.quote == Dec("108.025"));
}

TEST_CASE("decoder: prices and quantities agree with the general decimal parser") {
  // The decoder has a fast path for short decimals; it must match ParseDecimalString /
  // ParseJsonNumber and MultiplyExact exactly, around every length and precision limit.
  uint64_t state = 0x9E3779B97F4A7C15ULL;
  auto next = [&state](uint64_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % n;
  };
  auto random_decimal = [&]() {
    std::string d;
    const uint64_t int_len = 1 + next(22);
    for (uint64_t i = 0; i < int_len; ++i) {
      d += static_cast<char>('0' + (next(3) == 0 ? 0 : next(10)));
    }
    if (next(3) != 0) {
      d += '.';
      const uint64_t frac_len = 1 + next(21);
      for (uint64_t i = 0; i < frac_len; ++i) {
        d += static_cast<char>('0' + (next(3) == 0 ? 0 : next(10)));
      }
    }
    return d;
  };
  // The outcome the contract prescribes, from the general parsers.
  auto expected = [](std::string_view p, std::string_view q, Decimal* quote) {
    ParsedDecimal pp, qq;
    const DecimalError pe = ParseDecimalString(p, &pp);
    const DecimalError qe = ParseDecimalString(q, &qq);
    for (const auto& [e, v] : {std::pair{pe, pp}, std::pair{qe, qq}}) {
      if (e == DecimalError::kOutOfRange) return RejectReason::kOutOfRange;
      if (e == DecimalError::kTooPrecise) return RejectReason::kTooPrecise;
      if (!v.value.IsPositive()) return RejectReason::kNonPositive;
    }
    const DecimalError me = MultiplyExact(pp, qq, quote);
    if (me == DecimalError::kOutOfRange) return RejectReason::kOutOfRange;
    if (me == DecimalError::kTooPrecise) return RejectReason::kTooPrecise;
    return RejectReason::kMalformedJson;  // stands for "accepted"
  };
  TradeDecoder decoder;
  std::vector<Trade> out;
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string p = random_decimal();
    const std::string q = random_decimal();
    Decimal quote;
    const RejectReason want = expected(p, q, &quote);
    // As strings, and (when JSON allows the spelling) as numbers.
    std::vector<std::string> messages = {Obj({{"p", '"' + p + '"'}, {"q", '"' + q + '"'}})};
    if ((p.size() == 1 || p[0] != '0' || p[1] == '.') &&
        (q.size() == 1 || q[0] != '0' || q[1] == '.')) {
      messages.push_back(Obj({{"p", p}, {"q", q}}));
    }
    for (const std::string& msg : messages) {
      CAPTURE(msg);
      out.clear();
      const DecodeResult r = decoder.Decode(msg, kNow, &out);
      if (want == RejectReason::kMalformedJson) {
        REQUIRE(r.accepted == 1);
        ParsedDecimal pp, qq;
        REQUIRE(ParseDecimalString(p, &pp) == DecimalError::kOk);
        REQUIRE(ParseDecimalString(q, &qq) == DecimalError::kOk);
        CHECK(out[0].price == pp.value);
        CHECK(out[0].qty == qq.value);
        CHECK(out[0].quote == quote);
        ++accepted;
      } else {
        REQUIRE(r.rejected == 1);
        CHECK(r.first_reason == want);
      }
    }
  }
  CHECK(accepted > 1000);
}

TEST_CASE("decoder: buyer maker flag") {
  CHECK(Accept(Obj({{"m", "true"}})).buyer_maker);
  CHECK_FALSE(Accept(Obj({{"m", "false"}})).buyer_maker);
  CHECK_FALSE(Accept(Obj({{"m", "null"}})).buyer_maker);
  CHECK_FALSE(Accept(Obj({{"m", ""}})).buyer_maker);
  // An empty mapped name never reads the flag, whatever "m" holds.
  TradeFieldMap f;
  f.buyer_maker = "";
  CHECK_FALSE(Accept(Obj({{"m", "true"}}), f).buyer_maker);
  CHECK_FALSE(Accept(Obj({{"m", "\"junk\""}}), f).buyer_maker);
  CHECK_FALSE(Accept(Obj({{"", "true"}}), f).buyer_maker);
}

TEST_CASE("decoder: extra members of every JSON type are validated and ignored") {
  const std::string extras =
      R"({"e":"trade","E":1732147200123,"n":null,"b":true,"f":false,"x":-0.5e-3,"y":0,)"
      R"("z":1E+2,"arr":[1,"two",[3,[4,{}]],{"k":[null]}],"obj":{"a":{"b":{"c":[]}},"d":""},)"
      R"("emptyo":{},"emptya":[],"":"empty name","big":123456789012345678901234567890,)"
      R"("s":"BTCUSDT","t":7,"p":"2.5","q":"4","T":1000})";
  const Trade t = Accept(extras);
  CHECK(t.symbol.view() == "BTCUSDT");
  CHECK(t.quote == Dec("10"));
}

TEST_CASE("decoder: escapes in member names and strings") {
  // Member names are matched after decoding escapes.
  const Trade t = Accept(
      R"({"\u0073":"BTCUSDT","\u0074":7,"\u0070":"2.5","\u0071":"4","\u0054":1000,"\u006d":true})");
  CHECK(t.symbol.view() == "BTCUSDT");
  CHECK(t.buyer_maker);
  // A name that only looks like a mapped one after a wrong decoding is not one.
  CHECK(ReasonOf(R"({"s\u0000":"A","t":1,"p":"1","q":"1","T":1})") == RejectReason::kMissingField);
  CHECK(ReasonOf(R"({"\\s":"A","t":1,"p":"1","q":"1","T":1})") == RejectReason::kMissingField);
  // Ignored strings with every escape, surrogate pairs and raw UTF-8.
  const Trade u =
      Accept(Obj({{"x", R"("\" \\ \/ \b \f \n \r \t \u0041 \u00e9 \u20AC \uD83D\uDE00")"},
                  {"\u00e9\\n", R"("raw UTF-8: é € 😀")"},
                  {"y", R"(["\"]\"", "}", "{", "\\"])"}}));
  CHECK(u.id == 7);
  // String values are judged after decoding too.
  const Trade v =
      Accept(Obj({{"s", R"("BTC\u0055SDT")"}, {"p", R"("2\u002e5")"}, {"q", R"("\u0034")"}}));
  CHECK(v.symbol.view() == "BTCUSDT");
  CHECK(v.price == Dec("2.5"));
  CHECK(v.qty == Dec("4"));
  TradeFieldMap iso;
  iso.time_format = TimeFormat::kIso8601;
  CHECK(Accept(Obj({{"T", R"("1970-01-01T00:00:01\u002e5Z")"}}), iso).time_ms == 1500);
  // An escaped value that decodes past the scratch buffer is rejected, not truncated.
  std::string long_price = "\"";
  for (int i = 0; i < 300; ++i) long_price += "\\u0030";
  long_price += "1\"";
  CHECK(ReasonOf(Obj({{"p", long_price}})) == RejectReason::kBadType);
  std::string long_symbol = "\"";
  for (int i = 0; i < 300; ++i) long_symbol += "\\u0041";
  long_symbol += "\"";
  CHECK(ReasonOf(Obj({{"s", long_symbol}})) == RejectReason::kBadSymbol);
}

TEST_CASE("decoder: whitespace between any tokens") {
  const std::string msg =
      " \t\r\n[ \n{ \"s\" :\t\"BTCUSDT\" ,\r\n \"t\"\n:\n7 , \"p\" : 2.5 ,\"q\": \"4\" , "
      "\"T\" : 1000 , \"m\" : null , \"x\" : [ 1 , { \"a\" : [ ] } ] } \n , \t"
      "{\"s\":\"A\",\"t\":8,\"p\":\"1\",\"q\":\"1\",\"T\":1} ] \r\n ";
  const Decoded d = Run(msg);
  CHECK(d.result.accepted == 2);
  CHECK(d.result.rejected == 0);
}

TEST_CASE("decoder: nesting depth is capped") {
  // A trade object at the top holding `levels` nested arrays: levels + 1 containers.
  auto nested = [](int levels, bool in_array) {
    std::string v = std::string(static_cast<size_t>(levels), '[') +
                    std::string(static_cast<size_t>(levels), ']');
    std::string obj = Obj({{"deep", v}});
    return in_array ? "[" + obj + "]" : obj;
  };
  CHECK(Run(nested(63, false)).result.accepted == 1);  // 64 levels
  CHECK(ReasonOf(nested(64, false)) == RejectReason::kMalformedJson);
  CHECK(Run(nested(62, true)).result.accepted == 1);
  CHECK(ReasonOf(nested(63, true)) == RejectReason::kMalformedJson);
  // Very deep input fails fast without exhausting the stack.
  CHECK(ReasonOf(std::string(1'000'000, '[')) == RejectReason::kMalformedJson);
  CHECK(ReasonOf("{\"x\":" + std::string(1'000'000, '{')) == RejectReason::kMalformedJson);
}

TEST_CASE("decoder: every truncation of a valid message is malformed_json") {
  const std::string array = "[" + std::string(kBinance) + ",\n " + Obj({{"x", R"(["\u00e9"])"}}) +
                            " ,{\"s\":\"A\",\"t\":1,\"p\":1e2,\"q\":true,\"T\":1}]";
  for (const std::string& msg : {std::string(kBinance), array}) {
    TradeDecoder decoder;
    std::vector<Trade> out(1);
    REQUIRE(decoder.Decode(msg, kNow, &out).accepted >= 1);
    for (size_t n = 0; n < msg.size(); ++n) {
      CAPTURE(n);
      out.resize(1);
      // A heap copy of exactly n bytes, so ASan catches any read past the end.
      const std::vector<char> prefix(msg.begin(), msg.begin() + static_cast<std::ptrdiff_t>(n));
      const DecodeResult r =
          decoder.Decode(std::string_view(prefix.data(), prefix.size()), kNow, &out);
      CHECK(r.accepted == 0);
      CHECK(r.rejected == 1);
      CHECK(r.first_reason == RejectReason::kMalformedJson);
      CHECK(out.size() == 1);
    }
  }
}

TEST_CASE("decoder: a message's bytes are not mutated") {
  const std::string msg = "[" + std::string(kBinance) + "," +
                          Obj({{"s", R"("BTC\u0055SDT")"}, {"\\u0078", R"("\n\uD83D\uDE00")"}}) +
                          "]";
  std::vector<char> buf(msg.begin(), msg.end());
  const std::vector<char> before = buf;
  std::vector<Trade> out;
  TradeDecoder decoder;
  CHECK(decoder.Decode(std::string_view(buf.data(), buf.size()), kNow, &out).accepted == 2);
  CHECK(buf == before);
}

TEST_CASE("decoder: repeated decoding reuses the output without clearing it") {
  TradeDecoder decoder;
  std::vector<Trade> out;
  for (int i = 0; i < 3; ++i) CHECK(decoder.Decode(kBinance, kNow, &out).accepted == 1);
  CHECK(out.size() == 3);
}

}  // namespace
}  // namespace klined

namespace klined {
namespace {

// Binance-shaped messages with random values, then random edits: byte flips, deletions,
// insertions of JSON-significant bytes, whitespace, escapes, reordering and duplicating
// members, numbers instead of strings, values at the limits.
std::string RandomMessage(std::mt19937_64& rng) {
  auto digits = [&](int n) {
    std::string s(1, static_cast<char>('1' + rng() % 9));
    for (int i = 1; i < n; ++i) s += static_cast<char>('0' + rng() % 10);
    return s;
  };
  auto decimal = [&] {
    // Mostly plausible; sometimes at or past the limits (20 integer, 18 fractional digits).
    const bool wide = rng() % 8 == 0;
    std::string s = rng() % 16 == 0 ? "0" : digits(1 + static_cast<int>(rng() % (wide ? 22 : 8)));
    if (rng() % 2 == 0) {
      s += "." + std::string(rng() % 16 == 0 ? "" : digits(1 + rng() % (wide ? 20 : 8)));
    }
    return s;
  };
  std::vector<std::pair<std::string, std::string>> m = {
      {"e", "\"trade\""},
      {"E", digits(13)},
      {"s", rng() % 16 == 0 ? "\"BTC/USDT\"" : "\"S" + digits(1 + rng() % 6) + "USDT\""},
      {"t", digits(1 + static_cast<int>(rng() % (rng() % 8 == 0 ? 20 : 12)))},
      {"p", rng() % 10 == 0 ? decimal() : "\"" + decimal() + "\""},
      {"q", rng() % 10 == 0 ? decimal() : "\"" + decimal() + "\""},
      {"T", rng() % 10 == 0 ? "\"2024-11-21T00:00:00Z\""
            : rng() % 8 == 0
                ? digits(1 + static_cast<int>(rng() % 20))
                : std::to_string(1732147200123 - static_cast<int64_t>(rng() % 100000))},
      {"m", rng() % 2 == 0 ? "true" : "false"},
      {"M", rng() % 3 == 0 ? "null" : "true"}};
  if (rng() % 4 == 0) std::swap(m[rng() % m.size()], m[rng() % m.size()]);
  if (rng() % 8 == 0) m.push_back(m[rng() % m.size()]);
  if (rng() % 8 == 0) m.erase(m.begin() + static_cast<ptrdiff_t>(rng() % m.size()));
  std::string out = "{";
  for (size_t i = 0; i < m.size(); ++i) {
    if (i > 0) out += ',';
    out += "\"" + m[i].first + "\":" + m[i].second;
  }
  out += "}";
  static constexpr std::string_view kBytes = "{}[]\":,\\ -.0123456789eEtfnu\x80\x01";
  for (int edits = static_cast<int>(rng() % 4) - 1; edits > 0 && !out.empty(); --edits) {
    const size_t at = rng() % out.size();
    switch (rng() % 3) {
      case 0:
        out[at] = kBytes[rng() % kBytes.size()];
        break;
      case 1:
        out.erase(at, 1);
        break;
      default:
        out.insert(at, 1, kBytes[rng() % kBytes.size()]);
    }
  }
  return out;
}

}  // namespace

// The fast path must be invisible: every message decodes to the same trades and counts with
// it as without it.
TEST_CASE("decoder: property: the fast path and the general reader agree on every message") {
  TradeDecoder fast;
  TradeDecoder general;
  general.set_fast_path(false);
  std::mt19937_64 rng(11);
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 200000; ++i) {
    const std::string msg = i == 0 ? std::string(kBinance) : RandomMessage(rng);
    const int64_t now = 1732147200123 + static_cast<int64_t>(rng() % 3) * 50'000 - 50'000;
    std::vector<Trade> a, b;
    const DecodeResult ra = fast.Decode(msg, now, &a);
    const DecodeResult rb = general.Decode(msg, now, &b);
    INFO(msg);
    REQUIRE(ra.accepted == rb.accepted);
    REQUIRE(ra.rejected == rb.rejected);
    REQUIRE(ra.by_reason == rb.by_reason);
    if (ra.rejected > 0) REQUIRE(ra.first_reason == rb.first_reason);
    REQUIRE(a.size() == b.size());
    for (size_t k = 0; k < a.size(); ++k) REQUIRE(a[k] == b[k]);
    accepted += static_cast<int>(ra.accepted);
    rejected += static_cast<int>(ra.rejected);
  }
  MESSAGE("fast/general agreement: " << accepted << " accepted, " << rejected << " rejected");
  CHECK(accepted > 20000);
  CHECK(rejected > 20000);
}

}  // namespace klined
