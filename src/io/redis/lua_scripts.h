// The Lua scripts klined runs in Redis.
//
// DESIGN
// Every script touches the keys of one symbol only (all carry the {SYMBOL} hash tag) plus
// the global symbol index sets, so a call is atomic per symbol. Lua numbers are doubles:
// the scripts never do arithmetic on prices or volumes. They compare open times (integers
// below 2^53), compare trade ids as decimal strings, and rewrite candle JSON textually
// (the x flag, and o/h/l/c of empty candles when a close is re-carried). All exact
// arithmetic happens in C++.
//
// Shared layout, for a key base B = PREFIX:{SYMBOL}:
//   B:INTERVAL        current candle (x=false)
//   B:INTERVAL:hist   closed candles, score = open time
//   B:wm              highest applied trade id
//   B:pending         hash "INTERVAL|open_time" -> candle JSON not yet confirmed in MySQL
//   PREFIX:symbols    every symbol with an applied trade
//   PREFIX:pending    symbols whose B:pending is non-empty
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

-- Writes a closed candle into history (one member per score) and marks it for MySQL.
local wrote_pending = false  -- set by put_hist: this call added MySQL work
-- Times go to Redis as exact integer strings (a Lua number would print as %.14g).
local function ms(t) return string.format('%d', t) end

local function put_hist(base, iv, t, json)
  local hist, ts = base .. ':' .. iv .. ':hist', ms(t)
  local old = redis.call('ZRANGEBYSCORE', hist, ts, ts)
  if #old == 1 and old[1] == json then return false end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', hist, ts, ts) end
  redis.call('ZADD', hist, ts, json)
  redis.call('HSET', base .. ':pending', iv .. '|' .. ts, json)
  wrote_pending = true
  return true
end

-- After the closed candle at t changed its close: every empty candle after it (history,
-- then the current one) takes the new close, up to the first candle with trades. True when
-- the current candle was reached (so it carries `close`, or holds trades of its own).
local function recarry_after(base, iv, t, close)
  local hist = base .. ':' .. iv .. ':hist'
  local from = '(' .. ms(t)
  while true do
    local later = redis.call('ZRANGEBYSCORE', hist, from, '+inf', 'LIMIT', 0, 256)
    for _, m in ipairs(later) do
      if not is_empty(m) then return false end
      local nm = with_close(m, close)
      if nm == m then return true end  -- already carried: so are the ones after it
      put_hist(base, iv, open_time(m), nm)
    end
    if #later < 256 then break end
    from = '(' .. ms(open_time(later[#later]))
  end
  local cur_key = base .. ':' .. iv
  local cur = redis.call('GET', cur_key)
  if cur and is_empty(cur) then redis.call('SET', cur_key, with_close(cur, close)) end
  return true
end
)LUA";

// FLUSH: a shard writes one symbol's state, atomically.
// KEYS: none (computed from ARGV, all in the symbol's slot, plus the global index sets).
// ARGV: prefix, symbol, watermark,
//   interval count, then per interval: name, current open time, current JSON (x=false),
//     closed count, closed JSONs (x=true, oldest first, contiguous);
//   late count, then per late update (ascending open time per interval): name, open time,
//     expected stored JSON ("" = no member), new JSON (x=true), count and JSONs of empty
//     candles to create after it (the series now starts earlier than it was stored);
//   MySQL-late count, then per record: field "INTERVAL|open_time|trade_id", trade JSON (a late
//     trade whose bucket left Redis: B:late, drained into MySQL by the persistence worker);
//   ticker key and JSON ("" "" = none): the symbol's 24h ticker, written as is.
// Late updates are compare-and-set: if any stored candle differs from what the shard read,
// nothing at all is written and {0} is returned (the shard re-reads and retries). Otherwise
// returns {1, r1, r2, ...} where rk = 1 if late update k re-carried its close all the way
// into the current candle.
// Never undoes a rollover: if storage's current candle is newer than the shard's, the
// shard's candle goes to history and its close is re-carried.
inline constexpr const char kFlush[] = R"LUA(
local prefix, sym, wm = ARGV[1], ARGV[2], ARGV[3]
local base = prefix .. ':{' .. sym .. '}'
local sub, byte = string.sub, string.byte
-- Positions only (no table per interval): Redis hashes every Lua string and table it makes.
local n = tonumber(ARGV[4])
local i = 5
local currents = {}
for k = 1, n do
  currents[k] = i
  i = i + 4 + tonumber(ARGV[i + 3])
end
local nlate = tonumber(ARGV[i])
i = i + 1
local lates = {}
for k = 1, nlate do
  local l = {iv = ARGV[i], t = tonumber(ARGV[i + 1]), expect = ARGV[i + 2], json = ARGV[i + 3],
             nempty = tonumber(ARGV[i + 4]), first = i + 5}
  lates[k] = l
  i = i + 5 + l.nempty
  local old = redis.call('ZRANGEBYSCORE', base .. ':' .. l.iv .. ':hist', ms(l.t), ms(l.t))
  if (old[1] or '') ~= l.expect then return {0} end
end

-- Two commands for all current candles in the common case: read what is stored (MGET), then
-- write ours (MSET); a command costs Redis far more than the Lua around it.
local cur_keys = {}
for k, a in ipairs(currents) do cur_keys[k] = base .. ':' .. ARGV[a] end
local stored = n > 0 and redis.call('MGET', unpack(cur_keys)) or {}
local mset = {}
for k, a in ipairs(currents) do
  local iv, ts, json = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  for e = a + 4, a + 3 + tonumber(ARGV[a + 3]) do
    put_hist(base, iv, open_time(ARGV[e]), ARGV[e])
  end
  local existing = stored[k]
  local write = true
  -- The common case needs no number: storage holds this very bucket (`{"t":<ts>,...`).
  if existing and not (sub(existing, 6, 5 + #ts) == ts and byte(existing, 6 + #ts) == 44) then
    local t, ex_t = tonumber(ts), open_time(existing)
    if ex_t and ex_t > t then
      -- A rollover moved storage past the shard's current bucket: storage's current stays,
      -- and the shard's bucket is a closed one.
      write = false
      if put_hist(base, iv, t, as_closed(json)) then
        recarry_after(base, iv, t, close_of(json))
      end
    elseif ex_t and ex_t < t and
           redis.call('ZCOUNT', base .. ':' .. iv .. ':hist', ms(ex_t), ms(ex_t)) == 0 then
      put_hist(base, iv, ex_t, as_closed(existing))
    end
  end
  if write then
    mset[#mset + 1] = cur_keys[k]
    mset[#mset + 1] = json
  end
end
if #mset > 0 then redis.call('MSET', unpack(mset)) end

local result = {1}
for k, l in ipairs(lates) do
  put_hist(base, l.iv, l.t, l.json)
  local last_t = l.t
  for e = l.first, l.first + l.nempty - 1 do
    last_t = open_time(ARGV[e])
    put_hist(base, l.iv, last_t, ARGV[e])
  end
  result[k + 1] = recarry_after(base, l.iv, last_t, close_of(l.json)) and 1 or 0
end

local nmysql = tonumber(ARGV[i])
i = i + 1
for _ = 1, nmysql do
  redis.call('HSET', base .. ':late', ARGV[i], ARGV[i + 1])
  i = i + 2
end
if nmysql > 0 then redis.call('SADD', prefix .. ':late', sym) end
local ticker_key, ticker_json = ARGV[i], ARGV[i + 1]
if ticker_key ~= '' then redis.call('SET', ticker_key, ticker_json) end

local old = redis.call('GET', base .. ':wm')
if not old or id_gt(wm, old) then redis.call('SET', base .. ':wm', wm) end
redis.call('SADD', prefix .. ':symbols', sym)
if wrote_pending then redis.call('SADD', prefix .. ':pending', sym) end
return result
)LUA";

}  // namespace klined::lua
