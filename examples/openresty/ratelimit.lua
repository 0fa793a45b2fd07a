-- examples/openresty/ratelimit.lua: a fixed-window rate limiter per client, shared by
-- every nginx worker through one zeltkv.shared segment.
--
-- The first request of a window creates the client's counter with the window as its
-- ttl; later requests only add to it (incr never extends a ttl), so the window closes
-- `window` seconds after its first request whatever the traffic.  incr is one atomic
-- step, so two workers counting the same client never lose a hit.
--
--   access_by_lua_block { require("ratelimit").access() }
--   with  set $ratelimit_limit 10;  set $ratelimit_window 60;  in the location

local zeltkv = require("zeltkv")

local M = {}
local kv, hits        -- the store, and its "hits" namespace

function M.init()
  -- evict = "none": a full store refuses new counters (we then let the request
  -- through) rather than silently forgetting some clients' counts
  kv = zeltkv.shared("zkv-example-ratelimit", { size = "16m", evict = "none" })
  hits = kv:namespace("hits")
end

-- the driver, for /metrics
function M.driver() return kv end

function M.access()
  local limit = tonumber(ngx.var.ratelimit_limit) or 10
  local window = tonumber(ngx.var.ratelimit_window) or 60
  -- one counter per client and per limited location
  local key = ngx.var.remote_addr .. " " .. (ngx.var.uri:match("^/[^/]*") or "/")

  local ok, n = pcall(hits.incr, hits, key, 1, window)
  if not ok then
    -- the store failed (full, lock timeout): fail open, but say so
    ngx.log(ngx.ERR, "ratelimit: ", tostring(n))
    return
  end

  ngx.header["X-RateLimit-Limit"] = limit
  ngx.header["X-RateLimit-Remaining"] = math.max(limit - n, 0)
  if n > limit then
    local left = hits:ttl(key) or window
    ngx.header["Retry-After"] = math.ceil(left)
    ngx.status = 429
    ngx.say('{"error":"too many requests","retry_after":', math.ceil(left), '}')
    return ngx.exit(429)
  end
end

function M.stats()
  return { clients = hits:count() }
end

return M
