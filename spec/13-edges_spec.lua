-- spec/13-edges_spec.lua: the binding at the edges of issue 9 (each repro of the issue, as a
-- test that failed before the fix): finalizers that use or close a driver while a method
-- runs (9.1, 9.2), `<close>` inside atomic (9.3), keys() after a rolled-back namespace
-- (9.7), a runaway atomic stopped at atomic_timeout (9.12), and the small items of 9.13.  Runs on every interpreter; the memory and the shared
-- driver where both apply.

local H = require("helpers")
local zeltkv = H.zeltkv

local on_gc = H.on_gc

local function drivers()
  local name = H.segment_name("edges")
  local shared = zeltkv.shared(name, { size = "32m" })
  zeltkv.unlink(name)
  return { memory = zeltkv.memory(), shared = shared }
end

describe("finalizers inside a method (issue 9.1, 9.2)", function()
  for _, kind in ipairs({ "memory", "shared" }) do
    it("[" .. kind .. "] a finalizer that writes while get() decodes a stored table", function()
      local kv = drivers()[kind]
      local s = kv:namespace("a")
      local t = {}
      for i = 1, 20000 do t[i] = { i, "item" .. i } end
      s:set("k", t)
      local filler = string.rep("x", 200000)
      -- (a finalizer must not raise: the pending ones run after kv:close() too)
      local function gc() for i = 1, 8 do pcall(s.set, s, "f" .. i, filler) end end
      for _ = 1, 12 do
        for _ = 1, 100 do on_gc(gc) end
        local got = s:get("k")
        assert.are.equal(20000, #got)
        assert.are.same({ 20000, "item20000" }, got[20000])
      end
      kv:close()
    end)
  end

  -- In a child interpreter: its heap is small, so collections (and the finalizer) come
  -- after a few hundred calls on every Lua version; in busted's large heap Lua 5.1-5.3
  -- need up to millions of calls per round before one runs (minutes per round).
  it("a finalizer that closes the driver while set() and stats() run", function()
    local out, ok = H.run_lua([[
      local zeltkv = require("zeltkv")
      local function on_gc(f)
        if newproxy then
          local p = newproxy(true); getmetatable(p).__gc = f; return p
        end
        return setmetatable({}, { __gc = f })
      end
      local calls = 0
      for _ = 1, 600 do
        local kv = zeltkv.memory()
        local s = kv:namespace("a")
        local closed = false
        on_gc(function() closed = true; kv:close() end)
        local i = 0
        while not closed do
          i = i + 1
          assert(i < 2000000, "the finalizer never ran")
          local ok, err = pcall(s.set, s, i, "v")    -- an integer key allocates its string
          if not ok then assert(err.reason == "closed", tostring(err)) end
          if i % 7 == 0 then pcall(kv.stats, kv) end
          if i % 11 == 0 then pcall(s.get, s, i) end
        end
        calls = calls + i
        local ok, err = pcall(s.set, s, "k", "v")
        assert(not ok and err.code == "STORE_OPERATION_FAILED" and err.reason == "closed",
               tostring(err))
      end
      print("calls " .. calls)
    ]])
    assert(ok, out)
    assert.truthy(out:match("calls %d+"), out)
  end)
end)

-- The same at the first allocation of a read: Lua 5.1, 5.2 and LuaJIT run the collector
-- inside lua_pushlstring before they copy, so a finalizer run there found the bytes get()
-- had read still uncopied ("stored table is damaged" on Lua 5.1, or another key's bytes).
-- The collector is stepped until its first finalizer ran (others are due at its next
-- steps), a string puts it past its threshold, then the read: its first allocation runs a
-- finalizer that deletes the key and puts other bytes in its block (and, on the memory
-- driver, grows the arena so that it moves).  The read gives the value or nil (deleted
-- first), never anything else.  In a child interpreter: in busted's large heap the
-- collector does not come to its finalizers at that allocation.
describe("finalizers at a read's first allocation (issue 9.1)", function()
  it("get and _rawget give the value or nil, memory and shared, small, large and table values",
     function()
    local name = H.segment_name("reads")
    local out, ok = H.run_lua(([[
      local zeltkv, core = require("zeltkv"), require("zeltkv.core")
      local function on_gc(f)
        if newproxy then local p = newproxy(true); getmetatable(p).__gc = f; return p end
        return setmetatable({}, { __gc = f })
      end
      local big = {}
      for i = 1, 2000 do big[i] = { i, "item" .. i } end
      local values = { small = string.rep("a", 1000), large = string.rep("b", 20000), table = big }
      local function len_of(v)
        if type(v) == "string" then return #v end
        local _, text = core._encode(v)
        return #text
      end
      local function same(a, b)
        if type(a) ~= "table" then return a == b end
        return type(b) == "table" and #b == #a and b[#a][2] == a[#a][2]
      end
      local hits, bad = 0, {}
      for _, kind in ipairs({ "memory", "shared" }) do
        local kv = kind == "memory" and zeltkv.memory() or zeltkv.shared(%q, { size = "32m" })
        if kind == "shared" then zeltkv.unlink(%q) end
        local s = kv:namespace("a")
        for what, value in pairs(values) do
          local junk = string.rep("\255", len_of(value))
          local phase, ran, n = "off", 0, 0
          local function gc()
            ran = ran + 1
            if phase ~= "read" then return end
            phase, hits = "off", hits + 1   -- once per read
            s:del("k")
            s:set("junk", junk)
            if kind == "memory" then n = n + 1; s:set("grow" .. n, string.rep("g", 2000000)) end
          end
          -- the method itself under pcall: a Lua function between would allocate first
          local reads = {
            get = function() return pcall(s.get, s, "k") end,
            rawget = function()
              local ok, t, v = pcall(s._rawget, s, "k", false)
              if not ok or t == nil then return ok, t end
              return true, t == core._const.T_JSON and core._decode(t, v) or v
            end,
          }
          for name, read in pairs(reads) do
            for _ = 1, 8 do
              s:del("junk"); s:set("k", value)
              for _ = 1, 200 do on_gc(gc) end
              local before = ran
              collectgarbage("stop")
              repeat collectgarbage("step", 0) until ran > before
              collectgarbage("restart")
              local _ = string.rep("y", 8192)
              phase = "read"
              local ok, got = read()
              phase = "off"
              if not ok or not (got == nil or same(value, got)) then
                bad[#bad + 1] = kind .. " " .. what .. " " .. name .. ": " ..
                  (ok and "another value" or tostring(got))
              end
              collectgarbage("collect")
              for i = 1, n do s:del("grow" .. i) end
              n = 0
            end
          end
        end
        kv:close()
      end
      print("hits " .. hits)
      for _, b in ipairs(bad) do print("BAD " .. b) end
    ]]):format(name, name))
    assert(ok, out)
    assert.falsy(out:find("BAD"), out)
    local hits = tonumber(out:match("hits (%d+)"))
    assert(hits, out)
    -- where the collector runs before it copies, finalizers did run inside the reads
    if _VERSION == "Lua 5.1" and not rawget(_G, "jit") then
      assert(hits > 0, "no finalizer ran inside a read: the test tests nothing\n" .. out)
    end
  end)
end)

-- The drop-in's get_keys and lpop/rpop make several strings from one read: under LuaJIT's
-- FFI front end their bytes lay in a scratch buffer that every fast read shares (and
-- get_keys' cursor and lengths in scratch of their own), so a finalizer run at one of those
-- allocations that read another key (get) or listed another dict (get_keys) overwrote the
-- bytes and the cursor not read yet: get_keys returned the other namespace's keys and stray
-- bytes (37 of 200 rounds), lpop a stray payload for the item it took out (51 of 20,000).
-- Every interpreter runs it (the C binding's paths copy each batch into memory of the call's
-- own); in a child interpreter, whose small heap collects often.
describe("finalizers while the drop-in makes its strings", function()
  it("get_keys and lpop give their own keys and items, memory and shared", function()
    local name = H.segment_name("dropstr")
    local out, ok = H.run_lua(([[
      local zeltkv = require("zeltkv")
      local function on_gc(f)
        if newproxy then local p = newproxy(true); getmetatable(p).__gc = f; return p end
        return setmetatable({}, { __gc = f })
      end
      local ran, bad = 0, {}
      for _, kind in ipairs({ "memory", "shared" }) do
        local kv = kind == "memory" and zeltkv.memory() or zeltkv.shared(%q, { size = "8m" })
        if kind == "shared" then zeltkv.unlink(%q) end
        local a, b = kv:namespace("a"):shdict(), kv:namespace("b")
        local bd = b:shdict()
        for i = 1, 300 do a:set(("key%%05d"):format(i), i) end
        b:set("v", string.rep("X", 5000))
        b:set("w", "other")
        -- (a finalizer must not raise: the pending ones run after kv:close() too)
        local function gc() ran = ran + 1; pcall(b.get, b, "v"); pcall(bd.get_keys, bd, 0) end
        for round = 1, 200 do
          for _ = 1, 50 do on_gc(gc) end
          local keys = a:get_keys(0)
          local good = #keys == 300
          for i = 1, 300 do good = good and keys[i] == ("key%%05d"):format(i) end
          if not good then
            bad[#bad + 1] = ("%%s get_keys round %%d: %%d keys, first %%q"):format(kind, round,
              #keys, tostring(keys[1]))
          end
        end
        for round = 1, 20000 do
          local item = "item-" .. round
          if round %% 2 == 0 then a:rpush("l", item) else a:lpush("l", item) end
          for _ = 1, 3 do on_gc(gc) end
          local got = round %% 2 == 0 and a:rpop("l") or a:lpop("l")
          if got ~= item then
            bad[#bad + 1] = ("%%s pop round %%d: %%q"):format(kind, round, tostring(got):sub(1, 20))
          end
        end
        collectgarbage("collect")
        kv:close()
      end
      print("ran " .. ran)
      for i = 1, math.min(#bad, 10) do print("BAD " .. bad[i]) end
    ]]):format(name, name))
    assert(ok, out)
    assert.falsy(out:find("BAD"), out)
    local ran = tonumber(out:match("ran (%d+)"))
    assert(ran and ran > 1000, "the finalizers hardly ran: the test tests nothing\n" .. out)
  end)
end)

describe("atomic and close (issue 9.3)", function()
  it("kv:close() inside kv:atomic(fn) is refused; the driver works on", function()
    local kv = zeltkv.memory()
    local s = kv:namespace("a")
    local err = H.assert_error_code("STORE_OPERATION_FAILED", kv.atomic, kv, function()
      s:set("k", 1)
      kv:close()
    end)
    assert.are.equal("closed", err.reason)
    assert.is_nil(s:get("k"))
    assert.is_true(s:set("k", 2))
    kv:close()
  end)

  it("local k <close> = kv inside kv:atomic(fn) is refused as close() is (Lua 5.4)", function()
    if not _VERSION:find("5%.4") then pending("<close> is Lua 5.4 syntax") return end
    local kv = zeltkv.memory()
    local s = kv:namespace("a")
    local fn = assert(load([[
      local kv, s = ...
      return function()
        local k <close> = kv
        s:set("k", 1)
      end
    ]]))(kv, s)
    local err = H.assert_error_code("STORE_OPERATION_FAILED", kv.atomic, kv, fn)
    assert.are.equal("closed", err.reason)
    assert.is_nil(s:get("k"))              -- undone, and the driver is still open
    assert.is_true(s:set("k", 2))
    -- outside atomic, <close> closes
    assert(load("local kv = ... do local k <close> = kv end"))(kv)
    H.assert_error_code("STORE_OPERATION_FAILED", s.get, s, "k")
  end)
end)

-- Issue 9.12 (what 9.6 must show): an atomic fn that runs past atomic_timeout is aborted by
-- the binding's count hook, its writes undone, the lock released, STORE_OPERATION_FAILED
-- "timeout" raised.  Each spin gives up by itself after SPIN seconds, so a hook that never
-- fires fails the test (fn returns) instead of hanging it.  The loops are hot (os.clock
-- once every 2^20 rounds) so that LuaJIT compiles them unless fn is kept out of the JIT.
describe("atomic_timeout (issue 9.12)", function()
  local SPIN = 20
  local function spin()
    local t0, n = os.clock(), 0
    while true do
      n = n + 1
      if n % 1048576 == 0 and os.clock() - t0 > SPIN then return "spun " .. SPIN .. " s" end
    end
  end
  local function open(kind, opts)
    if kind == "memory" then return zeltkv.memory(opts) end
    local name = H.segment_name("atimeout")
    opts.size = "1m"
    return zeltkv.shared(name, opts), name
  end

  for _, kind in ipairs({ "memory", "shared" }) do
    it("[" .. kind .. "] aborts a runaway fn, undoes its writes and releases the lock", function()
      local kv, name = open(kind, { atomic_timeout = 0.1 })
      local s = kv:namespace("a")
      s:set("k", "kept")
      -- a loop written in fn, and one in a function defined inside fn; each fn runs first
      -- outside atomic (a few rounds, no writes), so that LuaJIT has compiled its loop.  The
      -- loops have no exit a hook could run at: compiled, 1e10 rounds take seconds (a fail),
      -- interpreted on any Lua minutes, unless the hook stops them
      local rounds, write = 1e5, false
      local fns = {
        function()
          if write then s:set("k", "never kept"); s:set("new", 1) end
          local acc = 0
          for j = 1, rounds do acc = acc + j end
          return acc
        end,
        function()
          if write then s:set("k", "never kept"); s:set("new", 1) end
          local function inner()
            local acc = 0
            for j = 1, rounds do acc = acc + j end
            return acc
          end
          return inner()
        end,
      }
      for i, fn in ipairs(fns) do
        rounds, write = 1e5, false
        for _ = 1, 3 do assert.are.equal(1e5 * (1e5 + 1) / 2, fn()) end
        rounds, write = 1e10, true
        local ok, err = pcall(kv.atomic, kv, fn)
        assert(not ok, "fn " .. i .. " was not aborted: it returned " .. tostring(err))
        H.check_error("STORE_OPERATION_FAILED", err)
        assert.are.equal("timeout", err.reason)
        assert.truthy(err.message:find("atomic_timeout (0.1 s)", 1, true), err.message)
        assert.are.equal("kept", s:get("k"))
        assert.is_nil(s:get("new"))
        assert.are.equal(1, s:count())
      end
      -- the lock is free: another process writes at once (lock_timeout 0.5 s), and so does
      -- this driver, inside and outside atomic
      if name then
        local out, ok = H.run_lua(([[
          local kv = require("zeltkv").shared(%q, { lock_timeout = 0.5 })
          kv:namespace("a"):set("child", 1)
          print("written")
        ]]):format(name))
        assert(ok and out:find("written"), out)
        assert.are.equal(1, s:get("child"))
        zeltkv.unlink(name)
      end
      assert.is_true(kv:atomic(function() return s:set("k", "later") end))
      assert.are.equal("later", s:get("k"))
      kv:close()
    end)
  end

  -- a fn that catches the timeout with pcall (around a library call, say) and returns: it
  -- was committed, with the writes made before and after the deadline, and atomic()
  -- returned what fn returned; the same through a nested atomic whose error the outer fn
  -- caught
  for _, kind in ipairs({ "memory", "shared" }) do
    it("[" .. kind .. "] fails an fn that caught the timeout and returned, and undoes it", function()
      local kv, name = open(kind, { atomic_timeout = 0.1 })
      local s = kv:namespace("a")
      s:set("k", "kept")
      local caught = 0
      local ok, err = pcall(kv.atomic, kv, function()
        s:set("k", "never kept")
        -- (defined in fn, so kept out of LuaJIT's JIT as fn is)
        local ok2, e2 = pcall(function()
          local t0 = os.clock()
          while os.clock() - t0 < SPIN do end
        end)
        if not ok2 and type(e2) == "table" and e2.reason == "timeout" then caught = caught + 1 end
        pcall(s.set, s, "after", 1)
        return "returned"
      end)
      assert.are.equal(1, caught)
      assert(not ok, "atomic returned " .. tostring(err) .. " after fn caught its timeout")
      H.check_error("STORE_OPERATION_FAILED", err)
      assert.are.equal("timeout", err.reason)
      assert.are.equal("kept", s:get("k"))
      assert.is_nil(s:get("after"))
      ok, err = pcall(kv.atomic, kv, function()
        s:set("k", "never kept")
        pcall(kv.atomic, kv, function()
          s:set("inner", 1)
          local t0 = os.clock()
          while os.clock() - t0 < SPIN do end
        end)
        s:set("outer", 1)
        return "returned"
      end)
      assert(not ok, "atomic returned " .. tostring(err) .. " after fn caught an inner timeout")
      assert.are.equal("timeout", err.reason)
      assert.are.equal("kept", s:get("k"))
      assert.is_nil(s:get("inner"))
      assert.is_nil(s:get("outer"))
      -- and the next atomic is timed anew
      assert.are.equal("ok", kv:atomic(function() s:set("k", "later") return "ok" end))
      assert.are.equal("later", s:get("k"))
      kv:close()
      if name then zeltkv.unlink(name) end
    end)
  end

  it("is 1 s by default, and 0 is no limit", function()
    local kv = zeltkv.memory()
    local s = kv:namespace("a")
    local ok, err = pcall(kv.atomic, kv, function() s:set("k", 1); return spin() end)
    assert(not ok, "not aborted: " .. tostring(err))
    assert.are.equal("timeout", err.reason)
    assert.truthy(err.message:find("atomic_timeout (1 s)", 1, true), err.message)
    assert.is_nil(s:get("k"))
    kv:close()
    -- no limit: a fn that runs a while (well under the 1 s default's reach) returns
    local free = zeltkv.memory({ atomic_timeout = 0 })
    local fs = free:namespace("a")
    local SHORT = 0.3
    assert.is_true(free:atomic(function()
      fs:set("k", 1)
      local t0 = os.clock()
      while os.clock() - t0 < SHORT do end
      return true
    end))
    assert.are.equal(1, fs:get("k"))
    free:close()
  end)

  it("refuses a bad atomic_timeout with INVALID_VALUE", function()
    for _, v in ipairs({ -1, 0 / 0, "x", {}, true }) do
      H.assert_error_code("INVALID_VALUE", zeltkv.memory, { atomic_timeout = v })
      local name = H.segment_name("atbad")
      H.assert_error_code("INVALID_VALUE", zeltkv.shared, name, { atomic_timeout = v })
      assert.is_false(zeltkv.unlink(name))
    end
  end)
end)

describe("keys() of a namespace made again (issue 9.7)", function()
  for _, kind in ipairs({ "memory", "shared" }) do
    it("[" .. kind .. "] a handle made in a rolled-back atomic sees the keys made since", function()
      local kv = drivers()[kind]
      local s
      pcall(kv.atomic, kv, function()
        s = kv:namespace("fresh")
        s:set("gone", 1)
        error("roll back")
      end)
      local again = kv:namespace("fresh")    -- made again, by another handle
      again:set("k1", 1)
      again:set("k2", 2)
      -- keys() first: the old handle's id is stale until a call finds the namespace anew
      local seen = {}
      for k in s:keys() do seen[#seen + 1] = k end
      table.sort(seen)
      assert.are.same({ "k1", "k2" }, seen)
      assert.are.equal(2, s:count())
      -- the drop-in's key list takes the same way
      local s2
      pcall(kv.atomic, kv, function() s2 = kv:namespace("fresh2"); error("roll back") end)
      kv:namespace("fresh2"):set("k", 1)
      assert.are.same({ "k" }, s2:_keys_list(0))
      kv:close()
    end)
  end
end)

describe("small items (issue 9.13)", function()
  it("incr takes by = -2^63 as a float where integers are 64-bit", function()
    local s = zeltkv.memory():namespace("a")
    if not H.has_int then
      H.assert_error_code("INVALID_VALUE", s.incr, s, "k", -2 ^ 63)   -- beyond 2^53
      return
    end
    assert.are.equal(math.mininteger, s:incr("k", -2 ^ 63))
    assert.are.equal(math.mininteger, s:get("k"))
    H.assert_error_code("INVALID_VALUE", s.incr, s, "k", -1)           -- below the range
    assert.are.equal(math.mininteger + 1, s:incr("k", 1.0))
    H.assert_error_code("INVALID_VALUE", s.incr, s, "j", 2 ^ 63)        -- one past the top
  end)

  it("a ttl table with an unknown field is INVALID_VALUE whatever the order or the ttl", function()
    local s = zeltkv.memory():namespace("a")
    for i = 1, 40 do
      -- tables built in different orders and sizes, so that their traversal order differs
      local t = {}
      for j = 1, i % 7 do t["pad" .. j .. "_" .. i] = true end
      if i % 2 == 0 then t.ttl = -1; t.bogus = 1 else t.bogus = 1; t.ttl = "x" end
      local err = H.assert_error_code("INVALID_VALUE", s.set, s, "k", 1, t)
      -- the option named is the same every time: the first unknown name in byte order
      local first = "bogus"
      for k in pairs(t) do if k ~= "ttl" and k < first then first = k end end
      assert.are.equal("unknown option '" .. first .. "'", err.message)
    end
    H.assert_error_code("INVALID_TTL", s.set, s, "k", 1, { ttl = -1 })
    H.assert_error_code("INVALID_VALUE", s.set, s, "k", 1, { [1] = 5, ttl = -1 })
    assert.is_nil(s:get("k"))
  end)

  it("atomic with a non-function raises an error object", function()
    local kv = zeltkv.memory()
    local s = kv:namespace("a")
    for _, v in ipairs({ 42, "fn", {}, true }) do
      H.assert_error_code("INVALID_VALUE", kv.atomic, kv, v)
      H.assert_error_code("INVALID_VALUE", s.atomic, s, v)
    end
    H.assert_error_code("INVALID_VALUE", kv.atomic, kv)
    assert.is_true(kv:atomic(function() return true end))   -- the lock was never taken
  end)
end)

-- Found in session 2 by spec/15-model_spec.lua and spec/16-garbage_spec.lua.
describe("bytes, options and numbers (found by the model and the garbage fuzz)", function()
  it("an error message keeps the NUL bytes of a key or a name it quotes", function()
    local kv = zeltkv.memory()
    local s = kv:namespace("a")
    local err = H.assert_error_code("INVALID_VALUE", s.set, s, "k", { ["a\0b"] = 1 })
    assert.are.equal('value["a\0b"]: keys inside tables cannot hold NUL bytes', err.message)
    assert.are.equal("zeltkv: INVALID_VALUE: " .. err.message, tostring(err))
    err = H.assert_error_code("INVALID_VALUE", s.set, s, "k", 1, { ["x\0y"] = 1 })
    assert.are.equal("unknown option 'x\0y'", err.message)
    err = H.assert_error_code("INVALID_VALUE", zeltkv.memory, { ["no\0such"] = 1 })
    assert.are.equal("unknown option 'no\0such'", err.message)
    -- uncaught (no pcall on this coroutine's stack): the string form has all of it too
    local co = coroutine.create(function() s:set("k", { ["a\0b"] = 1 }) end)
    local ok, msg = coroutine.resume(co)
    assert.is_false(ok)
    assert.truthy(msg:find('INVALID_VALUE: value["a\0b"]: keys inside', 1, true), msg)
    kv:close()
  end)

  it("an option name or value holding a NUL byte is not the option", function()
    H.assert_error_code("INVALID_VALUE", zeltkv.memory, { ["gc_interval\0x"] = 1 })
    H.assert_error_code("INVALID_VALUE", zeltkv.memory, { evict = "lru\0x" })
    H.assert_error_code("INVALID_VALUE", zeltkv.memory, { max_bytes = "1m\0x" })
    local name = H.segment_name("nul")
    H.assert_error_code("INVALID_VALUE", zeltkv.shared, name, { size = "1m\0x" })
    assert.is_false(zeltkv.unlink(name))
  end)

  -- the first read of a fresh shared handle, an empty string: the engine hands out no bytes
  -- (data NULL, len 0: the handle's copy buffer is not made yet) and the 5.1/LuaJIT push
  -- copied them with memcpy(tmp, NULL, 0), which UBSan stops (make sanitize runs this spec
  -- under 5.1 and LuaJIT). Through the C binding (core) as well as the FFI front end
  it("the first read of a fresh shared handle may be an empty string", function()
    local core = require("zeltkv.core")
    local name = H.segment_name("empty")
    for _, mod in ipairs({ zeltkv, core }) do
      local w = mod.shared(name, { size = "1m" })
      w:namespace("a"):set("e", "")
      w:namespace("a"):set("t", { "" })
      for _, key in ipairs({ "e", "t" }) do
        local r = mod.shared(name)
        local v = r:namespace("a"):get(key)
        if key == "e" then assert.are.equal("", v) else assert.are.same({ "" }, v) end
        r:close()
      end
      w:close()
    end
    zeltkv.unlink(name)
  end)

  it("numbers no integer holds are refused before they are converted", function()
    local core = require("zeltkv.core")
    for _, x in ipairs({ 0 / 0, math.huge, -math.huge, 1e300 }) do
      H.assert_arg_error(core._set_clock_offset, x)
    end
    core._set_clock_offset(0)
    local kv = zeltkv.memory()
    local s = kv:namespace("a")
    s:set("k", 1)
    for _, x in ipairs({ 0 / 0, 1e300, -1e300 }) do H.assert_arg_error(s._expire_ms, s, "k", x) end
    -- a table key far beyond any integer (where numbers are doubles it is classified as one)
    H.assert_error_code("INVALID_VALUE", s.set, s, "k", { [1e300] = 1 })
    H.assert_error_code("INVALID_VALUE", s.set, s, "k", { [-1e300] = 1, 2 })
    assert.are.equal(1, s:get("k"))
    kv:close()
  end)
end)

describe("LuaJIT's own values", function()
  local ok_ffi, ffi = pcall(require, "ffi")
  if rawget(_G, "jit") and ok_ffi then
    -- LuaJIT has a type more than the binding knew (cdata): it was taken as a table and
    -- lua_next() on it crashed
    it("a cdata value is INVALID_VALUE, at the top and inside a table, on both bindings", function()
      local core = require("zeltkv.core")
      for _, mod in ipairs({ zeltkv, core }) do
        local kv = mod.memory()
        local s = kv:namespace("a")
        for _, v in ipairs({ ffi.new("int[1]"), { ffi.new("int") }, { a = ffi.new("char[4]") } }) do
          H.assert_error_code("INVALID_VALUE", s.set, s, "k", v)
          H.assert_error_code("INVALID_VALUE", s.setnx, s, "k", v)
        end
        H.assert_error_code("INVALID_VALUE", core._encode, ffi.new("int"))
        assert.is_nil(s:get("k"))
        kv:close()
      end
    end)
  end
end)
