// Poison pills: stored values that are not what klined writes, with the real klined binary.
// Invariant: a damaged symbol never stalls the others. Every other symbol keeps equal to the
// independent computation and Kafka offsets keep committing; the damaged one is repaired
// exactly from what else is stored (a watermark from the per-partition watermarks and back, a
// current candle or history member from a finer interval's candles), or else quarantined:
// its trades are dead-lettered with reason store_corrupt, counted and logged, until a load
// succeeds again once a person fixed the value.
#include "stack.h"

using namespace klined_it;  // NOLINT: the shared stack and reference
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

std::vector<RefTrade> Only(const std::vector<RefTrade>& all, const std::set<std::string>& syms) {
  std::vector<RefTrade> out;
  for (const RefTrade& t : all) {
    if (syms.contains(t.symbol)) out.push_back(t);
  }
  return out;
}

}  // namespace

TEST_CASE("poison: corrupt stored values under load: repaired or quarantined, the rest flows") {
  Stack stack;
  // Repaired: W (watermark not a number), P (per-partition watermarks garbage), C5 (5m
  // current not a candle: the merge of its 1m candles), T (1h current a list: from 5m), L5 (a
  // 5m history member a late trade needs: from 1m). Quarantined: C1 (1m current garbage, no
  // finer interval), H (1m history a string: no write of its minutes can land). L1: a 1m
  // history member a late trade needs, garbage: only that late trade is dead-lettered.
  const std::vector<std::string> good = {"G0", "G1", "G2", "G3"};
  const std::vector<std::string> repaired = {"W", "P", "C5", "T", "L5"};
  const std::vector<std::string> quarantined = {"C1", "H"};
  std::vector<std::string> symbols = good;
  symbols.insert(symbols.end(), repaired.begin(), repaired.end());
  symbols.insert(symbols.end(), quarantined.begin(), quarantined.end());
  symbols.push_back("L1");
  const int64_t m0 = MinuteAgo(30);
  int64_t id = 1000;
  std::vector<RefTrade> phase1;
  for (const std::string& sym : symbols) {
    for (int minute = 0; minute < 6; ++minute) {
      for (int k = 0; k < 4; ++k) {
        ++id;
        phase1.push_back(RefTrade{sym, id, m0 + minute * 60000 + k * 7000, 100000 + id % 997,
                                  1 + id % 13, k % 2 == 0});
      }
    }
  }
  {
    auto klined = stack.StartKlined("klined-1");
    kt::Producer producer(stack.broker.bootstrap());
    Produce(&producer, phase1);
    REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(phase1), seconds(60)), klined->OutputTail());
    stack.CheckCandles(phase1, symbols);
    StopCleanly(*klined);
  }
  // Damage what the next instance will have to load.
  kt::RedisClient rc = stack.redis.Connect();
  const std::string minute2 = std::to_string(m0 + 2 * 60000);
  // The 5m bucket of minute 0: closed for sure (minute 5's trades are in a later one), so in
  // history whether or not a rollover ran before klined-1 stopped.
  const int64_t five = m0 - m0 % 300000;
  rc.Command({"SET", "kline:{W}:wm", "not-a-number"});
  rc.Command({"SET", "kline:{P}:wmp", "garbage!"});
  rc.Command({"SET", "kline:{C5}:5m", "{\"t\":garbage"});
  rc.Command({"SET", "kline:{C1}:1m", "nonsense"});
  rc.Command({"DEL", "kline:{T}:1h"});
  rc.Command({"RPUSH", "kline:{T}:1h", "x"});
  rc.Command({"DEL", "kline:{H}:1m:hist"});
  rc.Command({"SET", "kline:{H}:1m:hist", "oops"});
  rc.Command({"ZREMRANGEBYSCORE", "kline:{L1}:1m:hist", minute2, minute2});
  rc.Command({"ZADD", "kline:{L1}:1m:hist", minute2, "not a candle"});
  rc.Command(
      {"ZREMRANGEBYSCORE", "kline:{L5}:5m:hist", std::to_string(five), std::to_string(five)});
  rc.Command({"ZADD", "kline:{L5}:5m:hist", std::to_string(five), "{\"t\":1}"});

  // Phase 2: every symbol trades again, late (minutes 6-9, which storage already closed), and
  // L1 and L5 get a late trade into the damaged buckets.
  std::vector<RefTrade> phase2;
  for (const std::string& sym : symbols) {
    for (int k = 0; k < 6; ++k) {
      ++id;
      phase2.push_back(RefTrade{sym, id, m0 + (6 + k % 4) * 60000 + k * 3000, 200000 + id % 991,
                                2 + id % 7, k % 3 == 0});
    }
  }
  const RefTrade late_l1{"L1", ++id, m0 + 2 * 60000 + 45000, 123456, 5, false};
  const RefTrade late_l5{"L5", ++id, m0 + 46000, 234567, 6, true};
  phase2.push_back(late_l1);
  phase2.push_back(late_l5);
  auto klined = stack.StartKlined("klined-2");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, phase2);
  std::vector<RefTrade> all = phase1;
  all.insert(all.end(), phase2.begin(), phase2.end());
  std::set<std::string> flowing(good.begin(), good.end());
  flowing.insert(repaired.begin(), repaired.end());
  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(Only(all, flowing)), seconds(60)),
                  klined->OutputTail());
  stack.CheckCandles(Only(all, flowing), std::vector<std::string>(flowing.begin(), flowing.end()));
  // L1 goes on without the one late trade into its unreadable bucket.
  std::vector<RefTrade> l1 = Only(all, {"L1"});
  std::erase_if(l1, [&](const RefTrade& t) { return t.id == late_l1.id; });
  REQUIRE(stack.WaitForWatermarks(LastIds(l1), seconds(30)));
  for (const auto& [iv, len] : kIntervals) {
    const auto cur = rc.Get("kline:{L1}:" + iv);
    REQUIRE(cur.has_value());
    CHECK(*cur ==
          Expected(l1, "L1", iv, len, std::stoll(cur->substr(5, cur->find(',') - 5))).second);
  }
  // The quarantined symbols' phase-2 trades and L1's late one are dead-lettered.
  const size_t dead_expected = 6 + 6 + 1;
  std::vector<kt::KafkaMessage> dlq;
  REQUIRE(WaitUntil(
      [&] {
        dlq = kt::ConsumeAll(stack.broker.bootstrap(), "trades-dlq", seconds(5), dead_expected);
        return dlq.size() >= dead_expected;
      },
      seconds(40)));
  std::map<std::string, int> dead;
  for (const auto& m : dlq) {
    CHECK(m.Header("klined-reject-reason") == std::optional<std::string>("store_corrupt"));
    dead[*m.key]++;
  }
  CHECK(dead["C1"] == 6);
  CHECK(dead["H"] >= 6);  // each retry of H's quarantine may hand out the same trades again
  CHECK(dead["L1"] == 1);
  // Offsets kept committing: the group's committed offsets reach the end of every partition.
  REQUIRE_MESSAGE(WaitUntil(
                      [&] {
                        for (const auto& [committed, end] : kt::CommittedAndEnd(
                                 stack.broker.bootstrap(), "klined-it", "trades", 4)) {
                          if (end > 0 && committed != end) return false;
                        }
                        return true;
                      },
                      seconds(30)),
                  klined->OutputTail());
  const std::string m = stack.Metrics();
  CHECK(MetricValue(m, "klined_store_repairs_total{kind=\"watermark\"}") >= 1);
  CHECK(MetricValue(m, "klined_store_repairs_total{kind=\"marks\"}") >= 1);
  CHECK(MetricValue(m, "klined_store_repairs_total{kind=\"current\"}") >= 1);
  CHECK(MetricValue(m, "klined_store_repairs_total{kind=\"type\"}") >= 1);
  CHECK(MetricValue(m, "klined_store_repairs_total{kind=\"history\"}") >= 1);
  CHECK(MetricValue(m, "klined_store_corrupt_values_total{kind=\"history\"}") >= 2);
  CHECK(MetricValue(m, "klined_symbol_quarantines_total") >= 2);
  CHECK(MetricValue(m, "klined_trades_rejected_total{reason=\"store_corrupt\"}") >= 13);
  const std::string log = klined->Stderr();
  CHECK(log.find("event=store.corrupt symbol=C1 kind=current key=kline:{C1}:1m") !=
        std::string::npos);
  CHECK(log.find("event=shard.quarantine shard=") != std::string::npos);

  // A person deletes C1's unreadable candle: after the retry interval C1 loads, and trades.
  rc.Command({"DEL", "kline:{C1}:1m"});
  std::this_thread::sleep_for(seconds(6));
  const RefTrade again{"C1", ++id, MinuteAgo(0) + 100, 777, 1, false};
  Produce(&producer, {again});
  REQUIRE_MESSAGE(stack.WaitForWatermarks({{"C1", again.id}}, seconds(30)), klined->OutputTail());
  REQUIRE(WaitUntil([&] { return MetricValue(stack.Metrics(), "klined_symbols_quarantined") <= 1; },
                    seconds(10)));
  StopCleanly(*klined);
}
