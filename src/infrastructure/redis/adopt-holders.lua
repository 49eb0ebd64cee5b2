-- Adds users that hold a coupon in MySQL but are missing from the gate (their write committed
-- after the gate was rebuilt from an earlier read), and counts their slots as taken.
-- KEYS[1] remaining   KEYS[2] users
-- ARGV user ids that hold a coupon
-- Returns how many users were missing.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local adopted = 0
for i = 1, #ARGV do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    adopted = adopted + 1
    if tonumber(redis.call('GET', KEYS[1])) > 0 then
      redis.call('DECR', KEYS[1])
    end
  end
end
return adopted
