// Reads and writes one shard's symbols in Redis: flush, first-sight load, late trades.
//
// DESIGN
// Each shard has its own store with two routers (src/io/redis/cluster/, one connection per
// Redis node each): one for the shard thread (loads, late-trade reads), one for its flusher
// thread. Every call touches one symbol's slot (or one index key), so a single Redis and a
// Redis Cluster take the same path: the router splits a flush by node, follows redirects and
// reloads scripts per node. A flush is one EVALSHA of the
// FLUSH script per dirty symbol, encoded on the shard thread into one RESP buffer
// (PrepareFlush), written and answered on the flusher thread (ExecuteFlush) while the shard
// keeps applying trades, and committed back on the shard thread (FinishFlush): a handful of
// round trips per flush however many trades were merged. Every reply is read and judged on
// its own: one symbol's error or refusal never stops the others, a NOSCRIPT re-sends only
// the calls it answered, and a dropped connection leaves only the unanswered calls unknown.
// Each call carries the symbol's storage stamp (the per-source watermarks B:wmp held when
// the shard last matched storage) and is refused if storage moved since: a second writer, or
// the retry of a write whose reply was lost; the shard then reloads the symbol (FlushReport).
// Loads are pipelined the same way (one LOAD script call per symbol, which tells a missing
// key from one of another type). Values that do not parse are repaired from what else is
// stored where that is exact (a watermark from the per-source watermarks and back); what
// cannot be repaired is reported (LoadStatus::kCorrupt), counted and logged, never retried
// in a loop that stops the shard. Late trades whose bucket the shard no longer holds are
// resolved in the flush: one pipelined read of the stored candles they touch, exact merge in
// C++, and compare-and-set inside the symbol's FLUSH call, atomic with its watermark; a
// symbol whose stored candle changed in between stays dirty and is retried by the next flush.
// The global index sets live outside the symbol's slot, so FLUSH never writes them: the store
// adds a symbol to PREFIX:symbols before its first write since it was loaded (membership
// before data: a crash in between leaves a known symbol without candles, which every reader
// handles, never candles nobody rolls over), and after a reply, from what the call reports,
// to PREFIX:symbols (B:ws was void: retire, among others), PREFIX:pending and PREFIX:late. An
// add whose reply is lost is retried with the next flush; one lost with a crash is found by
// the persistence worker's index sweep (PersistWorker).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <absl/container/flat_hash_set.h>

#include "io/redis/cluster/router.h"
#include "io/redis/key_layout.h"
#include "io/redis/redis_conn.h"
#include "klined/series.h"
#include "shard/series_store.h"

namespace klined {

class KlineStore final : public SeriesStore {
 public:
  // Routes through `topology`, shared by every store and job of the process.
  KlineStore(cluster::Topology* topology, std::string key_prefix, const SeriesLayout* layout,
             std::string ticker_prefix = "ticker");
  // A single Redis at options.address, with a topology of its own (tests, tools); takes
  // options.wait_replicas and wait_timeout_ms.
  KlineStore(const RedisOptions& options, std::string key_prefix, const SeriesLayout* layout,
             std::string ticker_prefix = "ticker");

  std::unique_ptr<FlushJob> PrepareFlush(std::span<SymbolSeries* const> series) override;
  void ExecuteFlush(FlushJob* job) override;
  FlushReport FinishFlush(FlushJob* job) override;

  bool Load(std::span<SymbolSeries* const> series, std::vector<LoadStatus>* status) override;
  // SADD PREFIX:restore SYMBOL on the shard thread's connection.
  void RequestRestore(std::string_view symbol) override;
  std::string LastError() const override {
    return reader_.error().empty() ? writer_.error() : reader_.error();
  }
  uint64_t Errors() const override { return reader_.errors() + writer_.errors(); }
  uint64_t Reconnects() const override { return reader_.reconnects() + writer_.reconnects(); }
  const StoreStats& stats() const override { return stats_; }
  bool WaitsForReplicas() const override { return wait_replicas_ > 0; }
  // A flush with job->confirm ends with the flusher's router waiting until `replicas` replicas
  // of every node it wrote since its last successful wait hold those writes
  // (Router::WaitReplicas: a marker write and WAIT per node, all nodes at once).
  void SetReplicaWait(int replicas, int timeout_ms) {
    wait_replicas_ = replicas;
    wait_timeout_ms_ = timeout_ms;
  }

 private:
  // A stored closed candle that late trades change, as planned before the FLUSH call.
  struct LateUpdate {
    uint32_t slot;
    int64_t open;
    std::string expect;                // stored JSON read ("" = none)
    Candle candle;                     // stored candle + the late trades
    std::vector<std::string> empties;  // JSON of empty candles extending the series
  };
  // A late trade whose bucket is no longer in Redis: handed to the MySQL worker through
  // B:late ("INTERVAL|open_time|trade_id" -> trade JSON), written in the same FLUSH call.
  struct MysqlLate {
    std::string field;
    std::string trade_json;
  };
  struct Job;
  KlineStore(std::unique_ptr<cluster::Topology> own, cluster::Topology* topology,
             std::string key_prefix, const SeriesLayout* layout, std::string ticker_prefix);
  // The shard thread's pipelined reads: Read appends one command in `sym`'s slot, RunReads
  // sends them all and fills *replies in order; false (replies incomplete) if a node's
  // connection failed.
  void Read(std::string_view sym, std::initializer_list<std::string_view> argv);
  bool RunReads(std::vector<RedisReply>* replies);
  // ExecuteFlush's writes, then its confirmation.
  void WriteCalls(Job* job);
  void ConfirmReplicas(Job* job);
  // Before the calls: SADD PREFIX:symbols of the series not added since loaded. False if the
  // connection failed (then no call is sent).
  bool AddBeforeWrite(Job* job);
  // After the replies: the index adds they ask for, and any left by an earlier flush.
  void AddAfterWrite(Job* job);
  // Reads and merges every series' late trades. False if the connection failed; a series
  // whose stored candle does not parse gets (*corrupt)[k] set to why (it is left out).
  bool PlanLate(std::span<SymbolSeries* const> series, FlushReport* report,
                std::vector<FlushReport::Corrupt>* corrupt);
  // Rebuilds the 24h ticker of each loaded series: from its persisted state (`states[i]`,
  // empty when none) plus the 1m candles from the state's end on, or else from the last 24 h
  // of 1m history. False on a connection error.
  bool RebuildTickers(std::span<SymbolSeries* const> series,
                      const std::vector<std::string_view>& states);
  // The candle of `iv` at the bucket opening at `open`, rebuilt exactly by merging the stored
  // candles of the finer configured interval at `finer_slot` (which nests in iv): its history
  // members in the bucket, then finer_current when that lies in the bucket. *out stays empty
  // when those are not complete (trimmed, missing, unreadable). False on a connection error.
  bool RebuildFromFiner(std::string_view sym, Interval iv, int64_t open, size_t finer_slot,
                        const Candle* finer_current, std::optional<Candle>* out);
  // An unreadable current candle of `slot`, rebuilt from the finer interval's candles (see
  // RebuildFromFiner) in the bucket storage's series has reached. False on a connection error.
  bool RepairCurrent(std::string_view sym, size_t slot, size_t finer_slot,
                     const Candle& finer_current, std::optional<Candle>* out);
  // The coarsest configured interval finer than slot's whose buckets nest in it, among those
  // `usable` allows; -1 if none.
  int FinerSlot(size_t slot, const std::function<bool(size_t)>& usable) const;
  // Appends the FLUSH call of one series, RESP-encoded, to *payload, offering the write stamp
  // `grant`. Returns whether the call carries the ticker state (then *ticker_token is its
  // TickerWindow::BeginPersist token).
  bool EncodeFlushCommand(SymbolSeries& s, std::string_view stamp, std::string grant,
                          const std::vector<LateUpdate>& late,
                          const std::vector<MysqlLate>& mysql_late, std::string* payload,
                          uint64_t* ticker_token);
  // The same for a FLUSH_FAST call (the series holds a write stamp, no closed candles, no late
  // trades).
  bool EncodeFastCommand(SymbolSeries& s, std::string_view stamp, std::string grant,
                         std::string* payload, uint64_t* ticker_token);
  // The 24h ticker's JSON and, when due, its state ("" = not due) as of now, kept in strings_;
  // both "" when no 1m candles feed it. *with_state and *ticker_token as EncodeFlushCommand.
  std::pair<std::string_view, std::string_view> TickerArgs(SymbolSeries& s, bool* with_state,
                                                           uint64_t* ticker_token);
  // args_ as one RESP command appended to *payload.
  void AppendArgs(std::string* payload);
  // A write stamp's value in B:ws: this store's nonce and the token.
  std::string StampValue(uint64_t token) const;
  std::string_view Keep(std::string s);
  // Appends numkeys and every key a script on `sym` may touch (KeyLayout::ScriptKeys) to args_.
  void DeclareKeys(std::string_view sym);
  // Counts and logs an unreadable stored value (rate-limited): what, where, what became of it.
  void NoteCorrupt(CorruptKind kind, std::string_view symbol, std::string_view key,
                   std::string_view value, bool repaired);

  std::unique_ptr<cluster::Topology> own_topology_;  // the single-Redis constructor's
  cluster::Router reader_;                           // shard thread
  cluster::Router writer_;                           // flusher thread
  std::vector<cluster::Call> reads_;                 // Read's, until RunReads
  KeyLayout keys_;
  const SeriesLayout* layout_;
  int wait_replicas_ = 0;
  int wait_timeout_ms_ = 1000;
  int one_minute_slot_ = -1;  // index of 1m in the layout (the ticker's source), -1 if none
  size_t flush_script_;
  size_t fast_script_;
  size_t load_script_;
  std::string nonce_;        // this store's, random: write stamps of other stores never match
  uint64_t next_token_ = 0;  // write stamps handed out
  StoreStats stats_;
  std::vector<std::vector<LateUpdate>> late_plans_;  // per series of the current flush
  std::vector<std::vector<MysqlLate>> mysql_late_;   // per series of the current flush
  // Shard thread: the symbols added to PREFIX:symbols since they were loaded.
  absl::flat_hash_set<std::string> indexed_;
  // Flusher thread: index adds (PREFIX:symbols, :pending, :late) whose reply a dropped
  // connection lost, sent again with the next flush. Bounded by the shard's symbols.
  absl::flat_hash_set<std::string> unsent_index_[3];
  // Scratch reused across calls: the arguments of one command (hiredis copies on Append).
  // A deque, so the views in args_ stay valid while strings are added.
  std::deque<std::string> strings_;
  std::vector<std::string_view> args_;
  std::vector<const char*> argv_;
  std::vector<size_t> argv_len_;
  std::vector<size_t> fast_slots_;  // EncodeFastCommand's intervals with a current candle
};

}  // namespace klined
