// A real redis-server on 127.0.0.1 for integration tests.
#pragma once

#include <hiredis/hiredis.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "subprocess.h"
#include "temp_dir.h"

namespace klined::test {

struct RedisReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyFree>;

// A blocking hiredis connection. Commands throw std::runtime_error on I/O errors;
// Redis error replies are returned as REDIS_REPLY_ERROR replies.
class RedisClient {
 public:
  RedisClient(const std::string& host, int port, milliseconds timeout = milliseconds(5000));
  redisContext* get() const { return ctx_.get(); }

  // Binary-safe: every argument is sent as one bulk string. Against a Redis Cluster node a
  // MOVED or ASK reply is followed (MOVED: the client connects to the named node for good;
  // ASK: ASKING and the command there, once), so a test reads any key through any node.
  RedisReplyPtr Command(const std::vector<std::string>& argv);
  // GET; nullopt for a missing key.
  std::optional<std::string> Get(const std::string& key);
  // Runs a command whose reply is an array of strings (KEYS, SMEMBERS, ZRANGE ...).
  std::vector<std::string> Strings(const std::vector<std::string>& argv);
  // Runs a command whose reply is an integer.
  long long Integer(const std::vector<std::string>& argv);
  // No candle waits for MySQL: no symbol's B:pending hash exists, nor its index entry.
  // (The index alone is a hint: the persistence worker takes a symbol out of it and puts it
  // back when a write landed meanwhile, so it may read empty for a moment while entries wait.)
  bool NothingPending(const std::string& prefix = "kline");

 private:
  struct Free {
    void operator()(redisContext* c) const { redisFree(c); }
  };
  using Ctx = std::unique_ptr<redisContext, Free>;
  static Ctx Open(const std::string& host, int port, milliseconds timeout);
  static RedisReplyPtr Send(redisContext* c, const std::vector<std::string>& argv);
  Ctx ctx_;
  milliseconds timeout_;
};

struct RedisOptions {
  // appendonly yes with appendfsync always, so data survives Restart() and
  // even a SIGKILL. Off by default: no persistence at all (save "").
  bool appendonly = false;
  // Extra redis.conf lines, e.g. "maxmemory 10mb".
  std::vector<std::string> extra_config;
  // A Redis Cluster node (cluster-enabled, its own bus port; see RedisCluster).
  bool cluster_node = false;
  // A one-node cluster: a cluster node that serves every slot. It answers like one Redis,
  // except that it refuses a script call, MULTI or multi-key command touching more than one
  // slot: what klined must never send (its cluster mode could not route it). With the
  // environment variable KLINED_TEST_ONE_NODE_CLUSTER=1 every server that is not a cluster
  // node is one (make test-one-slot runs the write-path suites that way).
  bool one_node_cluster = false;
};

class RedisServer {
 public:
  // Starts the server and waits until PING answers (throws on failure).
  explicit RedisServer(RedisOptions options = {});
  ~RedisServer() = default;  // the Subprocess kills the server, the TempDir goes away

  const std::string& host() const { return host_; }
  int port() const { return port_; }
  std::string address() const { return host_ + ":" + std::to_string(port_); }  // host:port
  std::filesystem::path unix_socket() const { return dir_ / "redis.sock"; }
  const std::filesystem::path& dir() const { return dir_.path(); }

  RedisClient Connect() const { return RedisClient(host_, port_); }

  // Start after Stop: same port, same data dir.
  void Start();
  // Graceful SHUTDOWN via SIGTERM (AOF flushed when enabled).
  void Stop();
  void Restart() {
    Stop();
    Start();
  }
  bool running() const { return proc_.has_value(); }
  Subprocess& process() { return *proc_; }

 private:
  void WriteConfig();
  bool TryStart();
  // One-node cluster: every slot to this node, then wait for cluster_state:ok.
  void ServeEverySlot();

  RedisOptions options_;
  TempDir dir_{"klined-redis"};
  std::string host_ = "127.0.0.1";
  int port_ = 0;
  int bus_port_ = 0;  // cluster nodes: kept across restarts (nodes.conf records it)
  std::optional<Subprocess> proc_;
};

}  // namespace klined::test
