#include "io/redis/cluster/router.h"

#include <algorithm>
#include <random>
#include <thread>

#include "base/clock.h"

namespace klined::cluster {
namespace {

int64_t Jitter(int64_t up_to) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  return up_to <= 0 ? 0 : static_cast<int64_t>(rng() % static_cast<uint64_t>(up_to + 1));
}

std::string_view ErrorText(const redisReply* r) { return {r->str, r->len}; }

}  // namespace

std::string Encode(std::span<const std::string_view> argv) {
  std::string out = "*" + std::to_string(argv.size()) + "\r\n";
  for (const std::string_view a : argv) {
    out.append("$").append(std::to_string(a.size())).append("\r\n").append(a).append("\r\n");
  }
  return out;
}

// ---- Topology ----------------------------------------------------------------------------

Topology::Topology(TopologyOptions options) : options_(std::move(options)) {
  map_ = std::make_shared<const SlotMap>(
      SlotMap::Single(options_.seeds.empty() ? std::string() : options_.seeds.front()));
}

std::shared_ptr<const SlotMap> Topology::Current(uint64_t* version) const {
  std::lock_guard lock(mu_);
  *version = version_.load(std::memory_order_relaxed);
  return map_;
}

std::string Topology::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

bool Topology::MaybeRefresh() {
  if (!options_.cluster) return false;
  const int64_t now = MonotonicMs();
  const bool periodic = now >= next_periodic_ms_.load(std::memory_order_relaxed);
  if (!periodic && !wanted_.load(std::memory_order_relaxed)) return false;
  if (now < next_allowed_ms_.load(std::memory_order_relaxed)) return false;
  std::unique_lock lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;  // another thread is refreshing
  const uint64_t before = version_.load(std::memory_order_relaxed);
  RefreshLocked();
  return version_.load(std::memory_order_relaxed) != before;
}

bool Topology::Refresh() {
  if (!options_.cluster) return true;
  std::lock_guard lock(mu_);
  return RefreshLocked();
}

bool Topology::RefreshLocked() {
  wanted_.store(false, std::memory_order_relaxed);
  const int64_t now = MonotonicMs();
  next_allowed_ms_.store(now + options_.min_refresh_gap_ms + Jitter(options_.min_refresh_gap_ms),
                         std::memory_order_relaxed);
  next_periodic_ms_.store(
      now + options_.periodic_refresh_ms + Jitter(options_.periodic_refresh_ms / 4),
      std::memory_order_relaxed);
  // Ask the node we asked last, then the known primaries, then the seeds.
  std::vector<std::string> candidates;
  if (!conn_address_.empty()) candidates.push_back(conn_address_);
  for (const Node& n : map_->primaries()) candidates.push_back(n.address);
  for (const std::string& s : options_.seeds) candidates.push_back(s);
  std::string why;
  for (const std::string& address : candidates) {
    if (address.empty()) continue;
    if (conn_ == nullptr || conn_address_ != address) {
      RedisOptions o = options_.node;
      o.address = address;
      conn_ = std::make_unique<RedisConn>(std::move(o));
      conn_address_ = address;
    }
    if (!conn_->EnsureConnected()) {
      why = address + ": " + conn_->error();
      conn_.reset();
      conn_address_.clear();
      continue;
    }
    RedisReply r = conn_->Command({"CLUSTER", "SHARDS"});
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      why = address + ": " + (r == nullptr ? conn_->error() : std::string(ErrorText(r.get())));
      conn_.reset();
      conn_address_.clear();
      continue;
    }
    std::optional<SlotMap> map = SlotMap::FromShardsReply(r.get(), address, &why);
    if (!map) {
      why = address + ": " + why;
      continue;
    }
    map_ = std::make_shared<const SlotMap>(std::move(*map));
    version_.fetch_add(1, std::memory_order_release);
    stats_.refreshes.fetch_add(1, std::memory_order_relaxed);
    error_.clear();
    return true;
  }
  error_ = why.empty() ? "no node to ask for CLUSTER SHARDS" : why;
  stats_.refresh_failures.fetch_add(1, std::memory_order_relaxed);
  return false;
}

// ---- Router ------------------------------------------------------------------------------

Router::Router(Topology* topology, int max_redirects, int64_t retry_budget_ms)
    : topology_(topology), max_redirects_(max_redirects), retry_budget_ms_(retry_budget_ms) {
  SyncMap();
}

size_t Router::AddScript(std::string body) {
  for (auto& [address, conn] : conns_) conn->AddScript(body);
  scripts_.push_back(std::move(body));
  script_shas_.emplace_back();
  for (auto& [address, conn] : conns_) {
    if (conn->connected()) script_shas_.back() = std::string(conn->Sha(scripts_.size() - 1));
  }
  return scripts_.size() - 1;
}

RedisConn* Router::Node(const std::string& address) {
  RedisConn* conn = nullptr;
  for (auto& [a, c] : conns_) {
    if (a == address) conn = c.get();
  }
  if (conn == nullptr) {
    RedisOptions o = topology_->options().node;
    o.address = address;
    auto owned = std::make_unique<RedisConn>(std::move(o));
    for (const std::string& s : scripts_) owned->AddScript(s);
    conn = owned.get();
    conns_.emplace_back(address, std::move(owned));
  }
  if (conn->EnsureConnected()) {
    for (size_t i = 0; i < scripts_.size(); ++i) {
      if (script_shas_[i].empty()) script_shas_[i] = std::string(conn->Sha(i));
    }
  } else {
    error_ = address + ": " + conn->error();
  }
  return conn;
}

void Router::SyncMap() {
  if (topology_->version() == map_version_) return;
  shared_map_ = topology_->Current(&map_version_);
  map_ = *shared_map_;
}

const SlotMap& Router::map() {
  SyncMap();
  return map_;
}

std::string Router::AddressOf(uint16_t slot) {
  int node = map_.NodeOf(slot);
  if (node < 0 && topology_->cluster()) {
    topology_->RequestRefresh();
    topology_->MaybeRefresh();
    SyncMap();
    node = map_.NodeOf(slot);
  }
  return node < 0 ? std::string() : map_.primaries()[node].address;
}

RedisReply Router::Command(uint16_t slot, std::initializer_list<std::string_view> argv) {
  const Call call{slot, Encode(argv)};
  std::vector<RedisReply> replies;
  Execute(std::span<const Call>(&call, 1), &replies);
  return std::move(replies.front());
}

void Router::Tally() {
  uint64_t errors = 0;
  uint64_t reconnects = 0;
  for (const auto& [address, conn] : conns_) {
    errors += conn->errors();
    reconnects += conn->reconnects();
  }
  errors_.Set(errors);
  reconnects_.Set(reconnects);
}

bool Router::EnsureConnected() {
  SyncMap();
  bool ok = !map_.primaries().empty();
  for (const cluster::Node& n : map_.primaries()) ok &= Node(n.address)->connected();
  if (map_.primaries().empty()) error_ = "no Redis node known";
  Tally();
  return ok;
}

bool Router::ScriptsLoaded() {
  const auto known = [this] {
    return std::none_of(script_shas_.begin(), script_shas_.end(),
                        [](const std::string& sha) { return sha.empty(); });
  };
  if (known()) return true;
  EnsureConnected();
  return known();
}

void Router::Execute(std::span<const Call> calls, std::vector<RedisReply>* replies) {
  ExecuteRounds(calls, replies);
  Tally();
}

void Router::ExecuteRounds(std::span<const Call> calls, std::vector<RedisReply>* replies) {
  replies->clear();
  replies->resize(calls.size());
  if (calls.empty()) return;
  topology_->MaybeRefresh();
  SyncMap();
  RouterStats& stats = topology_->stats();

  std::vector<Pending> pending;
  pending.reserve(calls.size());
  for (size_t i = 0; i < calls.size(); ++i) pending.push_back({i, AddressOf(calls[i].slot)});

  const int64_t deadline = MonotonicMs() + retry_budget_ms_;
  int64_t backoff_ms = 10;
  std::vector<Pending> next;
  std::vector<std::string> addresses;
  int redirect_rounds = 0;
  while (!pending.empty()) {
    // The nodes of this round, in first-use order; each node's calls keep their order.
    addresses.clear();
    for (const Pending& p : pending) {
      if (std::find(addresses.begin(), addresses.end(), p.address) == addresses.end()) {
        addresses.push_back(p.address);
      }
    }
    // Write every node's pipeline, then read.
    std::vector<RedisConn*> conns(addresses.size(), nullptr);
    for (size_t n = 0; n < addresses.size(); ++n) {
      if (addresses[n].empty()) continue;  // slot unserved: CLUSTERDOWN-like, below
      RedisConn* conn = Node(addresses[n]);
      if (!conn->connected()) {
        topology_->RequestRefresh();  // the node may have failed over
        continue;
      }
      for (const Pending& p : pending) {
        if (p.address != addresses[n]) continue;
        if (p.asking) conn->Append({"ASKING"});
        conn->AppendFormatted(calls[p.call].resp);
      }
      Owe(addresses[n]);  // from the first byte sent, the calls may run there
      if (conn->FlushWrites())
        conns[n] = conn;
      else
        error_ = addresses[n] + ": " + conn->error();
    }
    next.clear();
    bool back_off = false;
    bool redirected = false;
    for (size_t n = 0; n < addresses.size(); ++n) {
      RedisConn* conn = conns[n];
      bool lost = false;
      bool reload_scripts = false;  // this node answered NOSCRIPT
      for (const Pending& p : pending) {
        if (p.address != addresses[n]) continue;
        if (conn == nullptr || lost) {
          if (addresses[n].empty()) {
            back_off = true;  // no primary serves the slot now: wait for the map to heal
            next.push_back({p.call, {}});
          }
          continue;  // reply stays null: unknown whether it ran
        }
        if (p.asking) {
          RedisReply ok = conn->GetReply();
          if (ok == nullptr) {
            lost = true;
            error_ = addresses[n] + ": " + conn->error();
            continue;
          }
        }
        RedisReply r = conn->GetReply();
        if (r == nullptr) {
          lost = true;
          error_ = addresses[n] + ": " + conn->error();
          topology_->RequestRefresh();  // the node may have failed over
          continue;
        }
        if (r->type == REDIS_REPLY_ERROR && topology_->cluster()) {
          const Redirect rd = ParseRedirect(ErrorText(r.get()));
          if (rd.kind == Redirect::Kind::kMoved) {
            stats.moved.fetch_add(1, std::memory_order_relaxed);
            const std::string target = ResolveEndpoint(rd.address, addresses[n]);
            map_.Move(rd.slot, target);
            topology_->RequestRefresh();
            redirected = true;
            next.push_back({p.call, target});
          } else if (rd.kind == Redirect::Kind::kAsk) {
            stats.ask.fetch_add(1, std::memory_order_relaxed);
            redirected = true;
            next.push_back({p.call, ResolveEndpoint(rd.address, addresses[n]), true});
          } else if (rd.kind == Redirect::Kind::kTryAgain ||
                     rd.kind == Redirect::Kind::kClusterDown) {
            (rd.kind == Redirect::Kind::kTryAgain ? stats.tryagain : stats.clusterdown)
                .fetch_add(1, std::memory_order_relaxed);
            if (rd.kind == Redirect::Kind::kClusterDown) topology_->RequestRefresh();
            back_off = true;
            next.push_back({p.call, p.address, p.asking});
          }
          if (rd.kind != Redirect::Kind::kNone) {
            (*replies)[p.call] = std::move(r);  // kept if the call runs out of rounds
            continue;
          }
        }
        if (IsNoScript(r.get())) {
          stats.noscript.fetch_add(1, std::memory_order_relaxed);
          reload_scripts = true;
          (*replies)[p.call] = std::move(r);
          next.push_back({p.call, p.address, p.asking});
          continue;
        }
        (*replies)[p.call] = std::move(r);
      }
      if (reload_scripts && conn != nullptr && !lost) conn->ReloadScripts();
    }
    if (next.empty()) break;
    // Out of redirects or of time: the last replies stand.
    if ((redirected && ++redirect_rounds > max_redirects_) || MonotonicMs() >= deadline) break;
    if (back_off) {
      std::this_thread::sleep_for(std::chrono::milliseconds(
          std::min<int64_t>(backoff_ms, std::max<int64_t>(0, deadline - MonotonicMs()))));
      backoff_ms = std::min<int64_t>(backoff_ms * 2, 200);
      topology_->MaybeRefresh();
      SyncMap();
      // Calls that were deferred (not ASK) go where the map says now.
      for (Pending& p : next) {
        if (!p.asking) p.address = AddressOf(calls[p.call].slot);
      }
    }
    pending.swap(next);
  }
}

void Router::Owe(const std::string& address) {
  if (std::find(owed_.begin(), owed_.end(), address) == owed_.end()) owed_.push_back(address);
}

void Router::Forgive(const std::string& address) { std::erase(owed_, address); }

std::vector<std::string> Router::ForgiveGone() {
  SyncMap();
  const std::vector<int> first = map_.FirstSlots();
  std::vector<std::string> gone;
  for (const std::string& address : owed_) {
    const int node = map_.Find(address);
    if (node < 0 || first[static_cast<size_t>(node)] < 0) gone.push_back(address);
  }
  if (gone.empty()) return gone;
  for (const std::string& address : gone) std::erase(owed_, address);
  for (size_t n = 0; n < first.size(); ++n) {
    if (first[n] >= 0) Owe(map_.primaries()[n].address);
  }
  return gone;
}

bool Router::WaitReplicas(int replicas, int64_t timeout_ms) {
  if (owed_.empty() || replicas <= 0) {
    owed_.clear();
    return true;
  }
  topology_->MaybeRefresh();
  SyncMap();
  const std::string want = std::to_string(replicas);
  const std::string timeout = std::to_string(std::max<int64_t>(timeout_ms, 1));
  // Write every owed node's marker and WAIT, then read them all.
  std::vector<RedisConn*> conns(owed_.size(), nullptr);
  bool ok = true;
  const std::vector<int> first = map_.FirstSlots();
  for (size_t n = 0; n < owed_.size(); ++n) {
    const int node = map_.Find(owed_[n]);
    const int slot = node < 0 ? -1 : first[static_cast<size_t>(node)];
    if (slot < 0) {
      error_ = owed_[n] + ": serves no slot any more; its writes' durability is unknown";
      ok = false;
      continue;
    }
    RedisConn* conn = Node(owed_[n]);
    if (!conn->connected()) {
      ok = false;
      continue;
    }
    const std::string marker =
        topology_->options().marker_stem + "{" + TagForSlot(static_cast<uint16_t>(slot)) + "}";
    conn->Append({"SET", marker, "1", "PX", "60000"});
    conn->Append({"WAIT", want, timeout});
    if (conn->FlushWrites()) {
      conns[n] = conn;
    } else {
      error_ = owed_[n] + ": " + conn->error();
      ok = false;
    }
  }
  std::vector<std::string> still_owed;
  for (size_t n = 0; n < owed_.size(); ++n) {
    RedisConn* conn = conns[n];
    bool done = false;
    if (conn != nullptr) {
      RedisReply set = conn->GetReply();
      RedisReply wait = set == nullptr ? nullptr : conn->GetReply();
      if (set == nullptr || wait == nullptr) {
        error_ = owed_[n] + ": " + conn->error();
        topology_->RequestRefresh();
      } else if (set->type != REDIS_REPLY_STATUS) {
        error_ = owed_[n] + ": marker write: " +
                 (set->type == REDIS_REPLY_ERROR ? std::string(ErrorText(set.get())) : "?");
        if (set->type == REDIS_REPLY_ERROR) topology_->RequestRefresh();  // MOVED, mostly
      } else if (wait->type != REDIS_REPLY_INTEGER) {
        error_ = owed_[n] + ": WAIT: " +
                 (wait->type == REDIS_REPLY_ERROR ? std::string(ErrorText(wait.get())) : "?");
      } else if (wait->integer < replicas) {
        topology_->stats().wait_timeouts.fetch_add(1, std::memory_order_relaxed);
        error_ = owed_[n] + ": " + std::to_string(wait->integer) + " of " + want +
                 " replicas within " + timeout + " ms";
      } else {
        done = true;
      }
    }
    if (!done) {
      ok = false;
      still_owed.push_back(owed_[n]);
    }
  }
  owed_.swap(still_owed);
  Tally();
  return ok;
}

// ---- helpers -----------------------------------------------------------------------------

TopologyOptions SingleNode(RedisOptions node, std::string marker_stem) {
  TopologyOptions o;
  o.seeds = {node.address};
  o.node = std::move(node);
  o.marker_stem = std::move(marker_stem);
  return o;
}

RedisReply Batch::Next() {
  if (next_ == replies_.size()) {
    replies_.clear();
    next_ = 0;
    if (calls_.empty()) return nullptr;
    router_->Execute(calls_, &replies_);
    calls_.clear();
  }
  return std::move(replies_[next_++]);
}

void Batch::Drop() {
  calls_.clear();
  replies_.clear();
  next_ = 0;
}

bool SscanStep(Router* router, std::string_view key, std::string* cursor, std::string_view count,
               std::vector<std::string>* members) {
  RedisReply r = router->Command(KeySlot(key), {"SSCAN", key, *cursor, "COUNT", count});
  if (r == nullptr) return false;
  if (!ReadSscanReply(r.get(), cursor, members)) {
    router->NoteError("unexpected SSCAN reply for " + std::string(key));
    return false;
  }
  return true;
}

}  // namespace klined::cluster
