-- bench/nginx/bench.lua: zeltkv next to ngx.shared.DICT inside one nginx worker (LuaJIT,
-- lua-nginx-module + lua-resty-core), in the same loop, the same keys and the same loop
-- shape.  Driven by bench/nginx/run.sh, which turns the answer into bench/results.md and
-- bench/results.png.
--
--   init_by_lua_block    { require("bench").init() }
--   content_by_lua_block { require("bench").run() }      -- GET /?n=200000&runs=7
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
-- FFI), the best of `runs` runs of `n` iterations after a warm-up of n/10; in each run every
-- peer is timed once, in turn (measure_side_by_side).  Every result
-- is used (counted into a checksum) so the JIT cannot drop a call.
--
-- A second table (after a "# section: shdict-methods" line) puts the ngx.shared.DICT drop-in
-- next to the real thing, method by method, with the very same loop body on both sides:
--   shdict          ngx.shared.bench_dict (64m) and, for the whole-dict methods,
--                   ngx.shared.bench_keys (64m, 1,000 keys)
--   zeltkv:shdict   zeltkv.shared(...):namespace(...):shdict() over two fresh segments of the
--                   same sizes
-- See DICT_OPS below for the rows.  List methods are timed in pairs (a push on each of 1,024
-- lists of 8 items, then a pop on each, the two halves timed apart), so every list stays 8 or
-- 9 items long on both sides.  flush_all is timed alone at the end, one call on the 1,000-key
-- dict per run (refilled, untimed, before each), best of 4 * runs after max(16, 2 * runs) untimed.

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
-- the drop-in table's own: keys set and deleted, incr-created, lists, keys with a ttl, and the
-- 1,000 keys of the whole-dict methods' dict
local DKEYS, IKEYS, LKEYS, XKEYS = keys("del:"), keys("init:"), keys("list:"), keys("ttl:")
local NKEYS = 1000
local WKEYS = {}
for i = 1, NKEYS do WKEYS[i] = "key:" .. i end
local LIST_LEN = 8

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
  -- the drop-in table's dicts: two fresh segments, sized as the lua_shared_dict zones
  local dstore = zeltkv.shared(seg("-d"), opts):namespace("dict")
  -- 64m: an 8m segment's undo log is too small for flush_all of 1,000 keys without a ttl
  -- (ZKV_ETXN, "transaction too large or not open", from about 930 keys on)
  local kstore = zeltkv.shared(seg("-k"), opts):namespace("keys")
  M.dict_peers = {
    { name = "zeltkv:shdict", main = dstore:shdict(), whole = kstore:shdict() },
  }
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

-- One operation on every peer, side by side: each run times every peer once, in turn, so a
-- stretch of noise from the rest of the machine (these are shared VMs) falls on all peers
-- alike instead of on one peer's whole block of runs.  ns/op of each peer, best of `runs`.
-- Every operation starts from an empty trace cache (jit.flush): a trace recorded earlier at a
-- method's entry (by prepare(), another row, another peer) would otherwise decide how this
-- row's loops compile, and the figures would depend on the order of the rows.
local function measure_side_by_side(op, peers_, n, runs)
  local fns, best = {}, {}
  jit.flush()
  for i, p in ipairs(peers_) do
    fns[i] = make_loop(op, p)
    sink = sink + fns[i](math.max(1, math.floor(n / 10)))   -- warm-up: traces recorded here
    best[i] = math.huge
  end
  for _ = 1, runs do
    for i = 1, #fns do
      collectgarbage("step", 0)
      local t0 = now_ns()
      sink = sink + fns[i](n)
      local dt = now_ns() - t0
      if dt < best[i] then best[i] = dt end
    end
  end
  for i = 1, #best do best[i] = best[i] / n end
  return best
end

---------------------------------------------------------------------------------------------
-- the ngx.shared.DICT drop-in, per method: the same body for ngx.shared.DICT and the drop-in.
-- keys: the key set (1,024 keys, K = KEYS[i % 1024 + 1]); dict: "main" (bench_dict) or
-- "whole" (bench_keys, 1,000 keys); div: n / div iterations (the whole-dict walks); pair: two
-- bodies timed apart, each once on every one of the 1,024 keys per block.
local DICT_OPS = {
  { id = "get",            label = "get",
    body = "if S:get(K) then c = c + 1 end" },
  { id = "get_stale",      label = "get_stale",
    body = "if S:get_stale(K) then c = c + 1 end" },
  { id = "set",            label = "set",
    body = "S:set(K, V)" },
  { id = "safe_set",       label = "safe_set",
    body = "S:safe_set(K, V)" },
  { id = "add_taken",      label = "add, key taken (fails)",
    body = "if S:add(K, V) then c = c + 1 end" },
  { id = "add_free",       label = "add + delete, key free",         keys = "FKEYS",
    body = "if S:add(K, V) then c = c + 1 end S:delete(K)" },
  { id = "safe_add_free",  label = "safe_add + delete, key free",    keys = "FKEYS",
    body = "if S:safe_add(K, V) then c = c + 1 end S:delete(K)" },
  { id = "replace",        label = "replace, key present",
    body = "if S:replace(K, V) then c = c + 1 end" },
  { id = "delete",         label = "delete, key present (set + delete)", keys = "DKEYS",
    body = "S:set(K, V) if S:delete(K) then c = c + 1 end" },
  { id = "incr",           label = "incr, key present",              keys = "CKEYS",
    body = "c = c + S:incr(K, 1)" },
  { id = "incr_init",      label = "incr with init, init_ttl, key free (+ delete)", keys = "IKEYS",
    body = "c = c + S:incr(K, 1, 0, 60) S:delete(K)" },
  { id = "lpush_rpop",     keys = "LKEYS", pair = {
    { id = "lpush", label = "lpush (lists of 8)", body = "c = c + S:lpush(K, V)" },
    { id = "rpop",  label = "rpop (lists of 9)",  body = "if S:rpop(K) then c = c + 1 end" } } },
  { id = "rpush_lpop",     keys = "LKEYS", pair = {
    { id = "rpush", label = "rpush (lists of 8)", body = "c = c + S:rpush(K, V)" },
    { id = "lpop",  label = "lpop (lists of 9)",  body = "if S:lpop(K) then c = c + 1 end" } } },
  { id = "llen",           label = "llen (lists of 8)",              keys = "LKEYS",
    body = "c = c + S:llen(K)" },
  { id = "ttl",            label = "ttl, key with a ttl",            keys = "XKEYS",
    body = "c = c + S:ttl(K)" },
  { id = "expire",         label = "expire, key present",            keys = "XKEYS",
    body = "if S:expire(K, 3600) then c = c + 1 end" },
  { id = "flush_expired",  label = "flush_expired, 1,000 keys, none expired", dict = "whole", div = 100,
    body = "c = c + S:flush_expired()" },
  { id = "get_keys",       label = "get_keys(100), 1,000 keys",      dict = "whole", div = 100,
    body = "c = c + #S:get_keys(100)" },
  { id = "capacity",       label = "capacity",
    body = "c = c + S:capacity()" },
  { id = "free_space",     label = "free_space",
    body = "c = c + S:free_space()" },
}

local KEYSETS = { KEYS = KEYS, CKEYS = CKEYS, FKEYS = FKEYS, DKEYS = DKEYS, IKEYS = IKEYS,
                  LKEYS = LKEYS, XKEYS = XKEYS }

local PAIR_TEMPLATE = [[
local S, KEYS, V, now = ...
return function(n)
  local c, ta, tb, blocks = 0, 0, 0, math.ceil(n / %d)
  for _ = 1, blocks do
    local t0 = now()
    for i = 1, %d do
      local K = KEYS[i]
      %s
    end
    local t1 = now()
    for i = 1, %d do
      local K = KEYS[i]
      %s
    end
    tb = tb + (now() - t1)
    ta = ta + (t1 - t0)
  end
  return c, ta, tb, blocks * %d
end
]]

local function make_dict_loop(op, name, dict)
  local keyset = KEYSETS[op.keys or "KEYS"]
  local chunk
  if op.pair then
    local nk = MASK + 1
    chunk = assert(loadstring(PAIR_TEMPLATE:format(nk, nk, op.pair[1].body, nk, op.pair[2].body, nk),
                              "=dict:" .. op.id .. ":" .. name))
    return chunk(dict, keyset, VALUE, now_ns)
  end
  chunk = assert(loadstring(TEMPLATE:format(MASK, op.body), "=dict:" .. op.id .. ":" .. name))
  return chunk(dict, keyset, VALUE, TABLE, cjson.encode, cjson.decode, bit.band)
end

-- the same state on both sides (main: the 1,024-key sets; whole: 1,000 keys)
local function prepare_dict(main, whole)
  main:flush_all(); main:flush_expired()
  whole:flush_all(); whole:flush_expired()
  for i = 1, MASK + 1 do
    assert(main:set(KEYS[i], VALUE))
    assert(main:set(CKEYS[i], 0))
    assert(main:set(XKEYS[i], VALUE, 3600))
    for _ = 1, LIST_LEN do assert(main:rpush(LKEYS[i], VALUE)) end
  end
  for i = 1, NKEYS do assert(whole:set(WKEYS[i], VALUE)) end
end

-- One drop-in row on every dict peer, side by side (as measure_side_by_side): each run times
-- every peer once, in turn, so noise from the rest of the machine falls on all peers alike.
-- fns[i](n) runs peer i's loop; a pair's loop returns c, ta, tb, done and gives two figures.
-- Returns best ns/op per peer (and, for a pair, the second half's).
local function measure_dict_row(fns, n, runs, pair)
  local ba, bb = {}, {}
  for i, fn in ipairs(fns) do
    sink = sink + fn(math.max(1, math.floor(n / 10)))   -- warm-up: traces recorded here
    ba[i], bb[i] = math.huge, math.huge
  end
  for _ = 1, runs do
    for i, fn in ipairs(fns) do
      collectgarbage("step", 0)
      if pair then
        local c, ta, tb, done = fn(n)
        sink = sink + c
        if ta / done < ba[i] then ba[i] = ta / done end
        if tb / done < bb[i] then bb[i] = tb / done end
      else
        local t0 = now_ns()
        sink = sink + fn(n)
        local dt = (now_ns() - t0) / n
        if dt < ba[i] then ba[i] = dt end
      end
    end
  end
  return ba, bb
end

-- flush_all: one call on the 1,000-key dict per run and peer, refilled (untimed) before each;
-- the first `warm` runs of the same loop untimed, as the other rows' warm-up: until this loop
-- is compiled (a trace taken after some 10 runs) each call took 1.5-3 times its later time on
-- both sides, and the best of 28 was one of the few runs after that
local function measure_flush_all(wholes, runs, warm)
  local best = {}
  for i = 1, #wholes do best[i] = math.huge end
  for r = 1, warm + runs do
    for i, whole in ipairs(wholes) do
      for k = 1, NKEYS do whole:set(WKEYS[k], VALUE) end
      collectgarbage("step", 0)
      local t0 = now_ns()
      whole:flush_all()
      local dt = now_ns() - t0
      if r > warm and dt < best[i] then best[i] = dt end
      whole:flush_expired()
    end
  end
  return best
end

local function fmt_ns(ok, ns, what)
  if ok then return ("%.1f"):format(ns) end
  ngx.log(ngx.ERR, "bench ", what, ": ", tostring(ns))
  return "error"
end

-- the rows: id, label, then ns/op of every dict peer (shdict first)
local function run_dict_table(n, runs, out)
  local all = { { name = "shdict", main = ngx.shared.bench_dict, whole = ngx.shared.bench_keys } }
  for _, p in ipairs(M.dict_peers) do all[#all + 1] = p end
  for _, p in ipairs(all) do prepare_dict(p.main, p.whole) end
  out[#out + 1] = "# section: shdict-methods"
  local head = { "op", "label" }
  for _, p in ipairs(all) do head[#head + 1] = p.name end
  out[#out + 1] = table.concat(head, "\t")
  local function cells(ok, res, what)
    local row = {}
    for i, p in ipairs(all) do row[i] = fmt_ns(ok, ok and res[i] or res, what .. " " .. p.name) end
    return row
  end
  local only = {}                 -- ?rows=id,id: only those drop-in rows (while working on them)
  for id in (ngx.var.arg_rows or ""):gmatch("[^,]+") do only[id] = true end
  local function row_of(op)
    jit.flush()   -- every row from an empty trace cache, as in the first table
    local m = op.pair and n or math.max(1, math.floor(n / (op.div or 1)))
    local fns = {}
    for i, p in ipairs(all) do
      fns[i] = make_dict_loop(op, p.name, op.dict == "whole" and p.whole or p.main)
    end
    local ok, a, b = pcall(measure_dict_row, fns, m, runs, op.pair ~= nil)
    local rows = op.pair and { { op.pair[1].id, op.pair[1].label, res = a },
                               { op.pair[2].id, op.pair[2].label, res = b } }
                         or { { op.id, op.label, res = a } }
    for _, row in ipairs(rows) do
      for _, c in ipairs(cells(ok, ok and row.res or a, op.id)) do row[#row + 1] = c end
      out[#out + 1] = table.concat(row, "\t")
    end
  end
  for _, op in ipairs(DICT_OPS) do
    if next(only) == nil or only[op.id] then row_of(op) end
  end
  -- the checks before flush_all empties the dicts: both sides hold the same
  local checks = {}
  for _, p in ipairs(all) do
    checks[#checks + 1] = ("%s: incr %s, llen %s, get_keys(0) %d, capacity %s"):format(p.name,
      tostring(p.main:get(CKEYS[1])), tostring(p.main:llen(LKEYS[1])), #p.whole:get_keys(0),
      tostring(p.main:capacity()))
  end
  if next(only) ~= nil and not only.flush_all then
    out[#out + 1] = "# dcheck: " .. table.concat(checks, "; ")
    return
  end
  local row = { "flush_all", "flush_all, 1,000 keys (one call per run)" }
  local wholes = {}
  for i, p in ipairs(all) do wholes[i] = p.whole end
  local ok, best = pcall(measure_flush_all, wholes, 4 * runs, math.max(16, 2 * runs))
  for _, c in ipairs(cells(ok, best, "flush_all")) do row[#row + 1] = c end
  out[#out + 1] = table.concat(row, "\t")
  out[#out + 1] = "# dcheck: " .. table.concat(checks, "; ")
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
  for _, op in ipairs(ngx.var.arg_rows and {} or OPS) do   -- ?rows=: the drop-in rows only
    local row = { op.id, op.label }
    local ok, res = pcall(measure_side_by_side, op, all, n, runs)
    for i, p in ipairs(all) do
      local ns = res
      if not ok then
        ngx.log(ngx.ERR, "bench ", op.id, ": ", tostring(res))
        ns = "error"
      else
        ns = ("%.1f"):format(res[i])
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
  run_dict_table(n, runs, out)
  ngx.header["Content-Type"] = "text/tab-separated-values"
  ngx.say(table.concat(out, "\n"))
end

function M.cleanup()
  for _, p in ipairs(peers) do pcall(p.drv.close, p.drv) end
  for _, name in ipairs(segments) do zeltkv.unlink(name) end
end

return M
