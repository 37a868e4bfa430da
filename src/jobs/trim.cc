#include "jobs/trim.h"
#include "base/clock.h"

#include <chrono>
#include <deque>
#include <vector>

#include "base/log.h"
#include "io/redis/job_scripts.h"
#include "io/redis/lua_scripts.h"

namespace klined {
namespace {

// Older-than-limit members examined per interval per call: bounds how long one script holds
// Redis when MySQL has been down for long and much history is pending.
constexpr const char kMaxScan[] = "20000";

// RETIRE_IDLE (prepend kFence). KEYS: watermark, write stamp, B:fence. ARGV: the watermark
// seen, fencing epoch ("" = unfenced). Only if the symbol's watermark is still the one seen (a
// trade flushed since keeps it active) it voids the shard's write stamp (its next flush is a
// FLUSH, which reports the void stamp: the store adds the symbol back to PREFIX:symbols) and
// returns 1; the caller then moves the symbol from PREFIX:symbols to PREFIX:retired (other
// slots). 0 it traded, -1 fenced.
constexpr const char kRetireIdle[] = R"LUA(
if fenced_out(KEYS[3], ARGV[2]) then return -1 end
local wm = redis.pcall('GET', KEYS[1])
if type(wm) ~= 'string' then wm = '' end
if wm ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], '')
return 1
)LUA";

}  // namespace

TrimJob::TrimJob(cluster::Router* router, std::string key_prefix, const SeriesLayout* layout,
                 int64_t history_limit, TrimStats* stats)
    : router_(router),
      batch_(router),
      keys_(std::move(key_prefix), ""),
      layout_(layout),
      limit_(history_limit),
      stats_(stats) {
  script_ = router_->AddScript(std::string(lua::kCommon) + lua::kFence + lua::kTrim);
  retire_script_ = router_->AddScript(std::string(lua::kFence) + kRetireIdle);
}

TrimResult TrimJob::RunOnce(std::string_view fence, const std::function<bool()>& may_continue) {
  TrimResult result;
  const int64_t start = MonotonicMs();
  const std::string symbols_key = keys_.Symbols();
  const std::string count = std::to_string(chunk_);
  const std::string limit = std::to_string(history_limit());
  std::string cursor = cursor_;  // resumes an interrupted pass
  std::vector<std::string_view> args;
  std::vector<std::string> members;
  const int64_t idle_ms = retire_idle_ms_.load(std::memory_order_relaxed);
  if (idle_ms <= 0) idle_.clear();
  router_->EnsureConnected();  // as the rollover's
  bool ok = !router_->Sha(script_).empty() && !router_->Sha(retire_script_).empty();
  bool interrupted = false;
  std::deque<std::string> declared;  // the declared keys args points into
  const std::string key_count = std::to_string(keys_.ScriptKeyCount(layout_->intervals.size()));
  while (ok) {
    if (may_continue && !may_continue()) {
      ok = false;
      interrupted = true;
      break;
    }
    members.clear();
    if (!cluster::SscanStep(router_, symbols_key, &cursor, count, &members)) {
      ok = false;
      break;
    }
    for (const std::string& symbol : members) {
      args.clear();
      declared.clear();
      // Every key it may touch declared (the script reads ARGV): see KeyLayout::ScriptKeys.
      args.insert(args.end(), {"EVALSHA", router_->Sha(script_), key_count});
      keys_.AppendScriptKeys(symbol, layout_->intervals, &declared, &args);
      args.insert(args.end(), {keys_.prefix(), symbol, fence, limit, kMaxScan});
      for (Interval iv : layout_->intervals) args.push_back(IntervalName(iv));
      batch_.Append(keys_.Slot(symbol), args);
    }
    for (size_t k = 0; k < members.size() && ok; ++k) {
      RedisReply t = batch_.Next();
      if (t == nullptr) {
        ok = false;
      } else if (t->type == REDIS_REPLY_ERROR) {
        // This symbol only (a key of another type): counted, logged, the pass goes on.
        stats_->skipped.Add();
        LOG_RATE(kError, "trim.symbol_failed",
                 "symbol=" << members[k] << " error=\"" << t->str << "\"");
      } else if (t->type != REDIS_REPLY_INTEGER) {
        router_->NoteError("TRIM script: unexpected reply");
        ok = false;
      } else if (t->integer < 0) {
        LOG_RATE(kWarn, "trim.fenced", "epoch=" << fence);
        ok = false;
      } else {
        result.removed += static_cast<uint64_t>(t->integer);
      }
    }
    if (!ok) batch_.Drop();
    // limits.retire_idle_after rides on the pass's own scan of the symbols.
    if (ok && idle_ms > 0) ok = RetireIdle(members, fence, idle_ms);
    if (!ok) break;
    result.symbols += members.size();
    cursor_ = cursor;  // this chunk is done: an interrupted pass resumes after it
    if (cursor == "0") break;
  }
  batch_.Drop();  // what a failed step left unread
  result.complete = ok;
  result.interrupted = interrupted;
  stats_->removed.Add(result.removed);
  if (ok) {
    stats_->runs.Add();
    stats_->last_run_ms.Set(static_cast<uint64_t>(MonotonicMs() - start));
    if (!Census()) {
      batch_.Drop();
      LOG_RATE(kWarn, "trim.census_failed", "error=\"" << router_->error() << "\"");
    }
  } else if (!interrupted) {
    stats_->failures.Add();
    LOG_RATE(kWarn, "trim.incomplete", "error=\"" << router_->error() << "\"");
  }
  return result;
}

bool TrimJob::RetireIdle(const std::vector<std::string>& members, std::string_view fence,
                         int64_t idle_ms) {
  for (const std::string& sym : members) {
    batch_.Append(keys_.Slot(sym), {"GET", keys_.Watermark(sym)});
  }
  std::vector<std::string> due_wm;
  std::vector<const std::string*> due;
  const int64_t now = MonotonicMs();
  for (const std::string& sym : members) {
    RedisReply wm = batch_.Next();
    if (wm == nullptr) return false;
    const std::string value = wm->type == REDIS_REPLY_STRING ? std::string(wm->str, wm->len) : "";
    auto [it, fresh] = idle_.try_emplace(sym, value, now);
    if (fresh || it->second.first != value) {
      it->second = {value, now};  // traded (or first seen): the clock starts again
    } else if (now - it->second.second >= idle_ms) {
      due.push_back(&sym);
      due_wm.push_back(value);
    }
  }
  for (size_t i = 0; i < due.size(); ++i) {
    batch_.Append(keys_.Slot(*due[i]),
                  {"EVALSHA", router_->Sha(retire_script_), "3", keys_.Watermark(*due[i]),
                   keys_.WriteStamp(*due[i]), keys_.Fence(*due[i]), due_wm[i], fence});
  }
  std::vector<size_t> retired;  // indexes into due
  for (size_t i = 0; i < due.size(); ++i) {
    RedisReply r = batch_.Next();
    if (r == nullptr) return false;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
      retired.push_back(i);
      stats_->auto_retired.Add();
      LOG(kInfo, "trim.retired",
          "symbol=" << *due[i] << " idle_ms=" << idle_ms
                    << " detail=\"no trade for limits.retire_idle_after: left the rollover; a "
                       "trade brings it back\"");
      idle_.erase(*due[i]);
    } else if (r->type == REDIS_REPLY_ERROR) {
      LOG_RATE(kWarn, "trim.retire_failed", "symbol=" << *due[i] << " error=\"" << r->str << "\"");
    }
  }
  // Out of the known symbols first, then into the retired set: in between the symbol is in
  // neither (the rollover leaves it, as it should), never in both, which Census would read as
  // "traded again". Then the watermark once more: a trade flushed since the script (its FLUSH
  // found the stamp void, and its store's add may have come before the SREM) puts the symbol
  // back; one flushed after this read is added back by its store. The keys may live on
  // different nodes, so each step's replies are read before the next step is sent.
  if (retired.empty()) return true;
  const std::string symbols_key = keys_.Symbols();
  const std::string retired_key = keys_.RetiredSymbols();
  std::vector<std::string_view> args = {"SREM", symbols_key};
  for (size_t i : retired) args.push_back(*due[i]);
  batch_.Append(cluster::KeySlot(symbols_key), args);
  if (batch_.Next() == nullptr) return false;
  args = {"SADD", retired_key};
  for (size_t i : retired) args.push_back(*due[i]);
  batch_.Append(cluster::KeySlot(retired_key), args);
  for (size_t i : retired) batch_.Append(keys_.Slot(*due[i]), {"GET", keys_.Watermark(*due[i])});
  if (batch_.Next() == nullptr) {
    batch_.Drop();
    return false;
  }
  args = {"SADD", symbols_key};
  for (size_t i : retired) {
    RedisReply wm = batch_.Next();
    if (wm == nullptr) {
      batch_.Drop();
      return false;
    }
    const std::string now_wm = wm->type == REDIS_REPLY_STRING ? std::string(wm->str, wm->len) : "";
    if (now_wm != due_wm[i]) args.push_back(*due[i]);  // traded since: active again
  }
  if (args.size() == 2) return true;
  batch_.Append(cluster::KeySlot(symbols_key), args);
  return batch_.Next() != nullptr;
}

bool TrimJob::Census() {
  const std::string symbols_key = keys_.Symbols();
  const std::string retired_key = keys_.RetiredSymbols();
  RedisReply active = router_->Command(cluster::KeySlot(symbols_key), {"SCARD", symbols_key});
  if (active == nullptr || active->type != REDIS_REPLY_INTEGER) return false;
  stats_->active_symbols.Set(static_cast<uint64_t>(active->integer));
  std::string cursor = "0";
  std::vector<std::string> members;
  uint64_t retired = 0;
  std::vector<std::string_view> args;
  do {
    members.clear();
    if (!cluster::SscanStep(router_, retired_key, &cursor, "500", &members)) return false;
    if (members.empty()) continue;
    args.assign({"SMISMEMBER", symbols_key});
    args.insert(args.end(), members.begin(), members.end());
    batch_.Append(cluster::KeySlot(symbols_key), args);
    RedisReply in = batch_.Next();
    if (in == nullptr || in->type != REDIS_REPLY_ARRAY || in->elements != members.size()) {
      return false;
    }
    args.assign({"SREM", retired_key});
    for (size_t i = 0; i < members.size(); ++i) {
      if (in->element[i]->integer == 1) {
        args.push_back(members[i]);  // traded again: active
      } else {
        ++retired;  // (SSCAN may repeat a member: a gauge, not a ledger)
      }
    }
    if (args.size() > 2) {
      batch_.Append(cluster::KeySlot(retired_key), args);
      if (batch_.Next() == nullptr) return false;
    }
  } while (cursor != "0");
  stats_->retired_symbols.Set(retired);
  return true;
}

}  // namespace klined
