-- zeltkv.socket: one socket interface over two hosts, for the redis driver.
--
-- Inside nginx, in a phase with cosockets, a connection is an ngx.socket.tcp cosocket
-- taken from (and given back to) nginx's connection pool: it never blocks the worker.
-- Everywhere else it is a LuaSocket socket (TCP or unix, TLS through LuaSec), blocking,
-- kept by the caller. nginx's init phase (init_by_lua) may block, so it gets LuaSocket;
-- any other phase without cosockets (init_worker, set, log, header/body filter, ...) is
-- refused with a clear error instead of blocking a worker.
--
-- Both kinds answer the same calls, with the cosocket's conventions:
--   c:send(str)                 -> bytes | nil, err
--   c:receive("*l") / (n)       -> data  | nil, err        ("*l": a line without CRLF)
--   M.release(c, ok)            back to the pool (nginx) or nothing; `ok` false closes it
--   c:close()
-- connect() also reports whether the connection is new (AUTH/SELECT must be sent then).

local M = {}

local ngx = rawget(_G, "ngx")

-- phases where ngx.socket.tcp works (lua-nginx-module's documentation)
local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true, balancer = false,
}

-- "cosocket", "luasocket", or nil and why this phase has neither
function M.kind()
  if ngx and ngx.get_phase then
    local phase = ngx.get_phase()
    if COSOCKET_PHASES[phase] then return "cosocket" end
    if phase ~= "init" then
      return nil, ("no cosocket in nginx's %s phase (the redis driver would block the worker); "
                   .. "call it from (server_)rewrite/access/content or a timer (ngx.timer.at)"):format(phase)
    end
  end
  return "luasocket"
end

---------------------------------------------------------------------------
-- LuaSocket

local luasocket, unix, ssl

local function load_luasocket()
  if not luasocket then
    local ok, mod = pcall(require, "socket")
    if not ok then return nil, "LuaSocket is not installed (Debian: lua-socket): " .. tostring(mod) end
    luasocket = mod
  end
  return luasocket
end

-- TLS over a connected LuaSocket socket (LuaSec).  LuaSec checks the certificate chain
-- against cafile/capath; it does not compare the certificate's names with the host.
local function wrap_tls(sock, cfg)
  if not ssl then
    local ok, mod = pcall(require, "ssl")
    if not ok then return nil, "TLS needs LuaSec (Debian: lua-sec): " .. tostring(mod) end
    ssl = mod
  end
  local tls = cfg.tls
  local params = {
    mode = "client", protocol = "any", options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1" },
    verify = tls.verify == false and "none" or "peer",
    cafile = tls.cafile, capath = tls.capath, certificate = tls.cert, key = tls.key,
  }
  if params.verify == "peer" and not params.cafile and not params.capath then
    params.capath = "/etc/ssl/certs"
  end
  local s, err = ssl.wrap(sock, params)
  if not s then return nil, "TLS: " .. tostring(err) end
  s:settimeout(cfg.timeout)
  local name = tls.server_name or (not cfg.path and cfg.host) or nil
  if name and s.sni then s:sni(name) end
  local ok, herr = s:dohandshake()
  if not ok then s:close(); return nil, "TLS handshake: " .. tostring(herr) end
  return s
end

local function connect_luasocket(cfg)
  local sock_mod, err = load_luasocket()
  if not sock_mod then return nil, err end
  local sock
  if cfg.path then
    if not unix then
      local ok, mod = pcall(require, "socket.unix")
      if not ok then return nil, "LuaSocket has no unix sockets here: " .. tostring(mod) end
      unix = mod
    end
    sock = (type(unix) == "table" and unix.stream or unix)()
  else
    sock = sock_mod.tcp()
  end
  if not sock then return nil, "cannot make a socket" end
  sock:settimeout(cfg.timeout)
  local ok, cerr
  if cfg.path then ok, cerr = sock:connect(cfg.path) else ok, cerr = sock:connect(cfg.host, cfg.port) end
  if not ok then
    sock:close()
    return nil, ("connect %s: %s"):format(cfg.name, tostring(cerr))
  end
  if not cfg.path then sock:setoption("tcp-nodelay", true) end
  if cfg.tls then
    local s, terr = wrap_tls(sock, cfg)
    if not s then sock:close(); return nil, ("%s: %s"):format(cfg.name, terr) end
    sock = s
  end
  return sock
end

---------------------------------------------------------------------------
-- cosockets

-- A cosocket object keeps its timeouts and can connect again after setkeepalive, so each
-- coroutine keeps its idle object per node (cfg.socks, weak on the coroutine) and a call
-- only takes a connection from nginx's pool: no new object, no settimeouts, no finalizer
-- for the GC.  nginx reuses a finished request's coroutine for a later request, and an
-- object serves only the request that made it ("bad request" otherwise), so the slot also
-- holds that request and is used only by it (a recycled request address is a finished
-- request: its objects are not connected, and connect binds one to the new request).  The
-- object is out of the slot while it is connected, so a nested call (atomic's connection
-- held across fn) makes its own, and another light thread has a coroutine of its own.
-- Without resty.core's get_request every call makes a new object, as nginx's docs show.
local WEAK_K = { __mode = "k" }
local co_running = coroutine.running
local get_request
if ngx then
  local ok, base = pcall(require, "resty.core.base")
  if ok and type(base) == "table" then get_request = base.get_request end
  -- what base.get_request calls where OpenResty's LuaJIT has it, without the Lua call
  -- around it (the request as a light userdata either way)
  local xok, exdata = pcall(require, "thread.exdata")
  if get_request and xok and type(exdata) == "function" then get_request = exdata end
end

-- this coroutine's slot of cfg in this request, or nil.  A slot is made only by a call
-- that M.kind() let through, and the coroutines of the phases with cosockets (a handler,
-- its light threads, a timer) live only in their phase, so a slot of this request says
-- that this phase has cosockets: a call that finds one skips ngx.get_phase(), which costs
-- 0.17 us as the driver runs it (interpreted: the call yields, so LuaJIT does not compile
-- it), a third of the driver's own time per call.  (A coroutine made in content and
-- resumed from a filter phase would meet nginx's own "API disabled" error at connect:
-- it fails at once all the same, without reason "phase".)
function M.slot(cfg)
  local socks = cfg.socks
  if not socks or not get_request then return nil end
  local co = co_running()
  local slot = co and socks[co]
  if slot and slot.req == get_request() then return slot end
  return nil
end

-- connect_cosocket(cfg, slot) -> sock, fresh, slot | nil, err.  slot: M.slot(cfg), when the
-- caller has it
local function connect_cosocket(cfg, slot)
  local req
  if not slot then
    local socks = cfg.socks
    if not socks then socks = setmetatable({}, WEAK_K); cfg.socks = socks end
    local co = co_running()
    req = co and get_request and get_request()
    slot = req and socks[co]
    if slot and slot.req ~= req then slot.req, slot.sock = req, false  -- a new request's now
    elseif req and not slot then slot = { sock = false, req = req }; socks[co] = slot end
  end
  local sock = slot and slot.sock
  if sock then
    slot.sock = false
  else
    local err
    sock, err = ngx.socket.tcp()
    if not sock then return nil, "ngx.socket.tcp: " .. tostring(err) end
    local ms = cfg.timeout * 1000
    sock:settimeouts(ms, ms, ms)
  end
  local ok, cerr
  local popts = cfg.popts                 -- made once per node, not per call
  if not popts then
    -- the pool is made by setkeepalive with its size; connect needs the size only where
    -- a backlog queues connects beyond it
    popts = { pool = cfg.pool_name, pool_size = cfg.backlog and cfg.pool_size or nil, backlog = cfg.backlog }
    cfg.popts = popts
  end
  if cfg.path then ok, cerr = sock:connect(cfg.upath, popts)
  else ok, cerr = sock:connect(cfg.host, cfg.port, popts) end
  if not ok then return nil, ("connect %s: %s"):format(cfg.name, tostring(cerr)) end
  local fresh = sock:getreusedtimes() == 0
  if fresh and cfg.tls then
    local verify = cfg.tls.verify ~= false
    -- in a pcall: lua-resty-core 0.1.25 (Debian 12) sslhandshake raises "assertion failed!" where
    -- the handshake completes at once and the certificate's verification then fails
    -- (its issue 499): that is a refused handshake like any other
    local hok, sok, serr = pcall(sock.sslhandshake, sock, nil, cfg.tls.server_name or cfg.host, verify)
    if not hok then sok, serr = nil, ("%s (certificate not verified?)"):format(tostring(sok)) end
    if not sok then sock:close(); return nil, ("%s: TLS handshake: %s"):format(cfg.name, tostring(serr)) end
  end
  return sock, fresh, slot
end
M.connect_cosocket = connect_cosocket

---------------------------------------------------------------------------

-- connect(cfg) -> conn, fresh, slot | nil, err[, "phase"].  cfg: host, port or path, tls
-- (table or nil), timeout (seconds), name (for messages), pool_name, pool_size, backlog
-- (nginx).  Where the caller knows the phase has cosockets (M.kind() said so, or M.slot()
-- gave the slot), it calls M.connect_cosocket(cfg, slot) itself.  slot: for M.keepalive
function M.connect(cfg)
  local kind, why = M.kind()
  if kind == "cosocket" then return connect_cosocket(cfg) end
  if not kind then return nil, why, "phase" end
  local c, err = connect_luasocket(cfg)
  if not c then return nil, err end
  return c, true                          -- a LuaSocket connection is always new here
end

-- keepalive(conn, cfg, slot): a cosocket goes back to nginx's pool; LuaSocket connections
-- are kept by the driver itself, so this is only called for cosockets.  slot: what
-- connect gave (the coroutine and its request cannot change while the connection is out),
-- else looked up
function M.keepalive(conn, cfg, slot)
  if conn:setkeepalive(cfg.keepalive_ms, cfg.pool_size) then
    -- the object, idle, for the next call of this coroutine in this request
    if not slot then slot = M.slot(cfg) end
    if slot and not slot.sock then slot.sock = conn end
  else
    conn:close()
  end
end

-- sleep(seconds), yielding inside nginx
function M.sleep(s)
  if ngx and ngx.sleep and M.kind() == "cosocket" then return ngx.sleep(s) end
  local sock_mod = load_luasocket()
  if sock_mod then return sock_mod.sleep(s) end
  local t = os.clock() + s
  repeat until os.clock() >= t
end

-- now() in milliseconds (a float), for deadlines and backoff
function M.now_ms()
  if ngx and ngx.now then
    ngx.update_time()
    return ngx.now() * 1000
  end
  local sock_mod = load_luasocket()
  if sock_mod then return sock_mod.gettime() * 1000 end
  return os.time() * 1000
end

return M
