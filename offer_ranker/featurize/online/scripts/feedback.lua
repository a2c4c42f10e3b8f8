-- A click or conversion on an offer a served request showed, applied once. KEYS[1] served request,
-- KEYS[2] user state. ARGV: offer id, event, given time or "", now, base, layout, user ttl ms, code.
-- Returns {-1} unknown request, {-2} offer not shown, else {applied 0/1, time, position}.
local served = redis.call('HMGET', KEYS[1], 't', 'd', 'o')
if not served[1] then return {-1} end
local position = 0
local k = 0
for id in string.gmatch(served[3], '[^\31]+') do
  k = k + 1
  if id == ARGV[1] then position = k break end
end
if position == 0 then return {-2} end
local after = tonumber(served[1]) + 1
local given, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local t
if served[2] == '1' then
  t = math.max(given or after, after)
else
  t = math.max(math.min(given or now, now), after)
end
if redis.call('HSETNX', KEYS[1], 'x:' .. ARGV[1] .. ':' .. ARGV[2], 1) == 0 then return {0, t, position} end
local base = tonumber(ARGV[5])
local u = decode(redis.call('GET', KEYS[2]), base, ARGV[6])
apply(u, ARGV[2], offer_key(ARGV[8], ARGV[1]), t)
redis.call('SET', KEYS[2], encode(u, base), 'PX', ARGV[7])
return {1, t, position}
