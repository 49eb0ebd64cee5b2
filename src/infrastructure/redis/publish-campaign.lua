-- Publishes a campaign read from the database into the gate, unless it is already there.
-- KEYS[1] window   KEYS[2] remaining   KEYS[3] users   KEYS[4] pending   KEYS[5] staged users
-- ARGV[1] opens_at ms   ARGV[2] closes_at ms   ARGV[3] remaining   ARGV[4] expire at (epoch ms)
-- Users were staged in KEYS[5] beforehand (in chunks, so no single call blocks Redis for long);
-- this script swaps them in atomically, so claims see either nothing or the whole campaign.
-- Returns 1 when published, 0 when another loader got there first.
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[5])
  return 0
end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('RENAME', KEYS[5], KEYS[3])
end
redis.call('HSET', KEYS[1], 'opens_at', ARGV[1], 'closes_at', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
for i = 1, 3 do
  redis.call('PEXPIREAT', KEYS[i], ARGV[4])
end
return 1
