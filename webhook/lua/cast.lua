-- Claim a voter and queue their vote in one atomic step (the webhook's only write for a vote).
-- KEYS: 1 poll state override, 2 voter claim bucket, 3 votes stream, 4 tally kick flag, 5 stats
-- ARGV: 1 status by schedule, 2 claim field, 3 message tag, 4 poll id, 5 voter key,
--       6 option index, 7 receiver, 8 language, 9 accepted at (unix s), 10 kick ttl (ms)
-- Returns {outcome, kick}: "retry" | "duplicate" for a voter already claimed (whatever the
-- poll's status now: a redelivered vote accepted before a close stays a retry), else the
-- poll's status when it is not open, else "accepted"; kick = 1 when the caller must queue
-- a tally job.
local prior = redis.call('HGET', KEYS[2], ARGV[2])
if prior then
  if prior == ARGV[3] then
    redis.call('HINCRBY', KEYS[5], 'vote_retry', 1)
    return {'retry', 0}
  end
  redis.call('HINCRBY', KEYS[5], 'vote_duplicate', 1)
  return {'duplicate', 0}
end
local status = redis.call('GET', KEYS[1]) or ARGV[1]
if status ~= 'open' then
  redis.call('HINCRBY', KEYS[5], 'vote_' .. status, 1)
  return {status, 0}
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('XADD', KEYS[3], '*', 'p', ARGV[4], 'k', ARGV[5], 'o', ARGV[6],
           'to', ARGV[7], 'l', ARGV[8], 't', ARGV[9])
if redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[10]) then
  return {'accepted', 1}
end
return {'accepted', 0}
