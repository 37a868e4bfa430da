// A real Redis Cluster on 127.0.0.1 for integration tests: `primaries` redis-server nodes
// with `cluster-enabled yes`, each with `replicas` replicas, joined by
// `redis-cli --cluster create`, every slot covered.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "redis_server.h"

namespace klined::test {

class RedisCluster {
 public:
  // Starts the nodes, creates the cluster and waits until every node says cluster_state:ok
  // and every replica is in sync (throws on failure).
  explicit RedisCluster(int primaries = 3, int replicas = 1);

  // Every node, primaries first as created (roles change after a failover: see PrimaryOf).
  std::vector<std::unique_ptr<RedisServer>>& nodes() { return nodes_; }
  // "host:port,host:port,..." of every node: a seed list.
  std::string Seeds() const;
  // The node serving `slot` now (asks CLUSTER SHARDS of a live node).
  RedisServer& PrimaryOf(int slot);
  // A primary other than the one serving `slot` (where a test moves the slot to).
  RedisServer& OtherPrimary(int slot);
  // The node id of a node.
  std::string IdOf(RedisServer& node);
  // Moves one slot with its keys to `target` the way redis-cli --cluster reshard does:
  // SETSLOT IMPORTING/MIGRATING, MIGRATE of every key, SETSLOT NODE on both. `between` runs
  // after MIGRATING is set and before any key moves (ASK is then answered for keys that are
  // not on the source). Keys move `keys_per_migrate` at a time (redis-cli's
  // --cluster-pipeline, 10 by default there), `pause` after each MIGRATE: a symbol's keys
  // then sit on both nodes for a while, as in a reshard under load.
  void MoveSlot(int slot, RedisServer& target, const std::function<void()>& between = {},
                int keys_per_migrate = 100, milliseconds pause = milliseconds(0));
  // Waits until every live node (a killed one is not) reports cluster_state:ok (throws after
  // `timeout`).
  void WaitHealthy(milliseconds timeout = milliseconds(20000));
  // Waits until every live replica's link to its primary is up (throws after `timeout`): a
  // replica restarted after a kill has its full sync behind it.
  void WaitSynced(milliseconds timeout = milliseconds(20000));

 private:
  std::vector<std::unique_ptr<RedisServer>> nodes_;
};

}  // namespace klined::test
