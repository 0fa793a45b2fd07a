-- spec/04-atomic_spec.lua: kv:atomic and s:atomic (API.md "Atomic"): all or nothing,
-- the error re-raised as it was, return values and arguments, nesting, and yields.

local H = require("helpers")
local zeltkv = require("zeltkv")

describe("atomic", function()
  local kv, stores, a, b, c, snap

  before_each(function()
    kv = H.driver()
    stores = H.seed(kv)
    a, b, c = stores[1], stores[2], stores[3]
    snap = H.snapshot(stores, kv)
  end)

  after_each(function()
    H.reset_clock()
    kv:close()
  end)

  -------------------------------------------------------------------------
  describe("kv:atomic", function()
    H.except("redis-cluster", "one atomic works within one root namespace (its hash tag)")(
      "commits the writes of fn when it returns", function()
      kv:atomic(function()
        a:set("x", 1)
        b:incr("counter")
        c:del("k")
      end)
      assert.are.equal(1, a:get("x"))
      assert.are.equal(1, b:get("counter"))
      assert.is_nil(c:get("k"))
    end)

    it("returns what fn returns, all of it", function()
      assert.are.equal(42, kv:atomic(function() return 42 end))
      local r = { kv:atomic(function() return 1, nil, "x", false end) }
      assert.are.equal(1, r[1])
      assert.is_nil(r[2])
      assert.are.equal("x", r[3])
      assert.is_false(r[4])
      assert.are.equal(4, select("#", kv:atomic(function() return 1, nil, "x", false end)))
      assert.are.equal(0, select("#", kv:atomic(function() end)))
      local t = {}
      assert.are.equal(t, kv:atomic(function() return t end))
    end)

    it("reads a stored false as false inside fn, the server's and fn's own", function()
      a:set("f", false)
      local before, own
      kv:atomic(function()
        before = a:get("f")
        a:set("g", false)
        own = a:get("g")
      end)
      assert.is_false(before)
      assert.is_false(own)
      assert.is_false(a:get("g"))
    end)

    it("calls fn(kv, ...) with every argument, nils included", function()
      local got_self, n, args
      kv:atomic(function(self, ...)
        got_self = self
        n = select("#", ...)
        args = { ... }
      end, 1, nil, "three", nil)
      assert.is_true(rawequal(kv, got_self))
      assert.are.equal(4, n)
      assert.are.equal(1, args[1])
      assert.is_nil(args[2])
      assert.are.equal("three", args[3])
    end)

    it("lets fn read its own writes, including keys() and count()", function()
      kv:atomic(function(k)
        local s = k:namespace("fresh")
        s:set("a", 1)
        s:set("b", 2)
        assert.are.equal(1, s:get("a"))
        assert.are.equal(2, s:count())
        local n = 0
        for _ in s:keys() do n = n + 1 end
        assert.are.equal(2, n)
        s:del("a")
        assert.is_false(s:has("a"))
      end)
      assert.are.equal(1, kv:namespace("fresh"):count())
    end)

    it("keeps fn's writes when fn catches a failed call itself", function()
      kv:atomic(function()
        a:set("x", 1)
        local ok, err = pcall(a.incr, a, "str")       -- INVALID_VALUE, changes nothing
        assert.is_false(ok)
        H.check_error("INVALID_VALUE", err)
        a:set("y", 2)
      end)
      assert.are.equal(1, a:get("x"))
      assert.are.equal(2, a:get("y"))
      assert.are.equal("hello\0world", a:get("str"))
    end)

    -- on every driver (the redis driver raised a plain Lua argument error)
    it("refuses a non-function fn with INVALID_VALUE and takes nothing", function()
      for _, v in ipairs({ 42, "fn", {}, true }) do
        H.assert_error_code("INVALID_VALUE", kv.atomic, kv, v)
        H.assert_error_code("INVALID_VALUE", a.atomic, a, v)
      end
      H.assert_error_code("INVALID_VALUE", kv.atomic, kv)
      assert.are.equal(42, kv:atomic(function() return 42 end))
      H.assert_unchanged(snap)
    end)

    -- docs/errors.md: reason "closed", message "cannot close a driver inside its own
    -- atomic()", on every driver (the redis driver said "busy", a reason no doc lists)
    it("refuses kv:close() inside fn with reason closed; fn's writes and the driver stay", function()
      local err
      kv:atomic(function()
        a:set("x", 1)
        local ok
        ok, err = pcall(kv.close, kv)
        assert.is_false(ok)
      end)
      H.check_error("STORE_OPERATION_FAILED", err)
      assert.are.equal("closed", err.reason)
      assert.truthy(err.message:find("cannot close a driver inside its own atomic()", 1, true))
      assert.are.equal(1, a:get("x"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("when fn raises", function()
    H.except("redis-cluster", "one atomic works within one root namespace (its hash tag)")(
      "undoes every kind of write across namespaces", function()
      local err = H.catch(kv.atomic, kv, function()
        a:set("str", "overwritten")             -- set over an existing key
        a:set("new", { 1, 2, 3 }, 10)           -- set of a new key with ttl
        a:set("ttl", "no more ttl")             -- set that drops a ttl
        a:set("int", 7, 5)                      -- set that adds a ttl
        a:del("float")                          -- del
        a:incr("counter", 10)                   -- incr of an existing key
        a:incr("newcounter", 3, 60)             -- incr that creates a key
        a:setnx("setnx_new", true, 30)          -- setnx that stores
        a:setnx("bool", true)                   -- setnx that does not
        a:expire("tbl", 1)                      -- expire adding a ttl
        a:expire("ttl", 99999)                  -- expire replacing a ttl
        b:clear()                               -- clear of a namespace
        c:set("k", "changed")
        c:del(7)
        kv:namespace("created"):set("k", 1)     -- write into a new namespace
        a:namespace("seed_b"):set("late", 1)    -- b again, through another handle
        error("boom", 0)
      end)
      assert.are.equal("boom", err)
      H.assert_unchanged(snap)
      assert.is_nil(kv:namespace("created"):get("k"))
      local ttl = a:ttl("ttl")
      assert.is_true(ttl > 3500 and ttl <= 3600, "ttl not restored: " .. tostring(ttl))
    end)

    it("undoes clear() of nested namespaces, ttls included", function()
      a:namespace("nested"):set("n", "nested", 100)
      snap = H.snapshot({ a, b, c, a:namespace("nested") }, kv)
      H.catch(kv.atomic, kv, function()
        assert.is_true(a:clear() >= 3)
        assert.is_nil(b:get("child"))
        error("undo it")
      end)
      H.assert_unchanged(snap)
      assert.is_true(a:namespace("nested"):ttl("n") > 99)
    end)

    it("undoes flush()", function()
      H.catch(kv.atomic, kv, function()
        assert.is_true(kv:flush() > 0)
        assert.are.equal(0, a:count())
        error("undo it")
      end)
      H.assert_unchanged(snap)
    end)

    it("undoes a long run of writes", function()
      H.catch(kv.atomic, kv, function()
        for i = 1, 5000 do a:set("bulk" .. i, string.rep("x", i % 100)) end
        for i = 1, 5000, 2 do a:del("bulk" .. i) end
        a:clear()
        for i = 1, 1000 do c:incr("n" .. (i % 10), i) end
        error("undo it")
      end)
      H.assert_unchanged(snap)
    end)

    it("undoes 100 000 overwrites of one key", function()
      H.catch(kv.atomic, kv, function()
        for i = 1, 100000 do a:set("str", i) end
        error("undo it")
      end)
      H.assert_unchanged(snap)
    end)

    -- shared: 200 000 writes with their undo log (which grows into the free room, some
    -- 300 bytes a write) need more than a 64 MiB segment's free room; redis: clear() is refused
    -- inside atomic (a SCAN pattern cannot be watched)
    H.except({ "shared", "redis" }, "transaction size / clear inside atomic")(
      "commits and undoes big transactions (200 000 writes)", function()
      -- no atomic_timeout: this one may take seconds on a slow or instrumented machine
      local big = H.driver({ atomic_timeout = 0 })
      local ba, bc = big:namespace("a"), big:namespace("c")
      bc:set("k1", 1)
      bc:set("k2", 2)
      big:atomic(function()
        for i = 1, 200000 do bc:set("big" .. i, "v" .. i) end
      end)
      assert.are.equal(200002, bc:count())
      local snap2 = H.snapshot({ ba, bc }, big)
      H.catch(big.atomic, big, function()
        for i = 1, 200000 do ba:set("more" .. i, i) end
        bc:clear()
        error("undo it")
      end)
      H.assert_unchanged(snap2)
      big:close()
    end)

    -- issue 9.4: a transaction is as big as the free room (a shared segment's undo log
    -- grows out of its fixed region, 1/16 of the segment, into the free room)
    H.only("memory", "shared")(
      "takes 70% of the free room in one atomic, undoes it all, fails cleanly past it", function()
      local big = H.driver(H.KIND == "shared" and { size = "16m", atomic_timeout = 0 }
                           or { max_bytes = "16m", atomic_timeout = 0 })
      local ba, bc = big:namespace("a"), big:namespace("c")
      for i = 1, 300 do bc:set("old" .. i, string.rep("o", i)) end
      local v = string.rep("v", 1000)
      local target = math.floor(big:stats().free_bytes * 0.7)
      local function fill(limit)
        local f0, n = big:stats().free_bytes, 0
        while f0 - big:stats().free_bytes < limit do
          n = n + 1
          ;(n % 3 == 0 and bc or ba):set("t" .. n, v)
          if n % 5 == 0 then bc:del("old" .. (n % 300 + 1)) end
        end
        return n
      end
      local snap2 = H.snapshot({ ba, bc }, big)
      local used0 = big:stats().bytes_used
      local n
      local err = H.catch(big.atomic, big, function()
        n = fill(target)
        error("undo it")
      end)
      assert.are.equal("undo it", err:match("undo it"))
      assert.is_true(n > 8000)
      H.assert_unchanged(snap2)
      assert.are.equal(used0, big:stats().bytes_used)
      -- past the free room: STORE_OPERATION_FAILED, and the store as it was
      err = H.catch(big.atomic, big, function() fill(math.huge) end)
      H.check_error("STORE_OPERATION_FAILED", err)
      H.assert_unchanged(snap2)
      assert.are.equal(used0, big:stats().bytes_used)
      -- and committed, all of it
      big:atomic(function() n = fill(target) end)
      assert.are.equal(n - math.floor(n / 3), ba:count())
      assert.are.equal(v, bc:get("t" .. (n - n % 3)))
      big:close()
    end)

    it("re-raises the same error table (same identity)", function()
      local e = setmetatable({ reason = "sold out" },
                             { __tostring = function() return "sold out!" end })
      local err = H.catch(kv.atomic, kv, function()
        a:set("x", 1)
        error(e)
      end)
      assert.is_true(rawequal(e, err))
      assert.is_nil(a:get("x"))
    end)

    it("re-raises the same string, position included", function()
      local err0 = H.catch(kv.atomic, kv, function() error("sold out", 0) end)
      assert.are.equal("sold out", err0)
      local err1 = H.catch(kv.atomic, kv, function() error("plain") end)
      assert.truthy(err1:find("04%-atomic_spec%.lua:%d+: plain$"), err1)
    end)

    it("re-raises other error values unchanged", function()
      assert.are.equal(42, H.catch(kv.atomic, kv, function() error(42, 0) end))
      assert.is_false(H.catch(kv.atomic, kv, function() error(false) end))
    end)

    it("re-raises a zeltkv error from inside fn and undoes the earlier writes", function()
      local err = H.catch(kv.atomic, kv, function()
        a:set("x", 1)
        a:incr("str")                         -- INVALID_VALUE, not caught
      end)
      H.check_error("INVALID_VALUE", err)
      H.assert_unchanged(snap)
    end)

    it("undoes runtime errors too (not only error())", function()
      H.catch(kv.atomic, kv, function()
        a:set("x", 1)
        local t = nil
        return t.field                        -- attempt to index a nil value
      end)
      H.assert_unchanged(snap)
    end)

    it("leaves the driver usable, and a store opened inside fn usable", function()
      local inside
      H.catch(kv.atomic, kv, function()
        inside = kv:namespace("made_inside")
        inside:set("k", 1)
        error("undo it")
      end)
      assert.is_nil(kv:namespace("made_inside"):get("k"))
      inside:set("k", 2)
      assert.are.equal(2, kv:namespace("made_inside"):get("k"))
      a:set("after", 1)
      assert.are.equal(1, a:get("after"))
      assert.are.equal("ok", kv:atomic(function() a:set("x", 1) return "ok" end))
      assert.are.equal(1, a:get("x"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("nested", function()
    it("an inner atomic joins the outer one and commits with it", function()
      kv:atomic(function()
        a:set("outer", 1)
        local r = kv:atomic(function()
          b:set("inner", 2)
          return "inner result"
        end)
        assert.are.equal("inner result", r)
        assert.are.equal(2, b:get("inner"))
      end)
      assert.are.equal(1, a:get("outer"))
      assert.are.equal(2, b:get("inner"))
    end)

    it("an outer raise undoes the writes of a finished inner atomic", function()
      H.catch(kv.atomic, kv, function()
        a:set("outer", 1)
        kv:atomic(function() b:set("inner", 2) end)
        c:atomic(function(st) st:set("k", "inner s:atomic") end)
        error("outer fails")
      end)
      H.assert_unchanged(snap)
    end)

    it("an inner raise caught by pcall undoes only the inner writes", function()
      kv:atomic(function()
        a:set("outer", 1)
        a:set("str", "outer value")
        local ok, err = pcall(kv.atomic, kv, function()
          a:set("inner", 2)
          a:set("str", "inner value")
          b:del("child")
          error("inner fails", 0)
        end)
        assert.is_false(ok)
        assert.are.equal("inner fails", err)
        assert.is_nil(a:get("inner"))
        assert.are.equal("outer value", a:get("str"))
        assert.are.equal("of a", b:get("child"))
        a:set("after", 3)
      end)
      assert.are.equal(1, a:get("outer"))
      assert.are.equal("outer value", a:get("str"))
      assert.are.equal(3, a:get("after"))
      assert.is_nil(a:get("inner"))
      assert.are.equal("of a", b:get("child"))
    end)

    it("60 levels deep, each even level failing: only the outermost writes stay",
       function()
      local function nest(n)
        if n == 0 then return end
        a:set("lvl" .. n, n)
        kv:atomic(function() nest(n - 1) end)
        if n % 2 == 0 then error("fail" .. n, 0) end
      end
      kv:atomic(function()
        local ok, err = pcall(nest, 60)
        assert.is_false(ok)
        assert.are.equal("fail2", err)
      end)
      assert.are.equal(60, a:get("lvl60"))
      for i = 1, 59 do assert.is_nil(a:get("lvl" .. i), "lvl" .. i) end
    end)

    it("nested deeper than the engine allows: works, or fails cleanly and undoes all",
       function()
      -- API.md sets no depth limit; an engine limit must not leave a half state
      local function depth(n)
        if n == 0 then return 0 end
        a:set("d" .. n, n)
        return kv:atomic(function() return 1 + depth(n - 1) end)
      end
      local ok, r = pcall(kv.atomic, kv, function() return depth(150) end)
      if ok then
        assert.are.equal(150, r)
        for i = 1, 150 do assert.are.equal(i, a:get("d" .. i)) end
      else
        H.check_error("STORE_OPERATION_FAILED", r)
        H.assert_unchanged(snap)
      end
      -- the store and atomic still work, from depth 0 again
      assert.are.equal(10, depth(10))
      assert.are.equal("ok", kv:atomic(function() return "ok" end))
    end)

    it("three levels: the middle one fails, outer and innermost-of-outer survive",
       function()
      kv:atomic(function()
        a:set("l1", 1)
        pcall(function()
          a:atomic(function()
            a:set("l2", 2)
            a:atomic(function() a:set("l3", 3) end)   -- committed into level 2 ...
            error("level 2 fails")                    -- ... and undone with it
          end)
        end)
        a:atomic(function() a:set("l2b", 22) end)
      end)
      assert.are.equal(1, a:get("l1"))
      assert.is_nil(a:get("l2"))
      assert.is_nil(a:get("l3"))
      assert.are.equal(22, a:get("l2b"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("s:atomic", function()
    it("calls fn(s, ...) and returns what fn returns", function()
      local got, n
      local r1, r2 = a:atomic(function(self, x, y)
        got = self
        n = x + y
        self:set("sum", n)
        return n, "done"
      end, 2, 3)
      assert.is_true(rawequal(a, got))
      assert.are.equal(5, r1)
      assert.are.equal("done", r2)
      assert.are.equal(5, a:get("sum"))
    end)

    H.except("redis-cluster", "one atomic works within one root namespace (its hash tag)")(
      "lets every store of the driver join, and undoes them all on a raise", function()
      local err = H.catch(a.atomic, a, function(self)
        self:set("x", 1)
        c:set("k", "changed")
        b:incr("counter")
        kv:namespace("other"):set("y", 1)
        error({ code = "mine" })
      end)
      assert.are.equal("mine", err.code)
      H.assert_unchanged(snap)
      assert.is_nil(kv:namespace("other"):get("y"))
    end)

    it("is a read-modify-write as in the API example", function()
      a:set("stock", 1)
      local function buy()
        return a:atomic(function(s)
          local stock = s:get("stock") or 0
          if stock < 1 then error("sold out", 0) end
          s:set("stock", stock - 1)
          s:incr("sold")
        end)
      end
      buy()
      assert.are.equal(0, a:get("stock"))
      assert.are.equal(1, a:get("sold"))
      local ok, err = pcall(buy)
      assert.is_false(ok)
      assert.are.equal("sold out", err)
      assert.are.equal(0, a:get("stock"))
      assert.are.equal(1, a:get("sold"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("with two handles on one shared segment #shared", function()
    local name, kv1, kv2

    before_each(function()
      name = H.segment_name("atomic")
      kv1 = zeltkv.shared(name, { size = "4m", lock_timeout = 1 })
      kv2 = zeltkv.shared(name, { lock_timeout = 1 })
    end)

    after_each(function()
      kv1:close()
      kv2:close()
      zeltkv.unlink(name)
    end)

    it("lets the other handle join without deadlock, and commits both", function()
      local r = kv1:atomic(function()
        kv1:namespace("n"):set("one", 1)
        kv2:namespace("n"):set("two", 2)
        return kv2:namespace("n"):get("one")
      end)
      assert.are.equal(1, r)
      assert.are.equal(2, kv1:namespace("n"):get("two"))
      assert.are.equal(1, kv2:namespace("n"):get("one"))
    end)

    it("undoes the other handle's writes when fn raises", function()
      kv2:namespace("n"):set("keep", "old")
      local err = H.catch(kv1.atomic, kv1, function()
        kv1:namespace("n"):set("one", 1)
        kv2:namespace("n"):set("keep", "new")
        kv2:namespace("n"):set("two", 2)
        error("undo", 0)
      end)
      assert.are.equal("undo", err)
      assert.is_nil(kv1:namespace("n"):get("one"))
      assert.is_nil(kv1:namespace("n"):get("two"))
      assert.are.equal("old", kv1:namespace("n"):get("keep"))
    end)

    it("makes read-modify-write safe between two processes", function()
      local N = 20000
      local exe = H.interpreter()
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(([[
        local zeltkv = require("zeltkv")
        local kv = zeltkv.shared(%q, { lock_timeout = 10 })
        local s = kv:namespace("n")
        for _ = 1, %d do
          kv:atomic(function() s:set("c", (s:get("c") or 0) + 1) end)
        end
        kv:close()
        print("child done")
      ]]):format(name, N))
      f:close()
      local cmd = ("LUA_PATH='%s' LUA_CPATH='%s' %s %s 2>&1"):format(
        package.path, package.cpath, exe, script)
      local child = io.popen(cmd, "r")
      local s1 = kv1:namespace("n")
      for _ = 1, N do
        kv1:atomic(function() s1:set("c", (s1:get("c") or 0) + 1) end)
      end
      local out = child:read("*a")
      child:close()
      os.remove(script)
      assert.truthy(out:find("child done", 1, true), out)
      assert.are.equal(2 * N, s1:get("c"))
    end)

    it("lets a keys() walk on one handle run while the other handle writes", function()
      local s1, s2 = kv1:namespace("w"), kv2:namespace("w")
      for i = 1, 300 do s1:set("k" .. i, i) end
      local seen = 0
      for _ in s1:keys() do
        seen = seen + 1
        if seen <= 50 then s2:set("new" .. seen, seen) end
      end
      assert.is_true(seen >= 300)
    end)
  end)

  -------------------------------------------------------------------------
  describe("and coroutines", function()
    H.except("redis", "fn may yield on the redis driver: it holds no lock")(
      "a yield inside fn raises an error and undoes the writes", function()
      local co = coroutine.wrap(function()
        return kv:atomic(function()
          a:set("before_yield", 1)
          a:set("str", "changed before yield")
          coroutine.yield("yielded")
          a:set("after_yield", 1)
        end)
      end)
      local ok = pcall(co)
      assert.is_false(ok, "a yield inside atomic must raise")
      assert.is_nil(a:get("before_yield"))
      assert.is_nil(a:get("after_yield"))
      H.assert_unchanged(snap)
    end)

    H.except("redis", "fn may yield on the redis driver: it holds no lock")(
      "a yield inside s:atomic raises too (coroutine.resume reports it)", function()
      local co = coroutine.create(function()
        a:atomic(function(s)
          s:set("x", 1)
          coroutine.yield()
        end)
        return "finished"
      end)
      local ok, err = coroutine.resume(co)
      assert.is_false(ok, "a yield inside atomic must raise, got " .. tostring(err))
      assert.are.equal("dead", coroutine.status(co))
      H.assert_unchanged(snap)
    end)

    it("leaves the store usable after a yield was refused", function()
      pcall(coroutine.wrap(function()
        kv:atomic(function() a:set("x", 1) coroutine.yield() end)
      end))
      a:set("after", 1)
      assert.are.equal(1, a:get("after"))
      assert.are.equal("ok", kv:atomic(function() b:set("y", 2) return "ok" end))
      assert.are.equal(2, b:get("y"))
      -- and from another coroutine
      local co = coroutine.wrap(function()
        return kv:atomic(function() return a:incr("counter") end)
      end)
      assert.are.equal(6, co())
    end)

    it("works inside a coroutine that yields outside fn", function()
      local co = coroutine.wrap(function()
        kv:atomic(function() a:set("one", 1) end)
        coroutine.yield("between")
        kv:atomic(function() a:set("two", 2) end)
        return "done"
      end)
      assert.are.equal("between", co())
      assert.are.equal(1, a:get("one"))
      a:set("main", 1)                    -- the lock is not held across the yield
      assert.are.equal("done", co())
      assert.are.equal(2, a:get("two"))
    end)
  end)
end)
