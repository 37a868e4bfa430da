// The Redis Cluster routing layer (src/io/redis/cluster/) against a real cluster of three
// primaries and three replicas. Invariants: every call reaches the primary of its slot and
// gets its own reply in order, through a batch spread over every node; a slot being migrated
// (ASK), a slot moved behind a router's back (MOVED), a script cache flushed on one node
// (NOSCRIPT) and a primary killed with SIGKILL (CLUSTERDOWN, failover) are absorbed with
// every write landing exactly where a plain client then reads it, and each is counted.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "io/redis/cluster/router.h"
#include "redis_cluster.h"

using klined::RedisReply;
using klined::cluster::Call;
using klined::cluster::Encode;
using klined::cluster::KeySlot;
using klined::cluster::Router;
using klined::cluster::Topology;
using klined::cluster::TopologyOptions;
using klined::test::RedisCluster;
using klined::test::RedisServer;
using std::chrono::milliseconds;

namespace {

TopologyOptions ClusterOptions(RedisCluster& c) {
  TopologyOptions o;
  o.cluster = true;
  o.seeds = {c.nodes().front()->address()};
  o.node.command_timeout_ms = 2000;
  o.node.connect_timeout_ms = 500;
  o.min_refresh_gap_ms = 50;
  return o;
}

std::string Str(const RedisReply& r) {
  REQUIRE(r != nullptr);
  return std::string(r->str == nullptr ? "" : r->str, r->len);
}

// Keys of `n` different hash tags (so they spread over the slots).
std::vector<std::string> Keys(int n, const std::string& stem) {
  std::vector<std::string> keys;
  for (int i = 0; i < n; ++i) keys.push_back("kl:{SYM" + std::to_string(i) + "}:" + stem);
  return keys;
}

void SetAll(Router& router, const std::vector<std::string>& keys, const std::string& value) {
  std::vector<Call> calls;
  for (const std::string& k : keys) calls.push_back({KeySlot(k), Encode({"SET", k, value + k})});
  std::vector<RedisReply> replies;
  router.Execute(calls, &replies);
  for (size_t i = 0; i < replies.size(); ++i) {
    CAPTURE(keys[i]);
    CHECK(Str(replies[i]) == "OK");
  }
}

// What a plain client on the key's primary reads.
std::string Direct(RedisCluster& cluster, const std::string& key) {
  RedisServer& owner = cluster.PrimaryOf(KeySlot(key));
  return owner.Connect().Get(key).value_or("<missing>");
}

// The replica of `primary` (ROLE on every other node).
RedisServer& ReplicaOf(RedisCluster& cluster, RedisServer& primary) {
  for (auto& n : cluster.nodes()) {
    if (n.get() == &primary) continue;
    auto role = n->Connect().Command({"ROLE"});
    if (std::string(role->element[0]->str) == "slave" &&
        std::to_string(role->element[2]->integer) ==
            primary.address().substr(primary.address().rfind(':') + 1)) {
      return *n;
    }
  }
  throw std::runtime_error("no replica of " + primary.address());
}

}  // namespace

TEST_CASE("cluster router: a batch over every primary, each reply in its call's place") {
  RedisCluster cluster(3, 1);
  Topology topology(ClusterOptions(cluster));
  REQUIRE_MESSAGE(topology.Refresh(), topology.error());
  Router router(&topology);
  CHECK(router.map().primaries().size() == 3);
  CHECK(router.map().uncovered() == 0);

  const std::vector<std::string> keys = Keys(300, "v");
  SetAll(router, keys, "a-");
  // Interleaved reads and writes in one batch: replies in call order.
  std::vector<Call> calls;
  for (const std::string& k : keys) {
    calls.push_back({KeySlot(k), Encode({"GET", k})});
    calls.push_back({KeySlot(k), Encode({"APPEND", k, "!"})});
  }
  std::vector<RedisReply> replies;
  router.Execute(calls, &replies);
  for (size_t i = 0; i < keys.size(); ++i) {
    CAPTURE(keys[i]);
    CHECK(Str(replies[2 * i]) == "a-" + keys[i]);
    CHECK(replies[2 * i + 1]->integer == static_cast<long long>(("a-" + keys[i] + "!").size()));
  }
  for (const std::string& k : {keys[0], keys[17], keys[299]}) {
    CHECK(Direct(cluster, k) == "a-" + k + "!");
  }
  CHECK(topology.stats().moved == 0);
  CHECK(topology.stats().ask == 0);
}

TEST_CASE("cluster router: MOVED and ASK while a slot is resharded; NOSCRIPT on one node") {
  RedisCluster cluster(3, 1);
  Topology topology(ClusterOptions(cluster));
  REQUIRE_MESSAGE(topology.Refresh(), topology.error());
  Router router(&topology);
  const size_t script = router.AddScript("return redis.call('INCRBY', KEYS[1], ARGV[1])");

  const std::string key = "kl:{BTCUSDT}:1m";
  const std::string sibling = "kl:{BTCUSDT}:5m";
  const uint16_t slot = KeySlot(key);
  SetAll(router, {key}, "v1-");
  RedisServer& source = cluster.PrimaryOf(slot);
  RedisServer* target = nullptr;
  for (auto& n : cluster.nodes()) {
    if (n.get() != &source && &cluster.PrimaryOf(KeySlot("kl:{ETHUSDT}:1m")) != n.get() &&
        n->Connect().Command({"ROLE"})->element[0]->str == std::string("master")) {
      target = n.get();
    }
  }
  if (target == nullptr) target = &cluster.PrimaryOf(KeySlot("kl:{ETHUSDT}:1m"));
  REQUIRE(target != &source);

  cluster.MoveSlot(slot, *target, [&] {
    // MIGRATING is set and no key has moved: a key the source lacks is answered with ASK.
    SetAll(router, {sibling}, "v2-");
    CHECK(topology.stats().ask >= 1);
    // The map is unchanged by ASK: the existing key is still served by the source.
    CHECK(Str(router.Command(slot, {"GET", key})) == "v1-" + key);
  });
  // The slot now lives on the target; this router's map still says the source: MOVED.
  const uint64_t moved_before = topology.stats().moved;
  CHECK(Str(router.Command(slot, {"GET", key})) == "v1-" + key);
  CHECK(Str(router.Command(slot, {"GET", sibling})) == "v2-" + sibling);
  CHECK(topology.stats().moved > moved_before);
  CHECK(router.map().primaries()[router.map().NodeOf(slot)].address == target->address());
  CHECK(&cluster.PrimaryOf(slot) == target);

  // A script loaded everywhere; one node's cache flushed: NOSCRIPT there, reloaded, resent.
  const std::string counter = "kl:{BTCUSDT}:n";
  CHECK(router.Command(slot, {"EVALSHA", router.Sha(script), "1", counter, "5"})->integer == 5);
  target->Connect().Command({"SCRIPT", "FLUSH"});
  CHECK(router.Command(slot, {"EVALSHA", router.Sha(script), "1", counter, "5"})->integer == 10);
  CHECK(topology.stats().noscript == 1);
  CHECK(Direct(cluster, counter) == "10");
}

TEST_CASE("cluster router: a primary killed with SIGKILL; its replica takes over") {
  RedisCluster cluster(3, 1);
  Topology topology(ClusterOptions(cluster));
  REQUIRE_MESSAGE(topology.Refresh(), topology.error());
  Router router(&topology);

  const std::vector<std::string> keys = Keys(60, "f");
  SetAll(router, keys, "before-");
  const std::string victim_key = keys[0];
  RedisServer& victim = cluster.PrimaryOf(KeySlot(victim_key));
  // Let the replica have the writes (asynchronous replication), as WAIT would ensure.
  CHECK(victim.Connect().Integer({"WAIT", "1", "2000"}) == 1);
  victim.process().Kill();
  victim.process().Wait(milliseconds(5000));

  // Keep writing every key until every write succeeds: calls to the dead primary's slots
  // fail (null: connection refused) or meet CLUSTERDOWN until the replica is promoted.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  bool all_ok = false;
  int rounds = 0;
  while (!all_ok && std::chrono::steady_clock::now() < deadline) {
    ++rounds;
    std::vector<Call> calls;
    for (const std::string& k : keys)
      calls.push_back({KeySlot(k), Encode({"SET", k, "after-" + k})});
    std::vector<RedisReply> replies;
    router.Execute(calls, &replies);
    all_ok = true;
    for (const RedisReply& r : replies) {
      all_ok = all_ok && r != nullptr && r->type == REDIS_REPLY_STATUS;
    }
    if (!all_ok) std::this_thread::sleep_for(milliseconds(100));
  }
  CAPTURE(rounds);
  REQUIRE(all_ok);
  CHECK(rounds > 1);  // the kill was felt
  CHECK(topology.stats().refreshes >= 2);
  CHECK(router.map().Find(victim.address()) < 0);  // the dead node no longer serves a slot
  for (const std::string& k : keys) {
    CAPTURE(k);
    CHECK(Direct(cluster, k) == "after-" + k);
  }
}

TEST_CASE("cluster router: WaitReplicas waits on every node written, holds when one is short") {
  RedisCluster cluster(3, 1);
  TopologyOptions options = ClusterOptions(cluster);
  Topology topology(options);
  REQUIRE_MESSAGE(topology.Refresh(), topology.error());
  Router router(&topology);
  const std::vector<std::string> keys = Keys(60, "w");

  SUBCASE("every node has its replica: durable, nothing owed after") {
    SetAll(router, keys, "a-");
    CHECK(router.owed().size() == 3);
    CHECK_MESSAGE(router.WaitReplicas(1, 2000), router.error());
    CHECK(router.owed().empty());
    CHECK(router.WaitReplicas(1, 2000));  // nothing written since: nothing to wait for
    // Two replicas asked, one each: every node is short, all stay owed.
    SetAll(router, keys, "b-");
    CHECK_FALSE(router.WaitReplicas(2, 200));
    CHECK(router.owed().size() == 3);
    CHECK(topology.stats().wait_timeouts == 3);
  }
  SUBCASE("a stopped replica holds its primary only; the writes land once it resumes") {
    RedisServer& primary = cluster.PrimaryOf(KeySlot(keys[0]));
    RedisServer& replica = ReplicaOf(cluster, primary);
    replica.process().Pause();
    SetAll(router, keys, "c-");
    CHECK_FALSE(router.WaitReplicas(1, 300));
    REQUIRE(router.owed().size() == 1);
    CHECK(router.owed().front() == primary.address());
    CHECK(router.error().find(primary.address()) != std::string::npos);
    replica.process().Resume();
    CHECK_MESSAGE(router.WaitReplicas(1, 5000), router.error());
    CHECK(router.owed().empty());
  }
  SUBCASE("writes of a connection that was dropped are still waited for") {
    // The router's connection to the node is killed after the write and it reconnects with
    // a read. Redis 7.0 (Debian 12) lets WAIT on any connection cover the server's writes up
    // to the last command of that connection, so this holds even without the marker write
    // (tried); from 7.2 WAIT covers only the connection's own writes, which the marker is for.
    RedisServer& primary = cluster.PrimaryOf(KeySlot(keys[0]));
    RedisServer& replica = ReplicaOf(cluster, primary);
    replica.process().Pause();
    SetAll(router, keys, "d-");
    primary.Connect().Command({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
    // Reads until the router is connected again: a fresh connection with no write on it.
    RedisReply read;
    for (int i = 0; i < 100 && read == nullptr; ++i) {
      read = router.Command(KeySlot(keys[0]), {"GET", keys[0]});
      if (read == nullptr) std::this_thread::sleep_for(milliseconds(50));
    }
    REQUIRE(read != nullptr);
    CHECK(Str(read) == "d-" + keys[0]);
    CHECK_FALSE(router.WaitReplicas(1, 300));
    CHECK(router.owed().size() == 1);
    replica.process().Resume();
    // The node's connection reconnects after its backoff: wait again until it is durable.
    bool durable = false;
    for (int i = 0; i < 50 && !durable; ++i) {
      durable = router.WaitReplicas(1, 2000);
      if (!durable) std::this_thread::sleep_for(milliseconds(100));
    }
    CHECK_MESSAGE(durable, router.error());
    CHECK(router.owed().empty());
  }
}
