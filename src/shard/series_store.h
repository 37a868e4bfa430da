// What a shard needs from storage; implemented by io/redis (KlineStore).
//
// One instance per shard. Load, PrepareFlush and FinishFlush run on the shard's thread;
// ExecuteFlush runs on the shard's flusher thread and touches no SymbolSeries, so the shard
// keeps applying trades while a write is in flight. The store keeps one connection for each
// of the two threads.
//
// Every write is a compare-and-set on what the shard last saw stored for the symbol (the
// series' storage stamp): a write that finds storage changed by anyone else is refused, and
// so is the retry of a write that landed although its reply was lost. A refused symbol is
// reloaded by the shard and its unconfirmed trades re-applied, which makes every write
// exactly-once whatever happened to earlier replies.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/counter.h"
#include "klined/series.h"

namespace klined {

// Stored values found unreadable, by what they were (klined_store_corrupt_values_total{kind}).
enum class CorruptKind : uint8_t {
  kWatermark,  // B:wm is not a number
  kMarks,      // B:wmp (per-source watermarks) does not parse
  kCurrent,    // a current candle is not a candle of its symbol and interval
  kHistory,    // a history member needed by a late trade is not a candle
  kType,       // a key holds another Redis type than klined writes there
  kTicker,     // the persisted 24h ticker state does not restore
};
inline constexpr int kCorruptKindCount = 6;
const char* CorruptKindName(CorruptKind k);

// Written on the shard thread (the store's loads and flush results), read by the metrics.
struct StoreStats {
  std::array<OwnedCounter, kCorruptKindCount> corrupt;   // unreadable values found
  std::array<OwnedCounter, kCorruptKindCount> repaired;  // of those, rebuilt from the rest
};

struct FlushReport {
  bool ok = false;     // every series written (and MarkFlushed); else see `failed`
  size_t written = 0;  // series written and marked flushed
  size_t failed = 0;   // series left dirty (connection lost, a late-trade CAS conflict, ...)
  uint64_t late_applied = 0;
  uint64_t late_not_in_redis = 0;  // bucket trimmed from Redis (MySQL holds it)
  uint64_t late_out_of_range = 0;  // merged sum would pass 20 integer digits
  uint64_t late_conflicts = 0;
  uint64_t fast_written = 0;  // series written by FLUSH_FAST (storage still held their last write)
  uint64_t fast_missed = 0;   // FLUSH_FAST found the write stamp void: left dirty, sent as FLUSH
  // Written by someone else since this shard last matched storage (or a retried write that
  // had landed): the shard reloads these and re-applies their unconfirmed trades.
  std::vector<SymbolSeries*> refused;
  // Storage holds something unreadable for these: not written.
  struct Corrupt {
    SymbolSeries* series = nullptr;
    std::string why;
    // A history member a late trade needs (slot >= 0: that interval's bucket at `open`):
    // only the trades into that bucket cannot be applied; everything else of the symbol can.
    int32_t slot = -1;
    int64_t open = 0;
  };
  std::vector<Corrupt> corrupt;
  // The script answered with an error for these (Redis refused to run it): left dirty.
  std::vector<SymbolSeries*> errored;
  std::string error;  // the first error reply, if any
};

// One write in flight: what PrepareFlush encoded, and what ExecuteFlush learned. The store's
// own subclass holds the details.
struct FlushJob {
  virtual ~FlushJob() = default;
  uint64_t seq = 0;   // the shard's processed routing sequence when the snapshot was taken
  std::string error;  // why the write failed, if it did
  // Set by the shard when the store WaitsForReplicas: after the writes, confirm that every
  // write of this connection so far reached the replicas. `durable` says whether it did
  // (false also when the connection failed); `replicas` is how many acknowledged.
  bool confirm = false;
  bool durable = true;
  int64_t replicas = -1;
  // With confirm: a node written since the last good wait failed over (it serves no slot any
  // more), so whether its writes reached the promoted replica is unknown. The shard reloads
  // every series it holds (re-applying the trades it holds, which are not committed) before
  // its next flush confirms again.
  bool failed_over = false;
};

enum class LoadStatus : uint8_t {
  kLoaded,   // restored (possibly after repairing a value from the rest)
  kCorrupt,  // storage holds something unreadable that nothing repairs: not restored
};

class SeriesStore {
 public:
  virtual ~SeriesStore() = default;
  // Reads what storage holds of each series (watermarks, current candles) and Restores it;
  // (*status)[i] says how series i went. False (nothing restored) if storage is unreachable.
  virtual bool Load(std::span<SymbolSeries* const> series, std::vector<LoadStatus>* status) = 0;
  // Shard thread: snapshots (BeginFlush) and encodes every series; may read storage first
  // for late trades. Null, with nothing begun, if storage is unreachable.
  virtual std::unique_ptr<FlushJob> PrepareFlush(std::span<SymbolSeries* const> series) = 0;
  // Flusher thread: performs the write (and, with job->confirm, waits for the replicas).
  virtual void ExecuteFlush(FlushJob* job) = 0;
  // Whether a flush counts only once replicas acknowledged it (redis.wait_replicas > 0).
  virtual bool WaitsForReplicas() const { return false; }
  // Shard thread: commits (CommitFlush) each series written and aborts the others, which
  // stay dirty and are retried by the next flush (see FlushReport for the kinds).
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
  // Load for tests and tools that expect every series loaded: false if one was not.
  bool LoadAll(std::span<SymbolSeries* const> series) {
    std::vector<LoadStatus> status;
    if (!Load(series, &status)) return false;
    for (LoadStatus s : status) {
      if (s != LoadStatus::kLoaded) return false;
    }
    return true;
  }
  // Shard thread: storage lost this symbol's state (see Shard::Reload): ask the lease
  // holder's persistence worker to restore its history from MySQL. Best effort (logged).
  virtual void RequestRestore(std::string_view symbol) = 0;
  // The shard-thread connection's last error (loads, late-trade reads).
  virtual std::string LastError() const = 0;
  // Any thread (metrics): failed calls and reconnects over the store's connections.
  virtual uint64_t Errors() const = 0;
  virtual uint64_t Reconnects() const = 0;
  virtual const StoreStats& stats() const = 0;
};

}  // namespace klined
