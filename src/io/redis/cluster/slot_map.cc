#include "io/redis/cluster/slot_map.h"

#include <algorithm>
#include <charconv>

namespace klined::cluster {
namespace {

constexpr std::array<uint16_t, 256> MakeCrcTable() {
  std::array<uint16_t, 256> table{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) != 0 ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<uint16_t>(crc << 1);
    }
    table[i] = crc;
  }
  return table;
}
constexpr std::array<uint16_t, 256> kCrcTable = MakeCrcTable();

std::string_view Str(const redisReply* r) {
  if (r == nullptr) return {};
  if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) return {};
  return {r->str, r->len};
}

// An integer field: RESP2 sends ports and slots as integers; accept a decimal string too.
std::optional<int64_t> Int(const redisReply* r) {
  if (r == nullptr) return std::nullopt;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer;
  const std::string_view s = Str(r);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// The value of `name` in a flat field/value array, or null.
const redisReply* Field(const redisReply* map, std::string_view name) {
  if (map == nullptr || map->type != REDIS_REPLY_ARRAY) return nullptr;
  for (size_t i = 0; i + 1 < map->elements; i += 2) {
    if (Str(map->element[i]) == name) return map->element[i + 1];
  }
  return nullptr;
}

std::string_view HostOf(std::string_view address) {
  const size_t colon = address.rfind(':');
  return colon == std::string_view::npos ? address : address.substr(0, colon);
}

}  // namespace

uint16_t Crc16(std::string_view data) {
  uint16_t crc = 0;
  for (const char c : data) {
    crc = static_cast<uint16_t>((crc << 8) ^
                                kCrcTable[((crc >> 8) ^ static_cast<uint8_t>(c)) & 0xff]);
  }
  return crc;
}

std::string_view HashTag(std::string_view key) {
  const size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

uint16_t KeySlot(std::string_view key) { return Crc16(HashTag(key)) & (kSlots - 1); }

Redirect ParseRedirect(std::string_view error) {
  Redirect r;
  const auto word = [&](std::string_view w) {
    return error.size() >= w.size() && error.substr(0, w.size()) == w &&
           (error.size() == w.size() || error[w.size()] == ' ');
  };
  if (word("TRYAGAIN")) {
    r.kind = Redirect::Kind::kTryAgain;
    return r;
  }
  if (word("CLUSTERDOWN")) {
    r.kind = Redirect::Kind::kClusterDown;
    return r;
  }
  Redirect::Kind kind;
  if (word("MOVED")) {
    kind = Redirect::Kind::kMoved;
  } else if (word("ASK")) {
    kind = Redirect::Kind::kAsk;
  } else {
    return r;
  }
  // "<WORD> <slot> <host:port>"
  std::string_view rest = error.substr(error.find(' ') + 1);
  const size_t space = rest.find(' ');
  if (space == std::string_view::npos) return r;
  const std::string_view slot_text = rest.substr(0, space);
  const std::string_view address = rest.substr(space + 1);
  unsigned slot = 0;
  const auto [end, ec] =
      std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), slot);
  if (ec != std::errc() || end != slot_text.data() + slot_text.size() || slot >= kSlots ||
      address.empty() || address.find(':') == std::string_view::npos ||
      address.find(' ') != std::string_view::npos) {
    return r;
  }
  r.kind = kind;
  r.slot = static_cast<uint16_t>(slot);
  r.address = std::string(address);
  return r;
}

std::string TagForSlot(uint16_t slot) {
  for (uint64_t i = 0;; ++i) {
    std::string tag = std::to_string(i);
    if (Crc16(tag) % kSlots == slot % kSlots) return tag;
  }
}

std::string ResolveEndpoint(std::string_view address, std::string_view replied_from) {
  if (address.empty() || address[0] != ':') return std::string(address);
  return std::string(HostOf(replied_from)).append(address);
}

std::optional<SlotMap> SlotMap::FromShardsReply(const redisReply* reply,
                                                std::string_view replied_from, std::string* error) {
  const auto fail = [&](std::string why) -> std::optional<SlotMap> {
    *error = "CLUSTER SHARDS: " + std::move(why);
    return std::nullopt;
  };
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY) return fail("not an array");
  SlotMap map;
  for (size_t s = 0; s < reply->elements; ++s) {
    const redisReply* shard = reply->element[s];
    const redisReply* slots = Field(shard, "slots");
    const redisReply* nodes = Field(shard, "nodes");
    if (slots == nullptr || slots->type != REDIS_REPLY_ARRAY || slots->elements % 2 != 0 ||
        nodes == nullptr || nodes->type != REDIS_REPLY_ARRAY) {
      return fail("shard " + std::to_string(s) + " has no slots/nodes arrays");
    }
    const redisReply* primary = nullptr;
    for (size_t n = 0; n < nodes->elements; ++n) {
      const redisReply* node = nodes->element[n];
      if (Str(Field(node, "role")) == "master" && Str(Field(node, "health")) == "online") {
        primary = node;
      }
    }
    if (primary == nullptr) continue;  // no serving primary: its slots stay uncovered
    const std::optional<int64_t> port = Int(Field(primary, "port"));
    std::string_view host = Str(Field(primary, "endpoint"));
    if (host.empty() || host == "?") host = Str(Field(primary, "ip"));
    if (host.empty() || host == "?") host = HostOf(replied_from);
    if (!port || *port <= 0 || *port > 65535) {
      return fail("shard " + std::to_string(s) + "'s primary has no valid port");
    }
    const int index =
        map.AddPrimary(Node{std::string(Str(Field(primary, "id"))),
                            std::string(host).append(":").append(std::to_string(*port))});
    for (size_t i = 0; i < slots->elements; i += 2) {
      const std::optional<int64_t> lo = Int(slots->element[i]);
      const std::optional<int64_t> hi = Int(slots->element[i + 1]);
      if (!lo || !hi || *lo < 0 || *hi >= kSlots || *lo > *hi) {
        return fail("shard " + std::to_string(s) + " has a bad slot range");
      }
      std::fill(map.owner_.begin() + *lo, map.owner_.begin() + *hi + 1,
                static_cast<int16_t>(index));
    }
  }
  return map;
}

SlotMap SlotMap::Single(std::string address) {
  SlotMap map;
  map.AddPrimary(Node{{}, std::move(address)});
  map.owner_.fill(0);
  return map;
}

int SlotMap::uncovered() const {
  return static_cast<int>(std::count(owner_.begin(), owner_.end(), int16_t{-1}));
}

std::vector<int> SlotMap::FirstSlots() const {
  std::vector<int> first(primaries_.size(), -1);
  for (int s = kSlots - 1; s >= 0; --s) {
    if (owner_[static_cast<size_t>(s)] >= 0)
      first[static_cast<size_t>(owner_[static_cast<size_t>(s)])] = s;
  }
  return first;
}

int SlotMap::Find(std::string_view address) const {
  for (size_t i = 0; i < primaries_.size(); ++i) {
    if (primaries_[i].address == address) return static_cast<int>(i);
  }
  return -1;
}

int SlotMap::Move(uint16_t slot, std::string_view address) {
  int index = Find(address);
  if (index < 0) index = AddPrimary(Node{{}, std::string(address)});
  owner_[slot] = static_cast<int16_t>(index);
  return index;
}

int SlotMap::AddPrimary(Node node) {
  const int found = Find(node.address);
  if (found >= 0) {
    if (primaries_[found].id.empty()) primaries_[found].id = std::move(node.id);
    return found;
  }
  primaries_.push_back(std::move(node));
  return static_cast<int>(primaries_.size() - 1);
}

}  // namespace klined::cluster
