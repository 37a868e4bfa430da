// The API server's transport: acceptor, loops, HTTP sessions; see api_server.h.
#include "api/api_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>

#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/thread_name.h"

namespace klined::api {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

namespace {

constexpr uint32_t kHeaderLimit = 8 * 1024;
constexpr uint64_t kBodyLimit = 4 * 1024;
constexpr int kAcceptRetryMs = 100;  // after an accept error such as EMFILE

bool SplitListen(const std::string& listen, std::string* host, uint16_t* port) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  *host = listen.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  const int p = std::atoi(listen.c_str() + colon + 1);
  if (p < 0 || p > 65535) return false;
  *port = static_cast<uint16_t>(p);
  return true;
}

}  // namespace

struct ApiServer::Loop : EventSink {
  Loop(size_t index, const ApiServerOptions& o, cluster::Topology* topology,
       const SymbolDirectory* symbols, EventHub* hub, CandleCache* cache,
       const WsOptions* ws_options, std::atomic<int64_t>* connections)
      : index(index),
        router(hub, index),
        ws{&router, symbols, ws_options, &ws_stats, connections},
        reader(topology, o.mysql, o.keys, o.handler.time_zone),
        handler(o.handler, symbols, &reader, cache),
        idle_timeout(std::chrono::milliseconds(o.idle_timeout_ms)) {}

  // The hub's thread: hand the events to this loop. What arrives while the loop has not run
  // yet joins one batch (one handler, and one send per client for all of it).
  void Deliver(std::shared_ptr<const SymbolEvents> events) override {
    {
      std::lock_guard<std::mutex> lock(pending_mu);
      pending.push_back(std::move(events));
      if (delivery_posted) return;
      delivery_posted = true;
    }
    net::post(ioc, [this] {
      std::vector<std::shared_ptr<const SymbolEvents>> batch;
      {
        std::lock_guard<std::mutex> lock(pending_mu);
        batch.swap(pending);
        delivery_posted = false;
      }
      router.Deliver(batch);
    });
  }

  const size_t index;
  std::mutex pending_mu;  // guards pending and delivery_posted (hub thread and this loop)
  std::vector<std::shared_ptr<const SymbolEvents>> pending;
  bool delivery_posted = false;
  // Before ioc: the sessions destroyed with the io_context leave the router and count in
  // ws_stats.
  WsStats ws_stats;
  StreamRouter router;
  WsContext ws;
  net::io_context ioc{1};
  MarketReader reader;
  RestHandler handler;
  const std::chrono::milliseconds idle_timeout;
  std::thread thread;
  // Owned by this loop's thread; read by the scrape.
  OwnedCounter http_errors;
  OwnedCounter timeouts;
};

class ApiServer::Impl {
 public:
  Impl(const ApiServerOptions& o, cluster::Topology* topology) : options(o), topology(topology) {}

  const ApiServerOptions& options;
  cluster::Topology* topology;
  SymbolDirectory symbols;
  WsOptions ws_options;
  // Before the loops: a session leaving at shutdown tells the hub (Unwant).
  std::unique_ptr<EventHub> hub;
  // The hub's last sink; after the hub (stopped before either goes), before the loops.
  std::unique_ptr<HubSubscriptions> cache_subscriptions;
  std::unique_ptr<CandleCache> cache;
  std::atomic<int64_t> open{0};  // before loops: sessions destroyed with a loop decrement it
  // Declared after what the sessions use, before what runs on the loops (acceptor, timer):
  // those go first, the loops (io_context, pending sessions) after them.
  std::vector<std::unique_ptr<Loop>> loops;
  std::optional<tcp::acceptor> acceptor;
  std::optional<net::steady_timer> accept_retry;
  OwnedCounter accepted;  // api-0
  OwnedCounter rejected;  // api-0
  std::atomic<uint64_t> symbols_known{0};
  OwnedCounter refresh_failures;  // api-sym
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards;

  std::thread refresher;
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopping = false;

  void Accept();
  void Refresh();
};

namespace {

// One HTTP connection, owned by one loop. Reads one request, writes its reply, repeats while
// the client keeps the connection alive.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, ApiServer::Loop* loop, std::atomic<int64_t>* open,
              std::string client)
      : stream_(std::move(socket)), loop_(loop), open_(open), client_(std::move(client)) {}
  ~HttpSession() {
    if (!upgraded_) open_->fetch_sub(1, std::memory_order_relaxed);
  }

  void Start() { DoRead(); }

 private:
  void DoRead() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    // The whole request (slowloris included) must arrive within the idle timeout.
    stream_.expires_after(loop_->idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec == http::error::end_of_stream || ec == net::error::connection_reset ||
        ec == net::error::eof) {
      return Close();
    }
    if (ec == beast::error::timeout) {
      loop_->timeouts.Add();
      return;  // the stream closed the socket
    }
    if (ec) {
      loop_->http_errors.Add();
      if (ec == http::error::header_limit)
        return ReplyAndClose(431, "Request Header Fields Too Large");
      if (ec == http::error::body_limit) return ReplyAndClose(413, "Payload Too Large");
      if (ec == net::error::operation_aborted) return;
      return ReplyAndClose(400, "Bad Request");
    }
    const auto& req = parser_->get();
    const std::string_view target(req.target().data(), req.target().size());
    if (websocket::is_upgrade(req) && IsWsTarget(target)) {
      // The connection becomes a WebSocket session on this loop (which now counts it).
      upgraded_ = true;
      return StartWsSession(stream_.release_socket(), parser_->release(), loop_->ws);
    }
    HttpReply reply;
    loop_->handler.Handle(std::string_view(req.method_string().data(), req.method_string().size()),
                          target, client_, WallMs(), &reply);
    res_ = {};
    res_.version(req.version());
    res_.keep_alive(req.keep_alive());
    res_.result(static_cast<http::status>(reply.status));
    res_.set(http::field::server, "klined");
    res_.set(http::field::content_type,
             beast::string_view(reply.content_type.data(), reply.content_type.size()));
    if (reply.used_weight >= 0) res_.set("X-MBX-USED-WEIGHT-1M", std::to_string(reply.used_weight));
    if (reply.retry_after_s >= 0)
      res_.set(http::field::retry_after, std::to_string(reply.retry_after_s));
    if (req.method() == http::verb::head) {
      // GET's headers, its Content-Length too, and no body.
      res_.content_length(reply.body.size());
    } else {
      res_.body() = std::move(reply.body);
      res_.prepare_payload();
    }
    DoWrite();
  }

  void DoWrite() {
    stream_.expires_after(loop_->idle_timeout);
    http::async_write(stream_, res_,
                      beast::bind_front_handler(&HttpSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t) {
    if (ec) {
      if (ec == beast::error::timeout) loop_->timeouts.Add();
      return;
    }
    if (!res_.keep_alive()) return Close();
    DoRead();
  }

  // HTTP-level errors: a plain reply, then the connection is closed (the parser's state after
  // a framing error cannot be trusted).
  void ReplyAndClose(int status, std::string_view reason) {
    res_ = {};
    res_.version(11);
    res_.keep_alive(false);
    res_.result(static_cast<http::status>(status));
    res_.set(http::field::server, "klined");
    res_.set(http::field::content_type, "text/plain");
    res_.body() = std::string(reason) + "\n";
    res_.prepare_payload();
    DoWrite();
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  ApiServer::Loop* loop_;
  std::atomic<int64_t>* open_;
  std::string client_;
  bool upgraded_ = false;
  beast::flat_buffer buffer_{kHeaderLimit};
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
};

}  // namespace

void ApiServer::Impl::Accept() {
  acceptor->async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted) return;
    if (ec) {
      LOG_RATE(kWarn, "api.accept_failed", "error=\"" << ec.message() << "\"");
      accept_retry->expires_after(std::chrono::milliseconds(kAcceptRetryMs));
      accept_retry->async_wait([this](beast::error_code e) {
        if (!e) Accept();
      });
      return;
    }
    accepted.Add();
    if (open.load(std::memory_order_relaxed) >= options.max_connections) {
      rejected.Add();
      LOG_RATE(kWarn, "api.connection_rejected",
               "max_connections=" << options.max_connections << " detail=\"closed at once\"");
      beast::error_code ignored;
      socket.close(ignored);
      return Accept();
    }
    beast::error_code addr_ec;
    const tcp::endpoint peer = socket.remote_endpoint(addr_ec);
    std::string client = addr_ec ? std::string("?") : peer.address().to_string();
    const size_t k = std::hash<std::string>{}(client) % loops.size();
    const auto protocol = peer.protocol();
    const int fd = socket.release(addr_ec);
    if (addr_ec) return Accept();
    open.fetch_add(1, std::memory_order_relaxed);
    Loop* loop = loops[k].get();
    net::post(loop->ioc, [this, loop, fd, protocol, client = std::move(client)]() mutable {
      tcp::socket s(loop->ioc);
      beast::error_code e;
      s.assign(protocol, fd, e);
      if (e) {
        ::close(fd);
        open.fetch_sub(1, std::memory_order_relaxed);
        return;
      }
      s.set_option(tcp::no_delay(true), e);
      std::make_shared<HttpSession>(std::move(s), loop, &open, std::move(client))->Start();
    });
    Accept();
  });
}

void ApiServer::Impl::Refresh() {
  NameThisThread("api-sym");
  MarketReader reader(topology, options.mysql, options.keys, options.handler.time_zone);
  std::vector<std::string> symbols;
  std::unique_lock<std::mutex> lock(stop_mu);
  while (!stopping) {
    lock.unlock();
    if (reader.Symbols(&symbols) == ReadStatus::kOk) {
      symbols_known.store(symbols.size(), std::memory_order_relaxed);
      this->symbols.Publish(std::move(symbols));
      symbols = {};
    } else {
      refresh_failures.Add();
      LOG_RATE(kWarn, "api.symbols_refresh_failed",
               "detail=\"kept the previous known-symbol set\"");
    }
    lock.lock();
    stop_cv.wait_for(lock, std::chrono::milliseconds(options.symbols_refresh_ms),
                     [this] { return stopping; });
  }
}

ApiServer::ApiServer(ApiServerOptions options)
    : options_(std::move(options)),
      topology_(std::make_unique<cluster::Topology>(options_.topology)) {}

ApiServer::~ApiServer() { Stop(); }

bool ApiServer::Start(std::string* error) {
  impl_ = std::make_unique<Impl>(options_, topology_.get());
  if (!topology_->Refresh()) {
    LOG(kWarn, "api.topology_failed",
        "error=\"" << topology_->error() << "\" detail=\"routing retries on the next call\"");
  }
  Impl& im = *impl_;
  const size_t n = static_cast<size_t>(std::max(1, options_.threads));
  im.ws_options = options_.ws;
  im.ws_options.intervals = options_.handler.intervals;
  im.hub = std::make_unique<EventHub>(topology_.get(), options_.keys, options_.watch_ttl_ms);
  if (options_.cache.max_bytes > 0) {
    im.cache_subscriptions = std::make_unique<HubSubscriptions>(im.hub.get(), n);
    im.cache = std::make_unique<CandleCache>(options_.cache, im.cache_subscriptions.get());
  }
  for (size_t i = 0; i < n; ++i) {
    im.loops.push_back(std::make_unique<Loop>(i, options_, topology_.get(), &im.symbols,
                                              im.hub.get(), im.cache.get(), &im.ws_options,
                                              &im.open));
    im.hub->AddSink(im.loops.back().get());
  }
  if (im.cache) im.hub->AddSink(im.cache.get());  // sink n
  std::string host;
  uint16_t port = 0;
  if (!SplitListen(options_.listen, &host, &port)) {
    *error = "api.listen: not host:port: " + options_.listen;
    impl_.reset();
    return false;
  }
  beast::error_code ec;
  const net::ip::address addr = net::ip::make_address(host, ec);
  if (ec) {
    *error = "api.listen: " + host + ": " + ec.message();
    impl_.reset();
    return false;
  }
  im.acceptor.emplace(im.loops[0]->ioc);
  const tcp::endpoint ep(addr, port);
  im.acceptor->open(ep.protocol(), ec);
  if (!ec) im.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor->bind(ep, ec);
  if (!ec) im.acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    *error = "api.listen " + options_.listen + ": " + ec.message();
    impl_.reset();
    return false;
  }
  port_ = im.acceptor->local_endpoint().port();
  im.accept_retry.emplace(im.loops[0]->ioc);
  im.Accept();
  for (auto& loop : im.loops) im.guards.push_back(net::make_work_guard(loop->ioc));
  im.refresher = std::thread([&im] { im.Refresh(); });
  im.hub->Start();
  for (auto& loop : im.loops) {
    Loop* l = loop.get();
    l->thread = std::thread([l] {
      NameThisThread("api-" + std::to_string(l->index));
      l->ioc.run();
    });
  }
  return true;
}

void ApiServer::Stop() {
  if (!impl_ || stopped_) return;
  stopped_ = true;
  Impl& im = *impl_;
  {
    std::lock_guard<std::mutex> lock(im.stop_mu);
    im.stopping = true;
  }
  im.stop_cv.notify_all();
  if (im.refresher.joinable()) im.refresher.join();
  im.hub->Stop();  // no event is posted to a loop after this
  im.guards.clear();
  for (auto& loop : im.loops) loop->ioc.stop();
  for (auto& loop : im.loops) {
    if (loop->thread.joinable()) loop->thread.join();
  }
  // Every loop thread has ended: nothing else touches the acceptor or the sessions now. The
  // sessions still pending go with their io_context (closing their sockets) when impl_ is
  // destroyed; impl_ stays until then, so a metrics scrape meanwhile reads live counters.
  beast::error_code ignored;
  im.acceptor->close(ignored);
}

void ApiServer::SetWeightPerMinute(int64_t w) {
  if (!impl_) return;
  for (auto& loop : impl_->loops) {
    Loop* l = loop.get();
    net::post(l->ioc, [l, w] { l->handler.set_weight_per_minute(w); });
  }
}

ApiSnapshot ApiServer::Snapshot() const {
  ApiSnapshot s;
  if (!impl_) return s;
  const Impl& im = *impl_;
  for (const auto& loop : im.loops) {
    const HandlerStats& hs = loop->handler.stats();
    for (size_t e = 0; e < kEndpointCount; ++e) {
      for (size_t o = 0; o < kOutcomeCount; ++o) s.responses[e][o] += hs.responses[e][o].Get();
    }
    const ReaderStats& rs = loop->reader.stats();
    s.redis_reads += rs.redis_reads.Get();
    s.redis_failures += rs.redis_failures.Get();
    s.mysql_reads += rs.mysql_reads.Get();
    s.mysql_failures += rs.mysql_failures.Get();
    s.corrupt_values += rs.corrupt_values.Get();
    s.http_errors += loop->http_errors.Get();
    s.timeouts += loop->timeouts.Get();
    const WsStats& w = loop->ws_stats;
    s.ws_accepted += w.accepted.Get();
    s.ws_open += w.open.Get();
    s.ws_messages_in += w.messages_in.Get();
    s.ws_error_replies += w.error_replies.Get();
    s.ws_events_out += w.events_out.Get();
    s.ws_conflated += w.conflated.Get();
    for (size_t c = 0; c < kWsCloseCount; ++c) s.ws_closed[c] += w.closed[c].Get();
  }
  const HubStats& h = im.hub->stats();
  s.pubsub_messages = h.messages.Get();
  s.pubsub_events = h.events.Get();
  s.pubsub_bad = h.bad_messages.Get();
  s.pubsub_reconnects = h.reconnects.Get();
  s.pubsub_moved = h.moved.Get();
  s.pubsub_symbols = h.subscribed.load(std::memory_order_relaxed);
  s.watch_writes = h.watch_writes.Get();
  if (im.cache) {
    const CacheStats& c = im.cache->stats();
    auto get = [](const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); };
    s.cache_hits = get(c.hits);
    s.cache_misses = get(c.misses);
    s.cache_page_hits = get(c.page_hits);
    s.cache_page_misses = get(c.page_misses);
    s.cache_waits = get(c.waits);
    s.cache_loads = get(c.loads);
    s.cache_evictions = get(c.evictions);
    s.cache_invalidations = get(c.invalidations);
    s.cache_bytes = get(c.bytes);
    s.cache_entries = get(c.entries);
    s.cache_pages = get(c.pages);
  }
  s.connections_open = static_cast<uint64_t>(std::max<int64_t>(0, im.open.load()));
  s.connections_accepted = im.accepted.Get();
  s.connections_rejected = im.rejected.Get();
  s.symbols_known = im.symbols_known.load(std::memory_order_relaxed);
  s.symbol_refresh_failures = im.refresh_failures.Get();
  return s;
}

}  // namespace klined::api
