#include "app/timer_jobs.h"

#include "app/conn_options.h"
#include "app/metric_family.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

namespace klined {
namespace {

RedisOptions RedisFrom(const Config& c) { return RedisOptionsFrom(c, 5000); }

PersistOptions PersistFrom(const Config& c, cluster::Topology* topology) {
  PersistOptions o;
  o.topology = topology;
  o.redis = RedisFrom(c);
  o.key_prefix = c.redis.key_prefix;
  o.mysql = MysqlOptionsFrom(c);
  o.persist_interval_ms = c.mysql.persist_interval_ms;
  o.batch_rows = static_cast<size_t>(c.mysql.batch_rows);
  o.tz = c.time_zone;
  o.intervals = c.intervals;
  o.history_limit = c.redis.history_limit;
  return o;
}

TimerLoopOptions LoopFrom(const Config& c, const SeriesLayout* layout,
                          cluster::Topology* topology) {
  TimerLoopOptions o;
  o.topology = topology;
  o.redis = RedisFrom(c);
  o.key_prefix = c.redis.key_prefix;
  o.layout = layout;
  o.lease_ttl_ms = c.lease.ttl_ms;
  o.history_limit = c.redis.history_limit;
  o.retire_idle_after_ms = c.limits.retire_idle_after;
  o.rollover_grace_ms = c.rollover_grace_ms;
  return o;
}

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

class JobsCollector : public prometheus::Collectable {
 public:
  JobsCollector(const TimerLoop* loop, const PersistWorker* persist)
      : loop_(loop), persist_(persist) {}

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    auto add = [&out](const char* name, const char* help, MetricType type, double v) {
      AddSample(&out, name, help, type, v);
    };
    const auto C = MetricType::Counter;
    const auto G = MetricType::Gauge;
    const LeaseStats& l = loop_->lease_stats();
    add("klined_lease_held", "1 while this instance holds the timer-job lease", G,
        double(l.held.Get()));
    add("klined_lease_takeovers_total", "Lease acquisitions", C, double(l.takeovers.Get()));
    add("klined_lease_renew_failures_total", "Lease renewals refused or failed", C,
        double(l.renew_failures.Get()));
    const RolloverStats& r = loop_->rollover_stats();
    add("klined_rollover_duration_seconds", "Duration of the last rollover run", G,
        double(r.last_run_ms.Get()) / 1000);
    add("klined_rollover_runs_total", "Completed rollover runs", C, double(r.runs.Get()));
    add("klined_rollover_candles_closed_total", "Candles closed into history by rollovers", C,
        double(r.candles_closed.Get()));
    add("klined_rollover_conflicts_total", "Rollover compare-and-set conflicts with flushes", C,
        double(r.cas_conflicts.Get()));
    add("klined_rollover_failures_total", "Rollover runs cut short", C, double(r.failures.Get()));
    add("klined_rollover_skipped_total",
        "Symbol intervals a rollover left as they were: an unreadable current candle, a key of "
        "another type, an error reply (the rest of the run goes on)",
        C, double(r.skipped.Get()));
    const TrimStats& t = loop_->trim_stats();
    add("klined_symbols_active",
        "Symbols rolled over, persisted and trimmed (PREFIX:symbols), after the last trim pass "
        "(lease holder)",
        G, double(t.active_symbols.Get()));
    add("klined_symbols_auto_retired_total",
        "Symbols retired by limits.retire_idle_after (lease holder)", C,
        double(t.auto_retired.Get()));
    add("klined_symbols_retired",
        "Symbols retired with klinectl retire and not traded since (lease holder)", G,
        double(t.retired_symbols.Get()));
    add("klined_trim_removed_total", "History members trimmed (already in MySQL)", C,
        double(t.removed.Get()));
    add("klined_trim_failures_total", "Trim runs cut short", C, double(t.failures.Get()));
    add("klined_trim_skipped_total",
        "Symbols a trim pass passed over because Redis answered their call with an error", C,
        double(t.skipped.Get()));
    const PersistStats& p = persist_->stats();
    add("klined_persist_candles_total", "Candles upserted into MySQL", C,
        double(p.candles_upserted.Get()));
    add("klined_persist_failures_total", "Persistence runs stopped by a Redis or MySQL error", C,
        double(p.failures.Get()));
    add("klined_persist_backlog", "Pending candles seen by the last persistence run", G,
        double(p.backlog.Get()));
    add("klined_persist_duration_seconds", "Duration of the last persistence run", G,
        double(p.last_run_ms.Get()) / 1000);
    add("klined_persist_late_applied_total", "Late trades merged into MySQL", C,
        double(p.late_applied.Get()));
    add("klined_persist_late_duplicates_total",
        "Late-trade records already applied to MySQL (a retry after a crash)", C,
        double(p.late_duplicates.Get()));
    add("klined_persist_late_rejected_total",
        "Late-trade records that cannot be applied (malformed, out of range); dropped", C,
        double(p.late_rejected.Get()));
    add("klined_redis_dataset_losses_total",
        "Times the Redis dataset marker was found gone and history had to be restored from MySQL",
        C, double(p.dataset_losses.Get()));
    add("klined_redis_restored_candles_total",
        "Closed candles written back into Redis history from MySQL after a dataset loss", C,
        double(p.restored_candles.Get()));
    add("klined_persist_fenced_total",
        "Persistence runs stopped because a newer lease holder fenced this instance out", C,
        double(p.fenced.Get()));
    add("klined_persist_script_errors_total",
        "Per-symbol persistence calls Redis answered with an error (that symbol retried next run)",
        C, double(p.script_errors.Get()));
    add("klined_persist_bad_entries_total",
        "Pending entries that cannot be persisted as read (and B:pending keys not a hash)", C,
        double(p.bad_entries.Get()));
    add("klined_persist_repaired_total",
        "Bad pending entries persisted from their history member instead", C,
        double(p.repaired.Get()));
    add("klined_persist_quarantined_total",
        "Bad pending entries moved to PREFIX:{SYMBOL}:quarantine (no good history member)", C,
        double(p.quarantined.Get()));
    add("klined_mysql_errors_total", "MySQL call errors", C, double(persist_->mysql_errors()));
    add("klined_mysql_reconnects_total", "MySQL reconnects", C,
        double(persist_->mysql_reconnects()));
    return out;
  }

 private:
  const TimerLoop* loop_;
  const PersistWorker* persist_;
};

}  // namespace

TimerJobs::TimerJobs(const Config& config, const SeriesLayout* layout, cluster::Topology* topology)
    : persist_(PersistFrom(config, topology)),
      loop_(LoopFrom(config, layout, topology),
            [this](bool active, const std::string& token, int64_t epoch) {
              persist_.SetActive(active, token, epoch);
            }),
      collector_(std::make_shared<JobsCollector>(&loop_, &persist_)) {}

TimerJobs::~TimerJobs() { Stop(); }

void TimerJobs::Start() {
  persist_.Start();
  loop_.Start();
}

void TimerJobs::Stop() {
  loop_.Stop();  // on_active(false) first, then the lease is released
  persist_.Stop();
}

void TimerJobs::Reload(const Config& config) {
  loop_.SetHistoryLimit(config.redis.history_limit);
  loop_.SetRetireIdleAfterMs(config.limits.retire_idle_after);
  loop_.SetRolloverGraceMs(config.rollover_grace_ms);
  persist_.set_persist_interval_ms(config.mysql.persist_interval_ms);
}

}  // namespace klined
