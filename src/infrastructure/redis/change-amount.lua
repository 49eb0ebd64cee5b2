-- Raises or lowers a campaign's coupons by a difference, atomically with the claims: never below
-- what the gate has handed out (coupons issued and claims still pending).
-- KEYS[1] window   KEYS[2] remaining   KEYS[3] the leaked-slot repair lock (see return-leaked-slots.lua)
-- ARGV[1] difference (new amount - old amount)   ARGV[2] new amount   ARGV[3] repair pause ms
-- Returns {status, remaining}: 0 changed (remaining after), 1 refused (remaining unchanged: the
-- new amount is below what was handed out), 5 not loaded.
-- The amount is kept in the window too (next to the remaining count it explains), so a reader of
-- both sees them change together. The repair lock is taken for a while: a reconciler that read
-- the database's amount before this change would otherwise mistake the difference for leaked
-- slots and give them back.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then
  return {5, 0}
end
local left = tonumber(redis.call('GET', KEYS[2]))
local difference = tonumber(ARGV[1])
if left + difference < 0 then
  return {1, left}
end
left = redis.call('INCRBY', KEYS[2], difference)
redis.call('HSET', KEYS[1], 'amount', ARGV[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
return {0, left}
