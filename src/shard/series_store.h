// What a shard needs from storage; implemented by io/redis (KlineStore).
//
// One instance per shard. Load, PrepareFlush and FinishFlush run on the shard's thread;
// ExecuteFlush runs on the shard's flusher thread and touches no SymbolSeries, so the shard
// keeps applying trades while a write is in flight. The store keeps one connection for each
// of the two threads.
#pragma once

#include <cstdint>
#include <memory>
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

// One write in flight: what PrepareFlush encoded, and what ExecuteFlush learned. The store's
// own subclass holds the details.
struct FlushJob {
  virtual ~FlushJob() = default;
  uint64_t seq = 0;   // the shard's processed routing sequence when the snapshot was taken
  std::string error;  // why the write failed, if it did
};

class SeriesStore {
 public:
  virtual ~SeriesStore() = default;
  // Reads the stored watermark and current candles of each series and Restores it. False
  // (nothing restored) if storage is unreachable.
  virtual bool Load(std::span<SymbolSeries* const> series) = 0;
  // Shard thread: snapshots (BeginFlush) and encodes every series; may read storage first
  // for late trades. Null, with nothing begun, if storage is unreachable.
  virtual std::unique_ptr<FlushJob> PrepareFlush(std::span<SymbolSeries* const> series) = 0;
  // Flusher thread: performs the write.
  virtual void ExecuteFlush(FlushJob* job) = 0;
  // Shard thread: commits (CommitFlush) each series written and aborts the others, which
  // stay dirty and are retried by the next flush (writes are absolute).
  virtual FlushReport FinishFlush(FlushJob* job) = 0;
  // Synchronous flush, for tests and tools: Prepare + Execute + Finish on one thread.
  FlushReport Flush(std::span<SymbolSeries* const> series) {
    std::unique_ptr<FlushJob> job = PrepareFlush(series);
    if (job == nullptr) {
      FlushReport r;
      r.failed = series.size();
      r.ok = series.empty();
      return r;
    }
    ExecuteFlush(job.get());
    return FinishFlush(job.get());
  }
  // The shard-thread connection's last error (loads, late-trade reads).
  virtual std::string LastError() const = 0;
  // Any thread (metrics): failed calls and reconnects over the store's connections.
  virtual uint64_t Errors() const = 0;
  virtual uint64_t Reconnects() const = 0;
};

}  // namespace klined
