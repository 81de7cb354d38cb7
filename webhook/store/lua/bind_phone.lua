-- Bind a messenger account to a phone number, for good: the first accepted number wins.
-- KEYS: 1 account's binding bucket, 2 number's binding bucket (this messenger), 3 the account's
--       phone link from an older version (a STRING, deleted once adopted), 4 stats
-- ARGV: 1 account field, 2 the binding (phone key, then what the messenger vouched for: see
--       webhook/core/ballot_box.py Binding), 3 phone field, 4 account key, 5 "bind" | "adopt",
--       6 the phone key's length (the part of a binding that names the number)
-- "bind" returns "bound" (new), "same" (already bound to this number), "other_number" (the
-- account holds another number) or "bound_elsewhere" (another account of this messenger holds
-- it). "adopt" takes an older version's link as the account's binding (keeping any owner the
-- number already has: that version let two accounts link one number) and returns "same".
-- Every outcome is counted (vv:stats bind_OUTCOME): the call then always writes, so a WAIT after
-- it also covers a binding an earlier, unconfirmed attempt made (webhook/store/durable.py).
local function done(outcome)
  redis.call('HINCRBY', KEYS[4], 'bind_' .. outcome, 1)
  return outcome
end
if ARGV[5] == 'adopt' then
  redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[4])
  redis.call('DEL', KEYS[3])
  return done('same')
end
local phone_chars = tonumber(ARGV[6])
local bound = redis.call('HGET', KEYS[1], ARGV[1])
if bound and string.sub(bound, 1, phone_chars) ~= string.sub(ARGV[2], 1, phone_chars) then
  return done('other_number')
end
local owner = redis.call('HGET', KEYS[2], ARGV[3])
if owner and owner ~= ARGV[4] then
  return done('bound_elsewhere')
end
if bound and owner then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])  -- the same number: what was vouched for now is kept
  return done('same')
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return done('bound')
