-- Delete a stream group's consumers that have been idle past a bound and hold no pending entry.
-- Worker processes read as `host-pid`, so every restart leaves a consumer behind; without this
-- a restart storm grows the group's consumer list (and every XINFO of it) for ever.
-- XGROUP DELCONSUMER drops the consumer's pending entries from the group: they would never be
-- delivered again. So a consumer still holding entries is kept (a live drain takes them over
-- with XAUTOCLAIM once they are stale, and a later call deletes it), and the check and the
-- delete are one atomic step: no read can give an emptied consumer an entry in between.
-- KEYS: 1 stream
-- ARGV: 1 group, 2 idle bound (ms), 3 most consumers to delete in this call
-- Returns {deleted, kept: consumers idle past the bound that still hold entries}.
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if consumers.err then
  return {0, 0}  -- no stream or no group yet: nothing to prune
end
local bound, most = tonumber(ARGV[2]), tonumber(ARGV[3])
local deleted, kept = 0, 0
for _, flat in ipairs(consumers) do
  local consumer = {}
  for i = 1, #flat, 2 do
    consumer[flat[i]] = flat[i + 1]
  end
  if consumer['idle'] > bound then
    if consumer['pending'] > 0 then
      kept = kept + 1
    elseif deleted < most then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], consumer['name'])
      deleted = deleted + 1
    end
  end
end
return {deleted, kept}
