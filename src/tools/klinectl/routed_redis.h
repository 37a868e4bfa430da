// klinectl's Redis: one Redis or a Redis Cluster, with RedisConn's shape (append, then read
// the replies in order) over cluster::Router, so the tools' code is one path for both.
//
// DESIGN
// Each command is routed by its first key: argv[1], or for EVALSHA the first of its KEYS (a
// script with no key goes to slot 0's node). Appended commands run together, split by node
// (the nodes at once), when the first of their replies is read; commands appended after that
// run after the unread replies are read (cluster::Batch). Commands to different nodes have no
// order between them: a tool that needs one write to land before another reads the first's
// reply before appending the second (each symbol's keys share one slot, so one symbol's
// commands keep their order). MOVED, ASK, TRYAGAIN, CLUSTERDOWN and NOSCRIPT are the
// router's.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "io/redis/cluster/router.h"

namespace klined::klinectl {

class RoutedRedis {
 public:
  explicit RoutedRedis(cluster::TopologyOptions options);

  // The seeds, comma-separated (for messages).
  const std::string& address() const { return address_; }

  size_t AddScript(std::string body) { return router_.AddScript(std::move(body)); }
  std::string_view Sha(size_t script) const { return router_.Sha(script); }

  // The slot map (CLUSTER SHARDS on a cluster), then every primary connected and the scripts
  // loaded. False, with error() saying why, when a node cannot be reached.
  bool EnsureConnected();
  // After AddScript on a connected client: true once every script's SHA is known.
  bool ReloadScripts() { return router_.ScriptsLoaded(); }

  void Append(std::span<const std::string_view> argv);
  void Append(std::initializer_list<std::string_view> argv) {
    Append(std::span<const std::string_view>(argv.begin(), argv.size()));
  }
  // The next reply in append order; null when its node's connection failed (error()).
  RedisReply GetReply();
  // One command (after the replies appended before it are read).
  RedisReply Command(std::initializer_list<std::string_view> argv);

  const std::string& error() const { return router_.error(); }

 private:
  static uint16_t SlotOf(std::span<const std::string_view> argv);

  std::string address_;
  cluster::Topology topology_;
  cluster::Router router_;
  cluster::Batch batch_;
  bool mapped_ = false;  // the first Refresh was made
};

}  // namespace klined::klinectl
