// The one function that maps a symbol to its shard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace klined {

// FNV-1a: stable across processes and versions (never std::hash), so every instance and
// every restart agrees on which shard owns a symbol.
inline size_t ShardOf(std::string_view symbol, size_t shard_count) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : symbol) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return static_cast<size_t>(h % shard_count);
}

}  // namespace klined
