// Reads for the market-data API; see market_reader.h.
#include "api/market_reader.h"

#include <algorithm>
#include <charconv>
#include <limits>

#include "base/log.h"
#include "io/redis/lua_scripts.h"

namespace klined::api {
namespace {

std::string_view Str(const redisReply* r) { return std::string_view(r->str, r->len); }

bool IsString(const redisReply* r) {
  return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

bool ParseScore(const redisReply* r, int64_t* out) {
  if (!IsString(r)) return false;
  std::string_view s = Str(r);
  auto res = std::from_chars(s.data(), s.data() + s.size(), *out);
  return res.ec == std::errc() && res.ptr == s.data() + s.size();
}

std::string Int(int64_t v) { return std::to_string(v); }

// A reply waits on at most this much backing off from TRYAGAIN / CLUSTERDOWN (then 503): a
// client retries sooner than a writer must.
constexpr int64_t kRetryBudgetMs = 1000;

}  // namespace

MarketReader::MarketReader(cluster::Topology* topology, MysqlOptions mysql, KeyLayout keys,
                           UtcOffset tz)
    : router_(topology, 5, kRetryBudgetMs),
      read_range_(router_.AddScript(lua::kReadRange)),
      mysql_(std::move(mysql)),
      table_(&mysql_, 1, tz),
      keys_(std::move(keys)) {}

bool MarketReader::ParseStored(std::string_view json, Interval iv, Candle* out) {
  std::string_view symbol;
  bool closed = false;
  if (ParseCandleJson(json, out, &symbol, &closed) && out->interval == iv) return true;
  stats_.corrupt_values.Add();
  LOG_RATE(kWarn, "api.corrupt_value",
           "interval=" << IntervalName(iv) << " bytes=" << json.size()
                       << " detail=\"a stored candle does not parse; left out of the reply\"");
  return false;
}

ReadStatus MarketReader::MysqlRange(std::string_view symbol, Interval iv, int64_t lo, int64_t hi,
                                    size_t limit, bool newest_first, std::vector<Candle>* out) {
  stats_.mysql_reads.Add();
  if (table_.ReadRange(symbol, iv, lo, hi, limit, newest_first, out)) return ReadStatus::kOk;
  stats_.mysql_failures.Add();
  LOG_RATE(kWarn, "api.mysql_failed", "error=\"" << mysql_.error() << "\"");
  return ReadStatus::kMysqlDown;
}

ReadStatus MarketReader::ReadRedisPart(const RangeQuery& q, RedisPart* out) {
  *out = RedisPart{};
  const bool oldest = q.start_ms.has_value();
  const std::string current_key = keys_.Current(q.symbol, q.interval);
  const std::string hist_key = keys_.History(q.symbol, q.interval);
  const std::string lo_s = q.start_ms ? Int(*q.start_ms) : "-inf";
  const std::string hi_s = q.end_ms ? Int(*q.end_ms) : "+inf";
  const std::string limit_s = Int(static_cast<int64_t>(q.limit));

  stats_.redis_reads.Add();
  if (!router_.ScriptsLoaded()) {
    stats_.redis_failures.Add();
    return ReadStatus::kRedisDown;
  }
  RedisReply exec =
      router_.Command(keys_.Slot(q.symbol), {"EVALSHA", router_.Sha(read_range_), "2", current_key,
                                             hist_key, oldest ? "1" : "0", lo_s, hi_s, limit_s});
  // A wrong-type key makes its read's element an error reply; the call itself fails when
  // Redis is unreachable, or refused it (a redirect past the retry budget, a replica).
  if (exec == nullptr || exec->type != REDIS_REPLY_ARRAY || exec->elements != 3) {
    stats_.redis_failures.Add();
    LOG_RATE(
        kWarn, "api.redis_failed",
        "symbol=" << q.symbol << " error=\""
                  << (exec == nullptr                   ? std::string_view(router_.error())
                      : exec->type == REDIS_REPLY_ERROR ? Str(exec.get())
                                                        : std::string_view("not three replies"))
                  << "\"");
    return ReadStatus::kRedisDown;
  }
  const redisReply* cur_r = exec->element[0];
  const redisReply* first_r = exec->element[1];
  const redisReply* range_r = exec->element[2];

  if (IsString(cur_r)) {
    Candle c;
    if (ParseStored(Str(cur_r), q.interval, &c)) out->current = c;
  } else if (cur_r->type == REDIS_REPLY_ERROR) {
    stats_.corrupt_values.Add();
  }
  // The seam: everything before it is MySQL's, everything from it on is Redis's.
  out->seam = out->current ? out->current->open_time : kMaxTime;
  if (first_r->type == REDIS_REPLY_ARRAY && first_r->elements == 2) {
    int64_t h0 = 0;
    if (ParseScore(first_r->element[1], &h0)) out->seam = std::min(out->seam, h0);
  }
  if (range_r->type == REDIS_REPLY_ARRAY) {
    out->range_members = range_r->elements;
    out->rows.reserve(range_r->elements);
    for (size_t i = 0; i < range_r->elements; ++i) {
      Candle c;
      if (IsString(range_r->element[i]) && ParseStored(Str(range_r->element[i]), q.interval, &c)) {
        out->rows.push_back(c);
      }
    }
    if (!oldest) std::reverse(out->rows.begin(), out->rows.end());
  } else if (range_r->type == REDIS_REPLY_ERROR) {
    stats_.corrupt_values.Add();
  }
  return ReadStatus::kOk;
}

ReadStatus MarketReader::Klines(const RangeQuery& q, std::vector<Candle>* out) {
  out->clear();
  if (q.limit == 0 || q.start_ms.value_or(kMinTime) > q.end_ms.value_or(kMaxTime)) {
    return ReadStatus::kOk;
  }
  RedisPart part;
  if (const ReadStatus s = ReadRedisPart(q, &part); s != ReadStatus::kOk) return s;
  auto fetch = [&](int64_t lo, int64_t hi, size_t limit, bool newest_first,
                   std::vector<Candle>* rows) {
    return MysqlRange(q.symbol, q.interval, lo, hi, limit, newest_first, rows);
  };
  return Stitch<Candle>(
      q, part.current ? &*part.current : nullptr, part.seam, std::span<const Candle>(part.rows),
      part.range_members, [](const Candle& c) { return c.open_time; }, fetch, out);
}

ReadStatus MarketReader::GetAll(std::span<const std::string> symbols,
                                const std::function<std::string(const std::string&)>& key_of,
                                const std::function<void(size_t, const redisReply*)>& on_reply) {
  if (symbols.empty()) return ReadStatus::kOk;
  stats_.redis_reads.Add();
  std::vector<cluster::Call> calls;
  calls.reserve(symbols.size());
  for (const std::string& s : symbols) {
    calls.push_back({keys_.Slot(s), cluster::Encode({"GET", key_of(s)})});
  }
  std::vector<RedisReply> replies;
  router_.Execute(calls, &replies);
  for (const RedisReply& r : replies) {
    if (r == nullptr) {
      stats_.redis_failures.Add();
      LOG_RATE(kWarn, "api.redis_failed", "error=\"" << router_.error() << "\"");
      return ReadStatus::kRedisDown;
    }
  }
  for (size_t i = 0; i < replies.size(); ++i) on_reply(i, replies[i].get());
  return ReadStatus::kOk;
}

ReadStatus MarketReader::Latest(Interval iv, std::span<const std::string> symbols,
                                std::vector<std::pair<std::string_view, Candle>>* out) {
  out->clear();
  out->reserve(symbols.size());
  const auto key_of = [&](const std::string& s) { return keys_.Current(s, iv); };
  const ReadStatus st = GetAll(symbols, key_of, [&](size_t i, const redisReply* r) {
    Candle c;
    if (IsString(r) && ParseStored(Str(r), iv, &c)) out->emplace_back(symbols[i], c);
  });
  if (st != ReadStatus::kOk) out->clear();
  return st;
}

ReadStatus MarketReader::Tickers(std::span<const std::string> symbols,
                                 std::vector<std::string>* out) {
  out->assign(symbols.size(), std::string());
  const auto key_of = [&](const std::string& s) { return keys_.Ticker(s); };
  return GetAll(symbols, key_of, [&](size_t i, const redisReply* r) {
    if (IsString(r)) (*out)[i].assign(r->str, r->len);
  });
}

ReadStatus MarketReader::Symbols(std::vector<std::string>* out) {
  out->clear();
  stats_.redis_reads.Add();
  const std::string key = keys_.Symbols();
  std::string cursor = "0";
  do {
    if (!cluster::SscanStep(&router_, key, &cursor, "1000", out)) {
      stats_.redis_failures.Add();
      out->clear();
      return ReadStatus::kRedisDown;
    }
  } while (cursor != "0");
  std::sort(out->begin(), out->end());
  out->erase(std::unique(out->begin(), out->end()), out->end());
  return ReadStatus::kOk;
}

}  // namespace klined::api
