// Reads and writes one shard's symbols in Redis: flush, first-sight load, late trades.
//
// DESIGN
// Each shard has its own store with two connections: `conn` for the shard thread (loads,
// late-trade reads) and `write_conn` for its flusher thread. A flush is one EVALSHA of the
// FLUSH script per dirty symbol, encoded on the shard thread into one RESP buffer
// (PrepareFlush), written and answered on the flusher thread (ExecuteFlush) while the shard
// keeps applying trades, and committed back on the shard thread (FinishFlush): a handful of
// round trips per flush however many trades were merged. Loads are pipelined the
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
  // write_conn defaults to conn (then every call must come from one thread).
  KlineStore(RedisConn* conn, std::string key_prefix, const SeriesLayout* layout,
             RedisConn* write_conn = nullptr, std::string ticker_prefix = "ticker");
  // A store with a connection of its own: what each shard gets.
  static std::unique_ptr<SeriesStore> Create(RedisOptions options, std::string key_prefix,
                                             const SeriesLayout* layout,
                                             std::string ticker_prefix = "ticker");

  std::unique_ptr<FlushJob> PrepareFlush(std::span<SymbolSeries* const> series) override;
  void ExecuteFlush(FlushJob* job) override;
  FlushReport FinishFlush(FlushJob* job) override;

  bool Load(std::span<SymbolSeries* const> series) override;
  std::string LastError() const override { return conn_->error(); }
  uint64_t Errors() const override {
    return conn_->errors() + (write_conn_ != conn_ ? write_conn_->errors() : 0);
  }
  uint64_t Reconnects() const override {
    return conn_->reconnects() + (write_conn_ != conn_ ? write_conn_->reconnects() : 0);
  }

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
  struct Job;
  bool PlanLate(std::span<SymbolSeries* const> series, FlushReport* report);
  // Appends the FLUSH call of one series, RESP-encoded, to *payload.
  bool RebuildTickers(std::span<SymbolSeries* const> series);
  void EncodeFlushCommand(SymbolSeries& s, const std::vector<LateUpdate>& late,
                          const std::vector<MysqlLate>& mysql_late, std::string* payload);
  std::string_view Keep(std::string s);

  RedisConn* conn_;
  RedisConn* write_conn_;
  std::string prefix_;
  std::string ticker_prefix_;
  const SeriesLayout* layout_;
  int one_minute_slot_ = -1;  // index of 1m in the layout (the ticker's source), -1 if none
  size_t flush_script_;
  std::vector<std::vector<LateUpdate>> late_plans_;  // per series of the current flush
  std::vector<std::vector<MysqlLate>> mysql_late_;   // per series of the current flush
  // Scratch reused across calls: the arguments of one command (hiredis copies on Append).
  // A deque, so the views in args_ stay valid while strings are added.
  std::deque<std::string> strings_;
  std::vector<std::string_view> args_;
  std::vector<const char*> argv_;
  std::vector<size_t> argv_len_;
};

}  // namespace klined
