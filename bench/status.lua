-- wrk script for scenarios whose every answer must have one status other than 2xx (bench/measure.py).
-- Usage: wrk ... -s bench/status.lua URL -- STATUS
-- Counts the responses whose status is not STATUS and prints "Unexpected status: N" at the end
-- (wrk itself counts only non-2xx/3xx answers, which is every answer when 401 is expected).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  expected = tonumber(args[1])
  unexpected = 0
end

function response(status, headers, body)
  if status ~= expected then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("unexpected")
  end
  io.write(string.format("Unexpected status: %d\n", total))
end
