// The Lua scripts of the timer jobs (src/jobs/): the lease, rollover and trimming.
//
// DESIGN
// Same rules as lua_scripts.h: no arithmetic on prices or volumes (Lua numbers are doubles),
// only open-time comparisons and textual JSON. The lease scripts touch PREFIX:lease and its
// epoch key (one slot). Every other script touches one symbol's keys only (its {SYMBOL} slot;
// Redis Cluster refuses anything else: RedisConn::AddScript): the global index sets (PREFIX:pending
// and the like) are written by the caller after the call's reply (see KeyLayout). A job
// call carries the lease holder's fencing epoch and is refused when the symbol has seen a
// newer one (kFence): a job run by an instance that lost the lease (e.g. it was paused
// between its own lease check and the write) then changes nothing a newer holder wrote.
#pragma once

namespace klined::lua {

// LEASE_ACQUIRE. KEYS: lease, epoch (one slot: see KeyLayout::LeaseEpoch). ARGV: token stem
// "<host>:<pid>:<random>", ttl ms.
// SET NX PX; on success the fencing epoch becomes the larger of the last one + 1 and Redis's
// clock in ms, and "<stem>:<epoch>" the value (same TTL). The clock keeps epochs increasing
// when the epoch key is lost (a dataset loss, a cluster node that lost the lease's slot) while
// symbols' fences (kFence) and MySQL's kline_fence remember higher ones. Returns {token,
// epoch}, or false if someone holds the lease.
inline constexpr const char kLeaseAcquire[] = R"LUA(
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = redis.pcall('GET', KEYS[2])
last = type(last) == 'string' and tonumber(last) or 0
local epoch = string.format('%d', math.max(now, last + 1))
redis.call('SET', KEYS[2], epoch)
local token = ARGV[1] .. ':' .. epoch
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {token, tonumber(epoch)}
)LUA";

// The fencing prelude of the job scripts (prepended). fenced_out(key, epoch): key is the
// symbol's B:fence, epoch the caller's (a decimal string; '' = unfenced, for tests and tools
// without a lease). True when the symbol has seen a newer epoch: the call must change nothing.
// Otherwise B:fence is raised to epoch (an unreadable value is replaced: stored garbage must
// not fence every holder out forever).
inline constexpr const char kFence[] = R"LUA(
local function fenced_out(key, epoch)
  if epoch == '' then return false end
  local e = tonumber(epoch)
  local seen = redis.pcall('GET', key)
  seen = type(seen) == 'string' and tonumber(seen) or nil
  if seen and e < seen then return true end
  if seen ~= e then redis.call('SET', key, epoch) end
  return false
end
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

// ROLLOVER (prepend kCommon, kFence): closes one symbol's stale current candles,
// planned in C++.
// KEYS: none. ARGV: prefix, symbol, fencing epoch ("" = unfenced), interval count, then per
//   interval: name, expected current JSON (exactly as read), new current JSON (x=false),
//   closed count, then per closed candle (oldest first: the old current, then the empty
//   fillers): open time, JSON (x=true).
// Per interval compare-and-set: only if B:INTERVAL still equals the JSON read are the closed
// candles written to history and marked pending for MySQL, and the new current set.
// Otherwise that interval is left alone (a shard flush won; the caller re-reads).
// History holds only scores below the current candle's open time, so the closed candles are
// new scores: one ZADD per interval and one HSET of B:pending per symbol. Should any score
// at or after the old current exist anyway, put_hist keeps one member per score.
// Publishes on B:events (see lua_scripts.h) every closed candle it writes (the old current and
// the empty fillers after it, oldest first; not one history already held as is) and each
// rolled interval's new current: a reader following the channel sees every bucket.
// Returns {intervals rolled, closed candles written, conflicts, intervals left because their
// history (or the pending hash) holds another type}, or {-1} if fenced out. (The caller adds
// the symbol to PREFIX:pending when it wrote closed candles.)
inline constexpr const char kRollover[] = R"LUA(
local prefix, sym = ARGV[1], ARGV[2]
local base = prefix .. ':{' .. sym .. '}'
if fenced_out(base .. ':fence', ARGV[3]) then return {-1} end
local function bulk(cmd, key, list)  -- unpack() has a stack limit: 1000 arguments at a time
  for s = 1, #list, 1000 do redis.call(cmd, key, unpack(list, s, math.min(s + 999, #list))) end
end
local n = tonumber(ARGV[4])
local ivs, keys = {}, {}
local i = 5
for k = 1, n do
  local e = {iv = ARGV[i], expect = ARGV[i + 1], new = ARGV[i + 2],
             nclosed = tonumber(ARGV[i + 3]), first = i + 4}
  ivs[k] = e
  keys[k] = base .. ':' .. e.iv
  i = i + 4 + 2 * e.nclosed
end
local cur = redis.call('MGET', unpack(keys))
local rolled, written, conflicts, bad = 0, 0, 0, 0
local mset, pend, events = {}, {}, {}
-- A key of another type is reported ({..., bad}) and left, never an error mid-write.
local function typed(key, kind)
  local t = redis.call('TYPE', key).ok
  return t == 'none' or t == kind
end
if not typed(base .. ':pending', 'hash') then return {0, 0, 0, n} end
for k, e in ipairs(ivs) do
  if cur[k] == e.expect and not typed(keys[k] .. ':hist', 'zset') then
    bad = bad + 1
  elseif cur[k] == e.expect then
    local hist = keys[k] .. ':hist'
    local last = e.first + 2 * e.nclosed - 2
    if #redis.call('ZRANGEBYSCORE', hist, ARGV[e.first], '+inf', 'LIMIT', 0, 1) == 0 then
      local z = {}
      for a = e.first, last, 2 do
        z[#z + 1] = ARGV[a]
        z[#z + 1] = ARGV[a + 1]
        pend[#pend + 1] = e.iv .. '|' .. ARGV[a]
        pend[#pend + 1] = ARGV[a + 1]
      end
      if #z > 0 then bulk('ZADD', hist, z) end
      written = written + e.nclosed
      for a = e.first + 1, last + 1, 2 do events[#events + 1] = ARGV[a] end
    else
      for a = e.first, last, 2 do
        if put_hist(base, e.iv, tonumber(ARGV[a]), ARGV[a + 1], events) then
          written = written + 1
        end
      end
    end
    mset[#mset + 1] = keys[k]
    mset[#mset + 1] = e.new
    events[#events + 1] = e.new
    rolled = rolled + 1
  else
    conflicts = conflicts + 1
  end
end
if #mset > 0 then
  -- The shard's write stamp is void: storage's current candles are no longer its own.
  mset[#mset + 1] = base .. ':ws'
  mset[#mset + 1] = ''
  redis.call('MSET', unpack(mset))
end
if #pend > 0 then bulk('HSET', base .. ':pending', pend) end
if #events > 0 then redis.call('SPUBLISH', base .. ':events', table.concat(events, '\n')) end
return {rolled, written, conflicts, bad}
)LUA";

// ROLLOVER_STEP (prepend kCommon, kFence): the common case of a rollover, one
// bucket step, without a prior read. KEYS: none. ARGV: prefix, symbol, fencing epoch ("" =
// unfenced), interval
// count, the JSON of an empty current candle after its "c" member (`,"v":"0",...,"x":false}`,
// the same for every interval), then per interval: name, open time of the bucket before
// now's, open time of now's bucket, close time of now's bucket.
// Per interval, atomically: if the stored current candle opens in the bucket before now's,
// it is closed textually (x=true) into history, marked pending, and replaced by now's empty
// candle carrying its close. If it is in now's bucket or later, or missing, nothing happens.
// If it is older (a gap to fill) or not in the expected shape, the interval is reported back
// for the planned ROLLOVER path. The caller checks that the empty candle assembled here is
// byte for byte CandleJson's (RolloverJob::StepChunk).
// History holds only scores below the current candle's open time, so the closed candle is
// a new score: no ZRANGEBYSCORE check is needed (one member per score holds).
// Cost: Redis hashes every byte of every Lua string it creates, so the script creates few
// and small ones: open times are compared as text (a candle starts `{"t":<open time>,`),
// plain string.find only, and each new candle is built by a single concatenation.
// Publishes on B:events each rolled interval's closed candle and its new current.
// Returns {intervals rolled, 0-based indexes of intervals needing ROLLOVER...}, or {-1}; an
// interval whose history key holds another type is reported as -(its 1-based index) and left.
// (The caller adds the symbol to PREFIX:pending when it rolled an interval.)
inline constexpr const char kRolloverStep[] = R"LUA(
local prefix, sym = ARGV[1], ARGV[2]
local base = prefix .. ':{' .. sym .. '}:'
if fenced_out(base .. 'fence', ARGV[3]) then return {-1} end
local n, tail = tonumber(ARGV[4]), ARGV[5]
local find, sub, byte = string.find, string.sub, string.byte
local keys = {}
for k = 1, n do keys[k] = base .. ARGV[2 + 4 * k] end
local cur = redis.call('MGET', unpack(keys))
local result = {0}
local rolls = {}  -- k, closed candle, new current: planned before anything is written
local head = ',"s":"' .. sym .. '","i":"'
for k = 1, n do
  local c = cur[k]
  if c then
    local a = 2 + 4 * k
    local prev, now = ARGV[a + 1], ARGV[a + 2]
    if sub(c, 6, 5 + #prev) == prev and byte(c, 6 + #prev) == 44 then
      local at = find(c, '"c":"', 1, true)
      local to = at and find(c, '"', at + 5, true)
      if to and find(c, '"x":false}', -10, true) then
        local close = sub(c, at + 5, to - 1)
        rolls[#rolls + 1] = {k, sub(c, 1, -11) .. '"x":true}',
                             '{"t":' .. now .. ',"T":' .. ARGV[a + 3] .. head .. ARGV[a] ..
                             '","f":-1,"L":-1,"o":"' .. close .. '","h":"' .. close .. '","l":"' ..
                             close .. '","c":"' .. close .. '"' .. tail}
      else
        result[#result + 1] = k - 1
      end
    elseif not (sub(c, 6, 5 + #now) == now and byte(c, 6 + #now) == 44) then
      local t = open_time(c)
      if t == nil or t < tonumber(now) then result[#result + 1] = k - 1 end
    end
  end
end
if #rolls == 0 then return result end
-- A key of another type must not stop the run (or leave half a roll behind): the pending
-- hash is checked once, and each history ZADD stands alone; what fails is reported back as
-- -(1-based interval index) and left as it was.
local pt = redis.call('TYPE', base .. 'pending').ok
if pt ~= 'none' and pt ~= 'hash' then
  for _, r in ipairs(rolls) do result[#result + 1] = -r[1] end
  return result
end
local mset, pend, events = {}, {}, {}
for _, r in ipairs(rolls) do
  local k = r[1]
  local a = 2 + 4 * k
  local added = redis.pcall('ZADD', keys[k] .. ':hist', ARGV[a + 1], r[2])
  if type(added) == 'table' and added.err then
    result[#result + 1] = -k
  else
    pend[#pend + 1] = ARGV[a] .. '|' .. ARGV[a + 1]
    pend[#pend + 1] = r[2]
    mset[#mset + 1] = keys[k]
    mset[#mset + 1] = r[3]
    events[#events + 1] = r[2]
    events[#events + 1] = r[3]
    result[1] = result[1] + 1
  end
end
if #mset > 0 then
  mset[#mset + 1] = base .. 'ws'  -- the shard's write stamp is void (see ROLLOVER)
  mset[#mset + 1] = ''
  redis.call('MSET', unpack(mset))
  redis.call('HSET', base .. 'pending', unpack(pend))
  redis.call('SPUBLISH', base .. 'events', table.concat(events, '\n'))
end
return result
)LUA";

// TRIM (prepend kCommon, kFence): bounds one symbol's history keys.
// KEYS: none. ARGV: prefix, symbol, fencing epoch ("" = unfenced), limit, max candles examined
//   per interval, interval names...
// Keeps the `limit` newest members of each B:INTERVAL:hist. Of the older ones, removes those
// whose "INTERVAL|open_time" is not in B:pending (MySQL has them); an unpersisted one stays.
// Raises B:trimmed INTERVAL to the newest open time removed (the shard's late path reads it:
// a late trade at or before it is resolved in MySQL). Returns the number removed, or -1 if
// fenced out.
inline constexpr const char kTrim[] = R"LUA(
local prefix, sym = ARGV[1], ARGV[2]
local base = prefix .. ':{' .. sym .. '}'
if fenced_out(base .. ':fence', ARGV[3]) then return -1 end
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

// HISTORY_WINDOW: the prelude of the scripts that write history from outside the stream
// (RESTORE_HISTORY, klinectl recompute's RECOMPUTE). history_window(trimmed hash, interval,
// current key) returns the interval's trim mark (-1: none) and the current candle's open
// time (nil: none): history is written only strictly between them.
inline constexpr const char kHistoryWindow[] = R"LUA(
local function history_window(trimmed_key, iv, current_key)
  local trimmed = -1
  local t = redis.pcall('HGET', trimmed_key, iv)
  if type(t) == 'string' then trimmed = tonumber(t) or -1 end
  local cur_open = nil
  local cur = redis.pcall('GET', current_key)
  if type(cur) == 'string' then cur_open = tonumber(string.match(cur, '^{"t":(%-?%d+)')) end
  return trimmed, cur_open
end
)LUA";

// RESTORE_HISTORY: fills the holes of one (symbol, interval) history with candles read from
// MySQL (klinectl restore-redis and derive, and the persistence worker after a dataset loss).
// KEYS: history, trimmed hash, current candle, B:fence. ARGV: fencing epoch ('' = unfenced),
// interval, dry ("1"/"0"), then (open_time, closed candle JSON) pairs, ascending. A candle
// goes in only where the history has none at its open time (Redis wins: a late trade's update
// may not be persisted yet), above the interval's trim mark (trimmed on purpose) and before the
// current candle's open time (that bucket is still open). Nothing is marked pending: the
// candles are in MySQL already. Returns {written, already present, outside}, or -1 if fenced.
// Used as kHistoryWindow + kFence + kRestoreHistory.
inline constexpr const char kRestoreHistory[] = R"LUA(
if fenced_out(KEYS[4], ARGV[1]) then return -1 end
local trimmed, cur_open = history_window(KEYS[2], ARGV[2], KEYS[3])
local written, present, outside = 0, 0, 0
for i = 4, #ARGV, 2 do
  local open = tonumber(ARGV[i])
  if open <= trimmed or (cur_open and open >= cur_open) then
    outside = outside + 1
  elseif #redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[i], ARGV[i]) > 0 then
    present = present + 1
  else
    written = written + 1
    if ARGV[3] == '0' then redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
  end
end
return {written, present, outside}
)LUA";

}  // namespace klined::lua
