-- bench/shared.lua: the shared driver, one process and several.
--
-- Prints figures only (a benchmark never asserts timings):
--   1. one process: the shared driver next to the memory driver (ns/op)
--   2. two processes hammering one key with incr, against one process (total ops/s)
--   3. two processes doing only get, against one process (the lock-free read path)
--   4. two readers beside one writer: every value read is checked whole (torn reads: 0)
-- Wall time comes from /proc/uptime (10 ms steps; runs last seconds). Child processes are
-- this same script started with a role argument; they open the same segment.
-- Environment: ZELTKV_BENCH_SECONDS (per multi-process run, default 2).

local zeltkv = require("zeltkv")

local SECONDS = tonumber(os.getenv("ZELTKV_BENCH_SECONDS") or "2")
local NAME = "bench-shared-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e6))

local function uptime()
  local f = assert(io.open("/proc/uptime"))
  local t = f:read("n")
  f:close()
  return t
end

local function interpreter()
  local i = -1
  while arg[i - 1] do i = i - 1 end
  return arg[i]
end

local VALUE = string.rep("v", 31)

-- a value that carries its own check: "<len>:<sum>:" then filler
local function checked_value(n)
  local body = string.rep(string.char(97 + n % 26), 16 + n % 200)
  local sum = 0
  for i = 1, #body do sum = (sum * 31 + body:byte(i)) % 1000000007 end
  return ("%d:%d:%s"):format(#body, sum, body)
end

local function value_ok(v)
  local len, sum, body = v:match("^(%d+):(%d+):(.*)$")
  if not len or #body ~= tonumber(len) then return false end
  local s = 0
  for i = 1, #body do s = (s * 31 + body:byte(i)) % 1000000007 end
  return s == tonumber(sum)
end

---------------------------------------------------------------------------------------
-- child roles: run until the deadline, print "ops elapsed torn"
---------------------------------------------------------------------------------------
local role = arg[1]
if role then
  local kv = zeltkv.shared(arg[2])
  local s = kv:namespace("bench")
  local secs = tonumber(arg[3])
  while not s:get("go") do end
  local t0 = uptime()
  local stop = t0 + secs
  local ops, torn = 0, 0
  if role == "incr" then
    repeat
      for _ = 1, 1000 do s:incr("counter") end
      ops = ops + 1000
    until uptime() >= stop
  elseif role == "get" then
    local keys = {}
    for i = 1, 1024 do keys[i] = "k" .. i end
    repeat
      for i = 1, 1000 do s:get(keys[(i & 1023) + 1]) end
      ops = ops + 1000
    until uptime() >= stop
  elseif role == "reader" then
    repeat
      for i = 1, 100 do
        local v = s:get("pair" .. (i % 8))
        if v and not value_ok(v) then torn = torn + 1 end
      end
      ops = ops + 100
    until uptime() >= stop
  elseif role == "writer" then
    local n = 0
    repeat
      for _ = 1, 100 do
        n = n + 1
        s:set("pair" .. (n % 8), checked_value(n))
      end
      ops = ops + 100
    until uptime() >= stop
  end
  print(ops, uptime() - t0, torn)
  kv:close()
  os.exit(0)
end

---------------------------------------------------------------------------------------
-- parent
---------------------------------------------------------------------------------------
local LUA = interpreter()
local kv = zeltkv.shared(NAME, { size = "64m" })
local s = kv:namespace("bench")

local function run(roles)
  s:del("go")
  local procs = {}
  for i, r in ipairs(roles) do
    procs[i] = assert(io.popen(("%s %s %s %s %s"):format(LUA, arg[0], r, NAME, SECONDS)))
  end
  s:set("go", true)
  local out = {}
  for i, p in ipairs(procs) do
    local ops, secs, torn = p:read("n", "n", "n")
    p:close()
    out[i] = { ops = ops or 0, secs = secs or 1, torn = torn or 0 }
  end
  return out
end

local function rate(res, pick)
  local total, longest = 0, 0
  for i, r in ipairs(res) do
    if not pick or pick(i) then
      total = total + r.ops
      if r.secs > longest then longest = r.secs end
    end
  end
  return total / longest
end

local function time_ns(n, f)
  local best = math.huge
  for _ = 1, 3 do
    local t = os.clock()
    f(n)
    local d = (os.clock() - t) / n * 1e9
    if d < best then best = d end
  end
  return best
end

print(("zeltkv %s, %s, shared driver (segment %s)"):format(zeltkv.version, _VERSION, NAME))
print()
print("1. one process: shared driver next to memory driver (ns/op, best of 3, 1M ops)")
local mem = zeltkv.memory():namespace("bench")
local keys = {}
for i = 1, 1024 do
  keys[i] = "k" .. i
  s:set(keys[i], VALUE)
  mem:set(keys[i], VALUE)
end
local N = 1000000
print(("  %-8s %12s %12s %8s"):format("op", "shared", "memory", "ratio"))
for _, op in ipairs({ "get", "set", "incr" }) do
  local function loop(st)
    return function(n)
      if op == "get" then for i = 1, n do st:get(keys[(i & 1023) + 1]) end
      elseif op == "set" then for i = 1, n do st:set(keys[(i & 1023) + 1], VALUE) end
      else for i = 1, n do st:incr("c" .. (i & 15)) end end
    end
  end
  local a, b = time_ns(N, loop(s)), time_ns(N, loop(mem))
  print(("  %-8s %12.1f %12.1f %7.2fx"):format(op, a, b, a / b))
end

print()
print(("2. incr on one key: total ops/s over %gs (target: 2 processes >= 80%% of 1)"):format(SECONDS))
s:set("counter", 0)
local one = rate(run({ "incr" }))
local c1 = s:get("counter")
s:set("counter", 0)
local res2 = run({ "incr", "incr" })
local two = rate(res2)
local c2 = s:get("counter")
local sum2 = res2[1].ops + res2[2].ops
print(("  1 process   %12.0f ops/s   (counter %d)"):format(one, c1))
print(("  2 processes %12.0f ops/s   (counter %d = %d + %d: %s)"):format(two, c2, res2[1].ops,
      res2[2].ops, c2 == sum2 and "no increment lost" or "INCREMENTS LOST"))
print(("  ratio 2/1   %12.2f          target >= 0.80"):format(two / one))

print()
print(("3. get only, 1024 keys: total ops/s over %gs (target: 2 processes >= 1.8x of 1)"):format(SECONDS))
local g1 = rate(run({ "get" }))
local g2 = rate(run({ "get", "get" }))
print(("  1 process   %12.0f ops/s"):format(g1))
print(("  2 processes %12.0f ops/s"):format(g2))
print(("  ratio 2/1   %12.2f          target >= 1.80"):format(g2 / g1))

print()
print(("4. two readers beside one writer over %gs: values checked whole"):format(SECONDS))
for i = 0, 7 do s:set("pair" .. i, checked_value(i)) end
local res4 = run({ "writer", "reader", "reader" })
local torn = res4[2].torn + res4[3].torn
print(("  writer      %12.0f sets/s"):format(res4[1].ops / res4[1].secs))
print(("  readers     %12.0f gets/s (both)"):format(rate(res4, function(i) return i > 1 end)))
print(("  torn or wrong values read: %d"):format(torn))

kv:close()
zeltkv.unlink(NAME)
