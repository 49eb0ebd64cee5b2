-- What the reconciler needs of one campaign, at one instant of its own shard's clock.
-- KEYS[1] remaining   KEYS[2] users   KEYS[3] pending
-- ARGV[1] how old (ms) a pending claim must be to be settled
-- Returns {remaining, users, pending, stale, now}; remaining is -1 when the campaign is not loaded.
-- `stale` counts the claims made before now - ARGV[1] on this shard's clock, the clock that
-- stamped them: another master's clock, skewed, could call a claim in flight stale.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local remaining = redis.call('GET', KEYS[1])
if not remaining then
  return {-1, 0, 0, 0, now}
end
local stale = redis.call('ZCOUNT', KEYS[3], '-inf', '(' .. (now - tonumber(ARGV[1])))
return {tonumber(remaining), redis.call('SCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]), stale, now}
