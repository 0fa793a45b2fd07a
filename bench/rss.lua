-- rss.lua: resident memory taken by N entries ("user:N" -> a 31-byte string).
--
-- Run by bench.lua in a fresh process per measurement, so nothing allocated by
-- an earlier measurement is counted.  Usage:
--   lua5.4 bench/rss.lua KIND N
-- KIND: zeltkv        a memory driver (one namespace)
--       table         a Lua table, every entry referring to one shared value string
--       table-copies  a Lua table, every entry with its own 31-byte string
-- Prints one line: KIND N rss_before_kb rss_after_kb engine_bytes (engine_bytes
-- is stats().bytes_used growth for zeltkv, 0 otherwise).

local kind = arg[1] or "zeltkv"
local n = math.tointeger(tonumber(arg[2] or "500000"))
assert(n and n > 0, "usage: rss.lua KIND N")

local VALUE = "0123456789abcdefghijklmnopqrstu" -- 31 bytes
assert(#VALUE == 31)

local function rss_kb()
  local f = assert(io.open("/proc/self/status", "r"))
  local text = f:read("a")
  f:close()
  return assert(tonumber(text:match("VmRSS:%s*(%d+)")), "no VmRSS in /proc/self/status")
end

local function settle()
  collectgarbage("collect")
  collectgarbage("collect")
end

local before, after, engine = 0, 0, 0
if kind == "zeltkv" then
  local zeltkv = require("zeltkv")
  local kv = zeltkv.memory({ gc_interval = 0 })
  local s = kv:namespace("users")
  s:set("warm-up", VALUE) -- the arena, the index and the namespace exist before we measure
  s:del("warm-up")
  local used0 = kv:stats().bytes_used
  settle()
  before = rss_kb()
  for i = 1, n do s:set("user:" .. i, VALUE) end
  settle()
  after = rss_kb()
  engine = kv:stats().bytes_used - used0
  assert(s:count() == n and s:get("user:" .. n) == VALUE)
  kv:close()
elseif kind == "table" or kind == "table-copies" then
  local copies = kind == "table-copies"
  settle()
  before = rss_kb()
  local t = {}
  for i = 1, n do
    t["user:" .. i] = copies and string.format("%031d", i) or VALUE
  end
  settle()
  after = rss_kb()
  assert(#t["user:" .. n] == 31)
else
  error("unknown kind " .. tostring(kind))
end

print(("%s %d %d %d %d"):format(kind, n, before, after, engine))
