// The Lua scripts of the timer jobs (src/jobs/): the lease, rollover and trimming.
//
// DESIGN
// Same rules as lua_scripts.h: no arithmetic on prices or volumes (Lua numbers are doubles),
// only open-time comparisons and textual JSON. The lease scripts touch PREFIX:lease and
// PREFIX:lease:epoch only. ROLLOVER and TRIM touch one symbol's keys (its {SYMBOL} slot) plus
// the global PREFIX:pending index and, when given a fencing token, read PREFIX:lease: a job
// run by an instance that lost the lease (e.g. it was paused between its own lease check
// and the write) then changes nothing.
#pragma once

namespace klined::lua {

// LEASE_ACQUIRE. KEYS: lease, epoch. ARGV: token stem "<host>:<pid>:<random>", ttl ms.
// SET NX PX; on success INCR the fencing epoch and store "<stem>:<epoch>" as the value (same
// TTL). Returns {token, epoch}, or false if someone holds the lease.
inline constexpr const char kLeaseAcquire[] = R"LUA(
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local epoch = redis.call('INCR', KEYS[2])
local token = ARGV[1] .. ':' .. epoch
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {token, epoch}
)LUA";

// LEASE_RENEW. KEYS: lease. ARGV: token, ttl ms. Compare-and-extend: 1 if the lease is ours
// (TTL reset to ttl), 0 if not (expired, or another holder's).
inline constexpr const char kLeaseRenew[] = R"LUA(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
)LUA";

// LEASE_RELEASE. KEYS: lease. ARGV: token. Compare-and-delete: 1 if it was ours.
inline constexpr const char kLeaseRelease[] = R"LUA(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
)LUA";

// ROLLOVER (prepend kCommon): closes one symbol's stale current candles, planned in C++.
// KEYS: none. ARGV: prefix, symbol, fencing token ("" = unfenced), interval count, then per
//   interval: name, expected current JSON (exactly as read), new current JSON (x=false),
//   closed count, closed JSONs (x=true, oldest first: the old current, then empty fillers).
// Per interval compare-and-set: only if B:INTERVAL still equals the JSON read are the closed
// candles written to history (put_hist: so they are pending for MySQL) and the new current
// set. Otherwise that interval is left alone (a shard flush won; the caller re-reads).
// Returns {intervals rolled, closed candles written, conflicts}, or {-1} if fenced out.
inline constexpr const char kRollover[] = R"LUA(
local prefix, sym, token = ARGV[1], ARGV[2], ARGV[3]
if token ~= '' and redis.call('GET', prefix .. ':lease') ~= token then return {-1} end
local base = prefix .. ':{' .. sym .. '}'
local n = tonumber(ARGV[4])
local i = 5
local rolled, written, conflicts = 0, 0, 0
for _ = 1, n do
  local iv, expect, new, nclosed = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local cur_key = base .. ':' .. iv
  if redis.call('GET', cur_key) == expect then
    for e = i + 4, i + 3 + nclosed do
      if put_hist(base, iv, open_time(ARGV[e]), ARGV[e]) then written = written + 1 end
    end
    redis.call('SET', cur_key, new)
    rolled = rolled + 1
  else
    conflicts = conflicts + 1
  end
  i = i + 4 + nclosed
end
if written > 0 then redis.call('SADD', prefix .. ':pending', sym) end
return {rolled, written, conflicts}
)LUA";

// TRIM (prepend kCommon): bounds one symbol's history keys.
// KEYS: none. ARGV: prefix, symbol, fencing token ("" = unfenced), limit, max candles examined
//   per interval, interval names...
// Keeps the `limit` newest members of each B:INTERVAL:hist. Of the older ones, removes those
// whose "INTERVAL|open_time" is not in B:pending (MySQL has them); an unpersisted one stays.
// Raises B:trimmed INTERVAL to the newest open time removed (the shard's late path reads it:
// a late trade at or before it is resolved in MySQL). Returns the number removed, or -1 if
// fenced out.
inline constexpr const char kTrim[] = R"LUA(
local prefix, sym, token = ARGV[1], ARGV[2], ARGV[3]
if token ~= '' and redis.call('GET', prefix .. ':lease') ~= token then return -1 end
local base = prefix .. ':{' .. sym .. '}'
local limit, max_scan = tonumber(ARGV[4]), tonumber(ARGV[5])
local pending_key, trimmed_key = base .. ':pending', base .. ':trimmed'
local any_pending = redis.call('EXISTS', pending_key) == 1
local removed = 0
for a = 6, #ARGV do
  local iv = ARGV[a]
  local hist = base .. ':' .. iv .. ':hist'
  local excess = redis.call('ZCARD', hist) - limit
  if excess > 0 then
    if excess > max_scan then excess = max_scan end
    local newest = nil
    if not any_pending then
      local last = redis.call('ZRANGE', hist, excess - 1, excess - 1, 'WITHSCORES')
      newest = tonumber(last[2])
      redis.call('ZREMRANGEBYRANK', hist, 0, excess - 1)
      removed = removed + excess
    else
      local old = redis.call('ZRANGE', hist, 0, excess - 1, 'WITHSCORES')
      for k = 1, #old, 2 do
        local t = tonumber(old[k + 1])
        if redis.call('HEXISTS', pending_key, iv .. '|' .. ms(t)) == 0 then
          redis.call('ZREM', hist, old[k])
          removed = removed + 1
          newest = t
        end
      end
    end
    if newest then
      local prev = tonumber(redis.call('HGET', trimmed_key, iv) or '-1')
      if newest > prev then redis.call('HSET', trimmed_key, iv, ms(newest)) end
    end
  end
end
return removed
)LUA";

}  // namespace klined::lua
