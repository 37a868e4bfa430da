// What the Kafka consumer needs of a shard, and nothing more: batches to fill, a way to hand
// them over, and how far the shard has written. Implemented by Shard (shard.h); the consumer
// (io/kafka) sees only this, so the adapter does not depend on the shard's insides.
#pragma once

#include <cstdint>
#include <vector>

#include "klined/trade.h"
#include "klined/trade_decoder.h"

namespace klined {

// A round's trades for one shard, from the consumer thread to the shard thread. Pooled by the
// shard: the consumer only fills and submits what AcquireBatch handed out.
struct ShardBatch {
  std::vector<Trade> trades;
  uint64_t seq = 0;      // consumer routing sequence
  bool evict = false;    // rebalance barrier: flush, then drop all symbols
  bool discard = false;  // with evict: assignment lost, drop unflushed state without writing
  size_t next = 0;       // shard thread: the first trade not yet applied (a batch may wait)
};

// A trade the shard refused after decoding (reordered in its source, or its symbol's stored
// state unreadable): the consumer copies it to the dead-letter topic with the reason.
struct DeadLetter {
  Trade trade;
  RejectReason reason = RejectReason::kStoreCorrupt;
};

class TradeSink {
 public:
  virtual ~TradeSink() = default;
  // Consumer thread only. Null when every batch is in use (back-pressure: wait and retry).
  virtual ShardBatch* AcquireBatch() = 0;
  // Consumer thread only: hands a batch from AcquireBatch over, in routing order.
  virtual void Submit(ShardBatch* batch) = 0;
  // Any thread. Every trade of every batch with seq <= flushed_seq() is in Redis, or was
  // handed out by TakeDeadLetters.
  virtual uint64_t flushed_seq() const = 0;
  // Consumer thread: moves the dead letters queued so far into *out (appends).
  virtual void TakeDeadLetters(std::vector<DeadLetter>* out) = 0;
};

}  // namespace klined
