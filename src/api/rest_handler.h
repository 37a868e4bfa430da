// One REST request in, one reply out: routing, the weight limit, validation, the reads, the
// Binance-shaped body. Transport-free (api_server.cc owns sockets and HTTP framing), so the
// routes are the same whoever calls them.
//
// One RestHandler per API thread; it uses that thread's MarketReader and WeightLimiter (and
// the L1 cache all threads share, when there is one, for klines and uiKlines). The
// server assigns every connection of one client IP to the same thread, so one limiter per
// thread counts a client's whole weight without a lock.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "api/candle_cache.h"
#include "api/market_reader.h"
#include "api/rest_request.h"
#include "api/symbol_directory.h"
#include "api/weight_limiter.h"
#include "base/counter.h"
#include "klined/interval.h"

namespace klined::api {

// The routes, for per-endpoint metrics (a fixed set: labels stay bounded).
enum class Endpoint : uint8_t {
  kPing,
  kTime,
  kKlines,
  kUiKlines,
  kKlinesLatest,
  kTicker24hr,
  kTickerPrice,
  kExchangeInfo,
  kPage,
  kOther,  // unknown paths and methods
};
inline constexpr size_t kEndpointCount = 10;
const char* EndpointName(Endpoint e);

// Status classes counted per endpoint.
enum class Outcome : uint8_t { kOk, kClientError, kRateLimited, kUnavailable };
inline constexpr size_t kOutcomeCount = 4;
const char* OutcomeName(Outcome o);

struct HandlerStats {
  std::array<std::array<OwnedCounter, kOutcomeCount>, kEndpointCount> responses;
};

struct HandlerOptions {
  std::vector<Interval> intervals;  // the configured ones, the only valid `interval` values
  UtcOffset time_zone;              // the only accepted `timeZone`
  std::vector<std::string> quote_assets;
  int64_t weight_per_minute = 6000;  // per client IP; 0 = no limit (SIGHUP: set_weight_per_minute)
  std::string web_root;              // empty = no chart page
};

struct HttpReply {
  int status = 200;
  std::string body;
  std::string_view content_type = "application/json;charset=UTF-8";
  int used_weight = -1;    // X-MBX-USED-WEIGHT-1M when >= 0
  int retry_after_s = -1;  // Retry-After (a 429) when >= 0
};

class RestHandler {
 public:
  // cache may be null (api.cache_bytes 0): every klines request reads Redis.
  RestHandler(HandlerOptions options, const SymbolDirectory* symbols, MarketReader* reader,
              CandleCache* cache);

  // method and target as received (target = path + query); client = the peer's IP. GET and HEAD
  // are served (HEAD: the server sends the headers only); any other method is refused (405).
  void Handle(std::string_view method, std::string_view target, std::string_view client,
              int64_t now_ms, HttpReply* out);

  // Reloadable (SIGHUP): the next request uses it. API thread.
  void set_weight_per_minute(int64_t w) { limiter_.set_limit(static_cast<int>(w)); }

  const HandlerStats& stats() const { return stats_; }
  const WeightLimiter& limiter() const { return limiter_; }

 private:
  Endpoint Route(std::string_view path) const;
  void Serve(Endpoint e, std::string_view path, const Params& params, int64_t now_ms,
             HttpReply* out);
  void ServePage(std::string_view path, HttpReply* out);

  HandlerOptions options_;
  const SymbolDirectory* symbols_;
  MarketReader* reader_;
  CandleCache* cache_;
  WeightLimiter limiter_;
  HandlerStats stats_;
  std::vector<Candle> candles_;  // scratch, reused
  // The chart page's files, read from api.web_root at their first request and kept (a
  // changed file is served after a restart).
  std::unordered_map<std::string, std::string> page_files_;
  size_t page_bytes_ = 0;
};

}  // namespace klined::api
