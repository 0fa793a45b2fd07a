-- spec/redis/example_prelude.lua: runs an example of examples/ on the redis driver.
--
-- The examples build their store with zeltkv.memory() and move time with the memory
-- driver's test clock (zeltkv._set_clock_offset).  Here the constructor is the only
-- thing that changes: zeltkv.memory() returns zeltkv.redis{ url = $ZELTKV_REDIS_URL }.
-- The server's clock cannot move, so the driver is seen through a clock 20x faster
-- (spec/support/scaled.lua: ttls scaled in and out) and _set_clock_offset sleeps.
-- Usage: lua -e 'package.path=...' spec/redis/example_prelude.lua examples/lock.lua
local zeltkv = require("zeltkv")
local scaled = require("support.scaled")
require("zeltkv.redis")            -- loaded before zeltkv.memory is replaced (it uses one)

local F = 0.05
local clock = scaled.clock(F)
local url = assert(os.getenv("ZELTKV_REDIS_URL"), "ZELTKV_REDIS_URL is not set")
local made = {}
zeltkv.memory = function()
  local kv = zeltkv.redis({ url = url, prefix = "example" .. math.random(1, 1e9) })
  kv:namespace("warm-up"):get("k")
  made[#made + 1] = kv
  return scaled.wrap(kv, F, clock)
end
zeltkv._set_clock_offset = function(ms) clock.advance(ms) end

local script = assert(arg[1], "usage: example_prelude.lua EXAMPLE.lua")
arg = { [0] = script }
local chunk = assert(loadfile(script))
local ok, err = pcall(chunk)
for _, kv in ipairs(made) do
  local k2 = zeltkv.redis({ url = url, prefix = kv.prefix })
  k2:flush()
  k2:close()
end
if not ok then error(err, 0) end
