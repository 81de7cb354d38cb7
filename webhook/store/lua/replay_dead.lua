-- Move every dead-lettered reply back into the outbox, attempts reset, atomically.
-- KEYS: 1 dead list, 2 outbox stream, 3 send kick flag; ARGV: 1 kick ttl (ms), 2 the entry's
--       attempts field (webhook/store/streams.py)
-- Returns {replayed, kick}.
local replayed = 0
while true do
  local member = redis.call('LPOP', KEYS[1])
  if not member then break end
  local entry = cjson.decode(member)
  entry[ARGV[2]] = '0'
  local flat = {}
  for k, v in pairs(entry) do
    flat[#flat + 1] = k
    flat[#flat + 1] = tostring(v)
  end
  redis.call('XADD', KEYS[2], '*', unpack(flat))
  replayed = replayed + 1
end
local kick = 0
if replayed > 0 and redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[1]) then
  kick = 1
end
return {replayed, kick}
