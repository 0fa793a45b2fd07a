-- spec/12-api_docs_spec.lua: the real module, its LuaLS annotations (types/zeltkv.lua) and its
-- reference (docs/reference.md, docs/errors.md) name the same functions, methods, options,
-- stats() fields, error codes and environment variables, so that none of the three drifts.
-- A method added to the binding without an annotation and a reference entry fails here, and so
-- does an annotation or an entry for something that is gone.

local H = require("helpers")
local zeltkv = H.zeltkv

local function read(path)
  local f = assert(io.open(path, "rb"), "cannot read " .. path)
  local s = f:read("*a")
  f:close()
  return s
end

local function sorted(set)
  local r = {}
  for k in pairs(set) do r[#r + 1] = k end
  table.sort(r)
  return r
end

-- expected and got are sets of names: both must hold the same names
local function same_names(expected, got, what)
  local missing, extra = {}, {}
  for k in pairs(expected) do if not got[k] then missing[#missing + 1] = k end end
  for k in pairs(got) do if not expected[k] then extra[#extra + 1] = k end end
  table.sort(missing); table.sort(extra)
  assert(#missing == 0 and #extra == 0, what .. ": missing " .. table.concat(missing, " ") ..
    (#extra > 0 and "; not in the real API: " .. table.concat(extra, " ") or ""))
end

local function public(t)
  local r = {}
  for k in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" then r[k] = true end
  end
  return r
end

---- the real API ---------------------------------------------------------------------
local function real()
  local kv = zeltkv.memory()
  local s = kv:namespace("a")
  local d = s:shdict()
  local r = {
    driver = public(debug.getmetatable(kv).__index),
    store = public(debug.getmetatable(s).__index),
    shdict = public(debug.getmetatable(d).__index),
    functions = {}, fields = {}, stats = {}, errors = public(zeltkv.errors),
    shdict_mod = {}, shdict_fields = {},
  }
  local mod = require("zeltkv.shdict")
  for k, v in pairs(mod) do
    if type(v) == "function" then r.shdict_mod[k] = true else r.shdict_fields[k] = true end
  end
  for k, v in pairs(public(zeltkv)) do
    if type(zeltkv[k]) == "function" then r.functions[k] = v else r.fields[k] = v end
  end
  local name = H.segment_name("api")
  local shared = zeltkv.shared(name, { size = "1m" })
  for _, drv in ipairs({ kv, zeltkv.memory({ max_bytes = "1m" }), shared }) do
    for k in pairs(drv:stats()) do r.stats[k] = true end
  end
  shared:close()
  zeltkv.unlink(name)
  kv:close()
  return r
end

---- types/zeltkv.lua ---------------------------------------------------------------------
-- classes: `---@class NAME` then `local VAR = {}`; methods: `function VAR:m(` / `VAR.m(`;
-- fields: `---@field f` lines after a `---@class` line.
local function annotations()
  local text = read("types/zeltkv.lua")
  local var_class, methods, fields = {}, {}, {}
  local class
  for line in text:gmatch("[^\n]*") do
    local c = line:match("^%-%-%-@class%s+([%w_.]+)")
    if c then class = c; fields[c] = fields[c] or {} end
    local f = line:match("^%-%-%-@field%s+([%w_]+)")
    if f and class then fields[class][f] = true end
    local var = line:match("^local%s+([%w_]+)%s*=%s*{}")
    if var and class then var_class[var] = class; methods[class] = methods[class] or {} end
    local v, m = line:match("^function%s+([%w_]+)[:.]([%w_]+)%s*%(")
    if v then
      assert(var_class[v], "types/zeltkv.lua: function " .. v .. "." .. m .. " of no class")
      methods[var_class[v]][m] = true
    end
  end
  return methods, fields
end

---- docs/reference.md ----------------------------------------------------------------------
local function section(text, heading)
  local s = text:find("\n## " .. heading .. "\n", 1, true)
  assert(s, "docs/reference.md has no section \"## " .. heading .. "\"")
  local e = text:find("\n## ", s + 1, true) or #text
  return text:sub(s, e)
end

local function table_names(text)
  local r = {}
  for name in text:gmatch("\n| `([%w_]+)` |") do r[name] = true end
  return r
end

local function headings(text, prefix)
  local r = {}
  local pat = "\n### `" .. prefix:gsub("%p", "%%%0") .. "([%w_]+)"
  for name in text:gmatch(pat) do r[name] = true end
  return r
end

describe("the API, its annotations (types/) and its reference (docs/)", function()
  local api = real()
  local methods, fields = annotations()
  local ref = read("docs/reference.md")

  it("annotates every module function and field, and nothing else", function()
    same_names(api.functions, methods["zeltkv"] or {}, "module functions in types/zeltkv.lua")
    same_names(api.fields, fields["zeltkv"] or {}, "module fields in types/zeltkv.lua")
  end)

  it("annotates every Driver, Store and shdict method, and nothing else", function()
    same_names(api.driver, methods["zeltkv.Driver"] or {}, "zeltkv.Driver methods in types/zeltkv.lua")
    same_names(api.store, methods["zeltkv.Store"] or {}, "zeltkv.Store methods in types/zeltkv.lua")
    same_names(api.shdict, methods["zeltkv.ShDict"] or {}, "zeltkv.ShDict methods in types/zeltkv.lua")
  end)

  it("annotates the zeltkv.shdict module", function()
    same_names(api.shdict_mod, methods["zeltkv.shdict"] or {}, "zeltkv.shdict functions in types/zeltkv.lua")
    same_names(api.shdict_fields, fields["zeltkv.shdict"] or {}, "zeltkv.shdict fields in types/zeltkv.lua")
  end)

  it("annotates every stats() field and error code", function()
    same_names(api.stats, fields["zeltkv.Stats"] or {}, "zeltkv.Stats fields in types/zeltkv.lua")
    same_names(api.errors, fields["zeltkv.errors"] or {}, "zeltkv.errors fields in types/zeltkv.lua")
  end)

  it("documents every module function and field, Driver and Store method in docs/reference.md", function()
    local mod = {}
    for k in pairs(api.functions) do mod[k] = true end
    for k in pairs(api.fields) do mod[k] = true end
    same_names(mod, headings(ref, "zeltkv."), "### `zeltkv.NAME` headings of docs/reference.md")
    same_names(api.driver, headings(ref, "kv:"), "### `kv:NAME(...)` headings of docs/reference.md")
    same_names(api.store, headings(ref, "s:"), "### `s:NAME(...)` headings of docs/reference.md")
    same_names(api.shdict_mod, headings(ref, "shdict."), "### `shdict.NAME(...)` headings of docs/reference.md")
  end)

  it("documents every stats() field in docs/reference.md and every error code in docs/errors.md", function()
    same_names(api.stats, table_names(section(ref, "stats fields")), "the stats fields table of docs/reference.md")
    local codes = table_names(section(read("docs/errors.md"), "Codes"))
    same_names(api.errors, codes, "the codes table of docs/errors.md")
  end)

  it("documents every option that types/ annotates, and no other", function()
    local opts = {}
    for _, c in ipairs({ "zeltkv.Options", "zeltkv.MemoryOptions", "zeltkv.SharedOptions" }) do
      for f in pairs(fields[c] or {}) do opts[f] = true end
    end
    same_names(opts, table_names(section(ref, "Driver options")), "the options table of docs/reference.md")
  end)

  it("the options types/ annotates are the options the drivers accept", function()
    local accepted = {}
    for _, c in ipairs({ "zeltkv.MemoryOptions", "zeltkv.SharedOptions" }) do
      for f in pairs(fields[c] or {}) do accepted[f] = c end
    end
    for f in pairs(fields["zeltkv.Options"]) do accepted[f] = "both" end
    local name = H.segment_name("opts")
    for opt, class in pairs(accepted) do
      -- a wrong type is refused by name; a wrong driver is refused as another driver's option
      local ok, err = pcall(zeltkv.memory, { [opt] = {} })
      assert(not ok and err.message:find(opt, 1, true), opt .. ": " .. tostring(err))
      if class == "zeltkv.SharedOptions" then
        assert(err.message:find("option of zeltkv.shared", 1, true), opt .. " given to memory: " .. tostring(err))
      end
      ok, err = pcall(zeltkv.shared, name, { [opt] = {} })
      assert(not ok and err.message:find(opt, 1, true), opt .. ": " .. tostring(err))
      if class == "zeltkv.MemoryOptions" then
        assert(err.message:find("option of zeltkv.memory", 1, true), opt .. " given to shared: " .. tostring(err))
      end
    end
    zeltkv.unlink(name)
  end)

  it("documents every environment variable the sources read", function()
    local vars = {}
    local p = io.popen("cat src/*.c src/*.h $(find lua -name '*.lua') 2>/dev/null")
    local src = p:read("*a")
    p:close()
    for v in src:gmatch("getenv%s*%(%s*\"([%w_]+)\"") do vars[v] = true end
    assert(next(vars), "no getenv found in src/ and lua/")
    local env = table_names(section(ref, "Environment variables"))
    for _, v in ipairs(sorted(vars)) do
      assert(env[v], v .. " is read by the sources but not in docs/reference.md's environment table")
    end
  end)
end)
