// Request parsing and Binance's error replies: see rest_request.h for the design and sources.
#include "api/rest_request.h"

#include <algorithm>
#include <charconv>
#include <unordered_set>

#include "api/rest_format.h"
#include "klined/trade.h"

namespace klined::api {
namespace {

ApiError Error(int code, std::string msg) { return ApiError{400, code, std::move(msg)}; }

std::string Quoted(std::string_view prefix, std::string_view param, std::string_view suffix) {
  std::string s;
  s.reserve(prefix.size() + param.size() + suffix.size());
  s.append(prefix).append(param).append(suffix);
  return s;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A value of Binance's '^[0-9]{1,20}$' parsed as int64: kSyntax when it is not of that form,
// kRange when it is but exceeds int64.
enum class Digits { kOk, kSyntax, kRange };
Digits ParseDigits(std::string_view s, int64_t* out) {
  if (s.size() > 20 || !AllDigits(s)) return Digits::kSyntax;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec != std::errc() || ptr != s.data() + s.size()) return Digits::kRange;
  return Digits::kOk;
}

// Parses an optional LONG/INT parameter; on failure returns its error.
std::optional<ApiError> OptionalDigits(const Params& p, std::string_view key,
                                       std::optional<int64_t>* out) {
  const std::optional<std::string_view> v = p.Get(key);
  if (!v) return std::nullopt;
  int64_t n = 0;
  switch (ParseDigits(*v, &n)) {
    case Digits::kSyntax:
      return IllegalChars(key, kDigitsRange);
    case Digits::kRange:
      return InvalidData(key);
    case Digits::kOk:
      break;
  }
  *out = n;
  return std::nullopt;
}

std::optional<Interval> ConfiguredInterval(std::string_view name,
                                           std::span<const Interval> configured) {
  const std::optional<Interval> iv = ParseInterval(name);
  if (!iv || std::find(configured.begin(), configured.end(), *iv) == configured.end()) {
    return std::nullopt;
  }
  return iv;
}

// Binance's strict symbols= form: '[' then '"sym"' entries separated by ',' then ']', no
// whitespace, each entry of the contract's symbol grammar. False on anything else.
bool ParseSymbolList(std::string_view s, std::vector<std::string>* out, bool* too_many) {
  *too_many = false;
  if (s.size() < 2 || s.front() != '[' || s.back() != ']') return false;
  std::string_view rest = s.substr(1, s.size() - 2);
  if (rest.empty()) return true;
  while (true) {
    if (rest.size() < 2 || rest.front() != '"') return false;
    const size_t close = rest.find('"', 1);
    if (close == std::string_view::npos) return false;
    const std::string_view sym = rest.substr(1, close - 1);
    if (!IsValidSymbol(sym)) return false;
    if (out->size() == static_cast<size_t>(kMaxTickerSymbols)) {
      *too_many = true;  // keep scanning: a malformed tail is still -1100
    } else {
      out->emplace_back(sym);
    }
    rest.remove_prefix(close + 1);
    if (rest.empty()) return true;
    if (rest.front() != ',') return false;
    rest.remove_prefix(1);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Errors

void AppendErrorBody(const ApiError& e, std::string* out) {
  char buf[16];
  out->append(R"({"code":)");
  out->append(buf, std::to_chars(buf, buf + sizeof(buf), e.code).ptr);
  out->append(R"(,"msg":)");
  AppendJsonString(e.msg, out);
  out->push_back('}');
}

std::string ErrorBody(const ApiError& e) {
  std::string s;
  AppendErrorBody(e, &s);
  return s;
}

ApiError InvalidSymbol() { return Error(-1121, "Invalid symbol."); }
ApiError InvalidInterval() { return Error(-1120, "Invalid interval."); }
ApiError MandatoryMissing(std::string_view param) {
  return Error(-1102, Quoted("Mandatory parameter '", param,
                             "' was not sent, was empty/null, or malformed."));
}
ApiError IllegalChars(std::string_view param, std::string_view legal_range) {
  std::string msg = Quoted("Illegal characters found in parameter '", param, "'; legal range is '");
  msg.append(legal_range).append("'.");
  return Error(-1100, std::move(msg));
}
ApiError IllegalCharsInRequest() {
  return Error(-1100, "Illegal characters found in a parameter.");
}
ApiError InvalidData(std::string_view param) {
  return Error(-1130, Quoted("Data sent for parameter '", param, "' is not valid."));
}
ApiError StartAfterEnd() { return Error(-1023, "Start time is greater than end time."); }
ApiError BadCombination() { return Error(-1128, "Combination of optional parameters invalid."); }
ApiError SymbolAndSymbols() {
  return Error(-1128,
               "Combination of optional parameters invalid. Recommendation: 'symbol' and "
               "'symbols' cannot both be sent.");
}
ApiError TooManyParameters() { return Error(-1101, "Too many parameters sent for this endpoint."); }
ApiError TooManyValues(std::string_view param, int max) {
  std::string msg =
      Quoted("Too many values sent for parameter '", param, "', maximum allowed up to ");
  msg.append(std::to_string(max)).append(".");
  return Error(-1101, std::move(msg));
}
ApiError DuplicateSymbols() {
  return Error(-1151, "Symbol is present multiple times in the list.");
}
ApiError InvalidTickerType() { return Error(-1139, "Invalid ticker type."); }
ApiError TooManyRequests(int weight_limit_per_minute) {
  std::string msg = "Too much request weight used; current limit is ";
  msg.append(std::to_string(weight_limit_per_minute));
  msg.append(
      " request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
      "polling the API.");
  return ApiError{429, -1003, std::move(msg)};
}
ApiError UnknownPath() { return ApiError{404, -1020, "This operation is not supported."}; }
ApiError MethodNotAllowed() { return ApiError{405, -1020, "This operation is not supported."}; }
ApiError InternalError() {
  return ApiError{500, -1001, "Internal error; unable to process your request. Please try again."};
}
ApiError ServerBusy() {
  return ApiError{503, -1008,
                  "Server is currently overloaded with other requests. Please try again in a few "
                  "minutes."};
}

// ---------------------------------------------------------------------------------------------
// Target

bool Params::Add(std::string key, std::string value) {
  if (items_.size() >= kMax) return false;
  items_.push_back(Param{std::move(key), std::move(value)});
  return true;
}

const std::string* Params::Find(std::string_view key) const {
  for (const Param& p : items_) {
    if (p.key == key) return &p.value;
  }
  return nullptr;
}

std::optional<std::string_view> Params::Get(std::string_view key) const {
  const std::string* v = Find(key);
  if (v == nullptr || v->empty()) return std::nullopt;
  return std::string_view(*v);
}

bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

bool ParseTarget(std::string_view target, std::string* path, Params* params, ApiError* error) {
  path->clear();
  params->clear();
  auto fail = [&](ApiError e) {
    if (error != nullptr) *error = std::move(e);
    return false;
  };
  if (target.empty() || target.front() != '/') return fail(IllegalCharsInRequest());
  const size_t q = target.find('?');
  const std::string_view raw_path = target.substr(0, q);
  if (!PercentDecode(raw_path, /*plus_is_space=*/false, path)) return fail(IllegalCharsInRequest());
  if (q == std::string_view::npos) return true;
  std::string_view query = target.substr(q + 1);
  std::string key, value;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    const std::string_view raw_key = pair.substr(0, eq);
    const std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (!PercentDecode(raw_key, true, &key) || !PercentDecode(raw_value, true, &value)) {
      return fail(IllegalCharsInRequest());
    }
    if (!params->Add(std::move(key), std::move(value))) return fail(TooManyParameters());
    key.clear();
    value.clear();
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Queries

std::optional<UtcOffset> ParseTimeZone(std::string_view text) {
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  const size_t colon = s.find(':');
  const std::string_view hours = s.substr(0, colon);
  if (hours.empty() || hours.size() > 2 || !AllDigits(hours)) return std::nullopt;
  int h = 0;
  for (const char c : hours) h = h * 10 + (c - '0');
  int m = 0;
  if (colon != std::string_view::npos) {
    const std::string_view minutes = s.substr(colon + 1);
    if (minutes.size() != 2 || !AllDigits(minutes)) return std::nullopt;
    m = (minutes[0] - '0') * 10 + (minutes[1] - '0');
    if (m > 59) return std::nullopt;
  }
  const int total = (negative ? -1 : 1) * (h * 60 + m);
  if (total < -12 * 60 || total > 14 * 60) return std::nullopt;
  return UtcOffset{int64_t{total} * 60'000};
}

std::variant<KlinesQuery, ApiError> ParseKlinesQuery(const Params& params,
                                                     std::span<const Interval> configured,
                                                     UtcOffset configured_tz,
                                                     const KnownSymbol& known_symbol) {
  const std::optional<std::string_view> symbol = params.Get("symbol");
  if (!symbol) return MandatoryMissing("symbol");
  const std::optional<std::string_view> interval = params.Get("interval");
  if (!interval) return MandatoryMissing("interval");
  if (!IsValidSymbol(*symbol)) return IllegalChars("symbol", kSymbolRange);

  KlinesQuery q;
  std::optional<int64_t> limit;
  if (auto e = OptionalDigits(params, "startTime", &q.start_ms)) return *std::move(e);
  if (auto e = OptionalDigits(params, "endTime", &q.end_ms)) return *std::move(e);
  if (auto e = OptionalDigits(params, "limit", &limit)) return *std::move(e);
  if (limit && (*limit < 1 || *limit > kMaxKlinesLimit)) return InvalidData("limit");
  q.limit = limit ? static_cast<int>(*limit) : kDefaultKlinesLimit;

  const std::optional<Interval> iv = ConfiguredInterval(*interval, configured);
  if (!iv) return InvalidInterval();
  q.interval = *iv;

  if (const std::optional<std::string_view> tz = params.Get("timeZone")) {
    const std::optional<UtcOffset> offset = ParseTimeZone(*tz);
    if (!offset || *offset != configured_tz) return InvalidData("timeZone");
  }
  if (q.start_ms && q.end_ms && *q.start_ms > *q.end_ms) return StartAfterEnd();
  if (!known_symbol(*symbol)) return InvalidSymbol();
  q.symbol = std::string(*symbol);
  return q;
}

std::variant<Interval, ApiError> ParseLatestKlinesQuery(const Params& params,
                                                        std::span<const Interval> configured) {
  const std::optional<std::string_view> interval = params.Get("interval");
  if (!interval) return MandatoryMissing("interval");
  const std::optional<Interval> iv = ConfiguredInterval(*interval, configured);
  if (!iv) return InvalidInterval();
  return *iv;
}

std::variant<TickerQuery, ApiError> ParseTickerQuery(const Params& params,
                                                     const KnownSymbol& known_symbol,
                                                     bool allow_type) {
  const std::optional<std::string_view> symbol = params.Get("symbol");
  const std::optional<std::string_view> symbols = params.Get("symbols");
  if (symbol && symbols) return SymbolAndSymbols();

  TickerQuery q;
  if (symbol) {
    if (!IsValidSymbol(*symbol)) return IllegalChars("symbol", kSymbolRange);
    q.symbols.emplace_back(*symbol);
    q.single = true;
  } else if (symbols) {
    bool too_many = false;
    if (!ParseSymbolList(*symbols, &q.symbols, &too_many)) {
      return IllegalChars("symbols", kSymbolsRange);
    }
    if (q.symbols.empty()) return MandatoryMissing("symbols");
    if (too_many) return TooManyValues("symbols", kMaxTickerSymbols);
    std::unordered_set<std::string_view> seen;
    seen.reserve(q.symbols.size());
    for (const std::string& s : q.symbols) {
      if (!seen.insert(s).second) return DuplicateSymbols();
    }
  } else {
    q.all = true;
  }

  if (allow_type) {
    if (const std::optional<std::string_view> type = params.Get("type")) {
      if (*type == "MINI") {
        q.mini = true;
      } else if (*type != "FULL") {
        return InvalidTickerType();
      }
    }
  }
  for (const std::string& s : q.symbols) {
    if (!known_symbol(s)) return InvalidSymbol();
  }
  return q;
}

// ---------------------------------------------------------------------------------------------
// Weights

int Ticker24hrWeight(size_t symbol_count, bool all) {
  if (all || symbol_count > 100) return 80;
  if (symbol_count > 20) return 40;
  return 2;
}

int TickerPriceWeight(bool single) { return single ? 2 : 4; }

int RequestWeight(std::string_view path, const Params& params) {
  if (path == kPathPing || path == kPathTime) return 1;
  if (path == kPathExchangeInfo) return 20;
  if (path == kPathKlines || path == kPathUiKlines || path == kPathKlinesLatest) {
    return KlinesWeight();
  }
  const bool is_24hr = path == kPathTicker24hr;
  if (!is_24hr && path != kPathTickerPrice) return 1;

  constexpr int kBase = 2;  // the one-symbol weight of both tickers
  const std::optional<std::string_view> symbol = params.Get("symbol");
  const std::optional<std::string_view> symbols = params.Get("symbols");
  if (symbol) return kBase;  // one symbol, or refused with symbols (-1128)
  if (!symbols) return is_24hr ? Ticker24hrWeight(0, true) : TickerPriceWeight(false);
  std::vector<std::string> list;
  bool too_many = false;
  if (!ParseSymbolList(*symbols, &list, &too_many) || list.empty() || too_many) return kBase;
  return is_24hr ? Ticker24hrWeight(list.size(), false) : TickerPriceWeight(false);
}

}  // namespace klined::api
