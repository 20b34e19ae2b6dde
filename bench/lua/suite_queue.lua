-- wrk script: queue traffic on cdragon's REST routes, for bench/cpu_ab.sh.
--   mode=push   every request a push of a 52-byte message to queue q of account bench
--   mode=cycle  pushes and receives (Max 1) in turn, and an ack for every receipt
--               received (sent before anything else), so each message goes
--               push -> receive -> ack
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "suite_common.lua")

local BODY = '{"job":"send-mail","to":"someone@example.com","n":1}'
local mode, n = "push", 0
local acks_due = suite_fifo()          -- receipts to ack

function suite_init(args)
   mode = args.mode or "push"
   if mode ~= "push" and mode ~= "cycle" then
      error("mode must be push or cycle")
   end
end

function suite_request()
   local r = acks_due.pop()
   if r then
      return "DELETE /db/bench/queue/q?receipt=" .. r .. " HTTP/1.1\r\nHost: " .. suite_host .. "\r\n\r\n"
   end
   n = n + 1
   if mode == "cycle" and n % 2 == 0 then
      return suite_post("/queue/bench", '{"Queue":"q","Max":1,"Visibility":60}')
   end
   return suite_post("/db/bench/queue/q", BODY)
end

function suite_response(status, body)
   if status ~= 200 then
      return "bad"
   end
   local r = string.match(body, '"Receipt":"([^"]+)"')
   if r then
      acks_due.push(r)
   end
   return "ok"
end
