// What klinectl's history tools (history.cc, recompute.cc) share: progress reporting, the
// kline table's symbols, the MySQL fence epoch they write under.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/mysql/kline_table.h"
#include "io/mysql/mysql_conn.h"

namespace klined::klinectl {

// Progress on stderr: a line rewritten in place on a terminal, a line every 5 s otherwise:
// "TOOL: done/total symbols, N candles WHAT, rate symbols/s, ETA s".
class Progress {
 public:
  Progress(std::string tool, std::string what, size_t total);
  void Update(size_t done, uint64_t candles);

 private:
  std::string tool_, what_;
  size_t total_;
  bool tty_;
  double start_;
  double last_ = 0;
};

// ms since the epoch as "YYYY-MM-DDTHH:MM:SSZ" (UTC; floor for negative times).
std::string IsoTime(int64_t ms);

// The fence epoch klined's persistence writes under now (kline_fence; 0 when klined never
// persisted here): the tools' MySQL writes go in under it, and are refused (the run stops;
// rerun) if a new lease holder raises it meanwhile. False on a MySQL error.
bool CurrentFence(MysqlConn* db, int64_t* epoch);

// Before a tool's MySQL writes through `table` (over db): klined's tables created if missing
// (a database its persistence never wrote to has no kline_fence; not in a dry run), then
// *epoch = CurrentFence. False with the reason printed.
bool PrepareWrites(KlineTable* table, MysqlConn* db, bool dry_run, int64_t* epoch);

}  // namespace klined::klinectl
