// klined-tradegen: realistic Binance-style trades to Kafka (keyed by symbol) or NDJSON to
// stdout, for demos, load and soak tests. `klined-tradegen --help` lists the options.
//
// DESIGN
// One thread: Generator (deterministic, see generator.h) -> optional per-symbol batching ->
// sink. Pacing is a token bucket on the wall clock whose rate follows the generator's
// burst/quiet regime; --rate 0 runs flat out. The Kafka sink hands each message to librdkafka
// with RD_KAFKA_MSG_F_COPY: librdkafka then allocates the message header and payload in one
// block, which is cheaper than keeping our own buffers alive until the delivery report (a
// second allocation plus bookkeeping per message). Throughput comes from large linger and
// batch settings. SIGINT/SIGTERM stop generation; queued messages are still delivered and the
// summary line is printed to stderr.
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tools/args.h"
#include "tools/tradegen/generator.h"

namespace tg = klined::tradegen;

namespace {

// SIGINT/SIGTERM count: the first stops generation, the second gives up on deliveries.
std::atomic<int> g_signals{0};
void OnSignal(int) { g_signals.fetch_add(1, std::memory_order_relaxed); }
bool Stopped() { return g_signals.load(std::memory_order_relaxed) > 0; }
// After a stop signal, queued messages get this long to be delivered (a demo's Ctrl-C must
// not hang on a broker that is already gone).
constexpr auto kStopFlushTimeout = std::chrono::seconds(5);

constexpr const char* kUsage = R"(usage: klined-tradegen [options]
Generates trades ({"e":"trade","E":..,"s":..,"t":..,"p":"..","q":"..","T":..,"m":..}).

Output (one of):
  --brokers LIST        Kafka bootstrap servers (default 127.0.0.1:9092)
  --topic NAME          Kafka topic (default trades); messages are keyed by symbol
  --stdout              write NDJSON to stdout instead (one message per line)
Load:
  --symbols N           number of symbols (default 20): BTCUSDT ETHUSDT ... then SYM0016USDT ...
  --zipf S              Zipf exponent of symbol popularity (default 1.0; 0 = uniform)
  --rate R              trades per second, token bucket (default 1000); 0 = flat out
  --duration S          stop after S seconds (may be fractional)
  --count N             stop after N good trades
  --batch K             K trades of one symbol per message, as a JSON array (default 1)
  --no-bursts           constant rate. Default: regimes of normal (0.93x), burst (3.7x) and
                        quiet (0.14x) rate lasting seconds each; --rate is their long-run
                        mean, so a run of a few seconds may be well off it
Determinism:
  --seed N              RNG seed (default 1): the same seed gives the same trades, apart from
                        the wall-clock fields E and T
  --time-start MS       simulated clock starting at MS (ms since the epoch) advancing at
                        --rate (1000/s when --rate 0): output fully identical per seed
  --start-id N          first trade id of every symbol (default 1)
Faults (fractions of good trades):
  --dup-rate F          re-send a symbol's latest trade
  --malformed-rate F    bad messages (truncated JSON, missing field, bad symbol, q=0, ...)
  --late-rate F         trade time before the start of its minute (ids still increase)
Other:
  --emit-expected FILE  write the good trades (no duplicates, no malformed) as NDJSON
  --linger-ms N         librdkafka linger.ms (default 5, or 50 with --rate 0)
  --compression C       librdkafka compression.codec (default none)
  -X KEY=VALUE          any librdkafka producer property (repeatable)
  --help
A summary line goes to stderr at the end: trades, messages, faults, seconds, rate.
)";

struct Options {
  std::string brokers = "127.0.0.1:9092";
  std::string topic = "trades";
  bool to_stdout = false;
  double rate = 1000;
  double duration_s = -1;
  int64_t count = -1;
  int batch = 1;
  int linger_ms = -1;
  std::string compression = "none";
  std::string emit_expected;
  std::map<std::string, std::string> properties;
  tg::GeneratorOptions gen;
};

[[noreturn]] void Fail(const std::string& msg) { klined::tools::ExitUsage("klined-tradegen", msg); }

Options ParseArgs(int argc, char** argv) {
  Options o;
  klined::tools::ArgWalker args("klined-tradegen", argc, argv);
  while (args.Next()) {
    const std::string& arg = args.name();
    auto next = [&] { return args.Value(); };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--brokers") {
      o.brokers = next();
    } else if (arg == "--topic") {
      o.topic = next();
    } else if (arg == "--stdout") {
      o.to_stdout = true;
    } else if (arg == "--symbols") {
      o.gen.symbols = static_cast<int>(args.Int(1, 1000000));
    } else if (arg == "--zipf") {
      o.gen.zipf_s = args.Number(0, 10);
    } else if (arg == "--rate") {
      o.rate = args.Number(0, 1e9);
    } else if (arg == "--duration") {
      o.duration_s = args.Number(0, 1e9);
    } else if (arg == "--count") {
      o.count = args.Int(0, INT64_MAX);
    } else if (arg == "--batch") {
      o.batch = static_cast<int>(args.Int(1, 100000));
    } else if (arg == "--no-bursts") {
      o.gen.bursts = false;
    } else if (arg == "--seed") {
      o.gen.seed = static_cast<uint64_t>(args.Int(0, INT64_MAX));
    } else if (arg == "--time-start") {
      o.gen.time_start_ms = args.Int(0, int64_t{1} << 50);
    } else if (arg == "--start-id") {
      o.gen.start_id = args.Int(1, int64_t{1} << 62);
    } else if (arg == "--dup-rate") {
      o.gen.dup_rate = args.Number(0, 1);
    } else if (arg == "--malformed-rate") {
      o.gen.malformed_rate = args.Number(0, 1);
    } else if (arg == "--late-rate") {
      o.gen.late_rate = args.Number(0, 1);
    } else if (arg == "--emit-expected") {
      o.emit_expected = next();
    } else if (arg == "--linger-ms") {
      o.linger_ms = static_cast<int>(args.Int(0, 900000));
    } else if (arg == "--compression") {
      o.compression = next();
    } else if (arg == "-X" || arg == "--property") {
      const std::string kv = next();
      const auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) Fail("-X expects KEY=VALUE, got '" + kv + "'");
      o.properties[kv.substr(0, eq)] = kv.substr(eq + 1);
    } else {
      Fail("unknown argument '" + args.raw() + "' (see --help)");
    }
  }
  o.gen.sim_rate = o.rate > 0 ? o.rate : 1000;
  if (o.linger_ms < 0) o.linger_ms = o.rate > 0 ? 5 : 50;
  return o;
}

int64_t WallMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Where messages go. Send() may block briefly (a full producer queue); keys are symbols.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void Send(std::string_view key, std::string_view value) = 0;
  // Waits for everything sent; returns the number of messages that failed.
  virtual int64_t Finish() = 0;
};

class StdoutSink final : public Sink {
 public:
  StdoutSink() { std::setvbuf(stdout, nullptr, _IOFBF, 1 << 20); }
  void Send(std::string_view, std::string_view value) override {
    std::fwrite(value.data(), 1, value.size(), stdout);
    std::fputc('\n', stdout);
  }
  int64_t Finish() override { return std::fflush(stdout) == 0 ? 0 : 1; }
};

class KafkaSink final : public Sink {
 public:
  explicit KafkaSink(const Options& o) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    std::map<std::string, std::string> props = {
        {"bootstrap.servers", o.brokers},
        {"linger.ms", std::to_string(o.linger_ms)},
        {"batch.num.messages", "100000"},
        {"batch.size", "1000000"},
        {"queue.buffering.max.messages", "2000000"},
        {"queue.buffering.max.kbytes", "1048576"},
        {"compression.codec", o.compression},
        // Like the Java client: a symbol lands on the same partition as with other producers.
        {"partitioner", "murmur2_random"},
        // A broker that is gone fails the queued messages within 30 s (default 300 s).
        {"message.timeout.ms", "30000"},
    };
    for (const auto& [k, v] : o.properties) props[k] = v;
    for (const auto& [k, v] : props) {
      if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        Fail("kafka property " + k + "=" + v + ": " + err);
      }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, &KafkaSink::OnDelivery);
    rd_kafka_conf_set_opaque(conf, this);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk_ == nullptr) Fail(std::string("cannot create Kafka producer: ") + err);
    rkt_ = rd_kafka_topic_new(rk_, o.topic.c_str(), nullptr);
    if (rkt_ == nullptr) Fail("cannot create topic handle " + o.topic);
    if (o.rate == 0) group_ = 256;
  }
  ~KafkaSink() override {
    rd_kafka_topic_destroy(rkt_);
    rd_kafka_destroy(rk_);
  }

  void Send(std::string_view key, std::string_view value) override {
    pending_.push_back({arena_.size(), key.size(), value.size()});
    arena_.append(key);
    arena_.append(value);
    if (pending_.size() >= group_) Submit();
  }

  // Hands the pending messages to librdkafka in one rd_kafka_produce_batch call (one topic
  // lock instead of one per message), retrying those refused with a full queue.
  void Submit() {
    msgs_.clear();
    for (const Pending& p : pending_) {
      rd_kafka_message_t m{};
      m.partition = RD_KAFKA_PARTITION_UA;
      m.key = arena_.data() + p.offset;
      m.key_len = p.key_len;
      m.payload = arena_.data() + p.offset + p.key_len;
      m.len = p.value_len;
      msgs_.push_back(m);
    }
    size_t first = 0;
    while (first < msgs_.size()) {
      const int n = static_cast<int>(msgs_.size() - first);
      const int ok = rd_kafka_produce_batch(rkt_, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                            msgs_.data() + first, n);
      if (ok == n) break;
      // Keep order: resubmit from the first refused message on.
      size_t i = first;
      while (i < msgs_.size() && msgs_[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) ++i;
      if (i < msgs_.size() && msgs_[i].err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        Fail(std::string("produce failed: ") + rd_kafka_err2str(msgs_[i].err));
      }
      for (size_t j = i; j < msgs_.size(); ++j) msgs_[j].err = RD_KAFKA_RESP_ERR_NO_ERROR;
      first = i;
      if (g_signals.load() > 1) {  // asked twice to stop: drop what the queue cannot take
        failed_ += static_cast<int64_t>(msgs_.size() - first);
        break;
      }
      rd_kafka_poll(rk_, 5);  // queue full: let deliveries drain
    }
    since_poll_ += pending_.size();
    if (since_poll_ >= 1024) {
      since_poll_ = 0;
      rd_kafka_poll(rk_, 0);
    }
    pending_.clear();
    arena_.clear();
  }

  int64_t Finish() override {
    Submit();
    const auto stop_deadline = std::chrono::steady_clock::now() + kStopFlushTimeout;
    while (rd_kafka_outq_len(rk_) > 0) {
      if (rd_kafka_flush(rk_, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (g_signals.load() > 1 || (Stopped() && std::chrono::steady_clock::now() > stop_deadline)) {
        std::fprintf(stderr, "klined-tradegen: stopped: %d messages not delivered\n",
                     rd_kafka_outq_len(rk_));
        break;
      }
      std::fprintf(stderr, "klined-tradegen: waiting for %d messages to be delivered\n",
                   rd_kafka_outq_len(rk_));
    }
    const int left = rd_kafka_outq_len(rk_);
    if (failed_ > 0) {
      std::fprintf(stderr, "klined-tradegen: %lld messages failed, first error: %s\n",
                   static_cast<long long>(failed_), first_error_.c_str());
    }
    return failed_ + left;
  }

 private:
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<KafkaSink*>(opaque);
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (self->failed_++ == 0) self->first_error_ = rd_kafka_err2str(m->err);
    }
  }

  rd_kafka_t* rk_ = nullptr;
  rd_kafka_topic_t* rkt_ = nullptr;
  struct Pending {
    size_t offset, key_len, value_len;  // key then value, in arena_
  };
  // Messages are grouped only when running flat out: paced runs send each one at once.
  size_t group_ = 1;
  std::vector<Pending> pending_;
  std::string arena_;
  std::vector<rd_kafka_message_t> msgs_;
  size_t since_poll_ = 0;
  int64_t failed_ = 0;  // delivery callbacks run on this thread (inside poll/flush)
  std::string first_error_;
};

// Per-symbol JSON arrays of up to K trades: one symbol per message keeps the key (and so the
// partition and id order) right. A batch older than kMaxBatchAgeMs of trade-generation time
// (wall clock, or the simulated clock, which keeps the output deterministic) is sent early.
class Batcher {
 public:
  static constexpr int64_t kMaxBatchAgeMs = 100;

  Batcher(Sink* sink, const tg::Generator& gen, int k)
      : sink_(sink), gen_(gen), k_(k), bufs_(gen.symbols().size()) {}

  void Add(const tg::GenTrade& t, int64_t* messages) {
    Buf& b = bufs_[static_cast<size_t>(t.symbol)];
    if (b.n == 0) {
      b.text.assign("[");
      b.first_ms = t.event_ms;
      open_.push_back(t.symbol);
    } else {
      b.text.push_back(',');
    }
    gen_.AppendJson(t, &b.text);
    if (++b.n >= k_) Send(t.symbol, messages);
  }

  // Sends batches older than kMaxBatchAgeMs at `now_ms`.
  void SendAged(int64_t now_ms, int64_t* messages) {
    if (now_ms - last_check_ms_ < kMaxBatchAgeMs / 4) return;
    last_check_ms_ = now_ms;
    for (size_t i = 0; i < open_.size();) {
      const Buf& b = bufs_[static_cast<size_t>(open_[i])];
      if (b.n > 0 && now_ms - b.first_ms >= kMaxBatchAgeMs) {
        Send(open_[i], messages);  // removes open_[i]
      } else if (b.n == 0) {
        open_[i] = open_.back();
        open_.pop_back();
      } else {
        ++i;
      }
    }
  }

  void SendAll(int64_t* messages) {
    for (int sym : open_) {
      if (bufs_[static_cast<size_t>(sym)].n > 0) SendOne(sym, messages);
    }
    open_.clear();
  }

 private:
  struct Buf {
    std::string text;
    int n = 0;
    int64_t first_ms = 0;
  };
  void SendOne(int sym, int64_t* messages) {
    Buf& b = bufs_[static_cast<size_t>(sym)];
    b.text.push_back(']');
    sink_->Send(gen_.symbols()[static_cast<size_t>(sym)].name, b.text);
    ++*messages;
    b.n = 0;
  }
  void Send(int sym, int64_t* messages) {
    SendOne(sym, messages);
    for (size_t i = 0; i < open_.size(); ++i) {
      if (open_[i] == sym) {
        open_[i] = open_.back();
        open_.pop_back();
        break;
      }
    }
  }

  Sink* sink_;
  const tg::Generator& gen_;
  int k_;
  std::vector<Buf> bufs_;
  std::vector<int> open_;  // symbols with a non-empty batch (order: first trade)
  int64_t last_check_ms_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseArgs(argc, argv);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<Sink> sink;
  if (o.to_stdout) {
    sink = std::make_unique<StdoutSink>();
  } else {
    sink = std::make_unique<KafkaSink>(o);
  }
  FILE* expected = nullptr;
  if (!o.emit_expected.empty()) {
    expected = std::fopen(o.emit_expected.c_str(), "w");
    if (expected == nullptr) Fail("cannot write " + o.emit_expected + ": " + std::strerror(errno));
    std::setvbuf(expected, nullptr, _IOFBF, 1 << 20);
  }

  tg::Generator gen(o.gen);
  Batcher batcher(sink.get(), gen, o.batch);
  tg::GenTrade t;
  std::string msg;
  int64_t trades = 0, messages = 0, dups = 0, malformed = 0, late = 0;

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto last_refill = start;
  double tokens = 0;
  int64_t wall_ms = WallMs();
  uint64_t events = 0;
  const bool paced = o.rate > 0;

  while (!Stopped()) {
    if (o.count >= 0 && trades >= o.count) break;
    // Clock reads are amortised when flat out; paced runs read them per trade.
    if (paced || (events & 15) == 0) {
      wall_ms = WallMs();
      if (o.duration_s >= 0 &&
          std::chrono::duration<double>(Clock::now() - start).count() >= o.duration_s) {
        break;
      }
    }
    ++events;
    if (paced) {
      const auto now = Clock::now();
      const double r = o.rate * gen.RateFactor();
      tokens += std::chrono::duration<double>(now - last_refill).count() * r;
      last_refill = now;
      tokens = std::min(tokens, std::max(1.0, r * 0.01));  // at most 10 ms of burst
      if (tokens < 1) {
        const double wait_s = std::min((1 - tokens) / r, 0.05);
        std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
        if (o.batch > 1) batcher.SendAged(gen.simulated_clock() ? t.event_ms : WallMs(), &messages);
        continue;
      }
      tokens -= 1;
    }

    gen.Next(wall_ms, &t);
    const std::string& key = gen.symbols()[static_cast<size_t>(t.symbol)].name;
    if (t.kind != tg::Kind::kTrade) {
      (t.kind == tg::Kind::kDuplicate ? dups : malformed)++;
      sink->Send(key, t.text);
      ++messages;
      continue;
    }
    ++trades;
    late += t.late;
    if (expected != nullptr) {
      msg.clear();
      gen.AppendJson(t, &msg);
      msg.push_back('\n');
      std::fwrite(msg.data(), 1, msg.size(), expected);
    }
    if (o.batch > 1) {
      batcher.Add(t, &messages);
      batcher.SendAged(t.event_ms, &messages);
    } else {
      msg.clear();
      gen.AppendJson(t, &msg);
      sink->Send(key, msg);
      ++messages;
    }
  }
  batcher.SendAll(&messages);
  const double gen_s = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t failed = sink->Finish();
  int rc = failed == 0 ? 0 : 1;
  if (expected != nullptr && std::fclose(expected) != 0) {
    std::fprintf(stderr, "klined-tradegen: writing %s failed\n", o.emit_expected.c_str());
    rc = 1;
  }
  const double total_s = std::chrono::duration<double>(Clock::now() - start).count();
  std::fprintf(stderr,
               "tradegen: trades=%lld messages=%lld duplicates=%lld malformed=%lld late=%lld "
               "failed=%lld seconds=%.3f rate=%.0f trades/s (generation %.3f s, %.0f trades/s)\n",
               static_cast<long long>(trades), static_cast<long long>(messages),
               static_cast<long long>(dups), static_cast<long long>(malformed),
               static_cast<long long>(late), static_cast<long long>(failed), total_s,
               total_s > 0 ? static_cast<double>(trades) / total_s : 0.0, gen_s,
               gen_s > 0 ? static_cast<double>(trades) / gen_s : 0.0);
  return rc;
}
