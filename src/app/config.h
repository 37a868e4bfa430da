// klined's configuration: the YAML file, the environment overrides, and SIGHUP reloads.
//
// DESIGN
// Every key is declared exactly once, in the key table in config.cc (Redis config.c style):
// dotted path, type, bounds, default, whether SIGHUP may change it, the environment variable
// that overrides it, and its help text. That table drives Config's defaults, parsing,
// validation (`--check`), DescribeConfig, the reload diff, and the test that
// config/klined.yaml documents every key with its default. The structs below only hold the
// values; read the table for what each one may be.
//
// Loading never throws: yaml-cpp's exceptions stop here and come back as one ConfigError
// whose message names the key and the position, `file:line:col: key: problem` (1-based).
// Loading happens on the control thread, at startup and on SIGHUP; nothing here is used on a
// shard's hot path.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/log.h"
#include "klined/interval.h"
#include "klined/trade_decoder.h"

namespace klined {

// mysql.ssl_mode: as MySQL's client --ssl-mode.
enum class MysqlSslMode : uint8_t { kDisabled, kPreferred, kRequired, kVerifyCa, kVerifyIdentity };

struct Config {
  // Every key at its default, as declared in the key table.
  Config();

  struct Kafka {
    std::string brokers;            // bootstrap servers, comma-separated
    std::string topic;              // trades in
    std::string group;              // consumer group
    std::string dead_letter_topic;  // rejected messages; empty = none
    // Passed through to librdkafka as given. The keys klined sets itself are rejected.
    std::map<std::string, std::string> properties;
    int64_t batch_size = 0;  // messages taken per consume call
  };
  struct Redis {
    std::string address;  // "host:port" or "unix:/path"
    std::string user;     // ACL user (AUTH user password); empty = AUTH password
    std::string password;
    std::string key_prefix;
    std::string ticker_prefix;
    int64_t history_limit = 0;  // closed candles kept per history key, at least
    int64_t connect_timeout_ms = 0;
    bool cluster = false;        // Redis Cluster (not yet: refused by the cross-check)
    int64_t wait_replicas = 0;   // replicas that must have a flush before its offsets commit
    int64_t wait_timeout_ms = 0;  // how long one WAIT may take
  };
  struct Mysql {
    std::string host;
    int port = 0;
    std::string user;
    std::string password;
    std::string database;
    int64_t persist_interval_ms = 0;                  // a closed candle reaches MySQL within this
    int64_t batch_rows = 0;                           // rows per upsert statement
    MysqlSslMode ssl_mode = MysqlSslMode::kDisabled;  // TLS
    std::string ssl_ca;                               // CA file (PEM) for verify_*
  };
  struct Lease {
    int64_t ttl_ms = 0;
  };
  struct Metrics {
    std::string listen;  // "host:port" of the Prometheus endpoint
  };
  struct Log {
    LogLevel level = LogLevel::kInfo;
    int64_t rate_limit_per_s = 0;  // per hot-path log site; 0 = hot-path lines off
  };
  // What this instance does (contract 7): consume Kafka, compete for the timer-job lease, serve
  // the market-data API. Any non-empty combination.
  struct Roles {
    bool ingest = true;
    bool jobs = true;
    bool api = true;
    friend bool operator==(const Roles&, const Roles&) = default;
  };
  struct Api {
    std::string listen;                     // "host:port" of REST + WebSocket
    int64_t threads = 0;                    // event-loop threads (api-N)
    int64_t max_connections = 0;            // open sockets; more are accepted and closed
    int64_t weight_per_minute = 0;          // request weight per client IP per minute; 0 = off
    int64_t idle_timeout_ms = 0;            // a keep-alive connection silent this long is closed
    int64_t mysql_timeout_ms = 0;           // read timeout of the API's MySQL range reads
    int64_t symbols_refresh_ms = 0;         // how often the known-symbol set is re-read
    std::vector<std::string> quote_assets;  // exchangeInfo's base/quote split, longest first
    std::string web_root;                   // directory the chart page is served from
    int64_t ws_max_streams = 0;             // streams per WebSocket connection
    int64_t ws_send_queue_bytes = 0;        // a WebSocket client further behind is closed
    int64_t ws_messages_per_second = 0;     // client messages; more closes the connection
    int64_t cache_bytes = 0;                // the L1 cache's bound; 0 = no cache
    int64_t cache_page_ttl_ms = 0;          // lifetime of a cached MySQL page (jittered)
    int64_t watch_ttl_ms = 0;               // B:watch part lifetime (refreshed every third)
  };
  struct Limits {
    int64_t max_pending_trades = 0;  // per shard, before consumption pauses
    int64_t max_gap_candles = 0;     // empty candles one trade may gap-fill per interval
    int64_t idle_release_ms = 0;     // a symbol idle this long leaves shard memory
    int64_t retire_idle_after = 0;   // ms without a trade before a symbol is retired; 0 = off
  };

  Kafka kafka;
  Redis redis;
  Mysql mysql;
  std::vector<Interval> intervals;  // sorted in kAllIntervals order, no duplicates
  UtcOffset time_zone;
  int64_t flush_interval_ms = 0;
  int64_t rollover_grace_ms = 0;
  int64_t drain_timeout_ms = 0;  // the SIGTERM drain's bound
  int64_t max_future_skew_ms = 0;
  int shards = 0;  // 0 = one per core
  Lease lease;
  Metrics metrics;
  TradeFieldMap trade_fields;
  Log log;
  Limits limits;
  Roles roles;
  Api api;
};

struct ConfigError {
  std::string message;  // "file:line:col: key: problem", ready to print
};

using ConfigResult = std::variant<Config, ConfigError>;

// Looks up an environment variable; nullopt when unset. Tests inject their own.
using Environment = std::function<std::optional<std::string>(std::string_view name)>;
// Reads the process environment (getenv).
Environment ProcessEnvironment();

// Parses and validates a config file. A missing key, a key with no value and an empty file
// all mean the defaults. Environment variables named in the key table (KLINED_MYSQL_PASSWORD,
// KLINED_REDIS_PASSWORD, KLINED_REDIS_USER) override the file when set and non-empty.
ConfigResult LoadConfigFile(const std::string& path, const Environment& env = ProcessEnvironment());
// The same for text already in memory; `name` stands for the file in messages.
ConfigResult LoadConfigString(std::string_view yaml, std::string_view name,
                              const Environment& env = ProcessEnvironment());

// Dotted names of every key whose value differs, in table order.
std::vector<std::string> ChangedKeys(const Config& a, const Config& b);
// Dotted names of the keys that differ between the running config and a reloaded one but that
// SIGHUP cannot change: they need a restart.
std::vector<std::string> RestartOnlyChanges(const Config& running, const Config& next);
// Copies every key SIGHUP may change from `next` into *running, and nothing else.
void ApplyReloadable(const Config& next, Config* running);

// One line, `key=value ...` for every key in table order, secrets redacted: for the startup log.
std::string DescribeConfig(const Config& config);

// The key table, read-only, for --check, docs and tests.
struct ConfigKeyInfo {
  std::string_view path;      // dotted, e.g. "kafka.topic"
  std::string type;           // e.g. "integer 10..60000"
  std::string default_value;  // as DescribeConfig shows it
  bool reloadable;            // SIGHUP may change it
  std::string_view env;       // overriding environment variable, or empty
  std::string_view help;
};
std::vector<ConfigKeyInfo> ConfigKeys();

}  // namespace klined
