-- wrk script: batches of page views, as an SDK's offline queue sends them: each request is one
-- visitor's session (a direct page view, then internal navigation), gzip-compressed, with the
-- times the page views happened and when the batch was sent. bench/run.py writes the bodies
-- (BENCH_BATCH_DIR/<n>.gz, one per request, every event id new); each request is one device.
-- Counts the events answered 200 so the benchmark can compare them with the store afterwards.

local agents = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
}
local dir = os.getenv("BENCH_BATCH_DIR")
local count = tonumber(os.getenv("BENCH_BATCH_COUNT"))
local net = tonumber(os.getenv("BENCH_BATCH_NET") or "82") -- each run's devices are its own
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  sent = 0
end

function request()
  sent = sent + 1
  if sent > count then sent = 1 end -- past the bodies written: ids repeat (counted as lost)
  local file = assert(io.open(dir .. "/" .. sent .. ".gz", "rb"))
  local body = file:read("*a")
  file:close()
  local headers = {
    ["Origin"] = "http://localhost",
    ["User-Agent"] = agents[(sent % #agents) + 1],
    ["X-Forwarded-For"] = string.format("%d.%d.%d.%d", net, math.floor(sent / 65536) % 256, math.floor(sent / 256) % 256, sent % 256),
    ["Content-Type"] = "application/json",
    ["Content-Encoding"] = "gzip",
  }
  return wrk.format("POST", "/api/v1/events/batch", headers, body)
end

function response(status, headers, body)
  if status == 200 then
    for _ in body:gmatch('"status": 200') do ok = ok + 1 end
  end
end

function done(summary, latency, requests)
  local acknowledged = 0
  for _, thread in ipairs(threads) do acknowledged = acknowledged + thread:get("ok") end
  io.write(string.format("bench-wrk: requests=%d acknowledged=%d non2xx=%d socket_errors=%d p50_us=%d p99_us=%d duration_us=%d\n",
    summary.requests, acknowledged, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
