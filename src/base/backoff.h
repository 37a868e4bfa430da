// Reconnect pacing shared by the Redis and MySQL connections: the first failure retries at
// once, then waits double each time from 100 ms up to 5 s; a success resets it.
#pragma once

#include <algorithm>
#include <cstdint>

#include "base/clock.h"

namespace klined {

class ReconnectBackoff {
 public:
  static constexpr int64_t kMinMs = 100;
  static constexpr int64_t kMaxMs = 5000;

  enum class Attempt { kWaiting, kFailed, kConnected, kReconnected };

  // Calls connect() unless the backoff is still being waited out, and paces the next try by
  // its result. kReconnected: connected, and not for the first time.
  template <class Connect>
  Attempt Try(Connect&& connect) {
    if (MonotonicMs() < next_attempt_ms_) return Attempt::kWaiting;
    if (!connect()) {
      backoff_ms_ = std::clamp(backoff_ms_ * 2, kMinMs, kMaxMs);
      next_attempt_ms_ = MonotonicMs() + backoff_ms_;
      return Attempt::kFailed;
    }
    backoff_ms_ = 0;
    const bool reconnect = ever_connected_;
    ever_connected_ = true;
    return reconnect ? Attempt::kReconnected : Attempt::kConnected;
  }
  // A live connection dropped: the first retry may go at once.
  void Dropped() {
    if (backoff_ms_ == 0) next_attempt_ms_ = 0;
  }

 private:
  int64_t next_attempt_ms_ = 0;
  int64_t backoff_ms_ = 0;
  bool ever_connected_ = false;
};

}  // namespace klined
