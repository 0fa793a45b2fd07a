-- zeltkv: an embedded key-value store for Lua (see README.md and API.md).
-- The engine and the Lua 5.x binding are C (zeltkv.core); this file is the
-- module users require, so that LuaJIT can put its FFI front end in front.
--
-- Under LuaJIT, stores get/set/del/has/ttl/incr/setnx through the FFI
-- (lua/zeltkv/ffi.lua), so JIT-compiled loops stay compiled; the behaviour and
-- the errors are the C binding's. ZELTKV_NO_FFI=1 in the environment, or a
-- front end that cannot check its assumptions at load, gives the plain C binding
-- (zeltkv._ffi is then nil, and zeltkv._ffi_disabled says why when it was tried).
local core = require("zeltkv.core")
core._own()   -- an error names the user's line, not this file's

-- store:shdict(): the ngx.shared.DICT face of a store (lua/zeltkv/shdict.lua).  Added to the
-- C binding's Store methods before the FFI front end collects them, so both have it.  Self
-- and the driver are checked first, as by every method (_live: a wrong self is a plain
-- argument error, a closed driver "closed").
local live = core._Store._live
core._Store.shdict = function(self)
  live(self)
  return require("zeltkv.shdict").new(self)
end

-- zeltkv.redis(opts): the redis driver (lua/zeltkv/redis.lua), loaded on first use
core.redis = function(opts) return require("zeltkv.redis").redis(opts) end

-- zeltkv.prometheus(kv [, labels]): stats() as Prometheus text (lua/zeltkv/prometheus.lua)
core.prometheus = function(kv, labels) return require("zeltkv.prometheus").render(kv, labels) end

if rawget(_G, "jit") and os.getenv("ZELTKV_NO_FFI") ~= "1" then
  local ok, front = pcall(require, "zeltkv.ffi")
  if ok and type(front) == "table" and front.module then return front.module end
  core._ffi_disabled = ok and type(front) == "table" and front.disabled or tostring(front)
end
return core
