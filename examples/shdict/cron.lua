-- examples/shdict/cron.lua: a cron-style job in plain Lua 5.4 (no nginx) that reads and
-- resets the "hits:<uri>" counters nginx workers increment through the same zeltkv segment
-- (examples/shdict/nginx.conf, limiter.count()).  Same object, same methods as
-- ngx.shared.DICT.
--
--   LUA_PATH='lua/?.lua;;' LUA_CPATH='build/lua5.4/?.so;;' lua5.4 examples/shdict/cron.lua
--
--   ... examples/shdict/cron.lua --demo   -- without nginx: a child process plays the
--   workers (30,000 increments) while this script harvests; every increment is counted once.

local zeltkv = require("zeltkv")

-- read every counter and take away what was read: incr(key, -n) instead of set(key, 0), so
-- that the increments workers make between the read and the reset are kept for next time
local function harvest(dict)
  local got = {}
  for _, key in ipairs(dict:get_keys(0)) do
    local uri = key:match("^hits:(.*)$")
    if uri then
      local n = dict:get(key)
      if type(n) == "number" and n ~= 0 then
        dict:incr(key, -n)
        got[uri] = n
      end
    end
  end
  return got
end

if arg[1] ~= "--demo" then
  -- the real job: once, against nginx's segment
  local dict = zeltkv.shared("limits", { size = "10m", evict = "lru" }):namespace("limits"):shdict()
  for uri, n in pairs(harvest(dict)) do print(("%-30s %d"):format(uri, n)) end
  return
end

-- demo: a private segment directory, a child "worker" incrementing, this process harvesting
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local seg = "cron-demo-" .. tostring(os.time())
local lua = arg[-1] or "lua5.4"
local child_src = ([[
  local d = require("zeltkv").shared(%q, { size = "4m" }):namespace("limits"):shdict()
  local uris = { "/api", "/api/users", "/login" }
  for i = 1, 30000 do assert(d:incr("hits:" .. uris[i %% 3 + 1], 1, 0)) end
  assert(d:set("done", true))
]]):format(seg)

-- this process opens the same segment (ZELTKV_SHM_DIR must be set before the first open,
-- so the demo re-runs itself with it)
if os.getenv("ZKV_CRON_CHILD") ~= "1" then
  local self_cmd = ("ZELTKV_SHM_DIR=%q ZKV_CRON_CHILD=1 ZKV_CRON_SEG=%q %q %q --demo"):format(
    dir, seg, lua, arg[0])
  local ok = os.execute(self_cmd)
  os.execute("rm -rf " .. dir)
  os.exit((ok == true or ok == 0) and 0 or 1)
end

seg = os.getenv("ZKV_CRON_SEG")
child_src = child_src:gsub("cron%-demo%-%d+", seg)
local cmd = ("%q -e %q &"):format(lua, child_src)
local dict = zeltkv.shared(seg, { size = "4m" }):namespace("limits"):shdict()
assert(os.execute(cmd))
local total, rounds = {}, 0
local function add(got)
  for uri, n in pairs(got) do total[uri] = (total[uri] or 0) + n end
end
local t0 = os.clock()
while not dict:get("done") do
  add(harvest(dict))
  rounds = rounds + 1
  if os.clock() - t0 > 30 then error("the child did not finish") end
end
add(harvest(dict))           -- what came in after the last round
local sum = 0
for uri, n in pairs(total) do
  print(("%-12s %d"):format(uri, n))
  sum = sum + n
end
print(("%d increments counted in %d harvests (expected 30000)"):format(sum, rounds))
assert(sum == 30000, "lost or double-counted increments")
zeltkv.unlink(seg)
