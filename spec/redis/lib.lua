-- spec/redis/lib.lua: helpers of the redis driver's own specs (spec/redis/*_spec.lua).
--
-- The servers come from spec/redis/servers.sh (make redis-test starts them and exports
-- their addresses); R.need(var) makes a describe pending when one is missing, so the
-- files can be run by hand against only some servers.
--   R.raw(addr, ...)       one command on a connection of its own (not the driver's):
--                          addr "unix:/path", "host:port"; returns the reply
--   R.server()             a private redis-server on a free port (for fault tests)
--   R.sleep(s), R.now()    seconds, LuaSocket's clock
local socket = require("socket")
local resp = require("zeltkv.resp")
local H = require("helpers")

local R = {}

R.env = function(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

R.sleep = socket.sleep
R.now = socket.gettime

-- "unix:///p" | "redis://h:p" | "h:p" -> connect arguments
local function target(addr)
  local path = addr:match("^unix://(/.+)$") or addr:match("^unix:(/.+)$")
  if path then return { path = path } end
  local h, p = addr:match("^redis://([^/:@]+):(%d+)") 
  if not h then h, p = addr:match("^([^:]+):(%d+)$") end
  return { host = h, port = tonumber(p) }
end

function R.connect(addr)
  local t = target(addr)
  local c
  if t.path then
    local unix = require("socket.unix")
    c = (type(unix) == "table" and unix.stream or unix)()
    assert(c:connect(t.path))
  else
    c = socket.tcp()
    assert(c:connect(t.host, t.port))
  end
  c:settimeout(5)
  return c
end

function R.cmd(c, ...)
  assert(c:send(resp.pack1(...)))
  local r, err = resp.read(c)
  assert(r ~= nil, err)
  return r
end

function R.raw(addr, ...)
  local c = R.connect(addr)
  local r = R.cmd(c, ...)
  c:close()
  return r
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end
R.sh = sh

-- The candidates start at a place of this process's own (the time and an address): under
-- Lua 5.1 and LuaJIT math.random gives every process the same sequence, and make test runs
-- suites side by side (spec-all and redis-test both start servers here).
local port_base = (os.time() + (tonumber((tostring({}):match("0x(%x+)")) or "0", 16) or 0)) % 9000
local function free_port()
  for i = 1, 50 do
    port_base = (port_base + 7919 * i) % 9000
    local p = 23000 + port_base                -- below the ephemeral ports (32768+)
    local c = socket.tcp()
    c:settimeout(0.2)
    local busy = c:connect("127.0.0.1", p)
    c:close()
    if not busy then return p end
  end
  error("no free port")
end

-- a private server: R.server() -> { port, addr, url, start(), stop(), pause(), resume() }
function R.server(extra)
  local dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir -p " .. dir))
  local srv = { port = free_port(), dir = dir }
  srv.addr = "127.0.0.1:" .. srv.port
  srv.url = "redis://" .. srv.addr
  function srv.start()
    assert(sh(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize yes "
               .. "--dir %s --pidfile %s/redis.pid --logfile %s/redis.log %s"):format(
               srv.port, dir, dir, dir, extra or "")))
    for _ = 1, 200 do
      local ok, r = pcall(R.raw, srv.addr, "PING")
      if ok and r == "PONG" then
        local f = io.open(dir .. "/redis.pid")
        srv.pid = f and tonumber(f:read("*a"))
        if f then f:close() end
        return
      end
      R.sleep(0.05)
    end
    local f = io.open(dir .. "/redis.log")
    local log = f and f:read("*a") or ""
    if f then f:close() end
    error("redis-server did not start on " .. srv.addr .. ": " .. log:sub(-400))
  end
  local function signal(sig)
    if srv.pid then sh(("kill -%s %d 2>/dev/null"):format(sig, srv.pid)) end
  end
  function srv.stop()
    signal("CONT")
    signal("TERM")
    for _ = 1, 100 do
      if not sh(("kill -0 %d 2>/dev/null"):format(srv.pid or 0)) then break end
      R.sleep(0.05)
    end
    srv.pid = nil
  end
  function srv.pause() signal("STOP") end
  function srv.resume() signal("CONT") end
  function srv.cleanup()
    if srv.pid then srv.stop() end
    sh("rm -rf " .. dir)
  end
  return srv
end

-- the Lua interpreter of this run, and a child running `code` with the module paths
function R.child(code, args)
  local f = os.tmpname()
  local h = assert(io.open(f, "w"))
  h:write(code)
  h:close()
  local cmd = ("%s %s %s 2>&1"):format(H.interpreter(), f, table.concat(args or {}, " "))
  return { file = f, cmd = cmd }
end

-- run several children at once; returns their outputs (in order)
function R.run_children(children)
  local pipes = {}
  for i, c in ipairs(children) do pipes[i] = assert(io.popen(c.cmd, "r")) end
  local out = {}
  for i, p in ipairs(pipes) do
    out[i] = p:read("*a")
    p:close()
    os.remove(children[i].file)
  end
  return out
end

-- the package paths a child needs (the ones of this run)
function R.prelude()
  return ("package.path = %q; package.cpath = %q\n"):format(package.path, package.cpath)
end

return R
