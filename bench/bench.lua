-- bench.lua: zeltkv next to a plain Lua table, Redis, and itself at scale.
--
-- Prints figures only; a benchmark never asserts timings.  Sections:
--   1. ns/op of get, set, incr, setnx and an atomic read-modify-write, each next
--      to a Lua table doing the same in the same loop shape (best of RUNS runs);
--      1b. get and set next to the floor of a C-function store (bench/floor.c)
--   2. bytes per entry for 500k entries, as resident memory, one process each
--   3. the longest lock hold of one gc step while 1M expired keys are swept
--   4. keys()/count()/clear() of a 100-key namespace, 1M-key store vs 1k-key store
--   5. Redis on loopback (bench/redis.sh), when it is installed
-- Environment: ZELTKV_BENCH_N (iterations, default 1e6), ZELTKV_BENCH_RUNS
-- (default 3), ZELTKV_BENCH_REDIS=0 skips section 5, ZELTKV_BENCH_ONLY=1,1b runs only
-- the sections listed (comma-separated; 5 also needs 1).
-- See bench/README.md for what each figure means.

local zeltkv = require("zeltkv")

local clock = os.clock
local N = math.tointeger(tonumber(os.getenv("ZELTKV_BENCH_N") or "1000000"))
local RUNS = math.tointeger(tonumber(os.getenv("ZELTKV_BENCH_RUNS") or "3"))
-- want(sec): section sec is to run (ZELTKV_BENCH_ONLY lists them; all by default)
local ONLY = os.getenv("ZELTKV_BENCH_ONLY")
local function want(sec)
  if not ONLY or ONLY == "" then return true end
  for name in ONLY:gmatch("[^,%s]+") do
    if name == sec then return true end
  end
  return false
end
local HERE = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."

-- The interpreter running us, to run helper scripts with the same one.
local LUA = "lua5.4"
if arg then
  local i = -1
  while arg[i - 1] do i = i - 1 end
  LUA = arg[i] or LUA
end

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function fmt_ns(ns)
  if ns >= 100 then return ("%.0f"):format(ns) end
  return ("%.1f"):format(ns)
end

-- Table printing: rows of strings, first row the header.
local function print_table(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for c, cell in ipairs(row) do
      widths[c] = math.max(widths[c] or 0, #cell)
    end
  end
  for r, row in ipairs(rows) do
    local out = {}
    for c, cell in ipairs(row) do
      local pad = string.rep(" ", widths[c] - #cell)
      out[c] = c == 1 and cell .. pad or pad .. cell
    end
    print((("  " .. table.concat(out, "  ")):gsub("%s+$", "")))
    if r == 1 then
      local rule = {}
      for c = 1, #widths do rule[c] = string.rep("-", widths[c]) end
      print("  " .. table.concat(rule, "  "))
    end
  end
end

-- best(fn, n): ns per iteration of fn(n), the best of RUNS runs after a warm-up.
local function best(fn, n)
  fn(n // 10)
  local b = math.huge
  for _ = 1, RUNS do
    local t = fn(n)
    if t < b then b = t end
  end
  return b / n * 1e9
end

-- best_pair(fa, fb, n): the same for two loops compared with each other, run in turn
-- (fa, fb, fa, fb, ...), so that a load that comes and goes on the machine hits both alike
local function best_pair(fa, fb, n)
  fa(n // 10)
  fb(n // 10)
  local a, b = math.huge, math.huge
  for _ = 1, RUNS do
    local t = fa(n)
    if t < a then a = t end
    t = fb(n)
    if t < b then b = t end
  end
  return a / n * 1e9, b / n * 1e9
end

-- a ratio of two loops on a noisy machine: PAIRS short turns of each in alternation, each
-- pair's ratio taken, and the medians (of the ratios, and of each side's ns/op) returned, so
-- that a slow spell of the machine falls on both sides of a pair
local PAIRS = 41
local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end
local function ratio_pairs(fa, fb, n)
  local chunk = math.max(1000, n // 20)
  fa(chunk)
  fb(chunk)
  local ra, ta, tb = {}, {}, {}
  for i = 1, PAIRS do
    local a, b
    if i % 2 == 1 then a = fa(chunk); b = fb(chunk) else b = fb(chunk); a = fa(chunk) end
    ra[i], ta[i], tb[i] = a / b, a / chunk * 1e9, b / chunk * 1e9
  end
  return median(ra), median(ta), median(tb)
end

local VALUE = "0123456789abcdefghijklmnopqrstu" -- 31 bytes
local MASK = 1023
local KEYS = {}
for i = 1, MASK + 1 do KEYS[i] = "user:" .. i end

print(("zeltkv %s on %s, %d iterations, best of %d runs, os.clock (CPU time)"):format(
  zeltkv.version, _VERSION, N, RUNS))

---------------------------------------------------------------------------
-- 1. Operations next to a Lua table
---------------------------------------------------------------------------
local results = {}
if want("1") then
  local kv = zeltkv.memory()
  local data, counters, locks, rmw = kv:namespace("data"), kv:namespace("counters"),
    kv:namespace("locks"), kv:namespace("rmw")
  local tdata, tcounters, tlocks, trmw = {}, {}, {}, {}
  for i = 1, MASK + 1 do
    data:set(KEYS[i], VALUE)
    tdata[KEYS[i]] = VALUE
  end

  local function z_rmw(_, k)
    local v = rmw:get(k) or 0
    rmw:set(k, v + 1)
  end
  local function t_rmw(t, k)
    local v = t[k] or 0
    t[k] = v + 1
  end

  local cases = {
    { "get", "<= 2.5x table",
      function(n)
        local s, ks, t0 = data, KEYS, clock()
        for i = 1, n do local v = s:get(ks[(i & MASK) + 1]) end
        return clock() - t0
      end,
      function(n)
        local t, ks, t0 = tdata, KEYS, clock()
        for i = 1, n do local v = t[ks[(i & MASK) + 1]] end
        return clock() - t0
      end },
    { "set", "",
      function(n)
        local s, ks, v, t0 = data, KEYS, VALUE, clock()
        for i = 1, n do s:set(ks[(i & MASK) + 1], v) end
        return clock() - t0
      end,
      function(n)
        local t, ks, v, t0 = tdata, KEYS, VALUE, clock()
        for i = 1, n do t[ks[(i & MASK) + 1]] = v end
        return clock() - t0
      end },
    { "incr", "",
      function(n)
        local s, ks, t0 = counters, KEYS, clock()
        for i = 1, n do local v = s:incr(ks[(i & MASK) + 1]) end
        return clock() - t0
      end,
      function(n)
        local t, ks, t0 = tcounters, KEYS, clock()
        for i = 1, n do
          local k = ks[(i & MASK) + 1]
          local v = (t[k] or 0) + 1
          t[k] = v
        end
        return clock() - t0
      end },
    { "setnx", "",
      function(n)
        local s, ks, t0 = locks, KEYS, clock()
        for i = 1, n do local won = s:setnx(ks[(i & MASK) + 1], true) end
        return clock() - t0
      end,
      function(n)
        local t, ks, t0 = tlocks, KEYS, clock()
        for i = 1, n do
          local k = ks[(i & MASK) + 1]
          local won = t[k] == nil
          if won then t[k] = true end
        end
        return clock() - t0
      end },
    { "atomic get+set", "",
      function(n)
        local d, f, ks, t0 = kv, z_rmw, KEYS, clock()
        for i = 1, n do d:atomic(f, ks[(i & MASK) + 1]) end
        return clock() - t0
      end,
      function(n)
        local t, f, ks, t0 = trmw, t_rmw, KEYS, clock()
        for i = 1, n do f(t, ks[(i & MASK) + 1]) end
        return clock() - t0
      end },
  }

  local rows = { { "operation", "zeltkv ns/op", "table ns/op", "ratio", "target" } }
  for _, c in ipairs(cases) do
    local z, t = best_pair(c[3], c[4], N)
    results[c[1]] = z
    rows[#rows + 1] = { c[1], fmt_ns(z), fmt_ns(t), ("%.2fx"):format(z / t), c[2] }
  end
  local empty = best(function(n)
    local ks, t0 = KEYS, clock()
    for i = 1, n do local k = ks[(i & MASK) + 1] end
    return clock() - t0
  end, N)

  print()
  print("1. operations (1024 keys, 31-byte string values; the loop itself is in both columns)")
  print_table(rows)
  print(("  empty loop with the key lookup: %s ns/op; setnx mostly finds the key held"):format(
    fmt_ns(empty)))
  kv:close()
end
collectgarbage("collect")

---------------------------------------------------------------------------
-- 1b. get and set next to the floor of any C-function store (bench/floor.c)
---------------------------------------------------------------------------
if want("1b") then
  local path = os.getenv("ZELTKV_FLOOR")
  local open = path and package.loadlib(path, "luaopen_zkvfloor")
  if not open then
    print()
    print("1b. (the C-function floor was not built: make bench builds it; ZELTKV_FLOOR=path)")
  else
    local floor = open().new()
    local kv = zeltkv.memory()
    local s = kv:namespace("data")
    for i = 1, MASK + 1 do s:set(KEYS[i], VALUE) end
    floor:set(KEYS[1], VALUE)
    local function get_loop(st)
      return function(n)
        local ks, t0 = KEYS, clock()
        for i = 1, n do local v = st:get(ks[(i & MASK) + 1]) end
        return clock() - t0
      end
    end
    local function set_loop(st)
      return function(n)
        local ks, v, t0 = KEYS, VALUE, clock()
        for i = 1, n do st:set(ks[(i & MASK) + 1], v) end
        return clock() - t0
      end
    end
    local rows = { { "operation", "zeltkv ns/op", "floor ns/op", "ratio", "goal" } }
    for _, c in ipairs({ { "get", get_loop, "<= 1.2x" }, { "set", set_loop, "<= 2x" } }) do
      local r, z, f = ratio_pairs(c[2](s), c[2](floor), N)
      rows[#rows + 1] = { c[1], fmt_ns(z), fmt_ns(f), ("%.2fx"):format(r), c[3] }
    end
    -- the same floor with self checked as zeltkv checks it (a metatable upvalue)
    local rg, zg, fg = ratio_pairs(get_loop(s), function(n)
      local st, ks, t0 = floor, KEYS, clock()
      for i = 1, n do local v = st:get_uv(ks[(i & MASK) + 1]) end
      return clock() - t0
    end, N)
    print()
    print("1b. the memory driver next to the floor of any C-function store: a method that checks")
    print("    self and its arguments and returns a fresh copy of a stored 31-byte value, nothing else")
    print(("    (%d turns of %d calls each side in alternation; medians of the turns' ns/op and of"):format(
      PAIRS, math.max(1000, N // 20)))
    print("    the ratios of neighbouring turns)")
    print_table(rows)
    print(("  floor checking self as zeltkv does (a metatable upvalue): get %s ns, zeltkv %s ns, %.2fx"):format(
      fmt_ns(fg), fmt_ns(zg), rg))
    kv:close()
  end
end
collectgarbage("collect")

---------------------------------------------------------------------------
-- 2. Bytes per entry, as resident memory, one process per measurement
---------------------------------------------------------------------------
if want("2") then
  local ENTRIES = 500000
  local rows = { { "store", "RSS growth", "bytes/entry", "engine bytes/entry", "target" } }
  local labels = {
    zeltkv = "zeltkv memory driver",
    table = "Lua table, one shared value string",
    ["table-copies"] = "Lua table, a string per entry",
  }
  for _, kind in ipairs({ "zeltkv", "table", "table-copies" }) do
    local cmd = ("%s %s %s %d 2>&1"):format(shq(LUA), shq(HERE .. "/rss.lua"), kind, ENTRIES)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    p:close()
    local k, n, before, after, engine = out:match("(%S+) (%d+) (%d+) (%d+) (%d+)")
    if k then
      local grown = (tonumber(after) - tonumber(before)) * 1024
      rows[#rows + 1] = { labels[kind], ("%.1f MiB"):format(grown / 1048576),
        ("%.1f"):format(grown / n),
        kind == "zeltkv" and ("%.1f"):format(tonumber(engine) / n) or "",
        kind == "zeltkv" and "<= 64" or "" }
    else
      rows[#rows + 1] = { labels[kind], "failed: " .. out:gsub("%s+$", ""):gsub("\n", " | "),
        "", "", "" }
    end
  end
  print()
  print(("2. memory for %d entries of (\"user:N\", a 31-byte string), VmRSS after - before"):format(
    ENTRIES))
  print_table(rows)
end
collectgarbage("collect")

---------------------------------------------------------------------------
-- 3. Longest lock hold while 1M expired keys are swept
---------------------------------------------------------------------------
if want("3") then
  local M = 1000000
  local GC_INTERVAL = 0.01
  local kv = zeltkv.memory({ gc_interval = GC_INTERVAL })
  local probe = kv:namespace("probe")
  probe:set("hits", 0)
  local base = kv:stats().keys
  local s = kv:namespace("sweep")
  local t0 = clock()
  for i = 1, M do s:set(i, VALUE, 60) end
  local insert_s = clock() - t0
  local before = kv:stats()

  -- Every key expires at once; ordinary operations drive the incremental sweep.
  -- The clock also moves on by gc_interval per 100 operations, so an engine that starts
  -- a sweep step only once gc_interval has passed gets its turns without sleeping.
  local offset = 120000
  zeltkv._set_clock_offset(offset)
  local ops, done, st, longest = 0, false, nil, 0
  local LIMIT_S = 60
  t0 = clock()
  while clock() - t0 < LIMIT_S do
    for _ = 1, 50 do
      local c0 = clock()
      probe:incr("hits")
      local c1 = clock()
      local v = probe:get("hits")
      local c2 = clock()
      if c1 - c0 > longest then longest = c1 - c0 end
      if c2 - c1 > longest then longest = c2 - c1 end
    end
    ops = ops + 100
    st = kv:stats()
    if st.keys <= base then done = true break end
    offset = offset + math.floor(GC_INTERVAL * 1000)
    zeltkv._set_clock_offset(offset)
  end
  local sweep_s = clock() - t0
  zeltkv._set_clock_offset(0)

  print()
  print(("3. sweep of %d expired keys (memory driver, gc_interval %g s)"):format(M, GC_INTERVAL))
  print_table({
    { "figure", "measured", "target" },
    { "insert 1M keys with ttl", ("%.2f s (%.0f ns/key)"):format(insert_s, insert_s / M * 1e9), "" },
    { "max_lock_ns after the insert", ("%.3f ms"):format(before.max_lock_ns / 1e6), "<= ~1 ms" },
    { "max_lock_ns after the sweep", ("%.3f ms"):format(st.max_lock_ns / 1e6), "<= ~1 ms" },
    { "longest operation during the sweep", ("%.3f ms"):format(longest * 1e3), "" },
    { "sweep, from expiry to all freed", done and ("%.3f s"):format(sweep_s)
        or ("not finished after %d s"):format(LIMIT_S), "" },
    { "operations driven meanwhile", tostring(ops), "" },
    { "keys freed (expired_freed)", tostring(st.expired_freed - before.expired_freed), tostring(M) },
    { "sweeps completed (gc_runs)", tostring(st.gc_runs - before.gc_runs), "" },
    { "keys left", tostring(st.keys - base), "0" },
  })
  kv:close()
end
collectgarbage("collect")

---------------------------------------------------------------------------
-- 4. Namespace-wide operations: cost follows the namespace, not the store
---------------------------------------------------------------------------
if want("4") then
  local NS_KEYS = 100
  local nskeys = {}
  for i = 1, NS_KEYS do nskeys[i] = "item:" .. i end

  -- measure(total): a store of `total` keys, 100 of them in namespace
  -- tenant/42, inserted spread among the others.
  local function measure(total)
    local kv = zeltkv.memory({ gc_interval = 0 })
    local bulk = kv:namespace("bulk")
    local ns = kv:namespace("tenant"):namespace("42")
    local others = total - NS_KEYS
    local every = others // NS_KEYS
    local j = 0
    for i = 1, others do
      bulk:set(i, i)
      if i % every == 0 and j < NS_KEYS then j = j + 1; ns:set(nskeys[j], j) end
    end
    while j < NS_KEYS do j = j + 1; ns:set(nskeys[j], j) end

    local walk = best(function(n)
      local t0, c = clock(), 0
      for _ = 1, n do for _ in ns:keys() do c = c + 1 end end
      assert(c == n * NS_KEYS)
      return clock() - t0
    end, 2000)
    local count = best(function(n)
      local t0 = clock()
      for _ = 1, n do local c = ns:count() end
      return clock() - t0
    end, 20000)
    local clear = best(function(n)
      local t0 = clock()
      for _ = 1, n do
        ns:clear()
        for i = 1, NS_KEYS do ns:set(nskeys[i], i) end
      end
      return clock() - t0
    end, 500)
    local keys = kv:stats().keys
    kv:close()
    return { walk = walk, count = count, clear = clear, keys = keys }
  end

  local big = measure(1000000)
  collectgarbage("collect")
  local small = measure(1000)
  print()
  print(("4. a %d-key namespace in a store of %d keys vs one of %d keys (ns per call)"):format(
    NS_KEYS, big.keys, small.keys))
  print_table({
    { "operation", "1M-key store", "1k-key store", "ratio", "target" },
    { "keys(): walk all 100", fmt_ns(big.walk), fmt_ns(small.walk),
      ("%.2fx"):format(big.walk / small.walk), "~1x" },
    { "count()", fmt_ns(big.count), fmt_ns(small.count),
      ("%.2fx"):format(big.count / small.count), "~1x" },
    { "clear() + 100 sets", fmt_ns(big.clear), fmt_ns(small.clear),
      ("%.2fx"):format(big.clear / small.clear), "~1x" },
  })
end
collectgarbage("collect")

---------------------------------------------------------------------------
-- 5. Redis on loopback
---------------------------------------------------------------------------
if want("5") and want("1") and os.getenv("ZELTKV_BENCH_REDIS") ~= "0" then
  local p = assert(io.popen("bash " .. shq(HERE .. "/redis.sh") .. " --raw 2>&1", "r"))
  local out = p:read("a")
  p:close()
  print()
  local redis = {}
  for op, one, piped in out:gmatch("(%a+) (%S+) (%S+)") do
    redis[op] = { tonumber(one), tonumber(piped) }
  end
  if not redis.get then
    print("5. Redis: " .. out:gsub("%s+$", ""))
  else
    print("5. Redis 1 client on 127.0.0.1 (redis-benchmark -c 1), ratio = redis / zeltkv")
    local rows = { { "operation", "zeltkv ns/op", "redis ns/op", "ratio", "redis -P 64",
      "ratio", "target" } }
    for _, op in ipairs({ "get", "set", "incr" }) do
      local z, r = results[op], redis[op] or {}
      local one, piped = r[1], r[2]
      rows[#rows + 1] = { op, fmt_ns(z),
        one and fmt_ns(one) or "n/a", one and ("%.0fx"):format(one / z) or "",
        piped and fmt_ns(piped) or "n/a", piped and ("%.1fx"):format(piped / z) or "",
        ">= 100x (1 client)" }
    end
    print_table(rows)
  end
end
