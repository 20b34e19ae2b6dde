-- wrk script: lock handoffs on ONE key between competing clients.
-- Each connection loops
--     POST /db/bench {"LockID":"hot","LockDur":30,"LockWait":30}    (waits its turn, FIFO)
--     POST /db/bench {"UnlockID":"hot","Unlock":<handle>}          (hands it to the next)
-- so every unlock hands the lock to the next waiter: ops= / ops_rps= are completed
-- handoffs. A 409 here is an error (the wait is longer than the run).
-- Needs one connection per thread (see lock_common.lua); the quick bench uses 50:
--   wrk -t50 -c50 -d10s -s bench/lua/handoff.lua http://127.0.0.1:PORT [-- PREFIX]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "lock_common.lua")

lock_scenario {
   locked_ok = false,
   key = function()
      return "hot"
   end,
   lock_body = function(key)
      return '{"LockID":"' .. key .. '","LockDur":30,"LockWait":30}'
   end,
}
