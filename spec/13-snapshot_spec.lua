-- spec/13-snapshot_spec.lua: kv:dump(path) and kv:load(path) (docs/snapshots.md), on the
-- driver under test (ZELTKV_DRIVER, spec/helpers.lua H.driver).
--
-- The round trip holds 20,000 keys of every kind in make test (a few seconds on each
-- driver and interpreter; on Redis 5,000); ZELTKV_SNAPSHOT_KEYS sets the count, e.g.
-- ZELTKV_SNAPSHOT_KEYS=1000000 (what make spec LONG=1 gives) for the long run
-- docs/snapshots.md quotes (the shared driver's segment is then sized for the keys).
local zeltkv = require("zeltkv")
local H = require("helpers")

local DIR = assert(io.popen("mktemp -d /tmp/zkv-snap-XXXXXX")):read("*l")
teardown(function() os.execute("rm -rf '" .. DIR .. "'") end)

local N = tonumber(os.getenv("ZELTKV_SNAPSHOT_KEYS") or "") or (H.is_redis and 5000) or 20000
-- a shared segment for N of these keys (about 320 bytes each with the index; 64 MiB,
-- the default, holds 200,000)
local SEGMENT = H.KIND == "shared" and N > 150000 and { size = ("%dm"):format(math.ceil(N * 400 / 1048576) + 16) } or nil
local INT53 = 9007199254740992
local has_int = math.type ~= nil   -- Lua 5.3+: 64-bit integers

local function path(tag) return DIR .. "/" .. tag .. ".jsonl" end

local function write(p, text)
  local f = assert(io.open(p, "wb"))
  f:write(text)
  f:close()
end

-- a deterministic generator (the same on every Lua): xorshift over doubles
local seed = 88172645
local function rnd(n)   -- 0 .. n-1
  seed = (seed * 1103515245 + 12345) % 2147483648
  return math.floor(seed / 2147483648 * n)
end

local function bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(rnd(256)) end
  return table.concat(t)
end

-- random byte strings made once (making a million is most of the test's time)
local POOL = {}
for i = 1, 4096 do POOL[i] = bytes(rnd(40)) end

local function value(i)
  local k = i % 9
  if k == 0 then return POOL[i % 4096 + 1] .. i end                -- any bytes, NUL too
  if k == 1 then return ("text %d é"):format(i) end
  if k == 2 then
    if has_int then
      local ints = { math.maxinteger, math.mininteger, 0, -1 }
      if i % 97 == 2 then return ints[i % 4 + 1] end
    end
    return rnd(2000000) - 1000000
  end
  if k == 3 then
    local f = { 0.1, -0.0, 1e300, -2.5e-300, 1 / 3, 123456.789 }
    return f[i % 6 + 1] * (i % 2 == 0 and 1 or -1)
  end
  if k == 4 then return i % 2 == 0 end
  if k == 5 then
    local b = POOL[i % 4096 + 1]:gsub("%z", "\1")   -- a table's strings hold no NUL
    return { name = b, n = i % 1000, tags = { "a", b:sub(1, 3) }, ok = true }
  end
  if k == 6 then return { 1, 2.5, { deep = { INT53 } }, "x" } end
  if k == 7 then return {} end
  return ("%d"):format(i)
end

local function equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then
    if a ~= a and b ~= b then return true end
    if a == 0 and b == 0 and type(a) == "number" then return 1 / a == 1 / b end
    if has_int and type(a) == "number" and math.type(a) ~= math.type(b) and not (a == b) then return false end
    return a == b
  end
  for k, v in pairs(a) do if not equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

describe("kv:dump / kv:load", function()
  after_each(H.reset_clock)

  it(("round-trip %d keys of every kind: values, binary keys and names, ttls within a second"):format(N),
  function()
    local kv = H.driver(SEGMENT)
    local names = { "plain", "a/b%c", "bin\255\0name" }
    local stores = { kv:namespace(names[1]), kv:namespace(names[2]):namespace("child"),
                     kv:namespace(names[3]) }
    local keys, vals, ttls = {}, {}, {}
    for i = 1, N do
      local key = (i % 5 == 0) and ("\0k\255" .. i) or ("k" .. i)
      local v = value(i)
      local ttl = (i % 4 == 0) and (100 + i % 100000) or nil
      stores[i % 3 + 1]:set(key, v, ttl)
      keys[i], vals[i], ttls[i] = key, v, ttl
    end
    local p = path("rt")
    local n, info = kv:dump(p)
    assert.are.equal(N, n)
    if H.KIND ~= "redis" then
      assert.is_number(info.lock_ms)
      assert.is_true(info.bytes > 0)
    end
    local fresh = H.driver(SEGMENT)
    local loaded, linfo = fresh:load(p)
    assert.are.equal(N, loaded)
    assert.are.equal(0, linfo.expired)
    local fs = { fresh:namespace(names[1]), fresh:namespace(names[2]):namespace("child"),
                 fresh:namespace(names[3]) }
    local bad, badttl = 0, 0
    for i = 1, N do
      local s = fs[i % 3 + 1]
      local got = s:get(keys[i])
      if not equal(vals[i], got) then
        bad = bad + 1
        if bad < 5 then print("differs", i, keys[i], tostring(vals[i]), tostring(got)) end
      end
      -- the ttl left in the loaded store, next to the one left in the dumped store now
      local t, want = s:ttl(keys[i]), stores[i % 3 + 1]:ttl(keys[i])
      if ttls[i] then
        if not t or not want or math.abs(t - want) > 1 then badttl = badttl + 1 end
      elseif t ~= math.huge or want ~= math.huge then
        badttl = badttl + 1
      end
    end
    assert.are.equal(0, bad)
    assert.are.equal(0, badttl)
    for i = 1, 3 do assert.are.equal(stores[i]:count(), fs[i]:count()) end
    kv:close()
    fresh:close()
    os.remove(p)
  end)

  it("keys already expired at load time are skipped; the others keep their absolute expiry", function()
    if H.is_redis then return pending("the clock offset moves this process's clock only") end
    local kv = H.driver()
    local s = kv:namespace("t")
    s:set("short", 1, 2)
    s:set("long", 2, 100)
    s:set("never", 3)
    local p = path("exp")
    kv:dump(p)
    zeltkv._set_clock_offset(10000)   -- 10 s later
    local fresh = H.driver()
    local n, info = fresh:load(p)
    assert.are.equal(2, n)
    assert.are.equal(1, info.expired)
    local f = fresh:namespace("t")
    assert.is_nil(f:get("short"))
    assert.is_true(f:ttl("long") > 89 and f:ttl("long") <= 90)
    assert.are.equal(math.huge, f:ttl("never"))
  end)

  it("a bad line fails the load, names the line and changes nothing", function()
    local kv = H.driver()
    local s = kv:namespace("n")
    s:set("k", "old")
    local before = H.snapshot({ s }, kv)
    local p = path("bad")
    write(p, '{"format":"zeltkv-dump","version":1,"time":1}\n' ..
             '{"ns":["n"],"key":"k","value":"new"}\n' ..
             '{"ns":["n"],"key":"j","value":"new"}\n' ..
             '{"ns":["n"],"key":"x","value":[1,null]}\n{"count":3}\n')
    local err = H.assert_error_code("INVALID_VALUE", kv.load, kv, p)
    assert.matches("line 4: value: null cannot be stored", err.message, nil, true)
    H.assert_unchanged(before)
    write(p, '{"format":"zeltkv-dump","version":1,"time":1}\n{"ns":["n"],"key":"k","value":"new"}\n')
    err = H.assert_error_code("INVALID_VALUE", kv.load, kv, p)
    assert.matches("line 3: the file ends without its closing", err.message, nil, true)
    write(p, "hello\n")
    err = H.assert_error_code("INVALID_VALUE", kv.load, kv, p)
    assert.matches("line 1: not a zeltkv dump", err.message, nil, true)
    H.assert_unchanged(before)
    err = H.assert_error_code("STORE_OPERATION_FAILED", kv.load, kv, DIR .. "/missing")
    assert.matches("missing: No such file", err.message, nil, true)
    H.assert_error_code("INVALID_VALUE", kv.load, kv, 42)
    H.assert_error_code("INVALID_VALUE", kv.dump, kv, "")
    -- a name with a NUL byte: the system would see only what comes before it (the dump went
    -- to DIR .. "/cut", a file nobody named)
    err = H.assert_error_code("INVALID_VALUE", kv.dump, kv, DIR .. "/cut\0.jsonl")
    assert.matches("NUL", err.message, nil, true)
    assert.is_nil(io.open(DIR .. "/cut", "rb"))
    H.assert_error_code("INVALID_VALUE", kv.load, kv, p .. "\0x")
    H.assert_unchanged(before)
    H.assert_error_code("INVALID_VALUE", kv.dump, kv, p, { progres = true })
    H.assert_error_code("INVALID_VALUE", kv.dump, kv, p, { progress = 1 })
    H.assert_arg_error(kv.dump, "x", p)
  end)

  it("a store too small for the dump: the load fails as full and changes nothing", function()
    if H.is_redis then return pending("a Redis server's memory limit is its own setting") end
    local src = zeltkv.memory()
    local s = src:namespace("n")
    for i = 1, 20000 do s:set("k" .. i, string.rep("v", 200)) end
    local p = path("full")
    src:dump(p)
    local name = H.segment_name("full")
    local dst = H.KIND == "shared" and zeltkv.shared(name, { size = "2m" })
                or zeltkv.memory({ max_bytes = 2 * 1024 * 1024 })
    finally(function()   -- the segment was left in /dev/shm after every run
      dst:close()
      if H.KIND == "shared" then zeltkv.unlink(name) end
    end)
    local d = dst:namespace("n")
    d:set("k1", "mine")
    d:set("other", "mine", 500)
    local before = H.snapshot({ d }, dst)
    local err = H.assert_error_code("STORE_OPERATION_FAILED", dst.load, dst, p)
    assert.are.equal("full", err.reason)
    assert.matches("line %d+: the store is full", err.message)
    H.assert_unchanged(before)
    assert.are.equal(2, dst:stats().keys)
    assert.are.equal("mine", d:get("k1"))
  end)

  it("dump inside atomic is refused; so is load", function()
    local kv = H.driver()
    local p = path("atomic")
    local err = H.catch(kv.atomic, kv, function() kv:dump(p) end)
    assert.are.equal("STORE_OPERATION_FAILED", err.code)
    err = H.catch(kv.atomic, kv, function() kv:load(p) end)
    assert.are.equal("STORE_OPERATION_FAILED", err.code)
  end)

  it("the dump file's reader and writer refuse positions and times that are not whole numbers", function()
    local core = require("zeltkv.core")
    local kv = zeltkv.memory()
    kv:namespace("a"):set("k", 1)
    local p = path("whole")
    kv:dump(p)
    local r = core._dump_reader(p)
    for _, bad in ipairs({ 0 / 0, -1, 1.5, 1e300, -1e300 }) do
      H.assert_error_code("INVALID_VALUE", r.seek, r, bad, 0)
      H.assert_error_code("INVALID_VALUE", r.seek, r, 1, bad)
    end
    r:close()
    for _, bad in ipairs({ 0 / 0, 0.5, 1e300 }) do
      H.assert_error_code("INVALID_VALUE", core._dump_writer, path("w"), bad)
    end
  end)

  it("dump to and load from an open file", function()
    local kv = H.driver()
    kv:namespace("a"):set("k", { 1, 2 })
    local p = path("file")
    local f = assert(io.open(p, "w"))
    f:write("")   -- Lua's own writes and the dump's share the file's position
    assert.are.equal(1, kv:dump(f))
    f:close()
    local fresh = H.driver()
    f = assert(io.open(p, "r"))
    assert.are.equal(1, fresh:load(f))
    f:close()
    assert.are.same({ 1, 2 }, fresh:namespace("a"):get("k"))
    H.assert_arg_error(kv.dump, kv, f)   -- a closed file
  end)

  it("a dump shows one instant while another process writes", function()
    if H.KIND ~= "shared" and H.KIND ~= "memory" then return pending("memory and shared drivers") end
    -- the writer moves units between two keys in atomic(); their sum stays 1000
    local name = H.segment_name("instant")
    local kv = zeltkv.shared(name)
    local s = kv:namespace("n")
    s:set("x", 1000)
    s:set("y", 0)
    for i = 1, 2000 do s:set("fill" .. i, string.rep("f", 50)) end
    local child = ([[
      package.path = %q; package.cpath = %q
      local z = require("zeltkv")
      local s = z.shared(%q):namespace("n")
      local t = os.time() + 60
      while os.time() < t do
        s:atomic(function() s:incr("x", -1); s:incr("y", 1) end)
        if s:get("stop") then break end
      end
    ]]):format(package.path, package.cpath, name)
    local cf = DIR .. "/child.lua"
    write(cf, child)
    local proc = assert(io.popen(H.interpreter() .. " " .. cf .. " 2>&1", "r"))
    local p = path("instant")
    local deadline = os.time() + 20
    while s:get("y") == 0 and os.time() < deadline do end   -- the writer has started
    local y0 = s:get("y")
    for _ = 1, 30 do
      kv:dump(p)
      local fresh = zeltkv.memory()
      fresh:load(p)
      local f = fresh:namespace("n")
      assert.are.equal(1000, f:get("x") + f:get("y"))
      fresh:close()
    end
    s:set("stop", true)
    proc:read("*a")
    proc:close()
    assert.is_true(y0 > 0 and s:get("y") > y0, "the writer wrote during the dumps")
    kv:close()
    zeltkv.unlink(name)
  end)

  it("draws a progress bar on stderr when it is a terminal, and only then", function()
    if H.is_redis or not os.execute("command -v script >/dev/null 2>&1") then
      return pending("needs script(1) for a terminal")
    end
    local prog = DIR .. "/bar.lua"
    write(prog, ([[
      package.path = %q; package.cpath = %q
      local z = require("zeltkv")
      local kv = z.memory()
      local s = kv:namespace("n")
      for i = 1, 20000 do s:set("k" .. i, i) end
      kv:dump(%q)
      z.memory():load(%q)
      io.stderr:write("MARK")
      kv:dump(%q, { progress = false })
      io.stdout:write("done\n")
    ]]):format(package.path, package.cpath, path("bar"), path("bar"), path("bar2")))
    local env = "ZELTKV_PROGRESS_DELAY=0 "
    -- under a terminal (script gives the command one)
    local f = assert(io.popen("script -qec '" .. env .. H.interpreter() .. " " .. prog .. "' /dev/null"))
    local tty = f:read("*a")
    f:close()
    assert.matches("dump %[[#.]+%] +%d+%%", tty)
    assert.matches("load %(checking%) %[", tty)
    assert.matches("load %[[#.]+%] 100%%", tty)
    assert.matches("done", tty)
    assert.is_nil(tty:match("MARK.*dump %["), "no bar with progress = false")
    -- stderr to a file: no bar
    f = assert(io.popen(env .. H.interpreter() .. " " .. prog .. " 2>&1"))
    local plain = f:read("*a")
    f:close()
    assert.are.equal("MARKdone\n", plain)
  end)
end)
