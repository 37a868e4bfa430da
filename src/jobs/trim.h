// Trimming: bounds each history key to redis.history_limit newest candles, never removing a
// candle MySQL does not have yet.
//
// DESIGN
// Runs on the timer thread of the lease holder (every ~10 s), over the jobs' Router: SSCAN
// of PREFIX:symbols in chunks, one pipelined EVALSHA of TRIM per symbol. The script keeps the
// `limit` newest members of each B:INTERVAL:hist and, of the older ones, removes only those
// whose "INTERVAL|open_time" field is absent from B:pending (the persistence worker deletes a
// field once MySQL has that candle). It records the newest open time removed in B:trimmed,
// which the shards' late-trade path reads to send older late trades to MySQL instead.
// A pending candle therefore stays in Redis as long as MySQL is behind, and is trimmed by a
// later run once persisted.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/counter.h"
#include "io/redis/key_layout.h"
#include "io/redis/cluster/router.h"
#include "klined/series.h"

namespace klined {

struct TrimStats {
  OwnedCounter runs;         // completed passes
  OwnedCounter removed;      // history members removed
  OwnedCounter last_run_ms;  // gauge: duration of the call that completed the last pass
  OwnedCounter failures;     // runs cut short (Redis error, lease lost)
  OwnedCounter skipped;      // symbols whose call failed (a key of another type): passed over
  // Gauges from the census after each complete pass (the lease holder's; 0 elsewhere).
  OwnedCounter active_symbols;   // PREFIX:symbols: rolled over, persisted, trimmed
  OwnedCounter retired_symbols;  // PREFIX:retired and not traded since
  OwnedCounter auto_retired;     // symbols retired by limits.retire_idle_after
};

struct TrimResult {
  bool complete = false;     // the pass reached its end
  bool interrupted = false;  // may_continue said stop (else incomplete means a Redis error)
  uint64_t symbols = 0;
  uint64_t removed = 0;
};

class TrimJob {
 public:
  // router: the timer thread's (not owned). history_limit: redis.history_limit.
  TrimJob(cluster::Router* router, std::string key_prefix, const SeriesLayout* layout,
          int64_t history_limit, TrimStats* stats);

  // Trims every known symbol's history keys. fence as in RolloverJob::RunOnce. may_continue
  // is asked before each chunk; false interrupts the pass (complete = false), and the next
  // call resumes it where it stopped (the SSCAN cursor is kept), so a pass interrupted before
  // every rollover still finishes.
  TrimResult RunOnce(std::string_view fence = {}, const std::function<bool()>& may_continue = {});

  // SIGHUP reload: any thread; the next run uses the new limit.
  void set_history_limit(int64_t limit) { limit_.store(limit, std::memory_order_relaxed); }
  int64_t history_limit() const { return limit_.load(std::memory_order_relaxed); }
  void set_chunk(size_t n) { chunk_ = n; }
  // limits.retire_idle_after (ms, 0 = off): a symbol whose watermark this job saw unchanged
  // for that long is retired (PREFIX:symbols -> PREFIX:retired, compare-and-move on the
  // watermark, fenced). Any thread (SIGHUP).
  void set_retire_idle_after_ms(int64_t ms) {
    retire_idle_ms_.store(ms, std::memory_order_relaxed);
  }

 private:
  // Counts active and retired symbols; a retired symbol that traded again (a flush added it
  // back to PREFIX:symbols) leaves PREFIX:retired. False on a Redis error.
  bool Census();
  // Retires the symbols of `members` (a chunk of the pass's scan) idle past
  // limits.retire_idle_after. False on a Redis error.
  bool RetireIdle(const std::vector<std::string>& members, std::string_view fence, int64_t idle_ms);

  cluster::Router* router_;
  cluster::Batch batch_;
  KeyLayout keys_;
  const SeriesLayout* layout_;
  std::atomic<int64_t> limit_;
  TrimStats* stats_;
  size_t script_;
  size_t chunk_ = 500;
  std::string cursor_ = "0";  // SSCAN cursor of the pass in progress (timer thread)
  size_t retire_script_ = 0;
  std::atomic<int64_t> retire_idle_ms_{0};
  // symbol -> (watermark last seen, when it was first seen at that value), timer thread. Lost
  // with the lease: a new holder starts the clocks again (retiring later, never earlier).
  std::unordered_map<std::string, std::pair<std::string, int64_t>> idle_;
};

}  // namespace klined
