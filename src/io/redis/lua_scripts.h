// The Lua scripts klined runs in Redis.
//
// DESIGN
// Every script touches the keys of one symbol only (all carry the {SYMBOL} hash tag, so they
// share one Redis Cluster slot), so a call is atomic per symbol. The global index sets
// (PREFIX:symbols, PREFIX:pending, PREFIX:late) live in other slots: the callers write them
// after a call's reply, from what it reports. Lua numbers are doubles:
// the scripts never do arithmetic on prices or volumes. They compare open times (integers
// below 2^53), compare trade ids as decimal strings, and rewrite candle JSON textually
// (the x flag, and o/h/l/c of empty candles when a close is re-carried). All exact
// arithmetic happens in C++.
//
// Shared layout, for a key base B = PREFIX:{SYMBOL}:
//   B:INTERVAL        current candle (x=false)
//   B:INTERVAL:hist   closed candles, score = open time
//   B:wm              highest applied trade id
//   B:wmp             per-source watermarks "source:id,..." (the compare-and-set stamp, see
//                     FLUSH)
//   B:ws              the shard's write stamp: set by FLUSH when storage's current candles are
//                     exactly what it sent; every other writer of current candles (ROLLOVER,
//                     ROLLOVER_STEP, the persistence worker's late re-carry, klinectl's
//                     restore-redis and recompute) and of PREFIX:symbols membership (retire)
//                     sets it to "" (see FLUSH_FAST)
//   B:tks             the 24h ticker's persisted state (binary, TickerWindow::AppendState)
//   B:pending         hash "INTERVAL|open_time" -> candle JSON not yet confirmed in MySQL
//   B:fence           the highest lease epoch a timer job wrote the symbol under (job_scripts.h)
//   PREFIX:symbols    every symbol with an applied trade (written by the shard's store)
//   PREFIX:pending    symbols whose B:pending is non-empty (written by the writers after the
//                     call, removed by the persistence worker; a hint the worker re-checks)
//   B:events          shard pub/sub channel (SPUBLISH): every call that changes candles
//                     publishes their JSONs, one per line (current x=false, closed x=true),
//                     for the market-data API's WebSocket streams and L1 cache
//   B:watch           what API instances follow of the symbol: ",1m,5m,ticker," (with a TTL;
//                     written by WATCH only). FLUSH publishes a candle only when its interval
//                     is in it (the 24h ticker when "ticker" is); the other writers publish
//                     everything (rare calls; a reader ignores what it does not follow)
//   B:watchers        hash instance -> "expiry_ms|kinds": each instance's part of B:watch
#pragma once

namespace klined::lua {

// Helpers shared by the scripts (prepended to each).
inline constexpr const char kCommon[] = R"LUA(
local function id_gt(a, b)  -- decimal integer strings without leading zeros
  if #a ~= #b then return #a > #b end
  return a > b
end
local function open_time(json) return tonumber(string.match(json, '^{"t":(%-?%d+)')) end
local function as_closed(json) return (string.gsub(json, '"x":false}$', '"x":true}')) end
local function close_of(json) return string.match(json, '"c":"([^"]*)"') end
local function is_empty(json) return string.find(json, '"n":0,', 1, true) ~= nil end
local function with_close(json, c)
  local r = '"o":"' .. c .. '","h":"' .. c .. '","l":"' .. c .. '","c":"' .. c .. '"'
  return (string.gsub(json, '"o":"[^"]*","h":"[^"]*","l":"[^"]*","c":"[^"]*"', r, 1))
end

-- Writes a closed candle into history (one member per score) and marks it for MySQL; when
-- that changed history, appends it to `events` (given: the candles the call publishes). A
-- candle history already holds as is is neither written nor published again.
local wrote_pending = false  -- set by put_hist: this call added MySQL work
-- Times go to Redis as exact integer strings (a Lua number would print as %.14g).
local function ms(t) return string.format('%d', t) end

local function put_hist(base, iv, t, json, events)
  local hist, ts = base .. ':' .. iv .. ':hist', ms(t)
  local old = redis.call('ZRANGEBYSCORE', hist, ts, ts)
  if #old == 1 and old[1] == json then return false end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', hist, ts, ts) end
  redis.call('ZADD', hist, ts, json)
  redis.call('HSET', base .. ':pending', iv .. '|' .. ts, json)
  wrote_pending = true
  if events then events[#events + 1] = json end
  return true
end

local wrote_current = false  -- set by recarry_current: this call rewrote a current candle
-- The current candle at cur_key takes `close` if it is empty (and, with after_t, opens after
-- it); appended to `events` (when given) when that changes it. Anything but a candle there is left alone.
local function recarry_current(cur_key, close, events, after_t)
  local cur = redis.pcall('GET', cur_key)
  if type(cur) ~= 'string' or not is_empty(cur) then return end
  if after_t and not ((open_time(cur) or after_t) > after_t) then return end
  local nc = with_close(cur, close)
  if nc ~= cur then
    redis.call('SET', cur_key, nc)
    wrote_current = true
    if events then events[#events + 1] = nc end
  end
end

-- After the closed candle at t changed its close: every empty candle after it (history,
-- then the current one) takes the new close, up to the first candle with trades. True when
-- the current candle was reached (so it carries `close`, or holds trades of its own).
-- A member that is not a candle stops the carry (stored garbage never raises an error).
-- Each candle it rewrites is appended to `events` when given (the call publishes them).
local function recarry_after(base, iv, t, close, events)
  local hist = base .. ':' .. iv .. ':hist'
  local from = '(' .. ms(t)
  while true do
    local later = redis.call('ZRANGEBYSCORE', hist, from, '+inf', 'LIMIT', 0, 256)
    for _, m in ipairs(later) do
      local mt = open_time(m)
      if not mt or not is_empty(m) then return false end
      local nm = with_close(m, close)
      if nm == m then return true end  -- already carried: so are the ones after it
      put_hist(base, iv, mt, nm, events)
    end
    if #later < 256 then break end
    from = '(' .. ms(open_time(later[#later]))
  end
  recarry_current(base .. ':' .. iv, close, events, nil)
  return true
end
)LUA";

// FLUSH: a shard writes one symbol's state, atomically.
// KEYS: none (computed from ARGV, all in the symbol's slot).
// ARGV: prefix, symbol, watermark, base stamp, new stamp,
//   interval count, then per interval: name, current open time, current JSON (x=false),
//     closed count, closed JSONs (x=true, oldest first, contiguous);
//   late count, then per late update (ascending open time per interval): name, open time,
//     expected stored JSON ("" = no member), new JSON (x=true), count and JSONs of empty
//     candles to create after it (the series now starts earlier than it was stored);
//   MySQL-late count, then per record: field "INTERVAL|open_time|trade_id", trade JSON (a late
//     trade whose bucket left Redis: B:late, drained into MySQL by the persistence worker);
//   ticker key and JSON ("" "" = none): the symbol's 24h ticker, written as is; the ticker's
//     persisted state for B:tks ("" = unchanged; binary, see TickerWindow::AppendState);
//   the write stamp to grant ("" = none, or absent; see FLUSH_FAST).
// The stamps are the symbol's per-source watermarks as stored in B:wmp ("" = none): the write
// is refused ({-1}, nothing written) unless B:wmp still holds the base stamp, i.e. unless
// storage is exactly what the shard loaded or last wrote. So a second writer of the symbol
// (two instances after a lost assignment, a producer not keying by symbol) never overwrites
// another's candles, and a retry of a write that landed although its reply was lost is
// refused instead of applied twice: the shard reloads the symbol and re-applies its trades.
// Late updates are compare-and-set: if any stored candle differs from what the shard read,
// nothing at all is written and {0} is returned (the shard re-reads and retries).
// Stored garbage never raises a Lua error (which would leave the writes before it in place):
// every key the call writes with a typed command is checked first, and a key of another type
// returns {-2, key} with nothing written. Otherwise returns {1, index, r1, r2, ...} where
// rk = 1 if late update k re-carried its close all the way into the current candle, or
// {2, index} when it granted the write stamp: B:ws holds the one given, because every current
// candle stored is now the one the call sent (no late update, no interval where storage was
// newer or older); otherwise it sets B:ws to "" (void). `index` tells the caller which global
// index sets to add the symbol to: +1 PREFIX:pending (the call added MySQL work to
// B:pending), +2 PREFIX:symbols (B:ws was void: a rollover, a tool or retire wrote since, or
// the symbol is new; the caller adds a symbol it has not added since it loaded it anyway).
// A MySQL-late record is for PREFIX:late, which the caller knows of.
// Never undoes a rollover: if storage's current candle is newer than the shard's, the
// shard's candle goes to history and its close is re-carried.
// Publishes on B:events the candles it changed of the intervals B:watch names (nothing when
// no API instance follows the symbol): the closed ones, each interval's current (or, when
// storage was newer, the shard's bucket as closed) unless storage already held it as is,
// each late update and the empty candles it
// created, and the empty candles a changed close was re-carried into (so a reader that follows
// the channel, the API's cache, sees every candle the call changed). And the 24h ticker JSON
// when it wrote one and "ticker" is watched (a line starting {"symbol":).
inline constexpr const char kFlush[] = R"LUA(
local prefix, sym, wm, base_stamp, stamp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local base = prefix .. ':{' .. sym .. '}'
local sub, byte = string.sub, string.byte
-- Positions only (no table per interval): Redis hashes every Lua string and table it makes.
local n = tonumber(ARGV[6])
local i = 7
local currents = {}
for k = 1, n do
  currents[k] = i
  i = i + 4 + tonumber(ARGV[i + 3])
end
local nlate = tonumber(ARGV[i])
i = i + 1
local lates = {}
for k = 1, nlate do
  lates[k] = {iv = ARGV[i], t = tonumber(ARGV[i + 1]), expect = ARGV[i + 2], json = ARGV[i + 3],
              nempty = tonumber(ARGV[i + 4]), first = i + 5}
  i = i + 5 + lates[k].nempty
end
local nmysql = tonumber(ARGV[i])
local mysql_at = i + 1
i = mysql_at + 2 * nmysql
local ticker_key, ticker_json, ticker_state = ARGV[i], ARGV[i + 1], ARGV[i + 2]
local grant = ARGV[i + 3] or ''

-- One MGET for every current candle, the stamp and the watch: a command costs Redis far more
-- than Lua.
local events = {}  -- the candles this call publishes
local cur_keys = {}
for k, a in ipairs(currents) do cur_keys[k] = base .. ':' .. ARGV[a] end
cur_keys[n + 1] = base .. ':wmp'
cur_keys[n + 2] = base .. ':watch'
cur_keys[n + 3] = base .. ':ws'
local stored = redis.call('MGET', unpack(cur_keys))
if (stored[n + 1] or '') ~= base_stamp then return {-1} end
-- The events table for what an API instance follows (see B:watch), else nil: not published.
local watch = stored[n + 2]
local function followed(kind)
  if watch and string.find(watch, ',' .. kind .. ',', 1, true) then return events end
  return nil
end

-- Plan every write before making one. `hist` collects the history keys written.
local hist = {}
local function typed(key, kind)
  local t = redis.pcall('TYPE', key)
  t = type(t) == 'table' and t.ok or t
  return t == 'none' or t == kind
end
local plan = {}  -- per interval: 0 write ours; 1 storage newer (ours to history); 2 also
                 -- close storage's older candle into history
for k, a in ipairs(currents) do
  local iv, ts = ARGV[a], ARGV[a + 1]
  local existing = stored[k]
  local how = 0
  -- The common case needs no number: storage holds this very bucket (`{"t":<ts>,...`).
  if existing and not (sub(existing, 6, 5 + #ts) == ts and byte(existing, 6 + #ts) == 44) then
    local t, ex_t = tonumber(ts), open_time(existing)
    if ex_t and ex_t > t then
      how = 1
    elseif ex_t and ex_t < t then
      -- Storage's older candle goes to history unless this call or history already has it.
      local carried = false
      for e = a + 4, a + 3 + tonumber(ARGV[a + 3]) do
        if open_time(ARGV[e]) == ex_t then carried = true end
      end
      local key = base .. ':' .. iv .. ':hist'
      if not typed(key, 'zset') then return {-2, key} end
      if not carried and redis.call('ZCOUNT', key, ms(ex_t), ms(ex_t)) == 0 then how = 2 end
    end
  end
  plan[k] = how
  if how ~= 0 or tonumber(ARGV[a + 3]) > 0 then hist[#hist + 1] = base .. ':' .. iv .. ':hist' end
end
for _, l in ipairs(lates) do hist[#hist + 1] = base .. ':' .. l.iv .. ':hist' end
for _, key in ipairs(hist) do
  if not typed(key, 'zset') then return {-2, key} end
end
if #hist > 0 and not typed(base .. ':pending', 'hash') then return {-2, base .. ':pending'} end
if nmysql > 0 and not typed(base .. ':late', 'hash') then return {-2, base .. ':late'} end
for _, l in ipairs(lates) do
  local old = redis.call('ZRANGEBYSCORE', base .. ':' .. l.iv .. ':hist', ms(l.t), ms(l.t))
  if (old[1] or '') ~= l.expect then return {0} end
end

local mset = {}
for k, a in ipairs(currents) do
  local iv, ts, json = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local ev = followed(iv)
  if plan[k] == 2 then
    local older = as_closed(stored[k])
    put_hist(base, iv, open_time(stored[k]), older, ev)
  end
  for e = a + 4, a + 3 + tonumber(ARGV[a + 3]) do
    put_hist(base, iv, open_time(ARGV[e]), ARGV[e], ev)
  end
  if plan[k] == 1 then
    -- A rollover moved storage past the shard's current bucket: storage's current stays,
    -- and the shard's bucket is a closed one.
    local closed = as_closed(json)
    if put_hist(base, iv, tonumber(ts), closed, ev) then
      recarry_after(base, iv, tonumber(ts), close_of(json), ev)
    end
  elseif stored[k] ~= json then
    -- (A current candle the shard sends unchanged, e.g. a rolled 1s bucket of a symbol whose
    -- 1m took a trade, is neither written again nor published again.)
    mset[#mset + 1] = cur_keys[k]
    mset[#mset + 1] = json
    if ev then events[#events + 1] = json end
  end
end
-- Storage matched the base stamp, so this shard's watermark is storage's plus its own.
mset[#mset + 1] = base .. ':wm'
mset[#mset + 1] = wm
mset[#mset + 1] = base .. ':wmp'
mset[#mset + 1] = stamp
if ticker_state ~= '' then
  mset[#mset + 1] = base .. ':tks'
  mset[#mset + 1] = ticker_state
end
-- The write stamp: granted when storage's current candles are now exactly the ones sent (no
-- interval found storage elsewhere, no late update that may re-carry into them), else void.
local granted = grant ~= '' and nlate == 0
for k = 1, n do
  if plan[k] ~= 0 then granted = false end
end
mset[#mset + 1] = base .. ':ws'
mset[#mset + 1] = granted and grant or ''
redis.call('MSET', unpack(mset))

local result = {granted and 2 or 1, 0}
for k, l in ipairs(lates) do
  local ev = followed(l.iv)
  put_hist(base, l.iv, l.t, l.json, ev)
  local last_t = l.t
  for e = l.first, l.first + l.nempty - 1 do
    last_t = open_time(ARGV[e])
    put_hist(base, l.iv, last_t, ARGV[e], ev)
  end
  result[k + 2] = recarry_after(base, l.iv, last_t, close_of(l.json), ev) and 1 or 0
end

for r = mysql_at, mysql_at + 2 * nmysql - 1, 2 do
  redis.call('HSET', base .. ':late', ARGV[r], ARGV[r + 1])
end
if ticker_key ~= '' then
  redis.call('SET', ticker_key, ticker_json)
  if followed('ticker') then events[#events + 1] = ticker_json end
end
result[2] = (wrote_pending and 1 or 0) + (((stored[n + 3] or '') == '') and 2 or 0)
if #events > 0 then redis.call('SPUBLISH', base .. ':events', table.concat(events, '\n')) end
return result
)LUA";

// FLUSH_FAST: the common case of FLUSH, without reading the current candles: one symbol's
// trades since its last write, every one in the buckets that write left current (no closed
// candle, no late trade), while storage still holds exactly what that write sent.
// KEYS: B:wmp, B:ws, B:watch, B:wm, then the n current candle keys, the ticker key and B:tks
//   (those two always given; written only with a value).
// ARGV: base stamp (B:wmp as the shard last matched it), write stamp (B:ws as the shard's last
//   write left it), new stamp, new write stamp, watermark, n, the n interval names, the n
//   current JSONs (x=false), ticker JSON ("" = none), ticker state ("" = unchanged), the
//   events channel.
// Refused ({-1}, nothing written) unless B:wmp holds the base stamp, as FLUSH; {-3}, nothing
// written, unless B:ws holds the write stamp: somebody else wrote a current candle or the
// symbol's index since (a rollover, a late re-carry, a tool), so the shard sends FLUSH. Both
// hold: storage's current candles are the shard's previous ones, every one of which its trades
// since changed, so all are written, and published where B:watch names them, and B:ws takes
// the new write stamp. PREFIX:symbols already holds the symbol (the caller added it after
// a FLUSH; retire voids B:ws). Returns {2}.
inline constexpr const char kFlushFast[] = R"LUA(
local got = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3])
if (got[1] or '') ~= ARGV[1] then return {-1} end
if got[2] ~= ARGV[2] then return {-3} end
local n = tonumber(ARGV[6])
local mset = {KEYS[1], ARGV[3], KEYS[2], ARGV[4], KEYS[4], ARGV[5]}
for k = 1, n do
  mset[#mset + 1] = KEYS[4 + k]
  mset[#mset + 1] = ARGV[6 + n + k]
end
local ticker_json, ticker_state = ARGV[7 + 2 * n], ARGV[8 + 2 * n]
if ticker_json ~= '' then
  mset[#mset + 1] = KEYS[5 + n]
  mset[#mset + 1] = ticker_json
end
if ticker_state ~= '' then
  mset[#mset + 1] = KEYS[6 + n]
  mset[#mset + 1] = ticker_state
end
redis.call('MSET', unpack(mset))
local watch = got[3]
if watch then
  local events, find = {}, string.find
  for k = 1, n do
    if find(watch, ',' .. ARGV[6 + k] .. ',', 1, true) then events[#events + 1] = ARGV[6 + n + k] end
  end
  if ticker_json ~= '' and find(watch, ',ticker,', 1, true) then
    events[#events + 1] = ticker_json
  end
  if #events > 0 then redis.call('SPUBLISH', ARGV[9 + 2 * n], table.concat(events, '\n')) end
end
return {2}
)LUA";

// LOAD: what a shard needs to take one symbol over (start, rebalance, reload).
// KEYS: none. ARGV: prefix, symbol, interval names...
// Returns {B:wm, B:wmp, B:INTERVAL...}: each the stored string; nil when the key is missing;
// an error element "WRONGTYPE <type>" when it holds another type (MGET alone cannot tell a
// missing key from one of another type, and a lost watermark would count trades twice).
inline constexpr const char kLoad[] = R"LUA(
local base = ARGV[1] .. ':{' .. ARGV[2] .. '}'
local keys = {base .. ':wm', base .. ':wmp'}
for a = 3, #ARGV do keys[#keys + 1] = base .. ':' .. ARGV[a] end
local v = redis.call('MGET', unpack(keys))
local missing = {}
for k = 1, #keys do
  if not v[k] then missing[#missing + 1] = keys[k] end
end
if #missing > 0 and redis.call('EXISTS', unpack(missing)) > 0 then
  for k = 1, #keys do
    if not v[k] and redis.call('EXISTS', keys[k]) == 1 then
      v[k] = {err = 'WRONGTYPE ' .. redis.call('TYPE', keys[k]).ok}
    end
  end
end
return v
)LUA";

// READ_RANGE: the market-data API's snapshot of one (symbol, interval) range (MarketReader).
// Read only. KEYS: the current candle, the history set. ARGV: "1" = the oldest `limit` from
// lo (else the newest down from hi), lo, hi ("-inf" / "+inf" or a score), limit. Returns
// {current or nil, history's first member WITHSCORES, the range's members}; a read of a
// wrong-type key is that element's error reply (the others still come back).
inline constexpr const char kReadRange[] = R"LUA(#!lua flags=no-writes
local cur = redis.pcall('GET', KEYS[1])
local first = redis.pcall('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local range
if ARGV[1] == '1' then
  range = redis.pcall('ZRANGEBYSCORE', KEYS[2], ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4])
else
  range = redis.pcall('ZREVRANGEBYSCORE', KEYS[2], ARGV[3], ARGV[2], 'LIMIT', 0, ARGV[4])
end
return {cur, first, range}
)LUA";

// WATCH: an API instance says what it follows of one symbol (the market-data API's EventHub).
// KEYS: B:watchers, B:watch. ARGV: instance id, kinds (",1m,ticker,"; "" = none), ttl_ms. Sets the
// instance's part with expiry now + ttl, drops expired parts (an instance that died), and writes
// B:watch = the union of the live parts, expiring with the last of them (both keys go when none is
// left). Returns the number of kinds followed.
inline constexpr const char kWatch[] = R"LUA(
local inst, kinds, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wk, key = KEYS[1], KEYS[2]
if kinds == '' then
  redis.call('HDEL', wk, inst)
else
  redis.call('HSET', wk, inst, string.format('%d', now + ttl) .. '|' .. kinds)
end
local parts = redis.call('HGETALL', wk)
local union, seen, last = {}, {}, 0
for i = 1, #parts, 2 do
  local exp, ks = string.match(parts[i + 1], '^(%d+)|(.*)$')
  exp = tonumber(exp)
  if not exp or exp <= now then
    redis.call('HDEL', wk, parts[i])
  else
    if exp > last then last = exp end
    for k in string.gmatch(ks, '[^,]+') do
      if not seen[k] then
        seen[k] = true
        union[#union + 1] = k
      end
    end
  end
end
if #union == 0 then
  redis.call('DEL', key, wk)
  return 0
end
redis.call('SET', key, ',' .. table.concat(union, ',') .. ',', 'PX', last - now)
redis.call('PEXPIRE', wk, last - now)
return #union
)LUA";

}  // namespace klined::lua
