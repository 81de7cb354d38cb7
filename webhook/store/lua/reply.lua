-- Queue one reply to a voter, once per callback and within the voter's rate limit.
-- KEYS: 1 seen-token key, 2 voter rate key, 3 outbox stream, 4 send kick flag, 5 stats
-- ARGV: 1 seen ttl (s), 2 rate limit, 3 rate window (s), 4 kick ttl (ms), 5 a stats counter
--       to increment once for this callback ('' for none), then field/value pairs of the entry
-- Returns {outcome, kick}: outcome "queued" | "retry" | "limited".
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return {'retry', 0}
end
if ARGV[5] ~= '' then
  redis.call('HINCRBY', KEYS[5], ARGV[5], 1)
end
local sent = redis.call('INCR', KEYS[2])
if sent == 1 then
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
if sent > tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[5], 'reply_limited', 1)
  return {'limited', 0}
end
local entry = {}
for i = 6, #ARGV do
  entry[#entry + 1] = ARGV[i]
end
redis.call('XADD', KEYS[3], '*', unpack(entry))
if redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[4]) then
  return {'queued', 1}
end
return {'queued', 0}
