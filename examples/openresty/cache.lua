-- examples/openresty/cache.lua: a cache of table values shared by every nginx worker.
--
-- zeltkv stores Lua tables as they are (no cjson.encode/decode on the way in and out),
-- and every worker sees the same entries.  A miss is filled by one worker only: it takes
-- a short "fill" lock with setnx, the others wait for its result instead of all hitting
-- the origin at once (no stampede).  The store evicts least recently used entries when
-- it is full.
--
--   content_by_lua_block { require("cache").user(ngx.var.user_id) }

local zeltkv = require("zeltkv")
local cjson = require("cjson")

local M = {}
local kv, users, fills

local TTL = 30            -- seconds a cached user stays
local FILL_TTL = 5        -- a filler that dies frees its lock after this long

function M.init()
  kv = zeltkv.shared("zkv-example-cache", { size = "64m", evict = "lru" })
  users = kv:namespace("users")
  fills = kv:namespace("fills")
end

-- the "origin": a slow backend that builds the user record
local function load_user(id)
  ngx.sleep(0.05)               -- a database round trip (yields; never inside atomic)
  return {
    id = tonumber(id),
    name = "user " .. id,
    roles = { "reader", tonumber(id) % 2 == 0 and "writer" or nil },
    profile = { built_by_worker = ngx.worker.pid(), built_at = ngx.now() },
  }
end

local function get_or_fill(id)
  local user = users:get(id)
  if user then return user, "HIT" end
  for _ = 1, 100 do
    if fills:setnx(id, ngx.worker.pid(), FILL_TTL) then
      -- we fill it; whatever happens, drop the fill lock afterwards
      local ok, res = pcall(load_user, id)
      if ok then users:set(id, res, TTL) end
      fills:del(id)
      if not ok then error(res, 0) end
      return res, "MISS"
    end
    ngx.sleep(0.01)             -- somebody else is filling it: wait for them
    user = users:get(id)
    if user then return user, "HIT" end
  end
  return load_user(id), "BYPASS" -- the filler is too slow: serve without caching
end

function M.user(id)
  if ngx.req.get_method() == "DELETE" then
    ngx.say(cjson.encode({ deleted = users:del(id) }))
    return
  end
  local user, how = get_or_fill(id)
  ngx.header["X-Cache"] = how
  ngx.header["X-Cache-TTL"] = ("%.1f"):format(users:ttl(id) or 0)
  user.served_by_worker = ngx.worker.pid()     -- our own copy: the cache is not changed
  ngx.say(cjson.encode(user))
end

-- the driver, for /metrics
function M.driver() return kv end

function M.stats()
  local st = kv:stats()
  return { users = users:count(), keys = st.keys, bytes_used = st.bytes_used,
           capacity = st.capacity, evictions = st.evictions }
end

return M
