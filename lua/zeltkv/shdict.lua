-- zeltkv.shdict: the ngx.shared.DICT face of a zeltkv store.
--
--   local dict = store:shdict()                       -- or require("zeltkv.shdict").new(store)
--   local ok, err, forcible = dict:set("k", "v", 10, 7)   -- exptime 10 s, user flags 7
--   local v, flags = dict:get("k")
--
-- The method set, argument checks, results and error strings are those of ngx.shared.DICT as
-- lua-nginx-module 0.10.x + lua-resty-core implement it (get, get_stale, set, safe_set, add,
-- safe_add, replace, delete, incr, lpush, rpush, lpop, rpop, llen, ttl, expire, flush_all,
-- flush_expired, get_keys, capacity, free_space): which errors are returned ("nil key",
-- "empty key", "key too long", "bad value type", "exists", "not found", "no memory",
-- "not a number", "value not a list", "value is a list", "attempt to add or replace nil
-- values") and which are raised ('bad "exptime" argument', 'bad "init_ttl" argument', ...).
-- The same object works in plain Lua 5.4/5.1 and in OpenResty (LuaJIT): a dict over a
-- zeltkv.shared() segment is one dict for nginx workers and for any other process.
--
-- Where we deliberately differ from ngx.shared.DICT (see examples/shdict/README.md):
--   * ttl() of an expired item that is not freed yet is nil, "not found" (shdict: a negative
--     number), and expire() of such an item is nil, "not found" (shdict brings it back);
--   * a set() that fails with "no memory" leaves the old value in place (shdict has removed
--     it already when the new value had another size);
--   * get_keys() lists keys in insertion order (shdict: least recently used first);
--   * capacity() and free_space() are the store's bytes (math.huge for an unbounded
--     zeltkv.memory() store); forcible is true only for a store opened with evict = "lru".
--
-- Built on the store's hidden raw methods (src/lua/raw.c): _rawget, _rawset,
-- _incr_num, _expire_ms, _ttl_coarse, _flush_all, _flush_expired, _space, _capacity (a
-- shared segment only), _list_push, _list_pop,
-- _list_len, _keys_list, and on del of the store.  Lists are values of type
-- ZKV_T_LIST whose items the engine links (src/deque.c): a push or a pop costs the same at any
-- length, as in shdict.

local type, tostring, tonumber, select, error, setmetatable, getmetatable, rawget =
  type, tostring, tonumber, select, error, setmetatable, getmetatable, rawget
local floor, ceil, huge = math.floor, math.ceil, math.huge
local math_type, tointeger = math.type, math.tointeger
local fmt = string.format

local M = { _VERSION = "0.1.0" }

-- enum zkv_type, enum zkv_rc and ZKV_SET_* of include/zeltkv.h, as the C binding exports them
local K = require("zeltkv.core")._const
require("zeltkv.core")._own()   -- a zeltkv error raised through here names the user's line
local T_STRING, T_INT, T_FLOAT, T_BOOL, T_LIST = K.T_STRING, K.T_INT, K.T_FLOAT, K.T_BOOL, K.T_LIST
local OK, NOTFOUND, EXISTS, EFULL, ENOMEM = K.OK, K.NOTFOUND, K.EXISTS, K.EFULL, K.ENOMEM
local ETYPE = K.ETYPE
local SET_NX, SET_XX, SET_NOEVICT = K.SET_NX, K.SET_XX, K.SET_NOEVICT
-- every write counts its exptime from the coarse clock, as shdict counts from nginx's cached
-- time (and _expire_ms, _incr_num do): ttl(), read from that clock too, never exceeds it.
-- An exptime under half a second counts from the precise clock (the engine decides), else a
-- ttl shorter than the coarse clock's lag would leave the key dead on arrival
local SET_COARSE = K.SET_COARSE

local MAX_KEY = K.MAX_KEY
local LIMIT = 9007199254740992          -- 2^53: integers exact in a double
local MAX_MS = K.MAX_TTL_MS             -- ~126,000 years: "forever", and no overflow
local NEG0 = -1 / huge                  -- -0.0 (a literal -0.0 is 0 in Lua 5.1)
local NAN = 0 / 0

-- The methods, in the metatable every dict shares, open as ngx.shared.DICT's is
-- (getmetatable(dict).__index == getmetatable(dict)): code that wraps a method for every dict
-- (`getmetatable(dict).flush_expired = function(self, ...) ... end`, as test suites and
-- monitoring do) works unchanged.  A dict is a table { s = store } with this metatable.
local Dict = {}
Dict.__index = Dict

---------------------------------------------------------------------------------------------
-- helpers

-- the object's fields, or the error shdict raises for a call on something else
local function zone(self)
  if type(self) ~= "table" or getmetatable(self) ~= Dict then
    error('bad "zone" argument', 3)
  end
  return self
end

-- A dict over a closed driver is "closed" for every call, as its store is (docs/reference.md,
-- kv:close()): a call that reaches the store gets that error from it; one that would be
-- answered here without the store (an argument refused, with a result or an error, and the
-- capacity kept) asks the store first.  Only there, so the calls that reach the store pay
-- nothing for it.  Not for a call on something that is not a dict: zone() comes first.
local function live(s)
  local f = s._live
  if f then f(s) end
end

-- a key as resty.core's FFI methods take it: nil and bad lengths are returned errors, any
-- other value goes through tostring().  A value whose tostring() may run code (a table,
-- userdata, cdata: __tostring, which may raise) is looked at after the store (s), as every
-- argument is when the driver is closed
local function key_of(key, s)
  if key == nil then return nil, "nil key" end
  local t = type(key)
  if t ~= "string" then
    if t ~= "number" then live(s) end
    key = tostring(key)
  end
  local n = #key
  if n == 0 then return nil, "empty key" end
  if n > MAX_KEY then return nil, "key too long" end
  return key
end

-- a key as the C methods (lists, lua_State API) take it: luaL_checklstring
local function ckey_of(key, name, s)
  if key == nil then live(s) return nil, "nil key" end
  local t = type(key)
  if t == "number" then
    key = tostring(key)
  elseif t ~= "string" then
    live(s)
    error(fmt("bad argument #1 to '%s' (string expected, got %s)", name, t), 3)
  end
  local n = #key
  if n == 0 then live(s) return nil, "empty key" end
  if n > MAX_KEY then live(s) return nil, "key too long" end
  return key
end

local function arity(n, want, name, s)
  if n ~= want then
    live(s)
    error(fmt("expecting %d arguments, but only seen %d", want + 1, n + 1), 3)
  end
end

-- seconds -> whole milliseconds as resty.core hands them to C (exptime * 1000 converted to a
-- C long: truncated; NaN, +-inf and overflow become LONG_MIN, i.e. "no expiry"); <= 0 is no
-- expiry
local function ms_of(sec)
  local ms = sec * 1000.0
  if ms ~= ms or ms >= 9.2233720368547758e18 or ms < -9.2233720368547758e18 then return 0 end
  ms = floor(ms)                         -- sec >= 0 here, or the result is <= 0 anyway
  if ms <= 0 then return 0 end
  if ms > MAX_MS then ms = MAX_MS end
  return ms
end

-- user flags as LuaJIT's FFI turns a Lua value into a C int (nil/false are 0 before that)
local function flags_of(f, s)
  if not f then return 0 end
  if f == true then return 1 end
  if type(f) ~= "number" then
    live(s)
    error(fmt("bad argument #5 to 'set' (cannot convert '%s' to 'int')", type(f)), 3)
  end
  if f ~= f or f >= 2147483648 or f <= -2147483649 then return -2147483648 end
  if f >= 0 then f = floor(f) else f = ceil(f) end
  return f
end

local function int(x)   -- a Lua 5.3+ integer when the number is integral
  if tointeger then return tointeger(x) or x end
  return x
end

-- stored flags (uint32 in the engine) -> the signed int shdict returns
local function flags_out(f)
  if f >= 2147483648 then f = f - 4294967296 end
  return int(f)
end

-- a number -> engine type.  Integral values within 2^53 are ZKV_T_INT (so that Lua 5.4
-- reads an integer back and incr keeps it exact); the others ZKV_T_FLOAT.  On Lua 5.4 a float
-- stays a float.
local function num_type(x)
  if math_type then
    if math_type(x) == "integer" then
      if x >= -LIMIT and x <= LIMIT then return T_INT end
      return T_FLOAT, x + 0.0
    end
    return T_FLOAT
  end
  if x == floor(x) and x >= -LIMIT and x <= LIMIT and not (x == 0 and 1 / x < 0) then
    return T_INT
  end
  return T_FLOAT
end

local function raise_rc(rc, what)
  error(fmt("zeltkv.shdict: %s failed (engine code %s)", what, tostring(rc)), 3)
end

---------------------------------------------------------------------------------------------
-- list items: the engine links a list's items (zkv_list_push / _pop / _len); an item is a
-- tag byte (s string, i integer in decimal, f float in %.17g / nan / inf / -inf) and its
-- payload, the tags of the list encoding of include/zeltkv.h.  Host independent: a list
-- pushed by LuaJIT in nginx pops the same in Lua 5.4.

local function float_str(x)
  if x ~= x then return "nan" end
  if x == huge then return "inf" end
  if x == -huge then return "-inf" end
  return fmt("%.17g", x)
end

-- a value -> its tag and payload
local function encode_item(v)
  if type(v) == "string" then return "s", v end
  if num_type(v) == T_INT then return "i", fmt("%d", v) end
  return "f", float_str(v)
end

local function decode_item(tag, p)
  if tag == "s" then return p end
  if tag == "i" then return tonumber(p) end
  if p == "nan" then return NAN end
  if p == "inf" then return huge end
  if p == "-inf" then return -huge end
  if p == "-0" then return NEG0 end
  local n = tonumber(p)
  if math_type and math_type(n) == "integer" then n = n + 0.0 end
  return n
end

---------------------------------------------------------------------------------------------
-- constructor

--- new(store) -> dict.  `store` is a zeltkv store (a namespace); the dict sees exactly its
-- keys.
function M.new(store)
  if type(store) ~= "userdata" and type(store) ~= "table" then
    error("zeltkv.shdict.new: a zeltkv store expected, got " .. type(store), 2)
  end
  if type(store._rawget) ~= "function" then
    error("zeltkv.shdict.new: a zeltkv store expected (no raw access methods)", 2)
  end
  return setmetatable({ s = store }, Dict)
end

---------------------------------------------------------------------------------------------
-- reading

function Dict.get(self, key)
  local s = zone(self).s
  local k, err = key_of(key, s)
  if not k then live(s) return nil, err end
  local t, v, f = s:_rawget(k, false)
  if t == nil then return nil end
  if t == T_LIST then return nil, "value is a list" end
  if t ~= T_STRING and t ~= T_INT and t ~= T_FLOAT and t ~= T_BOOL then
    return nil, "unsupported value type"
  end
  if f ~= 0 then return v, flags_out(f) end
  return v
end

function Dict.get_stale(self, key)
  local s = zone(self).s
  local k, err = key_of(key, s)
  if not k then live(s) return nil, err end
  local t, v, f, stale = s:_rawget(k, true)
  if t == nil then return nil end
  if t == T_LIST then return nil, "value is a list" end
  if t ~= T_STRING and t ~= T_INT and t ~= T_FLOAT and t ~= T_BOOL then
    return nil, "unsupported value type"
  end
  if f ~= 0 then return v, flags_out(f), stale end
  return v, nil, stale
end

---------------------------------------------------------------------------------------------
-- writing

local function store_op(self, setflags, key, value, exptime, flags)
  local s = zone(self).s
  if not exptime then
    exptime = 0
  elseif type(exptime) ~= "number" or exptime < 0 then
    live(s)   -- (a non-number: the compare below raises, as shdict's does)
    if exptime < 0 then error('bad "exptime" argument', 3) end
  end
  local k, err = key_of(key, s)
  if not k then live(s) return nil, err end
  local vt, t = type(value), nil
  if vt == "string" then
    t = T_STRING
  elseif vt == "number" then
    local conv
    t, conv = num_type(value)
    if conv then value = conv end
  elseif value == nil then
    t = nil
  elseif vt == "boolean" then
    t = T_BOOL
  else
    live(s)
    return nil, "bad value type"
  end
  local uf = flags_of(flags, s) % 4294967296
  if t == nil then
    if setflags % 4 ~= 0 then   -- add / replace
      live(s)
      return false, "attempt to add or replace nil values", false
    end
    s:del(k)
    return true, nil, false
  end
  local rc, forcible = s:_rawset(k, t, value, uf, ms_of(exptime), setflags + SET_COARSE)
  if rc == OK then return true, nil, forcible end
  if rc == EXISTS then return false, "exists", false end
  if rc == NOTFOUND then return false, "not found", false end
  if rc == EFULL or rc == ENOMEM then return false, "no memory", forcible end
  raise_rc(rc, "set")
end

function Dict.set(self, key, value, exptime, flags)
  return store_op(self, 0, key, value, exptime, flags)
end

function Dict.safe_set(self, key, value, exptime, flags)
  return store_op(self, SET_NOEVICT, key, value, exptime, flags)
end

function Dict.add(self, key, value, exptime, flags)
  return store_op(self, SET_NX, key, value, exptime, flags)
end

function Dict.safe_add(self, key, value, exptime, flags)
  return store_op(self, SET_NX + SET_NOEVICT, key, value, exptime, flags)
end

function Dict.replace(self, key, value, exptime, flags)
  return store_op(self, SET_XX, key, value, exptime, flags)
end

function Dict.delete(self, key)   -- set(key, nil) without the checks of a value
  local s = zone(self).s
  local k, err = key_of(key, s)
  if not k then live(s) return nil, err end
  s:del(k)
  return true, nil, false
end

function Dict.incr(self, key, value, init, init_ttl)
  local s = zone(self).s
  local k, err = key_of(key, s)
  if not k then live(s) return nil, err end
  if type(value) ~= "number" then value = tonumber(value) end
  if value == nil then live(s) error("bad argument #2 to 'incr' (cannot convert 'nil' to 'double')", 2) end
  if init then
    local typ = type(init)
    if typ ~= "number" then
      init = tonumber(init)
      if not init then live(s) error("bad init arg: number expected, got " .. typ, 2) end
    end
  end
  if init_ttl ~= nil then
    local typ = type(init_ttl)
    if typ ~= "number" then
      init_ttl = tonumber(init_ttl)
      if not init_ttl then live(s) error("bad init_ttl arg: number expected, got " .. typ, 2) end
    end
    if init_ttl < 0 then live(s) error('bad "init_ttl" argument', 2) end
    if not init then live(s) error('must provide "init" when providing "init_ttl"', 2) end
  else
    init_ttl = 0
  end
  local rc, res, forcible = s:_incr_num(k, value, init and true or false, init or 0,
                                        ms_of(init_ttl))
  if rc == OK then
    if res == floor(res) and res >= -LIMIT and res <= LIMIT then res = int(res) end
    if not init then return res end
    return res, nil, forcible == true
  end
  if rc == NOTFOUND then return nil, "not found" end
  if rc == ETYPE then return nil, "not a number" end
  if rc == EFULL or rc == ENOMEM then return nil, "no memory" end
  raise_rc(rc, "incr")
end

---------------------------------------------------------------------------------------------
-- lists

-- the engine links the item in or takes it out (zkv_list_push / zkv_list_pop, src/deque.c):
-- one lock hold, whatever the list's length.  ETYPE: the value is not a list

local function push(self, name, left, n, key, value)
  local s = zone(self).s
  arity(n, 2, name, s)
  local k, err = ckey_of(key, name, s)
  if not k then return nil, err end
  local vt = type(value)
  if vt ~= "string" and vt ~= "number" then live(s) return nil, "bad value type" end
  local tag, payload = encode_item(value)
  local rc, count = s:_list_push(k, left, tag, payload)
  if rc == OK then return int(count) end
  if rc == ETYPE then return nil, "value not a list" end
  if rc == EFULL or rc == ENOMEM then return false, "no memory" end
  raise_rc(rc, name)
end

local function pop(self, name, left, n, key)
  local s = zone(self).s
  arity(n, 1, name, s)
  local k, err = ckey_of(key, name, s)
  if not k then return nil, err end
  local rc, tag, p = s:_list_pop(k, left)
  if rc == OK then return decode_item(tag, p) end
  if rc == NOTFOUND then return nil end
  if rc == ETYPE then return nil, "value not a list" end
  if rc == EFULL or rc == ENOMEM then return nil, "no memory" end
  raise_rc(rc, name)
end

function Dict.lpush(self, ...) return push(self, "lpush", true, select("#", ...), ...) end
function Dict.rpush(self, ...) return push(self, "rpush", false, select("#", ...), ...) end
function Dict.lpop(self, ...) return pop(self, "lpop", true, select("#", ...), ...) end
function Dict.rpop(self, ...) return pop(self, "rpop", false, select("#", ...), ...) end

function Dict.llen(self, ...)
  local s = zone(self).s
  arity(select("#", ...), 1, "llen", s)
  local k, err = ckey_of((...), "llen", s)
  if not k then return nil, err end
  local rc, count = s:_list_len(k)
  if rc == OK then return int(count) end
  if rc == NOTFOUND then return 0 end
  if rc == ETYPE then return nil, "value not a list" end
  raise_rc(rc, "llen")
end

---------------------------------------------------------------------------------------------
-- expiry

function Dict.ttl(self, key)
  local s = zone(self).s
  local k, err = key_of(key, s)
  if not k then live(s) return nil, err end
  local left = s:_ttl_coarse(k)
  if left == nil then return nil, "not found" end
  if left == huge then return 0 end
  return left
end

function Dict.expire(self, key, exptime)
  local s = zone(self).s
  if not exptime then live(s) error('bad "exptime" argument', 2) end
  local k, err = key_of(key, s)
  if not k then live(s) return nil, err end
  if type(exptime) ~= "number" then live(s) end
  local ms = ms_of(exptime)     -- exptime * 1000 (raises for a non-number, as shdict)
  local rc = s:_expire_ms(k, ms)
  if rc == OK then return true end
  if rc == NOTFOUND then return nil, "not found" end
  raise_rc(rc, "expire")
end

-- like shdict, items only become expired: get_stale() still sees them until they are
-- freed (flush_expired(), or a sweep)
function Dict.flush_all(self)
  zone(self).s:_flush_all()
end

-- luaL_checkint: a number or a numeric string, truncated
local function check_int(v, name, s)
  local n = tonumber(v)
  if type(v) ~= "number" and (type(v) ~= "string" or not n) then
    live(s)
    error(fmt("bad argument #1 to '%s' (number expected, got %s)", name,
              v == nil and "no value" or type(v)), 3)
  end
  if n ~= n or n >= 2147483648 or n < -2147483648 then return -2147483648 end
  if n >= 0 then return floor(n) end
  return ceil(n)
end

function Dict.flush_expired(self, ...)
  local d = zone(self)
  local n = select("#", ...)
  if n > 1 then live(d.s) error(fmt("expecting 1 or 2 argument(s), but saw %d", n + 1), 2) end
  local max = 0
  if n == 1 then max = check_int((...), "flush_expired", d.s) end
  if max < 0 then max = 0 end
  return int(d.s:_flush_expired(max))
end

function Dict.get_keys(self, ...)
  local s = zone(self).s
  local n = select("#", ...)
  if n > 1 then live(s) error(fmt("expecting 1 or 2 argument(s), but saw %d", n + 1), 2) end
  local max = 1024
  if n == 1 then max = check_int((...), "get_keys", s) end
  if max < 0 then max = 0 end   -- as shdict: a negative count is no limit
  return s:_keys_list(max)
end

---------------------------------------------------------------------------------------------
-- sizes

-- the store's capacity and free bytes, without building a stats table
-- A memory store's capacity never changes (its max_bytes is fixed when it is opened, and an
-- unbounded store stays unbounded): asked once, and again after any driver was closed
-- (core._closes counts every close, of any driver: a table read instead of a call), so that
-- a dict over a closed driver is "closed" here too.  A shared segment's grows when any
-- process opens it with a larger size (_space says so: grows): the FFI front end gives the
-- segment's own size word (_capacity_word), read at every call while no driver was closed
-- (0.8 ns as a cached value is; a C call at every use measured 4.3 ns: shdict's is 3.5);
-- elsewhere _capacity is asked at every call.
local CLOSES = require("zeltkv.core")._closes
function Dict.capacity(self)
  local d = zone(self)
  local cap = rawget(d, "cap")
  if cap ~= nil and rawget(d, "closes") == CLOSES.n then
    local w = rawget(d, "capw")
    if w == nil then return cap end
    if w == false then return d.s:_capacity() or huge end
    return tonumber(w[0]) - rawget(d, "capbase")
  end
  local s = d.s
  local c, _, grows = s:_space()         -- raises "closed" for a closed driver
  cap = c or huge
  if not grows then
    d.cap, d.closes, d.capw = cap, CLOSES.n, nil
    return cap
  end
  local word = s._capacity_word
  local w, base
  if word then w, base = word(s) end
  if w == nil then                        -- no word (the C binding): _capacity every call
    d.cap, d.closes, d.capw = cap, CLOSES.n, false
    return cap
  end
  d.cap, d.closes, d.capw, d.capbase = cap, CLOSES.n, w, base
  return tonumber(w[0]) - base
end

-- _free_space where the front end has it (FFI: one result returned, not three stored)
function Dict.free_space(self)
  local s = zone(self).s
  local fs = s._free_space
  if fs then return fs(s) or huge end
  local _, free = s:_space()
  return free or huge
end

function Dict.__tostring(self)
  return "zeltkv.shdict (" .. tostring(self.s) .. ")"
end

---------------------------------------------------------------------------------------------
-- ngx.shared.NAME over zeltkv: one line per dict in init_by_lua*, for code that looks its
-- dict up by name.  See examples/shdict/README.md, "One line per dict".
--
-- Lifecycle (keep = "reload", the default, as a lua_shared_dict): the dict is empty when
-- nginx starts and keeps its keys across `nginx -s reload` (HUP) and binary upgrades (USR2).
-- init_by_lua* runs in the process that becomes the master (before it daemonizes, at
-- start), again in the master at each reload, in the new master of a binary upgrade while
-- the old one still runs, and never for `nginx -t` or `nginx -s`.  To tell these apart,
-- zone() keeps a shared flock(2) on a lock file beside the segment, on a descriptor that the
-- master, its workers (fork) and a daemonized master (fork) all hold.  If zone() can take
-- the lock exclusively, no process of this nginx runs any more: nginx is starting (after a
-- stop or a crash), and the segment is removed and made anew, empty (a process outside
-- nginx that still has the old one open keeps it to itself).  If it cannot, a live master
-- or worker holds it: a reload, an upgrade, or a second nginx on the same configuration
-- that will fail to bind: the keys stay.  keep = "restart" keeps the keys across restarts
-- too.  The descriptor of this process is remembered in its environment, so that a reload
-- (a new Lua state in the same master) does not open another one.
--
-- The segment's name is made from the nginx prefix and configuration file (read from
-- ngx_argv, the arguments nginx saved at start, with LuaJIT's FFI) and the dict's name, so
-- two nginx instances on one machine, or two test runs, never share a dict unless they
-- name the same segment (opts.segment).

local SEG_OK = "^[%w._-]+$"
local O_RDWR, O_CREAT, O_CLOEXEC = 2, 64, 524288    -- Linux (x86-64, arm64, ...)
local LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8

local zffi                               -- LuaJIT's ffi, with the declarations below
local function ffi_lib()
  if zffi ~= nil then return zffi end
  local ok, ffi = pcall(require, "ffi")
  if not ok then zffi = false; return false end
  for _, decl in ipairs({ "extern char **ngx_argv;", "extern int ngx_argc;",
                          "int open(const char *path, int flags, int mode);",
                          "int flock(int fd, int op);", "int close(int fd);",
                          "int setenv(const char *name, const char *value, int overwrite);",
                          "long readlink(const char *path, char *buf, unsigned long size);" }) do
    pcall(ffi.cdef, decl)
  end
  zffi = ffi
  return ffi
end

-- where zeltkv.shared() puts segment `seg` (the rule of src/arena.c, seg_path)
local function segment_file(seg)
  local dir = os.getenv("ZELTKV_SHM_DIR")
  if not dir or dir == "" then dir = "/dev/shm" end
  return dir .. "/zeltkv-" .. seg
end

-- Takes this process's shared lock on the segment's lock file.  Returns true when another
-- process, or this one before a reload, already held it (this nginx runs), false when
-- nobody did (nginx starts), or nil and why.
local function hold_lock(seg)
  local ffi = ffi_lib()
  if not ffi then return nil, "no LuaJIT FFI" end
  local C = ffi.C
  local path = segment_file(seg) .. ".lock"
  local var = "ZELTKV_SHDICT_LOCK_" .. ngx.md5(path):sub(1, 16)
  local fd = tonumber(os.getenv(var) or "")
  if fd then   -- this process took it before (a reload): is it still that file?
    local buf = ffi.new("char[4096]")
    local n = tonumber(C.readlink("/proc/self/fd/" .. fd, buf, 4096))
    if n > 0 and ffi.string(buf, n) == path then return true end
  end
  fd = C.open(path, O_RDWR + O_CREAT + O_CLOEXEC, 384)   -- 0600
  if fd < 0 then return nil, "cannot open " .. path .. " (errno " .. ffi.errno() .. ")" end
  local fresh = C.flock(fd, LOCK_EX + LOCK_NB) == 0
  if fresh then C.flock(fd, LOCK_UN) end
  if C.flock(fd, LOCK_SH) ~= 0 then
    C.close(fd)
    return nil, "flock " .. path .. " (errno " .. ffi.errno() .. ")"
  end
  C.setenv(var, tostring(fd), 1)
  return not fresh
end

-- the configuration file this nginx was started with (its -c, else the built-in path),
-- absolute; nil and why when it cannot be told
local function conf_path(prefix)
  local ffi = ffi_lib()
  if not ffi then return nil, "no LuaJIT FFI" end
  local got, argv, argc = pcall(function() return ffi.C.ngx_argv, ffi.C.ngx_argc end)
  if not got or argv == nil then return nil, "nginx's ngx_argv is not visible" end
  local conf
  local i = 1
  while i < argc do               -- nginx's own option syntax: -c FILE, -cFILE, -tc FILE
    local a = ffi.string(argv[i])
    if a:sub(1, 1) == "-" then
      for j = 2, #a do
        local o = a:sub(j, j)
        if o == "c" or o == "p" or o == "g" or o == "s" or o == "e" then
          local v = a:sub(j + 1)
          if v == "" and i + 1 < argc then i = i + 1; v = ffi.string(argv[i]) end
          if o == "c" then conf = v end
          break
        end
      end
    end
    i = i + 1
  end
  conf = conf or (ngx.config.nginx_configure():match("%-%-conf%-path=(%S+)")) or "conf/nginx.conf"
  if conf:sub(1, 1) ~= "/" then conf = prefix .. conf end
  return conf
end

local function segment_name(name)
  local prefix = ngx.config.prefix()
  local conf, why = conf_path(prefix)
  if not conf then return nil, why end
  local tag = ngx.md5(prefix .. "\0" .. conf):sub(1, 12)
  if not (#name <= 100 and name:match(SEG_OK)) then name = "x" .. ngx.md5(name):sub(1, 16) end
  return "ngx-" .. tag .. "-" .. name
end

-- The new master of a binary upgrade (nginx gives it the listening sockets in $NGINX) has
-- only the `env` variables of nginx.conf: without `env ZELTKV_SHM_DIR;` it looks for the
-- dicts in /dev/shm while the old master has them elsewhere, and they start empty.  It
-- cannot tell that from a dict the old configuration did not have: it says so in the log.
local function upgrade_check(name, seg, what)
  if os.getenv("NGINX") then
    ngx.log(ngx.WARN, "zeltkv.shdict.zone: ", name, ": a binary upgrade, but ", what, " (",
            segment_file(seg), "): the dict starts empty (if the old master had ",
            "ZELTKV_SHM_DIR, nginx.conf needs `env ZELTKV_SHM_DIR;`)")
  end
end

local ZONE_OPTS = { keep = true, evict = true, segment = true, mode = true, lock_timeout = true,
                    gc_interval = true }

--- zone(name, size [, opts]) -> dict, in init_by_lua*: makes ngx.shared[name] a zeltkv dict
-- over a shared segment of `size` (bytes or "10m"), as `lua_shared_dict name size;` would.
-- opts: keep = "reload" (default: empty at each nginx start, kept across reloads and binary
-- upgrades) or "restart" (kept across restarts too); evict = "lru" (default) or "none";
-- segment = the segment's name (default: made from the nginx prefix, configuration file and
-- `name`); mode, lock_timeout, gc_interval as for zeltkv.shared.
function M.zone(name, size, opts)
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" or type(ngx.get_phase) ~= "function" then
    error("zeltkv.shdict.zone: runs inside nginx, in init_by_lua*", 2)
  end
  if ngx.get_phase() ~= "init" then
    error("zeltkv.shdict.zone: call it in init_by_lua* (here: " .. ngx.get_phase() .. ")", 2)
  end
  if type(name) ~= "string" or name == "" then
    error("zeltkv.shdict.zone: the dict's name must be a non-empty string", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("zeltkv.shdict.zone: opts must be a table", 2) end
  for k in pairs(opts) do
    if not ZONE_OPTS[k] then error("zeltkv.shdict.zone: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local keep = opts.keep or "reload"
  if keep ~= "reload" and keep ~= "restart" then
    error('zeltkv.shdict.zone: keep must be "reload" or "restart"', 2)
  end
  local old = rawget(ngx.shared, name)
  if old ~= nil and getmetatable(old) ~= Dict then
    error("zeltkv.shdict.zone: ngx.shared." .. name .. " is a lua_shared_dict already", 2)
  end
  local seg, why = opts.segment, nil
  if seg == nil then
    seg, why = segment_name(name)
    if not seg then error("zeltkv.shdict.zone: " .. why .. "; name the segment (opts.segment)", 2) end
  end
  local zeltkv = require("zeltkv")
  local sopts = { size = size, evict = opts.evict or "lru", mode = opts.mode,
                  lock_timeout = opts.lock_timeout, gc_interval = opts.gc_interval }
  if keep == "reload" then
    local running
    running, why = hold_lock(seg)
    if running == nil then
      error("zeltkv.shdict.zone: cannot tell a restart from a reload (" .. why ..
            '); keep = "restart" keeps the keys across restarts', 2)
    end
    -- no process of this nginx runs: it starts, and a lua_shared_dict starts empty
    if not running then
      upgrade_check(name, seg, "no running nginx holds its lock")
      zeltkv.unlink(seg)
    end
  elseif os.getenv("NGINX") then
    local f = io.open(segment_file(seg), "rb")
    if f then f:close() else upgrade_check(name, seg, "its segment does not exist") end
  end
  local kv = zeltkv.shared(seg, sopts)
  local dict = kv:namespace(name):shdict()
  ngx.shared[name] = dict
  return dict
end

return M
