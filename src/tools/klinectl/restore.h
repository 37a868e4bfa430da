// klinectl restore-redis: rebuilds Redis history from MySQL after Redis lost it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/mysql/mysql_conn.h"
#include "io/redis/key_layout.h"
#include "io/redis/redis_conn.h"
#include "klined/interval.h"

namespace klined::klinectl {

struct RestoreOptions {
  RedisOptions redis;
  MysqlOptions mysql;
  KeyLayout keys{"kline", "ticker"};
  std::vector<Interval> intervals;
  UtcOffset tz;
  int64_t limit = 1000;              // newest candles per (symbol, interval): redis.history_limit
  std::vector<std::string> symbols;  // empty: every symbol in the kline table
  bool dry_run = false;
};

// Exit status: 0 done (or, dry run, nothing to do or what would be done printed), 2 a
// connection or query error (what was restored so far stays; a rerun resumes).
int RestoreRedis(const RestoreOptions& options);

}  // namespace klined::klinectl
