// Request-weight limiting per client, as Binance's REQUEST_WEIGHT limit (rest-api.md "IP
// Limits"): each request adds its weight to its client's count for the current minute, the
// count is sent back as X-MBX-USED-WEIGHT-1M, and a request that would pass the limit is
// answered 429 / -1003 (TooManyRequests in rest_request.h).
//
// DESIGN
// Fixed one-minute windows aligned to the minute of the Unix epoch (floor(now_ms / 60000)), so
// a count restarts at every whole minute as Binance's -1M counter does; no sliding average, one
// small entry per client. A refused request adds nothing: the count never passes the limit,
// and a client that stops is admitted again at the next minute. A request heavier than the
// limit itself is never admitted (the config keeps the limit above the heaviest weight, 80).
//
// Memory is bounded: at most max_clients entries. An entry from a past window is stale (its
// count no longer matters) and is reclaimed when a new client needs its place: once the table
// is full, one sweep per window erases every stale entry. When the table is full of clients of
// the current window (max_clients distinct clients within one minute), a new client is admitted
// uncounted and overflows() counts it: the bound is on memory, and refusing a new, legitimate
// client because others are busy would turn a flood of distinct addresses into a denial of
// service for everyone new; the clients already counted stay limited. The metric tells the
// operator to raise max_clients.
//
// A clock that steps back moves the window back; an entry of any other window than the current
// one counts as stale and restarts from zero.
//
// Threading: not thread-safe. Each API thread owns one limiter (a client is counted on the
// thread its connection lives on; with N threads a client with N connections can use up to N
// times the limit, the price of sharing nothing between loops).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace klined::api {

class WeightLimiter {
 public:
  static constexpr int64_t kWindowMs = 60'000;

  // limit_per_minute 0 = unlimited (every request admitted, counts still kept for the header).
  // max_clients >= 1 (0 is taken as 1). Client keys are short (an IP address): memory is about
  // max_clients x (key + ~64 bytes).
  WeightLimiter(int limit_per_minute, size_t max_clients);

  struct Result {
    bool ok;   // admitted
    int used;  // the client's weight in this window, this request included when admitted
  };
  // Counts `weight` (>= 0; a negative weight counts as 0) for `client` at now_ms.
  Result Admit(std::string_view client, int weight, int64_t now_ms);

  // Takes effect from the next Admit (SIGHUP reload); counts are kept.
  void set_limit(int limit_per_minute) { limit_ = limit_per_minute < 0 ? 0 : limit_per_minute; }
  int limit() const { return limit_; }

  // Seconds until the window holding now_ms ends, rounded up (1..60): the Retry-After of a 429.
  static int RetryAfterSeconds(int64_t now_ms);
  // The window (minute number) holding now_ms, floor semantics.
  static int64_t WindowOf(int64_t now_ms);

  size_t size() const { return entries_.size(); }
  size_t max_clients() const { return max_clients_; }
  // New clients admitted uncounted because the table was full of current-window clients.
  uint64_t overflows() const { return overflows_; }

 private:
  struct Entry {
    int64_t window = 0;
    int64_t used = 0;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Eq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  };

  void Sweep(int64_t window);

  int limit_;
  size_t max_clients_;
  std::unordered_map<std::string, Entry, Hash, Eq> entries_;
  int64_t swept_window_ = INT64_MIN;  // the window of the last sweep
  uint64_t overflows_ = 0;
};

}  // namespace klined::api
