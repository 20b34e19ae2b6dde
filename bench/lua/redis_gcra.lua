-- Redis side of bench/ratelimit.py: GCRA in a Lua script (loaded once, run by EVALSHA),
-- the usual way to rate-limit with Redis. Time in microseconds from the server's TIME.
-- KEYS[1]: the key; ARGV: emission interval (us), burst tolerance (us), cost.
-- Returns {allowed 0/1, remaining, retry after (us), reset after (us)}. An allowed take
-- SETs the new TAT with an expiry at that time (so recovered keys go away); a refused
-- one writes nothing (and so does not wait for the AOF fsync).
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T, tau, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call("GET", KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + T * cost
if new - tau > now then
   return {0, 0, new - tau - now, tat - now}
end
redis.call("SET", KEYS[1], string.format("%d", new), "PX", math.ceil((new - now) / 1000))
return {1, math.floor((now + tau - new) / T), 0, new - now}
