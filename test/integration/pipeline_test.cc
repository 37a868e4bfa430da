// End-to-end: the real klined binary against a real redis-server and the librdkafka mock
// cluster. Invariant checked: for every symbol and interval, Redis holds exactly the candles
// an independent computation (below, sharing no code with klined) derives from the trades
// produced: gapless history with x=true, the current candle with x=false, each trade counted
// once however often it was sent, and every bad message counted and dead-lettered.
#include "stack.h"

#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("pipeline: Redis equals the independent computation; duplicates and bad input handled") {
  Stack stack;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOL_USDT", "doge.usdt",
                                            "XRP-USD", "A",       "BNBUSDT",  "ADAUSDT"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 300, 42);
  auto klined = stack.StartKlined("klined");

  kt::Producer producer(stack.broker.bootstrap());
  int sent = 0;
  for (const RefTrade& t : trades) {
    producer.Produce("trades", t.symbol, TradeJson(t));
    // Re-send every 7th trade (a producer retry): must count once.
    if (++sent % 7 == 0) producer.Produce("trades", t.symbol, TradeJson(t));
  }
  // Bad input: malformed JSON, a bad symbol, and an array with one good and one bad element.
  producer.Produce("trades", std::nullopt, "{\"s\":\"BTCUSDT\",\"t\":");
  producer.Produce("trades", std::nullopt,
                   "{\"s\":\"BAD SYMBOL\",\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1}");
  // (Its good element carries the time of ETHUSDT's first trade: a trade from 1970 would make
  // the series start there, which is a separate, known gap-fill cost issue.)
  const std::string t0 = std::to_string(trades[300].time_ms);
  producer.Produce("trades", std::string("ETHUSDT"),
                   "[{\"s\":\"ETHUSDT\",\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":" + t0 +
                       "},"
                       "{\"s\":\"ETHUSDT\",\"t\":2,\"p\":-1,\"q\":\"1\",\"T\":" +
                       t0 + "}]");
  producer.Flush();

  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  stack.CheckCandles(trades, symbols);

  // The array's good element has id 1 <= ETHUSDT's watermark: a duplicate, like the re-sends.
  const std::string metrics = stack.Metrics();
  CHECK(MetricValue(metrics, "klined_trades_duplicate_total") == doctest::Approx(sent / 7 + 1));
  CHECK(MetricValue(metrics, "klined_trades_rejected_total{reason=\"malformed_json\"}") == 1);
  CHECK(MetricValue(metrics, "klined_trades_rejected_total{reason=\"bad_symbol\"}") == 1);
  CHECK(MetricValue(metrics, "klined_trades_rejected_total{reason=\"non_positive\"}") == 1);
  const auto dlq = kt::ConsumeAll(stack.broker.bootstrap(), "trades-dlq", seconds(10), 3);
  REQUIRE(dlq.size() == 3);
  std::multiset<std::string> reasons;
  for (const auto& m : dlq) reasons.insert(m.Header("klined-reject-reason").value_or("?"));
  CHECK(reasons == std::multiset<std::string>{"bad_symbol", "malformed_json", "non_positive"});

  klined->Terminate();
  auto st = klined->Wait(seconds(30));
  REQUIRE(st.has_value());
  CHECK(st->Exited());
  CHECK(st->Code() == 0);
}

TEST_CASE("pipeline: live trades, several flushes per bucket: FLUSH_FAST writes them exactly") {
  // The common case at steady state: a symbol's trades since its last write all in the
  // buckets that write left current. FLUSH_FAST writes them without reading storage's
  // candles, trusting the write stamp; the result must still equal the reference.
  Stack stack;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT"};
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  std::vector<RefTrade> trades;
  std::mt19937_64 rng(7);
  int64_t id = 1000;
  // 20 batches 200 ms apart, stamped now: each flush (every 100 ms) finds its symbols in the
  // buckets of their last write.
  for (int batch = 0; batch < 20; ++batch) {
    for (const std::string& sym : symbols) {
      for (int j = 0; j < 5; ++j) {
        const RefTrade t{sym, ++id, NowMs(), 50000 + static_cast<int64_t>(rng() % 200),
                         1 + static_cast<int64_t>(rng() % 900), rng() % 2 == 0};
        trades.push_back(t);
        producer.Produce("trades", sym, TradeJson(t));
      }
    }
    producer.Flush();
    std::this_thread::sleep_for(milliseconds(200));
  }
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(30)), klined->OutputTail());
  stack.CheckCandles(trades, symbols);
  const std::string metrics = stack.Metrics();
  const double fast = MetricValue(metrics, "klined_flush_fast_total");
  const double missed = MetricValue(metrics, "klined_flush_fast_missed_total");
  const double written = MetricValue(metrics, "klined_flushed_symbols_total");
  MESSAGE("FLUSH_FAST wrote " << fast << " of " << written << " symbol writes; missed "
                              << missed);
  // Each symbol's first write is a FLUSH (a load grants no stamp), and so is one that crossed
  // a bucket boundary or followed a rollover of its candles (a minute boundary, at most one
  // here): at most 3 a symbol.
  CHECK(written >= 10);
  CHECK(fast >= written - 3 * static_cast<double>(symbols.size()));
  CHECK(MetricValue(metrics, "klined_flush_failures_total") == 0);
  StopCleanly(*klined);
}

TEST_CASE("pipeline: kill -9 mid-stream, restart, resend everything: no loss, no double count") {
  Stack stack;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "LTCUSDT", "DOTUSDT"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 400, 7);
  auto klined = stack.StartKlined("klined-1");
  kt::Producer producer(stack.broker.bootstrap());
  const size_t half = trades.size() / 2;
  for (size_t i = 0; i < half; ++i)
    producer.Produce("trades", trades[i].symbol, TradeJson(trades[i]));
  producer.Flush();
  // Let part of it reach Redis, then kill without any chance to flush or commit.
  kt::RedisClient rc = stack.Redis();
  for (int i = 0; i < 300 && !rc.Get("kline:{" + symbols[0] + "}:wm").has_value(); ++i) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  klined->Kill();
  klined->Wait(seconds(10));
  for (size_t i = half; i < trades.size(); ++i)
    producer.Produce("trades", trades[i].symbol, TradeJson(trades[i]));
  producer.Flush();
  auto klined2 = stack.StartKlined("klined-2");
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(90)), klined2->OutputTail());
  stack.CheckCandles(trades, symbols);
  StopCleanly(*klined2);
}

namespace {

// Produces `trades` keyed by symbol, then waits until Redis has each symbol's last id.
void ProduceAndWait(Stack* stack, kt::Producer* producer, const std::vector<RefTrade>& trades,
                    const std::vector<RefTrade>& all_so_far, kt::Subprocess* klined,
                    int32_t partition = RD_KAFKA_PARTITION_UA) {
  for (const RefTrade& t : trades) producer->Produce("trades", t.symbol, TradeJson(t), partition);
  producer->Flush();
  REQUIRE_MESSAGE(stack->WaitForWatermarks(LastIds(all_so_far), seconds(60)), klined->OutputTail());
}

}  // namespace

TEST_CASE(
    "pipeline: late trades update history and re-carry closes; older ones extend the series") {
  // The MySQL worker runs when it takes the lease and then not again within the test: the
  // record a late trade leaves in B:late (checked below) would otherwise race its drain into
  // MySQL (which the persist tests cover).
  Stack stack(false, "", "", "  persist_interval_ms: 3600000\n");
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int64_t m0 = now - now % 60000 - 30 * 60000;  // a minute boundary 30 minutes ago
  std::vector<RefTrade> all;
  int64_t id = 100;
  // Minutes 0-2 and 6-9 have trades; 3-5 are empty and carry minute 2's close.
  for (int minute : {0, 1, 2, 6, 7, 8, 9}) {
    for (int k = 0; k < 5; ++k) {
      all.push_back(RefTrade{"BTCUSDT", ++id, m0 + minute * 60000 + k * 1000, 5000000 + id,
                             1000 + k, k % 2 == 0});
    }
  }
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  ProduceAndWait(&stack, &producer, all, all, klined.get());
  stack.CheckCandles(all, {"BTCUSDT"});

  // A late trade in minute 2 (already in history): the highest id there, so minute 2's new
  // close, re-carried into the empty minutes 3-5.
  std::vector<RefTrade> late = {RefTrade{"BTCUSDT", ++id, m0 + 2 * 60000 + 59000, 4242, 7, false}};
  all.insert(all.end(), late.begin(), late.end());
  ProduceAndWait(&stack, &producer, late, all, klined.get());
  stack.CheckCandles(all, {"BTCUSDT"});

  // Older than the stored series: the series now starts 3 minutes earlier (and the 5m/1h
  // buckets it lands in are merged or extended the same way).
  late = {RefTrade{"BTCUSDT", ++id, m0 - 3 * 60000 + 500, 3131, 2, true}};
  all.insert(all.end(), late.begin(), late.end());
  ProduceAndWait(&stack, &producer, late, all, klined.get());
  stack.CheckCandles(all, {"BTCUSDT"});

  // A bucket trimmed from Redis: the trade goes to B:late for the MySQL worker, atomically
  // with the watermark; the other intervals still take it in Redis.
  kt::RedisClient rc = stack.Redis();
  const std::string first_open = std::to_string(m0 - 3 * 60000);
  rc.Command({"ZREMRANGEBYSCORE", "kline:{BTCUSDT}:1m:hist", first_open, first_open});
  rc.Command({"HSET", "kline:{BTCUSDT}:trimmed", "1m", first_open});
  const RefTrade trimmed{"BTCUSDT", ++id, m0 - 3 * 60000 + 900, 2929, 5, false};
  producer.Produce("trades", trimmed.symbol, TradeJson(trimmed));
  producer.Flush();
  all.push_back(trimmed);
  REQUIRE(stack.WaitForWatermarks(LastIds(all), seconds(30)));
  CHECK(rc.Get("kline:{BTCUSDT}:wm") == std::to_string(trimmed.id));
  const auto rec = rc.Command(
      {"HGET", "kline:{BTCUSDT}:late", "1m|" + first_open + "|" + std::to_string(trimmed.id)});
  REQUIRE(rec);
  REQUIRE(rec->type == REDIS_REPLY_STRING);
  CHECK(std::string(rec->str, rec->len) ==
        "{\"s\":\"BTCUSDT\",\"t\":" + std::to_string(trimmed.id) +
            ",\"p\":\"29.29\",\"q\":\"0.005\",\"T\":" + std::to_string(trimmed.time_ms) +
            ",\"m\":false}");
  CHECK(rc.Integer({"SISMEMBER", "kline:late", "BTCUSDT"}) == 1);
  for (const auto& [iv, len] : kIntervals) {
    if (iv == "1m") continue;
    const auto cur = rc.Get("kline:{BTCUSDT}:" + iv);
    REQUIRE(cur.has_value());
    auto [hist, current] =
        Expected(all, "BTCUSDT", iv, len, std::stoll(cur->substr(5, cur->find(',') - 5)));
    CHECK(cur == current);
    CHECK(rc.Strings({"ZRANGE", "kline:{BTCUSDT}:" + iv + ":hist", "0", "-1"}) == hist);
  }
  klined->Terminate();
  CHECK(klined->Wait(seconds(30)).has_value());
}

TEST_CASE("pipeline: Redis restarted and down for a while mid-stream: nothing lost or doubled") {
  Stack stack(/*redis_aof=*/true);
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 300, 11);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  const size_t third = trades.size() / 3;
  std::vector<RefTrade> part(trades.begin(), trades.begin() + third);
  // Symbols' trades are interleaved per symbol in MakeTrades; produce by index ranges.
  for (size_t i = 0; i < third; ++i)
    producer.Produce("trades", trades[i].symbol, TradeJson(trades[i]));
  producer.Flush();
  std::this_thread::sleep_for(milliseconds(800));
  stack.redis.Restart();  // quick restart (AOF keeps the data)
  for (size_t i = third; i < 2 * third; ++i)
    producer.Produce("trades", trades[i].symbol, TradeJson(trades[i]));
  producer.Flush();
  std::this_thread::sleep_for(milliseconds(500));
  stack.redis.Stop();  // down for a while: klined keeps merging, commits nothing
  for (size_t i = 2 * third; i < trades.size(); ++i)
    producer.Produce("trades", trades[i].symbol, TradeJson(trades[i]));
  producer.Flush();
  std::this_thread::sleep_for(seconds(3));
  CHECK(klined->Running());
  stack.redis.Start();
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  stack.CheckCandles(trades, symbols);
  StopCleanly(*klined);
}

namespace {

// CPU time (user + system, ms) of the klined thread named `name`; -1 if there is none.
int64_t ThreadCpuMs(pid_t pid, const std::string& name) {
  const auto threads = kt::ThreadsOf(pid);
  const auto it = threads.find(name);
  if (it == threads.end()) return -1;
  std::ifstream stat(it->second / "stat");
  std::string line;
  std::getline(stat, line);
  // Fields after the ")" that ends the name: state is field 3, utime 14, stime 15.
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::vector<std::string> f{std::istream_iterator<std::string>(rest), {}};
  const int64_t ticks = std::stoll(f.at(11)) + std::stoll(f.at(12));
  return ticks * 1000 / sysconf(_SC_CLK_TCK);
}

}  // namespace

TEST_CASE("pipeline: a shard whose write waits on a stalled Redis sleeps; then all lands") {
  // A write that takes longer than the flush interval (here: Redis stopped with SIGSTOP, the
  // write blocked on its reply) must not make the shard thread spin until it returns: it
  // takes the core from the consumer and from Redis itself.
  Stack stack(/*redis_aof=*/false, "shards: 1\n");
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 200, 17);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  // The first half of each symbol's trades, flushed; then the rest while Redis is stopped
  // (every symbol already loaded, so only the flush waits on Redis).
  std::vector<RefTrade> first, rest;
  std::map<std::string, int> seen;
  for (const RefTrade& t : trades) (seen[t.symbol]++ < 100 ? first : rest).push_back(t);
  for (const RefTrade& t : first) producer.Produce("trades", t.symbol, TradeJson(t));
  producer.Flush();
  REQUIRE(stack.WaitForWatermarks(LastIds(first), seconds(30)));
  stack.redis.process().Pause();
  for (const RefTrade& t : rest) producer.Produce("trades", t.symbol, TradeJson(t));
  producer.Flush();
  std::this_thread::sleep_for(milliseconds(500));  // consumed, applied, the write sent
  const int64_t before = ThreadCpuMs(klined->pid(), "shard-0");
  std::this_thread::sleep_for(seconds(2));
  const int64_t used = ThreadCpuMs(klined->pid(), "shard-0") - before;
  stack.redis.process().Resume();
  REQUIRE(before >= 0);
  MESSAGE("shard-0 CPU while its write waited 2 s: " << used << " ms");
  CHECK_MESSAGE(used < 250, "shard-0 used " << used << " ms of CPU in 2 s of waiting");
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(30)), klined->OutputTail());
  stack.CheckCandles(trades, symbols);
  StopCleanly(*klined);
}

TEST_CASE("pipeline: one symbol's trades split across partitions reach one owner shard") {
  Stack stack;
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "XRPUSDT", "ADAUSDT", "DOTUSDT"};
  const std::vector<RefTrade> trades = MakeTrades(symbols, 200, 5);
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  // Chunks of each symbol's id sequence go to different explicit partitions (as a producer
  // that does not key by symbol would), in order, each chunk applied before the next is sent.
  std::vector<RefTrade> sent;
  for (int chunk = 0; chunk < 4; ++chunk) {
    std::vector<RefTrade> batch;
    for (const std::string& sym : symbols) {
      int seen = 0;
      for (const RefTrade& t : trades) {
        if (t.symbol != sym) continue;
        if (seen++ / 50 == chunk) batch.push_back(t);
      }
    }
    sent.insert(sent.end(), batch.begin(), batch.end());
    ProduceAndWait(&stack, &producer, batch, sent, klined.get(), /*partition=*/chunk % 4);
  }
  stack.CheckCandles(trades, symbols);
  klined->Terminate();
  CHECK(klined->Wait(seconds(30)).has_value());
}

namespace {

// Field (stack.h) of a member that must be there.
std::string JsonField(const std::string& json, const std::string& name) {
  REQUIRE(json.find("\"" + name + "\":") != std::string::npos);
  return Field(json, name);
}

std::string SignedScaled(I128 v, int scale) {
  return v < 0 ? "-" + Scaled(-v, scale) : Scaled(v, scale);
}

// The ticker fields that need no division, computed from the trades alone.
void CheckTicker(const std::string& json, const std::vector<RefTrade>& trades);

// Produces `next` (a TICK trade) to a restarted klined, waits until it is applied and in the
// 24h ticker, and returns that ticker.
std::string TickAfterRestart(Stack& stack, kt::Producer* producer, kt::RedisClient* rc,
                             kt::Subprocess& klined, std::vector<RefTrade>* all,
                             const RefTrade& next) {
  Produce(producer, {next});
  all->push_back(next);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(*all), seconds(60)), klined.OutputTail());
  std::optional<std::string> ticker;
  REQUIRE(WaitUntil(
      [&] {
        ticker = rc->Get("ticker:{TICK}");
        return ticker && JsonField(*ticker, "lastId") == std::to_string(next.id);
      },
      seconds(10)));
  return *ticker;
}

void CheckTicker(const std::string& json, const std::vector<RefTrade>& trades) {
  I128 v = 0, q = 0;
  int64_t hi = 0, lo = INT64_MAX;
  const RefTrade* first = nullptr;
  const RefTrade* last = nullptr;
  for (const RefTrade& t : trades) {
    v += t.qty_milli;
    q += static_cast<I128>(t.price_cents) * t.qty_milli;
    hi = std::max(hi, t.price_cents);
    lo = std::min(lo, t.price_cents);
    if (first == nullptr || t.id < first->id) first = &t;
    if (last == nullptr || t.id > last->id) last = &t;
  }
  CAPTURE(json);
  CHECK(json.rfind("{\"symbol\":\"" + trades[0].symbol + "\",\"priceChange\":", 0) == 0);
  CHECK(JsonField(json, "volume") == Scaled(v, 3));
  CHECK(JsonField(json, "quoteVolume") == Scaled(q, 5));
  CHECK(JsonField(json, "count") == std::to_string(trades.size()));
  CHECK(JsonField(json, "firstId") == std::to_string(first->id));
  CHECK(JsonField(json, "lastId") == std::to_string(last->id));
  CHECK(JsonField(json, "openPrice") == Scaled(first->price_cents, 2));
  CHECK(JsonField(json, "highPrice") == Scaled(hi, 2));
  CHECK(JsonField(json, "lowPrice") == Scaled(lo, 2));
  CHECK(JsonField(json, "lastPrice") == Scaled(last->price_cents, 2));
  CHECK(JsonField(json, "priceChange") ==
        SignedScaled(static_cast<I128>(last->price_cents) - first->price_cents, 2));
}

}  // namespace

TEST_CASE("pipeline: the 24h ticker equals an independent computation and survives kill -9") {
  Stack stack;
  std::vector<RefTrade> trades = MakeTrades({"BTCUSDT"}, 400, 3);
  auto klined = stack.StartKlined("klined-1");
  kt::Producer producer(stack.broker.bootstrap());
  for (const RefTrade& t : trades) producer.Produce("trades", t.symbol, TradeJson(t));
  producer.Flush();
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  kt::RedisClient rc = stack.Redis();
  auto ticker = rc.Get("ticker:{BTCUSDT}");
  REQUIRE(ticker.has_value());
  CheckTicker(*ticker, trades);
  CHECK(JsonField(*ticker, "lastQty") == Scaled(trades.back().qty_milli, 3));

  // Restart without a drain: the new process rebuilds the window from the 1m history.
  klined->Kill();
  klined->Wait(seconds(10));
  auto klined2 = stack.StartKlined("klined-2");
  const RefTrade next{"BTCUSDT", trades.back().id + 1, trades.back().time_ms + 1, 4242424, 777,
                      false};
  producer.Produce("trades", next.symbol, TradeJson(next));
  producer.Flush();
  trades.push_back(next);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined2->OutputTail());
  ticker = rc.Get("ticker:{BTCUSDT}");
  REQUIRE(ticker.has_value());
  CheckTicker(*ticker, trades);
  CHECK(JsonField(*ticker, "lastQty") == "0.777");
  klined2->Terminate();
  CHECK(klined2->Wait(seconds(30)).has_value());
}

TEST_CASE("pipeline: a ticker restored from its persisted state takes the minutes after it") {
  // The ticker's state is rewritten every 10 minutes (of the window's time) or when an older
  // minute changes: a restart restores it and merges the 1m candles from its end on. Here the
  // state is written after the first 8 minutes of trades, the next 8 minutes do not rewrite
  // it, and klined dies: the restored ticker must hold all 16 minutes. (A restore that took
  // the wall clock, not the state, as where to merge from lost the 8 later minutes.)
  Stack stack;
  const int64_t m0 = MinuteAgo(20);
  std::vector<RefTrade> first, later;
  int64_t id = 500;
  for (int minute = 0; minute < 16; ++minute) {
    for (int k = 0; k < 3; ++k) {
      ++id;
      (minute < 8 ? first : later)
          .push_back(RefTrade{"TICK", id, m0 + minute * 60000 + k * 9000, 300000 + id % 97,
                              1 + id % 11, k == 1});
    }
  }
  auto klined = stack.StartKlined("klined-1");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, first);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(first), seconds(60)), klined->OutputTail());
  kt::RedisClient rc = stack.Redis();
  REQUIRE(WaitUntil([&] { return rc.Get("kline:{TICK}:tks").has_value(); }, seconds(10)));
  const auto state = rc.Get("kline:{TICK}:tks");
  Produce(&producer, later);
  std::vector<RefTrade> all = first;
  all.insert(all.end(), later.begin(), later.end());
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(all), seconds(60)), klined->OutputTail());
  CHECK(rc.Get("kline:{TICK}:tks") == state);  // not rewritten: 8 minutes on
  klined->Kill();
  klined->Wait(seconds(10));
  auto klined2 = stack.StartKlined("klined-2");
  const RefTrade next{"TICK", ++id, m0 + 17 * 60000, 310000, 5, false};
  CheckTicker(TickAfterRestart(stack, &producer, &rc, *klined2, &all, next), all);
  StopCleanly(*klined2);
}

TEST_CASE("pipeline: a ticker state that does not restore is counted and rebuilt from history") {
  // The state (PREFIX:{S}:tks) is damaged while klined is down, one symbol per kind of
  // damage: garbage, one flipped byte (the checksum must refuse it), a key of another type.
  // The next start counts each, rebuilds the ticker from the 1m history and writes a good
  // state again; every ticker equals the reference. (One stack for the three: each costs a
  // klined start and restart.)
  const std::vector<std::string> names = {"TICKG", "TICKF", "TICKL"};
  Stack stack;
  std::vector<RefTrade> trades = MakeTrades(names, 90, 3);
  auto klined = stack.StartKlined("klined-1");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, trades);
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  kt::RedisClient rc = stack.Redis();
  for (const std::string& sym : names) {
    REQUIRE(WaitUntil([&] { return rc.Get("kline:{" + sym + "}:tks").has_value(); }, seconds(10)));
  }
  klined->Kill();
  klined->Wait(seconds(10));
  std::map<std::string, std::string> damaged;
  for (const std::string& sym : names) {
    const std::string key = "kline:{" + sym + "}:tks";
    std::string d = *rc.Get(key);
    if (sym == "TICKG") {
      d = "not a ticker state";
      rc.Command({"SET", key, d});
    } else if (sym == "TICKF") {
      d[d.size() / 2] = static_cast<char>(d[d.size() / 2] ^ 0x10);
      rc.Command({"SET", key, d});
    } else {
      d.clear();
      rc.Command({"DEL", key});
      rc.Command({"RPUSH", key, "x"});
    }
    damaged[sym] = d;
  }
  auto klined2 = stack.StartKlined("klined-2");
  std::vector<RefTrade> next;
  for (const std::string& sym : names) {
    int64_t last_id = 0, last_time = 0;
    for (const RefTrade& t : trades) {
      if (t.symbol == sym) last_id = t.id, last_time = t.time_ms;
    }
    next.push_back(RefTrade{sym, last_id + 1, last_time + 1, 4242424, 777, false});
  }
  Produce(&producer, next);
  trades.insert(trades.end(), next.begin(), next.end());
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined2->OutputTail());
  for (const RefTrade& n : next) {
    CAPTURE(n.symbol);
    std::optional<std::string> ticker;
    REQUIRE(WaitUntil(
        [&] {
          ticker = rc.Get("ticker:{" + n.symbol + "}");
          return ticker && JsonField(*ticker, "lastId") == std::to_string(n.id);
        },
        seconds(10)));
    std::vector<RefTrade> own;
    for (const RefTrade& t : trades) {
      if (t.symbol == n.symbol) own.push_back(t);
    }
    CheckTicker(*ticker, own);
    CHECK(klined2->Stderr().find("event=store.corrupt symbol=" + n.symbol) != std::string::npos);
    // The rebuilt window's state is written with the next flush (the list replaced by a
    // string).
    const std::string key = "kline:{" + n.symbol + "}:tks";
    CHECK(rc.Command({"TYPE", key})->str == std::string("string"));
    CHECK(rc.Get(key) != damaged[n.symbol]);
  }
  const std::string m = stack.Metrics();
  CHECK(MetricValue(m, "klined_store_corrupt_values_total{kind=\"ticker\"}") == 2);
  CHECK(MetricValue(m, "klined_store_repairs_total{kind=\"ticker\"}") == 2);
  CHECK(MetricValue(m, "klined_store_corrupt_values_total{kind=\"type\"}") == 1);
  CHECK(MetricValue(m, "klined_store_repairs_total{kind=\"type\"}") == 1);
  CHECK(MetricValue(m, "klined_symbols_quarantined") == 0);
  StopCleanly(*klined2);
}
