-- 08-luajit_ffi_spec.lua: the LuaJIT FFI front end (lua/zeltkv/ffi.lua).
--
-- Under LuaJIT, require("zeltkv") gives stores whose get/set/del/has/ttl/incr/setnx call
-- the C API through the FFI, so that a JIT-compiled loop stays on one trace. This file
-- checks that it is so (no trace stitched around a C function, no NYI abort), and that
-- the behaviour is the C binding's: the same values, the same error objects, the same
-- atomic() rollback, the same "closed" after kv:close(). On other interpreters it is
-- skipped.

local H = require("spec.helpers")
local zeltkv = H.zeltkv

if not rawget(_G, "jit") then
  describe("LuaJIT FFI front end", function()
    it("is not used outside LuaJIT: require('zeltkv') is the C binding", function()
      assert.is_nil(zeltkv._ffi)
      assert.are.equal(require("zeltkv.core"), zeltkv)
    end)
  end)
  return
end

local core = require("zeltkv.core")
local jit = require("jit")
local jutil = require("jit.util")
local vmdef = require("jit.vmdef")
-- busted resolves globals through a Lua __index function: the hot loop and the trace
-- handler use locals only, so that what is measured is the front end
local type, tostring, pcall, xpcall, HUGE = type, tostring, pcall, xpcall, math.huge
local sformat, traceback = string.format, debug.traceback

-- Runs fn(...) with the JIT on and a fresh trace cache; returns what happened to traces:
-- { loops = {func = n}, stitches = n, aborts = { "reason @ where", ... } }
local function traces_of(fn, ...)
  local seen = { loops = {}, stitches = 0, aborts = {}, starts = {} }
  local function on_trace(what, tr, func, pc, otr, oex)
    if what == "start" then
      seen.starts[tr] = func
    elseif what == "stop" then
      local info = jutil.traceinfo(tr)
      if info.linktype == "stitch" then seen.stitches = seen.stitches + 1 end
      if info.linktype == "loop" and seen.starts[tr] then
        local f = seen.starts[tr]
        seen.loops[f] = (seen.loops[f] or 0) + 1
      end
    elseif what == "abort" then
      local reason = otr
      if type(otr) == "number" then
        reason = vmdef.traceerr[otr]
        if reason and reason:find("%%") then
          local ok, s = pcall(sformat, reason,
                              type(oex) == "function" and "a function" or oex)
          reason = ok and s or reason
        end
      end
      local fi = type(func) == "function" and jutil.funcinfo(func, pc) or {}
      seen.aborts[#seen.aborts + 1] = tostring(reason) .. " @ " .. tostring(fi.loc)
    end
  end
  jit.on()
  jit.flush()
  local function cb(...)
    local ok, e = xpcall(on_trace, traceback, ...)
    if not ok then seen.err = seen.err or e end
  end
  jit.attach(cb, "trace")
  local ok, err = pcall(fn, ...)
  jit.attach(cb)
  assert(not seen.err, seen.err)
  assert(ok, err)
  return seen
end

local function nyi_aborts(seen)
  local bad = {}
  for _, a in ipairs(seen.aborts) do
    if a:find("NYI", 1, true) or a:find("C function", 1, true) then bad[#bad + 1] = a end
  end
  return bad
end

-- the hot loop: 1e5 rounds of set, get, incr, setnx, has, ttl, del
local function hot_loop(s, n)
  local acc = 0
  for i = 1, n do
    s:set("k", i)
    acc = acc + s:get("k")
    acc = acc + s:incr("counter")
    if s:setnx("lock", "v") then acc = acc + 1 end
    if s:has("k") then acc = acc + 1 end
    if s:ttl("k") == HUGE then acc = acc + 1 end
    s:set(i % 64, "x", 60)
    if s:del(i % 32) then acc = acc + 1 end
  end
  return acc
end

-- errors as comparable values
local function err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  if type(err) ~= "table" then return { kind = type(err), text = err } end
  return { code = rawget(err, "code"), message = rawget(err, "message"),
           mt = getmetatable(err), text = tostring(err) }
end

describe("LuaJIT FFI front end", function()
  local kv, s, ckv, cs
  before_each(function()
    kv = zeltkv.memory()
    s = kv:namespace("ffi")
    ckv = core.memory()           -- the plain C binding, for comparison
    cs = ckv:namespace("ffi")
  end)
  after_each(function()
    kv:close()
    ckv:close()
  end)

  it("is what require('zeltkv') gives, and the store methods are FFI-backed", function()
    assert.is_true(zeltkv._ffi, "FFI front end not in use: " .. tostring(zeltkv._ffi_disabled))
    assert.is_true(s._ffi)
    assert.is_true(kv._ffi)
    assert.is_true(s:namespace("child")._ffi)
    assert.is_nil(cs._ffi)
    assert.truthy(tostring(s):find("^zeltkv%.Store"))
    assert.truthy(tostring(kv):find("^zeltkv%.Driver %(memory"))
    assert.is_false(getmetatable(s))
    assert.is_false(getmetatable(kv))
  end)

  it("keeps a hot loop of 1e5 get/set/incr/setnx/has/ttl/del on one compiled trace", function()
    if not jit.status() then return pending("the JIT is off") end
    local seen = traces_of(hot_loop, s, 1e5)
    assert.are.same({}, nyi_aborts(seen))
    assert.are.equal(0, seen.stitches, "a trace was stitched around a C function")
    assert.truthy(seen.loops[hot_loop], "no looping trace was compiled for the hot loop")
    assert.are.equal(1e5, s:get("counter"))
  end)

  it("(the same loop over the plain C binding does not stay on one trace)", function()
    if not jit.status() then return pending("the JIT is off") end
    local seen = traces_of(hot_loop, cs, 1e4)
    assert.truthy(seen.stitches > 0 or #nyi_aborts(seen) > 0,
                  "the trace check does not see C function calls")
  end)

  it("gives back what the C binding gives back", function()
    local values = { "", "str", "with\0nul", string.rep("x", 70000), 0, 1, -1, 42, 1.5, -0.25,
                     2 ^ 53, -(2 ^ 53), 2 ^ 53 - 1, 2 ^ 53 + 2, 1e300, -0.0, true, false,
                     { 1, 2, { a = "b" } }, {} }
    for i, v in ipairs(values) do
      assert.is_true(s:set("v" .. i, v))
      assert.is_true(cs:set("v" .. i, v))
      local a, b = s:get("v" .. i), cs:get("v" .. i)
      assert.are.same(b, a)
      assert.are.equal(type(b), type(a))
      if v == 0 then assert.are.equal(1 / cs:get("v" .. i), 1 / s:get("v" .. i)) end -- -0.0
      -- and what one wrote the other reads
      assert.are.same(v, kv:namespace("ffi"):get("v" .. i))
    end
    assert.is_nil(s:get("absent"))
    assert.is_true(s:set(12, "twelve"))
    assert.are.equal("twelve", s:get("12"))
    assert.are.equal("twelve", s:get(12.0))
    assert.is_true(s:set(-0.0, "zero"))
    assert.are.equal("zero", s:get("0"))
    assert.is_true(s:set(2 ^ 53, "big"))
    assert.are.equal("big", s:get("9007199254740992"))
    assert.is_true(s:has("12"))
    assert.is_true(s:del(12))
    assert.is_false(s:del(12))
    assert.is_false(s:has(12))
    assert.are.equal(math.huge, s:ttl("v1"))
    assert.is_true(s:set("t", 1, 10))
    local left = s:ttl("t")
    assert.truthy(left > 9 and left <= 10, left)
    assert.is_true(s:set("t2", 1, { ttl = 5 }))
    assert.truthy(s:ttl("t2") > 4)
    assert.is_nil(s:ttl("absent"))
    assert.is_true(s:setnx("nx", 1))
    assert.is_false(s:setnx("nx", 2))
    assert.are.equal(1, s:get("nx"))
    assert.are.equal(1, s:incr("n"))
    assert.are.equal(-4, s:incr("n", -5))
    assert.are.equal(6, s:incr("n", 10.0, 100))
    assert.are.equal(math.huge, s:ttl("n"))   -- the ttl applies only when incr creates the key
    assert.are.equal(3, s:incr("w", 3, { ttl = 100 }))
    assert.truthy(s:ttl("w") > 99)
  end)

  it("round-trips integers to 2^53 exactly, and incr stops at 2^53 (INVALID_VALUE)", function()
    for _, n in ipairs({ 2 ^ 53, -(2 ^ 53), 2 ^ 53 - 1, -(2 ^ 53) + 1, 2 ^ 52 + 1, 123456789012345 }) do
      s:set("i", n)
      assert.are.equal(n, s:get("i"))
      assert.are.equal(string.format("%d", n), string.format("%d", s:get("i")))
    end
    s:set("c", 2 ^ 53 - 2)
    assert.are.equal(2 ^ 53 - 1, s:incr("c"))
    assert.are.equal(2 ^ 53, s:incr("c"))
    local err = H.assert_error_code("INVALID_VALUE", s.incr, s, "c")
    assert.are.same(err_of(cs.incr, cs, "c2", 2 ^ 53 + 2), err_of(s.incr, s, "c2", 2 ^ 53 + 2))
    assert.are.equal(2 ^ 53, s:get("c"))
    H.assert_error_code("INVALID_VALUE", s.incr, s, "c", 2 ^ 53 + 2)
    s:set("d", -(2 ^ 53))
    H.assert_error_code("INVALID_VALUE", s.incr, s, "d", -1)
    assert.are.equal(-(2 ^ 53), s:get("d"))
    assert.are.equal(0, s:incr("d", 2 ^ 53))
    cs:set("c", 2 ^ 53)
    assert.are.same(err_of(cs.incr, cs, "c"), err_of(s.incr, s, "c"))
  end)

  it("raises error objects identical to the C binding's", function()
    local bad = {
      { "get", "" }, { "get", 1.5 }, { "get", {} }, { "get", nil }, { "get", string.rep("k", 65536) },
      { "get", 0 / 0 }, { "get", math.huge }, { "get", 2 ^ 53 + 2 },
      { "set", "k", nil }, { "set", "k", 0 / 0 }, { "set", "k", math.huge },
      { "set", "k", function() end }, { "set", "k", { f = print } }, { "set", "", 1 },
      { "set", "k", 1, 0 }, { "set", "k", 1, -1 }, { "set", "k", 1, 0 / 0 },
      { "set", "k", 1, math.huge }, { "set", "k", 1, "10" }, { "set", "k", 1, {} },
      { "set", "k", 1, { ttl = 1, x = 2 } }, { "set", "k", 1, { tll = 1 } },
      { "set", "k", 1, { ttl = "1" } }, { "set", "k", 1, { [1] = 1 } },
      { "setnx", "k", nil }, { "setnx", {}, 1 }, { "setnx", "k", 1, -5 },
      { "del", "" }, { "del", true }, { "has", 2.5 }, { "ttl", "" }, { "ttl", {} },
      { "incr", "" }, { "incr", "k", 1.5 }, { "incr", "k", "1" }, { "incr", "k", 0 / 0 },
      { "incr", "k", math.huge }, { "incr", "k", 1, 0 }, { "incr", "k", 1, { ttl = -1 } },
      { "incr", "str" }, { "incr", "float" }, { "incr", "tbl" }, { "incr", "bool" },
    }
    for _, st in ipairs({ s, cs }) do
      st:set("str", "x")
      st:set("float", 1.5)
      st:set("tbl", { 1 })
      st:set("bool", true)
    end
    for _, case in ipairs(bad) do
      local m = case[1]
      local a = err_of(s[m], s, H.unpack(case, 2, 5))
      local b = err_of(cs[m], cs, H.unpack(case, 2, 5))
      assert.are.same(b, a, m .. " " .. tostring(case[2]))
      assert.truthy(a.code, m)
    end
    -- an engine error (the store is full) raised by the front end itself
    local fkv, ckv2 = zeltkv.memory({ max_bytes = 65536 }), core.memory({ max_bytes = 65536 })
    local fs, cs2 = fkv:namespace("n"), ckv2:namespace("n")
    local big = string.rep("x", 100000)
    local a, b = err_of(fs.set, fs, "big", big), err_of(cs2.set, cs2, "big", big)
    assert.are.same(b, a)
    assert.are.equal("STORE_OPERATION_FAILED", a.code)
    assert.are.same(err_of(cs2.setnx, cs2, "big", big), err_of(fs.setnx, fs, "big", big))
    assert.is_nil(fs:get("big"))
    fkv:close()
    ckv2:close()
  end)

  it("gives a wrong self the C binding's plain Lua argument error", function()
    for _, m in ipairs({ "get", "set", "del", "has", "ttl", "incr", "setnx", "expire",
                         "namespace", "atomic", "keys", "count", "clear" }) do
      local e1 = H.assert_arg_error(s[m], "k", 1)
      local e2 = H.assert_arg_error(s[m], kv, "k", 1)
      assert.truthy(e1:find("zeltkv.Store expected", 1, true), e1)
      assert.truthy(e2:find("zeltkv.Store expected", 1, true), e2)
    end
    for _, m in ipairs({ "namespace", "atomic", "gc", "stats", "flush", "close" }) do
      local e = H.assert_arg_error(kv[m], s)
      assert.truthy(e:find("zeltkv.Driver expected", 1, true), e)
    end
  end)

  it("undoes FFI writes when atomic() raises, and passes the objects it was called on", function()
    s:set("a", "before")
    s:set("n", 10)
    s:set("gone", true)
    local other = kv:namespace("other")
    local boom = setmetatable({}, { __tostring = function() return "boom" end })
    local got_kv, got_s
    local ok, err = pcall(kv.atomic, kv, function(self)
      got_kv = self
      s:set("a", "after")
      s:set("new", 1.5)
      assert(s:incr("n", 5) == 15)
      assert(s:setnx("nx", 1))
      assert(s:del("gone"))
      other:set("x", 1)
      assert(s:get("a") == "after" and not s:has("gone"))
      error(boom)
    end)
    assert.is_false(ok)
    assert.is_true(rawequal(boom, err))
    assert.is_true(rawequal(kv, got_kv))
    assert.are.equal("before", s:get("a"))
    assert.are.equal(10, s:get("n"))
    assert.is_nil(s:get("new"))
    assert.is_nil(s:get("nx"))
    assert.is_true(s:get("gone"))
    assert.is_nil(other:get("x"))
    -- s:atomic, nested, an inner raise undoes only its own writes
    local r1, r2 = s:atomic(function(self, x)
      got_s = self
      self:set("outer", x)
      pcall(s.atomic, s, function() s:set("inner", 1); s:incr("n"); error("inner") end)
      return self:get("outer"), s:get("n")
    end, "kept")
    assert.is_true(rawequal(s, got_s))
    assert.are.equal("kept", r1)
    assert.are.equal(10, r2)
    assert.is_nil(s:get("inner"))
  end)

  it("refuses a yield inside atomic() and undoes the FFI writes", function()
    s:set("y", "before")
    local co = coroutine.wrap(function()
      return pcall(kv.atomic, kv, function()
        s:set("y", "changed")
        s:incr("yc")
        coroutine.yield("yielded")
        s:set("after", 1)
      end)
    end)
    local ok = co()
    assert.is_false(ok)
    assert.are.equal("before", s:get("y"))
    assert.is_nil(s:get("yc"))
    assert.is_nil(s:get("after"))
  end)

  it("finds a namespace made in a rolled-back atomic() anew, as the C binding does", function()
    local fresh
    pcall(kv.atomic, kv, function()
      fresh = kv:namespace("fresh"):namespace("child")
      fresh:set("k", 1)
      error("undo")
    end)
    assert.is_nil(fresh:get("k"))
    assert.is_false(fresh:has("k"))
    assert.is_true(fresh:set("k", 2))
    assert.are.equal(2, fresh:get("k"))
    assert.are.equal(3, fresh:incr("k"))
    assert.are.equal(2, kv:namespace("fresh"):namespace("child"):get("k") - 1)
  end)

  it("makes every method STORE_OPERATION_FAILED after kv:close(), without a crash", function()
    local kv2 = zeltkv.memory()
    local s2 = kv2:namespace("x")
    local child = s2:namespace("y")
    s2:set("k", 1)
    child:set("k", "v")
    kv2:close()
    kv2:close()
    for _, st in ipairs({ s2, child }) do
      for _, call in ipairs({ { "get", "k" }, { "set", "k", 2 }, { "set", "k", { 1 } },
                              { "setnx", "k", 2 }, { "del", "k" }, { "has", "k" },
                              { "ttl", "k" }, { "incr", "k" }, { "expire", "k", 1 },
                              { "count" }, { "clear" }, { "namespace", "z" } }) do
        local err = H.assert_error_code("STORE_OPERATION_FAILED", st[call[1]], st,
                                        H.unpack(call, 2))
        assert.truthy(err.message:find("closed", 1, true), err.message)
      end
      H.assert_error_code("STORE_OPERATION_FAILED", st.atomic, st, function() end)
    end
    assert.truthy(tostring(s2):find("closed", 1, true))
    -- and a closed driver inside a hot loop: no crash, the same error
    local kv3 = zeltkv.memory()
    local s3 = kv3:namespace("x")
    local ok, err = pcall(function()
      for i = 1, 1000 do
        s3:set("k", i)
        if i == 700 then kv3:close() end
      end
    end)
    assert.is_false(ok)
    H.check_error("STORE_OPERATION_FAILED", err)
  end)

  it("cannot close a driver inside its own atomic(), as in the C binding", function()
    local e = err_of(kv.atomic, kv, function(self) self:close() end)
    assert.are.equal("STORE_OPERATION_FAILED", e.code)
    assert.is_true(s:set("still", "open"))
    assert.are.equal("open", s:get("still"))
  end)
end)
