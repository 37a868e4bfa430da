// The API's reads of Redis and MySQL: candles over a time range stitched across the
// Redis/MySQL seam, every symbol's current candle, tickers, the known-symbol set.
//
// DESIGN
// One MarketReader per API thread (it owns a blocking cluster::Router, one hiredis
// connection per Redis node it reads, and a MySQL connection; calls block that thread for one
// Redis round trip, plus one MySQL range read when the range is older than Redis holds). One
// code path for one Redis and for a cluster: every read is routed by the symbol's slot. It never
// touches shard memory: any instance answers for any symbol.
//
// The seam. Redis holds a symbol's current candle and, in the history sorted set, a gapless
// run of closed candles ending just before it; trimming removes only the oldest members and
// only after MySQL has them. So with h0 = the oldest history score (or the current candle's
// open time when history is empty), every candle before h0 is in MySQL and every candle from
// h0 on is in Redis. One read-only script (lua::kReadRange, both keys declared, in the symbol's
// slot) reads the current candle, h0 and the range's members in a single snapshot (a rollover
// or trim cannot fall between them), in a cluster as on one Redis: a MULTI would abort on a
// redirect, a script is redirected whole; MySQL is asked only for open times < h0. Rows never
// repeat and never skip at the seam.
//
// Binance's range rules (GET /api/v3/klines): startTime given = the oldest `limit` candles
// with open time in [startTime, endTime]; otherwise the newest `limit` with open time <=
// endTime (or all). Rows are ascending, the current candle last when in range.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "api/stitch.h"
#include "base/counter.h"
#include "io/mysql/kline_table.h"
#include "io/mysql/mysql_conn.h"
#include "io/redis/cluster/router.h"
#include "io/redis/key_layout.h"
#include "klined/candle.h"
#include "klined/interval.h"

namespace klined::api {

// Counters of one reader; owned by its API thread, read by the metrics scrape.
struct ReaderStats {
  OwnedCounter redis_reads;     // Redis round trips
  OwnedCounter redis_failures;  // round trips that failed (Redis down, timeout, error reply)
  OwnedCounter mysql_reads;     // MySQL range reads
  OwnedCounter mysql_failures;  // range reads that failed
  OwnedCounter corrupt_values;  // stored values that do not parse (skipped, logged)
};

// One snapshot read of a range's Redis side (see DESIGN).
struct RedisPart {
  std::optional<Candle> current;  // the current candle, if stored and readable
  int64_t seam = kMaxTime;        // open times below it are MySQL's
  std::vector<Candle> rows;       // the range's history members that parse, ascending
  size_t range_members = 0;       // members the range read returned
};

// What the L1 cache (candle_cache.h) reads through: MarketReader in klined; the unit tests'
// own sources of candles.
class CacheSource {
 public:
  virtual ~CacheSource() = default;
  virtual ReadStatus ReadRedisPart(const RangeQuery& q, RedisPart* out) = 0;
  virtual ReadStatus MysqlRange(std::string_view symbol, Interval iv, int64_t lo, int64_t hi,
                                size_t limit, bool newest_first, std::vector<Candle>* out) = 0;
};

class MarketReader : public CacheSource {
 public:
  // `topology` (one Redis or the cluster's primaries) outlives the reader.
  MarketReader(cluster::Topology* topology, MysqlOptions mysql, KeyLayout keys, UtcOffset tz);

  // Candles of the range, ascending (see DESIGN). kOk with *out filled, else why not.
  ReadStatus Klines(const RangeQuery& q, std::vector<Candle>* out);
  // The Redis side of q in one script call (q's limit bounds the history members read).
  ReadStatus ReadRedisPart(const RangeQuery& q, RedisPart* out) override;
  // MySQL's candles of open times [lo, hi]: the oldest `limit`, or the newest when
  // newest_first; ascending either way.
  ReadStatus MysqlRange(std::string_view symbol, Interval iv, int64_t lo, int64_t hi, size_t limit,
                        bool newest_first, std::vector<Candle>* out) override;

  // The current candle of each symbol that has one, in the order given, with its symbol
  // (one pipelined read). Symbols without a current candle are left out.
  ReadStatus Latest(Interval iv, std::span<const std::string> symbols,
                    std::vector<std::pair<std::string_view, Candle>>* out);

  // The stored 24h ticker JSON of each symbol (one pipelined read); an empty string where a
  // symbol has none.
  ReadStatus Tickers(std::span<const std::string> symbols, std::vector<std::string>* out);

  // Every member of PREFIX:symbols (SSCAN), sorted.
  ReadStatus Symbols(std::vector<std::string>* out);

  const ReaderStats& stats() const { return stats_; }

 private:
  // A candle member or current value; false (counted, logged) when it does not parse.
  bool ParseStored(std::string_view json, Interval iv, Candle* out);
  // GET of every key of the symbols, in one pipeline per node (the nodes at once);
  // on_reply(index, reply) for each, in order.
  ReadStatus GetAll(std::span<const std::string> symbols,
                    const std::function<std::string(const std::string&)>& key_of,
                    const std::function<void(size_t, const redisReply*)>& on_reply);

  cluster::Router router_;
  size_t read_range_ = 0;  // lua::kReadRange
  MysqlConn mysql_;
  KlineTable table_;
  KeyLayout keys_;
  ReaderStats stats_;
};

}  // namespace klined::api
