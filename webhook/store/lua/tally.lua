-- Store a batch of ballots and count them, idempotently, and queue their confirmations.
-- KEYS: 1 votes stream, 2 outbox stream, 3 send kick flag, then per vote i (0-based):
--       4+4i ballot bucket, 5+4i poll counters, 6+4i poll votes-per-minute, 7+4i poll votes per channel
-- ARGV: 1 consumer group, 2 number of votes, 3 kick ttl (ms), then per vote: stream id, ballot
--       field, ballot value, option id, the Unix minute it was accepted, its channel, n, and n
--       values: the confirmation's field/value pairs (webhook/store/streams.py, ReplyEntry)
-- A ballot already stored is neither counted nor confirmed again; every entry is acked
-- and deleted in the same step, so a batch is applied wholly or not at all.
-- Returns {votes counted, kick}.
local counted = 0
local n = tonumber(ARGV[2])
local a = 4
for i = 0, n - 1 do
  local k = 4 + 4 * i
  local pairs_n = tonumber(ARGV[a + 6])
  if redis.call('HSETNX', KEYS[k], ARGV[a + 1], ARGV[a + 2]) == 1 then
    redis.call('HINCRBY', KEYS[k + 1], ARGV[a + 3], 1)
    redis.call('HINCRBY', KEYS[k + 2], ARGV[a + 4], 1)
    redis.call('HINCRBY', KEYS[k + 3], ARGV[a + 5], 1)
    counted = counted + 1
    redis.call('XADD', KEYS[2], '*', unpack(ARGV, a + 7, a + 6 + pairs_n))
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[a])
  redis.call('XDEL', KEYS[1], ARGV[a])
  a = a + 7 + pairs_n
end
local kick = 0
if counted > 0 and redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then
  kick = 1
end
return {counted, kick}
