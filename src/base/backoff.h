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

  // False while waiting out the backoff.
  bool MayAttempt() const { return MonotonicMs() >= next_attempt_ms_; }
  // Returns true if this success is a reconnect (not the first connection).
  bool Succeeded() {
    backoff_ms_ = 0;
    const bool reconnect = ever_connected_;
    ever_connected_ = true;
    return reconnect;
  }
  void Failed() {
    backoff_ms_ = std::clamp(backoff_ms_ * 2, kMinMs, kMaxMs);
    next_attempt_ms_ = MonotonicMs() + backoff_ms_;
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
