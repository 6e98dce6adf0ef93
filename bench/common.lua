-- What bench/get.lua and bench/patch.lua share: `setup` numbers the threads (each thread's
-- global `index`, from 1), `done` prints the one summary line bench/run reads.
local common = {}
local threads = 0

function common.setup(thread)
  threads = threads + 1
  thread:set("index", threads)
end

function common.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"seconds":%.3f,"errors":%d,"non2xx":%d,"p50_ms":%.3f,"p99_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end

return common
