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

-- the shared setup() and BENCH_RESULT report
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "result.lua")

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

function done(summary, latency, requests)
   bench_report(summary, latency)
end
