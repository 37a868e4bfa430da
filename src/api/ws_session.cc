// WebSocket sessions and the per-loop stream router; see ws_session.h.
#include "api/ws_session.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <list>
#include <set>

#include "api/rest_request.h"
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
      : ws_(std::move(socket)), ctx_(ctx), ping_timer_(ws_.get_executor()) {}

  ~WsSession() {
    for (const auto& [key, sub] : subs_) ctx_.router->Remove(key, sub.symbol, this);
    ctx_.stats->open.Set(ctx_.stats->open.Get() - 1);
    ctx_.stats->closed[static_cast<size_t>(close_reason_)].Add();
    ctx_.connections->fetch_sub(1, std::memory_order_relaxed);
  }

  void Run(http::request<http::string_body> req) {
    ctx_.stats->open.Add();
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().set_option(
        net::socket_base::send_buffer_size(kSendBufferBytes), ignored);
    const std::string target(req.target());
    combined_ = target.rfind("/stream", 0) == 0;
    initial_ = InitialStreams(target);
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout t =
        websocket::stream_base::timeout::suggested(beast::role_type::server);
    t.idle_timeout = websocket::stream_base::none();  // our own ping timer (see Ping)
    t.keep_alive_pings = false;
    ws_.set_option(t);
    ws_.read_message_max(kMaxMessageBytes);
    ws_.control_callback([this](websocket::frame_type, beast::string_view) { Heard(); });
    ws_.async_accept(req, beast::bind_front_handler(&WsSession::OnAccept, shared_from_this()));
  }

  // The router, on this loop: an event of a stream this session subscribed.
  void Enqueue(const std::shared_ptr<const SymbolEvents>& owner, const StreamEvent& e) {
    if (closing_) return;
    ctx_.stats->events_out.Add();
    const std::string& text = combined_ ? e.combined : e.raw;
    if (!e.closed) {
      const std::string ckey = e.key + "|" + std::to_string(e.open_time);
      auto it = conflate_.find(ckey);
      if (it != conflate_.end()) {
        queued_bytes_ += text.size() - it->second->text->size();
        it->second->owner = owner;
        it->second->text = &text;
        ctx_.stats->conflated.Add();
        return;
      }
      queue_.push_back(Item{owner, &text, {}, ckey});
      conflate_[ckey] = std::prev(queue_.end());
    } else {
      queue_.push_back(Item{owner, &text, {}, {}});
    }
    queued_bytes_ += text.size();
    if (queued_bytes_ > ctx_.options->send_queue_bytes) return Abort(WsClose::kSlow);
    Pump();
  }

 private:
  struct Item {
    std::shared_ptr<const SymbolEvents> owner;  // keeps *text alive (an event)
    const std::string* text = nullptr;          // the frame: an event, or own
    std::string own;                            // a reply
    std::string conflate_key;                   // non-empty: replaceable while queued
  };
  struct Sub {
    std::string symbol;
    std::string name;  // as the client wrote it (LIST_SUBSCRIPTIONS)
  };

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
    ws_.async_read(rbuf_, beast::bind_front_handler(&WsSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec) {
      // The client closed or went away, or sent a frame past the limit (Beast then closes
      // with 1009); after our own Abort the reason is already set.
      return Abort(ec == websocket::error::message_too_big ? WsClose::kError : WsClose::kClient);
    }
    Heard();
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
      return Abort(WsClose::kFlood);
    }
    std::string text = beast::buffers_to_string(rbuf_.data());
    rbuf_.consume(rbuf_.size());
    if (!ws_.got_text()) {
      Reply(WsErrorReply(WsError{3, "Invalid JSON: binary frames are not supported", "null"}));
      ctx_.stats->error_replies.Add();
    } else {
      Handle(text);
    }
    DoRead();
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
    if (closing_) return;
    queued_bytes_ += text.size();
    queue_.push_back(Item{nullptr, nullptr, std::move(text), {}});
    if (queued_bytes_ > ctx_.options->send_queue_bytes) return Abort(WsClose::kSlow);
    Pump();
  }

  void Pump() {
    if (writing_ || queue_.empty() || closing_) return;
    Item& front = queue_.front();
    if (!front.conflate_key.empty()) {
      conflate_.erase(front.conflate_key);
      front.conflate_key.clear();
    }
    const std::string& text = front.text != nullptr ? *front.text : front.own;
    writing_ = true;
    ws_.text(true);
    ws_.async_write(net::buffer(text),
                    beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t) {
    writing_ = false;
    if (ec) return Abort(close_reason_);
    const Item& done = queue_.front();
    queued_bytes_ -= (done.text != nullptr ? done.text->size() : done.own.size());
    queue_.pop_front();
    if (ping_due_) {
      ping_due_ = false;
      writing_ = true;
      ws_.async_ping({}, [self = shared_from_this()](beast::error_code e) {
        self->writing_ = false;
        if (e) return self->Abort(self->close_reason_);
        self->Pump();
      });
      return;
    }
    Pump();
  }

  // Every ping_every: a client silent past silent_limit is closed; else a ping is sent (after
  // the write in flight, if any: one write operation at a time).
  void SchedulePing() {
    ping_timer_.expires_after(ctx_.options->ping_every);
    ping_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->closing_) return;
      if (std::chrono::steady_clock::now() - self->last_heard_ > self->ctx_.options->silent_limit) {
        return self->Abort(WsClose::kSilent);
      }
      if (self->writing_) {
        self->ping_due_ = true;
      } else {
        self->writing_ = true;
        self->ws_.async_ping({}, [self](beast::error_code e) {
          self->writing_ = false;
          if (e) return self->Abort(self->close_reason_);
          self->Pump();
        });
      }
      self->SchedulePing();
    });
  }

  // Ends the session now: the socket is closed (pending operations end with an error and
  // release the session).
  void Abort(WsClose why) {
    if (closing_) return;
    closing_ = true;
    close_reason_ = why;
    if (why == WsClose::kSlow) {
      LOG_RATE(kWarn, "api.ws_slow_client",
               "queued_bytes=" << queued_bytes_ << " limit=" << ctx_.options->send_queue_bytes
                               << " detail=\"closed\"");
    }
    for (const auto& [key, sub] : subs_) ctx_.router->Remove(key, sub.symbol, this);
    subs_.clear();
    ping_timer_.cancel();
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

  websocket::stream<beast::tcp_stream> ws_;
  WsContext ctx_;
  net::steady_timer ping_timer_;
  beast::flat_buffer rbuf_;
  bool combined_ = false;
  std::vector<std::string> initial_;
  std::unordered_map<std::string, Sub> subs_;                                // by routing key
  std::unordered_map<std::string, std::string> resolved_, resolved_symbol_;  // Check -> Subscribe
  std::list<Item> queue_;
  std::unordered_map<std::string, std::list<Item>::iterator> conflate_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool ping_due_ = false;
  bool closing_ = false;
  WsClose close_reason_ = WsClose::kClient;
  std::chrono::steady_clock::time_point last_heard_{};
  std::chrono::steady_clock::time_point window_start_{};
  int window_count_ = 0;

  friend class StreamRouter;
};

void StreamRouter::Add(const std::string& key, const std::string& symbol, WsSession* s) {
  by_key_[key].push_back(s);
  if (per_symbol_[symbol]++ == 0) hub_->Want(loop_, symbol);
}

void StreamRouter::Remove(const std::string& key, const std::string& symbol, WsSession* s) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  auto& v = it->second;
  auto pos = std::find(v.begin(), v.end(), s);
  if (pos == v.end()) return;
  v.erase(pos);
  if (v.empty()) by_key_.erase(it);
  auto ps = per_symbol_.find(symbol);
  if (ps != per_symbol_.end() && --ps->second == 0) {
    per_symbol_.erase(ps);
    hub_->Unwant(loop_, symbol);
  }
}

void StreamRouter::Deliver(const std::shared_ptr<const SymbolEvents>& events) {
  for (const StreamEvent& e : events->events) {
    auto it = by_key_.find(e.key);
    if (it == by_key_.end()) continue;
    // A copy: a session's Enqueue may end it (Abort), which removes it from by_key_ at once.
    // Only that session: the others in the copy stay alive and subscribed, and an ended one
    // is destroyed later, from its own handlers (Enqueue returns at once while it closes).
    // No per-session lookup here: with 10,000 clients on one hot stream that lookup made each
    // event quadratic in the stream's clients.
    const std::vector<WsSession*> sessions = it->second;
    for (WsSession* s : sessions) s->Enqueue(events, e);
  }
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
