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
// The subscriber speaks hiredis in push mode, one socket per Redis node that serves a wanted
// symbol (one for a single Redis; in a cluster, the primary of each symbol's slot, by the
// API's topology), one SSUBSCRIBE per slot, which a cluster node requires; Want and Unwant
// wake it (an eventfd beside the sockets in its poll), so a subscription goes out at once.
// What goes out is the net change of the queued (un)subscriptions: SUBSCRIBE, UNSUBSCRIBE,
// SUBSCRIBE of one symbol in a row leaves it subscribed. When a slot moves (a reshard, a failover)
// its node ends the subscriptions of its channels (an `sunsubscribe` the hub did not ask for) or
// refuses one (MOVED): the hub treats that as a lost connection (below) on a refreshed topology, so
// every symbol is subscribed again where it lives now. Wants are per kind (an interval's name, or
// "ticker"): FLUSH publishes only the kinds some instance follows (B:watch, lua_scripts.h), so the
// hub writes what this instance follows of each symbol with WATCH on a command connection of its
// own, again every ttl/3 (a part not refreshed for api.watch_ttl_ms, an instance that died, drops
// out); the watches are routed by the symbol's slot (cluster::Router), their two keys declared. A
// sink hears Subscribed(symbol, kind) once Redis confirmed the subscription *and* acknowledged a
// watch naming the kind: from then on every change of it is sure to arrive (the L1 cache reads an
// entry only after that). Connection loss: every sink hears Lost, the hub reconnects
// with backoff and subscribes again to everything wanted; messages published meanwhile are
// not seen (the next flush or rollover of each symbol brings its candles again; the cache
// drops what it held), counted as reconnects.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/counter.h"
#include "io/redis/cluster/router.h"
#include "io/redis/key_layout.h"
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
  // Every change of `kind` ("1m", "ticker") of `symbol`, which this sink wants, published
  // from now on arrives: Redis confirmed the subscription and acknowledged the watch.
  virtual void Subscribed(const std::string& symbol, const std::string& kind) {
    (void)symbol;
    (void)kind;
  }
  // The subscriber's connection ended (or a watch could not be written): messages published
  // since may never arrive. Every symbol is subscribed again (Subscribed once more) when it
  // is back.
  virtual void Lost() {}
};

struct HubStats {
  OwnedCounter messages;                // published messages received
  OwnedCounter events;                  // stream events built from them
  OwnedCounter bad_messages;            // messages or candle lines that did not parse (skipped)
  OwnedCounter reconnects;              // subscriber connections re-established
  OwnedCounter moved;                   // subscriptions a node ended or refused (slot moved)
  OwnedCounter watch_writes;            // WATCH calls that succeeded (changes and refreshes)
  std::atomic<uint64_t> subscribed{0};  // symbols subscribed now
};

class EventHub {
 public:
  // `topology` (one Redis, or the cluster's primaries) outlives the hub.
  EventHub(cluster::Topology* topology, KeyLayout keys, int64_t watch_ttl_ms = 30000);
  ~EventHub();
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // Before Start: the loops, by index.
  void AddSink(EventSink* sink) { sinks_.push_back(sink); }
  void Start();
  void Stop();  // idempotent; no Deliver call after it returns

  // Any thread: `sink` wants the events of `kind` ("1m", "ticker") of `symbol` (counted per
  // sink and kind; Unwant undoes one).
  void Want(size_t sink, const std::string& symbol, const std::string& kind);
  void Unwant(size_t sink, const std::string& symbol, const std::string& kind);

  const HubStats& stats() const { return stats_; }

 private:
  struct Change {
    size_t sink;
    std::string symbol;
    std::string kind;
    bool want;
  };
  // One subscriber connection: to the node at `address`.
  struct Sub {
    std::string address;
    void* ctx = nullptr;  // redisContext*
  };
  void Run();
  // Reads what one subscriber connection has; false when it failed.
  bool ReadSub(Sub* sub);
  // The subscriber connection to `address` (connected on first use), or null.
  Sub* SubAt(const std::string& address);
  void Disconnect();
  // Applies the queued changes; fills the symbols to (un)subscribe on Redis (the net change).
  void ApplyChanges(std::vector<std::string>* subscribe, std::vector<std::string>* unsubscribe);
  // SSUBSCRIBE each symbol's channel on its node; false when a node cannot be reached.
  bool Subscribe(const std::vector<std::string>& symbols);
  // SUNSUBSCRIBE each on the node it was subscribed on.
  bool Unsubscribe(const std::vector<std::string>& symbols);
  // Sends `verb` with every channel of each group (one command per group) and flushes.
  bool Send(Sub* sub, const char* verb, const std::vector<std::vector<std::string>>& groups);
  void OnMessage(std::string_view channel, std::string_view payload);
  void OnSubscribed(std::string_view channel);
  void OnUnsubscribed(std::string_view channel);
  // A node ended or refused a subscription: the slot moved, so every subscription is made
  // again on a refreshed topology (after this round's replies are read).
  void OnMoved(std::string_view why);
  // Reads the wake eventfd empty (after a poll saw it readable).
  void DrainWake();
  // Writes the watch of every symbol whose kinds changed (all of them when `refresh`), and
  // "" for those no longer wanted; false when Redis did not take them all.
  bool SyncWatches(bool refresh);
  // Subscribed to every sink waiting for a kind of `symbol` that is now sure to arrive.
  void NotifyReady(const std::string& symbol);
  // Disconnect, and tell every sink (Lost); nothing is confirmed any more. The subscriptions
  // are made again after `delay_ms`.
  void Drop(int64_t delay_ms = 0);
  void Wake();

  cluster::Topology* topology_;
  KeyLayout keys_;
  std::vector<EventSink*> sinks_;
  HubStats stats_;

  std::mutex mu_;  // guards changes_ and stopping_ only (never held across I/O)
  std::vector<Change> changes_;
  bool stopping_ = false;

  // The hub thread's: per symbol, how many streams of each kind each sink wants, whether
  // Redis has confirmed its subscription on this connection, the watch Redis acknowledged
  // (",1m,ticker,"), and the (sink, kind) pairs not yet told Subscribed.
  struct Wanted {
    std::map<std::string, std::vector<uint32_t>> kinds;
    bool confirmed = false;
    std::string acked;
    std::set<std::pair<size_t, std::string>> waiting;
    std::string Watch() const;  // what the kinds make: ",1m,ticker,"
    bool WantedBy(size_t sink) const;
  };
  std::unordered_map<std::string, Wanted> wanted_;
  std::set<std::string> watch_dirty_;  // symbols whose watch must be written
  std::set<std::string> unwatched_;    // symbols no longer wanted: their part goes
  std::unique_ptr<cluster::Router> router_;  // WATCH calls, the subscribers' map
  size_t watch_script_ = 0;
  std::string instance_;  // this instance's part of B:watchers
  int64_t watch_ttl_ms_;
  int64_t next_refresh_ms_ = 0;
  // SUNSUBSCRIBEs sent whose reply has not come back, per symbol: a subscription confirmed
  // before them may be undone by them, so it confirms nothing.
  std::unordered_map<std::string, uint32_t> unsubscribing_;
  int wake_fd_ = -1;  // eventfd: Want/Unwant/Stop end the hub's poll
  // The subscriber connections (none while disconnected), and where each subscribed symbol's
  // SSUBSCRIBE went (index into subs_).
  std::vector<Sub> subs_;
  std::unordered_map<std::string, size_t> sub_of_;
  bool connected_ = false;  // subscribed everything wanted since the last Drop
  bool moved_ = false;      // OnMoved this round: Drop once the replies are read
  int64_t reconnect_at_ms_ = 0;
  std::thread thread_;
  bool started_ = false;
};

}  // namespace klined::api
