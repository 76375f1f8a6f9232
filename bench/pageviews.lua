-- wrk script: page views from many visitors, a realistic mix of new sessions (each from a new
-- device) and internal navigation, varied user agents, client IPs through a trusted
-- X-Forwarded-For, an event id each.
-- Counts 200s so the benchmark can compare them with what the store holds afterwards.

local agents = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
  "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
  "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
}
local pages = {"/", "/pricing", "/blog", "/blog/launch", "/docs", "/docs/install", "/about", "/contact"}
local visitors = tonumber(os.getenv("BENCH_VISITORS") or "2000")
local new_share = tonumber(os.getenv("BENCH_NEW_SHARE") or "0.3")
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  math.randomseed(id * 7919 + os.time())
  last = {}
  generation = {}
end

local function hex(n)
  local s = ""
  for _ = 1, n do s = s .. string.format("%x", math.random(0, 15)) end
  return s
end

function request()
  local v = math.random(1, visitors)
  local page = pages[math.random(1, #pages)]
  local referrer = ""
  if last[v] ~= nil and math.random() > new_share then
    referrer = "http://localhost" .. last[v]
  else
    -- a new session is a new device (most are: the device key changes daily), so it is not a
    -- reload of one of this visitor's tabs
    generation[v] = ((generation[v] or 0) + 1) % 64
  end
  last[v] = page
  local device = v * 64 + generation[v]
  local headers = {
    ["Origin"] = "http://localhost",
    ["X-Prisme-Referrer"] = "http://localhost" .. page .. (referrer == "" and "?utm_source=bench" or ""),
    ["X-Prisme-Document-Referrer"] = referrer,
    ["User-Agent"] = agents[(v % #agents) + 1],
    ["X-Forwarded-For"] = string.format("81.%d.%d.%d", 1 + math.floor(device / 65536), math.floor(device / 256) % 256, device % 256),
    ["X-Prisme-Event-Id"] = hex(8) .. "-" .. hex(4) .. "-4" .. hex(3) .. "-8" .. hex(3) .. "-" .. hex(12),
  }
  return wrk.format("POST", "/api/v1/events/pageviews", headers)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 end
end

function done(summary, latency, requests)
  local acknowledged = 0
  for _, thread in ipairs(threads) do acknowledged = acknowledged + thread:get("ok") end
  io.write(string.format("bench-wrk: requests=%d acknowledged=%d non2xx=%d socket_errors=%d p50_us=%d p99_us=%d duration_us=%d\n",
    summary.requests, acknowledged, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
