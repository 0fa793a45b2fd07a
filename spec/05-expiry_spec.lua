-- spec/05-expiry_spec.lua: ttls and expiry (API.md "Store", ttl rules, kv:gc, gc_interval).
-- Time is moved with the test hook zeltkv._set_clock_offset(ms), never by sleeping (on
-- redis, whose clock cannot move, H.advance sleeps through a 2.5x faster clock: helpers.lua).

local H = require("helpers")
local zeltkv = require("zeltkv")

local advance = H.advance

describe("expiry", function()
  local kv, s

  before_each(function()
    kv = H.timed_driver()
    s = kv:namespace("exp")
    H.reset_clock()
  end)

  after_each(function()
    H.reset_clock()
    kv:close()
  end)

  it("has a test clock hook", function()
    assert.are.equal("function", type(zeltkv._set_clock_offset))
  end)

  -------------------------------------------------------------------------
  describe("an expired key", function()
    it("is absent for every method at once", function()
      for _, k in ipairs({ "get", "has", "ttl", "expire", "incr", "setnx", "del", "walk" }) do
        s:set(k, "old value", 1)
      end
      s:set("live", "stays")
      s:namespace("child"):set("c", 1, 1)
      advance(1500)
      assert.is_nil(s:get("get"))
      assert.is_false(s:has("has"))
      assert.is_nil(s:ttl("ttl"))
      assert.is_false(s:expire("expire", 100))
      assert.is_false(s:has("expire"), "expire must not revive an expired key")
      assert.are.equal(5, s:incr("incr", 5), "incr must start from nothing")
      assert.is_true(s:setnx("setnx", "new value"))
      assert.are.equal("new value", s:get("setnx"))
      assert.is_false(s:del("del"))
      local seen = {}
      for k in s:keys() do seen[#seen + 1] = k end
      table.sort(seen)
      assert.are.same({ "incr", "live", "setnx" }, seen)
      assert.are.equal(3, s:count())
      assert.is_nil(s:namespace("child"):get("c"))
      assert.are.equal(0, s:namespace("child"):count())
    end)

    it("is not counted by clear() or flush()", function()
      s:set("a", 1, 1)
      s:set("b", 1)
      s:namespace("child"):set("c", 1, 1)
      s:namespace("child"):set("d", 1)
      kv:namespace("other"):set("e", 1, 1)
      kv:namespace("other"):set("f", 1)
      advance(1500)
      assert.are.equal(2, s:clear())
      assert.are.equal(1, kv:flush())
    end)

    H.except("redis", "gc_interval is a memory/shared option")(
      "is absent whether or not its memory was freed (gc_interval = 0)", function()
      local kv0 = zeltkv.memory({ gc_interval = 0 })
      local s0 = kv0:namespace("exp")
      s0:set("k", "v", 1)
      advance(3600 * 1000)
      assert.is_nil(s0:get("k"))
      assert.is_false(s0:has("k"))
      assert.are.equal(0, s0:count())
      kv0:close()
    end)

    H.except("redis", "moves the clock 1000 s")(
      "can be set again, with or without a ttl", function()
      s:set("k", "old", 1)
      advance(1500)
      s:set("k", "new")
      assert.are.equal("new", s:get("k"))
      assert.are.equal(math.huge, s:ttl("k"))
      advance(1000000)
      assert.are.equal("new", s:get("k"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("ttl", function()
    it("is a float > 0 that goes down with the clock", function()
      s:set("k", "v", 10)
      advance(4000)
      local ttl = s:ttl("k")
      if H.has_int then assert.are.equal("float", math.type(ttl)) end
      assert.is_true(ttl > 5.9 - H.ttl_slack() and ttl <= 6.0, tostring(ttl))
      advance(9900)
      ttl = s:ttl("k")
      assert.is_true(ttl > 0 and ttl <= 0.1, tostring(ttl))
      advance(10001)
      assert.is_nil(s:ttl("k"))
    end)

    H.except("redis", "moves the clock 11 days")(
      "is math.huge for a key without ttl, at any time", function()
      s:set("k", "v")
      advance(1e9)
      assert.are.equal(math.huge, s:ttl("k"))
    end)

    -- (on redis the clock is real time, 0.4 ms a test ms: each bound leaves 40 ms or more
    -- of real time to the calls between, a few ms failed them at load 10)
    it("keeps fractions to the millisecond", function()
      s:set("frac", "v", 0.25)
      local ttl = s:ttl("frac")
      assert.is_true(ttl > 0.15 - H.ttl_slack() and ttl <= 0.25, tostring(ttl))
      s:set("ms", "v", 2.5)
      s:set("tiny", "v", 0.001)
      advance(100)
      assert.are.equal("v", s:get("frac"))
      advance(300)
      assert.is_nil(s:get("frac"))
      advance(2250)                        -- 0.25 s left of 2.5 (2 s would be gone, 3 s more)
      ttl = s:ttl("ms")
      assert.is_true(ttl > 0.05 - H.ttl_slack() and ttl <= 0.25, tostring(ttl))
      advance(2510)
      assert.is_nil(s:get("ms"))
      assert.is_nil(s:get("tiny"))
    end)

    H.except("redis", "a millisecond of the server is 2.5 of the scaled clock")(
      "never turns a tiny ttl into \"no expiry\" (set, incr, setnx, expire)", function()
      s:set("set", 1, 0.0001)
      s:incr("incr", 1, 1e-9)
      s:setnx("setnx", 1, { ttl = 0.0004 })
      s:set("expire", 1)
      s:expire("expire", 0.0001)
      s:set("expire2", 1, 100)
      s:expire("expire2", 1e-6)
      for _, k in ipairs({ "set", "incr", "setnx", "expire", "expire2" }) do
        local ttl = s:ttl(k)
        assert.is_true(ttl == nil or (ttl > 0 and ttl <= 0.001), k .. ": ttl " .. tostring(ttl))
      end
      advance(20)
      for _, k in ipairs({ "set", "incr", "setnx", "expire", "expire2" }) do
        assert.is_nil(s:get(k), k .. " did not expire")
      end
    end)

    H.except("redis", "moves the clock 31 years")(
      "accepts a huge finite ttl: the key lives on", function()
      s:set("huge", 1, 1e300)
      s:incr("huge_incr", 1, 1e18)
      if H.has_int then s:set("maxint", 1, math.maxinteger) end
      advance(1e12)                        -- about 31 years later
      assert.are.equal(1, s:get("huge"))
      assert.are.equal(1, s:get("huge_incr"))
      if H.has_int then assert.are.equal(1, s:get("maxint")) end
      local ttl = s:ttl("huge")
      assert.is_true(ttl > 0, tostring(ttl))
    end)

    it("takes { ttl = seconds } like a number", function()
      s:set("k", "v", { ttl = 0.5 })
      assert.is_true(s:ttl("k") <= 0.5)
      advance(250)
      assert.is_true(s:has("k"))
      advance(600)
      assert.is_false(s:has("k"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("set", function()
    it("without a ttl drops the previous ttl", function()
      s:set("k", 1, 1)
      s:set("k", 2)
      assert.are.equal(math.huge, s:ttl("k"))
      advance(5000)
      assert.are.equal(2, s:get("k"))
    end)

    it("with a ttl replaces the previous ttl", function()
      s:set("k", 1, 100)
      s:set("k", 2, 1)
      advance(1500)
      assert.is_nil(s:get("k"))
      s:set("j", 1, 1)
      s:set("j", 2, 100)
      advance(3000)
      assert.are.equal(2, s:get("j"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("expire", function()
    it("shortens a ttl", function()
      s:set("k", 1, 100)
      assert.is_true(s:expire("k", 1))
      advance(1500)
      assert.is_nil(s:get("k"))
    end)

    it("extends a ttl", function()
      s:set("k", 1, 1)
      assert.is_true(s:expire("k", 100))
      advance(1500)
      assert.are.equal(1, s:get("k"))
    end)

    it("gives a key without ttl one", function()
      s:set("k", 1)
      assert.is_true(s:expire("k", 2))
      advance(2500)
      assert.is_false(s:has("k"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("incr", function()
    it("applies its ttl only when it creates the key (a fixed window)", function()
      assert.are.equal(1, s:incr("c", 1, 10))
      advance(5000)
      assert.are.equal(2, s:incr("c", 1, 10))
      local ttl = s:ttl("c")
      assert.is_true(ttl > 4.9 - H.ttl_slack() and ttl <= 5.0, "window extended: ttl " .. tostring(ttl))
      advance(9000)
      assert.are.equal(3, s:incr("c", 1, 10))
      advance(10500)
      assert.is_nil(s:get("c"))
      assert.are.equal(1, s:incr("c", 1, 10))   -- a new window
      ttl = s:ttl("c")
      assert.is_true(ttl > 9.9 - H.ttl_slack() and ttl <= 10, tostring(ttl))
    end)

    it("keeps the key's ttl when it adds to it", function()
      s:set("c", 10, 2)
      advance(1000)
      assert.are.equal(11, s:incr("c"))
      advance(2500)
      assert.is_nil(s:get("c"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("setnx", function()
    it("stores over an expired key and applies its own ttl", function()
      assert.is_true(s:setnx("lock", "a", 1))
      assert.is_false(s:setnx("lock", "b", 1))
      advance(1500)
      assert.is_true(s:setnx("lock", "c", 10))
      assert.are.equal("c", s:get("lock"))
      local ttl = s:ttl("lock")
      assert.is_true(ttl > 9.9 - H.ttl_slack() and ttl <= 10, tostring(ttl))
    end)
  end)

  -------------------------------------------------------------------------
  describe("kv:gc", function()
    H.except("redis", "the server expires keys itself: gc() is 0")(
      "frees the expired keys now and returns how many", function()
      for i = 1, 3 do s:set("e" .. i, i, 1) end
      s:namespace("child"):set("e", 1, 1)
      s:set("live1", 1)
      s:set("live2", 2, 100)
      local before = kv:stats()
      advance(1500)
      assert.are.equal(4, kv:gc())
      assert.are.equal(0, kv:gc())
      local after = kv:stats()
      assert.are.equal(2, after.keys)
      assert.is_true(after.expired_freed >= before.expired_freed + 4)
      assert.is_true(after.bytes_used < before.bytes_used)
      assert.are.equal(1, s:get("live1"))
      assert.are.equal(2, s:get("live2"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("gc_interval", function()
    local N = 100

    local function fill(st)
      for i = 1, N do st:set("e" .. i, string.rep("x", 100), 1) end
      st:set("live", 0)
    end

    -- Ordinary operations on a live key while the clock moves on, never touching the
    -- expired keys themselves.
    local function busy(st, from_ms, step_ms, rounds)
      for r = 1, rounds do
        advance(from_ms + r * step_ms)
        st:set("live", r)
        st:get("live")
        st:incr("hits")
      end
    end

    H.except("redis", "gc_interval is a memory/shared option")(
      "sweeps expired keys from ordinary operations, without gc()", function()
      local kvg = zeltkv.memory({ gc_interval = 1 })
      local sg = kvg:namespace("exp")
      fill(sg)
      local before = kvg:stats()
      assert.are.equal(N + 1, before.keys)
      busy(sg, 1500, 1100, 200)
      local after = kvg:stats()
      assert.are.equal(2, after.keys, "expired keys were not swept")
      assert.is_true(after.expired_freed >= N, "expired_freed " .. after.expired_freed)
      assert.is_true(after.gc_runs > 0, "gc_runs " .. after.gc_runs)
      assert.is_true(after.bytes_used < before.bytes_used)
      assert.are.equal(0, kvg:gc(), "gc() found keys the sweep should have freed")
      kvg:close()
    end)

    H.except("redis", "gc_interval is a memory/shared option")(
      "is 60 seconds by default: no sweep before that", function()
      fill(s)
      busy(s, 1500, 500, 100)            -- up to 51.5 s
      assert.are.equal(0, kv:stats().expired_freed)
      assert.are.equal(N, kv:gc())
    end)

    H.except("redis", "gc_interval is a memory/shared option")(
      "0 disables the automatic sweeps: only gc() frees", function()
      local kv0 = zeltkv.memory({ gc_interval = 0 })
      local s0 = kv0:namespace("exp")
      fill(s0)
      busy(s0, 1500, 60000, 100)         -- 100 minutes of activity
      local st = kv0:stats()
      assert.are.equal(0, st.expired_freed, "something swept with gc_interval = 0")
      assert.are.equal(0, st.gc_runs)
      assert.are.equal(N, kv0:gc())
      assert.are.equal(2, kv0:stats().keys)
      kv0:close()
    end)
  end)
end)
