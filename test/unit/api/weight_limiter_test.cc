// Tests for src/api/weight_limiter.h: fixed windows aligned to the minute, per-client counts,
// refusals that add nothing, unlimited mode, the memory bound with reclaiming and overflow, and
// Retry-After.
#include "api/weight_limiter.h"

#include <doctest/doctest.h>

#include <string>

namespace klined::api {
namespace {

constexpr int64_t kT0 = 1732147200000;  // a whole minute (2024-11-21 00:00 UTC)

TEST_CASE("api limiter: counts per client within the minute, refuses past the limit") {
  WeightLimiter l(10, 100);
  CHECK(l.limit() == 10);
  auto r = l.Admit("1.2.3.4", 2, kT0);
  CHECK(r.ok);
  CHECK(r.used == 2);
  r = l.Admit("1.2.3.4", 8, kT0 + 1000);  // exactly the limit: admitted
  CHECK(r.ok);
  CHECK(r.used == 10);
  r = l.Admit("1.2.3.4", 1, kT0 + 2000);
  CHECK_FALSE(r.ok);
  CHECK(r.used == 10);                    // a refusal adds nothing
  r = l.Admit("1.2.3.4", 0, kT0 + 2000);  // weight 0 always fits
  CHECK(r.ok);
  CHECK(r.used == 10);
  // Another client has its own count.
  r = l.Admit("5.6.7.8", 10, kT0 + 59999);
  CHECK(r.ok);
  CHECK(r.used == 10);
  // The next minute starts from zero for everyone (X-MBX-USED-WEIGHT-1M).
  r = l.Admit("1.2.3.4", 3, kT0 + 60000);
  CHECK(r.ok);
  CHECK(r.used == 3);
  CHECK(l.Admit("5.6.7.8", 1, kT0 + 60000).used == 1);
  // Negative weights count as 0.
  CHECK(l.Admit("5.6.7.8", -50, kT0 + 60001).used == 1);
  // A request heavier than the limit is never admitted.
  CHECK_FALSE(l.Admit("9.9.9.9", 11, kT0).ok);
  CHECK(l.Admit("9.9.9.9", 10, kT0).ok);
}

TEST_CASE("api limiter: windows are aligned to the minute, not to the first request") {
  WeightLimiter l(5, 10);
  CHECK(l.Admit("c", 5, kT0 + 59000).ok);  // the last second of a minute
  CHECK_FALSE(l.Admit("c", 1, kT0 + 59999).ok);
  CHECK(l.Admit("c", 5, kT0 + 60000).ok);  // one second later: a new window, full budget
  CHECK_FALSE(l.Admit("c", 1, kT0 + 119999).ok);
  CHECK(l.Admit("c", 1, kT0 + 120000).ok);
  CHECK(WeightLimiter::WindowOf(kT0) == kT0 / 60000);
  CHECK(WeightLimiter::WindowOf(kT0 + 59999) == kT0 / 60000);
  CHECK(WeightLimiter::WindowOf(0) == 0);
  CHECK(WeightLimiter::WindowOf(-1) == -1);
  CHECK(WeightLimiter::WindowOf(-60000) == -1);
  CHECK(WeightLimiter::WindowOf(-60001) == -2);
}

TEST_CASE("api limiter: a clock stepping back restarts the entry") {
  WeightLimiter l(5, 10);
  CHECK(l.Admit("c", 5, kT0 + 60000).ok);
  CHECK_FALSE(l.Admit("c", 1, kT0 + 60001).ok);
  const auto r = l.Admit("c", 1, kT0);  // an earlier window: stale, counted afresh
  CHECK(r.ok);
  CHECK(r.used == 1);
}

TEST_CASE("api limiter: limit 0 admits everything and still counts") {
  WeightLimiter l(0, 10);
  for (int i = 0; i < 1000; ++i) CHECK(l.Admit("c", 80, kT0 + i).ok);
  CHECK(l.Admit("c", 0, kT0).used == 80000);
  // set_limit takes effect at once, counts kept.
  l.set_limit(100);
  CHECK(l.limit() == 100);
  CHECK_FALSE(l.Admit("c", 1, kT0).ok);
  CHECK(l.Admit("d", 100, kT0).ok);
  l.set_limit(-3);
  CHECK(l.limit() == 0);
  CHECK(l.Admit("d", 1, kT0).ok);
}

TEST_CASE("api limiter: bounded table: stale entries reclaimed, overflow admitted uncounted") {
  WeightLimiter l(10, 3);
  CHECK(l.max_clients() == 3);
  CHECK(l.Admit("a", 10, kT0).ok);
  CHECK(l.Admit("b", 1, kT0).ok);
  CHECK(l.Admit("c", 1, kT0).ok);
  CHECK(l.size() == 3);
  // Full of this window's clients: a new one is admitted uncounted, the others stay limited.
  auto r = l.Admit("d", 4, kT0 + 1);
  CHECK(r.ok);
  CHECK(r.used == 4);
  CHECK(l.overflows() == 1);
  CHECK(l.size() == 3);
  CHECK(l.Admit("d", 10, kT0 + 2).ok);  // still uncounted
  CHECK(l.overflows() == 2);
  CHECK_FALSE(l.Admit("a", 1, kT0 + 3).ok);  // a known client is still counted
  // Next minute: "a" is refreshed in place; a new client reclaims the stale entries.
  CHECK(l.Admit("a", 1, kT0 + 60000).ok);
  CHECK(l.size() == 3);
  r = l.Admit("e", 2, kT0 + 60001);
  CHECK(r.ok);
  CHECK(r.used == 2);
  CHECK(l.size() == 2);  // b and c (last window) swept; a and e remain
  CHECK(l.overflows() == 2);
  CHECK(l.Admit("e", 8, kT0 + 60002).ok);
  CHECK_FALSE(l.Admit("e", 1, kT0 + 60003).ok);  // e is counted
  CHECK(l.Admit("f", 1, kT0 + 60004).ok);
  CHECK(l.size() == 3);
  CHECK(l.Admit("g", 1, kT0 + 60005).ok);  // full again within the window: overflow
  CHECK(l.overflows() == 3);
  CHECK(l.size() == 3);

  // Many clients over many minutes: the table never passes its bound.
  WeightLimiter big(100, 50);
  for (int minute = 0; minute < 20; ++minute) {
    for (int c = 0; c < 70; ++c) {
      big.Admit("client" + std::to_string(minute * 1000 + c), 1, kT0 + minute * 60000 + c);
      CHECK(big.size() <= 50);
    }
  }
  CHECK(big.overflows() == 20 * 20);  // 70 new clients a minute, 50 places
  CHECK(WeightLimiter(1, 0).max_clients() == 1);
}

TEST_CASE("api limiter: Retry-After counts the seconds to the next minute") {
  CHECK(WeightLimiter::RetryAfterSeconds(kT0) == 60);
  CHECK(WeightLimiter::RetryAfterSeconds(kT0 + 1) == 60);
  CHECK(WeightLimiter::RetryAfterSeconds(kT0 + 1000) == 59);
  CHECK(WeightLimiter::RetryAfterSeconds(kT0 + 59000) == 1);
  CHECK(WeightLimiter::RetryAfterSeconds(kT0 + 59999) == 1);
  CHECK(WeightLimiter::RetryAfterSeconds(-1) == 1);
}

}  // namespace
}  // namespace klined::api
