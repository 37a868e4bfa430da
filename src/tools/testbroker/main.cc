// klined-testbroker: an in-process Kafka cluster for integration tests.
//
// DESIGN: librdkafka ships a mock cluster (rdkafka_mock.h) that speaks the real
// Kafka wire protocol on loopback: produce, fetch, metadata, consumer groups with
// offset commits, idempotent/transactional producers. This tool wraps it in a
// process so tests can start, stop, SIGSTOP and SIGKILL "Kafka" like any other
// dependency. Everything lives in memory and dies with the process.
//
// Protocol with the caller: exactly one line `BOOTSTRAP=host:port,...` on stdout
// once every requested topic exists, then nothing more on stdout. SIGTERM/SIGINT
// exit 0; the handler only sets a flag, the main loop does the work.
//
// Limits of the mock in librdkafka 2.0.2 (see test/integration/README.md):
// each partition keeps about 5 MiB, older segments are dropped (the low watermark
// moves); a topic not created here is auto-created with 4 partitions by the first
// request naming it; a group's first join takes 3 s.

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

volatile std::sig_atomic_t g_stop = 0;

void OnStopSignal(int) { g_stop = 1; }

constexpr const char* kUsage =
    "usage: klined-testbroker [--brokers N] [--topic NAME:PARTITIONS]... [-X key=value]...\n"
    "\n"
    "Starts a librdkafka mock Kafka cluster on 127.0.0.1 (ephemeral ports), creates\n"
    "the given topics, prints one line BOOTSTRAP=<host:port,...> to stdout and runs\n"
    "until SIGTERM or SIGINT (exit 0).\n"
    "\n"
    "  --brokers N              number of mock brokers (default 1)\n"
    "  --topic NAME:PARTITIONS  create topic NAME with PARTITIONS partitions; repeatable\n"
    "  --replication R          replication factor of created topics (default min(3, N))\n"
    "  -X key=value             librdkafka property on the cluster's owner handle,\n"
    "                           e.g. -X log_level=7 -X debug=mock\n"
    "  --help                   this text\n";

struct TopicSpec {
  std::string name;
  int partitions = 0;
};

struct Options {
  int brokers = 1;
  int replication = 0;  // 0 = min(3, brokers)
  std::vector<TopicSpec> topics;
  std::vector<std::pair<std::string, std::string>> properties;
};

bool ParseInt(std::string_view s, int lo, int hi, int* out) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// Returns 0 on success, 1 after printing an error, 2 when --help was printed.
int ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view flag) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "klined-testbroker: %.*s needs a value\n", int(flag.size()),
                     flag.data());
        return nullptr;
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 2;
    } else if (a == "--brokers") {
      const char* v = value(a);
      if (!v) return 1;
      if (!ParseInt(v, 1, 64, &o->brokers)) {
        std::fprintf(stderr, "klined-testbroker: --brokers wants 1..64, got '%s'\n", v);
        return 1;
      }
    } else if (a == "--replication") {
      const char* v = value(a);
      if (!v) return 1;
      if (!ParseInt(v, 1, 64, &o->replication)) {
        std::fprintf(stderr, "klined-testbroker: --replication wants 1..64, got '%s'\n", v);
        return 1;
      }
    } else if (a == "--topic") {
      const char* v = value(a);
      if (!v) return 1;
      std::string_view spec = v;
      auto colon = spec.rfind(':');
      TopicSpec t;
      if (colon == std::string_view::npos || colon == 0 ||
          !ParseInt(spec.substr(colon + 1), 1, 10000, &t.partitions)) {
        std::fprintf(stderr, "klined-testbroker: --topic wants NAME:PARTITIONS, got '%s'\n", v);
        return 1;
      }
      t.name = std::string(spec.substr(0, colon));
      o->topics.push_back(std::move(t));
    } else if (a == "-X") {
      const char* v = value(a);
      if (!v) return 1;
      std::string_view kv = v;
      auto eq = kv.find('=');
      if (eq == std::string_view::npos || eq == 0) {
        std::fprintf(stderr, "klined-testbroker: -X wants key=value, got '%s'\n", v);
        return 1;
      }
      o->properties.emplace_back(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    } else {
      std::fprintf(stderr, "klined-testbroker: unknown argument '%s' (see --help)\n", argv[i]);
      return 1;
    }
  }
  if (o->replication > o->brokers) {
    std::fprintf(stderr, "klined-testbroker: --replication %d exceeds --brokers %d\n",
                 o->replication, o->brokers);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (int rc = ParseArgs(argc, argv, &opt); rc != 0) return rc == 2 ? 0 : 1;

  // Install handlers before any librdkafka thread exists so every thread inherits
  // the same disposition; whichever thread takes the signal only sets the flag.
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The owner handle never talks to a broker itself; keep its logs to real problems.
  rd_kafka_conf_set(conf, "log_level", "4", nullptr, 0);
  for (const auto& [k, v] : opt.properties) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "klined-testbroker: -X %s=%s: %s\n", k.c_str(), v.c_str(), err);
      rd_kafka_conf_destroy(conf);
      return 1;
    }
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (!rk) {
    std::fprintf(stderr, "klined-testbroker: rd_kafka_new: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  rd_kafka_mock_cluster_t* mc = rd_kafka_mock_cluster_new(rk, opt.brokers);
  if (!mc) {
    std::fprintf(stderr, "klined-testbroker: rd_kafka_mock_cluster_new failed\n");
    rd_kafka_destroy(rk);
    return 1;
  }
  int replication = opt.replication > 0 ? opt.replication : (opt.brokers < 3 ? opt.brokers : 3);
  for (const auto& t : opt.topics) {
    rd_kafka_resp_err_t e =
        rd_kafka_mock_topic_create(mc, t.name.c_str(), t.partitions, replication);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "klined-testbroker: create topic %s:%d: %s\n", t.name.c_str(),
                   t.partitions, rd_kafka_err2str(e));
      rd_kafka_mock_cluster_destroy(mc);
      rd_kafka_destroy(rk);
      return 1;
    }
  }

  std::printf("BOOTSTRAP=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
  std::fflush(stdout);
  std::fprintf(stderr, "klined-testbroker: %d broker(s), %zu topic(s) created, running\n",
               opt.brokers, opt.topics.size());

  // The mock cluster runs on its own thread; this one only waits for the flag.
  while (!g_stop) {
    struct timespec ts {
      0, 50 * 1000 * 1000
    };
    nanosleep(&ts, nullptr);
  }

  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  std::fprintf(stderr, "klined-testbroker: stopped\n");
  return 0;
}
