// Counters written by exactly one thread and read by the metrics scraper (a base utility:
// every layer that owns a thread keeps its metrics in these).
#pragma once

#include <array>
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

namespace klined {

// A latency histogram written by one thread, read (cumulatively) at scrape time. Fixed
// bucket bounds in milliseconds; observations in microseconds.
class OwnedLatencyHistogram {
 public:
  static constexpr std::array<int64_t, 11> kBoundsMs = {1,   5,   10,   25,   50,  100,
                                                        250, 500, 1000, 2500, 5000};
  void ObserveUs(int64_t us) {
    size_t i = 0;
    while (i < kBoundsMs.size() && us > kBoundsMs[i] * 1000) ++i;
    buckets_[i].Add();  // i == size: above the last bound (+Inf only)
    count_.Add();
    sum_us_.Add(static_cast<uint64_t>(us < 0 ? 0 : us));
  }
  // Non-cumulative count of bucket i (i == kBoundsMs.size(): beyond the last bound).
  uint64_t Bucket(size_t i) const { return buckets_[i].Get(); }
  uint64_t Count() const { return count_.Get(); }
  double SumSeconds() const { return static_cast<double>(sum_us_.Get()) / 1e6; }

 private:
  std::array<OwnedCounter, kBoundsMs.size() + 1> buckets_;
  OwnedCounter count_;
  OwnedCounter sum_us_;
};

}  // namespace klined
