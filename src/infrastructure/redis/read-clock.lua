-- The clock of the shard that holds KEYS[1] (the key is only read for its slot, never touched):
-- a campaign's windows and claim times are stamped by its own shard's TIME, so anything judged
-- against them must read that same clock, not another master's.
-- Returns epoch ms.
local time = redis.call('TIME')
return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
