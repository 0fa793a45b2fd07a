-- spec/15-model_spec.lua: a pure-Lua model of the API contract (the README's API section),
-- run in lock step with the real drivers over seeded random operation sequences.
--
-- The model (Model* below) is the contract written as plain Lua: namespaces and their
-- nesting, get/set/del/has/expire/ttl/incr/setnx/count/keys/clear/namespaces, the value
-- kinds and their round trip, every error code for bad inputs, "a failed call changes
-- nothing", atomic() with rollback on raise and nested atomics, the closed driver. One
-- random plan of operations is run against the model and against every target: the memory
-- and shared drivers (under LuaJIT both through the FFI front end and through the plain C
-- binding; a shared target also opens a second handle on its segment and routes some
-- calls through it, so that they join the other handle's transactions). Every result and
-- every error code is compared; the whole state of every namespace is compared now and
-- then and at the end. Walks (keys(), namespaces()) also run with other calls in the middle
-- of them (no name returned twice, none that was not there when the walk began, every one
-- there throughout returned), and one begun before close() is stepped after it ("closed");
-- some atomics raise nil, a number or false (raised again as they are). Those come from a
-- generator of their own, so the other ops of a seed's plan stay the ones they were.
--
-- Time: the model has its own clock, which moves only in jumps of G ms (the engine's clock
-- follows through core._set_clock_offset), and every ttl the plan sets is a whole number
-- of G plus a remainder between G/4 and 3G/4. A deadline is then always at least G/4
-- (40 minutes) away from the model's now, so the real clock running meanwhile never
-- decides whether a key is alive; ttl() readings are compared as ranges.
--
-- Where the contract leaves a choice open, the model follows the implementation and says so
-- (IMPL): which argument's error comes first (they are checked in order; a closed driver is
-- "closed" before any of them, as API.md says of close(): any later use), close() inside the
-- driver's own atomic() is refused, atomic(non-function)
-- is INVALID_VALUE, namespaces survive clear() and flush(), a namespace made in an atomic
-- that was undone comes back when a handle on it is used again, a walk begins at its first
-- step (not when keys() returns).
--
--   ZELTKV_MODEL_OPS=N       operations per seed (default 1500)
--   ZELTKV_MODEL_SEED=S      the first seed (default 1); ZELTKV_MODEL_SEEDS=K seeds from it
--                            (default 1)
-- and, to look into a failure:
--   ZELTKV_MODEL_TARGETS=T   only the targets whose name holds T ("memory", "C shared", ...)
--   ZELTKV_MODEL_SHRINK=1    look for a shorter failing plan and print it (within
--                            ZELTKV_MODEL_SHRINK_SECS, default 300; ZELTKV_MODEL_FROM=I drops
--                            the ops before I first)
--   ZELTKV_MODEL_VERBOSE=1   count the results of each kind of call (coverage)

local H = require("helpers")
local zeltkv = H.zeltkv
local core = require("zeltkv.core")

local OPS = tonumber(os.getenv("ZELTKV_MODEL_OPS") or "") or 1500
local SEED0 = tonumber(os.getenv("ZELTKV_MODEL_SEED") or "") or 1
local NSEEDS = tonumber(os.getenv("ZELTKV_MODEL_SEEDS") or "") or 1

local unpack = table.unpack or unpack
local floor, huge = math.floor, math.huge
local HAS_INT = math.type ~= nil
local MAXINT = math.maxinteger or 2 ^ 53
local MININT = math.mininteger or -2 ^ 53
local LIMIT = 2 ^ 53
local MAX_KEY = 65535
local MAX_TTL_MS = 4e15
local G = 10000000            -- ms: the model's clock jumps by multiples of G
local rawlen = rawlen or function(t) return #t end

local function pack(...) return { n = select("#", ...), ... } end

---------------------------------------------------------------------------
-- Numbers as the contract sees them

local function is_int_subtype(x) return HAS_INT and math.type(x) == "integer" end
local function whole53(x) return x == floor(x) and x >= -LIMIT and x <= LIMIT end
local function neg_zero(x) return x == 0 and 1 / x < 0 end
-- a top-level number that comes back an integer (incr works on it): a Lua integer, or
-- where numbers are doubles a whole one within 2^53 that is not -0
local function int_valued(x)
  if type(x) ~= "number" then return false end
  if HAS_INT then return math.type(x) == "integer" end
  return whole53(x) and not neg_zero(x)
end
-- a key or table index that counts as an integer
local function int_key(x)
  if HAS_INT then return math.type(x) == "integer" end
  return x == x and whole53(x)
end

---------------------------------------------------------------------------
-- The model

local Err = {}
Err.__index = Err
Err.__tostring = function(e) return "zeltkv: " .. e.code .. ": " .. e.message end
local function fail(code, message, reason, exact)
  error(setmetatable({ code = code, message = message, reason = reason, exact = exact }, Err), 0)
end
local function closed() fail("STORE_OPERATION_FAILED", "closed", "closed") end

-- keys: a string of 1..65535 bytes, or an integer (its decimal string)
local function m_key(k)
  local t = type(k)
  if t == "string" then
    if #k >= 1 and #k <= MAX_KEY then return k end
    fail("INVALID_KEY", "key length")
  elseif t == "number" then
    if is_int_subtype(k) then return string.format("%d", k) end
    if k == k and whole53(k) then
      if k == 0 then return "0" end
      return string.format("%.0f", k)
    end
  end
  fail("INVALID_KEY", "key type")
end

local function m_name(n)
  if type(n) ~= "string" then fail("INVALID_KEY", "name type") end
  if n == "" then fail("EMPTY_NAMESPACE", "empty") end
  if #n > MAX_KEY then fail("INVALID_KEY", "name length") end
  return n
end

-- ttl: nil (none: 0), seconds, { ttl = seconds } -> ms
local function ttl_ms(n)
  if type(n) ~= "number" then fail("INVALID_TTL", "not a number") end
  if not (n > 0) or n == huge then fail("INVALID_TTL", "not > 0 and finite") end
  local ms = floor(n * 1000 + 0.5)
  if ms < 1 then ms = 1 elseif ms > MAX_TTL_MS then ms = MAX_TTL_MS end
  return ms
end
local function m_ttl(t, required)
  if t == nil then
    if required then fail("INVALID_TTL", "missing") end
    return 0
  end
  if type(t) ~= "table" then return ttl_ms(t) end
  local unknown, other = nil, false
  for k in next, t do
    if type(k) ~= "string" then other = true
    elseif k ~= "ttl" and (unknown == nil or k < unknown) then unknown = k end
  end
  if unknown or other then fail("INVALID_VALUE", "unknown option") end
  local v = rawget(t, "ttl")
  if v == nil then fail("INVALID_TTL", "no ttl field") end
  return ttl_ms(v)
end

local function m_by(by)
  if by == nil then return 1 end
  if type(by) ~= "number" then fail("INVALID_VALUE", "by type") end
  if HAS_INT then
    local i = math.tointeger(by)
    if i == nil then fail("INVALID_VALUE", "by not an integer") end
    return i
  end
  if not whole53(by) then fail("INVALID_VALUE", "by not an integer within 2^53") end
  return by
end

-- the encoder's rules for a value: returns nothing or raises INVALID_VALUE with the exact
-- message the binding gives ("value.items[3]: functions cannot be stored")
local function ident(s) return s:find("^[A-Za-z_][A-Za-z0-9_]*$") ~= nil end
local function path_of(path)
  local out = { "value" }
  for i = 1, #path do
    local p = path[i]
    if type(p) == "number" then out[#out + 1] = string.format("[%d]", p)
    elseif ident(p) then out[#out + 1] = "." .. p
    else out[#out + 1] = '["' .. p:sub(1, 40) .. '"]' end
  end
  return table.concat(out)
end
local function vfail(path, what)
  fail("INVALID_VALUE", path_of(path) .. ": " .. what, nil, true)
end

local check_inner
local function check_table(t, path, seen)
  local depth = #path
  for i = 1, depth do
    if rawequal(seen[i], t) then vfail(path, "cyclic tables cannot be stored") end
  end
  if depth >= 100 then vfail(path, "nesting deeper than 100 cannot be stored") end
  seen[depth + 1] = t
  if rawlen(t) == 0 then
    local all_strings = true
    for k, x in next, t do
      if type(k) ~= "string" then all_strings = false break end
      path[depth + 1] = k
      if k:find("\0", 1, true) then vfail(path, "keys inside tables cannot hold NUL bytes") end
      check_inner(x, path, seen)
      path[depth + 1] = nil
    end
    if all_strings then seen[depth + 1] = nil return end
  end
  local count, nstr, maxk, other = 0, 0, 0, false
  for k in next, t do
    count = count + 1
    if type(k) == "string" then nstr = nstr + 1
    elseif type(k) == "number" and int_key(k) and k >= 1 then
      if k > maxk then maxk = k end
    else other = true end
  end
  if other and nstr == 0 then vfail(path, "tables with non-string keys cannot be stored") end
  if nstr == 0 and not other then
    if maxk ~= count then vfail(path, "sparse arrays cannot be stored") end
    for i = 1, maxk do
      path[depth + 1] = i
      check_inner(rawget(t, i), path, seen)
      path[depth + 1] = nil
    end
    seen[depth + 1] = nil
    return
  end
  vfail(path, "tables with mixed keys cannot be stored")
end
check_inner = function(x, path, seen)
  local t = type(x)
  if t == "string" then
    if x:find("\0", 1, true) then vfail(path, "strings inside tables cannot hold NUL bytes") end
  elseif t == "number" then
    if is_int_subtype(x) then
      if x > LIMIT or x < -LIMIT then
        vfail(path, "integers beyond 2^53 inside tables cannot be stored exactly")
      end
    elseif x ~= x then vfail(path, "NaN cannot be stored")
    elseif x == huge or x == -huge then vfail(path, "infinity cannot be stored") end
  elseif t == "table" then check_table(x, path, seen)
  elseif t == "function" then vfail(path, "functions cannot be stored")
  elseif t == "userdata" then vfail(path, "userdata cannot be stored")
  elseif t == "thread" then vfail(path, "threads cannot be stored")
  elseif t ~= "boolean" then vfail(path, "nil cannot be stored") end
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in next, v do c[k] = copy(x) end
  return c
end

-- the value as it will come back (a copy), or INVALID_VALUE
local function m_value(v)
  local t = type(v)
  if t == "table" then
    check_table(v, {}, {})
    return copy(v)
  elseif t == "number" then
    if v ~= v then vfail({}, "NaN cannot be stored") end
    if v == huge or v == -huge then vfail({}, "infinity cannot be stored") end
    return v
  elseif t == "string" or t == "boolean" then
    return v
  end
  check_inner(v, {}, {})
end

-- The model's state: namespaces by path ("" is the driver's root); each has keys
-- { [key] = { v =, exp = deadline ms or nil } } and children { [name] = path }.
local MKV, MStore = {}, {}
MKV.__index, MStore.__index = MKV, MStore
local function argerr(what) error("bad argument #1 to '" .. what .. "' (model: wrong self)", 0) end

local function new_model()
  local st = { now = 0, ns = { [""] = { keys = {}, children = {} } } }
  return setmetatable({ st = st, closed = false, depth = 0 }, MKV)
end

local function child_path(parent, name) return parent .. "/" .. #name .. ":" .. name end

-- the namespace of a store, made (with its parents) when an undone atomic removed it
local function ensure(s)
  local ns = s.kv.st.ns[s.path]
  if ns then return ns end
  local pns = s.parent and ensure(s.parent) or s.kv.st.ns[""]
  ns = { keys = {}, children = {} }
  s.kv.st.ns[s.path] = ns
  pns.children[s.name] = s.path
  return ns
end

local function live_store(s)
  if s.kv.closed then closed() end
  return ensure(s)
end

local function alive(st, e) return e ~= nil and (e.exp == nil or e.exp > st.now) end

-- self first (a wrong one is a plain argument error), then the driver: once closed, every
-- method is "closed" whatever its arguments (close() itself excepted: idempotent)
local function self_store(s, what)
  if getmetatable(s) ~= MStore then argerr(what) end
  if s.kv.closed then closed() end
  return s
end
local function self_kv(kv, what, closing)
  if getmetatable(kv) ~= MKV then argerr(what) end
  if kv.closed and not closing then closed() end
  return kv
end

local function new_mstore(kv, parent, name)
  local ppath = parent and parent.path or ""
  return setmetatable({ kv = kv, parent = parent, name = name, path = child_path(ppath, name) },
                      MStore)
end

local function make_child(kv, parent, name)
  name = m_name(name)
  if kv.closed then closed() end
  local pns = parent and ensure(parent) or kv.st.ns[""]
  local s = new_mstore(kv, parent, name)
  if not kv.st.ns[s.path] then
    kv.st.ns[s.path] = { keys = {}, children = {} }
    pns.children[name] = s.path
  end
  return s
end

function MStore.get(s, k)
  self_store(s, "get")
  local key = m_key(k)
  local ns = live_store(s)
  local e = ns.keys[key]
  if not alive(s.kv.st, e) then return nil end
  return copy(e.v)
end

local function put(s, k, v, ttl, nx)
  local key = m_key(k)
  local val = m_value(v)
  local ms = m_ttl(ttl, false)
  local ns = live_store(s)
  local st = s.kv.st
  if nx and alive(st, ns.keys[key]) then return false end
  ns.keys[key] = { v = val, exp = ms > 0 and st.now + ms or nil }
  return true
end
function MStore.set(s, k, v, ttl) self_store(s, "set") return put(s, k, v, ttl, false) end
function MStore.setnx(s, k, v, ttl) self_store(s, "setnx") return put(s, k, v, ttl, true) end

function MStore.del(s, k)
  self_store(s, "del")
  local key = m_key(k)
  local ns = live_store(s)
  local was = alive(s.kv.st, ns.keys[key])
  if was then ns.keys[key] = nil end
  return was
end

function MStore.has(s, k)
  self_store(s, "has")
  local key = m_key(k)
  return alive(s.kv.st, live_store(s).keys[key])
end

function MStore.expire(s, k, ttl)
  self_store(s, "expire")
  local key = m_key(k)
  local ms = m_ttl(ttl, true)
  local ns = live_store(s)
  local e = ns.keys[key]
  if not alive(s.kv.st, e) then return false end
  ns.keys[key] = { v = e.v, exp = s.kv.st.now + ms }
  return true
end

function MStore.ttl(s, k)
  self_store(s, "ttl")
  local key = m_key(k)
  local e = live_store(s).keys[key]
  if not alive(s.kv.st, e) then return nil end
  if e.exp == nil then return huge end
  return (e.exp - s.kv.st.now) / 1000
end

function MStore.incr(s, k, by, ttl)
  self_store(s, "incr")
  local key = m_key(k)
  local n = m_by(by)
  local ms = m_ttl(ttl, false)
  local ns = live_store(s)
  local st = s.kv.st
  local e = ns.keys[key]
  if not alive(st, e) then
    ns.keys[key] = { v = n, exp = ms > 0 and st.now + ms or nil }
    return n
  end
  local v = e.v
  if not int_valued(v) then fail("INVALID_VALUE", "not an integer") end
  local hi, lo = MAXINT, MININT
  if (n > 0 and v > hi - n) or (n < 0 and v < lo - n) then fail("INVALID_VALUE", "out of range") end
  ns.keys[key] = { v = v + n, exp = e.exp }
  return v + n
end

function MStore.namespace(s, name)
  self_store(s, "namespace")
  return make_child(s.kv, s, name)
end

local function subtree_count(st, path, remove)
  local ns, n = st.ns[path], 0
  if not ns then return 0 end
  for k, e in pairs(ns.keys) do
    if alive(st, e) then n = n + 1 end
    if remove then ns.keys[k] = nil end
  end
  for _, p in pairs(ns.children) do n = n + subtree_count(st, p, remove) end
  return n
end

function MStore.count(s)
  self_store(s, "count")
  local st, n = s.kv.st, 0
  for _, e in pairs(live_store(s).keys) do
    if alive(st, e) then n = n + 1 end
  end
  return n
end

function MStore.clear(s)
  self_store(s, "clear")
  live_store(s)
  return subtree_count(s.kv.st, s.path, true)
end

local function iter_of(list)
  local i = 0
  return function() i = i + 1 return list[i] end
end

function MStore.keys(s)
  self_store(s, "keys")
  local st, list = s.kv.st, {}
  for k, e in pairs(live_store(s).keys) do
    if alive(st, e) then list[#list + 1] = k end
  end
  return iter_of(list)
end

function MStore.namespaces(s)
  self_store(s, "namespaces")
  local list = {}
  for name in pairs(live_store(s).children) do list[#list + 1] = name end
  return iter_of(list)
end

local function snapshot(st)
  local ns = {}
  for p, n in pairs(st.ns) do
    local keys, children = {}, {}
    for k, e in pairs(n.keys) do keys[k] = e end   -- entries are never changed in place
    for c, cp in pairs(n.children) do children[c] = cp end
    ns[p] = { keys = keys, children = children }
  end
  return ns
end

local function m_atomic(kv, self, fn, ...)
  if type(fn) ~= "function" then fail("INVALID_VALUE", "fn must be a function") end
  if kv.closed then closed() end
  local saved = snapshot(kv.st)
  kv.depth = kv.depth + 1
  local r = pack(pcall(fn, self, ...))
  kv.depth = kv.depth - 1
  if not r[1] then
    kv.st.ns = saved
    error(r[2], 0)
  end
  return unpack(r, 2, r.n)
end

function MStore.atomic(s, fn, ...)
  self_store(s, "atomic")
  return m_atomic(s.kv, s, fn, ...)
end

function MKV.namespace(kv, name)
  self_kv(kv, "namespace")
  return make_child(kv, false, name)
end
function MKV.namespaces(kv)
  self_kv(kv, "namespaces")
  if kv.closed then closed() end
  local list = {}
  for name in pairs(kv.st.ns[""].children) do list[#list + 1] = name end
  return iter_of(list)
end
function MKV.atomic(kv, fn, ...)
  self_kv(kv, "atomic")
  return m_atomic(kv, kv, fn, ...)
end
function MKV.flush(kv)
  self_kv(kv, "flush")
  if kv.closed then closed() end
  local n = 0
  for p in pairs(kv.st.ns) do
    local ns = kv.st.ns[p]
    for k, e in pairs(ns.keys) do
      if alive(kv.st, e) then n = n + 1 end
      ns.keys[k] = nil
    end
  end
  return n
end
function MKV.gc(kv)
  self_kv(kv, "gc")
  if kv.closed then closed() end
  return 0
end
function MKV.live_keys(kv)
  local n = 0
  for p in pairs(kv.st.ns) do
    for _, e in pairs(kv.st.ns[p].keys) do
      if alive(kv.st, e) then n = n + 1 end
    end
  end
  return n
end
function MKV.close(kv)
  self_kv(kv, "close", true)
  if kv.depth > 0 and not kv.closed then
    fail("STORE_OPERATION_FAILED", "close inside atomic", "closed")
  end
  kv.closed = true
end

---------------------------------------------------------------------------
-- Random plans

local rng = require("support.rng")

local LONG_KEY = string.rep("K", MAX_KEY)
local TOO_LONG = string.rep("K", MAX_KEY + 1)
local KEYS = { "a", "b", "bc", "c", "k1", "\0", "\0\0", "a\0b", "1", "7", "-3", "0", "\195\169",
               "x y", "9007199254740992" }
local NUM_KEYS = { 7, 7.0, -3, 0, -0.0, 1, 2 ^ 53, -2 ^ 53 }
if HAS_INT then
  NUM_KEYS[#NUM_KEYS + 1] = math.tointeger(2 ^ 53) + 1
  NUM_KEYS[#NUM_KEYS + 1] = MAXINT
  NUM_KEYS[#NUM_KEYS + 1] = MININT
end
local BAD_KEYS = { "", TOO_LONG, 1.5, 0 / 0, huge, -huge, true, false, {}, print, 2 ^ 60, -2 ^ 63,
                   2 ^ 53 + 2 }
local NAMES = { "a", "ab", "b", "c", "a\0", "\0", "x/y", "\195\169", "with space", "n" }
local BAD_NAMES = { "", 5, true, {}, print, string.rep("n", MAX_KEY + 1) }

local OBJ_KEYS = { "a", "name", "roles", "x y", "\195\169", "\1\2", 'q"uote', "back\\slash", "_id",
                   "1", "", "items", "\127\255" }
local SCALAR_STRINGS = { "", "v", "hello world", "\1\31 ctl", 'q"\\', "\200\255 high",
                         "\195\169t\195\169", "line\nbreak", "\0", "a\0b", "\0\0\0" }

local FLOATS = { 1.5, -0.0, 0.1, -2.5e-10, 1e308, -1e308, 5e-324, 2 ^ 60, -2 ^ 63, 123456.789,
                 2 ^ 53 + 2 }
local INTS = { 0, 1, -1, 42, -42, 1000000, 2 ^ 31, -2 ^ 31, 2 ^ 53, -2 ^ 53 }
if HAS_INT then
  for i = 1, #INTS do INTS[i] = math.tointeger(INTS[i]) end
  INTS[#INTS + 1] = MAXINT
  INTS[#INTS + 1] = MININT
  INTS[#INTS + 1] = math.tointeger(2 ^ 53) + 1
  FLOATS[#FLOATS + 1] = 1.0
  FLOATS[#FLOATS + 1] = 2.0 ^ 53
end

local function gen_json(r, depth)
  local k = r(10)
  if depth <= 0 or k <= 5 then
    local j = r(6)
    if j == 1 then
      local s = SCALAR_STRINGS[r(#SCALAR_STRINGS)]
      if s:find("\0", 1, true) then s = "no nul" end
      return s
    elseif j == 2 then return r(2000) - 1000
    elseif j == 3 then
      local f = FLOATS[r(#FLOATS)]
      return f
    elseif j == 4 then return r(2) == 1
    elseif j == 5 then
      local i = INTS[r(#INTS)]
      if is_int_subtype(i) and (i > LIMIT or i < -LIMIT) then i = 3 end
      return i
    end
    return {}
  elseif k <= 8 then
    local t = {}
    for i = 1, r(5) - 1 do t[i] = gen_json(r, depth - 1) end
    return t
  end
  local t = {}
  for _ = 1, r(5) - 1 do t[OBJ_KEYS[r(#OBJ_KEYS)]] = gen_json(r, depth - 1) end
  return t
end

local cyclic = {}
cyclic.self = cyclic
local cyc2 = { 1, 2 }
cyc2[3] = { cyc2 }
local meta = setmetatable({ a = 1, b = { 2 } }, {
  __index = function() error("__index must not be used") end,
  __len = function() error("__len must not be used") end,
  __pairs = function() error("__pairs must not be used") end,
  __eq = function() error("__eq must not be used") end,
})
local BAD_VALUES = {
  false,   -- placeholder for nil (index 1: the plan stores { nil })
  0 / 0, huge, -huge, print, coroutine.create(function() end), io.stdout, cyclic, cyc2,
  { 1, a = 1 }, { 1, nil, 3 }, { [true] = 1 }, { [1.5] = 1 }, H.nest(101), { "a\0b" },
  { ["a\0"] = 1 }, { items = { 1, 2, print } }, { a = { ["not ident"] = 0 / 0 } },
  { [0] = 1, 1 }, { 1, 2, [4] = 4 }, { x = { y = { z = { huge } } } }, { { {}, -huge } },
  { f = coroutine.create(function() end) },
}
if HAS_INT then
  BAD_VALUES[#BAD_VALUES + 1] = { MAXINT }
  BAD_VALUES[#BAD_VALUES + 1] = { n = { math.tointeger(2 ^ 53) + 1 } }
end
local BIG_STRING = string.rep("\0z", 40000)

-- one value: { v } (a table so that nil fits)
local function gen_value(r)
  local k = r(100)
  if k <= 8 then
    local i = r(#BAD_VALUES)
    if i == 1 then return { nil } end
    return { BAD_VALUES[i] }
  elseif k <= 30 then return { SCALAR_STRINGS[r(#SCALAR_STRINGS)] }
  elseif k <= 45 then return { INTS[r(#INTS)] }
  elseif k <= 52 then return { FLOATS[r(#FLOATS)] }
  elseif k <= 57 then return { r(2) == 1 }
  elseif k <= 58 then return { BIG_STRING }
  elseif k <= 59 then return { H.nest(100) }
  elseif k <= 60 then return { meta }
  end
  return { gen_json(r, 3) }
end

local function gen_key(r)
  local k = r(100)
  if k <= 6 then return BAD_KEYS[r(#BAD_KEYS)] end
  if k <= 18 then return NUM_KEYS[r(#NUM_KEYS)] end
  if k == 19 then return LONG_KEY end
  if k <= 60 then return KEYS[r(5)] end   -- a hot few, so that calls meet earlier writes
  return KEYS[r(#KEYS)]
end

-- a ttl the model can follow: whole G steps plus G/4..3G/4, in seconds (sometimes with a
-- part of a ms, rounded), as a number or { ttl = }
local function good_ttl(r)
  local ms = (r(3) - 1) * G + G / 4 + (r(1000) - 1) * (G / 2000)
  local s = ms / 1000
  if r(4) == 1 then s = s + 0.0004 end
  if r(30) == 1 then s = 1e300 end
  if r(3) == 1 then return { ttl = s } end
  return s
end
local BAD_TTLS = { 0, -1, -0.0, 0 / 0, huge, -huge, "10", true, {}, { ttl = 0 }, { ttl = "5" },
                   { ttl = 5, x = 1 }, { 5 }, { ttl = 0 / 0 }, print, { ttl = -huge }, { b = 1, a = 2 } }
local function gen_ttl(r, required)
  local k = r(100)
  if k <= 6 then return BAD_TTLS[r(#BAD_TTLS)] end
  if k <= 45 and not required then return nil end
  return good_ttl(r)
end
local GOOD_BYS = { 1, -1, 0, 2, 100, -100, 2.0, -3.0, 2 ^ 53, -2 ^ 53 }
local BAD_BYS = { 1.5, 0 / 0, huge, -huge, "5", true, {}, print, 2 ^ 53 + 2, 2 ^ 63 }
if HAS_INT then
  GOOD_BYS[#GOOD_BYS + 1] = MAXINT
  GOOD_BYS[#GOOD_BYS + 1] = MININT
end
local function gen_by(r)
  local k = r(100)
  if k <= 8 then return BAD_BYS[r(#BAD_BYS)] end
  if k <= 30 then return nil end
  if k <= 50 then return GOOD_BYS[r(#GOOD_BYS)] end
  return r(21) - 11
end

local KEY_OPS = { "get", "get", "set", "set", "set", "setnx", "incr", "incr", "del", "has",
                  "expire", "ttl", "ttl" }
local WRONG_SELVES = { "k", 1, true, {} }

-- an op: { op =, h = handle index (0: the driver), alt =, args = { n =, ... } }
local gen_op
local function gen_body(r, depth, nh)
  local body = {}
  for i = 1, r(6) - 1 do body[i] = gen_op(r, depth, nh, true) end
  return body
end

gen_op = function(r, depth, nh, inside)
  local k = r(1000)
  local h = r(2) == 1 and r(math.min(nh, 4)) or r(nh)
  local alt = r(3) == 1
  if k <= 700 then
    local op = KEY_OPS[r(#KEY_OPS)]
    local key = gen_key(r)
    if op == "set" or op == "setnx" then
      local v = gen_value(r)
      local ttl = gen_ttl(r, false)
      return { op = op, h = h, alt = alt, args = pack(key, v[1], ttl) }
    elseif op == "incr" then
      local by, ttl = gen_by(r), gen_ttl(r, false)
      local n = (ttl ~= nil and 3) or (by ~= nil and 2) or r(2)
      return { op = op, h = h, alt = alt, args = { n = n, key, by, ttl } }
    elseif op == "expire" then
      if r(15) == 1 then return { op = op, h = h, alt = alt, args = pack(key) } end
      return { op = op, h = h, alt = alt, args = pack(key, gen_ttl(r, true)) }
    end
    return { op = op, h = h, alt = alt, args = pack(key) }
  elseif k <= 760 then
    local name = r(12) == 1 and BAD_NAMES[r(#BAD_NAMES)] or NAMES[r(#NAMES)]
    return { op = "namespace", h = r(nh + 1) - 1, alt = alt, args = pack(name) }
  elseif k <= 800 then return { op = "count", h = h, alt = alt, args = pack() }
  elseif k <= 830 then return { op = "keys", h = h, alt = alt, args = pack() }
  elseif k <= 850 then
    -- (the driver's own on some: chosen without another draw, so that the plans of the
    -- seeds stay the ones they were)
    return { op = "namespaces", h = (alt and h == 1) and 0 or h, alt = alt, args = pack() }
  elseif k <= 855 then return { op = "clear", h = h, alt = alt, args = pack() }
  elseif k <= 920 and depth < 3 then
    local ending = ({ "return", "return", "raise", "raise", "raise_string", "raise_coded",
                      "close" })[r(7)]
    if depth == 0 and not inside and r(12) == 1 then ending = "yield" end
    local extra = ({ pack(), pack(nil, 3), pack("x", nil), pack({ 1 }) })[r(4)]
    return { op = "atomic", h = r(nh + 1) - 1, alt = alt, ending = ending, args = extra,
             body = gen_body(r, depth + 1, nh), err = { "raised by the plan" } }
  elseif k <= 930 then return { op = "wrongself", h = h, args = pack(WRONG_SELVES[r(#WRONG_SELVES)]),
                                method = KEY_OPS[r(#KEY_OPS)] }
  elseif k <= 932 then return { op = "flush", h = 0, alt = alt, args = pack() }
  elseif k <= 940 and not inside then return { op = "advance", steps = r(3) }
  elseif k <= 960 and not inside then return { op = "gcstats", alt = alt }
  elseif k <= 965 and not inside then return { op = "state" }
  end
  return { op = "get", h = h, alt = alt, args = pack(KEYS[r(#KEYS)]) }
end

---------------------------------------------------------------------------
-- Running a plan on a target: the same code for the model and the drivers

-- the result of a call: { ok = true, n =, ... } or { ok = false, err = }
local function call(f, ...)
  local r = pack(pcall(f, ...))
  if r[1] then return { ok = true, n = r.n - 1, unpack(r, 2, r.n) } end
  return { ok = false, err = r[2] }
end

local function collect(it)
  local list = {}
  for x in it do list[#list + 1] = x end
  table.sort(list)
  return list
end

local exec_op, exec_walk

-- the object an op calls: a store handle, or the driver (h == 0)
local function target_obj(T, op)
  if op.h == 0 then return op.alt and T.alt or T.kv end
  return T.handles[op.h]
end

local function run_body(T, body, out)
  for _, sub in ipairs(body) do out[#out + 1] = exec_op(T, sub) end
end

-- the error values atomic() must raise again as they are, beside tables and strings
local RAISES = { raise_nil = { nil }, raise_number = { 42 }, raise_false = { false } }

local ENDINGS = {}
function ENDINGS.return_(T, op) return 1, nil, "two" end

exec_op = function(T, op)
  local o = op.op
  if o == "advance" then
    if T.model then
      T.kv.st.now = T.kv.st.now + op.steps * G
      core._set_clock_offset(T.kv.st.now)
    end
    return { ok = true, n = 0 }
  end
  if o == "state" then
    -- every handle: its keys, their values and ttls, count, child names
    local st = {}
    for i = 1, T.nh do
      local s = T.handles[i]
      if s then
        local r = call(function()
          local keys = collect(s:keys())
          local vals, ttls = {}, {}
          for j, key in ipairs(keys) do
            vals[j] = s:get(key)
            ttls[j] = s:ttl(key)
          end
          return keys, vals, ttls, s:count(), collect(s:namespaces())
        end)
        st[i] = r
      else
        st[i] = false
      end
    end
    return { ok = true, n = 1, st, state = true }
  end
  if o == "gcstats" then
    local kv = op.alt and T.alt or T.kv
    return call(function()
      local freed = kv:gc()
      assert(type(freed) == "number" and freed >= 0 and freed == floor(freed), "gc() result")
      local keys = T.model and T.kv:live_keys() or kv:stats().keys
      return keys, kv:gc()
    end)
  end
  local obj = target_obj(T, op)
  if obj == nil then return { ok = true, n = 0, skipped = true } end
  local a = op.args
  if o == "wrongself" then
    -- the target's own Store method (a namespace made for this would show in namespaces())
    local f = T.model and MStore[op.method] or T.handles[1] and T.handles[1][op.method]
    if f == nil then return { ok = true, n = 0, skipped = true } end
    return call(f, a[1], "k")
  end
  if o == "namespace" then
    local r = call(obj.namespace, obj, unpack(a, 1, a.n))
    if r.ok then
      T.handles[op.new] = r[1]
      T.driver_of[r[1]] = op.h == 0 and obj or T.driver_of[obj]
      r[1] = "store"
    end
    return r
  end
  if o == "keys" or o == "namespaces" then
    return call(function() return collect(obj[o](obj)) end)
  end
  if o == "walk" then return exec_walk(T, op) end
  if o == "atomic" then
    local inner = {}
    local fn = function(self, ...)
      inner[#inner + 1] = { ok = true, n = 2, rawequal(self, obj), pack(...) }
      run_body(T, op.body, inner)
      local e = op.ending
      if e == "raise" then error(op.err) end
      if RAISES[e] then error(RAISES[e][1], 0) end   -- nil, a number, false
      if e == "raise_string" then error("plan raised", 0) end
      if e == "raise_coded" then obj:namespace("") end   -- EMPTY_NAMESPACE, not caught
      if e == "close" then
        local kv = op.h == 0 and obj or T.driver_of[obj]
        inner[#inner + 1] = call(kv.close, kv)
      end
      if e == "yield" then
        if T.model then error("attempt to yield across a C-call boundary", 0) end
        coroutine.yield("yielded")
      end
      return 1, nil, "two"
    end
    local r
    if op.ending == "yield" and not T.model then
      local co = coroutine.create(function() return obj:atomic(fn, unpack(a, 1, a.n)) end)
      local res = pack(coroutine.resume(co))
      -- a yield inside fn is an error (the writes are undone), never a yield out of atomic
      if res[1] and coroutine.status(co) == "suspended" then
        r = { ok = true, n = 1, "yielded out of atomic()" }
      elseif res[1] then
        r = { ok = true, n = res.n - 1, unpack(res, 2, res.n) }
      else
        r = { ok = false, err = "yield error" }
      end
    else
      r = call(obj.atomic, obj, fn, unpack(a, 1, a.n))
      if op.ending == "yield" then r = { ok = false, err = "yield error" } end
    end
    if not r.ok and op.ending == "raise" then r.same_error = rawequal(r.err, op.err) end
    if not r.ok and RAISES[op.ending] then r.same_error = rawequal(r.err, RAISES[op.ending][1]) end
    r.inner = inner
    return r
  end
  if o == "flush" then return call(obj.flush, obj) end
  return call(obj[o], obj, unpack(a, 1, a.n))
end

-- a keys() or namespaces() walk with other calls in the middle of it (op.body, after
-- op.steps steps), or with the drivers closed there (op.close). The model gives the names
-- live when the walk began and those live after every call of the body (present
-- throughout); the drivers, the names the walk returned. inner[1] is a placeholder, so
-- that inner[i + 1] is the result of op.body[i] as in atomic.
exec_walk = function(T, op)
  if op.h ~= 0 and T.handles[op.h] == nil then return { ok = true, n = 0, skipped = true } end
  local obj = target_obj(T, op)
  local inner = { { ok = true, n = 0 } }
  local r
  if T.model then
    local function names() return collect(obj[op.kind](obj)) end
    r = call(function()
      -- (IMPL) the walk begins at its first step, not when keys() returns the iterator: with
      -- no step before the body, what the body adds may be returned
      local s0 = op.steps > 0 and names() or nil
      local present = {}
      for _, k in ipairs(s0 or {}) do present[k] = true end
      for i, sub in ipairs(op.body) do
        inner[#inner + 1] = exec_op(T, sub)
        if not s0 and i == #op.body then   -- the body ran before the walk began
          s0 = names()
          for _, k in ipairs(s0) do present[k] = true end
        elseif s0 then
          local ok, now = pcall(names)
          local live = {}
          for _, k in ipairs(ok and now or {}) do live[k] = true end
          for k in pairs(present) do if not live[k] then present[k] = nil end end
        end
      end
      s0 = s0 or names()
      if op.close then
        T.kv.closed = true
        closed()
      end
      return { s0 = s0, present = present }
    end)
  else
    r = call(function()
      local it = obj[op.kind](obj)
      local got, ended = {}, false
      for _ = 1, op.steps do
        local x = it()
        if x == nil then ended = true break end
        got[#got + 1] = x
      end
      if op.close then
        T.kv:close()
        T.alt:close()
        local x = it()
        return "a step after close() returned " .. tostring(x)
      end
      run_body(T, op.body, inner)
      if not ended then
        for x in it do got[#got + 1] = x end
      end
      return got
    end)
  end
  r.inner = inner
  return r
end

---------------------------------------------------------------------------
-- Comparing

local function same(a, b, top)
  local ta = type(a)
  if ta ~= type(b) then return false end
  if ta == "number" then
    if top and HAS_INT and math.type(a) ~= math.type(b) then return false end
    if a ~= a then return b ~= b end
    if top and a == 0 and b == 0 then return neg_zero(a) == neg_zero(b) end
    return a == b
  elseif ta == "table" then
    for k, x in next, a do
      local y = rawget(b, k)
      if y == nil or not same(x, y, false) then return false end
    end
    for k in next, b do
      if rawget(a, k) == nil then return false end
    end
    return true
  end
  return a == b
end

local T0 = os.time()
-- a ttl() reading: the model's seconds left, the real clock ran on since the key was set
local function same_ttl(m, x)
  if m == nil or m == huge then return x == m end
  if type(x) ~= "number" or not (x > 0) then return false end
  local slack = os.time() - T0 + 2
  return x <= m + 0.0005 and x >= m - slack
end

local show
show = function(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "string" then
    if #v > 40 then return string.format("%q..(%d bytes)", v:sub(1, 40), #v) end
    return (string.format("%q", v):gsub("\n", "n"))
  elseif t == "number" then
    if is_int_subtype(v) then return tostring(v) end
    if neg_zero(v) then return "-0.0" end
    return string.format("%.17g", v)
  elseif t == "table" then
    if getmetatable(v) == Err or (rawget(v, "code") and rawget(v, "message")) then
      return "error " .. tostring(rawget(v, "code")) .. " (" .. tostring(rawget(v, "message")) .. ")"
    end
    if depth > 3 then return "{...}" end
    local items, n = {}, 0
    for k, x in next, v do
      n = n + 1
      if n > 8 then items[#items + 1] = "..." break end
      items[#items + 1] = "[" .. show(k, depth + 1) .. "]=" .. show(x, depth + 1)
    end
    return "{" .. table.concat(items, ",") .. "}"
  end
  return t
end

local show_op
show_op = function(op)
  local parts = { op.op, "h=" .. tostring(op.h) }
  if op.alt then parts[#parts + 1] = "alt" end
  if op.method then parts[#parts + 1] = op.method end
  if op.ending then parts[#parts + 1] = "ending=" .. op.ending end
  if op.steps then parts[#parts + 1] = "steps=" .. op.steps end
  if op.kind then parts[#parts + 1] = op.kind .. (op.close and " close" or "") end
  if op.new then parts[#parts + 1] = "new=" .. op.new end
  if op.args then
    local a = {}
    for i = 1, op.args.n do a[i] = show(op.args[i]) end
    parts[#parts + 1] = "(" .. table.concat(a, ", ") .. ")"
  end
  if op.body then
    local b = {}
    for i, sub in ipairs(op.body) do b[i] = show_op(sub) end
    parts[#parts + 1] = "{ " .. table.concat(b, "; ") .. " }"
  end
  return table.concat(parts, " ")
end

-- nil when the real result r matches the model's m, else why not
local compare, compare_inner
local function compare_err(me, re)
  if type(me) == "string" then
    if me == "yield error" then return nil end
    if me:find("bad argument", 1, true) then
      if type(re) == "string" and re:find("bad argument", 1, true) then return nil end
      return "expected a plain argument error, got " .. show(re)
    end
    if re ~= me then return "expected the error " .. show(me) .. ", got " .. show(re) end
    return nil
  end
  if getmetatable(me) ~= Err then   -- the plan's own error table
    return nil
  end
  if type(re) ~= "table" then return "expected a zeltkv error " .. me.code .. ", got " .. show(re) end
  if re.code ~= me.code then return "expected " .. me.code .. ", got " .. show(re) end
  if tostring(re) ~= "zeltkv: " .. re.code .. ": " .. tostring(re.message) then
    return "tostring of the error: " .. tostring(re)
  end
  if me.exact and re.message ~= me.message then
    return "expected the message " .. show(me.message) .. ", got " .. show(re.message)
  end
  if me.reason and re.reason ~= me.reason then
    return "expected reason " .. me.reason .. ", got " .. tostring(re.reason)
  end
  return nil
end

compare = function(op, m, r)
  if m.skipped or r.skipped then
    if m.skipped and r.skipped then return nil end
    return "one side has no such handle"
  end
  if m.ok ~= r.ok then
    return "expected " .. (m.ok and "success" or ("error " .. show(m.err))) .. ", got " ..
      (r.ok and ("success " .. show(r[1])) or ("error " .. show(r.err)))
  end
  if not m.ok then
    local why = compare_err(m.err, r.err)
    if why then return why end
    if m.same_error ~= nil and m.same_error ~= r.same_error then
      return "atomic() did not raise fn's own error value again"
    end
  else
    if m.state then
      local ms, rs = m[1], r[1]
      for i = 1, #ms do
        local a, b = ms[i], rs[i]
        if (a == false) ~= (b == false) then return "handle " .. i .. " exists on one side only" end
        if a then
          if a.ok ~= b.ok then return "state of handle " .. i .. ": " .. show(a.err or b.err) end
          if a.ok then
            if not same(a[1], b[1], true) then
              return "keys of handle " .. i .. ": expected " .. show(a[1]) .. ", got " .. show(b[1])
            end
            for j = 1, #a[1] do
              if not same(a[2][j], b[2][j], true) then
                return "handle " .. i .. " key " .. show(a[1][j]) .. ": expected " ..
                  show(a[2][j]) .. ", got " .. show(b[2][j])
              end
              if not same_ttl(a[3][j], b[3][j]) then
                return "handle " .. i .. " ttl of " .. show(a[1][j]) .. ": expected " ..
                  show(a[3][j]) .. ", got " .. show(b[3][j])
              end
            end
            if not same(a[4], b[4], true) then
              return "count of handle " .. i .. ": expected " .. show(a[4]) .. ", got " .. show(b[4])
            end
            if not same(a[5], b[5], true) then
              return "namespaces of handle " .. i .. ": expected " .. show(a[5]) .. ", got " ..
                show(b[5])
            end
          end
        end
      end
      return nil
    end
    if op.op == "walk" then
      local w, got = m[1], r[1]
      if type(got) ~= "table" then return "walk: " .. show(got) end
      local s0, seen = {}, {}
      for _, k in ipairs(w.s0) do s0[k] = true end
      for _, k in ipairs(got) do
        if seen[k] then return "walk: " .. show(k) .. " returned twice" end
        seen[k] = true
        if not s0[k] then return "walk: returned " .. show(k) .. ", which was not there when it began" end
      end
      for k in pairs(w.present) do
        if not seen[k] then return "walk: " .. show(k) .. " was there throughout, never returned" end
      end
      return compare_inner(op, m, r)
    end
    if m.n ~= r.n then return "expected " .. m.n .. " results, got " .. r.n end
    for i = 1, m.n do
      if op.op == "ttl" then
        if not same_ttl(m[i], r[i]) then return "ttl: expected " .. show(m[i]) .. ", got " .. show(r[i]) end
      elseif not same(m[i], r[i], true) then
        return "result " .. i .. ": expected " .. show(m[i]) .. ", got " .. show(r[i])
      end
    end
  end
  return compare_inner(op, m, r)
end

-- the results of the calls inside an atomic's fn or a walk
compare_inner = function(op, m, r)
  if m.inner then
    if #m.inner ~= #r.inner then
      return op.op .. ": fn ran " .. #r.inner .. " steps, the model " .. #m.inner
    end
    for i = 1, #m.inner do
      local sub = op.body[i - 1] or { op = "fn's arguments" }
      if op.ending == "close" and i == #m.inner then sub = { op = "close" } end
      local why = compare(sub, m.inner[i], r.inner[i])
      if why then return "inside " .. op.op .. ", step " .. i .. " (" .. show_op(sub) .. "): " .. why end
    end
  end
  return nil
end

---------------------------------------------------------------------------
-- Targets

local function shared_name(tag) return H.segment_name("model-" .. tag:gsub("%W", "")) end

local targets_made = {}
local function open_targets(only)
  local list = {}
  local function add(name, mod, shared)
    local T = { name = name, handles = {}, nh = 0, driver_of = {} }
    if shared then
      local seg = shared_name(name)
      T.kv = mod.shared(seg, { size = "16m", gc_interval = 0 })
      T.alt = mod.shared(seg, { size = "16m", gc_interval = 0 })
      zeltkv.unlink(seg)
    else
      T.kv = mod.memory({ gc_interval = 0 })
      T.alt = T.kv
    end
    list[#list + 1] = T
    targets_made[#targets_made + 1] = T
  end
  local jit_ffi = rawget(_G, "jit") and zeltkv._ffi
  only = only or os.getenv("ZELTKV_MODEL_TARGETS")   -- e.g. "memory" (a debugging aid)
  local function want(name) return not only or only == "" or name:find(only, 1, true) end
  if want("memory") then add(jit_ffi and "ffi memory" or "memory", zeltkv, false) end
  if want("shared") then add(jit_ffi and "ffi shared" or "shared", zeltkv, true) end
  if jit_ffi then
    if want("C memory") then add("C memory", core, false) end
    if want("C shared") then add("C shared", core, true) end
  end
  return list
end

local function new_model_target()
  local kv = new_model()
  local T = { name = "model", model = true, kv = kv, alt = kv, handles = {}, nh = 0,
              driver_of = {} }
  return T
end

-- give namespace ops the index of the handle they make; returns the handle count
local MAX_HANDLES, made = 24, 0
local function number_handles(plan, nh)
  for _, op in ipairs(plan) do
    if op.op == "namespace" then
      made = made + 1
      if nh < MAX_HANDLES then
        nh = nh + 1
        op.new = nh
      else
        op.new = 5 + made % (MAX_HANDLES - 4)   -- the first four handles stay
      end
    end
    if op.body then nh = number_handles(op.body, nh) end
  end
  return nh
end

local function close_all(T)
  pcall(T.kv.close, T.kv)
  if T.alt ~= T.kv then pcall(T.alt.close, T.alt) end
end

-- the plan of one seed: a few handles, nops random operations (the whole state compared
-- every 250 and at the end), then the driver closed and 60 more
local SCRATCH = MAX_HANDLES + 1   -- the handle the namespace calls inside a walk make

-- a walk (exec_walk) with a body of calls drawn from r2, a generator of its own, so that
-- the plans without walks stay the ones they were
local function gen_walk(r2, nh)
  local op = { op = "walk", h = r2(nh), kind = r2(5) == 1 and "namespaces" or "keys",
               steps = r2(4) - 1, body = {}, alt = r2(3) == 1 }
  if op.kind == "namespaces" and r2(4) == 1 then op.h = 0 end
  for i = 1, r2(5) do
    local sub = gen_op(r2, 3, nh, true)   -- depth 3: no atomic, so no handle made but these
    if sub.op == "namespace" then sub.new = SCRATCH end
    op.body[i] = sub
  end
  return op
end

-- some atomics of op (and of its body) raise nil, a number or false instead of a table
local function other_raises(r2, op)
  if op.op ~= "atomic" then return end
  if op.ending == "raise" and r2(3) == 1 then
    op.ending = ({ "raise_nil", "raise_number", "raise_false" })[r2(3)]
  end
  for _, sub in ipairs(op.body) do other_raises(r2, sub) end
end

local function gen_plan(seed, nops, walks)
  local r = rng(seed)
  local r2 = walks and rng(seed + 7919)
  made = 0
  local plan = {
    { op = "namespace", h = 0, args = pack("a") }, { op = "namespace", h = 0, args = pack("ab") },
    { op = "namespace", h = 1, args = pack("b") },
    { op = "namespace", h = 0, alt = true, args = pack("a") },
  }
  local nh = number_handles(plan, 0)
  for i = 1, nops do
    local op = i % 250 == 0 and { op = "state" } or gen_op(r, 0, nh, false)
    nh = number_handles({ op }, nh)
    plan[#plan + 1] = op
    if r2 and op.op == "atomic" then other_raises(r2, op) end
    if r2 and r2(40) == 1 then plan[#plan + 1] = gen_walk(r2, nh) end
  end
  plan[#plan + 1] = { op = "state" }
  plan[#plan + 1] = { op = "gcstats" }
  if r2 then   -- a walk begun before close() and stepped after it
    plan[#plan + 1] = { op = "walk", h = r2(4) == 1 and 0 or r2(4), kind = r2(2) == 1 and "keys" or
                        "namespaces", steps = r2(2) - 1, body = {}, close = true }
    if plan[#plan].h == 0 then plan[#plan].kind = "namespaces" end
  end
  plan[#plan + 1] = { op = "closeall" }
  for _ = 1, 60 do
    local op = gen_op(r, 2, nh, true)
    nh = number_handles({ op }, nh)
    plan[#plan + 1] = op
  end
  plan[#plan + 1] = { op = "closeall" }
  return plan, nh
end

-- run a plan on the model and every target; returns nil, or why and the index of the op
local function run_plan(plan, nh, label, stats, only)
  core._set_clock_offset(0)
  local M = new_model_target()
  local targets = open_targets(only)
  local all = { M }
  for _, T in ipairs(targets) do
    all[#all + 1] = T
  end
  for _, T in ipairs(all) do T.nh = nh end
  local failure, at
  local function tally(op, m)
    if not stats then return end
    local key = op.op .. (m.ok and (" ok " .. type(m[1])) or
      (" err " .. (type(m.err) == "table" and tostring(m.err.code) or "string")))
    stats[key] = (stats[key] or 0) + 1
    for j, x in ipairs(m.inner or {}) do
      if j > 1 and op.body[j - 1] then tally(op.body[j - 1], x) end
    end
  end
  for i, op in ipairs(plan) do
    if op.op == "closeall" then
      M.kv.closed = true
      for _, T in ipairs(targets) do
        for _, kv in ipairs({ T.kv, T.alt }) do
          local rr = call(kv.close, kv)
          if not rr.ok then failure = "close() raised " .. show(rr.err) end
        end
      end
    else
      local m = exec_op(M, op)
      tally(op, m)
      for _, T in ipairs(targets) do
        local why = compare(op, m, exec_op(T, op))
        if why then
          failure = T.name .. ": " .. why
          break
        end
      end
    end
    if failure then
      at = i
      failure = ("%s, op %d: %s\n  op: %s"):format(label, i, failure, show_op(op))
      break
    end
  end
  for _, T in ipairs(targets) do close_all(T) end
  core._set_clock_offset(0)
  return failure, at
end

-- the shortest plan that still fails (ZELTKV_MODEL_SHRINK=1): chunks of ops left out while
-- the plan still fails, halving the chunk down to one op
local function shrink(plan, nh, at)
  local cur = {}
  local from = tonumber(os.getenv("ZELTKV_MODEL_FROM") or "") or 5
  for i = 1, 4 do cur[i] = plan[i] end
  for i = from, at do cur[#cur + 1] = plan[i] end
  local deadline = os.time() + (tonumber(os.getenv("ZELTKV_MODEL_SHRINK_SECS") or "") or 300)
  local chunk = math.max(1, floor(#cur / 2))
  while true do
    local i = 5
    while i <= #cur do
      local try = {}
      for j = 1, #cur do
        if j < i or j >= i + chunk then try[#try + 1] = cur[j] end
      end
      local f, a = run_plan(try, nh, "shrinking")
      if os.time() > deadline then i = #cur + 1 chunk = 1 end
      if f then
        cur = {}
        for j = 1, a do cur[j] = try[j] end
      else
        i = i + chunk
      end
    end
    if chunk == 1 then break end
    chunk = math.max(1, floor(chunk / 2))
  end
  local lines = {}
  for j, op in ipairs(cur) do lines[j] = j .. " " .. show_op(op) end
  return table.concat(lines, "\n")
end

local function run_seed(seed, nops)
  local plan, nh = gen_plan(seed, nops, true)
  local stats = os.getenv("ZELTKV_MODEL_VERBOSE") and {} or nil
  local failure, at = run_plan(plan, nh, "seed " .. seed, stats)
  if stats then
    local ks = {}
    for k in pairs(stats) do ks[#ks + 1] = k end
    table.sort(ks)
    for _, k in ipairs(ks) do io.stderr:write(("%8d %s\n"):format(stats[k], k)) end
  end
  if failure and os.getenv("ZELTKV_MODEL_SHRINK") then
    failure = failure .. "\n  the shortest failing plan:\n" .. shrink(plan, nh, at)
  end
  return failure
end

describe("the model of the API contract", function()
  after_each(function()
    core._set_clock_offset(0)
    for _, T in ipairs(targets_made) do close_all(T) end
    targets_made = {}
  end)

  -- A plan that found a bug: a handle on a namespace made in an atomic that was undone kept
  -- working on the dead record (the engine's namespace id check passed: the record's tag
  -- was not taken away by the rollback) and its writes were lost. Lua 5.4's plans only (the
  -- generator draws other values where numbers are doubles).
  if HAS_INT and not rawget(_G, "jit") and _VERSION == "Lua 5.4" then
    it("replays the plan that lost a write to a namespace undone by a rollback", function()
      local plan, nh = gen_plan(1, 20000)
      local upto = {}
      for i = 1, 16754 do upto[i] = plan[i] end   -- the bug showed at the state check 16754
      local failure = run_plan(upto, nh, "seed 1 of 20000 ops, memory", nil, "memory")
      assert(failure == nil, failure)
    end)
  end

  for seed = SEED0, SEED0 + NSEEDS - 1 do
    it(("agrees with the drivers over %d random operations (seed %d)"):format(OPS, seed), function()
      local failure = run_seed(seed, OPS)
      assert(failure == nil, failure)
    end)
  end
end)
