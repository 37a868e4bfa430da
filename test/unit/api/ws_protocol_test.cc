// The WebSocket stream protocol without I/O: requests, replies, errors, stream names, events.
#include <doctest/doctest.h>

#include "../core/trade_text.h"
#include "api/ws_protocol.h"
#include "klined/decimal.h"

using namespace klined;
using namespace klined::api;

namespace {

WsRequest Req(std::string_view text) {
  auto r = ParseWsRequest(text);
  REQUIRE_MESSAGE(std::holds_alternative<WsRequest>(r), std::string(text));
  return std::get<WsRequest>(r);
}

WsError Err(std::string_view text) {
  auto r = ParseWsRequest(text);
  REQUIRE_MESSAGE(std::holds_alternative<WsError>(r), std::string(text));
  return std::get<WsError>(r);
}

}  // namespace

TEST_CASE("ws protocol: requests Binance clients send") {
  WsRequest r =
      Req(R"({"method":"SUBSCRIBE","params":["btcusdt@kline_1m","ethusdt@kline_5m"],"id":1})");
  CHECK(r.method == WsMethod::kSubscribe);
  CHECK(r.params == std::vector<std::string>{"btcusdt@kline_1m", "ethusdt@kline_5m"});
  CHECK(r.id == "1");
  r = Req(" { \"id\" : \"abc\" , \"method\" : \"UNSUBSCRIBE\" , \"params\" : [ ] } ");
  CHECK(r.method == WsMethod::kUnsubscribe);
  CHECK(r.params.empty());
  CHECK(r.id == "\"abc\"");
  r = Req(R"({"method":"LIST_SUBSCRIPTIONS","id":null})");
  CHECK(r.method == WsMethod::kListSubscriptions);
  CHECK(r.id == "null");
  r = Req(R"({"method":"LIST_SUBSCRIPTIONS"})");
  CHECK(r.id == "null");
  // Escapes in strings are decoded.
  CHECK(
      Req(R"({"method":"SUBSCRIBE","params":["btc\u0075sdt@kline_1m"],"id":18446744073709551615})")
          .params.front() == "btcusdt@kline_1m");
}

TEST_CASE("ws protocol: every bad request is an error with Binance's code, the id kept") {
  CHECK(Err("").code == 3);
  CHECK(Err("{").code == 3);
  CHECK(Err(R"({"method":"SUBSCRIBE",})").code == 3);
  CHECK(Err(R"({"method":"SUBSCRIBE"} x)").code == 3);
  CHECK(Err("\"\x01\"").code == 3);
  CHECK(Err("[1,2]").code == 2);
  CHECK(Err("42").code == 2);
  WsError e = Err(R"({"method":"SUBSCRIBE","params":["a@kline_1m"],"id":4,"extra":true})");
  CHECK(e.code == 0);
  CHECK(e.id == "4");
  CHECK(e.msg == "Unknown property 'extra'");
  e = Err(R"({"method":1,"params":[],"id":5})");
  CHECK(e.code == 1);
  CHECK(e.id == "5");
  CHECK(Err(R"({"method":"SUBSCRIBE","params":[1],"id":5})").code == 1);
  CHECK(Err(R"({"method":"SUBSCRIBE","params":{"a":1},"id":5})").code == 1);
  e = Err(R"({"method":"SUBSCRIBE","params":[],"id":-3})");
  CHECK(e.code == 1);
  CHECK(e.id == "null");  // not a valid id: not echoed
  CHECK(Err(R"({"method":"SUBSCRIBE","params":[],"id":1.5})").code == 1);
  CHECK(Err(R"({"method":"SUBSCRIBE","params":[],"id":[1]})").code == 1);
  e = Err(R"({"method":"SUBSCRIBE","id":6})");
  CHECK(e.code == 2);
  CHECK(e.id == "6");
  e = Err(R"({"params":[],"id":7})");
  CHECK(e.code == 2);
  CHECK(e.msg == "Invalid request: 'method' is missing");
  e = Err(R"({"method":"subscribe","params":[],"id":8})");  // methods are upper case
  CHECK(e.code == 2);
  CHECK(e.id == "8");
  // Deep nesting is refused, not recursed into.
  CHECK(Err(R"({"method":"SUBSCRIBE","params":[],"id":1,"x":[[[[[[[[[[[[1]]]]]]]]]]]]})").code ==
        3);
  CHECK(WsErrorReply(WsError{3, "Invalid JSON: \"bad\"", "null"}) ==
        R"({"error":{"code":3,"msg":"Invalid JSON: \"bad\""},"id":null})");
  CHECK(WsResult("null", "\"x\"") == R"({"result":null,"id":"x"})");
  CHECK(WsResult(R"(["a@kline_1m"])", "2") == R"({"result":["a@kline_1m"],"id":2})");
}

TEST_CASE("ws protocol: stream names") {
  auto s = ParseKlineStream("btcusdt@kline_1m");
  REQUIRE(s.has_value());
  CHECK(s->symbol == "btcusdt");
  CHECK(s->interval == Interval::k1m);
  CHECK(ParseKlineStream("BTC.USDT@kline_1M")->interval == Interval::k1M);
  CHECK_FALSE(ParseKlineStream("btcusdt@kline_7m"));
  CHECK_FALSE(ParseKlineStream("@kline_1m"));
  CHECK_FALSE(ParseKlineStream("btcusdt@depth"));
  CHECK_FALSE(ParseKlineStream("btcusdt"));
  CHECK_FALSE(ParseKlineStream(std::string(40, 'a') + "@kline_1m"));
  CHECK(KlineStreamOf("BTCUSDT", Interval::k15m) == "btcusdt@kline_15m");
  CHECK(ParseTickerStream("btcusdt@ticker") == std::optional<std::string>("btcusdt"));
  CHECK_FALSE(ParseTickerStream("@ticker"));
  CHECK_FALSE(ParseTickerStream("btcusdt@tickers"));
  CHECK_FALSE(ParseTickerStream("btcusdt@kline_1m"));
  CHECK(TickerStreamOf("BTCUSDT") == "btcusdt@ticker");
}

TEST_CASE("ws protocol: the kline event has Binance's fields in Binance's order") {
  Candle c = test::ContractExampleCandle();  // contract section 3's example
  std::string out;
  AppendKlineEvent(c, "BTCUSDT", false, 1732147230123, &out);
  CHECK(out ==
        R"({"e":"kline","E":1732147230123,"s":"BTCUSDT","k":{"t":1732147200000,"T":1732147259999,)"
        R"("s":"BTCUSDT","i":"1m","f":101,"L":180,"o":"43210.5","c":"43249.9","h":"43250",)"
        R"("l":"43200.1","v":"12.5","n":80,"x":false,"q":"540123.75","V":"6.1","Q":"263601.4",)"
        R"("B":"0"}})");
  out.clear();
  AppendKlineEvent(c, "BTCUSDT", true, 1, &out);
  CHECK(out.find(R"("x":true)") != std::string::npos);
  CHECK(WrapCombined("btcusdt@kline_1m", "{}") == R"({"stream":"btcusdt@kline_1m","data":{}})");
}
