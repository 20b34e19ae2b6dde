-- Shared by the wrk scripts in this folder (loaded with dofile, not run on its own).
--
-- A scenario script calls bench_pool(n, make) with a function that builds request i
-- (wrk.format(...)); every request then picks one of those n prebuilt requests at
-- random, so the per-request Lua work is one table lookup and is the same for every
-- scenario, the ceiling's included.
--
-- Every response that is not 2xx is counted (with the first one kept as a sample),
-- and done() prints one machine-readable line that bench/quick.sh parses:
--   BENCH_RESULT requests=.. duration_us=.. rps=.. p50_us=.. p90_us=.. p99_us=..
--                max_us=.. non2xx=.. connect=.. read=.. write=.. timeout=..
-- so a run of errors is never mistaken for speed.

local pool, pool_n = {}, 0

function bench_pool(n, make)
   pool, pool_n = {}, n
   for i = 1, n do
      pool[i] = make(i - 1)
   end
end

-- wrk: one call per request on each thread.
function request()
   return pool[math.random(pool_n)]
end

-- Per-thread counters (globals, so the main state can read them with thread:get).
non2xx = 0
first_bad = ""

function response(status, headers, body)
   if status < 200 or status > 299 then
      if non2xx == 0 then
         first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 300)
      end
      non2xx = non2xx + 1
   end
end

-- Main state: remember the threads so done() can collect their counters.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function done(summary, latency, requests)
   local bad, sample = 0, ""
   for _, t in ipairs(threads) do
      local n = tonumber(t:get("non2xx")) or 0
      if n > 0 and sample == "" then
         sample = t:get("first_bad") or ""
      end
      bad = bad + n
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, summary.requests / secs,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      bad, e.connect, e.read, e.write, e.timeout))
   if bad > 0 then
      io.write("BENCH_FIRST_NON2XX " .. string.gsub(sample, "[\r\n]+", " ") .. "\n")
      io.write(string.format("WARNING: %d non-2xx responses\n", bad))
   end
end
