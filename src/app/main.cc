// klined: trades from Kafka -> K-lines in Redis and MySQL.
//
// DESIGN
// Threads: this control thread (signals, startup probes, reload, watchdog, supervision), one
// consumer thread (io/kafka), one thread per shard (shard/), and prometheus-cpp's HTTP threads
// which only read counters. Signal handlers only set flags; this loop does the work.
//
// Startup: the metrics endpoint comes up first (klined_ready 0); then the control thread
// probes Redis (PING), MySQL (a login) and Kafka (broker metadata) with exponential backoff,
// logging `startup.waiting` and sending STATUS= for each one down; a SIGTERM meanwhile exits 0.
// Once all three answered it subscribes, starts the shards and the consumer thread, and only
// then sends READY=1.
//
// systemd: STATUS= every few seconds with the trade rate; RELOADING=1 ... READY=1 around a
// SIGHUP reload; STOPPING=1 when the drain begins; WATCHDOG=1 only while every shard's event
// loop keeps turning (ShardWatchdog), so a wedged shard gets the process restarted.
//
// Shutdown order: set the drain deadline, release the lease and stop the timer jobs, stop the
// consumer (which drains: final round, flush, commit, leave the group), then the shards, then
// exit 0, within drain_timeout_ms (plus the timeouts of calls in flight). A second
// SIGTERM/SIGINT exits at once. Destruction: the metrics exposer goes first, so no scrape
// reads the jobs, the consumer or the shards after they are destroyed.
#include <librdkafka/rdkafka.h>
#include <mysql.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/api_server.h"
#include "app/allocator.h"
#include "app/api_metrics.h"
#include "app/cluster_metrics.h"
#include "app/config.h"
#include "app/conn_options.h"
#include "app/metrics.h"
#include "app/notify.h"
#include "app/timer_jobs.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "io/kafka/consumer.h"
#include "io/kafka/kafka_conf.h"
#include "io/redis/kline_store.h"
#include "io/redis/redis_conn.h"
#include "shard/shard.h"

namespace klined {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
std::atomic<int> g_signals{0};

extern "C" void OnTerminate(int) {
  if (g_signals.fetch_add(1) >= 1) _exit(1);  // second signal: exit at once
  g_stop.store(true);
}
extern "C" void OnHangup(int) { g_reload.store(true); }

void InstallSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnTerminate;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sa.sa_handler = OnHangup;
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Sleeps up to ms in short slices; false if a stop signal arrived meanwhile.
bool SleepUnlessStopped(int64_t ms) {
  const int64_t until = MonotonicMs() + ms;
  while (!g_stop.load()) {
    const int64_t left = until - MonotonicMs();
    if (left <= 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(left, 50)));
  }
  return false;
}

// A value safe inside a log field's double quotes.
std::string Quoted(std::string s) {
  std::replace(s.begin(), s.end(), '"', '\'');
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

constexpr int64_t kTickMs = 50;
constexpr int64_t kStatusEveryMs = 5000;
constexpr int64_t kStartupBackoffMinMs = 200;
constexpr int64_t kStartupBackoffMaxMs = 5000;
constexpr int kProbeTimeoutMs = 2000;

void PrintUsage() {
  std::printf(
      "usage: klined --config FILE [--check]\n"
      "  --config FILE  YAML configuration (see config/klined.yaml)\n"
      "  --check        validate the configuration and exit (0 = good)\n"
      "  --version      print the version\n"
      "  --help         this text\n");
}

void ApplyLogConfig(const Config& c) {
  SetLogLevel(c.log.level);
  SetLogRateLimit(static_cast<uint32_t>(c.log.rate_limit_per_s));
}

// ---- startup probes: each returns "" when the dependency answered, else why not -------------

std::string ProbeRedis(const Config& c) {
  if (c.redis.cluster) {  // a seed answers CLUSTER SHARDS
    cluster::Topology topology(TopologyOptionsFrom(c, kProbeTimeoutMs));
    return topology.Refresh() ? std::string() : topology.error();
  }
  RedisConn conn(RedisOptionsFrom(c, kProbeTimeoutMs));
  if (!conn.EnsureConnected()) return conn.error();
  RedisReply r = conn.Command({"PING"});
  if (r == nullptr) return conn.error();
  if (r->type == REDIS_REPLY_ERROR) return std::string(r->str, r->len);
  return "";
}

// A login with the persistence worker's options (TLS included), with the probe's timeouts.
std::string ProbeMysql(const Config& c) {
  MysqlOptions o = MysqlOptionsFrom(c);
  o.connect_timeout_s = o.read_timeout_s = o.write_timeout_s = (kProbeTimeoutMs + 999) / 1000;
  MysqlConn conn(std::move(o));
  return conn.EnsureConnected() ? std::string() : conn.error();
}

extern "C" void SilentKafkaLog(const rd_kafka_t*, int, const char*, const char*) {}

// A throwaway client asks any broker for cluster metadata (no topics, so nothing is
// auto-created). Only the connection-level pass-through properties are copied
// (IsConnectionProperty): the rest are consumer settings a producer handle would warn about.
std::string ProbeKafka(const Config& c) {
  char err[512];
  std::string error;
  rd_kafka_conf_t* conf = NewClientConf(c.kafka.brokers, c.kafka.properties, &error);
  if (conf == nullptr) return error;
  rd_kafka_conf_set_log_cb(conf, SilentKafkaLog);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) return err;
  // Short slices, so a stop signal is noticed while no broker answers.
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TRANSPORT;
  for (int waited = 0; waited < kProbeTimeoutMs && !g_stop.load(); waited += kTickMs * 5) {
    e = rd_kafka_metadata(rk, 0, nullptr, &md, static_cast<int>(kTickMs * 5));
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
  }
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = rd_kafka_err2str(e);
  } else if (md->broker_cnt == 0) {
    error = "no brokers in metadata";
  }
  if (md != nullptr) rd_kafka_metadata_destroy(md);
  rd_kafka_destroy(rk);
  return error;
}

// Probes every dependency until all answer, backing off exponentially between rounds. False if
// a stop signal came first.
bool WaitForDependencies(const Config& c, Notifier* notifier, Metrics* metrics) {
  struct Probe {
    Dependency dependency;
    std::string address;
    std::string (*run)(const Config&);
  };
  // Every role needs Redis and MySQL (ingest: its candles' home and the late-trade path; jobs:
  // persistence; api: the reads); only ingest needs Kafka.
  std::vector<Probe> probes = {
      {Dependency::kRedis, c.redis.address, ProbeRedis},
      {Dependency::kMysql, c.mysql.host + ":" + std::to_string(c.mysql.port), ProbeMysql}};
  if (c.roles.ingest) probes.push_back({Dependency::kKafka, c.kafka.brokers, ProbeKafka});
  int64_t backoff_ms = kStartupBackoffMinMs;
  for (int attempt = 1;; ++attempt) {
    std::string status;
    for (const Probe& p : probes) {
      if (g_stop.load()) return false;
      const std::string error = p.run(c);
      if (error.empty()) continue;
      metrics->DependencyProbeFailed(p.dependency);
      LOG(kWarn, "startup.waiting",
          "dependency=" << DependencyName(p.dependency) << " address=" << p.address << " error=\""
                        << Quoted(error) << "\" attempt=" << attempt
                        << " retry_in_ms=" << backoff_ms);
      status += std::string(status.empty() ? "waiting for " : "; ") + DependencyName(p.dependency) +
                ": " + error;
    }
    if (status.empty()) {
      LOG(kInfo, "startup.dependencies_up", "attempts=" << attempt);
      return true;
    }
    notifier->Status(status);
    if (!SleepUnlessStopped(backoff_ms)) return false;
    backoff_ms = std::min(backoff_ms * 2, kStartupBackoffMaxMs);
  }
}

// ---- running ----------------------------------------------------------------------------------

// Sends WATCHDOG=1 every timeout/2, but only once every shard's event loop turned since the
// previous ping (its loop_heartbeat advanced): a wedged shard withholds the pings and systemd
// restarts the process after WatchdogSec. A ping overdue because of a slow shard is sent as
// soon as the shard moves again, so a stall shorter than timeout/2 costs nothing.
class ShardWatchdog {
 public:
  ShardWatchdog(std::vector<const Shard*> shards, std::chrono::microseconds timeout)
      : shards_(std::move(shards)), period_ms_(timeout.count() / 2000), beats_(shards_.size(), 0) {}

  bool enabled() const { return period_ms_ > 0; }
  int64_t period_ms() const { return period_ms_; }

  // Control thread, every tick.
  void Tick(int64_t now_ms, Notifier* notifier, Metrics* metrics) {
    if (!enabled() || now_ms < next_due_ms_) return;
    std::string stalled;
    for (size_t i = 0; i < shards_.size(); ++i) {
      if (shards_[i]->stats().loop_heartbeat.Get() == beats_[i]) {
        stalled += (stalled.empty() ? "" : ",") + std::to_string(shards_[i]->index());
      }
    }
    if (!stalled.empty()) {
      if (!withheld_) {
        withheld_ = true;
        metrics->WatchdogWithheld();
        LOG(kWarn, "watchdog.withheld",
            "stalled_shards=" << stalled << " detail=\"shard loop not advancing\"");
      }
      return;
    }
    for (size_t i = 0; i < shards_.size(); ++i)
      beats_[i] = shards_[i]->stats().loop_heartbeat.Get();
    if (withheld_) LOG(kInfo, "watchdog.resumed", "");
    withheld_ = false;
    notifier->Watchdog();
    metrics->WatchdogPinged();
    LOG(kDebug, "watchdog.ping", "shards=" << shards_.size());
    next_due_ms_ = now_ms + period_ms_;
  }

 private:
  std::vector<const Shard*> shards_;
  const int64_t period_ms_;
  std::vector<uint64_t> beats_;  // loop_heartbeat at the last ping
  int64_t next_due_ms_ = 0;
  bool withheld_ = false;
};

// STATUS= line: the trade rate since the previous call.
class StatusReporter {
 public:
  explicit StatusReporter(std::vector<const Shard*> shards) : shards_(std::move(shards)) {}

  std::string Line(int64_t now_ms) {
    uint64_t applied = 0, symbols = 0;
    for (const Shard* s : shards_) {
      applied += s->stats().trades_applied.Get();
      symbols += s->stats().symbols.Get();
    }
    const int64_t dt = now_ms - last_ms_;
    const double rate = last_ms_ == 0 || dt <= 0 ? 0 : double(applied - last_applied_) * 1000 / dt;
    last_ms_ = now_ms;
    last_applied_ = applied;
    std::ostringstream os;
    os.precision(0);
    os << std::fixed << "running: " << rate << " trades/s, " << applied << " applied, " << symbols
       << " symbols, " << shards_.size() << " shards";
    return os.str();
  }

 private:
  std::vector<const Shard*> shards_;
  int64_t last_ms_ = 0;
  uint64_t last_applied_ = 0;
};

// SIGHUP: re-reads the file; applies what may change, keeps the rest. False (running config
// untouched) if the file is invalid.
bool Reload(const std::string& config_path, Config* config,
            const std::vector<std::unique_ptr<Shard>>& shards, TimerJobs* jobs,
            TradeConsumer* consumer, api::ApiServer* api, std::string* error) {
  ConfigResult next = LoadConfigFile(config_path);
  if (const ConfigError* e = std::get_if<ConfigError>(&next)) {
    *error = e->message;
    return false;
  }
  const Config& nc = std::get<Config>(next);
  for (const std::string& key : RestartOnlyChanges(*config, nc)) {
    LOG(kWarn, "config.restart_required",
        "key=" << key << " detail=\"change ignored until restart\"");
  }
  ApplyReloadable(nc, config);
  // Push the reloadable values to the threads that use them.
  ApplyLogConfig(*config);
  for (const auto& s : shards) {
    s->set_flush_interval_ms(static_cast<int>(config->flush_interval_ms));
    s->set_idle_release_ms(config->limits.idle_release_ms);
  }
  if (jobs != nullptr) jobs->Reload(*config);
  if (api != nullptr) api->SetWeightPerMinute(config->api.weight_per_minute);
  consumer->SetDeadLetterTopic(config->kafka.dead_letter_topic);
  consumer->SetMaxFutureSkewMs(config->max_future_skew_ms);
  return true;
}

// A shard's store, routed through the process's topology.
std::unique_ptr<SeriesStore> MakeShardStore(cluster::Topology* topology, const Config& config,
                                            const SeriesLayout* layout) {
  auto store = std::make_unique<KlineStore>(topology, config.redis.key_prefix, layout,
                                            config.redis.ticker_prefix);
  store->SetReplicaWait(static_cast<int>(config.redis.wait_replicas),
                        static_cast<int>(config.redis.wait_timeout_ms));
  return store;
}

int Run(const std::string& config_path, Config config) {
  InstallSignals();
  const int64_t drain_timeout_ms = config.drain_timeout_ms;
  ApplyLogConfig(config);
  LOG(kInfo, "start",
      "version=" << KLINED_VERSION << " allocator=\"" << AllocatorName() << "\" "
                 << DescribeConfig(config));
  Notifier notifier;

  SeriesLayout layout{config.intervals, config.time_zone, config.limits.max_gap_candles};
  // An instance without the ingest role consumes nothing and runs no shards.
  size_t shard_count = !config.roles.ingest ? 0
                       : config.shards > 0  ? static_cast<size_t>(config.shards)
                                            : std::max(1u, std::thread::hardware_concurrency());
  const RedisOptions redis = RedisOptionsFrom(config, 5000);
  // Every shard store routes through one topology (one Redis, or the cluster's primaries).
  cluster::Topology topology(TopologyOptionsFrom(config, 5000));
  if (!topology.Refresh()) {
    LOG(kWarn, "redis.topology_failed",
        "error=\"" << topology.error() << "\" detail=\"routing retries on the next call\"");
  }

  std::vector<std::unique_ptr<Shard>> shards;
  std::vector<TradeSink*> shard_ptrs;
  std::vector<const Shard*> shard_views;
  for (size_t i = 0; i < shard_count; ++i) {
    ShardOptions so;
    so.flush_interval_ms = static_cast<int>(config.flush_interval_ms);
    so.max_pending_trades = static_cast<size_t>(config.limits.max_pending_trades);
    so.idle_release_ms = config.limits.idle_release_ms;
    shards.push_back(std::make_unique<Shard>(
        i, &layout, so,
        MakeShardStore(&topology, config, &layout)));
    shard_ptrs.push_back(shards.back().get());
    shard_views.push_back(shards.back().get());
  }

  ConsumerOptions co;
  co.brokers = config.kafka.brokers;
  co.topic = config.kafka.topic;
  co.group = config.kafka.group;
  co.dead_letter_topic = config.kafka.dead_letter_topic;
  co.properties = config.kafka.properties;
  if (config.kafka.batch_size > 0) co.batch_size = static_cast<size_t>(config.kafka.batch_size);
  co.fields = config.trade_fields;
  co.max_future_skew_ms = config.max_future_skew_ms;
  TradeConsumer consumer(co, shard_ptrs);
  // Created once the dependencies answer, but declared here: everything a metrics collector
  // reads (shards, consumer, jobs) is declared before `metrics`, so it is destroyed after
  // the exposer's HTTP threads have stopped (~Metrics stops them first). On the heap, so a
  // regression of this order shows under ASan as a heap-use-after-free.
  std::unique_ptr<TimerJobs> jobs;
  std::unique_ptr<api::ApiServer> api;
  std::shared_ptr<prometheus::Collectable> api_collector;  // the exposer keeps only a weak_ptr

  Metrics metrics(shard_views, &consumer);
  std::string error;
  if (!metrics.Serve(config.metrics.listen, &error)) {
    LOG(kError, "metrics.failed", "error=\"" << Quoted(error) << "\"");
    return 1;
  }
  LOG(kInfo, "metrics.listening", "listen=" << config.metrics.listen << " port=" << metrics.port());
  std::shared_ptr<prometheus::Collectable> cluster_collector;

  notifier.Status("starting: probing redis, mysql, kafka");
  if (!WaitForDependencies(config, &notifier, &metrics)) {
    notifier.Stopping();
    LOG(kInfo, "startup.aborted", "detail=\"stop signal while waiting for dependencies\"");
    return 0;
  }
  if (config.roles.api) {
    api = std::make_unique<api::ApiServer>(ApiOptionsFrom(config));
    if (!api->Start(&error)) {
      LOG(kError, "api.failed", "error=\"" << Quoted(error) << "\"");
      return 1;
    }
    api_collector = MakeApiCollector(api.get());
    metrics.AddCollectable(api_collector);
    LOG(kInfo, "api.listening",
        "listen=" << config.api.listen << " port=" << api->port()
                  << " threads=" << config.api.threads);
  }
  // (topology and api are declared before metrics: they outlive the exposer's threads.)
  std::vector<cluster::Topology*> topologies{&topology};
  if (api) topologies.push_back(api->topology());
  cluster_collector = MakeClusterCollector(std::move(topologies));
  metrics.AddCollectable(cluster_collector);
  if (config.roles.ingest && !consumer.Start(&error)) {
    LOG(kError, "kafka.failed", "error=\"" << Quoted(error) << "\"");
    return 1;
  }
  for (auto& s : shards) s->Start();
  // Rollover, persistence and trimming run only while this instance holds the lease.
  if (config.roles.jobs) {
    jobs = std::make_unique<TimerJobs>(config, &layout, &topology);
    jobs->Start();
    metrics.AddCollectable(jobs->Collector());
  }

  std::atomic<int64_t> drain_deadline{INT64_MAX};
  std::atomic<bool> consumer_done{!config.roles.ingest};
  std::thread consumer_thread;
  if (config.roles.ingest) {
    consumer_thread = std::thread([&] {
      NameThisThread("consumer");
      consumer.Run(g_stop, drain_deadline);
      consumer_done.store(true);
    });
  }

  ShardWatchdog watchdog(shard_views, Notifier::WatchdogInterval());
  StatusReporter status(shard_views);
  metrics.set_ready(true);
  notifier.Ready(config.roles.ingest ? "consuming " + co.topic + " as group " + co.group + " on " +
                                           std::to_string(shard_count) + " shards"
                                     : std::string("serving without the ingest role"));
  LOG(kInfo, "ready",
      "shards=" << shard_count << " topic=" << co.topic << " group=" << co.group
                << " watchdog_ms=" << watchdog.period_ms() * 2);

  status.Line(MonotonicMs());
  int64_t next_status_ms = MonotonicMs() + kStatusEveryMs;
  while (!g_stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kTickMs));
    const int64_t now = MonotonicMs();
    watchdog.Tick(now, &notifier, &metrics);
    if (now >= next_status_ms) {
      notifier.Status(status.Line(now));
      next_status_ms = now + kStatusEveryMs;
    }
    if (g_reload.exchange(false)) {
      notifier.Reloading();
      if (Reload(config_path, &config, shards, jobs.get(), &consumer, api.get(), &error)) {
        metrics.ConfigReloaded(true, UnixSeconds());
        LOG(kInfo, "config.reloaded", DescribeConfig(config));
        notifier.ReadyAfterReload("reloaded; " + status.Line(MonotonicMs()));
      } else {
        metrics.ConfigReloaded(false, UnixSeconds());
        LOG(kError, "config.reload_failed",
            "error=\"" << Quoted(error) << "\" detail=\"kept the running config\"");
        notifier.ReadyAfterReload("reload failed, running config kept: " + error);
      }
    }
  }

  // The deadline first, before anything that can block: the consumer thread saw the stop
  // flag already and its drain waits until this deadline (re-reading it), so with Redis down
  // the drain ends there instead of never.
  const int64_t deadline = MonotonicMs() + drain_timeout_ms;
  drain_deadline.store(deadline);
  notifier.Stopping();
  metrics.set_ready(false);
  LOG(kInfo, "drain.start", "timeout_ms=" << drain_timeout_ms);
  // The API answers from Redis and MySQL, never from what this instance holds: it stops
  // first, so a load balancer moves its clients to another instance while the drain runs.
  if (api) api->Stop();
  // Release the lease first, so a standby takes over the timer jobs at once; closed candles
  // not yet in MySQL stay tracked in Redis for it. Bounded by the jobs' Redis and MySQL
  // timeouts, not by the deadline; the consumer drains meanwhile.
  if (jobs) jobs->Stop();
  // The drain is bounded by its deadline, so the watchdog is fed while it runs.
  while (!consumer_done.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kTickMs));
    if (watchdog.enabled() && MonotonicMs() <= deadline) notifier.Watchdog();
  }
  if (consumer_thread.joinable()) consumer_thread.join();
  for (auto& s : shards) s->Stop(deadline);
  LOG(kInfo, "drain.done", "");
  return 0;
}

}  // namespace
}  // namespace klined

int main(int argc, char** argv) {
  std::string config_path;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--check") {
      check = true;
    } else if (a == "--version") {
      std::printf("klined %s\n", KLINED_VERSION);
      return 0;
    } else if (a == "--help" || a == "-h") {
      klined::PrintUsage();
      return 0;
    } else {
      std::fprintf(stderr, "klined: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "klined: --config FILE is required (see --help)\n");
    return 2;
  }
  klined::ConfigResult r = klined::LoadConfigFile(config_path);
  if (const klined::ConfigError* e = std::get_if<klined::ConfigError>(&r)) {
    std::fprintf(stderr, "klined: %s\n", e->message.c_str());
    return 2;
  }
  if (check) {
    std::printf("klined: %s: configuration OK\n", config_path.c_str());
    return 0;
  }
  // Before any thread exists: libmariadb's global init is not thread-safe.
  mysql_library_init(0, nullptr, nullptr);
  const int rc = klined::Run(config_path, std::get<klined::Config>(std::move(r)));
  mysql_library_end();
  return rc;
}
