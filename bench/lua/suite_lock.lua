-- wrk script for bench/suite.py: lock + unlock pairs on cdragon, random account and key.
-- Every connection loops
--     POST /db/a<A> {"LockID":"k<K>","LockDur":30,"KVGet":["a<A>/k<K>"]}
--         -> 200 {"Lock":h,"Till":t,"KV":[{"Key":"a<A>/k<K>","Version":0}]}
--         or 409 locked (someone else holds a<A>/k<K>: an expected conflict)
--     POST /db/a<A> {"UnlockID":"k<K>","Unlock":h}              -> 200 {}
-- A uniform in 0..acc-1, K in 0..keys-1 (args acc=, keys=; prefix= puts a prefix on
-- every lock name so a warm-up's locks, still held when wrk stops, are not in the way).
--
-- Why the KVGet: a lock's answer does not name the lock, and wrk's response() does not
-- say which request it answers. A KVGet of a key that is never written costs one
-- in-memory lookup and echoes the name back ("KV":[{"Key":...}]), so the unlock can be
-- built from the answer alone, for any number of accounts and keys.
-- The unlock is queued (FIFO) and sent by the next connection that may send; the
-- server checks only the name and the handle, so every grant is unlocked exactly once.
-- An unlock not answered 200 is an error. ops= / ops_rps= are completed pairs.
-- On the ceiling server (answers `{}`) every answer is "ok" and only req/s matters.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "suite_common.lua")

local random = math.random
local nacc, nkeys, prefix = 1, 1, ""
local unlocks_due = suite_fifo()        -- unlocks to send: {account, name, handle}

function suite_init(args)
   nacc = tonumber(args.acc or "1")
   nkeys = tonumber(args.keys or "1")
   prefix = args.prefix or ""
end

function suite_request()
   local f = unlocks_due.pop()
   if f then
      return suite_post("/db/a" .. f[1], '{"UnlockID":"' .. f[2] .. '","Unlock":' .. f[3] .. '}')
   end
   local a, k = random(nacc) - 1, random(nkeys) - 1
   local name = prefix .. "k" .. k
   return suite_post("/db/a" .. a,
      '{"LockID":"' .. name .. '","LockDur":30,"KVGet":["a' .. a .. "/" .. name .. '"]}')
end

function suite_response(status, body)
   if status == 200 then
      local h = string.match(body, '"Lock":(%d+)')
      if h then
         local a, name = string.match(body, '"Key":"a(%d+)/([^"]+)"')
         if not a then
            return "bad"
         end
         grants = grants + 1
         unlocks_due.push({ a, name, h })
      else
         unlocks = unlocks + 1
      end
      return "ok"
   elseif status == 409 and string.find(body, '"Code":"locked"', 1, true) then
      return "locked"
   end
   return "bad"
end
