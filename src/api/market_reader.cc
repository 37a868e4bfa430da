// Reads for the market-data API; see market_reader.h.
#include "api/market_reader.h"

#include <algorithm>
#include <charconv>
#include <limits>

#include "base/log.h"

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

}  // namespace

MarketReader::MarketReader(RedisOptions redis, MysqlOptions mysql, KeyLayout keys, UtcOffset tz)
    : redis_(std::move(redis)),
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
  if (!redis_.EnsureConnected()) {
    stats_.redis_failures.Add();
    return ReadStatus::kRedisDown;
  }
  redis_.Append({"MULTI"});
  redis_.Append({"GET", current_key});
  redis_.Append({"ZRANGE", hist_key, "0", "0", "WITHSCORES"});
  if (oldest) {
    redis_.Append({"ZRANGEBYSCORE", hist_key, lo_s, hi_s, "LIMIT", "0", limit_s});
  } else {
    redis_.Append({"ZREVRANGEBYSCORE", hist_key, hi_s, lo_s, "LIMIT", "0", limit_s});
  }
  redis_.Append({"EXEC"});
  RedisReply exec;
  for (int i = 0; i < 5; ++i) {
    RedisReply r = redis_.GetReply();
    if (r == nullptr) {
      stats_.redis_failures.Add();
      return ReadStatus::kRedisDown;
    }
    if (i == 4) exec = std::move(r);
  }
  // A wrong-type key makes its command's slot an error reply; EXEC itself fails only when the
  // transaction was refused (e.g. a read-only replica, OOM).
  if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 3) {
    stats_.redis_failures.Add();
    LOG_RATE(kWarn, "api.redis_failed",
             "symbol=" << q.symbol << " detail=\"EXEC did not return the three replies\"");
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

ReadStatus MarketReader::GetAll(std::span<const std::string> keys,
                                const std::function<void(size_t, const redisReply*)>& on_reply) {
  if (keys.empty()) return ReadStatus::kOk;
  stats_.redis_reads.Add();
  if (!redis_.EnsureConnected()) {
    stats_.redis_failures.Add();
    return ReadStatus::kRedisDown;
  }
  for (const std::string& k : keys) redis_.Append({"GET", k});
  for (size_t i = 0; i < keys.size(); ++i) {
    RedisReply r = redis_.GetReply();
    if (r == nullptr) {
      stats_.redis_failures.Add();
      return ReadStatus::kRedisDown;
    }
    on_reply(i, r.get());
  }
  return ReadStatus::kOk;
}

ReadStatus MarketReader::Latest(Interval iv, std::span<const std::string> symbols,
                                std::vector<std::pair<std::string_view, Candle>>* out) {
  out->clear();
  std::vector<std::string> keys;
  keys.reserve(symbols.size());
  for (const std::string& s : symbols) keys.push_back(keys_.Current(s, iv));
  out->reserve(symbols.size());
  const ReadStatus st = GetAll(keys, [&](size_t i, const redisReply* r) {
    Candle c;
    if (IsString(r) && ParseStored(Str(r), iv, &c)) out->emplace_back(symbols[i], c);
  });
  if (st != ReadStatus::kOk) out->clear();
  return st;
}

ReadStatus MarketReader::Tickers(std::span<const std::string> symbols,
                                 std::vector<std::string>* out) {
  out->assign(symbols.size(), std::string());
  std::vector<std::string> keys;
  keys.reserve(symbols.size());
  for (const std::string& s : symbols) keys.push_back(keys_.Ticker(s));
  return GetAll(keys, [&](size_t i, const redisReply* r) {
    if (IsString(r)) (*out)[i].assign(r->str, r->len);
  });
}

ReadStatus MarketReader::Symbols(std::vector<std::string>* out) {
  out->clear();
  stats_.redis_reads.Add();
  if (!redis_.EnsureConnected()) {
    stats_.redis_failures.Add();
    return ReadStatus::kRedisDown;
  }
  const std::string key = keys_.Symbols();
  std::string cursor = "0";
  do {
    if (!redis_.SscanStep(key, &cursor, "1000", out)) {
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
