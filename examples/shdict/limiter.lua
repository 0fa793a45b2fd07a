-- examples/shdict/limiter.lua: a fixed-window rate limiter written against ngx.shared.DICT.
--
-- Nothing here knows about zeltkv: it takes any object with the ngx.shared.DICT methods.
-- nginx.conf hands it either ngx.shared.limits or a zeltkv dict; that is the only change.
--
--   local limiter = require("limiter")
--   local lim = limiter.new(dict, 10, 1)           -- 10 requests per 1-second window
--   local allowed, remaining, reset_in = lim:check(ngx.var.binary_remote_addr)

local _M = {}
local mt = { __index = _M }

function _M.new(dict, limit, window)
  return setmetatable({ dict = dict, limit = limit, window = window or 1 }, mt)
end

-- one request of `key`: true when allowed, plus requests left and seconds until the window ends
function _M.check(self, key)
  local dict = self.dict
  -- incr with init and init_ttl: the first request of a window creates the counter with the
  -- window's ttl, the later ones only add to it (the window is fixed, never extended)
  local n, err = dict:incr("rl:" .. key, 1, 0, self.window)
  if not n then
    return nil, err
  end
  local ttl = dict:ttl("rl:" .. key) or self.window
  if n > self.limit then
    return false, 0, ttl
  end
  return true, self.limit - n, ttl
end

-- counters hit by every request, read and reset by examples/shdict/cron.lua
function _M.count(dict, what)
  dict:incr("hits:" .. what, 1, 0)
end

return _M
