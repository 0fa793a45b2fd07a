-- zeltkv.slot: Redis Cluster's key slot (CRC16/XMODEM of the hash tag, mod 16384).
--
-- Pure Lua, so the redis driver needs no C: native bit operators on Lua 5.3+, LuaJIT's
-- `bit` or Lua 5.2's `bit32` where they exist, arithmetic on Lua 5.1.  The driver asks
-- once per root namespace (the root is the hash tag), so speed matters only with
-- shard = "key", where every key is hashed.

local M = {}

local byte, find = string.byte, string.find
local floor = math.floor

-- the CRC16 table, as high and low bytes (so that Lua 5.1 only ever XORs bytes)
local HI, LO = {}, {}

local xor8
local native = load and rawget(_G, "_VERSION") >= "Lua 5.3" and
  load("return function(a, b) return a ~ b end")
if native then
  xor8 = native()
elseif rawget(_G, "bit") then
  xor8 = rawget(_G, "bit").bxor
elseif rawget(_G, "bit32") then
  xor8 = rawget(_G, "bit32").bxor
else
  local X = {}                                -- XOR of two nibbles
  for a = 0, 15 do
    for b = 0, 15 do
      local r, p, x, y = 0, 1, a, b
      for _ = 1, 4 do
        if x % 2 ~= y % 2 then r = r + p end
        x, y, p = floor(x / 2), floor(y / 2), p * 2
      end
      X[a * 16 + b] = r
    end
  end
  xor8 = function(a, b)
    local ah, al, bh, bl = floor(a / 16), a % 16, floor(b / 16), b % 16
    return X[ah * 16 + bh] * 16 + X[al * 16 + bl]
  end
end

for i = 0, 255 do
  local crc = i * 256                          -- 16-bit, shifted left one bit at a time
  for _ = 1, 8 do
    local top = crc >= 32768
    crc = (crc * 2) % 65536
    if top then                                -- crc ~ 0x1021, byte by byte
      crc = xor8(floor(crc / 256), 0x10) * 256 + xor8(crc % 256, 0x21)
    end
  end
  HI[i], LO[i] = floor(crc / 256), crc % 256
end

-- crc16(s, i, j): CRC16/XMODEM of s:sub(i, j)
local function crc16(s, i, j)
  local hi, lo = 0, 0
  for p = i or 1, j or #s do
    local idx = xor8(hi, byte(s, p))
    hi, lo = xor8(lo, HI[idx]), LO[idx]
  end
  return hi * 256 + lo
end
M.crc16 = crc16

-- slot(key): the slot Redis gives `key`, following its hash tag rule: if the key has a
-- "{" with a "}" after it and something between them, only that part is hashed
function M.slot(key)
  local o = find(key, "{", 1, true)
  if o then
    local c = find(key, "}", o + 1, true)
    if c and c > o + 1 then return crc16(key, o + 1, c - 1) % 16384 end
  end
  return crc16(key) % 16384
end

-- slot of the tag itself (the driver's root namespaces, already escaped)
function M.tag_slot(tag) return crc16(tag) % 16384 end

return M
