-- spec/01-module_spec.lua: the module table, driver creation and options, the driver's
-- own methods (stats, flush, gc) and its lifecycle (close, __close, __gc).

local H = require("helpers")
local zeltkv = require("zeltkv")

describe("zeltkv module", function()
  after_each(H.reset_clock)

  describe("version", function()
    it("is a version string like \"0.1.0\"", function()
      assert.are.equal("string", type(zeltkv.version))
      assert.truthy(zeltkv.version:match("^%d+%.%d+%.%d+"), zeltkv.version)
    end)
  end)

  describe("errors", function()
    it("holds exactly the five codes, each value the code string itself", function()
      assert.are.equal("table", type(zeltkv.errors))
      local n = 0
      for k, v in pairs(zeltkv.errors) do
        n = n + 1
        assert.are.equal(k, v)
      end
      for _, code in ipairs(H.CODES) do
        assert.are.equal(code, zeltkv.errors[code])
      end
      assert.are.equal(#H.CODES, n)
    end)

    it("are raised as tables with code and message, tostring 'zeltkv: CODE: message'",
       function()
      local kv = zeltkv.memory()
      local err = H.catch(kv.namespace, kv, "")
      assert.are.equal("table", type(err))
      assert.are.equal(zeltkv.errors.EMPTY_NAMESPACE, err.code)
      assert.are.equal("string", type(err.message))
      assert.are.equal("zeltkv: EMPTY_NAMESPACE: " .. err.message, tostring(err))
      kv:close()
    end)
  end)

  describe("memory()", function()
    it("returns a driver without options, with nil and with an empty table", function()
      for _, kv in ipairs({ zeltkv.memory(), zeltkv.memory(nil), zeltkv.memory({}) }) do
        local s = kv:namespace("x")
        assert.is_true(s:set("k", 1))
        assert.are.equal(1, s:get("k"))
        kv:close()
      end
    end)

    it("accepts every memory option with a valid value", function()
      local cases = {
        { gc_interval = 0 }, { gc_interval = 0.5 }, { gc_interval = 60 },
        { max_bytes = 1024 * 1024 }, { max_bytes = 64 * 1024 * 1024 },
        { evict = "none" }, { evict = "lru" },
        { gc_interval = 1, max_bytes = 4 * 1024 * 1024, evict = "lru" },
      }
      for _, opts in ipairs(cases) do
        local ok, kv = pcall(zeltkv.memory, opts)
        assert(ok, "memory(" .. H.dump(opts) .. ") failed: " .. H.describe_err(kv))
        kv:namespace("x"):set("k", "v")
        assert.are.equal("v", kv:namespace("x"):get("k"))
        kv:close()
      end
    end)

    it("rejects an unknown option with INVALID_VALUE naming it", function()
      local err = H.assert_error_code("INVALID_VALUE", zeltkv.memory, { no_such_option = 1 })
      assert.truthy(err.message:find("no_such_option", 1, true), err.message)
      err = H.assert_error_code("INVALID_VALUE", zeltkv.memory,
                                { gc_interval = 5, evcit = "lru" })
      assert.truthy(err.message:find("evcit", 1, true), err.message)
    end)

    it("rejects invalid option values with INVALID_VALUE", function()
      local cases = {
        { gc_interval = -1 }, { gc_interval = "60" }, { gc_interval = H.NAN },
        { gc_interval = true },
        { evict = "foo" }, { evict = 1 }, { evict = true },
        { max_bytes = -1 }, { max_bytes = H.NAN }, { max_bytes = true }, { max_bytes = {} },
      }
      for _, opts in ipairs(cases) do
        local ok, err = pcall(zeltkv.memory, opts)
        assert(not ok, "memory(" .. H.dump(opts) .. ") should fail")
        H.check_error("INVALID_VALUE", err)
      end
    end)

    it("gives independent stores for two drivers", function()
      local kv1, kv2 = zeltkv.memory(), zeltkv.memory()
      kv1:namespace("n"):set("k", "one")
      assert.is_nil(kv2:namespace("n"):get("k"))
      kv2:namespace("n"):set("k", "two")
      assert.are.equal("one", kv1:namespace("n"):get("k"))
      kv1:close()
      assert.are.equal("two", kv2:namespace("n"):get("k"))
      kv2:close()
    end)

    it("stays cheap for many small drivers in one process", function()
      local drivers = {}
      for i = 1, 500 do
        drivers[i] = zeltkv.memory()
        drivers[i]:namespace("n"):set("k", i)
      end
      for i = 1, 500 do
        assert.are.equal(i, drivers[i]:namespace("n"):get("k"))
        drivers[i]:close()
      end
    end)
  end)

  describe("shared() and unlink() names #shared", function()
    it("reject bad segment names with INVALID_KEY", function()
      local bad = { "", "a/b", "../etc", "with space", "tab\tname", "nul\0byte",
                    string.rep("n", 129) }
      for _, name in ipairs(bad) do
        local ok, err = pcall(zeltkv.shared, name)
        assert(not ok, ("shared(%q) should fail"):format(name))
        H.check_error("INVALID_KEY", err)
        ok, err = pcall(zeltkv.unlink, name)
        assert(not ok, ("unlink(%q) should fail"):format(name))
        H.check_error("INVALID_KEY", err)
      end
    end)

    it("reject non-string segment names with INVALID_KEY", function()
      for _, name in ipairs({ 42, true, {} }) do
        H.assert_error_code("INVALID_KEY", zeltkv.shared, name)
      end
    end)
  end)

  describe("shared() #shared", function()
    local name
    local shm_dir = os.getenv("ZELTKV_SHM_DIR") or "/dev/shm"

    before_each(function() name = H.segment_name("mod") end)
    after_each(function() pcall(zeltkv.unlink, name) end)

    it("keeps keys after every handle closed, until unlink", function()
      local kv = zeltkv.shared(name, { size = "1m" })
      kv:namespace("n"):set("k", { kept = true }, 100)
      kv:namespace("n"):set("plain", 42)
      kv:close()
      kv = zeltkv.shared(name)
      assert.are.same({ kept = true }, kv:namespace("n"):get("k"))
      assert.is_true(kv:namespace("n"):ttl("k") < 100.001)
      assert.are.equal(42, kv:namespace("n"):get("plain"))
      kv:close()
      assert.is_true(zeltkv.unlink(name))
      assert.is_false(zeltkv.unlink(name))
      kv = zeltkv.shared(name)
      assert.is_nil(kv:namespace("n"):get("plain"))
      kv:close()
    end)

    it("accepts size as bytes or \"64k\" / \"1m\" strings, and the shared options",
       function()
      for _, opts in ipairs({ { size = 1024 * 1024 }, { size = "512k" }, { size = "2m" },
                              { mode = tonumber("600", 8), lock_timeout = 2,
                                gc_interval = 0, evict = "lru" } }) do
        local kv = zeltkv.shared(name, opts)
        kv:namespace("n"):set("k", 1)
        assert.are.equal(1, kv:namespace("n"):get("k"))
        kv:close()
        zeltkv.unlink(name)
      end
    end)

    it("rejects bad and unknown options with INVALID_VALUE", function()
      for _, opts in ipairs({ { size = "lots" }, { size = -1 }, { size = "12q" },
                              { lock_timeout = -1 }, { evict = "foo" },
                              { no_such_option = 1 } }) do
        local ok, err = pcall(zeltkv.shared, name, opts)
        if ok then err:close() end
        assert(not ok, "shared(" .. H.dump(opts) .. ") should fail")
        H.check_error("INVALID_VALUE", err)
      end
    end)

    it("refuses a file that is not a zeltkv segment with STORE_OPERATION_FAILED", function()
      local path = shm_dir .. "/zeltkv-" .. name
      for _, content in ipairs({ "", "not a zeltkv segment", string.rep("\0", 4096),
                                 string.rep("\255", 65536) }) do
        local f = assert(io.open(path, "wb"))
        f:write(content)
        f:close()
        local ok, err = pcall(zeltkv.shared, name)
        if ok then err:close() end
        assert(not ok, ("a %d-byte foreign file was opened as a segment"):format(#content))
        H.check_error("STORE_OPERATION_FAILED", err)
        os.remove(path)
      end
    end)

    it("refuses a truncated segment with STORE_OPERATION_FAILED", function()
      local kv = zeltkv.shared(name, { size = "1m" })
      kv:namespace("n"):set("k", string.rep("v", 1000))
      kv:close()
      local path = shm_dir .. "/zeltkv-" .. name
      local f = assert(io.open(path, "rb"))
      local head = f:read(8192)
      f:close()
      f = assert(io.open(path, "wb"))
      f:write(head)
      f:close()
      local ok, err = pcall(zeltkv.shared, name)
      if ok then err:close() end
      assert(not ok, "a truncated segment was opened")
      H.check_error("STORE_OPERATION_FAILED", err)
    end)
  end)

  describe("stats()", function()
    it("reports keys, bytes_used, capacity (nil when unbounded) and counters", function()
      local kv = zeltkv.memory()
      local st = kv:stats()
      assert.are.equal("table", type(st))
      for _, field in ipairs({ "keys", "bytes_used", "evictions", "expired_freed",
                               "gc_runs" }) do
        assert.are.equal("number", type(st[field]), field)
      end
      assert.is_nil(st.capacity)
      assert.are.equal(0, st.keys)
      kv:namespace("a"):set("k1", 1)
      kv:namespace("a"):namespace("b"):set("k2", 2)
      kv:namespace("c"):set("k3", 3)
      local st2 = kv:stats()
      assert.are.equal(3, st2.keys)
      assert.is_true(st2.bytes_used > 0)
      kv:close()
    end)

    it("reports capacity as a number when max_bytes is given", function()
      local kv = zeltkv.memory({ max_bytes = 4 * 1024 * 1024 })
      local st = kv:stats()
      assert.are.equal("number", type(st.capacity))
      assert.is_true(st.capacity > 0 and st.capacity <= 4 * 1024 * 1024)
      assert.is_true(st.bytes_used <= st.capacity)
      kv:close()
    end)

    it("returns a fresh table each call", function()
      local kv = zeltkv.memory()
      local st1 = kv:stats()
      st1.keys = 999
      assert.are.equal(0, kv:stats().keys)
      kv:close()
    end)
  end)

  describe("flush()", function()
    it("removes every key of every namespace and returns how many", function()
      local kv = zeltkv.memory()
      local stores = H.seed(kv)
      local total = 0
      for _, s in ipairs(stores) do total = total + s:count() end
      assert.are.equal(total, kv:flush())
      for _, s in ipairs(stores) do
        assert.are.equal(0, s:count())
        assert.is_nil(s:get("str"))
      end
      assert.are.equal(0, kv:stats().keys)
      assert.are.equal(0, kv:flush())
      -- still usable
      stores[1]:set("again", 1)
      assert.are.equal(1, stores[1]:get("again"))
      kv:close()
    end)
  end)

  describe("gc()", function()
    it("returns 0 when nothing has expired", function()
      local kv = zeltkv.memory()
      kv:namespace("a"):set("k", 1, 100)
      kv:namespace("a"):set("j", 1)
      assert.are.equal(0, kv:gc())
      assert.are.equal(1, kv:namespace("a"):get("k"))
      kv:close()
    end)
  end)

  describe("close()", function()
    it("is idempotent", function()
      local kv = zeltkv.memory()
      kv:close()
      kv:close()
      assert.has_no.errors(function() kv:close() end)
    end)

    it("makes every later use of the driver STORE_OPERATION_FAILED (\"closed\")", function()
      local kv = zeltkv.memory()
      kv:close()
      local err = H.assert_error_code("STORE_OPERATION_FAILED", kv.namespace, kv, "x")
      assert.truthy(err.message:find("closed", 1, true), err.message)
      H.assert_error_code("STORE_OPERATION_FAILED", kv.stats, kv)
      H.assert_error_code("STORE_OPERATION_FAILED", kv.gc, kv)
      H.assert_error_code("STORE_OPERATION_FAILED", kv.flush, kv)
      H.assert_error_code("STORE_OPERATION_FAILED", kv.atomic, kv, function() end)
    end)

    it("makes a store of the closed driver STORE_OPERATION_FAILED (\"closed\")", function()
      local kv = zeltkv.memory()
      local s = kv:namespace("x")
      s:set("k", 1)
      kv:close()
      local err = H.assert_error_code("STORE_OPERATION_FAILED", s.get, s, "k")
      assert.truthy(err.message:find("closed", 1, true), err.message)
      H.assert_error_code("STORE_OPERATION_FAILED", s.set, s, "k", 2)
    end)

    -- an iterator made before close() and stepped after it: it ended silently when the whole
    -- namespace fitted in the batch it had read (under 256 keys), and otherwise handed out the
    -- rest of that batch before raising; a later use of any kind is "closed"
    for _, n in ipairs({ 3, 600 }) do
      for _, walk in ipairs({ "keys", "namespaces" }) do
        it(("makes a %s() walk begun before it STORE_OPERATION_FAILED (\"closed\"), %d %s")
             :format(walk, n, walk == "keys" and "keys" or "children"), function()
          local name = H.segment_name("walkclose")
          for _, kv in ipairs({ zeltkv.memory(), zeltkv.shared(name, { size = "4m" }) }) do
            local s = kv:namespace("x")
            for i = 1, n do
              if walk == "keys" then s:set("k" .. i, i) else s:namespace("c" .. i) end
            end
            local it = s[walk](s)
            assert.is_string(it())
            kv:close()
            local err = H.assert_error_code("STORE_OPERATION_FAILED", it)
            assert.equal("closed", err.reason)
            H.assert_error_code("STORE_OPERATION_FAILED", it)
          end
          zeltkv.unlink(name)
        end)
      end
    end
    it("makes a kv:namespaces() walk begun before it STORE_OPERATION_FAILED (\"closed\")", function()
      local kv = zeltkv.memory()
      kv:namespace("a")
      kv:namespace("b")
      local it = kv:namespaces()
      assert.is_string(it())
      kv:close()
      H.assert_error_code("STORE_OPERATION_FAILED", it)
    end)

    it("runs on __close (local kv <close> = ...) in Lua 5.4", function()
      if _VERSION ~= "Lua 5.4" then return end -- to-be-closed variables are 5.4 syntax
      local chunk = assert(load([[
        local zeltkv = ...
        local s
        do
          local kv <close> = zeltkv.memory()
          s = kv:namespace("x")
          s:set("k", 1)
          assert(s:get("k") == 1)
        end
        return s
      ]]))
      local s = chunk(zeltkv)
      H.assert_error_code("STORE_OPERATION_FAILED", s.get, s, "k")
    end)

    it("runs on __close when the block is left by an error in Lua 5.4", function()
      if _VERSION ~= "Lua 5.4" then return end
      local chunk = assert(load([[
        local zeltkv, out = ...
        local kv <close> = zeltkv.memory()
        out.s = kv:namespace("x")
        error("leaving", 0)
      ]]))
      local out = {}
      local ok, err = pcall(chunk, zeltkv, out)
      assert.is_false(ok)
      assert.are.equal("leaving", err)
      H.assert_error_code("STORE_OPERATION_FAILED", out.s.get, out.s, "k")
    end)

    it("is safe to follow by __gc, and __gc alone releases drivers", function()
      for i = 1, 200 do
        local kv = zeltkv.memory()
        kv:namespace("n"):set("k", string.rep("v", 1000))
        if i % 2 == 0 then kv:close() end
      end
      collectgarbage()
      collectgarbage()
      local kv = zeltkv.memory()
      kv:namespace("n"):set("k", 1)
      assert.are.equal(1, kv:namespace("n"):get("k"))
      kv:close()
    end)

    it("is not done by __gc while a store of the driver is still reachable", function()
      local s = zeltkv.memory():namespace("kept")
      s:set("k", "v")
      collectgarbage()
      collectgarbage()
      assert.are.equal("v", s:get("k"))
      s:set("k2", "v2")
      assert.are.equal("v2", s:get("k2"))
    end)
  end)
end)
