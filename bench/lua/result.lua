-- The end-of-run report every wrk script in this folder prints (loaded with dofile by
-- common.lua, lock_common.lua and suite_common.lua), parsed by quick.sh and suite.py:
--   BENCH_RESULT requests=.. duration_us=.. rps=.. p50_us=.. p90_us=.. p99_us=.. max_us=..
--                non2xx=.. connect=.. read=.. write=.. timeout=.. [extra counters]
--   BENCH_FIRST_NON2XX <status and start of the body of the first non-2xx answer>
-- Each thread counts non2xx (and keeps first_bad) in its own globals; setup() keeps the
-- threads so done() can add them up.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

-- the sum over all threads of one numeric global counter
function bench_sum(name)
   local s = 0
   for _, t in ipairs(threads) do
      s = s + (tonumber(t:get(name)) or 0)
   end
   return s
end

-- print the report; `extra` (optional) is appended to the BENCH_RESULT line
function bench_report(summary, latency, extra)
   local sample = ""
   for _, t in ipairs(threads) do
      if (tonumber(t:get("non2xx")) or 0) > 0 and sample == "" then
         sample = t:get("first_bad") or ""
      end
   end
   local bad = bench_sum("non2xx")
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "non2xx=%d connect=%d read=%d write=%d timeout=%d%s\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      bad, e.connect, e.read, e.write, e.timeout, extra or ""))
   if bad > 0 then
      io.write("BENCH_FIRST_NON2XX " .. string.gsub(sample, "[\r\n]+", " ") .. "\n")
      io.write(string.format("WARNING: %d non-2xx responses\n", bad))
   end
end

-- the extra counters of the lock scenarios (ops = completed lock+unlock pairs)
function bench_lock_extra(summary)
   local u = bench_sum("unlocks")
   return string.format(" grants=%d unlocks=%d locked=%d ops=%d ops_rps=%.1f",
      bench_sum("grants"), u, bench_sum("locked"), u, u / (summary.duration / 1e6))
end
