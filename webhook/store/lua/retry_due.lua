-- Move replies whose retry time has come back into the outbox.
-- KEYS: 1 retry zset, 2 outbox stream, 3 send kick flag
-- ARGV: 1 now (unix s), 2 most to move, 3 kick ttl (ms)
-- Returns {moved, kick}.
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local entry = cjson.decode(member)
  local flat = {}
  for k, v in pairs(entry) do
    flat[#flat + 1] = k
    flat[#flat + 1] = tostring(v)
  end
  redis.call('XADD', KEYS[2], '*', unpack(flat))
  redis.call('ZREM', KEYS[1], member)
end
local kick = 0
if #due > 0 and redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then
  kick = 1
end
return {#due, kick}
