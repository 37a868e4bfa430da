// klinectl recompute: a range of candles recomputed from the trades still in Kafka.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "klined/trade_decoder.h"
#include "tools/klinectl/history.h"

namespace klined::klinectl {

struct RecomputeOptions {
  RestoreOptions base;  // connections, keys, intervals, tz, symbols (empty: all), dry run
  std::string brokers;  // kafka.brokers
  std::string topic;    // kafka.topic
  std::map<std::string, std::string> kafka_properties;  // kafka.properties (connection ones)
  TradeFieldMap fields;                                 // the trade message's field names
  int64_t from_ms = 0;  // the candles of every configured interval whose bucket meets
  int64_t to_ms = 0;    // [from_ms, to_ms]
  // How far a Kafka message's timestamp may trail its trade's time (producer clocks): reading
  // starts at the first message stamped at or after the range's first bucket minus this.
  int64_t skew_ms = 60000;
  // How long a symbol with late trades or unpersisted candles in the range is waited for.
  int64_t settle_ms = 30000;
};

// Exit status: 0 done; 2 a connection, query or Kafka error; 3 done except for candles that
// klined changed meanwhile, or that stayed busy (listed; a rerun finishes them); 4 refused:
// Kafka no longer retains the start of the range.
int Recompute(const RecomputeOptions& options);

}  // namespace klined::klinectl
