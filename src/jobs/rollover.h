// Rollover: closes every known symbol's stale current candles at bucket boundaries, so idle
// symbols get their gapless empty candles whether or not trades flow.
//
// DESIGN
// Runs on the timer thread of the lease holder, over the jobs' own cluster::Router (one Redis or
// the cluster's primaries; a symbol's calls go to the node serving its slot). A run walks
// PREFIX:symbols with SSCAN in chunks. Per chunk, two paths:
//  - Step (the common case, every boundary): one pipelined EVALSHA of ROLLOVER_STEP per
//    symbol, no prior read. For each interval whose stored current candle is exactly one
//    bucket behind now, the script closes it textually (x=true) and sets now's empty candle
//    from a C++-built template carrying its close textually. No arithmetic in Lua, no read
//    round trip, and a few hundred bytes per symbol instead of every candle twice: this is
//    what makes 10k symbols x 15 intervals fit in well under a second. Atomic per symbol,
//    so there is no window for a shard flush to race.
//  - Planned (gaps: the current candle is more than one bucket behind, e.g. after downtime;
//    only the symbols the step reported): one pipelined MGET of their current candles,
//    planning in C++ (PlanRollover: exact JSON from Candle), one pipelined EVALSHA of
//    ROLLOVER per symbol. That script is a compare-and-set per interval: if a shard flushed
//    that interval in between, the shard's write wins and the symbol is re-read and re-planned
//    (a few times within the run; anything still conflicting is left to the next run).
// Both write absolute candles conditioned on what is stored, so the job is idempotent: a
// second run finds nothing older than the current bucket. A shard flush
// racing a rollover is handled by the FLUSH script (storage ahead of the shard: its candle
// goes to history and its close is re-carried), so neither undoes the other.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/counter.h"
#include "io/redis/key_layout.h"
#include "io/redis/cluster/router.h"
#include "klined/series.h"

namespace klined {

struct RolloverStats {
  OwnedCounter last_run_ms;     // gauge: duration of the last completed run
  OwnedCounter runs;            // completed runs
  OwnedCounter candles_closed;  // closed candles written to history (old current + empties)
  OwnedCounter symbols_rolled;  // symbol rollovers written (counted once per path and run)
  OwnedCounter cas_conflicts;   // intervals a shard flush changed between read and write
  OwnedCounter failures;        // runs cut short (Redis error, lease lost)
  OwnedCounter skipped;         // (symbol, interval)s left: a key of another type, an error reply
};

// Closed candles one run writes per (symbol, interval), bounding the memory and the Lua call
// of a symbol that has to catch up after a long outage (1,000 x ~250 bytes).
inline constexpr int64_t kMaxClosedPerRun = 1000;

// What a rollover writes for one interval of one symbol.
struct IntervalRoll {
  std::vector<std::string> closed;   // x=true JSON, oldest first: the old current, then empties
  std::vector<int64_t> closed_open;  // their open times
  std::string next_current;          // x=false JSON of the (empty) candle opening at now's bucket
};

// Pure planning: given the stored current candle JSON of `iv`, returns true and fills *out if
// its bucket is older than BucketOpen(iv, now_ms): the stored candle closed, an empty candle
// (carrying its close) for every bucket after it up to now's, and the new current. False if
// nothing is due (current bucket, or a candle from the future) or the JSON does not parse
// (*bad set; storage is left alone).
// At most max_closed candles are planned: after a long outage (1s candles, days) the series
// is filled over several runs, the new current being the bucket after the last one filled
// (still gapless); *truncated says so.
bool PlanRollover(std::string_view stored_json, std::string_view symbol, Interval iv,
                  int64_t now_ms, UtcOffset tz, IntervalRoll* out, bool* bad,
                  int64_t max_closed = kMaxClosedPerRun, bool* truncated = nullptr);

struct RolloverResult {
  bool complete = false;  // every symbol read and handled (conflicts may remain)
  uint64_t symbols = 0;   // symbols examined
  uint64_t symbols_rolled = 0;
  uint64_t candles_closed = 0;
  uint64_t conflicts = 0;    // CAS conflicts seen (each retried)
  uint64_t unresolved = 0;   // intervals still conflicting at the end (next run retries)
  uint64_t truncated = 0;    // intervals filled only part of the way (next run goes on)
  uint64_t bad_candles = 0;  // unparsable stored candles, skipped
  uint64_t bad_keys = 0;     // (symbol, interval)s whose history or pending key has another type
  uint64_t errors = 0;       // symbols whose call Redis answered with an error (skipped)
};

class RolloverJob {
 public:
  // router: the timer thread's (not owned). layout: the configured intervals.
  RolloverJob(cluster::Router* router, std::string key_prefix, const SeriesLayout* layout,
              RolloverStats* stats);

  // Rolls every known symbol to the bucket of now_ms (wall clock, ms UTC). `fence` is the
  // lease holder's fencing epoch as a decimal string: a symbol that has seen a newer one is
  // left alone and the run stops (kFence in job_scripts.h; "" = unfenced, for tests and
  // tools). The symbols that got closed candles join PREFIX:pending after their calls.
  // `may_continue` is asked before each chunk's writes (the timer loop renews the lease there and
  // answers Holding()); false stops the run (complete = false). since_ms >= 0 limits the step path
  // to the intervals with a bucket boundary in (since_ms, now_ms]: in steady state the others
  // cannot be behind, and skipping them is what keeps a minute boundary cheap (one interval instead
  // of fifteen per symbol). Symbols the step finds behind by more than one bucket still get the
  // planned path for all their intervals. since_ms < 0 checks every interval (the full sweep).
  RolloverResult RunOnce(int64_t now_ms, std::string_view fence = {},
                         const std::function<bool()>& may_continue = {}, int64_t since_ms = -1);

  // Symbols per SSCAN chunk (and per pipeline).
  void set_chunk(size_t n) { chunk_ = n; }

 private:
  // One chunk, step path. Fills *planned with the symbols that need the planned path.
  // False on a Redis error or when fenced.
  bool StepChunk(const std::vector<std::string>& symbols, int64_t now_ms, int64_t since_ms,
                 std::string_view fence, RolloverResult* result, std::vector<std::string>* planned);
  // Planned path: read, plan, write, retry conflicts. False on a Redis error or when fenced.
  bool RollChunk(const std::vector<std::string>& symbols, int64_t now_ms, std::string_view fence,
                 RolloverResult* result);

  // SADD PREFIX:pending of the symbols in unindexed_ (after their calls were answered); left
  // for the next chunk or run if the connection fails.
  void AddPending();

  cluster::Router* router_;
  cluster::Batch batch_;
  KeyLayout keys_;
  const SeriesLayout* layout_;
  RolloverStats* stats_;
  std::vector<std::string> unindexed_;  // rolled symbols not yet in PREFIX:pending
  size_t script_;                       // ROLLOVER
  size_t step_script_;                  // ROLLOVER_STEP
  size_t chunk_ = 1000;
  std::vector<std::string_view> args_;
  std::deque<std::string> nums_;  // decimal strings args_ points into (stable addresses)
  // Appends numkeys and every key a script on `sym` may touch (KeyLayout::ScriptKeys) to
  // args_, the strings kept in nums_.
  void DeclareKeys(std::string_view sym);
};

}  // namespace klined
