#include "jobs/timer_loop.h"

#include "base/clock.h"
#include "base/thread_name.h"

#include <algorithm>
#include <chrono>

#include "base/log.h"

namespace klined {
namespace {

constexpr int64_t kRetryMs = 50;      // an incomplete or conflicting rollover is retried this soon
constexpr int64_t kMaxSleepMs = 100;  // upper bound on one wait, keeps Stop() and clocks honest

}  // namespace

int64_t TimerLoop::LatestBoundary(const SeriesLayout& layout, int64_t now_ms) {
  int64_t latest = INT64_MIN;
  for (Interval iv : layout.intervals) latest = std::max(latest, BucketOpen(iv, now_ms, layout.tz));
  return latest;
}

int64_t TimerLoop::NextBoundary(const SeriesLayout& layout, int64_t now_ms) {
  int64_t next = INT64_MAX;
  for (Interval iv : layout.intervals) {
    next = std::min(next, NextBucketOpen(iv, BucketOpen(iv, now_ms, layout.tz), layout.tz));
  }
  return next;
}

namespace {
cluster::TopologyOptions RedisOf(const TimerLoopOptions& o) {
  return o.topology != nullptr ? o.topology->options()
                               : cluster::SingleNode(o.redis, o.key_prefix + ":wait");
}
}  // namespace

TimerLoop::TimerLoop(TimerLoopOptions options, OnActive on_active)
    : options_(std::move(options)),
      grace_ms_(options_.rollover_grace_ms),
      on_active_(std::move(on_active)),
      lease_(RedisOf(options_), options_.key_prefix, options_.lease_ttl_ms, &lease_stats_),
      own_topology_(options_.topology != nullptr
                        ? nullptr
                        : std::make_unique<cluster::Topology>(RedisOf(options_))),
      router_(options_.topology != nullptr ? options_.topology : own_topology_.get()),
      rollover_(&router_, options_.key_prefix, options_.layout, &rollover_stats_),
      trim_(&router_, options_.key_prefix, options_.layout, options_.history_limit,
            &trim_stats_) {
  trim_.set_retire_idle_after_ms(options_.retire_idle_after_ms);
}

TimerLoop::~TimerLoop() { Stop(); }

void TimerLoop::Start() {
  stop_.store(false);
  thread_ = std::thread([this] {
    NameThisThread("timer");
    Run();
  });
}

void TimerLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TimerLoop::SleepMs(int64_t ms) {
  if (ms <= 0) return;
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stop_.load(); });
}

void TimerLoop::SetActive(bool holding) {
  if (holding == active_.load(std::memory_order_relaxed)) return;
  active_.store(holding, std::memory_order_relaxed);
  LOG(kInfo, holding ? "timer.active" : "timer.standby", "epoch=" << lease_.epoch());
  if (on_active_) {
    on_active_(holding, holding ? lease_.token() : std::string(), holding ? lease_.epoch() : 0);
  }
}

bool TimerLoop::StillHolding(const std::string& fence) {
  if (stop_.load(std::memory_order_relaxed)) return false;
  const bool holding = lease_.Poll();
  if (!holding) SetActive(false);
  return holding && lease_.token() == fence;
}

void TimerLoop::Run() {
  int64_t next_rollover = 0;    // wall ms; 0 = at once
  int64_t last_complete = -1;   // wall `now` of the last complete rollover; -1: sweep all
  int64_t next_full_sweep = 0;  // monotonic ms
  int64_t next_trim = 0;        // monotonic ms
  while (!stop_.load()) {
    const bool holding = lease_.Poll();
    // A new epoch while active means the lease was lost and re-acquired in between (e.g. the
    // process was paused past its deadline): step down and up again, so on_active sees it.
    if (active_.load(std::memory_order_relaxed) && (!holding || lease_.epoch() != active_epoch_)) {
      SetActive(false);
    }
    if (holding && !active_.load(std::memory_order_relaxed)) {
      active_epoch_ = lease_.epoch();
      SetActive(true);
      next_rollover = 0;   // catch up on whatever the previous holder left:
      last_complete = -1;  // a full sweep first
      next_trim = Lease::NowMs() + options_.trim_interval_ms / 2;
    }
    if (holding && lease_.Holding()) {
      // The jobs' scripts fence with the epoch (kFence); the lease itself is judged by token.
      const std::string token = lease_.token();
      const std::string fence = std::to_string(lease_.epoch());
      auto still_holding = [this, &token] { return StillHolding(token); };
      const int64_t now = WallMs();
      if (now >= next_rollover) {
        // Steady state checks only the intervals with a boundary since the last complete run
        // (at the latest the boundary just passed, so the follow-up run re-checks them); a
        // full sweep of every interval runs after acquiring the lease, after failures, and
        // every full_sweep_interval_ms (a symbol first flushed with a trade from an older
        // bucket of a long interval, e.g. consumer lag).
        const bool full = last_complete < 0 || Lease::NowMs() >= next_full_sweep;
        const int64_t latest = LatestBoundary(*options_.layout, now);
        const int64_t since = full ? -1 : std::min(last_complete, latest - 1);
        const RolloverResult r = rollover_.RunOnce(now, fence, still_holding, since);
        const bool done = r.complete && r.unresolved == 0 && r.truncated == 0;
        if (done) {
          last_complete = now;
          if (full) next_full_sweep = Lease::NowMs() + options_.full_sweep_interval_ms;
        }
        // A follow-up at latest + grace/2 catches shard flushes that landed after this run
        // with a candle of the bucket before the boundary (a symbol new to Redis); then the
        // next boundary.
        const int64_t follow_up = latest + grace_ms_.load(std::memory_order_relaxed) / 2;
        next_rollover = now < follow_up
                            ? follow_up
                            : NextBoundary(*options_.layout, now) + options_.rollover_delay_ms;
        if (!done) next_rollover = std::min(next_rollover, WallMs() + kRetryMs);
        if (r.symbols_rolled > 0 || !r.complete) {
          LOG(kDebug, "rollover.run",
              "full=" << full << " complete=" << r.complete << " symbols=" << r.symbols
                      << " rolled=" << r.symbols_rolled << " closed=" << r.candles_closed
                      << " conflicts=" << r.conflicts << " unresolved=" << r.unresolved
                      << " truncated=" << r.truncated);
        }
      }
      if (lease_.Holding() && lease_.token() == token && Lease::NowMs() >= next_trim) {
        // Trimming yields to the next rollover (a pass may take a while with many symbols):
        // interrupted, it resumes after the rollover where it stopped.
        const TrimResult t = trim_.RunOnce(fence, [&] {
          return StillHolding(token) && WallMs() < next_rollover - options_.rollover_delay_ms;
        });
        next_trim = Lease::NowMs() + (t.complete      ? options_.trim_interval_ms
                                      : t.interrupted ? 0
                                                      : 1000);
      }
    }
    int64_t wait = std::min(kMaxSleepMs, lease_.MsUntilNextPoll());
    if (lease_.Holding()) {
      wait = std::min(wait, next_rollover - WallMs());
      wait = std::min(wait, next_trim - Lease::NowMs());
    }
    SleepMs(std::max<int64_t>(wait, 1));
  }
  SetActive(false);
  lease_.Release();
}

}  // namespace klined
