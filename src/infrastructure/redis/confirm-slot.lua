-- The coupon row is written: the claim is final and no longer pending.
-- KEYS[1] pending   ARGV[1] user id
return redis.call('ZREM', KEYS[1], ARGV[1])
