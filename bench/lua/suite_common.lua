-- Shared by the bench/suite.py wrk scripts (suite_*.lua); loaded with dofile.
--
-- Each script sets suite_request (a function returning the raw HTTP request to send
-- next) and, when it needs to look at answers, suite_response(status, body) returning
-- one of "ok", "locked" (an expected conflict, counted apart) or "bad" (an error).
-- Without suite_response, every 2xx is "ok" and anything else "bad".
--
-- done() prints one machine-readable line that bench/suite.py parses:
--   BENCH_RESULT requests=.. duration_us=.. rps=.. p50_us=.. p90_us=.. p99_us=..
--                max_us=.. non2xx=.. connect=.. read=.. write=.. timeout=..
--                grants=.. unlocks=.. locked=.. ops=.. ops_rps=..
-- (the same fields as bench/lua/common.lua and lock_common.lua), plus
--   BENCH_FIRST_NON2XX <status> <first 300 bytes of the body>
-- for the first error answer, so a run of errors is never mistaken for speed.
--
-- Script arguments (wrk ... URL -- name=value ...) are parsed into suite_args.

-- the shared setup() and BENCH_RESULT report
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "result.lua")

suite_args = {}
suite_host = "127.0.0.1"

-- per-thread counters (globals, read by done() with thread:get)
non2xx, grants, unlocks, locked = 0, 0, 0, 0
first_bad = ""

function suite_bad(status, body)
   if non2xx == 0 then
      first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 300)
   end
   non2xx = non2xx + 1
end

-- "POST <path> HTTP/1.1" with a JSON body, built by hand: wrk.format is slower.
function suite_post(path, body)
   return "POST " .. path .. " HTTP/1.1\r\nHost: " .. suite_host ..
      "\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
end

-- a JSON string whose JSON text is exactly n bytes (n - 2 characters and the quotes)
function suite_json_value(n)
   assert(n >= 2, "value size must be >= 2")
   return '"' .. string.rep("v", n - 2) .. '"'
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- standard base64 (etcd's gateway wants keys and values base64-encoded)
function suite_b64(s)
   local out, n = {}, #s
   for i = 1, n, 3 do
      local a, b, c = string.byte(s, i, i + 2)
      local v = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(v / 262144) % 64
      local c2 = math.floor(v / 4096) % 64
      local c3 = math.floor(v / 64) % 64
      local c4 = v % 64
      out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1) ..
         (b and b64chars:sub(c3 + 1, c3 + 1) or "=") .. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
   end
   return table.concat(out)
end

function init(args)
   for _, a in ipairs(args) do
      local k, v = string.match(a, "^([%w_]+)=(.*)$")
      if k then
         suite_args[k] = v
      end
   end
   suite_host = wrk.headers["Host"] or suite_host
   math.randomseed(os.time() + math.floor(os.clock() * 1e6))
   if suite_init then
      suite_init(suite_args)
   end
end

function request()
   return suite_request()
end

function response(status, headers, body)
   local verdict
   if suite_response then
      verdict = suite_response(status, body)
   elseif status >= 200 and status <= 299 then
      verdict = "ok"
   else
      verdict = "bad"
   end
   if verdict == "locked" then
      locked = locked + 1
   elseif verdict ~= "ok" then
      suite_bad(status, body)
   end
end

function done(summary, latency, requests)
   bench_report(summary, latency, bench_lock_extra(summary))
end

-- A first-in first-out queue of things to send back later (unlocks, acks): push(x),
-- pop() -> the oldest, or nil when empty.
function suite_fifo()
   local items, head, tail = {}, 1, 0
   return {
      push = function(x)
         tail = tail + 1
         items[tail] = x
      end,
      pop = function()
         if head > tail then
            return nil
         end
         local x = items[head]
         items[head] = nil
         head = head + 1
         return x
      end,
   }
end
