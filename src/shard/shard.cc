#include "shard/shard.h"
#include "base/clock.h"
#include "base/thread_name.h"

#include <cassert>
#include <chrono>

#include "base/log.h"

namespace klined {
namespace {

constexpr size_t kDequeueBulk = 16;

int64_t WallMinute() {
  return std::chrono::duration_cast<std::chrono::minutes>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Debian's abseil is built with its own string_view type.
absl::string_view Key(std::string_view s) { return absl::string_view(s.data(), s.size()); }
constexpr int64_t kIdleWaitMs = 20;

}  // namespace

Shard::Shard(size_t index, const SeriesLayout* layout, ShardOptions options,
             std::unique_ptr<SeriesStore> store)
    : index_(index),
      layout_(layout),
      options_(std::move(options)),
      store_(std::move(store)),
      flush_interval_ms_(options_.flush_interval_ms) {
  for (size_t i = 0; i < options_.batch_pool; ++i) {
    pool_.push_back(std::make_unique<ShardBatch>());
    free_.enqueue(pool_.back().get());
  }
}

Shard::~Shard() {
  if (thread_.joinable()) Stop(MonotonicMs());
}

void Shard::Start() {
  flusher_ = std::thread([this] {
    NameThisThread("flush-" + std::to_string(index_));
    RunFlusher();
  });
  thread_ = std::thread([this] {
    NameThisThread("shard-" + std::to_string(index_));
    Run();
  });
}

void Shard::Stop(int64_t deadline_ms) {
  stop_deadline_ms_.store(deadline_ms, std::memory_order_relaxed);
  stop_.store(true, std::memory_order_release);
  inbox_.enqueue(nullptr);  // wakes the loop
  if (thread_.joinable()) thread_.join();
  flusher_stop_.store(true, std::memory_order_release);
  if (flusher_.joinable()) flusher_.join();
  // A write still unanswered at the deadline: its series are gone with us; drop the job.
  FlushJob* job = nullptr;
  while (from_flusher_.try_dequeue(job)) delete job;
  while (to_flusher_.try_dequeue(job)) delete job;
  in_flight_ = nullptr;
}

ShardBatch* Shard::AcquireBatch() {
  ShardBatch* b = nullptr;
  if (!free_.try_dequeue(b)) return nullptr;
  b->trades.clear();
  b->evict = false;
  b->discard = false;
  return b;
}

void Shard::Submit(ShardBatch* batch) { inbox_.enqueue(batch); }

void Shard::Release(ShardBatch* batch) { free_.enqueue(batch); }

bool Shard::LoadNewSymbols(const ShardBatch& batch) {
  loading_.clear();
  std::vector<SymbolSeries*> raw;
  for (const Trade& t : batch.trades) {
    const std::string_view sym = t.symbol.view();
    if (series_.contains(Key(sym))) continue;
    bool queued = false;
    for (const auto& s : loading_) queued |= s->symbol().view() == sym;
    if (queued) continue;
    loading_.push_back(std::make_unique<SymbolSeries>(layout_, t.symbol));
    raw.push_back(loading_.back().get());
  }
  if (loading_.empty()) return true;
  if (!store_->Load(raw)) {
    LOG_RATE(kWarn, "shard.load_failed",
             "shard=" << index_ << " symbols=" << raw.size() << " error=\"" << store_->LastError()
                      << "\"");
    return false;
  }
  stats_.loads.Add(loading_.size());
  for (auto& s : loading_) {
    std::string key(s->symbol().view());
    series_.emplace(std::move(key), std::move(s));
  }
  stats_.symbols.Set(series_.size());
  loading_.clear();
  return true;
}

void Shard::ApplyTrade(SymbolSeries* s, const Trade& t) {
  const bool was_dirty = s->dirty();
  const SymbolSeries::ApplyResult r = s->Apply(t);
  switch (r.outcome) {
    case SymbolSeries::Outcome::kApplied:
      stats_.trades_applied.Add();
      if (r.late_intervals != 0) stats_.late_queued.Add(r.late_intervals);
      break;
    case SymbolSeries::Outcome::kDuplicate:
      stats_.trades_duplicate.Add();
      break;
    case SymbolSeries::Outcome::kOutOfRange:
      stats_.trades_out_of_range.Add();
      LOG_RATE(
          kWarn, "trade.out_of_range",
          "symbol=" << t.symbol.view() << " id=" << t.id
                    << " reason=out_of_range detail=\"candle sum would pass 20 integer digits\"");
      break;
    case SymbolSeries::Outcome::kGapTooLarge:
      stats_.trades_out_of_range.Add();
      LOG_RATE(kWarn, "trade.out_of_range",
               "symbol=" << t.symbol.view() << " id=" << t.id << " time=" << t.time_ms
                         << " reason=out_of_range detail=\"would gap-fill more than "
                            "limits.max_gap_candles empty candles\"");
      break;
  }
  if (!was_dirty && s->dirty()) dirty_.push_back(s);
}

bool Shard::Process(ShardBatch* batch) {
  assert(IsShardThread());
  // A discard barrier frees the series: not while a write still references them.
  if (batch->evict && batch->discard && in_flight_ != nullptr) return false;
  if (!LoadNewSymbols(*batch)) return false;
  for (const Trade& t : batch->trades) {
    auto it = series_.find(Key(t.symbol.view()));
    assert(it != series_.end());
    ApplyTrade(it->second.get(), t);
  }
  processed_seq_ = batch->seq;
  if (batch->evict && batch->discard) {
    // The assignment was lost: what is not in Redis was never committed either, so the
    // partitions' next owner replays it. Forget it all.
    dirty_.clear();
    series_.clear();
    stats_.symbols.Set(0);
    flushed_seq_.store(processed_seq_, std::memory_order_release);
  } else if (batch->evict) {
    evict_pending_ = true;
  }
  return true;
}

void Shard::StartFlush() {
  assert(IsShardThread() && in_flight_ == nullptr);
  if (dirty_.empty()) {
    // Nothing unwritten: everything applied so far is in Redis (an empty flush, counted).
    stats_.flushes.Add();
    flushed_seq_.store(processed_seq_, std::memory_order_release);
    if (evict_pending_) {
      series_.clear();
      stats_.symbols.Set(0);
      evict_pending_ = false;
    }
    return;
  }
  stats_.dirty_symbols.Set(dirty_.size());
  closed_total_ = 0;
  for (const SymbolSeries* s : dirty_) closed_total_ += s->closed_count();
  std::unique_ptr<FlushJob> job = store_->PrepareFlush(dirty_);
  if (job == nullptr) {
    stats_.flush_failures.Add();
    LOG_RATE(kWarn, "shard.flush_failed",
             "shard=" << index_ << " pending=" << dirty_.size() << " error=\""
                      << store_->LastError() << "\"");
    return;
  }
  job->seq = processed_seq_;
  flush_started_us_ = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  in_flight_ = job.release();
  to_flusher_.enqueue(in_flight_);
}

void Shard::FinishFlush(FlushJob* job) {
  assert(IsShardThread() && job == in_flight_);
  in_flight_ = nullptr;
  const FlushReport report = store_->FinishFlush(job);
  std::unique_ptr<FlushJob> owned(job);
  stats_.late_applied.Add(report.late_applied);
  stats_.late_not_in_redis.Add(report.late_not_in_redis);
  stats_.late_conflicts.Add(report.late_conflicts);
  stats_.trades_out_of_range.Add(report.late_out_of_range);
  stats_.flushed_symbols.Add(report.written);
  std::erase_if(dirty_, [](const SymbolSeries* s) { return !s->dirty(); });
  if (!report.ok) {
    stats_.flush_failures.Add();
    LOG_RATE(kWarn, "shard.flush_failed",
             "shard=" << index_ << " written=" << report.written << " failed=" << report.failed
                      << " conflicts=" << report.late_conflicts << " error=\"" << job->error
                      << "\"");
    return;
  }
  stats_.flushes.Add();
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count();
  stats_.last_flush_us.Set(static_cast<uint64_t>(now_us - flush_started_us_));
  stats_.flush_latency.ObserveUs(now_us - flush_started_us_);
  // Every trade applied before the snapshot is in Redis.
  flushed_seq_.store(job->seq, std::memory_order_release);
  if (evict_pending_ && dirty_.empty()) {
    series_.clear();
    stats_.symbols.Set(0);
    evict_pending_ = false;
  }
}

// The flusher thread: performs writes the shard prepared, and wakes the shard when done.
void Shard::RunFlusher() {
  FlushJob* job = nullptr;
  while (!flusher_stop_.load(std::memory_order_acquire)) {
    if (!to_flusher_.wait_dequeue_timed(job, 50'000)) continue;
    store_->ExecuteFlush(job);
    from_flusher_.enqueue(job);
    inbox_.enqueue(nullptr);  // wake the shard
  }
}

void Shard::Run() {
  int64_t last_flush_start = MonotonicMs();
  int64_t next_flush = last_flush_start + flush_interval_ms_.load(std::memory_order_relaxed);
  ShardBatch* got[kDequeueBulk];
  while (true) {
    stats_.loop_heartbeat.Add();
    const auto busy_start = std::chrono::steady_clock::now();
    const bool stopping = stop_.load(std::memory_order_acquire);
    bool progressed = false;

    FlushJob* done_job = nullptr;
    if (from_flusher_.try_dequeue(done_job)) FinishFlush(done_job);

    // Intake, unless an eviction barrier waits for its flush or memory is at its bound.
    const bool paused = evict_pending_ || closed_total_ > options_.max_closed_candles;
    if (backlog_.empty() && !paused) {
      const size_t n = inbox_.try_dequeue_bulk(got, kDequeueBulk);
      for (size_t i = 0; i < n; ++i) {
        if (got[i] != nullptr) backlog_.push_back(got[i]);
      }
    }
    while (!backlog_.empty() && !evict_pending_) {
      ShardBatch* b = backlog_.front();
      if (!Process(b)) break;  // Redis down while loading: retry after the backoff
      backlog_.pop_front();
      Release(b);
      progressed = true;
    }
    stats_.queue_depth.Set(inbox_.size_approx() + backlog_.size());

    const int64_t now = MonotonicMs();
    const bool drained = backlog_.empty() && inbox_.size_approx() == 0;
    // Each minute the 24h ticker window slides for every symbol, traded or not: idle symbols
    // join the next flush so ticker:{SYMBOL} stays current (one call per symbol a minute).
    // A reload that shortens flush_interval_ms takes effect now, not after the old interval.
    next_flush =
        std::min(next_flush, last_flush_start + flush_interval_ms_.load(std::memory_order_relaxed));
    const int64_t minute = WallMinute();
    if (minute != ticker_minute_) {
      ticker_minute_ = minute;
      for (auto& [sym, series] : series_) {
        if (series->dirty()) continue;
        series->MarkDirty();
        dirty_.push_back(series.get());
      }
    }
    if (in_flight_ == nullptr && (now >= next_flush || evict_pending_ || (stopping && drained))) {
      // On failure the shard keeps merging in memory; Redis is retried with the connection's
      // backoff at the next interval.
      StartFlush();
      last_flush_start = MonotonicMs();
      next_flush = last_flush_start + flush_interval_ms_.load(std::memory_order_relaxed);
    }
    if (stopping) {
      const bool done = drained && dirty_.empty() && !evict_pending_ && in_flight_ == nullptr;
      if (done || MonotonicMs() >= stop_deadline_ms_.load(std::memory_order_relaxed)) break;
    }
    stats_.loop_busy.ObserveUs(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - busy_start)
                                   .count());
    if (!progressed) {
      // While a flush is in flight no other can start, and the flusher's completion wakes
      // the loop: wait for it, not for next_flush, which may be past already (waiting for
      // that was a busy loop for as long as a write took longer than the interval).
      const int64_t wait_ms = in_flight_ != nullptr
                                  ? kIdleWaitMs
                                  : std::clamp<int64_t>(next_flush - MonotonicMs(), 0, kIdleWaitMs);
      if (backlog_.empty() && (!paused || in_flight_ != nullptr)) {
        // The flusher's completion also arrives here (a null wake-up).
        const size_t n = inbox_.wait_dequeue_bulk_timed(got, kDequeueBulk, wait_ms * 1000);
        for (size_t i = 0; i < n; ++i) {
          if (got[i] != nullptr) backlog_.push_back(got[i]);
        }
      } else if (wait_ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
      }
    }
  }
}

}  // namespace klined
