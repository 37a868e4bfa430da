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
// The subscriber speaks hiredis in push mode over its own socket, polled every 50 ms so that
// (un)subscriptions queued by the loops go out within that time. Connection loss: reconnect
// with backoff and subscribe again to everything wanted; messages published meanwhile are
// not seen (the next flush or rollover of each symbol brings its candles again), counted as
// reconnects.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/counter.h"
#include "io/redis/key_layout.h"
#include "io/redis/redis_conn.h"
#include "klined/interval.h"

namespace klined::api {

// One stream's event from one published message.
struct StreamEvent {
  std::string key;     // routing key: SYMBOL|INTERVAL (the exact symbol)
  std::string stream;  // Binance's stream name, e.g. btcusdt@kline_1m
  int64_t open_time = 0;
  bool closed = false;   // x:true (a close, or a late trade's update of a closed candle)
  std::string raw;       // the event JSON (/ws)
  std::string combined;  // {"stream":..,"data":..} (/stream)
};

struct SymbolEvents {
  std::string symbol;
  std::vector<StreamEvent> events;
};

// A loop's door for events. Deliver runs on the hub's thread and must only hand the events
// over (post them to the loop).
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Deliver(std::shared_ptr<const SymbolEvents> events) = 0;
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
  // Applies the queued changes; fills the symbols to (un)subscribe on Redis.
  void ApplyChanges(std::vector<std::string>* subscribe, std::vector<std::string>* unsubscribe);
  bool SendCommand(const char* verb, const std::vector<std::string>& symbols);
  void OnMessage(std::string_view channel, std::string_view payload);

  RedisOptions redis_;
  KeyLayout keys_;
  std::vector<EventSink*> sinks_;
  HubStats stats_;

  std::mutex mu_;  // guards changes_ and stopping_ only (never held across I/O)
  std::vector<Change> changes_;
  bool stopping_ = false;

  // The hub thread's: per symbol, how many streams each loop wants.
  std::unordered_map<std::string, std::vector<uint32_t>> wanted_;
  void* ctx_ = nullptr;  // redisContext*
  std::thread thread_;
  bool started_ = false;
};

}  // namespace klined::api
