-- Claims one slot of a campaign for each of several users, in order, atomically, on Redis' own
-- clock: the claims of one moment in one call (see TickBatcher), judged exactly as if one by one.
-- KEYS[1] window (hash opens_at, closes_at: epoch ms)   KEYS[2] remaining (integer)
-- KEYS[3] users (set of users served)                    KEYS[4] pending (zset user -> claim ms)
-- KEYS[4 + i] user i's call count in the current second
-- ARGV[1] calls allowed per user per second (0: no limit)   ARGV[1 + i] user i
-- Returns three numbers per user, {status, value, remaining}; statuses: 0 claimed (value = claim
-- ms), 1 not started (value = opens_at), 2 ended (value = closes_at), 3 duplicate, 4 sold out,
-- 5 not loaded, 6 rate limited (value = ms until the user's count resets), 7 the user's earlier
-- claim is still pending (value = its claim ms). The third number is the slots left for 0, and
-- Redis' now for 1 and 7 (the gate's clock: how far the opening is, how old that claim is).
-- Every check runs before any write but the call count, so a refused claim changes nothing else.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local users = #ARGV - 1
local results = {}

local window = redis.call('HMGET', KEYS[1], 'opens_at', 'closes_at')
local remaining = redis.call('GET', KEYS[2])
if not window[1] or not window[2] or not remaining then
  for i = 1, users do
    results[#results + 1] = 5
    results[#results + 1] = now
    results[#results + 1] = -1
  end
  return results
end
local opens_at = tonumber(window[1])
local closes_at = tonumber(window[2])
local left = tonumber(remaining)
local limit = tonumber(ARGV[1])

-- A fixed one-second window per user, counted here so the limit costs no round trip of its own.
local function over_limit(calls_key)
  if limit <= 0 then
    return nil
  end
  local calls = redis.call('INCR', calls_key)
  if calls == 1 then
    redis.call('PEXPIRE', calls_key, 1000)
    return nil
  end
  if calls <= limit then
    return nil
  end
  local reset_in = redis.call('PTTL', calls_key)
  if reset_in < 0 then
    -- A count left without expiry (should not happen): give it one rather than block forever.
    redis.call('PEXPIRE', calls_key, 1000)
    reset_in = 1000
  end
  return reset_in
end

local function judge(user, calls_key)
  local reset_in = over_limit(calls_key)
  if reset_in then
    return 6, reset_in, -1
  end
  if now < opens_at then
    return 1, opens_at, now
  end
  if now >= closes_at then
    return 2, closes_at, -1
  end
  if redis.call('SISMEMBER', KEYS[3], user) == 1 then
    -- Served, but is it a coupon or a claim still being written (or whose process died)?
    local pending_since = redis.call('ZSCORE', KEYS[4], user)
    if pending_since then
      return 7, tonumber(pending_since), now
    end
    return 3, now, -1
  end
  if left <= 0 then
    return 4, now, 0
  end
  redis.call('SADD', KEYS[3], user)
  left = redis.call('DECR', KEYS[2])
  -- Pending until the coupon row is written; a claim whose process died is found and released here.
  redis.call('ZADD', KEYS[4], now, user)
  return 0, now, left
end

for i = 1, users do
  local status, value, after = judge(ARGV[1 + i], KEYS[4 + i])
  results[#results + 1] = status
  results[#results + 1] = value
  results[#results + 1] = after
end
return results
