-- Claims one slot of a campaign for a user, atomically, on Redis' own clock.
-- KEYS[1] window (hash opens_at, closes_at: epoch ms)   KEYS[2] remaining (integer)
-- KEYS[3] users (set of users served)                    KEYS[4] pending (zset user -> claim ms)
-- KEYS[5] this user's call count in the current second
-- ARGV[1] user id   ARGV[2] calls allowed per user per second (0: no limit)
-- Returns {status, value, remaining}; statuses: 0 claimed (value = claim ms), 1 not started
-- (value = opens_at), 2 ended (value = closes_at), 3 duplicate, 4 sold out, 5 not loaded,
-- 6 rate limited (value = ms until the count resets).
-- Every check runs before any write but the call count, so a refused claim changes nothing else.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local window = redis.call('HMGET', KEYS[1], 'opens_at', 'closes_at')
local remaining = redis.call('GET', KEYS[2])
if not window[1] or not window[2] or not remaining then
  return {5, now, -1}
end

-- A fixed one-second window per user, counted here so the limit costs no round trip of its own.
local limit = tonumber(ARGV[2])
if limit > 0 then
  local calls = redis.call('INCR', KEYS[5])
  if calls == 1 then
    redis.call('PEXPIRE', KEYS[5], 1000)
  elseif calls > limit then
    local reset_in = redis.call('PTTL', KEYS[5])
    if reset_in < 0 then
      -- A count left without expiry (should not happen): give it one now rather than block forever.
      redis.call('PEXPIRE', KEYS[5], 1000)
      reset_in = 1000
    end
    return {6, reset_in, -1}
  end
end

local opens_at = tonumber(window[1])
local closes_at = tonumber(window[2])
if now < opens_at then
  return {1, opens_at, -1}
end
if now >= closes_at then
  return {2, closes_at, -1}
end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then
  return {3, now, -1}
end
if tonumber(remaining) <= 0 then
  return {4, now, 0}
end

redis.call('SADD', KEYS[3], ARGV[1])
local left = redis.call('DECR', KEYS[2])
-- Pending until the coupon row is written; a claim whose process died is found and released here.
redis.call('ZADD', KEYS[4], now, ARGV[1])
return {0, now, left}
