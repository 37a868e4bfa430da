// The pub/sub subscriber and fan-out; see event_hub.h.
#include "api/event_hub.h"

#include <hiredis/hiredis.h>
#include <poll.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "api/rest_format.h"
#include "api/ws_protocol.h"
#include "base/backoff.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "klined/candle.h"

namespace klined::api {
namespace {

constexpr int kPollMs = 50;
constexpr int kMaxBackoffMs = 5000;

redisContext* Ctx(void* p) { return static_cast<redisContext*>(p); }

// The symbol of PREFIX:{SYMBOL}:events.
std::string_view SymbolOfChannel(std::string_view channel) {
  const size_t open = channel.find(":{");
  const size_t close = channel.rfind("}:events");
  if (open == std::string_view::npos || close == std::string_view::npos || close <= open + 2) {
    return {};
  }
  return channel.substr(open + 2, close - open - 2);
}

}  // namespace

EventHub::EventHub(RedisOptions redis, KeyLayout keys)
    : redis_(std::move(redis)), keys_(std::move(keys)) {}

EventHub::~EventHub() {
  Stop();
  Disconnect();
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
  if (thread_.joinable()) thread_.join();
}

void EventHub::Want(size_t sink, const std::string& symbol) {
  std::lock_guard<std::mutex> lock(mu_);
  changes_.push_back({sink, symbol, true});
}

void EventHub::Unwant(size_t sink, const std::string& symbol) {
  std::lock_guard<std::mutex> lock(mu_);
  changes_.push_back({sink, symbol, false});
}

bool EventHub::Connect() {
  const timeval connect_tv{redis_.connect_timeout_ms / 1000,
                           static_cast<suseconds_t>(redis_.connect_timeout_ms % 1000 * 1000)};
  const timeval command_tv{2, 0};
  redisContext* c = nullptr;
  if (redis_.address.rfind("unix:", 0) == 0) {
    c = redisConnectUnixWithTimeout(redis_.address.substr(5).c_str(), connect_tv);
  } else {
    const size_t colon = redis_.address.rfind(':');
    c = redisConnectWithTimeout(redis_.address.substr(0, colon).c_str(),
                                std::atoi(redis_.address.c_str() + colon + 1), connect_tv);
  }
  if (c == nullptr || c->err) {
    LOG_RATE(kWarn, "api.subscriber_connect_failed",
             "address=" << redis_.address << " error=\"" << (c ? c->errstr : "oom") << "\"");
    if (c) redisFree(c);
    return false;
  }
  // AUTH below waits at most this; the subscription itself is polled, never blocked on.
  redisSetTimeout(c, command_tv);
  if (!redis_.password.empty()) {
    auto* r = static_cast<redisReply*>(
        redis_.user.empty()
            ? redisCommand(c, "AUTH %b", redis_.password.data(), redis_.password.size())
            : redisCommand(c, "AUTH %b %b", redis_.user.data(), redis_.user.size(),
                           redis_.password.data(), redis_.password.size()));
    const bool ok = r != nullptr && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
    if (!ok) {
      LOG_RATE(kWarn, "api.subscriber_auth_failed", "address=" << redis_.address);
      redisFree(c);
      return false;
    }
  }
  ctx_ = c;
  return true;
}

void EventHub::Disconnect() {
  if (ctx_ != nullptr) redisFree(Ctx(ctx_));
  ctx_ = nullptr;
}

bool EventHub::SendCommand(const char* verb, const std::vector<std::string>& symbols) {
  if (symbols.empty()) return true;
  std::vector<std::string> channels;
  channels.reserve(symbols.size());
  std::vector<const char*> argv{verb};
  std::vector<size_t> lens{std::strlen(verb)};
  for (const std::string& s : symbols) {
    channels.push_back(keys_.Events(s));
    argv.push_back(channels.back().data());
    lens.push_back(channels.back().size());
  }
  if (redisAppendCommandArgv(Ctx(ctx_), static_cast<int>(argv.size()), argv.data(), lens.data()) !=
      REDIS_OK) {
    return false;
  }
  int done = 0;
  while (!done) {
    if (redisBufferWrite(Ctx(ctx_), &done) != REDIS_OK) return false;
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
  for (Change& ch : changes) {
    auto it = wanted_.find(ch.symbol);
    if (ch.want) {
      if (it == wanted_.end()) {
        it = wanted_.emplace(ch.symbol, std::vector<uint32_t>(sinks_.size(), 0)).first;
        subscribe->push_back(ch.symbol);
      }
      ++it->second[ch.sink];
    } else if (it != wanted_.end() && it->second[ch.sink] > 0) {
      --it->second[ch.sink];
      bool any = false;
      for (uint32_t n : it->second) any |= n > 0;
      if (!any) {
        wanted_.erase(it);
        unsubscribe->push_back(ch.symbol);
      }
    }
  }
  stats_.subscribed.store(wanted_.size(), std::memory_order_relaxed);
}

void EventHub::OnMessage(std::string_view channel, std::string_view payload) {
  stats_.messages.Add();
  const std::string_view symbol = SymbolOfChannel(channel);
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
      e.key = std::string(symbol) + "|ticker";
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
    StreamEvent& e = events->events.emplace_back();
    e.key = std::string(symbol) + "|" + std::string(IntervalName(c.interval));
    e.stream = KlineStreamOf(symbol, c.interval);
    e.open_time = c.open_time;
    e.closed = closed;
    AppendKlineEvent(c, symbol, closed, now, &e.raw);
    e.combined = WrapCombined(e.stream, e.raw);
  }
  if (events->events.empty()) return;
  stats_.events.Add(events->events.size());
  std::shared_ptr<const SymbolEvents> shared = std::move(events);
  for (size_t s = 0; s < sinks_.size(); ++s) {
    if (it->second[s] > 0) sinks_[s]->Deliver(shared);
  }
}

void EventHub::Run() {
  NameThisThread("api-sub");
  int backoff_ms = 100;
  bool connected_once = false;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    if (ctx_ == nullptr) {
      if (!Connect()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
        backoff_ms = std::min(backoff_ms * 2, kMaxBackoffMs);
        continue;
      }
      backoff_ms = 100;
      if (connected_once) stats_.reconnects.Add();
      connected_once = true;
      std::vector<std::string> all;
      for (const auto& [symbol, counts] : wanted_) all.push_back(symbol);
      if (!SendCommand("SSUBSCRIBE", all)) {
        Disconnect();
        continue;
      }
    }
    std::vector<std::string> subscribe, unsubscribe;
    ApplyChanges(&subscribe, &unsubscribe);
    if (!SendCommand("SSUBSCRIBE", subscribe) || !SendCommand("SUNSUBSCRIBE", unsubscribe)) {
      LOG_RATE(kWarn, "api.subscriber_lost", "error=\"" << Ctx(ctx_)->errstr << "\"");
      Disconnect();
      continue;
    }
    pollfd pfd{Ctx(ctx_)->fd, POLLIN, 0};
    const int ready = poll(&pfd, 1, kPollMs);
    if (ready <= 0) continue;
    if (redisBufferRead(Ctx(ctx_)) != REDIS_OK) {
      LOG_RATE(kWarn, "api.subscriber_lost", "error=\"" << Ctx(ctx_)->errstr << "\"");
      Disconnect();
      continue;
    }
    void* reply = nullptr;
    while (ctx_ != nullptr && redisGetReplyFromReader(Ctx(ctx_), &reply) == REDIS_OK &&
           reply != nullptr) {
      auto* r = static_cast<redisReply*>(reply);
      if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
          r->element[0]->type == REDIS_REPLY_STRING &&
          std::string_view(r->element[0]->str, r->element[0]->len) == "smessage") {
        OnMessage(std::string_view(r->element[1]->str, r->element[1]->len),
                  std::string_view(r->element[2]->str, r->element[2]->len));
      } else if (r->type == REDIS_REPLY_ERROR) {
        LOG_RATE(kWarn, "api.subscriber_error",
                 "error=\"" << std::string_view(r->str, r->len) << "\"");
      }
      freeReplyObject(r);
      reply = nullptr;
    }
  }
}

}  // namespace klined::api
