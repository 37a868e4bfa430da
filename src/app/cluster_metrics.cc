#include "app/cluster_metrics.h"

#include "app/metric_family.h"

namespace klined {
namespace {

class ClusterCollector : public prometheus::Collectable {
 public:
  explicit ClusterCollector(cluster::Topology* topology) : topology_(topology) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    const cluster::RouterStats& s = topology_->stats();
    std::vector<prometheus::MetricFamily> out;
    const auto add = [&out](const char* name, const char* help, const std::atomic<uint64_t>& v) {
      AddSample(&out, name, help, prometheus::MetricType::Counter,
                double(v.load(std::memory_order_relaxed)));
    };
    add("klined_redis_cluster_moved_total",
        "MOVED replies: the call was resent to the node named and the slot map refreshed", s.moved);
    add("klined_redis_cluster_ask_total",
        "ASK replies (a slot being migrated): the call was resent once with ASKING", s.ask);
    add("klined_redis_cluster_tryagain_total",
        "TRYAGAIN replies (keys of a slot split by a migration): retried after a back-off",
        s.tryagain);
    add("klined_redis_cluster_clusterdown_total",
        "CLUSTERDOWN replies (no majority, or a slot unserved): retried after a back-off",
        s.clusterdown);
    add("klined_redis_cluster_noscript_total",
        "NOSCRIPT replies (a node without klined's scripts, e.g. a promoted replica): loaded "
        "there and resent",
        s.noscript);
    add("klined_redis_cluster_refreshes_total", "Slot map refreshes from CLUSTER SHARDS",
        s.refreshes);
    add("klined_redis_cluster_refresh_failures_total",
        "Slot map refreshes no node answered (the old map stays in use)", s.refresh_failures);
    add("klined_redis_cluster_wait_timeouts_total",
        "Durable-commit waits (redis.wait_replicas) that found a node short of replicas",
        s.wait_timeouts);
    return out;
  }

 private:
  cluster::Topology* topology_;
};

}  // namespace

std::shared_ptr<prometheus::Collectable> MakeClusterCollector(cluster::Topology* topology) {
  return std::make_shared<ClusterCollector>(topology);
}

}  // namespace klined
