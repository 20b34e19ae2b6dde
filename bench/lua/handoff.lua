-- wrk script: lock handoffs on ONE key between competing clients (quick.sh: 50).
-- Each connection loops (see lock_common.lua)
--     POST /db/bench {"LockID":"hot","LockDur":30,"LockWait":30}   (queues, FIFO)
--     POST /db/bench {"UnlockID":"hot","Unlock":<handle>}         (hands it on)
-- so every unlock hands the lock to the next waiter: ops= / ops_rps= are completed
-- handoffs. Any 409 is an error here (the wait is longer than the run).
--   wrk -t1 -c50 -d10s -s bench/lua/handoff.lua http://127.0.0.1:PORT [-- PREFIX]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "lock_common.lua")

lock_scenario {
   locked_ok = false,
   next_key = function()
      return "hot"
   end,
   lock_body = function(name, k)
      return '{"LockID":"' .. name .. '","LockDur":30,"LockWait":30}'
   end,
   key_of = function(body)
      return lock_prefix() .. "hot"
   end,
}
