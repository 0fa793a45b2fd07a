-- bench/nginx/bench.lua: zeltkv next to ngx.shared.DICT inside one nginx worker (LuaJIT,
-- lua-nginx-module + lua-resty-core), in the same loop, the same keys and the same loop
-- shape.  Driven by bench/nginx/run.sh, which turns the answer into bench/results.md and
-- bench/results.png.
--
--   init_by_lua_block    { require("bench").init() }
--   content_by_lua_block { require("bench").run() }      -- GET /?n=200000&runs=5
--
-- Peers (columns), each a store of its own:
--   zeltkv          zeltkv.shared(...) through require("zeltkv") (the FFI front end when
--                   LuaJIT has it), a namespace of it
--   zeltkv.core     the same kind of store through the plain C binding (zeltkv.core)
--   zeltkv.memory   zeltkv.memory() through require("zeltkv")
--   zeltkv:shdict   store:shdict(), zeltkv's ngx.shared.DICT face, when the module has it
--   shdict          ngx.shared.bench (lua_shared_dict bench 64m)
-- Operations (rows), over 1,024 keys "user:N" and a 31-byte string value:
--   get, set                       s:get(k) / s:set(k, v)          dict:get(k) / dict:set(k, v)
--   incr with ttl                  s:incr(k, 1, 60)                dict:incr(k, 1, 0, 60)
--   setnx, key taken (fails)       s:setnx(k, v)                   dict:add(k, v)
--   setnx + del, key free          s:setnx(k, v); s:del(k)         dict:add(k, v); dict:delete(k)
--   set table / get table          s:set(k, t) / s:get(k)          dict:set(k, cjson.encode(t)) /
--                                                                  cjson.decode(dict:get(k))
--   loop                           the loop and key lookup alone (included in every row)
-- ns/op is CPU time of this worker (clock_gettime(CLOCK_PROCESS_CPUTIME_ID) through the
-- FFI), the best of `runs` runs of `n` iterations after a warm-up of n/10.  Every result
-- is used (counted into a checksum) so the JIT cannot drop a call.

local ffi = require("ffi")
local cjson = require("cjson")
local zeltkv = require("zeltkv")
local core = require("zeltkv.core")

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } zkvb_timespec;
int clock_gettime(int clk, zkvb_timespec *ts);
]]
local CLOCK_PROCESS_CPUTIME_ID = 2
local ts = ffi.new("zkvb_timespec")
local function now_ns()
  ffi.C.clock_gettime(CLOCK_PROCESS_CPUTIME_ID, ts)
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

local M = {}

local VALUE = "0123456789abcdefghijklmnopqrstu" -- 31 bytes
local TABLE = { id = 42, name = "ada lovelace", active = true, roles = { "admin", "dev" } }
local MASK = 1023
local function keys(prefix)
  local t = {}
  for i = 1, MASK + 1 do t[i] = prefix .. i end
  return t
end
local KEYS, CKEYS, FKEYS, TKEYS = keys("user:"), keys("ctr:"), keys("free:"), keys("tab:")

local peers = {}        -- { name, obj, kind = "zeltkv" | "shdict" }
local segments = {}

function M.init()
  local base = "zkv-bench-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e6))
  local function seg(suffix)
    local name = base .. suffix
    segments[#segments + 1] = name
    return name
  end
  local opts = { size = "64m", gc_interval = 0 }
  local zs = zeltkv.shared(seg("-z"), opts)
  local cs = core.shared(seg("-c"), opts)
  local ms = zeltkv.memory({ gc_interval = 0 })
  peers[#peers + 1] = { name = "zeltkv", obj = zs:namespace("bench"), kind = "zeltkv", drv = zs }
  peers[#peers + 1] = { name = "zeltkv.core", obj = cs:namespace("bench"), kind = "zeltkv", drv = cs }
  peers[#peers + 1] = { name = "zeltkv.memory", obj = ms:namespace("bench"), kind = "zeltkv", drv = ms }
  local fs = zeltkv.shared(seg("-f"), opts)
  local fstore = fs:namespace("bench")
  if type(fstore.shdict) == "function" then
    peers[#peers + 1] = { name = "zeltkv:shdict", obj = fstore:shdict(), kind = "shdict", drv = fs }
  end
  M.frontend = zeltkv._ffi and "FFI front end (lua/zeltkv/ffi.lua)" or
    ("C binding" .. (zeltkv._ffi_disabled and (" (FFI off: " .. tostring(zeltkv._ffi_disabled) .. ")") or ""))
end

-- the loop bodies; K is the key of this iteration, S the peer's object
local OPS = {
  { id = "loop",          label = "loop (key lookup alone)",
    zeltkv = "if K then c = c + 1 end",
    shdict = "if K then c = c + 1 end" },
  { id = "get",           label = "get",
    zeltkv = "if S:get(K) then c = c + 1 end",
    shdict = "if S:get(K) then c = c + 1 end" },
  { id = "set",           label = "set",
    zeltkv = "S:set(K, V)",
    shdict = "S:set(K, V)" },
  { id = "incr_ttl",      label = "incr with ttl",            keys = "CKEYS",
    zeltkv = "c = c + S:incr(K, 1, 60)",
    shdict = "c = c + S:incr(K, 1, 0, 60)" },
  { id = "setnx_taken",   label = "setnx / add, key taken",
    zeltkv = "if S:setnx(K, V) then c = c + 1 end",
    shdict = "if S:add(K, V) then c = c + 1 end" },
  { id = "setnx_free",    label = "setnx / add + del, key free", keys = "FKEYS",
    zeltkv = "if S:setnx(K, V) then c = c + 1 end S:del(K)",
    shdict = "if S:add(K, V) then c = c + 1 end S:delete(K)" },
  { id = "set_table",     label = "set table (shdict: cjson.encode)", keys = "TKEYS",
    zeltkv = "S:set(K, T)",
    shdict = "S:set(K, encode(T))" },
  { id = "get_table",     label = "get table (shdict: cjson.decode)", keys = "TKEYS",
    zeltkv = "c = c + S:get(K).id",
    shdict = "c = c + decode((S:get(K))).id" },
}

local TEMPLATE = [[
local S, KEYS, V, T, encode, decode, band = ...
return function(n)
  local c = 0
  for i = 1, n do
    local K = KEYS[band(i, %d) + 1]
    %s
  end
  return c
end
]]

-- a fresh chunk per (operation, peer): every loop gets its own bytecode and traces
local function make_loop(op, peer)
  local body = op[peer.kind]
  local src = TEMPLATE:format(MASK, body)
  local chunk = assert(loadstring(src, "=bench:" .. op.id .. ":" .. peer.name))
  local keyset = ({ KEYS = KEYS, CKEYS = CKEYS, FKEYS = FKEYS, TKEYS = TKEYS })[op.keys or "KEYS"]
  return chunk(peer.obj, keyset, VALUE, TABLE, cjson.encode, cjson.decode, bit.band)
end

local function prepare(peer)
  local s = peer.obj
  for i = 1, MASK + 1 do
    s:set(KEYS[i], VALUE)
    if peer.kind == "zeltkv" then
      s:del(CKEYS[i]); s:del(FKEYS[i])
      s:set(TKEYS[i], TABLE)
    else
      s:delete(CKEYS[i]); s:delete(FKEYS[i])
      s:set(TKEYS[i], cjson.encode(TABLE))
    end
  end
end

local sink = 0
local function measure(fn, n, runs)
  sink = sink + fn(math.max(1, math.floor(n / 10)))   -- warm-up: traces recorded here
  local best = math.huge
  for _ = 1, runs do
    collectgarbage("step", 0)
    local t0 = now_ns()
    sink = sink + fn(n)
    local dt = now_ns() - t0
    if dt < best then best = dt end
  end
  return best / n
end

function M.run()
  local n = tonumber(ngx.var.arg_n) or 200000
  local runs = tonumber(ngx.var.arg_runs) or 5
  local shd = ngx.shared.bench
  local all = {}
  for _, p in ipairs(peers) do all[#all + 1] = p end
  all[#all + 1] = { name = "shdict", obj = shd, kind = "shdict" }
  shd:flush_all(); shd:flush_expired()
  for _, p in ipairs(all) do prepare(p) end

  local out = { "# nginx " .. ngx.config.nginx_version .. ", lua-nginx-module " ..
    ngx.config.ngx_lua_version .. ", " .. jit.version .. ", JIT " ..
    (jit.status() and "on" or "off") .. ", zeltkv " .. tostring(zeltkv.version) ..
    " via " .. M.frontend .. ", worker " .. ngx.worker.pid() ..
    (", n=%d, best of %d runs"):format(n, runs) }
  local head = { "op", "label" }
  for _, p in ipairs(all) do head[#head + 1] = p.name end
  out[#out + 1] = table.concat(head, "\t")
  for _, op in ipairs(OPS) do
    local row = { op.id, op.label }
    for _, p in ipairs(all) do
      local ok, ns = pcall(measure, make_loop(op, p), n, runs)
      if not ok then
        ngx.log(ngx.ERR, "bench ", op.id, " ", p.name, ": ", tostring(ns))
        ns = "error"
      else
        ns = ("%.1f"):format(ns)
      end
      row[#row + 1] = ns
    end
    out[#out + 1] = table.concat(row, "\t")
  end
  -- the counters must be exact: both sides really did the work
  local z = peers[1].obj:get(CKEYS[1])
  local d = shd:get(CKEYS[1])
  out[#out + 1] = ("# check: incr counters zeltkv %s, shdict %s; checksum %d"):format(
    tostring(z), tostring(d), sink % 1000)
  ngx.header["Content-Type"] = "text/tab-separated-values"
  ngx.say(table.concat(out, "\n"))
end

function M.cleanup()
  for _, p in ipairs(peers) do pcall(p.drv.close, p.drv) end
  for _, name in ipairs(segments) do zeltkv.unlink(name) end
end

return M
