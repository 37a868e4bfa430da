// WebSocket fan-out of the market-data API against the real stack (klined with every role,
// redis-server, mariadbd, the test broker), in one run:
//   --connections clients, each on /stream with 3 kline streams (1s, 1m, 5m) of symbols spread
//   over --symbols, while --rate trades/s are produced for --seconds;
//   latency: a candle written to Redis -> its frame received. A reference subscriber in this
//   process (SSUBSCRIBE on every symbol's channel) stamps each published candle when Redis
//   hands it out; each frame is matched to it by (symbol, interval, open time, trade count);
//   the difference, on one clock, is the latency (both sides share the machine);
//   closes: every 1s bucket that closed during the window must reach every client streaming
//   it (each symbol has a 1s close every second: the rollover closes empty candles too);
//   memory: klined's RSS after the connections opened minus before, per connection;
//   one stalled client (stops reading): it must be disconnected while the others' p99 holds.
// Usage: ws_bench [--connections N] [--symbols S] [--rate R] [--seconds T] [--partitions P]
//                 [--flush-ms F] [--api-threads A] [--baseline 1]
// --baseline 1: the same clients against a bare Beast WebSocket server pushing frames of the
// same size at the same rate (ServeBaseline): the library's ceiling on this machine.
// Needs KLINED_BUILD (the build dir).
#include <hiredis/hiredis.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "bench_util.h"
#include "http_get.h"
#include "kafka_broker.h"
#include "mariadb_server.h"
#include "redis_server.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace kt = klined::test;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

struct Options {
  int connections = 10000;
  int symbols = 1000;
  int rate = 100000;
  int seconds = 20;
  int partitions = 64;
  int flush_ms = 333;  // klined's default flush interval: each symbol is pushed at most this often
  int api_threads = 1;
  int baseline = 0;  // 1: only the baseline server (RunBaseline), no klined
};

const char* const kIntervals[] = {"1s", "1m", "5m"};

std::string Sym(int i) { return "S" + std::to_string(i) + "USDT"; }

double NowUs() {
  return std::chrono::duration<double, std::micro>(Clock::now().time_since_epoch()).count();
}

// The value of "k":<value> in a flat JSON object (numbers and strings, no nesting needed).
std::string_view Field(std::string_view json, std::string_view k) {
  const std::string key = "\"" + std::string(k) + "\":";
  size_t at = json.find(key);
  if (at == std::string_view::npos) return {};
  at += key.size();
  if (at < json.size() && json[at] == '"') {
    const size_t end = json.find('"', at + 1);
    return json.substr(at + 1, end - at - 1);
  }
  size_t end = at;
  while (end < json.size() && json[end] != ',' && json[end] != '}') ++end;
  return json.substr(at, end - at);
}

// Published candles, stamped when the reference subscriber got them. One candle can be
// published more than once unchanged (a symbol flushed again with the candle as it was): a
// frame is matched to the latest publish of its candle at or before its receipt.
class Reference {
 public:
  void Add(std::string key, double us) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<double>& v = stamps_[std::move(key)];
    if (!v.empty()) ++repeats;
    v.push_back(us);
  }
  std::optional<double> Find(const std::string& key, double received_us) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = stamps_.find(key);
    if (it == stamps_.end()) return std::nullopt;
    std::optional<double> best;
    for (double us : it->second) {
      if (us <= received_us && (!best || us > *best)) best = us;
    }
    return best;
  }
  void Prune(double older_than_us) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = stamps_.begin(); it != stamps_.end();) {
      it = it->second.back() < older_than_us ? stamps_.erase(it) : std::next(it);
    }
  }
  uint64_t repeats = 0;

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::vector<double>> stamps_;
};

// A published candle: an empty bucket is published twice with the same count (as the new
// current, then closed), and so is a traded one (its last flush, then its close): x tells.
std::string KeyOf(std::string_view sym, std::string_view iv, std::string_view t, std::string_view n,
                  std::string_view x) {
  std::string k(x);
  k += '|';
  k += sym;
  k += '|';
  k += iv;
  k += '|';
  k += t;
  k += '|';
  k += n;
  return k;
}

struct Stats {
  std::mutex mu;
  std::vector<double> latencies_ms;                // in the window
  std::vector<std::pair<double, double>> by_time;  // (received us, latency ms), sampled
  uint64_t frames = 0, unmatched = 0;
  // (client, symbol) -> 1s open times received closed, in the window
  std::map<std::pair<int, std::string>, std::set<int64_t>> closes;

  // A frame received at `us`, sent (or published) at `from_us`. With mu held.
  void AddLatency(double us, double from_us) {
    latencies_ms.push_back((us - from_us) / 1000.0);
    if (latencies_ms.size() % 16 == 0) by_time.emplace_back(us, latencies_ms.back());
  }
};

// One client: /stream with its streams, reading every frame (unless stalled).
class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(net::io_context& ioc, int id, std::vector<std::string> symbols, bool stalled,
         Reference* ref, Stats* stats, const std::atomic<bool>* measuring)
      : ws_(ioc),
        baseline_(ref == nullptr),
        id_(id),
        symbols_(std::move(symbols)),
        stalled_(stalled),
        ref_(ref),
        stats_(stats),
        measuring_(measuring) {}

  void Start(const tcp::endpoint& ep, std::atomic<int>* open, std::atomic<int>* failed) {
    auto self = shared_from_this();
    beast::get_lowest_layer(ws_).async_connect(ep, [self, ep, open, failed](beast::error_code ec) {
      if (ec) return void(failed->fetch_add(1));
      std::string target = "/stream?streams=";
      for (size_t i = 0; i < self->symbols_.size(); ++i) {
        if (i > 0) target += '/';
        std::string lower = self->symbols_[i];
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        // The stalled client streams many 1s candles: its queue fills within seconds.
        target += lower + "@kline_" + (self->stalled_ ? "1s" : kIntervals[i % 3]);
      }
      self->ws_.async_handshake("127.0.0.1:" + std::to_string(ep.port()), target,
                                [self, open, failed](beast::error_code ec2) {
                                  if (ec2) return void(failed->fetch_add(1));
                                  open->fetch_add(1);
                                  if (!self->stalled_) self->Read();
                                });
    });
  }
  bool closed() const { return closed_.load(); }
  void Close() { beast::get_lowest_layer(ws_).close(); }

 private:
  void Read() {
    auto self = shared_from_this();
    ws_.async_read(buf_, [self](beast::error_code ec, size_t) {
      if (ec) {
        self->closed_.store(true);
        return;
      }
      self->OnFrame(beast::buffers_to_string(self->buf_.data()), NowUs());
      self->buf_.consume(self->buf_.size());
      self->Read();
    });
  }
  void OnFrame(const std::string& frame, double us) {
    if (!measuring_->load(std::memory_order_relaxed)) return;
    if (baseline_) {  // the baseline server's frames carry their send time (us) in E
      const double sent = std::atof(std::string(Field(frame, "E")).c_str());
      std::lock_guard<std::mutex> lock(stats_->mu);
      ++stats_->frames;
      stats_->AddLatency(us, sent);
      return;
    }
    const size_t k = frame.find("\"k\":{");
    if (k == std::string::npos) return;
    const std::string_view body(frame.data() + k + 4, frame.size() - k - 4);
    const std::string_view sym = Field(body, "s"), iv = Field(body, "i"), t = Field(body, "t");
    const std::optional<double> stamp =
        ref_->Find(KeyOf(sym, iv, t, Field(body, "n"), Field(body, "x")), us);
    std::lock_guard<std::mutex> lock(stats_->mu);
    ++stats_->frames;
    if (stamp) {
      stats_->AddLatency(us, *stamp);
    } else {
      ++stats_->unmatched;
    }
    if (iv == "1s" && Field(body, "x") == "true") {
      stats_->closes[{id_, std::string(sym)}].insert(std::atoll(std::string(t).c_str()));
    }
  }

  websocket::stream<beast::tcp_stream> ws_;
  bool baseline_;  // no reference: frames from the baseline server
  beast::flat_buffer buf_;
  int id_;
  std::vector<std::string> symbols_;
  bool stalled_;
  Reference* ref_;
  Stats* stats_;
  const std::atomic<bool>* measuring_;
  std::atomic<bool> closed_{false};
};

long RssKiB(int pid) { return std::atol(klined::bench::ProcStatus(pid, "VmRSS").c_str()); }

// CPU seconds of each thread of `pid`, by thread name (summed over threads of one name).
std::map<std::string, double> ThreadCpu(int pid) {
  std::map<std::string, double> out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream in(e.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::string name = stat.substr(open + 1, close - open - 1);
    if (name.rfind("rdk:", 0) == 0) name = "rdk:*";
    if (name.rfind("civetweb", 0) == 0) name = "civetweb*";
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::atof(field.c_str());
      if (i == 15) stime = std::atof(field.c_str());
    }
    out[name] += (utime + stime) / tick;
  }
  return out;
}

double ProcessCpu(int pid) {
  double sum = 0;
  for (const auto& [name, s] : ThreadCpu(pid)) sum += s;
  return sum;
}

// Every client (and one stalled one) connected to the server at `port`; their I/O thread.
// Connection c streams symbols 3c, 3c+1, 3c+2 (mod S), one interval each.
struct Clients {
  Clients(const Options& o, int port, Reference* ref, Stats* stats,
          const std::atomic<bool>* measuring) {
    const tcp::endpoint ep(net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port));
    for (int c = 0; c <= o.connections; ++c) {
      const bool stalled = c == o.connections;  // the last one never reads
      std::vector<std::string> syms;
      for (int k = 0; k < (stalled ? std::min(200, o.symbols) : 3); ++k) {
        syms.push_back(Sym((3 * c + k) % o.symbols));
      }
      clients.push_back(std::make_shared<Client>(ioc, c, syms, stalled, ref, stats, measuring));
    }
    io = std::thread([this] {
      pthread_setname_np(pthread_self(), "ws-clients");
      auto guard = net::make_work_guard(ioc);
      ioc.run();
    });
    const auto open_start = Clock::now();
    for (auto& c : clients) {
      net::post(ioc, [this, c, ep] { c->Start(ep, &open, &failed); });
      // Accept backlog: pace the connects a little.
      if ((&c - clients.data()) % 500 == 499) std::this_thread::sleep_for(milliseconds(50));
    }
    while (open.load() + failed.load() < static_cast<int>(clients.size()) &&
           Clock::now() < open_start + seconds(120)) {
      std::this_thread::sleep_for(milliseconds(100));
    }
    open_seconds = std::chrono::duration<double>(Clock::now() - open_start).count();
    std::this_thread::sleep_for(seconds(1));
  }
  net::io_context ioc;
  std::vector<std::shared_ptr<Client>> clients;
  std::thread io;
  std::atomic<int> open{0}, failed{0};
  double open_seconds = 0;
};

// Latency percentiles of the window, and the p99 second by second (sampled): a transient or
// a steady state.
void PrintLatency(Stats& stats, const char* what) {
  std::lock_guard<std::mutex> lock(stats.mu);
  std::printf("latency %s: p50 %.1f ms  p99 %.1f ms  max %.1f ms (%zu frames)\n", what,
      klined::bench::Percentile(stats.latencies_ms, 0.5),
      klined::bench::Percentile(stats.latencies_ms, 0.99),
      klined::bench::Percentile(stats.latencies_ms, 1.0), stats.latencies_ms.size());
  // The latency over the window, second by second (sampled): a transient or a steady state.
  if (!stats.by_time.empty()) {
    const double t0 = stats.by_time.front().first;
    std::map<int, std::vector<double>> per_second;
    for (const auto& [us, ms] : stats.by_time) per_second[int((us - t0) / 1e6)].push_back(ms);
    std::printf("  p99 by second of the window:");
    for (const auto& [sec, v] : per_second)
      std::printf(" %d:%.0f", sec, klined::bench::Percentile(v, 0.99));
    std::printf(" (ms)\n");
  }
}

// The baseline: the server library's plain use, no klined. A Beast WebSocket server (one
// thread, as api.threads 1) that accepts the same clients and pushes each, every flush
// interval, one frame per stream of the size klined's are (plus a close a second for the 1s
// stream), one async_write per frame, as a Beast application does; E carries the send time.
class BaselineSession : public std::enable_shared_from_this<BaselineSession> {
 public:
  explicit BaselineSession(tcp::socket s) : ws_(std::move(s)) {}
  void Start(std::vector<std::shared_ptr<BaselineSession>>* all) {
    ws_.async_accept([self = shared_from_this(), all](beast::error_code ec) {
      if (!ec) all->push_back(self);
    });
  }
  void Push(std::string frame) {
    if (dead_) return;
    if (queue_.size() >= 1000) {  // a stalled client: bounded, then closed
      dead_ = true;
      beast::get_lowest_layer(ws_).close();
      return;
    }
    queue_.push_back(std::move(frame));
    Write();
  }
  bool dead() const { return dead_; }

 private:
  void Write() {
    if (writing_ || queue_.empty()) return;
    writing_ = true;
    ws_.async_write(net::buffer(queue_.front()),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->writing_ = false;
                      if (ec) {
                        self->dead_ = true;
                        return;
                      }
                      self->queue_.pop_front();
                      self->Write();
                    });
  }
  websocket::stream<beast::tcp_stream> ws_;
  std::deque<std::string> queue_;
  bool writing_ = false, dead_ = false;
};

[[noreturn]] void ServeBaseline(tcp::acceptor* acceptor, int flush_ms) {
  pthread_setname_np(pthread_self(), "baseline-0");
  net::io_context& ioc = static_cast<net::io_context&>(acceptor->get_executor().context());
  std::vector<std::shared_ptr<BaselineSession>> sessions;
  std::function<void()> accept = [&] {
    acceptor->async_accept([&](beast::error_code ec, tcp::socket s) {
      if (!ec) std::make_shared<BaselineSession>(std::move(s))->Start(&sessions);
      accept();
    });
  };
  accept();
  net::steady_timer tick(ioc);
  uint64_t ticks = 0;
  std::function<void()> on_tick = [&] {
    tick.expires_after(milliseconds(flush_ms));
    tick.async_wait([&](beast::error_code) {
      ++ticks;
      const bool close_due = ticks % std::max(1, 1000 / flush_ms) == 0;
      for (auto& s : sessions) {
        for (int k = 0; k < 3 + (close_due ? 1 : 0); ++k) {
          char frame[512];
          std::snprintf(frame, sizeof frame,
                        "{\"stream\":\"s1usdt@kline_%s\",\"data\":{\"e\":\"kline\",\"E\":%.0f,"
                        "\"s\":\"S1USDT\",\"k\":{\"t\":1796197092000,\"T\":1796197092999,\"s\":"
                        "\"S1USDT\",\"i\":\"%s\",\"f\":1,\"L\":1,\"o\":\"104.74\",\"c\":\"104.74\","
                        "\"h\":\"104.74\",\"l\":\"104.74\",\"v\":\"0.77\",\"n\":1,\"x\":%s,\"q\":"
                        "\"80.6498\",\"V\":\"0.77\",\"Q\":\"80.6498\",\"B\":\"0\"}}}",
                        kIntervals[k % 3], NowUs(), kIntervals[k % 3], k == 3 ? "true" : "false");
          s->Push(frame);
        }
      }
      std::erase_if(sessions, [](const auto& s) { return s->dead(); });
      on_tick();
    });
  };
  on_tick();
  ioc.run();
  std::_Exit(0);
}

// The baseline run: the same clients against ServeBaseline in a child process, for
// o.seconds; the latency of its frames and its CPU.
int RunBaseline(const Options& o) {
  net::io_context server_ioc;
  tcp::acceptor acceptor(server_ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  acceptor.listen(4096);
  const int port = acceptor.local_endpoint().port();
  server_ioc.notify_fork(net::execution_context::fork_prepare);
  const pid_t child = fork();
  if (child == 0) {
    server_ioc.notify_fork(net::execution_context::fork_child);
    ServeBaseline(&acceptor, o.flush_ms);
  }
  server_ioc.notify_fork(net::execution_context::fork_parent);
  acceptor.close();
  Stats stats;
  std::atomic<bool> measuring{false};
  Clients cl(o, port, nullptr, &stats, &measuring);
  const double cpu_before = ProcessCpu(child);
  std::this_thread::sleep_for(seconds(3));
  measuring.store(true);
  std::this_thread::sleep_for(seconds(o.seconds));
  measuring.store(false);
  std::printf(
      "baseline (a bare Beast WebSocket server, one thread, one async_write per frame, %d frames "
      "per %d ms per client): %d connections open (%d failed); its CPU %.1f s over %d s\n",
      3, o.flush_ms, cl.open.load(), cl.failed.load(), ProcessCpu(child) - cpu_before, o.seconds);
  PrintLatency(stats, "baseline server sent -> frame received");
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  for (auto& c : cl.clients) net::post(cl.ioc, [c] { c->Close(); });
  cl.ioc.stop();
  cl.io.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  klined::bench::IntFlags(argc, argv,
                          {{"--connections", &o.connections},
                           {"--symbols", &o.symbols},
                           {"--rate", &o.rate},
                           {"--seconds", &o.seconds},
                           {"--partitions", &o.partitions},
                           {"--flush-ms", &o.flush_ms},
                           {"--api-threads", &o.api_threads},
                           {"--baseline", &o.baseline}});
  if (o.baseline != 0) return RunBaseline(o);

  kt::TempDir dir("klined-ws-bench");
  kt::RedisServer redis;
  kt::MariaDbServer mysql;
  kt::KafkaBroker broker{kt::KafkaBrokerOptions{1, {{"trades", o.partitions}}}};
  const int api_port = kt::FreePort();
  const int metrics_port = kt::FreePort();
  const auto config = dir / "klined.yaml";
  kt::WriteFile(config,
                "kafka:\n  brokers: \"" + broker.bootstrap() +
                    "\"\n  topic: trades\n  group: ws-bench\nredis:\n  address: \"" +
                    redis.address() + "\"\nmysql:\n  port: " + std::to_string(mysql.port()) +
                    "\n  user: " + mysql.user() + "\n  password: \"" + mysql.password() +
                    "\"\n  database: " + mysql.database() +
                    "\nintervals: [1s, 1m, 5m]\nflush_interval_ms: " + std::to_string(o.flush_ms) +
                    "\napi:\n  threads: " + std::to_string(o.api_threads) +
                    "\n  listen: "
                    "\"127.0.0.1:" +
                    std::to_string(api_port) +
                    "\"\n  max_connections: " + std::to_string(o.connections + 100) +
                    "\n  weight_per_minute: 0\n  ws_send_queue_bytes: 262144\nmetrics:\n  listen: "
                    "\"127.0.0.1:" +
                    std::to_string(metrics_port) + "\"\nlog:\n  level: warn\n");
  const char* build = std::getenv("KLINED_BUILD");
  kt::Subprocess klined(std::string(build ? build : "build") + "/src/app/klined",
                        {"--config", config.string()},
                        {.log_dir = dir.path(), .name = "klined", .env = {}, .cwd = {}});

  // Every symbol traded once, so the API knows them all.
  kt::Producer producer(broker.bootstrap(),
                        {{"linger.ms", "5"}, {"queue.buffering.max.messages", "1000000"}});
  std::vector<int64_t> next_id(static_cast<size_t>(o.symbols), 1);
  auto produce = [&](int s) {
    const std::string sym = Sym(s);
    const int64_t id = next_id[static_cast<size_t>(s)]++;
    producer.Produce("trades", sym,
                     "{\"s\":\"" + sym + "\",\"t\":" + std::to_string(id) + ",\"p\":\"" +
                         std::to_string(1000 + id % 50) +
                         ".5\",\"q\":\"0.25\",\"T\":" + std::to_string(klined::WallMs()) +
                         ",\"m\":" + (id % 2 ? "true" : "false") + "}");
  };
  for (int s = 0; s < o.symbols; ++s) produce(s);
  producer.Flush(seconds(60));
  const auto ready_by = Clock::now() + seconds(120);
  while (true) {
    const std::string m = "\n" + kt::HttpGet(metrics_port, "/metrics");
    if (kt::MetricSum(m, "klined_api_symbols_known") >= o.symbols) break;
    if (!klined.Running() || Clock::now() > ready_by) {
      std::fprintf(stderr, "ws_bench: klined did not get ready:\n%s\n",
                   klined.OutputTail().c_str());
      return 1;
    }
    std::this_thread::sleep_for(milliseconds(200));
  }

  // The reference subscriber: every symbol's channel.
  Reference ref;
  std::atomic<bool> stop{false};
  std::thread reference([&] {
    redisContext* c = redisConnect(redis.host().c_str(), redis.port());
    std::vector<std::string> cmd = {"SSUBSCRIBE"};
    for (int s = 0; s < o.symbols; ++s) cmd.push_back("kline:{" + Sym(s) + "}:events");
    klined::bench::AppendArgv(c, cmd);
    while (!stop.load()) {
      void* r = nullptr;
      if (redisGetReply(c, &r) != REDIS_OK) break;
      auto* rep = static_cast<redisReply*>(r);
      const double us = NowUs();
      if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
          std::string_view(rep->element[0]->str, rep->element[0]->len) == "smessage") {
        std::string_view payload(rep->element[2]->str, rep->element[2]->len);
        size_t start = 0;
        while (start < payload.size()) {
          size_t nl = payload.find('\n', start);
          if (nl == std::string_view::npos) nl = payload.size();
          const std::string_view line = payload.substr(start, nl - start);
          start = nl + 1;
          if (line.rfind("{\"t\":", 0) != 0) continue;  // the ticker
          ref.Add(KeyOf(Field(line, "s"), Field(line, "i"), Field(line, "t"), Field(line, "n"),
                        Field(line, "x")),
                  us);
        }
      }
      freeReplyObject(rep);
    }
    redisFree(c);
  });

  const long rss_before = RssKiB(klined.pid());
  Stats stats;
  std::atomic<bool> measuring{false};
  Clients cl(o, api_port, &ref, &stats, &measuring);
  const long rss_open = RssKiB(klined.pid());
  auto& clients = cl.clients;
  std::printf(
      "ws_bench: %d connections open (%d failed) in %.1f s; klined RSS %ld -> %ld KiB: "
      "%.1f KiB per connection\n",
      cl.open.load(), cl.failed.load(), cl.open_seconds, rss_before, rss_open,
      double(rss_open - rss_before) / std::max(1, cl.open.load()));

  // Load: o.rate trades/s round-robin over the symbols, for o.seconds; measure after 3 s.
  const std::map<std::string, double> cpu_before = ThreadCpu(klined.pid());
  const double redis_cpu_before = ProcessCpu(redis.process().pid());
  const std::map<std::string, double> self_before = ThreadCpu(getpid());
  const auto load_start = Clock::now();
  const auto load_end = load_start + seconds(o.seconds);
  int64_t window_from_ms = 0, window_to_ms = 0;
  std::thread pruner([&] {
    while (!stop.load()) {
      std::this_thread::sleep_for(seconds(2));
      ref.Prune(NowUs() - 20e6);
    }
  });
  int64_t produced = 0;
  int s = 0;
  while (Clock::now() < load_end) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - load_start).count();
    if (!measuring.load() && elapsed >= 3) {
      measuring.store(true);
      window_from_ms = klined::WallMs();
    }
    const int64_t due = static_cast<int64_t>(elapsed * o.rate);
    while (produced < due) {
      produce(s);
      s = (s + 1) % o.symbols;
      ++produced;
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
  window_to_ms = klined::WallMs();
  const std::map<std::string, double> cpu_after = ThreadCpu(klined.pid());
  const double redis_cpu = ProcessCpu(redis.process().pid()) - redis_cpu_before;
  const std::map<std::string, double> self_after = ThreadCpu(getpid());
  producer.Flush(seconds(60));
  std::this_thread::sleep_for(seconds(3));  // the window's last closes arrive
  measuring.store(false);
  const std::string m = "\n" + kt::HttpGet(metrics_port, "/metrics");
  const long rss_load = RssKiB(klined.pid());

  // Closes: every 1s bucket wholly inside the window, for every reading client.
  const int64_t first_bucket = window_from_ms / 1000 * 1000 + 1000;
  const int64_t last_bucket = window_to_ms / 1000 * 1000 - 2000;
  uint64_t expected_closes = 0, missing_closes = 0;
  {
    std::lock_guard<std::mutex> lock(stats.mu);
    for (int c = 0; c < o.connections; ++c) {
      if (clients[static_cast<size_t>(c)]->closed()) continue;
      const std::string sym = Sym((3 * c) % o.symbols);  // its 1s stream
      const auto& got = stats.closes[{c, sym}];
      for (int64_t b = first_bucket; b <= last_bucket; b += 1000) {
        ++expected_closes;
        missing_closes += got.contains(b) ? 0 : 1;
      }
    }
  }
  int closed_readers = 0;
  for (int c = 0; c < o.connections; ++c)
    closed_readers += clients[static_cast<size_t>(c)]->closed();
  std::printf("load: %lld trades in %d s (%.0f/s); klined applied %.0f; RSS under load %ld KiB\n",
              static_cast<long long>(produced), o.seconds, double(produced) / o.seconds,
              kt::MetricSum(m, "klined_trades_applied_total"), rss_load);
  auto print_threads = [](const std::map<std::string, double>& before,
                          const std::map<std::string, double>& after) {
    for (const auto& [name, a] : after) {
      const auto b = before.find(name);
      const double d = a - (b == before.end() ? 0 : b->second);
      if (d >= 0.1) std::printf(" %s %.1f", name.c_str(), d);
    }
  };
  std::printf("CPU seconds over the %d s of load: redis-server %.1f; klined:", o.seconds,
              redis_cpu);
  print_threads(cpu_before, cpu_after);
  std::printf("; this bench (ws-clients = every client's I/O and parsing):");
  print_threads(self_before, self_after);
  std::printf("\n");
  std::printf("candles published more than once (same symbol, interval, open, count, x): %llu\n",
              static_cast<unsigned long long>(ref.repeats));
  std::printf(
      "frames in the window: %llu (%llu not matched to a published candle: conflated "
      "away or published before the window)\n",
      static_cast<unsigned long long>(stats.frames),
      static_cast<unsigned long long>(stats.unmatched));
  PrintLatency(stats, "written to Redis -> frame received");
  std::printf("1s closes: %llu expected, %llu missing; reading clients disconnected: %d\n",
              static_cast<unsigned long long>(expected_closes),
              static_cast<unsigned long long>(missing_closes), closed_readers);
  // The stalled client never reads, so only the server can say it closed it.
  const double slow = kt::MetricSum(m, "klined_api_ws_closed_total{reason=\"slow\"}");
  std::printf(
      "stalled client (200 1s streams, never reading): %s by the server "
      "(klined_api_ws_closed_total{reason=\"slow\"} %.0f); updates conflated %.0f\n",
      slow >= 1 ? "disconnected" : "NOT disconnected", slow,
      kt::MetricSum(m, "klined_api_ws_conflated_total"));

  stop.store(true);
  {  // wake the reference subscriber
    redisContext* c = redisConnect(redis.host().c_str(), redis.port());
    redisReply* r =
        static_cast<redisReply*>(redisCommand(c, "SPUBLISH kline:{%s}:events x", Sym(0).c_str()));
    if (r) freeReplyObject(r);
    redisFree(c);
  }
  reference.join();
  pruner.join();
  for (auto& c : clients) net::post(cl.ioc, [c] { c->Close(); });
  cl.ioc.stop();
  cl.io.join();
  return 0;
}
