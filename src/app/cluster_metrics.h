// klined_redis_cluster_*: the routing layer's counters (cluster::RouterStats of the process's
// topology: the shards' stores, the timer jobs and the persistence worker), read at scrape
// time. Zero against one Redis, except refreshes (none are made there either).
#pragma once

#include <prometheus/collectable.h>

#include <memory>

#include "io/redis/cluster/router.h"

namespace klined {

// `topology` must outlive the collector's registration.
std::shared_ptr<prometheus::Collectable> MakeClusterCollector(cluster::Topology* topology);

}  // namespace klined
