#include "redis_server.h"

#include <stdexcept>
#include <thread>

namespace klined::test {

RedisClient::RedisClient(const std::string& host, int port, milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ctx_.reset(redisConnectWithTimeout(host.c_str(), port, tv));
  if (!ctx_ || ctx_->err) {
    throw std::runtime_error("redis connect " + host + ":" + std::to_string(port) + ": " +
                             (ctx_ ? ctx_->errstr : "out of memory"));
  }
  redisSetTimeout(ctx_.get(), tv);
}

RedisReplyPtr RedisClient::Command(const std::vector<std::string>& argv) {
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(ctx_.get(), static_cast<int>(args.size()), args.data(), lens.data()));
  if (r == nullptr) {
    throw std::runtime_error(std::string("redis command ") + (argv.empty() ? "" : argv[0]) + ": " +
                             ctx_->errstr);
  }
  return RedisReplyPtr(r);
}

std::optional<std::string> RedisClient::Get(const std::string& key) {
  auto r = Command({"GET", key});
  if (r->type == REDIS_REPLY_NIL) return std::nullopt;
  if (r->type != REDIS_REPLY_STRING) throw std::runtime_error("GET " + key + ": not a string");
  return std::string(r->str, r->len);
}

std::vector<std::string> RedisClient::Strings(const std::vector<std::string>& argv) {
  auto r = Command(argv);
  if (r->type == REDIS_REPLY_ERROR) throw std::runtime_error(argv[0] + ": " + r->str);
  std::vector<std::string> out;
  if (r->type != REDIS_REPLY_ARRAY) throw std::runtime_error(argv[0] + ": not an array reply");
  for (size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    out.emplace_back(e->str ? std::string(e->str, e->len) : std::to_string(e->integer));
  }
  return out;
}

long long RedisClient::Integer(const std::vector<std::string>& argv) {
  auto r = Command(argv);
  if (r->type != REDIS_REPLY_INTEGER) {
    throw std::runtime_error(argv[0] + ": not an integer reply" +
                             (r->type == REDIS_REPLY_ERROR ? std::string(": ") + r->str : ""));
  }
  return r->integer;
}

RedisServer::RedisServer(RedisOptions options) : options_(std::move(options)) {
  // A free port can be taken between FreePort() and bind; try a few.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreePort();
    if (TryStart()) return;
  }
  throw std::runtime_error("redis-server did not start:\n" + proc_->OutputTail());
}

void RedisServer::WriteConfig() {
  std::string conf;
  conf += "bind 127.0.0.1\n";
  conf += "port " + std::to_string(port_) + "\n";
  conf += "unixsocket " + unix_socket().string() + "\nunixsocketperm 700\n";
  conf += "dir " + dir_.path().string() + "\n";
  conf += "daemonize no\nlogfile \"\"\nsave \"\"\n";
  if (options_.appendonly) {
    conf += "appendonly yes\nappendfsync always\n";
  } else {
    conf += "appendonly no\n";
  }
  if (options_.cluster_node) {
    if (bus_port_ == 0) bus_port_ = FreePort();
    conf += "cluster-enabled yes\ncluster-config-file nodes.conf\n";
    conf += "cluster-node-timeout 1000\ncluster-port " + std::to_string(bus_port_) + "\n";
    // A replica may be promoted as soon as its primary is seen failed (tests fail over in
    // seconds, not after the production default's checks).
    conf += "cluster-replica-validity-factor 0\ncluster-allow-replica-migration no\n";
  }
  for (const auto& line : options_.extra_config) conf += line + "\n";
  WriteFile(dir_ / "redis.conf", conf);
}

bool RedisServer::TryStart() {
  WriteConfig();
  proc_.reset();
  proc_.emplace("redis-server", std::vector<std::string>{(dir_ / "redis.conf").string()},
                SubprocessOptions{.log_dir = dir_.path(), .name = "redis", .env = {}, .cwd = {}});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!proc_->Running()) return false;
    try {
      RedisClient c(host_, port_, milliseconds(500));
      auto r = c.Command({"PING"});
      // While loading the AOF the server answers -LOADING; wait for PONG.
      if (r->type == REDIS_REPLY_STATUS && std::string(r->str, r->len) == "PONG") return true;
    } catch (const std::runtime_error&) {
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  throw std::runtime_error("redis-server not answering PING within 15 s:\n" + proc_->OutputTail());
}

void RedisServer::Start() {
  if (proc_ && proc_->Running()) return;
  if (!TryStart()) {
    throw std::runtime_error("redis-server did not restart on port " + std::to_string(port_) +
                             ":\n" + proc_->OutputTail());
  }
}

void RedisServer::Stop() {
  if (!proc_) return;
  proc_->Resume();                   // a SIGSTOPped server cannot shut down
  proc_->Stop(milliseconds(10000));  // SIGKILL after the grace period
  proc_.reset();
}

}  // namespace klined::test
