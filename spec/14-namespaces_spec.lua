-- spec/14-namespaces_spec.lua: s:namespaces() (API.md, issue 13.2): the names of a
-- namespace's child namespaces, with the guarantees of keys(): never the lock for the whole
-- walk, a child present throughout returned exactly once, none made during the walk.

local H = require("helpers")

local function names_of(s)
  local t = {}
  for name in s:namespaces() do t[#t + 1] = name end
  table.sort(t)
  return t
end

local it_here = H.except("redis", "namespaces() of the Redis driver is its own (issue 13.2)")

describe("Store:namespaces()", function()
  local kv, root
  before_each(function()
    kv = H.driver()
    root = kv:namespace("root")
  end)
  after_each(function() kv:close() end)

  it_here("lists the direct children only, whether or not they hold keys", function()
    assert.are.same({}, names_of(root))
    root:namespace("b"):set("k", 1)
    root:namespace("a")
    root:namespace("b"):namespace("deeper")
    kv:namespace("other"):namespace("x")
    assert.are.same({ "a", "b" }, names_of(root))
    assert.are.same({ "deeper" }, names_of(root:namespace("b")))
    assert.are.same({}, names_of(root:namespace("a")))
  end)

  it_here("returns any bytes of a name as they are", function()
    local odd = { "with\0nul", string.rep("n", 65535), "é", "/" }
    for _, n in ipairs(odd) do root:namespace(n) end
    local got = names_of(root)
    table.sort(odd)
    assert.are.same(odd, got)
  end)

  it_here("walks 1 000 children in batches: each once, others made meanwhile not returned", function()
    for i = 1, 1000 do root:namespace("c" .. i) end
    local seen, n = {}, 0
    for name in root:namespaces() do
      assert.is_nil(seen[name], "returned twice: " .. name)
      seen[name] = true
      n = n + 1
      if n % 100 == 0 then root:namespace("new" .. n) end   -- made during the walk
    end
    assert.are.equal(1000, n)
    for i = 1, 1000 do assert.is_true(seen["c" .. i]) end
  end)

  it_here("forgets children made in an atomic that was undone, even mid-walk", function()
    for i = 1, 600 do root:namespace("c" .. i) end
    pcall(kv.atomic, kv, function()
      root:namespace("undone")
      error("roll back")
    end)
    assert.are.equal(600, #names_of(root))
    local seen, n = {}, 0
    for name in root:namespaces() do
      n = n + 1
      seen[name] = true
      if n == 256 then   -- a batch boundary: undo a creation between two batches
        pcall(kv.atomic, kv, function() root:namespace("gone"); error("undo") end)
      end
    end
    assert.are.equal(600, n)
    assert.is_nil(seen.undone)
    assert.is_nil(seen.gone)
  end)

  it_here("raises STORE_OPERATION_FAILED (closed) on a closed driver", function()
    local it = root:namespaces()
    kv:close()
    local err = H.assert_error_code("STORE_OPERATION_FAILED", it)
    assert.are.equal("closed", err.reason)
    H.assert_error_code("STORE_OPERATION_FAILED", root.namespaces, root)
    kv = H.driver()
  end)
end)

describe("Driver:namespaces()", function()
  it("lists the namespaces at the top of the driver (what zkv ns shows)", function()
    local kv = H.driver()
    assert.are.same({}, names_of(kv))
    kv:namespace("b"):set("k", 1)
    kv:namespace("a"):namespace("deeper"):set("k", 1)
    kv:namespace("odd/na%me\0"):set("k", 1)
    assert.are.same({ "a", "b", "odd/na%me\0" }, names_of(kv))
    kv:close()
    H.assert_error_code("STORE_OPERATION_FAILED", kv.namespaces, kv)
  end)
end)
