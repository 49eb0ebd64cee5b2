-- Marks a campaign as having claims now, on Redis' own clock (the clock claims are stamped by).
-- A mark only moves forward (GT), so a write that arrives late never hides a newer one.
-- KEYS[1] active campaigns (sorted set: campaign id -> time of its latest mark, epoch ms)
-- ARGV[1] campaign id
-- Returns the time of the mark. One key, not a campaign's: this set lives on one shard of a
-- cluster, so no script ever touches it together with a campaign's {id} keys.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], 'GT', now, ARGV[1])
return now
