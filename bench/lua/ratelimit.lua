-- wrk script: rate-limit takes (bench/ratelimit.py).
--   wrk -t1 -c400 -d10s -s bench/lua/ratelimit.lua URL/ -- MODE KEYS
-- MODE take:     POST /db/bench/ratelimit/u<i>?rate=..&per=1 (a limit no key reaches:
--                every take is allowed and writes its key's state)
-- MODE limited:  the same on a limit of 1 per hour (all but the first take refused, 429)
-- MODE add:      POST /db/bench {"Atomic":[{"Key":"k<i>","Add":1}]}
-- MODE add_rl:   the same with "RateLimit":[{"Key":"u<i>","Rate":..,"Per":1}] (allowed)
-- KEYS: how many keys the requests spread over (at random; 1 = one hot key).
-- A 429 counts as `limited`, not as an error (expected in MODE limited).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "result.lua")

local pool, pool_n = {}, 0
local headers = { ["Content-Type"] = "application/json" }
local FAST = "rate=1000000&per=1"           -- T = 1 us, tolerance 1 s: never reached

function init(args)
   local mode, n = args[1] or "take", tonumber(args[2] or "1")
   for i = 0, n - 1 do
      local req
      if mode == "take" then
         req = wrk.format("POST", string.format("/db/bench/ratelimit/u%d?%s", i, FAST))
      elseif mode == "limited" then
         req = wrk.format("POST", string.format("/db/bench/ratelimit/h%d?rate=1&per=3600", i))
      elseif mode == "add" then
         req = wrk.format("POST", "/db/bench", headers, string.format('{"Atomic":[{"Key":"k%d","Add":1}]}', i))
      else
         req = wrk.format("POST", "/db/bench", headers, string.format(
            '{"Atomic":[{"Key":"k%d","Add":1}],"RateLimit":[{"Key":"u%d","Rate":1000000,"Per":1}]}', i, i))
      end
      pool[i + 1] = req
   end
   pool_n = n
end

function request()
   return pool[math.random(pool_n)]
end

non2xx = 0
limited = 0
first_bad = ""

function response(status, headers, body)
   if status == 429 then
      limited = limited + 1
   elseif status < 200 or status > 299 then
      if non2xx == 0 then
         first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 300)
      end
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   bench_report(summary, latency, string.format(" limited=%d", bench_sum("limited")))
end
