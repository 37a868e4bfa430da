// The Redis lease that elects the one instance running the timer jobs.
//
// DESIGN
// Key PREFIX:lease holds the holder's token "<hostname>:<pid>:<random>:<epoch>", with a TTL of
// ttl_ms. Acquire is SET NX PX followed, in the same Lua call, by a new fencing epoch (the
// larger of the last one + 1 and Redis's clock in ms, kept in KeyLayout::LeaseEpoch, recorded
// in the token; the job scripts carry it and refuse to write a symbol that has seen a newer
// one). Renew is a compare-and-extend (PEXPIRE only if the value is ours), every ttl/3;
// release a compare-and-delete.
//
// Holding is judged locally, never by asking Redis: the holder considers itself holding only
// until  start of the last successful acquire/renew call + ttl - margin,  with margin =
// max(ttl/5, min(200 ms, ttl/3)) (so the deadline is at least two renewal periods after a
// renewal start), measured on CLOCK_BOOTTIME (monotonic, and it keeps counting across
// SIGSTOP and host suspend, as Redis's TTL does). The key cannot expire before then, since
// Redis started its TTL after we read the clock. So a holder that is paused, or whose
// renewals fail or are delayed, sees Holding() turn false before another instance can take
// over, and callers check Holding() right before any job work. A standby retries the acquire
// every min(ttl/4, 250 ms), so it takes over at most ttl + ttl/4 after the holder's last
// renewal, and within 250 ms of a release.
//
// Threads: one thread (the timer thread) calls everything except the stats, which the
// metrics scraper reads. The lease has a topology and router of its own (the lease key's
// slot may move between nodes of a cluster), with command timeouts and a redirect/retry
// budget of ttl/3 so a stuck Redis cannot hold the thread past the deadline by much.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "base/counter.h"
#include "io/redis/key_layout.h"
#include "io/redis/cluster/router.h"

namespace klined {

struct LeaseStats {
  OwnedCounter held;            // gauge: 1 while holding (klined_lease_held)
  OwnedCounter takeovers;       // successful acquisitions
  OwnedCounter renew_failures;  // renewals refused (lost) or failed (Redis error/timeout)
};

class Lease {
 public:
  // key_prefix is redis.key_prefix; ttl_ms is lease.ttl_ms (config bound: >= 300). options:
  // the process's Redis (one node or the cluster's seeds); timeouts are cut to ttl/3.
  Lease(cluster::TopologyOptions options, std::string key_prefix, int64_t ttl_ms,
        LeaseStats* stats);
  // On one Redis.
  Lease(const RedisOptions& options, std::string key_prefix, int64_t ttl_ms, LeaseStats* stats)
      : Lease(cluster::SingleNode(options, key_prefix + ":wait"), key_prefix, ttl_ms, stats) {}
  ~Lease();  // does not release: call Release() (a crash releases by expiry)
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // Acquires (if not holding and the retry is due) or renews (if holding and due). Cheap when
  // nothing is due. Returns Holding() afterwards.
  bool Poll();
  // True while the local deadline has not passed. Reads the clock: call right before work.
  bool Holding() const;
  // Compare-and-delete of the key if we hold it, so a standby takes over at once.
  void Release();

  // Thread-safe variant of Holding() for other threads (e.g. the persistence worker checking
  // right before a write that it still runs on the holder): the deadline is published
  // atomically. It may turn false on another thread slightly before the timer thread notices.
  bool HoldingFromAnyThread() const {
    return NowMs() < published_deadline_ms_.load(std::memory_order_acquire);
  }

  // Ms until Poll() has something to do (renew/acquire due), or until the deadline if sooner.
  int64_t MsUntilNextPoll() const;

  const std::string& token() const { return token_; }  // "" when not holding
  int64_t epoch() const { return epoch_; }
  int64_t ttl_ms() const { return ttl_ms_; }
  int64_t margin_ms() const { return margin_ms_; }
  std::string key() const { return keys_.Lease(); }

  // CLOCK_BOOTTIME in ms: the clock every lease deadline is measured on.
  static int64_t NowMs();
  // The safety margin for a ttl: max(ttl/5, min(200, ttl/3)), never above ttl/3.
  static int64_t MarginMs(int64_t ttl_ms);

 private:
  bool TryAcquire();
  bool TryRenew();
  void Lose(const char* why);
  void SetDeadline(int64_t ms);

  // True once the scripts' SHAs are known (a node was reached).
  bool Connected();
  // One EVALSHA of a lease script on the lease key's node.
  RedisReply Call(std::initializer_list<std::string_view> argv);

  cluster::Topology topology_;
  cluster::Router router_;
  KeyLayout keys_;
  uint16_t slot_;
  std::string stem_;  // "<hostname>:<pid>:<random>"
  int64_t ttl_ms_;
  int64_t margin_ms_;
  LeaseStats* stats_;
  size_t acquire_script_, renew_script_, release_script_;
  std::string token_;
  int64_t epoch_ = 0;
  int64_t deadline_ms_ = 0;                        // holding while NowMs() < deadline_ms_
  int64_t next_poll_ms_ = 0;                       // next acquire attempt or renewal
  std::atomic<int64_t> published_deadline_ms_{0};  // deadline_ms_ while holding, else 0
};

}  // namespace klined
