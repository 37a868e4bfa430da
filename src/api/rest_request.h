// Requests of the market-data REST API (contract section 8): the HTTP target parsed into a path
// and parameters, the parameters of /api/v3/klines and the tickers validated into queries,
// Binance's error replies, and Binance's request weights.
//
// DESIGN
// Everything here is pure (no I/O, no threads, no state) so the server's event loops call it
// directly and the unit tests pin every reply byte for byte. Input is external: nothing here
// asserts on it or throws; a bad request is an ApiError value, answered as Binance answers it
// ({"code":..,"msg":..} with HTTP 400, 404, 405, 429 or 5xx).
//
// Sources for Binance's behaviour (binance/binance-spot-api-docs at commit a5e0bc3):
// errors.md (codes and message templates), rest-api.md (parameters, defaults, weights,
// timeZone forms), CHANGELOG.md 2023-07-11 (-1151 for duplicate symbols). Messages Binance
// fills in at run time were taken from replies quoted in public code and issues:
// - -1100 for 'symbol'/'symbols'/'startTime', legal ranges '^[\w\-._&&[^a-z]]{1,50}$',
//   '^\[("[\w\-._&&[^a-z]]{1,50}"(,"[\w\-._&&[^a-z]]{1,50}"){0,}){0,1}\]$' and
//   '^[0-9]{1,20}$' (2025 replies quoted by several clients; the symbols form refuses a space
//   after the comma);
// - -1128 "Combination of optional parameters invalid. Recommendation: 'symbol' and 'symbols'
//   cannot both be sent." (binance/binance-connector-rust issue #21);
// - -1003 "Too much request weight used; current limit is 1200 request weight per 1 MINUTE.
//   ..." (ccxt's binance error table; the tail is errors.md's current wording).
// klined's symbols are the contract's (section 1: 1..32 of A-Z a-z 0-9 . _ -, so lower case
// is legal), and its legal ranges say so instead of Binance's upper-case-only class.
//
// Where Binance documents no behaviour, klined's choice is stated next to the function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "klined/interval.h"

namespace klined::api {

// ---------------------------------------------------------------------------------------------
// Errors

struct ApiError {
  int http_status = 400;
  int code = 0;
  std::string msg;
  friend bool operator==(const ApiError&, const ApiError&) = default;
};

// {"code":-1121,"msg":"Invalid symbol."} (msg JSON-escaped).
std::string ErrorBody(const ApiError& e);
void AppendErrorBody(const ApiError& e, std::string* out);

// Legal ranges quoted in -1100 replies.
inline constexpr std::string_view kDigitsRange = "^[0-9]{1,20}$";
inline constexpr std::string_view kSymbolRange = "^[A-Za-z0-9._-]{1,32}$";
inline constexpr std::string_view kSymbolsRange =
    R"(^\[("[A-Za-z0-9._-]{1,32}"(,"[A-Za-z0-9._-]{1,32}"){0,}){0,1}\]$)";

// HTTP 400 unless stated; messages are Binance's.
ApiError InvalidSymbol();                           // -1121 Invalid symbol.
ApiError InvalidInterval();                         // -1120 Invalid interval.
ApiError MandatoryMissing(std::string_view param);  // -1102 Mandatory parameter '%s' was ...
ApiError IllegalChars(std::string_view param, std::string_view legal_range);  // -1100
ApiError IllegalCharsInRequest();              // -1100 Illegal characters found in a parameter.
ApiError InvalidData(std::string_view param);  // -1130 Data sent for parameter '%s' is not valid.
ApiError StartAfterEnd();                      // -1023 Start time is greater than end time.
ApiError BadCombination();                     // -1128 Combination of optional parameters invalid.
ApiError SymbolAndSymbols();                   // -1128 ... 'symbol' and 'symbols' cannot both ...
ApiError TooManyParameters();                  // -1101 Too many parameters sent for this endpoint.
ApiError TooManyValues(std::string_view param, int max);  // -1101 Too many values sent for ...
ApiError DuplicateSymbols();   // -1151 Symbol is present multiple times in ...
ApiError InvalidTickerType();  // -1139 Invalid ticker type.
// HTTP 429, -1003, naming the limit: "Too much request weight used; current limit is 6000
// request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling
// the API." (send Retry-After with it, as Binance does).
ApiError TooManyRequests(int weight_limit_per_minute);
// HTTP 404 and 405. Binance answers an unknown path with 404 and an HTML page only when Accept
// has text/html (CHANGELOG 2023-12-04) and documents no JSON body for it, nor a reply to a
// wrong method; klined answers both in Binance's shape with -1020 "This operation is not
// supported." (ccxt maps -1020 to NotSupported; -1099, Binance's old not-found code, maps to
// AuthenticationError, which would mislead).
ApiError UnknownPath();
ApiError MethodNotAllowed();
// HTTP 500 -1001 "Internal error; unable to process your request. Please try again." (e.g.
// Redis unreachable) and HTTP 503 -1008 "Server is currently overloaded with other requests.
// Please try again in a few minutes." (a bounded queue is full).
ApiError InternalError();
ApiError ServerBusy();

// ---------------------------------------------------------------------------------------------
// Target

struct Param {
  std::string key;
  std::string value;
};

// The query parameters in request order (a small vector: at most kMax). Lookups return the
// first occurrence of a key (Binance refuses some duplicates with -1101; klined reads the
// first and ignores the rest). Unknown keys are kept and ignored by the parsers, as Binance
// ignores them on these public endpoints.
class Params {
 public:
  static constexpr size_t kMax = 64;

  // False (nothing added) when kMax parameters are already held.
  [[nodiscard]] bool Add(std::string key, std::string value);
  // The first value of key, or nullptr.
  const std::string* Find(std::string_view key) const;
  // The first value of key if it is non-empty: Binance treats an empty value as not sent
  // ("was not sent, was empty/null").
  std::optional<std::string_view> Get(std::string_view key) const;

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  const Param& operator[](size_t i) const { return items_[i]; }
  void clear() { items_.clear(); }

 private:
  std::vector<Param> items_;
};

// Decodes %XX (either case of hex digit) and, when plus_is_space, '+' as ' '. False on a '%'
// not followed by two hex digits (*out then holds a partial result).
[[nodiscard]] bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out);

// Splits an origin-form target ("/path?query") into its percent-decoded path ('+' stays '+')
// and its parameters (key=value pairs split on '&', keys and values percent-decoded with '+'
// as space; a pair without '=' has an empty value; empty pairs such as "a=1&&b=2" are
// skipped). Returns false when the target does not start with '/', an escape is malformed
// (IllegalCharsInRequest: -1100 "Illegal characters found in a parameter.") or there are more
// than Params::kMax parameters (TooManyParameters: -1101); *error, if given, is then set.
// *path and *params are cleared first.
[[nodiscard]] bool ParseTarget(std::string_view target, std::string* path, Params* params,
                               ApiError* error = nullptr);

struct Request {
  std::string path;
  Params params;
};
[[nodiscard]] inline bool ParseTarget(std::string_view target, Request* r,
                                      ApiError* error = nullptr) {
  return ParseTarget(target, &r->path, &r->params, error);
}

// ---------------------------------------------------------------------------------------------
// Queries

using KnownSymbol = std::function<bool(std::string_view)>;

inline constexpr int kDefaultKlinesLimit = 500;
inline constexpr int kMaxKlinesLimit = 1000;

struct KlinesQuery {
  std::string symbol;
  Interval interval = Interval::k1m;
  std::optional<int64_t> start_ms, end_ms;  // ms UTC, both >= 0
  int limit = kDefaultKlinesLimit;          // 1..1000
};

// Binance's timeZone forms: optional sign, 1-2 hour digits, optionally ':' and 2 minute digits
// ("8", "-1", "+8", "08:00", "+08:00", "-5:30", "0"), minutes <= 59, within [-12:00, +14:00].
std::optional<UtcOffset> ParseTimeZone(std::string_view text);

// /api/v3/klines and /api/v3/uiKlines. Checks in this order, the first failure answering:
//  1. symbol sent and non-empty, else -1102 'symbol';
//  2. interval sent and non-empty, else -1102 'interval';
//  3. symbol of the contract's grammar, else -1100 'symbol' (kSymbolRange);
//  4. startTime, endTime, limit in turn: only 1..20 digits, else -1100 (kDigitsRange; a sign
//     is not a digit, so "-5" is -1100); then the value: startTime/endTime past int64 and
//     limit outside 1..1000 are -1130 for that parameter;
//  5. interval one of `configured` (ParseInterval, case-sensitive), else -1120;
//  6. timeZone absent, or a ParseTimeZone form equal to configured_tz, else -1130 'timeZone':
//     klined stores candles in one offset only, and Binance answers a value it cannot use with
//     INVALID_PARAMETER (its exact reply to a bad timeZone is undocumented);
//  7. startTime <= endTime when both are sent, else -1023;
//  8. known_symbol(symbol), else -1121.
// Syntax first, then semantics, then the one check that consults state (the symbol set).
std::variant<KlinesQuery, ApiError> ParseKlinesQuery(const Params& params,
                                                     std::span<const Interval> configured,
                                                     UtcOffset configured_tz,
                                                     const KnownSymbol& known_symbol);

// /api/v3/klines/latest (klined's own): interval mandatory (-1102) and configured (-1120).
std::variant<Interval, ApiError> ParseLatestKlinesQuery(const Params& params,
                                                        std::span<const Interval> configured);

// Upper bound on symbols= entries. Binance documents weights for 101 or more symbols on
// /api/v3/ticker/24hr (and caps only /api/v3/ticker at 100), so klined does not refuse 101;
// the bound exists because the list is external input (a request target is a few KiB anyway).
inline constexpr int kMaxTickerSymbols = 1000;

struct TickerQuery {
  std::vector<std::string> symbols;  // in request order; empty when all
  bool all = false;                  // neither symbol nor symbols: every known symbol
  bool single = false;               // symbol=X: the reply is one object, not an array
  bool mini = false;                 // type=MINI
};

// /api/v3/ticker/24hr (allow_type) and /api/v3/ticker/price (type is then ignored, as it is not
// a parameter there); also fits exchangeInfo's symbol/symbols. Checks in this order:
//  1. symbol and symbols both sent: -1128 (SymbolAndSymbols);
//  2. symbol of the contract's grammar, else -1100 'symbol';
//  3. symbols a JSON array of quoted symbols with no whitespace (Binance's strict form, e.g.
//     ["BTCUSDT","BNBUSDT"], already URL-decoded), else -1100 'symbols' (kSymbolsRange);
//     an empty array: -1102 'symbols' (klined's choice: nothing was asked for); more than
//     kMaxTickerSymbols: -1101; a symbol listed twice: -1151;
//  4. type (allow_type only): absent/empty or FULL, or MINI, else -1139;
//  5. every symbol known, else -1121.
std::variant<TickerQuery, ApiError> ParseTickerQuery(const Params& params,
                                                     const KnownSymbol& known_symbol,
                                                     bool allow_type);

// ---------------------------------------------------------------------------------------------
// Paths and weights (rest-api.md; X-MBX-USED-WEIGHT-1M counts these)

inline constexpr std::string_view kPathPing = "/api/v3/ping";
inline constexpr std::string_view kPathTime = "/api/v3/time";
inline constexpr std::string_view kPathExchangeInfo = "/api/v3/exchangeInfo";
inline constexpr std::string_view kPathKlines = "/api/v3/klines";
inline constexpr std::string_view kPathUiKlines = "/api/v3/uiKlines";
inline constexpr std::string_view kPathKlinesLatest = "/api/v3/klines/latest";
inline constexpr std::string_view kPathTicker24hr = "/api/v3/ticker/24hr";
inline constexpr std::string_view kPathTickerPrice = "/api/v3/ticker/price";

inline constexpr int KlinesWeight() { return 2; }
// 2 for symbol=X; by the number of symbols= entries 1-20: 2, 21-100: 40, 101+: 80; all: 80.
int Ticker24hrWeight(size_t symbol_count, bool all);
// 2 for symbol=X, 4 for a list or all.
int TickerPriceWeight(bool single);

// The weight of one request: ping 1, time 1, exchangeInfo 20, klines and uiKlines 2,
// klines/latest 2 (klined's own: one row per symbol, like a small ticker list), ticker/24hr
// and ticker/price as above, counting the entries of a well-formed symbols= list. A ticker
// request that is refused whatever the state (symbol with symbols, a malformed, empty or
// oversized list) weighs the endpoint's base weight, the one-symbol 2, so a refusal costs what
// a cheap valid request costs. Any other path (404s, "/") weighs 1.
int RequestWeight(std::string_view path, const Params& params);

}  // namespace klined::api
