-- The database refused a claim because the campaign is already full: the gate had counted a slot
-- too many. Drop the user's claim and leave no slot open.
-- KEYS[1] window   KEYS[2] remaining   KEYS[3] users   KEYS[4] pending
-- ARGV[1] user id
if redis.call('ZREM', KEYS[4], ARGV[1]) == 1 then
  redis.call('SREM', KEYS[3], ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('SET', KEYS[2], 0, 'KEEPTTL')
end
return 1
