// The market-data API server: HTTP/1.1 (REST) on Boost.Beast over Asio, inside klined.
//
// DESIGN
// Threads: `api.threads` event loops (api-0 .. api-N-1), each an io_context with its own
// MarketReader (Redis + MySQL connections) and RestHandler; one refresher thread (api-sym)
// that re-reads the known-symbol set. api-0 also runs the acceptor. A connection is owned by
// one loop for its whole life: the acceptor hands the accepted descriptor to the loop chosen
// by the client IP's hash (through that loop's post, never a lock around a socket), so every
// connection of one client lands on one loop and that loop's weight limiter sees the client's
// whole weight.
//
// A loop handles one request at a time per connection and its reads block the loop for one
// Redis round trip (plus a MySQL range read for history older than Redis holds, bounded by
// api.mysql_timeout_ms); the other loops go on meanwhile.
//
// WebSocket upgrades of /ws, /ws/<stream>, /stream become WsSessions on the same loop
// (ws_session.h); live updates come from one EventHub (api-sub thread, event_hub.h), which
// also keeps the loops' shared L1 cache of klines rows fresh (candle_cache.h, a sink of its
// own after the loops').
//
// Bounds, and what happens past them:
// - connections: api.max_connections open sockets; one more is accepted and closed at once
//   (klined_api_connections_rejected_total);
// - request: 8 KiB of request line + headers (431, then close), 4 KiB of body (413, close),
//   the whole request within api.idle_timeout_ms of the previous reply or of the accept
//   (slowloris: closed, klined_api_timeouts_total), malformed HTTP (400, close);
// - weight: api.weight_per_minute per client IP (429 with -1003);
// - reply: at most 1000 candles (limit) or one row per known symbol.
// Stop() closes the acceptor and every connection and joins the threads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "api/candle_cache.h"
#include "api/market_reader.h"
#include "api/rest_handler.h"
#include "api/symbol_directory.h"
#include "api/ws_session.h"
#include "io/mysql/mysql_conn.h"
#include "io/redis/cluster/router.h"

namespace klined::api {

struct ApiServerOptions {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 = any
  int threads = 1;
  int64_t max_connections = 10000;
  int64_t idle_timeout_ms = 60000;
  int64_t symbols_refresh_ms = 1000;
  // Redis, or the cluster's primaries: the API's own topology (its readers' connections have
  // a short command timeout), shared by every loop's reader and the hub.
  cluster::TopologyOptions topology;
  MysqlOptions mysql;
  KeyLayout keys{"kline", "ticker"};
  HandlerOptions handler;
  WsOptions ws;        // its intervals are the handler's
  CacheOptions cache;  // max_bytes 0 = no L1 cache
  int64_t watch_ttl_ms = 30000;  // EventHub: what this instance streams, in B:watch
};

// Sums over the loops, for the metrics scrape (any thread).
struct ApiSnapshot {
  std::array<std::array<uint64_t, kOutcomeCount>, kEndpointCount> responses{};
  uint64_t connections_open = 0;
  uint64_t connections_accepted = 0;
  uint64_t connections_rejected = 0;
  uint64_t http_errors = 0;  // malformed or oversized requests
  uint64_t timeouts = 0;     // connections closed for silence or slowness
  uint64_t redis_reads = 0, redis_failures = 0;
  uint64_t mysql_reads = 0, mysql_failures = 0;
  uint64_t corrupt_values = 0;
  uint64_t symbols_known = 0;
  uint64_t symbol_refresh_failures = 0;
  // WebSocket streams
  uint64_t ws_accepted = 0, ws_open = 0, ws_messages_in = 0, ws_error_replies = 0;
  uint64_t ws_events_out = 0, ws_conflated = 0;
  std::array<uint64_t, kWsCloseCount> ws_closed{};
  // pub/sub
  uint64_t pubsub_messages = 0, pubsub_events = 0, pubsub_bad = 0, pubsub_reconnects = 0;
  uint64_t pubsub_moved = 0;
  uint64_t pubsub_symbols = 0, watch_writes = 0;
  // the L1 cache
  uint64_t cache_hits = 0, cache_misses = 0, cache_page_hits = 0, cache_page_misses = 0;
  uint64_t cache_waits = 0, cache_loads = 0, cache_evictions = 0, cache_invalidations = 0;
  uint64_t cache_bytes = 0, cache_entries = 0, cache_pages = 0;
};

class ApiServer {
 public:
  explicit ApiServer(ApiServerOptions options);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds and starts the threads. False with *error if the address is unavailable. Once.
  bool Start(std::string* error);
  // Closes everything and joins the threads. Idempotent.
  void Stop();
  // The port bound (useful with port 0); 0 before Start.
  int port() const { return port_; }

  // SIGHUP: the weight limit (every loop picks it up through its post).
  void SetWeightPerMinute(int64_t w);

  ApiSnapshot Snapshot() const;
  // The API's routing (its counters join klined_redis_cluster_*); lives as long as the server.
  cluster::Topology* topology() { return topology_.get(); }

  struct Loop;  // api_server.cc

 private:
  class Impl;
  ApiServerOptions options_;
  std::unique_ptr<cluster::Topology> topology_;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  bool stopped_ = false;
};

}  // namespace klined::api
