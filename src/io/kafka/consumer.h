// The trade consumer: Kafka consumer group -> decode -> shards; offsets after Redis.
//
// DESIGN
// One thread (the caller of Run) owns the librdkafka consumer and does all its calls
// strictly sequentially, rebalance callbacks included (librdkafka 2.0.2's batch consume is
// unsafe against a concurrent rebalance, seek or pause). It consumes in rounds: take a
// batch of messages, decode each (TradeDecoder), route each trade to ShardOf(symbol) in a
// ShardBatch, and end the round by submitting one batch to every shard tagged with the
// round number. A shard publishes flushed_seq() after a successful flush, so once every
// shard has flushed round r, every message consumed up to round r is in Redis and its
// offset is committed. Bad messages are counted by reason, logged (rate-limited) and
// copied to the dead-letter topic with a `klined-reject-reason` header.
// On partition revocation the consumer submits an evict barrier to every shard, waits for
// the flush, commits synchronously, and only then lets the rebalance proceed; a lost
// assignment (session timed out) discards unflushed state instead: its offsets were never
// committed, so the partitions' next owner replays it.
// Back-pressure: when a shard has no free batch the round waits; nothing is dropped.
#pragma once

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/counter.h"
#include "klined/trade_decoder.h"
#include "shard/trade_sink.h"

namespace klined {

struct ConsumerOptions {
  std::string brokers;
  std::string topic = "trades";
  std::string group = "klined";
  std::string dead_letter_topic;  // empty = none
  std::map<std::string, std::string> properties;
  size_t batch_size = 10000;  // messages per consume call
  TradeFieldMap fields;
  int64_t max_future_skew_ms = 60000;
};

struct ConsumerStats {
  OwnedCounter messages;
  OwnedCounter trades_decoded;
  std::array<OwnedCounter, kRejectReasonCount> rejected;
  OwnedCounter dlq_produced;
  OwnedCounter dlq_failed;
  OwnedCounter commits;
  OwnedCounter commit_failures;
  OwnedCounter rebalances;
  OwnedCounter backpressure_waits;
  OwnedCounter kafka_errors;
  OwnedCounter uncommitted_rounds;  // gauge: rounds whose offsets wait for the shards' flushes
};

// The next offset per partition reached at the end of each round not yet committed, oldest
// first. Bounded: past max_rounds the two oldest rounds are merged into one (the later round's
// number and offsets), so a long Redis outage under a stream of messages (which keeps rounds
// coming even when every message is rejected) costs memory per partition, not per round; the
// merged offsets are committed when the later round is, never earlier.
class UncommittedRounds {
 public:
  explicit UncommittedRounds(size_t max_rounds = 1024)
      : max_rounds_(std::max<size_t>(max_rounds, 2)) {}
  void Add(uint64_t seq, std::map<int32_t, int64_t> offsets);
  // Removes every round <= up_to_seq; returns their offsets merged (latest per partition).
  std::map<int32_t, int64_t> TakeUpTo(uint64_t up_to_seq);
  void Clear() { rounds_.clear(); }
  size_t size() const { return rounds_.size(); }

 private:
  size_t max_rounds_;
  std::deque<std::pair<uint64_t, std::map<int32_t, int64_t>>> rounds_;
};

class TradeConsumer {
 public:
  TradeConsumer(ConsumerOptions options, std::vector<TradeSink*> shards);
  ~TradeConsumer();
  TradeConsumer(const TradeConsumer&) = delete;
  TradeConsumer& operator=(const TradeConsumer&) = delete;

  // Creates the consumer (and DLQ producer) and subscribes. False with *error on failure.
  bool Start(std::string* error);
  // Consumes until `stop` is set, then drains: a final round barrier, waits (until
  // deadline_ms, monotonic) for every shard to flush it, commits, closes the consumer.
  void Run(const std::atomic<bool>& stop, const std::atomic<int64_t>& deadline_ms);

  const ConsumerStats& stats() const { return stats_; }
  // Any thread (SIGHUP): the consumer thread picks the new topic up before its next round.
  void SetDeadLetterTopic(std::string topic);
  // Any thread (SIGHUP): applied to the decoder before the next round.
  void SetMaxFutureSkewMs(int64_t ms) { skew_ms_.store(ms, std::memory_order_relaxed); }
  // Any thread (metrics): (partition, messages behind the partition's high watermark) for
  // the assigned partitions, sampled about once a second by the consumer thread.
  std::vector<std::pair<int32_t, int64_t>> Lag() const;

 private:
  static void RebalanceCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t* parts, void* opaque);
  void OnRevoke(bool lost);
  bool AcquireRoundBatches(const std::atomic<bool>& stop);
  void Route(const Trade& t);
  void HandleMessage(const rd_kafka_message_t* m);
  void EndRound();
  bool WaitFlushed(uint64_t seq, const std::atomic<bool>* stop, int64_t deadline_ms);
  void Commit(uint64_t up_to_seq, bool sync);
  void DeadLetter(const rd_kafka_message_t* m, RejectReason reason);
  // Copies what the shards refused after decoding to the dead-letter topic.
  void DeadLetterRefused();
  void ProduceDeadLetter(std::string_view value, std::string_view key, RejectReason reason);
  void SampleLag();

  ConsumerOptions options_;
  std::vector<TradeSink*> shards_;
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_queue_t* queue_ = nullptr;
  rd_kafka_t* dlq_ = nullptr;
  TradeDecoder decoder_;
  std::vector<Trade> decoded_;
  std::vector<klined::DeadLetter> dead_letters_;  // scratch for DeadLetterRefused
  std::vector<ShardBatch*> open_;                 // this round's batch per shard
  int64_t round_wall_ms_ = 0;                     // wall clock at the start of the current round
  uint64_t round_ = 0;
  UncommittedRounds pending_;
  // This round's next offset per partition: noted for every message, so a flat array indexed
  // by partition (a std::map lookup per message was measurable), taken as a map per round.
  class RoundOffsets {
   public:
    void Note(int32_t partition, int64_t next) {
      const auto p = static_cast<size_t>(partition);
      if (p >= next_.size()) next_.resize(p + 1, -1);
      if (next_[p] < 0) touched_.push_back(partition);
      next_[p] = next;
    }
    bool empty() const { return touched_.empty(); }
    std::map<int32_t, int64_t> Take() {
      std::map<int32_t, int64_t> out;
      for (const int32_t p : touched_) out[p] = next_[static_cast<size_t>(p)];
      Clear();
      return out;
    }
    void Clear() {
      for (const int32_t p : touched_) next_[static_cast<size_t>(p)] = -1;
      touched_.clear();
    }

   private:
    std::vector<int64_t> next_;  // -1: not seen this round
    std::vector<int32_t> touched_;
  };
  RoundOffsets round_offsets_;
  const std::atomic<bool>* stop_ = nullptr;
  ConsumerStats stats_;
  // Written once a second or on SIGHUP, not per message: a mutex is fine here.
  mutable std::mutex side_mu_;
  std::vector<std::pair<int32_t, int64_t>> lag_;
  std::string pending_dlq_;
  std::atomic<bool> dlq_changed_{false};
  std::atomic<int64_t> skew_ms_{-1};  // -1: unchanged since start
  int64_t next_lag_sample_ms_ = 0;
};

}  // namespace klined
