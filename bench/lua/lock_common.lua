-- Shared by the lock scenarios (lock_pairs.lua, handoff.lua); loaded with dofile.
--
-- Run with ONE CONNECTION PER wrk THREAD (wrk -tN -cN): wrk's Lua API does not say on
-- which connection a response arrived, but each thread has its own Lua state, so with
-- one connection per thread the state below is that connection's state and every
-- connection strictly alternates:
--     lock   POST /db/bench  lock_body(key)                    (a fresh key each time)
--     unlock POST /db/bench  {"UnlockID": key, "Unlock": <handle from the lock answer>}
-- A lock answered 409 `locked` (another connection holds that key) is retried with a
-- new key; it counts as `locked` (expected when locked_ok, else an error).
--
-- A scenario calls lock_scenario{key = function() ... end, lock_body = function(key)
-- ... end, locked_ok = bool}. Answers: 200 with "Lock" = grant, 200 `{}` = unlock done,
-- 409 "locked" = conflict; anything else is an error (non2xx, first one kept as a
-- sample), as is an unlock answered with anything but 200. done() prints the same
-- BENCH_RESULT line as common.lua plus:
--   grants=  locks granted        unlocks= unlocks answered 200   locked= 409 locked
--   ops=     completed lock+unlock pairs (= unlocks)   ops_rps= ops per second
--
-- Optional script argument (wrk ... -- PREFIX): a prefix for every lock name, so the
-- warm-up run's locks (held for LockDur after wrk stops) are not in the measured run's way.

local cfg
local prefix = ""
local req_head = ""
local held_key, held_handle, sent_key = nil, nil, nil

-- per-thread counters (globals, read by done() with thread:get)
grants, unlocks, locked, non2xx = 0, 0, 0, 0
first_bad = ""
id = 0   -- set by setup() so every thread gets its own random sequence

function lock_scenario(c)
   cfg = c
end

local function post(body)
   return req_head .. #body .. "\r\n\r\n" .. body
end

function init(args)
   prefix = args[1] or ""
   math.randomseed(os.time() * 1000 + id * 7919)
   req_head = "POST /db/bench HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
      "\r\nContent-Type: application/json\r\nContent-Length: "
end

function request()
   if held_handle then
      sent_key = nil
      return post('{"UnlockID":"' .. held_key .. '","Unlock":' .. held_handle .. '}')
   end
   sent_key = prefix .. cfg.key()
   return post(cfg.lock_body(sent_key))
end

local function bad(status, body)
   if non2xx == 0 then
      first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 300)
   end
   non2xx = non2xx + 1
end

function response(status, headers, body)
   if sent_key == nil then            -- the answer to an unlock
      held_key, held_handle = nil, nil
      if status == 200 then
         unlocks = unlocks + 1
      else
         bad(status, body)
      end
      return
   end
   if status == 200 then
      local h = string.match(body, '"Lock":(%d+)')
      if h then
         grants = grants + 1
         held_key, held_handle = sent_key, h
      else
         bad(status, body)
      end
   elseif status == 409 and cfg.locked_ok and string.find(body, '"Code":"locked"', 1, true) then
      locked = locked + 1
   else
      bad(status, body)
   end
end

-- main state: number the threads, collect their counters
local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

function done(summary, latency, requests)
   local g, u, l, b, sample = 0, 0, 0, 0, ""
   for _, t in ipairs(threads) do
      g = g + (tonumber(t:get("grants")) or 0)
      u = u + (tonumber(t:get("unlocks")) or 0)
      l = l + (tonumber(t:get("locked")) or 0)
      local n = tonumber(t:get("non2xx")) or 0
      if n > 0 and sample == "" then
         sample = t:get("first_bad") or ""
      end
      b = b + n
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "non2xx=%d connect=%d read=%d write=%d timeout=%d grants=%d unlocks=%d locked=%d ops=%d ops_rps=%.1f\n",
      summary.requests, summary.duration, summary.requests / secs,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      b, e.connect, e.read, e.write, e.timeout, g, u, l, u, u / secs))
   if b > 0 then
      io.write("BENCH_FIRST_NON2XX " .. string.gsub(sample, "[\r\n]+", " ") .. "\n")
      io.write(string.format("WARNING: %d error responses\n", b))
   end
end
