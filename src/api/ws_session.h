// WebSocket streams (Binance's semantics) on one API loop: the per-loop stream router and the
// sessions it feeds.
//
// DESIGN
// A session is owned by one loop (the one its HTTP connection was on) and lives in that
// loop's StreamRouter for each stream it subscribed; the router tells the EventHub when the
// loop's first session of a stream (a symbol's interval, or its ticker) appears or its last
// goes. Events arrive from the hub already
// serialized (one shared buffer per event for every session of every loop).
//
// Send queue, per session, bounded in bytes (api.ws_send_queue_bytes), one write in flight:
// - conflation: a queued, not yet written update of a candle (same stream, same open time, not
//   closed) is replaced by the newer one, so a slow reader gets the latest state, not a backlog;
// - a close event (x:true) and a reply are never replaced or dropped;
// - past the bound the connection is closed (klined_api_ws_closed_total{reason="slow"}):
//   one slow client never delays another, and never holds more than the bound.
// The socket's kernel send buffer is fixed at 64 KiB (no autotuning), so what a stalled client
// holds is this queue's bound plus that, not up to tcp_wmem's 4 MiB.
// Liveness: a ping every 20 s; a client from which nothing (a pong or any frame) arrived for
// 60 s is closed. Inbound: text frames of at most 4 KiB, at most api.ws_messages_per_second
// messages a second (Binance closes past 5/s too), at most api.ws_max_streams streams.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>

#include "api/event_hub.h"
#include "api/symbol_directory.h"
#include "base/counter.h"
#include "klined/interval.h"

namespace klined::api {

struct WsOptions {
  std::vector<Interval> intervals;  // the configured ones: the only valid kline streams
  size_t max_streams = 1024;
  size_t send_queue_bytes = 1 << 20;
  int messages_per_second = 5;
  std::chrono::milliseconds ping_every{20000};
  std::chrono::milliseconds silent_limit{60000};
};

// Why a WebSocket connection ended (klined_api_ws_closed_total{reason}).
enum class WsClose : uint8_t { kClient, kSlow, kSilent, kFlood, kError, kShutdown };
inline constexpr size_t kWsCloseCount = 6;
const char* WsCloseName(WsClose c);

struct WsStats {
  OwnedCounter accepted;       // handshakes completed
  OwnedCounter open;           // sessions alive (Add on start, Sub by its own thread: a gauge)
  OwnedCounter messages_in;    // client messages
  OwnedCounter error_replies;  // Binance error replies sent
  OwnedCounter events_out;     // events queued to sessions
  OwnedCounter conflated;      // queued updates replaced by a newer one
  std::array<OwnedCounter, kWsCloseCount> closed;
};

class WsSession;

// One per loop; loop thread only.
class StreamRouter {
 public:
  StreamRouter(EventHub* hub, size_t loop_index) : hub_(hub), loop_(loop_index) {}

  void Add(const std::string& key, const std::string& symbol, WsSession* s);
  // During Deliver (a session ended by an event it was given), applied once the batch is
  // delivered: the lists being walked do not change under the walk.
  void Remove(const std::string& key, const std::string& symbol, WsSession* s);
  // Queues each event of the batch (what the hub handed this loop since it last ran) to the
  // sessions of its stream; then every session given an event writes what it has queued, one
  // send each.
  void Deliver(const std::vector<std::shared_ptr<const SymbolEvents>>& batch);
  // A session given an event during Deliver: its write is started after the batch.
  void WantPump(std::shared_ptr<WsSession> s) { pumps_.push_back(std::move(s)); }

 private:
  struct Removal {
    std::string key, symbol;
    WsSession* session;
  };
  void RemoveNow(const std::string& key, const std::string& symbol, WsSession* s);

  EventHub* hub_;
  size_t loop_;
  std::unordered_map<std::string, std::vector<WsSession*>> by_key_;
  bool delivering_ = false;
  std::vector<Removal> deferred_;
  std::vector<std::shared_ptr<WsSession>> pumps_;
};

struct WsContext {
  StreamRouter* router;
  const SymbolDirectory* symbols;
  const WsOptions* options;
  WsStats* stats;
  // The server's open-connection count (api.max_connections): a session takes over its HTTP
  // connection's unit and gives it back when it ends.
  std::atomic<int64_t>* connections;
};

// Takes over an HTTP connection whose request is a WebSocket upgrade (target /ws, /ws/<stream>,
// /ws/<anything>, /stream?streams=a/b) and runs the session on the socket's loop.
void StartWsSession(boost::asio::ip::tcp::socket socket,
                    boost::beast::http::request<boost::beast::http::string_body> request,
                    WsContext context);

// True for the targets StartWsSession serves.
bool IsWsTarget(std::string_view target);

}  // namespace klined::api
