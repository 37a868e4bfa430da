// Prometheus metrics: counters live on their threads and are summed here at scrape time.
//
// DESIGN
// Every klined_* metric is declared in metrics.cc (and documented in docs/metrics.md). The
// data-path counters are OwnedCounters on the shard and consumer threads; the Collector reads
// them when prometheus-cpp's HTTP thread scrapes. The few values owned by the control thread
// (reloads, readiness, watchdog, startup probes) live here as relaxed atomics: written by the
// control thread, read by the scraper.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace prometheus {
class Collectable;
class Exposer;
}  // namespace prometheus

namespace klined {

class Shard;
class TradeConsumer;

// The dependencies klined waits for before READY=1.
enum class Dependency : int { kRedis, kMysql, kKafka };
inline constexpr int kDependencyCount = 3;
const char* DependencyName(Dependency d);

class Metrics {
 public:
  // The shards and the consumer must outlive this object.
  Metrics(std::vector<const Shard*> shards, const TradeConsumer* consumer);
  ~Metrics();
  // Serves /metrics on listen ("host:port"; port 0 = any). False with *error if the address
  // is unavailable. Control thread, once.
  bool Serve(const std::string& listen, std::string* error);
  // The port actually bound (useful with port 0); 0 before Serve.
  int port() const;
  // More metrics, e.g. the timer jobs' (after Serve). Control thread.
  void AddCollectable(std::shared_ptr<prometheus::Collectable> collectable);

  // Control thread only (single writer); any thread may read through a scrape.
  void ConfigReloaded(bool ok, int64_t unix_time_s);
  void set_ready(bool ready) { ready_.store(ready, std::memory_order_relaxed); }
  void WatchdogPinged() { Bump(watchdog_pings_); }
  void WatchdogWithheld() { Bump(watchdog_withheld_); }
  void DependencyProbeFailed(Dependency d) { Bump(probe_failures_[static_cast<int>(d)]); }

  class Collector;

 private:
  static void Bump(std::atomic<uint64_t>& c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  std::shared_ptr<Collector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  const int64_t start_time_s_;
  std::atomic<uint64_t> reloads_{0};
  std::atomic<uint64_t> reload_failures_{0};
  std::atomic<int64_t> last_reload_success_s_{0};
  std::atomic<bool> last_reload_ok_{true};
  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> watchdog_pings_{0};
  std::atomic<uint64_t> watchdog_withheld_{0};
  std::atomic<uint64_t> probe_failures_[kDependencyCount] = {};
};

}  // namespace klined
