-- Forgets a campaign the reconciler found idle, only if its latest mark is still the one the
-- reconciler saw: a campaign marked again meanwhile (a claim on its way) stays.
-- KEYS[1] active campaigns   ARGV[1] campaign id   ARGV[2] the mark seen (epoch ms)
-- Returns 1 when forgotten, 0 when marked again since (or already gone).
local marked_at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not marked_at or tonumber(marked_at) ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
