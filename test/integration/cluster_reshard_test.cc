// The real klined binary on a Redis Cluster of three primaries and three replicas while the
// slots of its busiest symbols move to other primaries under load, keys a few at a time (as
// `redis-cli --cluster reshard` does): a symbol's keys sit on two nodes for a while, so its
// calls meet ASK, TRYAGAIN and, after each move, MOVED. Invariant: nothing is lost or counted
// twice: Redis and MySQL equal the independent computation afterwards, and every move
// completes (a call served on the importing node before the symbol's keys arrived would have
// written a key there that the migration then cannot move: BUSYKEY).
#include "stack.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "io/redis/cluster/slot_map.h"

using namespace klined_it;  // NOLINT: the shared stack and reference
using klined::cluster::KeySlot;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("cluster reshard: busy symbols' slots move under load; Redis and MySQL stay exact") {
  Stack stack;
  stack.UseCluster();
  std::vector<std::string> symbols;
  for (int i = 0; i < 12; ++i) symbols.push_back("RS" + std::to_string(i) + "USDT");
  std::vector<RefTrade> trades = MakeTrades(symbols, 400, 2029);
  // Every symbol busy at once: the trades in time order (each symbol's ids stay in order).
  std::stable_sort(trades.begin(), trades.end(),
                   [](const RefTrade& a, const RefTrade& b) { return a.time_ms < b.time_ms; });
  auto klined = stack.StartKlined("klined");
  kt::Producer producer(stack.broker.bootstrap());
  Produce(&producer, std::vector<RefTrade>(trades.begin(), trades.begin() + 400));
  std::map<std::string, int64_t> first_ids;
  for (size_t i = 0; i < 400; ++i) first_ids[trades[i].symbol] = trades[i].id;
  REQUIRE_MESSAGE(stack.WaitForWatermarks(first_ids, seconds(60)), klined->OutputTail());

  // The rest flows in small batches while four symbols' slots move, two keys per MIGRATE.
  std::atomic<bool> done{false};
  std::thread feeder([&] {
    for (size_t at = 400; at < trades.size(); at += 40) {
      const size_t end = std::min(trades.size(), at + 40);
      Produce(&producer, std::vector<RefTrade>(trades.begin() + at, trades.begin() + end));
      std::this_thread::sleep_for(milliseconds(60));
    }
    done = true;
  });
  for (int i = 0; i < 4; ++i) {
    const uint16_t slot = KeySlot(symbols[i]);
    kt::RedisServer& from = stack.cluster->PrimaryOf(slot);
    kt::RedisServer* to = nullptr;
    for (int s = 0; s < 16384 && to == nullptr; s += 97) {
      if (&stack.cluster->PrimaryOf(s) != &from) to = &stack.cluster->PrimaryOf(s);
    }
    REQUIRE(to != nullptr);
    CAPTURE(symbols[i]);
    stack.cluster->MoveSlot(slot, *to, {}, 2, milliseconds(120));
    CHECK(&stack.cluster->PrimaryOf(slot) == to);
  }
  feeder.join();
  CHECK(done);

  REQUIRE_MESSAGE(stack.WaitForWatermarks(LastIds(trades), seconds(60)), klined->OutputTail());
  stack.CheckCandles(trades, symbols);
  // Nothing waits for MySQL on any node (KEYS sees one node's keys).
  REQUIRE(WaitUntil(
      [&] {
        for (auto& node : stack.cluster->nodes()) {
          if (!node->Connect().NothingPending()) return false;
        }
        return true;
      },
      seconds(30)));
  stack.CheckMysql(trades, symbols);
  const std::string m = stack.Metrics();
  CHECK(MetricValue(m, "klined_redis_cluster_moved_total") > 0);
  MESSAGE("ask=" << MetricValue(m, "klined_redis_cluster_ask_total")
                 << " tryagain=" << MetricValue(m, "klined_redis_cluster_tryagain_total")
                 << " moved=" << MetricValue(m, "klined_redis_cluster_moved_total"));
  CHECK(MetricValue(m, "klined_redis_cluster_ask_total") +
            MetricValue(m, "klined_redis_cluster_tryagain_total") >
        0);
  StopCleanly(*klined);
}
