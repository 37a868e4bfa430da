// Reads and writes one shard's symbols in Redis: flush, first-sight load, late trades.
//
// DESIGN
// Used only on the owning shard's thread, over that shard's own RedisConn. A flush is one
// EVALSHA of the FLUSH script per dirty symbol, all pipelined, then every reply read: a
// handful of round trips per flush however many trades were merged. Loads are pipelined the
// same way (GET watermark + MGET of the current candles per symbol). Late trades whose
// bucket the shard no longer holds are resolved in the flush: one pipelined read of the
// stored candles they touch, exact merge in C++, and compare-and-set inside the symbol's
// FLUSH call, atomic with its watermark; a symbol whose stored candle changed in between
// stays dirty and is retried by the next flush.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/redis/redis_conn.h"
#include "klined/series.h"
#include "shard/series_store.h"

namespace klined {

class KlineStore final : public SeriesStore {
 public:
  KlineStore(RedisConn* conn, std::string key_prefix, const SeriesLayout* layout);
  // A store with a connection of its own: what each shard gets.
  static std::unique_ptr<SeriesStore> Create(RedisOptions options, std::string key_prefix,
                                             const SeriesLayout* layout);

  // Writes every series (pipelined) and calls MarkFlushed() on each one written. A series not
  // written keeps its state and is retried by the next flush (writes are absolute).
  FlushReport Flush(std::span<SymbolSeries* const> series) override;

  bool Load(std::span<SymbolSeries* const> series) override;
  std::string LastError() const override { return conn_->error(); }

  std::string KeyBase(std::string_view symbol) const;

 private:
  // A stored closed candle that late trades change, as planned before the FLUSH call.
  struct LateUpdate {
    uint32_t slot;
    int64_t open;
    std::string expect;                // stored JSON read ("" = none)
    Candle candle;                     // stored candle + the late trades
    std::vector<std::string> empties;  // JSON of empty candles extending the series
  };
  // A late trade whose bucket is no longer in Redis: handed to the MySQL worker through
  // B:late ("INTERVAL|open_time|trade_id" -> trade JSON), written in the same FLUSH call.
  struct MysqlLate {
    std::string field;
    std::string trade_json;
  };
  bool PlanLate(std::span<SymbolSeries* const> series, FlushReport* report);
  void AppendFlushCommand(const SymbolSeries& s, const std::vector<LateUpdate>& late,
                          const std::vector<MysqlLate>& mysql_late);
  std::string_view Keep(std::string s);

  RedisConn* conn_;
  std::string prefix_;
  const SeriesLayout* layout_;
  size_t flush_script_;
  std::vector<std::vector<LateUpdate>> late_plans_;  // per series of the current flush
  std::vector<std::vector<MysqlLate>> mysql_late_;   // per series of the current flush
  // Scratch reused across calls: the arguments of one command (hiredis copies on Append).
  // A deque, so the views in args_ stay valid while strings are added.
  std::deque<std::string> strings_;
  std::vector<std::string_view> args_;
};

}  // namespace klined
