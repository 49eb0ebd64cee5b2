-- Gives back slots the gate counts as taken though no coupon row and no pending claim stands
-- behind them (their pending mark was lost, e.g. in a Redis failover), and frees their users.
-- KEYS[1] remaining   KEYS[2] users   KEYS[3] pending   KEYS[4] repair lock
-- ARGV[1] slots to give back   ARGV[2] lock ms   ARGV[3..] users to free unless they are pending
-- Returns the slots given back, or -1 when another instance is already repairing this campaign.
if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[2]) then
  return -1
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = 3, #ARGV do
  if not redis.call('ZSCORE', KEYS[3], ARGV[i]) then
    redis.call('SREM', KEYS[2], ARGV[i])
  end
end
redis.call('INCRBY', KEYS[1], ARGV[1])
return tonumber(ARGV[1])
