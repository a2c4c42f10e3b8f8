-- A served page: its offers' impressions at time t on the user's state and, live, the request kept
-- for /feedback. KEYS[1] user state; KEYS[2] live: the served request, replayed: the page's "seen"
-- key (applied at most once). ARGV: mode ('live' or 'replay'), t, base, layout, user ttl ms,
-- served ttl ms, user key, dated (0/1), arm, namespace, then per offer: code, id.
if ARGV[1] == 'replay' and not redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[5]) then return 0 end
local t, base, layout = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local u = decode(redis.call('GET', KEYS[1]), base, layout)
local ids = {}
for i = 11, #ARGV, 2 do
  apply(u, 'impression', offer_key(ARGV[i], ARGV[i + 1]), t)
  ids[#ids + 1] = ARGV[i + 1]
end
redis.call('SET', KEYS[1], encode(u, base), 'PX', ARGV[5])
if ARGV[1] == 'live' then
  redis.call('HSET', KEYS[2], 'u', ARGV[7], 't', ARGV[2], 'd', ARGV[8], 'a', ARGV[9], 'n', ARGV[10],
             'o', table.concat(ids, '\31'))
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return 1
