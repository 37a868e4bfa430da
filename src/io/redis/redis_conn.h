// One Redis connection, owned by one thread (a shard, the timer thread, the loader).
//
// DESIGN
// Blocking hiredis with connect and command timeouts; callers pipeline by appending many
// commands and then reading every reply. A failed call drops the connection; the next
// EnsureConnected() reconnects after an exponential backoff (100 ms doubling to 5 s), runs
// AUTH (with the ACL user when one is set; error() then quotes Redis's reply, never the
// password), and loads the registered Lua scripts so EVALSHA can be used right away. A NOSCRIPT
// reply (Redis restarted or SCRIPT FLUSH) is handled by the caller calling ReloadScripts()
// and retrying: every klined write is absolute, so a retry is harmless.
#pragma once

#include <hiredis/hiredis.h>

#include "base/backoff.h"
#include "base/counter.h"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace klined {

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisReply = std::unique_ptr<redisReply, ReplyDeleter>;

struct RedisOptions {
  std::string address = "127.0.0.1:6379";  // host:port or unix:/path
  std::string password;
  int connect_timeout_ms = 1000;
  int command_timeout_ms = 5000;
  // ACL user: AUTH user password. Empty: AUTH password (the default user), only if a password
  // is set.
  std::string user;
  // Shard stores only (redis.wait_replicas): a flush is durable once this many replicas
  // acknowledge it (WAIT), within wait_timeout_ms. 0 = no wait.
  int wait_replicas = 0;
  int wait_timeout_ms = 1000;
};

class RedisConn {
 public:
  explicit RedisConn(RedisOptions options);
  ~RedisConn();
  RedisConn(const RedisConn&) = delete;
  RedisConn& operator=(const RedisConn&) = delete;

  // Registers a script before first use; returns its handle for Sha(). A body without a
  // shebang gets "#!lua" (see AddScript's comment: Redis Cluster's one-slot rule).
  size_t AddScript(std::string body);
  std::string_view Sha(size_t script) const { return scripts_[script].sha; }

  // Connects if needed (honouring the backoff). False while Redis is unreachable.
  bool EnsureConnected();
  bool connected() const { return ctx_ != nullptr; }
  // SCRIPT LOAD of every registered script (after NOSCRIPT). False drops the connection.
  bool ReloadScripts();

  // Pipelining: Append any number of commands, then GetReply once per command, in order.
  void Append(std::span<const std::string_view> argv);
  void Append(std::initializer_list<std::string_view> argv) {
    Append(std::span<const std::string_view>(argv.begin(), argv.size()));
  }
  // Writes what was appended so far without waiting for replies, so Redis starts on a long
  // pipeline while the caller encodes the rest. False (connection dropped) on a write error.
  bool FlushWrites();
  // Appends commands already RESP-encoded (e.g. by redisFormatCommandArgv).
  void AppendFormatted(std::string_view resp);
  // Null on a connection error or timeout; the connection is then dropped and error() says
  // why. Error *replies* (REDIS_REPLY_ERROR) are returned as replies.
  RedisReply GetReply();
  // One SSCAN step over a set: appends this step's members to *members and advances *cursor
  // ("0" once the scan is complete). False on a connection error or a malformed reply (the
  // connection is then dropped and error() says why). A member may come back twice.
  bool SscanStep(std::string_view key, std::string* cursor, std::string_view count,
                 std::vector<std::string>* members);
  // One command, one reply.
  RedisReply Command(std::initializer_list<std::string_view> argv);

  // Drops the connection (after a protocol surprise); the next EnsureConnected reconnects.
  void Disconnect(std::string_view why);

  const std::string& error() const { return error_; }
  // Any thread (metrics).
  uint64_t reconnects() const { return reconnects_.Get(); }
  uint64_t errors() const { return errors_.Get(); }

 private:
  struct Script {
    std::string body;
    std::string sha;
  };

  bool Connect();

  RedisOptions options_;
  redisContext* ctx_ = nullptr;
  std::vector<Script> scripts_;
  std::vector<const char*> argv_;
  std::vector<size_t> argv_len_;
  std::string error_;
  ReconnectBackoff backoff_;
  OwnedCounter reconnects_;
  OwnedCounter errors_;
};

// True if the reply is an error starting with "NOSCRIPT".
bool IsNoScript(const redisReply* r);
// Reads an SSCAN reply: the next cursor into *cursor, the members appended to *members.
// False for any other shape.
bool ReadSscanReply(const redisReply* r, std::string* cursor, std::vector<std::string>* members);

}  // namespace klined
