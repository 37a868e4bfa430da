// Cluster routing primitives: slots (CRC16 and hash tags as Redis computes them), redirect
// replies, and the slot map built from CLUSTER SHARDS.
#include "io/redis/cluster/slot_map.h"

#include <doctest/doctest.h>
#include <hiredis/read.h>

#include <memory>
#include <string>
#include <vector>

namespace klined::cluster {
namespace {

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

// Parses RESP bytes with hiredis's own reader, as a reply from a server would arrive.
Reply Parse(const std::string& resp) {
  redisReader* reader = redisReaderCreate();
  REQUIRE(redisReaderFeed(reader, resp.data(), resp.size()) == REDIS_OK);
  void* out = nullptr;
  REQUIRE(redisReaderGetReply(reader, &out) == REDIS_OK);
  redisReaderFree(reader);
  REQUIRE(out != nullptr);
  return Reply(static_cast<redisReply*>(out));
}

// RESP builders for a CLUSTER SHARDS reply.
std::string Bulk(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}
std::string Int(int64_t v) { return ":" + std::to_string(v) + "\r\n"; }
std::string Array(const std::vector<std::string>& items) {
  std::string out = "*" + std::to_string(items.size()) + "\r\n";
  for (const std::string& i : items) out += i;
  return out;
}
std::string NodeEntry(std::string_view id, int port, std::string_view endpoint,
                      std::string_view role, std::string_view health) {
  return Array({Bulk("id"), Bulk(id), Bulk("port"), Int(port), Bulk("ip"), Bulk("127.0.0.1"),
                Bulk("endpoint"), Bulk(endpoint), Bulk("role"), Bulk(role),
                Bulk("replication-offset"), Int(42), Bulk("health"), Bulk(health)});
}
std::string Shard(std::vector<std::string> slot_bounds, std::vector<std::string> nodes) {
  return Array({Bulk("slots"), Array(slot_bounds), Bulk("nodes"), Array(nodes)});
}

TEST_CASE("cluster: CRC16 and key slots match Redis") {
  CHECK(Crc16("123456789") == 0x31C3);  // the check value Redis's cluster spec gives
  CHECK(Crc16("") == 0);
  // Values from redis-cli CLUSTER KEYSLOT on Redis 7.0.
  CHECK(KeySlot("foo") == 12182);
  CHECK(KeySlot("bar") == 5061);
  CHECK(KeySlot("{user1000}.following") == KeySlot("user1000"));
  CHECK(KeySlot("kl:{BTCUSDT}:1m") == KeySlot("kl:{BTCUSDT}:1m:hist"));
  CHECK(KeySlot("kl:{BTCUSDT}:1m") == KeySlot("BTCUSDT"));
}

TEST_CASE("cluster: TagForSlot gives a tag of every slot") {
  for (int slot : {0, 1, 5061, 12182, 16383}) {
    CAPTURE(slot);
    const std::string tag = TagForSlot(static_cast<uint16_t>(slot));
    CHECK(KeySlot("klined:wait{" + tag + "}") == slot);
  }
  int covered = 0;
  for (int slot = 0; slot < kSlots; slot += 97) {
    covered += KeySlot("{" + TagForSlot(static_cast<uint16_t>(slot)) + "}") == slot;
  }
  CHECK(covered == (kSlots + 96) / 97);
}

TEST_CASE("cluster: hash tags are the first non-empty {...}") {
  CHECK(HashTag("kl:{BTCUSDT}:1m") == "BTCUSDT");
  CHECK(HashTag("foo{}{bar}") == "foo{}{bar}");  // the first {...} is empty: the whole key
  CHECK(HashTag("foo{{bar}}zap") == "{bar");     // up to the first } after the first {
  CHECK(HashTag("foo{bar}{zap}") == "bar");
  CHECK(HashTag("nobraces") == "nobraces");
  CHECK(HashTag("open{only") == "open{only");
  CHECK(HashTag("}{x}") == "x");
}

TEST_CASE("cluster: redirect replies") {
  Redirect r = ParseRedirect("MOVED 3999 127.0.0.1:6381");
  CHECK(r.kind == Redirect::Kind::kMoved);
  CHECK(r.slot == 3999);
  CHECK(r.address == "127.0.0.1:6381");

  r = ParseRedirect("ASK 16383 10.1.2.3:7000");
  CHECK(r.kind == Redirect::Kind::kAsk);
  CHECK(r.slot == 16383);
  CHECK(r.address == "10.1.2.3:7000");

  r = ParseRedirect("MOVED 12 :7001");  // a node that does not know its endpoint
  CHECK(r.kind == Redirect::Kind::kMoved);
  CHECK(ResolveEndpoint(r.address, "10.0.0.5:7000") == "10.0.0.5:7001");
  CHECK(ResolveEndpoint("10.0.0.6:7002", "10.0.0.5:7000") == "10.0.0.6:7002");

  CHECK(ParseRedirect("TRYAGAIN Multiple keys request during rehashing of slot").kind ==
        Redirect::Kind::kTryAgain);
  CHECK(ParseRedirect("CLUSTERDOWN The cluster is down").kind == Redirect::Kind::kClusterDown);
  CHECK(ParseRedirect("CLUSTERDOWN Hash slot not served").kind == Redirect::Kind::kClusterDown);

  // Not redirects: ordinary errors, and malformed ones (never trusted as a target).
  for (const char* e :
       {"ERR unknown command", "NOSCRIPT No matching script", "MOVED", "MOVED 1",
        "MOVED 16384 127.0.0.1:1", "MOVED -1 127.0.0.1:1", "MOVED x 127.0.0.1:1",
        "MOVED 1 nohostport", "ASKING", "MOVEDX 1 127.0.0.1:1", "TRYAGAINX", "MOVED 1 a:1 extra"}) {
    CAPTURE(e);
    CHECK(ParseRedirect(e).kind == Redirect::Kind::kNone);
  }
}

TEST_CASE("cluster: the slot map from CLUSTER SHARDS") {
  const std::string reply = Array({
      Shard({Int(0), Int(5460)}, {NodeEntry("a1", 7000, "127.0.0.1", "master", "online"),
                                  NodeEntry("a2", 7003, "127.0.0.1", "replica", "online")}),
      Shard({Int(5461), Int(10922)},
            {NodeEntry("b2", 7004, "127.0.0.1", "replica", "online"),
             NodeEntry("b1", 7001, "?", "master", "online")}),  // endpoint unknown: its ip
      Shard({Int(10923), Int(12000), Int(12002), Int(16383)},
            {NodeEntry("c1", 7002, "127.0.0.1", "master", "online")}),
  });
  std::string error;
  const std::optional<SlotMap> map =
      SlotMap::FromShardsReply(Parse(reply).get(), "127.0.0.1:7000", &error);
  REQUIRE_MESSAGE(map.has_value(), error);
  REQUIRE(map->primaries().size() == 3);
  CHECK(map->primaries()[0].address == "127.0.0.1:7000");
  CHECK(map->primaries()[0].id == "a1");
  CHECK(map->primaries()[1].address == "127.0.0.1:7001");
  CHECK(map->NodeOf(0) == 0);
  CHECK(map->NodeOf(5460) == 0);
  CHECK(map->NodeOf(5461) == 1);
  CHECK(map->NodeOf(10923) == 2);
  CHECK(map->NodeOf(12001) == -1);  // a gap: uncovered
  CHECK(map->NodeOf(16383) == 2);
  CHECK(map->uncovered() == 1);

  // MOVED patches one slot; a new address becomes a primary.
  SlotMap moved = *map;
  CHECK(moved.Move(12001, "127.0.0.1:7002") == 2);
  CHECK(moved.uncovered() == 0);
  CHECK(moved.Move(0, "127.0.0.1:7009") == 3);
  CHECK(moved.NodeOf(0) == 3);
  CHECK(moved.NodeOf(1) == 0);
  CHECK(moved.Find("127.0.0.1:7009") == 3);
  CHECK(moved.Find("127.0.0.1:9999") == -1);
  CHECK(map->FirstSlots() == std::vector<int>{0, 5461, 10923});
  CHECK(moved.FirstSlots() == std::vector<int>{1, 5461, 10923, 0});
  // A primary that lost every slot (to a MOVED) serves none.
  for (int s = 5461; s <= 10922; ++s) moved.Move(static_cast<uint16_t>(s), "127.0.0.1:7002");
  CHECK(moved.FirstSlots() == std::vector<int>{1, -1, 5461, 0});
}

TEST_CASE("cluster: shards without an online primary leave their slots uncovered") {
  const std::string reply = Array({
      Shard({Int(0), Int(8191)}, {NodeEntry("a1", 7000, "127.0.0.1", "master", "failed"),
                                  NodeEntry("a2", 7003, "127.0.0.1", "replica", "online")}),
      Shard({Int(8192), Int(16383)}, {NodeEntry("b1", 7001, "127.0.0.1", "master", "online")}),
  });
  std::string error;
  const std::optional<SlotMap> map = SlotMap::FromShardsReply(Parse(reply).get(), "", &error);
  REQUIRE(map.has_value());
  CHECK(map->uncovered() == 8192);
  CHECK(map->NodeOf(0) == -1);
  CHECK(map->NodeOf(8192) == 0);
}

TEST_CASE("cluster: malformed CLUSTER SHARDS replies are refused with a reason") {
  const std::vector<std::string> bad = {
      Bulk("not an array"),
      Array({Array({Bulk("slots"), Array({Int(0)}), Bulk("nodes"), Array({})})}),  // odd bounds
      Array({Array({Bulk("nodes"), Array({})})}),                                  // no slots
      Array({Shard({Int(0), Int(16384)}, {NodeEntry("a", 7000, "h", "master", "online")})}),
      Array({Shard({Int(10), Int(5)}, {NodeEntry("a", 7000, "h", "master", "online")})}),
      Array({Shard({Int(0), Int(1)}, {NodeEntry("a", 0, "h", "master", "online")})}),
  };
  for (const std::string& b : bad) {
    std::string error;
    CHECK_FALSE(SlotMap::FromShardsReply(Parse(b).get(), "", &error).has_value());
    CHECK(error.rfind("CLUSTER SHARDS: ", 0) == 0);
  }
  std::string error;
  CHECK_FALSE(SlotMap::FromShardsReply(nullptr, "", &error).has_value());
}

TEST_CASE("cluster: a single-node map serves every slot") {
  const SlotMap map = SlotMap::Single("127.0.0.1:6379");
  CHECK(map.uncovered() == 0);
  CHECK(map.NodeOf(0) == 0);
  CHECK(map.NodeOf(16383) == 0);
}

}  // namespace
}  // namespace klined::cluster
