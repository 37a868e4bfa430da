// Operations, against the real klined binary with a real redis-server, mariadbd and the
// librdkafka mock cluster. Invariants checked:
//  - the command line: --check prints the config error with its exact text and position;
//    --help and --version work;
//  - the systemd notify protocol seen by a fake NOTIFY_SOCKET listener: READY=1 only once
//    Redis, MySQL and Kafka answer (Redis starts late here), STATUS= says what it waits for,
//    WATCHDOG=1 pings while the shards run, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 then
//    exit 0 on SIGTERM; and SIGTERM while still waiting for a dependency exits 0 at once;
//  - SIGHUP applies reloadable keys (log.level: debug lines appear; flush_interval_ms: the
//    flush rate changes), warns about restart-only ones, and an invalid file keeps the running
//    config and counts klined_config_reload_failures_total;
//  - /metrics, scraped and parsed, counts exactly the trades produced, and every metric it
//    exports is documented in docs/metrics.md;
//  - shutting down while /metrics is scraped in a tight loop reads nothing already destroyed
//    (run under ASan: KLINED_BUILD=<asan build>);
//  - Redis ACL users: with redis.user and a password klined works end to end; a wrong
//    password is a clear startup.waiting line, with no secret in the log;
//  - MySQL over TLS: with mysql.ssl_mode required or verify_ca (with the test CA) candles
//    reach a TLS server over encrypted connections; a wrong CA, or required against a server
//    without TLS, is a clear startup.waiting line;
//  - secrets (Redis and MySQL passwords, a sasl.password property) appear in no output:
//    --check, a run, its drain;
//  - scripts/install-deps.sh installs every tool the scripts, the Makefile and the tests call
//    (or the tool is in a package a minimal Debian always has);
//  - systemd/klined.service passes `systemd-analyze verify`; scripts/install.sh stages into a
//    DESTDIR, twice, keeping an edited config; the alert rules and the dashboard parse.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http_get.h"
#include "kafka_broker.h"
#include "mariadb_server.h"
#include "redis_server.h"
#include "source_dir.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace kt = klined::test;
namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

using kt::BuildDir;
using kt::SourceDir;

namespace {

std::string KlinedPath() { return BuildDir() + "/src/app/klined"; }

// Every distinct klined_* name in `text` (std::regex is avoided: GCC 12 -O3 warns inside it).
std::set<std::string> MetricNames(const std::string& text, const std::string& prefix = "") {
  std::set<std::string> out;
  const std::string key = prefix + "klined_";
  for (size_t p = text.find(key); p != std::string::npos; p = text.find(key, p + 1)) {
    size_t e = p + prefix.size();
    while (e < text.size() &&
           (std::islower(static_cast<unsigned char>(text[e])) ||
            std::isdigit(static_cast<unsigned char>(text[e])) || text[e] == '_')) {
      ++e;
    }
    out.insert(text.substr(p + prefix.size(), e - p - prefix.size()));
  }
  return out;
}

// Runs a shell command; returns (exit code, stdout+stderr).
std::pair<int, std::string> Shell(const std::string& cmd) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int st = pclose(f);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

bool HasProgram(const std::string& name) {
  return Shell("command -v " + name + " >/dev/null").first == 0;
}

// Waits until the process's stderr contains `text` (log lines start with a timestamp, so
// Subprocess::WaitForLine's prefix match does not fit).
bool WaitForStderr(kt::Subprocess& p, const std::string& text, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (p.Stderr().find(text) != std::string::npos) return true;
    if (!p.Running()) return p.Stderr().find(text) != std::string::npos;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return false;
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// ---- Prometheus text format ----------------------------------------------------------------

std::string Scrape(int port) { return kt::HttpGet(port, "/metrics"); }

// series ("name" or "name{labels}") -> value, for every sample line.
std::map<std::string, double> ParseMetrics(const std::string& text) {
  std::map<std::string, double> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    const std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return out;
}

// Sum of every series of metric `name` (all label sets).
double Sum(const std::map<std::string, double>& m, const std::string& name) {
  double sum = 0;
  for (const auto& [series, v] : m) {
    if (series == name || series.rfind(name + "{", 0) == 0) sum += v;
  }
  return sum;
}

std::optional<double> Get(const std::map<std::string, double>& m, const std::string& series) {
  auto it = m.find(series);
  if (it == m.end()) return std::nullopt;
  return it->second;
}

// ---- a fake systemd: the NOTIFY_SOCKET end -------------------------------------------------

class NotifyListener {
 public:
  explicit NotifyListener(const fs::path& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.string().size() < sizeof addr.sun_path);
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~NotifyListener() { close(fd_); }

  const fs::path& path() const { return path_; }

  // Index of the first datagram at or after `from` with `line` as one of its assignments,
  // receiving until `timeout`; nullopt if none came.
  std::optional<size_t> WaitFor(const std::string& line, milliseconds timeout, size_t from = 0) {
    const auto deadline = Clock::now() + timeout;
    for (size_t i = from;; ++i) {
      while (i >= received_.size()) {
        const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        if (left.count() <= 0 || !ReceiveOne(static_cast<int>(left.count()))) return std::nullopt;
      }
      if (HasLine(received_[i], line)) return i;
    }
  }
  // Receives whatever arrives within `window`.
  void Drain(milliseconds window) {
    const auto deadline = Clock::now() + window;
    while (true) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return;
      ReceiveOne(static_cast<int>(left.count()));
    }
  }
  const std::vector<std::string>& received() const { return received_; }
  size_t CountLine(const std::string& line, size_t from = 0) const {
    size_t n = 0;
    for (size_t i = from; i < received_.size(); ++i) n += HasLine(received_[i], line);
    return n;
  }
  std::string Dump() const {
    std::string s;
    for (const std::string& d : received_) s += "[" + d + "] ";
    return s;
  }

  static bool HasLine(const std::string& datagram, const std::string& line) {
    size_t pos = 0;
    while (pos <= datagram.size()) {
      size_t eol = datagram.find('\n', pos);
      if (eol == std::string::npos) eol = datagram.size();
      const std::string l = datagram.substr(pos, eol - pos);
      if (l == line || (line.back() == '*' && l.rfind(line.substr(0, line.size() - 1), 0) == 0)) {
        return true;
      }
      pos = eol + 1;
    }
    return false;
  }

 private:
  bool ReceiveOne(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return false;
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return false;
    received_.emplace_back(buf, static_cast<size_t>(n));
    return true;
  }

  fs::path path_;
  int fd_ = -1;
  std::vector<std::string> received_;
};

// ---- the stack ------------------------------------------------------------------------------

struct OpsStack {
  explicit OpsStack(kt::MariaDbOptions mysql_options = {}) : mysql(std::move(mysql_options)) {}

  kt::TempDir dir{"klined-ops"};
  kt::KafkaBroker broker{kt::KafkaBrokerOptions{1, {{"trades", 2}}}};
  kt::MariaDbServer mysql;
  kt::RedisServer redis;
  int metrics_port = kt::FreePort();
  fs::path config = dir / "klined.yaml";

  // The MySQL password comes from KLINED_MYSQL_PASSWORD (see Start), not from the file.
  std::string Yaml(const std::string& extra) const {
    return "kafka:\n  brokers: \"" + broker.bootstrap() +
           "\"\n  topic: trades\n  group: klined-ops\n"
           "  properties:\n    session.timeout.ms: \"6000\"\n    heartbeat.interval.ms: \"500\"\n"
           "redis:\n  address: \"" +
           redis.address() +
           "\"\n"
           "mysql:\n  host: \"" +
           mysql.host() + "\"\n  port: " + std::to_string(mysql.port()) +
           "\n  user: " + mysql.user() + "\n  database: " + mysql.database() + "\n" +
           "intervals: [1m, 5m]\napi:\n  listen: \"127.0.0.1:0\"\nmetrics:\n  listen: "
           "\"127.0.0.1:" +
           std::to_string(metrics_port) + "\"\n" + extra;
  }
  void WriteConfig(const std::string& extra) { kt::WriteFile(config, Yaml(extra)); }
  // The same with more keys in one section ("redis", "mysql"), e.g. "  user: u\n".
  void WriteConfig(const std::string& extra, const std::string& section, const std::string& keys) {
    std::string yaml = Yaml(extra);
    const std::string head = section + ":\n";
    yaml.insert(yaml.find(head) + head.size(), keys);
    kt::WriteFile(config, yaml);
  }

  std::unique_ptr<kt::Subprocess> Start(const std::string& name, std::vector<std::string> env) {
    env.push_back("KLINED_MYSQL_PASSWORD=" + mysql.password());
    return std::make_unique<kt::Subprocess>(
        KlinedPath(), std::vector<std::string>{"--config", config.string()},
        kt::SubprocessOptions{.log_dir = dir.path(), .name = name, .env = env, .cwd = {}});
  }

  // The same on one CPU (taskset): klined's threads then preempt one another mid-work, which
  // widens the windows of shutdown-order races.
  std::unique_ptr<kt::Subprocess> StartPinned(const std::string& name) {
    return std::make_unique<kt::Subprocess>(
        "taskset", std::vector<std::string>{"-c", "0", KlinedPath(), "--config", config.string()},
        kt::SubprocessOptions{.log_dir = dir.path(),
                              .name = name,
                              .env = {"KLINED_MYSQL_PASSWORD=" + mysql.password()},
                              .cwd = {}});
  }

  std::map<std::string, double> Metrics() const { return ParseMetrics(Scrape(metrics_port)); }

  // Waits until `pred` holds on a scrape; returns the last scrape.
  template <typename Pred>
  std::map<std::string, double> WaitMetrics(Pred pred, seconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    std::map<std::string, double> m;
    while (Clock::now() < deadline) {
      m = Metrics();
      if (pred(m)) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return m;
  }
};

std::string Trade(const std::string& symbol, int64_t id, int64_t time_ms) {
  return "{\"e\":\"trade\",\"s\":\"" + symbol + "\",\"t\":" + std::to_string(id) +
         ",\"p\":\"100.5\",\"q\":\"0.25\",\"T\":" + std::to_string(time_ms) + ",\"m\":false}";
}

int64_t WallMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Flushes counted over `window` while a trade arrives every 20 ms: the flush clock (a shard
// with nothing dirty need not flush at all).
double FlushesWhileTrading(const OpsStack& s, kt::Producer* producer, int64_t* next_id,
                           milliseconds window) {
  const double before = Sum(s.Metrics(), "klined_flushes_total");
  const auto until = Clock::now() + window;
  while (Clock::now() < until) {
    producer->Produce("trades", std::string("XRPUSDT"), Trade("XRPUSDT", (*next_id)++, WallMs()));
    std::this_thread::sleep_for(milliseconds(20));
  }
  return Sum(s.Metrics(), "klined_flushes_total") - before;
}

}  // namespace

TEST_CASE("ops: command line: --check, --help, --version, usage errors") {
  kt::TempDir dir("klined-ops-cli");
  auto run = [&](std::vector<std::string> args, const std::string& name) {
    kt::Subprocess p(
        KlinedPath(), std::move(args),
        kt::SubprocessOptions{.log_dir = dir.path(), .name = name, .env = {}, .cwd = {}});
    const auto st = p.Wait(milliseconds(10000));
    REQUIRE(st.has_value());
    return std::tuple<int, std::string, std::string>{st->Code(), p.Stdout(), p.Stderr()};
  };

  const fs::path good = dir / "good.yaml";
  kt::WriteFile(good, "flush_interval_ms: 250\nlog:\n  level: debug\n");
  auto [code, out, err] = run({"--config", good.string(), "--check"}, "check-good");
  CHECK(code == 0);
  CHECK(out == "klined: " + good.string() + ": configuration OK\n");
  CHECK(err == "");

  const fs::path bad = dir / "bad.yaml";
  kt::WriteFile(bad, "# comment\nflush_interval_ms: 5\n");
  std::tie(code, out, err) = run({"--config", bad.string(), "--check"}, "check-bad");
  CHECK(code == 2);
  CHECK(out == "");
  CHECK(err ==
        "klined: " + bad.string() + ":2:20: flush_interval_ms: 5 is out of range 10..60000\n");

  kt::WriteFile(bad, "kafka:\n  topik: x\n");
  std::tie(code, out, err) = run({"--config", bad.string(), "--check"}, "check-unknown");
  CHECK(code == 2);
  CHECK(err ==
        "klined: " + bad.string() + ":2:3: kafka.topik: unknown key (did you mean kafka.topic?)\n");

  // A bad file is refused at startup the same way, before anything starts.
  std::tie(code, out, err) = run({"--config", bad.string()}, "run-bad");
  CHECK(code == 2);
  CHECK(err ==
        "klined: " + bad.string() + ":2:3: kafka.topik: unknown key (did you mean kafka.topic?)\n");

  std::tie(code, out, err) = run({"--version"}, "version");
  CHECK(code == 0);
  CHECK(out == std::string("klined ") + KLINED_VERSION + "\n");

  std::tie(code, out, err) = run({"--help"}, "help");
  CHECK(code == 0);
  CHECK(out.rfind("usage: klined --config FILE [--check]\n", 0) == 0);
  CHECK(out.find("--version") != std::string::npos);

  std::tie(code, out, err) = run({"--bogus"}, "bogus");
  CHECK(code == 2);
  CHECK(err == "klined: unknown argument '--bogus' (see --help)\n");
  std::tie(code, out, err) = run({}, "noargs");
  CHECK(code == 2);
  CHECK(err == "klined: --config FILE is required (see --help)\n");
}

TEST_CASE("ops: SIGTERM while waiting for dependencies exits 0 at once") {
  kt::TempDir dir("klined-ops-wait");
  const int metrics_port = kt::FreePort();
  const fs::path config = dir / "klined.yaml";
  // Nothing listens on these ports.
  kt::WriteFile(config, "kafka:\n  brokers: \"127.0.0.1:" + std::to_string(kt::FreePort()) +
                            "\"\nredis:\n  address: \"127.0.0.1:" + std::to_string(kt::FreePort()) +
                            "\"\nmysql:\n  port: " + std::to_string(kt::FreePort()) +
                            "\napi:\n  listen: \"127.0.0.1:0\"\nmetrics:\n  listen: \"127.0.0.1:" +
                            std::to_string(metrics_port) + "\"\n");
  kt::Subprocess p(
      KlinedPath(), {"--config", config.string()},
      kt::SubprocessOptions{.log_dir = dir.path(), .name = "klined", .env = {}, .cwd = {}});
  REQUIRE_MESSAGE(WaitForStderr(p, "event=startup.waiting dependency=redis", milliseconds(10000)),
                  p.OutputTail());
  CHECK(WaitForStderr(p, "event=startup.waiting dependency=mysql", milliseconds(5000)));
  CHECK(WaitForStderr(p, "event=startup.waiting dependency=kafka", milliseconds(5000)));
  // The metrics endpoint is up meanwhile and says why klined is not ready.
  const auto m = ParseMetrics(Scrape(metrics_port));
  CHECK(Get(m, "klined_ready") == 0);
  CHECK(Get(m, "klined_startup_probe_failures_total{dependency=\"redis\"}").value_or(0) >= 1);
  CHECK(Get(m, "klined_startup_probe_failures_total{dependency=\"mysql\"}").value_or(0) >= 1);

  const auto t0 = Clock::now();
  p.Terminate();
  const auto st = p.Wait(milliseconds(5000));
  REQUIRE_MESSAGE(st.has_value(), p.OutputTail());
  CHECK(st->Exited());
  CHECK(st->Code() == 0);
  CHECK(Clock::now() - t0 < seconds(3));
  CHECK(p.Stderr().find("event=startup.aborted") != std::string::npos);
  CHECK(p.Stderr().find("event=ready") == std::string::npos);
}

TEST_CASE("ops: notify protocol: READY=1 only once Redis is up, watchdog, reload, stop") {
  OpsStack s;
  s.redis.Stop();  // klined starts with Redis down; same port when it comes back
  s.WriteConfig("shards: 2\nflush_interval_ms: 100\n");
  NotifyListener systemd(s.dir / "notify.sock");
  auto klined =
      s.Start("klined", {"NOTIFY_SOCKET=" + systemd.path().string(), "WATCHDOG_USEC=1000000"});

  // Waiting: STATUS= names Redis; no READY=1 while it is down.
  REQUIRE_MESSAGE(systemd.WaitFor("STATUS=waiting for redis*", milliseconds(10000)),
                  systemd.Dump() << klined->OutputTail());
  REQUIRE(WaitForStderr(*klined,
                        "event=startup.waiting dependency=redis address=" + s.redis.address() +
                            " error=\"Connection refused\"",
                        milliseconds(5000)));
  systemd.Drain(milliseconds(1500));
  CHECK(systemd.CountLine("READY=1") == 0);
  CHECK(systemd.CountLine("WATCHDOG=1") == 0);
  // MySQL (password from KLINED_MYSQL_PASSWORD) and Kafka answered: only Redis is named.
  CHECK(klined->Stderr().find("dependency=mysql") == std::string::npos);
  CHECK(klined->Stderr().find("dependency=kafka") == std::string::npos);

  s.redis.Start();
  const auto ready = systemd.WaitFor("READY=1", milliseconds(15000));
  REQUIRE_MESSAGE(ready, systemd.Dump() << klined->OutputTail());
  CHECK(NotifyListener::HasLine(systemd.received()[*ready],
                                "STATUS=consuming trades as group "
                                "klined-ops on 2 shards"));
  CHECK(klined->Stderr().find("event=startup.dependencies_up") != std::string::npos);

  // Watchdog: WATCHDOG_USEC=1 s -> a ping every 0.5 s while the shards turn.
  REQUIRE(systemd.WaitFor("WATCHDOG=1", milliseconds(2000), *ready));
  const size_t before = systemd.received().size();
  systemd.Drain(milliseconds(1600));
  CHECK(systemd.CountLine("WATCHDOG=1", before) >= 2);
  CHECK(systemd.CountLine("WATCHDOG=1", before) <= 5);

  // SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1.
  s.WriteConfig("shards: 2\nflush_interval_ms: 200\n");
  klined->Signal(SIGHUP);
  const auto reloading = systemd.WaitFor("RELOADING=1", milliseconds(5000), before);
  REQUIRE_MESSAGE(reloading, systemd.Dump());
  CHECK(NotifyListener::HasLine(systemd.received()[*reloading], "MONOTONIC_USEC=*"));
  const auto reloaded = systemd.WaitFor("READY=1", milliseconds(5000), *reloading);
  REQUIRE(reloaded);
  CHECK(NotifyListener::HasLine(systemd.received()[*reloaded], "STATUS=reloaded; running: *"));

  // SIGTERM: STOPPING=1, then exit 0.
  klined->Terminate();
  REQUIRE(systemd.WaitFor("STOPPING=1", milliseconds(5000), *reloaded));
  const auto st = klined->Wait(milliseconds(30000));
  REQUIRE_MESSAGE(st.has_value(), klined->OutputTail());
  CHECK(st->Code() == 0);
  CHECK(klined->Stderr().find("event=drain.done") != std::string::npos);
}

TEST_CASE("ops: SIGHUP applies reloadable keys, keeps an invalid file out; metrics match") {
  OpsStack s;
  const std::string base = "shards: 1\n";
  s.WriteConfig(base + "flush_interval_ms: 100\n");
  // WATCHDOG_USEC without NOTIFY_SOCKET: pings are no-ops, but each one logs at debug level.
  auto klined = s.Start("klined", {"WATCHDOG_USEC=400000"});
  REQUIRE_MESSAGE(WaitForStderr(*klined, "event=ready", milliseconds(20000)), klined->OutputTail());

  // Trades: 3 symbols x 40, plus one malformed message and one duplicate.
  kt::Producer producer(s.broker.bootstrap());
  const int64_t t0 = WallMs() - 5 * 60000;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT"};
  int produced = 0;
  for (const std::string& sym : symbols) {
    for (int i = 1; i <= 40; ++i, ++produced) {
      producer.Produce("trades", sym, Trade(sym, i, t0 + i * 1000));
    }
  }
  producer.Produce("trades", std::string("ETHUSDT"), Trade("ETHUSDT", 7, t0 + 7000));
  producer.Produce("trades", std::nullopt, "{\"s\":\"BTCUSDT\",\"t\":");
  producer.Flush();

  auto m = s.WaitMetrics(
      [&](const auto& x) {
        return Sum(x, "klined_trades_applied_total") == produced &&
               Sum(x, "klined_trades_duplicate_total") == 1;
      },
      seconds(30));
  CHECK(Sum(m, "klined_trades_applied_total") == produced);
  CHECK(Get(m, "klined_trades_applied_total{shard=\"0\"}") == produced);
  CHECK(Sum(m, "klined_trades_duplicate_total") == 1);
  CHECK(Get(m, "klined_kafka_messages_total") == produced + 2);
  CHECK(Get(m, "klined_trades_consumed_total") == produced + 1);
  CHECK(Get(m, "klined_trades_rejected_total{reason=\"malformed_json\"}") == 1);
  CHECK(Sum(m, "klined_trades_rejected_total") == 1);
  CHECK(Get(m, "klined_symbols{shard=\"0\"}") == 3);
  CHECK(Get(m, "klined_shards") == 1);
  CHECK(Get(m, "klined_ready") == 1);
  {  // The allocator the build chose is the one the process runs on (klined checks it).
    const std::string info =
        std::string("klined_build_info{version=\"") + KLINED_VERSION + "\",allocator=\"" +
        (std::string(KLINED_EXPECT_ALLOCATOR) == "jemalloc" ? "jemalloc 5." : "system\"}");
    int found = 0;
    for (const auto& [series, value] : m) {
      if (!series.starts_with("klined_build_info")) continue;
      ++found;
      CHECK_MESSAGE(series.starts_with(info), series);
      CHECK(value == 1);
    }
    CHECK(found == 1);
  }
  CHECK(Get(m, "klined_config_reloads_total") == 0);
  {  // Threads are named for top -H, perf and gdb (the lease holder runs `timer`).
    const auto threads = kt::ThreadsOf(klined->pid());
    for (const char* want : {"consumer", "shard-0", "flush-0", "timer", "persist"}) {
      CHECK_MESSAGE(threads.count(want) == 1, "no thread named " << want);
    }
  }
  CHECK(Get(m, "klined_config_reload_failures_total") == 0);
  for (const char* family :
       {"klined_persist_bad_entries_total", "klined_persist_repaired_total",
        "klined_persist_quarantined_total", "klined_persist_late_rejected_total",
        "klined_persist_late_duplicates_total"}) {
    CHECK_MESSAGE(Get(m, family) == 0, family);  // exported, nothing bad seen
  }
  CHECK(Get(m, "klined_watchdog_pings_total").value_or(0) >= 1);
  CHECK(Get(m, "klined_watchdog_withheld_total") == 0);
  CHECK(Get(m, "klined_shard_loop_iterations_total{shard=\"0\"}").value_or(0) > 0);
  // Every exported metric is documented.
  const std::string doc = kt::ReadFile(SourceDir() / "docs" / "metrics.md");
  REQUIRE(!doc.empty());
  const std::string text = Scrape(s.metrics_port);
  for (const std::string& name : MetricNames(text, "# TYPE ")) {
    CAPTURE(name);
    CHECK(doc.find("`" + name + "`") != std::string::npos);
  }
  // Redis agrees with the metrics: every symbol's watermark is its last id.
  // (Applied counts in memory; the flush follows within flush_interval_ms.)
  kt::RedisClient rc = s.redis.Connect();
  for (const std::string& sym : symbols) {
    for (int i = 0; i < 50 && rc.Get("kline:{" + sym + "}:wm") != "40"; ++i) {
      std::this_thread::sleep_for(milliseconds(100));
    }
    CHECK(rc.Get("kline:{" + sym + "}:wm") == "40");
  }

  // Before the reload: info level (no debug lines), 100 ms flushes.
  CHECK(klined->Stderr().find("level=debug") == std::string::npos);
  int64_t xrp_id = 1;
  CHECK(FlushesWhileTrading(s, &producer, &xrp_id, milliseconds(1500)) >= 7);

  // Reload: log.level and flush_interval_ms change; shards (restart-only) is reported, kept.
  s.WriteConfig("shards: 3\nflush_interval_ms: 1000\nlog:\n  level: debug\n");
  klined->Signal(SIGHUP);
  REQUIRE_MESSAGE(WaitForStderr(*klined, "event=config.reloaded", milliseconds(5000)),
                  klined->OutputTail());
  CHECK(klined->Stderr().find("event=config.restart_required key=shards") != std::string::npos);
  CHECK(WaitForStderr(*klined, "level=debug event=watchdog.ping shards=1", milliseconds(3000)));
  m = s.Metrics();
  CHECK(Get(m, "klined_config_reloads_total") == 1);
  CHECK(Get(m, "klined_config_last_reload_successful") == 1);
  CHECK(Get(m, "klined_shards") == 1);
  // The flush scheduled at 100 ms has run by now.
  FlushesWhileTrading(s, &producer, &xrp_id, milliseconds(1100));
  const double slow = FlushesWhileTrading(s, &producer, &xrp_id, milliseconds(3000));
  CHECK(slow >= 2);
  CHECK(slow <= 4);

  // An invalid file: the error is logged, the running config stays (still debug, still 1 s).
  kt::WriteFile(s.config, s.Yaml("flush_interval_ms: 5\n"));
  klined->Signal(SIGHUP);
  REQUIRE(WaitForStderr(*klined, "event=config.reload_failed", milliseconds(5000)));
  const std::string line = std::to_string(Count(s.Yaml(""), "\n") + 1);
  CHECK(klined->Stderr().find("event=config.reload_failed error=\"" + s.config.string() + ":" +
                              line +
                              ":20: flush_interval_ms: 5 is out of range 10..60000\" "
                              "detail=\"kept the running config\"") != std::string::npos);
  m = s.Metrics();
  CHECK(Get(m, "klined_config_reload_failures_total") == 1);
  CHECK(Get(m, "klined_config_reloads_total") == 1);
  CHECK(Get(m, "klined_config_last_reload_successful") == 0);
  const size_t debug_lines = Count(klined->Stderr(), "level=debug");
  const double still_slow = FlushesWhileTrading(s, &producer, &xrp_id, milliseconds(2000));
  CHECK(still_slow <= 3);
  CHECK(Count(klined->Stderr(), "level=debug") > debug_lines);

  klined->Terminate();
  const auto st = klined->Wait(milliseconds(30000));
  REQUIRE(st.has_value());
  CHECK(st->Code() == 0);
}

TEST_CASE("ops: SIGTERM while /metrics is scraped in a tight loop exits cleanly") {
  // The scrapers read every collector (shards, consumer, timer jobs) on the exposer's
  // threads; the end of the drain destroys those objects. Under ASan a collector reading a
  // destroyed one is reported (and the exit code is not 0). klined runs on one CPU and
  // several rounds: the window is short (with the timer jobs destroyed before the exposer,
  // ASan reported it in about one round in 10).
  OpsStack s;
  s.WriteConfig("shards: 2\nflush_interval_ms: 50\nlease:\n  ttl_ms: 1000\n");
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    auto klined = s.StartPinned("klined-" + std::to_string(round));
    REQUIRE_MESSAGE(WaitForStderr(*klined, "event=ready", milliseconds(20000)),
                    klined->OutputTail());
    REQUIRE(WaitForStderr(*klined, "event=timer.active", milliseconds(10000)));
    std::atomic<bool> done{false};
    std::atomic<int> scrapes{0};
    std::vector<std::thread> scrapers;
    for (int t = 0; t < 3; ++t) {
      scrapers.emplace_back([&] {
        while (!done.load()) {
          if (!Scrape(s.metrics_port).empty()) scrapes.fetch_add(1);
        }
      });
    }
    while (scrapes.load() < 20) std::this_thread::sleep_for(milliseconds(1));
    klined->Terminate();
    const auto st = klined->Wait(milliseconds(30000));
    done.store(true);
    for (std::thread& t : scrapers) t.join();
    REQUIRE_MESSAGE(st.has_value(), klined->OutputTail());
    CHECK_MESSAGE(st->Code() == 0, klined->OutputTail());
    CHECK_MESSAGE(klined->Stderr().find("AddressSanitizer") == std::string::npos,
                  klined->OutputTail(20000));
    CHECK(klined->Stderr().find("event=drain.done") != std::string::npos);
  }
}

TEST_CASE("ops: Redis ACL user: redis.user + password works; a wrong password is clear") {
  OpsStack s;
  const std::string user = "klined-app", password = "acl-pw-4d1f", wrong = "not-it-93ab";
  {
    kt::RedisClient root = s.redis.Connect();
    auto r = root.Command({"ACL", "SETUSER", user, "on", ">" + password, "~*", "&*", "+@all"});
    REQUIRE(r->type == REDIS_REPLY_STATUS);
    r = root.Command({"ACL", "SETUSER", "default", "off"});  // nobody gets in without a user
    REQUIRE(r->type == REDIS_REPLY_STATUS);
  }
  auto authed = [&] {
    kt::RedisClient c = s.redis.Connect();
    auto r = c.Command({"AUTH", user, password});
    REQUIRE(r->type == REDIS_REPLY_STATUS);
    return c;
  };
  {  // The default user really is off: AUTH with only a password fails.
    kt::RedisClient c = s.redis.Connect();
    CHECK(c.Command({"AUTH", password})->type == REDIS_REPLY_ERROR);
  }

  s.WriteConfig("shards: 1\nflush_interval_ms: 50\n", "redis", "  user: " + user + "\n");
  auto klined = s.Start("klined", {"KLINED_REDIS_PASSWORD=" + password});
  REQUIRE_MESSAGE(WaitForStderr(*klined, "event=ready", milliseconds(20000)), klined->OutputTail());
  kt::Producer producer(s.broker.bootstrap());
  producer.Produce("trades", std::string("BTCUSDT"), Trade("BTCUSDT", 7, WallMs() - 1000));
  producer.Flush();
  kt::RedisClient rc = authed();
  bool landed = false;
  for (int i = 0; i < 300 && !landed; ++i) {
    landed = rc.Get("kline:{BTCUSDT}:wm") == "7";
    if (!landed) std::this_thread::sleep_for(milliseconds(100));
  }
  CHECK_MESSAGE(landed, klined->OutputTail());
  CHECK(Get(s.Metrics(), "klined_lease_held") == 1);  // the timer jobs' connections too
  klined->Terminate();
  auto st = klined->Wait(milliseconds(30000));
  REQUIRE(st.has_value());
  CHECK(st->Code() == 0);
  CHECK(klined->Stderr().find(password) == std::string::npos);
  CHECK(klined->Stdout().find(password) == std::string::npos);
  // klinectl connects the same way.
  for (bool with_user : {true, false}) {
    std::vector<std::string> args = {"--redis", s.redis.address()};
    if (with_user) args.insert(args.end(), {"--redis-user", user});
    args.push_back("symbols");
    kt::Subprocess ctl(BuildDir() + "/src/tools/klinectl/klinectl", args,
                       kt::SubprocessOptions{.log_dir = s.dir.path(),
                                             .name = with_user ? "klinectl" : "klinectl-nouser",
                                             .env = {"KLINED_REDIS_PASSWORD=" + password},
                                             .cwd = {}});
    const auto done = ctl.Wait(milliseconds(10000));
    REQUIRE(done.has_value());
    CAPTURE(ctl.OutputTail());
    if (with_user) {
      CHECK(done->Code() == 0);
      CHECK(ctl.Stdout() == "BTCUSDT\n");
    } else {
      CHECK(done->Code() == 2);
      CHECK(ctl.Stderr().rfind("klinectl: Redis AUTH: ", 0) == 0);
      CHECK(ctl.Stderr().find(password) == std::string::npos);
    }
  }

  // A wrong password: klined waits for Redis, saying why, and never prints the password.
  auto bad = s.Start("klined-wrong", {"KLINED_REDIS_PASSWORD=" + wrong});
  CHECK_MESSAGE(WaitForStderr(*bad,
                              "event=startup.waiting dependency=redis address=" +
                                  s.redis.address() + " error=\"AUTH failed: WRONGPASS",
                              milliseconds(10000)),
                bad->OutputTail());
  CHECK(Get(s.Metrics(), "klined_ready") == 0);
  bad->Terminate();
  st = bad->Wait(milliseconds(10000));
  REQUIRE(st.has_value());
  CHECK(st->Code() == 0);
  CHECK(bad->Stderr().find(wrong) == std::string::npos);
  CHECK(bad->Stdout().find(wrong) == std::string::npos);
}

TEST_CASE("ops: MySQL over TLS: required and verify_ca persist encrypted; failures are clear") {
  OpsStack s(kt::MariaDbOptions{.extra_args = {}, .tls = true});
  auto ssl_accepts = [&] {
    return std::stoll(s.mysql.Query("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")[0][1]);
  };
  REQUIRE(ssl_accepts() == 0);
  kt::Producer producer(s.broker.bootstrap());
  // 1s candles: the lease holder closes one every second (a 1m candle only at a minute
  // boundary), and persistence runs every 200 ms.
  auto write_config = [](OpsStack& stack, const std::string& mysql_keys) {
    stack.WriteConfig("shards: 1\nflush_interval_ms: 50\n", "mysql",
                      mysql_keys + "  persist_interval_ms: 200\n");
    std::string yaml = kt::ReadFile(stack.config);
    const std::string intervals = "intervals: [1m, 5m]";
    yaml.replace(yaml.find(intervals), intervals.size(), "intervals: [1s, 1m]");
    kt::WriteFile(stack.config, yaml);
  };
  auto persists = [&](kt::Subprocess& klined, const std::string& sym) {
    producer.Produce("trades", sym, Trade(sym, 1, WallMs() - 1000));
    producer.Flush();
    const std::string count = "SELECT COUNT(*) FROM kline WHERE symbol='" + sym + "'";
    for (int i = 0; i < 300; ++i) {
      if (s.mysql.Query(count)[0][0] != "0") return true;
      if (!klined.Running()) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return false;
  };
  auto stop = [](kt::Subprocess& klined) {
    klined.Terminate();
    const auto st = klined.Wait(milliseconds(30000));
    REQUIRE(st.has_value());
    CHECK(st->Code() == 0);
  };

  write_config(s, "  ssl_mode: required\n");
  auto required = s.Start("klined-required", {});
  REQUIRE_MESSAGE(WaitForStderr(*required, "event=ready", milliseconds(20000)),
                  required->OutputTail());
  CHECK_MESSAGE(persists(*required, "BTCUSDT"), required->OutputTail());
  CHECK(ssl_accepts() >= 2);  // the startup probe and the persistence worker: nobody else
  stop(*required);

  write_config(s, "  ssl_mode: verify_ca\n  ssl_ca: \"" + s.mysql.ca().string() + "\"\n");
  const long long before = ssl_accepts();
  auto verify = s.Start("klined-verify-ca", {});
  REQUIRE_MESSAGE(WaitForStderr(*verify, "event=ready", milliseconds(20000)), verify->OutputTail());
  CHECK_MESSAGE(persists(*verify, "ETHUSDT"), verify->OutputTail());
  CHECK(ssl_accepts() >= before + 2);
  stop(*verify);

  // A CA that did not sign the server's certificate: klined waits for MySQL and says why.
  kt::TempDir other("klined-other-ca");
  kt::MakeTestCertificates(other.path());
  write_config(s, "  ssl_mode: verify_ca\n  ssl_ca: \"" + (other / "ca.pem").string() + "\"\n");
  auto wrong = s.Start("klined-wrong-ca", {});
  CHECK_MESSAGE(
      WaitForStderr(*wrong, "event=startup.waiting dependency=mysql", milliseconds(10000)),
      wrong->OutputTail());
  CHECK(wrong->Stderr().find("certificate") != std::string::npos);
  stop(*wrong);

  // required against a server that offers no TLS: refused, not silently in the clear.
  OpsStack plain;
  write_config(plain, "  ssl_mode: required\n");
  auto refused = plain.Start("klined-plain", {});
  CHECK_MESSAGE(WaitForStderr(*refused,
                              "event=startup.waiting dependency=mysql address=" +
                                  plain.mysql.host() + ":" + std::to_string(plain.mysql.port()) +
                                  " error=\"TLS required (mysql.ssl_mode required) but the "
                                  "server did not offer it\"",
                              milliseconds(10000)),
                refused->OutputTail());
  stop(*refused);
}

TEST_CASE("ops: secrets appear in no output: --check, a run, its drain") {
  OpsStack s;
  const std::string redis_secret = "redis-secret-5e1d", kafka_secret = "sasl-secret-77c2";
  {
    kt::RedisClient root = s.redis.Connect();
    REQUIRE(root.Command({"CONFIG", "SET", "requirepass", redis_secret})->type ==
            REDIS_REPLY_STATUS);
  }
  // Every secret in the file (OpsStack::Start would pass the MySQL one in the environment).
  std::string yaml = s.Yaml("shards: 1\nflush_interval_ms: 50\nlog:\n  level: debug\n");
  auto insert_after = [&yaml](const std::string& line, const std::string& text) {
    const size_t at = yaml.find(line);
    REQUIRE(at != std::string::npos);
    yaml.insert(at + line.size(), text);
  };
  insert_after("  properties:\n",
               "    sasl.password: \"" + kafka_secret + "\"\n    sasl.username: klined\n");
  insert_after("redis:\n", "  password: \"" + redis_secret + "\"\n");
  insert_after("mysql:\n", "  password: \"" + s.mysql.password() + "\"\n");
  kt::WriteFile(s.config, yaml);
  const std::vector<std::string> secrets = {redis_secret, kafka_secret, s.mysql.password()};
  auto check_clean = [&](kt::Subprocess& p) {
    for (const std::string& secret : secrets) {
      CAPTURE(secret);
      CHECK(p.Stdout().find(secret) == std::string::npos);
      CHECK(p.Stderr().find(secret) == std::string::npos);
    }
  };

  kt::Subprocess check(
      KlinedPath(), {"--config", s.config.string(), "--check"},
      kt::SubprocessOptions{.log_dir = s.dir.path(), .name = "check", .env = {}, .cwd = {}});
  const auto checked = check.Wait(milliseconds(10000));
  REQUIRE(checked.has_value());
  CHECK_MESSAGE(checked->Code() == 0, check.OutputTail());
  check_clean(check);

  // A run at debug level: the start line describes every key (secrets redacted), the
  // dependencies answer, a trade lands, SIGTERM drains.
  auto klined = std::make_unique<kt::Subprocess>(
      KlinedPath(), std::vector<std::string>{"--config", s.config.string()},
      kt::SubprocessOptions{.log_dir = s.dir.path(), .name = "klined", .env = {}, .cwd = {}});
  REQUIRE_MESSAGE(WaitForStderr(*klined, "event=ready", milliseconds(20000)), klined->OutputTail());
  CHECK(klined->Stderr().find("redis.password=<redacted>") != std::string::npos);
  CHECK(klined->Stderr().find("sasl.password: <redacted>") != std::string::npos);
  kt::Producer producer(s.broker.bootstrap());
  producer.Produce("trades", std::string("BTCUSDT"), Trade("BTCUSDT", 3, WallMs() - 1000));
  producer.Flush();
  kt::RedisClient rc = s.redis.Connect();
  REQUIRE(rc.Command({"AUTH", redis_secret})->type == REDIS_REPLY_STATUS);
  bool landed = false;
  for (int i = 0; i < 300 && !landed; ++i) {
    landed = rc.Get("kline:{BTCUSDT}:wm") == "3";
    if (!landed) std::this_thread::sleep_for(milliseconds(100));
  }
  CHECK_MESSAGE(landed, klined->OutputTail());
  klined->Terminate();
  const auto st = klined->Wait(milliseconds(30000));
  REQUIRE(st.has_value());
  CHECK(st->Code() == 0);
  check_clean(*klined);
}

TEST_CASE("ops: systemd unit verifies; install.sh stages into DESTDIR idempotently") {
  const fs::path src = SourceDir();
  kt::TempDir dest("klined-ops-install");
  const std::string install = "DESTDIR=" + dest.path().string() + " " +
                              (src / "scripts" / "install.sh").string() + " " +
                              fs::absolute(BuildDir()).string();
  auto [code, out] = Shell(install);
  REQUIRE_MESSAGE(code == 0, out);
  const fs::path bin = dest / "usr/local/bin/klined";
  const fs::path conf = dest / "etc/klined/klined.yaml";
  const fs::path unit = dest / "etc/systemd/system/klined.service";
  CHECK(access(bin.c_str(), X_OK) == 0);
  CHECK(kt::ReadFile(conf) == kt::ReadFile(src / "config" / "klined.yaml"));
  CHECK(kt::ReadFile(unit) == kt::ReadFile(src / "systemd" / "klined.service"));
  struct stat st {};
  REQUIRE(stat((dest / "etc/klined/env").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(fs::exists(dest / "usr/local/share/doc/klined/metrics.md"));

  // Again, over an edited config: the binary and unit are replaced, the config kept.
  kt::WriteFile(conf, "flush_interval_ms: 250\n");
  std::tie(code, out) = Shell(install);
  REQUIRE_MESSAGE(code == 0, out);
  CHECK(kt::ReadFile(conf) == "flush_interval_ms: 250\n");
  CHECK(kt::ReadFile(dest / "etc/klined/klined.yaml.dist") ==
        kt::ReadFile(src / "config" / "klined.yaml"));
  CHECK(out.find("kept existing") != std::string::npos);

  // systemd-analyze verify needs ExecStart to exist: point the staged unit at the staged binary.
  if (!HasProgram("systemd-analyze")) {
    MESSAGE("systemd-analyze not installed: unit verification skipped");
    return;
  }
  kt::TempDir units("klined-ops-unit");
  std::string text = kt::ReadFile(unit);
  const std::string installed = "/usr/local/bin/klined";
  for (size_t p = text.find(installed); p != std::string::npos;
       p = text.find(installed, p + bin.string().size())) {
    text.replace(p, installed.size(), bin.string());
  }

  kt::WriteFile(units / "klined.service", text);
  std::tie(code, out) = Shell("systemd-analyze verify " + (units / "klined.service").string());
  CHECK_MESSAGE(code == 0, out);
  CHECK_MESSAGE(out == "", out);  // warnings ("ignoring") still exit 0: none allowed

  // The check is not vacuous: an unknown setting is reported.
  kt::WriteFile(units / "klined.service", text + "\n[Service]\nRestart=sometimes\n");
  std::tie(code, out) = Shell("systemd-analyze verify " + (units / "klined.service").string());
  CHECK_MESSAGE(out.find("sometimes") != std::string::npos, out);
}

TEST_CASE("ops: install-deps.sh installs every tool the scripts and the tests call") {
  if (!HasProgram("dpkg-query")) {
    MESSAGE("not a Debian system: check skipped");
    return;
  }
  const std::string deps = kt::ReadFile(SourceDir() / "scripts" / "install-deps.sh");
  const size_t open = deps.find("PACKAGES=(");
  REQUIRE(open != std::string::npos);
  std::set<std::string> listed;
  {
    std::istringstream words(deps.substr(open + 10, deps.find(')', open) - open - 10));
    for (std::string w; words >> w;) listed.insert(w);
  }
  // What apt installs for the list: the packages and everything they depend on.
  std::string names;
  for (const std::string& p : listed) names += " " + p;
  const auto [depends_ok, closure_text] = Shell(
      "apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks "
      "--no-replaces --no-enhances" +
      names);
  REQUIRE_MESSAGE(depends_ok == 0, closure_text);
  std::set<std::string> installed_by_list;
  {
    std::istringstream lines(closure_text);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line[0] != ' ' && line[0] != '<') installed_by_list.insert(line);
    }
  }
  // A package counts if the list brings it or a minimal Debian 12 always has it (Essential,
  // or Priority required: debootstrap --variant=minbase, the debian:12 image).
  auto provided = [&](const std::string& package) {
    if (installed_by_list.contains(package)) return true;
    const auto [code, out] =
        Shell("dpkg-query -W -f='${Essential} ${Priority}' " + package + " 2>/dev/null");
    return code == 0 && (out.starts_with("yes") || out.find("required") != std::string::npos);
  };
  // The programs scripts/*.sh, the Makefile, .ci/run and the tests run (test/support,
  // test/integration), by name.
  for (const char* tool : {"make",         "meson",        "ninja",    "g++",
                           "clang++",      "clang-format", "git",      "pkg-config",
                           "redis-server", "redis-cli",    "mariadbd", "mariadb-install-db",
                           "mariadb",      "python3",      "curl",     "kcat",
                           "openssl",      "column",       "taskset",  "setsid",
                           "timeout",      "awk",          "sed",      "seq",
                           "xargs",        "mktemp",       "ps",       "systemd-analyze",
                           "dpkg-query",   "apt-get"}) {
    CAPTURE(std::string(tool));
    // Where Debian puts it (this machine's PATH may put other copies first).
    std::string owner;
    for (const char* dir : {"/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"}) {
      const std::string path = dir + std::string(tool);
      if (access(path.c_str(), X_OK) != 0) continue;
      const auto [resolved, real] = Shell("readlink -f " + path);
      auto [owned, out] =
          Shell("dpkg -S " + real.substr(0, real.find('\n')) + " || dpkg -S " + path);
      if (resolved == 0 && owned == 0) {
        owner = out;
        break;
      }
    }
    REQUIRE_MESSAGE(!owner.empty(), "no Debian package installs it here");
    std::string package = owner.substr(0, owner.find(':'));
    if (package.find(", ") != std::string::npos) package = package.substr(0, package.find(", "));
    CHECK_MESSAGE(provided(package), "package " << package << " is neither listed nor minimal");
  }
  // Python modules the tests import.
  CHECK_MESSAGE(provided("python3-yaml"), "python3-yaml (the alert rules check imports yaml)");
}

TEST_CASE("ops: alert rules and dashboard parse and name only documented metrics") {
  const fs::path src = SourceDir();
  const std::string doc = kt::ReadFile(src / "docs" / "metrics.md");
  const std::string rules = kt::ReadFile(src / "config" / "alerts.yml");
  const std::string dash = kt::ReadFile(src / "config" / "grafana-dashboard.json");
  REQUIRE(!doc.empty());
  REQUIRE(!rules.empty());
  REQUIRE(!dash.empty());
  for (const std::string* text : {&rules, &dash}) {
    for (std::string n : MetricNames(*text)) {
      // Histogram series: the documented name is the family's.
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string sfx = suffix;
        if (n.size() > sfx.size() && n.compare(n.size() - sfx.size(), sfx.size(), sfx) == 0 &&
            doc.find("`" + n + "`") == std::string::npos) {
          n.resize(n.size() - sfx.size());
        }
      }
      CAPTURE(n);
      CHECK(doc.find("`" + n + "`") != std::string::npos);
    }
  }
  if (!HasProgram("python3")) {
    MESSAGE("python3 not installed: syntax checks skipped");
    return;
  }
  auto [code, out] = Shell("python3 -m json.tool " +
                           (src / "config/grafana-dashboard.json").string() + " >/dev/null");
  CHECK_MESSAGE(code == 0, out);
  if (Shell("python3 -c 'import yaml'").first != 0) {
    MESSAGE("python3 yaml module missing: alert rules syntax check skipped");
    return;
  }
  // Structure of a Prometheus rule file: groups[].rules[] with alert, expr, for, labels,
  // annotations.
  const std::string py =
      "import sys, yaml\n"
      "d = yaml.safe_load(open(sys.argv[1]))\n"
      "n = 0\n"
      "for g in d['groups']:\n"
      "    assert g['name'] and g['rules'], g\n"
      "    for r in g['rules']:\n"
      "        assert set(r) <= {'alert', 'expr', 'for', 'labels', 'annotations'}, r\n"
      "        assert r['alert'] and r['expr'] and r['labels']['severity'], r\n"
      "        assert r['annotations']['summary'], r\n"
      "        n += 1\n"
      "print(n)\n";
  kt::TempDir tmp("klined-ops-py");
  kt::WriteFile(tmp / "check.py", py);
  std::tie(code, out) =
      Shell("python3 " + (tmp / "check.py").string() + " " + (src / "config/alerts.yml").string());
  CHECK_MESSAGE(code == 0, out);
  CHECK(std::atoi(out.c_str()) >= 8);
}
