-- spec/prometheus_spec.lua: zeltkv.prometheus(kv [, labels]) renders stats() in the
-- Prometheus text format (issue 13.6); its output is read back by a strict parser
-- (spec/support/promtext.lua), which is itself checked on texts it must refuse.

local H = require("helpers")
local zeltkv = require("zeltkv")
local P = require("support.promtext")

local function shared_store(tag)
  local name = H.segment_name("prom-" .. tag)
  return zeltkv.shared(name, { size = "1m" }), name
end

describe("zeltkv.prometheus", function()
  it("renders every counter of both drivers, typed, with the driver's labels", function()
    local sh, name = shared_store("a")
    for _, kv in ipairs({ zeltkv.memory(), sh }) do
      local s = kv:namespace("a")
      s:set("k", 1); s:get("k"); s:get("k"); s:get("nope"); s:del("k")
      kv:atomic(function() s:incr("n", 1) end)
      local text = zeltkv.prometheus(kv, { app = "shop" })
      local fams = P.parse(text)
      local st = kv:stats()
      local want = { app = "shop", driver = st.driver, name = st.name }
      assert.are.equal(2, P.value(fams, "zeltkv_hits_total", want))
      assert.are.equal(1, P.value(fams, "zeltkv_misses_total", want))
      assert.are.equal(3, P.value(fams, "zeltkv_gets_total", want))
      assert.are.equal(2, P.value(fams, "zeltkv_sets_total", want))
      assert.are.equal(1, P.value(fams, "zeltkv_deletes_total", want))
      assert.are.equal(1, P.value(fams, "zeltkv_atomic_commits_total", want))
      assert.are.equal(st.keys, P.value(fams, "zeltkv_keys", want))
      assert.are.equal("counter", fams.zeltkv_hits_total.type)
      assert.are.equal("gauge", fams.zeltkv_keys.type)
      assert.is_truthy(fams.zeltkv_hits_total.help)
      assert.are.equal(0, P.value(fams, "zeltkv_lock_wait_seconds_total", want))
      if st.name then
        assert.are.equal(1024 * 1024, P.value(fams, "zeltkv_segment_size_bytes", want))
      else
        assert.is_nil(fams.zeltkv_segment_size_bytes)   -- a memory store has no segment
      end
    end
    sh:close()
    zeltkv.unlink(name)
  end)

  it("escapes label values, and renders a list of stores as one exposition", function()
    local a, b = zeltkv.memory(), zeltkv.memory()
    a:namespace("x"):get("k")
    local odd = 'say "hi"\\ now\nthen'
    local text = zeltkv.prometheus({ { a, { store = odd } }, { b, { store = "b" } } })
    local fams = P.parse(text)
    assert.are.equal(2, #fams.zeltkv_misses_total.samples)
    assert.are.equal(1, P.value(fams, "zeltkv_misses_total", { store = odd }))
    assert.are.equal(0, P.value(fams, "zeltkv_misses_total", { store = "b" }))
    local _, n = text:gsub("# TYPE zeltkv_misses_total ", "")
    assert.are.equal(1, n)
  end)

  it("refuses bad labels and things that are not drivers, naming them", function()
    local kv = zeltkv.memory()
    for _, labels in ipairs({ "x", { ["1a"] = "v" }, { ["a-b"] = "v" }, { __x = "v" },
                              { driver = "mine" }, { a = {} }, { [1] = "v" } }) do
      local err = H.assert_error_code("INVALID_VALUE", zeltkv.prometheus, kv, labels)
      assert.truthy(err.message:find("prometheus", 1, true), err.message)
    end
    H.assert_error_code("INVALID_VALUE", zeltkv.prometheus)
    H.assert_error_code("INVALID_VALUE", zeltkv.prometheus, { { 42 } })
    H.assert_error_code("INVALID_VALUE", zeltkv.prometheus, { { kv }, { kv } })   -- same labels
    kv:close()
    H.assert_error_code("STORE_OPERATION_FAILED", zeltkv.prometheus, kv)
  end)

  it("its parser refuses what the format forbids", function()
    local good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\"} 1\n"
    assert.is_truthy(P.parse(good).a_total)
    for _, text in ipairs({
      "a_total 1",                                             -- no final newline
      "# TYPE a counter\na 1\n",                               -- counter without _total
      "# TYPE a gauge\n# TYPE a gauge\na 1\n",                 -- TYPE twice
      "a 1\n# TYPE a gauge\n",                                 -- TYPE after samples
      "a 1\nb 1\na 2\n",                                       -- family not together
      "a{k=\"v\"} 1\na{k=\"v\"} 2\n",                          -- same labels twice
      "a{k=\"v\\q\"} 1\n",                                     -- bad escape
      "a{k=v} 1\n", "a x\n", "1a 1\n", "\n",
    }) do
      assert.has_error(function() P.parse(text) end)
    end
  end)
end)
