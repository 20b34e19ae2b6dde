-- wrk script: lock + unlock pairs on random keys (1 account x 1,000 keys).
-- Each connection alternates
--     POST /db/bench {"LockID":"k<0..999>","LockDur":30}
--     POST /db/bench {"UnlockID":"k<same>","Unlock":<handle from that answer>}
-- A 409 `locked` (another connection holds that key right now) is expected now and
-- then: counted as locked=, not as an error. ops= / ops_rps= are completed pairs.
-- Needs one connection per thread (see lock_common.lua):
--   wrk -t400 -c400 -d10s -s bench/lua/lock_pairs.lua http://127.0.0.1:PORT [-- PREFIX]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "lock_common.lua")

lock_scenario {
   locked_ok = true,
   key = function()
      return "k" .. (math.random(1000) - 1)
   end,
   lock_body = function(key)
      return '{"LockID":"' .. key .. '","LockDur":30}'
   end,
}
