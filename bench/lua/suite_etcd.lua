-- wrk script for bench/suite.py: etcd v3 through its HTTP/JSON gateway (keys and values
-- base64), random account (a key prefix: etcd has no accounts) and key per request.
--   kind=put   POST /v3/kv/put {"key": b64("a<A>/k<K>"), "value": b64(size= bytes)}
--   kind=lock  lock + unlock pairs, the try-lock etcd users write (like Redis SET NX):
--     POST /v3/kv/txn {"compare":[{"key":K,"target":"CREATE","create_revision":"0"}],
--                      "success":[{"request_put":{"key":K,"value":"MQ==","lease":L}},
--                                 {"request_range":{"key":K,"keys_only":true}}]}
--         -> "succeeded":true (granted; the range echoes K, so the unlock can be built
--            from the answer alone), or no "succeeded" (held by someone else: an
--            expected conflict, counted as locked=)
--     POST /v3/kv/deleterange {"key":K}   -> "deleted":"1"   (the unlock)
--     K = b64(prefix .. "a<A>/lock/k<K>"), L = lease= (granted by suite.py, long TTL).
--   wrk -t1 -c400 -d10s -s bench/lua/suite_etcd.lua http://127.0.0.1:PORT \
--       -- kind=put acc=1 keys=1000 size=64
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "suite_common.lua")

local random = math.random
local kind, nacc, nkeys, prefix, lease = "put", 1, 1, "", "0"
local value_b64 = ""
local q, q_head, q_tail = {}, 1, 0     -- FIFO of unlocks to send (base64 keys)

function suite_init(args)
   kind = args.kind or "put"
   nacc = tonumber(args.acc or "1")
   nkeys = tonumber(args.keys or "1")
   prefix = args.prefix or ""
   lease = args.lease or "0"
   value_b64 = suite_b64(string.rep("v", tonumber(args.size or "64")))
end

function suite_request()
   local a, k = random(nacc) - 1, random(nkeys) - 1
   if kind == "put" then
      return suite_post("/v3/kv/put",
         '{"key":"' .. suite_b64("a" .. a .. "/k" .. k) .. '","value":"' .. value_b64 .. '"}')
   end
   if q_head <= q_tail then
      local key = q[q_head]
      q[q_head] = nil
      q_head = q_head + 1
      return suite_post("/v3/kv/deleterange", '{"key":"' .. key .. '"}')
   end
   local key = suite_b64(prefix .. "a" .. a .. "/lock/k" .. k)
   return suite_post("/v3/kv/txn",
      '{"compare":[{"key":"' .. key .. '","target":"CREATE","create_revision":"0"}],' ..
      '"success":[{"request_put":{"key":"' .. key .. '","value":"MQ==","lease":"' .. lease .. '"}},' ..
      '{"request_range":{"key":"' .. key .. '","keys_only":true}}]}')
end

function suite_response(status, body)
   if status ~= 200 then
      return "bad"
   end
   if kind == "put" then
      return "ok"
   end
   if string.find(body, '"succeeded":true', 1, true) then
      local key = string.match(body, '"kvs":%[{"key":"([^"]+)"')
      if not key then
         return "bad"
      end
      grants = grants + 1
      q_tail = q_tail + 1
      q[q_tail] = key
      return "ok"
   elseif string.find(body, '"deleted":"1"', 1, true) then
      unlocks = unlocks + 1
      return "ok"
   elseif string.find(body, '"deleted"', 1, true) or string.find(body, '"responses"', 1, true) then
      return "bad"
   end
   return "locked"   -- a txn whose compare failed: {"header":{...}} alone
end
