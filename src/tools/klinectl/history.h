// klinectl's history tools: restore-redis (Redis history from MySQL) and derive (a new
// interval's closed candles from a finer stored one).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/mysql/mysql_conn.h"
#include "io/redis/cluster/router.h"
#include "io/redis/key_layout.h"
#include "klined/interval.h"

namespace klined::klinectl {

struct RestoreOptions {
  cluster::TopologyOptions redis;  // one Redis, or a cluster's seeds
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

struct DeriveOptions {
  RestoreOptions base;  // connections, keys, tz, Redis history limit, symbols, dry run
  Interval target = Interval::k2h;
  // The stored interval merged: the coarsest configured one finer than target that nests in
  // it (base.intervals), unless given.
  std::optional<Interval> source;
  int64_t from_ms = INT64_MIN;  // target buckets opening in [from_ms, to_ms]
  int64_t to_ms = INT64_MAX;
};

// Exit status as RestoreRedis; 2 also when no configured interval nests in the target.
int Derive(const DeriveOptions& options);

}  // namespace klined::klinectl
