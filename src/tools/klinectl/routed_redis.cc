// klinectl's routed Redis client; see routed_redis.h.
#include "tools/klinectl/routed_redis.h"

#include <cstdlib>

#include "io/redis/cluster/slot_map.h"

namespace klined::klinectl {
namespace {

std::string Joined(const std::vector<std::string>& seeds) {
  std::string out;
  for (const std::string& s : seeds) out.append(out.empty() ? "" : ",").append(s);
  return out;
}

}  // namespace

RoutedRedis::RoutedRedis(cluster::TopologyOptions options)
    : address_(Joined(options.seeds)),
      topology_(std::move(options)),
      router_(&topology_),
      batch_(&router_) {}

bool RoutedRedis::EnsureConnected() {
  if (!mapped_ && topology_.cluster()) {
    if (!topology_.Refresh()) {
      router_.NoteError(topology_.error());
      return false;
    }
  }
  mapped_ = true;
  return router_.EnsureConnected() && router_.ScriptsLoaded();
}

uint16_t RoutedRedis::SlotOf(std::span<const std::string_view> argv) {
  if (argv.size() < 2) return 0;
  if (argv[0] == "EVALSHA" || argv[0] == "EVAL") {
    const bool keyed = argv.size() > 3 && std::atoi(std::string(argv[2]).c_str()) > 0;
    return keyed ? cluster::KeySlot(argv[3]) : 0;
  }
  return cluster::KeySlot(argv[1]);
}

void RoutedRedis::Append(std::span<const std::string_view> argv) {
  batch_.Append(SlotOf(argv), argv);
}

RedisReply RoutedRedis::GetReply() { return batch_.Next(); }

RedisReply RoutedRedis::Command(std::initializer_list<std::string_view> argv) {
  Append(argv);
  return GetReply();
}

}  // namespace klined::klinectl
