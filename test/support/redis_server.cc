#include "redis_server.h"

#include <cstdlib>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace klined::test {

RedisClient::RedisClient(const std::string& host, int port, milliseconds timeout)
    : ctx_(Open(host, port, timeout)), timeout_(timeout) {}

RedisClient::Ctx RedisClient::Open(const std::string& host, int port, milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  Ctx c(redisConnectWithTimeout(host.c_str(), port, tv));
  if (!c || c->err) {
    throw std::runtime_error("redis connect " + host + ":" + std::to_string(port) + ": " +
                             (c ? c->errstr : "out of memory"));
  }
  redisSetTimeout(c.get(), tv);
  return c;
}

RedisReplyPtr RedisClient::Send(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lens.data()));
  if (r == nullptr) {
    throw std::runtime_error(std::string("redis command ") + (argv.empty() ? "" : argv[0]) + ": " +
                             c->errstr);
  }
  return RedisReplyPtr(r);
}

RedisReplyPtr RedisClient::Command(const std::vector<std::string>& argv) {
  RedisReplyPtr r = Send(ctx_.get(), argv);
  for (int hop = 0; hop < 5 && r->type == REDIS_REPLY_ERROR; ++hop) {
    const std::string_view e(r->str, r->len);
    const bool moved = e.starts_with("MOVED ");
    if (!moved && !e.starts_with("ASK ")) break;
    const std::string target(e.substr(e.rfind(' ') + 1));  // "MOVED slot host:port"
    const size_t colon = target.rfind(':');
    Ctx other = Open(target.substr(0, colon), std::stoi(target.substr(colon + 1)), timeout_);
    if (moved) {
      ctx_ = std::move(other);
      r = Send(ctx_.get(), argv);
    } else {
      Send(other.get(), {"ASKING"});
      r = Send(other.get(), argv);
    }
  }
  return r;
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

bool RedisClient::NothingPending(const std::string& prefix) {
  return Integer({"SCARD", prefix + ":pending"}) == 0 &&
         Strings({"KEYS", prefix + ":{*}:pending"}).empty();
}

RedisServer::RedisServer(RedisOptions options) : options_(std::move(options)) {
  const char* env = std::getenv("KLINED_TEST_ONE_NODE_CLUSTER");
  if (env != nullptr && std::string_view(env) == "1" && !options_.cluster_node) {
    options_.one_node_cluster = true;
  }
  if (options_.one_node_cluster) options_.cluster_node = true;
  // A free port can be taken between FreePort() and bind; try a few.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreePort();
    if (TryStart()) {
      if (options_.one_node_cluster) ServeEverySlot();
      return;
    }
  }
  throw std::runtime_error("redis-server did not start:\n" + proc_->OutputTail());
}

void RedisServer::ServeEverySlot() {
  RedisClient c(host_, port_);
  auto info0 = c.Command({"CLUSTER", "INFO"});
  if (info0->type == REDIS_REPLY_STRING &&
      std::string_view(info0->str, info0->len).find("cluster_slots_assigned:16384") ==
          std::string_view::npos) {
    auto r = c.Command({"CLUSTER", "ADDSLOTSRANGE", "0", "16383"});
    if (r->type == REDIS_REPLY_ERROR) {
      throw std::runtime_error(std::string("ADDSLOTSRANGE: ") + r->str);
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    auto info = c.Command({"CLUSTER", "INFO"});
    if (info->type == REDIS_REPLY_STRING &&
        std::string_view(info->str, info->len).find("cluster_state:ok") != std::string_view::npos) {
      return;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  throw std::runtime_error("one-node cluster: not cluster_state:ok within 15 s");
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
  if (options_.one_node_cluster) ServeEverySlot();  // (nodes.conf kept them: waits for ok)
}

void RedisServer::Stop() {
  if (!proc_) return;
  proc_->Resume();                   // a SIGSTOPped server cannot shut down
  proc_->Stop(milliseconds(10000));  // SIGKILL after the grace period
  proc_.reset();
}

}  // namespace klined::test
