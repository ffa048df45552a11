-- wrk script for the recommender: POST to the URL's path with a random user per request.
-- Env: N_USERS (default 10000), K (default 10). With SIGNED_BODY, AUTHORIZATION and AMZ_DATE set, every
-- request is that one SigV4-signed request instead (valid for the server's clock-skew window). done() prints one JSON line, latencies in µs,
-- which bench/run.py parses; non-2xx answers are counted in err_status.
local n_users = tonumber(os.getenv("N_USERS") or "10000")
local k = tonumber(os.getenv("K") or "10")
local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
local thread_no = 0
local signed_body = os.getenv("SIGNED_BODY")
if signed_body then
  headers["Authorization"] = os.getenv("AUTHORIZATION")
  headers["X-Amz-Date"] = os.getenv("AMZ_DATE")
end

function setup(thread)
  thread_no = thread_no + 1
  thread:set("thread_seed", thread_no * 7919 + math.random(1, 100000))
end

function init(args)
  math.randomseed(thread_seed or 1)
end

function request()
  if signed_body then
    return wrk.format("POST", nil, headers, signed_body)
  end
  local body = string.format('{"user_id": "u%d", "k": %d}', math.random(0, n_users - 1), k)
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests":%d,"duration_s":%.3f,"rps":%.1f,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, seconds, summary.requests / seconds, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
