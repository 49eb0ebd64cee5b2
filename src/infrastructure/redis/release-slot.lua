-- Gives back the slot of a pending claim whose coupon was never recorded, and frees the user.
-- KEYS[1] window   KEYS[2] remaining   KEYS[3] users   KEYS[4] pending
-- ARGV[1] user id   ARGV[2] claim ms, or '' for whatever claim of the user is pending
-- Returns 1 when a slot was given back, 0 when that claim was not pending (already confirmed or
-- released, or the campaign was rebuilt from the database since): releasing twice is harmless,
-- and a reconciler holding an old claim time never releases the user's newer claim.
local claimed_at = redis.call('ZSCORE', KEYS[4], ARGV[1])
if not claimed_at then
  return 0
end
if ARGV[2] ~= '' and tonumber(claimed_at) ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('INCR', KEYS[2])
end
return 1
