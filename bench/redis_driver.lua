-- bench/redis_driver.lua: the redis driver against the bare round trip, in one run, on one
-- server (bench/redis-driver.sh starts it and passes its addresses).
--
--   lua5.4 bench/redis_driver.lua unix:///path/redis.sock redis://127.0.0.1:PORT
--
-- For each address: a minimal client over the same socket library (LuaSocket: one send,
-- then receive("*l") and receive(n) for the reply, the commands written out by hand)
-- against zeltkv.redis doing the same commands: get, set, incr with a ttl, setnx with a
-- ttl, and an uncontended atomic read-modify-write (bare: WATCH+GET, then MULTI/SET/EXEC).
-- Prints ns/op of both, the ratio, and the driver's round trips per op.  The machine is
-- shared and its load moves within a second, so the two sides run in short turns (chunks
-- of CHUNK ops, bare then driver, then driver then bare, ...); each side's figure is the
-- median of its chunks, and the ratio the median of the ratios of neighbouring chunks:
-- a burst of load falls on both sides of a pair, and a few such pairs move no median.
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
local socket = require("socket")
local zeltkv = require("zeltkv")

local N = tonumber(os.getenv("REDIS_BENCH_N") or "") or 20000
local CHUNK = 250
local PAIRS = math.max(8, math.floor(N / CHUNK))

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

local bare_lib = require("redis_bare")

-- the bare client on one connection (bench/redis_bare.lua)
local function bare_ops(c, pfx)
  local ops = bare_lib.ops(pfx)
  c:send("*3\r\n$3\r\nSET\r\n" .. bare_lib.bulk(pfx .. "{b}:rmw") .. "$1\r\n0\r\n")
  bare_lib.reply(c)
  local t = {}
  for name, f in pairs(ops) do t[name] = function() return f(c) end end
  return t
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

-- CPU time (os.clock): what the process itself spent, less blurred by a busy machine
local function cpu_time(f, n)
  local t0 = os.clock()
  for _ = 1, n do f() end
  return (os.clock() - t0) / n * 1e9
end

local OPS = { "get", "set", "incr_ttl", "setnx_ttl", "atomic_rmw" }
local LABEL = { get = "get", set = "set", incr_ttl = "incr with ttl", setnx_ttl = "setnx with ttl",
                atomic_rmw = "atomic read-modify-write" }

-- A fake connection that answers without any I/O, so that the driver's own CPU per call
-- can be told from the round trip (a figure a busy machine blurs less): it gives, over
-- and over, the reply lines a server gives to one call of the operation.
local REPLIES = {
  get = { "$5", "hello\r\n" }, set = { "+OK" }, setnx_ttl = { "+OK" },
  incr_ttl = { "+OK", "+QUEUED", "+QUEUED", "*2", "+OK", ":1" },
  atomic_rmw = { "+OK", "$1", "1\r\n", ":-1", "+OK", "+QUEUED", "*1", "+OK" },
}
-- the bare read-modify-write reads no PTTL
local BARE_REPLIES = { atomic_rmw = { "+OK", "$1", "1\r\n", "+OK", "+QUEUED", "*1", "+OK" } }
local function fake_conn()
  local c = { lines = {}, i = 0 }
  function c:send(p) return #p end
  function c:receive()
    local i = self.i % #self.lines + 1
    self.i = i
    return self.lines[i]
  end
  function c:close() end
  return c
end

local function median(t)
  table.sort(t)
  local n = #t
  local h = math.floor(n / 2)
  return n % 2 == 1 and t[h + 1] or (t[h] + t[h + 1]) / 2
end

for _, addr in ipairs(arg) do
  local pfx = "bench" .. math.random(1, 1e9)
  local c = connect(addr)
  local bare = bare_ops(c, pfx)
  local kv = zeltkv.redis({ url = addr, prefix = pfx })
  local drv = driver_ops(kv)
  print(("%s (%s, %d pairs of %d-op chunks, medians)"):format(addr,
    rawget(_G, "jit") and jit.version or _VERSION, PAIRS, CHUNK))
  print(("  %-26s %12s %12s %8s %12s"):format("operation", "bare ns/op", "driver ns/op", "ratio",
                                               "round trips"))
  for _, op in ipairs(OPS) do
    for _ = 1, CHUNK do bare[op](); drv[op]() end      -- warm up
    local bs, ds, rs = {}, {}, {}
    local rt0 = kv.round_trips
    for i = 1, PAIRS do
      local b, d
      if i % 2 == 1 then b = time(bare[op], CHUNK); d = time(drv[op], CHUNK)
      else d = time(drv[op], CHUNK); b = time(bare[op], CHUNK) end
      bs[i], ds[i], rs[i] = b, d, d / b
    end
    local rts = (kv.round_trips - rt0) / (CHUNK * PAIRS)
    print(("  %-26s %12.0f %12.0f %7.2fx %12.2f"):format(LABEL[op], median(bs), median(ds),
                                                         median(rs), rts))
  end
  kv:flush()
  kv:close()
  c:close()
end

-- the driver's CPU per call, without the network
do
  local kv = zeltkv.redis({ url = "redis://127.0.0.1:1", prefix = "z" })
  local c = fake_conn()
  kv.node.idle[1] = c
  c.lines = { "+OK" }
  local drv = driver_ops(kv)
  local bare = bare_ops(c, "z")
  local M = N * 10
  print(("the driver's own CPU: a fake connection that answers without I/O (%s, %d calls, best of 3)")
    :format(rawget(_G, "jit") and jit.version or _VERSION, M))
  print(("  %-26s %12s %12s %12s"):format("operation", "bare ns/op", "driver ns/op", "difference"))
  for _, op in ipairs(OPS) do
    local b, d = math.huge, math.huge
    for _ = 1, 3 do
      c.lines, c.i = BARE_REPLIES[op] or REPLIES[op], 0
      b = math.min(b, cpu_time(bare[op], M))
      c.lines, c.i = REPLIES[op], 0
      d = math.min(d, cpu_time(drv[op], M))
    end
    print(("  %-26s %12.0f %12.0f %12.0f"):format(LABEL[op], b, d, d - b))
  end
end
