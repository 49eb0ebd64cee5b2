-- Closes a campaign's window now, on Redis' own clock: every claim judged after this script (the
-- claim script compares its TIME with closes_at) is refused as ended.
-- KEYS[1] window (hash opens_at, closes_at: epoch ms)   KEYS[2] remaining
-- Returns {status, closes_at, now}: 0 closed now (closes_at = now), 1 already closed (closes_at
-- as it was), 5 not loaded (the campaign's keys are missing: load it from MySQL, then close).
-- A campaign closed before it opened gets the empty window opens_at = closes_at = now.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = redis.call('HMGET', KEYS[1], 'opens_at', 'closes_at')
if not window[1] or not window[2] or redis.call('EXISTS', KEYS[2]) == 0 then
  return {5, 0, now}
end
local closes_at = tonumber(window[2])
if closes_at <= now then
  return {1, closes_at, now}
end
if tonumber(window[1]) > now then
  redis.call('HSET', KEYS[1], 'opens_at', now, 'closes_at', now)
else
  redis.call('HSET', KEYS[1], 'closes_at', now)
end
return {0, now, now}
