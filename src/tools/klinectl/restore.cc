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
#include "tools/klinectl/restore.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "io/mysql/kline_table.h"
#include "klined/candle.h"

namespace klined::klinectl {
namespace {

// KEYS: history, trimmed hash, current candle. ARGV: interval, dry ("1"/"0"), then
// (open_time, candle JSON) pairs. Returns {written, already present, outside the window}.
constexpr const char kRestore[] = R"LUA(
local trimmed = -1
local t = redis.pcall('HGET', KEYS[2], ARGV[1])
if type(t) == 'string' then trimmed = tonumber(t) or -1 end
local cur_open = nil
local cur = redis.pcall('GET', KEYS[3])
if type(cur) == 'string' then cur_open = tonumber(string.match(cur, '^{"t":(%-?%d+)')) end
local written, present, outside = 0, 0, 0
for i = 3, #ARGV, 2 do
  local open = tonumber(ARGV[i])
  if open <= trimmed or (cur_open and open >= cur_open) then
    outside = outside + 1
  elseif #redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[i], ARGV[i]) > 0 then
    present = present + 1
  else
    written = written + 1
    if ARGV[2] == '0' then redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
  end
end
return {written, present, outside}
)LUA";

// Progress on stderr: a line rewritten in place on a terminal, a line every 5 s otherwise.
class Progress {
 public:
  explicit Progress(size_t total) : total_(total), tty_(isatty(2) == 1), start_(Now()) {}
  void Update(size_t done, uint64_t written) {
    const double now = Now();
    if (now - last_ < (tty_ ? 0.2 : 5.0) && done != total_) return;
    last_ = now;
    const double elapsed = std::max(now - start_, 1e-3);
    const double rate = static_cast<double>(done) / elapsed;
    const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0;
    std::fprintf(
        stderr,
        "%srestore-redis: %zu/%zu symbols, %llu candles written, %.1f symbols/s, ETA %.0f s%s",
        tty_ ? "\r" : "", done, total_, static_cast<unsigned long long>(written), rate, eta,
        tty_ ? "   " : "\n");
    if (tty_ && done == total_) std::fputc('\n', stderr);
  }

 private:
  static double Now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  size_t total_;
  bool tty_;
  double start_;
  double last_ = 0;
};

bool AllSymbols(MysqlConn* db, std::vector<std::string>* out) {
  if (!db->Query("SELECT DISTINCT symbol FROM kline ORDER BY symbol")) return false;
  MysqlResult res = db->StoreResult();
  if (res == nullptr) return false;
  while (MYSQL_ROW r = mysql_fetch_row(res.get())) {
    if (r[0] != nullptr) out->emplace_back(r[0]);
  }
  return true;
}

}  // namespace

int RestoreRedis(const RestoreOptions& o) {
  MysqlConn db(o.mysql);
  if (!db.EnsureConnected()) {
    std::fprintf(stderr, "klinectl: cannot connect to MySQL at %s:%d: %s\n", o.mysql.host.c_str(),
                 o.mysql.port, db.error().c_str());
    return 2;
  }
  RedisConn redis(o.redis);
  const size_t script = redis.AddScript(kRestore);
  if (!redis.EnsureConnected()) {
    std::fprintf(stderr, "klinectl: cannot connect to Redis at %s: %s\n", o.redis.address.c_str(),
                 redis.error().c_str());
    return 2;
  }
  std::vector<std::string> symbols = o.symbols;
  if (symbols.empty() && !AllSymbols(&db, &symbols)) {
    std::fprintf(stderr, "klinectl: listing the kline table's symbols: %s\n", db.error().c_str());
    return 2;
  }
  KlineTable table(&db, 500, o.tz);
  Progress progress(symbols.size());
  uint64_t written = 0, present = 0, outside = 0, symbols_touched = 0;
  std::vector<Candle> candles;
  std::vector<std::string> strings;
  std::vector<std::string_view> args;
  for (size_t k = 0; k < symbols.size(); ++k) {
    const std::string& sym = symbols[k];
    size_t calls = 0;
    for (const Interval iv : o.intervals) {
      candles.clear();
      if (!table.ReadRange(sym, iv, INT64_MIN, INT64_MAX, static_cast<size_t>(o.limit),
                           /*newest_first=*/true, &candles)) {
        std::fprintf(stderr, "\nklinectl: reading %s %s from MySQL: %s\n", sym.c_str(),
                     std::string(IntervalName(iv)).c_str(), db.error().c_str());
        return 2;
      }
      if (candles.empty()) continue;
      strings.clear();
      strings.reserve(3 + 2 * candles.size());
      strings.push_back(o.keys.History(sym, iv));
      strings.push_back(o.keys.Trimmed(sym));
      strings.push_back(o.keys.Current(sym, iv));
      for (const Candle& c : candles) {
        strings.push_back(std::to_string(c.open_time));
        strings.push_back(CandleJson(c, sym, /*closed=*/true));
      }
      args.assign({"EVALSHA", redis.Sha(script), "3", strings[0], strings[1], strings[2],
                   IntervalName(iv), o.dry_run ? "1" : "0"});
      for (size_t i = 3; i < strings.size(); ++i) args.push_back(strings[i]);
      redis.Append(args);
      ++calls;
    }
    uint64_t sym_written = 0;
    for (size_t c = 0; c < calls; ++c) {
      RedisReply r = redis.GetReply();
      if (r == nullptr) {
        std::fprintf(stderr, "\nklinectl: Redis: %s (a rerun resumes)\n", redis.error().c_str());
        return 2;
      }
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        std::fprintf(stderr, "\nklinectl: %s: RESTORE answered %s\n", sym.c_str(),
                     r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
        return 2;
      }
      sym_written += static_cast<uint64_t>(r->element[0]->integer);
      present += static_cast<uint64_t>(r->element[1]->integer);
      outside += static_cast<uint64_t>(r->element[2]->integer);
    }
    if (calls > 0 && !o.dry_run) {
      RedisReply r = redis.Command({"SADD", o.keys.Symbols(), sym});
      if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
        std::fprintf(stderr, "\nklinectl: Redis SADD: %s\n",
                     r == nullptr ? redis.error().c_str() : r->str);
        return 2;
      }
    }
    written += sym_written;
    symbols_touched += sym_written > 0 ? 1 : 0;
    progress.Update(k + 1, written);
  }
  std::printf(
      "restore-redis%s: %zu symbols, %llu candles %s, %llu already in Redis, %llu outside "
      "the history window (trimmed, or the open bucket); %llu symbols %s\n",
      o.dry_run ? " (dry run)" : "", symbols.size(), static_cast<unsigned long long>(written),
      o.dry_run ? "would be written" : "written", static_cast<unsigned long long>(present),
      static_cast<unsigned long long>(outside), static_cast<unsigned long long>(symbols_touched),
      o.dry_run ? "would change" : "changed");
  return 0;
}

}  // namespace klined::klinectl
