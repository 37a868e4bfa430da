// One Redis's topology and its router, as the process wires them, for a job under test.
#pragma once

#include <string>

#include "io/redis/cluster/router.h"

namespace klined::test {

struct Routed {
  explicit Routed(const klined::RedisOptions& options, const std::string& prefix = "kline")
      : topology(cluster::SingleNode(options, prefix + ":wait")), router(&topology) {}

  cluster::Topology topology;
  cluster::Router router;
};

}  // namespace klined::test
