#include "jobs/persist.h"
#include "base/clock.h"
#include "base/thread_name.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>

#include "base/log.h"
#include "io/redis/job_scripts.h"
#include "io/redis/lua_scripts.h"
#include "klined/candle.h"

namespace klined {
namespace {

// Every script here is fenced like the job scripts (kFence in job_scripts.h): KEYS carry the
// symbol's B:fence and ARGV the worker's lease epoch, and a script does nothing and returns
// -1 once the symbol has seen a newer epoch ('' = unfenced, for tests and tools without a
// lease). An ex-holder that was paused mid-run therefore cannot delete, move or re-carry
// anything a newer holder worked on. (Its MySQL writes are fenced by kline_fence.)
//
// The scripts touch one symbol's keys; the global index sets (PREFIX:pending, :late,
// :quarantine) are updated by the worker from what they return. A symbol leaves an index set
// in three steps, SREM, then EXISTS of its hash, then SADD back if that found entries: a
// writer adds a symbol after its write lands, so any add this could undo is followed by one
// it cannot (see DropEmpty).

// PENDING_DONE: compare-and-delete of persisted candles, one symbol.
// KEYS: B:pending, B:fence. ARGV: epoch, then field, json pairs as read. A field is deleted
// only if it still holds the JSON that reached MySQL: a later write of the same candle (late
// trade, re-carry) stays pending. Returns {fields deleted, 1 if B:pending is now empty}, or
// -1 if fenced out.
constexpr const char kPendingDone[] = R"LUA(
if fenced_out(KEYS[2], ARGV[1]) then return -1 end
local n = 0
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return {n, 1 - redis.call('EXISTS', KEYS[1])}
)LUA";

// QUARANTINE: moves one pending entry that cannot be persisted out of the way, one symbol.
// KEYS: B:pending, B:quarantine, B:fence. ARGV: epoch, field, json as read. Only if the field
// still holds that JSON (compare-and-move: a shard may have re-written it meanwhile) it moves
// to B:quarantine (same field, same value) for a person to inspect (the worker then adds the
// symbol to PREFIX:quarantine). Returns {1 if moved, 0 if the field changed; 1 if B:pending is
// now empty}, or -1 if fenced out.
constexpr const char kQuarantine[] = R"LUA(
if fenced_out(KEYS[3], ARGV[1]) then return -1 end
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[3] then
  return {0, 1 - redis.call('EXISTS', KEYS[1])}
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[2])
return {1, 1 - redis.call('EXISTS', KEYS[1])}
)LUA";

// LATE_DONE: after late trades were committed to MySQL, one symbol.
// KEYS: B:late, B:fence. ARGV: base B, epoch, then per
// record: field ("INTERVAL|open_time|trade_id"), json as read, close to re-carry ('' =
// none), score bound of the re-carry ('+inf', or '(T' with T the open time of MySQL's first
// candle with trades after the bucket).
// Deletes each record if unchanged and re-carries the close into the empty history candles
// that follow the bucket (the bucket itself is no longer in Redis), stopping at the first
// candle with trades; the current candle only when nothing bounds the carry (voiding B:ws).
// Idempotent.
// Publishes every candle it rewrites on B:events (see lua_scripts.h).
// Returns {1, 1 if B:late is now empty, 1 if B:pending is not (a re-carry rewrote history)},
// or -1 if fenced out.
constexpr const char kLateDone[] = R"LUA(
local events = {}
local function recarry_until(base, iv, t, bound, close)
  local hist = base .. ':' .. iv .. ':hist'
  local from = '(' .. ms(t)
  local pt = redis.call('TYPE', base .. ':pending').ok  -- put_hist writes it
  if pt ~= 'none' and pt ~= 'hash' then return end
  while true do
    -- Stored garbage stops the carry instead of raising an error (which would keep the
    -- record, and this symbol's whole call, failing on every run).
    local later = redis.pcall('ZRANGEBYSCORE', hist, from, bound, 'LIMIT', 0, 256)
    if type(later) ~= 'table' or later.err then return end
    for _, m in ipairs(later) do
      local mt = open_time(m)
      if not mt or not is_empty(m) then return end
      local nm = with_close(m, close)
      if nm == m then return end  -- already carried: so are the ones after it
      put_hist(base, iv, mt, nm, events)
    end
    if #later < 256 then break end
    from = '(' .. ms(open_time(later[#later]))
  end
  if bound ~= '+inf' then return end
  recarry_current(base .. ':' .. iv, close, events, t)
end

local base = ARGV[1]
if fenced_out(KEYS[2], ARGV[2]) then return -1 end
for i = 3, #ARGV, 4 do
  local field, json, close, bound = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HGET', KEYS[1], field) == json then redis.call('HDEL', KEYS[1], field) end
  if close ~= '' then
    local iv, t = string.match(field, '^([^|]+)|(%-?%d+)|')
    if iv then recarry_until(base, iv, tonumber(t), bound, close) end
  end
end
-- A current candle rewritten: the shard's write stamp is void (see FLUSH_FAST).
if wrote_current then redis.call('SET', base .. ':ws', '') end
if #events > 0 then redis.call('SPUBLISH', base .. ':events', table.concat(events, '\n')) end
return {1, 1 - redis.call('EXISTS', KEYS[1]), redis.call('EXISTS', base .. ':pending')}
)LUA";

constexpr size_t kScanCount = 1000;
// How often the index sweep (SweepIndexes) runs besides each new active period.
constexpr int64_t kSweepEveryMs = 10 * 60 * 1000;
// The result of a pipelined script call Redis answered with an error (see EvalAll).
constexpr long long kScriptFailed = LLONG_MIN;
constexpr size_t kLateChunkSymbols = 100;
// Stored late trades were validated by their shard; their time is in the past. A decoder
// clock this far ahead never rejects one as "future".
constexpr int64_t kFarFutureMs = std::numeric_limits<int64_t>::max() / 4;

std::string_view View(const redisReply* r) { return {r->str, r->len}; }

bool IsStringish(const redisReply* r) {
  return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

// HGETALL replies (RESP2, which klined's connections speak): a flat field, value, ... array.
bool IsPairs(const redisReply* r) { return r->type == REDIS_REPLY_ARRAY && r->elements % 2 == 0; }

// "INTERVAL|open_time|trade_id"
bool ParseLateField(std::string_view f, Interval* iv, int64_t* open, TradeId* id) {
  const size_t a = f.find('|');
  if (a == std::string_view::npos) return false;
  const size_t b = f.find('|', a + 1);
  if (b == std::string_view::npos) return false;
  auto parsed = ParseInterval(f.substr(0, a));
  if (!parsed) return false;
  *iv = *parsed;
  const char* end = f.data() + f.size();
  auto r1 = std::from_chars(f.data() + a + 1, f.data() + b, *open);
  auto r2 = std::from_chars(f.data() + b + 1, end, *id);
  return r1.ec == std::errc() && r1.ptr == f.data() + b && r2.ec == std::errc() && r2.ptr == end;
}

// "INTERVAL|open_time"
bool ParsePendingField(std::string_view f, Interval* iv, int64_t* open) {
  const size_t a = f.find('|');
  if (a == std::string_view::npos) return false;
  auto parsed = ParseInterval(f.substr(0, a));
  if (!parsed) return false;
  *iv = *parsed;
  const char* end = f.data() + f.size();
  auto r = std::from_chars(f.data() + a + 1, end, *open);
  return r.ec == std::errc() && r.ptr == end;
}

// A stored value for a log line: bounded, on one line, safe inside a field's double quotes.
std::string Clip(std::string_view s) {
  constexpr size_t kMax = 200;
  std::string out(s.substr(0, kMax));
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
    if (c == '"') c = '\'';
  }
  if (s.size() > kMax) out += "...";
  return out;
}

// Why a pending entry (field, candle JSON) of `symbol` cannot be persisted as it is, or
// nullptr when it can (then *out holds it). The JSON must be a candle of that symbol whose
// interval and open time are the field's: anything else would upsert the wrong row and let
// the field's candle be trimmed before MySQL has it.
const char* JudgeEntry(std::string_view symbol, Interval iv, int64_t open, std::string_view json,
                       Candle* out) {
  std::string_view json_symbol;
  bool closed = false;
  if (!ParseCandleJson(json, out, &json_symbol, &closed)) return "not a candle";
  if (json_symbol != symbol) return "candle of another symbol";
  if (out->interval != iv || out->open_time != open) return "candle of another interval or time";
  return nullptr;
}

std::string ScoreBound(const std::optional<int64_t>& next_traded) {
  return next_traded ? "(" + std::to_string(*next_traded) : std::string("+inf");
}

}  // namespace

struct PersistWorker::Entry {
  std::string_view field;
  std::string_view json;
};

PersistWorker::PersistWorker(PersistOptions options)
    : options_(std::move(options)),
      own_topology_(options_.topology != nullptr
                        ? nullptr
                        : std::make_unique<cluster::Topology>(
                              cluster::SingleNode(options_.redis, options_.key_prefix + ":wait"))),
      topology_(options_.topology != nullptr ? options_.topology : own_topology_.get()),
      router_(topology_),
      mysql_(options_.mysql),
      table_(&mysql_, options_.batch_rows, options_.tz),
      keys_(options_.key_prefix, ""),
      interval_ms_(options_.persist_interval_ms) {
  pending_script_ = router_.AddScript(std::string(lua::kFence) + kPendingDone);
  quarantine_script_ = router_.AddScript(std::string(lua::kFence) + kQuarantine);
  late_script_ = router_.AddScript(std::string(lua::kCommon) + lua::kFence + kLateDone);
  restore_script_ =
      router_.AddScript(std::string(lua::kHistoryWindow) + lua::kFence + lua::kRestoreHistory);
}

PersistWorker::~PersistWorker() { Stop(); }

void PersistWorker::Start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] {
    NameThisThread("persist");
    Loop();
  });
}

void PersistWorker::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PersistWorker::SetActive(bool active, std::string token, int64_t epoch) {
  {
    std::lock_guard lock(mu_);
    token_ = active ? std::move(token) : std::string();
    epoch_ = active ? epoch : 0;
  }
  const bool was = active_.exchange(active, std::memory_order_acq_rel);
  if (active && !was) {
    {
      std::lock_guard lock(mu_);
      poke_ = true;
    }
    wake_.notify_all();
  }
}

void PersistWorker::set_persist_interval_ms(int64_t ms) {
  interval_ms_.store(std::max<int64_t>(ms, 1), std::memory_order_relaxed);
  wake_.notify_all();  // re-arm the wait with the new interval
}

void PersistWorker::Loop() {
  auto next = std::chrono::steady_clock::now();
  for (;;) {
    {
      std::unique_lock lock(mu_);
      for (;;) {
        if (stop_) return;
        if (poke_) break;
        next = std::min(
            next, std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(interval_ms_.load(std::memory_order_relaxed)));
        if (wake_.wait_until(lock, next) == std::cv_status::timeout) break;
      }
      poke_ = false;
    }
    next = std::chrono::steady_clock::now() +
           std::chrono::milliseconds(interval_ms_.load(std::memory_order_relaxed));
    if (active()) RunOnce();
    // A dataset restore in progress goes on at once (its steps are time-bounded, each run
    // persisting first), not one step per persist interval.
    if (restoring_) next = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
  }
}

bool PersistWorker::FailRedis(PersistRunReport* report) {
  report->error = "redis: " + router_.error();
  return false;
}

bool PersistWorker::FailMysql(PersistRunReport* report) {
  report->error =
      "mysql: " + mysql_.error() + " (errno " + std::to_string(mysql_.error_number()) + ")";
  if (!mysql_.connected()) schema_ready_ = false;  // re-check after reconnecting
  return false;
}

bool PersistWorker::Fenced(PersistRunReport* report) {
  report->fenced = true;
  report->error =
      "fenced: a newer lease holder is active (epoch above " + std::to_string(run_epoch_) + ")";
  return false;
}

bool PersistWorker::Connect(PersistRunReport* report) {
  if (!router_.EnsureConnected()) return FailRedis(report);
  if (!mysql_.EnsureConnected()) return FailMysql(report);
  if (!schema_ready_) {
    if (!table_.EnsureSchema()) return FailMysql(report);
    schema_ready_ = true;
  }
  // A new active period: raise MySQL's fence to our epoch before the first write, so an
  // ex-holder's worker that is still finishing a batch can no longer commit one.
  if (run_epoch_ > 0 && raised_epoch_ != run_epoch_) {
    if (!table_.RaiseFence(run_epoch_)) return FailMysql(report);
    raised_epoch_ = run_epoch_;
  }
  table_.set_fence_epoch(run_epoch_);
  return true;
}

PersistRunReport PersistWorker::RunOnce() {
  const int64_t start = MonotonicMs();
  PersistRunReport report;
  {
    // The whole run works under the grant it started with; if the lease moves meanwhile,
    // the fences stop it.
    std::lock_guard lock(mu_);
    run_fence_ = token_.empty() ? std::string() : std::to_string(epoch_);
    run_epoch_ = epoch_;
  }
  std::vector<std::string> symbols;
  report.ok = Connect(&report) && SweepIndexes(&report) &&
              ScanSet(keys_.PendingSymbols(), &symbols, &report) &&
              PersistPending(symbols, &report) && ScanSet(keys_.LateSymbols(), &symbols, &report) &&
              DrainLate(symbols, &report) && RestoreStep(&report);
  stats_.runs.Add();
  stats_.last_run_ms.Set(static_cast<uint64_t>(MonotonicMs() - start));
  if (report.ok) {
    stats_.backlog.Set(report.pending_seen);
  } else if (report.fenced) {
    stats_.fenced.Add();
    LOG_RATE(kWarn, "persist.fenced",
             "epoch=" << run_epoch_ << " upserted=" << report.upserted
                      << " detail=\"a newer lease holder is active; this run stopped\"");
  } else {
    stats_.failures.Add();
    LOG_RATE(kWarn, "persist.failed",
             "error=\"" << report.error << "\" upserted=" << report.upserted << " mysql_errors="
                        << mysql_.errors() << " redis_errors=" << router_.errors());
  }
  return report;
}

bool PersistWorker::ScanSet(const std::string& key, std::vector<std::string>* members,
                            PersistRunReport* report) {
  members->clear();
  std::string cursor = "0";
  const std::string count = std::to_string(kScanCount);
  do {
    if (!cluster::SscanStep(&router_, key, &cursor, count, members)) return FailRedis(report);
  } while (cursor != "0");
  // SSCAN may return a member twice.
  std::sort(members->begin(), members->end());
  members->erase(std::unique(members->begin(), members->end()), members->end());
  return true;
}

bool PersistWorker::EvalAll(const std::vector<std::vector<std::string_view>>& calls,
                            std::vector<long long>* results, PersistRunReport* report,
                            std::vector<std::array<long long, 2>>* flags) {
  results->assign(calls.size(), 0);
  if (flags != nullptr) flags->assign(calls.size(), {0, 0});
  for (const auto& argv : calls) {
    batch_.Append(cluster::KeySlot(argv[3]), std::span<const std::string_view>(argv));
  }
  for (size_t i = 0; i < calls.size(); ++i) {
    RedisReply r = batch_.Next();
    if (r == nullptr) {
      batch_.Drop();
      return FailRedis(report);
    }
    if (r->type == REDIS_REPLY_ERROR) {
      // This call only (a key of another type, say): its symbol's entries stay for the next
      // run; the other replies are read on.
      (*results)[i] = kScriptFailed;
      stats_.script_errors.Add();
      LOG_RATE(kError, "persist.script_failed",
               "key=" << calls[i][3] << " error=\"" << View(r.get()) << "\"");
    } else if (r->type == REDIS_REPLY_INTEGER) {
      (*results)[i] = r->integer;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
               r->element[0]->type == REDIS_REPLY_INTEGER) {
      (*results)[i] = r->element[0]->integer;  // {result, flags...}
      for (size_t e = 1; flags != nullptr && e < r->elements && e <= 2; ++e) {
        if (r->element[e]->type == REDIS_REPLY_INTEGER) (*flags)[i][e - 1] = r->element[e]->integer;
      }
    }
  }
  return true;
}

template <class Keys>
bool PersistWorker::ReadHashes(const Keys& keys, std::vector<RedisReply>* replies,
                               PersistRunReport* report) {
  for (const auto& key : keys) batch_.Append(cluster::KeySlot(key), {"HGETALL", key});
  replies->clear();
  for (size_t i = 0; i < std::size(keys); ++i) {
    RedisReply r = batch_.Next();
    if (r == nullptr) {
      batch_.Drop();
      return FailRedis(report);
    }
    replies->push_back(std::move(r));
  }
  return true;
}

bool PersistWorker::PersistPending(const std::vector<std::string>& symbols,
                                   PersistRunReport* report) {
  // An entry that cannot be persisted as read, with what the repair needs.
  struct Suspect {
    size_t symbol;  // index into this chunk
    std::string_view field, json;
    const char* why;
    bool field_ok;
    Interval iv;
    int64_t open;
  };
  std::vector<RedisReply> replies;
  std::vector<RedisReply> hist_replies;
  std::vector<StoredCandle> candles;
  std::vector<std::vector<std::string_view>> calls;
  std::vector<bool> is_quarantine;  // per call: QUARANTINE, else PENDING_DONE
  std::vector<size_t> call_symbol;  // per call: its symbol's index in symbols
  std::vector<long long> results;
  std::vector<std::array<long long, 2>> flags;
  std::vector<std::string> emptied, quarantined;
  std::vector<Suspect> suspects;
  std::deque<std::string> keys;  // stable storage for the views in calls
  const std::string set_key = keys_.PendingSymbols();
  size_t chunk = std::min(options_.max_chunk_symbols, std::max<size_t>(symbols.size(), 1));
  for (size_t begin = 0; begin < symbols.size();) {
    const size_t end = std::min(symbols.size(), begin + chunk);
    keys.clear();
    for (size_t i = begin; i < end; ++i) keys.push_back(keys_.Pending(symbols[i]));
    if (!ReadHashes(keys, &replies, report)) return false;

    candles.clear();
    calls.clear();
    is_quarantine.clear();
    call_symbol.clear();
    suspects.clear();
    std::vector<size_t> call_of(replies.size(), SIZE_MAX);  // symbol -> its PENDING_DONE call
    size_t seen = 0;
    for (size_t k = 0; k < replies.size(); ++k) {
      const redisReply* r = replies[k].get();
      const std::string& symbol = symbols[begin + k];
      if (!IsPairs(r)) {
        // Not a hash (or an error reply): nothing to read. Left alone, counted, and the run
        // goes on with the other symbols.
        stats_.bad_entries.Add();
        LOG_RATE(kError, "persist.bad_reply",
                 "symbol=" << symbol << " key=" << keys[k] << " type=" << r->type
                           << " detail=\"B:pending is not a hash; left in place\"");
        continue;
      }
      call_of[k] = calls.size();
      calls.push_back({"EVALSHA", router_.Sha(pending_script_), "2", keys[k],
                       keys.emplace_back(keys_.Fence(symbol)), run_fence_});
      is_quarantine.push_back(false);
      call_symbol.push_back(begin + k);
      for (size_t e = 0; e + 1 < r->elements; e += 2) {
        const redisReply* f = r->element[e];
        const redisReply* v = r->element[e + 1];
        if (!IsStringish(f) || !IsStringish(v)) continue;
        ++seen;
        Suspect sus{k,     View(f),       View(v), "field is not INTERVAL|open_time",
                    false, Interval::k1m, 0};
        sus.field_ok = ParsePendingField(sus.field, &sus.iv, &sus.open);
        StoredCandle sc;
        if (sus.field_ok) sus.why = JudgeEntry(symbol, sus.iv, sus.open, sus.json, &sc.candle);
        if (sus.why != nullptr) {
          stats_.bad_entries.Add();
          suspects.push_back(sus);
          continue;
        }
        sc.symbol = symbol;
        candles.push_back(std::move(sc));
        calls[call_of[k]].push_back(sus.field);
        calls[call_of[k]].push_back(sus.json);
      }
    }
    report->pending_seen += seen;

    // Our own data, so a bug somewhere wrote these. The history member at the same open time
    // is the candle the entry copied: persist that one when it is good (the field is then
    // deleted as usual, compare-and-delete against what was read). Otherwise move the entry
    // to the quarantine hash, so it neither stays pending forever nor blocks trimming.
    if (!suspects.empty()) {
      for (const Suspect& sus : suspects) {
        if (!sus.field_ok) continue;
        const std::string& hist =
            keys.emplace_back(keys_.History(symbols[begin + sus.symbol], sus.iv));
        const std::string& score = keys.emplace_back(std::to_string(sus.open));
        batch_.Append(cluster::KeySlot(hist),
                      {"ZRANGEBYSCORE", hist, score, score, "LIMIT", "0", "2"});
      }
      hist_replies.clear();
      for (const Suspect& sus : suspects) {
        if (!sus.field_ok) {
          hist_replies.emplace_back();
          continue;
        }
        RedisReply h = batch_.Next();
        if (h == nullptr) {
          batch_.Drop();
          return FailRedis(report);
        }
        hist_replies.push_back(std::move(h));
      }
      for (size_t i = 0; i < suspects.size(); ++i) {
        const Suspect& sus = suspects[i];
        const std::string& symbol = symbols[begin + sus.symbol];
        const redisReply* h = hist_replies[i].get();
        const char* repair = "field is not INTERVAL|open_time";
        StoredCandle sc;
        if (h != nullptr) {
          if (h->type != REDIS_REPLY_ARRAY || h->elements == 0) {
            repair = "no history member at that open time";
          } else if (h->elements > 1 || !IsStringish(h->element[0])) {
            repair = "history holds more than one member at that open time";
          } else {
            repair = JudgeEntry(symbol, sus.iv, sus.open, View(h->element[0]), &sc.candle);
          }
        }
        if (repair == nullptr) {
          stats_.repaired.Add();
          LOG_RATE(kWarn, "persist.repaired",
                   "symbol=" << symbol << " field=" << sus.field << " why=\"" << sus.why
                             << "\" json=\"" << Clip(sus.json)
                             << "\" detail=\"persisted the history member instead\"");
          sc.symbol = symbol;
          candles.push_back(std::move(sc));
          calls[call_of[sus.symbol]].push_back(sus.field);
          calls[call_of[sus.symbol]].push_back(sus.json);
          continue;
        }
        LOG_RATE(kError, "persist.quarantine",
                 "symbol=" << symbol << " field=" << sus.field << " why=\"" << sus.why
                           << "\" history=\"" << repair << "\" json=\"" << Clip(sus.json)
                           << "\" detail=\"moved to " << keys_.Quarantine(symbol) << "\"");
        const std::string& qkey = keys.emplace_back(keys_.Quarantine(symbol));
        calls.push_back({"EVALSHA", router_.Sha(quarantine_script_), "3", keys[sus.symbol], qkey,
                         keys.emplace_back(keys_.Fence(symbol)), run_fence_, sus.field, sus.json});
        is_quarantine.push_back(true);
        call_symbol.push_back(begin + sus.symbol);
      }
    }

    size_t batches = 0;
    const WriteStatus upserted = table_.Upsert(candles, &batches);
    stats_.batches.Add(batches);
    if (upserted == WriteStatus::kFenced) return Fenced(report);
    if (upserted != WriteStatus::kOk) return FailMysql(report);
    stats_.candles_upserted.Add(candles.size());
    report->upserted += candles.size();
    // MySQL committed every candle read: now, and only now, they may leave B:pending.
    if (!EvalAll(calls, &results, report, &flags)) return false;
    emptied.clear();
    quarantined.clear();
    bool fenced = false;
    for (size_t i = 0; i < calls.size(); ++i) {
      if (results[i] == kScriptFailed) continue;  // counted and logged by EvalAll
      if (results[i] < 0) {
        fenced = true;
        continue;
      }
      const std::string& symbol = symbols[call_symbol[i]];
      if (flags[i][0] == 1) emptied.push_back(symbol);
      if (is_quarantine[i]) {
        if (results[i] == 1) {
          stats_.quarantined.Add();
          ++report->quarantined;
          quarantined.push_back(symbol);
        }
      } else {
        report->deleted += static_cast<uint64_t>(std::max<long long>(results[i], 0));
      }
    }
    // The index sets after the calls, for what they did (also when one call was fenced).
    if (!quarantined.empty() && !AddTo(keys_.QuarantineSymbols(), quarantined)) {
      return FailRedis(report);
    }
    if (!DropEmpty(set_key, emptied,
                   [this](const std::string& sym) { return keys_.Pending(sym); })) {
      return FailRedis(report);
    }
    if (fenced) return Fenced(report);

    // Aim the next chunk at about chunk_candles candles.
    const size_t per_symbol = std::max<size_t>(1, seen / (end - begin));
    chunk = std::clamp<size_t>(options_.chunk_candles / per_symbol, 1, options_.max_chunk_symbols);
    begin = end;
  }
  return true;
}

std::vector<std::pair<std::string, int>> PersistWorker::DatasetMarkers() {
  std::vector<std::pair<std::string, int>> out;
  if (!topology_->cluster()) {
    out.emplace_back(keys_.Dataset(), 0);
    return out;
  }
  // One per primary, in the lowest slot it serves: each node's own data loss shows.
  const std::vector<int> first = router_.map().FirstSlots();
  for (size_t node = 0; node < first.size(); ++node) {
    if (first[node] < 0) continue;
    auto [it, fresh] = marker_tags_.try_emplace(first[node]);
    if (fresh) it->second = cluster::TagForSlot(static_cast<uint16_t>(first[node]));
    out.emplace_back(keys_.Dataset() + "{" + it->second + "}", static_cast<int>(node));
  }
  return out;
}

bool PersistWorker::RestoreStep(PersistRunReport* report) {
  if (options_.intervals.empty()) return true;
  if (restoring_ && restore_epoch_ != run_epoch_) restoring_ = false;  // a new grant: anew
  if (!restoring_) {
    const std::vector<std::pair<std::string, int>> markers = DatasetMarkers();
    for (const auto& [marker, node] : markers) {
      batch_.Append(cluster::KeySlot(marker), {"EXISTS", marker});
    }
    restore_markers_.clear();
    std::vector<int> lost_nodes;
    for (const auto& [marker, node] : markers) {
      RedisReply r = batch_.Next();
      if (r == nullptr) {
        batch_.Drop();
        return FailRedis(report);
      }
      if (r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        restore_markers_.push_back(marker);
        lost_nodes.push_back(node);
      }
    }
    restore_symbols_.clear();
    restore_dataset_ = !restore_markers_.empty();
    if (!restore_dataset_) {
      // The dataset is there; single symbols a shard found gone may wait in PREFIX:restore.
      const std::string asked_key = keys_.RestoreSymbols();
      RedisReply asked = router_.Command(cluster::KeySlot(asked_key), {"SMEMBERS", asked_key});
      if (asked == nullptr) return FailRedis(report);
      for (size_t i = 0; asked->type == REDIS_REPLY_ARRAY && i < asked->elements; ++i) {
        restore_symbols_.emplace_back(asked->element[i]->str, asked->element[i]->len);
      }
      if (restore_symbols_.empty()) return true;
      std::sort(restore_symbols_.begin(), restore_symbols_.end());
    } else if (!table_.Symbols(&restore_symbols_)) {
      return FailMysql(report);
    } else if (topology_->cluster()) {
      // Only the symbols of the nodes whose marker is gone.
      const cluster::SlotMap& map = router_.map();
      std::erase_if(restore_symbols_, [&](const std::string& sym) {
        return std::find(lost_nodes.begin(), lost_nodes.end(), map.NodeOf(keys_.Slot(sym))) ==
               lost_nodes.end();
      });
    }
    restoring_ = true;
    restore_next_ = 0;
    restore_written_ = 0;
    restore_gap_from_ = INT64_MAX;
    restore_epoch_ = run_epoch_;
    if (restore_dataset_) {
      LOG(kWarn, "persist.dataset_missing",
          "marker=" << restore_markers_.front() << " markers_missing=" << restore_markers_.size()
                    << " symbols=" << restore_symbols_.size()
                    << " detail=\"Redis holds no dataset marker: a new Redis, or one that lost "
                       "its data; restoring every symbol's history from MySQL where Redis has "
                       "none\"");
    }
  }
  // Symbols for up to kStepMs per run, one pipeline each (15 intervals x history_limit
  // candles at most), so persistence goes on beside a long restore and memory stays bounded;
  // the loop runs the next step at once (Loop).
  constexpr int64_t kStepMs = 250;
  const int64_t step_start = MonotonicMs();
  const size_t end = restore_symbols_.size();
  std::vector<Candle> candles;
  std::deque<std::string> strings;  // stable addresses for the argv views
  std::vector<std::vector<std::string_view>> calls;
  std::vector<long long> results;
  const size_t declared_count = keys_.ScriptKeyCount(options_.intervals.size());
  for (; restore_next_ < end && MonotonicMs() - step_start < kStepMs; ++restore_next_) {
    const std::string& sym = restore_symbols_[restore_next_];
    strings.clear();
    calls.clear();
    for (const Interval iv : options_.intervals) {
      candles.clear();
      if (!table_.ReadRange(sym, iv, INT64_MIN, INT64_MAX,
                            static_cast<size_t>(options_.history_limit), /*newest_first=*/true,
                            &candles)) {
        return FailMysql(report);
      }
      if (candles.empty()) continue;
      restore_gap_from_ =
          std::min(restore_gap_from_, NextBucketOpen(iv, candles.back().open_time, options_.tz));
      std::vector<std::string_view>& argv = calls.emplace_back();
      argv = {"EVALSHA",
              router_.Sha(restore_script_),
              strings.emplace_back(std::to_string(4 + declared_count)),
              strings.emplace_back(keys_.History(sym, iv)),
              strings.emplace_back(keys_.Trimmed(sym)),
              strings.emplace_back(keys_.Current(sym, iv)),
              strings.emplace_back(keys_.Fence(sym))};
      keys_.AppendScriptKeys(sym, options_.intervals, &strings,
                             &argv);  // (it also writes B:pending and B:ws)
      argv.insert(argv.end(), {run_fence_, IntervalName(iv), "0"});
      for (const Candle& c : candles) {
        argv.push_back(strings.emplace_back(std::to_string(c.open_time)));
        argv.push_back(strings.emplace_back(CandleJson(c, sym, /*closed=*/true)));
      }
    }
    if (calls.empty()) continue;
    if (!EvalAll(calls, &results, report)) return false;
    uint64_t written = 0;
    for (const long long n : results) {
      if (n == -1) return Fenced(report);
      if (n > 0) written += static_cast<uint64_t>(n);
    }
    if (written > 0) {
      // Back among the known symbols (the rollover and the API find it), unless retired.
      const std::string retired_key = keys_.RetiredSymbols();
      RedisReply retired =
          router_.Command(cluster::KeySlot(retired_key), {"SISMEMBER", retired_key, sym});
      if (retired == nullptr) return FailRedis(report);
      if ((retired->type != REDIS_REPLY_INTEGER || retired->integer != 1) &&
          !AddTo(keys_.Symbols(), {sym})) {
        return FailRedis(report);
      }
    }
    restore_written_ += written;
    stats_.restored_candles.Add(written);
    // Done with it (a request a shard made meanwhile is done too: the holes are filled).
    const std::string restore_key = keys_.RestoreSymbols();
    if (router_.Command(cluster::KeySlot(restore_key), {"SREM", restore_key, sym}) == nullptr) {
      return FailRedis(report);
    }
  }
  if (restore_next_ < restore_symbols_.size()) return true;
  // Done. The dataset's markers go back first: if that fails, the next run retries it.
  if (restore_dataset_) {
    const std::string value =
        "epoch:" + std::to_string(run_epoch_) + ":" + std::to_string(WallMs());
    for (const std::string& marker : restore_markers_) {
      if (router_.Command(cluster::KeySlot(marker), {"SET", marker, value}) == nullptr) {
        return FailRedis(report);
      }
    }
  }
  restoring_ = false;
  if (restore_dataset_ && restore_written_ == 0) {
    LOG(kInfo, "persist.dataset_marked",
        "symbols=" << restore_symbols_.size() << " detail=\"Redis held every stored candle\"");
    return true;
  }
  if (restore_dataset_) stats_.dataset_losses.Add();
  // Closed candles written to Redis but not yet persisted when it lost them are in neither
  // store (nor in shard memory, once written): they all open after MySQL's newest candle of
  // their series, and their trades are still in Kafka.
  LOG(kError, restore_dataset_ ? "persist.dataset_restored" : "persist.symbols_restored",
      "symbols=" << restore_symbols_.size() << " candles=" << restore_written_
                 << " recompute_from=" << restore_gap_from_ << " detail=\""
                 << (restore_dataset_ ? "Redis had lost history" : "symbols whose state Redis lost")
                 << "; the newest redis.history_limit closed candles per interval came back from "
                    "MySQL; candles that closed shortly before the loss and were not yet in MySQL "
                    "come back with klinectl recompute --from "
                 << restore_gap_from_ << " --to now\"");
  return true;
}

bool PersistWorker::DrainLate(const std::vector<std::string>& symbols, PersistRunReport* report) {
  std::vector<RedisReply> replies;
  std::vector<std::vector<std::string_view>> calls;
  std::deque<std::string> strings;  // stable storage for the views in calls
  std::vector<Trade> trades;
  const std::string set_key = keys_.LateSymbols();
  std::vector<size_t> call_symbol;  // per call: its symbol's index in symbols
  std::vector<std::string> emptied, pending;
  const size_t declared_count = keys_.ScriptKeyCount(options_.intervals.size());
  for (size_t begin = 0; begin < symbols.size(); begin += kLateChunkSymbols) {
    const size_t end = std::min(symbols.size(), begin + kLateChunkSymbols);
    strings.clear();
    std::vector<std::string_view> bases, late_keys;
    for (size_t i = begin; i < end; ++i) {
      bases.push_back(strings.emplace_back(keys_.Base(symbols[i])));
      late_keys.push_back(strings.emplace_back(keys_.Late(symbols[i])));
    }
    if (!ReadHashes(late_keys, &replies, report)) return false;

    calls.clear();
    call_symbol.clear();
    bool mysql_failed = false;
    bool fenced = false;
    for (size_t k = 0; k < replies.size() && !mysql_failed && !fenced; ++k) {
      const redisReply* r = replies[k].get();
      const std::string& symbol = symbols[begin + k];
      const std::string_view base = bases[k];
      if (!IsPairs(r)) continue;
      std::vector<std::string_view>& argv = calls.emplace_back();
      call_symbol.push_back(begin + k);
      // KEYS[1..2] as the script reads them, then every key it may touch (the history and
      // current candles it re-carries, B:pending, B:ws): see KeyLayout::ScriptKeys.
      argv = {"EVALSHA", router_.Sha(late_script_),
              strings.emplace_back(std::to_string(2 + declared_count)), late_keys[k],
              strings.emplace_back(keys_.Fence(symbol))};
      keys_.AppendScriptKeys(symbol, options_.intervals, &strings, &argv);
      argv.insert(argv.end(), {base, run_fence_});
      for (size_t e = 0; e + 1 < r->elements; e += 2) {
        const redisReply* f = r->element[e];
        const redisReply* v = r->element[e + 1];
        if (!IsStringish(f) || !IsStringish(v)) continue;
        ++report->late_seen;
        Interval iv = Interval::k1m;
        int64_t open = 0;
        TradeId id = 0;
        trades.clear();
        const bool field_ok = ParseLateField(View(f), &iv, &open, &id);
        const DecodeResult d = decoder_.Decode(View(v), kFarFutureMs, &trades);
        if (!field_ok || d.accepted != 1 || d.rejected != 0 || trades[0].id != id ||
            trades[0].symbol.view() != symbol ||
            BucketOpen(iv, trades[0].time_ms, options_.tz) != open) {
          // Written by our own shard, so a bug: it can never apply; drop it, counted.
          stats_.late_rejected.Add();
          LOG_RATE(kError, "persist.late_bad_record",
                   "symbol=" << symbol << " field=" << View(f) << " json=" << View(v));
          argv.insert(argv.end(), {View(f), View(v), "", ""});
          continue;
        }
        const LateResult lr = table_.ApplyLateTrade(symbol, iv, open, trades[0]);
        std::string_view close = "";
        std::optional<int64_t> bound;
        switch (lr.outcome) {
          case LateOutcome::kApplied:
            stats_.late_applied.Add();
            ++report->late_applied;
            LOG(kInfo, "persist.late_applied",
                "symbol=" << symbol << " interval=" << IntervalName(iv) << " open_time=" << open
                          << " trade_id=" << id << " created=" << lr.created
                          << " recarried=" << lr.recarried_rows << " gap_rows=" << lr.gap_rows);
            if (lr.close_changed) {
              close = strings.emplace_back(lr.candle.close.ToString());
              bound = lr.next_traded;
            }
            break;
          case LateOutcome::kDuplicate: {
            // Applied by an earlier run that crashed before deleting the record. Its Redis
            // re-carry may be missing too: redo it from what MySQL holds (idempotent).
            stats_.late_duplicates.Add();
            ++report->late_duplicates;
            Decimal c;
            if (table_.ReadCarry(symbol, iv, open, &c, &bound)) {
              close = strings.emplace_back(c.ToString());
            } else if (!mysql_.connected()) {
              mysql_failed = true;
            }
            break;
          }
          case LateOutcome::kOutOfRange:
            stats_.late_rejected.Add();
            LOG_RATE(kWarn, "persist.late_out_of_range",
                     "symbol=" << symbol << " interval=" << IntervalName(iv)
                               << " open_time=" << open << " trade_id=" << id);
            break;
          case LateOutcome::kFailed:
            mysql_failed = true;
            break;
          case LateOutcome::kFenced:
            fenced = true;
            break;
        }
        if (mysql_failed || fenced) break;  // this record stays; the ones before it are done
        argv.insert(argv.end(),
                    {View(f), View(v), close,
                     close.empty() ? std::string_view() : strings.emplace_back(ScoreBound(bound))});
      }
    }
    // Clean up what MySQL committed, even when a later record failed.
    std::vector<long long> results;
    std::vector<std::array<long long, 2>> flags;
    if (!EvalAll(calls, &results, report, &flags)) return false;
    emptied.clear();
    pending.clear();
    for (size_t i = 0; i < calls.size(); ++i) {
      if (results[i] != 1) continue;
      if (flags[i][0] == 1) emptied.push_back(symbols[call_symbol[i]]);
      if (flags[i][1] == 1) pending.push_back(symbols[call_symbol[i]]);
    }
    if (!AddTo(keys_.PendingSymbols(), pending) ||
        !DropEmpty(set_key, emptied, [this](const std::string& sym) { return keys_.Late(sym); })) {
      return FailRedis(report);
    }
    if (fenced || std::find(results.begin(), results.end(), -1) != results.end()) {
      return Fenced(report);
    }
    if (mysql_failed) return FailMysql(report);
  }
  return true;
}

bool PersistWorker::AddTo(const std::string& set_key, const std::vector<std::string>& symbols) {
  if (symbols.empty()) return true;
  std::vector<std::string_view> args = {"SADD", set_key};
  args.insert(args.end(), symbols.begin(), symbols.end());
  batch_.Append(cluster::KeySlot(set_key), args);
  RedisReply r = batch_.Next();
  if (r == nullptr) return false;
  if (r->type == REDIS_REPLY_ERROR) {  // an operator's to fix: logged, the run goes on
    LOG_RATE(kError, "persist.index_failed",
             "key=" << set_key << " error=\"" << View(r.get()) << "\"");
  }
  return true;
}

bool PersistWorker::DropEmpty(const std::string& set_key, const std::vector<std::string>& symbols,
                              const std::function<std::string(const std::string&)>& hash_of) {
  if (symbols.empty()) return true;
  // 1. SREM. 2. EXISTS of each hash. 3. SADD back the ones a writer filled meanwhile: a
  // writer's entry that step 2 missed landed after it, and so its add after its write comes
  // after step 1 and stands. The set and the hashes may live on different nodes: step 1's
  // reply is read before step 2 is sent.
  std::vector<std::string_view> args = {"SREM", set_key};
  args.insert(args.end(), symbols.begin(), symbols.end());
  batch_.Append(cluster::KeySlot(set_key), args);
  if (batch_.Next() == nullptr) return false;
  std::vector<std::string> hashes;
  hashes.reserve(symbols.size());
  for (const std::string& sym : symbols) {
    const std::string& hash = hashes.emplace_back(hash_of(sym));
    batch_.Append(cluster::KeySlot(hash), {"EXISTS", hash});
  }
  std::vector<std::string> refilled;
  for (const std::string& sym : symbols) {
    RedisReply r = batch_.Next();
    if (r == nullptr) {
      batch_.Drop();
      return false;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) refilled.push_back(sym);
  }
  return AddTo(set_key, refilled);
}

bool PersistWorker::SweepIndexes(PersistRunReport* report) {
  // At the start of each active period, then every kSweepEveryMs: a writer that died between
  // its write and its index add left entries no index names.
  const int64_t now = MonotonicMs();
  if (swept_epoch_ == run_epoch_ && now < next_sweep_ms_) return true;
  std::vector<std::string> symbols, pending, late;
  if (!ScanSet(keys_.Symbols(), &symbols, report)) return false;
  for (size_t begin = 0; begin < symbols.size(); begin += kScanCount) {
    const size_t end = std::min(symbols.size(), begin + kScanCount);
    for (size_t i = begin; i < end; ++i) {
      const uint16_t slot = keys_.Slot(symbols[i]);
      batch_.Append(slot, {"EXISTS", keys_.Pending(symbols[i])});
      batch_.Append(slot, {"EXISTS", keys_.Late(symbols[i])});
    }
    for (size_t i = begin; i < end; ++i) {
      RedisReply p = batch_.Next();
      RedisReply l = p ? batch_.Next() : nullptr;
      if (l == nullptr) {
        batch_.Drop();
        return FailRedis(report);
      }
      if (p->type == REDIS_REPLY_INTEGER && p->integer == 1) pending.push_back(symbols[i]);
      if (l->type == REDIS_REPLY_INTEGER && l->integer == 1) late.push_back(symbols[i]);
    }
  }
  if (!AddTo(keys_.PendingSymbols(), pending) || !AddTo(keys_.LateSymbols(), late)) {
    return FailRedis(report);
  }
  swept_epoch_ = run_epoch_;
  next_sweep_ms_ = now + kSweepEveryMs;
  return true;
}

}  // namespace klined
