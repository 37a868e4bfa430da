#include "io/redis/redis_conn.h"

#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace klined {
namespace {

timeval ToTimeval(int ms) { return timeval{.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000}; }

}  // namespace

bool IsNoScript(const redisReply* r) {
  return r != nullptr && r->type == REDIS_REPLY_ERROR && r->len >= 8 &&
         std::strncmp(r->str, "NOSCRIPT", 8) == 0;
}

RedisConn::RedisConn(RedisOptions options) : options_(std::move(options)) {}

RedisConn::~RedisConn() {
  if (ctx_ != nullptr) redisFree(ctx_);
}

size_t RedisConn::AddScript(std::string body) {
  // Every script runs with a shebang: Redis (7.0+) then refuses, in cluster mode, a call that
  // touches keys of more than one slot (without one it allows it on a node that happens to
  // serve every slot touched), so the one-node cluster of the tests catches such a script.
  if (!body.starts_with("#!")) body.insert(0, "#!lua\n");
  scripts_.push_back(Script{std::move(body), {}});
  if (ctx_ != nullptr && !ReloadScripts()) Disconnect("script load failed");
  return scripts_.size() - 1;
}

bool RedisConn::EnsureConnected() {
  if (ctx_ != nullptr) return true;
  const ReconnectBackoff::Attempt a = backoff_.Try([this] { return Connect(); });
  if (a == ReconnectBackoff::Attempt::kReconnected) reconnects_.Add();
  return a == ReconnectBackoff::Attempt::kConnected || a == ReconnectBackoff::Attempt::kReconnected;
}

bool RedisConn::Connect() {
  const timeval connect_tv = ToTimeval(options_.connect_timeout_ms);
  const std::string& addr = options_.address;
  if (addr.rfind("unix:", 0) == 0) {
    ctx_ = redisConnectUnixWithTimeout(addr.c_str() + 5, connect_tv);
  } else {
    const size_t colon = addr.rfind(':');
    const std::string host = colon == std::string::npos ? addr : addr.substr(0, colon);
    const int port = colon == std::string::npos ? 6379 : std::atoi(addr.c_str() + colon + 1);
    ctx_ = redisConnectWithTimeout(host.c_str(), port, connect_tv);
  }
  if (ctx_ == nullptr || ctx_->err != 0) {
    error_ = ctx_ != nullptr ? ctx_->errstr : "cannot allocate redis context";
    if (ctx_ != nullptr) redisFree(ctx_);
    ctx_ = nullptr;
    errors_.Add();
    return false;
  }
  redisSetTimeout(ctx_, ToTimeval(options_.command_timeout_ms));
  redisEnableKeepAlive(ctx_);
  if (!options_.user.empty() || !options_.password.empty()) {
    RedisReply r = options_.user.empty() ? Command({"AUTH", options_.password})
                                         : Command({"AUTH", options_.user, options_.password});
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      if (r != nullptr) Disconnect(std::string("AUTH failed: ") + std::string(r->str, r->len));
      return false;
    }
  }
  return ReloadScripts();
}

bool RedisConn::ReloadScripts() {
  for (const Script& s : scripts_) Append({"SCRIPT", "LOAD", s.body});
  bool ok = true;
  for (Script& s : scripts_) {
    RedisReply r = GetReply();
    if (r == nullptr) return false;
    if (r->type != REDIS_REPLY_STRING) {
      ok = false;
      error_ = std::string("SCRIPT LOAD: ") + (r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
      continue;
    }
    s.sha.assign(r->str, r->len);
  }
  if (!ok) Disconnect(error_);
  return ok;
}

void RedisConn::Append(std::span<const std::string_view> argv) {
  if (ctx_ == nullptr) return;
  argv_.clear();
  argv_len_.clear();
  for (std::string_view a : argv) {
    argv_.push_back(a.data());
    argv_len_.push_back(a.size());
  }
  redisAppendCommandArgv(ctx_, static_cast<int>(argv_.size()), argv_.data(), argv_len_.data());
}

void RedisConn::AppendFormatted(std::string_view resp) {
  if (ctx_ == nullptr) return;
  redisAppendFormattedCommand(ctx_, resp.data(), resp.size());
}

bool RedisConn::FlushWrites() {
  if (ctx_ == nullptr) return false;
  int done = 0;
  while (done == 0) {
    if (redisBufferWrite(ctx_, &done) != REDIS_OK) {
      Disconnect(ctx_->errstr[0] != '\0' ? ctx_->errstr : "write failed");
      return false;
    }
  }
  return true;
}

RedisReply RedisConn::GetReply() {
  if (ctx_ == nullptr) return nullptr;
  void* reply = nullptr;
  if (redisGetReply(ctx_, &reply) != REDIS_OK || reply == nullptr) {
    Disconnect(ctx_->errstr[0] != '\0' ? ctx_->errstr : "connection lost");
    return nullptr;
  }
  return RedisReply(static_cast<redisReply*>(reply));
}

bool RedisConn::SscanStep(std::string_view key, std::string* cursor, std::string_view count,
                          std::vector<std::string>* members) {
  RedisReply r = Command({"SSCAN", key, *cursor, "COUNT", count});
  if (r == nullptr) return false;
  if (!ReadSscanReply(r.get(), cursor, members)) {
    Disconnect("unexpected SSCAN reply for " + std::string(key));
    return false;
  }
  return true;
}

bool ReadSscanReply(const redisReply* r, std::string* cursor, std::vector<std::string>* members) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
    return false;
  }
  cursor->assign(r->element[0]->str, r->element[0]->len);
  const redisReply* m = r->element[1];
  for (size_t k = 0; k < m->elements; ++k) {
    if (m->element[k]->type == REDIS_REPLY_STRING) {
      members->emplace_back(m->element[k]->str, m->element[k]->len);
    }
  }
  return true;
}

RedisReply RedisConn::Command(std::initializer_list<std::string_view> argv) {
  Append(argv);
  return GetReply();
}

void RedisConn::Disconnect(std::string_view why) {
  error_.assign(why);
  errors_.Add();
  if (ctx_ != nullptr) redisFree(ctx_);
  ctx_ = nullptr;
  backoff_.Dropped();
}

}  // namespace klined
