-- spec/02-store_spec.lua: the Store methods, one describe per method, plus the rules for
-- keys, values and namespaces (API.md "Store", "Namespaces", "Values"). The bad inputs
-- of each method are in 03-bad_inputs_spec.lua.

local H = require("helpers")
local zeltkv = require("zeltkv")

describe("Store", function()
  local kv, s

  before_each(function()
    kv = H.driver()
    s = kv:namespace("store")
  end)

  after_each(function()
    H.reset_clock()
    kv:close()
  end)

  -------------------------------------------------------------------------
  describe("get", function()
    it("returns nil for an absent key", function()
      assert.is_nil(s:get("nope"))
      assert.are.equal(1, select("#", s:get("nope")))
    end)

    it("returns the stored value", function()
      s:set("k", "v")
      assert.are.equal("v", s:get("k"))
    end)

    it("returns false (not nil) for a stored false", function()
      s:set("f", false)
      assert.is_false(s:get("f"))
    end)

    it("returns a fresh copy of a table on each call", function()
      s:set("t", { a = { 1, 2 }, b = "x" })
      local t1, t2 = s:get("t"), s:get("t")
      assert.are_not.equal(t1, t2)        -- different tables ...
      assert.are.same(t1, t2)             -- ... with the same contents
      assert.are_not.equal(t1.a, t2.a)
      t1.a[1] = 99
      t1.b = nil
      t1.c = "added"
      assert.are.same({ a = { 1, 2 }, b = "x" }, s:get("t"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("set", function()
    it("stores a value and returns true", function()
      assert.is_true(s:set("k", "v"))
      assert.are.equal("v", s:get("k"))
    end)

    it("replaces an existing value, whatever its type", function()
      s:set("k", "v")
      assert.is_true(s:set("k", { 1, 2 }))
      assert.are.same({ 1, 2 }, s:get("k"))
      assert.is_true(s:set("k", 3))
      assert.are.equal(3, s:get("k"))
      assert.are.equal(1, s:count())
    end)

    it("copies the table it is given (later changes to it are not stored)", function()
      local t = { list = { 1, 2, 3 }, name = "ada" }
      s:set("t", t)
      t.name = "bob"
      t.list[1] = 100
      t.extra = true
      assert.are.same({ list = { 1, 2, 3 }, name = "ada" }, s:get("t"))
    end)

    it("accepts a ttl as a number or as { ttl = seconds }", function()
      assert.is_true(s:set("a", 1, 10))
      assert.is_true(s:set("b", 1, { ttl = 10 }))
      assert.is_true(s:set("c", 1, 0.5))
      assert.is_true(s:set("d", 1, nil))
      for _, k in ipairs({ "a", "b", "c" }) do
        local ttl = s:ttl(k)
        assert.is_true(ttl > 0 and ttl < math.huge, k)
      end
      assert.are.equal(math.huge, s:ttl("d"))
    end)

    it("without a ttl drops a previous ttl", function()
      s:set("k", 1, 10)
      s:set("k", 2)
      assert.are.equal(math.huge, s:ttl("k"))
    end)

    describe("round-trips", function()
      local function round_trip(value, what)
        assert.is_true(s:set("v", value))
        H.assert_round_trip(value, s:get("v"), what)
        -- and a second read gives the same again
        H.assert_round_trip(value, s:get("v"), what)
      end

      it("strings with every byte value, including NUL", function()
        local bytes = {}
        for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
        local all = table.concat(bytes)
        round_trip(all, "all bytes")
        round_trip(all .. all:reverse(), "all bytes twice")
        round_trip("\0", "one NUL")
        round_trip("a\0b\0\0c", "NULs inside")
        round_trip("", "empty string")
        round_trip("\255\254 not utf-8 \192\128", "invalid UTF-8")
      end)

      it("long strings (1 MiB)", function()
        round_trip(string.rep("0123456789abcdef", 65536), "1 MiB string")
      end)

      it("booleans", function()
        round_trip(true)
        round_trip(false)
      end)

      it("integers, keeping the integer subtype (Lua 5.4)", function()
        for _, n in ipairs({ 0, 1, -1, 42, 2 ^ 31, -(2 ^ 31), 123456789 }) do
          local v = n
          if H.has_int then v = math.tointeger(n) end
          round_trip(v, "integer " .. tostring(n))
        end
        if H.has_int then
          round_trip(math.maxinteger, "math.maxinteger")
          round_trip(math.mininteger, "math.mininteger")
          round_trip(math.tointeger(2 ^ 53) + 1, "2^53 + 1")
          assert.are.equal("integer", math.type(s:get("v")))
        else
          round_trip(2 ^ 53, "2^53")
          round_trip(-(2 ^ 53), "-2^53")
        end
      end)

      it("floats, keeping the float subtype (Lua 5.4)", function()
        local floats = { 1.5, -2.25, 0.1, 1 / 3, 1e300, -1e-300, 2 ^ -1074, 123456.789 }
        if H.has_int then
          floats[#floats + 1] = 1.0       -- integral floats stay floats
          floats[#floats + 1] = -0.0
          floats[#floats + 1] = 2.0 ^ 63
        end
        for _, f in ipairs(floats) do round_trip(f, "float " .. tostring(f)) end
        if H.has_int then
          -- a top-level float comes back a float, bit for bit (where numbers are all
          -- doubles, -0.0 == 0 may come back as 0: the API promises only ==)
          s:set("negzero", -0.0)
          assert.are.equal(-math.huge, 1 / s:get("negzero"), "the sign of -0.0 was lost")
        end
        if H.has_int then
          s:set("one", 1.0)
          assert.are.equal("float", math.type(s:get("one")))
          s:set("one", 1)
          assert.are.equal("integer", math.type(s:get("one")))
        end
      end)

      it("nested tables: arrays of objects of arrays", function()
        round_trip({ name = "ada", roles = { "admin", "dev" }, age = 36, active = true,
                     address = { city = "London", lines = { "1 Street", "Flat 2" } } })
        round_trip({ { id = 1, tags = { "a" } }, { id = 2, tags = {} }, { id = 3 } })
        round_trip({ { { { { "deep" } } } } })
        round_trip({ true, false, "x", 1, 2.5 })
      end)

      it("empty tables, alone and nested", function()
        round_trip({})
        round_trip({ {} })
        round_trip({ a = {}, b = { {}, {} }, c = { d = {} } })
      end)

      it("numbers inside tables, equal (==), integers exact up to 2^53", function()
        local t = { 0, 1, -1, 0.1, 1 / 3, -2.5, 1e300, -1e-300, 2 ^ 52 + 1, 2 ^ 53,
                    -(2 ^ 53), 123456789012345 }
        round_trip(t)
        local o = { big = 2 ^ 53, neg = -(2 ^ 53), frac = 0.000123, half = 0.5 }
        round_trip(o)
        round_trip({ 1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 2 ^ -1022,
                     4503599627370497.5, 0.30000000000000004 })
      end)

      it("object keys that look like numbers or are special stay strings", function()
        local t = { ["1"] = "one", ["2"] = "two", [""] = "empty", ["a.b"] = 1,
                    ["[3]"] = 2, ["with \"quotes\""] = 3, ["\1\2\31"] = 4 }
        s:set("v", t)
        local got = s:get("v")
        assert.are.same(t, got)
        assert.is_nil(got[1])
        assert.are.equal("one", got["1"])
      end)

      it("strings inside tables with quotes, backslashes and control characters",
         function()
        local specials = "\"\\/\b\f\n\r\t\1\31\127 {}[],: \226\130\172 \\u0000 \\\" \\n"
        round_trip({ specials, { k = specials } })
      end)

      it("large values (8 MiB string, 100k-element table)", function()
        round_trip(string.rep("abcdefgh", 1024 * 1024), "8 MiB string")
        local t = {}
        for i = 1, 100000 do t[i] = { i = i, s = "x" .. i } end
        s:set("big", t)
        local got = s:get("big")
        assert.are.equal(100000, #got)
        assert.are.same({ i = 77777, s = "x77777" }, got[77777])
      end)

      it("large arrays", function()
        local t = {}
        for i = 1, 10000 do t[i] = i end
        round_trip(t)
      end)

      it("a table that uses the same sub-table twice (no cycle) as two copies",
         function()
        local shared = { x = 1 }
        s:set("v", { a = shared, b = shared, list = { shared, shared } })
        local got = s:get("v")
        assert.are.same({ a = { x = 1 }, b = { x = 1 }, list = { { x = 1 }, { x = 1 } } }, got)
        assert.are_not.equal(got.a, got.b)
        got.a.x = 2
        assert.are.equal(1, got.b.x)
      end)

      it("nesting up to 100 deep", function()
        local t = H.nest(100)
        assert.is_true(s:set("v", t))
        local got, depth = s:get("v"), 0
        while type(got) == "table" do
          depth = depth + 1
          got = got[1]
        end
        assert.are.equal(100, depth)
      end)

      it("a NUL byte in a string inside a table exactly, or refuses it", function()
        local v = { s = "a\0b", list = { "\0", "x\0\0y" } }
        local ok, err = pcall(s.set, s, "v", v)
        if ok then
          assert.are.same(v, s:get("v"))
        else
          H.check_error("INVALID_VALUE", err)
          assert.is_nil(s:get("v"))
        end
      end)
    end)
  end)

  -------------------------------------------------------------------------
  describe("del", function()
    it("returns true when it removed a live key, then false", function()
      s:set("k", "v")
      assert.is_true(s:del("k"))
      assert.is_nil(s:get("k"))
      assert.is_false(s:has("k"))
      assert.is_false(s:del("k"))
    end)

    it("returns false for a key that never existed", function()
      assert.is_false(s:del("never"))
    end)

    it("removes a key holding false", function()
      s:set("f", false)
      assert.is_true(s:del("f"))
      assert.is_false(s:has("f"))
    end)

    it("lets the key be set again, without its old ttl", function()
      s:set("k", 1, 10)
      s:del("k")
      s:set("k", 2)
      assert.are.equal(2, s:get("k"))
      assert.are.equal(math.huge, s:ttl("k"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("has", function()
    it("is true for a live key and false for an absent one", function()
      assert.is_false(s:has("k"))
      s:set("k", "v")
      assert.is_true(s:has("k"))
    end)

    it("is true for keys holding false and empty values", function()
      s:set("f", false)
      s:set("e", "")
      s:set("t", {})
      s:set("z", 0)
      for _, k in ipairs({ "f", "e", "t", "z" }) do assert.is_true(s:has(k), k) end
    end)
  end)

  -------------------------------------------------------------------------
  describe("expire", function()
    it("sets a ttl on a live key and returns true", function()
      s:set("k", "v")
      assert.is_true(s:expire("k", 10))
      local ttl = s:ttl("k")
      assert.is_true(ttl > 9 and ttl <= 10, tostring(ttl))
      assert.are.equal("v", s:get("k"))
    end)

    it("replaces an existing ttl, shorter or longer", function()
      s:set("k", "v", 100)
      assert.is_true(s:expire("k", 5))
      assert.is_true(s:ttl("k") <= 5)
      assert.is_true(s:expire("k", 1000))
      assert.is_true(s:ttl("k") > 999)
    end)

    it("accepts { ttl = seconds }", function()
      s:set("k", "v")
      assert.is_true(s:expire("k", { ttl = 20 }))
      assert.is_true(s:ttl("k") > 19)
    end)

    it("returns false for an absent key and creates nothing", function()
      assert.is_false(s:expire("absent", 10))
      assert.is_false(s:has("absent"))
      assert.are.equal(0, s:count())
    end)
  end)

  -------------------------------------------------------------------------
  describe("ttl", function()
    it("is math.huge for a key without ttl", function()
      s:set("k", "v")
      assert.are.equal(math.huge, s:ttl("k"))
    end)

    it("is nil for an absent key", function()
      assert.is_nil(s:ttl("absent"))
    end)

    it("is a float > 0 and at most the ttl given", function()
      s:set("k", "v", 10)
      local ttl = s:ttl("k")
      assert.are.equal("number", type(ttl))
      if H.has_int then assert.are.equal("float", math.type(ttl)) end
      assert.is_true(ttl > 9.5 and ttl <= 10, tostring(ttl))
    end)

    it("keeps fractions", function()
      s:set("k", "v", 2.5)
      local ttl = s:ttl("k")
      assert.is_true(ttl > 2.4 and ttl <= 2.5, tostring(ttl))
    end)
  end)

  -------------------------------------------------------------------------
  describe("incr", function()
    it("creates a missing key holding 1 by default", function()
      local r = s:incr("c")
      assert.are.equal(1, r)
      assert.are.equal(1, s:get("c"))
    end)

    it("treats an explicit nil `by` as the default 1", function()
      assert.are.equal(1, s:incr("c", nil))
      assert.are.equal(2, s:incr("c", nil, nil))
    end)

    it("creates a missing key holding `by`, and adds `by` to an existing one", function()
      assert.are.equal(5, s:incr("c", 5))
      assert.are.equal(12, s:incr("c", 7))
      assert.are.equal(12, s:get("c"))
    end)

    it("adds negative amounts and zero", function()
      assert.are.equal(-3, s:incr("c", -3))
      assert.are.equal(-3, s:incr("c", 0))
      assert.are.equal(7, s:incr("c", 10))
      assert.are.equal(0, s:incr("z", 0))
      assert.is_true(s:has("z"))
    end)

    it("returns an integer and stores an integer (Lua 5.4)", function()
      local r = s:incr("c", 2)
      if H.has_int then
        assert.are.equal("integer", math.type(r))
        assert.are.equal("integer", math.type(s:get("c")))
      end
    end)

    it("accepts a float `by` with an integral value", function()
      assert.are.equal(2, s:incr("c", 2.0))
      assert.are.equal(-1, s:incr("c", -3.0))
      if H.has_int then assert.are.equal("integer", math.type(s:incr("c", 1.0))) end
    end)

    it("accepts a large integral float `by` within the range (Lua 5.4)", function()
      if not H.has_int then return end
      local r = s:incr("big", 2.0 ^ 60)
      assert.are.equal(math.tointeger(2 ^ 60), r)
      assert.are.equal("integer", math.type(r))
    end)

    it("adds to an integer stored with set", function()
      s:set("c", 41)
      assert.are.equal(42, s:incr("c"))
    end)

    it("reaches the edges of the range exactly", function()
      s:set("c", H.MAXINT - 1)
      assert.are.equal(H.MAXINT, s:incr("c"))
      s:set("d", H.MININT + 1)
      assert.are.equal(H.MININT, s:incr("d", -1))
    end)

    it("applies the ttl only when it creates the key", function()
      s:incr("c", 1, 10)
      local ttl = s:ttl("c")
      assert.is_true(ttl > 9 and ttl <= 10)
      s:incr("c", 1, 1000)
      assert.is_true(s:ttl("c") <= 10, "incr must not extend the window")
      s:incr("n", 1)
      s:incr("n", 1, 10)
      assert.are.equal(math.huge, s:ttl("n"), "incr must not add a ttl to a live key")
      s:incr("t", 1, { ttl = 30 })
      assert.is_true(s:ttl("t") > 29)
    end)

    it("keeps the ttl of a key created by set", function()
      s:set("c", 1, 10)
      s:incr("c")
      local ttl = s:ttl("c")
      assert.is_true(ttl > 9 and ttl <= 10)
    end)
  end)

  -------------------------------------------------------------------------
  describe("setnx", function()
    it("stores when no live key exists and returns true", function()
      assert.is_true(s:setnx("k", "v"))
      assert.are.equal("v", s:get("k"))
    end)

    it("does not overwrite a live key and returns false", function()
      s:set("k", "old")
      assert.is_false(s:setnx("k", "new"))
      assert.are.equal("old", s:get("k"))
    end)

    it("treats a key holding false as live", function()
      s:set("k", false)
      assert.is_false(s:setnx("k", true))
      assert.is_false(s:get("k"))
    end)

    it("stores again after the key was deleted", function()
      s:setnx("k", 1)
      s:del("k")
      assert.is_true(s:setnx("k", 2))
      assert.are.equal(2, s:get("k"))
    end)

    it("applies its ttl when it stores, and leaves a live key's ttl alone", function()
      assert.is_true(s:setnx("lock", true, { ttl = 30 }))
      local ttl = s:ttl("lock")
      assert.is_true(ttl > 29 and ttl <= 30)
      assert.is_false(s:setnx("lock", true, 1000))
      assert.is_true(s:ttl("lock") <= 30)
      s:set("plain", 1)
      assert.is_false(s:setnx("plain", 2, 5))
      assert.are.equal(math.huge, s:ttl("plain"))
    end)

    it("stores tables", function()
      assert.is_true(s:setnx("t", { a = { 1 } }))
      assert.are.same({ a = { 1 } }, s:get("t"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("namespace", function()
    it("returns a store; the same path opened twice reaches the same keys", function()
      local a1 = kv:namespace("a")
      local a2 = kv:namespace("a")
      a1:set("k", "v")
      assert.are.equal("v", a2:get("k"))
      local n1 = kv:namespace("a"):namespace("b")
      local n2 = a2:namespace("b")
      n1:set("deep", 1)
      assert.are.equal(1, n2:get("deep"))
      assert.are.equal(1, kv:namespace("a"):namespace("b"):get("deep"))
    end)

    it("isolates the same key in two namespaces", function()
      local x, y = kv:namespace("x"), kv:namespace("y")
      x:set("k", "in x")
      y:set("k", "in y")
      assert.are.equal("in x", x:get("k"))
      assert.are.equal("in y", y:get("k"))
      x:del("k")
      assert.are.equal("in y", y:get("k"))
    end)

    it("never lets ns(\"a\") key \"bc\" meet ns(\"ab\") key \"c\"", function()
      local a, ab = kv:namespace("a"), kv:namespace("ab")
      a:set("bc", "a/bc")
      assert.is_nil(ab:get("c"))
      assert.is_false(ab:has("c"))
      ab:set("c", "ab/c")
      assert.are.equal("a/bc", a:get("bc"))
      assert.are.equal("ab/c", ab:get("c"))
      assert.are.equal(1, a:count())
      assert.are.equal(1, ab:count())
    end)

    it("isolates paths whatever bytes names and keys contain", function()
      -- Every pair below would collide under a naive "name .. sep .. key" encoding.
      local pairs_ = {
        { { "a" }, "b:c" }, { { "a:b" }, "c" }, { { "a", "b" }, "c" },
        { { "a\0b" }, "c" }, { { "a" }, "b\0c" }, { { "a", "b\0" }, "c" },
        { { "a/b" }, "c" }, { { "a" }, "b/c" }, { { "a", "b" }, "/c" },
        { { "a." }, "b" }, { { "a" }, ".b" }, { { "\1a" }, "b" }, { { "\1" }, "ab" },
      }
      local stores, per_path = {}, {}
      for i, p in ipairs(pairs_) do
        local st, id = kv, ""
        for _, name in ipairs(p[1]) do
          st = st:namespace(name)
          id = id .. #name .. ":" .. name .. ";"
        end
        stores[i] = st
        st:set(p[2], i)
        per_path[id] = (per_path[id] or 0) + 1
        p.id = id
      end
      for i, p in ipairs(pairs_) do
        assert.are.equal(i, stores[i]:get(p[2]), "path #" .. i)
        assert.are.equal(per_path[p.id], stores[i]:count(), "path #" .. i)
      end
    end)

    it("isolates a parent from its children", function()
      local p = kv:namespace("p")
      local c = p:namespace("c")
      p:set("k", "parent")
      c:set("k", "child")
      assert.are.equal("parent", p:get("k"))
      assert.are.equal("child", c:get("k"))
      -- a child named like a key of the parent is still a different thing
      p:set("c", "a key named c")
      assert.are.equal("child", c:get("k"))
      assert.is_nil(c:get("c"))
      assert.are.equal(2, p:count())
      assert.are.equal(1, c:count())
    end)

    it("accepts names of 1 and 65535 bytes, and any bytes", function()
      local one = kv:namespace("x")
      local long = kv:namespace(string.rep("n", 65535))
      local bin = kv:namespace("\0\1\255")
      one:set("k", 1)
      long:set("k", 2)
      bin:set("k", 3)
      assert.are.equal(2, kv:namespace(string.rep("n", 65535)):get("k"))
      assert.are.equal(3, kv:namespace("\0\1\255"):get("k"))
      assert.are.equal(1, one:get("k"))
    end)

    it("s:namespace is the same as kv:namespace for the same path", function()
      local a = kv:namespace("a")
      a:namespace("b"):namespace("c"):set("k", "abc")
      assert.are.equal("abc", kv:namespace("a"):namespace("b"):namespace("c"):get("k"))
      assert.is_nil(kv:namespace("b"):namespace("c"):get("k"))
      assert.is_nil(kv:namespace("c"):get("k"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("keys", function()
    local function collect(st)
      local seen, list = {}, {}
      for k in st:keys() do
        seen[k] = (seen[k] or 0) + 1
        list[#list + 1] = k
      end
      return seen, list
    end

    it("yields nothing for an empty namespace", function()
      local _, list = collect(s)
      assert.are.equal(0, #list)
    end)

    it("yields every live key of this namespace exactly once, as strings", function()
      s:set("a", 1)
      s:set("b", { 2 })
      s:set("a\0b", false)
      s:set(42, "int key")
      local seen, list = collect(s)
      assert.are.equal(4, #list)
      assert.are.same({ a = 1, b = 1, ["a\0b"] = 1, ["42"] = 1 }, seen)
      for _, k in ipairs(list) do assert.are.equal("string", type(k)) end
    end)

    it("does not yield keys of child namespaces or of other namespaces", function()
      s:set("mine", 1)
      s:namespace("child"):set("theirs", 1)
      kv:namespace("other"):set("other", 1)
      kv:namespace("stor"):set("ex", 1)   -- "stor"/"ex" vs "store"/...
      local seen, list = collect(s)
      assert.are.same({ mine = 1 }, seen)
      assert.are.equal(1, #list)
      local cseen = collect(s:namespace("child"))
      assert.are.same({ theirs = 1 }, cseen)
    end)

    it("walks a large namespace", function()
      for i = 1, 5000 do s:set("k" .. i, i) end
      local seen, list = collect(s)
      assert.are.equal(5000, #list)
      for i = 1, 5000 do assert.are.equal(1, seen["k" .. i], "k" .. i) end
    end)

    it("does not yield deleted keys", function()
      for i = 1, 10 do s:set("k" .. i, i) end
      for i = 1, 10, 2 do s:del("k" .. i) end
      local seen, list = collect(s)
      assert.are.equal(5, #list)
      for i = 2, 10, 2 do assert.are.equal(1, seen["k" .. i]) end
    end)

    it("lets the loop delete the key it was just given", function()
      for i = 1, 500 do s:set("k" .. i, i) end
      local seen, n = {}, 0
      for k in s:keys() do
        assert.is_nil(seen[k], "returned twice: " .. k)
        seen[k] = true
        n = n + 1
        assert.is_true(s:del(k))
      end
      assert.are.equal(500, n)
      assert.are.equal(0, s:count())
    end)

    it("ends cleanly when the namespace is cleared during the walk", function()
      for i = 1, 100 do s:set("k" .. i, i) end
      local n = 0
      for _ in s:keys() do
        n = n + 1
        if n == 10 then s:clear() end
        assert(n < 1000)
      end
      assert.is_true(n >= 10 and n <= 100)
      assert.are.equal(0, s:count())
    end)

    it("can be left early, and the store is usable during and after the walk", function()
      for i = 1, 100 do s:set("k" .. i, i) end
      local n = 0
      for k in s:keys() do
        n = n + 1
        assert.are.equal("number", type(s:get(k)))   -- no lock held across the walk
        if n == 10 then break end
      end
      s:set("after", 1)
      assert.are.equal(1, s:get("after"))
      assert.are.equal(101, s:count())
    end)

    it("returns a key present throughout exactly once while keys are added, replaced "
       .. "and deleted during the walk", function()
      local N = 1000
      for i = 1, N do
        s:set("stable" .. i, i)
        s:set("gone" .. i, i)
      end
      local seen, n = {}, 0
      for k in s:keys() do
        n = n + 1
        seen[k] = (seen[k] or 0) + 1
        assert(n < 20 * N, "keys() does not end")
        if n <= 2 * N then
          -- delete keys not yet (or already) seen, add new ones, replace stable values
          s:del("gone" .. ((n * 7) % N + 1))
          s:set("new" .. n, n)
          s:set("new" .. n .. "b", n)
          s:set("stable" .. ((n * 13) % N + 1), { replaced = n })
        end
      end
      for i = 1, N do
        assert.are.equal(1, seen["stable" .. i], "stable" .. i .. " seen "
                         .. tostring(seen["stable" .. i]) .. " times")
      end
      for k in pairs(seen) do
        assert.truthy(k:match("^stable%d+$") or k:match("^gone%d+$") or k:match("^new%d+b?$"),
                      "unexpected key " .. k)
      end
    end)

    it("returns a key present throughout exactly once while the namespace grows a lot",
       function()
      local N = 200
      for i = 1, N do s:set("stable" .. i, i) end
      local seen, n = {}, 0
      for k in s:keys() do
        n = n + 1
        seen[k] = (seen[k] or 0) + 1
        if n <= N then
          for j = 1, 50 do s:set(("grow%d_%d"):format(n, j), j) end  -- forces rehashes
        end
        assert(n < 100000, "keys() does not end")
      end
      for i = 1, N do
        assert.are.equal(1, seen["stable" .. i], "stable" .. i)
      end
    end)

    -- a walk begun before close() and stepped after it is "closed" (the memory and shared
    -- drivers handed out the rest of the batch they had read; the redis one, of its SCAN page)
    it("is STORE_OPERATION_FAILED (\"closed\") at the next step after close()", function()
      for i = 1, 5 do
        s:set("k" .. i, i)
        s:namespace("c" .. i):set("x", i)   -- (a redis namespace exists while it holds keys)
      end
      local keys, names = s:keys(), s:namespaces()
      assert.is_string(keys())
      assert.is_string(names())
      kv:close()
      local err = H.assert_error_code("STORE_OPERATION_FAILED", keys)
      assert.are.equal("closed", err.reason)
      err = H.assert_error_code("STORE_OPERATION_FAILED", names)
      assert.are.equal("closed", err.reason)
    end)
  end)

  -------------------------------------------------------------------------
  describe("many keys and namespaces", function()
    it("50 000 keys: get, count, keys and clear agree", function()
      local N = 50000
      for i = 1, N do s:set("key:" .. i, i) end
      assert.are.equal(N, s:count())
      for i = 1, N, 97 do assert.are.equal(i, s:get("key:" .. i)) end
      local n = 0
      for _ in s:keys() do n = n + 1 end
      assert.are.equal(N, n)
      for i = 1, N, 2 do s:del("key:" .. i) end
      assert.are.equal(N / 2, s:count())
      assert.are.equal(N / 2, s:clear())
      assert.are.equal(0, s:count())
    end)

    it("a 65535-byte key in a 65535-byte namespace", function()
      local ln = kv:namespace(string.rep("n", 65535))
      local lk = string.rep("k", 65535)
      ln:set(lk, "v")
      assert.are.equal("v", ln:get(lk))
      assert.are.equal(1, ln:count())
      for k in ln:keys() do assert.are.equal(lk, k) end
      assert.is_nil(ln:get(string.rep("k", 65534)))
    end)

    it("namespaces nested 100 deep, cleared from the top", function()
      local root = kv:namespace("root")
      local st = root
      for i = 1, 100 do
        st = st:namespace("d" .. i)
        st:set("k", i)
      end
      assert.are.equal(100, st:get("k"))
      assert.are.equal(100, root:clear())
      assert.is_nil(st:get("k"))
    end)

    it("clear() of a parent with 1 000 child namespaces", function()
      local p = kv:namespace("wide")
      for i = 1, 1000 do p:namespace("c" .. i):set("k", i) end
      kv:namespace("wide2"):set("k", "sibling")
      assert.are.equal(1000, p:clear())
      assert.is_nil(p:namespace("c500"):get("k"))
      assert.are.equal("sibling", kv:namespace("wide2"):get("k"))
    end)

    -- redis: SCAN walks the whole database (docs/redis.md, "keys, count, clear")
    H.except("redis", "SCAN's cost grows with the database")(
      "keys(), count() and clear() of a small namespace cost what it holds", function()
      local function small_ops(store)
        local t0 = os.clock()
        for i = 1, 300 do
          local st = store:namespace("small")
          st:set("a", i)
          st:set("b", i)
          local n = 0
          for _ in st:keys() do n = n + 1 end
          assert(n == 2 and st:count() == 2)
          assert(st:clear() == 2)
        end
        return os.clock() - t0
      end
      local empty_kv = H.driver()
      local base = small_ops(empty_kv)
      empty_kv:close()
      local big = kv:namespace("big")
      for i = 1, 200000 do big:set(i, i) end
      local t = small_ops(kv)
      assert.is_true(t < 20 * base + 0.05,
                     ("small-namespace ops took %.3fs next to 200k keys, %.3fs alone")
                     :format(t, base))
      assert.are.equal(200000, big:count())
    end)

    it("2 000 namespaces stay apart", function()
      for i = 1, 2000 do kv:namespace("ns" .. i):set("k", i) end
      for i = 1, 2000 do
        local st = kv:namespace("ns" .. i)
        assert.are.equal(i, st:get("k"))
        assert.are.equal(1, st:count())
      end
    end)
  end)

  -------------------------------------------------------------------------
  describe("count", function()
    it("is 0 for an empty namespace", function()
      assert.are.equal(0, s:count())
    end)

    it("counts the live keys of this namespace only", function()
      s:set("a", 1)
      s:set("b", 2)
      s:namespace("child"):set("c", 3)
      kv:namespace("other"):set("d", 4)
      assert.are.equal(2, s:count())
      assert.are.equal(1, s:namespace("child"):count())
      s:set("a", "replaced")
      assert.are.equal(2, s:count())
      s:del("a")
      assert.are.equal(1, s:count())
    end)
  end)

  -------------------------------------------------------------------------
  describe("clear", function()
    it("removes every key of the namespace and returns how many", function()
      for i = 1, 10 do s:set("k" .. i, i) end
      assert.are.equal(10, s:clear())
      assert.are.equal(0, s:count())
      assert.is_nil(s:get("k1"))
      assert.are.equal(0, s:clear())
    end)

    it("removes the keys of all nested namespaces too, counting them", function()
      s:set("a", 1)
      local c = s:namespace("c")
      c:set("b", 2)
      c:set("b2", 2)
      local g = c:namespace("g")
      g:set("d", 3)
      assert.are.equal(4, s:clear())
      assert.are.equal(0, c:count())
      assert.are.equal(0, g:count())
      assert.is_nil(g:get("d"))
      assert.is_nil(s:namespace("c"):namespace("g"):get("d"))
    end)

    it("leaves the parent, siblings and namespaces with a common prefix alone", function()
      local p = kv:namespace("p")
      local a = p:namespace("a")
      local ab = p:namespace("ab")
      local sib = p:namespace("b")
      local top_a = kv:namespace("a")
      p:set("pk", 1)
      a:set("k", 1)
      a:namespace("x"):set("k", 1)
      ab:set("k", 2)
      sib:set("k", 3)
      top_a:set("k", 4)
      assert.are.equal(2, a:clear())
      assert.are.equal(1, p:get("pk"))
      assert.are.equal(2, ab:get("k"))
      assert.are.equal(3, sib:get("k"))
      assert.are.equal(4, top_a:get("k"))
    end)

    it("leaves the namespace usable", function()
      s:set("k", 1)
      s:namespace("c"):set("k", 1)
      s:clear()
      s:set("k", 2)
      s:namespace("c"):set("k", 3)
      assert.are.equal(2, s:get("k"))
      assert.are.equal(3, s:namespace("c"):get("k"))
      assert.are.equal(1, s:count())
    end)
  end)

  -------------------------------------------------------------------------
  describe("key rules", function()
    it("accepts keys of 1 and of 65535 bytes", function()
      local long = H.key_of(65535)
      s:set("k", "short")
      s:set(long, "long")
      assert.are.equal("short", s:get("k"))
      assert.are.equal("long", s:get(long))
      assert.is_nil(s:get(H.key_of(65534)))
      local seen = {}
      for k in s:keys() do seen[#seen + 1] = #k end
      table.sort(seen)
      assert.are.same({ 1, 65535 }, seen)
    end)

    it("takes an integer key as its decimal string", function()
      s:set(42, "int")
      assert.are.equal("int", s:get("42"))
      s:set("-7", "neg")
      assert.are.equal("neg", s:get(-7))
      s:set(0, "zero")
      assert.are.equal("zero", s:get("0"))
      assert.is_true(s:has(42))
      assert.is_true(s:del("42"))
      assert.is_false(s:has(42))
      if H.has_int then
        s:set(math.maxinteger, "max")
        assert.are.equal("max", s:get(tostring(math.maxinteger)))
        s:set(math.mininteger, "min")
        assert.are.equal("min", s:get(tostring(math.mininteger)))
      else
        s:set(2 ^ 53, "big")
        assert.are.equal("big", s:get("9007199254740992"))
      end
      local seen = {}
      for k in s:keys() do seen[k] = true end
      assert.is_true(seen["-7"])
      assert.is_true(seen["0"])
    end)

    it("does not confuse number-like strings with other integers", function()
      s:set("007", "string 007")
      s:set(7, "integer 7")
      s:set("7.0", "string 7.0")
      s:set("+7", "string +7")
      assert.are.equal("integer 7", s:get("7"))
      assert.are.equal("string 007", s:get("007"))
      assert.are.equal("string 7.0", s:get("7.0"))
      assert.are.equal("string +7", s:get("+7"))
      assert.are.equal(4, s:count())
      if not H.has_int then
        -- numbers are doubles: an integral one is still its decimal string
        s:set(1e15, "1e15")
        assert.are.equal("1e15", s:get("1000000000000000"))
      end
    end)

    it("keeps NUL and every other byte in keys", function()
      s:set("a\0b", 1)
      s:set("a\0c", 2)
      s:set("a", 3)
      s:set("\0", 4)
      s:set("\0\0", 5)
      assert.are.equal(1, s:get("a\0b"))
      assert.are.equal(2, s:get("a\0c"))
      assert.are.equal(3, s:get("a"))
      assert.are.equal(4, s:get("\0"))
      assert.are.equal(5, s:get("\0\0"))
      for i = 0, 255 do s:set(string.char(i), i) end
      for i = 0, 255 do assert.are.equal(i, s:get(string.char(i))) end
      assert.are.equal(259, s:count())
    end)
  end)
end)
