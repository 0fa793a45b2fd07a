-- spec/03-bad_inputs_spec.lua: every kind of bad input, method by method.
--
-- Each case checks the exact error code (API.md "Errors") AND that the store is
-- unchanged afterwards: the driver is seeded with keys in three namespaces, snapshotted,
-- the bad call is made, and every key / value / ttl presence is compared again.

local H = require("helpers")
local zeltkv = require("zeltkv")

local function cyclic()
  local t = { a = 1 }
  t.self = t
  return t
end

local function deep_cyclic()
  local t = { b = { c = {} } }
  t.b.c.back = t
  return t
end

-- Bad keys: INVALID_KEY for every keyed method.
local BAD_KEYS = {
  { "nil", nil },
  { "true", true },
  { "false", false },
  { "a float 1.5", 1.5 },
  { "NaN", H.NAN },
  { "inf", H.INF },
  { "a table", {} },
  { "a function", function() end },
  { "a userdata", io.stdout },
  { "a thread", coroutine.create(function() end) },
  { "the empty string", "" },
  { "65536 bytes", H.key_of(65536) },
  { "a very long key (1 MiB)", H.key_of(1024 * 1024) },
}

-- Bad ttls: for set, setnx, expire and incr.
local BAD_TTLS = {
  { "0", 0, "INVALID_TTL" },
  { "-1", -1, "INVALID_TTL" },
  { "-0.5", -0.5, "INVALID_TTL" },
  { "-0.0", -0.0, "INVALID_TTL" },
  { "NaN", H.NAN, "INVALID_TTL" },
  { "inf", H.INF, "INVALID_TTL" },
  { "-inf", -H.INF, "INVALID_TTL" },
  { "the string \"10\"", "10", "INVALID_TTL" },
  { "true", true, "INVALID_TTL" },
  { "a function", function() end, "INVALID_TTL" },
  { "{} (ttl missing)", {}, "INVALID_TTL" },
  { "{ ttl = 0 }", { ttl = 0 }, "INVALID_TTL" },
  { "{ ttl = -5 }", { ttl = -5 }, "INVALID_TTL" },
  { "{ ttl = \"x\" }", { ttl = "x" }, "INVALID_TTL" },
  { "{ ttl = \"10\" }", { ttl = "10" }, "INVALID_TTL" },
  { "{ ttl = NaN }", { ttl = H.NAN }, "INVALID_TTL" },
  { "{ ttl = inf }", { ttl = H.INF }, "INVALID_TTL" },
  { "{ ttl = {} }", { ttl = {} }, "INVALID_TTL" },
  { "{ foo = 1 } (unknown option)", { foo = 1 }, "INVALID_VALUE" },
  { "{ ttl = 10, foo = 1 } (unknown option)", { ttl = 10, foo = 1 }, "INVALID_VALUE" },
}

-- Values that cannot be stored: INVALID_VALUE for set and setnx.
local BAD_VALUES = {
  { "nil", nil },
  { "NaN", H.NAN },
  { "inf", H.INF },
  { "-inf", -H.INF },
  { "a function", function() end },
  { "a userdata", io.stdout },
  { "a thread", coroutine.create(function() end) },
  { "a cyclic table", cyclic() },
  { "a table cyclic deep inside", deep_cyclic() },
  { "a table with mixed keys", { 1, 2, x = 3 } },
  { "a sparse array", { [1] = "a", [3] = "c" } },
  { "an array starting at 2", { [2] = "b" } },
  { "an array with index 0", { [0] = "z", "a" } },
  { "a negative index", { [-1] = "x" } },
  { "a boolean key", { [true] = 1 } },
  { "a float key", { [1.5] = 1 } },
  { "a table key", { [{}] = 1 } },
  { "nesting 101 deep", H.nest(101) },
  { "nesting 1000 deep", H.nest(1000) },
  { "NaN inside a table", { x = H.NAN } },
  { "inf inside a table", { 1, H.INF } },
  { "-inf deep inside a table", { a = { b = { -H.INF } } } },
  { "a function inside a table", { items = { 1, 2, function() end } } },
  { "a userdata inside a table", { f = io.stdout } },
  { "a thread inside a table", { { co = coroutine.create(function() end) } } },
  { "a mixed table inside a table", { list = { { 1, k = 2 } } } },
}

describe("bad inputs", function()
  local kv, stores, a, snap

  before_each(function()
    kv = H.driver()
    stores = H.seed(kv)
    a = stores[1]
    snap = H.snapshot(stores, kv)
  end)

  after_each(function()
    H.reset_clock()
    kv:close()
  end)

  -- The bad call raises `code` and the store is as it was.
  local function rejects(code, fn, ...)
    local err = H.assert_error_code(code, fn, ...)
    H.assert_unchanged(snap)
    return err
  end

  -------------------------------------------------------------------------
  describe("keys", function()
    local KEYED = {
      { "get", function(k) return a:get(k) end },
      { "set", function(k) return a:set(k, "v") end },
      { "del", function(k) return a:del(k) end },
      { "has", function(k) return a:has(k) end },
      { "expire", function(k) return a:expire(k, 10) end },
      { "ttl", function(k) return a:ttl(k) end },
      { "incr", function(k) return a:incr(k, 1) end },
      { "setnx", function(k) return a:setnx(k, "v") end },
    }
    for _, m in ipairs(KEYED) do
      describe(m[1], function()
        for _, c in ipairs(BAD_KEYS) do
          it("rejects " .. c[1] .. " as a key with INVALID_KEY", function()
            rejects("INVALID_KEY", m[2], c[2])
          end)
        end
        -- no argument after self at all: the key is missing ("no value", or nil where a
        -- Lua front end passes it on), never self's metatable (the C get keeps it on the
        -- stack above its arguments)
        it("rejects a call without a key with INVALID_KEY, saying it is missing", function()
          local err = rejects("INVALID_KEY", function() return a[m[1]](a) end)
          local msg = tostring(err.message or err)
          assert.truthy(msg:find("got no value", 1, true) or msg:find("got nil", 1, true), msg)
        end)
      end)
    end

    it("get ignores arguments after the key", function()
      a:set("k-extra", "v")
      assert.are.equal("v", a:get("k-extra", "more", {}))
      assert.are.equal(1, select("#", a:get("k-extra", nil, nil, 4)))
      assert.is_nil(a:get("k-none", "more"))
      a:del("k-extra")
    end)
  end)

  -------------------------------------------------------------------------
  describe("namespace", function()
    local BAD_NAMES = {
      { "\"\"", "", "EMPTY_NAMESPACE" },
      { "nil", nil, "INVALID_KEY" },
      { "a number", 42, "INVALID_KEY" },
      { "true", true, "INVALID_KEY" },
      { "a table", {}, "INVALID_KEY" },
      { "a function", function() end, "INVALID_KEY" },
      { "65536 bytes", H.key_of(65536, "n"), "INVALID_KEY" },
    }
    for _, c in ipairs(BAD_NAMES) do
      it("kv:namespace rejects " .. c[1] .. " with " .. c[3], function()
        rejects(c[3], function() return kv:namespace(c[2]) end)
      end)
      it("s:namespace rejects " .. c[1] .. " with " .. c[3], function()
        rejects(c[3], function() return a:namespace(c[2]) end)
      end)
    end
  end)

  -------------------------------------------------------------------------
  describe("ttl arguments", function()
    for _, c in ipairs(BAD_TTLS) do
      local label = c[1] .. " with " .. c[3]
      it("set rejects ttl " .. label .. " (new key and existing key)", function()
        rejects(c[3], function() return a:set("new", "v", c[2]) end)
        rejects(c[3], function() return a:set("str", "v", c[2]) end)
        rejects(c[3], function() return a:set("ttl", "v", c[2]) end)
      end)
      it("setnx rejects ttl " .. label, function()
        rejects(c[3], function() return a:setnx("new", "v", c[2]) end)
      end)
      it("expire rejects ttl " .. label .. " (live key and absent key)", function()
        rejects(c[3], function() return a:expire("str", c[2]) end)
        rejects(c[3], function() return a:expire("ttl", c[2]) end)
        rejects(c[3], function() return a:expire("absent", c[2]) end)
      end)
      it("incr rejects ttl " .. label .. " (missing key and existing key)", function()
        rejects(c[3], function() return a:incr("newcounter", 1, c[2]) end)
        rejects(c[3], function() return a:incr("counter", 1, c[2]) end)
      end)
    end

    it("expire rejects a missing ttl with INVALID_TTL", function()
      rejects("INVALID_TTL", function() return a:expire("str") end)
      rejects("INVALID_TTL", function() return a:expire("str", nil) end)
    end)
  end)

  -------------------------------------------------------------------------
  describe("values", function()
    for _, c in ipairs(BAD_VALUES) do
      it("set rejects " .. c[1] .. " with INVALID_VALUE (new and existing key)", function()
        rejects("INVALID_VALUE", function() return a:set("new", c[2]) end)
        rejects("INVALID_VALUE", function() return a:set("tbl", c[2]) end)
        rejects("INVALID_VALUE", function() return a:set("ttl", c[2], 10) end)
      end)
      it("setnx rejects " .. c[1] .. " with INVALID_VALUE", function()
        rejects("INVALID_VALUE", function() return a:setnx("new", c[2]) end)
      end)
    end

    it("say where the bad value is: value.items[3]", function()
      local err = rejects("INVALID_VALUE", function()
        return a:set("new", { items = { 1, 2, function() end } })
      end)
      assert.truthy(err.message:find("value.items[3]", 1, true), err.message)
    end)

    it("say where the bad value is, deeper: value.a.b[1]", function()
      local err = rejects("INVALID_VALUE", function()
        return a:set("new", { a = { b = { H.NAN } } })
      end)
      assert.truthy(err.message:find("value.a.b[1]", 1, true), err.message)
    end)

    it("say where a bad top-level value is: value", function()
      local err = rejects("INVALID_VALUE", function() return a:set("new", function() end) end)
      assert.truthy(err.message:find("value", 1, true), err.message)
    end)

    -- Values the encoding may not keep: they round-trip exactly or are INVALID_VALUE.
    local EXACT_OR_REFUSED = {
      { "a NUL inside a string inside a table", { s = "a\0b", l = { "\0" } } },
      { "a NUL inside an object key", { ["a\0b"] = 1 } },
      { "invalid UTF-8 inside a table", { "\255\254", { k = "\192\128" } } },
    }
    if H.has_int then
      EXACT_OR_REFUSED[#EXACT_OR_REFUSED + 1] =
        { "an integer > 2^53 inside a table", { n = 9007199254740993 } }
      EXACT_OR_REFUSED[#EXACT_OR_REFUSED + 1] =
        { "math.maxinteger inside a table", { math.maxinteger } }
      EXACT_OR_REFUSED[#EXACT_OR_REFUSED + 1] =
        { "math.mininteger + 1 inside a table", { x = { math.mininteger + 1 } } }
    end
    for _, c in ipairs(EXACT_OR_REFUSED) do
      it("set keeps " .. c[1] .. " exactly or refuses it with INVALID_VALUE", function()
        local ok, err = pcall(a.set, a, "new", c[2])
        if ok then
          local got = a:get("new")
          assert.are.same(c[2], got)
          -- exact, not merely ==: compare integers as integers
          assert.are.equal(H.dump(c[2]), H.dump(got))
        else
          H.check_error("INVALID_VALUE", err)
          H.assert_unchanged(snap)
        end
      end)
    end
  end)

  -------------------------------------------------------------------------
  describe("incr", function()
    local BAD_BY = {
      { "1.5", 1.5 }, { "-0.5", -0.5 }, { "the string \"x\"", "x" },
      { "the string \"1\"", "1" }, { "true", true }, { "a table", {} },
      { "a function", function() end }, { "NaN", H.NAN }, { "inf", H.INF },
      { "-inf", -H.INF }, { "2^63 (a float out of range)", 2 ^ 63 },
      { "-2^64", -(2 ^ 64) }, { "1e300", 1e300 },
    }
    for _, c in ipairs(BAD_BY) do
      it("rejects `by` " .. c[1] .. " with INVALID_VALUE (missing and existing key)",
         function()
        rejects("INVALID_VALUE", function() return a:incr("newcounter", c[2]) end)
        rejects("INVALID_VALUE", function() return a:incr("counter", c[2]) end)
        rejects("INVALID_VALUE", function() return a:incr("newcounter", c[2], 10) end)
      end)
    end

    local NOT_INT = {
      { "a string", "str" }, { "a numeric string", nil }, { "a float", "float" },
      { "a boolean", "bool" }, { "a table", "tbl" },
    }
    for _, c in ipairs(NOT_INT) do
      it("rejects a key holding " .. c[1] .. " with INVALID_VALUE", function()
        local key = c[2]
        if not key then
          -- seeded by this test, so take a new snapshot
          a:set("numstr", "10")
          snap = H.snapshot(stores, kv)
          key = "numstr"
        end
        rejects("INVALID_VALUE", function() return a:incr(key) end)
        rejects("INVALID_VALUE", function() return a:incr(key, 0) end)
      end)
    end

    it("rejects a result above the range with INVALID_VALUE, keeping the value", function()
      rejects("INVALID_VALUE", function() return a:incr("max") end)
      rejects("INVALID_VALUE", function() return a:incr("max", H.MAXINT) end)
      rejects("INVALID_VALUE", function() return a:incr("counter", H.MAXINT) end)
      assert.are.equal(H.MAXINT, a:get("max"))
    end)

    it("rejects a result below the range with INVALID_VALUE, keeping the value", function()
      rejects("INVALID_VALUE", function() return a:incr("min", -1) end)
      rejects("INVALID_VALUE", function() return a:incr("min", H.MININT) end)
      assert.are.equal(H.MININT, a:get("min"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("driver options", function()
    local BAD_OPTS = {
      { "an unknown option", { foo = 1 } },
      { "an unknown option next to good ones", { gc_interval = 1, evict = "lru", bar = 2 } },
      { "a negative gc_interval", { gc_interval = -1 } },
      { "a NaN gc_interval", { gc_interval = H.NAN } },
      { "a string gc_interval", { gc_interval = "60" } },
      { "evict \"foo\"", { evict = "foo" } },
      { "evict \"LRU\"", { evict = "LRU" } },
      { "a non-string evict", { evict = 1 } },
      { "a negative max_bytes", { max_bytes = -1 } },
      { "a NaN max_bytes", { max_bytes = H.NAN } },
      { "a boolean max_bytes", { max_bytes = true } },
    }
    for _, c in ipairs(BAD_OPTS) do
      it("memory() rejects " .. c[1] .. " with INVALID_VALUE", function()
        rejects("INVALID_VALUE", zeltkv.memory, c[2])
      end)
    end

    it("the error for an unknown option names it", function()
      local err = rejects("INVALID_VALUE", zeltkv.memory, { frobnicate = true })
      assert.truthy(err.message:find("frobnicate", 1, true), err.message)
    end)
  end)

  -------------------------------------------------------------------------
  describe("a closed driver", function()
    local victim, vs, iter, ns_iter, root_iter, tx_iter, dict

    before_each(function()
      victim = H.driver()
      vs = victim:namespace("v")
      vs:set("k", 1)
      vs:set("j", 2)
      vs:namespace("child"):set("c", 3)
      iter = vs:keys()
      ns_iter = vs:namespaces()
      root_iter = victim:namespaces()
      -- an iterator made inside atomic (the redis driver walks a list it read there)
      victim:atomic(function() tx_iter = vs:keys() end)
      dict = vs:shdict()
      victim:close()
    end)

    -- Every method: "closed" whatever the arguments (API.md, kv:close()), the good ones and
    -- bad ones that a live driver refuses with another code (or a plain Lua error, for the
    -- hidden raw methods).  Only a wrong self stays a plain argument error (below).
    local PATH = os.tmpname()
    local CALLS = {
      { "kv:namespace", function() return victim:namespace("x") end },
      { "kv:namespace(\"\")", function() return victim:namespace("") end },
      { "kv:namespace({})", function() return victim:namespace({}) end },
      { "kv:namespaces", function() for _ in victim:namespaces() do end end },
      { "kv:atomic", function() return victim:atomic(function() end) end },
      { "kv:atomic(1)", function() return victim:atomic(1) end },
      { "kv:atomic()", function() return victim:atomic() end },
      { "kv:gc", function() return victim:gc() end },
      { "kv:stats", function() return victim:stats() end },
      { "kv:flush", function() return victim:flush() end },
      { "kv:dump", function() return victim:dump(PATH) end },
      { "kv:dump(1)", function() return victim:dump(1) end },
      { "kv:dump(path, { bogus = 1 })", function() return victim:dump(PATH, { bogus = 1 }) end },
      { "kv:load", function() return victim:load(PATH) end },
      { "kv:load(\"\")", function() return victim:load("") end },
      { "kv:load(path, 5)", function() return victim:load(PATH, 5) end },
      { "s:get", function() return vs:get("k") end },
      { "s:get(7)", function() return vs:get(7) end },
      { "s:get({})", function() return vs:get({}) end },
      { "s:get()", function() return vs:get() end },
      { "s:get(\"\")", function() return vs:get("") end },
      { "s:set", function() return vs:set("k", 2) end },
      { "s:set(k, { table })", function() return vs:set("k", { a = { 1, 2 } }, 10) end },
      { "s:set(k, function)", function() return vs:set("k", function() end) end },
      { "s:set(k, nil)", function() return vs:set("k", nil) end },
      { "s:set(k, cyclic)", function() return vs:set("k", cyclic()) end },
      { "s:set({}, 1)", function() return vs:set({}, 1) end },
      { "s:set(k, 1, -1)", function() return vs:set("k", 1, -1) end },
      { "s:set(k, 1, { bogus = 1 })", function() return vs:set("k", 1, { bogus = 1 }) end },
      { "s:del", function() return vs:del("k") end },
      { "s:del(nil)", function() return vs:del(nil) end },
      { "s:has", function() return vs:has("k") end },
      { "s:has(true)", function() return vs:has(true) end },
      { "s:expire", function() return vs:expire("k", 10) end },
      { "s:expire(k)", function() return vs:expire("k") end },
      { "s:expire(k, 0)", function() return vs:expire("k", 0) end },
      { "s:expire(1.5, 10)", function() return vs:expire(1.5, 10) end },
      { "s:ttl", function() return vs:ttl("k") end },
      { "s:ttl(H.NAN)", function() return vs:ttl(H.NAN) end },
      { "s:incr", function() return vs:incr("c") end },
      { "s:incr(c, 2, 10)", function() return vs:incr("c", 2, 10) end },
      { "s:incr(c, \"x\")", function() return vs:incr("c", "x") end },
      { "s:incr(c, 1.5)", function() return vs:incr("c", 1.5) end },
      { "s:incr(c, 1, 0)", function() return vs:incr("c", 1, 0) end },
      { "s:incr(io.stdout)", function() return vs:incr(io.stdout) end },
      { "s:setnx", function() return vs:setnx("n", 1) end },
      { "s:setnx(n, H.INF)", function() return vs:setnx("n", H.INF) end },
      { "s:setnx(n, 1, \"10\")", function() return vs:setnx("n", 1, "10") end },
      { "s:namespace", function() return vs:namespace("child") end },
      { "s:namespace(\"\")", function() return vs:namespace("") end },
      { "s:namespace(5)", function() return vs:namespace(5) end },
      { "s:atomic", function() return vs:atomic(function() end) end },
      { "s:atomic(\"fn\")", function() return vs:atomic("fn") end },
      { "s:keys", function() for _ in vs:keys() do end end },
      { "s:namespaces", function() for _ in vs:namespaces() do end end },
      { "s:count", function() return vs:count() end },
      { "s:clear", function() return vs:clear() end },
      { "s:shdict", function() return vs:shdict() end },
      { "a keys() iterator made before close", function() return iter() end },
      { "a namespaces() iterator made before close", function() return ns_iter() end },
      { "a kv:namespaces() iterator made before close", function() return root_iter() end },
      { "a keys() iterator made inside atomic, stepped after close",
        function() return tx_iter() end },
    }
    -- the hidden raw methods the drop-in dict and the LuaJIT front end are built on: the
    -- same rule (good arguments, then arguments their own checks refuse)
    local RAW = {
      { "_rawget", { "k" }, { {} } },
      { "_rawset", { "k", 1, "v", 0, 0, 0 }, { "k", "x" } },
      { "_incr_num", { "k", 1, true, 0, 0 }, { "k", "x" } },
      { "_expire_ms", { "k", 1000 }, { "k", "x" } },
      { "_ttl_coarse", { "k" }, { {} } },
      { "_flush_all", {}, { "junk" } },
      { "_flush_expired", { 0 }, { -1 } },
      { "_space", {}, { "junk" } },
      { "_list_push", { "l", true, "s", "v" }, { "l" } },
      { "_list_pop", { "l", true }, { {} } },
      { "_list_len", { "l" }, { {} } },
      { "_keys_list", { 0 }, { -1 } },
      { "_live", {}, { "junk" } },
    }
    for _, m in ipairs(RAW) do
      for i = 2, 3 do
        CALLS[#CALLS + 1] = {
          ("s:%s(%s arguments)"):format(m[1], i == 2 and "good" or "bad"),
          function()
            local f = vs[m[1]]
            assert(type(f) == "function", "no raw method " .. m[1])
            return f(vs, H.unpack(m[i]))
          end,
        }
      end
    end
    for _, c in ipairs(CALLS) do
      it(c[1] .. " raises STORE_OPERATION_FAILED (\"closed\")", function()
        local err = rejects("STORE_OPERATION_FAILED", c[2])
        assert.are.equal("closed", err.reason, err.message)
        assert.truthy(err.message:find("closed", 1, true), err.message)
      end)
    end
    os.remove(PATH)

    -- the drop-in dict (ngx.shared.DICT's methods) over the closed driver: a zeltkv error, not
    -- a result, for every call (also those whose arguments it would refuse before it reaches
    -- the store, and capacity(), which it remembers); only a call on something that is not a
    -- dict stays its own 'bad "zone" argument' error
    local function D(...) return { n = select("#", ...), ... } end
    local DICT_CALLS = {
      D("get", "k"), D("get", nil), D("get", ""), D("get_stale", "k"), D("get_stale", nil),
      D("set", "k", "v"), D("set", "k", {}), D("set", "k", "v", -1), D("set", nil, "v"),
      D("set", "k", "v", 0, "flags"), D("set", "k", nil),
      D("safe_set", "k", "v"), D("add", "k", "v"), D("add", "k", nil), D("safe_add", "k", "v"),
      D("replace", "k", "v"), D("replace", "k", nil), D("delete", "k"), D("delete", nil),
      D("incr", "n", 1), D("incr", "n", 1, 0), D("incr", "n", nil), D("incr", nil, 1),
      D("incr", "n", 1, "x"), D("incr", "n", 1, nil, 5),
      D("lpush", "l", "v"), D("lpush", "l", {}), D("lpush", nil, "v"), D("lpush", "l"),
      D("rpush", "l", "v"), D("lpop", "l"), D("lpop", nil), D("lpop"), D("rpop", "l"),
      D("llen", "l"), D("llen", {}), D("llen"),
      D("ttl", "k"), D("ttl", nil), D("expire", "k", 10), D("expire", "k"), D("expire", nil, 10),
      D("flush_all"), D("flush_expired"), D("flush_expired", "x"), D("flush_expired", 1, 2),
      D("get_keys"), D("get_keys", 0), D("get_keys", "x"), D("capacity"), D("free_space"),
    }
    for _, c in ipairs(DICT_CALLS) do
      local shown = {}
      for i = 2, c.n do shown[#shown + 1] = c[i] == nil and "nil" or H.dump(c[i]) end
      it(("dict:%s(%s) raises STORE_OPERATION_FAILED (\"closed\")"):format(c[1], table.concat(shown, ", ")),
        function()
          local err = rejects("STORE_OPERATION_FAILED", dict[c[1]], dict, H.unpack(c, 2, c.n))
          assert.are.equal("closed", err.reason, err.message)
        end)
    end

    -- a key the dict would turn into a string with tostring(): its __tostring (which raises
    -- here) is not run before the closed driver is seen, as no other argument is
    it("dict methods given a key whose __tostring raises are \"closed\" first", function()
      local key = setmetatable({}, { __tostring = function() error("raised by __tostring", 0) end })
      for _, c in ipairs({ D("get", key), D("get_stale", key), D("set", key, "v"),
                           D("safe_set", key, "v"), D("add", key, "v"), D("safe_add", key, "v"),
                           D("replace", key, "v"), D("delete", key), D("incr", key, 1),
                           D("ttl", key), D("expire", key, 10) }) do
        local err = rejects("STORE_OPERATION_FAILED", dict[c[1]], dict, H.unpack(c, 2, c.n))
        assert.are.equal("closed", err.reason, c[1] .. ": " .. tostring(err.message))
      end
    end)

    -- the same rule over random garbage: 600 calls of every method of the driver, a store
    -- and a dict with 0 to 4 arguments drawn from values each refused otherwise (tables
    -- whose every metamethod raises among them), seeded (ZELTKV_CLOSED_SEED)
    it("every method given random garbage is \"closed\"", function()
      local rng = require("support.rng")(tonumber(os.getenv("ZELTKV_CLOSED_SEED") or "") or 1)
      local mt = {}
      for _, m in ipairs({ "__index", "__newindex", "__len", "__eq", "__lt", "__le", "__concat",
                           "__call", "__tostring", "__pairs", "__unm", "__add", "__mul" }) do
        mt[m] = function() error("raised by the garbage", 0) end
      end
      local NONE = {}
      local garbage = { NONE, false, true, 0, -1, 1.5, -1 / H.INF, 2 ^ 53 + 1, 2 ^ 63, 1e300, H.INF,
                        -H.INF, H.NAN, "", "k", "\0", string.rep("x", 65536), {}, { ttl = 1 },
                        { ttl = H.NAN }, { ttl = 1, x = 1 }, setmetatable({}, mt), print,
                        coroutine.create(function() end), io.stdout }
      local objs = {
        { victim, { "namespace", "namespaces", "atomic", "gc", "stats", "flush", "dump", "load" } },
        { vs, { "get", "set", "del", "has", "expire", "ttl", "incr", "setnx", "namespace", "atomic",
                "keys", "namespaces", "count", "clear", "shdict" } },
        { dict, { "get", "get_stale", "set", "safe_set", "add", "safe_add", "replace", "delete",
                  "incr", "lpush", "rpush", "lpop", "rpop", "llen", "ttl", "expire", "flush_all",
                  "flush_expired", "get_keys", "capacity", "free_space" } },
      }
      for call = 1, 600 do
        local o = objs[rng(#objs)]
        local name = o[2][rng(#o[2])]
        local args, n = {}, rng(5) - 1
        for i = 1, n do
          local g = garbage[rng(#garbage)]
          if not rawequal(g, NONE) then args[i] = g end
        end
        if (name == "dump" or name == "load") and type(args[1]) == "string" then args[1] = PATH end
        local ok, err = pcall(o[1][name], o[1], H.unpack(args, 1, n))
        assert(not ok and type(err) == "table" and err.reason == "closed",
               ("call %d: %s with %d arguments: %s"):format(call, name, n,
                 ok and "returned" or H.describe_err(err)))
      end
    end)

    it("a dict's capacity() asked before close is \"closed\" after it", function()
      local kv2 = H.driver()
      local d2 = kv2:namespace("cap"):shdict()
      assert.are.equal("number", type(d2:capacity()))
      kv2:close()
      local err = rejects("STORE_OPERATION_FAILED", d2.capacity, d2)
      assert.are.equal("closed", err.reason, err.message)
    end)

    it("a call on something that is not a dict stays 'bad \"zone\" argument'", function()
      local ok, err = pcall(dict.get, "k")
      assert.is_false(ok)
      assert.are.equal("string", type(err))
      assert.truthy(err:find('bad "zone" argument', 1, true), err)
    end)

    it("a wrong self stays a plain Lua argument error, before \"closed\"", function()
      for _, m in ipairs({ "get", "set", "del", "has", "expire", "ttl", "incr", "setnx",
                           "namespace", "atomic", "keys", "namespaces", "count", "clear",
                           "_rawget", "_rawset", "_space", "_live" }) do
        H.assert_arg_error(vs[m], "k", 1)
        H.assert_arg_error(vs[m], victim, "k")
      end
      for _, m in ipairs({ "namespace", "namespaces", "atomic", "gc", "stats", "flush", "dump",
                           "load", "close" }) do
        H.assert_arg_error(victim[m], "x")
        H.assert_arg_error(victim[m], vs)
      end
      H.assert_unchanged(snap)
    end)

    it("close() again is fine", function()
      assert.has_no.errors(function() victim:close() end)
      H.assert_unchanged(snap)
    end)

    it("tostring() of the driver, its stores and a dict still works, and says closed", function()
      for _, o in ipairs({ victim, vs, dict }) do
        local ok, text = pcall(tostring, o)
        assert.is_true(ok, text)
        assert.truthy(text:find("(closed)", 1, true), text)
      end
    end)
  end)

  describe("a closed handle on a shared segment #shared", function()
    it("fails with STORE_OPERATION_FAILED and leaves the segment unchanged", function()
      local name = H.segment_name("closed")
      local kv1 = zeltkv.shared(name, { size = "1m" })
      local ok, err = pcall(function()
        local kv2 = zeltkv.shared(name)
        local seg = H.seed(kv2)
        local seg_snap = H.snapshot(seg)
        local s1 = kv1:namespace("seed_a")
        kv1:close()
        for _, fn in ipairs({
          function() return s1:set("new", 1) end,
          function() return s1:del("str") end,
          function() return s1:incr("counter") end,
          function() return s1:clear() end,
          function() return kv1:flush() end,
        }) do
          H.assert_error_code("STORE_OPERATION_FAILED", fn)
          H.assert_unchanged(seg_snap)
        end
        kv2:close()
      end)
      kv1:close()
      zeltkv.unlink(name)
      assert(ok, err)
    end)
  end)

  -------------------------------------------------------------------------
  describe("wrong self", function()
    local s_methods = { "get", "set", "del", "has", "expire", "ttl", "incr", "setnx",
                        "namespace", "atomic", "keys", "count", "clear" }
    for _, m in ipairs(s_methods) do
      it("s." .. m .. "(...) without self is a plain Lua argument error", function()
        local fn = a[m]
        assert.are.equal("function", type(fn))
        H.assert_arg_error(fn, "k", 1)
        H.assert_unchanged(snap)
      end)
    end

    it("s.get(kv, k) with a driver for self is a plain Lua argument error", function()
      H.assert_arg_error(a.get, kv, "str")
      H.assert_arg_error(a.set, kv, "str", 1)
      H.assert_unchanged(snap)
    end)

    it("s.set(\"k\", 1) does not store anything", function()
      H.assert_arg_error(a.set, "str", "changed")
      H.assert_arg_error(a.set, nil, "str", "changed")
      H.assert_arg_error(a.set, {}, "str", "changed")
      H.assert_unchanged(snap)
    end)

    local kv_methods = { "namespace", "atomic", "gc", "stats", "flush", "close" }
    for _, m in ipairs(kv_methods) do
      it("kv." .. m .. "(...) without self is a plain Lua argument error", function()
        local fn = kv[m]
        assert.are.equal("function", type(fn))
        H.assert_arg_error(fn, "x")
        H.assert_arg_error(fn, a)       -- a store is not a driver
        H.assert_unchanged(snap)
      end)
    end
  end)
end)
