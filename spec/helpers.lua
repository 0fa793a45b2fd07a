-- spec/helpers.lua: shared helpers for zeltkv's busted specs.
--
-- The contract under test is /work/shared/API.md. Two of its promises are checked
-- everywhere, so they live here:
--   * every failure raises a table error { code =, message = } whose tostring is
--     "zeltkv: CODE: message"                      -> H.assert_error_code
--   * "a failed call changes nothing in the store" -> H.snapshot / H.assert_unchanged
-- The specs are written to run on Lua 5.4 (primary), Lua 5.1 and LuaJIT: no 5.3+ syntax.

local assert = require("luassert")
local zeltkv = require("zeltkv")

local H = {}

H.zeltkv = zeltkv
H.unpack = table.unpack or unpack
H.has_int = math.type ~= nil                 -- Lua 5.3+: integer/float subtypes
H.is_jit = rawget(_G, "jit") ~= nil
-- incr's range: int64 where Lua has integers, +-2^53 where numbers are doubles.
H.MAXINT = math.maxinteger or 2 ^ 53
H.MININT = math.mininteger or -(2 ^ 53)
H.NAN = 0 / 0
H.INF = math.huge

H.CODES = { "INVALID_TTL", "EMPTY_NAMESPACE", "INVALID_VALUE", "INVALID_KEY",
            "STORE_OPERATION_FAILED" }

---------------------------------------------------------------------------
-- Errors

-- Calls fn(...) and returns the error it raises; fails the test when it does not raise.
function H.catch(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected the call to raise an error, but it returned normally")
  return err
end

local function describe_err(err)
  if type(err) == "table" then
    return ("table {code=%s, message=%s}"):format(tostring(rawget(err, "code")),
                                                  tostring(rawget(err, "message")))
  end
  return type(err) .. " " .. tostring(err)
end
H.describe_err = describe_err

-- Checks that err is a zeltkv error object with the given code.
function H.check_error(code, err)
  assert(zeltkv.errors[code] == code, "unknown zeltkv error code in the spec: " .. code)
  assert(type(err) == "table",
         ("expected a zeltkv error table with code %s, got %s"):format(code, describe_err(err)))
  assert(err.code == code,
         ("expected error code %s, got %s"):format(code, describe_err(err)))
  assert(type(err.message) == "string" and #err.message > 0,
         "error.message must be a non-empty string, got " .. describe_err(err))
  assert.are.equal("zeltkv: " .. code .. ": " .. err.message, tostring(err))
  return err
end

-- pcalls fn(...), checks that it raised a zeltkv error with `code`; returns the error.
function H.assert_error_code(code, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, ("expected error %s, but the call succeeded (returned %s)"):format(
    code, tostring(err)))
  return H.check_error(code, err)
end

-- pcalls fn(...), checks that it raised a plain Lua argument error (a string, not a
-- zeltkv error table), as luaL_checkudata does for a wrong self.
function H.assert_arg_error(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected a Lua argument error, but the call succeeded")
  assert(type(err) == "string",
         "expected a plain Lua argument error (a string), got " .. describe_err(err))
  assert(err:find("bad argument", 1, true) or err:find("bad self", 1, true),
         "expected a 'bad argument' error, got: " .. err)
  return err
end

---------------------------------------------------------------------------
-- Values

-- A canonical, type-exact rendering of a value: integers and floats differ, table keys
-- are sorted, strings are quoted byte for byte. Used to compare whole store states.
local function dump(v, seen)
  local t = type(v)
  if t == "number" then
    if v ~= v then return "nan" end
    if H.has_int and math.type(v) == "integer" then return ("i:%d"):format(v) end
    return ("f:%.17g"):format(v)
  elseif t == "string" then
    return ("%q"):format(v)
  elseif t == "table" then
    seen = seen or {}
    if seen[v] then return "<cycle>" end
    seen[v] = true
    local items = {}
    for k, x in pairs(v) do
      items[#items + 1] = "[" .. dump(k, seen) .. "]=" .. dump(x, seen)
    end
    table.sort(items)
    seen[v] = nil
    return "{" .. table.concat(items, ",") .. "}"
  else
    return t .. ":" .. tostring(v)
  end
end
H.dump = dump

-- Deep equality as the API promises it for a value read back: top-level numbers keep
-- their subtype (Lua 5.3+), numbers inside tables compare with ==, strings are exact.
function H.assert_round_trip(expected, got, what)
  what = what or "value"
  if type(expected) == "number" and H.has_int then
    assert.are.equal(math.type(expected), math.type(got),
                     what .. ": number subtype changed")
  end
  if type(expected) == "table" then
    assert.are.equal("table", type(got), what .. ": expected a table")
    assert.are.same(expected, got, what .. ": table changed")
  else
    assert.are.equal(expected, got, what .. ": value changed")
  end
end

-- on_gc(f): an object whose finalizer calls f (tables take __gc from 5.2 on, userdata
-- everywhere; newproxy is Lua 5.1's and LuaJIT's)
function H.on_gc(f)
  local newproxy = rawget(_G, "newproxy")
  if newproxy then
    local p = newproxy(true)
    getmetatable(p).__gc = f
    return p
  end
  return setmetatable({}, { __gc = f })
end

-- nest(n): n tables nested in each other ({} is 1, {{}} is 2, ...).
function H.nest(n)
  local t = {}
  for _ = 2, n do t = { t } end
  return t
end

---------------------------------------------------------------------------
-- Store state

-- Every key, value and ttl presence of the given stores (plus the driver's key count
-- when a driver is given), as one string. ttl presence, not the seconds left, so that
-- the clock moving between two readings is not a change.
function H.state(stores, kv)
  local lines = {}
  for i, s in ipairs(stores) do
    local keys = {}
    for k in s:keys() do keys[#keys + 1] = k end
    table.sort(keys)
    lines[#lines + 1] = ("store #%d: count=%s, %d keys"):format(i, tostring(s:count()), #keys)
    for _, k in ipairs(keys) do
      local ttl = s:ttl(k)
      local ttl_s = (ttl == nil and " (ttl nil!)") or (ttl == math.huge and "") or " (ttl)"
      lines[#lines + 1] = ("  %s = %s%s"):format(dump(k), dump(s:get(k)), ttl_s)
    end
  end
  if kv then
    lines[#lines + 1] = "driver stats.keys=" .. tostring(kv:stats().keys)
  end
  return table.concat(lines, "\n")
end

-- snapshot(stores [, kv]) records the state of the namespaces a test uses.
function H.snapshot(stores, kv)
  return { stores = stores, kv = kv, state = H.state(stores, kv) }
end

function H.assert_unchanged(snap, msg)
  local now = H.state(snap.stores, snap.kv)
  assert.are.equal(snap.state, now, msg or "the store changed after a failed call")
end

-- Fills a driver with a varied set of keys in three namespaces (one nested) and returns
-- the stores { a, a/b, c }. Keys of store a used by the specs:
--   str   "hello\0world"       int  42              float 1.5
--   bool  false                tbl  a nested table  ttl   "expiring" (ttl 3600)
--   counter 5                  max  H.MAXINT        min   H.MININT
function H.seed(kv)
  local a = kv:namespace("seed_a")
  local b = a:namespace("seed_b")
  local c = kv:namespace("seed_c")
  a:set("str", "hello\0world")
  a:set("int", 42)
  a:set("float", 1.5)
  a:set("bool", false)
  a:set("tbl", { name = "ada", roles = { "admin", "dev" }, n = 3, empty = {} })
  a:set("ttl", "expiring", 3600)
  a:incr("counter", 5)
  a:set("max", H.MAXINT)
  a:set("min", H.MININT)
  b:set("child", "of a")
  b:set("str", "same key, other namespace")
  c:set("k", "v")
  c:set(7, { 1, 2, 3 })
  return { a, b, c }
end

-- Builds a key of n bytes.
function H.key_of(n, byte)
  return string.rep(byte or "k", n)
end

-- A fresh shared-segment name (only A-Z a-z 0-9 . _ -).
local name_counter = 0
function H.segment_name(tag)
  name_counter = name_counter + 1
  local addr = tostring({}):match("0x(%x+)") or tostring(math.random(1, 1e9))
  return ("zeltkv-spec-%s-%d-%s-%d"):format(tag or "t", os.time(), addr, name_counter)
end

-- The Lua interpreter running the specs (for child processes): $ZELTKV_SPEC_LUA, else
-- the lowest index of the global `arg` (busted keeps the interpreter's argv there).
function H.interpreter()
  local env = os.getenv("ZELTKV_SPEC_LUA")
  if env and env ~= "" then return env end
  local a, lo = rawget(_G, "arg"), 0
  while type(a) == "table" and a[lo - 1] ~= nil do lo = lo - 1 end
  if lo < 0 then return a[lo] end
  return (rawget(_G, "jit") and "luajit") or ("lua" .. _VERSION:match("%d+%.%d+"))
end

-- A string quoted for the shell.
function H.shq(s)
  return "'" .. (tostring(s):gsub("'", "'\\''")) .. "'"
end

-- Runs a shell command; returns its output (stdout and stderr) and whether it exited 0.
function H.run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local status = out:match("exit=(%d+)%s*$")
  return (out:gsub("exit=%d+%s*$", "")), status == "0"
end

-- Runs the Lua source `code` in a child process of this interpreter, with this
-- package.path / package.cpath and the environment assignments in env (a string).
-- Returns its output and whether it exited 0.
function H.run_lua(code, env)
  local file = os.tmpname()
  local f = assert(io.open(file, "wb"))
  f:write(code)
  f:close()
  local out, ok = H.run(("%s LUA_PATH=%s LUA_CPATH=%s %s %s"):format(
    "env " .. (env or ""), H.shq(package.path), H.shq(package.cpath), H.interpreter(),
    H.shq(file)))
  os.remove(file)
  return out, ok, file
end

---------------------------------------------------------------------------
-- The driver under test: one contract spec for every driver
--
-- ZELTKV_DRIVER chooses what H.driver() opens (default "memory"):
--   memory         zeltkv.memory(opts)
--   shared         zeltkv.shared(<fresh name>, opts), the segment unlinked on open
--                  (it lives until the driver is closed)
--   redis          zeltkv.redis{ url = $ZELTKV_REDIS_URL } (unix:// or redis:// ...)
--   redis-cluster  zeltkv.redis{ cluster = { $ZELTKV_REDIS_CLUSTER split at "," } }
-- Every redis driver gets a fresh prefix, so each test starts on an empty store.
-- make test runs the store specs once per driver (see the Makefile's redis-test).
--
-- The few places where a driver departs from the others are marked in the specs with
-- H.except(kind, reason) and listed in docs/redis.md.

H.DRIVER = os.getenv("ZELTKV_DRIVER")
if H.DRIVER == nil or H.DRIVER == "" then H.DRIVER = "memory" end
-- "memory", "shared" or "redis" (redis-cluster is a redis)
H.KIND = H.DRIVER:match("^redis") and "redis" or H.DRIVER
H.is_redis = H.KIND == "redis"
H.is_cluster = H.DRIVER == "redis-cluster"

local prefix_counter = 0
-- H.redis_opts([opts]): the options of a fresh redis driver of the kind under test,
-- with opts added (a fresh prefix unless opts names one).
function H.redis_opts(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.url == nil and o.cluster == nil then
    if H.is_cluster then
      local nodes = {}
      for n in (os.getenv("ZELTKV_REDIS_CLUSTER") or ""):gmatch("[^,%s]+") do nodes[#nodes + 1] = n end
      assert(#nodes > 0, "ZELTKV_DRIVER=redis-cluster needs ZELTKV_REDIS_CLUSTER=host:port,...")
      o.cluster = nodes
    else
      local url = os.getenv("ZELTKV_REDIS_URL")
      assert(url and url ~= "", "ZELTKV_DRIVER=redis needs ZELTKV_REDIS_URL (unix:///path or redis://...)")
      o.url = url
    end
  end
  -- a busy machine (make test runs its suites side by side) can stall a round trip past
  -- the driver's default 1 s; the specs do not test that, the fault specs set their own
  if o.timeout == nil then o.timeout = tonumber(os.getenv("ZELTKV_REDIS_TIMEOUT")) or 5 end
  if o.prefix == nil then
    prefix_counter = prefix_counter + 1
    local addr = tostring({}):match("0x(%x+)") or tostring(math.random(1, 1e9))
    o.prefix = ("spec-%d-%s-%d"):format(os.time() % 100000, addr, prefix_counter)
  end
  return o
end

-- the keys of the redis drivers made so far are removed when the next one is made (the
-- tests close their drivers, and walks cost what the whole server holds)
local redis_used = {}
function H.redis_cleanup()
  local keep = {}
  for _, u in ipairs(redis_used) do
    if u.kv.closed then
      local o = u.opts
      local ok, kv = pcall(zeltkv.redis, { url = o.url, cluster = o.cluster, prefix = o.prefix,
                                           username = o.username, password = o.password, tls = o.tls })
      if ok then
        pcall(kv.flush, kv)
        kv:close()
      end
    else
      keep[#keep + 1] = u
    end
  end
  redis_used = keep
end

-- H.driver([opts]): a fresh, empty driver of the kind under test.
function H.driver(opts)
  if H.KIND == "memory" then return zeltkv.memory(opts) end
  if H.KIND == "shared" then
    local name = H.segment_name("drv")
    local kv = zeltkv.shared(name, opts)
    zeltkv.unlink(name)
    return kv
  end
  if H.KIND == "redis" then
    H.redis_cleanup()
    local o = H.redis_opts(opts)
    local kv = zeltkv.redis(o)
    redis_used[#redis_used + 1] = { opts = o, kv = kv }
    return kv
  end
  error("unknown ZELTKV_DRIVER: " .. H.DRIVER)
end

-- busted's it/pending live in the environment of the block that calls us, not in _G
local function caller_env(level)
  level = level + 1
  if rawget(_G, "getfenv") then
    local env = getfenv(level)   -- not a tail call: LuaJIT would drop this frame
    return env
  end
  local f = debug.getinfo(level, "f").func
  for i = 1, math.huge do
    local name, v = debug.getupvalue(f, i)
    if name == nil then break end
    if name == "_ENV" then return v end
  end
  return _G
end

-- H.except(kinds, reason)(name, fn): the test `name` runs on every driver but those of
-- `kinds` (a kind, or a list of: "memory", "shared", "redis", "redis-cluster"), where it
-- is pending with the reason: a departure of that driver, listed in its documentation.
function H.except(kinds, reason)
  local env = caller_env(2)
  if type(kinds) == "string" then kinds = { kinds } end
  for _, kind in ipairs(kinds) do
    if kind == H.KIND or kind == H.DRIVER then
      return function(name) env.pending(name .. " [not on " .. kind .. ": " .. reason .. "]") end
    end
  end
  return env.it
end

-- H.only(kind, ...)(name, fn): the test runs only on the drivers named.
function H.only(...)
  local env = caller_env(2)
  for _, kind in ipairs({ ... }) do
    if kind == H.KIND or kind == H.DRIVER then return env.it end
  end
  local kinds = table.concat({ ... }, ", ")
  return function(name) env.pending(name .. " [only on " .. kinds .. "]") end
end

-- Time.  The memory and shared drivers have a test clock (zeltkv._set_clock_offset); a
-- redis server's cannot be moved, so specs that move time use H.timed_driver(), H.advance
-- and H.reset_clock: on redis the driver is seen through a clock H.TIME_SCALE times faster
-- (spec/support/scaled.lua: ttls are scaled, advance sleeps), so a 10 s ttl lasts 4 s
-- (faster was flaky on a busy machine: some checks leave 0.05 s of test time, 20 ms real
-- here, and a write or a sleep can come 10 ms late when the machine is loaded).
H.TIME_SCALE = H.is_redis and 0.4 or 1
local scaled_clock = H.is_redis and require("support.scaled").clock(H.TIME_SCALE) or nil

function H.timed_driver(opts)
  local kv = H.driver(opts)
  if H.is_redis then
    kv:namespace("warm-up"):get("k")      -- connected before the clock starts
    return require("support.scaled").wrap(kv, H.TIME_SCALE, scaled_clock)
  end
  return kv
end

-- H.advance(ms): the clock is ms past the last reset
function H.advance(ms)
  if scaled_clock then return scaled_clock.advance(ms) end
  zeltkv._set_clock_offset(ms)
end

-- H.ttl_slack(): how far below the exact value the last ttl() reading may be, in test
-- seconds: 0 on a test clock; on redis the round trips it took (spec/support/scaled.lua)
function H.ttl_slack()
  return scaled_clock and require("support.scaled").last_slack or 0
end

function H.reset_clock()
  if scaled_clock then scaled_clock.reset() end
  if zeltkv._set_clock_offset then zeltkv._set_clock_offset(0) end
end

return H
