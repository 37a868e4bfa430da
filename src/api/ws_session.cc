// WebSocket sessions and the per-loop stream router; see ws_session.h.
#include "api/ws_session.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <deque>
#include <set>

#include "api/rest_request.h"
#include "api/ws_frame.h"
#include "api/ws_protocol.h"
#include "base/log.h"

namespace klined::api {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

namespace {

constexpr size_t kMaxMessageBytes = 4096;
// What one write carries at most (a client far behind gets its backlog in several).
constexpr size_t kBatchBytes = 64 * 1024;
// A write buffer grown past this is given back after its write (10,000 idle sessions hold
// little).
constexpr size_t kKeptWriteBufferBytes = 16 * 1024;
// The kernel's send buffer of a stream connection. Fixed (no autotuning, which lets one
// socket that a client stopped reading hold up to tcp_wmem's 4 MiB): a stalled client shows up
// in the session's own bounded queue, where conflation and the disconnect apply, within
// seconds. 64 KiB still carries ~600 KiB/s to a client 100 ms away.
constexpr int kSendBufferBytes = 64 * 1024;

// The known symbol a stream's symbol names: the exact one, else the only one equal ignoring
// case (stream names are lower case); none when two known symbols differ only in case.
std::optional<std::string> Resolve(const SymbolSnapshot& known, std::string_view s) {
  if (known.Contains(s)) return std::string(s);
  const std::string want = LowerAscii(s);
  std::optional<std::string> found;
  for (const std::string& k : known.sorted) {
    if (k.size() == want.size() && LowerAscii(k) == want) {
      if (found) return std::nullopt;
      found = k;
    }
  }
  return found;
}

}  // namespace

const char* WsCloseName(WsClose c) {
  static constexpr const char* kNames[kWsCloseCount] = {"client", "slow",  "silent",
                                                        "flood",  "error", "shutdown"};
  return kNames[static_cast<size_t>(c)];
}

class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(tcp::socket&& socket, WsContext ctx)
      : socket_(std::move(socket)),
        ctx_(ctx),
        ping_timer_(socket_.get_executor()),
        reader_(kMaxMessageBytes) {}

  ~WsSession() {
    LeaveStreams();
    ctx_.stats->open.Set(ctx_.stats->open.Get() - 1);
    ctx_.stats->closed[static_cast<size_t>(close_reason_)].Add();
    ctx_.connections->fetch_sub(1, std::memory_order_relaxed);
  }

  void Run(http::request<http::string_body> req) {
    ctx_.stats->open.Add();
    beast::error_code ignored;
    socket_.set_option(net::socket_base::send_buffer_size(kSendBufferBytes), ignored);
    // Writes are batched here (Pump); Nagle would hold a batch back behind the previous one's
    // delayed ACK.
    socket_.set_option(tcp::no_delay(true), ignored);
    const std::string target(req.target());
    combined_ = target.rfind("/stream", 0) == 0;
    initial_ = InitialStreams(target);
    // Beast checks the upgrade request and writes the 101 response; its stream object lives
    // only for that (see ws_frame.h: the frames after it are ours).
    handshake_ = std::make_unique<websocket::stream<tcp::socket&>>(socket_);
    handshake_->async_accept(req,
                             beast::bind_front_handler(&WsSession::OnAccept, shared_from_this()));
  }

  // The router, on this loop: an event of a stream this session subscribed.
  void Enqueue(const std::shared_ptr<const SymbolEvents>& owner, const StreamEvent& e) {
    if (closing_ || ending_) return;
    ctx_.stats->events_out.Add();
    const size_t size = TextOf(e).size();
    if (!e.closed) {
      auto it = conflate_.find(e.conflate_id);
      if (it != conflate_.end() && it->second->event->key == e.key &&
          it->second->event->open_time == e.open_time) {
        Item& queued = *it->second;
        queued_bytes_ += size - TextOf(*queued.event).size();
        queued.owner = owner;
        queued.event = &e;
        ctx_.stats->conflated.Add();
        return;
      }
      queue_.push_back(Item{owner, &e, {}});
      // (A hash collision with another queued candle: this one is just not replaceable.)
      conflate_.try_emplace(e.conflate_id, &queue_.back());
    } else {
      queue_.push_back(Item{owner, &e, {}});
    }
    queued_bytes_ += size;
    if (queued_bytes_ > ctx_.options->send_queue_bytes) return Abort(WsClose::kSlow);
    if (!pump_posted_ && !writing_) {
      pump_posted_ = true;
      ctx_.router->WantPump(shared_from_this());
    }
  }

  // The router, after a batch: writes what the batch queued.
  void RunPump() {
    pump_posted_ = false;
    Pump();
  }

 private:
  struct Item {
    std::shared_ptr<const SymbolEvents> owner;  // keeps *event alive
    const StreamEvent* event = nullptr;         // an event, or null for a reply (own)
    std::string own;
  };
  struct Sub {
    std::string symbol;
    std::string name;  // as the client wrote it (LIST_SUBSCRIPTIONS)
  };

  const std::string& TextOf(const StreamEvent& e) const { return combined_ ? e.combined : e.raw; }
  const std::string& TextOf(const Item& item) const {
    return item.event != nullptr ? TextOf(*item.event) : item.own;
  }

  std::vector<std::string> InitialStreams(const std::string& target) {
    std::vector<std::string> out;
    if (combined_) {
      std::string path;
      Params params;
      if (!ParseTarget(target, &path, &params)) return out;
      const std::optional<std::string_view> streams = params.Get("streams");
      if (!streams) return out;
      size_t start = 0;
      while (start <= streams->size()) {
        size_t slash = streams->find('/', start);
        if (slash == std::string_view::npos) slash = streams->size();
        if (slash > start) out.emplace_back(streams->substr(start, slash - start));
        start = slash + 1;
      }
    } else if (target.size() > 4 && target.rfind("/ws/", 0) == 0) {
      // /ws/<stream>; any other /ws/... acts as /ws (ccxt opens /ws/0, then subscribes).
      std::string name = target.substr(4);
      if (ParseKlineStream(name) || ParseTickerStream(name)) out.push_back(std::move(name));
    }
    return out;
  }

  void OnAccept(beast::error_code ec) {
    handshake_.reset();
    if (ec) {
      close_reason_ = WsClose::kError;
      return;
    }
    ctx_.stats->accepted.Add();
    Heard();
    // Initial streams from the URL: the valid ones; the others are ignored (the client can
    // still SUBSCRIBE).
    std::vector<std::string> valid;
    for (const std::string& s : initial_) {
      std::string err;
      if (Check(s, &err)) valid.push_back(s);
    }
    if (!valid.empty()) Subscribe(valid);
    initial_.clear();
    SchedulePing();
    DoRead();
  }

  void Heard() { last_heard_ = std::chrono::steady_clock::now(); }

  void DoRead() {
    socket_.async_read_some(net::buffer(rbuf_),
                            beast::bind_front_handler(&WsSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t n) {
    // The client went away (or our own Abort closed the socket: the reason is already set).
    if (ec) return Abort(WsClose::kClient);
    Heard();
    reader_.Feed(rbuf_.data(), n);
    for (WsInbound in = reader_.Next(); in.kind != WsInbound::kNone; in = reader_.Next()) {
      switch (in.kind) {
        case WsInbound::kText:
        case WsInbound::kBinary:
          if (!OnMessage(in)) return;
          break;
        case WsInbound::kPing:
          AppendFrame(&control_, WsOpcode::kPong, in.payload);
          break;
        case WsInbound::kPong:
        case WsInbound::kNone:
          break;
        case WsInbound::kClose:
          // The client's close: answered with its code, then the connection ends.
          return End(WsClose::kClient, in.close_code == 1005 ? kWsCloseNormal : in.close_code,
                     "");
        case WsInbound::kFail:
          // Past the size limit (1009), not UTF-8 (1007), a protocol violation (1002).
          return End(WsClose::kError, in.close_code, in.payload);
      }
      if (closing_ || ending_) return;
    }
    SchedulePump();  // pongs
    DoRead();
  }

  // A client message; false when it ended the session.
  bool OnMessage(const WsInbound& in) {
    ctx_.stats->messages_in.Add();
    // At most messages_per_second, in one-second windows.
    const auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= std::chrono::seconds(1)) {
      window_start_ = now;
      window_count_ = 0;
    }
    if (++window_count_ > ctx_.options->messages_per_second) {
      LOG_RATE(kWarn, "api.ws_flood",
               "limit_per_s=" << ctx_.options->messages_per_second << " detail=\"closed\"");
      Abort(WsClose::kFlood);
      return false;
    }
    if (in.kind == WsInbound::kBinary) {
      Reply(WsErrorReply(WsError{3, "Invalid JSON: binary frames are not supported", "null"}));
      ctx_.stats->error_replies.Add();
    } else {
      Handle(in.payload);
    }
    return !closing_;
  }

  void Handle(const std::string& text) {
    auto parsed = ParseWsRequest(text);
    if (const WsError* e = std::get_if<WsError>(&parsed)) {
      ctx_.stats->error_replies.Add();
      return Reply(WsErrorReply(*e));
    }
    const WsRequest& req = std::get<WsRequest>(parsed);
    if (req.method == WsMethod::kListSubscriptions) {
      std::string list = "[";
      for (const auto& [key, sub] : subs_) {
        if (list.size() > 1) list.push_back(',');
        list.append("\"").append(sub.name).append("\"");
      }
      list.push_back(']');
      return Reply(WsResult(list, req.id));
    }
    // A request is applied whole or not at all.
    for (const std::string& s : req.params) {
      std::string err;
      if (!Check(s, &err)) {
        ctx_.stats->error_replies.Add();
        return Reply(WsErrorReply(WsError{2, "Invalid request: " + err, req.id}));
      }
    }
    if (req.method == WsMethod::kSubscribe) {
      std::set<std::string> fresh;
      for (const std::string& s : req.params) {
        if (!subs_.contains(KeyOf(s))) fresh.insert(KeyOf(s));
      }
      if (subs_.size() + fresh.size() > ctx_.options->max_streams) {
        ctx_.stats->error_replies.Add();
        return Reply(WsErrorReply(WsError{2,
                                          "Invalid request: at most " +
                                              std::to_string(ctx_.options->max_streams) +
                                              " streams per connection",
                                          req.id}));
      }
      Subscribe(req.params);
    } else {
      for (const std::string& s : req.params) {
        const std::string key = KeyOf(s);
        auto it = subs_.find(key);
        if (it == subs_.end()) continue;
        ctx_.router->Remove(key, it->second.symbol, this);
        subs_.erase(it);
      }
      resolved_.clear();
      resolved_symbol_.clear();
    }
    Reply(WsResult("null", req.id));
  }

  // A valid kline stream of a known symbol and a configured interval; else *why.
  bool Check(const std::string& stream, std::string* why) {
    if (std::optional<std::string> ticker = ParseTickerStream(stream)) {
      std::optional<std::string> symbol = Resolve(*ctx_.symbols->Get(), *ticker);
      if (!symbol) {
        *why = "unknown symbol in '" + stream + "'";
        return false;
      }
      resolved_[stream] = TickerEventKey(*symbol);
      resolved_symbol_[stream] = *symbol;
      return true;
    }
    std::optional<KlineStreamName> name = ParseKlineStream(stream);
    if (!name) {
      *why =
          "unknown stream '" + stream + "' (streams: <symbol>@kline_<interval>, <symbol>@ticker)";
      return false;
    }
    if (std::find(ctx_.options->intervals.begin(), ctx_.options->intervals.end(), name->interval) ==
        ctx_.options->intervals.end()) {
      *why = "interval of '" + stream + "' is not served";
      return false;
    }
    std::optional<std::string> symbol = Resolve(*ctx_.symbols->Get(), name->symbol);
    if (!symbol) {
      *why = "unknown symbol in '" + stream + "'";
      return false;
    }
    resolved_[stream] = EventKey(*symbol, name->interval);
    resolved_symbol_[stream] = *symbol;
    return true;
  }

  // After Check.
  std::string KeyOf(const std::string& stream) const { return resolved_.at(stream); }

  void Subscribe(const std::vector<std::string>& streams) {
    for (const std::string& s : streams) {
      const std::string key = KeyOf(s);
      if (subs_.contains(key)) continue;
      const std::string& symbol = resolved_symbol_.at(s);
      subs_.emplace(key, Sub{symbol, s});
      ctx_.router->Add(key, symbol, this);
    }
    resolved_.clear();
    resolved_symbol_.clear();
  }

  void Reply(std::string text) {
    if (closing_ || ending_) return;
    queued_bytes_ += text.size();
    queue_.push_back(Item{nullptr, nullptr, std::move(text)});
    if (queued_bytes_ > ctx_.options->send_queue_bytes) return Abort(WsClose::kSlow);
    SchedulePump();
  }

  // Writes once the loop has delivered what it has in hand: the events of one flush for
  // this client's streams go out in one send.
  void SchedulePump() {
    if (pump_posted_ || writing_ || closing_) return;
    pump_posted_ = true;
    net::post(socket_.get_executor(), [self = shared_from_this()] {
      self->pump_posted_ = false;
      self->Pump();
    });
  }

  // One write in flight: the control frames due, then the queue's frames in order, up to
  // kBatchBytes (at least one). Frames leave the queue as they are copied into the batch; their
  // bytes count against the bound until the write completes.
  void Pump() {
    if (writing_ || closing_) return;
    wbuf_.clear();
    if (ending_) {
      wbuf_.swap(final_);
    } else {
      wbuf_.swap(control_);
      while (!queue_.empty() && wbuf_.size() < kBatchBytes) {
        Item& front = queue_.front();
        const std::string& text = TextOf(front);
        AppendFrame(&wbuf_, WsOpcode::kText, text);
        in_flight_ += text.size();
        if (front.event != nullptr && !front.event->closed) {
          auto it = conflate_.find(front.event->conflate_id);
          if (it != conflate_.end() && it->second == &front) conflate_.erase(it);
        }
        queue_.pop_front();
      }
    }
    if (wbuf_.empty()) return;
    writing_ = true;
    net::async_write(socket_, net::buffer(wbuf_),
                     beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t) {
    writing_ = false;
    queued_bytes_ -= in_flight_;
    in_flight_ = 0;
    if (wbuf_.capacity() > kKeptWriteBufferBytes) std::string().swap(wbuf_);
    if (ec) return Abort(close_reason_);
    // Our close frame is out: the connection ends.
    if (ending_) return Abort(close_reason_);
    Pump();
  }

  // Every ping_every: a client silent past silent_limit is closed; else a ping is sent (with
  // the next write).
  void SchedulePing() {
    ping_timer_.expires_after(ctx_.options->ping_every);
    ping_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->closing_) return;
      if (self->ending_ ||
          std::chrono::steady_clock::now() - self->last_heard_ > self->ctx_.options->silent_limit) {
        // (A close frame still not out after a ping interval: the client stopped reading.)
        return self->Abort(self->ending_ ? self->close_reason_ : WsClose::kSilent);
      }
      AppendFrame(&self->control_, WsOpcode::kPing, {});
      self->SchedulePump();
      self->SchedulePing();
    });
  }

  // Ends the session with a close frame (code, reason) after the write in flight; no more
  // events or replies.
  void End(WsClose why, uint16_t code, std::string_view reason) {
    if (closing_ || ending_) return;
    ending_ = true;
    close_reason_ = why;
    LeaveStreams();
    control_.clear();
    final_.clear();
    AppendFrame(&final_, WsOpcode::kClose, ClosePayload(code, reason));
    SchedulePump();
  }

  // Ends the session now: the socket is closed (pending operations end with an error and
  // release the session).
  void Abort(WsClose why) {
    if (closing_) return;
    closing_ = true;
    if (!ending_) close_reason_ = why;
    if (why == WsClose::kSlow) {
      LOG_RATE(kWarn, "api.ws_slow_client",
               "queued_bytes=" << queued_bytes_ << " limit=" << ctx_.options->send_queue_bytes
                               << " detail=\"closed\"");
    }
    LeaveStreams();
    ping_timer_.cancel();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  void LeaveStreams() {
    for (const auto& [key, sub] : subs_) ctx_.router->Remove(key, sub.symbol, this);
    subs_.clear();
  }

  tcp::socket socket_;
  WsContext ctx_;
  net::steady_timer ping_timer_;
  std::unique_ptr<websocket::stream<tcp::socket&>> handshake_;
  FrameReader reader_;
  std::array<char, 1024> rbuf_;
  bool combined_ = false;
  std::vector<std::string> initial_;
  std::unordered_map<std::string, Sub> subs_;                                // by routing key
  std::unordered_map<std::string, std::string> resolved_, resolved_symbol_;  // Check -> Subscribe
  std::deque<Item> queue_;  // (references stay valid as it grows at the back and shrinks at
                            // the front: conflate_ points into it)
  absl::flat_hash_map<uint64_t, Item*> conflate_;  // queued updates by StreamEvent::conflate_id
  std::string control_;  // framed pongs and pings, ahead of the queue
  std::string final_;    // our close frame, once End
  std::string wbuf_;     // the write in flight
  size_t queued_bytes_ = 0;
  size_t in_flight_ = 0;  // of queued_bytes_, in the write in flight
  bool writing_ = false;
  bool pump_posted_ = false;
  bool ending_ = false;   // End: only the close frame goes out
  bool closing_ = false;  // Abort: the socket is closed
  WsClose close_reason_ = WsClose::kClient;
  std::chrono::steady_clock::time_point last_heard_{};
  std::chrono::steady_clock::time_point window_start_{};
  int window_count_ = 0;

  friend class StreamRouter;
};

namespace {
// The kind of a routing key "SYMBOL|1m": "1m" (or "ticker").
std::string KindOf(const std::string& key) { return key.substr(key.rfind('|') + 1); }
}  // namespace

void StreamRouter::Add(const std::string& key, const std::string& symbol, WsSession* s) {
  std::vector<WsSession*>& v = by_key_[key];
  v.push_back(s);
  if (v.size() == 1) hub_->Want(loop_, symbol, KindOf(key));
}

void StreamRouter::Remove(const std::string& key, const std::string& symbol, WsSession* s) {
  if (delivering_) {
    deferred_.push_back(Removal{key, symbol, s});
    return;
  }
  RemoveNow(key, symbol, s);
}

void StreamRouter::RemoveNow(const std::string& key, const std::string& symbol, WsSession* s) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  auto& v = it->second;
  auto pos = std::find(v.begin(), v.end(), s);
  if (pos == v.end()) return;
  v.erase(pos);
  if (v.empty()) {
    by_key_.erase(it);
    hub_->Unwant(loop_, symbol, KindOf(key));
  }
}

void StreamRouter::Deliver(const std::vector<std::shared_ptr<const SymbolEvents>>& batch) {
  // No session is destroyed in here: one that an event ends (Abort) only closes its socket,
  // and its handlers, which hold it, run after this one.
  delivering_ = true;
  for (const std::shared_ptr<const SymbolEvents>& events : batch) {
    for (const StreamEvent& e : events->events) {
      auto it = by_key_.find(e.key);
      if (it == by_key_.end()) continue;
      for (WsSession* s : it->second) s->Enqueue(events, e);
    }
  }
  delivering_ = false;
  for (const Removal& r : deferred_) RemoveNow(r.key, r.symbol, r.session);
  deferred_.clear();
  std::vector<std::shared_ptr<WsSession>> pumps;
  pumps.swap(pumps_);
  for (const std::shared_ptr<WsSession>& s : pumps) s->RunPump();
}

bool IsWsTarget(std::string_view target) {
  return target == "/ws" || target.rfind("/ws/", 0) == 0 || target.rfind("/ws?", 0) == 0 ||
         target == "/stream" || target.rfind("/stream?", 0) == 0;
}

void StartWsSession(tcp::socket socket, http::request<http::string_body> request,
                    WsContext context) {
  std::make_shared<WsSession>(std::move(socket), context)->Run(std::move(request));
}

}  // namespace klined::api
