-- One event on the user's state. KEYS[1] user state, KEYS[2] (a replayed event only) its "seen"
-- key: applied at most once. ARGV: kind, t, base, layout, user ttl ms, code, offer id.
if #KEYS > 1 and not redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[5]) then return 0 end
local base = tonumber(ARGV[3])
local u = decode(redis.call('GET', KEYS[1]), base, ARGV[4])
apply(u, ARGV[1], offer_key(ARGV[6], ARGV[7]), tonumber(ARGV[2]))
redis.call('SET', KEYS[1], encode(u, base), 'PX', ARGV[5])
return 1
