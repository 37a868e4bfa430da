#include "io/mysql/kline_table.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <vector>

namespace klined {
namespace {

constexpr std::string_view kInsertHead =
    "INSERT INTO kline (symbol,`interval`,open_time,close_time,open,high,low,close,volume,"
    "quote_volume,taker_buy_volume,taker_buy_quote_volume,trades,first_trade_id,"
    "last_trade_id) VALUES ";
// A stored row is replaced only by a version with at least as many trades: a candle only
// gains trades, so a stale version (a worker still running after losing the lease, racing the
// new holder) can never undo a newer one. MySQL evaluates the assignments left to right, so
// `trades` is compared before it is updated, last.
constexpr std::string_view kInsertTail =
    " ON DUPLICATE KEY UPDATE"
    " close_time=IF(VALUES(trades)>=trades,VALUES(close_time),close_time),"
    "open=IF(VALUES(trades)>=trades,VALUES(open),open),"
    "high=IF(VALUES(trades)>=trades,VALUES(high),high),"
    "low=IF(VALUES(trades)>=trades,VALUES(low),low),"
    "close=IF(VALUES(trades)>=trades,VALUES(close),close),"
    "volume=IF(VALUES(trades)>=trades,VALUES(volume),volume),"
    "quote_volume=IF(VALUES(trades)>=trades,VALUES(quote_volume),quote_volume),"
    "taker_buy_volume=IF(VALUES(trades)>=trades,VALUES(taker_buy_volume),taker_buy_volume),"
    "taker_buy_quote_volume=IF(VALUES(trades)>=trades,VALUES(taker_buy_quote_volume),"
    "taker_buy_quote_volume),"
    "first_trade_id=IF(VALUES(trades)>=trades,VALUES(first_trade_id),first_trade_id),"
    "last_trade_id=IF(VALUES(trades)>=trades,VALUES(last_trade_id),last_trade_id),"
    "trades=GREATEST(trades,VALUES(trades))";
// The columns ParseRow reads, in its order.
constexpr std::string_view kSelectColumns =
    "SELECT open_time,close_time,open,high,low,close,volume,quote_volume,taker_buy_volume,"
    "taker_buy_quote_volume,trades,first_trade_id,last_trade_id FROM kline WHERE ";
constexpr int kSelectColumnCount = 13;
// A row is about 250 bytes of SQL at most; reserve for a whole batch once.
constexpr size_t kRowSqlBytes = 320;

void AppendInt(int64_t v, std::string* out) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

// An unquoted canonical decimal is an exact-value literal: MySQL/MariaDB keep it as DECIMAL
// (at most 38 digits here), never as a double.
void AppendDecimal(Decimal d, std::string* out) {
  char buf[Decimal::kMaxChars];
  out->append(buf, d.Format(buf));
}

bool ParseInt(const char* s, unsigned long len, int64_t* out) {
  if (s == nullptr) return false;
  auto r = std::from_chars(s, s + len, *out);
  return r.ec == std::errc() && r.ptr == s + len;
}

bool ParseDec(const char* s, unsigned long len, Decimal* out) {
  return s != nullptr && ParseStoredDecimal(std::string_view(s, len), out) == DecimalError::kOk;
}

bool ParseRow(MYSQL_ROW row, const unsigned long* len, Interval iv, Candle* c) {
  c->interval = iv;
  return ParseInt(row[0], len[0], &c->open_time) && ParseInt(row[1], len[1], &c->close_time) &&
         ParseDec(row[2], len[2], &c->open) && ParseDec(row[3], len[3], &c->high) &&
         ParseDec(row[4], len[4], &c->low) && ParseDec(row[5], len[5], &c->close) &&
         ParseDec(row[6], len[6], &c->volume) && ParseDec(row[7], len[7], &c->quote_volume) &&
         ParseDec(row[8], len[8], &c->taker_volume) &&
         ParseDec(row[9], len[9], &c->taker_quote_volume) &&
         ParseInt(row[10], len[10], &c->count) && ParseInt(row[11], len[11], &c->first_id) &&
         ParseInt(row[12], len[12], &c->last_id);
}

}  // namespace

KlineTable::KlineTable(MysqlConn* conn, size_t batch_rows, UtcOffset tz)
    : conn_(conn), batch_rows_(std::max<size_t>(batch_rows, 1)), tz_(tz) {}

bool KlineTable::EnsureSchema() {
  return conn_->Query(kCreateKlineTable) && conn_->Query(kCreateLateAppliedTable) &&
         conn_->Query(kCreateFenceTable);
}

bool KlineTable::RaiseFence(int64_t epoch) {
  sql_.assign("INSERT INTO kline_fence (id,epoch) VALUES (1,");
  AppendInt(epoch, &sql_);
  sql_.append(") ON DUPLICATE KEY UPDATE epoch=GREATEST(epoch,VALUES(epoch))");
  if (!conn_->Query(sql_)) return false;
  epoch_ = epoch;
  return true;
}

WriteStatus KlineTable::CheckFence() {
  // A locking read sees the latest committed epoch (not the transaction's snapshot), and its
  // shared lock makes a raise wait for this transaction: once a newer worker's raise has
  // committed, no transaction of ours that checked before it is still open.
  if (!conn_->Query("SELECT epoch FROM kline_fence WHERE id=1 LOCK IN SHARE MODE")) {
    return WriteStatus::kFailed;
  }
  MysqlResult res = conn_->StoreResult();
  if (res == nullptr) return WriteStatus::kFailed;
  int64_t stored = 0;  // no row: no worker raised it yet
  if (MYSQL_ROW row = mysql_fetch_row(res.get())) {
    if (!ParseInt(row[0], mysql_fetch_lengths(res.get())[0], &stored)) return WriteStatus::kFailed;
  }
  return stored > epoch_ ? WriteStatus::kFenced : WriteStatus::kOk;
}

void KlineTable::AppendRow(std::string_view symbol, const Candle& c, std::string* sql) {
  sql->push_back('(');
  conn_->AppendQuoted(symbol, sql);
  sql->append(",'").append(IntervalName(c.interval)).append("',");
  AppendInt(c.open_time, sql);
  sql->push_back(',');
  AppendInt(c.close_time, sql);
  for (Decimal d : {c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.taker_volume,
                    c.taker_quote_volume}) {
    sql->push_back(',');
    AppendDecimal(d, sql);
  }
  sql->push_back(',');
  AppendInt(c.count, sql);
  // The contract: an empty candle has first/last trade id -1, whatever the source said.
  sql->push_back(',');
  AppendInt(c.empty() ? kNoTradeId : c.first_id, sql);
  sql->push_back(',');
  AppendInt(c.empty() ? kNoTradeId : c.last_id, sql);
  sql->push_back(')');
}

WriteStatus KlineTable::Upsert(std::span<const StoredCandle> candles, size_t* batches) {
  for (size_t start = 0; start < candles.size(); start += batch_rows_) {
    const size_t end = std::min(candles.size(), start + batch_rows_);
    if (!conn_->Begin()) return WriteStatus::kFailed;
    if (const WriteStatus fence = CheckFence(); fence != WriteStatus::kOk) {
      conn_->Rollback();
      return fence;
    }
    sql_.clear();
    sql_.reserve(kInsertHead.size() + kInsertTail.size() + (end - start) * kRowSqlBytes);
    sql_.append(kInsertHead);
    for (size_t i = start; i < end; ++i) {
      if (i != start) sql_.push_back(',');
      AppendRow(candles[i].symbol, candles[i].candle, &sql_);
    }
    sql_.append(kInsertTail);
    if (!conn_->Query(sql_) || !conn_->Commit()) {
      conn_->Rollback();
      return WriteStatus::kFailed;
    }
    if (batches != nullptr) ++*batches;
  }
  return WriteStatus::kOk;
}

// An unconditional replacement of every column (recompute may lower `trades`).
constexpr std::string_view kReplaceTail =
    " ON DUPLICATE KEY UPDATE close_time=VALUES(close_time),open=VALUES(open),"
    "high=VALUES(high),low=VALUES(low),close=VALUES(close),volume=VALUES(volume),"
    "quote_volume=VALUES(quote_volume),taker_buy_volume=VALUES(taker_buy_volume),"
    "taker_buy_quote_volume=VALUES(taker_buy_quote_volume),trades=VALUES(trades),"
    "first_trade_id=VALUES(first_trade_id),last_trade_id=VALUES(last_trade_id)";

WriteStatus KlineTable::ReplaceIfUnchanged(std::string_view symbol, Interval iv,
                                           std::span<const Replacement> rows,
                                           std::vector<bool>* written) {
  written->assign(rows.size(), false);
  if (rows.empty()) return WriteStatus::kOk;
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (const Replacement& r : rows) {
    lo = std::min(lo, r.now.open_time);
    hi = std::max(hi, r.now.open_time);
  }
  if (!conn_->EnsureConnected() || !conn_->Begin()) return WriteStatus::kFailed;
  if (const WriteStatus fence = CheckFence(); fence != WriteStatus::kOk) {
    conn_->Rollback();
    return fence;
  }
  std::vector<Candle> locked;
  if (!SelectRange(symbol, iv, lo, hi, " ORDER BY open_time FOR UPDATE", &locked)) {
    conn_->Rollback();
    return WriteStatus::kFailed;
  }
  // locked is ascending by open time (the primary key's order).
  sql_.assign(kInsertHead);
  size_t n = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto it = std::lower_bound(
        locked.begin(), locked.end(), rows[i].now.open_time,
        [](const Candle& c, int64_t t) { return c.open_time < t; });
    const bool present = it != locked.end() && it->open_time == rows[i].now.open_time;
    const bool same = present ? rows[i].was.has_value() && *rows[i].was == *it
                              : !rows[i].was.has_value();
    if (!same) continue;
    if (n++ != 0) sql_.push_back(',');
    AppendRow(symbol, rows[i].now, &sql_);
    (*written)[i] = true;
  }
  sql_.append(kReplaceTail);
  if ((n > 0 && !conn_->Query(sql_)) || !conn_->Commit()) {
    conn_->Rollback();
    written->assign(rows.size(), false);
    return WriteStatus::kFailed;
  }
  return WriteStatus::kOk;
}

bool KlineTable::UpsertRows(std::span<const Candle> rows, std::string_view symbol) {
  for (size_t start = 0; start < rows.size(); start += batch_rows_) {
    const size_t end = std::min(rows.size(), start + batch_rows_);
    sql_.clear();
    sql_.append(kInsertHead);
    for (size_t i = start; i < end; ++i) {
      if (i != start) sql_.push_back(',');
      AppendRow(symbol, rows[i], &sql_);
    }
    sql_.append(kInsertTail);
    if (!conn_->Query(sql_)) return false;
  }
  return true;
}

void KlineTable::AppendSelect(std::string_view symbol, Interval iv, std::string* sql) {
  sql->append("symbol=");
  conn_->AppendQuoted(symbol, sql);
  sql->append(" AND `interval`='").append(IntervalName(iv)).append("'");
}

std::optional<Candle> KlineTable::FetchOne(Interval iv, bool* ok) {
  *ok = false;
  MysqlResult res = conn_->StoreResult();
  if (res == nullptr || mysql_num_fields(res.get()) != kSelectColumnCount) return std::nullopt;
  MYSQL_ROW row = mysql_fetch_row(res.get());
  if (row == nullptr) {
    *ok = true;
    return std::nullopt;
  }
  Candle c;
  if (!ParseRow(row, mysql_fetch_lengths(res.get()), iv, &c)) return std::nullopt;
  *ok = true;
  return c;
}

bool KlineTable::MaxTradeId(std::string_view symbol, int64_t* out) {
  *out = 0;
  if (!conn_->EnsureConnected()) return false;
  sql_.assign("SELECT MAX(last_trade_id) FROM kline WHERE symbol=");
  conn_->AppendQuoted(symbol, &sql_);
  if (!conn_->Query(sql_)) return false;
  MysqlResult res = conn_->StoreResult();
  if (res == nullptr) return false;
  if (MYSQL_ROW r = mysql_fetch_row(res.get()); r != nullptr && r[0] != nullptr) {
    *out = std::max<int64_t>(0, std::strtoll(r[0], nullptr, 10));
  }
  return true;
}

bool KlineTable::Symbols(std::vector<std::string>* out) {
  if (!conn_->EnsureConnected() || !conn_->Query("SELECT DISTINCT symbol FROM kline ORDER BY symbol")) {
    return false;
  }
  MysqlResult res = conn_->StoreResult();
  if (res == nullptr) return false;
  while (MYSQL_ROW r = mysql_fetch_row(res.get())) {
    if (r[0] != nullptr) out->emplace_back(r[0]);
  }
  return true;
}

bool KlineTable::SelectRange(std::string_view symbol, Interval iv, int64_t lo, int64_t hi,
                             std::string_view tail, std::vector<Candle>* out) {
  sql_.assign(kSelectColumns);
  AppendSelect(symbol, iv, &sql_);
  sql_.append(" AND open_time>=");
  AppendInt(lo, &sql_);
  sql_.append(" AND open_time<=");
  AppendInt(hi, &sql_);
  sql_.append(tail);
  if (!conn_->Query(sql_)) return false;
  MysqlResult res = conn_->StoreResult();
  if (res == nullptr || mysql_num_fields(res.get()) != kSelectColumnCount) return false;
  while (MYSQL_ROW row = mysql_fetch_row(res.get())) {
    Candle c;
    if (!ParseRow(row, mysql_fetch_lengths(res.get()), iv, &c)) return false;
    out->push_back(c);
  }
  return true;
}

bool KlineTable::ReadRange(std::string_view symbol, Interval iv, int64_t lo, int64_t hi,
                           size_t limit, bool newest_first, std::vector<Candle>* out) {
  if (limit == 0 || lo > hi) return true;
  if (!conn_->EnsureConnected()) return false;
  std::string tail(newest_first ? " ORDER BY open_time DESC LIMIT "
                                : " ORDER BY open_time ASC LIMIT ");
  AppendInt(static_cast<int64_t>(limit), &tail);
  const size_t first = out->size();
  if (!SelectRange(symbol, iv, lo, hi, tail, out)) return false;
  if (newest_first) std::reverse(out->begin() + static_cast<ptrdiff_t>(first), out->end());
  return true;
}

std::optional<Candle> KlineTable::Read(std::string_view symbol, Interval iv, int64_t open_time,
                                       bool* ok) {
  bool fetched = false;
  std::optional<Candle> c;
  if (conn_->EnsureConnected()) {
    sql_.assign(kSelectColumns);
    AppendSelect(symbol, iv, &sql_);
    sql_.append(" AND open_time=");
    AppendInt(open_time, &sql_);
    if (conn_->Query(sql_)) c = FetchOne(iv, &fetched);
  }
  if (ok != nullptr) *ok = fetched;
  return c;
}

LateResult KlineTable::ApplyLateTrade(std::string_view symbol, Interval iv, int64_t open_time,
                                      const Trade& trade) {
  LateResult result;
  auto fail = [&](LateOutcome outcome) {
    conn_->Rollback();
    result.outcome = outcome;
    return result;
  };
  if (!conn_->Begin()) return fail(LateOutcome::kFailed);
  if (const WriteStatus fence = CheckFence(); fence != WriteStatus::kOk) {
    return fail(fence == WriteStatus::kFenced ? LateOutcome::kFenced : LateOutcome::kFailed);
  }

  // Lock the row (or, when missing, the gap where it goes) for the whole merge.
  sql_.assign(kSelectColumns);
  AppendSelect(symbol, iv, &sql_);
  sql_.append(" AND open_time=");
  AppendInt(open_time, &sql_);
  sql_.append(" FOR UPDATE");
  bool ok = false;
  std::optional<Candle> stored;
  if (conn_->Query(sql_)) stored = FetchOne(iv, &ok);
  if (!ok) return fail(LateOutcome::kFailed);

  // The exactly-once record, in the same transaction as the merge.
  sql_.assign("INSERT INTO kline_late_applied (symbol,`interval`,open_time,trade_id) VALUES (");
  conn_->AppendQuoted(symbol, &sql_);
  sql_.append(",'").append(IntervalName(iv)).append("',");
  AppendInt(open_time, &sql_);
  sql_.push_back(',');
  AppendInt(trade.id, &sql_);
  sql_.push_back(')');
  if (!conn_->Query(sql_)) {
    return fail(conn_->error_number() == kMysqlDuplicateKey ? LateOutcome::kDuplicate
                                                            : LateOutcome::kFailed);
  }

  result.created = !stored.has_value();
  // A new row starts from an empty candle: its carried prices are replaced by the trade's.
  Candle c = stored ? *stored : Candle::Empty(iv, open_time, tz_, trade.price);
  const Decimal old_close = c.close;
  if (!c.Apply(trade)) return fail(LateOutcome::kOutOfRange);
  if (!UpsertRows({&c, 1}, symbol)) return fail(LateOutcome::kFailed);
  result.close_changed = result.created || c.close != old_close;

  if (result.created) {
    // The series now starts here: fill the buckets up to the next stored row with empty
    // candles carrying the close (generated a batch at a time: the gap may be long).
    std::optional<int64_t> next;
    if (!NextOpen(symbol, iv, open_time, false, &next)) return fail(LateOutcome::kFailed);
    if (next) {
      std::vector<Candle> gap;
      gap.reserve(batch_rows_);
      for (int64_t t = NextBucketOpen(iv, open_time, tz_); t < *next;
           t = NextBucketOpen(iv, t, tz_)) {
        gap.push_back(Candle::Empty(iv, t, tz_, c.close));
        if (gap.size() == batch_rows_) {
          if (!UpsertRows(gap, symbol)) return fail(LateOutcome::kFailed);
          result.gap_rows += gap.size();
          gap.clear();
        }
      }
      if (!UpsertRows(gap, symbol)) return fail(LateOutcome::kFailed);
      result.gap_rows += gap.size();
    }
  }

  if (result.close_changed) {
    // Every empty row after this candle, up to the first row with trades, carries its close.
    if (!NextOpen(symbol, iv, open_time, true, &result.next_traded)) {
      return fail(LateOutcome::kFailed);
    }
    sql_.assign("UPDATE kline SET open=");
    for (const char* col : {"", ",high=", ",low=", ",close="}) {
      sql_.append(col);
      AppendDecimal(c.close, &sql_);
    }
    sql_.append(" WHERE ");
    AppendSelect(symbol, iv, &sql_);
    sql_.append(" AND trades=0 AND open_time>");
    AppendInt(open_time, &sql_);
    if (result.next_traded) {
      sql_.append(" AND open_time<");
      AppendInt(*result.next_traded, &sql_);
    }
    if (!conn_->Query(sql_)) return fail(LateOutcome::kFailed);
    result.recarried_rows = conn_->AffectedRows();
  }

  if (!conn_->Commit()) return fail(LateOutcome::kFailed);
  result.outcome = LateOutcome::kApplied;
  result.candle = c;
  return result;
}

bool KlineTable::NextOpen(std::string_view symbol, Interval iv, int64_t open_time, bool traded,
                          std::optional<int64_t>* out) {
  out->reset();
  sql_.assign("SELECT MIN(open_time) FROM kline WHERE ");
  AppendSelect(symbol, iv, &sql_);
  if (traded) sql_.append(" AND trades>0");
  sql_.append(" AND open_time>");
  AppendInt(open_time, &sql_);
  if (!conn_->Query(sql_)) return false;
  MysqlResult res = conn_->StoreResult();
  if (res == nullptr) return false;
  MYSQL_ROW row = mysql_fetch_row(res.get());
  if (row == nullptr || row[0] == nullptr) return true;  // MIN over no rows is NULL
  int64_t t = 0;
  if (!ParseInt(row[0], mysql_fetch_lengths(res.get())[0], &t)) return false;
  *out = t;
  return true;
}

bool KlineTable::ReadCarry(std::string_view symbol, Interval iv, int64_t open_time, Decimal* close,
                           std::optional<int64_t>* next_traded) {
  bool ok = false;
  std::optional<Candle> c = Read(symbol, iv, open_time, &ok);
  if (!c) return false;
  *close = c->close;
  return NextOpen(symbol, iv, open_time, true, next_traded);
}

}  // namespace klined
