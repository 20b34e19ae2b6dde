-- Shared by the lock scenarios (lock_pairs.lua, handoff.lua); loaded with dofile.
--
-- Every connection loops: lock, then unlock with the handle from the lock's answer:
--     POST /db/bench  lock_body(key)                          -> {"Lock": h, "Till": t}
--     POST /db/bench  {"UnlockID": key, "Unlock": h}          -> {}
-- A lock answered 409 `locked` (someone else holds that key) is followed by a new lock
-- request; it counts as locked= (expected when locked_ok, else an error).
--
-- How a connection knows "its" handle with wrk -t1 (one Lua state for all connections):
-- wrk calls response() when a connection's answer is complete and request() when that
-- connection can send again, one event-loop pass later, in the same order. So every
-- response() appends the follow-up (unlock this handle, or lock again) to one FIFO and
-- every request() takes the oldest: each connection alternates lock and unlock. (Were
-- that order ever shuffled, another connection would send the unlock: the server only
-- checks the handle, so every grant is still unlocked exactly once.)
--
-- The lock's answer does not name the lock. One key (handoff.lua): nothing to recover.
-- Random keys (lock_pairs.lua): the scenario's key_of() recovers the key from the
-- answer's Till (see lock_pairs.lua). An unlock that is not answered 200 is an error,
-- so a wrong recovery could not go unnoticed.
--
-- done() prints the same BENCH_RESULT line as common.lua plus:
--   grants=  locks granted        unlocks= unlocks answered 200   locked= 409 locked
--   ops=     completed lock+unlock pairs (= unlocks)   ops_rps= ops per second
--
-- Optional script argument (wrk ... -- PREFIX): a prefix for every lock name, so the
-- warm-up run's locks (still held after wrk stops) are not in the measured run's way.
--
-- A scenario calls lock_scenario{
--   locked_ok = bool,
--   next_key  = function() -> the key (without prefix) of a new lock request,
--   lock_body = function(name, k) -> JSON body of the lock request on name = PREFIX .. k,
--   key_of    = function(body) -> the full lock name a 200 lock answer was granted on }
-- lock_prefix() returns PREFIX.

-- the shared setup() and BENCH_RESULT report
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "result.lua")

local cfg
local prefix = ""
local req_head = ""
local q, q_head, q_tail = {}, 1, 0     -- FIFO of follow-ups: false = lock, {name, h} = unlock

-- per-thread counters (globals, read by done() with thread:get)
grants, unlocks, locked, non2xx = 0, 0, 0, 0
first_bad = ""

function lock_scenario(c)
   cfg = c
end

local function post(body)
   return req_head .. #body .. "\r\n\r\n" .. body
end

function init(args)
   prefix = args[1] or ""
   math.randomseed(os.time())
   req_head = "POST /db/bench HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
      "\r\nContent-Type: application/json\r\nContent-Length: "
end

function lock_prefix()
   return prefix
end

function request()
   local f = false
   if q_head <= q_tail then
      f = q[q_head]
      q[q_head] = nil
      q_head = q_head + 1
   end
   if f then
      return post('{"UnlockID":"' .. f[1] .. '","Unlock":' .. f[2] .. '}')
   end
   local k = cfg.next_key()
   return post(cfg.lock_body(prefix .. k, k))
end

local function bad(status, body)
   if non2xx == 0 then
      first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 300)
   end
   non2xx = non2xx + 1
end

function response(status, headers, body)
   local follow = false
   if status == 200 then
      local h = string.match(body, '"Lock":(%d+)')
      if h then
         grants = grants + 1
         follow = { cfg.key_of(body), h }
      else
         unlocks = unlocks + 1
      end
   elseif status == 409 and cfg.locked_ok and string.find(body, '"Code":"locked"', 1, true) then
      locked = locked + 1
   else
      bad(status, body)
   end
   q_tail = q_tail + 1
   q[q_tail] = follow
end

function done(summary, latency, requests)
   bench_report(summary, latency, bench_lock_extra(summary))
end
