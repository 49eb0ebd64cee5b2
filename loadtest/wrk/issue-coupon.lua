-- wrk script: IssueCoupon over Connect JSON, a new user id on every request.
--   BENCH_CAMPAIGN=<id> BENCH_USER_PREFIX=<prefix> wrk -t2 -c64 -d10s -s issue-coupon.lua http://127.0.0.1:PORT
-- Each thread numbers its own requests (its id comes from setup), so user ids never repeat.
-- done() prints one line "BENCH_WRK {json}" for loadtest/bench.ts: totals, errors and latency
-- percentiles in microseconds.

local campaign = os.getenv("BENCH_CAMPAIGN") or "noop"
local prefix = os.getenv("BENCH_USER_PREFIX") or "wrk"
local threads = 0
local headers = { ["Content-Type"] = "application/json" }
local path = "/coupon.v1.CouponService/IssueCoupon"
local counter = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function request()
  counter = counter + 1
  local body = '{"campaignId":"' .. campaign .. '","userId":"' .. prefix .. "-" .. thread_id .. "-" .. counter .. '"}'
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_WRK {"requests":%d,"seconds":%.3f,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
      '"p50":%d,"p90":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration / 1e6, errors.status, errors.connect, errors.read, errors.write,
    errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
