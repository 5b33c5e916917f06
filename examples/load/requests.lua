-- wrk script for the load test: cycles through pre-signed requests (see load_presign),
-- each a new eventId, so the verified route's dedup store does a real insert for every
-- request. The bare route gets exactly the same bytes.
--
--   wrk -t1 -c32 -d8s -s requests.lua http://127.0.0.1:8401 -- /verified requests.txt

local path, ids, headers, prefix, suffix
local next_index, wrapped = 0, 0

function init(args)
  path = args[1]
  local file = assert(io.open(args[2], "r"))
  prefix = file:read("*l")
  suffix = file:read("*l")
  ids, headers = {}, {}
  for line in file:lines() do
    local id, signature = line:match("^([^\t]+)\t(.+)$")
    ids[#ids + 1] = id
    headers[#headers + 1] = signature
  end
  file:close()
end

function request()
  next_index = next_index + 1
  if next_index > #ids then
    -- Out of fresh events: from here the verified route answers duplicates.
    next_index = 1
    wrapped = wrapped + 1
  end
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["X-Webhook-Signature"] = headers[next_index],
  }, prefix .. ids[next_index] .. suffix)
end

local statuses = {}

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local wraps, others = 0, 0
  for _, thread in ipairs(threads) do
    wraps = wraps + (thread:get("wrapped") or 0)
    for status, count in pairs(thread:get("statuses") or {}) do
      if status ~= 204 then others = others + count end
    end
  end
  io.write(string.format("RESULT %d %.3f %d %d %d %d %d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    others, wraps))
end
