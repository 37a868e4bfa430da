#include "io/redis/kline_store.h"
#include "base/clock.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <optional>

#include <chrono>
#include "base/log.h"
#include "io/redis/lua_scripts.h"

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

// A trade in the Binance shape the decoder reads, for the MySQL worker's B:late records.
std::string TradeJson(const Trade& t) {
  std::string j;
  j.reserve(128);
  j.append("{\"s\":\"").append(t.symbol.view()).append("\",\"t\":").append(ToDec(t.id));
  j.append(",\"p\":\"");
  t.price.AppendTo(&j);
  j.append("\",\"q\":\"");
  t.qty.AppendTo(&j);
  j.append("\",\"T\":").append(ToDec(t.time_ms));
  j.append(",\"m\":").append(t.buyer_maker ? "true" : "false").append("}");
  return j;
}

}  // namespace

KlineStore::KlineStore(RedisConn* conn, std::string key_prefix, const SeriesLayout* layout,
                       RedisConn* write_conn, std::string ticker_prefix)
    : conn_(conn),
      write_conn_(write_conn != nullptr ? write_conn : conn),
      prefix_(std::move(key_prefix)),
      ticker_prefix_(std::move(ticker_prefix)),
      layout_(layout) {
  for (size_t i = 0; i < layout_->intervals.size(); ++i) {
    if (layout_->intervals[i] == Interval::k1m) one_minute_slot_ = static_cast<int>(i);
  }
  flush_script_ = conn_->AddScript(std::string(lua::kCommon) + lua::kFlush);
  if (write_conn_ != conn_) write_conn_->AddScript(std::string(lua::kCommon) + lua::kFlush);
}

namespace {
class OwningKlineStore final : public SeriesStore {
 public:
  OwningKlineStore(RedisOptions options, std::string prefix, const SeriesLayout* layout,
                   std::string ticker_prefix)
      : conn_(options),
        write_conn_(options),
        store_(&conn_, std::move(prefix), layout, &write_conn_, std::move(ticker_prefix)) {}
  bool Load(std::span<SymbolSeries* const> series) override { return store_.Load(series); }
  std::unique_ptr<FlushJob> PrepareFlush(std::span<SymbolSeries* const> series) override {
    return store_.PrepareFlush(series);
  }
  void ExecuteFlush(FlushJob* job) override { store_.ExecuteFlush(job); }
  FlushReport FinishFlush(FlushJob* job) override { return store_.FinishFlush(job); }
  std::string LastError() const override { return store_.LastError(); }
  uint64_t Errors() const override { return store_.Errors(); }
  uint64_t Reconnects() const override { return store_.Reconnects(); }

 private:
  RedisConn conn_;        // shard thread
  RedisConn write_conn_;  // flusher thread
  KlineStore store_;
};
}  // namespace

std::unique_ptr<SeriesStore> KlineStore::Create(RedisOptions options, std::string key_prefix,
                                                const SeriesLayout* layout,
                                                std::string ticker_prefix) {
  return std::make_unique<OwningKlineStore>(std::move(options), std::move(key_prefix), layout,
                                            std::move(ticker_prefix));
}

std::string KlineStore::KeyBase(std::string_view symbol) const {
  std::string base;
  base.reserve(prefix_.size() + symbol.size() + 3);
  base.append(prefix_).append(":{").append(symbol).append("}");
  return base;
}

std::string_view KlineStore::Keep(std::string s) {
  strings_.push_back(std::move(s));
  return strings_.back();
}

void KlineStore::EncodeFlushCommand(SymbolSeries& s, const std::vector<LateUpdate>& late,
                                    const std::vector<MysqlLate>& mysql_late,
                                    std::string* payload) {
  strings_.clear();
  args_.clear();
  const std::string_view sym = s.symbol().view();
  args_.insert(args_.end(), {"EVALSHA", conn_->Sha(flush_script_), "0", prefix_, sym});
  args_.push_back(Keep(ToDec(s.watermark())));
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
  if (one_minute_slot_ >= 0) {
    args_.push_back(Keep(ticker_prefix_ + ":{" + std::string(sym) + "}"));
    std::string json;
    s.ticker()->AppendJson(sym, WallMs(), &json);
    args_.push_back(Keep(std::move(json)));
  } else {
    args_.push_back("");
    args_.push_back("");
  }
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

// For every series with late trades: reads the stored candles their buckets name (plus what
// is needed to tell "before the stored start" from "trimmed"), and merges the trades exactly.
bool KlineStore::PlanLate(std::span<SymbolSeries* const> series, FlushReport* report) {
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
    const std::string base = KeyBase(series[k]->symbol().view());
    for (const LateUpdate& u : late_plans_[k]) {
      const std::string iv(IntervalName(series[k]->interval(u.slot)));
      const std::string hist = base + ":" + iv + ":hist";
      const std::string open_s = ToDec(u.open);
      conn_->Append({"ZRANGEBYSCORE", hist, open_s, open_s});
      conn_->Append({"ZRANGE", hist, "0", "0", "WITHSCORES"});
      conn_->Append({"GET", base + ":" + iv});
      conn_->Append({"HGET", base + ":trimmed", iv});
      ++reads;
    }
  }
  if (reads == 0) return true;  // no series has late trades
  for (size_t k = 0; k < series.size(); ++k) {
    SymbolSeries* s = series[k];
    const std::string_view sym = s->symbol().view();
    std::vector<LateUpdate>& plan = late_plans_[k];
    for (LateUpdate& u : plan) {
      RedisReply at = conn_->GetReply();
      RedisReply first = conn_->GetReply();
      RedisReply cur = conn_->GetReply();
      RedisReply trimmed = conn_->GetReply();
      if (!at || !first || !cur || !trimmed) return false;
      const Interval iv = s->interval(u.slot);
      std::string_view stored_sym;
      bool closed = false;
      if (at->type == REDIS_REPLY_ARRAY && at->elements > 0) {
        u.expect.assign(at->element[0]->str, at->element[0]->len);
        if (!ParseCandleJson(u.expect, &u.candle, &stored_sym, &closed)) {
          conn_->Disconnect("corrupt history candle for " + std::string(sym));
          return false;
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
  enum class Result : uint8_t { kFailed, kOk, kConflict };
  std::vector<SymbolSeries*> series;
  std::vector<SymbolSeries::FlushTicket> tickets;
  // Per series: (slot, close) of each late update, in the order the script reports them.
  std::vector<std::vector<std::pair<uint32_t, Decimal>>> carries;
  std::string payload;  // every FLUSH call, RESP-encoded
  FlushReport plan;     // late-trade counts from planning
  // Written by ExecuteFlush.
  std::vector<Result> results;
  std::vector<std::vector<bool>> reached;  // per series, per late update
};

std::unique_ptr<FlushJob> KlineStore::PrepareFlush(std::span<SymbolSeries* const> series) {
  auto job = std::make_unique<Job>();
  if (!series.empty()) {
    if (!conn_->EnsureConnected()) return nullptr;
    if (!PlanLate(series, &job->plan)) return nullptr;
  }
  job->series.assign(series.begin(), series.end());
  job->payload.reserve(series.size() * 4096);
  for (size_t k = 0; k < series.size(); ++k) {
    job->tickets.push_back(series[k]->BeginFlush());
    EncodeFlushCommand(*series[k], late_plans_[k], mysql_late_[k], &job->payload);
    auto& carries = job->carries.emplace_back();
    for (const LateUpdate& u : late_plans_[k]) carries.emplace_back(u.slot, u.candle.close);
  }
  job->results.assign(series.size(), Job::Result::kFailed);
  job->reached.assign(series.size(), {});
  return job;
}

void KlineStore::ExecuteFlush(FlushJob* base) {
  Job* job = static_cast<Job*>(base);
  if (job->series.empty()) return;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!write_conn_->EnsureConnected()) {
      job->error = write_conn_->error();
      return;
    }
    write_conn_->AppendFormatted(job->payload);
    bool noscript = false;
    for (size_t k = 0; k < job->series.size(); ++k) {
      RedisReply r = write_conn_->GetReply();
      if (r == nullptr) {  // connection dropped: what was not answered counts as failed
        job->error = write_conn_->error();
        return;
      }
      if (IsNoScript(r.get())) {
        noscript = true;
        continue;
      }
      if (r->type == REDIS_REPLY_ERROR || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
          r->element[0]->type != REDIS_REPLY_INTEGER) {
        job->error = std::string("FLUSH script: ") +
                     (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        write_conn_->Disconnect(job->error);
        return;
      }
      if (r->element[0]->integer == 0) {
        job->results[k] = Job::Result::kConflict;  // a stored candle changed since planning
        continue;
      }
      job->results[k] = Job::Result::kOk;
      for (size_t u = 1; u < r->elements; ++u) {
        job->reached[k].push_back(r->element[u]->integer == 1);
      }
    }
    if (!noscript) return;
    // Redis lost its scripts (restart, SCRIPT FLUSH): load them and send everything again;
    // the writes are absolute, so what already landed is written once more, harmlessly.
    if (!write_conn_->ReloadScripts()) {
      job->error = write_conn_->error();
      return;
    }
  }
}

FlushReport KlineStore::FinishFlush(FlushJob* base) {
  Job* job = static_cast<Job*>(base);
  FlushReport report;
  size_t conflicts = 0;
  for (size_t k = 0; k < job->series.size(); ++k) {
    SymbolSeries* s = job->series[k];
    if (job->results[k] != Job::Result::kOk) {
      conflicts += job->results[k] == Job::Result::kConflict;
      s->AbortFlush();
      continue;
    }
    s->CommitFlush(job->tickets[k]);
    const auto& carries = job->carries[k];
    for (size_t u = 0; u < carries.size() && u < job->reached[k].size(); ++u) {
      if (job->reached[k][u]) s->CarryIntoEmptyCurrent(carries[u].first, carries[u].second);
    }
    ++report.written;
  }
  report.failed = job->series.size() - report.written;
  report.ok = report.failed == 0;
  report.late_conflicts = conflicts;
  if (report.written > 0) {
    report.late_applied = job->plan.late_applied;
    report.late_not_in_redis = job->plan.late_not_in_redis;
    report.late_out_of_range = job->plan.late_out_of_range;
  }
  return report;
}

bool KlineStore::Load(std::span<SymbolSeries* const> series) {
  if (series.empty()) return true;
  if (!conn_->EnsureConnected()) return false;
  std::vector<std::string> keys;
  for (const SymbolSeries* s : series) {
    const std::string base = KeyBase(s->symbol().view());
    conn_->Append({"GET", base + ":wm"});
    keys.clear();
    args_.clear();
    args_.push_back("MGET");
    for (size_t i = 0; i < s->interval_count(); ++i) {
      keys.push_back(base + ":" + std::string(IntervalName(s->interval(i))));
    }
    for (const std::string& k : keys) args_.push_back(k);
    conn_->Append(args_);
  }
  std::vector<std::optional<Candle>> current;
  for (SymbolSeries* s : series) {
    RedisReply wm = conn_->GetReply();
    RedisReply cur = conn_->GetReply();
    if (wm == nullptr || cur == nullptr) return false;
    int64_t watermark = 0;
    if (wm->type == REDIS_REPLY_STRING && !ParseInt(ReplyStr(wm.get()), &watermark)) {
      conn_->Disconnect("corrupt watermark for " + std::string(s->symbol().view()));
      return false;
    }
    if (cur->type != REDIS_REPLY_ARRAY || cur->elements != s->interval_count()) {
      conn_->Disconnect("unexpected MGET reply");
      return false;
    }
    current.assign(s->interval_count(), std::nullopt);
    for (size_t i = 0; i < s->interval_count(); ++i) {
      const redisReply* e = cur->element[i];
      if (e->type != REDIS_REPLY_STRING) continue;
      Candle c;
      std::string_view sym;
      bool closed = false;
      if (!ParseCandleJson(ReplyStr(e), &c, &sym, &closed) || c.interval != s->interval(i)) {
        conn_->Disconnect("corrupt current candle for " + std::string(s->symbol().view()));
        return false;
      }
      current[i] = c;
    }
    s->Restore(watermark, current);
  }
  return RebuildTickers(series);
}

// After a restart or rebalance: the ticker window from the last 24 h of 1m candles.
bool KlineStore::RebuildTickers(std::span<SymbolSeries* const> series) {
  if (one_minute_slot_ < 0) return true;
  const int64_t now = WallMs();
  const std::string from = ToDec(now - now % 60000 - kTickerWindowMs);
  for (const SymbolSeries* s : series) {
    conn_->Append({"ZRANGEBYSCORE", KeyBase(s->symbol().view()) + ":1m:hist", from, "+inf"});
  }
  std::vector<Candle> candles;
  for (SymbolSeries* s : series) {
    RedisReply r = conn_->GetReply();
    if (r == nullptr) return false;
    candles.clear();
    if (r->type == REDIS_REPLY_ARRAY) {
      for (size_t k = 0; k < r->elements; ++k) {
        Candle c;
        std::string_view sym;
        bool closed = false;
        if (ParseCandleJson(ReplyStr(r->element[k]), &c, &sym, &closed)) candles.push_back(c);
      }
    }
    if (const Candle* cur = s->current(static_cast<size_t>(one_minute_slot_))) {
      candles.push_back(*cur);
    }
    (void)s->ticker()->Rebuild(candles, now);
  }
  return true;
}

}  // namespace klined
