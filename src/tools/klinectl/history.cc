// klinectl restore-redis.
//
// DESIGN
// For each symbol (given, or every symbol of the kline table) and configured interval: the
// newest `limit` closed candles from MySQL (one primary-key range read), written into the
// history key by one RESTORE call per (symbol, interval), pipelined per symbol. RESTORE only
// fills holes: a candle Redis already has at that open time is kept (Redis is ahead of MySQL:
// a late trade's update may not be persisted yet), nothing is written at or after the current
// candle's open time (that bucket is still open), nor at or below the interval's `trimmed`
// mark (the trim job removed those on purpose). Restored candles are not added to the pending
// hash: they came from MySQL, so persistence never writes them twice, and the trim job may
// trim them (they are persisted). So the tool is idempotent (a second run writes nothing),
// resumable (a rerun fills what an interrupted one did not) and safe while klined runs (every
// write is a per-symbol atomic fill of holes). The symbol is added to PREFIX:symbols (the
// rollover and the ticker find it again) by its own command. Current candles are not rebuilt
// here: MySQL holds only closed ones; a running klined writes back the current candles it
// holds (klined_redis_data_loss_total) and the rollover opens the rest.
#include "tools/klinectl/history.h"

#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "io/mysql/kline_table.h"
#include "io/redis/job_scripts.h"
#include "klined/candle.h"
#include "tools/klinectl/history_util.h"
#include "tools/klinectl/routed_redis.h"
#include "tools/klinectl/stage.h"

namespace klined::klinectl {
namespace {

// What both tools open: MySQL, Redis with RESTORE loaded, the symbols to work on.
struct Session {
  explicit Session(const RestoreOptions& o) : db(o.mysql), redis(o.redis) {}
  // False with the reason printed.
  bool Open(const RestoreOptions& o) {
    if (!db.EnsureConnected()) {
      std::fprintf(stderr, "klinectl: cannot connect to MySQL at %s:%d: %s\n", o.mysql.host.c_str(),
                   o.mysql.port, db.error().c_str());
      return false;
    }
    script = redis.AddScript(std::string(lua::kHistoryWindow) + lua::kFence + lua::kRestoreHistory);
    if (!redis.EnsureConnected()) {
      std::fprintf(stderr, "klinectl: cannot connect to Redis at %s: %s\n", redis.address().c_str(),
                   redis.error().c_str());
      return false;
    }
    symbols = o.symbols;
    if (symbols.empty() && !KlineTable(&db, 1, o.tz).Symbols(&symbols)) {
      std::fprintf(stderr, "klinectl: listing the kline table's symbols: %s\n", db.error().c_str());
      return false;
    }
    return true;
  }

  // Appends one RESTORE call: `candles` (closed, ascending) into sym's iv history.
  void AppendRestore(const RestoreOptions& o, const std::string& sym, Interval iv,
                     std::span<const Candle> candles) {
    strings_.clear();
    strings_.reserve(4 + 2 * candles.size());
    strings_.push_back(o.keys.History(sym, iv));
    strings_.push_back(o.keys.Trimmed(sym));
    strings_.push_back(o.keys.Current(sym, iv));
    strings_.push_back(o.keys.Fence(sym));
    for (const Candle& c : candles) {
      strings_.push_back(std::to_string(c.open_time));
      strings_.push_back(CandleJson(c, sym, /*closed=*/true));
    }
    // Unfenced (epoch ""): klinectl holds no lease.
    args_.assign({"EVALSHA", redis.Sha(script), "4", strings_[0], strings_[1], strings_[2],
                  strings_[3], "", IntervalName(iv), o.dry_run ? "1" : "0"});
    for (size_t i = 4; i < strings_.size(); ++i) args_.push_back(strings_[i]);
    redis.Append(args_);
    ++calls_;
  }
  // Reads the replies of the calls appended, adds them up and (not in a dry run, when any
  // call was made) adds the symbol to PREFIX:symbols. False with the reason printed.
  bool FinishSymbol(const RestoreOptions& o, const std::string& sym, uint64_t* sym_written) {
    *sym_written = 0;
    const size_t calls = calls_;
    calls_ = 0;
    bool ok = true;
    for (size_t c = 0; c < calls; ++c) {
      RedisReply r = redis.GetReply();
      if (r == nullptr) {
        std::fprintf(stderr, "\nklinectl: Redis: %s (a rerun resumes)\n", redis.error().c_str());
        return false;
      }
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        std::fprintf(stderr, "\nklinectl: %s: RESTORE answered %s\n", sym.c_str(),
                     r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
        ok = false;  // the other replies are still read
        continue;
      }
      *sym_written += static_cast<uint64_t>(r->element[0]->integer);
      present += static_cast<uint64_t>(r->element[1]->integer);
      outside += static_cast<uint64_t>(r->element[2]->integer);
    }
    if (!ok) return false;
    if (calls > 0 && !o.dry_run) {
      RedisReply r = redis.Command({"SADD", o.keys.Symbols(), sym});
      if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
        std::fprintf(stderr, "\nklinectl: Redis SADD: %s\n",
                     r == nullptr ? redis.error().c_str() : r->str);
        return false;
      }
    }
    return true;
  }

  MysqlConn db;
  RoutedRedis redis;
  size_t script = 0;
  std::vector<std::string> symbols;
  uint64_t present = 0;  // candles Redis already held at that open time
  uint64_t outside = 0;  // candles outside the history window

 private:
  size_t calls_ = 0;
  std::vector<std::string> strings_;
  std::vector<std::string_view> args_;
};

// RESTORE_CURRENT: a symbol's watermark and current candles where klined is not running.
// KEYS: watermark, write stamp (B:ws), then one current candle key per interval. ARGV: dry
// ("1"/"0"), the watermark, then one current candle JSON per current key. Nothing if the
// watermark exists (a klined wrote this symbol since the loss: its state stands); else each
// missing current candle is set, then the watermark, and the write stamp is voided. Returns
// {current candles written, watermark written}.
constexpr const char kRestoreCurrent[] = R"LUA(
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, 0} end
local n = 0
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    n = n + 1
    if ARGV[1] == '0' then redis.call('SET', KEYS[i], ARGV[i]) end
  end
end
if ARGV[1] == '0' then redis.call('MSET', KEYS[1], ARGV[2], KEYS[2], '') end
return {n, 1}
)LUA";

}  // namespace

int RestoreRedis(const RestoreOptions& o) {
  Session session(o);
  if (!session.Open(o)) return 2;
  KlineTable table(&session.db, 500, o.tz);
  // Current candles and watermarks only while no klined runs: a running one holds them in
  // memory and writes them back itself (a shard that loaded an empty symbol meanwhile would
  // find storage changed, reload it and re-apply what it holds).
  RedisReply lease = session.redis.Command({"EXISTS", o.keys.Lease()});
  if (lease == nullptr) {
    std::fprintf(stderr, "klinectl: Redis: %s\n", session.redis.error().c_str());
    return 2;
  }
  const bool klined_running = lease->type != REDIS_REPLY_INTEGER || lease->integer != 0;
  const size_t current_script = session.redis.AddScript(kRestoreCurrent);
  if (!klined_running && !session.redis.ReloadScripts()) {
    std::fprintf(stderr, "klinectl: Redis: %s\n", session.redis.error().c_str());
    return 2;
  }
  uint64_t currents = 0, watermarks = 0;
  std::vector<std::string> current_keys, current_json;
  Progress progress("restore-redis", o.dry_run ? "to write" : "written", session.symbols.size());
  uint64_t written = 0, symbols_touched = 0;
  std::vector<Candle> candles;
  for (size_t k = 0; k < session.symbols.size(); ++k) {
    const std::string& sym = session.symbols[k];
    for (const Interval iv : o.intervals) {
      candles.clear();
      if (!table.ReadRange(sym, iv, INT64_MIN, INT64_MAX, static_cast<size_t>(o.limit),
                           /*newest_first=*/true, &candles)) {
        std::fprintf(stderr, "\nklinectl: reading %s %s from MySQL: %s\n", sym.c_str(),
                     std::string(IntervalName(iv)).c_str(), session.db.error().c_str());
        return 2;
      }
      if (candles.empty()) continue;
      session.AppendRestore(o, sym, iv, candles);
      if (!klined_running) {
        // The bucket after MySQL's newest, empty, carrying its close: klined resumes a
        // gapless series (the rollover brings it to now).
        const Candle& newest = candles.back();
        current_keys.push_back(o.keys.Current(sym, iv));
        current_json.push_back(CandleJson(
            Candle::Empty(iv, NextBucketOpen(iv, newest.open_time, o.tz), o.tz, newest.close), sym,
            /*closed=*/false));
      }
    }
    uint64_t sym_written = 0;
    if (!session.FinishSymbol(o, sym, &sym_written)) return 2;
    if (!current_keys.empty()) {
      int64_t last_id = 0;
      if (!table.MaxTradeId(sym, &last_id)) {
        std::fprintf(stderr, "\nklinectl: reading %s's last trade id: %s\n", sym.c_str(),
                     session.db.error().c_str());
        return 2;
      }
      const std::string wm_key = o.keys.Watermark(sym);
      const std::string wm = std::to_string(last_id);
      const std::string nkeys = std::to_string(current_keys.size() + 2);
      const std::string ws_key = o.keys.WriteStamp(sym);
      std::vector<std::string_view> argv = {"EVALSHA", session.redis.Sha(current_script), nkeys,
                                            wm_key, ws_key};
      for (const std::string& k : current_keys) argv.push_back(k);
      argv.push_back(o.dry_run ? "1" : "0");
      argv.push_back(wm);
      for (const std::string& j : current_json) argv.push_back(j);
      session.redis.Append(argv);
      RedisReply r = session.redis.GetReply();
      if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        std::fprintf(stderr, "\nklinectl: %s: RESTORE_CURRENT answered %s\n", sym.c_str(),
                     r == nullptr                   ? session.redis.error().c_str()
                     : r->type == REDIS_REPLY_ERROR ? r->str
                                                    : "an unexpected reply");
        return 2;
      }
      currents += static_cast<uint64_t>(r->element[0]->integer);
      watermarks += static_cast<uint64_t>(r->element[1]->integer);
      current_keys.clear();
      current_json.clear();
    }
    written += sym_written;
    symbols_touched += sym_written > 0 ? 1 : 0;
    progress.Update(k + 1, written);
  }
  std::printf(
      "restore-redis%s: %zu symbols, %llu candles %s, %llu already in Redis, %llu outside "
      "the history window (trimmed, or the open bucket); %llu symbols %s\n",
      o.dry_run ? " (dry run)" : "", session.symbols.size(),
      static_cast<unsigned long long>(written), o.dry_run ? "would be written" : "written",
      static_cast<unsigned long long>(session.present),
      static_cast<unsigned long long>(session.outside),
      static_cast<unsigned long long>(symbols_touched), o.dry_run ? "would change" : "changed");
  if (klined_running) {
    std::printf("current candles and watermarks left to the running klined (it holds the lease)\n");
  } else {
    std::printf("no klined running: %llu current candles and %llu watermarks %s\n",
                static_cast<unsigned long long>(currents),
                static_cast<unsigned long long>(watermarks),
                o.dry_run ? "would be restored" : "restored");
  }
  return 0;
}

// ---- derive ------------------------------------------------------------------------------

namespace {

// Target buckets built from consecutive source candles, streamed in ascending open time.
// A bucket is emitted only when its source candles are contiguous and reach its end: from its
// open, or from the symbol's first source candle (a series that starts inside a bucket is
// what streaming saw too). The last, still open bucket never reaches its end in MySQL.
class BucketMerger {
 public:
  BucketMerger(Interval source, Interval target, UtcOffset tz, int64_t series_first)
      : source_(source), target_(target), tz_(tz), series_first_(series_first) {}

  // False if a sum passes 20 digits (stored candles no trade could have made).
  bool Add(const Candle& c, std::vector<Candle>* out) {
    const int64_t bucket = BucketOpen(target_, c.open_time, tz_);
    Candle part = c;
    part.interval = target_;
    part.open_time = bucket;
    part.close_time = NextBucketOpen(target_, bucket, tz_) - 1;
    if (!open_ || bucket != merged_.open_time) {
      Finish(out);
      open_ = true;
      contiguous_ = c.open_time == bucket || c.open_time == series_first_;
      merged_ = part;
    } else {
      contiguous_ &= c.open_time == next_source_;
      if (!Merge(merged_, part, &merged_)) return false;
    }
    next_source_ = NextBucketOpen(source_, c.open_time, tz_);
    return true;
  }
  void Finish(std::vector<Candle>* out) {
    if (!open_) return;
    open_ = false;
    if (contiguous_ && next_source_ == merged_.close_time + 1) {
      out->push_back(merged_);
    } else {
      ++incomplete_;
    }
  }
  uint64_t incomplete() const { return incomplete_; }

 private:
  Interval source_, target_;
  UtcOffset tz_;
  int64_t series_first_;
  bool open_ = false;
  bool contiguous_ = false;
  Candle merged_;
  int64_t next_source_ = 0;
  uint64_t incomplete_ = 0;
};

// The writing half of derive: MySQL's upserts (the slowest step) on one thread per MySQL
// connection given, Redis history behind them on another, all overlapping the next symbols'
// reads on the caller's connection. Per symbol, MySQL is written before Redis history, as
// before: a run stopped in between leaves Redis no candle MySQL lacks. Each queue holds at
// most kDepth symbols.
class DeriveWriter {
 public:
  struct Item {
    size_t index = 0;  // into session.symbols
    std::vector<Candle> candles;
  };
  // One MySQL connection of the writers' and the table over it (its fence epoch set).
  struct Conn {
    MysqlConn* db;
    KlineTable* table;
  };

  DeriveWriter(const RestoreOptions& o, Session* session, std::vector<Conn> conns, Interval target)
      : o_(o),
        session_(session),
        conns_(std::move(conns)),
        rows_(conns_.size()),
        target_(target),
        progress_("derive", o.dry_run ? "to derive" : "derived", session->symbols.size()),
        redis_(kDepth, 1, [this](Item& item, size_t) { return WriteRedis(item); }),
        mysql_(kDepth, conns_.size(), [this](Item& item, size_t w) {
          return WriteMysql(item, w) && redis_.Push(std::move(item));
        }) {}

  // Blocks while the first queue is full. False once a write failed (its reason printed).
  bool Push(Item item) { return mysql_.Push(std::move(item)); }
  // Waits for everything pushed to be written. False if any write failed.
  bool Finish() {
    const bool mysql_ok = mysql_.Finish();
    return redis_.Finish() && mysql_ok;
  }
  uint64_t redis_written() const { return redis_written_; }  // after Finish

 private:
  static constexpr size_t kDepth = 8;

  bool WriteMysql(const Item& item, size_t worker) {
    if (o_.dry_run || item.candles.empty()) return true;
    const std::string& sym = session_->symbols[item.index];
    std::vector<StoredCandle>& rows = rows_[worker];
    rows.clear();
    for (const Candle& c : item.candles) rows.push_back(StoredCandle{sym, c});
    const WriteStatus st = conns_[worker].table->Upsert(rows);
    if (st == WriteStatus::kOk) return true;
    std::fprintf(stderr, "\nklinectl: writing %s's %s candles to MySQL: %s\n", sym.c_str(),
                 std::string(IntervalName(target_)).c_str(),
                 st == WriteStatus::kFenced
                     ? "fenced (a new lease holder raised kline_fence meanwhile): rerun"
                     : conns_[worker].db->error().c_str());
    return false;
  }

  // Redis history: the newest history_limit of them, where Redis has none.
  bool WriteRedis(const Item& item) {
    const std::string& sym = session_->symbols[item.index];
    const std::vector<Candle>& out = item.candles;
    const size_t keep = std::min(out.size(), static_cast<size_t>(o_.limit));
    if (keep > 0) {
      session_->AppendRestore(o_, sym, target_,
                              std::span<const Candle>(out).subspan(out.size() - keep));
    }
    uint64_t sym_written = 0;
    if (!session_->FinishSymbol(o_, sym, &sym_written)) return false;
    redis_written_ += sym_written;
    derived_ += out.size();
    progress_.Update(++symbols_done_, derived_);
    return true;
  }

  const RestoreOptions& o_;
  Session* session_;
  // The MySQL stage's: worker w uses conns_[w] and rows_[w].
  const std::vector<Conn> conns_;
  std::vector<std::vector<StoredCandle>> rows_;
  Interval target_;
  // The Redis stage's (session->redis too):
  Progress progress_;
  uint64_t redis_written_ = 0;
  uint64_t derived_ = 0;
  size_t symbols_done_ = 0;
  // Declared last, in this order: the MySQL stage, destroyed (finished) first, feeds the
  // Redis stage.
  Stage<Item> redis_;
  Stage<Item> mysql_;
};

}  // namespace

int Derive(const DeriveOptions& d) {
  const RestoreOptions& o = d.base;
  std::optional<Interval> source = d.source;
  if (!source) {
    for (const Interval iv : o.intervals) {  // ascending: the last one that nests is coarsest
      if (iv != d.target && Nests(iv, d.target)) source = iv;
    }
  }
  if (!source || !Nests(*source, d.target) || *source == d.target) {
    std::fprintf(stderr, "klinectl: no stored interval nests in %s (give --source)\n",
                 std::string(IntervalName(d.target)).c_str());
    return 2;
  }
  Session session(o);
  if (!session.Open(o)) return 2;
  constexpr size_t kUpsertBatch = 500;  // rows per statement and transaction
  KlineTable table(&session.db, kUpsertBatch, o.tz);
  int64_t epoch = 0;
  if (!PrepareWrites(&table, &session.db, o.dry_run, &epoch)) return 2;
  table.set_fence_epoch(epoch);
  // The reads go over a connection of their own, beside the writers' two.
  MysqlConn read_db(o.mysql), write_db(o.mysql);
  for (MysqlConn* db : {&read_db, &write_db}) {
    if (!db->EnsureConnected()) {
      std::fprintf(stderr, "klinectl: cannot connect to MySQL at %s:%d: %s\n", o.mysql.host.c_str(),
                   o.mysql.port, db->error().c_str());
      return 2;
    }
  }
  KlineTable reader(&read_db, 1, o.tz);
  KlineTable table2(&write_db, kUpsertBatch, o.tz);
  table2.set_fence_epoch(epoch);
  constexpr size_t kPage = 20000;
  uint64_t derived = 0, incomplete = 0;
  std::vector<Candle> page;
  // An early return below still waits for what was pushed: the writer's stages finish when
  // it is destroyed (before the connections it writes on).
  DeriveWriter writer(o, &session, {{&session.db, &table}, {&write_db, &table2}}, d.target);
  const auto read_failed = [&](const std::string& sym) {
    std::fprintf(stderr, "\nklinectl: reading %s from MySQL: %s\n", sym.c_str(),
                 read_db.error().c_str());
    return 2;
  };
  for (size_t k = 0; k < session.symbols.size(); ++k) {
    const std::string& sym = session.symbols[k];
    // The symbol's first source candle: where its series starts.
    page.clear();
    if (!reader.ReadRange(sym, *source, INT64_MIN, INT64_MAX, 1, false, &page)) {
      return read_failed(sym);
    }
    DeriveWriter::Item item{k, {}};
    if (!page.empty()) {
      BucketMerger merger(*source, d.target, o.tz, page.front().open_time);
      int64_t lo = d.from_ms == INT64_MIN ? INT64_MIN : BucketOpen(d.target, d.from_ms, o.tz);
      const int64_t hi =
          d.to_ms == INT64_MAX
              ? INT64_MAX
              : NextBucketOpen(d.target, BucketOpen(d.target, d.to_ms, o.tz), o.tz) - 1;
      for (;;) {
        page.clear();
        if (!reader.ReadRange(sym, *source, lo, hi, kPage, false, &page)) return read_failed(sym);
        for (const Candle& c : page) {
          if (!merger.Add(c, &item.candles)) {
            std::fprintf(stderr, "\nklinectl: %s: a merged sum passes 20 digits at %lld; skipped\n",
                         sym.c_str(), static_cast<long long>(c.open_time));
            return 2;
          }
        }
        if (page.size() < kPage) break;
        lo = page.back().open_time + 1;
      }
      merger.Finish(&item.candles);
      incomplete += merger.incomplete();
      derived += item.candles.size();
    }
    if (!writer.Push(std::move(item))) return 2;
  }
  if (!writer.Finish()) return 2;
  std::printf(
      "derive%s: %s from %s, %zu symbols, %llu closed candles %s MySQL, %llu %s Redis "
      "history; %llu buckets left out (incomplete: a gap in %s, or still open)\n",
      o.dry_run ? " (dry run)" : "", std::string(IntervalName(d.target)).c_str(),
      std::string(IntervalName(*source)).c_str(), session.symbols.size(),
      static_cast<unsigned long long>(derived),
      o.dry_run ? "would be upserted into" : "upserted into",
      static_cast<unsigned long long>(writer.redis_written()),
      o.dry_run ? "would be added to" : "added to", static_cast<unsigned long long>(incomplete),
      std::string(IntervalName(*source)).c_str());
  return 0;
}

}  // namespace klined::klinectl
