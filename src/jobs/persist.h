// Persistence of closed candles from Redis to MySQL/MariaDB, on the lease holder.
//
// DESIGN
// Redis tracks what MySQL still lacks: every Lua call that writes history also writes the
// candle into B:pending (hash "INTERVAL|open_time" -> candle JSON) and the symbol into
// PREFIX:pending, atomically with the history write. So a crash or a failover can lose
// nothing: whatever is pending stays pending until a worker has seen MySQL commit it.
//
// One PersistWorker per process, with a thread of its own, its own router on the process's
// topology (one Redis, or a cluster's primaries: every call goes to the node serving its
// key's slot) and its own MysqlConn: blocking MySQL calls never run on a shard. While active (the
// timer loop holds the lease and calls SetActive from its thread), every mysql.persist_interval_ms
// it runs RunOnce():
//   1. SSCAN PREFIX:pending; per chunk of symbols, pipelined HGETALL B:pending;
//   2. parse every candle JSON, upsert them all (multi-row, batch_rows per transaction);
//   3. only after MySQL committed: per symbol one Lua call that HDELs each field only if it
//      still holds the JSON that was read (compare-and-delete: a candle re-written meanwhile,
//      e.g. by a late trade, stays pending for the next run) and SREMs the symbol from
//      PREFIX:pending once B:pending is empty.
// A bad entry (the JSON is not a candle of that symbol, interval and open time; written by a
// bug, since B:pending is our own) must neither stay pending forever (TRIM never removes a
// history member still pending) nor stop the run. It is repaired when the history member at
// its open time (B:INTERVAL:hist, score = open_time) is a good candle: that member is
// persisted instead and the field deleted as usual. Otherwise a compare-and-move script
// moves the field to B:quarantine (PREFIX:{SYMBOL}:quarantine, same field and value) and the
// symbol into PREFIX:quarantine, for a person to inspect; counted and logged either way.
// Chunks adapt so that about chunk_candles candles are held at once, which bounds memory
// after a long MySQL outage (a 500-symbol chunk with thousands of candles each would not be).
// MySQL down: the run fails before deleting anything, is counted and logged (rate-limited);
// the connection reconnects with backoff and the next run catches up.
//
// Late trades beyond Redis: a trade whose bucket was already trimmed from Redis is written by
// its shard's FLUSH into B:late ("INTERVAL|open_time|trade_id" -> the trade as Binance JSON)
// and PREFIX:late. The worker drains them: per record one MySQL transaction
// (KlineTable::ApplyLateTrade: lock the row, record the trade in kline_late_applied, merge
// exactly, re-carry following empty rows, commit), then one Lua call per symbol that deletes
// the records (compare-and-delete), re-carries the new close into the empty candles of Redis
// history that follow the bucket (bounded by the first MySQL row with trades), and SREMs
// the symbol from PREFIX:late when B:late is empty. A crash between COMMIT and the delete
// re-runs the record: kline_late_applied turns it into a duplicate, counted once.
//
// Redis data loss: Redis keeps a marker of the dataset, PREFIX:dataset (on a cluster one per
// primary, PREFIX:dataset{tag}, restoring only the symbols whose slot that node serves). Each
// run checks it after its persistence work; gone (FLUSHALL, a restart without persistence, a
// failover to an empty node, or a new Redis) starts a restore: every symbol of the kline table gets
// the newest redis.history_limit closed candles of each interval back into its history
// (RESTORE_HISTORY: holes only, never the open bucket, never below the trim mark, nothing
// pending) and into PREFIX:symbols, in steps of 250 ms, one per run, the runs back to back
// while it lasts (each persisting first); then the marker is set again. Shards write
// back what their memory holds on their own (shard.cc). A restore that wrote anything counts
// as a loss (klined_redis_dataset_losses_total, log persist.dataset_restored); one that found
// everything in place (a new deployment, an upgrade) only sets the marker. With the marker in
// place, the symbols a shard found gone (PREFIX:restore, see Shard::Reload) are restored the
// same way (log persist.symbols_restored), each removed from the set once done.
//
// Fenced by the lease: the worker runs under the token and epoch the timer loop handed it
// (SetActive). Every Redis script it runs checks that PREFIX:lease still holds the token,
// and every MySQL write transaction checks kline_fence (KlineTable: raised to the epoch when
// the worker becomes active, refused once a newer epoch raised it), so a worker whose
// process was paused while holding the lease cannot write after a newer holder started: its
// run stops, fenced (klined_persist_fenced_total).
// Idempotent: two workers overlapping during a lease hand-over write the same absolute values.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/counter.h"
#include "io/mysql/kline_table.h"
#include "io/mysql/mysql_conn.h"
#include "io/redis/cluster/router.h"
#include "io/redis/key_layout.h"
#include "io/redis/redis_conn.h"
#include "klined/interval.h"
#include "klined/trade_decoder.h"

namespace klined {

struct PersistOptions {
  // The process's topology (not owned; outlives the worker). Null: the one Redis of `redis`.
  cluster::Topology* topology = nullptr;
  RedisOptions redis;
  std::string key_prefix = "kline";
  MysqlOptions mysql;
  int64_t persist_interval_ms = 5000;
  size_t batch_rows = 500;        // rows per upsert statement (mysql.batch_rows)
  size_t chunk_candles = 50'000;  // pending candles held in memory at once, about
  size_t max_chunk_symbols = 500;
  UtcOffset tz;  // aligns empty candles the late path creates
  // The dataset restore (below): the configured intervals and redis.history_limit. No
  // intervals: no restore (tests of persistence alone).
  std::vector<Interval> intervals;
  int64_t history_limit = 1000;
};

// Written by the worker's thread (or whoever calls RunOnce), read by the metrics scraper.
struct PersistStats {
  OwnedCounter runs;
  OwnedCounter failures;          // runs that stopped on a Redis or MySQL error
  OwnedCounter candles_upserted;  // rows sent in committed upserts
  OwnedCounter batches;           // upsert statements committed
  OwnedCounter backlog;           // gauge: pending candles seen by the last run
  OwnedCounter last_run_ms;       // gauge: duration of the last run
  OwnedCounter bad_entries;       // pending entries that cannot be persisted as read, and
                                  // B:pending keys that are not hashes (left in place)
  OwnedCounter repaired;          // bad entries persisted from their history member instead
  OwnedCounter quarantined;       // bad entries moved to B:quarantine (no good history member)
  OwnedCounter late_applied;      // late trades merged into MySQL
  OwnedCounter late_duplicates;   // late records already applied (retry after a crash)
  OwnedCounter late_rejected;     // late records that cannot be applied (bad, out of range)
  OwnedCounter fenced;            // runs stopped because a newer lease holder fenced us out
  OwnedCounter script_errors;     // per-symbol script calls Redis answered with an error
  OwnedCounter dataset_losses;    // restores after the dataset marker vanished that wrote back
  OwnedCounter restored_candles;  // candles the dataset restore wrote back into Redis history
};

struct PersistRunReport {
  bool ok = false;
  bool fenced = false;  // !ok because a newer lease holder fenced this worker out
  std::string error;    // when !ok
  uint64_t pending_seen = 0;
  uint64_t upserted = 0;
  uint64_t deleted = 0;  // pending fields confirmed and removed
  uint64_t quarantined = 0;
  uint64_t late_seen = 0;
  uint64_t late_applied = 0;
  uint64_t late_duplicates = 0;
};

class PersistWorker {
 public:
  explicit PersistWorker(PersistOptions options);
  ~PersistWorker();  // stops the thread
  PersistWorker(const PersistWorker&) = delete;
  PersistWorker& operator=(const PersistWorker&) = delete;

  // Starts / stops the worker's thread. RunOnce must not be called while it runs.
  void Start();
  void Stop();

  // Any thread (the lease holder's timer loop): run the job or not, under the lease `token`
  // and fencing `epoch` (Lease::token(), Lease::epoch()) while active. Activation runs a pass
  // promptly, so a new lease holder catches up at once. Token "" and epoch 0 = unfenced
  // (tests and tools that run without a lease).
  void SetActive(bool active, std::string token, int64_t epoch);
  bool active() const { return active_.load(std::memory_order_acquire); }
  // Any thread (SIGHUP reload): takes effect at the next wait.
  void set_persist_interval_ms(int64_t ms);

  // One pass, on the calling thread: the worker's own thread, or a test with no thread
  // started. Owns the connections while it runs.
  PersistRunReport RunOnce();

  const PersistStats& stats() const { return stats_; }
  uint64_t mysql_errors() const { return mysql_.errors(); }
  uint64_t mysql_reconnects() const { return mysql_.reconnects(); }

 private:
  struct Entry;  // one B:pending or B:late field as read, views into the Redis replies

  void Loop();
  bool Connect(PersistRunReport* report);
  bool ScanSet(const std::string& key, std::vector<std::string>* members, PersistRunReport* report);
  bool PersistPending(const std::vector<std::string>& symbols, PersistRunReport* report);
  bool DrainLate(const std::vector<std::string>& symbols, PersistRunReport* report);
  // The dataset marker check and, after a loss, the next symbols of the history restore.
  bool RestoreStep(PersistRunReport* report);
  // The dataset markers and the index of the primary each lives on: PREFIX:dataset on one
  // Redis; on a cluster PREFIX:dataset{tag} per primary, tag in the lowest slot it serves (a
  // node that lost its data alone shows; after a reshard a node's lowest slot may change and
  // its new marker is missing: a restore that finds everything in place only sets it).
  std::vector<std::pair<std::string, int>> DatasetMarkers();
  // Sends the EVALSHA calls (argv per call, KEYS[1] in the symbol's slot), each to the node
  // serving it, all at once, and reads the replies (NOSCRIPT: the router loads the script on
  // that node and resends; the calls are idempotent).
  // results[i]: call i's integer reply (0 if it was not an integer).
  // flags (optional)[i]: the next two integers of an array reply ({result, flag, flag}).
  bool EvalAll(const std::vector<std::vector<std::string_view>>& calls,
               std::vector<long long>* results, PersistRunReport* report,
               std::vector<std::array<long long, 2>>* flags = nullptr);
  // SADD set_key symbols... (none: nothing sent). False if the connection failed.
  bool AddTo(const std::string& set_key, const std::vector<std::string>& symbols);
  // Takes symbols whose hash (hash_of) a call found empty out of set_key, race-free against
  // writers that add after they write (see the scripts' comment in persist.cc).
  bool DropEmpty(const std::string& set_key, const std::vector<std::string>& symbols,
                 const std::function<std::string(const std::string&)>& hash_of);
  // The index sweep: every known symbol with entries in B:pending or B:late back in
  // PREFIX:pending / PREFIX:late (a writer that died between its write and its add left them
  // out). At the start of each active period and every 10 minutes.
  bool SweepIndexes(PersistRunReport* report);
  // HGETALL of every key, routed and pipelined; *replies gets one reply per key, in order.
  template <class Keys>
  bool ReadHashes(const Keys& keys, std::vector<RedisReply>* replies, PersistRunReport* report);
  bool FailRedis(PersistRunReport* report);
  bool FailMysql(PersistRunReport* report);
  bool Fenced(PersistRunReport* report);

  PersistOptions options_;
  std::unique_ptr<cluster::Topology> own_topology_;  // when options.topology is null
  cluster::Topology* topology_;
  cluster::Router router_;
  cluster::Batch batch_{&router_};
  MysqlConn mysql_;
  KlineTable table_;
  TradeDecoder decoder_;
  const KeyLayout keys_;
  std::string run_fence_;  // the current run's fencing epoch for the scripts ("" = unfenced)
  int64_t run_epoch_ = 0;
  int64_t swept_epoch_ = -1;  // the active period SweepIndexes last ran in
  int64_t next_sweep_ms_ = 0;
  int64_t raised_epoch_ = 0;  // the epoch this worker last raised kline_fence to
  size_t pending_script_ = 0;
  size_t quarantine_script_ = 0;
  size_t late_script_ = 0;
  size_t restore_script_ = 0;
  // The dataset restore in progress (worker thread): symbols from MySQL, the next one, what
  // was written so far, and the epoch it runs under (a new grant starts it again).
  bool restoring_ = false;
  bool restore_dataset_ =
      false;  // a dataset marker gone (its nodes' symbols), else PREFIX:restore's
  std::vector<std::string> restore_markers_;  // the markers found gone, set again when done
  std::map<int, std::string> marker_tags_;    // slot -> TagForSlot (a search: kept)
  std::vector<std::string> restore_symbols_;
  size_t restore_next_ = 0;
  uint64_t restore_written_ = 0;
  int64_t restore_epoch_ = -1;
  int64_t restore_gap_from_ = 0;  // the earliest bucket after MySQL's newest candle, any series
  bool schema_ready_ = false;
  PersistStats stats_;

  std::atomic<bool> active_{false};
  std::atomic<int64_t> interval_ms_;
  std::mutex mu_;      // guards the waits and the grant below (never held while working)
  std::string token_;  // the lease grant of the active period (SetActive)
  int64_t epoch_ = 0;
  std::condition_variable wake_;
  bool stop_ = false;
  bool poke_ = false;
  std::thread thread_;
};

}  // namespace klined
