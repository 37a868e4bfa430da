// The two clocks klined uses: monotonic for timeouts, backoffs and leases; wall for trade
// times and bucket boundaries.
#pragma once

#include <chrono>
#include <cstdint>

namespace klined {

inline int64_t MonotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace klined
