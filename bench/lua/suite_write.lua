-- wrk script for bench/suite.py: one durable write per request on a random account
-- and key, on cdragon (and, unchanged, on the ceiling server, which answers `{}`).
--   kind=kv   POST /db/a<A> {"KVSet":[{"Key":"k<K>","Value":"vvv..."}]}
--             (the Value's JSON text is exactly size= bytes)
--   kind=add  POST /db/a<A> {"Atomic":[{"Key":"k<K>","Add":1}]}
-- A is uniform in 0..acc-1 and K in 0..keys-1, drawn per request.
--   wrk -t1 -c400 -d10s -s bench/lua/suite_write.lua http://127.0.0.1:PORT \
--       -- kind=kv acc=1000 keys=1000 size=64
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "suite_common.lua")

local random = math.random
local heads, nacc, nkeys = {}, 1, 1
local pre, post = "", ""

function suite_init(args)
   nacc = tonumber(args.acc or "1")
   nkeys = tonumber(args.keys or "1")
   local kind = args.kind or "kv"
   for a = 1, nacc do
      heads[a] = "POST /db/a" .. (a - 1) .. " HTTP/1.1\r\nHost: " .. suite_host ..
         "\r\nContent-Type: application/json\r\nContent-Length: "
   end
   if kind == "kv" then
      pre = '{"KVSet":[{"Key":"k'
      post = '","Value":' .. suite_json_value(tonumber(args.size or "64")) .. '}]}'
   elseif kind == "add" then
      pre = '{"Atomic":[{"Key":"k'
      post = '","Add":1}]}'
   else
      error("kind must be kv or add")
   end
end

function suite_request()
   local body = pre .. (random(nkeys) - 1) .. post
   return heads[random(nacc)] .. #body .. "\r\n\r\n" .. body
end
