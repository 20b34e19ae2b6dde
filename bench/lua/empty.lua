-- wrk script for the ceiling: every request is `GET /` (the server answers `{}`).
-- Goes through the same request pool and non-2xx counting as the cdragon scenarios,
-- so the load generator does the same work per request in every row.
--   wrk -t1 -c400 -d10s -s bench/lua/empty.lua http://127.0.0.1:PORT
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

bench_pool(1000, function(i)
   return wrk.format("GET", "/")
end)
