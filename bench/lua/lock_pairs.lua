-- wrk script: lock + unlock pairs on random keys (1 account x 1,000 keys).
-- Each connection alternates (see lock_common.lua)
--     POST /db/bench {"LockID":"k<r>","LockDur":<30 + 5r>}        r = 0..999 at random
--     POST /db/bench {"UnlockID":"k<r>","Unlock":<handle from that answer>}
-- A 409 `locked` (another connection holds k<r> right now) is expected now and then:
-- counted as locked=, not as an error. ops= / ops_rps= are completed pairs.
--
-- Why LockDur is 30 + 5r and not 30: the lock's answer {"Lock": h, "Till": t} does not
-- name the lock, and wrk does not say which connection (so which request) an answer
-- belongs to. The key index is recovered from the answer itself:
--     Till = grant time + 30 + 5r, and grant time is within the answer's latency of
--     now: r = round((Till - os.time() - 30) / 5), exact while the latency is < 2.5 s
--     (wrk's --timeout is 2 s). The server does the same work for any LockDur, every
--     lock is unlocked explicitly long before it would expire, and a wrong recovery
--     would show up as a 409 not_lock_holder error.
--   wrk -t1 -c400 -d10s -s bench/lua/lock_pairs.lua http://127.0.0.1:PORT [-- PREFIX]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "lock_common.lua")

local floor = math.floor

lock_scenario {
   locked_ok = true,
   next_key = function()
      return "k" .. (math.random(1000) - 1)
   end,
   lock_body = function(name, k)
      local r = tonumber(string.sub(k, 2))
      return '{"LockID":"' .. name .. '","LockDur":' .. (30 + 5 * r) .. '}'
   end,
   key_of = function(body)
      local till = tonumber(string.match(body, '"Till":([%d%.]+)'))
      local r = floor((till - os.time() - 30) / 5 + 0.5)
      return lock_prefix() .. "k" .. r
   end,
}
