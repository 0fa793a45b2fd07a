-- spec/support/scaled.lua: a driver seen through a faster clock, for tests that move time
-- on a driver whose clock cannot be moved (redis: the server expires keys itself).
--
-- scaled(kv, f) gives a driver whose stores take ttls in "test seconds", each f real
-- seconds: ttl arguments are multiplied by f on the way in, ttl() results divided by f on
-- the way out; everything else (values, errors, bad arguments) passes through untouched.
-- scaled.advance(ms) then stands for the memory driver's _set_clock_offset(ms): it sleeps
-- until f * ms real milliseconds have passed since the last reset.
-- The spec's assertions on ttls keep their meaning, with the real clock's jitter divided
-- by f added to them; f = 0.4 turns a 10 s ttl into 4 s.

local M = { last_slack = 0 }

local huge = math.huge

-- a ttl of the test clock -> real seconds.  As on the memory driver's test clock, a
-- write happens at the clock's current time exactly: the real ttl is shortened by how
-- late the write comes after that instant (clock.late()).
local function scale_ttl(t, f, clock)
  local late = 0
  if clock and t ~= nil then late = clock.late() end
  if type(t) == "number" then
    if t > 0 and t < huge then return math.max(t * f - late, 0.001) end
    return t
  end
  if type(t) == "table" and type(t.ttl) == "number" and t.ttl > 0 and t.ttl < huge then
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    c.ttl = math.max(t.ttl * f - late, 0.001)
    return c
  end
  return t
end

function M.wrap(kv, f, clock)
  local SMT, DMT = {}, {}
  local Store, Driver = {}, {}
  SMT.__index, DMT.__index = Store, Driver
  SMT.__tostring = function(s) return tostring(rawget(s, "_s")) end
  DMT.__tostring = function(d) return tostring(rawget(d, "_d")) end

  local function us(s) return getmetatable(s) == SMT and rawget(s, "_s") or s end
  local function ud(d) return getmetatable(d) == DMT and rawget(d, "_d") or d end
  local function wrap_store(s) return setmetatable({ _s = s }, SMT) end

  for _, m in ipairs({ "get", "del", "has", "keys", "count", "clear", "namespaces", "shdict" }) do
    Store[m] = function(self, ...)
      local real = us(self)
      return real[m](real, ...)
    end
  end
  local function arg_of(self, name)
    local real = us(self)
    -- a wrong self reaches the real method, which raises its own argument error
    return real, (type(real) == "table" or type(real) == "userdata") and real[name] or kv:namespace("x")[name]
  end
  -- how long each ttl'd write took (an upper bound of how late the server applied it),
  -- per real store and key: a reading takes it off, so that it never reads long
  local took = {}
  local function key_id(real, k)
    local base = type(real) == "table" and rawget(real, "kbase") or tostring(real)
    return tostring(base) .. "\0" .. tostring(k)
  end
  -- the write m(real, k, [v,] ttl): the clock's late() is read after t0, so that t0 is no
  -- later than the instant the real ttl is counted from (the reading's upper bound needs it)
  local function timed_write(real, m, k, ttl, has_v, v)
    if ttl == nil then
      if has_v then return m(real, k, v) end
      return m(real, k)
    end
    local socket = require("socket")
    local t0 = socket.gettime()
    local st = scale_ttl(ttl, f, clock)
    local r1, r2
    if has_v then r1, r2 = m(real, k, v, st) else r1, r2 = m(real, k, st) end
    -- the slowest write of the key: the one whose ttl counts may not be the last (incr
    -- applies its ttl only when it creates the key)
    local id = key_id(real, k)
    took[id] = math.max(took[id] or 0, socket.gettime() - t0)
    return r1, r2
  end
  function Store.set(self, k, v, ttl)
    local real, m = arg_of(self, "set")
    return timed_write(real, m, k, ttl, true, v)
  end
  function Store.setnx(self, k, v, ttl)
    local real, m = arg_of(self, "setnx")
    return timed_write(real, m, k, ttl, true, v)
  end
  function Store.incr(self, k, by, ttl)
    local real, m = arg_of(self, "incr")
    return timed_write(real, m, k, ttl, true, by)
  end
  function Store.expire(self, k, ttl)
    local real, m = arg_of(self, "expire")
    return timed_write(real, m, k, ttl, false)
  end
  function Store.ttl(self, k)
    local real, m = arg_of(self, "ttl")
    -- the reading is read as of the clock's current instant, as on the memory driver's test
    -- clock: how far the real clock is past that instant when the reading is asked for
    -- (clock.late(): a busy machine's delays since the last advance) is given back.  It then
    -- errs long by how late the server applied the write (at most the write's round trip,
    -- taken off) and by rounding: the driver sends the ttl to the nearest ms (half a ms
    -- either way) and the server counts it, and the reading, from its whole-ms clock (up to
    -- 1 ms either way), so 1.5 ms, taken off too (1 ms was not enough: 0.25019 read for at
    -- most 0.25 in CI).  So it errs short by at most the write's round trip, this reading's
    -- own and 3 ms: M.last_slack, in test seconds, which a check's lower bound allows for
    -- (a loaded machine's round trips of 10 ms and more exceeded the 20 ms real that some
    -- checks leave)
    local late = clock and clock.past() or 0
    local socket = require("socket")
    local t0 = socket.gettime()
    local r = m(real, k)
    local d = socket.gettime() - t0
    if type(r) == "number" and r < huge then
      local w = clock and (took[key_id(real, k)] or 0)
                or math.max((took[key_id(real, k)] or 0) - 0.003, 0)
      M.last_slack = (w + d + 0.003) / f
      return math.max(r + late - w - 0.0015, 0.0001) / f
    end
    return r
  end
  function Store.namespace(self, name)
    local real, m = arg_of(self, "namespace")
    return wrap_store(m(real, name))
  end
  function Store.atomic(self, fn, ...)
    local real, m = arg_of(self, "atomic")
    if type(fn) ~= "function" then return m(real, fn, ...) end
    return m(real, function(_, ...) return fn(self, ...) end, ...)
  end

  for _, m in ipairs({ "gc", "stats", "flush", "close" }) do
    Driver[m] = function(self, ...)
      local real = ud(self)
      return real[m](real, ...)
    end
  end
  function Driver.namespace(self, name)
    local real = ud(self)
    return wrap_store(real.namespace(real, name))
  end
  function Driver.atomic(self, fn, ...)
    local real = ud(self)
    if type(fn) ~= "function" then return real.atomic(real, fn, ...) end
    return real.atomic(real, function(_, ...) return fn(self, ...) end, ...)
  end
  local d = setmetatable({ _d = kv }, DMT)
  return d
end

-- the scaled clock: time 0 is the first write with a ttl after reset() (on the memory
-- driver's test clock every write before the first advance happens at 0); advance(ms)
-- sleeps until f * ms real ms after time 0, plus `slack` (default 3 ms) so that a key
-- "1 ms past its expiry" is past it for the server too; late() is how far the real
-- clock is past the instant the test clock shows.
function M.clock(f, slack)
  slack = slack or 0.003
  local socket = require("socket")
  local t0, at, started = socket.gettime(), 0, false
  local c = { slack = slack }
  function c.reset() t0, at, started = socket.gettime(), 0, false end
  function c.late()
    if not started then t0, started = socket.gettime(), true end
    return socket.gettime() - (t0 + at * f / 1000)
  end
  -- late() without starting the clock: 0 before the first write with a ttl
  function c.past()
    return started and math.max(socket.gettime() - (t0 + at * f / 1000), 0) or 0
  end
  function c.advance(ms)
    if ms <= 0 then return c.reset() end
    started = true
    at = ms
    local wait = t0 + ms * f / 1000 + slack - socket.gettime()
    if wait > 0 then socket.sleep(wait) end
  end
  return c
end

return M
