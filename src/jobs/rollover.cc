#include "jobs/rollover.h"
#include "base/clock.h"

#include <algorithm>
#include <charconv>
#include <chrono>

#include "base/log.h"
#include "io/redis/job_scripts.h"
#include "io/redis/lua_scripts.h"
#include "klined/candle.h"

namespace klined {
namespace {

constexpr int kMaxAttempts = 4;        // per chunk: the first try plus re-reads after conflicts
constexpr size_t kPlannedWindow = 16;  // symbols per pipeline on the planned path

std::string ToDec(int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

// How one reply of a rollover pipeline reads: the script's answer (an array whose first
// element is an integer), an error reply for this one symbol (counted and logged; the rest
// of the pipeline is read on), or anything else, after which the batch is dropped. (NOSCRIPT
// never reaches here: the router loads the scripts on that node again and resends.)
enum class ScriptReply { kAnswer, kError, kBroken };

ScriptReply ReadScriptReply(cluster::Batch* batch, cluster::Router* router, const redisReply* r,
                            std::string_view script, std::string_view symbol,
                            RolloverResult* result) {
  if (r->type == REDIS_REPLY_ERROR) {
    ++result->errors;
    LOG_RATE(kError, "rollover.symbol_failed",
             "script=" << script << " symbol=" << symbol << " error=\"" << r->str << "\"");
    return ScriptReply::kError;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
      r->element[0]->type != REDIS_REPLY_INTEGER) {
    router->NoteError(std::string(script) + " script: unexpected reply");
    batch->Drop();
    return ScriptReply::kBroken;
  }
  return ScriptReply::kAnswer;
}

}  // namespace

bool PlanRollover(std::string_view stored_json, std::string_view symbol, Interval iv,
                  int64_t now_ms, UtcOffset tz, IntervalRoll* out, bool* bad, int64_t max_closed,
                  bool* truncated) {
  *bad = false;
  if (truncated != nullptr) *truncated = false;
  Candle cur;
  std::string_view stored_sym;
  bool closed = false;
  if (!ParseCandleJson(stored_json, &cur, &stored_sym, &closed) || cur.interval != iv ||
      stored_sym != symbol) {
    *bad = true;
    return false;
  }
  const int64_t now_open = BucketOpen(iv, now_ms, tz);
  if (cur.open_time >= now_open) return false;
  out->closed.clear();
  out->closed_open.clear();
  out->closed.push_back(CandleJson(cur, symbol, /*closed=*/true));
  out->closed_open.push_back(cur.open_time);
  const Decimal carry = cur.close;
  int64_t o = NextBucketOpen(iv, cur.open_time, tz);
  for (; o < now_open; o = NextBucketOpen(iv, o, tz)) {
    if (static_cast<int64_t>(out->closed.size()) >= max_closed) {
      if (truncated != nullptr) *truncated = true;
      break;
    }
    out->closed.push_back(CandleJson(Candle::Empty(iv, o, tz, carry), symbol, /*closed=*/true));
    out->closed_open.push_back(o);
  }
  out->next_current = CandleJson(Candle::Empty(iv, o, tz, carry), symbol, false);
  return true;
}

RolloverJob::RolloverJob(cluster::Router* router, std::string key_prefix,
                         const SeriesLayout* layout, RolloverStats* stats)
    : router_(router),
      batch_(router),
      keys_(std::move(key_prefix), ""),
      layout_(layout),
      stats_(stats) {
  script_ = router_->AddScript(std::string(lua::kCommon) + lua::kFence + lua::kRollover);
  step_script_ = router_->AddScript(std::string(lua::kCommon) + lua::kFence + lua::kRolloverStep);
}

void RolloverJob::DeclareKeys(std::string_view sym) {
  nums_.push_back(ToDec(static_cast<int64_t>(keys_.ScriptKeyCount(layout_->intervals.size()))));
  args_.push_back(nums_.back());
  keys_.AppendScriptKeys(sym, layout_->intervals, &nums_, &args_);
}

void RolloverJob::AddPending() {
  batch_.Drop();  // what a failed chunk left unread
  if (unindexed_.empty()) return;
  std::sort(unindexed_.begin(), unindexed_.end());  // (left by failed adds: no repeats)
  unindexed_.erase(std::unique(unindexed_.begin(), unindexed_.end()), unindexed_.end());
  args_.assign({"SADD"});
  const std::string key = keys_.PendingSymbols();
  args_.push_back(key);
  args_.insert(args_.end(), unindexed_.begin(), unindexed_.end());
  batch_.Append(cluster::KeySlot(key), args_);
  RedisReply r = batch_.Next();
  if (r == nullptr) return;
  if (r->type == REDIS_REPLY_ERROR) {
    LOG_RATE(kError, "rollover.index_failed", "key=" << key << " error=\"" << r->str << "\"");
  }
  unindexed_.clear();
}

bool RolloverJob::StepChunk(const std::vector<std::string>& symbols, int64_t now_ms,
                            int64_t since_ms, std::string_view fence, RolloverResult* result,
                            std::vector<std::string>* planned) {
  const UtcOffset tz = layout_->tz;
  // The intervals checked (all, or those with a boundary since since_ms), and per interval
  // the open time of the bucket before now's and of now's, and now's close time, as decimal
  // strings.
  std::vector<Interval> ivs;
  std::vector<std::string> prev, now, close_time;
  std::vector<int64_t> now_open;
  for (Interval iv : layout_->intervals) {
    const int64_t open = BucketOpen(iv, now_ms, tz);
    if (since_ms >= 0 && open <= since_ms) continue;
    ivs.push_back(iv);
    now_open.push_back(open);
    prev.push_back(ToDec(BucketOpen(iv, open - 1, tz)));
    now.push_back(ToDec(open));
    close_time.push_back(ToDec(NextBucketOpen(iv, open, tz) - 1));
  }
  const size_t n_iv = ivs.size();
  planned->clear();
  if (n_iv == 0) return true;
  const std::string count = ToDec(static_cast<int64_t>(n_iv));
  // The script assembles now's empty candle from these parts; they must give CandleJson's
  // text exactly, or a format change that forgot the script would write different JSON.
  // Checked once per chunk: both put the symbol in verbatim, so one symbol proves the layout
  // for all.
  constexpr std::string_view kOhlc = R"("o":"0","h":"0","l":"0","c":"0")";
  std::string tail;
  for (size_t i = 0; i < n_iv && !symbols.empty(); ++i) {
    const std::string& sym = symbols.front();
    const std::string json =
        CandleJson(Candle::Empty(ivs[i], now_open[i], tz, Decimal()), sym, /*closed=*/false);
    const size_t at = json.find(kOhlc);
    if (i == 0) tail = at == std::string::npos ? "" : json.substr(at + kOhlc.size());
    const std::string expected = R"({"t":)" + now[i] + R"(,"T":)" + close_time[i] + R"(,"s":")" +
                                 sym + R"(","i":")" + std::string(IntervalName(ivs[i])) +
                                 R"(","f":-1,"L":-1,)" + std::string(kOhlc) + tail;
    if (json != expected) {
      LOG(kError, "rollover.step_template",
          "the step script's candle differs from CandleJson's: " << json);
      return false;
    }
  }
  // Each call declares every key it may touch (the script reads ARGV only): see
  // KeyLayout::ScriptKeys.
  for (const std::string& sym : symbols) {
    args_.clear();
    nums_.clear();
    args_.insert(args_.end(), {"EVALSHA", router_->Sha(step_script_)});
    DeclareKeys(sym);
    args_.insert(args_.end(), {keys_.prefix(), sym, fence, count, tail});
    for (size_t i = 0; i < n_iv; ++i) {
      args_.insert(args_.end(), {IntervalName(ivs[i]), prev[i], now[i], close_time[i]});
    }
    batch_.Append(keys_.Slot(sym), args_);
  }
  bool fenced = false;
  for (const std::string& sym : symbols) {
    RedisReply r = batch_.Next();
    if (r == nullptr) {
      batch_.Drop();
      return false;
    }
    const ScriptReply how =
        ReadScriptReply(&batch_, router_, r.get(), "ROLLOVER_STEP", sym, result);
    if (how == ScriptReply::kBroken) return false;
    if (how == ScriptReply::kError) continue;
    const int64_t rolled = r->element[0]->integer;
    if (rolled < 0) {
      fenced = true;
      continue;
    }
    result->candles_closed += static_cast<uint64_t>(rolled);
    if (rolled > 0) {
      ++result->symbols_rolled;
      unindexed_.push_back(sym);
    }
    bool plan = false;
    for (size_t e = 1; e < r->elements; ++e) {
      const long long k = r->element[e]->integer;
      if (k >= 0) {
        plan = true;
        continue;
      }
      ++result->bad_keys;  // a history or pending key of another type: left as it was
      LOG_RATE(kError, "rollover.bad_key",
               "symbol=" << sym << " interval=" << IntervalName(ivs[static_cast<size_t>(-k - 1)])
                         << " detail=\"a history or pending key holds another type\"");
    }
    if (plan) planned->push_back(sym);
  }
  if (fenced) {
    LOG_RATE(kWarn, "rollover.fenced", "epoch=" << fence);
    return false;
  }
  return true;
}

bool RolloverJob::RollChunk(const std::vector<std::string>& symbols, int64_t now_ms,
                            std::string_view fence, RolloverResult* result) {
  const size_t n_iv = layout_->intervals.size();
  std::vector<size_t> pending(symbols.size());  // indexes into symbols
  for (size_t k = 0; k < pending.size(); ++k) pending[k] = k;
  std::vector<size_t> retry;
  std::vector<std::string> keys(n_iv);
  std::vector<RedisReply> reads;
  std::vector<IntervalRoll> rolls(n_iv);
  std::vector<char> rolled_once(symbols.size(), 0);
  uint64_t left = 0;
  for (int attempt = 0; attempt < kMaxAttempts && !pending.empty(); ++attempt) {
    // 1. Read every symbol's current candles, pipelined.
    for (size_t idx : pending) {
      const std::string& sym = symbols[idx];
      args_.clear();
      args_.push_back("MGET");
      for (size_t i = 0; i < n_iv; ++i) {
        keys_.CurrentInto(sym, layout_->intervals[i], &keys[i]);
        args_.push_back(keys[i]);
      }
      batch_.Append(keys_.Slot(sym), args_);
    }
    reads.clear();
    for (size_t k = 0; k < pending.size(); ++k) {
      RedisReply r = batch_.Next();
      if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != n_iv) {
        if (r != nullptr) router_->NoteError("rollover: unexpected MGET reply");
        batch_.Drop();
        return false;
      }
      reads.push_back(std::move(r));
    }
    // 2. Plan in C++ and send one ROLLOVER per symbol that has something due.
    std::vector<size_t> sent;  // index into pending, per command sent
    for (size_t k = 0; k < pending.size(); ++k) {
      const std::string& sym = symbols[pending[k]];
      args_.clear();
      nums_.clear();
      args_.insert(args_.end(), {"EVALSHA", router_->Sha(script_)});
      DeclareKeys(sym);  // as ROLLOVER_STEP's
      args_.insert(args_.end(), {keys_.prefix(), sym, fence, ""});
      const size_t count_at = args_.size() - 1;  // the "" above: the count, once known
      size_t n_roll = 0;
      for (size_t i = 0; i < n_iv; ++i) {
        const redisReply* e = reads[k]->element[i];
        if (e->type != REDIS_REPLY_STRING) continue;  // no candle yet for this interval
        const std::string_view stored(e->str, e->len);
        bool bad = false;
        bool truncated = false;
        if (!PlanRollover(stored, sym, layout_->intervals[i], now_ms, layout_->tz, &rolls[i], &bad,
                          kMaxClosedPerRun, &truncated)) {
          if (bad) {
            ++result->bad_candles;
            LOG_RATE(kError, "rollover.bad_candle",
                     "symbol=" << sym << " interval=" << IntervalName(layout_->intervals[i]));
          }
          continue;
        }
        ++n_roll;
        if (truncated) ++result->truncated;
        args_.push_back(IntervalName(layout_->intervals[i]));
        args_.push_back(stored);
        args_.push_back(rolls[i].next_current);
        nums_.push_back(ToDec(static_cast<int64_t>(rolls[i].closed.size())));
        args_.push_back(nums_.back());
        for (size_t c = 0; c < rolls[i].closed.size(); ++c) {
          nums_.push_back(ToDec(rolls[i].closed_open[c]));
          args_.push_back(nums_.back());
          args_.push_back(rolls[i].closed[c]);
        }
      }
      if (n_roll == 0) continue;
      nums_.push_back(ToDec(static_cast<int64_t>(n_roll)));
      args_[count_at] = nums_.back();
      batch_.Append(keys_.Slot(sym), args_);  // encoded (copied) here
      sent.push_back(k);
    }
    // 3. Replies: count, and collect conflicting symbols for a re-read.
    retry.clear();
    left = 0;
    for (size_t k : sent) {
      RedisReply r = batch_.Next();
      if (r == nullptr) {
        batch_.Drop();
        return false;
      }
      const ScriptReply how =
          ReadScriptReply(&batch_, router_, r.get(), "ROLLOVER", symbols[pending[k]], result);
      if (how == ScriptReply::kBroken) return false;
      if (how == ScriptReply::kError) continue;
      if (r->element[0]->integer < 0) {
        LOG_RATE(kWarn, "rollover.fenced", "epoch=" << fence);
        batch_.Drop();
        return false;
      }
      if (r->elements != 4) {
        router_->NoteError("ROLLOVER script: unexpected reply");
        batch_.Drop();
        return false;
      }
      const int64_t rolled = r->element[0]->integer;
      const int64_t written = r->element[1]->integer;
      const int64_t conflicts = r->element[2]->integer;
      if (r->element[3]->integer > 0) {
        result->bad_keys += static_cast<uint64_t>(r->element[3]->integer);
        LOG_RATE(kError, "rollover.bad_key",
                 "symbol=" << symbols[pending[k]]
                           << " detail=\"a history or pending key holds another type\"");
      }
      result->candles_closed += static_cast<uint64_t>(written);
      if (written > 0) unindexed_.push_back(symbols[pending[k]]);
      if (rolled > 0 && !rolled_once[pending[k]]) {
        rolled_once[pending[k]] = 1;
        ++result->symbols_rolled;
      }
      if (conflicts > 0) {
        result->conflicts += static_cast<uint64_t>(conflicts);
        left += static_cast<uint64_t>(conflicts);
        retry.push_back(pending[k]);
      }
    }
    pending.swap(retry);
  }
  result->unresolved += left;
  return true;
}

RolloverResult RolloverJob::RunOnce(int64_t now_ms, std::string_view fence,
                                    const std::function<bool()>& may_continue, int64_t since_ms) {
  RolloverResult result;
  const int64_t start = MonotonicMs();
  const std::string symbols_key = keys_.Symbols();
  const std::string count = ToDec(static_cast<int64_t>(chunk_));
  std::string cursor = "0";
  std::vector<std::string> chunk, planned, window;
  // Every primary if it can (a node down leaves its symbols' calls failing, not the run).
  router_->EnsureConnected();
  bool ok = !router_->Sha(script_).empty() && !router_->Sha(step_script_).empty();
  while (ok) {
    if (!cluster::SscanStep(router_, symbols_key, &cursor, count, &chunk)) {
      ok = false;
      break;
    }
    const bool last = cursor == "0";
    if (chunk.size() >= chunk_ || (last && !chunk.empty())) {
      if (may_continue && !may_continue()) {
        ok = false;
        break;
      }
      result.symbols += chunk.size();
      ok = StepChunk(chunk, now_ms, since_ms, fence, &result, &planned);
      // Symbols with gaps, a few at a time: what one pipeline holds stays bounded (each
      // interval may carry up to kMaxClosedPerRun candles).
      for (size_t w = 0; ok && w < planned.size(); w += kPlannedWindow) {
        window.assign(
            planned.begin() + static_cast<ptrdiff_t>(w),
            planned.begin() + static_cast<ptrdiff_t>(std::min(planned.size(), w + kPlannedWindow)));
        ok = RollChunk(window, now_ms, fence, &result);
      }
      AddPending();  // (also after a failed or fenced chunk: what it wrote is written)
      if (!ok) break;
      chunk.clear();
    }
    if (last) break;
  }
  result.complete = ok;
  stats_->candles_closed.Add(result.candles_closed);
  stats_->symbols_rolled.Add(result.symbols_rolled);
  stats_->cas_conflicts.Add(result.conflicts);
  stats_->skipped.Add(result.bad_keys + result.errors + result.bad_candles);
  if (ok) {
    stats_->runs.Add();
    stats_->last_run_ms.Set(static_cast<uint64_t>(MonotonicMs() - start));
  } else {
    stats_->failures.Add();
    LOG_RATE(kWarn, "rollover.incomplete",
             "error=\"" << router_->error() << "\" symbols=" << result.symbols);
  }
  return result;
}

}  // namespace klined
