// The WebSocket stream protocol, Binance's (web-socket-streams.md), without I/O: client
// requests (SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS), their replies and errors, stream
// names, and the kline event built from a stored candle.
//
// Error replies are Binance's: {"error":{"code":N,"msg":"..."},"id":ID} with code 0 unknown
// property, 1 invalid value type, 2 invalid request, 3 invalid JSON; the connection stays
// usable after any of them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "klined/candle.h"
#include "klined/interval.h"

namespace klined::api {

enum class WsMethod : uint8_t { kSubscribe, kUnsubscribe, kListSubscriptions };

struct WsRequest {
  WsMethod method = WsMethod::kSubscribe;
  std::vector<std::string> params;  // stream names as sent
  std::string id;                   // the id as JSON text: a number, a quoted string, or null
};

struct WsError {
  int code = 2;
  std::string msg;
  std::string id = "null";  // as JSON text; null when the request had none or did not parse
};

// Parses one client text message. Accepted: a JSON object with "method" (a string), "params"
// (an array of strings; optional for LIST_SUBSCRIPTIONS) and "id" (an unsigned integer, a
// string or null). Anything else is a WsError: invalid JSON (3), a property other than those
// (0), a value of the wrong type (1), an unknown method or a missing member (2).
std::variant<WsRequest, WsError> ParseWsRequest(std::string_view text);

// {"result":null,"id":ID} (result_json = "null") or {"result":[...],"id":ID}.
std::string WsResult(std::string_view result_json, std::string_view id);
// {"error":{"code":N,"msg":"..."},"id":ID}
std::string WsErrorReply(const WsError& e);

// A kline stream name, `<symbol>@kline_<interval>`, split; nullopt when it is not one.
struct KlineStreamName {
  std::string symbol;  // as written (lower case for Binance clients)
  Interval interval = Interval::k1m;
};
std::optional<KlineStreamName> ParseKlineStream(std::string_view stream);

// ASCII lower case: stream names carry symbols in lower case.
std::string LowerAscii(std::string_view s);

// The canonical stream name of a symbol's interval: lower-case symbol, `@kline_`, interval.
std::string KlineStreamOf(std::string_view symbol, Interval iv);

// The symbol of a 24h ticker stream name, `<symbol>@ticker`; nullopt when it is not one.
std::optional<std::string> ParseTickerStream(std::string_view stream);
// `<lower-case symbol>@ticker`.
std::string TickerStreamOf(std::string_view symbol);

// {"e":"kline","E":event_ms,"s":"SYM","k":{"t":..,"T":..,"s":"SYM","i":"1m","f":..,"L":..,
//  "o":"..","c":"..","h":"..","l":"..","v":"..","n":..,"x":false,"q":"..","V":"..","Q":"..",
//  "B":"0"}}
void AppendKlineEvent(const Candle& c, std::string_view symbol, bool closed, int64_t event_ms,
                      std::string* out);
// /stream's wrapping: {"stream":"<name>","data":<event>}.
std::string WrapCombined(std::string_view stream, std::string_view event);

}  // namespace klined::api
