-- zeltkv.ffi: the LuaJIT front end of zeltkv (loaded by lua/zeltkv.lua under LuaJIT).
--
-- Why: a JIT-compiled loop that calls a lua_CFunction cannot stay on one trace (LuaJIT ends
-- the trace there and stitches a new one after the call, through the interpreter). Here
-- get/set/del/has/ttl/incr/setnx of scalar values call the C API (include/zeltkv.h) through
-- the FFI, which the JIT compiles into the loop.
--
-- One implementation of the semantics: everything else, and every argument or result the
-- fast path does not handle, goes to the C binding's own method (src/lua/) with the same
-- arguments, so it raises exactly the same errors:
--   * drivers stay the C binding's (namespace, atomic, gc, stats, flush, close run in C);
--     the driver and store objects handed out here are thin Lua tables that hold the C
--     object and forward to it;
--   * table values (the JSON encoding), keys(), count(), clear(), expire(), namespace(),
--     atomic() and the hidden raw methods are the C methods;
--   * a key that is not a string of 1..65535 bytes or an integral number within 2^53, a
--     value that is not a string, finite number or boolean, a ttl that is not nil, a finite
--     number > 0 or { ttl = <such a number> }, a bad `by`, a stored table (ZKV_T_JSON), a
--     namespace gone with a rolled-back atomic() (ZKV_ESTALE: C finds it anew) and incr on a
--     non-integer or out of range: the C method does the whole call;
--   * other engine errors (full, lock timeout, ...) are raised by the C binding's own
--     core._raise_rc (the message, class and reason of the C methods), without calling the
--     engine a second time (a lock timeout is not waited for twice).
-- The engine is called through the binding's own entry points (src/lua/ffi.c, declared in
-- core._const.FFI from src/lua/binding.h), given the C store's userdata: they read its
-- handle and namespace id at the call. Lua code here never holds a zkv_db * or a pointer
-- to a value: a finalizer can run at any allocation (also the box of a pointer or an int64
-- read through the FFI) and close the driver or free the value. So results come back as
-- numbers and as bytes copied into BUF, and what the fast paths set up (VIN, the key) is
-- ready before the call with nothing allocated in between. A closed driver (kv:close(),
-- __gc) is ECLOSED there, and the C method raises "closed"; a namespace the C side
-- re-resolved is seen at once. The declarations of include/zeltkv.h copied below are
-- compared with the header by spec/10-binding_spec.lua. The library instance and the
-- transaction joining are checked once at load (probe()); if any check fails the module is
-- the plain C binding.
--
-- Numbers are doubles here (as in the C binding built for LuaJIT): integers are exact to
-- 2^53, incr results beyond +-2^53 are INVALID_VALUE.

local ffi = require("ffi")

local type, rawget, tonumber, select, error, setmetatable, pcall, tostring, next =
  type, rawget, tonumber, select, error, setmetatable, pcall, tostring, next
local floor, huge = math.floor, math.huge
local ffi_string, ffi_new = ffi.string, ffi.new
local sformat = string.format
local new_tab = select(2, pcall(require, "table.new"))
if type(new_tab) ~= "function" then new_tab = function() return {} end end

local core = require("zeltkv.core")
local core_decode = core._decode
local K = core._const
core._own()   -- an error raised through this file names the user's line

-- copies of include/zeltkv.h (spec/10-binding_spec.lua checks them against it)
local CDEF = [[
typedef struct zkv_db zkv_db;
typedef uint64_t zkv_ns;
typedef struct zkv_value {
  int type;
  uint32_t flags;
  const void *data;
  size_t len;
  int64_t i;
  double f;
} zkv_value;
typedef struct zkv_cursor {
  uint32_t seq;
  uint32_t end;
  uint32_t ref;
  uint16_t started, done;
} zkv_cursor;
]]

-- the engine's codes (include/zeltkv.h, exported by the C binding)
local OK, NOTFOUND, EXISTS = K.OK, K.NOTFOUND, K.EXISTS
local T_INT, T_FLOAT, T_BOOL, T_JSON, T_STRING = K.T_INT, K.T_FLOAT, K.T_BOOL, K.T_JSON, K.T_STRING
local ETYPE, ERANGE, ESTALE, ECLOSED = K.ETYPE, K.ERANGE, K.ESTALE, K.ECLOSED
local SET_NX, GET_STALE = K.SET_NX, K.GET_STALE
local MAX_KEY, MAX_MS = K.MAX_KEY, K.MAX_TTL_MS
local LIMIT = 9007199254740992 -- 2^53: integers exact in a double

-- Keys of the private fields of the objects handed out: the C store, the C driver. Strings
-- (a table key would cost the JIT a hash lookup per call) that no table gets by accident.
local CS, CD = "\0zeltkv.cstore", "\0zeltkv.cdriver"

-- the C binding's methods, filled by probe()
local CM_STORE, CM_DRIVER = {}, {}

local StoreMethods = { _ffi = true }
local DriverMethods = { _ffi = true }
local StoreMT = { __index = StoreMethods, __metatable = false, __name = "zeltkv.Store" }
local DriverMT = { __index = DriverMethods, __metatable = false, __name = "zeltkv.Driver" }

-- the path of the core.so that require("zeltkv.core") loaded, and a check that ffi.load of
-- it is that same library instance (dlopen RTLD_NOLOAD succeeds only for a loaded file)
local function core_path()
  local path = package.searchpath and package.searchpath("zeltkv.core", package.cpath)
  if not path then return nil, "zeltkv.core not found on package.cpath" end
  local ok, h = pcall(function()
    pcall(ffi.cdef, "void *dlopen(const char *, int); int dlclose(void *);")
    return ffi.C.dlopen(path, 0x00002 + 0x00004) -- RTLD_NOW | RTLD_NOLOAD (glibc, musl)
  end)
  if ok then
    if h == nil then return nil, path .. " is not the zeltkv.core loaded in this process" end
    ffi.C.dlclose(h)
  end
  return path
end

local function load_lib()
  local path, why = core_path()
  if not path then return nil, why end
  local ok, lib = pcall(function()
    if not pcall(ffi.typeof, "zkv_lua_out") then ffi.cdef(CDEF .. K.FFI) end
    return ffi.load(path)
  end)
  if not ok then return nil, tostring(lib) end
  return lib
end

local C, why_not = load_lib()  -- the ffi.load()ed core.so
if not C then return { disabled = why_not } end
local lua_get, lua_set, lua_del, lua_has, lua_ttl, lua_incr, lua_incr_num, lua_expire =
  C.zkv_lua_get, C.zkv_lua_set, C.zkv_lua_del, C.zkv_lua_has, C.zkv_lua_ttl, C.zkv_lua_incr,
  C.zkv_lua_incr_num, C.zkv_lua_expire
local lua_list_push, lua_list_pop, lua_list_len, lua_space, lua_capacity_word =
  C.zkv_lua_list_push, C.zkv_lua_list_pop, C.zkv_lua_list_len, C.zkv_lua_space,
  C.zkv_lua_capacity_word
local lua_free_space = C.zkv_lua_free_space
local lua_free, lua_keys = C.zkv_lua_free, C.zkv_lua_keys
local lua_flush_all, lua_flush_expired = C.zkv_lua_flush_all, C.zkv_lua_flush_expired
local lua_live = C.zkv_lua_live
-- scratch (one Lua state is one thread; nothing yields, and nothing allocates, between
-- filling and using them)
local VIN, OUT, DBL1 = ffi_new("zkv_value"), ffi_new("zkv_lua_out"), ffi_new("double[1]")
local BUFCAP = 65536   -- a value up to this size is copied here; a bigger one read by C
local BUF = ffi_new("char[?]", BUFCAP)
local BUF_1 = BUF + 1   -- _list_pop: an item's payload, after its tag byte
-- the raw methods' own (they set user flags, which VIN must keep at 0)
local VRAW, INT1, DBL2 = ffi_new("zkv_value"), ffi_new("int[1]"), ffi_new("double[1]")
local BIGP = ffi_new("char *[1]")   -- _list_pop: an item bigger than BUF
-- _keys_list's scratch: the walk's cursor, the lengths of a batch's keys and their bytes.
-- Not BUF, and held by one call at a time: making a batch's strings allocates (the table,
-- every ffi.string), and a finalizer run there may call get (it reads into BUF) or get_keys
-- again, which would overwrite the lengths and bytes not yet read and move the cursor (the
-- outer call then returned another namespace's keys and stray bytes).  A call takes the
-- scratch (KCUR is nil while it is taken) and puts its own back when it returns; one that
-- finds it taken (a nested call, or any call after an error escaped one) makes its own.
-- The lengths are int32_t (a key is at most 65535 bytes): the trace adds them up as
-- integers, where uint32_t lengths made every one a double and back (three conversions a
-- key); zkv_lua_keys takes them as uint32_t * (the FFI converts the pointer).
local KEYS_BATCH = 256   -- as src/lua/binding.h: keys a lock hold
local function keys_scratch()
  return ffi_new("zkv_cursor"), ffi_new("int32_t[?]", KEYS_BATCH), ffi_new("char[?]", BUFCAP)
end
local KCUR, KLENS, KBUF = keys_scratch()
-- the C binding's error metatable (probe() checks that errors raised here have it)
local ERR_MT = getmetatable(select(2, pcall(core.unlink, "")))

-- the C object behind one of ours, or the value itself (so that a wrong self gets the
-- C binding's own "bad argument" error)
local function unwrap(x)
  if type(x) == "table" then
    local c = rawget(x, CS) or rawget(x, CD)
    if c ~= nil then return c end
  end
  return x
end

local raise_rc = core._raise_rc

-- whole and within +-2^53, so exact as a double (double_is_whole53 in src/util.h)
local function whole53(x) return x == floor(x) and x <= LIMIT and x >= -LIMIT end

-- key -> string of 1..65535 bytes, or nil (let C take the call). As check_key in src/lua/:
-- an integral number within 2^53 is its decimal string.
local function key_of(k)
  local kt = type(k)
  if kt == "number" then
    if not whole53(k) then return nil end
    return sformat("%d", k)
  elseif kt ~= "string" then
    return nil
  end
  local n = #k
  if n == 0 or n > MAX_KEY then return nil end
  return k
end

local function ms_of(n)
  if type(n) ~= "number" or not (n > 0) or n == huge then return nil end
  local ms = floor(n * 1000.0 + 0.5)
  if ms < 1 then ms = 1 elseif ms > MAX_MS then ms = MAX_MS end
  return ms
end

-- optional ttl (nil, seconds, { ttl = seconds }) -> milliseconds (0 = none), or nil (C)
local function ttl_of(t)
  if t == nil then return 0 end
  if type(t) == "table" then
    if next(t) ~= "ttl" or next(t, "ttl") ~= nil then return nil end
    return ms_of(rawget(t, "ttl"))
  end
  return ms_of(t)
end

-- fill VIN from a scalar; false when C must take the call
local function fill(v)
  local vt = type(v)
  if vt == "string" then
    VIN.type = T_STRING
    VIN.data = v
    VIN.len = #v
  elseif vt == "number" then
    if v ~= v or v == huge or v == -huge then return false end
    VIN.data = nil
    VIN.len = 0
    if whole53(v) and not (v == 0 and 1 / v < 0) then   -- -0 stays a float
      VIN.type = T_INT
      VIN.i = v
    else
      VIN.type = T_FLOAT
      VIN.f = v
    end
  elseif vt == "boolean" then
    VIN.type = T_BOOL
    VIN.data = nil
    VIN.len = 0
    VIN.i = v and 1 or 0
  else
    return false
  end
  return true
end

-- results of a C call, not a tail call (so that a "bad argument" names the method)
local function pass(...) return ... end

---------------------------------------------------------------------------
-- Store

-- The fast paths: self must be one of ours (else the C method raises the argument error).

function StoreMethods.get(self, k)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return (CM_STORE.get(unwrap(self), k)) end
  local key = key_of(k)
  if key == nil then return (CM_STORE.get(cs, k)) end
  local rc = lua_get(cs, key, #key, 0, OUT, BUF, BUFCAP)
  if rc == OK then
    local t = OUT.type
    if t == T_INT or t == T_FLOAT then return OUT.num
    elseif t == T_BOOL then return OUT.num ~= 0
    end
    local n = OUT.len
    if n >= 0 then
      if t ~= T_JSON then return ffi_string(BUF, n) end
      -- a table: decoded by the C binding's codec from this read (a second get through the
      -- C method would count twice in stats())
      return (core_decode(T_JSON, ffi_string(BUF, n)))
    end
    return (CM_STORE.get(cs, k))   -- bigger than BUF: C reads it (and stats() counts two)
  elseif rc == NOTFOUND then
    return nil
  elseif rc == ESTALE or rc == ECLOSED then
    return (CM_STORE.get(cs, k))
  end
  return raise_rc(rc, "get")
end

local function set_impl(self, k, v, ttl, flags, cm, what)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return (cm(unwrap(self), k, v, ttl)) end
  local key = key_of(k)
  local ms = ttl_of(ttl)
  -- fill() last: VIN must hold v when the call is made
  if key == nil or ms == nil or not fill(v) then return (cm(cs, k, v, ttl)) end
  local rc = lua_set(cs, key, #key, VIN, ms, flags, nil)
  if rc == OK then return true
  elseif rc == EXISTS then return false
  elseif rc == ESTALE or rc == ECLOSED then return (cm(cs, k, v, ttl))
  end
  return raise_rc(rc, what)
end

function StoreMethods.set(self, k, v, ttl)
  return set_impl(self, k, v, ttl, 0, CM_STORE.set, "set")
end

function StoreMethods.setnx(self, k, v, ttl)
  return set_impl(self, k, v, ttl, SET_NX, CM_STORE.setnx, "setnx")
end

local function bool_impl(self, k, is_del, cm, what)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return (cm(unwrap(self), k)) end
  local key = key_of(k)
  if key == nil then return (cm(cs, k)) end
  local rc
  if is_del then rc = lua_del(cs, key, #key) else rc = lua_has(cs, key, #key) end
  if rc == OK then return true
  elseif rc == NOTFOUND then return false
  elseif rc == ESTALE or rc == ECLOSED then return (cm(cs, k))
  end
  return raise_rc(rc, what)
end

function StoreMethods.del(self, k)
  return bool_impl(self, k, true, CM_STORE.del, "del")
end

function StoreMethods.has(self, k)
  return bool_impl(self, k, false, CM_STORE.has, "has")
end

-- s:ttl(k), and (coarse 1, ZKV_TTL_COARSE) the drop-in's s:_ttl_coarse(k)
local function ttl_impl(self, k, coarse, cm)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return (cm(unwrap(self), k)) end
  local key = key_of(k)
  if key == nil then return (cm(cs, k)) end
  local rc = lua_ttl(cs, key, #key, coarse, DBL1)
  if rc == OK then
    local left = DBL1[0]
    if left < 0 then return huge end
    return left / 1000.0
  elseif rc == NOTFOUND then
    return nil
  elseif rc == ESTALE or rc == ECLOSED then
    return (cm(cs, k))
  end
  return raise_rc(rc, "ttl")
end

function StoreMethods.ttl(self, k)
  return ttl_impl(self, k, 0, CM_STORE.ttl)
end

function StoreMethods._ttl_coarse(self, k)
  return ttl_impl(self, k, 1, CM_STORE._ttl_coarse)
end

function StoreMethods.incr(self, k, by, ttl)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return (CM_STORE.incr(unwrap(self), k, by, ttl)) end
  local key = key_of(k)
  local ms = ttl_of(ttl)
  local n = by
  if n == nil then
    n = 1
  elseif type(n) ~= "number" or not whole53(n) then
    n = nil
  end
  if key == nil or ms == nil or n == nil then return (CM_STORE.incr(cs, k, by, ttl)) end
  local rc = lua_incr(cs, key, #key, n, ms, DBL1)
  if rc == OK then return DBL1[0] end
  if rc == ETYPE or rc == ERANGE or rc == ESTALE or rc == ECLOSED then
    -- C raises its own messages for these (or finds the namespace anew and does the call)
    return (CM_STORE.incr(cs, k, by, ttl))
  end
  return raise_rc(rc, "incr")
end

-- The raw methods the ngx.shared.DICT face (lua/zeltkv/shdict.lua) is built on, with the C
-- binding's results (src/lua/raw.c); the fast paths take a key key_of() accepts and the
-- argument types the drop-in passes, C takes everything else.

-- s:_rawget(key, stale) -> nil | type, value, flags, is_stale
function StoreMethods._rawget(self, k, stale)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._rawget(unwrap(self), k, stale)) end
  local key = key_of(k)
  if key == nil then return pass(CM_STORE._rawget(cs, k, stale)) end
  local rc = lua_get(cs, key, #key, stale and GET_STALE or 0, OUT, BUF, BUFCAP)
  if rc == NOTFOUND then return end
  if rc ~= OK then
    if rc == ESTALE or rc == ECLOSED then return pass(CM_STORE._rawget(cs, k, stale)) end
    return raise_rc(rc, "get")
  end
  -- everything read from OUT before ffi.string allocates
  local t, fl, st, v = OUT.type, OUT.flags, OUT.stale ~= 0, nil
  if t == T_INT or t == T_FLOAT then v = OUT.num
  elseif t == T_BOOL then v = OUT.num ~= 0
  else
    local n = OUT.len
    if n < 0 then return pass(CM_STORE._rawget(cs, k, stale)) end
    v = ffi_string(BUF, n)
  end
  return t, v, fl, st
end

-- s:_rawset(key, type, value, flags, ttl_ms, setflags) -> rc, forcible
function StoreMethods._rawset(self, k, t, v, fl, ms, sf)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._rawset(unwrap(self), k, t, v, fl, ms, sf)) end
  local key = key_of(k)
  local ok = key ~= nil
    and type(fl) == "number" and fl >= 0 and fl <= 4294967295 and fl == floor(fl)
    and type(ms) == "number" and ms >= 0 and ms <= MAX_MS
    and type(sf) == "number" and sf >= 0 and sf < 256 and sf == floor(sf)
  if ok then
    VRAW.data, VRAW.len = nil, 0
    if t == T_STRING and type(v) == "string" then
      VRAW.data, VRAW.len = v, #v
    elseif t == T_INT and type(v) == "number" and v == floor(v)
           and v >= -9223372036854775808 and v < 9223372036854775808 then   -- num_to_int64
      VRAW.i = v
    elseif t == T_FLOAT and type(v) == "number" then
      VRAW.f = v
    elseif t == T_BOOL and type(v) == "boolean" then
      VRAW.i = v and 1 or 0
    else
      ok = false
    end
  end
  if not ok then return pass(CM_STORE._rawset(cs, k, t, v, fl, ms, sf)) end
  VRAW.type, VRAW.flags = t, fl
  INT1[0] = 0
  local rc = lua_set(cs, key, #key, VRAW, floor(ms), sf, INT1)
  if rc == ESTALE or rc == ECLOSED then return pass(CM_STORE._rawset(cs, k, t, v, fl, ms, sf)) end
  return rc, INT1[0] ~= 0
end

-- s:_incr_num(key, by, create, init, init_ttl_ms) -> rc, result, forcible
function StoreMethods._incr_num(self, k, by, create, init, ms)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._incr_num(unwrap(self), k, by, create, init, ms)) end
  local key = key_of(k)
  local i, m = init, ms
  if i == nil then i = 0 end
  if m == nil then m = 0 end
  if key == nil or type(by) ~= "number" or type(i) ~= "number"
     or type(m) ~= "number" or not (m >= 0 and m <= MAX_MS) then
    return pass(CM_STORE._incr_num(cs, k, by, create, init, ms))
  end
  DBL1[0] = 0
  local rc = lua_incr_num(cs, key, #key, by, create and 1 or 0, i, floor(m), DBL1, INT1)
  if rc == ESTALE or rc == ECLOSED then
    return pass(CM_STORE._incr_num(cs, k, by, create, init, ms))
  end
  return rc, DBL1[0], INT1[0] ~= 0
end

-- s:_expire_ms(key, ms) -> rc   (ms 0 = no expiry)
function StoreMethods._expire_ms(self, k, ms)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._expire_ms(unwrap(self), k, ms)) end
  local key = key_of(k)
  if key == nil or type(ms) ~= "number" or not (ms > -9.2e18 and ms < 9.2e18) then
    return pass(CM_STORE._expire_ms(cs, k, ms))
  end
  local rc = lua_expire(cs, key, #key, ms)   -- truncated to int64_t, as C does
  if rc == ESTALE or rc == ECLOSED then return pass(CM_STORE._expire_ms(cs, k, ms)) end
  return rc
end

-- s:_list_push(key, left, tag, payload) -> rc, count;  s:_list_pop(key, left) -> rc[, tag,
-- payload];  s:_list_len(key) -> rc, count
local sbyte, schar = string.byte, string.char
function StoreMethods._list_push(self, k, left, tag, p)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._list_push(unwrap(self), k, left, tag, p)) end
  local key = key_of(k)
  if key == nil or type(tag) ~= "string" or #tag ~= 1 or type(p) ~= "string" then
    return pass(CM_STORE._list_push(cs, k, left, tag, p))
  end
  DBL1[0] = 0
  local rc = lua_list_push(cs, key, #key, left and 1 or 0, sbyte(tag), p, #p, DBL1)
  if rc == ESTALE or rc == ECLOSED then return pass(CM_STORE._list_push(cs, k, left, tag, p)) end
  return rc, DBL1[0]
end

-- an item bigger than BUF, popped into a block of its own (BIGP[0], n bytes): read, then freed
local function big_item(n)
  local p = BIGP[0]
  local ok, tag, payload = pcall(function() return ffi_string(p, 1), ffi_string(p + 1, n - 1) end)
  lua_free(p)
  if not ok then error(tag, 0) end
  return OK, tag, payload
end

function StoreMethods._list_pop(self, k, left)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._list_pop(unwrap(self), k, left)) end
  local key = key_of(k)
  if key == nil then return pass(CM_STORE._list_pop(cs, k, left)) end
  local rc = lua_list_pop(cs, key, #key, left and 1 or 0, OUT, BUF, BUFCAP, BIGP)
  if rc == ESTALE or rc == ECLOSED then return pass(CM_STORE._list_pop(cs, k, left)) end
  if rc ~= OK then return rc end
  local n = OUT.len
  if n < 0 then return big_item(OUT.num) end
  -- the payload out of BUF in one copy, before anything else allocates (a finalizer run at
  -- an allocation may read into BUF: so the pointer past the tag is made once, at load, as
  -- BUF + 1 here would allocate); the tag byte is a number until then
  local tag = BUF[0]
  local payload = ffi_string(BUF_1, n - 1)
  return rc, schar(tag), payload
end

function StoreMethods._list_len(self, k)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._list_len(unwrap(self), k)) end
  local key = key_of(k)
  if key == nil then return pass(CM_STORE._list_len(cs, k)) end
  DBL1[0] = 0
  local rc = lua_list_len(cs, key, #key, DBL1)
  if rc == ESTALE or rc == ECLOSED then return pass(CM_STORE._list_len(cs, k)) end
  return rc, DBL1[0]
end

-- s:_flush_all() -> how many live keys now count as expired;  s:_flush_expired(max) -> how
-- many expired keys were freed (max 0 = all)
function StoreMethods._flush_all(self)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._flush_all(unwrap(self))) end
  local rc = lua_flush_all(cs, DBL1)
  if rc ~= OK then return pass(CM_STORE._flush_all(cs)) end
  return DBL1[0]
end

function StoreMethods._flush_expired(self, max)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._flush_expired(unwrap(self), max)) end
  if max == nil then max = 0 end
  if type(max) ~= "number" or not (max >= 0 and max <= 1e15) then
    return pass(CM_STORE._flush_expired(cs, max))
  end
  local rc = lua_flush_expired(cs, max, DBL1)
  if rc ~= OK then return pass(CM_STORE._flush_expired(cs, max)) end
  return DBL1[0]
end

-- s:_keys_list(max) -> a table of up to max live keys (0 = all), KEYS_BATCH keys a lock hold
-- (ngx.shared.DICT's get_keys), each batch copied into the scratch's buffer (zkv_keys_into: a
-- key that does not fit there starts the next batch)
function StoreMethods._keys_list(self, max)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._keys_list(unwrap(self), max)) end
  if max == nil then max = 0 end
  if type(max) ~= "number" or not (max >= 0 and max <= 1e15) then
    return pass(CM_STORE._keys_list(cs, max))
  end
  max = floor(max)
  -- the scratch, taken (locals: the trace checks their types once)
  local cur, lens, buf = KCUR, KLENS, KBUF
  if cur == nil then cur, lens, buf = keys_scratch() else KCUR = nil end
  cur.seq, cur["end"], cur.ref, cur.started, cur.done = 0, 0, 0, 0, 0
  local t, n = nil, 0
  repeat
    local want = KEYS_BATCH
    if max > 0 and max - n < want then want = max - n end
    local rc = lua_keys(cs, cur, want, buf, BUFCAP, lens, DBL1)
    local got = DBL1[0]
    if rc ~= OK then
      KCUR, KLENS, KBUF = cur, lens, buf
      return pass(CM_STORE._keys_list(cs, max))
    end
    -- a step may pass only entries that are not live keys (zkv_keys): none, and not done
    if t == nil and (got > 0 or cur.done ~= 0) then t = new_tab(got, 0) end
    local off = 0
    for i = 1, got do
      local l = lens[i - 1]
      t[n + i] = ffi_string(buf + off, l)
      off = off + l
    end
    n = n + got
  until cur.done ~= 0 or (max > 0 and n >= max)
  KCUR, KLENS, KBUF = cur, lens, buf
  return t
end

-- s:_capacity_word() -> the word of a shared segment's size and the bytes of it that are
-- not capacity (zkv_capacity_word), or nothing: a memory store, a closed driver.  The
-- word is valid until the driver is closed: the drop-in reads it only while core._closes
-- says no driver was closed since it took it.  Only the FFI front end has this method.
function StoreMethods._capacity_word(self)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return end
  local w = lua_capacity_word(cs, DBL1)
  if w == nil then return end
  return w, DBL1[0]
end

-- s:_free_space() -> free bytes (nothing when unbounded): the drop-in's free_space, one
-- result returned by the C function.  Only the FFI front end has this method.
function StoreMethods._free_space(self)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return select(2, pass(CM_STORE._space(unwrap(self)))) end
  local f = lua_free_space(cs)
  if f >= 0 then return f end
  if f == -2 then return end
  return select(2, pass(CM_STORE._space(cs)))
end

-- s:_space() -> capacity, free bytes, grows (nothing when unbounded)
function StoreMethods._space(self)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs then return pass(CM_STORE._space(unwrap(self))) end
  local rc = lua_space(cs, DBL1, DBL2, INT1)
  if rc ~= OK then return pass(CM_STORE._space(cs)) end
  if DBL1[0] == 0 then return end
  return DBL1[0], DBL2[0], INT1[0] ~= 0
end

-- s:_live() -> nothing, or "closed" (the C method raises it, and a wrong self's error)
function StoreMethods._live(self)
  local cs = type(self) == "table" and rawget(self, CS)
  if not cs or lua_live(cs) ~= OK then return pass(CM_STORE._live(unwrap(self))) end
end

-- the ngx.shared.DICT face over this object, so that its calls take the paths above (self and
-- the driver checked first, as by every method)
function StoreMethods.shdict(self)
  StoreMethods._live(self)
  return require("zeltkv.shdict").new(self)
end

local wrap_store

function StoreMethods.namespace(self, name)
  return wrap_store((CM_STORE.namespace(unwrap(self), name)))
end

-- fn(s, ...) with the object the user called it on (the C _atomic_as: the same atomic())
function StoreMethods.atomic(self, fn, ...)
  local cs = unwrap(self)
  if cs == self then return pass(CM_STORE.atomic(cs, fn, ...)) end
  return pass(CM_STORE._atomic_as(cs, self, fn, ...))
end

StoreMT.__tostring = function(self) return tostring(rawget(self, CS)) end

-- a C store -> one of ours
wrap_store = function(cs)
  return setmetatable({ [CS] = cs }, StoreMT)
end

---------------------------------------------------------------------------
-- Driver

function DriverMethods.namespace(self, name)
  return wrap_store((CM_DRIVER.namespace(unwrap(self), name)))
end

function DriverMethods.atomic(self, fn, ...)
  local cd = unwrap(self)
  if cd == self then return pass(CM_DRIVER.atomic(cd, fn, ...)) end
  return pass(CM_DRIVER._atomic_as(cd, self, fn, ...))
end

DriverMT.__tostring = function(self) return tostring(rawget(self, CD)) end

local function wrap_driver(cd)
  return setmetatable({ [CD] = cd }, DriverMT)
end

---------------------------------------------------------------------------
-- Loading

local STORE_NAMES = { "get", "set", "del", "has", "expire", "ttl", "incr", "setnx", "namespace",
                      "atomic", "keys", "namespaces", "count", "clear", "_rawget", "_rawset",
                      "_incr_num", "_expire_ms", "_ttl_coarse", "_list_push", "_list_pop",
                      "_list_len", "_space", "_capacity", "_keys_list", "_flush_all", "_flush_expired",
                      "_live" }
local DRIVER_NAMES = { "namespace", "atomic", "gc", "stats", "flush", "close" }

-- every C method we do not implement is forwarded as it is
local function forward(methods, cm, name)
  if methods[name] == nil then
    local f = cm[name]
    methods[name] = function(self, ...) return pass(f(unwrap(self), ...)) end
  end
end

local function collect(obj, names, into)
  for _, name in ipairs(names) do into[name] = obj[name] end
  -- methods the binding may have gained since this list was written, and the raw methods
  -- (registered apart: behind the public method table, as its own __index)
  local dgm = debug and debug.getmetatable
  local methods = dgm and dgm(obj)
  for _ = 1, 2 do
    methods = type(methods) == "table" and rawget(methods, "__index")
    if type(methods) ~= "table" then break end
    for name, f in pairs(methods) do
      if type(name) == "string" and type(f) == "function" and into[name] == nil then
        into[name] = f
      end
    end
    methods = dgm(methods)
  end
end

-- Checks, on a private store, every assumption the fast paths make. Returns true, or
-- false and why.
local function probe()
  local kv = core.memory({ gc_interval = 0 })
  local s = kv:namespace("zeltkv.ffi.probe")
  -- our writes and the C reads meet, and join the C atomic(): same instance, same store
  VIN.type, VIN.data, VIN.len = T_STRING, "v", 1
  if lua_set(s, "k", 1, VIN, 0, 0, nil) ~= OK or s:get("k") ~= "v" then
    kv:close(); return false, "set/get"
  end
  s:set("c", "w")
  if lua_get(s, "c", 1, 0, OUT, BUF, BUFCAP) ~= OK or OUT.type ~= T_STRING
     or ffi_string(BUF, OUT.len) ~= "w" then
    kv:close(); return false, "get"
  end
  pcall(kv.atomic, kv, function()
    lua_set(s, "k2", 2, VIN, 0, 0, nil)
    error("rollback")
  end)
  if s:get("k2") ~= nil then kv:close(); return false, "atomic" end
  -- the error metatable
  local ok, err = pcall(s.get, s, "")
  if ok or getmetatable(err) ~= ERR_MT or ERR_MT == nil then
    kv:close(); return false, "error metatable"
  end
  collect(kv, DRIVER_NAMES, CM_DRIVER)
  collect(s, STORE_NAMES, CM_STORE)
  kv:close()
  if lua_has(s, "k", 1) ~= ECLOSED then return false, "close" end
  return true
end

local ok, good, why = pcall(probe)
if not ok then return { disabled = tostring(good) } end
if not good then return { disabled = why } end
for name in pairs(CM_STORE) do forward(StoreMethods, CM_STORE, name) end
for name in pairs(CM_DRIVER) do forward(DriverMethods, CM_DRIVER, name) end

local mod = {}
for k, v in pairs(core) do mod[k] = v end
local memory, shared = core.memory, core.shared
mod.memory = function(...) return wrap_driver((memory(...))) end
mod.shared = function(...) return wrap_driver((shared(...))) end
mod._ffi = true
return { module = mod, lib = C }
