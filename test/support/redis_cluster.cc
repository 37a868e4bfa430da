#include "redis_cluster.h"

#include <chrono>
#include <functional>
#include <stdexcept>
#include <thread>

namespace klined::test {
namespace {

std::string Text(const redisReply* r) {
  return r == nullptr ? std::string() : std::string(r->str == nullptr ? "" : r->str, r->len);
}

// field -> value in a flat RESP2 map reply.
const redisReply* FieldOf(const redisReply* map, const std::string& name) {
  for (size_t i = 0; i + 1 < map->elements; i += 2) {
    if (Text(map->element[i]) == name) return map->element[i + 1];
  }
  return nullptr;
}

}  // namespace

RedisCluster::RedisCluster(int primaries, int replicas) {
  const int total = primaries * (1 + replicas);
  std::vector<std::string> args = {"--cluster", "create"};
  for (int i = 0; i < total; ++i) {
    nodes_.push_back(std::make_unique<RedisServer>(
        RedisOptions{.appendonly = false, .extra_config = {}, .cluster_node = true}));
    args.push_back(nodes_.back()->address());
  }
  args.insert(args.end(), {"--cluster-replicas", std::to_string(replicas), "--cluster-yes"});
  Subprocess create(
      "redis-cli", args,
      SubprocessOptions{
          .log_dir = nodes_.front()->dir(), .name = "cluster-create", .env = {}, .cwd = {}});
  const std::optional<ExitStatus> st = create.Wait(milliseconds(60000));
  if (!st || st->Code() != 0) {
    throw std::runtime_error("redis-cli --cluster create failed:\n" + create.OutputTail());
  }
  WaitHealthy();
  WaitSynced();  // a failover test needs the writes on the replica
}

void RedisCluster::WaitSynced(milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (auto& n : nodes_) {
    if (!n->running() || !n->process().Running()) continue;  // stopped, or killed
    for (;;) {
      RedisClient c = n->Connect();
      const std::string info = Text(c.Command({"INFO", "replication"}).get());
      if (info.find("role:master") != std::string::npos ||
          info.find("master_link_status:up") != std::string::npos) {
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("replica " + n->address() + " not in sync:\n" + info);
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
}

std::string RedisCluster::Seeds() const {
  std::string out;
  for (const auto& n : nodes_) out += (out.empty() ? "" : ",") + n->address();
  return out;
}

void RedisCluster::WaitHealthy(milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (auto& n : nodes_) {
    if (!n->running() || !n->process().Running()) continue;  // stopped, or killed
    for (;;) {
      std::string info;
      try {
        RedisClient c = n->Connect();
        info = Text(c.Command({"CLUSTER", "INFO"}).get());
      } catch (const std::runtime_error&) {
      }
      if (info.find("cluster_state:ok") != std::string::npos) break;
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("cluster node " + n->address() + " not ok:\n" + info);
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
}

RedisServer& RedisCluster::OtherPrimary(int slot) {
  RedisServer& owner = PrimaryOf(slot);
  for (int s = 0; s < 16384; s += 97) {
    if (&PrimaryOf(s) != &owner) return PrimaryOf(s);
  }
  throw std::runtime_error("one primary serves every slot");
}

std::string RedisCluster::IdOf(RedisServer& node) {
  RedisClient c = node.Connect();
  return Text(c.Command({"CLUSTER", "MYID"}).get());
}

RedisServer& RedisCluster::PrimaryOf(int slot) {
  for (auto& n : nodes_) {
    if (!n->running() || !n->process().Running()) continue;
    RedisClient c = n->Connect();
    RedisReplyPtr shards = c.Command({"CLUSTER", "SHARDS"});
    for (size_t s = 0; s < shards->elements; ++s) {
      const redisReply* slots = FieldOf(shards->element[s], "slots");
      bool here = false;
      for (size_t i = 0; slots != nullptr && i + 1 < slots->elements; i += 2) {
        here =
            here || (slots->element[i]->integer <= slot && slot <= slots->element[i + 1]->integer);
      }
      if (!here) continue;
      const redisReply* ns = FieldOf(shards->element[s], "nodes");
      for (size_t k = 0; k < ns->elements; ++k) {
        if (Text(FieldOf(ns->element[k], "role")) != "master") continue;
        const long long port = FieldOf(ns->element[k], "port")->integer;
        for (auto& m : nodes_) {
          if (m->port() == port) return *m;
        }
      }
    }
    break;
  }
  throw std::runtime_error("no primary serves slot " + std::to_string(slot));
}

void RedisCluster::MoveSlot(int slot, RedisServer& target, const std::function<void()>& between,
                            int keys_per_migrate, milliseconds pause) {
  RedisServer& source = PrimaryOf(slot);
  const std::string source_id = IdOf(source);
  const std::string target_id = IdOf(target);
  const std::string s = std::to_string(slot);
  RedisClient src = source.Connect();
  RedisClient dst = target.Connect();
  const auto ok = [](RedisReplyPtr r, const std::string& what) {
    if (r->type == REDIS_REPLY_ERROR) throw std::runtime_error(what + ": " + Text(r.get()));
  };
  ok(dst.Command({"CLUSTER", "SETSLOT", s, "IMPORTING", source_id}), "SETSLOT IMPORTING");
  ok(src.Command({"CLUSTER", "SETSLOT", s, "MIGRATING", target_id}), "SETSLOT MIGRATING");
  if (between) between();
  for (;;) {
    const std::vector<std::string> keys =
        src.Strings({"CLUSTER", "GETKEYSINSLOT", s, std::to_string(keys_per_migrate)});
    if (keys.empty()) break;
    std::vector<std::string> migrate = {
        "MIGRATE", target.host(), std::to_string(target.port()), "", "0", "5000", "KEYS"};
    migrate.insert(migrate.end(), keys.begin(), keys.end());
    ok(src.Command(migrate), "MIGRATE");
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
  }
  ok(dst.Command({"CLUSTER", "SETSLOT", s, "NODE", target_id}), "SETSLOT NODE (target)");
  ok(src.Command({"CLUSTER", "SETSLOT", s, "NODE", target_id}), "SETSLOT NODE (source)");
  // The other primaries learn it through the bus; a client with an old map gets MOVED.
}

}  // namespace klined::test
