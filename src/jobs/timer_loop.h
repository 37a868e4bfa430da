// The timer thread: holds (or waits for) the lease and, while holding, runs the rollover at
// every bucket boundary and the trim every ~10 s.
//
// DESIGN
// One thread owns the Lease (its own topology and router) and the jobs' Router (on the
// process's topology: one Redis or the cluster's primaries); nothing else touches them. Each turn: Poll() the lease (acquire or renew as due); when Holding() changes, call
// on_active(holding) (the app wires it to PersistWorker::SetActive, so MySQL persistence
// follows the lease too). While holding, Holding() is checked right before each job and
// before each chunk of a job (the check also renews the lease when due, so a long rollover
// cannot starve renewals), and the job scripts are fenced with the lease token.
// Rollover runs at the next bucket boundary of any configured interval (wall clock) plus
// rollover_delay_ms, checking the intervals with that boundary; again at boundary +
// rollover_grace_ms/2 (shard flushes that landed after the first run); at once after acquiring
// the lease, and every full_sweep_interval_ms, checking every interval; and again within
// ~50 ms while a run is incomplete, left CAS conflicts or a long gap, so every (symbol,
// interval) is rolled well within rollover_grace_ms. Lease deadlines use the monotonic
// CLOCK_BOOTTIME (Lease::NowMs). Stop() ends the thread: jobs stop, on_active(false), the lease is
// released (compare-and-delete) so a standby takes over at once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "io/redis/cluster/router.h"
#include "jobs/lease.h"
#include "jobs/rollover.h"
#include "jobs/trim.h"
#include "klined/series.h"

namespace klined {

struct TimerLoopOptions {
  // The process's topology (not owned; outlives the loop). Null: the one Redis of `redis`.
  cluster::Topology* topology = nullptr;
  RedisOptions redis;
  std::string key_prefix = "kline";
  const SeriesLayout* layout = nullptr;  // outlives the loop
  int64_t lease_ttl_ms = 3000;
  int64_t history_limit = 1000;
  int64_t trim_interval_ms = 10000;
  int64_t retire_idle_after_ms = 0;  // limits.retire_idle_after (0 = off)
  int64_t rollover_delay_ms = 5;     // after the boundary
  int64_t rollover_grace_ms = 1000;  // rollover_grace_ms: a follow-up run at boundary + grace/2
  int64_t full_sweep_interval_ms = 10000;  // a rollover checking every interval of every symbol
};

class TimerLoop {
 public:
  // on_active(true, token, epoch) when this instance starts holding the lease (the lease's
  // token and fencing epoch, for workers that fence their writes with them), (false, "", 0)
  // when it stops; called on the timer thread. May be empty.
  using OnActive = std::function<void(bool active, const std::string& token, int64_t epoch)>;
  TimerLoop(TimerLoopOptions options, OnActive on_active);
  ~TimerLoop();  // Stop()s
  TimerLoop(const TimerLoop&) = delete;
  TimerLoop& operator=(const TimerLoop&) = delete;

  void Start();
  // Stops the jobs, calls on_active(false) if holding, releases the lease; joins the thread.
  void Stop();

  // SIGHUP: any thread.
  void SetHistoryLimit(int64_t limit) { trim_.set_history_limit(limit); }
  void SetRetireIdleAfterMs(int64_t ms) { trim_.set_retire_idle_after_ms(ms); }
  void SetRolloverGraceMs(int64_t ms) { grace_ms_.store(ms, std::memory_order_relaxed); }

  bool active() const { return active_.load(std::memory_order_relaxed); }
  // Any thread: true while the lease deadline has not passed (see Lease::HoldingFromAnyThread).
  // A worker that writes on the holder's behalf (MySQL persistence) can check it right before
  // each write, so a paused-and-resumed process stops even before on_active(false) arrives.
  bool HoldingNow() const { return lease_.HoldingFromAnyThread(); }
  const LeaseStats& lease_stats() const { return lease_stats_; }
  const RolloverStats& rollover_stats() const { return rollover_stats_; }
  const TrimStats& trim_stats() const { return trim_stats_; }

  // The wall-clock time (ms UTC) of the next bucket boundary of any interval after now_ms.
  static int64_t NextBoundary(const SeriesLayout& layout, int64_t now_ms);
  // The latest bucket boundary of any interval at or before now_ms.
  static int64_t LatestBoundary(const SeriesLayout& layout, int64_t now_ms);

 private:
  void Run();
  void SetActive(bool holding);
  // Renews the lease if due; true while holding the lease a job started under (token
  // `fence`). Asked between job chunks.
  bool StillHolding(const std::string& fence);
  void SleepMs(int64_t ms);

  TimerLoopOptions options_;
  std::atomic<int64_t> grace_ms_;  // rollover_grace_ms, reloadable
  OnActive on_active_;
  LeaseStats lease_stats_;
  RolloverStats rollover_stats_;
  TrimStats trim_stats_;
  Lease lease_;
  std::unique_ptr<cluster::Topology> own_topology_;  // when options.topology is null
  cluster::Router router_;
  RolloverJob rollover_;
  TrimJob trim_;
  std::atomic<bool> active_{false};
  int64_t active_epoch_ = 0;  // lease epoch of the current active period (timer thread)
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace klined
