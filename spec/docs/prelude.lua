-- spec/docs/prelude.lua CHUNK CHUNKNAME EXPECT: run one chain of documentation blocks
-- (written by spec/docs/doccheck.lua) under the interpreter of this process, with
--   __doc.raises(line, fn, text)   fn must raise an error whose tostring contains text
--   print                          as Lua's, and checked against the `--> TEXT` of its line
-- An error, a failed check, or a `-->` line that never printed exits with status 1 after
-- printing where (CHUNKNAME:line) and a traceback.
local chunkfile, chunkname, expectfile = ...
local expect = dofile(expectfile)
local source = chunkname
local printed = {}
local failures = {}
local real_print = print

local function fail(line, msg)
  failures[#failures + 1] = source:sub(2) .. ":" .. line .. ": " .. msg
end

local function show(v)
  local ok, s = pcall(tostring, v)
  return ok and s or ("<" .. type(v) .. ">")
end

_G.print = function(...)
  real_print(...)
  local info = debug.getinfo(2, "Sl")
  if info and info.source == source and expect[info.currentline] then
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = show((select(i, ...))) end
    local got = table.concat(parts, "\t")
    printed[info.currentline] = true
    local function norm(x) return (x:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end
    if norm(got) ~= norm(expect[info.currentline]) then
      fail(info.currentline, "printed " .. string.format("%q", got) .. " where the page says --> " ..
        string.format("%q", expect[info.currentline]))
    end
  end
end

_G.__doc = {
  raises = function(line, fn, text)
    local ok, err = pcall(fn)
    if ok then
      fail(line, "the block is marked raises=\"" .. text .. "\" but did not raise")
    elseif not show(err):find(text, 1, true) then
      fail(line, "the block raised " .. string.format("%q", show(err)) .. ", not an error with \"" .. text .. "\"")
    end
  end,
}

local f = io.open(chunkfile, "rb")
local code = f:read("*a")
f:close()
local fn, err = (loadstring or load)(code, chunkname)
if not fn then
  io.stderr:write(err, "\n")
  os.exit(1)
end
local ok, trace = xpcall(fn, function(e) return debug.traceback(show(e), 2) end)
if not ok then
  io.stderr:write("uncaught error: ", trace, "\n")
  os.exit(1)
end
local lines = {}
for line in pairs(expect) do lines[#lines + 1] = line end
table.sort(lines)
for _, line in ipairs(lines) do
  if not printed[line] then fail(line, "the page shows --> " .. expect[line] .. " but the line never printed") end
end
if #failures > 0 then
  io.stderr:write(table.concat(failures, "\n"), "\n")
  os.exit(1)
end
