-- wrk script: set a 64-byte value on one of 1,000 keys per request.
-- Each request is `POST /db/bench` with body {"KVSet":[{"Key":"k<0..999>","Value":"..."}]}
-- where the Value is a JSON string whose JSON text is exactly 64 bytes (62 chars + quotes).
--   wrk -t1 -c400 -d10s -s bench/lua/kvset64.lua http://127.0.0.1:PORT
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local headers = { ["Content-Type"] = "application/json" }
local value_json = '"' .. string.rep("v", 62) .. '"'
assert(#value_json == 64, "value JSON must be 64 bytes")

bench_pool(1000, function(i)
   local body = string.format('{"KVSet":[{"Key":"k%d","Value":%s}]}', i, value_json)
   return wrk.format("POST", "/db/bench", headers, body)
end)
