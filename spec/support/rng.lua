-- spec/support/rng.lua: the randomized specs' one generator (Park-Miller, 16807 mod
-- 2^31 - 1), the same on every Lua, so a seed names the same run on 5.1-5.4 and LuaJIT.
--
--   local rng = require("support.rng")    -- in a spec (busted's lpath has spec/?.lua)
--   local r = rng(seed); r(n)              -- 1..n
return function(seed)
  local s = math.floor(seed) % 2147483646 + 1
  return function(n)   -- 1..n
    s = (s * 16807) % 2147483647
    return s % n + 1
  end
end
