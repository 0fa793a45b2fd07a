-- spec/nginx/zkv_nginx_app.lua: the handlers that spec/nginx/run.sh drives in a real
-- nginx with 2 workers.  Two zeltkv.shared stores are under test:
--   "m"  opened once in init_by_lua (the master), inherited by every worker at fork
--   "w"  opened by each worker in init_worker_by_lua
-- Every endpoint takes ?s=m|w (default m) and answers one line of "key=value" words.
-- A third store, "t", opened in init_by_lua with the default atomic_timeout, serves the
-- runaway-atomic check (h).

local zeltkv = require("zeltkv")

local M = {}
local cfg = {}          -- segment, tmp, lock_timeout (set by init_master)
local drivers = {}      -- "m" / "w" -> driver

-- no atomic_timeout: check (d) holds the lock on purpose until it is killed
local OPTS = { size = "16m", lock_timeout = 3, gc_interval = 0, atomic_timeout = 0 }

-- init_by_lua: open the master's store (and wipe what an earlier run left)
function M.init_master(segment, tmp)
  cfg.segment, cfg.tmp = segment, tmp
  zeltkv.unlink(segment .. "-m")
  zeltkv.unlink(segment .. "-w")
  drivers.m = zeltkv.shared(segment .. "-m", OPTS)
  zeltkv.unlink(segment .. "-t")
  drivers.t = zeltkv.shared(segment .. "-t", { size = "4m", gc_interval = 0 })
end

-- init_worker_by_lua: every worker opens the "w" store itself
function M.init_worker()
  drivers.w = zeltkv.shared(cfg.segment .. "-w", OPTS)
end

local function arg_num(name, default)
  local v = tonumber(ngx.var["arg_" .. name])
  return v or default
end

local function store()
  local which = ngx.var.arg_s or "m"
  local kv = drivers[which]
  if not kv then error("no store " .. which) end
  return kv, kv:namespace("t")
end

local function say(fmt, ...)
  ngx.say(("pid=%d "):format(ngx.worker.pid()) .. fmt:format(...))
end

local H = {}

-- (a) which worker served, and a counter every worker shares
function H.whoami()
  local _, s = store()
  say("n=%d", s:incr("hits"))
end

-- (b) n increments of one key from this request
function H.incr()
  local _, s = store()
  local n = arg_num("n", 20000)
  local last
  for _ = 1, n do last = s:incr("ctr") end
  say("last=%d", last)
end

-- (c) n read-modify-writes through get/set inside atomic: an integer, a table,
--     and the pair (a, b) that must always be equal
local function bump(_, s)      -- atomic calls fn(kv, ...)
  local v = s:get("rmw") or 0
  s:set("rmw", v + 1)
  local t = s:get("rmw_t") or { n = 0, tag = "rmw" }
  t.n = t.n + 1
  s:set("rmw_t", t)
  local a = (s:get("a") or 0) + 1
  s:set("a", a)
  s:set("b", (s:get("b") or 0) + 1)
end

function H.rmw()
  local kv, s = store()
  local n = arg_num("n", 2000)
  for _ = 1, n do kv:atomic(bump, s) end
  say("done=%d", n)
end

-- (d) enter atomic, write half of the pair, tell run.sh our pid, then spin
--     (no yield) until killed; if nobody kills us, finish after `secs`
function H.hold()
  local kv, s = store()
  local secs = arg_num("secs", 15)
  kv:atomic(function()
    s:set("a", (s:get("a") or 0) + 1)          -- half-done: b is not bumped yet
    local f = assert(io.open(cfg.tmp .. "/run/holder.pid", "w"))
    f:write(ngx.worker.pid(), "\n")
    f:close()
    ngx.update_time()
    local deadline = ngx.now() + secs
    repeat ngx.update_time() until ngx.now() >= deadline
    s:set("b", (s:get("b") or 0) + 1)
  end)
  say("held=%g", secs)
end

-- (d)/(c) the state: the pair, the counters, lock recoveries
function H.check()
  local kv, s = store()
  local st = kv:stats()
  local t = s:get("rmw_t")
  say("a=%s b=%s rmw=%s rmw_t=%s ctr=%s rec=%s",
    tostring(s:get("a")), tostring(s:get("b")), tostring(s:get("rmw")),
    tostring(t and t.n), tostring(s:get("ctr")), tostring(st.lock_recoveries))
end

-- (e) a yield inside atomic must be refused and its writes undone
function H.yield()
  local kv, s = store()
  s:del("y1"); s:del("y2")
  local ok, err = pcall(kv.atomic, kv, function()
    s:set("y1", "written before the yield")
    ngx.sleep(0.01)
    s:set("y2", "written after the yield")
  end)
  -- the lock must be free again: another atomic from this worker works at once
  local after = kv:atomic(function() return s:incr("after_yield") end)
  local msg = tostring(err):gsub("%s+", "_")
  say("ok=%s y1=%s y2=%s after=%s err=%s", tostring(ok), tostring(s:get("y1")),
    tostring(s:get("y2")), tostring(after), msg)
end

-- (h) an atomic function that never returns: aborted at atomic_timeout (default), undone
function H.runaway()
  local kv = drivers.t
  local s = kv:namespace("t")
  ngx.update_time()
  local t0 = ngx.now()
  local ok, err = pcall(kv.atomic, kv, function()
    s:set("runaway", "written inside")
    local x = 0
    while true do x = x + 1 end
  end)
  ngx.update_time()
  say("ok=%s code=%s reason=%s secs=%.3f written=%s", tostring(ok), tostring(err.code),
    tostring(err.reason), ngx.now() - t0, tostring(s:get("runaway")))
end

-- (h) a write to the same store, meanwhile
function H.tincr()
  say("n=%d", drivers.t:namespace("t"):incr("n"))
end

-- (g) a zeltkv error nobody catches: nginx logs it (M.handle calls this one unprotected)
function H.uncaught()
  local s = drivers.t:namespace("t")
  s:set("k", print) -- (g) uncaught
end

function H.info()
  say("front=%s version=%s", zeltkv._ffi and "ffi" or "c", tostring(zeltkv.version))
end

function H.reset()
  local kv = store()
  kv:flush()
  say("flushed=1")
end

function M.handle()
  local name = ngx.var.uri:match("^/(%w+)$")
  local h = name and H[name]
  if not h then return ngx.exit(404) end
  if name == "uncaught" then return h() end
  local ok, err = pcall(h)
  if not ok then
    ngx.log(ngx.ERR, "zkv test handler ", name, ": ", tostring(err))
    ngx.status = 500
    ngx.say("error=", tostring(err))
  end
end

return M
