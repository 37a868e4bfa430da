// Counters written by exactly one thread and read by the metrics scraper.
#pragma once

#include <atomic>
#include <cstdint>

namespace klined {

// A relaxed load+store pair instead of fetch_add: the owning thread is the only writer, so
// no locked instruction is needed on the hot path, and readers on other threads see a
// recent value (metrics are sums of these at scrape time).
class OwnedCounter {
 public:
  void Add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Set(uint64_t n) { v_.store(n, std::memory_order_relaxed); }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

}  // namespace klined
