-- bench/luajit.lua: zeltkv under LuaJIT, the FFI front end (lua/zeltkv/ffi.lua, what
-- require("zeltkv") gives) next to the plain C binding (zeltkv.core's own stores) and a
-- LuaJIT table, in the same loop shape as section 1 of bench/bench.lua.
--
--   make LUA_VERSION=jit all
--   LUA_PATH='lua/?.lua;;' LUA_CPATH='build/luajit/?.so;;' luajit bench/luajit.lua
--
-- Prints figures only. ns/op, best of ZELTKV_BENCH_RUNS (default 3) runs of ZELTKV_BENCH_N
-- (default 1e6) iterations after a warm-up, os.clock() (CPU time). 1,024 keys "user:N", a
-- 31-byte string value; every result is used (summed into a checksum) so that the JIT
-- cannot drop a read. "loop" is the cost of the loop and key lookup alone.

assert(rawget(_G, "jit"), "bench/luajit.lua is for LuaJIT")
local zeltkv = require("zeltkv")
local core = require("zeltkv.core")
local band = require("bit").band

local clock = os.clock
local N = tonumber(os.getenv("ZELTKV_BENCH_N") or "1000000")
local RUNS = tonumber(os.getenv("ZELTKV_BENCH_RUNS") or "3")

local VALUE = "0123456789abcdefghijklmnopqrstu" -- 31 bytes
local MASK = 1023
local KEYS = {}
for i = 1, MASK + 1 do KEYS[i] = "user:" .. i end

local sink = 0

local function best(fn)
  fn(math.floor(N / 10))
  local b = math.huge
  for _ = 1, RUNS do
    local t = fn(N)
    if t < b then b = t end
  end
  return b / N * 1e9
end

-- the loops, each a fresh closure per store so that every column gets its own traces
local function loops(data, counters, locks)
  return {
    get = function(n)
      local s, ks, acc, t0 = data, KEYS, 0, clock()
      for i = 1, n do acc = acc + #s:get(ks[band(i, MASK) + 1]) end
      sink = sink + acc
      return clock() - t0
    end,
    set = function(n)
      local s, ks, v, acc, t0 = data, KEYS, VALUE, 0, clock()
      for i = 1, n do if s:set(ks[band(i, MASK) + 1], v) then acc = acc + 1 end end
      sink = sink + acc
      return clock() - t0
    end,
    incr = function(n)
      local s, ks, acc, t0 = counters, KEYS, 0, clock()
      for i = 1, n do acc = acc + s:incr(ks[band(i, MASK) + 1]) end
      sink = sink + acc
      return clock() - t0
    end,
    setnx = function(n)
      local s, ks, v, acc, t0 = locks, KEYS, VALUE, 0, clock()
      for i = 1, n do if s:setnx(ks[band(i, MASK) + 1], v) then acc = acc + 1 end end
      sink = sink + acc
      return clock() - t0
    end,
  }
end

-- a table with the same methods, in the same loop shape
local function table_store()
  local T = {}
  T.__index = T
  function T:get(k) return self.t[k] end
  function T:set(k, v) self.t[k] = v return true end
  function T:incr(k)
    local v = (self.t[k] or 0) + 1
    self.t[k] = v
    return v
  end
  function T:setnx(k, v)
    if self.t[k] ~= nil then return false end
    self.t[k] = v
    return true
  end
  return setmetatable({ t = {} }, T)
end

local function fill(s)
  for i = 1, MASK + 1 do s:set(KEYS[i], VALUE) end
  return s
end

local kvf, kvc = zeltkv.memory(), core.memory()
local columns = {
  { "FFI front end", loops(fill(kvf:namespace("data")), kvf:namespace("counters"),
                           kvf:namespace("locks")) },
  { "C binding", loops(fill(kvc:namespace("data")), kvc:namespace("counters"),
                       kvc:namespace("locks")) },
  { "LuaJIT table", loops(fill(table_store()), table_store(), table_store()) },
}

local loop_ns = best(function(n)
  local ks, acc, t0 = KEYS, 0, clock()
  for i = 1, n do acc = acc + #ks[band(i, MASK) + 1] end
  sink = sink + acc
  return clock() - t0
end)

print(("zeltkv %s on %s (%s), FFI front end %s, %d iterations, best of %d runs"):format(
  zeltkv.version, jit.version, jit.status() and "JIT on" or "JIT off",
  zeltkv._ffi and "on" or ("OFF: " .. tostring(zeltkv._ffi_disabled)), N, RUNS))
print()
local head = ("  %-6s"):format("op")
for _, c in ipairs(columns) do head = head .. ("  %14s"):format(c[1]) end
print(head .. ("  %10s  %10s"):format("C / FFI", "FFI / table"))
for _, op in ipairs({ "get", "set", "incr", "setnx" }) do
  local row, ns = ("  %-6s"):format(op), {}
  for i, c in ipairs(columns) do
    ns[i] = best(c[2][op])
    row = row .. ("  %14.1f"):format(ns[i])
  end
  print(row .. ("  %9.1fx  %9.1fx"):format(ns[2] / ns[1], ns[1] / ns[3]))
end
print(("  loop and key lookup alone: %.1f ns"):format(loop_ns))
kvf:close()
kvc:close()
print(("  (checksum %d)"):format(sink % 1000))
