#include "jobs/lease.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "base/log.h"
#include "io/redis/job_scripts.h"

namespace klined {
namespace {

// A call must not outlive the renewal period by much: the deadline keeps running meanwhile.
int64_t CallBoundMs(int64_t ttl_ms) { return std::max<int64_t>(ttl_ms / 3, 50); }

cluster::TopologyOptions LeaseTopologyOptions(cluster::TopologyOptions o, int64_t ttl_ms) {
  const int64_t bound = CallBoundMs(ttl_ms);
  o.node.command_timeout_ms = static_cast<int>(std::min<int64_t>(o.node.command_timeout_ms, bound));
  o.node.connect_timeout_ms = static_cast<int>(std::min<int64_t>(o.node.connect_timeout_ms, bound));
  return o;
}

std::string MakeStem() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown");
  std::random_device rd;
  const uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char buf[400];
  std::snprintf(buf, sizeof buf, "%s:%d:%016llx", host, static_cast<int>(getpid()),
                static_cast<unsigned long long>(r));
  return buf;
}

}  // namespace

int64_t Lease::MarginMs(int64_t ttl_ms) {
  // At least 200 ms where the ttl allows it, but never more than ttl/3: renewals start every
  // ttl/3, so the deadline (renewal start + ttl - margin) stays at least two renewal periods
  // after a renewal start and one late or failed renewal does not drop the lease. (With
  // max(ttl/5, 200) a 300 ms ttl put the deadline exactly on the next renewal: it flapped.)
  return std::max<int64_t>(ttl_ms / 5, std::min<int64_t>(200, ttl_ms / 3));
}

int64_t Lease::NowMs() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Lease::Lease(cluster::TopologyOptions options, std::string key_prefix, int64_t ttl_ms,
             LeaseStats* stats)
    : topology_(LeaseTopologyOptions(std::move(options), ttl_ms)),
      router_(&topology_, /*max_redirects=*/5, /*retry_budget_ms=*/CallBoundMs(ttl_ms)),
      keys_(std::move(key_prefix), ""),
      slot_(cluster::KeySlot(keys_.Lease())),
      stem_(MakeStem()),
      ttl_ms_(ttl_ms),
      margin_ms_(MarginMs(ttl_ms)),
      stats_(stats) {
  acquire_script_ = router_.AddScript(lua::kLeaseAcquire);
  renew_script_ = router_.AddScript(lua::kLeaseRenew);
  release_script_ = router_.AddScript(lua::kLeaseRelease);
}

bool Lease::Connected() {
  // Connects (scripts loaded, so their SHAs are known) to the nodes not yet connected; a
  // node down that does not serve the lease slot does not stop the lease.
  router_.EnsureConnected();
  return !router_.Sha(release_script_).empty();
}

RedisReply Lease::Call(std::initializer_list<std::string_view> argv) {
  return router_.Command(slot_, argv);  // NOSCRIPT, MOVED, ASK: handled by the router
}

Lease::~Lease() { stats_->held.Set(0); }

void Lease::SetDeadline(int64_t ms) {
  deadline_ms_ = ms;
  published_deadline_ms_.store(ms, std::memory_order_release);
}

bool Lease::Holding() const { return !token_.empty() && NowMs() < deadline_ms_; }

int64_t Lease::MsUntilNextPoll() const {
  const int64_t now = NowMs();
  int64_t at = next_poll_ms_;
  if (!token_.empty()) at = std::min(at, deadline_ms_);
  return std::max<int64_t>(0, at - now);
}

bool Lease::Poll() {
  if (!token_.empty() && NowMs() >= deadline_ms_) {
    // Paused, or renewals failed for too long: the key may expire (or have expired) and a
    // standby may hold it now. Stop, hand back what may still be ours, acquire anew.
    Lose("deadline passed");
    next_poll_ms_ = 0;
  }
  if (NowMs() < next_poll_ms_) return Holding();
  if (token_.empty()) {
    TryAcquire();
  } else {
    TryRenew();
  }
  return Holding();
}

bool Lease::TryAcquire() {
  const int64_t start = NowMs();
  // A standby retries often enough that a released lease is taken at once (<= 250 ms) and an
  // expired one well within the 2 x ttl takeover bound.
  next_poll_ms_ = start + std::clamp<int64_t>(ttl_ms_ / 4, 10, 250);
  if (!Connected()) return false;
  const std::string ttl = std::to_string(ttl_ms_);
  const std::string epoch_key = keys_.LeaseEpoch();
  RedisReply r = Call({"EVALSHA", router_.Sha(acquire_script_), "2", key(), epoch_key, stem_, ttl});
  if (r == nullptr) return false;
  if (r->type == REDIS_REPLY_NIL) return false;  // held by someone else
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_INTEGER) {
    LOG_RATE(kWarn, "lease.acquire_failed",
             "reply_type=" << r->type
                           << (r->type == REDIS_REPLY_ERROR ? " error=\"" + std::string(r->str) + "\""
                                                            : std::string()));
    return false;
  }
  token_.assign(r->element[0]->str, r->element[0]->len);
  epoch_ = r->element[1]->integer;
  SetDeadline(start + ttl_ms_ - margin_ms_);
  next_poll_ms_ = start + ttl_ms_ / 3;
  stats_->held.Set(1);
  stats_->takeovers.Add();
  LOG(kInfo, "lease.acquired", "token=" << token_ << " epoch=" << epoch_ << " ttl_ms=" << ttl_ms_);
  return true;
}

bool Lease::TryRenew() {
  const int64_t start = NowMs();
  // On failure retry soon: the deadline, not the retry, decides when we stop holding.
  next_poll_ms_ = start + std::max<int64_t>(std::min<int64_t>(ttl_ms_ / 10, 100), 10);
  const std::string ttl = std::to_string(ttl_ms_);
  RedisReply r = nullptr;
  if (Connected()) r = Call({"EVALSHA", router_.Sha(renew_script_), "1", key(), token_, ttl});
  if (r != nullptr && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
    SetDeadline(start + ttl_ms_ - margin_ms_);
    next_poll_ms_ = start + ttl_ms_ / 3;
    return true;
  }
  if (r != nullptr && r->type == REDIS_REPLY_INTEGER) {
    stats_->renew_failures.Add();
    Lose("taken over or expired");
    next_poll_ms_ = 0;
    return false;
  }
  stats_->renew_failures.Add();
  const std::string why = r != nullptr && r->type == REDIS_REPLY_ERROR ? std::string(r->str)
                                                                        : router_.error();
  LOG_RATE(kWarn, "lease.renew_failed",
           "error=\"" << why << "\" ms_left=" << (deadline_ms_ - NowMs()));
  if (NowMs() >= deadline_ms_) Lose("renewals failed until the deadline");
  return false;
}

void Lease::Lose(const char* why) {
  LOG(kWarn, "lease.lost", "token=" << token_ << " reason=\"" << why << "\"");
  Release();
}

void Lease::Release() {
  if (token_.empty()) return;
  const std::string token = std::move(token_);
  token_.clear();
  SetDeadline(0);
  stats_->held.Set(0);
  if (!Connected()) return;
  RedisReply r = Call({"EVALSHA", router_.Sha(release_script_), "1", key(), token});
  const bool deleted = r != nullptr && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
  LOG(kInfo, "lease.released", "token=" << token << " deleted=" << deleted);
}

}  // namespace klined
