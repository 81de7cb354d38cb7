-- Store a batch of ballots and count them, idempotently, and queue their confirmations.
-- KEYS: 1 votes stream, 2 outbox stream, 3 send kick flag, then per vote i (0-based):
--       4+3i ballot bucket, 5+3i poll counters, 6+3i poll votes-per-minute
-- ARGV: 1 consumer group, 2 number of votes, 3 kick ttl (ms), then per vote 9 values:
--       stream id, ballot field, ballot value, option id, receiver, poll id, language, receipt,
--       and the Unix minute the vote was accepted
-- A ballot already stored is neither counted nor confirmed again; every entry is acked
-- and deleted in the same step, so a batch is applied wholly or not at all.
-- Returns {votes counted, kick}.
local counted = 0
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  local a = 4 + i * 9
  if redis.call('HSETNX', KEYS[4 + 3 * i], ARGV[a + 1], ARGV[a + 2]) == 1 then
    redis.call('HINCRBY', KEYS[5 + 3 * i], ARGV[a + 3], 1)
    redis.call('HINCRBY', KEYS[6 + 3 * i], ARGV[a + 8], 1)
    counted = counted + 1
    redis.call('XADD', KEYS[2], '*', 'k', 'confirm', 'to', ARGV[a + 4], 'p', ARGV[a + 5],
               'l', ARGV[a + 6], 'r', ARGV[a + 7], 'o', ARGV[a + 3], 'n', '0')
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[a])
  redis.call('XDEL', KEYS[1], ARGV[a])
end
local kick = 0
if counted > 0 and redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then
  kick = 1
end
return {counted, kick}
