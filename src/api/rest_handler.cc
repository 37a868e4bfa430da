// REST routes; see rest_handler.h.
#include "api/rest_handler.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "api/rest_format.h"
#include "api/rest_request.h"
#include "base/log.h"

namespace klined::api {
namespace {

constexpr size_t kWeightClients = 100000;         // distinct IPs a thread tracks per minute
constexpr size_t kMaxPageFileBytes = 8u << 20;    // chart page assets
constexpr size_t kMaxPageCacheBytes = 32u << 20;  // of them kept in memory, per API thread

// Redis or MySQL unreachable: Binance's -1001 with 503, which load balancers and clients treat
// as retryable (another instance may answer).
ApiError Unavailable() {
  ApiError e = InternalError();
  e.http_status = 503;
  return e;
}

// What a symbol that has no ticker yet (known, not traded in 24 h) reads as: an empty window.
std::string EmptyStoredTicker(std::string_view symbol, int64_t now_ms) {
  return "{\"symbol\":\"" + std::string(symbol) +
         "\",\"priceChange\":\"0\",\"priceChangePercent\":\"0\",\"weightedAvgPrice\":\"0\","
         "\"openPrice\":\"0\",\"highPrice\":\"0\",\"lowPrice\":\"0\",\"lastPrice\":\"0\","
         "\"lastQty\":\"0\",\"volume\":\"0\",\"quoteVolume\":\"0\",\"openTime\":" +
         std::to_string(now_ms - 86400000) + ",\"closeTime\":" + std::to_string(now_ms) +
         ",\"firstId\":-1,\"lastId\":-1,\"count\":0}";
}

void SetError(const ApiError& e, HttpReply* out) {
  out->status = e.http_status;
  out->body = ErrorBody(e);
  out->content_type = "application/json;charset=UTF-8";
}

Outcome OutcomeOf(int status) {
  if (status == 429) return Outcome::kRateLimited;
  if (status >= 500) return Outcome::kUnavailable;
  if (status >= 400) return Outcome::kClientError;
  return Outcome::kOk;
}

std::string_view ContentTypeOf(std::string_view path) {
  auto ends = [&](std::string_view s) {
    return path.size() >= s.size() && path.substr(path.size() - s.size()) == s;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js") || ends(".mjs")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".json") || ends(".map")) return "application/json";
  if (ends(".png")) return "image/png";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

// A page path is served only if every segment is a plain name: no "..", no hidden files, no
// characters a file system or shell treats specially.
bool SafePagePath(std::string_view path) {
  if (path.empty() || path.front() != '/' || path.size() > 256) return false;
  size_t depth = 0;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string_view seg = path.substr(start, slash == path.npos ? path.npos : slash - start);
    if (seg.empty() || seg.front() == '.' || ++depth > 4) return false;
    for (char c : seg) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
      if (!ok) return false;
    }
    if (slash == path.npos) break;
    start = slash + 1;
  }
  return true;
}

}  // namespace

const char* EndpointName(Endpoint e) {
  static constexpr const char* kNames[kEndpointCount] = {
      "ping",        "time",         "klines",       "uiKlines", "klines_latest",
      "ticker_24hr", "ticker_price", "exchangeInfo", "page",     "other"};
  return kNames[static_cast<size_t>(e)];
}

const char* OutcomeName(Outcome o) {
  static constexpr const char* kNames[kOutcomeCount] = {"ok", "client_error", "rate_limited",
                                                        "unavailable"};
  return kNames[static_cast<size_t>(o)];
}

RestHandler::RestHandler(HandlerOptions options, const SymbolDirectory* symbols,
                         MarketReader* reader, CandleCache* cache)
    : options_(std::move(options)),
      symbols_(symbols),
      reader_(reader),
      cache_(cache),
      limiter_(static_cast<int>(options_.weight_per_minute), kWeightClients) {}

Endpoint RestHandler::Route(std::string_view path) const {
  static constexpr std::pair<std::string_view, Endpoint> kRoutes[] = {
      {"/api/v3/ping", Endpoint::kPing},
      {"/api/v3/time", Endpoint::kTime},
      {"/api/v3/klines", Endpoint::kKlines},
      {"/api/v3/uiKlines", Endpoint::kUiKlines},
      {"/api/v3/klines/latest", Endpoint::kKlinesLatest},
      {"/api/v3/ticker/24hr", Endpoint::kTicker24hr},
      {"/api/v3/ticker/price", Endpoint::kTickerPrice},
      {"/api/v3/exchangeInfo", Endpoint::kExchangeInfo},
  };
  for (const auto& [p, e] : kRoutes) {
    if (path == p) return e;
  }
  if (!options_.web_root.empty() && path.substr(0, 5) != "/api/" && path.substr(0, 3) != "/ws" &&
      path != "/stream") {
    return Endpoint::kPage;
  }
  return Endpoint::kOther;
}

void RestHandler::Handle(std::string_view method, std::string_view target, std::string_view client,
                         int64_t now_ms, HttpReply* out) {
  *out = HttpReply{};
  std::string path;
  Params params;
  ApiError target_error;
  Endpoint e = Endpoint::kOther;
  if (!ParseTarget(target, &path, &params, &target_error)) {
    SetError(target_error, out);
  } else if (e = Route(path); method != "GET" && method != "HEAD") {
    e = Endpoint::kOther;
    SetError(MethodNotAllowed(), out);
  } else if (e == Endpoint::kOther) {
    SetError(UnknownPath(), out);
  } else {
    const int weight = e == Endpoint::kPage ? 0 : RequestWeight(path, params);
    const WeightLimiter::Result admit = limiter_.Admit(client, weight, now_ms);
    out->used_weight = admit.used;
    if (!admit.ok) {
      SetError(TooManyRequests(limiter_.limit()), out);
      out->retry_after_s = WeightLimiter::RetryAfterSeconds(now_ms);
    } else {
      const int used = out->used_weight;
      Serve(e, path, params, now_ms, out);
      out->used_weight = used;
    }
  }
  stats_.responses[static_cast<size_t>(e)][static_cast<size_t>(OutcomeOf(out->status))].Add();
}

void RestHandler::Serve(Endpoint e, std::string_view path, const Params& params, int64_t now_ms,
                        HttpReply* out) {
  const std::shared_ptr<const SymbolSnapshot> known = symbols_->Get();
  auto is_known = [&known](std::string_view s) { return known->Contains(s); };
  switch (e) {
    case Endpoint::kPing:
      out->body = "{}";
      return;
    case Endpoint::kTime:
      AppendServerTime(now_ms, &out->body);
      return;
    case Endpoint::kKlines:
    case Endpoint::kUiKlines: {
      auto parsed = ParseKlinesQuery(params, options_.intervals, options_.time_zone, is_known);
      if (const ApiError* err = std::get_if<ApiError>(&parsed)) return SetError(*err, out);
      const KlinesQuery& q = std::get<KlinesQuery>(parsed);
      RangeQuery rq{q.symbol, q.interval, q.start_ms, q.end_ms, static_cast<size_t>(q.limit)};
      if (cache_ != nullptr) {
        if (cache_->Klines(rq, reader_, &out->body) != ReadStatus::kOk) {
          out->body.clear();
          return SetError(Unavailable(), out);
        }
        return;
      }
      if (reader_->Klines(rq, &candles_) != ReadStatus::kOk) return SetError(Unavailable(), out);
      out->body.reserve(candles_.size() * 160 + 2);
      out->body.push_back('[');
      for (size_t i = 0; i < candles_.size(); ++i) {
        if (i > 0) out->body.push_back(',');
        AppendKlineRow(candles_[i], &out->body);
      }
      out->body.push_back(']');
      return;
    }
    case Endpoint::kKlinesLatest: {
      auto parsed = ParseLatestKlinesQuery(params, options_.intervals);
      if (const ApiError* err = std::get_if<ApiError>(&parsed)) return SetError(*err, out);
      std::vector<std::pair<std::string_view, Candle>> rows;
      if (reader_->Latest(std::get<Interval>(parsed), known->sorted, &rows) != ReadStatus::kOk) {
        return SetError(Unavailable(), out);
      }
      out->body.reserve(rows.size() * 180 + 2);
      out->body.push_back('[');
      for (size_t i = 0; i < rows.size(); ++i) {
        if (i > 0) out->body.push_back(',');
        AppendSymbolKlineRow(rows[i].first, rows[i].second, &out->body);
      }
      out->body.push_back(']');
      return;
    }
    case Endpoint::kTicker24hr:
    case Endpoint::kTickerPrice: {
      const bool full_ticker = e == Endpoint::kTicker24hr;
      auto parsed = ParseTickerQuery(params, is_known, full_ticker);
      if (const ApiError* err = std::get_if<ApiError>(&parsed)) return SetError(*err, out);
      const TickerQuery& q = std::get<TickerQuery>(parsed);
      const std::vector<std::string>& symbols = q.all ? known->sorted : q.symbols;
      std::vector<std::string> stored;
      if (reader_->Tickers(symbols, &stored) != ReadStatus::kOk) {
        return SetError(Unavailable(), out);
      }
      const bool single = !q.all && q.single;
      if (!single) out->body.push_back('[');
      bool first = true;
      for (size_t i = 0; i < stored.size(); ++i) {
        if (stored[i].empty()) continue;  // a symbol with no ticker yet
        const size_t mark = out->body.size();
        if (!first) out->body.push_back(',');
        const bool ok = full_ticker ? AppendTicker(stored[i], q.mini, &out->body)
                                    : AppendTickerPrice(stored[i], &out->body);
        if (!ok) {
          out->body.resize(mark);
          LOG_RATE(kWarn, "api.corrupt_value",
                   "symbol=" << symbols[i] << " detail=\"stored 24h ticker does not parse\"");
          continue;
        }
        first = false;
      }
      if (!single) {
        out->body.push_back(']');
      } else if (first) {
        // One symbol asked for and it has no ticker yet: as Binance answers a symbol it knows
        // that has not traded, an empty window.
        out->body.clear();
        const std::string empty = EmptyStoredTicker(q.symbols.front(), now_ms);
        (void)(full_ticker ? AppendTicker(empty, q.mini, &out->body)
                           : AppendTickerPrice(empty, &out->body));
      }
      return;
    }
    case Endpoint::kExchangeInfo:
      AppendExchangeInfo(known->sorted, options_.quote_assets, now_ms, limiter_.limit(),
                         &out->body);
      return;
    case Endpoint::kPage:
      return ServePage(path, out);
    case Endpoint::kOther:
      return SetError(UnknownPath(), out);
  }
}

void RestHandler::ServePage(std::string_view path, HttpReply* out) {
  std::string rel = path == "/" ? std::string("/index.html") : std::string(path);
  if (!SafePagePath(rel)) return SetError(UnknownPath(), out);
  out->content_type = ContentTypeOf(rel);
  if (auto it = page_files_.find(rel); it != page_files_.end()) {
    out->body = it->second;
    return;
  }
  std::ifstream in(options_.web_root + rel, std::ios::binary);
  if (!in) return SetError(UnknownPath(), out);
  std::ostringstream buf;
  buf << in.rdbuf();
  if (buf.str().size() > kMaxPageFileBytes) return SetError(UnknownPath(), out);
  out->body = std::move(buf).str();
  // Kept for the next requests (a file that is missing is looked for again each time).
  if (page_bytes_ + out->body.size() <= kMaxPageCacheBytes) {
    page_bytes_ += out->body.size();
    page_files_.emplace(std::move(rel), out->body);
  }
}

}  // namespace klined::api
