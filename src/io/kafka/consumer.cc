#include "io/kafka/consumer.h"
#include "base/clock.h"

#include <chrono>
#include <thread>

#include "base/log.h"
#include "io/kafka/kafka_conf.h"
#include "shard/router.h"

namespace klined {
namespace {

constexpr size_t kMaxTradesPerBatch = 4096;
// Bounds how long a round waits for messages: part of the trade-to-Redis latency.
constexpr int kConsumeTimeoutMs = 10;

}  // namespace

void UncommittedRounds::Add(uint64_t seq, std::map<int32_t, int64_t> offsets) {
  rounds_.emplace_back(seq, std::move(offsets));
  if (rounds_.size() <= max_rounds_) return;
  // Fold the oldest round into the next one: its partitions not in the next keep their offset.
  auto& next = rounds_[1].second;
  for (const auto& [p, o] : rounds_.front().second) next.emplace(p, o);  // no overwrite
  rounds_.pop_front();
}

std::map<int32_t, int64_t> UncommittedRounds::TakeUpTo(uint64_t up_to_seq) {
  std::map<int32_t, int64_t> offsets;
  while (!rounds_.empty() && rounds_.front().first <= up_to_seq) {
    for (const auto& [p, o] : rounds_.front().second) offsets[p] = o;
    rounds_.pop_front();
  }
  return offsets;
}

TradeConsumer::TradeConsumer(ConsumerOptions options, std::vector<TradeSink*> shards)
    : options_(std::move(options)),
      shards_(std::move(shards)),
      decoder_(options_.fields, options_.max_future_skew_ms),
      open_(shards_.size(), nullptr) {}

TradeConsumer::~TradeConsumer() {
  if (queue_ != nullptr) rd_kafka_queue_destroy(queue_);
  if (rk_ != nullptr) rd_kafka_destroy(rk_);
  if (dlq_ != nullptr) {
    rd_kafka_flush(dlq_, 5000);
    rd_kafka_destroy(dlq_);
  }
}

bool TradeConsumer::Start(std::string* error) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const std::map<std::string, std::string> fixed = {
      {"bootstrap.servers", options_.brokers},
      {"group.id", options_.group},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      // Size the fetch queue for well over a second of data: 2.0.2 backs off a full second
      // when the queue threshold is hit.
      {"queued.min.messages", "1000000"},
      {"queued.max.messages.kbytes", "262144"},
      {"fetch.wait.max.ms", "10"},
  };
  for (const auto& [k, v] : fixed) {
    if (!SetProperty(conf, k, v, error)) return rd_kafka_conf_destroy(conf), false;
  }
  for (const auto& [k, v] : options_.properties) {
    if (!SetProperty(conf, k, v, error)) return rd_kafka_conf_destroy(conf), false;
  }
  rd_kafka_conf_set_rebalance_cb(conf, &TradeConsumer::RebalanceCallback);
  rd_kafka_conf_set_opaque(conf, this);
  char err[512];
  rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk_ == nullptr) {
    *error = std::string("kafka consumer: ") + err;
    return false;
  }
  rd_kafka_poll_set_consumer(rk_);
  queue_ = rd_kafka_queue_get_consumer(rk_);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, options_.topic.c_str(), RD_KAFKA_PARTITION_UA);
  const rd_kafka_resp_err_t e = rd_kafka_subscribe(rk_, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    *error = std::string("kafka subscribe: ") + rd_kafka_err2str(e);
    return false;
  }

  rd_kafka_conf_t* pconf = NewDeadLetterConf(options_.brokers, options_.properties, error);
  if (pconf == nullptr) return false;
  dlq_ = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
  if (dlq_ == nullptr) {
    *error = std::string("kafka dead-letter producer: ") + err;
    return false;
  }
  return true;
}

void TradeConsumer::SetDeadLetterTopic(std::string topic) {
  std::lock_guard lock(side_mu_);
  pending_dlq_ = std::move(topic);
  dlq_changed_.store(true, std::memory_order_release);
}

std::vector<std::pair<int32_t, int64_t>> TradeConsumer::Lag() const {
  std::lock_guard lock(side_mu_);
  return lag_;
}

void TradeConsumer::SampleLag() {
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (rd_kafka_assignment(rk_, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || parts == nullptr) return;
  rd_kafka_position(rk_, parts);
  std::vector<std::pair<int32_t, int64_t>> lag;
  for (int i = 0; i < parts->cnt; ++i) {
    const rd_kafka_topic_partition_t& p = parts->elems[i];
    int64_t lo = 0, hi = 0;
    if (rd_kafka_get_watermark_offsets(rk_, p.topic, p.partition, &lo, &hi) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0) {
      continue;
    }
    const int64_t pos = p.offset >= 0 ? p.offset : lo;
    lag.emplace_back(p.partition, std::max<int64_t>(0, hi - pos));
  }
  rd_kafka_topic_partition_list_destroy(parts);
  std::lock_guard lock(side_mu_);
  lag_ = std::move(lag);
}

void TradeConsumer::RebalanceCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                      rd_kafka_topic_partition_list_t* parts, void* opaque) {
  auto* self = static_cast<TradeConsumer*>(opaque);
  self->stats_.rebalances.Add();
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    LOG(kInfo, "kafka.assigned", "partitions=" << parts->cnt);
    rd_kafka_assign(rk, parts);
    return;
  }
  const bool lost = rd_kafka_assignment_lost(rk) != 0;
  LOG(kInfo, "kafka.revoked", "partitions=" << parts->cnt << " lost=" << lost);
  self->OnRevoke(lost);
  rd_kafka_assign(rk, nullptr);
}

void TradeConsumer::OnRevoke(bool lost) {
  // Called between rounds (from inside the consume call): every routed trade is submitted.
  const uint64_t seq = ++round_;
  for (TradeSink* s : shards_) {
    ShardBatch* b = nullptr;
    while ((b = s->AcquireBatch()) == nullptr)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    b->seq = seq;
    b->evict = true;
    b->discard = lost;
    s->Submit(b);
  }
  if (lost) {
    // Offsets of unflushed rounds can no longer be committed by us; the next owner replays.
    WaitFlushed(seq, nullptr, MonotonicMs() + 60000);
    pending_.Clear();
    round_offsets_.Clear();
    return;
  }
  // Keep the partitions until everything read from them is in Redis, then commit. If
  // klined is told to stop meanwhile, it exits without committing: nothing is lost.
  if (WaitFlushed(seq, stop_, INT64_MAX)) {
    pending_.Add(seq, round_offsets_.Take());
    Commit(seq, /*sync=*/true);
  }
  pending_.Clear();
  round_offsets_.Clear();
}

bool TradeConsumer::WaitFlushed(uint64_t seq, const std::atomic<bool>* stop, int64_t deadline_ms) {
  while (true) {
    bool all = true;
    for (const TradeSink* s : shards_) all &= s->flushed_seq() >= seq;
    if (all) return true;
    if ((stop != nullptr && stop->load()) || MonotonicMs() >= deadline_ms) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

bool TradeConsumer::AcquireRoundBatches(const std::atomic<bool>& stop) {
  for (size_t i = 0; i < shards_.size(); ++i) {
    while (open_[i] == nullptr) {
      open_[i] = shards_[i]->AcquireBatch();
      if (open_[i] != nullptr) break;
      stats_.backpressure_waits.Add();
      if (stop.load()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return true;
}

void TradeConsumer::Route(const Trade& t) {
  const size_t i = ShardOf(t.symbol.view(), shards_.size());
  ShardBatch* b = open_[i];
  b->trades.push_back(t);
  if (b->trades.size() < kMaxTradesPerBatch) return;
  // Full mid-round: hand it over tagged with the previous round, which it does not finish.
  b->seq = round_;
  shards_[i]->Submit(b);
  open_[i] = nullptr;
  while ((open_[i] = shards_[i]->AcquireBatch()) == nullptr) {
    stats_.backpressure_waits.Add();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void TradeConsumer::HandleMessage(const rd_kafka_message_t* m) {
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
    stats_.kafka_errors.Add();
    LOG_RATE(kWarn, "kafka.error", "error=\"" << rd_kafka_message_errstr(m) << "\"");
    return;
  }
  stats_.messages.Add();
  const std::string_view value(static_cast<const char*>(m->payload), m->len);
  decoded_.clear();
  const DecodeResult r = decoder_.Decode(value, round_wall_ms_, &decoded_);
  stats_.trades_decoded.Add(r.accepted);
  if (r.rejected > 0) {
    for (int k = 0; k < kRejectReasonCount; ++k) stats_.rejected[k].Add(r.by_reason[k]);
    LOG_RATE(kWarn, "trade.rejected",
             "reason=" << RejectReasonName(r.first_reason) << " rejected=" << r.rejected
                       << " accepted=" << r.accepted << " partition=" << m->partition
                       << " offset=" << m->offset);
    DeadLetter(m, r.first_reason);
  }
  for (Trade& t : decoded_) {
    t.source = m->partition;  // watermarks are per partition (see SymbolSeries)
    Route(t);
  }
  round_offsets_.Note(m->partition, m->offset + 1);
}

void TradeConsumer::ProduceDeadLetter(std::string_view value, std::string_view key,
                                      RejectReason reason) {
  const std::string_view name = RejectReasonName(reason);
  const rd_kafka_resp_err_t e = rd_kafka_producev(
      dlq_, RD_KAFKA_V_TOPIC(options_.dead_letter_topic.c_str()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
      RD_KAFKA_V_KEY(key.data(), key.size()),
      RD_KAFKA_V_HEADER("klined-reject-reason", name.data(), static_cast<ssize_t>(name.size())),
      RD_KAFKA_V_END);
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
    stats_.dlq_produced.Add();
  } else {
    stats_.dlq_failed.Add();
    LOG_RATE(kError, "kafka.dlq_failed", "error=\"" << rd_kafka_err2str(e) << "\"");
  }
}

void TradeConsumer::DeadLetter(const rd_kafka_message_t* m, RejectReason reason) {
  if (options_.dead_letter_topic.empty()) return;
  ProduceDeadLetter(std::string_view(static_cast<const char*>(m->payload), m->len),
                    std::string_view(static_cast<const char*>(m->key), m->key_len), reason);
}

void TradeConsumer::DeadLetterRefused() {
  dead_letters_.clear();
  for (TradeSink* s : shards_) s->TakeDeadLetters(&dead_letters_);
  if (options_.dead_letter_topic.empty()) return;
  for (const klined::DeadLetter& d : dead_letters_) {
    ProduceDeadLetter(TradeJson(d.trade), d.trade.symbol.view(), d.reason);
  }
}

void TradeConsumer::EndRound() {
  const uint64_t seq = ++round_;
  for (size_t i = 0; i < shards_.size(); ++i) {
    open_[i]->seq = seq;
    shards_[i]->Submit(open_[i]);
    open_[i] = nullptr;
  }
  if (!round_offsets_.empty()) {
    pending_.Add(seq, round_offsets_.Take());
  }
}

void TradeConsumer::Commit(uint64_t up_to_seq, bool sync) {
  const std::map<int32_t, int64_t> offsets = pending_.TakeUpTo(up_to_seq);
  stats_.uncommitted_rounds.Set(pending_.size());
  if (offsets.empty()) return;
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size()));
  for (const auto& [p, o] : offsets) {
    rd_kafka_topic_partition_list_add(list, options_.topic.c_str(), p)->offset = o;
  }
  const rd_kafka_resp_err_t e = rd_kafka_commit(rk_, list, sync ? 0 : 1);
  rd_kafka_topic_partition_list_destroy(list);
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
    stats_.commits.Add();
  } else {
    // A later commit carries these offsets too (offsets only grow), so nothing is lost.
    stats_.commit_failures.Add();
    LOG_RATE(kWarn, "kafka.commit_failed", "error=\"" << rd_kafka_err2str(e) << "\"");
  }
}

void TradeConsumer::Run(const std::atomic<bool>& stop, const std::atomic<int64_t>& deadline_ms) {
  stop_ = &stop;
  std::vector<rd_kafka_message_t*> msgs(options_.batch_size);
  while (!stop.load()) {
    uint64_t flushed = UINT64_MAX;
    for (const TradeSink* s : shards_) flushed = std::min(flushed, s->flushed_seq());
    // Shards queue what they refuse before they publish the flush that covers it.
    DeadLetterRefused();
    Commit(flushed, /*sync=*/false);
    if (dlq_ != nullptr) rd_kafka_poll(dlq_, 0);
    if (dlq_changed_.exchange(false, std::memory_order_acq_rel)) {
      std::lock_guard lock(side_mu_);
      options_.dead_letter_topic = pending_dlq_;
      LOG(kInfo, "kafka.dead_letter_topic", "topic=\"" << options_.dead_letter_topic << "\"");
    }
    if (const int64_t skew = skew_ms_.exchange(-1, std::memory_order_relaxed); skew >= 0) {
      decoder_.set_max_future_skew_ms(skew);
    }
    if (const int64_t now = MonotonicMs(); now >= next_lag_sample_ms_) {
      SampleLag();
      next_lag_sample_ms_ = now + 1000;
    }
    if (!AcquireRoundBatches(stop)) break;
    const ssize_t n =
        rd_kafka_consume_batch_queue(queue_, kConsumeTimeoutMs, msgs.data(), msgs.size());
    if (n < 0) {
      stats_.kafka_errors.Add();
      LOG_RATE(kWarn, "kafka.consume_failed",
               "error=\"" << rd_kafka_err2str(rd_kafka_last_error()) << "\"");
      continue;
    }
    // The rebalance callback may have run inside the call and submitted barriers; open_
    // batches are still ours and untouched. One clock read per round: the future-skew
    // check is in seconds, a round in milliseconds.
    round_wall_ms_ = WallMs();
    for (ssize_t i = 0; i < n; ++i) {
      HandleMessage(msgs[i]);
      rd_kafka_message_destroy(msgs[i]);
    }
    EndRound();
  }
  // Drain: finish the round, wait for every shard to flush it, commit, leave the group.
  bool all_open = true;
  for (size_t i = 0; i < shards_.size(); ++i) {
    while (open_[i] == nullptr && MonotonicMs() < deadline_ms.load()) {
      open_[i] = shards_[i]->AcquireBatch();
      if (open_[i] == nullptr) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    all_open &= open_[i] != nullptr;
  }
  if (all_open) {
    EndRound();
    // The control thread sets the deadline after it noticed the stop, which may be after this
    // thread did: re-read it while waiting (a deadline read once could still be INT64_MAX).
    bool flushed = false;
    for (;;) {
      const int64_t deadline = deadline_ms.load();
      flushed = WaitFlushed(round_, nullptr, std::min(deadline, MonotonicMs() + kConsumeTimeoutMs));
      if (flushed || MonotonicMs() >= deadline_ms.load()) break;
    }
    if (flushed) {
      DeadLetterRefused();
      Commit(round_, /*sync=*/true);
      LOG(kInfo, "drain.committed", "round=" << round_);
    } else {
      LOG(kWarn, "drain.incomplete",
          "detail=\"shards did not flush before the deadline; "
          "uncommitted trades will be replayed\"");
    }
  }
  static const std::atomic<bool> kNoStop{true};
  stop_ = &kNoStop;  // a revoke during close must not wait for flushes
  rd_kafka_consumer_close(rk_);
  if (dlq_ != nullptr) rd_kafka_flush(dlq_, 5000);
}

}  // namespace klined
