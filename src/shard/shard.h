// A shard: one event-loop thread owning a disjoint set of symbols.
//
// DESIGN
// Threads: the consumer thread decodes trades and Submit()s them in ShardBatches; the shard
// thread alone touches its SymbolSeries map, its KlineStore and its Redis connection.
// Batches come from a pool per shard (bounded: options.max_batches) and go back to it once
// every trade in them is in Redis: the shard holds each batch it applied until a flush whose
// snapshot covers it is confirmed. So whatever happens to a write (a lost reply, a refusal
// because another writer moved storage, a symbol whose stored state turns out unreadable),
// the trades it carried are still at hand: a refused symbol is reloaded from Redis and its
// held trades re-applied (per-source watermarks drop what storage already has), and a symbol
// that cannot be loaded is quarantined: its unconfirmed trades are dead-lettered with reason
// store_corrupt, and its load is retried every options.quarantine_retry_ms, so it resumes
// once the value is fixed while every other symbol keeps flowing.
// Memory is bounded by the trades held and queued (options.max_pending_trades), the closed
// candles and late trades awaiting a flush (max_closed_candles, max_late_trades): past any of
// them the shard stops taking batches, the pool runs dry and the consumer stops consuming
// (back-pressure) rather than dropping. Nothing is allocated per trade.
// Every batch carries the consumer's routing sequence number; after a successful flush the
// shard publishes flushed_seq(): every trade of every batch up to it is in Redis (or was
// dead-lettered), which is what lets the consumer commit Kafka offsets.
// Flushes run every flush_interval_ms: one pipelined Lua call per dirty symbol, encoded on
// the shard thread and written by the shard's flusher thread, so the shard keeps applying
// trades while Redis works. One flush is in flight at a time; the flusher's completion wakes
// the shard, which commits (or, on failure, keeps) exactly what the write carried.
// A batch with `evict` set is a rebalance barrier: flush, then forget every symbol (the next
// owner, here or elsewhere, reloads from Redis).
#pragma once

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <concurrentqueue/concurrentqueue.h>

#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/counter.h"
#include "klined/series.h"
#include "klined/trade.h"
#include "shard/series_store.h"
#include "shard/trade_sink.h"

namespace klined {

// moodycamel's blocking queues spin 10,000 times on their semaphore before they sleep. A
// shard or flusher thread that waits does so for the next round or for Redis, milliseconds
// away, so the spin only takes a core from the threads that would end the wait: sleep at
// once (10,000 symbols on 2 cores: +9% trades/s, same-run A/B; 1,000 symbols: unchanged).
struct NoSpinQueueTraits : moodycamel::ConcurrentQueueDefaultTraits {
  static const int MAX_SEMA_SPINS = 0;
};

struct ShardOptions {
  int flush_interval_ms = 333;
  // Batches per shard, in the consumer's hands, queued or held (a full one holds 4,096
  // trades): past it the consumer waits for one.
  size_t max_batches = 512;
  size_t max_pending_trades = 1'000'000;  // trades held or queued before intake pauses
  size_t max_closed_candles = 1'000'000;  // unflushed closed candles before intake pauses
  size_t max_late_trades = 100'000;       // late (trade, interval) pairs awaiting a flush
  int64_t quarantine_retry_ms = 5000;     // a corrupt symbol's load is retried this often
  // A symbol that took no trade for this long leaves memory (reloaded on its next trade):
  // by default a day and a minute, when its 24h ticker window has emptied.
  int64_t idle_release_ms = 86'460'000;
  size_t max_dead_letters = 100'000;  // queued for the consumer; past it, dropped (counted)
};

struct ShardStats {
  OwnedCounter trades_applied;
  OwnedCounter trades_duplicate;
  OwnedCounter trades_out_of_range;
  OwnedCounter trades_out_of_order;   // broke the one-source-in-id-order rule (applied or not)
  OwnedCounter trades_reordered;      // of those, refused and dead-lettered (out_of_order)
  OwnedCounter trades_store_corrupt;  // dead-lettered because their symbol is quarantined
  OwnedCounter trades_reapplied;      // re-applied to a reloaded symbol
  OwnedCounter dead_letters_dropped;  // the dead-letter queue was full
  OwnedCounter late_queued;
  OwnedCounter late_applied;
  OwnedCounter late_not_in_redis;
  OwnedCounter late_conflicts;
  OwnedCounter flush_fast;         // symbols written by FLUSH_FAST
  OwnedCounter flush_fast_missed;  // FLUSH_FAST calls that found the write stamp void
  OwnedCounter flushes;
  OwnedCounter flush_failures;
  OwnedCounter replica_wait_timeouts;  // flushes written but not acknowledged by the replicas
  OwnedCounter redis_data_loss;        // symbols whose stored state vanished under this shard
  OwnedCounter flushed_symbols;
  OwnedCounter writes_refused;  // symbol writes refused: storage moved (another writer, a retry)
  OwnedCounter reloads;         // symbols reloaded after a refused write
  OwnedCounter quarantines;     // symbols quarantined (stored state unreadable)
  OwnedCounter quarantined;     // gauge: symbols in quarantine now
  OwnedCounter refreshes;       // symbols re-read before a trade far past their current bucket
  OwnedCounter released;        // idle symbols released from memory
  OwnedCounter symbols;
  OwnedCounter dirty_symbols;
  OwnedCounter loads;
  OwnedCounter held_trades;  // gauge: trades applied but not yet confirmed in Redis
  OwnedCounter last_flush_us;
  OwnedCounter queue_depth;
  OwnedCounter loop_heartbeat;          // bumped every loop iteration (watchdog)
  OwnedLatencyHistogram flush_latency;  // snapshot taken -> write confirmed
  OwnedLatencyHistogram loop_busy;      // work done by one loop iteration (stalls show here)
};

class Shard final : public TradeSink {
 public:
  Shard(size_t index, const SeriesLayout* layout, ShardOptions options,
        std::unique_ptr<SeriesStore> store);
  ~Shard() override;
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  void Start();
  // Processes everything submitted, flushes until it succeeds or deadline_ms (monotonic)
  // passes, and joins the thread.
  void Stop(int64_t deadline_ms);

  // TradeSink (the consumer's view of a shard).
  ShardBatch* AcquireBatch() override;
  void Submit(ShardBatch* batch) override;
  uint64_t flushed_seq() const override { return flushed_seq_.load(std::memory_order_acquire); }
  void TakeDeadLetters(std::vector<DeadLetter>* out) override;

  const ShardStats& stats() const { return stats_; }
  // Any thread (metrics).
  uint64_t redis_errors() const { return store_->Errors(); }
  uint64_t redis_reconnects() const { return store_->Reconnects(); }
  const StoreStats& store_stats() const { return store_->stats(); }
  size_t index() const { return index_; }
  void set_flush_interval_ms(int ms) { flush_interval_ms_.store(ms, std::memory_order_relaxed); }
  void set_idle_release_ms(int64_t ms) { idle_release_ms_.store(ms, std::memory_order_relaxed); }

 private:
  void Run();
  bool IsShardThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  // False if the batch could not be processed yet (Redis down while loading new symbols).
  bool Process(ShardBatch* batch);
  bool LoadNewSymbols(const ShardBatch& batch);
  // Applies t to s, counting the outcome. `replay`: a held trade re-applied after a reload.
  void ApplyTrade(SymbolSeries* s, const Trade& t, bool replay);
  // Starts a flush of every dirty symbol (or publishes progress when nothing is dirty).
  void StartFlush();
  void FinishFlush(FlushJob* job);
  void RunFlusher();
  void Release(ShardBatch* batch);
  // Every held batch is in Redis: back to the pool (the first n, or all).
  void ReleaseHeld(size_t n);
  // Storage moved under s: reads it again and re-applies s's held trades and then `also`'s
  // (trades of the batch being applied), except those into `skip` (a corrupt stored bucket:
  // dead-lettered).
  enum class ReloadResult : uint8_t {
    kReloaded,     // *fresh replaces s (freed)
    kQuarantined,  // storage is unreadable: s was quarantined (freed), *fresh is null
    kUnreachable,  // Redis is down: s is kept
  };
  ReloadResult Reload(SymbolSeries* s, const FlushReport::Corrupt* skip = nullptr,
                      std::span<const Trade> also = {}, SymbolSeries** fresh = nullptr);
  // s's stored state is unreadable: its unconfirmed held trades are dead-lettered, it leaves
  // memory, and its load is retried after quarantine_retry_ms.
  void Quarantine(SymbolSeries* s, std::string_view why);
  // The symbol cannot be loaded: its trades are dead-lettered until retry.
  void QuarantineSymbol(std::string_view symbol, std::string_view why);
  void DeadLetterTrade(const Trade& t, RejectReason reason);
  // Forgets s (erases it from series_ and dirty_; frees it).
  void Forget(SymbolSeries* s);

  const size_t index_;
  const SeriesLayout* layout_;
  ShardOptions options_;
  std::unique_ptr<SeriesStore> store_;
  std::thread thread_;
  std::thread flusher_;
  std::atomic<bool> flusher_stop_{false};
  moodycamel::BlockingConcurrentQueue<FlushJob*, NoSpinQueueTraits> to_flusher_;
  moodycamel::ConcurrentQueue<FlushJob*> from_flusher_;
  FlushJob* in_flight_ = nullptr;  // shard thread: the flush the flusher is writing
  int64_t flush_started_us_ = 0;
  size_t held_at_snapshot_ = 0;    // held_ batches the flush in flight covers
  bool unconfirmed_ = false;       // writes not yet acknowledged by redis.wait_replicas replicas
  size_t closed_total_ = 0;        // unflushed closed candles at the last flush start
  size_t late_total_ = 0;          // unflushed late trades at the last flush start
  int64_t ticker_minute_ = 0;      // wall-clock minute of the last idle-ticker refresh
  int64_t next_idle_scan_ms_ = 0;  // monotonic: the next look for symbols to release
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> stop_deadline_ms_{0};
  std::atomic<int> flush_interval_ms_;
  std::atomic<int64_t> idle_release_ms_;

  moodycamel::BlockingConcurrentQueue<ShardBatch*, NoSpinQueueTraits> inbox_;
  moodycamel::ConcurrentQueue<ShardBatch*> free_;
  // Every batch ever made (consumer thread after the constructor: AcquireBatch grows it up to
  // max_batches; freed with the shard).
  std::vector<std::unique_ptr<ShardBatch>> pool_;
  // Dead letters for the consumer (shard thread enqueues, consumer dequeues). Bounded by
  // max_dead_letters; past it, dropped and counted (the trade is counted as rejected anyway).
  moodycamel::ConcurrentQueue<DeadLetter> dead_letters_;

  // Shard-thread state.
  absl::flat_hash_map<std::string, std::unique_ptr<SymbolSeries>> series_;
  std::vector<SymbolSeries*> dirty_;
  std::vector<std::unique_ptr<SymbolSeries>> loading_;
  std::deque<ShardBatch*> backlog_;  // dequeued, not yet applied (head may wait for Redis)
  std::deque<ShardBatch*> held_;     // applied, not yet all in Redis (oldest first)
  size_t held_trades_ = 0;
  size_t backlog_trades_ = 0;
  // Quarantined symbols -> monotonic ms of the next load attempt.
  absl::flat_hash_map<std::string, int64_t> quarantined_;
  // Symbols whose reload failed (Redis down): reloaded before the next flush.
  std::vector<SymbolSeries*> reload_pending_;
  // Symbols whose flush call Redis answered with an error, and how many times in a row.
  absl::flat_hash_map<std::string, int> flush_errors_;
  uint64_t processed_seq_ = 0;  // seq of the last batch fully applied in memory
  bool evict_pending_ = false;
  std::atomic<uint64_t> flushed_seq_{0};
  ShardStats stats_;
};

}  // namespace klined
