-- spec/10-binding_spec.lua: the facts the binding's Lua parts take from C, checked against
-- their one home.
--   * lua/zeltkv/ffi.lua copies declarations of include/zeltkv.h into ffi.cdef: each must be
--     the header's own, token for token (parsed from both files, comments and ZKV_API
--     dropped);
--   * core._const holds every result code, value type and flag of the header with the
--     header's value (parsed from its enums and #defines), and the declaration of the entry
--     points ffi.lua calls (core._const.FFI, from src/lua/binding.h);
--   * ffi.lua and shdict.lua spell no engine code as a number literal.
-- Runs on every interpreter (the files are parsed as text).

local H = require("helpers")
local core = require("zeltkv.core")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- C text -> list of normalised top-level declarations (comments, preprocessor lines,
-- ZKV_API and extern "C" braces removed; one space between tokens only where needed)
local function declarations(text)
  text = text:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " ")
  text = text:gsub("\\\n", " ")
  text = text:gsub("\n%s*#[^\n]*", "\n"):gsub("^%s*#[^\n]*", "")
  text = text:gsub("extern%s*\"C\"%s*{", " "):gsub("ZKV_API", " ")
  local out, depth, cur = {}, 0, {}
  for c in text:gmatch(".") do
    cur[#cur + 1] = c
    if c == "{" then depth = depth + 1
    elseif c == "}" then depth = depth - 1
    elseif c == ";" and depth == 0 then
      local d = table.concat(cur):gsub("%s+", " ")
      d = d:gsub(" ?([%*%(%)%[%]{},;=]) ?", "%1"):gsub("^ ", ""):gsub(" $", "")
      out[#out + 1] = d
      cur = {}
    end
  end
  return out
end

local function set_of(list)
  local s = {}
  for _, d in ipairs(list) do s[d] = true end
  return s
end

describe("the binding's facts", function()
  local header = read("include/zeltkv.h")
  local ffi_src = read("lua/zeltkv/ffi.lua")
  local cdef = ffi_src:match("local CDEF = %[%[(.-)%]%]")

  it("ffi.lua's cdef copies declarations of include/zeltkv.h exactly", function()
    assert.is_string(cdef, "ffi.lua has no CDEF block")
    local in_header = set_of(declarations(header))
    local copied = declarations(cdef)
    assert.is_true(#copied >= 3, "too few declarations found in ffi.lua's CDEF")
    for _, d in ipairs(copied) do
      assert(in_header[d], "ffi.lua declares what include/zeltkv.h does not:\n  " .. d)
    end
  end)

  it("the comparison tells a changed declaration from the header's", function()
    -- the check above must be able to fail: a changed parameter type is caught
    local in_header = set_of(declarations(header))
    local bad = declarations("int zkv_del(zkv_db *db, zkv_ns ns, const void *key, int klen);")
    assert.is_nil(in_header[bad[1]])
    local good = declarations("int zkv_del(zkv_db *db, zkv_ns ns,\n const void *key, size_t klen);")
    assert.is_true(in_header[good[1]])
  end)

  it("core._const holds every code, type and flag of the header, with its value", function()
    local K = core._const
    local n = 0
    -- enumerators: ZKV_NAME = value
    for name, v in header:gmatch("ZKV_([%u_%d]+)%s*=%s*(%-?%d+)") do
      if not name:match("^CLASS_") and not name:match("^EVICT_") then
        n = n + 1
        assert.are.equal(tonumber(v), K[name], "core._const." .. name)
      end
    end
    -- flags: #define ZKV_NAME Nu
    for name, v in header:gmatch("#define ZKV_([%u_]+) (%d+)u") do
      if name:match("^SET_") or name:match("^GET_") or name:match("^MAX_") then
        n = n + 1
        assert.are.equal(tonumber(v), K[name], "core._const." .. name)
      end
    end
    assert.is_true(n >= 30, "found only " .. n .. " constants in the header")
    assert.is_string(K.FFI)
    assert.truthy(K.FFI:find("zkv_lua_get", 1, true))
  end)

  it("core._const.FFI is the declaration of src/lua/binding.h", function()
    local src = read("src/lua/binding.h")
    local decl = src:match("#define ZKV_LUA_FFI(.-)\nZKV_LUA_FFI")
    assert.is_string(decl)
    decl = decl:gsub("\\\n", " ")
    assert.is_true(#declarations(decl) >= 8)
    assert.are.same(declarations(decl), declarations(core._const.FFI))
  end)

  it("ffi.lua and shdict.lua spell no engine code or type as a number", function()
    for _, path in ipairs({ "lua/zeltkv/ffi.lua", "lua/zeltkv/shdict.lua" }) do
      local src = read(path):gsub("%-%-[^\n]*", "")
      for line in src:gmatch("[^\n]+") do
        assert.is_nil(line:match("rc [=~]= %-?%d"), path .. ": " .. line)
        -- local OK, ETYPE = 0, -5: a name of core._const given a number
        local names, values = line:match("^%s*local ([%w_, ]+) = (%-?%d[%d, %-]*)$")
        for name in (values and names or ""):gmatch("[%w_]+") do
          assert.is_nil(core._const[name], path .. " copies " .. name .. ": " .. line)
        end
      end
    end
  end)
end)
