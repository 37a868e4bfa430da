#include "app/cluster_metrics.h"

#include "app/metric_family.h"

namespace klined {
namespace {

class ClusterCollector : public prometheus::Collectable {
 public:
  explicit ClusterCollector(std::vector<cluster::Topology*> topologies)
      : topologies_(std::move(topologies)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    // Each counter summed over the topologies.
    const auto add = [&](const char* name, const char* help,
                         std::atomic<uint64_t> cluster::RouterStats::*field) {
      uint64_t sum = 0;
      for (cluster::Topology* t : topologies_) {
        sum += (t->stats().*field).load(std::memory_order_relaxed);
      }
      AddSample(&out, name, help, prometheus::MetricType::Counter, double(sum));
    };
    using S = cluster::RouterStats;
    add("klined_redis_cluster_moved_total",
        "MOVED replies: the call was resent to the node named and the slot map refreshed",
        &S::moved);
    add("klined_redis_cluster_ask_total",
        "ASK replies (a slot being migrated): the call was resent once with ASKING", &S::ask);
    add("klined_redis_cluster_tryagain_total",
        "TRYAGAIN replies (keys of a slot split by a migration): retried after a back-off",
        &S::tryagain);
    add("klined_redis_cluster_clusterdown_total",
        "CLUSTERDOWN replies (no majority, or a slot unserved): retried after a back-off",
        &S::clusterdown);
    add("klined_redis_cluster_noscript_total",
        "NOSCRIPT replies (a node without klined's scripts, e.g. a promoted replica): loaded "
        "there and resent",
        &S::noscript);
    add("klined_redis_cluster_refreshes_total", "Slot map refreshes from CLUSTER SHARDS",
        &S::refreshes);
    add("klined_redis_cluster_refresh_failures_total",
        "Slot map refreshes no node answered (the old map stays in use)", &S::refresh_failures);
    add("klined_redis_cluster_wait_timeouts_total",
        "Durable-commit waits (redis.wait_replicas) that found a node short of replicas",
        &S::wait_timeouts);
    return out;
  }

 private:
  std::vector<cluster::Topology*> topologies_;
};

}  // namespace

std::shared_ptr<prometheus::Collectable> MakeClusterCollector(
    std::vector<cluster::Topology*> topologies) {
  return std::make_shared<ClusterCollector>(std::move(topologies));
}

}  // namespace klined
