// The pub/sub subscriber and fan-out; see event_hub.h.
#include "api/event_hub.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>

#include "api/rest_format.h"
#include "api/ws_protocol.h"
#include "base/backoff.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "io/redis/lua_scripts.h"
#include "klined/candle.h"

namespace klined::api {
namespace {

constexpr int kPollMs = 50;
constexpr int kMaxBackoffMs = 5000;

redisContext* Ctx(void* p) { return static_cast<redisContext*>(p); }

std::string_view Str(const redisReply* r) { return std::string_view(r->str, r->len); }

// The kind of a pushed reply ["smessage"|"ssubscribe"|"sunsubscribe", channel, x], or "".
std::string_view PushKind(const redisReply* r) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
      r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
    return {};
  }
  return Str(r->element[0]);
}

}  // namespace

std::string EventHub::Wanted::Watch() const {
  std::string w;
  for (const auto& [kind, counts] : kinds) w.append(",").append(kind);
  if (!w.empty()) w.push_back(',');
  return w;
}

bool EventHub::Wanted::WantedBy(size_t sink) const {
  for (const auto& [kind, counts] : kinds) {
    if (counts[sink] > 0) return true;
  }
  return false;
}

EventHub::EventHub(cluster::Topology* topology, KeyLayout keys, int64_t watch_ttl_ms)
    : topology_(topology), keys_(std::move(keys)), watch_ttl_ms_(watch_ttl_ms) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  router_ = std::make_unique<cluster::Router>(topology_);
  watch_script_ = router_->AddScript(lua::kWatch);
  std::random_device rd;
  char id[40];
  std::snprintf(id, sizeof id, "%08x%08x-%d", rd(), rd(), static_cast<int>(getpid()));
  instance_ = id;
}

EventHub::~EventHub() {
  Stop();
  Disconnect();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void EventHub::Wake() {
  if (wake_fd_ < 0) return;  // no eventfd: the poll's timeout picks the change up
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = write(wake_fd_, &one, sizeof one);
}

void EventHub::Start() {
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void EventHub::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
}

void EventHub::Want(size_t sink, const std::string& symbol, const std::string& kind) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    changes_.push_back({sink, symbol, kind, true});
  }
  Wake();
}

void EventHub::Unwant(size_t sink, const std::string& symbol, const std::string& kind) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    changes_.push_back({sink, symbol, kind, false});
  }
  Wake();
}

EventHub::Sub* EventHub::SubAt(const std::string& address) {
  for (Sub& sub : subs_) {
    if (sub.address == address) return &sub;
  }
  const RedisOptions& o = topology_->options().node;
  const timeval connect_tv{o.connect_timeout_ms / 1000,
                           static_cast<suseconds_t>(o.connect_timeout_ms % 1000 * 1000)};
  const timeval command_tv{2, 0};
  redisContext* c = nullptr;
  if (address.rfind("unix:", 0) == 0) {
    c = redisConnectUnixWithTimeout(address.substr(5).c_str(), connect_tv);
  } else {
    const size_t colon = address.rfind(':');
    c = redisConnectWithTimeout(address.substr(0, colon).c_str(),
                                std::atoi(address.c_str() + colon + 1), connect_tv);
  }
  if (c == nullptr || c->err) {
    LOG_RATE(kWarn, "api.subscriber_connect_failed",
             "address=" << address << " error=\"" << (c ? c->errstr : "oom") << "\"");
    if (c) redisFree(c);
    return nullptr;
  }
  // AUTH below waits at most this; the subscription itself is polled, never blocked on.
  redisSetTimeout(c, command_tv);
  if (!o.password.empty()) {
    auto* r = static_cast<redisReply*>(
        o.user.empty() ? redisCommand(c, "AUTH %b", o.password.data(), o.password.size())
                       : redisCommand(c, "AUTH %b %b", o.user.data(), o.user.size(),
                                      o.password.data(), o.password.size()));
    const bool ok = r != nullptr && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
    if (!ok) {
      LOG_RATE(kWarn, "api.subscriber_auth_failed", "address=" << address);
      redisFree(c);
      return nullptr;
    }
  }
  subs_.push_back(Sub{address, c});
  return &subs_.back();
}

void EventHub::Disconnect() {
  for (Sub& sub : subs_) redisFree(Ctx(sub.ctx));
  subs_.clear();
  sub_of_.clear();
  connected_ = false;
}

void EventHub::Drop(int64_t delay_ms) {
  Disconnect();
  moved_ = false;
  reconnect_at_ms_ = MonotonicMs() + delay_ms;
  // Everything is subscribed and watched again on the next connection, and every wanter told
  // once more.
  for (auto& [symbol, w] : wanted_) {
    w.confirmed = false;
    w.acked.clear();
    w.waiting.clear();
    for (const auto& [kind, counts] : w.kinds) {
      for (size_t sink = 0; sink < counts.size(); ++sink) {
        if (counts[sink] > 0) w.waiting.emplace(sink, kind);
      }
    }
    watch_dirty_.insert(symbol);
  }
  unsubscribing_.clear();
  for (EventSink* sink : sinks_) sink->Lost();
}

bool EventHub::SyncWatches(bool refresh) {
  if (refresh) {
    for (const auto& [symbol, w] : wanted_) watch_dirty_.insert(symbol);
  }
  if (watch_dirty_.empty() && unwatched_.empty()) return true;
  if (!router_->ScriptsLoaded()) return false;
  const std::string ttl = std::to_string(watch_ttl_ms_);
  std::vector<std::pair<std::string, std::string>> sent;  // (symbol, watch)
  for (const std::string& symbol : unwatched_) {
    if (wanted_.contains(symbol)) continue;  // wanted again meanwhile: written below
    sent.emplace_back(symbol, "");
  }
  for (const std::string& symbol : watch_dirty_) {
    auto it = wanted_.find(symbol);
    if (it != wanted_.end()) sent.emplace_back(symbol, it->second.Watch());
  }
  std::vector<cluster::Call> calls;
  calls.reserve(sent.size());
  for (const auto& [symbol, watch] : sent) {
    calls.push_back(
        {keys_.Slot(symbol),
         cluster::Encode({"EVALSHA", router_->Sha(watch_script_), "2", keys_.Watchers(symbol),
                          keys_.Watch(symbol), instance_, watch, ttl})});
  }
  std::vector<RedisReply> replies;
  router_->Execute(calls, &replies);
  for (size_t i = 0; i < sent.size(); ++i) {
    const std::string& symbol = sent[i].first;
    const RedisReply& r = replies[i];
    if (!r || r->type == REDIS_REPLY_ERROR) {
      LOG_RATE(kWarn, "api.watch_failed",
               "symbol=" << symbol << " error=\""
                         << (r ? Str(r.get()) : std::string_view(router_->error())) << "\"");
      return false;
    }
    stats_.watch_writes.Add();
    auto it = wanted_.find(symbol);
    if (it == wanted_.end()) continue;
    it->second.acked = sent[i].second;
    NotifyReady(symbol);
  }
  watch_dirty_.clear();
  unwatched_.clear();
  return true;
}

void EventHub::NotifyReady(const std::string& symbol) {
  auto it = wanted_.find(symbol);
  if (it == wanted_.end() || !it->second.confirmed) return;
  Wanted& w = it->second;
  for (auto p = w.waiting.begin(); p != w.waiting.end();) {
    const auto& [sink, kind] = *p;
    auto k = w.kinds.find(kind);
    if (k == w.kinds.end() || k->second[sink] == 0) {
      p = w.waiting.erase(p);  // not wanted any more
    } else if (w.acked.find("," + kind + ",") != std::string::npos) {
      sinks_[sink]->Subscribed(symbol, kind);
      p = w.waiting.erase(p);
    } else {
      ++p;
    }
  }
}

bool EventHub::Send(Sub* sub, const char* verb,
                    const std::vector<std::vector<std::string>>& groups) {
  for (const std::vector<std::string>& channels : groups) {
    std::vector<const char*> argv{verb};
    std::vector<size_t> lens{std::strlen(verb)};
    for (const std::string& c : channels) {
      argv.push_back(c.data());
      lens.push_back(c.size());
    }
    if (redisAppendCommandArgv(Ctx(sub->ctx), static_cast<int>(argv.size()), argv.data(),
                               lens.data()) != REDIS_OK) {
      return false;
    }
  }
  int done = 0;
  while (!done) {
    if (redisBufferWrite(Ctx(sub->ctx), &done) != REDIS_OK) return false;
  }
  return true;
}

bool EventHub::Subscribe(const std::vector<std::string>& symbols) {
  if (symbols.empty()) return true;
  // Per node, per slot: a cluster node takes one slot's channels per SSUBSCRIBE (and so does a
  // cluster-enabled Redis used as one), one Redis any; one rule for both.
  const cluster::SlotMap& map = router_->map();
  std::map<size_t, std::map<uint16_t, std::vector<std::string>>> by_node;
  for (const std::string& symbol : symbols) {
    const uint16_t slot = keys_.Slot(symbol);
    const int node = map.NodeOf(slot);
    if (node < 0) {
      topology_->RequestRefresh();
      LOG_RATE(kWarn, "api.subscriber_uncovered",
               "symbol=" << symbol << " slot=" << slot << " detail=\"no primary serves it\"");
      return false;
    }
    Sub* sub = SubAt(map.primaries()[node].address);
    if (sub == nullptr) return false;
    const size_t index = static_cast<size_t>(sub - subs_.data());
    sub_of_[symbol] = index;
    by_node[index][slot].push_back(keys_.Events(symbol));
  }
  for (auto& [index, slots] : by_node) {
    std::vector<std::vector<std::string>> groups;
    for (auto& [slot, channels] : slots) groups.push_back(std::move(channels));
    if (!Send(&subs_[index], "SSUBSCRIBE", groups)) return false;
  }
  return true;
}

bool EventHub::Unsubscribe(const std::vector<std::string>& symbols) {
  std::map<size_t, std::vector<std::vector<std::string>>> by_node;
  for (const std::string& symbol : symbols) {
    auto it = sub_of_.find(symbol);
    if (it == sub_of_.end()) continue;
    ++unsubscribing_[symbol];
    by_node[it->second].push_back({keys_.Events(symbol)});
    sub_of_.erase(it);
  }
  for (auto& [index, groups] : by_node) {
    if (!Send(&subs_[index], "SUNSUBSCRIBE", groups)) return false;
  }
  return true;
}

void EventHub::ApplyChanges(std::vector<std::string>* subscribe,
                            std::vector<std::string>* unsubscribe) {
  std::vector<Change> changes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    changes.swap(changes_);
  }
  // Per symbol touched: was it wanted before this round? Only the net change goes to Redis.
  std::unordered_map<std::string, bool> before;
  for (Change& ch : changes) {
    auto it = wanted_.find(ch.symbol);
    before.try_emplace(ch.symbol, it != wanted_.end());
    if (ch.want) {
      if (it == wanted_.end()) it = wanted_.emplace(ch.symbol, Wanted{}).first;
      auto [k, fresh] = it->second.kinds.try_emplace(ch.kind, sinks_.size(), 0);
      if (fresh) watch_dirty_.insert(ch.symbol);
      ++k->second[ch.sink];
      it->second.waiting.emplace(ch.sink, ch.kind);
    } else if (it != wanted_.end()) {
      auto k = it->second.kinds.find(ch.kind);
      if (k == it->second.kinds.end() || k->second[ch.sink] == 0) continue;
      --k->second[ch.sink];
      bool any = false;
      for (uint32_t n : k->second) any |= n > 0;
      if (any) continue;
      it->second.kinds.erase(k);
      watch_dirty_.insert(ch.symbol);
      if (it->second.kinds.empty()) {
        wanted_.erase(it);
        watch_dirty_.erase(ch.symbol);
        unwatched_.insert(ch.symbol);
      }
    }
  }
  for (const auto& [symbol, was] : before) {
    const bool is = wanted_.contains(symbol);
    if (is && !was) subscribe->push_back(symbol);
    if (was && !is) unsubscribe->push_back(symbol);
    // Subscribed and watched already: a new wanter of a kind the watch names can rely on it now.
    if (is) NotifyReady(symbol);
  }
  stats_.subscribed.store(wanted_.size(), std::memory_order_relaxed);
}

void EventHub::OnUnsubscribed(std::string_view channel) {
  const std::string symbol(keys_.SymbolOfEvents(channel));
  auto it = unsubscribing_.find(symbol);
  if (it != unsubscribing_.end()) {
    if (--it->second == 0) unsubscribing_.erase(it);
    return;
  }
  // Not asked for: the node no longer serves the channel's slot.
  if (wanted_.contains(symbol)) OnMoved("a node ended the subscription of " + symbol);
}

void EventHub::OnMoved(std::string_view why) {
  stats_.moved.Add();
  LOG_RATE(kWarn, "api.subscriber_moved",
           "detail=\"" << why << "; subscribing everything again on a refreshed topology\"");
  topology_->RequestRefresh();
  moved_ = true;
}

void EventHub::OnSubscribed(std::string_view channel) {
  const std::string symbol(keys_.SymbolOfEvents(channel));
  if (unsubscribing_.contains(symbol)) return;  // a later SUNSUBSCRIBE may undo it
  auto it = wanted_.find(symbol);
  if (it == wanted_.end() || it->second.confirmed) return;  // unwanted meanwhile, or a repeat
  it->second.confirmed = true;
  NotifyReady(symbol);
}

void EventHub::OnMessage(std::string_view channel, std::string_view payload) {
  stats_.messages.Add();
  const std::string_view symbol = keys_.SymbolOfEvents(channel);
  auto it = wanted_.find(std::string(symbol));
  if (symbol.empty() || it == wanted_.end()) return;  // a late message after SUNSUBSCRIBE
  auto events = std::make_shared<SymbolEvents>();
  events->symbol = std::string(symbol);
  const int64_t now = WallMs();
  size_t start = 0;
  while (start <= payload.size()) {
    size_t nl = payload.find('\n', start);
    if (nl == std::string_view::npos) nl = payload.size();
    const std::string_view line = payload.substr(start, nl - start);
    start = nl + 1;
    if (line.empty()) continue;
    if (line.rfind("{\"symbol\":", 0) == 0) {  // the 24h ticker
      StreamEvent e;
      if (!AppendTickerEvent(line, now, &e.raw)) {
        stats_.bad_messages.Add();
        LOG_RATE(kWarn, "api.bad_event", "channel=" << channel << " bytes=" << line.size());
        continue;
      }
      e.key = TickerEventKey(symbol);
      e.stream = TickerStreamOf(symbol);
      e.combined = WrapCombined(e.stream, e.raw);
      events->events.push_back(std::move(e));
      continue;
    }
    Candle c;
    std::string_view sym;
    bool closed = false;
    if (!ParseCandleJson(line, &c, &sym, &closed) || sym != symbol) {
      stats_.bad_messages.Add();
      LOG_RATE(kWarn, "api.bad_event", "channel=" << channel << " bytes=" << line.size());
      continue;
    }
    events->candles.push_back(c);
    StreamEvent& e = events->events.emplace_back();
    e.key = EventKey(symbol, c.interval);
    e.stream = KlineStreamOf(symbol, c.interval);
    e.open_time = c.open_time;
    e.conflate_id = std::hash<std::string>{}(e.key) ^
                    (static_cast<uint64_t>(c.open_time) * 0x9E3779B97F4A7C15ULL);
    e.closed = closed;
    AppendKlineEvent(c, symbol, closed, now, &e.raw);
    e.combined = WrapCombined(e.stream, e.raw);
  }
  if (events->events.empty()) return;
  stats_.events.Add(events->events.size());
  std::shared_ptr<const SymbolEvents> shared = std::move(events);
  for (size_t s = 0; s < sinks_.size(); ++s) {
    if (it->second.WantedBy(s)) sinks_[s]->Deliver(shared);
  }
}

void EventHub::DrainWake() {
  uint64_t n = 0;
  [[maybe_unused]] const ssize_t got = read(wake_fd_, &n, sizeof n);
}

bool EventHub::ReadSub(Sub* sub) {
  if (redisBufferRead(Ctx(sub->ctx)) != REDIS_OK) {
    LOG_RATE(kWarn, "api.subscriber_lost",
             "address=" << sub->address << " error=\"" << Ctx(sub->ctx)->errstr << "\"");
    return false;
  }
  void* reply = nullptr;
  while (redisGetReplyFromReader(Ctx(sub->ctx), &reply) == REDIS_OK && reply != nullptr) {
    auto* r = static_cast<redisReply*>(reply);
    const std::string_view kind = PushKind(r);
    if (kind == "smessage" && r->element[2]->type == REDIS_REPLY_STRING) {
      OnMessage(Str(r->element[1]), Str(r->element[2]));
    } else if (kind == "ssubscribe") {
      OnSubscribed(Str(r->element[1]));
    } else if (kind == "sunsubscribe") {
      OnUnsubscribed(Str(r->element[1]));
    } else if (r->type == REDIS_REPLY_ERROR) {
      const std::string_view error = Str(r);
      // MOVED, ASK, TRYAGAIN, CLUSTERDOWN: the slot is elsewhere or on its way.
      if (cluster::ParseRedirect(error).kind != cluster::Redirect::Kind::kNone) {
        OnMoved(error);
      } else {
        LOG_RATE(kWarn, "api.subscriber_error", "error=\"" << error << "\"");
      }
    }
    freeReplyObject(r);
    reply = nullptr;
  }
  return true;
}

void EventHub::Run() {
  NameThisThread("api-sub");
  int backoff_ms = 100;
  bool connected_once = false;
  // Waits for the wake eventfd, or `ms`.
  auto nap = [this](int64_t ms) {
    pollfd pfd{wake_fd_, POLLIN, 0};
    if (wake_fd_ < 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    } else if (poll(&pfd, 1, static_cast<int>(ms)) > 0) {
      DrainWake();
    }
  };
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    if (!connected_) {
      if (const int64_t wait = reconnect_at_ms_ - MonotonicMs(); wait > 0) {
        nap(std::min<int64_t>(wait, kPollMs));
        continue;
      }
      topology_->MaybeRefresh();
      std::vector<std::string> all;
      for (const auto& [symbol, w] : wanted_) all.push_back(symbol);
      if (!Subscribe(all)) {
        Disconnect();
        nap(backoff_ms);
        backoff_ms = std::min(backoff_ms * 2, kMaxBackoffMs);
        continue;
      }
      backoff_ms = 100;
      if (connected_once) stats_.reconnects.Add();
      connected_once = true;
      connected_ = true;
    }
    std::vector<std::string> subscribe, unsubscribe;
    ApplyChanges(&subscribe, &unsubscribe);
    if (!Subscribe(subscribe) || !Unsubscribe(unsubscribe)) {
      LOG_RATE(kWarn, "api.subscriber_lost", "detail=\"a subscription could not be sent\"");
      Drop(backoff_ms);
      continue;
    }
    // The watches (what FLUSH publishes), after the subscriptions went out; refreshed every
    // ttl/3. One that Redis does not take ends the connection as a lost subscriber would: the
    // sinks cannot rely on the stream until it is written.
    const int64_t now_ms = MonotonicMs();
    const bool refresh = now_ms >= next_refresh_ms_;
    if (refresh) next_refresh_ms_ = now_ms + std::max<int64_t>(watch_ttl_ms_ / 3, 1);
    if (!SyncWatches(refresh)) {
      LOG_RATE(kWarn, "api.watch_lost", "error=\"" << router_->error() << "\"");
      Drop(backoff_ms);
      continue;
    }
    std::vector<pollfd> pfd;
    pfd.reserve(subs_.size() + 1);
    for (const Sub& sub : subs_) pfd.push_back({Ctx(sub.ctx)->fd, POLLIN, 0});
    if (wake_fd_ >= 0) pfd.push_back({wake_fd_, POLLIN, 0});
    if (pfd.empty()) {
      nap(kPollMs);
      continue;
    }
    const int ready = poll(pfd.data(), pfd.size(), kPollMs);
    if (ready <= 0) continue;
    if (wake_fd_ >= 0 && (pfd.back().revents & POLLIN)) DrainWake();
    bool lost = false;
    for (size_t i = 0; i < subs_.size() && !lost; ++i) {
      if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) lost = !ReadSub(&subs_[i]);
    }
    if (lost) {
      Drop();
    } else if (moved_) {
      Drop(kPollMs);  // the refresh has its gap; the slot's new owner is asked after it
    }
  }
}

}  // namespace klined::api
