// Live candle updates for the WebSocket streams: one Redis pub/sub subscriber per API
// instance (thread api-sub), fanning out to the API loops.
//
// DESIGN
// Writers publish (SPUBLISH, a shard channel: routed by the symbol's slot in a cluster) every
// candle a FLUSH or ROLLOVER call writes on PREFIX:{SYMBOL}:events, one candle JSON per line.
// The hub subscribes (SSUBSCRIBE) only to the symbols some client of this instance wants: a
// loop calls Want(loop, symbol) when its first stream of a symbol is subscribed and Unwant
// when its last goes. Each message is parsed once and turned into Binance events, each
// serialized once (plain and /stream-wrapped) into one immutable SymbolEvents that every
// interested loop receives through its EventSink (the sink only posts to its loop).
//
// The subscriber speaks hiredis in push mode over its own socket; Want and Unwant wake it
// (an eventfd beside the socket in its poll), so a subscription goes out at once. What goes
// out is the net change of the queued (un)subscriptions: SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE of
// one symbol in a row leaves it subscribed. Redis's confirmation of each subscription is
// passed on (EventSink::Subscribed): the L1 cache reads a symbol only once every later
// change of it is sure to arrive. Connection loss: every sink hears Lost, the hub reconnects
// with backoff and subscribes again to everything wanted; messages published meanwhile are
// not seen (the next flush or rollover of each symbol brings its candles again; the cache
// drops what it held), counted as reconnects.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/counter.h"
#include "io/redis/key_layout.h"
#include "io/redis/redis_conn.h"
#include "klined/candle.h"
#include "klined/interval.h"

namespace klined::api {

// The routing key of one symbol's events of one kind, the exact symbol: "SYMBOL|1m" for an
// interval's candles, "SYMBOL|ticker" for its 24h ticker. StreamEvent::key, the WebSocket
// router's keys and the L1 cache's entries.
inline std::string EventKey(std::string_view symbol, Interval iv) {
  std::string k(symbol);
  k.push_back('|');
  k.append(IntervalName(iv));
  return k;
}
inline std::string TickerEventKey(std::string_view symbol) {
  return std::string(symbol) + "|ticker";
}

// One stream's event from one published message.
struct StreamEvent {
  std::string key;     // routing key: EventKey or TickerEventKey
  std::string stream;  // Binance's stream name, e.g. btcusdt@kline_1m
  int64_t open_time = 0;
  // A hash of (key, open_time): a session's queued update of the same candle is replaced by
  // this one (conflation; the session checks key and open_time on a match).
  uint64_t conflate_id = 0;
  bool closed = false;   // x:true (a close, or a late trade's update of a closed candle)
  std::string raw;       // the event JSON (/ws)
  std::string combined;  // {"stream":..,"data":..} (/stream)
};

struct SymbolEvents {
  std::string symbol;
  std::vector<StreamEvent> events;
  std::vector<Candle> candles;  // every candle of the message, in its order (the L1 cache's)
};

// A door for events: an API loop's, or the L1 cache's. Every call runs on the hub's thread
// and must be quick (a loop's posts the events over to the loop).
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Deliver(std::shared_ptr<const SymbolEvents> events) = 0;
  // Redis confirmed the subscription of `symbol`, which this sink wants: every message
  // published from now on arrives (for a symbol already subscribed, right after Want).
  virtual void Subscribed(const std::string& symbol) { (void)symbol; }
  // The subscriber's connection ended: messages published since may never arrive. Every
  // symbol is subscribed again (Subscribed once more) when it is back.
  virtual void Lost() {}
};

struct HubStats {
  OwnedCounter messages;                // published messages received
  OwnedCounter events;                  // stream events built from them
  OwnedCounter bad_messages;            // messages or candle lines that did not parse (skipped)
  OwnedCounter reconnects;              // subscriber connections re-established
  std::atomic<uint64_t> subscribed{0};  // symbols subscribed now
};

class EventHub {
 public:
  EventHub(RedisOptions redis, KeyLayout keys);
  ~EventHub();
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // Before Start: the loops, by index.
  void AddSink(EventSink* sink) { sinks_.push_back(sink); }
  void Start();
  void Stop();  // idempotent; no Deliver call after it returns

  // Any thread: loop `sink` wants the events of `symbol` (counted per loop; Unwant undoes one).
  void Want(size_t sink, const std::string& symbol);
  void Unwant(size_t sink, const std::string& symbol);

  const HubStats& stats() const { return stats_; }

 private:
  struct Change {
    size_t sink;
    std::string symbol;
    bool want;
  };
  void Run();
  bool Connect();
  void Disconnect();
  // Applies the queued changes; fills the symbols to (un)subscribe on Redis (the net change).
  void ApplyChanges(std::vector<std::string>* subscribe, std::vector<std::string>* unsubscribe);
  bool SendCommand(const char* verb, const std::vector<std::string>& symbols);
  void OnMessage(std::string_view channel, std::string_view payload);
  void OnSubscribed(std::string_view channel);
  void OnUnsubscribed(std::string_view channel);
  // Disconnect, and tell every sink (Lost); nothing is confirmed any more.
  void Drop();
  void Wake();

  RedisOptions redis_;
  KeyLayout keys_;
  std::vector<EventSink*> sinks_;
  HubStats stats_;

  std::mutex mu_;  // guards changes_ and stopping_ only (never held across I/O)
  std::vector<Change> changes_;
  bool stopping_ = false;

  // The hub thread's: per symbol, how many streams each sink wants, and whether Redis has
  // confirmed its subscription on this connection.
  struct Wanted {
    std::vector<uint32_t> counts;
    bool confirmed = false;
  };
  std::unordered_map<std::string, Wanted> wanted_;
  // SUNSUBSCRIBEs sent whose reply has not come back, per symbol: a subscription confirmed
  // before them may be undone by them, so it confirms nothing.
  std::unordered_map<std::string, uint32_t> unsubscribing_;
  int wake_fd_ = -1;     // eventfd: Want/Unwant/Stop end the hub's poll
  void* ctx_ = nullptr;  // redisContext*
  std::thread thread_;
  bool started_ = false;
};

}  // namespace klined::api
