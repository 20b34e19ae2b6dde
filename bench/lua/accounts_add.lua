-- wrk script: atomic add on one counter of one of 1,000 accounts per request, so a load
-- balancer routing by account spreads the load (bench/haproxy.py).
-- Each request is `POST /db/acc<0..999>` with body {"Atomic":[{"Key":"n","Add":1}]}.
--   wrk -t1 -c400 -d10s -s bench/lua/accounts_add.lua http://127.0.0.1:PORT
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local headers = { ["Content-Type"] = "application/json" }

bench_pool(1000, function(i)
   return wrk.format("POST", string.format("/db/acc%d", i), headers, '{"Atomic":[{"Key":"n","Add":1}]}')
end)
