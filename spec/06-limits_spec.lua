-- spec/06-limits_spec.lua: max_bytes with evict = "none" and evict = "lru"
-- (API.md driver options; STORE_OPERATION_FAILED when a write does not fit).

local H = require("helpers")
local zeltkv = require("zeltkv")

local MiB = 1024 * 1024
local VALUE = string.rep("v", 1000)

local function value_for(i)
  return ("%06d"):format(i) .. VALUE
end

describe("max_bytes", function()
  after_each(H.reset_clock)

  -------------------------------------------------------------------------
  describe("with evict = \"none\"", function()
    local kv, s, written

    -- Writes 1 KB values until a set fails; returns how many were stored.
    local function fill()
      for i = 1, 20000 do
        local ok, err = pcall(s.set, s, "k" .. i, value_for(i))
        if not ok then
          H.check_error("STORE_OPERATION_FAILED", err)
          return i - 1, i
        end
      end
      error("20 MB were stored under max_bytes = 1 MiB")
    end

    before_each(function()
      kv = zeltkv.memory({ max_bytes = MiB, evict = "none" })
      s = kv:namespace("full")
      written = nil
    end)

    after_each(function() kv:close() end)

    it("fails a write that does not fit with STORE_OPERATION_FAILED", function()
      local failed_at
      written, failed_at = fill()
      assert.is_true(written > 100, "only " .. written .. " KB fit in 1 MiB")
      assert.is_nil(s:get("k" .. failed_at))
      assert.is_false(s:has("k" .. failed_at))
    end)

    it("keeps the data already there intact", function()
      written = fill()
      assert.are.equal(written, s:count())
      for i = 1, written do
        assert.are.equal(value_for(i), s:get("k" .. i), "k" .. i)
      end
      local st = kv:stats()
      assert.are.equal(0, st.evictions)
      assert.is_true(st.bytes_used <= st.capacity)
    end)

    it("changes nothing on a failed set or setnx, new key or overwrite", function()
      written = fill()
      -- fill the last crumbs with small keys
      local i = 0
      while pcall(s.set, s, "small" .. i, i) do i = i + 1 assert(i < 100000) end
      local snap = H.snapshot({ s }, kv)
      H.assert_error_code("STORE_OPERATION_FAILED", s.set, s, "new", VALUE)
      H.assert_unchanged(snap)
      H.assert_error_code("STORE_OPERATION_FAILED", s.setnx, s, "new", VALUE)
      H.assert_unchanged(snap)
      H.assert_error_code("STORE_OPERATION_FAILED", s.set, s, "k1", string.rep("x", 64 * 1024))
      H.assert_unchanged(snap)
      assert.are.equal(value_for(1), s:get("k1"))
    end)

    it("refuses a single value larger than max_bytes, on an empty store", function()
      local snap = H.snapshot({ s }, kv)
      H.assert_error_code("STORE_OPERATION_FAILED", s.set, s, "huge", string.rep("x", 2 * MiB))
      H.assert_unchanged(snap)
      assert.is_true(s:set("small", 1))
    end)

    it("makes room again when keys are deleted", function()
      written = fill()
      for i = 1, 50 do s:del("k" .. i) end
      for i = 1, 20 do
        assert.is_true(s:set("again" .. i, VALUE))
      end
      assert.are.equal(VALUE, s:get("again20"))
    end)

    it("reuses the room of expired keys (a full store of expired keys accepts writes)",
       function()
      local n = 0
      for i = 1, 20000 do
        if not pcall(s.set, s, "t" .. i, value_for(i), 1) then break end
        n = i
      end
      assert.is_true(n > 100)
      zeltkv._set_clock_offset(1500)
      for i = 1, n do
        local ok, err = pcall(s.set, s, "fresh" .. i, value_for(i))
        assert(ok, ("write #%d of %d failed although every key had expired: %s")
               :format(i, n, H.describe_err(err)))
      end
      assert.are.equal(n, s:count())
    end)

    it("undoes an atomic whose write does not fit", function()
      written = fill()
      for i = 1, 20 do s:del("k" .. i) end  -- room for a few writes, not for a big one
      local snap = H.snapshot({ s }, kv)
      local err = H.catch(kv.atomic, kv, function()
        s:set("a1", VALUE)
        s:del("k30")
        s:set("big", string.rep("x", 512 * 1024))
      end)
      H.check_error("STORE_OPERATION_FAILED", err)
      H.assert_unchanged(snap)
    end)
  end)

  -------------------------------------------------------------------------
  describe("bytes_used", function()
    local kv, s

    before_each(function()
      kv = zeltkv.memory()
      s = kv:namespace("churn")
    end)

    after_each(function() kv:close() end)

    local function churn()
      for i = 1, 5000 do s:set("k" .. i, value_for(i), (i % 3 == 0) and 100 or nil) end
      for i = 1, 5000, 2 do s:set("k" .. i, { list = { i, "x" } }) end
      for i = 1, 5000 do s:del("k" .. i) end
    end

    it("goes back to a steady level after keys are set and deleted (no leak)", function()
      churn()
      local level = kv:stats().bytes_used
      for _ = 1, 3 do churn() end
      assert.are.equal(level, kv:stats().bytes_used)
    end)

    it("set then del of a key gives every byte back, on memory and shared stores", function()
      local name = H.segment_name("bytes")
      local sh = zeltkv.shared(name, { size = "1m" })
      for _, d in ipairs({ kv, sh }) do
        local ns = d:namespace("once")
        local function round(prefix)
          for i = 1, 50 do ns:set(prefix .. i, "v" .. i) end
          ns:set(prefix .. "big", string.rep("b", 5000))
          local peak = d:stats().bytes_used
          for i = 1, 50 do assert.is_true(ns:del(prefix .. i)) end
          assert.is_true(ns:del(prefix .. "big"))
          return peak
        end
        round("small")   -- the index grows to hold 51 keys, and stays grown
        local before = d:stats()
        local peak = round("small")
        local after = d:stats()
        assert.is_true(peak > before.bytes_used)
        assert.are.equal(before.bytes_used, after.bytes_used)
        assert.are.equal(before.keys, after.keys)
        assert.are.equal(0, ns:count())
        assert.is_nil(ns:get("small1"))
        assert.is_false(ns:del("small1"))
      end
      sh:close()
      zeltkv.unlink(name)
    end)

    it("does not grow with atomics that raise (the undo log is given back)", function()
      s:set("base", 1)
      local function failing()
        H.catch(kv.atomic, kv, function()
          for i = 1, 2000 do s:set("t" .. i, value_for(i)) end
          s:clear()
          error("undo", 0)
        end)
      end
      failing()
      local level = kv:stats().bytes_used
      for _ = 1, 5 do failing() end
      assert.are.equal(level, kv:stats().bytes_used)
      assert.are.equal(1, s:count())
    end)
  end)

  -------------------------------------------------------------------------
  describe("with evict = \"lru\"", function()
    local kv, s

    before_each(function()
      kv = zeltkv.memory({ max_bytes = MiB, evict = "lru" })
      s = kv:namespace("cache")
    end)

    after_each(function() kv:close() end)

    it("evicts least recently used keys so that every write succeeds", function()
      local TOTAL = 3000
      s:set("hot", "keep me")
      for i = 1, TOTAL do
        assert.is_true(s:set("k" .. i, value_for(i)))
        if i % 20 == 0 then assert.are.equal("keep me", s:get("hot")) end
      end
      local st = kv:stats()
      assert.is_true(st.evictions > 0, "nothing was evicted")
      assert.is_true(st.bytes_used <= st.capacity)
      local live = s:count()
      assert.is_true(live < TOTAL, "3 MB kept in 1 MiB?")
      assert.are.equal(TOTAL + 1 - live, st.evictions)
      -- the recently used survive, the oldest are gone
      assert.are.equal("keep me", s:get("hot"))
      for i = TOTAL - 99, TOTAL do
        assert.are.equal(value_for(i), s:get("k" .. i), "k" .. i)
      end
      for i = 1, 100 do
        assert.is_nil(s:get("k" .. i), "k" .. i)
      end
    end)

    it("counts a read as a use", function()
      for i = 1, 500 do s:set("k" .. i, value_for(i)) end
      for i = 1, 500, 50 do s:get("k" .. i) end      -- touch a few old keys
      for i = 501, 1100 do s:set("k" .. i, value_for(i)) end
      for i = 1, 500, 50 do
        assert.are.equal(value_for(i), s:get("k" .. i), "touched k" .. i .. " was evicted")
      end
      assert.is_true(kv:stats().evictions > 0)
    end)

    it("evicts across namespaces, and keys() / count() agree afterwards", function()
      local other = kv:namespace("other")
      for i = 1, 1500 do
        s:set("k" .. i, value_for(i))
        other:set("k" .. i, value_for(i))
      end
      local n = 0
      for _ in s:keys() do n = n + 1 end
      assert.are.equal(s:count(), n)
      n = 0
      for _ in other:keys() do n = n + 1 end
      assert.are.equal(other:count(), n)
      assert.are.equal(3000 - s:count() - other:count(), kv:stats().evictions)
    end)

    it("restores what a raising atomic evicted", function()
      for i = 1, 900 do
        s:set("k" .. i, value_for(i))
      end
      local snap = H.snapshot({ s }, kv)
      H.catch(kv.atomic, kv, function()
        for i = 1, 400 do s:set("new" .. i, value_for(i)) end
        assert.is_true(kv:stats().evictions > 0, "the test needs evictions inside fn")
        error("undo", 0)
      end)
      H.assert_unchanged(snap)
    end)

    it("evicts as many small keys as a big value needs", function()
      for i = 1, 800 do s:set("small" .. i, value_for(i)) end
      assert.is_true(s:set("big", string.rep("B", 400 * 1024)))
      assert.are.equal(400 * 1024, #s:get("big"))
      local st = kv:stats()
      assert.is_true(st.evictions > 0)
      assert.is_true(st.bytes_used <= st.capacity)
      assert.are.equal(800 + 1 - s:count(), st.evictions)
    end)

    -- issue 9.5: below max_bytes, but above what an empty store has room for (its
    -- index, the ring of deleted keys and its namespace records stay)
    it("refuses a value that cannot fit even in an empty store before evicting anything",
       function()
      local name = H.segment_name("nofit")
      local stores = {
        { zeltkv.memory({ max_bytes = 65536, evict = "lru" }), 60000 },
        { zeltkv.shared(name, { size = "64k", evict = "lru" }), 30000 },
      }
      for _, st in ipairs(stores) do
        local d, big = st[1], st[2]
        local ns = d:namespace("n")
        for i = 1, 100 do assert.is_true(ns:set("k" .. i, "v" .. i)) end
        local snap = H.snapshot({ ns }, d)
        local ev = d:stats().evictions
        H.assert_error_code("STORE_OPERATION_FAILED", ns.set, ns, "big", string.rep("x", big))
        H.assert_unchanged(snap)
        assert.are.equal(ev, d:stats().evictions)
        assert.are.equal(100, ns:count())
        d:close()
      end
      zeltkv.unlink(name)
    end)

    -- issue 11.A: a call that reads or writes a key it finds is a use of it, as
    -- ngx.shared.DICT's lookup moves a key it finds to the front; has, ttl and expire
    -- only look (shdict's peek)
    it("counts get, set, incr and setnx as uses, not has, ttl or expire", function()
      local name = H.segment_name("recency")
      for _, mk in ipairs({
        function() return zeltkv.memory({ max_bytes = 65536, evict = "lru" }) end,
        function() return zeltkv.shared(name, { size = "64k", evict = "lru" }) end,
      }) do
        local uses = {
          incr = function(ns, k) ns:incr(k, 1) end,
          setnx = function(ns, k) assert.is_false(ns:setnx(k, 1)) end,
          get = function(ns, k) assert.is_not_nil(ns:get(k)) end,
          set = function(ns, k) ns:set(k, 7) end,
        }
        for what, use in pairs(uses) do
          local d = mk()
          local ns = d:namespace(what)
          ns:set("hot", 0)
          for i = 1, 100 do
            use(ns, "hot")
            ns:set("k" .. i, string.rep(".", 1024))
          end
          assert.is_true(d:stats().evictions > 20, what)
          assert.is_not_nil(ns:get("hot"), what .. " did not keep the key from eviction")
          d:close()
          zeltkv.unlink(name)
        end
        -- looking is not using: the key ages, and goes
        local looks = {
          has = function(ns, k) return ns:has(k) end,
          ttl = function(ns, k) return ns:ttl(k) ~= nil end,
          expire = function(ns, k) return ns:expire(k, 3600) end,
        }
        for what, look in pairs(looks) do
          local d = mk()
          local ns = d:namespace(what)
          ns:set("cold", 0)
          assert.is_true(look(ns, "cold"))
          for i = 1, 100 do
            look(ns, "cold")
            ns:set("k" .. i, string.rep(".", 1024))
          end
          assert.is_nil(ns:get("cold"), what .. " kept the key from eviction")
          d:close()
          zeltkv.unlink(name)
        end
      end
    end)

    it("refuses a value larger than max_bytes, evicting nothing", function()
      for i = 1, 100 do s:set("k" .. i, value_for(i)) end
      local snap = H.snapshot({ s }, kv)
      local ev = kv:stats().evictions
      H.assert_error_code("STORE_OPERATION_FAILED", s.set, s, "huge", string.rep("x", 2 * MiB))
      H.assert_unchanged(snap)
      assert.are.equal(ev, kv:stats().evictions)
    end)
  end)
end)
