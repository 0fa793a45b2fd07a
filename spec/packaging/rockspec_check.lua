-- spec/packaging/rockspec_check.lua ROCKSPEC: the rockspec builds every file of src/ into
-- zeltkv.core, names every Lua file of lua/ as a module, and copies directories that exist.
local spec = {}
local chunk = assert(loadfile(arg[1], "t", spec)); chunk()
local m = spec.build.modules
local want, got = {}, {}   -- every .c of src/ and its subdirectories
for f in io.popen("find src -name '*.c' | sort"):lines() do want[#want + 1] = f end
for _, f in ipairs(m["zeltkv.core"].sources) do got[#got + 1] = f end
table.sort(got)
assert(table.concat(want, " ") == table.concat(got, " "),
  "zeltkv.core sources: the rockspec has " .. table.concat(got, " ") .. "; src/ has " .. table.concat(want, " "))
local n = 0
for f in io.popen("cd lua && find . -name '*.lua' | sort"):lines() do
  f = f:gsub("^%./", "")
  local name = f:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  assert(m[name] == "lua/" .. f, "module " .. name .. " (lua/" .. f .. ") is not in the rockspec")
  n = n + 1
end
for name, v in pairs(m) do
  if type(v) == "string" then assert(io.open(v), name .. ": no file " .. v) end
end
for _, d in ipairs(spec.build.copy_directories or {}) do
  assert(os.execute("test -d " .. d) == true, "copy_directories: no directory " .. d)
end
print(#got .. " C files, " .. n .. " Lua modules")
