#include "shard/shard.h"

#include <absl/container/flat_hash_set.h>

#include <algorithm>
#include <cassert>
#include <chrono>

#include "base/clock.h"
#include "base/log.h"
#include "base/thread_name.h"

namespace klined {
namespace {

constexpr size_t kDequeueBulk = 16;
constexpr int64_t kIdleWaitMs = 20;
// A symbol whose flush calls Redis answers with an error this many times in a row, while
// other symbols' calls succeed, is quarantined: its trades must not hold back every commit.
constexpr int kMaxFlushErrors = 3;
// A trade that would gap-fill more empty candles than this (in the finest interval) first
// re-reads its symbol: the rollover has most likely moved storage on while the symbol was
// idle, and gap-filling in memory what storage already has would cost work and a FLUSH call
// proportional to the idle time (a day at 1s: 86,400 candles). So what one trade costs is
// bounded by what storage lacks.
constexpr int64_t kRefreshGap = 256;

int64_t WallMinute() {
  return std::chrono::duration_cast<std::chrono::minutes>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Debian's abseil is built with its own string_view type.
absl::string_view Key(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

const char* CorruptKindName(CorruptKind k) {
  switch (k) {
    case CorruptKind::kWatermark:
      return "watermark";
    case CorruptKind::kMarks:
      return "marks";
    case CorruptKind::kCurrent:
      return "current";
    case CorruptKind::kHistory:
      return "history";
    case CorruptKind::kType:
      return "type";
    case CorruptKind::kTicker:
      return "ticker";
  }
  return "unknown";
}

Shard::Shard(size_t index, const SeriesLayout* layout, ShardOptions options,
             std::unique_ptr<SeriesStore> store)
    : index_(index),
      layout_(layout),
      options_(std::move(options)),
      store_(std::move(store)),
      flush_interval_ms_(options_.flush_interval_ms),
      idle_release_ms_(options_.idle_release_ms) {
  options_.max_batches = std::max<size_t>(options_.max_batches, 2);
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
  if (!free_.try_dequeue(b)) {
    if (pool_.size() >= options_.max_batches) return nullptr;
    pool_.push_back(std::make_unique<ShardBatch>());
    b = pool_.back().get();
  }
  b->trades.clear();
  b->evict = false;
  b->discard = false;
  b->next = 0;
  return b;
}

void Shard::Submit(ShardBatch* batch) { inbox_.enqueue(batch); }

void Shard::Release(ShardBatch* batch) { free_.enqueue(batch); }

void Shard::TakeDeadLetters(std::vector<DeadLetter>* out) {
  DeadLetter d;
  while (dead_letters_.try_dequeue(d)) out->push_back(d);
}

void Shard::DeadLetterTrade(const Trade& t, RejectReason reason) {
  if (dead_letters_.size_approx() >= options_.max_dead_letters ||
      !dead_letters_.enqueue(DeadLetter{t, reason})) {
    stats_.dead_letters_dropped.Add();
    LOG_RATE(kError, "shard.dead_letter_dropped",
             "shard=" << index_ << " symbol=" << t.symbol.view() << " id=" << t.id << " reason="
                      << RejectReasonName(reason) << " detail=\"dead-letter queue full\"");
  }
}

void Shard::ReleaseHeld(size_t n) {
  n = std::min(n, held_.size());
  for (size_t i = 0; i < n; ++i) {
    held_trades_ -= held_.front()->trades.size();
    Release(held_.front());
    held_.pop_front();
  }
  stats_.held_trades.Set(held_trades_);
}

void Shard::Forget(SymbolSeries* s) {
  std::erase(dirty_, s);
  std::erase(reload_pending_, s);
  series_.erase(Key(s->symbol().view()));  // frees s
  stats_.symbols.Set(series_.size());
}

void Shard::QuarantineSymbol(std::string_view symbol, std::string_view why) {
  const bool fresh = !quarantined_.contains(Key(symbol));
  quarantined_[Key(symbol)] = MonotonicMs() + options_.quarantine_retry_ms;
  stats_.quarantined.Set(quarantined_.size());
  if (fresh) {
    stats_.quarantines.Add();
    LOG(kError, "shard.quarantine",
        "shard=" << index_ << " symbol=" << symbol << " reason=\"" << why
                 << "\" detail=\"its trades are dead-lettered (store_corrupt) until its stored "
                    "state loads; retried every "
                 << options_.quarantine_retry_ms << " ms\"");
  }
}

void Shard::Quarantine(SymbolSeries* s, std::string_view why) {
  // What storage does not have of s: the held trades above what its last confirmed write
  // (or its load) recorded for their source.
  const SourceMarks& stored = s->stored_marks();
  for (const ShardBatch* b : held_) {
    for (const Trade& t : b->trades) {
      if (t.symbol == s->symbol() && t.id > stored.Of(t.source)) {
        stats_.trades_store_corrupt.Add();
        DeadLetterTrade(t, RejectReason::kStoreCorrupt);
      }
    }
  }
  const std::string symbol(s->symbol().view());
  Forget(s);
  QuarantineSymbol(symbol, why);
}

namespace {
bool HoldsNoCandle(SymbolSeries* s) {
  for (size_t i = 0; i < s->interval_count(); ++i) {
    if (s->current(i) != nullptr) return false;
  }
  return true;
}
}  // namespace

Shard::ReloadResult Shard::Reload(SymbolSeries* old, const FlushReport::Corrupt* skip,
                                  std::span<const Trade> also, SymbolSeries** fresh_out) {
  if (fresh_out != nullptr) *fresh_out = nullptr;
  auto fresh = std::make_unique<SymbolSeries>(layout_, old->symbol());
  SymbolSeries* const s = fresh.get();
  std::vector<LoadStatus> status;
  if (!store_->Load(std::span<SymbolSeries* const>(&s, 1), &status)) {
    return ReloadResult::kUnreachable;
  }
  if (status[0] == LoadStatus::kCorrupt) {
    // What `also` applied of it is unconfirmed too: dead-lettered with its held trades.
    for (const Trade& t : also) {
      if (t.symbol == old->symbol() && t.id > old->stored_marks().Of(t.source)) {
        stats_.trades_store_corrupt.Add();
        DeadLetterTrade(t, RejectReason::kStoreCorrupt);
      }
    }
    Quarantine(old, "stored state unreadable at reload");
    return ReloadResult::kQuarantined;
  }
  if (!old->storage_stamp().empty() && s->storage_stamp().empty() && s->watermark() == 0 &&
      HoldsNoCandle(s)) {
    // Storage lost the symbol this shard last matched (FLUSHALL, a restart without
    // persistence, a failover to an empty node): never a fresh start. What memory holds (every
    // trade applied, confirmed or not) is written back whole by the next flush; closed
    // candles already written are gone from Redis and come back from MySQL: the persistence
    // worker restores the symbols in PREFIX:restore.
    stats_.redis_data_loss.Add();
    LOG_RATE(kError, "shard.redis_data_loss",
             "shard=" << index_ << " symbol=" << old->symbol().view()
                      << " detail=\"Redis no longer holds this symbol's state; writing back what "
                         "memory holds (current candles, watermarks, ticker); its history "
                         "comes back from MySQL (restore requested)\"");
    store_->RequestRestore(old->symbol().view());
    old->set_storage_stamp("");
    old->MarkDirty();
    std::erase(reload_pending_, old);
    if (std::find(dirty_.begin(), dirty_.end(), old) == dirty_.end()) dirty_.push_back(old);
    if (fresh_out != nullptr) *fresh_out = old;
    return ReloadResult::kReloaded;
  }
  std::erase(dirty_, old);
  std::erase(reload_pending_, old);
  s->set_touched_ms(old->touched_ms());
  series_[Key(s->symbol().view())] = std::move(fresh);  // frees old
  auto replay = [&](const Trade& t) {
    if (!(t.symbol == s->symbol())) return;
    if (skip != nullptr && skip->slot >= 0 &&
        BucketOpen(layout_->intervals[static_cast<size_t>(skip->slot)], t.time_ms, layout_->tz) ==
            skip->open) {
      stats_.trades_store_corrupt.Add();
      DeadLetterTrade(t, RejectReason::kStoreCorrupt);
      return;
    }
    ApplyTrade(s, t, /*replay=*/true);
  };
  for (const ShardBatch* b : held_) {
    for (const Trade& t : b->trades) replay(t);
  }
  for (const Trade& t : also) replay(t);
  if (s->dirty() && std::find(dirty_.begin(), dirty_.end(), s) == dirty_.end()) {
    dirty_.push_back(s);
  }
  if (fresh_out != nullptr) *fresh_out = s;
  return ReloadResult::kReloaded;
}

bool Shard::LoadNewSymbols(const ShardBatch& batch) {
  loading_.clear();
  std::vector<SymbolSeries*> raw;
  absl::flat_hash_set<absl::string_view> queued;  // views into the batch's trades
  const int64_t now = MonotonicMs();
  for (size_t i = batch.next; i < batch.trades.size(); ++i) {
    const Trade& t = batch.trades[i];
    const std::string_view sym = t.symbol.view();
    if (series_.contains(Key(sym))) continue;
    if (auto q = quarantined_.find(Key(sym)); q != quarantined_.end() && now < q->second) {
      continue;  // its trades are dead-lettered below until the retry is due
    }
    if (!queued.insert(Key(sym)).second) continue;
    loading_.push_back(std::make_unique<SymbolSeries>(layout_, t.symbol));
    raw.push_back(loading_.back().get());
  }
  if (loading_.empty()) return true;
  std::vector<LoadStatus> status;
  if (!store_->Load(raw, &status)) {
    LOG_RATE(kWarn, "shard.load_failed",
             "shard=" << index_ << " symbols=" << raw.size() << " error=\"" << store_->LastError()
                      << "\"");
    return false;
  }
  for (size_t k = 0; k < loading_.size(); ++k) {
    std::string key(loading_[k]->symbol().view());
    if (status[k] == LoadStatus::kCorrupt) {
      QuarantineSymbol(key, "stored state unreadable");
      continue;
    }
    stats_.loads.Add();
    loading_[k]->set_touched_ms(now);
    if (quarantined_.erase(Key(key)) > 0) {
      stats_.quarantined.Set(quarantined_.size());
      LOG(kInfo, "shard.quarantine_lifted", "shard=" << index_ << " symbol=" << key);
    }
    series_.emplace(std::move(key), std::move(loading_[k]));
  }
  stats_.symbols.Set(series_.size());
  loading_.clear();
  return true;
}

void Shard::ApplyTrade(SymbolSeries* s, const Trade& t, bool replay) {
  const bool was_dirty = s->dirty();
  const TradeId watermark = s->watermark();
  const SymbolSeries::ApplyResult r = s->Apply(t);
  if (r.out_of_order) {
    stats_.trades_out_of_order.Add();
    LOG_RATE(kWarn, "trade.out_of_order",
             "symbol=" << t.symbol.view() << " id=" << t.id << " partition=" << t.source
                       << " watermark=" << watermark << " partitions=\"" << FormatMarks(s->marks())
                       << "\" applied=" << (r.outcome == SymbolSeries::Outcome::kApplied)
                       << " detail=\"one symbol's trades must come from one partition in id "
                          "order (producers key by symbol)\"");
  }
  switch (r.outcome) {
    case SymbolSeries::Outcome::kApplied:
      if (replay) {
        stats_.trades_reapplied.Add();
      } else {
        stats_.trades_applied.Add();
      }
      if (r.late_intervals != 0) stats_.late_queued.Add(r.late_intervals);
      break;
    case SymbolSeries::Outcome::kDuplicate:
      if (!replay) stats_.trades_duplicate.Add();
      break;
    case SymbolSeries::Outcome::kOutOfOrder:
      // At or below its partition's watermark and never applied: after a restart it could
      // not be told from a replay, so it is not applied at all; a person gets it.
      stats_.trades_reordered.Add();
      DeadLetterTrade(t, RejectReason::kOutOfOrder);
      break;
    case SymbolSeries::Outcome::kOutOfRange:
      if (!replay) stats_.trades_out_of_range.Add();
      LOG_RATE(
          kWarn, "trade.out_of_range",
          "symbol=" << t.symbol.view() << " id=" << t.id
                    << " reason=out_of_range detail=\"candle sum would pass 20 integer digits\"");
      break;
    case SymbolSeries::Outcome::kGapTooLarge:
      if (!replay) stats_.trades_out_of_range.Add();
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
  const int64_t now = MonotonicMs();
  const std::span<const Trade> trades(batch->trades);
  for (; batch->next < trades.size(); ++batch->next) {
    const Trade& t = trades[batch->next];
    auto it = series_.find(Key(t.symbol.view()));
    if (it == series_.end()) {  // quarantined
      stats_.trades_store_corrupt.Add();
      DeadLetterTrade(t, RejectReason::kStoreCorrupt);
      continue;
    }
    SymbolSeries* s = it->second.get();
    if (s->GapBefore(t) > kRefreshGap) {
      // Far past the symbol's current bucket: read what storage has reached first (not while
      // a write of it is in flight: the batch waits for it to finish).
      if (s->in_flight()) return false;
      SymbolSeries* fresh = nullptr;
      switch (Reload(s, nullptr, trades.first(batch->next), &fresh)) {
        case ReloadResult::kReloaded:
          stats_.refreshes.Add();
          s = fresh;
          break;
        case ReloadResult::kQuarantined:
          stats_.trades_store_corrupt.Add();
          DeadLetterTrade(t, RejectReason::kStoreCorrupt);
          continue;
        case ReloadResult::kUnreachable:
          break;  // gap-filled in memory then, as storage may lack it too
      }
    }
    s->set_touched_ms(now);
    ApplyTrade(s, t, /*replay=*/false);
  }
  processed_seq_ = batch->seq;
  if (batch->evict && batch->discard) {
    // The assignment was lost: what is not in Redis was never committed either, so the
    // partitions' next owner replays it. Forget it all.
    dirty_.clear();
    reload_pending_.clear();
    series_.clear();
    quarantined_.clear();
    stats_.symbols.Set(0);
    stats_.quarantined.Set(0);
    ReleaseHeld(held_.size());
    flushed_seq_.store(processed_seq_, std::memory_order_release);
  } else if (batch->evict) {
    evict_pending_ = true;
  }
  return true;
}

void Shard::StartFlush() {
  assert(IsShardThread() && in_flight_ == nullptr);
  // Symbols whose reload waited for Redis go first: their stamps are stale until then.
  while (!reload_pending_.empty()) {
    if (Reload(reload_pending_.front()) == ReloadResult::kUnreachable) {
      stats_.flush_failures.Add();
      LOG_RATE(kWarn, "shard.reload_failed",
               "shard=" << index_ << " pending=" << reload_pending_.size() << " error=\""
                        << store_->LastError() << "\"");
      return;
    }
  }
  if (dirty_.empty() && !unconfirmed_) {
    // Nothing unwritten: everything applied so far is in Redis (an empty flush, counted).
    stats_.flushes.Add();
    ReleaseHeld(held_.size());
    flushed_seq_.store(processed_seq_, std::memory_order_release);
    if (evict_pending_) {
      series_.clear();
      quarantined_.clear();
      stats_.symbols.Set(0);
      stats_.quarantined.Set(0);
      evict_pending_ = false;
    }
    return;
  }
  stats_.dirty_symbols.Set(dirty_.size());
  closed_total_ = 0;
  late_total_ = 0;
  for (const SymbolSeries* s : dirty_) {
    closed_total_ += s->closed_count();
    late_total_ += s->late().size();
  }
  // With redis.wait_replicas, a flush counts once the replicas have it; one whose wait timed
  // out leaves the writes unconfirmed, and the next flush (even with nothing dirty) waits
  // again before any offset behind them is committed.
  std::unique_ptr<FlushJob> job = store_->PrepareFlush(dirty_);
  if (job == nullptr) {
    stats_.flush_failures.Add();
    LOG_RATE(kWarn, "shard.flush_failed",
             "shard=" << index_ << " pending=" << dirty_.size() << " error=\""
                      << store_->LastError() << "\"");
    return;
  }
  job->seq = processed_seq_;
  job->confirm = store_->WaitsForReplicas();
  held_at_snapshot_ = held_.size();
  flush_started_us_ = NowUs();
  in_flight_ = job.release();
  to_flusher_.enqueue(in_flight_);
}

void Shard::FinishFlush(FlushJob* job) {
  assert(IsShardThread() && job == in_flight_);
  in_flight_ = nullptr;
  FlushReport report = store_->FinishFlush(job);
  std::unique_ptr<FlushJob> owned(job);
  stats_.late_applied.Add(report.late_applied);
  stats_.late_not_in_redis.Add(report.late_not_in_redis);
  stats_.late_conflicts.Add(report.late_conflicts);
  stats_.flush_fast.Add(report.fast_written);
  stats_.flush_fast_missed.Add(report.fast_missed);
  stats_.trades_out_of_range.Add(report.late_out_of_range);
  stats_.flushed_symbols.Add(report.written);
  std::erase_if(dirty_, [](const SymbolSeries* s) { return !s->dirty(); });
  // Storage moved under these (another writer, or a write whose lost reply had landed):
  // read them again and re-apply what this shard holds; the next flush writes the result.
  stats_.writes_refused.Add(report.refused.size());
  size_t next = 0;
  while (next < report.refused.size()) {
    SymbolSeries* s = report.refused[next++];  // freed by a successful Reload
    LOG_RATE(kWarn, "shard.write_refused",
             "shard=" << index_ << " symbol=" << s->symbol().view()
                      << " detail=\"storage changed since this shard loaded or wrote it; "
                         "reloading and re-applying its trades\"");
    if (Reload(s) == ReloadResult::kUnreachable) {
      --next;  // Redis gone: s and the rest are reloaded before the next flush
      break;
    }
    stats_.reloads.Add();
  }
  for (; next < report.refused.size(); ++next) reload_pending_.push_back(report.refused[next]);
  for (const FlushReport::Corrupt& c : report.corrupt) {
    if (c.slot >= 0) {
      // One stored bucket is unreadable: the symbol goes on without the trades into it.
      LOG_RATE(kError, "shard.corrupt_bucket",
               "shard=" << index_ << " symbol=" << c.series->symbol().view() << " reason=\""
                        << c.why
                        << "\" detail=\"its trades into that bucket are "
                           "dead-lettered (store_corrupt)\"");
      // Unreachable: it stays dirty, and the next flush meets the bucket again.
      (void)Reload(c.series, &c);
    } else {
      Quarantine(c.series, c.why);
    }
  }
  // Error replies: for every call at once it is Redis (OOM, a replica, ...), retried like a
  // lost connection; for a few symbols in a row, those symbols are set aside.
  const bool all_errored = report.written == 0 && report.refused.empty() &&
                           report.corrupt.empty() && !report.errored.empty();
  for (SymbolSeries* s : report.errored) {
    if (all_errored) break;
    int& n = flush_errors_[Key(s->symbol().view())];
    if (++n >= kMaxFlushErrors) {
      flush_errors_.erase(Key(s->symbol().view()));
      Quarantine(s, "Redis answered its flush with an error " + std::to_string(kMaxFlushErrors) +
                        " times in a row: " + report.error);
    }
  }
  if (!report.errored.empty() || !flush_errors_.empty()) {
    for (auto it = flush_errors_.begin(); it != flush_errors_.end();) {
      auto s = series_.find(it->first);
      const bool clean = s == series_.end() || !s->second->dirty();
      if (clean) {
        flush_errors_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  if (job->confirm && job->failed_over) {
    // A node it wrote failed over before its replicas confirmed: the promoted replica may
    // lack those writes. Every series is read again (a reload re-applies the trades this
    // shard holds beyond what storage has; those are not committed) before the next flush
    // writes and confirms.
    absl::flat_hash_set<const SymbolSeries*> queued(reload_pending_.begin(), reload_pending_.end());
    size_t added = 0;
    for (const auto& [symbol, s] : series_) {
      if (queued.insert(s.get()).second) {
        reload_pending_.push_back(s.get());
        ++added;
      }
    }
    stats_.replica_wait_timeouts.Add();
    LOG(kWarn, "shard.failed_over",
        "shard=" << index_ << " reloading=" << added << " error=\"" << job->error
                 << "\" detail=\"a Redis node written since the last replica wait failed over; "
                    "every symbol is read again from the promoted node and the held trades "
                    "re-applied, offsets held until the replicas confirm\"");
    unconfirmed_ = true;
    return;
  }
  if (job->confirm) {
    // Some writes may have landed, whatever the outcome: until a wait confirms them, the next
    // flush confirms again.
    unconfirmed_ = !report.ok || !job->durable;
    if (report.ok && !job->durable) {
      stats_.replica_wait_timeouts.Add();
      LOG_RATE(kWarn, "shard.replica_wait",
               "shard=" << index_ << " replicas=" << job->replicas << " error=\"" << job->error
                        << "\" detail=\"the writes are on the primary but fewer replicas than "
                           "redis.wait_replicas acknowledged them in time; offsets are held "
                           "until they do\"");
      return;
    }
  }
  if (!report.ok && report.failed == report.fast_missed) {
    // Only FLUSH_FAST calls that met another writer's change (a rollover first, say): no
    // failure; those symbols go as FLUSH in the next flush, which releases the offsets.
    return;
  }
  if (!report.ok) {
    stats_.flush_failures.Add();
    LOG_RATE(
        kWarn, "shard.flush_failed",
        "shard=" << index_ << " written=" << report.written << " failed=" << report.failed
                 << " refused=" << report.refused.size() << " corrupt=" << report.corrupt.size()
                 << " errored=" << report.errored.size() << " conflicts=" << report.late_conflicts
                 << " error=\"" << job->error << report.error << "\"");
    return;
  }
  stats_.flushes.Add();
  const int64_t now_us = NowUs();
  stats_.last_flush_us.Set(static_cast<uint64_t>(now_us - flush_started_us_));
  stats_.flush_latency.ObserveUs(now_us - flush_started_us_);
  // Every trade applied before the snapshot is in Redis: its batches can go.
  ReleaseHeld(held_at_snapshot_);
  flushed_seq_.store(job->seq, std::memory_order_release);
  if (evict_pending_ && dirty_.empty()) {
    series_.clear();
    quarantined_.clear();
    stats_.symbols.Set(0);
    stats_.quarantined.Set(0);
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
  auto take = [this, &got](size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (got[i] == nullptr) continue;
      backlog_trades_ += got[i]->trades.size();
      backlog_.push_back(got[i]);
    }
  };
  while (true) {
    stats_.loop_heartbeat.Add();
    const auto busy_start = std::chrono::steady_clock::now();
    const bool stopping = stop_.load(std::memory_order_acquire);
    bool progressed = false;

    FlushJob* done_job = nullptr;
    if (from_flusher_.try_dequeue(done_job)) FinishFlush(done_job);

    // Applying waits while an eviction barrier waits for its flush, or while what awaits a
    // flush is at a bound (the next successful flush lowers it); taking batches also waits
    // while what is held and queued is at the trade bound. Whatever the consumer submits
    // meanwhile stays in its batches, bounded by the pool.
    auto at_bound = [this] {
      return evict_pending_ || closed_total_ > options_.max_closed_candles ||
             late_total_ > options_.max_late_trades || held_trades_ >= options_.max_pending_trades;
    };
    const bool intake = !at_bound() && held_trades_ + backlog_trades_ < options_.max_pending_trades;
    if (backlog_.empty() && intake) take(inbox_.try_dequeue_bulk(got, kDequeueBulk));
    while (!backlog_.empty() && !at_bound()) {
      ShardBatch* b = backlog_.front();
      if (!Process(b)) break;  // Redis down while loading: retry after the backoff
      backlog_.pop_front();
      backlog_trades_ -= b->trades.size();
      if (b->trades.empty() || (b->evict && b->discard)) {
        Release(b);  // nothing in it to re-apply
      } else {
        held_trades_ += b->trades.size();
        held_.push_back(b);
      }
      progressed = true;
    }
    stats_.held_trades.Set(held_trades_);
    stats_.queue_depth.Set(inbox_.size_approx() + backlog_.size());
    const bool paused = at_bound();

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
    // Symbols idle for idle_release_ms leave memory (everything of them is in Redis once they
    // are clean); their next trade loads them again. Scanned a few times per idle period, at
    // most once a minute.
    const int64_t idle_ms = idle_release_ms_.load(std::memory_order_relaxed);
    if (now >= next_idle_scan_ms_) {
      next_idle_scan_ms_ = now + std::clamp<int64_t>(idle_ms / 4, 10, 60'000);
      std::vector<SymbolSeries*> idle;
      for (auto& [sym, series] : series_) {
        if (!series->dirty() && !series->in_flight() && now - series->touched_ms() >= idle_ms) {
          idle.push_back(series.get());
        }
      }
      for (SymbolSeries* s : idle) Forget(s);
      stats_.released.Add(idle.size());
    }
    if (in_flight_ == nullptr && (now >= next_flush || evict_pending_ || (stopping && drained))) {
      // On failure the shard keeps merging in memory; Redis is retried with the connection's
      // backoff at the next interval.
      StartFlush();
      last_flush_start = MonotonicMs();
      next_flush = last_flush_start + flush_interval_ms_.load(std::memory_order_relaxed);
    }
    if (stopping) {
      const bool done = drained && dirty_.empty() && reload_pending_.empty() && !evict_pending_ &&
                        in_flight_ == nullptr;
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
        take(inbox_.wait_dequeue_bulk_timed(got, kDequeueBulk, wait_ms * 1000));
      } else if (wait_ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
      }
    }
  }
}

}  // namespace klined
