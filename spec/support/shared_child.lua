-- spec/support/shared_child.lua: the child process of spec/07-shared_spec.lua.
--
--   <interpreter> spec/support/shared_child.lua CHUNK_FILE [ARG...]
--
-- Runs the Lua chunk in CHUNK_FILE as `chunk(ARG...)` with these globals:
--   zeltkv, H (spec/helpers.lua), assert (luassert), out(...), pid(), now(), sleep(s),
--   barrier(), code_of(err)
-- The spec passes its own package.path / package.cpath in ZELTKV_TEST_LPATH /
-- ZELTKV_TEST_CPATH (and LUA_PATH / LUA_CPATH), and ZELTKV_SHM_DIR points at the spec's
-- private temporary directory. Exit status: 0 when the chunk returned, 3 when it raised
-- (the error and a traceback are printed as "CHILD-FAIL: ..."); a crash shows as a signal.

local unpack = table.unpack or unpack

package.path = os.getenv("ZELTKV_TEST_LPATH") or package.path
package.cpath = os.getenv("ZELTKV_TEST_CPATH") or package.cpath

assert(os.getenv("ZELTKV_SHM_DIR"), "shared_child.lua: ZELTKV_SHM_DIR must be set")

_G.zeltkv = require("zeltkv")
_G.H = require("helpers")
_G.assert = require("luassert")

-- print the arguments separated by tabs, one line, flushed at once (the parent may be
-- waiting for it while this process goes on, or stops)
function _G.out(...)
  local t = {}
  for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
  io.stdout:write(table.concat(t, "\t"), "\n")
  io.stdout:flush()
end

function _G.pid()
  local f = assert(io.open("/proc/self/stat", "r"))
  local s = f:read("*l")
  f:close()
  return tonumber(s:match("^(%d+)"))
end

function _G.now()
  local p = assert(io.popen("date +%s.%N"))
  local s = p:read("*l")
  p:close()
  return tonumber(s)
end

function _G.sleep(s)
  os.execute("sleep " .. tostring(s))
end

function _G.code_of(err)
  if type(err) == "table" and err.code then return err.code end
  return "RAW:" .. tostring(err)
end

-- Waits until the parent releases every child of the group at once (see run_group in the
-- spec): this process says it is ready, then opens the group's FIFO for reading, which
-- blocks until the parent opens its other end, for all children together, and then says
-- it got through (the parent keeps its end open until every child has: a child preempted
-- between the two steps still finds a writer there).  late: seconds to sleep between them,
-- for the test of that.
function _G.barrier(late)
  local dir = assert(os.getenv("ZELTKV_TEST_BARRIER"), "no barrier for this child")
  local r = assert(io.open(dir .. "/ready." .. pid(), "w"))
  r:close()
  if late then sleep(late) end
  local f = assert(io.open(dir .. "/fifo", "r"))
  f:close()
  local o = assert(io.open(dir .. "/opened." .. pid(), "w"))
  o:close()
end

local chunk_file = assert(arg[1], "usage: shared_child.lua CHUNK_FILE [ARG...]")
local chunk = assert(loadfile(chunk_file))
local args = { n = #arg - 1 }
for i = 2, #arg do args[i - 1] = arg[i] end

local ok, err = xpcall(function() return chunk(unpack(args, 1, args.n)) end, function(e)
  local msg = (type(e) == "table" and rawget(e, "code")) and H.describe_err(e) or tostring(e)
  return msg .. "\n" .. debug.traceback()
end)
io.stdout:flush()
if not ok then
  io.stdout:write("CHILD-FAIL: ", tostring(err), "\n")
  io.stdout:flush()
  os.exit(3)
end
os.exit(0)
