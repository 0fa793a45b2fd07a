-- spec/segment_life_spec.lua: a shared segment's life seen from Lua (API.md: driver options
-- size, create, dir; zeltkv.unlink): the room a segment needs is reserved when it is made,
-- and every failure to open one names the path and what was missing.
--
-- Every segment here lives in a fresh temporary directory given as the `dir` option, so
-- nothing reaches /dev/shm; the directory is removed at the end.

local H = require("helpers")
local zeltkv = require("zeltkv")

local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local s = p:read("*a")
  p:close()
  return (s:gsub("%s+$", ""))
end

local DIR = capture("mktemp -d \"${TMPDIR:-/tmp}/zkv-segspec-XXXXXX\"")
assert(DIR ~= "", "mktemp -d failed")
local seq = 0
local function fresh(tag)
  seq = seq + 1
  return "segspec-" .. tag .. "-" .. seq
end

-- bytes free in the filesystem of DIR
local function free_bytes(dir)
  local kb = capture("df -Pk " .. dir .. " | awk 'NR==2 {print $4}'")
  return assert(tonumber(kb), "df gave no number") * 1024
end

local function files_in(dir)
  local out = capture("ls -A " .. dir)
  local t = {}
  for f in out:gmatch("[^\n]+") do t[#t + 1] = f end
  return t
end

teardown(function() os.execute("rm -rf " .. DIR) end)

describe("segment room", function()
  it("refuses a size its filesystem cannot hold, naming the path and the free room", function()
    local name = fresh("big")
    local want = free_bytes(DIR) + 2 ^ 30
    local err = H.assert_error_code("STORE_OPERATION_FAILED", zeltkv.shared, name,
                                    { dir = DIR, size = want })
    assert.truthy(err.message:find(DIR .. "/zeltkv-" .. name, 1, true), err.message)
    assert.truthy(err.message:find("free", 1, true), err.message)
    assert.are.same({}, files_in(DIR))
  end)

  it("refuses a size over the largest segment as a bad value", function()
    local err = H.assert_error_code("INVALID_VALUE", zeltkv.shared, fresh("huge"),
                                    { dir = DIR, size = "2000g" })
    assert.truthy(err.message:find("largest", 1, true), err.message)
    assert.are.same({}, files_in(DIR))
  end)

  it("create = false opens only an existing segment", function()
    local name = fresh("nocreate")
    local err = H.assert_error_code("STORE_OPERATION_FAILED", zeltkv.shared, name,
                                    { dir = DIR, create = false })
    assert.truthy(err.message:find(name, 1, true), err.message)
    assert.are.same({}, files_in(DIR))
    local kv = zeltkv.shared(name, { dir = DIR, size = "1m" })
    kv:namespace("a"):set("k", "v")
    kv:close()
    local again = zeltkv.shared(name, { dir = DIR, create = false })
    assert.are.equal("v", again:namespace("a"):get("k"))
    again:close()
    assert.is_true(zeltkv.unlink(name, { dir = DIR }))
    assert.is_false(zeltkv.unlink(name, { dir = DIR }))
  end)

  it("dir places the segment file in that directory", function()
    local name = fresh("dir")
    local kv = zeltkv.shared(name, { dir = DIR, size = "1m" })
    kv:close()
    assert.are.same({ "zeltkv-" .. name }, files_in(DIR))
    assert.is_true(zeltkv.unlink(name, { dir = DIR }))
    local err = H.assert_error_code("STORE_OPERATION_FAILED", zeltkv.shared, name,
                                    { dir = DIR .. "/missing" })
    assert.truthy(err.message:find(DIR .. "/missing", 1, true), err.message)
  end)

  it("rejects bad dir and create values, and names them", function()
    for _, bad in ipairs({ { dir = "" }, { dir = 5 }, { dir = "a\0b" }, { create = "no" },
                           { create = 0 } }) do
      local err = H.assert_error_code("INVALID_VALUE", zeltkv.shared, fresh("bad"), bad)
      assert.truthy(err.message:find(next(bad), 1, true), err.message)
    end
    H.assert_error_code("INVALID_VALUE", zeltkv.memory, { dir = DIR })
    H.assert_error_code("INVALID_VALUE", zeltkv.memory, { create = false })
    assert.are.same({}, files_in(DIR))
  end)
end)

-- Issue 13.4: size and evict given for an existing segment are checked, a larger size grows
-- it in place; stats() names the segment.  Issue 13.6: the counters.
describe("an existing segment", function()
  it("grows with a larger size, keeps its keys, and refuses a smaller one or another evict",
     function()
    local name = fresh("grow")
    local kv = zeltkv.shared(name, { dir = DIR, size = "256k" })
    local s = kv:namespace("a")
    for i = 1, 100 do s:set("k" .. i, string.rep("x", 1000)) end
    local st = kv:stats()
    assert.are.equal(256 * 1024, st.size)
    assert.are.equal(name, st.name)
    assert.are.equal(DIR .. "/zeltkv-" .. name, st.path)
    assert.are.equal("none", st.evict)
    local big = zeltkv.shared(name, { dir = DIR, size = "2m" })
    assert.are.equal(2 * 1024 * 1024, kv:stats().size)
    for i = 101, 1500 do s:set("k" .. i, string.rep("x", 1000)) end
    assert.are.equal(1500, big:stats().keys)
    local err = H.assert_error_code("INVALID_VALUE", zeltkv.shared, name,
                                    { dir = DIR, size = "1m" })
    assert.truthy(err.message:find("never shrinks", 1, true), err.message)
    err = H.assert_error_code("INVALID_VALUE", zeltkv.shared, name, { dir = DIR, evict = "lru" })
    assert.truthy(err.message:find('evict "none"', 1, true), err.message)
    assert.are.equal(2 * 1024 * 1024, zeltkv.shared(name, { dir = DIR }):stats().size)
    big:close()
    kv:close()
    assert.is_true(zeltkv.unlink(name, { dir = DIR }))
  end)

  it("counts gets, hits, misses, sets, deletes, commits and rollbacks", function()
    for _, kv in ipairs({ zeltkv.memory(), zeltkv.shared(fresh("ctr"), { dir = DIR, size = "1m" }) }) do
      local s = kv:namespace("a")
      s:set("k", 1)
      s:incr("n", 1)
      s:get("k"); s:get("k"); s:get("absent")
      s:del("k"); s:del("k")
      kv:atomic(function() s:set("t", 1) end)
      pcall(kv.atomic, kv, function() s:set("u", 1); error("no") end)
      local st = kv:stats()
      assert.are.same({ 3, 2, 1, 4, 1, 1, 1 },
                      { st.gets, st.hits, st.misses, st.sets, st.deletes, st.commits, st.rollbacks })
      assert.are.equal(0, st.lock_waits)
      if st.name then
        kv:close()
        zeltkv.unlink(st.name, { dir = DIR })
      end
    end
  end)
end)

-- Issue 9.6: the keys() walk resumes after the key it returned last, though that key was
-- deleted and its block merged into free room before it, and the room reused.
describe("keys() across its batches", function()
  local function run(kv)
    local a, b = kv:namespace("A"), kv:namespace("B")
    local v = string.rep("v", 300)
    for i = 1, 256 do a:set("k" .. i, v) end
    b:set("b1", v)
    for i = 257, 300 do a:set("k" .. i, v) end
    local it = a:keys()
    local first = {}
    for _ = 1, 256 do first[#first + 1] = it() end
    assert.are.equal("k256", first[256])
    a:del("k255"); a:del("k256"); a:del("k257")
    b:set("b2", v)
    local rest = {}
    for k in it do rest[#rest + 1] = k end
    local want = {}
    for i = 258, 300 do want[#want + 1] = "k" .. i end
    assert.are.same(want, rest)
  end

  it("on the memory driver", function() run(zeltkv.memory()) end)

  it("on the shared driver", function()
    local name = fresh("keys")
    local kv = zeltkv.shared(name, { dir = DIR, size = "4m" })
    run(kv)
    kv:close()
    zeltkv.unlink(name, { dir = DIR })
  end)
end)
