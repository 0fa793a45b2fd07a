-- bench/redis_bare.lua: the bare Redis client the redis driver's benchmarks compare with,
-- for LuaSocket (bench/redis_driver.lua) and nginx cosockets (bench/redis-nginx.sh) alike:
-- the commands written out by hand, one send, then receive("*l") and receive(n).
--   local bare = require("redis_bare").ops(prefix)
--   bare.get(conn) ... bare.set, bare.incr_ttl, bare.setnx_ttl, bare.atomic_rmw
-- each doing what the driver's call of the same name sends, on keys <prefix>{b}:...
local M = {}

local function bulk(s) return "$" .. #s .. "\r\n" .. s .. "\r\n" end
M.bulk = bulk

-- one reply of the kinds these commands get: status, integer, bulk, array of those.  What a
-- caller needs and no more: a bulk's bytes, an integer as a number (incr's result), a
-- status or an error as its line (the caller compares it with "+OK").
local function reply(c)
  local line = assert(c:receive("*l"))
  local t = line:byte(1)
  if t == 36 then
    local n = tonumber(line:sub(2))
    if n < 0 then return nil end
    return c:receive(n + 2):sub(1, n)
  elseif t == 58 then
    return tonumber(line:sub(2))
  elseif t == 42 then
    local a = {}
    for i = 1, tonumber(line:sub(2)) do a[i] = reply(c) end
    return a
  end
  return line
end
M.reply = reply

function M.ops(pfx)
  local K, C, L, R = bulk(pfx .. "{b}:k"), bulk(pfx .. "{b}:c"), bulk(pfx .. "{b}:l"), bulk(pfx .. "{b}:rmw")
  return {
    get = function(c) c:send("*2\r\n$3\r\nGET\r\n" .. K); return reply(c) end,
    set = function(c) c:send("*3\r\n$3\r\nSET\r\n" .. K .. "$5\r\nhello\r\n"); return reply(c) end,
    incr_ttl = function(c)
      c:send("*1\r\n$5\r\nMULTI\r\n*6\r\n$3\r\nSET\r\n" .. C .. "$1\r\n0\r\n$2\r\nPX\r\n$5\r\n60000\r\n"
             .. "$2\r\nNX\r\n*3\r\n$6\r\nINCRBY\r\n" .. C .. "$1\r\n1\r\n*1\r\n$4\r\nEXEC\r\n")
      reply(c); reply(c); reply(c)
      return reply(c)
    end,
    setnx_ttl = function(c)
      c:send("*6\r\n$3\r\nSET\r\n" .. L .. "$1\r\n1\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n")
      return reply(c)
    end,
    atomic_rmw = function(c)
      c:send("*2\r\n$5\r\nWATCH\r\n" .. R .. "*2\r\n$3\r\nGET\r\n" .. R)
      reply(c)
      local v = tonumber(reply(c)) or 0
      c:send("*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n" .. R .. bulk(tostring(v + 1))
             .. "*1\r\n$4\r\nEXEC\r\n")
      reply(c); reply(c)
      return reply(c)
    end,
  }
end

return M
