-- spec/packaging/use.lua [ffi]: use an installed zeltkv the way a user would, and check
-- that every part of it came from the prefix in $ZKV_EXPECT_PREFIX (not from the
-- checkout, not from another installation). With "ffi": the LuaJIT FFI front end is on.
local prefix = assert(os.getenv("ZKV_EXPECT_PREFIX"), "ZKV_EXPECT_PREFIX unset")
local function where(name, path)
  for t in path:gmatch("[^;]+") do
    local f = t:gsub("%?", (name:gsub("%.", "/")))
    local h = io.open(f)
    if h then h:close(); return f end
  end
end
local z = require("zeltkv")
for _, m in ipairs({ "zeltkv", "zeltkv.shdict", "zeltkv.ffi" }) do
  local f = where(m, package.path)
  assert(f and f:sub(1, #prefix) == prefix, m .. " found at " .. tostring(f) .. ", not under " .. prefix)
end
local core = where("zeltkv.core", package.cpath)
assert(core and core:sub(1, #prefix) == prefix, "zeltkv.core at " .. tostring(core))
local s = z.memory():namespace("a")
assert(s:set("k", 1) == true and s:incr("k") == 2)
assert(s:shdict():get("k") == 2, "shdict")
assert(type(z.version) == "string" and z.errors.INVALID_KEY, "version, errors")
if arg[1] == "ffi" then
  assert(rawget(_G, "jit"), "not LuaJIT")
  assert(z._ffi == true, "the FFI front end is off: " .. tostring(z._ffi_disabled))
end
print("ok " .. _VERSION .. (rawget(_G, "jit") and " (LuaJIT, FFI " .. tostring(z._ffi) .. ")" or "") .. ": " .. core)
