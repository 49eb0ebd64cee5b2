-- Reads what a watcher of a campaign shows, at one instant of Redis' own clock.
-- KEYS[1] window   KEYS[2] remaining   KEYS[3] pending
-- Returns {now, opens_at, closes_at, amount, remaining, pending}; amount is -1 when it was never
-- changed since the campaign was loaded (then the database's amount holds), and every value but
-- now is -1 when the campaign is not loaded.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = redis.call('HMGET', KEYS[1], 'opens_at', 'closes_at', 'amount')
local remaining = redis.call('GET', KEYS[2])
if not window[1] or not window[2] or not remaining then
  return {now, -1, -1, -1, -1, -1}
end
return {
  now,
  tonumber(window[1]),
  tonumber(window[2]),
  tonumber(window[3] or -1),
  tonumber(remaining),
  redis.call('ZCARD', KEYS[3]),
}
