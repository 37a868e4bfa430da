// Redis Cluster routing primitives: which slot a key hashes to, what a redirect reply says,
// and which primary serves each slot. Knows nothing of candles; pure (no I/O), so it is
// unit-tested without a server.
//
// DESIGN
// A cluster has 16384 slots; a key's slot is CRC16 (XMODEM) of its hash tag (the part between
// the first '{' and the next '}', when that is not empty) or of the whole key, mod 16384.
// The slot map is built from `CLUSTER SHARDS` (Redis 7): per shard its slot ranges and nodes;
// the node with role "master" serves the slots. Between refreshes a MOVED reply patches one
// slot (`Move`), which is what the reply means: that slot now lives on that node. ASK changes
// nothing in the map (the slot is being migrated; only that one command goes to the target).
#pragma once

#include <hiredis/hiredis.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace klined::cluster {

inline constexpr int kSlots = 16384;

// CRC16-CCITT (XMODEM: poly 0x1021, init 0), as Redis's crc16.c.
uint16_t Crc16(std::string_view data);
// The part of a key that is hashed: its hash tag if it has a non-empty one, else the key.
std::string_view HashTag(std::string_view key);
uint16_t KeySlot(std::string_view key);
// The shortest decimal string whose slot is `slot` (a hash tag for a key the router writes
// on a node of its choosing; found by search, ~16k CRCs on average).
std::string TagForSlot(uint16_t slot);

// An error reply that redirects or defers a command.
struct Redirect {
  enum class Kind {
    kNone,         // not a cluster redirect: an ordinary error
    kMoved,        // the slot lives elsewhere now: update the map, resend there
    kAsk,          // the slot is migrating: send ASKING then this command to the target, once
    kTryAgain,     // a multi-key command met a slot mid-migration: back off, retry
    kClusterDown,  // the cluster cannot serve (no majority, uncovered slot): back off, retry
  };
  Kind kind = Kind::kNone;
  uint16_t slot = 0;
  // host:port of the target (MOVED/ASK). Redis sends ":port" when the node does not know its
  // endpoint; then the host is that of the node that replied (ResolveEndpoint).
  std::string address;
};
Redirect ParseRedirect(std::string_view error);
// ":6380" said by the node at "10.0.0.5:6379" -> "10.0.0.5:6380"; anything else unchanged.
std::string ResolveEndpoint(std::string_view address, std::string_view replied_from);

struct Node {
  std::string id;       // the cluster node id; empty for a node known only from a MOVED
  std::string address;  // host:port
};

class SlotMap {
 public:
  // From a `CLUSTER SHARDS` reply (RESP2 arrays of field/value pairs). Shards without a
  // primary, and primaries whose health is not "online", leave their slots uncovered.
  // nullopt (and *error says why) for a reply of the wrong shape. `replied_from` resolves
  // endpoints the node reports as "" or "?".
  static std::optional<SlotMap> FromShardsReply(const redisReply* reply,
                                                std::string_view replied_from, std::string* error);
  // One node serving every slot (a map before the first refresh, tests).
  static SlotMap Single(std::string address);

  // Index into primaries(), or -1 when no primary serves the slot.
  int NodeOf(uint16_t slot) const { return owner_[slot]; }
  const std::vector<Node>& primaries() const { return primaries_; }
  // Slots with no primary.
  int uncovered() const;
  // Per primary (index into primaries()): the lowest slot it serves, -1 if none (a node left
  // in the map that failed over or lost its slots).
  std::vector<int> FirstSlots() const;
  // After MOVED: the slot is served by `address` (a primary added if it is new). Returns its
  // index.
  int Move(uint16_t slot, std::string_view address);
  // The index of the primary at `address`, or -1.
  int Find(std::string_view address) const;

 private:
  SlotMap() { owner_.fill(-1); }
  int AddPrimary(Node node);

  std::vector<Node> primaries_;
  std::array<int16_t, kSlots> owner_;
};

}  // namespace klined::cluster
