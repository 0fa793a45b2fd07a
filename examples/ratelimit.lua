-- ratelimit.lua: a fixed-window rate limiter built on incr with a ttl.
--
-- The first request of a window creates the counter with a 60 s ttl; later
-- requests only add to it (incr never extends a ttl), so the window closes 60 s
-- after its first request whatever the traffic.  Time is fast-forwarded with
-- the test hook zeltkv._set_clock_offset instead of sleeping.

local zeltkv = require("zeltkv")

local offset_ms = 0
local function advance(seconds)
  offset_ms = offset_ms + math.floor(seconds * 1000)
  zeltkv._set_clock_offset(offset_ms)
end

local LIMIT, WINDOW = 5, 60

local kv = zeltkv.memory()
local hits = kv:namespace("ratelimit")

-- allow(ip) counts the request and says whether it is within the limit.
local function allow(ip)
  local n = hits:incr("req:" .. ip, 1, { ttl = WINDOW })
  return n <= LIMIT, n
end

print(("limit: %d requests per %d s window per client"):format(LIMIT, WINDOW))

local verdicts = {}
for i = 1, 7 do
  local ok, n = allow("10.0.0.1")
  verdicts[i] = ok
  print(("  t=%4.1fs  10.0.0.1 request %d -> %s (count %d)"):format(
    offset_ms / 1000, i, ok and "allowed" or "rejected", n))
  advance(2)
end
for i = 1, 5 do assert(verdicts[i] == true, "request " .. i .. " should pass") end
assert(verdicts[6] == false and verdicts[7] == false, "requests 6 and 7 must be rejected")

-- Another client has its own counter.
local ok, n = allow("10.0.0.2")
print(("  t=%4.1fs  10.0.0.2 request 1 -> %s (count %d)"):format(
  offset_ms / 1000, ok and "allowed" or "rejected", n))
assert(ok and n == 1)

-- The window is fixed: 14 s of traffic did not push its end back.
local left = hits:ttl("req:10.0.0.1")
print(("  the window of 10.0.0.1 closes in %.1f s (ttl set by its first request)"):format(left))
assert(left > 0 and left <= WINDOW - 14 + 0.001, "incr must not extend the ttl")

-- Fast-forward past the end of the window: the counter is gone.
advance(left + 1)
assert(hits:get("req:10.0.0.1") == nil, "the counter must expire with the window")
ok, n = allow("10.0.0.1")
print(("  t=%4.1fs  window over; 10.0.0.1 request -> %s (count %d)"):format(
  offset_ms / 1000, ok and "allowed" or "rejected", n))
assert(ok and n == 1)
assert(math.abs(hits:ttl("req:10.0.0.1") - WINDOW) < 1, "a new window starts with a full ttl")

zeltkv._set_clock_offset(0)
kv:close()
print("ratelimit: ok")
