-- wrk script: atomic add on one of 1,000 counters per request.
-- Each request is `POST /db/bench` with body {"Atomic":[{"Key":"k<0..999>","Add":1}]}.
--   wrk -t1 -c400 -d10s -s bench/lua/atomic_add.lua http://127.0.0.1:PORT
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local headers = { ["Content-Type"] = "application/json" }

bench_pool(1000, function(i)
   local body = string.format('{"Atomic":[{"Key":"k%d","Add":1}]}', i)
   return wrk.format("POST", "/db/bench", headers, body)
end)
