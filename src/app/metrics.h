// Prometheus metrics: counters live on their threads and are summed here at scrape time.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace prometheus {
class Exposer;
}

namespace klined {

class Shard;
class TradeConsumer;

class Metrics {
 public:
  Metrics(std::vector<const Shard*> shards, const TradeConsumer* consumer);
  ~Metrics();
  // Serves /metrics on listen ("host:port"). False with *error if the port is unavailable.
  bool Serve(const std::string& listen, std::string* error);
  void set_config_reload_failures(uint64_t n) { reload_failures_ = n; }
  void set_config_reloads(uint64_t n) { reloads_ = n; }

  class Collector;

 private:
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  uint64_t reload_failures_ = 0;
  uint64_t reloads_ = 0;
};

}  // namespace klined
