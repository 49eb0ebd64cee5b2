-- Gives back the slot of a pending claim whose coupon was never recorded, and frees the user.
-- KEYS[1] window   KEYS[2] remaining   KEYS[3] users   KEYS[4] pending
-- ARGV[1] user id
-- Returns 1 when a slot was given back, 0 when the claim was not pending (already confirmed or
-- released, or the campaign was rebuilt from the database since): releasing twice is harmless.
if redis.call('ZREM', KEYS[4], ARGV[1]) == 0 then
  return 0
end
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('INCR', KEYS[2])
end
return 1
