// Redis time per FLUSH call: the real script (src/io/redis/lua_scripts.h) with its SPUBLISH of
// the written candles of the watched intervals (the market-data API's live stream), the same
// script without the publish (and without its read of B:watch), and the floor, a plain MSET of
// the same candles and watermarks; with nobody watching, with one subscriber on every symbol's
// channel watching 1m, and watching all 15 intervals. One redis-server, one run, the variants
// alternated round by round (machines here are noisy); the figure is Redis's own usec_per_call from
// INFO commandstats, so client and network time do not count. Common case: one symbol's 15 current
// candles in the same buckets, each changed by the call (a trade more), no closed candles, no late
// trades, no ticker (what most FLUSH calls are at steady state). Usage: flush_bench [--symbols N]
// [--calls-per-round C] [--rounds R]
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "io/redis/key_layout.h"
#include "io/redis/lua_scripts.h"
#include "redis_server.h"

namespace kt = klined::test;

namespace {

const char* const kIntervals[] = {"1m", "3m", "5m",  "15m", "30m", "1h", "2h", "4h",
                                  "6h", "8h", "12h", "1d",  "3d",  "1w", "1M"};

// Two versions of a candle (`version` 0 or 1: one trade more): consecutive calls of a symbol
// alternate them, so every call changes every candle (FLUSH neither writes nor publishes a
// candle storage already holds as is).
std::string CandleJson(const std::string& sym, const char* iv, long long t, int version) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "{\"t\":%lld,\"T\":%lld,\"s\":\"%s\",\"i\":\"%s\",\"f\":1001,\"L\":%d,"
                "\"o\":\"43210.5\",\"h\":\"43250\",\"l\":\"43200.1\",\"c\":\"43249.9\","
                "\"v\":\"12.%d\",\"q\":\"540123.75\",\"V\":\"6.1\",\"Q\":\"263601.4\",\"n\":%d,"
                "\"x\":false}",
                t, t + 59999, sym.c_str(), iv, 1180 + version, 5 + version, 80 + version);
  return buf;
}

redisReply* Command(redisContext* c, const std::vector<std::string>& argv) {
  klined::bench::AppendArgv(c, argv);
  void* r = nullptr;
  return redisGetReply(c, &r) == REDIS_OK ? static_cast<redisReply*>(r) : nullptr;
}

// usec per call of one command from INFO commandstats (e.g. "evalsha"), and the call count.
std::pair<double, double> Stat(redisContext* c, const std::string& cmd) {
  redisReply* r = Command(c, {"INFO", "commandstats"});
  std::string text(r->str, r->len);
  freeReplyObject(r);
  const std::string key = "cmdstat_" + cmd + ":calls=";
  size_t at = text.find(key);
  if (at == std::string::npos) return {0, 0};
  const double calls = std::atof(text.c_str() + at + key.size());
  at = text.find("usec=", at);
  const double usec = std::atof(text.c_str() + at + 5);
  return {usec, calls};
}

// redis-server's CPU time so far (INFO cpu: used_cpu_sys + used_cpu_user), in us.
double CpuUs(redisContext* c) {
  redisReply* r = Command(c, {"INFO", "cpu"});
  std::string text(r->str, r->len);
  freeReplyObject(r);
  double us = 0;
  for (const char* key : {"used_cpu_sys:", "used_cpu_user:"}) {
    const size_t at = text.find(key);
    if (at != std::string::npos) us += 1e6 * std::atof(text.c_str() + at + std::strlen(key));
  }
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  int symbols = 1000, per_round = 5000, rounds = 6;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--symbols") symbols = std::atoi(argv[i + 1]);
    if (a == "--calls-per-round") per_round = std::atoi(argv[i + 1]);
    if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
  }
  kt::RedisServer redis;
  redisContext* c = redisConnect(redis.host().c_str(), redis.port());
  const std::string flush = std::string(klined::lua::kCommon) + klined::lua::kFlush;
  const std::string publish_line =
      "if #events > 0 then redis.call('SPUBLISH', base .. ':events', table.concat(events, "
      "'\\n')) end\n";
  std::string quiet = flush;
  const size_t at = quiet.find(publish_line);
  if (at == std::string::npos) {
    std::fprintf(stderr, "flush_bench: the SPUBLISH line of FLUSH changed; update the bench\n");
    return 1;
  }
  // Without the publish: no SPUBLISH, and the watch it consults read from a key that never
  // exists (nil: nothing followed; erasing the line would leave a hole in the MGET's keys,
  // which Lua's unpack stops at or passes as nil).
  quiet.erase(at, publish_line.size());
  const std::string watch_line = "cur_keys[n + 2] = base .. ':watch'\n";
  const size_t wat = quiet.find(watch_line);
  if (wat == std::string::npos) {
    std::fprintf(stderr, "flush_bench: FLUSH's read of B:watch changed; update the bench\n");
    return 1;
  }
  quiet.replace(wat, watch_line.size(), "cur_keys[n + 2] = base .. ':nowatch'\n");
  auto load = [&](const std::string& body) {
    redisReply* r = Command(c, {"SCRIPT", "LOAD", body});
    std::string sha(r->str, r->len);
    freeReplyObject(r);
    return sha;
  };
  const std::string sha_publish = load(flush), sha_quiet = load(quiet);
  // Two floors for any script that takes these candles (measured with nobody streaming):
  // FLUSH's very arguments to a script that does nothing, and the least a compare-and-set
  // write can do: the keys given in KEYS, one GET of the stamp compared, one MSET.
  const std::string sha_empty = load("return 1");
  // FLUSH_FAST: the common case while storage holds the shard's last write (B:ws valid).
  const std::string sha_fast = load(klined::lua::kFlushFast);
  const std::string sha_cas = load(
      "if redis.call('GET', KEYS[#KEYS]) ~= ARGV[#ARGV] then return -1 end\n"
      "local a = {}\n"
      "for i = 1, #KEYS do a[2 * i - 1] = KEYS[i]; a[2 * i] = ARGV[i] end\n"
      "redis.call('MSET', unpack(a))\n"
      "return 1\n");

  // Per symbol and version: the FLUSH arguments and the equivalent MSET.
  const long long t = 1732147200000;
  // [version][symbol]
  std::vector<std::vector<std::string>> pub_calls[2], quiet_calls[2], mset_calls[2], empty_calls[2],
      cas_calls[2], fast_calls[2], declared_calls[2];
  // klined's FLUSH declares every key a symbol's script may touch (KeyLayout::ScriptKeys, 15
  // intervals: 42 keys); the other FLUSH variants here declare none, for the cost of that.
  const klined::KeyLayout layout("kline", "ticker");
  std::vector<klined::Interval> intervals;
  for (const char* iv : kIntervals) intervals.push_back(*klined::ParseInterval(iv));
  for (int v = 0; v < 2; ++v) {
    for (int s = 0; s < symbols; ++s) {
      const std::string sym = "SYM" + std::to_string(s) + "USDT";
      const std::string stamp = "0:1180";
      std::vector<std::string> args = {"kline", sym, std::to_string(1180 + v), stamp, stamp, "15"};
      std::vector<std::string> mset = {"MSET"};
      for (const char* iv : kIntervals) {
        const std::string json = CandleJson(sym, iv, t, v);
        args.insert(args.end(), {iv, std::to_string(t), json, "0"});
        mset.insert(mset.end(), {"kline:{" + sym + "}:" + iv, json});
      }
      args.insert(args.end(), {"0", "0", "", "", ""});
      mset.insert(mset.end(), {"kline:{" + sym + "}:wm", std::to_string(1180 + v),
                               "kline:{" + sym + "}:wmp", stamp});
      if (v == 1) {
        // Storage as the shard left it: the stamp and the candles (version 1: the first call
        // brings version 0), and the write stamp FLUSH_FAST finds (and writes again).
        redisReply* r = Command(c, mset);
        freeReplyObject(r);
        r = Command(c, {"SET", "kline:{" + sym + "}:ws", "bench:1"});
        freeReplyObject(r);
      }
      // FLUSH_FAST: KEYS wmp, ws, watch, wm, the 15 currents, ticker, tks.
      const std::string b = "kline:{" + sym + "}";
      std::vector<std::string> f = {"EVALSHA",  sha_fast,  std::to_string(6 + 15),
                                    b + ":wmp", b + ":ws", b + ":watch",
                                    b + ":wm"};
      for (const char* iv : kIntervals) f.push_back(b + ":" + iv);
      f.insert(f.end(), {"ticker:{" + sym + "}", b + ":tks", stamp, "bench:1", stamp, "bench:1",
                         std::to_string(1180 + v), "15"});
      for (const char* iv : kIntervals) f.push_back(iv);
      for (const char* iv : kIntervals) f.push_back(CandleJson(sym, iv, t, v));
      f.insert(f.end(), {"", "", b + ":events"});
      fast_calls[v].push_back(std::move(f));
      std::vector<std::string> d = {"EVALSHA", sha_publish,
                                    std::to_string(layout.ScriptKeyCount(intervals.size()))};
      layout.ScriptKeys(sym, intervals, [&d](std::string key) { d.push_back(std::move(key)); });
      d.insert(d.end(), args.begin(), args.end());
      declared_calls[v].push_back(std::move(d));
      std::vector<std::string> p = {"EVALSHA", sha_publish, "0"}, q = {"EVALSHA", sha_quiet, "0"};
      p.insert(p.end(), args.begin(), args.end());
      q.insert(q.end(), args.begin(), args.end());
      std::vector<std::string> e = {"EVALSHA", sha_empty, "0"};
      e.insert(e.end(), args.begin(), args.end());
      // KEYS: the 17 keys of the MSET; ARGV: their values, then the stamp compared.
      std::vector<std::string> cas = {"EVALSHA", sha_cas, "17"};
      for (size_t k = 1; k < mset.size(); k += 2) cas.push_back(mset[k]);
      for (size_t k = 2; k < mset.size(); k += 2) cas.push_back(mset[k]);
      cas.push_back(stamp);
      empty_calls[v].push_back(std::move(e));
      cas_calls[v].push_back(std::move(cas));
      pub_calls[v].push_back(std::move(p));
      quiet_calls[v].push_back(std::move(q));
      mset_calls[v].push_back(std::move(mset));
    }
  }
  // A round's calls: every symbol an even number of times, versions 0, 1, 0, 1, ...: each
  // call changes storage, and so does the next round's first (the MSET floor writes version
  // 1 only).
  const int per_symbol = std::max(2, (per_round / symbols + 1) / 2 * 2);
  auto batch = [&](const std::vector<std::vector<std::string>>* versions) {
    std::vector<std::vector<std::string>> out;
    for (int k = 0; k < per_symbol; ++k) {
      for (const auto& call : versions[k % 2]) out.push_back(call);
    }
    return out;
  };
  const std::vector<std::vector<std::string>> mset_only[2] = {mset_calls[1], mset_calls[1]};
  const auto pub = batch(pub_calls), qu = batch(quiet_calls), ms = batch(mset_only),
             em = batch(empty_calls), ca = batch(cas_calls), fa = batch(fast_calls),
             de = batch(declared_calls);
  per_round = per_symbol * symbols;

  // Redis time per call of a variant: the change of its command's usec / calls over a round.
  // Also (into *cpu, when given) the server's whole CPU time per call over the round: that
  // counts reading and parsing the request and writing the reply, which the command's usec
  // does not (and which a plain MSET of the same bytes pays as well).
  auto measure = [&](const std::vector<std::vector<std::string>>& calls, const char* cmd,
                     std::vector<double>* cpu = nullptr) {
    const auto before = Stat(c, cmd);
    const double cpu_before = CpuUs(c);
    klined::bench::Pipeline(c, calls, "flush_bench");
    const double cpu_after = CpuUs(c);
    const auto after = Stat(c, cmd);
    if (cpu != nullptr)
      cpu->push_back((cpu_after - cpu_before) / static_cast<double>(calls.size()));
    return (after.first - before.first) / (after.second - before.second);
  };
  std::printf("flush_bench: %d symbols, %d calls per round, %d rounds, redis %s\n", symbols,
              per_round, rounds, redis.address().c_str());
  // What API instances follow (B:watch, written by their WATCH calls; here set directly):
  // FLUSH publishes only those intervals.
  struct Scenario {
    const char* name;
    std::string watch;  // "" = no watch key
    bool subscriber;
  };
  std::string all_intervals = ",";
  for (const char* iv : kIntervals) all_intervals.append(iv).append(",");
  const std::vector<Scenario> scenarios = {
      {"nobody streams the symbols (no watch, no subscriber)", "", false},
      {"one subscriber on every symbol streaming 1m (watch ,1m,)", ",1m,", true},
      {"one subscriber on every symbol streaming all 15 intervals", all_intervals, true},
  };
  for (const Scenario& sc : scenarios) {
    for (int s = 0; s < symbols; ++s) {
      const std::string key = "kline:{SYM" + std::to_string(s) + "USDT}:watch";
      redisReply* r = Command(c, sc.watch.empty() ? std::vector<std::string>{"DEL", key}
                                                  : std::vector<std::string>{"SET", key, sc.watch});
      freeReplyObject(r);
    }
    std::atomic<bool> stop{false};
    std::thread reader;
    redisContext* sub = nullptr;
    if (sc.subscriber) {
      // One subscriber on every symbol's channel, reading everything (as an API instance).
      sub = redisConnect(redis.host().c_str(), redis.port());
      std::vector<std::string> cmd = {"SSUBSCRIBE"};
      for (int s = 0; s < symbols; ++s)
        cmd.push_back("kline:{SYM" + std::to_string(s) + "USDT}:events");
      klined::bench::AppendArgv(sub, cmd);
      reader = std::thread([sub, &stop] {
        while (!stop.load()) {
          void* r = nullptr;
          if (redisGetReply(sub, &r) != REDIS_OK) return;
          freeReplyObject(r);
        }
      });
    }
    std::vector<double> p, q, m, e, k, f, d, cpu_p, cpu_m, cpu_e, cpu_k, cpu_f, cpu_d;
    const bool floors = &sc == &scenarios.front();
    for (int r = 0; r < rounds; ++r) {
      p.push_back(measure(pub, "evalsha", &cpu_p));
      q.push_back(measure(qu, "evalsha"));
      m.push_back(measure(ms, "mset", &cpu_m));
      f.push_back(measure(fa, "evalsha", &cpu_f));
      d.push_back(measure(de, "evalsha", &cpu_d));
      if (floors) {
        e.push_back(measure(em, "evalsha", &cpu_e));
        k.push_back(measure(ca, "evalsha", &cpu_k));
      }
    }
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    const double mp = median(p), mq = median(q), mm = median(m);
    std::printf(
        "  %s: FLUSH %.2f us/call, without publishing (no SPUBLISH, watch read from an absent key) "
        "%.2f us/call "
        "(publish cost %+.1f%%), MSET floor %.2f us/call; FLUSH/MSET %.2fx (medians of %d "
        "rounds)\n",
        sc.name, mp, mq, 100 * (mp - mq) / mq, mm, mp / mm, rounds);
    const double cp = median(cpu_p), cm = median(cpu_m), mf = median(f), cf = median(cpu_f);
    std::printf(
        "    server CPU per call (parsing and replies included): FLUSH %.2f us, MSET %.2f us "
        "(%.2fx)\n",
        cp, cm, cp / cm);
    std::printf(
        "    FLUSH_FAST (storage holds the shard's last write): %.2f us/call (%.2fx MSET, %.2f "
        "of FLUSH); server CPU %.2f us (%.2fx MSET, %.2f of FLUSH)\n",
        mf, mf / mm, mf / mp, cf, cf / cm, cf / cp);
    const double md = median(d), cd = median(cpu_d);
    std::printf(
        "    FLUSH declaring its %zu keys (as klined sends it): %.2f us/call (%+.1f%% of FLUSH "
        "declaring none); server CPU %.2f us (%+.1f%%)\n",
        layout.ScriptKeyCount(intervals.size()), md, 100 * (md - mp) / mp, cd,
        100 * (cd - cp) / cp);
    if (floors) {
      const double me = median(e), mk = median(k), ce = median(cpu_e), ck = median(cpu_k);
      std::printf(
          "  floors of a script: FLUSH's arguments to one that does nothing %.2f us/call "
          "(%.2fx MSET; server CPU %.2f us, %.2fx); GET-compare + MSET with the keys in KEYS "
          "%.2f us/call (%.2fx MSET; server CPU %.2f us, %.2fx)\n",
          me, me / mm, ce, ce / cm, mk, mk / mm, ck, ck / cm);
    }
    if (sc.subscriber) {
      stop.store(true);
      // Wake the reader with one more message, then close.
      redisReply* rr = Command(c, {"SPUBLISH", "kline:{SYM0USDT}:events", "x"});
      freeReplyObject(rr);
      reader.join();
      redisFree(sub);
    }
  }
  redisFree(c);
  return 0;
}
