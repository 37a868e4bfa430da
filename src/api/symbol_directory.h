// The known-symbol set, shared by the API threads: the penetration defence. A request naming
// a symbol that is not in it is answered -1121 from memory, with no Redis or MySQL query.
//
// One refresher (ApiServer's api-sym thread) re-reads PREFIX:symbols every
// api.symbols_refresh_ms and publishes an immutable snapshot; readers take a shared_ptr to the
// current one (the mutex guards only the pointer copy, never I/O). A symbol whose first trade
// was just applied is unknown for at most one refresh period.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace klined::api {

struct SymbolSnapshot {
  std::vector<std::string> sorted;  // ascending, unique
  bool loaded = false;              // false until the first successful read

  bool Contains(std::string_view s) const {
    auto it = std::lower_bound(sorted.begin(), sorted.end(), s);
    return it != sorted.end() && *it == s;
  }
};

class SymbolDirectory {
 public:
  SymbolDirectory() : snapshot_(std::make_shared<const SymbolSnapshot>()) {}

  // Any thread.
  std::shared_ptr<const SymbolSnapshot> Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return snapshot_;
  }
  // The refresher. `sorted` must be ascending and unique.
  void Publish(std::vector<std::string> sorted) {
    auto next = std::make_shared<SymbolSnapshot>();
    next->sorted = std::move(sorted);
    next->loaded = true;
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = std::move(next);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const SymbolSnapshot> snapshot_;
};

}  // namespace klined::api
