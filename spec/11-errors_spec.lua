-- spec/11-errors_spec.lua: what an error says (API.md "Errors"): the reason of a
-- STORE_OPERATION_FAILED, and a failed system call naming its path and the system's
-- message.

local H = require("helpers")
local zeltkv = H.zeltkv

-- runs `code` in a child with ZELTKV_SHM_DIR=dir; returns its output
local function child(code, dir)
  return (H.run_lua(code, "ZELTKV_SHM_DIR=" .. H.shq(dir)))
end

-- prints code, reason and message of the error that zeltkv.shared(name) raises
local OPEN = [[
local z = require("zeltkv")
local ok, e = pcall(z.shared, %q)
if ok then print("opened") else print(e.code .. "|" .. tostring(e.reason) .. "|" .. e.message) end
]]

describe("errors say what failed", function()
  it("a failed system call names the call, the path and the system's message", function()
    local dir = os.tmpname()
    os.remove(dir)   -- a directory that does not exist
    local out = child(OPEN:format("errtest"), dir)
    local code, reason, msg = out:match("^(%S+)|(%S+)|([^\n]*)")
    assert.are.equal("STORE_OPERATION_FAILED", code, out)
    assert.are.equal("system", reason)
    assert.truthy(msg:find(dir, 1, true), msg)
    assert.truthy(msg:find("No such file or directory", 1, true), msg)
  end)

  it("a segment another user made with mode 0600 is reason 'permission', with its path", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(H.run("mkdir -m 0777 " .. H.shq(dir)))
    local made = child([[require("zeltkv").shared("permtest", { mode = 384 }):close() print("made")]], dir)
    assert.truthy(made:find("made", 1, true), made)
    local out
    local is_root = H.run("test \"$(id -u)\" = 0")
    if is_root then
      -- root ignores permission bits: open it as nobody
      local _, have = H.run("command -v setpriv")
      if not have then pending("setpriv is missing: cannot run a child as another user") return end
      local file = os.tmpname()
      local f = assert(io.open(file, "wb"))
      f:write(OPEN:format("permtest"))
      f:close()
      H.run("chmod 0644 " .. H.shq(file))
      out = H.run(("env ZELTKV_SHM_DIR=%s LUA_PATH=%s LUA_CPATH=%s setpriv --reuid=65534 " ..
                   "--regid=65534 --clear-groups %s %s"):format(H.shq(dir), H.shq(package.path),
                   H.shq(package.cpath), H.interpreter(), H.shq(file)))
      os.remove(file)
      if out:find("not found", 1, true) and not out:find("|", 1, true) then
        H.run("rm -rf " .. H.shq(dir))
        pending("user nobody cannot read this build: " .. out:sub(1, 200))
        return
      end
    else
      H.run("chmod 0000 " .. H.shq(dir .. "/zeltkv-permtest"))
      out = child(OPEN:format("permtest"), dir)
    end
    H.run("rm -rf " .. H.shq(dir))
    local code, reason, msg = out:match("^(%S+)|(%S+)|([^\n]*)")
    assert.are.equal("STORE_OPERATION_FAILED", code, out)
    assert.are.equal("permission", reason, out)
    assert.truthy(msg:find(dir .. "/zeltkv-permtest", 1, true), msg)
    assert.truthy(msg:find("Permission denied", 1, true), msg)
  end)

  it("STORE_OPERATION_FAILED carries a reason a program can test", function()
    local kv = zeltkv.memory({ max_bytes = 65536 })
    local s = kv:namespace("a")
    local err = H.assert_error_code("STORE_OPERATION_FAILED", s.set, s, "big", string.rep("x", 100000))
    assert.are.equal("full", err.reason)
    -- the other codes have none
    err = H.assert_error_code("INVALID_KEY", s.get, s, {})
    assert.is_nil(err.reason)
    kv:close()
    err = H.assert_error_code("STORE_OPERATION_FAILED", s.get, s, "k")
    assert.are.equal("closed", err.reason)
    err = H.assert_error_code("STORE_OPERATION_FAILED", kv.stats, kv)
    assert.are.equal("closed", err.reason)
    -- a closed driver is "closed" before its arguments are looked at
    err = H.assert_error_code("STORE_OPERATION_FAILED", s.get, s, {})
    assert.are.equal("closed", err.reason)
  end)

  it("pure-Lua code raises the same error objects (core._raise)", function()
    local core = require("zeltkv.core")
    local ok, err = pcall(core._raise, "STORE_OPERATION_FAILED", "redis: connection refused",
                          "connection")
    assert.is_false(ok)
    H.check_error("STORE_OPERATION_FAILED", err)
    assert.are.equal("connection", err.reason)
    assert.are.equal("redis: connection refused", err.message)
    local _, ref = pcall(zeltkv.memory():namespace("a").get, zeltkv.memory():namespace("a"), "")
    assert.are.equal(getmetatable(ref), getmetatable(err))
    ok, err = pcall(core._raise, "INVALID_VALUE", "value: functions cannot be stored")
    H.check_error("INVALID_VALUE", err)
    assert.is_nil(err.reason)
    ok, err = pcall(core._raise, "NO_SUCH_CODE", "x")
    assert.is_false(ok)
    assert.are.equal("string", type(err))   -- a plain argument error
  end)
end)

-- Runs `code` (a Lua file) uncaught in a child of this interpreter; returns its output, and
-- the file name the child ran (errors name it)
local function uncaught(code)
  local out, ok, file = H.run_lua(code)
  return out, ok, file
end

describe("an uncaught zeltkv error", function()
  -- every host prints a string error (nginx, lua5.1, luajit, lua5.2+): see src/lua/check.c
  local cases = {
    { "a C method", [[
local s = require("zeltkv").memory():namespace("a")
s:set("k", print)
]], 2, "INVALID_VALUE: value: functions cannot be stored" },
    { "an engine failure (the LuaJIT front end raises it from Lua)", [[
local s = require("zeltkv").memory({ max_bytes = "64k" }):namespace("a")
for i = 1, 1000 do
  s:set(i, string.rep("x", 1000))
end
]], 3, "STORE_OPERATION_FAILED: set: store is full" },
    { "inside atomic()", [[
local kv = require("zeltkv").memory()
local s = kv:namespace("a")
kv:atomic(function()
  s:set("k", 1)
  s:incr("k", 0.5)
end)
]], 5, "INVALID_VALUE: incr: by must be an integer" },
    { "core._raise from a file that is zeltkv's own", [[
package.preload["fake.driver"] = (loadstring or load)([=[
  local core = require("zeltkv.core")
  core._own()
  return { fail = function() core._raise("STORE_OPERATION_FAILED", "redis: connection refused", "connection") end }
]=], "=fake/driver.lua")
local d = require("fake.driver")
d.fail()
]], 7, "STORE_OPERATION_FAILED: redis: connection refused" },
  }
  for _, c in ipairs(cases) do
    it("shows its code, message and the user's file:line: " .. c[1], function()
      local out, ok, file = uncaught(c[2])
      assert.is_false(ok, out)
      local want = ("%s:%d: zeltkv: %s"):format(file, c[3], c[4])
      assert.truthy(out:find(want, 1, true), "expected\n  " .. want .. "\nin\n" .. out)
      assert.is_nil(out:find("error object is not a string", 1, true))
    end)
  end

  it("is a table to a pcall, xpcall or a pcall around atomic()", function()
    local kv = zeltkv.memory()
    local s = kv:namespace("a")
    local _, e1 = pcall(s.set, s, "k", print)
    local _, e2 = xpcall(function() s:set("k", print) end, function(e) return e end)
    local _, e3 = pcall(kv.atomic, kv, function() s:set("k", print) end)
    local _, e4 = pcall(function()
      kv:atomic(function()
        pcall(error, "a pcall that returned is no catcher")
        s:incr("k", 0.5)
      end)
    end)
    for _, e in ipairs({ e1, e2, e3 }) do
      H.check_error("INVALID_VALUE", e)
      assert.are.equal("value: functions cannot be stored", e.message)
    end
    H.check_error("INVALID_VALUE", e4)
    kv:close()
  end)

  it("is the string inside a coroutine that does not catch it (as documented)", function()
    local s = zeltkv.memory():namespace("a")
    local co = coroutine.create(function() s:set("k", print) end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.are.equal("string", type(err))
    assert.truthy(err:find("zeltkv: INVALID_VALUE: value: functions cannot be stored", 1, true), err)
    -- caught inside the coroutine, it is the table
    co = coroutine.create(function() return pcall(s.set, s, "k", print) end)
    local _, _, e = coroutine.resume(co)
    H.check_error("INVALID_VALUE", e)
  end)
end)
