#include "io/redis/kline_store.h"
#include "base/clock.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <optional>
#include <random>

#include <chrono>
#include "base/log.h"
#include "io/redis/lua_scripts.h"
#include "klined/trade_decoder.h"

namespace klined {

namespace {

std::string ToDec(int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

bool ParseInt(std::string_view s, int64_t* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

std::string_view ReplyStr(const redisReply* r) { return {r->str, r->len}; }

constexpr int64_t kTickerWindowMs = 24 * 3600 * 1000;
// The 24h ticker's persisted state (B:tks) is rewritten when an older minute changed, or when
// the newest traded minute is this many minutes past its end: a restart then merges about
// this many 1m candles on top of it instead of reading a day of them, and a busy symbol costs
// one ~16 KiB write per 10 minutes.
constexpr int64_t kTickerStateEveryMinutes = 10;
// ... and at most this often (wall clock): a catch-up moves through minutes of trades much
// faster than 10 minutes a write, and the minutes it adds since are merged from 1m candles.
constexpr int64_t kTickerStateMinGapMs = 10'000;

// A stored value for a log line: printable ASCII only, at most 120 bytes.
std::string Printable(std::string_view v) {
  std::string out;
  for (char c : v.substr(0, 120)) out += (c >= 0x20 && c < 0x7f && c != '"') ? c : '?';
  if (v.size() > 120) out += "...";
  return out;
}

}  // namespace

KlineStore::KlineStore(cluster::Topology* topology, std::string key_prefix,
                       const SeriesLayout* layout, std::string ticker_prefix)
    : KlineStore(nullptr, topology, std::move(key_prefix), layout, std::move(ticker_prefix)) {}

KlineStore::KlineStore(const RedisOptions& options, std::string key_prefix,
                       const SeriesLayout* layout, std::string ticker_prefix)
    : KlineStore(std::make_unique<cluster::Topology>(cluster::SingleNode(options, key_prefix + ":wait")), nullptr,
                 std::move(key_prefix), layout, std::move(ticker_prefix)) {
  SetReplicaWait(options.wait_replicas, options.wait_timeout_ms);
}

KlineStore::KlineStore(std::unique_ptr<cluster::Topology> own, cluster::Topology* topology,
                       std::string key_prefix, const SeriesLayout* layout,
                       std::string ticker_prefix)
    : own_topology_(std::move(own)),
      reader_(own_topology_ ? own_topology_.get() : topology),
      writer_(own_topology_ ? own_topology_.get() : topology),
      keys_(std::move(key_prefix), std::move(ticker_prefix)),
      layout_(layout) {
  for (size_t i = 0; i < layout_->intervals.size(); ++i) {
    if (layout_->intervals[i] == Interval::k1m) one_minute_slot_ = static_cast<int>(i);
  }
  for (cluster::Router* r : {&reader_, &writer_}) {
    flush_script_ = r->AddScript(std::string(lua::kCommon) + lua::kFlush);
    fast_script_ = r->AddScript(lua::kFlushFast);
    load_script_ = r->AddScript(lua::kLoad);
  }
  std::random_device rd;
  char buf[20];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  nonce_ = buf;
}

void KlineStore::Read(std::string_view sym, std::initializer_list<std::string_view> argv) {
  reads_.push_back({keys_.Slot(sym), cluster::Encode(argv)});
}

bool KlineStore::RunReads(std::vector<RedisReply>* replies) {
  reader_.Execute(reads_, replies);
  reads_.clear();
  for (const RedisReply& r : *replies) {
    if (r == nullptr) return false;
  }
  return true;
}

std::string KlineStore::StampValue(uint64_t token) const {
  return nonce_ + ":" + std::to_string(token);
}

std::string_view KlineStore::Keep(std::string s) {
  strings_.push_back(std::move(s));
  return strings_.back();
}

void KlineStore::DeclareKeys(std::string_view sym) {
  args_.push_back(
      Keep(ToDec(static_cast<int64_t>(keys_.ScriptKeyCount(layout_->intervals.size())))));
  keys_.AppendScriptKeys(sym, layout_->intervals, &strings_, &args_);
}

void KlineStore::NoteCorrupt(CorruptKind kind, std::string_view symbol, std::string_view key,
                             std::string_view value, bool repaired) {
  stats_.corrupt[static_cast<size_t>(kind)].Add();
  if (repaired) stats_.repaired[static_cast<size_t>(kind)].Add();
  LOG_RATE(kError, "store.corrupt",
           "symbol=" << symbol << " kind=" << CorruptKindName(kind) << " key=" << key << " value=\""
                     << Printable(value)
                     << "\" action=" << (repaired ? "repaired" : "quarantined"));
}

std::pair<std::string_view, std::string_view> KlineStore::TickerArgs(SymbolSeries& s,
                                                                     bool* with_state,
                                                                     uint64_t* ticker_token) {
  *with_state = false;
  if (one_minute_slot_ < 0) return {"", ""};
  std::string json;
  TickerWindow* ticker = s.ticker();
  ticker->AppendJson(s.symbol().view(), WallMs(), &json);  // advances the window first
  const std::string_view json_arg = Keep(std::move(json));
  // The ticker's state, when due, atomically with the candles it is consistent with.
  const int64_t now = WallMs();
  if (!ticker->StateDue(kTickerStateEveryMinutes, now, kTickerStateMinGapMs)) return {json_arg, ""};
  *ticker_token = ticker->BeginPersist(now);
  std::string state;
  ticker->AppendState(&state);
  *with_state = true;
  return {json_arg, Keep(std::move(state))};
}

void KlineStore::AppendArgs(std::string* payload) {
  argv_.clear();
  argv_len_.clear();
  for (std::string_view a : args_) {
    argv_.push_back(a.data());
    argv_len_.push_back(a.size());
  }
  char* cmd = nullptr;
  const int len =
      redisFormatCommandArgv(&cmd, static_cast<int>(argv_.size()), argv_.data(), argv_len_.data());
  assert(len > 0);
  payload->append(cmd, static_cast<size_t>(len));
  redisFreeCommand(cmd);
}

bool KlineStore::EncodeFastCommand(SymbolSeries& s, std::string_view stamp, std::string grant,
                                   std::string* payload, uint64_t* ticker_token) {
  strings_.clear();
  args_.clear();
  const std::string_view sym = s.symbol().view();
  std::vector<size_t>& with = fast_slots_;
  with.clear();
  for (size_t i = 0; i < s.interval_count(); ++i) {
    if (s.current(i) != nullptr) with.push_back(i);
  }
  const size_t n = with.size();
  args_.insert(args_.end(),
               {"EVALSHA", reader_.Sha(fast_script_), Keep(ToDec(static_cast<int64_t>(6 + n)))});
  // KEYS
  args_.push_back(Keep(keys_.Marks(sym)));
  args_.push_back(Keep(keys_.WriteStamp(sym)));
  args_.push_back(Keep(keys_.Watch(sym)));
  args_.push_back(Keep(keys_.Watermark(sym)));
  for (size_t i : with) args_.push_back(Keep(keys_.Current(sym, s.interval(i))));
  args_.push_back(Keep(keys_.Ticker(sym)));
  args_.push_back(Keep(keys_.TickerState(sym)));
  // ARGV
  args_.push_back(s.storage_stamp());
  args_.push_back(Keep(StampValue(s.write_token())));
  args_.push_back(stamp);
  args_.push_back(Keep(std::move(grant)));
  args_.push_back(Keep(ToDec(s.watermark())));
  args_.push_back(Keep(ToDec(static_cast<int64_t>(n))));
  for (size_t i : with) args_.push_back(IntervalName(s.interval(i)));
  for (size_t i : with) args_.push_back(Keep(CandleJson(*s.current(i), sym, /*closed=*/false)));
  bool with_state = false;
  const auto [ticker_json, ticker_state] = TickerArgs(s, &with_state, ticker_token);
  args_.push_back(ticker_json);
  args_.push_back(ticker_state);
  args_.push_back(Keep(keys_.Events(sym)));
  AppendArgs(payload);
  return with_state;
}

bool KlineStore::EncodeFlushCommand(SymbolSeries& s, std::string_view stamp, std::string grant,
                                    const std::vector<LateUpdate>& late,
                                    const std::vector<MysqlLate>& mysql_late, std::string* payload,
                                    uint64_t* ticker_token) {
  strings_.clear();
  args_.clear();
  const std::string_view sym = s.symbol().view();
  // Every key it may touch declared (the script reads ARGV only): see KeyLayout::ScriptKeys.
  args_.insert(args_.end(), {"EVALSHA", reader_.Sha(flush_script_)});
  DeclareKeys(sym);
  args_.insert(args_.end(), {keys_.prefix(), sym});
  args_.push_back(Keep(ToDec(s.watermark())));
  args_.push_back(s.storage_stamp());
  args_.push_back(stamp);
  size_t with_candle = 0;
  for (size_t i = 0; i < s.interval_count(); ++i) with_candle += s.current(i) != nullptr;
  args_.push_back(Keep(ToDec(static_cast<int64_t>(with_candle))));
  for (size_t i = 0; i < s.interval_count(); ++i) {
    const Candle* cur = s.current(i);
    if (cur == nullptr) continue;
    args_.push_back(IntervalName(s.interval(i)));
    args_.push_back(Keep(ToDec(cur->open_time)));
    args_.push_back(Keep(CandleJson(*cur, sym, /*closed=*/false)));
    args_.push_back(Keep(ToDec(static_cast<int64_t>(s.closed(i).size()))));
    for (const Candle& c : s.closed(i)) args_.push_back(Keep(CandleJson(c, sym, /*closed=*/true)));
  }
  args_.push_back(Keep(ToDec(static_cast<int64_t>(late.size()))));
  for (const LateUpdate& u : late) {
    args_.push_back(IntervalName(s.interval(u.slot)));
    args_.push_back(Keep(ToDec(u.open)));
    args_.push_back(u.expect);
    args_.push_back(Keep(CandleJson(u.candle, sym, /*closed=*/true)));
    args_.push_back(Keep(ToDec(static_cast<int64_t>(u.empties.size()))));
    for (const std::string& e : u.empties) args_.push_back(e);
  }
  args_.push_back(Keep(ToDec(static_cast<int64_t>(mysql_late.size()))));
  for (const MysqlLate& m : mysql_late) {
    args_.push_back(m.field);
    args_.push_back(m.trade_json);
  }
  // The 24h ticker, current as of this flush (only when 1m candles feed it).
  bool with_state = false;
  const auto [ticker_json, ticker_state] = TickerArgs(s, &with_state, ticker_token);
  args_.push_back(one_minute_slot_ >= 0 ? Keep(keys_.Ticker(sym)) : std::string_view(""));
  args_.push_back(ticker_json);
  args_.push_back(ticker_state);
  args_.push_back(Keep(std::move(grant)));
  AppendArgs(payload);
  return with_state;
}

// For every series with late trades: reads the stored candles their buckets name (plus what
// is needed to tell "before the stored start" from "trimmed"), and merges the trades exactly.
bool KlineStore::PlanLate(std::span<SymbolSeries* const> series, FlushReport* report,
                          std::vector<FlushReport::Corrupt>* corrupt) {
  corrupt->assign(series.size(), {});
  late_plans_.assign(series.size(), {});
  mysql_late_.assign(series.size(), {});
  const UtcOffset tz = layout_->tz;
  // Distinct (slot, bucket) per series, ascending, so re-carries apply oldest first.
  for (size_t k = 0; k < series.size(); ++k) {
    std::vector<LateUpdate>& plan = late_plans_[k];
    for (const SymbolSeries::LateTrade& lt : series[k]->late()) {
      const int64_t open = BucketOpen(series[k]->interval(lt.slot), lt.trade.time_ms, tz);
      bool seen = false;
      for (const LateUpdate& u : plan) seen |= u.slot == lt.slot && u.open == open;
      if (!seen) plan.push_back(LateUpdate{lt.slot, open, {}, {}, {}});
    }
    std::sort(plan.begin(), plan.end(), [](const LateUpdate& a, const LateUpdate& b) {
      return a.slot != b.slot ? a.slot < b.slot : a.open < b.open;
    });
  }
  size_t reads = 0;
  for (size_t k = 0; k < series.size(); ++k) {
    const std::string_view sym = series[k]->symbol().view();
    const std::string trimmed = keys_.Trimmed(sym);
    for (const LateUpdate& u : late_plans_[k]) {
      const Interval iv = series[k]->interval(u.slot);
      const std::string hist = keys_.History(sym, iv);
      const std::string open_s = ToDec(u.open);
      Read(sym, {"ZRANGEBYSCORE", hist, open_s, open_s});
      Read(sym, {"ZRANGE", hist, "0", "0", "WITHSCORES"});
      Read(sym, {"GET", keys_.Current(sym, iv)});
      Read(sym, {"HGET", trimmed, IntervalName(iv)});
      ++reads;
    }
  }
  if (reads == 0) return true;  // no series has late trades
  // Every reply first: a repair below sends commands of its own.
  std::vector<RedisReply> got;
  if (!RunReads(&got)) return false;
  size_t next_reply = 0;
  std::vector<std::pair<size_t, LateUpdate*>> unreadable;  // stored members that do not parse
  for (size_t k = 0; k < series.size(); ++k) {
    SymbolSeries* s = series[k];
    const std::string_view sym = s->symbol().view();
    std::vector<LateUpdate>& plan = late_plans_[k];
    for (LateUpdate& u : plan) {
      const RedisReply& at = got[next_reply++];
      const RedisReply& first = got[next_reply++];
      const RedisReply& cur = got[next_reply++];
      const RedisReply& trimmed = got[next_reply++];
      const Interval iv = s->interval(u.slot);
      std::string_view stored_sym;
      bool closed = false;
      if (at->type == REDIS_REPLY_ERROR || first->type == REDIS_REPLY_ERROR ||
          cur->type == REDIS_REPLY_ERROR || trimmed->type == REDIS_REPLY_ERROR) {
        // A key of another type (WRONGTYPE): nothing planned here can be trusted.
        const std::string key = keys_.History(sym, iv);
        NoteCorrupt(CorruptKind::kType, sym, key, "", false);
        (*corrupt)[k] = {s, key + " holds another type", -1, 0};
        continue;
      }
      if (at->type == REDIS_REPLY_ARRAY && at->elements > 0) {
        u.expect.assign(at->element[0]->str, at->element[0]->len);
        if (!ParseCandleJson(u.expect, &u.candle, &stored_sym, &closed) || stored_sym != sym ||
            u.candle.interval != iv || u.candle.open_time != u.open) {
          unreadable.emplace_back(k, &u);  // rebuilt, if it can be, once the replies are read
        }
        continue;
      }
      // Not in history: before the stored start of the series (which then starts earlier),
      // or trimmed from Redis after reaching MySQL.
      int64_t next_stored = -1;
      if (first->type == REDIS_REPLY_ARRAY && first->elements == 2) {
        ParseInt(ReplyStr(first->element[1]), &next_stored);
      } else if (cur->type == REDIS_REPLY_STRING) {
        Candle c;
        if (ParseCandleJson(ReplyStr(cur.get()), &c, &stored_sym, &closed))
          next_stored = c.open_time;
      }
      int64_t trimmed_to = -1;
      if (trimmed->type == REDIS_REPLY_STRING) ParseInt(ReplyStr(trimmed.get()), &trimmed_to);
      if ((next_stored >= 0 && next_stored < u.open) || trimmed_to >= u.open) {
        u.open = -1;  // marks: not resolvable in Redis, MySQL holds the bucket
        continue;
      }
      if (next_stored > u.open &&
          BucketsBetween(iv, u.open, next_stored, tz) - 1 > layout_->max_gap_candles) {
        u.candle.open_time = u.open;
        u.open = -2;  // marks: would extend the series by too many empty candles
        continue;
      }
      u.candle = Candle::Empty(iv, u.open, tz, Decimal());
      u.empties.clear();
      if (next_stored > u.open) {
        // Filled below, once the candle's close is known.
        u.empties.emplace_back(ToDec(next_stored));
      }
    }
    // A history member that is not its candle: rebuilt from a finer interval's history where
    // that is complete (the compare-and-set then replaces it); else this bucket's trades go.
    for (auto& [uk, up] : unreadable) {
      if (uk != k || (*corrupt)[k].series != nullptr) continue;
      LateUpdate& u = *up;
      const Interval iv = s->interval(u.slot);
      const std::string key = keys_.History(sym, iv);
      const int j = FinerSlot(u.slot, [](size_t) { return true; });
      std::optional<Candle> rebuilt;
      if (j >= 0 && !RebuildFromFiner(sym, iv, u.open, static_cast<size_t>(j), nullptr, &rebuilt)) {
        return false;
      }
      NoteCorrupt(CorruptKind::kHistory, sym, key + "@" + ToDec(u.open), u.expect,
                  rebuilt.has_value());
      if (rebuilt) {
        u.candle = *rebuilt;  // expect stays the stored text, so the CAS replaces it
      } else {
        (*corrupt)[k] = {s, key + " member at " + ToDec(u.open) + " is not its candle",
                         static_cast<int32_t>(u.slot), u.open};
      }
    }
    if ((*corrupt)[k].series != nullptr) {
      plan.clear();
      continue;
    }
    // Merge every late trade into its planned candle (exact, order-independent).
    for (const SymbolSeries::LateTrade& lt : s->late()) {
      const int64_t open = BucketOpen(s->interval(lt.slot), lt.trade.time_ms, tz);
      for (LateUpdate& u : plan) {
        if (u.slot != lt.slot || u.open != open) continue;
        if (u.candle.Apply(lt.trade)) {
          ++report->late_applied;
        } else {
          ++report->late_out_of_range;
        }
      }
    }
    for (const SymbolSeries::LateTrade& lt : s->late()) {
      const Interval iv = s->interval(lt.slot);
      const int64_t open = BucketOpen(iv, lt.trade.time_ms, tz);
      bool planned = false;
      for (const LateUpdate& u : plan) planned |= u.slot == lt.slot && u.open == open;
      if (planned) continue;
      bool too_far = false;
      for (const LateUpdate& u : plan)
        too_far |= u.slot == lt.slot && u.open == -2 && u.candle.open_time == open;
      if (too_far) {
        ++report->late_out_of_range;
        continue;
      }
      ++report->late_not_in_redis;
      mysql_late_[k].push_back(
          MysqlLate{std::string(IntervalName(iv)) + "|" + ToDec(open) + "|" + ToDec(lt.trade.id),
                    TradeJson(lt.trade)});
    }
    std::erase_if(plan, [](const LateUpdate& u) { return u.open < 0; });
    for (LateUpdate& u : plan) {
      if (u.empties.empty() || !u.expect.empty()) continue;
      int64_t next_stored = 0;
      ParseInt(u.empties.front(), &next_stored);
      u.empties.clear();
      const Interval iv = s->interval(u.slot);
      for (int64_t o = NextBucketOpen(iv, u.open, tz); o < next_stored;
           o = NextBucketOpen(iv, o, tz)) {
        u.empties.push_back(CandleJson(Candle::Empty(iv, o, tz, u.candle.close), sym, true));
      }
    }
  }
  return true;
}

struct KlineStore::Job : FlushJob {
  enum class Result : uint8_t {
    kUnanswered,
    kOk,
    kConflict,
    kRefused,
    kFastMissed,  // FLUSH_FAST found the write stamp void
    kCorrupt,
    kError
  };
  std::vector<SymbolSeries*> series;
  std::vector<SymbolSeries::FlushTicket> tickets;
  std::vector<std::string> stamps;               // per series: the stamp the call writes
  std::vector<uint64_t> tokens;                  // per series: the write stamp it offers
  std::vector<bool> fast;                        // per series: the call is FLUSH_FAST
  std::vector<bool> granted;                     // per series: the write stamp is storage's
  std::vector<FlushReport::Corrupt> left_out;    // per series: why it was not encoded
  // Per series: (slot, close) of each late update, in the order the script reports them.
  std::vector<std::vector<std::pair<uint32_t, Decimal>>> carries;
  std::vector<cluster::Call> calls;  // the FLUSH calls, RESP-encoded
  std::vector<size_t> call_series;   // per call: its series
  FlushReport plan;     // late-trade counts from planning
  // Written by ExecuteFlush.
  std::vector<Result> results;
  std::vector<std::vector<bool>> reached;  // per series, per late update
  std::vector<std::string> detail;         // per series: the corrupt key, or the error reply
  // Per series: the call carries the ticker state (its TickerWindow::BeginPersist token).
  std::vector<std::optional<uint64_t>> ticker_tokens;
  std::vector<std::string> add_first;  // symbols for PREFIX:symbols before the calls
  bool added_first = false;            // ... and that add was answered
  std::vector<bool> mysql_late;        // per series: the call carries MySQL-late records
  std::vector<int> index;              // per series: FLUSH's index flags (lua_scripts.h)
};

std::unique_ptr<FlushJob> KlineStore::PrepareFlush(std::span<SymbolSeries* const> series) {
  auto job = std::make_unique<Job>();
  job->left_out.assign(series.size(), {});
  if (!series.empty()) {
    if (!reader_.EnsureConnected()) return nullptr;
    if (!PlanLate(series, &job->plan, &job->left_out)) return nullptr;
  }
  job->series.assign(series.begin(), series.end());
  job->calls.reserve(series.size());
  job->call_series.reserve(series.size());
  job->tickets.resize(series.size());
  job->stamps.resize(series.size());
  job->tokens.assign(series.size(), 0);
  job->fast.assign(series.size(), false);
  job->granted.assign(series.size(), false);
  job->carries.resize(series.size());
  job->ticker_tokens.assign(series.size(), std::nullopt);
  job->mysql_late.assign(series.size(), false);
  job->index.assign(series.size(), 0);
  for (size_t k = 0; k < series.size(); ++k) {
    if (job->left_out[k].series != nullptr) continue;  // not begun: nothing to commit or abort
    if (!indexed_.contains(std::string(series[k]->symbol().view()))) {
      job->add_first.emplace_back(series[k]->symbol().view());
    }
    job->mysql_late[k] = !mysql_late_[k].empty();
    job->tickets[k] = series[k]->BeginFlush();
    job->stamps[k] = FormatMarks(series[k]->flush_marks());
    job->calls.push_back({keys_.Slot(series[k]->symbol().view()), {}});
    job->call_series.push_back(k);
    std::string* payload = &job->calls.back().resp;
    uint64_t token = 0;
    SymbolSeries& s = *series[k];
    job->tokens[k] = ++next_token_;
    // The common case, when storage still holds this series' last write as sent: trades since
    // (the stamp moved), all in the buckets that write left current.
    job->fast[k] = s.write_token() != 0 && late_plans_[k].empty() && mysql_late_[k].empty() &&
                   s.closed_count() == 0 && job->stamps[k] != s.storage_stamp();
    const bool with_state =
        job->fast[k] ? EncodeFastCommand(s, job->stamps[k], StampValue(job->tokens[k]),
                                         payload, &token)
                     : EncodeFlushCommand(s, job->stamps[k], StampValue(job->tokens[k]),
                                          late_plans_[k], mysql_late_[k], payload, &token);
    if (with_state) job->ticker_tokens[k] = token;
    for (const LateUpdate& u : late_plans_[k]) job->carries[k].emplace_back(u.slot, u.candle.close);
  }
  job->results.assign(series.size(), Job::Result::kUnanswered);
  job->reached.assign(series.size(), {});
  job->detail.assign(series.size(), {});
  return job;
}

void KlineStore::ExecuteFlush(FlushJob* base) {
  Job* job = static_cast<Job*>(base);
  if (AddBeforeWrite(job)) {
    WriteCalls(job);
    AddAfterWrite(job);
  }
  if (job->confirm && wait_replicas_ > 0) ConfirmReplicas(job);
}

bool KlineStore::AddBeforeWrite(Job* job) {
  if (job->add_first.empty()) return true;
  const std::string key = keys_.Symbols();
  args_.assign({"SADD", key});
  args_.insert(args_.end(), job->add_first.begin(), job->add_first.end());
  const cluster::Call call{cluster::KeySlot(key), cluster::Encode(args_)};
  std::vector<RedisReply> replies;
  writer_.Execute(std::span<const cluster::Call>(&call, 1), &replies);
  const RedisReply& r = replies.front();
  if (r == nullptr) {
    job->error = writer_.error();
    return false;
  }
  if (r->type == REDIS_REPLY_ERROR) {  // (WRONGTYPE: an operator's to fix; the writes go on)
    LOG_RATE(kError, "store.index_failed",
             "key=" << key << " error=\"" << ReplyStr(r.get()) << "\"");
  }
  job->added_first = true;
  return true;
}

void KlineStore::AddAfterWrite(Job* job) {
  const std::string keys[3] = {keys_.Symbols(), keys_.PendingSymbols(), keys_.LateSymbols()};
  for (size_t k = 0; k < job->series.size(); ++k) {
    if (job->results[k] != Job::Result::kOk) continue;
    const std::string_view sym = job->series[k]->symbol().view();
    if (job->index[k] & 2) unsent_index_[0].emplace(sym);
    if (job->index[k] & 1) unsent_index_[1].emplace(sym);
    if (job->mysql_late[k]) unsent_index_[2].emplace(sym);
  }
  std::vector<cluster::Call> calls;
  std::vector<size_t> sets;  // per call: its index set
  for (size_t i = 0; i < 3; ++i) {
    if (unsent_index_[i].empty()) continue;
    args_.assign({"SADD", keys[i]});
    args_.insert(args_.end(), unsent_index_[i].begin(), unsent_index_[i].end());
    calls.push_back({cluster::KeySlot(keys[i]), cluster::Encode(args_)});
    sets.push_back(i);
  }
  if (calls.empty()) return;
  std::vector<RedisReply> replies;
  writer_.Execute(calls, &replies);
  for (size_t c = 0; c < calls.size(); ++c) {
    const RedisReply& r = replies[c];
    if (r == nullptr) continue;  // stays for the next flush
    if (r->type == REDIS_REPLY_ERROR) {
      LOG_RATE(kError, "store.index_failed",
               "key=" << keys[sets[c]] << " error=\"" << ReplyStr(r.get()) << "\"");
    }
    unsent_index_[sets[c]].clear();
  }
}

void KlineStore::ConfirmReplicas(Job* job) {
  job->durable = writer_.WaitReplicas(wait_replicas_, wait_timeout_ms_);
  job->replicas = job->durable ? wait_replicas_ : -1;
  if (!job->durable && job->error.empty()) job->error = "WAIT: " + writer_.error();
  if (!job->durable) {
    const std::vector<std::string> gone = writer_.ForgiveGone();
    if (!gone.empty()) {
      job->failed_over = true;
      job->error = "WAIT: " + gone.front() + " serves no slot any more (failed over): its " +
                   "writes since the last wait are re-checked";
    }
  }
}

void KlineStore::WriteCalls(Job* job) {
  // The router resends what NOSCRIPT answered (after loading the scripts on that node) and
  // what a redirect moved; a call answered otherwise ran (or was refused) and is not resent.
  std::vector<RedisReply> replies;
  writer_.Execute(job->calls, &replies);
  for (size_t c = 0; c < job->calls.size(); ++c) {
    const size_t k = job->call_series[c];
    const RedisReply& r = replies[c];
    if (r == nullptr) {  // its node's connection dropped: the call stays unknown
      if (job->error.empty()) job->error = writer_.error();
      continue;
    }
    if (r->type == REDIS_REPLY_ERROR &&
        cluster::ParseRedirect({r->str, r->len}).kind != cluster::Redirect::Kind::kNone) {
      // A redirect or TRYAGAIN / CLUSTERDOWN the router ran out of rounds or time for (a slow
      // migration, a cluster without a majority): the script did not run. Like a lost
      // connection, the series stays dirty and the flush is retried; it is no error of the
      // symbol's (those count toward quarantining it).
      if (job->error.empty()) job->error.assign(r->str, r->len);
      continue;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      job->results[k] = Job::Result::kError;
      job->detail[k].assign(r->str, r->len);
      if (job->error.empty()) job->error = "FLUSH script: " + job->detail[k];
      continue;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
      job->results[k] = Job::Result::kError;
      job->detail[k] = "unexpected FLUSH reply";
      if (job->error.empty()) job->error = job->detail[k];
      continue;
    }
    switch (r->element[0]->integer) {
      case 2:  // and the write stamp granted
      case 1:
        job->results[k] = Job::Result::kOk;
        job->granted[k] = r->element[0]->integer == 2;
        if (r->elements > 1) job->index[k] = static_cast<int>(r->element[1]->integer);
        for (size_t u = 2; u < r->elements; ++u) {
          job->reached[k].push_back(r->element[u]->integer == 1);
        }
        break;
      case -3:
        job->results[k] = Job::Result::kFastMissed;  // another writer since: sent as FLUSH
        break;
      case 0:
        job->results[k] = Job::Result::kConflict;  // a stored candle changed since planning
        break;
      case -1:
        job->results[k] = Job::Result::kRefused;  // storage moved since this shard matched it
        break;
      case -2:
        job->results[k] = Job::Result::kCorrupt;
        if (r->elements > 1 && r->element[1]->type == REDIS_REPLY_STRING) {
          job->detail[k].assign(r->element[1]->str, r->element[1]->len);
        }
        break;
      default:
        job->results[k] = Job::Result::kError;
        job->detail[k] = "unexpected FLUSH result";
        break;
    }
  }
}

void KlineStore::RequestRestore(std::string_view symbol) {
  const std::string key = keys_.RestoreSymbols();
  RedisReply r = reader_.Command(cluster::KeySlot(key), {"SADD", key, symbol});
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
    LOG_RATE(kError, "store.restore_request_failed",
             "symbol=" << symbol << " error=\""
                       << (r == nullptr ? reader_.error() : std::string(r->str, r->len))
                       << "\" detail=\"its history comes back with klinectl restore-redis\"");
  }
}

FlushReport KlineStore::FinishFlush(FlushJob* base) {
  Job* job = static_cast<Job*>(base);
  FlushReport report;
  if (job->added_first) {
    for (std::string& sym : job->add_first) indexed_.insert(std::move(sym));
  }
  for (size_t k = 0; k < job->series.size(); ++k) {
    SymbolSeries* s = job->series[k];
    if (job->left_out[k].series != nullptr) {
      report.corrupt.push_back(job->left_out[k]);
      continue;
    }
    switch (job->results[k]) {
      case Job::Result::kOk:
        break;
      case Job::Result::kConflict:
        ++report.late_conflicts;
        break;
      case Job::Result::kRefused:
        report.refused.push_back(s);
        break;
      case Job::Result::kFastMissed:
        ++report.fast_missed;
        break;
      case Job::Result::kCorrupt:
        NoteCorrupt(CorruptKind::kType, s->symbol().view(), job->detail[k], "", false);
        report.corrupt.push_back({s, job->detail[k] + " holds another type", -1, 0});
        break;
      case Job::Result::kError:
        report.errored.push_back(s);
        if (report.error.empty()) report.error = job->detail[k];
        break;
      case Job::Result::kUnanswered:
        break;
    }
    if (job->ticker_tokens[k]) {
      s->ticker()->EndPersist(job->results[k] == Job::Result::kOk, *job->ticker_tokens[k]);
    }
    if (job->results[k] != Job::Result::kOk) {
      s->set_write_token(0);  // the next call is FLUSH, whatever storage holds
      s->AbortFlush();
      continue;
    }
    s->set_write_token(job->granted[k] ? job->tokens[k] : 0);
    if (job->fast[k]) ++report.fast_written;
    s->CommitFlush(job->tickets[k]);
    s->set_storage_stamp(std::move(job->stamps[k]));
    const auto& carries = job->carries[k];
    for (size_t u = 0; u < carries.size() && u < job->reached[k].size(); ++u) {
      if (job->reached[k][u]) s->CarryIntoEmptyCurrent(carries[u].first, carries[u].second);
    }
    ++report.written;
  }
  report.failed = job->series.size() - report.written;
  report.ok = report.failed == 0;
  if (report.written > 0) {
    report.late_applied = job->plan.late_applied;
    report.late_not_in_redis = job->plan.late_not_in_redis;
    report.late_out_of_range = job->plan.late_out_of_range;
  }
  return report;
}

bool KlineStore::Load(std::span<SymbolSeries* const> series, std::vector<LoadStatus>* status) {
  status->assign(series.size(), LoadStatus::kLoaded);
  if (series.empty()) return true;
  // Loaded again (a reload after a refused write, a rebalance): added to PREFIX:symbols again
  // before its next write, whatever became of the index meanwhile.
  for (const SymbolSeries* s : series) {
    indexed_.erase(std::string(s->symbol().view()));
  }
  if (!reader_.EnsureConnected()) return false;
  for (const SymbolSeries* s : series) {
    const std::string_view sym = s->symbol().view();
    args_.clear();
    strings_.clear();
    args_.insert(args_.end(), {"EVALSHA", reader_.Sha(load_script_)});
    DeclareKeys(sym);  // as FLUSH's
    args_.insert(args_.end(), {keys_.prefix(), sym});
    for (size_t i = 0; i < s->interval_count(); ++i) args_.push_back(IntervalName(s->interval(i)));
    reads_.push_back({keys_.Slot(sym), cluster::Encode(args_)});
    // The ticker state (~20 KiB) by a plain GET: through the script it would be copied into
    // a Lua string and out again, which was most of Redis's work in a restart.
    Read(sym, {"GET", keys_.TickerState(sym)});
  }
  std::vector<RedisReply> got;  // per series: its LOAD reply, then its ticker state
  if (!RunReads(&got)) return false;
  std::vector<RedisReply> replies, ticker_states;
  for (size_t k = 0; k < series.size(); ++k) {
    if (IsNoScript(got[2 * k].get())) return false;  // still, after the router reloaded
    replies.push_back(std::move(got[2 * k]));
    ticker_states.push_back(std::move(got[2 * k + 1]));
  }
  std::vector<SymbolSeries*> loaded;
  std::vector<std::string_view> states;  // per loaded series: its B:tks (views into replies)
  std::vector<std::optional<Candle>> current;
  for (size_t k = 0; k < series.size(); ++k) {
    SymbolSeries* s = series[k];
    const redisReply* r = replies[k].get();
    const size_t n = s->interval_count();
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n + 2) {
      LOG_RATE(kError, "store.load_failed",
               "symbol=" << s->symbol().view() << " error=\"unexpected LOAD reply\" detail=\""
                         << (r->type == REDIS_REPLY_ERROR ? Printable(ReplyStr(r)) : "")
                         << "\"");
      return false;
    }
    const std::string_view sym = s->symbol().view();
    // Watermark and per-source watermarks: each repairs the other; both unreadable is fatal
    // for the symbol (its trades could be counted twice or dropped).
    const redisReply* wm = r->element[0];
    const redisReply* wmp = r->element[1];
    int64_t watermark = 0;
    const bool wm_ok = wm->type == REDIS_REPLY_NIL ||
                       (wm->type == REDIS_REPLY_STRING && ParseInt(ReplyStr(wm), &watermark));
    SourceMarks marks;
    const bool marks_ok = wmp->type == REDIS_REPLY_NIL ||
                          (wmp->type == REDIS_REPLY_STRING && ParseMarks(ReplyStr(wmp), &marks));
    const auto kind_of = [](const redisReply* e, CorruptKind k) {
      return e->type == REDIS_REPLY_ERROR ? CorruptKind::kType : k;
    };
    const auto text_of = [](const redisReply* e) {
      return e->type == REDIS_REPLY_NIL ? std::string_view() : ReplyStr(e);
    };
    if (!wm_ok && !marks_ok) {
      NoteCorrupt(kind_of(wm, CorruptKind::kWatermark), sym, keys_.Watermark(sym), text_of(wm),
                  false);
      NoteCorrupt(kind_of(wmp, CorruptKind::kMarks), sym, keys_.Marks(sym), text_of(wmp), false);
      (*status)[k] = LoadStatus::kCorrupt;
      continue;
    }
    if (!wm_ok) {
      // The per-source watermarks hold it exactly; the next write stores it again.
      NoteCorrupt(kind_of(wm, CorruptKind::kWatermark), sym, keys_.Watermark(sym), text_of(wm),
                  true);
    } else if (!marks_ok) {
      // Every id up to the watermark is in (from some source): a floor for every source.
      NoteCorrupt(kind_of(wmp, CorruptKind::kMarks), sym, keys_.Marks(sym), text_of(wmp), true);
      marks = SourceMarks{watermark, {}};
    } else if (wmp->type == REDIS_REPLY_NIL && watermark > 0) {
      marks = SourceMarks{watermark, {}};  // written before per-source watermarks existed
    }
    current.assign(n, std::nullopt);
    std::vector<size_t> unreadable;
    for (size_t i = 0; i < n; ++i) {
      const redisReply* e = r->element[i + 2];
      if (e->type == REDIS_REPLY_NIL) continue;
      Candle c;
      std::string_view stored_sym;
      bool closed = false;
      if (e->type == REDIS_REPLY_STRING && ParseCandleJson(ReplyStr(e), &c, &stored_sym, &closed) &&
          c.interval == s->interval(i) && stored_sym == sym && !closed) {
        current[i] = c;
      } else {
        unreadable.push_back(i);
      }
    }
    // An unreadable current candle is the merge of a finer interval's candles in its bucket,
    // where those are all still stored (finest first, so a repaired one can serve the next).
    bool current_ok = true;
    for (const size_t i : unreadable) {
      const int j = FinerSlot(i, [&current](size_t slot) { return current[slot].has_value(); });
      std::optional<Candle> rebuilt;
      if (j >= 0 && !RepairCurrent(sym, i, static_cast<size_t>(j), *current[static_cast<size_t>(j)],
                                   &rebuilt)) {
        return false;
      }
      const redisReply* e = r->element[i + 2];
      NoteCorrupt(kind_of(e, CorruptKind::kCurrent), sym, keys_.Current(sym, s->interval(i)),
                  text_of(e), rebuilt.has_value());
      current[i] = rebuilt;
      current_ok &= rebuilt.has_value();
    }
    if (!current_ok) {
      (*status)[k] = LoadStatus::kCorrupt;
      continue;
    }
    s->Restore(marks, current);
    // The write's compare-and-set token is what B:wmp holds now, readable or not (a key of
    // another type reads as none inside the script, as here).
    s->set_storage_stamp(wmp->type == REDIS_REPLY_STRING ? std::string(ReplyStr(wmp)) : "");
    loaded.push_back(s);
    const redisReply* tks = ticker_states[k].get();
    states.push_back(tks->type == REDIS_REPLY_STRING ? ReplyStr(tks) : std::string_view());
    if (tks->type == REDIS_REPLY_ERROR) {
      NoteCorrupt(CorruptKind::kType, sym, keys_.TickerState(sym), text_of(tks), true);
    }
  }
  return RebuildTickers(loaded, states);
}

bool KlineStore::RepairCurrent(std::string_view sym, size_t slot, size_t finer_slot,
                               const Candle& finer_current, std::optional<Candle>* out) {
  // History and current are contiguous, so the current candle's bucket is the one after the
  // newest history member; with no history, the series starts in it: the bucket of the finer
  // series' first candle. (Not the finer current's bucket: a rollover cannot roll an
  // unreadable candle, so the finer series may be ahead.)
  const Interval iv = layout_->intervals[slot];
  Read(sym, {"ZRANGE", keys_.History(sym, iv), "-1", "-1", "WITHSCORES"});
  Read(sym, {"ZRANGE", keys_.History(sym, layout_->intervals[finer_slot]), "0", "0", "WITHSCORES"});
  std::vector<RedisReply> got;
  if (!RunReads(&got)) return false;
  const RedisReply& last = got[0];
  const RedisReply& first_fine = got[1];
  int64_t open = 0;
  if (last->type == REDIS_REPLY_ARRAY && last->elements == 2 &&
      ParseInt(ReplyStr(last->element[1]), &open)) {
    open = NextBucketOpen(iv, open, layout_->tz);
  } else if (last->type == REDIS_REPLY_ARRAY && last->elements == 0) {
    int64_t fine_open = finer_current.open_time;
    if (first_fine->type == REDIS_REPLY_ARRAY && first_fine->elements == 2) {
      ParseInt(ReplyStr(first_fine->element[1]), &fine_open);
    }
    open = BucketOpen(iv, fine_open, layout_->tz);
  } else {
    return true;  // history unreadable too: nothing exact
  }
  return RebuildFromFiner(sym, iv, open, finer_slot, &finer_current, out);
}

int KlineStore::FinerSlot(size_t slot, const std::function<bool(size_t)>& usable) const {
  for (size_t j = slot; j-- > 0;) {  // intervals are in kAllIntervals order: finer first
    if (Nests(layout_->intervals[j], layout_->intervals[slot]) && usable(j)) {
      return static_cast<int>(j);
    }
  }
  return -1;
}

bool KlineStore::RebuildFromFiner(std::string_view sym, Interval iv, int64_t open,
                                  size_t finer_slot, const Candle* finer_current,
                                  std::optional<Candle>* out) {
  out->reset();
  const UtcOffset tz = layout_->tz;
  const Interval fine = layout_->intervals[finer_slot];
  const int64_t next = NextBucketOpen(iv, open, tz);
  const bool with_current = finer_current != nullptr && finer_current->open_time >= open &&
                            finer_current->open_time < next;
  const int64_t end = with_current ? finer_current->open_time : next;  // history covers [open, end)
  const std::string hist = keys_.History(sym, fine);
  const std::string from = ToDec(open);
  Read(sym, {"ZRANGEBYSCORE", hist, from, "(" + ToDec(end)});
  Read(sym, {"ZRANGEBYSCORE", hist, "-inf", "(" + from, "LIMIT", "0", "1"});
  Read(sym, {"HGET", keys_.Trimmed(sym), IntervalName(fine)});
  std::vector<RedisReply> got;
  if (!RunReads(&got)) return false;
  const RedisReply& members = got[0];
  const RedisReply& before = got[1];
  const RedisReply& trimmed = got[2];
  if (members->type != REDIS_REPLY_ARRAY || before->type != REDIS_REPLY_ARRAY) return true;
  std::vector<Candle> parts;
  for (size_t e = 0; e < members->elements; ++e) {
    Candle c;
    std::string_view s;
    bool closed = false;
    if (!ParseCandleJson(ReplyStr(members->element[e]), &c, &s, &closed) || s != sym ||
        c.interval != fine ||
        (!parts.empty() && c.open_time != NextBucketOpen(fine, parts.back().open_time, tz))) {
      return true;  // unreadable, or a gap: nothing exact
    }
    parts.push_back(c);
  }
  // The history must reach `end` without a gap: the finer current candle, or the bucket's end.
  if (!parts.empty() && NextBucketOpen(fine, parts.back().open_time, tz) != end) return true;
  if (with_current) parts.push_back(*finer_current);
  if (parts.empty()) return true;
  if (parts.front().open_time != open) {
    // The series may start inside the bucket: only if nothing of it is older, or was trimmed.
    int64_t trimmed_to = -1;
    if (trimmed->type == REDIS_REPLY_STRING) ParseInt(ReplyStr(trimmed.get()), &trimmed_to);
    if (before->elements != 0 || trimmed_to >= open) return true;
  }
  Candle merged;
  for (size_t i = 0; i < parts.size(); ++i) {
    Candle c = parts[i];
    c.interval = iv;
    c.open_time = open;
    c.close_time = next - 1;
    if (i == 0) {
      merged = c;
    } else if (!Merge(merged, c, &merged)) {
      return true;  // a sum past 20 digits: stored candles no trade could have made
    }
  }
  *out = merged;
  return true;
}

// After a restart or rebalance: the ticker window from its persisted state and the 1m candles
// since (a few), or from the last 24 h of 1m candles where there is no state (or it does not
// restore: counted, and repaired by that rebuild). A history that is not a sorted set or
// members that do not parse leave the window without them.
bool KlineStore::RebuildTickers(std::span<SymbolSeries* const> series,
                                const std::vector<std::string_view>& states) {
  if (one_minute_slot_ < 0) return true;
  const int64_t now = WallMs();
  const std::string day_ago = ToDec(now - now % 60000 - kTickerWindowMs);
  std::vector<char> restored(series.size(), 0);
  for (size_t k = 0; k < series.size(); ++k) {
    SymbolSeries* s = series[k];
    TickerWindow* ticker = s->ticker();
    if (!states[k].empty()) {
      restored[k] = ticker->RestoreState(states[k]) ? 1 : 0;
      if (!restored[k]) {
        NoteCorrupt(CorruptKind::kTicker, s->symbol().view(), keys_.TickerState(s->symbol().view()),
                    "", /*repaired=*/true);
      }
    }
    const std::string from = restored[k] ? ToDec(ticker->end() * 60000) : day_ago;
    Read(s->symbol().view(),
         {"ZRANGEBYSCORE", keys_.History(s->symbol().view(), Interval::k1m), from, "+inf"});
  }
  std::vector<RedisReply> got;
  if (!RunReads(&got)) return false;
  std::vector<Candle> candles;
  for (size_t k = 0; k < series.size(); ++k) {
    SymbolSeries* s = series[k];
    const RedisReply& r = got[k];
    candles.clear();
    if (r->type == REDIS_REPLY_ARRAY) {
      for (size_t e = 0; e < r->elements; ++e) {
        Candle c;
        std::string_view sym;
        bool closed = false;
        if (ParseCandleJson(ReplyStr(r->element[e]), &c, &sym, &closed)) candles.push_back(c);
      }
    }
    TickerWindow* ticker = s->ticker();
    const Candle* cur = s->current(static_cast<size_t>(one_minute_slot_));
    if (!restored[k]) {
      if (cur != nullptr) candles.push_back(*cur);
      (void)ticker->Rebuild(candles, now);
      continue;
    }
    // On top of the state: the minutes from its end on (an earlier 1m current candle is in
    // the state already: the window committed it when its end moved past).
    const int64_t end_ms = ticker->end() * 60000;
    if (cur != nullptr && cur->open_time >= end_ms) candles.push_back(*cur);
    for (const Candle& c : candles) {
      if (c.count != 0 && c.open_time >= end_ms) {
        (void)ticker->ApplyMinute(c.open_time, c, Decimal());
      }
    }
    ticker->Advance(now);
  }
  return true;
}

}  // namespace klined
