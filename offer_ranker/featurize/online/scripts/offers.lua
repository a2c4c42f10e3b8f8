-- Add to offers' states (six doubles each: impressions, clicks, conversions, expected clicks, and
-- the scaled impressions and clicks). KEYS[1] the namespace's offers hash, KEYS[2] (a replayed
-- event only) its "seen" key: applied at most once. ARGV: seen ttl ms, then per offer: id, six deltas.
if #KEYS > 1 and not redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[1]) then return 0 end
for i = 2, #ARGV, 7 do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  local a = {0, 0, 0, 0, 0, 0}
  if v then a = {struct.unpack('<dddddd', v)} end
  for k = 1, 6 do a[k] = a[k] + tonumber(ARGV[i + k]) end
  redis.call('HSET', KEYS[1], ARGV[i], struct.pack('<dddddd', a[1], a[2], a[3], a[4], a[5], a[6]))
end
return 1
