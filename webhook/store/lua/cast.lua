-- Claim a voter and queue their vote in one atomic step (the webhook's only write for a vote).
-- KEYS: 1 poll state override, 2 voter claim bucket, 3 account claim bucket (phone polls: the
--       messenger account is claimed with the number; otherwise unused), 4 votes stream,
--       5 tally kick flag, 6 stats
-- ARGV: 1 status by schedule, 2 claim field, 3 message tag, 4 account claim field ('' when the
--       voter is the account itself), 5 kick ttl (ms), then the vote's field/value pairs
--       (webhook/store/streams.py, VoteEntry)
-- Returns {outcome, kick}: "retry" | "duplicate" when the voter or the account is already
-- claimed (whatever the poll's status now: a redelivered vote accepted before a close stays a
-- retry), else the poll's status when it is not open, else "accepted"; kick = 1 when the caller
-- must queue a tally job.
local prior = redis.call('HGET', KEYS[2], ARGV[2])
local prior_account = false
if ARGV[4] ~= '' then
  prior_account = redis.call('HGET', KEYS[3], ARGV[4])
end
if prior or prior_account then
  if prior == ARGV[3] or prior_account == ARGV[3] then
    redis.call('HINCRBY', KEYS[6], 'vote_retry', 1)
    return {'retry', 0}
  end
  redis.call('HINCRBY', KEYS[6], 'vote_duplicate', 1)
  return {'duplicate', 0}
end
local status = redis.call('GET', KEYS[1]) or ARGV[1]
if status ~= 'open' then
  redis.call('HINCRBY', KEYS[6], 'vote_' .. status, 1)
  return {status, 0}
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[3])
end
redis.call('XADD', KEYS[4], '*', unpack(ARGV, 6))
if redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[5]) then
  return {'accepted', 1}
end
return {'accepted', 0}
