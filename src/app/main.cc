// klined: trades from Kafka -> K-lines in Redis and MySQL.
//
// DESIGN
// Threads: this control thread (signals, reload, supervision), one consumer thread
// (io/kafka), one thread per shard (shard/), and prometheus-cpp's HTTP threads which only
// read counters. Signal handlers only set flags; this loop does the work. Shutdown order:
// stop the consumer (which drains: final round, flush, commit, leave the group), then the
// shards, then exit 0. A second SIGTERM/SIGINT exits at once.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "app/config.h"
#include "app/metrics.h"
#include "base/log.h"
#include "io/kafka/consumer.h"
#include "io/redis/kline_store.h"
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

int64_t MonotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr int64_t kDrainTimeoutMs = 20000;

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

int Run(const std::string& config_path, Config config) {
  InstallSignals();
  ApplyLogConfig(config);
  LOG(kInfo, "start", "version=" << KLINED_VERSION << " " << DescribeConfig(config));

  SeriesLayout layout{config.intervals, config.time_zone};
  size_t shard_count = config.shards > 0 ? static_cast<size_t>(config.shards)
                                         : std::max(1u, std::thread::hardware_concurrency());
  RedisOptions redis{config.redis.address, config.redis.password,
                     static_cast<int>(config.redis.connect_timeout_ms), 5000};

  std::vector<std::unique_ptr<Shard>> shards;
  std::vector<Shard*> shard_ptrs;
  std::vector<const Shard*> shard_views;
  for (size_t i = 0; i < shard_count; ++i) {
    ShardOptions so;
    so.flush_interval_ms = static_cast<int>(config.flush_interval_ms);
    shards.push_back(std::make_unique<Shard>(
        i, &layout, so, KlineStore::Create(redis, config.redis.key_prefix, &layout)));
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

  Metrics metrics(shard_views, &consumer);
  std::string error;
  if (!metrics.Serve(config.metrics.listen, &error)) {
    LOG(kError, "metrics.failed", "error=\"" << error << "\"");
    return 1;
  }
  if (!consumer.Start(&error)) {
    LOG(kError, "kafka.failed", "error=\"" << error << "\"");
    return 1;
  }
  for (auto& s : shards) s->Start();

  std::atomic<int64_t> drain_deadline{INT64_MAX};
  std::thread consumer_thread([&] { consumer.Run(g_stop, drain_deadline); });
  LOG(kInfo, "ready", "shards=" << shard_count << " topic=" << co.topic << " group=" << co.group);

  uint64_t reloads = 0, reload_failures = 0;
  while (!g_stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (g_reload.exchange(false)) {
      ConfigResult next = LoadConfigFile(config_path);
      if (const ConfigError* e = std::get_if<ConfigError>(&next)) {
        metrics.set_config_reload_failures(++reload_failures);
        LOG(kError, "config.reload_failed",
            "error=\"" << e->message << "\" detail=\"kept the running config\"");
        continue;
      }
      const Config& nc = std::get<Config>(next);
      for (const std::string& key : RestartOnlyChanges(config, nc)) {
        LOG(kWarn, "config.restart_required",
            "key=" << key << " detail=\"change ignored until restart\"");
      }
      ApplyReloadable(nc, &config);
      ApplyLogConfig(config);
      for (auto& s : shards) s->set_flush_interval_ms(static_cast<int>(config.flush_interval_ms));
      metrics.set_config_reloads(++reloads);
      LOG(kInfo, "config.reloaded", DescribeConfig(config));
    }
  }
  LOG(kInfo, "drain.start", "timeout_ms=" << kDrainTimeoutMs);
  const int64_t deadline = MonotonicMs() + kDrainTimeoutMs;
  drain_deadline.store(deadline);
  consumer_thread.join();
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
  return klined::Run(config_path, std::get<klined::Config>(std::move(r)));
}
