-- The active campaigns with their latest marks, and the clock that stamped them (this shard's),
-- so the reconciler judges "no mark lately" by the same clock.
-- KEYS[1] active campaigns (sorted set: campaign id -> time of its latest mark, epoch ms)
-- Returns {now, id1, mark1, id2, mark2, ...}.
local time = redis.call('TIME')
local answer = {tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)}
local marks = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #marks, 2 do
  answer[#answer + 1] = marks[i]
  answer[#answer + 1] = tonumber(marks[i + 1])
end
return answer
