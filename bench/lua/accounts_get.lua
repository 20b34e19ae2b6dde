-- wrk script: read one counter of one of 1,000 accounts per request (no disk write, so
-- the time a proxy adds is not hidden behind an fsync; bench/haproxy.py).
-- Each request is `GET /db/acc<0..999>/counter/n`.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

bench_pool(1000, function(i)
   return wrk.format("GET", string.format("/db/acc%d/counter/n", i))
end)
