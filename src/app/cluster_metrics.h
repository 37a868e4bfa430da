// klined_redis_cluster_*: the routing layer's counters (cluster::RouterStats of the process's
// topology: the shards' stores, the timer jobs and the persistence worker; and the API's),
// summed, read at scrape time. Zero against one Redis, except refreshes (none are made there
// either).
#pragma once

#include <prometheus/collectable.h>

#include <memory>

#include "io/redis/cluster/router.h"

namespace klined {

// Sums the counters of the topologies (the process's; the API's); each must outlive the
// collector's registration.
std::shared_ptr<prometheus::Collectable> MakeClusterCollector(
    std::vector<cluster::Topology*> topologies);

}  // namespace klined
