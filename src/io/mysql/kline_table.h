// The contract's `kline` table: schema, batched upserts, reads, and the late-trade merge.
//
// DESIGN
// Used on the thread that owns the MysqlConn (the persistence worker). Values go to SQL as
// canonical Decimal text written as unquoted exact-value literals, which DECIMAL(38,18)
// stores exactly; they come back as DECIMAL text ("1.500000000000000000") parsed by
// ParseStoredDecimal. No double ever touches a price or a volume.
// Upserts are multi-row `INSERT ... ON DUPLICATE KEY UPDATE` of at most batch_rows rows, one
// transaction per batch. An upsert writes
// absolute values, so repeating one (after a crash) is harmless; and it replaces a stored row
// only with a version holding at least as many trades (a candle only gains trades), so a
// stale version written late (two lease holders overlapping) cannot undo a newer one.
// A late trade whose bucket is no longer in Redis is merged here (ApplyLateTrade): one
// transaction that records the trade in `kline_late_applied` (primary key = the trade), so a
// retry after a crash between COMMIT and the Redis cleanup counts it once.
// Fencing: a worker writes on behalf of the lease holder, and an ex-holder that was paused may
// still finish a batch after a newer holder started (its upserts of empty candles with a
// re-carried close would win: they hold no more trades than the newer version). So every
// write transaction first reads the one row of `kline_fence` (the highest lease epoch of a
// worker that became active) with a shared lock and writes nothing if it is above the
// table's epoch; a worker that becomes active raises it to its own epoch first (RaiseFence,
// never lowering it), which waits for the older epoch's open transactions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/mysql/mysql_conn.h"
#include "klined/candle.h"
#include "klined/interval.h"
#include "klined/trade.h"

namespace klined {

// A candle with the symbol it belongs to (Candle itself does not carry one).
struct StoredCandle {
  std::string symbol;
  Candle candle;
};

// CONTRACT.md section 5, verbatim.
inline constexpr const char kCreateKlineTable[] = R"SQL(CREATE TABLE IF NOT EXISTS kline (
  symbol VARCHAR(32) NOT NULL, `interval` VARCHAR(4) NOT NULL,
  open_time BIGINT NOT NULL, close_time BIGINT NOT NULL,
  open DECIMAL(38,18) NOT NULL, high DECIMAL(38,18) NOT NULL,
  low DECIMAL(38,18) NOT NULL, close DECIMAL(38,18) NOT NULL,
  volume DECIMAL(38,18) NOT NULL, quote_volume DECIMAL(38,18) NOT NULL,
  taker_buy_volume DECIMAL(38,18) NOT NULL, taker_buy_quote_volume DECIMAL(38,18) NOT NULL,
  trades BIGINT NOT NULL, first_trade_id BIGINT NOT NULL, last_trade_id BIGINT NOT NULL,
  PRIMARY KEY (symbol, `interval`, open_time)
) ENGINE=InnoDB)SQL";

// Bookkeeping of late trades merged into MySQL (klined's own table): one row per trade.
inline constexpr const char kCreateLateAppliedTable[] =
    R"SQL(CREATE TABLE IF NOT EXISTS kline_late_applied (
  symbol VARCHAR(32) NOT NULL, `interval` VARCHAR(4) NOT NULL,
  open_time BIGINT NOT NULL, trade_id BIGINT NOT NULL,
  PRIMARY KEY (symbol, `interval`, open_time, trade_id)
) ENGINE=InnoDB)SQL";

// klined's fencing epoch (its own table): one row, the highest lease epoch of a persistence
// worker that became active. See KlineTable.
inline constexpr const char kCreateFenceTable[] = R"SQL(CREATE TABLE IF NOT EXISTS kline_fence (
  id TINYINT NOT NULL PRIMARY KEY, epoch BIGINT NOT NULL
) ENGINE=InnoDB)SQL";

// How a write transaction ended.
enum class WriteStatus : uint8_t {
  kOk,      // committed
  kFenced,  // kline_fence holds a higher epoch than ours: nothing written, stop writing
  kFailed,  // MySQL error: nothing (more) written, retry later
};

enum class LateOutcome : uint8_t {
  kApplied,     // merged and committed
  kDuplicate,   // kline_late_applied already had the trade: nothing changed
  kOutOfRange,  // the merged candle would pass 20 integer digits: nothing changed
  kFailed,      // MySQL error: nothing changed, retry later
  kFenced,      // a newer lease holder raised kline_fence: nothing changed, stop
};

struct LateResult {
  LateOutcome outcome = LateOutcome::kFailed;
  Candle candle;                // the candle after the merge (kApplied)
  bool close_changed = false;   // its close moved (following empty candles were re-carried)
  bool created = false;         // MySQL had no row for the bucket: the series starts there
  uint64_t recarried_rows = 0;  // empty rows after it that took the new close
  uint64_t gap_rows = 0;        // empty rows created between it and the next stored row
  // Open time of the first row with trades after it, if any: the re-carry stopped there.
  std::optional<int64_t> next_traded;
};

class KlineTable {
 public:
  // tz aligns the buckets of empty candles created by the late path.
  KlineTable(MysqlConn* conn, size_t batch_rows, UtcOffset tz);

  // Creates `kline` (the contract's exact statement), `kline_late_applied` and `kline_fence`
  // if missing.
  [[nodiscard]] bool EnsureSchema();

  // The lease epoch this table writes under (0 = none: only while no worker ever raised the
  // fence). Every write transaction is refused once kline_fence holds a higher one.
  void set_fence_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t fence_epoch() const { return epoch_; }
  // Raises kline_fence to `epoch` (never lowers it) and writes under it from now on. Called
  // when a worker becomes active, before its first write.
  [[nodiscard]] bool RaiseFence(int64_t epoch);

  // Upserts every candle, batch_rows per statement, each statement in a transaction of its
  // own that first checks the fence. Stops at the first batch that is not kOk and returns its
  // status: batches before it are committed (harmless: upserts are absolute), the rest are
  // not. *batches (if given) counts the statements committed.
  [[nodiscard]] WriteStatus Upsert(std::span<const StoredCandle> candles,
                                   size_t* batches = nullptr);

  // One row of a replacement (klinectl recompute): `now` goes in where the stored row is
  // still `was` (nullopt: no row). Unlike Upsert it may hold fewer trades than the row.
  struct Replacement {
    std::optional<Candle> was;
    Candle now;
  };
  // Replaces the rows of (symbol, iv) in one transaction: checks the fence, locks the rows in
  // the replacements' open-time range (SELECT ... FOR UPDATE), and writes each replacement
  // whose row still equals `was` (a late trade merged meanwhile, or klined persisting a newer
  // version, makes it a conflict: left as it is). (*written)[i] says whether rows[i] went in.
  [[nodiscard]] WriteStatus ReplaceIfUnchanged(std::string_view symbol, Interval iv,
                                               std::span<const Replacement> rows,
                                               std::vector<bool>* written);

  // The highest last_trade_id of the symbol's rows (0 when none has trades). False on an error.
  [[nodiscard]] bool MaxTradeId(std::string_view symbol, int64_t* out);
  // Every symbol with a row, ascending, appended to *out. False on an error.
  [[nodiscard]] bool Symbols(std::vector<std::string>* out);

  // The stored candle, or nullopt when there is no such row or on an error (*ok, if given,
  // says which).
  std::optional<Candle> Read(std::string_view symbol, Interval iv, int64_t open_time,
                             bool* ok = nullptr);

  // Up to `limit` stored candles of (symbol, iv) with lo <= open_time <= hi, appended to *out in
  // ascending open time; the oldest `limit` of the range, or with newest_first the newest
  // `limit` (still appended ascending). One primary-key range read. False on an error or a row
  // that does not parse (*out then holds what was appended before).
  [[nodiscard]] bool ReadRange(std::string_view symbol, Interval iv, int64_t lo, int64_t hi,
                               size_t limit, bool newest_first, std::vector<Candle>* out);

  // Merges a trade into the stored candle of bucket (iv, open_time) exactly once, in one
  // transaction: lock the row, record the trade in kline_late_applied (a duplicate key means
  // it was applied before: stop), merge with Candle::Apply, upsert, re-carry the new close
  // into the empty rows that follow (up to the first row with trades), commit.
  // No row for the bucket: the series starts there: the row is created from the trade, and
  // the buckets between it and the next stored row are filled with empty candles carrying
  // its close (gapless series).
  LateResult ApplyLateTrade(std::string_view symbol, Interval iv, int64_t open_time,
                            const Trade& trade);

  // The stored close of bucket (iv, open_time) and the open time of the first row with trades
  // after it (what ApplyLateTrade reports), read without a transaction. False if the row is
  // missing or on an error.
  bool ReadCarry(std::string_view symbol, Interval iv, int64_t open_time, Decimal* close,
                 std::optional<int64_t>* next_traded);

 private:
  void AppendRow(std::string_view symbol, const Candle& c, std::string* sql);
  bool UpsertRows(std::span<const Candle> rows, std::string_view symbol);
  // The rows of (symbol, iv) with lo <= open_time <= hi, `tail` (ORDER BY, LIMIT, FOR
  // UPDATE) appended to the SELECT, appended to *out in the order MySQL returns them.
  bool SelectRange(std::string_view symbol, Interval iv, int64_t lo, int64_t hi,
                   std::string_view tail, std::vector<Candle>* out);
  // SELECT of the columns ParseRow reads, with a WHERE for one (symbol, interval).
  void AppendSelect(std::string_view symbol, Interval iv, std::string* sql);
  std::optional<Candle> FetchOne(Interval iv, bool* ok);
  // MIN(open_time) of the rows after open_time (only those with trades if `traded`): false
  // on an error, *out nullopt when there is none.
  bool NextOpen(std::string_view symbol, Interval iv, int64_t open_time, bool traded,
                std::optional<int64_t>* out);

  // Inside a transaction: reads kline_fence with a shared lock (held to COMMIT). kOk when its
  // epoch is at most ours.
  WriteStatus CheckFence();

  MysqlConn* conn_;
  size_t batch_rows_;
  UtcOffset tz_;
  int64_t epoch_ = 0;
  std::string sql_;  // scratch, reused
};

}  // namespace klined
