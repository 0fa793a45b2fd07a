-- bench/redis_driver.lua: the redis driver against the bare round trip, in one run, on one
-- server (bench/redis-driver.sh starts it and passes its addresses).
--
--   lua5.4 bench/redis_driver.lua unix:///path/redis.sock redis://127.0.0.1:PORT
--
-- For each address: a minimal client over the same socket library (LuaSocket: one send,
-- then receive("*l") and receive(n) for the reply, the commands written out by hand)
-- against zeltkv.redis doing the same commands: get, set, incr with a ttl, setnx with a
-- ttl, and an uncontended atomic read-modify-write (bare: WATCH+GET, then MULTI/SET/EXEC).
-- Prints ns/op of both, the ratio, and the driver's round trips per op.  The two sides run
-- in turns (5 rounds each, the best round kept), so noise falls on both alike.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local socket = require("socket")
local zeltkv = require("zeltkv")

local N = tonumber(os.getenv("REDIS_BENCH_N") or "") or 20000
local ROUNDS = 5

local function connect(addr)
  local path = addr:match("^unix://(.+)$")
  local c
  if path then
    local unix = require("socket.unix")
    c = (type(unix) == "table" and unix.stream or unix)()
    assert(c:connect(path))
  else
    local h, p = addr:match("^redis://([^:/]+):(%d+)")
    c = socket.tcp()
    assert(c:connect(h, tonumber(p)))
    c:setoption("tcp-nodelay", true)
  end
  c:settimeout(5)
  return c
end

-- the bare client: one reply of any simple kind (status, integer, bulk, array of those)
local function reply(c)
  local line = assert(c:receive("*l"))
  local t = line:byte(1)
  if t == 36 then
    local n = tonumber(line:sub(2))
    if n < 0 then return nil end
    return c:receive(n + 2):sub(1, n)
  elseif t == 42 then
    local n = tonumber(line:sub(2))
    local a = {}
    for i = 1, n do a[i] = reply(c) end
    return a
  end
  return line
end

local function bulk(s) return "$" .. #s .. "\r\n" .. s .. "\r\n" end
local function cmd(...)
  local t = { "*" .. select("#", ...) .. "\r\n" }
  for i = 1, select("#", ...) do t[#t + 1] = bulk((select(i, ...))) end
  return table.concat(t)
end

local function bare_ops(c, pfx)
  local k = pfx .. "{b}:k"
  local cnt, lock, ctr = pfx .. "{b}:c", pfx .. "{b}:l", pfx .. "{b}:rmw"
  c:send(cmd("SET", ctr, "0"))
  reply(c)
  return {
    get = function() c:send("*2\r\n$3\r\nGET\r\n" .. bulk(k)); return reply(c) end,
    set = function() c:send("*3\r\n$3\r\nSET\r\n" .. bulk(k) .. "$5\r\nhello\r\n"); return reply(c) end,
    incr_ttl = function()
      c:send("*1\r\n$5\r\nMULTI\r\n" .. cmd("SET", cnt, "0", "PX", "60000", "NX")
             .. "*3\r\n$6\r\nINCRBY\r\n" .. bulk(cnt) .. "$1\r\n1\r\n*1\r\n$4\r\nEXEC\r\n")
      reply(c); reply(c); reply(c)
      return reply(c)
    end,
    setnx_ttl = function() c:send(cmd("SET", lock, "1", "NX", "PX", "30000")); return reply(c) end,
    atomic_rmw = function()
      c:send("*2\r\n$5\r\nWATCH\r\n" .. bulk(ctr) .. "*2\r\n$3\r\nGET\r\n" .. bulk(ctr))
      reply(c)
      local v = tonumber(reply(c))
      c:send("*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n" .. bulk(ctr) .. bulk(tostring(v + 1))
             .. "*1\r\n$4\r\nEXEC\r\n")
      reply(c); reply(c)
      return reply(c)
    end,
  }
end

local function driver_ops(kv)
  local s = kv:namespace("b")
  s:set("k", "hello")
  s:set("rmw", 0)
  return {
    get = function() return s:get("k") end,
    set = function() return s:set("k", "hello") end,
    incr_ttl = function() return s:incr("c", 1, 60) end,
    setnx_ttl = function() return s:setnx("l", 1, 30) end,
    atomic_rmw = function()
      return kv:atomic(function() s:set("rmw", s:get("rmw") + 1) end)
    end,
  }
end

local function time(f, n)
  local t0 = socket.gettime()
  for _ = 1, n do f() end
  return (socket.gettime() - t0) / n * 1e9
end

local OPS = { "get", "set", "incr_ttl", "setnx_ttl", "atomic_rmw" }
local LABEL = { get = "get", set = "set", incr_ttl = "incr with ttl", setnx_ttl = "setnx with ttl",
                atomic_rmw = "atomic read-modify-write" }

for _, addr in ipairs(arg) do
  local pfx = "bench" .. math.random(1, 1e9)
  local c = connect(addr)
  local bare = bare_ops(c, pfx)
  local kv = zeltkv.redis({ url = addr, prefix = pfx })
  local drv = driver_ops(kv)
  print(("%s (%s, %d ops per round, best of %d rounds)"):format(addr,
    rawget(_G, "jit") and jit.version or _VERSION, N, ROUNDS))
  print(("  %-26s %12s %12s %8s %12s"):format("operation", "bare ns/op", "driver ns/op", "ratio",
                                               "round trips"))
  for _, op in ipairs(OPS) do
    bare[op](); drv[op]()                              -- warm up
    local b, d = math.huge, math.huge
    local rt0 = kv.round_trips
    for _ = 1, ROUNDS do
      b = math.min(b, time(bare[op], N))
      d = math.min(d, time(drv[op], N))
    end
    local rts = (kv.round_trips - rt0) / (N * ROUNDS)
    print(("  %-26s %12.0f %12.0f %7.2fx %12.2f"):format(LABEL[op], b, d, d / b, rts))
  end
  kv:flush()
  kv:close()
  c:close()
end
