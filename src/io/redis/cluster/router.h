// Routes pipelines of commands to the Redis Cluster primaries that serve their slots, on
// blocking hiredis. Knows nothing of candles: a call is a slot and a RESP-encoded command.
//
// DESIGN
// Topology is shared by every Router of a process (one per thread that talks to Redis: shard
// flushers, the timer jobs, the API). It holds the current SlotMap behind a version number;
// a refresh (CLUSTER SHARDS from a known primary or a seed) is done by one caller at a time
// (try-lock: the others keep routing on the map they have) and no more often than
// `min_refresh_gap_ms` plus up to 100% jitter, so MOVED replies from many threads at once
// cause one refresh, not a storm. A Router re-reads the map when the version moved.
//
// Router is owned by one thread. It keeps one RedisConn per node address (created on first
// use, scripts registered on every one). Execute() splits a batch by node, writes every node's
// pipeline before reading any reply (so the nodes work concurrently), then reads each node's
// replies in order. Per call:
//   MOVED       the map is patched for that slot, a refresh is requested, the call is resent
//   ASK         the call is resent to the target, preceded by ASKING; the map is unchanged
//   TRYAGAIN, CLUSTERDOWN
//               backed off (10 ms doubling, up to `retry_budget_ms` in all) and resent
//   NOSCRIPT    that node's scripts are loaded again and the call is resent
// A call still redirected after `max_redirects` rounds, or out of retry budget, gets its last
// error reply. A call whose node connection fails gets a null reply: Redis may or may not
// have run it, so the caller decides (klined's writes are idempotent under retry); a refresh
// is requested (the node may have failed over).
//
// With `cluster` false the map is one node serving every slot and no CLUSTER command is sent:
// one code path for a single Redis and for a cluster.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/counter.h"
#include "io/redis/cluster/slot_map.h"
#include "io/redis/redis_conn.h"

namespace klined::cluster {

struct TopologyOptions {
  bool cluster = false;
  std::vector<std::string> seeds;  // host:port; the first one alone when not a cluster
  RedisOptions node;               // password, user, timeouts (address ignored)
  int64_t min_refresh_gap_ms = 200;
  int64_t periodic_refresh_ms = 30000;
  // Key stem of the marker WaitReplicas writes (stem{tag}, expires after 60 s); klined sets
  // PREFIX:wait (redis.key_prefix), so the marker lives with the rest of its keys.
  std::string marker_stem = "kline:wait";
};

// Counters summed into klined_redis_cluster_*_total (any thread reads).
struct RouterStats {
  std::atomic<uint64_t> moved{0};
  std::atomic<uint64_t> ask{0};
  std::atomic<uint64_t> tryagain{0};
  std::atomic<uint64_t> clusterdown{0};
  std::atomic<uint64_t> noscript{0};
  std::atomic<uint64_t> refreshes{0};
  std::atomic<uint64_t> refresh_failures{0};
  std::atomic<uint64_t> wait_timeouts{0};  // WaitReplicas found a node short of replicas
};

class Topology {
 public:
  explicit Topology(TopologyOptions options);

  const TopologyOptions& options() const { return options_; }
  bool cluster() const { return options_.cluster; }
  // The current map and its version.
  std::shared_ptr<const SlotMap> Current(uint64_t* version) const;
  uint64_t version() const { return version_.load(std::memory_order_acquire); }
  // Asks for a refresh soon (MOVED, a lost connection).
  void RequestRefresh() { wanted_.store(true, std::memory_order_relaxed); }
  // Refreshes if one was requested or the periodic one is due, and the gap since the last
  // one has passed, and no other thread is refreshing. Blocking (CLUSTER SHARDS), so call it
  // from threads that may block on Redis. True if the map changed.
  bool MaybeRefresh();
  // Refreshes now (startup, tests). False (and error() says why) when no node answered with
  // a usable map.
  bool Refresh();
  std::string error() const;

  RouterStats& stats() { return stats_; }

 private:
  bool RefreshLocked();

  TopologyOptions options_;
  mutable std::mutex mu_;  // guards map_, error_, conn_ (never held while routing)
  std::shared_ptr<const SlotMap> map_;
  std::string error_;
  std::unique_ptr<RedisConn> conn_;  // the refresher's connection
  std::string conn_address_;
  std::atomic<uint64_t> version_{1};
  std::atomic<bool> wanted_{false};
  std::atomic<int64_t> next_allowed_ms_{0};
  std::atomic<int64_t> next_periodic_ms_{0};
  RouterStats stats_;
};

// One call of a batch.
struct Call {
  uint16_t slot = 0;
  std::string resp;  // one command, RESP-encoded (Encode)
};
// RESP encoding of one command (binary safe).
std::string Encode(std::span<const std::string_view> argv);
inline std::string Encode(std::initializer_list<std::string_view> argv) {
  return Encode(std::span<const std::string_view>(argv.begin(), argv.size()));
}

class Router {
 public:
  explicit Router(Topology* topology, int max_redirects = 5, int64_t retry_budget_ms = 2000);
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Registered on every node connection, present and future; the handle is for Sha().
  size_t AddScript(std::string body);
  const std::string& Sha(size_t script) const { return script_shas_[script]; }

  // Runs the calls; (*replies)[i] is call i's reply (null: its node's connection failed).
  void Execute(std::span<const Call> calls, std::vector<RedisReply>* replies);
  // One call.
  RedisReply Command(uint16_t slot, std::initializer_list<std::string_view> argv);

  // Durable writes (redis.wait_replicas): true once every node this router sent calls to
  // since the last successful wait has `replicas` replicas holding them, within
  // `timeout_ms` (one WAIT per node, all nodes at once). WAIT covers the writes of the
  // connection it is sent on, and a call whose reply was lost ran, if at all, on a
  // connection that is gone: so each node first gets a marker write (SET of
  // marker_stem{tag} in a slot the node serves, PX 60000), whose replication offset is
  // past every earlier write on that node. False leaves the nodes owed (and error() names
  // one): the caller holds what depends on them and waits again. A node that no longer
  // serves any slot (failed over) stays owed: whether its writes reached the promoted
  // replica is unknown, so the caller must re-check them, then call Forgive().
  bool WaitReplicas(int replicas, int64_t timeout_ms);
  // Nodes written since the last successful WaitReplicas.
  const std::vector<std::string>& owed() const { return owed_; }
  void Forgive(const std::string& address);
  // The owed nodes that serve no slot in the current map (failed over, removed), taken out
  // of owed(); every primary of the map is owed instead (what the caller re-writes after
  // re-checking lands there, and what was there already needs its replicas too). Empty:
  // nothing changed.
  std::vector<std::string> ForgiveGone();

  // Connects to every primary of the current map (scripts loaded, so Sha() is known). False
  // if one of them cannot be reached now (error() says which).
  bool EnsureConnected();
  // EnsureConnected, then whether every script's SHA is known (some node has loaded them):
  // what a caller checks before its first EVALSHA. A node down does not make it false.
  bool ScriptsLoaded();
  // Any thread (metrics): the node connections' failed calls and reconnects, summed after
  // each Execute, WaitReplicas and EnsureConnected.
  uint64_t errors() const { return errors_.Get(); }
  uint64_t reconnects() const { return reconnects_.Get(); }

  // The connection that serves `address` (created on first use), for node-wide commands.
  RedisConn* Node(const std::string& address);
  // The current map (refreshed from the topology when its version moved).
  const SlotMap& map();
  // The last connection error, for logs.
  const std::string& error() const { return error_; }
  // Records a caller's protocol surprise (an unexpected reply) for error().
  void NoteError(std::string_view why) { error_.assign(why); }

 private:
  struct Pending {
    size_t call;
    std::string address;  // where it goes this round
    bool asking = false;
  };

  void SyncMap();
  std::string AddressOf(uint16_t slot);
  void Owe(const std::string& address);
  void ExecuteRounds(std::span<const Call> calls, std::vector<RedisReply>* replies);
  // Sums the node connections' counters into errors_ and reconnects_.
  void Tally();

  Topology* topology_;
  int max_redirects_;
  int64_t retry_budget_ms_;
  std::shared_ptr<const SlotMap> shared_map_;
  uint64_t map_version_ = 0;
  SlotMap map_ = SlotMap::Single("");  // the shared map plus this router's MOVED patches
  std::vector<std::pair<std::string, std::unique_ptr<RedisConn>>> conns_;
  std::vector<std::string> scripts_;
  std::vector<std::string> script_shas_;
  std::vector<std::string> owed_;  // nodes written since the last successful WaitReplicas
  std::string error_;
  OwnedCounter errors_;
  OwnedCounter reconnects_;
};

// A single Redis: one seed (node.address), no CLUSTER command sent.
TopologyOptions SingleNode(RedisOptions node, std::string marker_stem);

// The append-then-read shape of a RedisConn pipeline over a Router, for jobs written that
// way: calls are collected with their slots and run together (split by node, the nodes
// working at once) when the first of their replies is asked for; replies come back in append
// order. Calls appended while replies are unread run after those are read. Calls to
// different nodes run in no set order: a caller that needs one write to land before another
// reads the first's reply before appending the second. A null reply: that call's node
// connection failed (whether it ran is unknown).
class Batch {
 public:
  explicit Batch(Router* router) : router_(router) {}

  void Append(uint16_t slot, std::span<const std::string_view> argv) {
    calls_.push_back({slot, Encode(argv)});
  }
  void Append(uint16_t slot, std::initializer_list<std::string_view> argv) {
    Append(slot, std::span<const std::string_view>(argv.begin(), argv.size()));
  }
  // The next reply (null, too, when nothing was appended).
  RedisReply Next();
  // Forgets the replies not yet read and the calls not yet run (after a surprise).
  void Drop();

 private:
  Router* router_;
  std::vector<Call> calls_;
  std::vector<RedisReply> replies_;
  size_t next_ = 0;
};

// One SSCAN step over a set, routed by the key's slot, as RedisConn::SscanStep.
bool SscanStep(Router* router, std::string_view key, std::string* cursor, std::string_view count,
               std::vector<std::string>* members);

}  // namespace klined::cluster
