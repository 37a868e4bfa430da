// WeightLimiter: see weight_limiter.h for the design.
#include "api/weight_limiter.h"

#include <algorithm>
#include <limits>

namespace klined::api {

WeightLimiter::WeightLimiter(int limit_per_minute, size_t max_clients)
    : limit_(std::max(0, limit_per_minute)), max_clients_(std::max<size_t>(1, max_clients)) {
  entries_.reserve(std::min<size_t>(max_clients_, 1024));
}

int64_t WeightLimiter::WindowOf(int64_t now_ms) {
  return now_ms >= 0 ? now_ms / kWindowMs : -((-(now_ms + 1)) / kWindowMs) - 1;
}

int WeightLimiter::RetryAfterSeconds(int64_t now_ms) {
  const int64_t into = now_ms - WindowOf(now_ms) * kWindowMs;  // 0..59999
  return static_cast<int>((kWindowMs - into + 999) / 1000);
}

void WeightLimiter::Sweep(int64_t window) {
  swept_window_ = window;
  std::erase_if(entries_, [window](const auto& kv) { return kv.second.window != window; });
}

WeightLimiter::Result WeightLimiter::Admit(std::string_view client, int weight, int64_t now_ms) {
  const int64_t w = std::max(0, weight);
  const int64_t window = WindowOf(now_ms);
  auto it = entries_.find(client);
  if (it == entries_.end()) {
    if (entries_.size() >= max_clients_ && swept_window_ != window) Sweep(window);
    if (entries_.size() >= max_clients_) {
      ++overflows_;
      return {true, static_cast<int>(w)};
    }
    it = entries_.emplace(std::string(client), Entry{window, 0}).first;
  }
  Entry& e = it->second;
  if (e.window != window) e = Entry{window, 0};
  if (limit_ > 0 && e.used + w > limit_) return {false, static_cast<int>(e.used)};
  // Unlimited counts can grow past int: saturate what is reported (the header only).
  e.used = std::min<int64_t>(e.used + w, std::numeric_limits<int>::max());
  return {true, static_cast<int>(e.used)};
}

}  // namespace klined::api
