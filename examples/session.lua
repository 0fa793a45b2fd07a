-- session.lua: a session cache with table values and sliding expiry.
--
-- A session is a Lua table stored under its id.  Every request that uses the
-- session pushes its expiry back with expire(), so a session dies only after
-- IDLE seconds without a request.  get() returns a fresh copy: changes are kept
-- only once they are stored again (with the ttl: set without one would make
-- the session immortal).

local zeltkv = require("zeltkv")

local offset_ms = 0
local function advance(seconds)
  offset_ms = offset_ms + math.floor(seconds * 1000)
  zeltkv._set_clock_offset(offset_ms)
end

local IDLE = 30 * 60
local kv = zeltkv.memory()
local sessions = kv:namespace("sessions")

local function say(fmt, ...) print(("  t=%3dmin  " .. fmt):format(offset_ms // 60000, ...)) end

-- load(id) returns the session and slides its expiry, or nil when it is gone.
local function load(id)
  local s = sessions:get(id)
  if s then sessions:expire(id, IDLE) end
  return s
end

local function save(id, s) sessions:set(id, s, { ttl = IDLE }) end

save("sid:7f3a", { user = "ada", roles = { "admin", "dev" }, cart = {} })
say("ada logs in: session sid:7f3a, expires after %d min idle", IDLE // 60)
assert(math.abs(sessions:ttl("sid:7f3a") - IDLE) < 1)

advance(20 * 60)
local s = load("sid:7f3a")
say("request: session of %s (roles %s), ttl back to %.0f s",
  s.user, table.concat(s.roles, ","), sessions:ttl("sid:7f3a"))
assert(s.user == "ada" and s.roles[1] == "admin" and s.roles[2] == "dev")
assert(math.abs(sessions:ttl("sid:7f3a") - IDLE) < 1, "expire must reset the ttl")

-- get() gives a copy: changing it changes nothing stored until save().
s.cart[#s.cart + 1] = { sku = "book-17", qty = 1 }
assert(#load("sid:7f3a").cart == 0, "a returned table is a copy")
save("sid:7f3a", s)
say("ada adds book-17 to the cart; session saved")
assert(load("sid:7f3a").cart[1].sku == "book-17")

advance(20 * 60)
s = load("sid:7f3a")
say("40 min after login, 20 min idle: still there, cart has %d item(s)", #s.cart)
assert(s and s.cart[1].sku == "book-17" and s.cart[1].qty == 1)

advance(IDLE + 60)
s = load("sid:7f3a")
say("%d min idle: session is %s", (IDLE + 60) // 60, s and "alive" or "gone")
assert(s == nil and sessions:has("sid:7f3a") == false)
assert(sessions:expire("sid:7f3a", IDLE) == false, "expire on a gone session is false")
assert(sessions:ttl("sid:7f3a") == nil)

zeltkv._set_clock_offset(0)
kv:close()
print("session: ok")
