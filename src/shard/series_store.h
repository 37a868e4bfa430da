// What a shard needs from storage; implemented by io/redis (KlineStore).
//
// One instance per shard, used only on that shard's thread (it owns its connection).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "klined/series.h"

namespace klined {

struct FlushReport {
  bool ok = false;     // every series written (and MarkFlushed); else see `failed`
  size_t written = 0;  // series written and marked flushed
  size_t failed = 0;   // series left dirty (connection lost, or a late-trade CAS conflict)
  uint64_t late_applied = 0;
  uint64_t late_not_in_redis = 0;  // bucket trimmed from Redis (MySQL holds it)
  uint64_t late_out_of_range = 0;  // merged sum would pass 20 integer digits
  uint64_t late_conflicts = 0;
};

class SeriesStore {
 public:
  virtual ~SeriesStore() = default;
  // Reads the stored watermark and current candles of each series and Restores it. False
  // (nothing restored) if storage is unreachable.
  virtual bool Load(std::span<SymbolSeries* const> series) = 0;
  // Writes every series and calls MarkFlushed() on each one written. A series not written
  // keeps its state and is retried by the next flush (writes are absolute).
  virtual FlushReport Flush(std::span<SymbolSeries* const> series) = 0;
  virtual std::string LastError() const = 0;
};

}  // namespace klined
