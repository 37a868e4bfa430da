#include "app/metrics.h"

#include <limits>

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <chrono>

#include "app/allocator.h"
#include "io/kafka/consumer.h"
#include "shard/shard.h"

namespace klined {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void AddSample(MetricFamily* f, double v, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f->type == MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  f->metric.push_back(std::move(m));
}

}  // namespace

const char* DependencyName(Dependency d) {
  switch (d) {
    case Dependency::kRedis:
      return "redis";
    case Dependency::kMysql:
      return "mysql";
    case Dependency::kKafka:
      return "kafka";
  }
  return "unknown";
}

class Metrics::Collector : public prometheus::Collectable {
 public:
  Collector(std::vector<const Shard*> shards, const TradeConsumer* consumer, const Metrics* owner)
      : shards_(std::move(shards)), consumer_(consumer), owner_(owner) {}

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    const ConsumerStats& c = consumer_->stats();
    auto counter = [&out](std::string name, std::string help, double v) {
      out.push_back(Family(std::move(name), std::move(help), MetricType::Counter));
      AddSample(&out.back(), v);
    };
    counter("klined_kafka_messages_total", "Kafka messages consumed", double(c.messages.Get()));
    counter("klined_trades_consumed_total", "Trades decoded from Kafka",
            double(c.trades_decoded.Get()));
    MetricFamily rej = Family("klined_trades_rejected_total",
                              "Trades rejected, by reason (an undecodable message counts as one)",
                              MetricType::Counter);
    for (int k = 0; k < kRejectReasonCount; ++k) {
      double v = double(c.rejected[k].Get());
      // Reasons decided after decoding are counted by the shards.
      for (const Shard* s : shards_) {
        const ShardStats& st = s->stats();
        if (k == static_cast<int>(RejectReason::kOutOfRange))
          v += double(st.trades_out_of_range.Get());
        if (k == static_cast<int>(RejectReason::kOutOfOrder))
          v += double(st.trades_reordered.Get());
        if (k == static_cast<int>(RejectReason::kStoreCorrupt)) {
          v += double(st.trades_store_corrupt.Get());
        }
      }
      AddSample(&rej, v, {{"reason", std::string(RejectReasonName(static_cast<RejectReason>(k)))}});
    }
    out.push_back(std::move(rej));
    double out_of_order = 0;
    for (const Shard* s : shards_) out_of_order += double(s->stats().trades_out_of_order.Get());
    counter("klined_trades_out_of_order_total",
            "Trades that broke the one-partition-in-id-order rule (from a second partition, or "
            "below the symbol's watermark and never applied)",
            out_of_order);
    MetricFamily corrupt = Family("klined_store_corrupt_values_total",
                                  "Stored values found unreadable, by kind", MetricType::Counter);
    MetricFamily repaired =
        Family("klined_store_repairs_total",
               "Unreadable stored values rebuilt exactly from the rest", MetricType::Counter);
    for (int k = 0; k < kCorruptKindCount; ++k) {
      double nc = 0, nr = 0;
      for (const Shard* s : shards_) {
        nc += double(s->store_stats().corrupt[static_cast<size_t>(k)].Get());
        nr += double(s->store_stats().repaired[static_cast<size_t>(k)].Get());
      }
      const std::string kind = CorruptKindName(static_cast<CorruptKind>(k));
      AddSample(&corrupt, nc, {{"kind", kind}});
      AddSample(&repaired, nr, {{"kind", kind}});
    }
    out.push_back(std::move(corrupt));
    out.push_back(std::move(repaired));
    counter("klined_dead_letter_produced_total", "Messages copied to the dead-letter topic",
            double(c.dlq_produced.Get()));
    counter("klined_dead_letter_failures_total", "Dead-letter produce failures",
            double(c.dlq_failed.Get()));
    counter("klined_kafka_commits_total", "Offset commits", double(c.commits.Get()));
    counter("klined_kafka_commit_failures_total", "Offset commit failures",
            double(c.commit_failures.Get()));
    counter("klined_kafka_rebalances_total", "Rebalance events", double(c.rebalances.Get()));
    counter("klined_kafka_errors_total", "Kafka consume errors", double(c.kafka_errors.Get()));
    counter("klined_backpressure_waits_total", "Consumer waits for a free shard batch",
            double(c.backpressure_waits.Get()));
    out.push_back(Family("klined_consumer_uncommitted_rounds",
                         "Consumer rounds whose offsets wait for the shards' flushes (bounded: "
                         "older rounds are merged)",
                         MetricType::Gauge));
    AddSample(&out.back(), double(c.uncommitted_rounds.Get()));

    struct PerShard {
      const char* name;
      const char* help;
      MetricType type;
      const OwnedCounter ShardStats::*field;
    };
    static const PerShard kPerShard[] = {
        {"klined_trades_applied_total", "Trades applied to candles", MetricType::Counter,
         &ShardStats::trades_applied},
        {"klined_trades_duplicate_total", "Trades dropped as duplicates (id <= watermark)",
         MetricType::Counter, &ShardStats::trades_duplicate},
        {"klined_late_trades_queued_total", "Late trade x interval pairs resolved against storage",
         MetricType::Counter, &ShardStats::late_queued},
        {"klined_late_trades_applied_total", "Late trade x interval pairs written to Redis history",
         MetricType::Counter, &ShardStats::late_applied},
        {"klined_late_trades_not_in_redis_total", "Late trades whose bucket was trimmed from Redis",
         MetricType::Counter, &ShardStats::late_not_in_redis},
        {"klined_late_trade_conflicts_total", "Late-trade compare-and-set conflicts (retried)",
         MetricType::Counter, &ShardStats::late_conflicts},
        {"klined_flush_fast_total",
         "Symbols written by FLUSH_FAST (storage still held their previous write as sent)",
         MetricType::Counter, &ShardStats::flush_fast},
        {"klined_flush_fast_missed_total",
         "FLUSH_FAST calls that found the write stamp void (another writer since): sent as FLUSH",
         MetricType::Counter, &ShardStats::flush_fast_missed},
        {"klined_flushes_total", "Successful shard flushes", MetricType::Counter,
         &ShardStats::flushes},
        {"klined_flush_failures_total", "Failed shard flushes (retried)", MetricType::Counter,
         &ShardStats::flush_failures},
        {"klined_redis_data_loss_total",
         "Symbols whose state vanished from Redis while a shard held it (FLUSHALL, a restart "
         "without persistence, a failover to an empty node); memory was written back",
         MetricType::Counter, &ShardStats::redis_data_loss},
        {"klined_redis_replica_wait_timeouts_total",
         "Flushes written to the primary that fewer than redis.wait_replicas replicas "
         "acknowledged in time (offsets held; retried)",
         MetricType::Counter, &ShardStats::replica_wait_timeouts},
        {"klined_flushed_symbols_total", "Symbol writes (one Lua call each)", MetricType::Counter,
         &ShardStats::flushed_symbols},
        {"klined_writes_refused_total",
         "Symbol writes refused because storage moved since the shard matched it (a second "
         "writer, or a retried write whose lost reply had landed)",
         MetricType::Counter, &ShardStats::writes_refused},
        {"klined_symbol_reloads_total", "Symbols reloaded after a refused write",
         MetricType::Counter, &ShardStats::reloads},
        {"klined_trades_reapplied_total", "Held trades re-applied to a reloaded symbol",
         MetricType::Counter, &ShardStats::trades_reapplied},
        {"klined_symbol_quarantines_total",
         "Symbols quarantined because their stored state is unreadable", MetricType::Counter,
         &ShardStats::quarantines},
        {"klined_symbols_quarantined", "Symbols in quarantine now (trades dead-lettered)",
         MetricType::Gauge, &ShardStats::quarantined},
        {"klined_symbol_refreshes_total",
         "Symbols re-read from Redis before a trade far past their current bucket (after idle "
         "time the rollover had filled)",
         MetricType::Counter, &ShardStats::refreshes},
        {"klined_symbols_released_total",
         "Idle symbols released from memory (limits.idle_release_ms)", MetricType::Counter,
         &ShardStats::released},
        {"klined_held_trades", "Trades applied in memory, not yet confirmed in Redis",
         MetricType::Gauge, &ShardStats::held_trades},
        {"klined_dead_letters_dropped_total",
         "Trades refused by a shard that found its dead-letter queue full", MetricType::Counter,
         &ShardStats::dead_letters_dropped},
        {"klined_symbol_loads_total", "Symbols loaded from Redis on first sight",
         MetricType::Counter, &ShardStats::loads},
        {"klined_symbols", "Symbols held in memory", MetricType::Gauge, &ShardStats::symbols},
        {"klined_dirty_symbols", "Dirty symbols at the last flush", MetricType::Gauge,
         &ShardStats::dirty_symbols},
        {"klined_shard_queue_depth", "Batches waiting for the shard", MetricType::Gauge,
         &ShardStats::queue_depth},
        {"klined_last_flush_seconds", "Duration of the last flush", MetricType::Gauge,
         &ShardStats::last_flush_us},
        {"klined_shard_loop_iterations_total",
         "Shard event-loop iterations (stalls when flat; the watchdog checks it)",
         MetricType::Counter, &ShardStats::loop_heartbeat},
    };
    for (const PerShard& p : kPerShard) {
      MetricFamily f = Family(p.name, p.help, p.type);
      for (const Shard* s : shards_) {
        double v = double((s->stats().*p.field).Get());
        if (p.field == &ShardStats::last_flush_us) v /= 1e6;
        AddSample(&f, v, {{"shard", std::to_string(s->index())}});
      }
      out.push_back(std::move(f));
    }
    // Histograms summed at scrape time from each shard's single-writer buckets.
    auto histogram = [&](const char* name, const char* help,
                         const OwnedLatencyHistogram ShardStats::*field) {
      MetricFamily f = Family(name, help, MetricType::Histogram);
      for (const Shard* s : shards_) {
        const OwnedLatencyHistogram& h = s->stats().*field;
        ClientMetric m;
        m.label = {{"shard", std::to_string(s->index())}};
        uint64_t cumulative = 0;
        for (size_t i = 0; i < OwnedLatencyHistogram::kBoundsMs.size(); ++i) {
          cumulative += h.Bucket(i);
          ClientMetric::Bucket b;
          b.upper_bound = double(OwnedLatencyHistogram::kBoundsMs[i]) / 1000;
          b.cumulative_count = cumulative;
          m.histogram.bucket.push_back(b);
        }
        cumulative += h.Bucket(OwnedLatencyHistogram::kBoundsMs.size());
        ClientMetric::Bucket inf;
        inf.upper_bound = std::numeric_limits<double>::infinity();
        inf.cumulative_count = cumulative;
        m.histogram.bucket.push_back(inf);
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum = h.SumSeconds();
        f.metric.push_back(std::move(m));
      }
      out.push_back(std::move(f));
    };
    histogram("klined_flush_duration_seconds",
              "Flush latency: snapshot taken to every FLUSH call answered",
              &ShardStats::flush_latency);
    histogram("klined_shard_loop_busy_seconds",
              "Work done by one shard event-loop iteration (a stall shows as a long one)",
              &ShardStats::loop_busy);
    MetricFamily redis_errors = Family(
        "klined_redis_errors_total",
        "Failed Redis calls (connection dropped, timeout, error reply)", MetricType::Counter);
    MetricFamily redis_reconnects =
        Family("klined_redis_reconnects_total", "Redis reconnections", MetricType::Counter);
    for (const Shard* s : shards_) {
      AddSample(&redis_errors, double(s->redis_errors()), {{"shard", std::to_string(s->index())}});
      AddSample(&redis_reconnects, double(s->redis_reconnects()),
                {{"shard", std::to_string(s->index())}});
    }
    out.push_back(std::move(redis_errors));
    out.push_back(std::move(redis_reconnects));
    MetricFamily lag =
        Family("klined_consumer_lag_messages",
               "Messages behind the high watermark, per assigned partition", MetricType::Gauge);
    for (const auto& [partition, behind] : consumer_->Lag()) {
      AddSample(&lag, double(behind), {{"partition", std::to_string(partition)}});
    }
    out.push_back(std::move(lag));
    auto gauge = [&out](std::string name, std::string help, double v) {
      out.push_back(Family(std::move(name), std::move(help), MetricType::Gauge));
      AddSample(&out.back(), v);
    };
    const auto relaxed = std::memory_order_relaxed;
    gauge("klined_shards", "Shard threads", double(shards_.size()));
    counter("klined_config_reloads_total", "Successful config reloads (SIGHUP)",
            double(owner_->reloads_.load(relaxed)));
    counter("klined_config_reload_failures_total",
            "Rejected config reloads (invalid file; the running config was kept)",
            double(owner_->reload_failures_.load(relaxed)));
    gauge("klined_config_last_reload_successful", "1 if the last reload succeeded (or none yet)",
          owner_->last_reload_ok_.load(relaxed) ? 1 : 0);
    gauge("klined_config_last_reload_success_timestamp_seconds",
          "Unix time of the last successful config load (startup or reload)",
          double(owner_->last_reload_success_s_.load(relaxed)));
    gauge("klined_ready",
          "1 once Kafka, Redis and MySQL answered and consumption started; 0 while starting "
          "or draining",
          owner_->ready_.load(relaxed) ? 1 : 0);
    counter("klined_watchdog_pings_total", "systemd watchdog pings sent (WATCHDOG=1)",
            double(owner_->watchdog_pings_.load(relaxed)));
    counter("klined_watchdog_withheld_total",
            "Watchdog pings withheld because a shard loop had not advanced",
            double(owner_->watchdog_withheld_.load(relaxed)));
    MetricFamily probes = Family("klined_startup_probe_failures_total",
                                 "Failed dependency probes while waiting to start, by dependency",
                                 MetricType::Counter);
    for (int d = 0; d < kDependencyCount; ++d) {
      AddSample(&probes, double(owner_->probe_failures_[d].load(relaxed)),
                {{"dependency", DependencyName(static_cast<Dependency>(d))}});
    }
    out.push_back(std::move(probes));
    gauge("klined_start_time_seconds", "Unix time the process started",
          double(owner_->start_time_s_));
    MetricFamily info = Family("klined_build_info", "Build information", MetricType::Gauge);
    AddSample(&info, 1, {{"version", KLINED_VERSION}, {"allocator", AllocatorName()}});
    out.push_back(std::move(info));
    return out;
  }

 private:
  std::vector<const Shard*> shards_;
  const TradeConsumer* consumer_;
  const Metrics* owner_;
};

Metrics::Metrics(std::vector<const Shard*> shards, const TradeConsumer* consumer)
    : collector_(std::make_shared<Collector>(std::move(shards), consumer, this)),
      start_time_s_(std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count()) {
  last_reload_success_s_.store(start_time_s_, std::memory_order_relaxed);
}

// The HTTP threads stop first: a scrape must not read members being destroyed.
Metrics::~Metrics() { exposer_.reset(); }

bool Metrics::Serve(const std::string& listen, std::string* error) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
    exposer_->RegisterCollectable(collector_);
    return true;
  } catch (const std::exception& e) {
    *error = std::string("metrics.listen ") + listen + ": " + e.what();
    return false;
  }
}

void Metrics::AddCollectable(std::shared_ptr<prometheus::Collectable> collectable) {
  if (exposer_ != nullptr) exposer_->RegisterCollectable(collectable);
}

int Metrics::port() const {
  if (exposer_ == nullptr) return 0;
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void Metrics::ConfigReloaded(bool ok, int64_t unix_time_s) {
  const auto relaxed = std::memory_order_relaxed;
  last_reload_ok_.store(ok, relaxed);
  if (ok) {
    reloads_.store(reloads_.load(relaxed) + 1, relaxed);
    last_reload_success_s_.store(unix_time_s, relaxed);
  } else {
    reload_failures_.store(reload_failures_.load(relaxed) + 1, relaxed);
  }
}

}  // namespace klined
