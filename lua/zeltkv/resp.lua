-- zeltkv.resp: the Redis protocol (RESP2) for the redis driver, independent of the socket.
--
-- A command is a list of strings; pack() turns commands into the bytes to send, so that a
-- pipeline of several is one send.  read(conn) reads one reply:
--   simple string -> the string          integer -> a Lua number (integer on 5.3+); where
--                                          numbers are doubles, one beyond 2^53 as its text
--   bulk string   -> the string          null bulk / null array -> false
--   array         -> a Lua list (null members are false)
--   error         -> an Err object { msg = "ERR ..." } (resp.is_err tells)
-- and nil, message when the connection failed (timeout, closed, garbage).

local M = {}

local concat, tostring, tonumber = table.concat, tostring, tonumber
local byte, sub, find = string.byte, string.sub, string.find

-- where numbers are doubles (Lua 5.1, LuaJIT), integers beyond 2^53 are not exact
local BIG = math.type == nil and 2 ^ 53 or nil

local Err = {}
Err.__index = Err
Err.__tostring = function(e) return e.msg end
M.Err = Err

function M.is_err(v) return getmetatable(v) == Err end

-- "MOVED 3999 127.0.0.1:6381" -> "MOVED"
function M.err_kind(e)
  local msg = e.msg
  local sp = find(msg, " ", 1, true)
  return sp and sub(msg, 1, sp - 1) or msg
end

-- "$<n>\r\n", the head of a bulk argument of n bytes: made once for the lengths most
-- arguments have (Lua 5.4 turns a number into text with snprintf, the bulk of packing a
-- short command otherwise)
local LEN = {}
for n = 0, 1023 do LEN[n] = "$" .. n .. "\r\n" end
local function len(n) return LEN[n] or "$" .. n .. "\r\n" end
M.len = len

-- bulk(s): one argument in RESP form
function M.bulk(s)
  return len(#s) .. s .. "\r\n"
end

-- pack1(...): one command from its arguments (strings; numbers must be formatted first)
function M.pack1(...)
  local n = select("#", ...)
  local parts = { "*" .. n .. "\r\n" }
  for i = 1, n do
    local a = select(i, ...)
    parts[i + 1] = len(#a) .. a .. "\r\n"
  end
  return concat(parts)
end

-- pack(cmds): several commands (each a list of strings) as one string
function M.pack(cmds)
  local parts, p = {}, 0
  for c = 1, #cmds do
    local cmd = cmds[c]
    p = p + 1
    parts[p] = "*" .. #cmd .. "\r\n"
    for i = 1, #cmd do
      local a = cmd[i]
      p = p + 1
      parts[p] = len(#a) .. a .. "\r\n"
    end
  end
  return concat(parts)
end

-- the most common commands, without building tables: "CMD key", "CMD key arg", ...; the
-- "*N $len CMD" head of each command name is made once per arity
local function heads(n)
  return setmetatable({}, { __index = function(t, cmd)
    local h = "*" .. n .. "\r\n$" .. #cmd .. "\r\n" .. cmd .. "\r\n"
    t[cmd] = h
    return h
  end })
end
local H2, H3, H4, H5, H6 = heads(2), heads(3), heads(4), heads(5), heads(6)
function M.cmd1(cmd, a)
  return H2[cmd] .. (LEN[#a] or len(#a)) .. a .. "\r\n"
end
function M.cmd2(cmd, a, b)
  return H3[cmd] .. (LEN[#a] or len(#a)) .. a .. "\r\n" .. (LEN[#b] or len(#b)) .. b .. "\r\n"
end
function M.cmd3(cmd, a, b, c)
  return H4[cmd] .. (LEN[#a] or len(#a)) .. a .. "\r\n" .. (LEN[#b] or len(#b)) .. b
    .. "\r\n" .. (LEN[#c] or len(#c)) .. c .. "\r\n"
end
function M.cmd4(cmd, a, b, c, d)
  return H5[cmd] .. (LEN[#a] or len(#a)) .. a .. "\r\n" .. (LEN[#b] or len(#b)) .. b
    .. "\r\n" .. (LEN[#c] or len(#c)) .. c .. "\r\n" .. (LEN[#d] or len(#d)) .. d .. "\r\n"
end
function M.cmd5(cmd, a, b, c, d, e)
  return H6[cmd] .. (LEN[#a] or len(#a)) .. a .. "\r\n" .. (LEN[#b] or len(#b)) .. b
    .. "\r\n" .. (LEN[#c] or len(#c)) .. c .. "\r\n" .. (LEN[#d] or len(#d)) .. d
    .. "\r\n" .. (LEN[#e] or len(#e)) .. e .. "\r\n"
end

-- list(n): an empty table with room for n values, n <= 8 (Lua grows a table one power of
-- two at a time, a good part of reading a pipeline's or an array's few replies); its
-- slots hold false until they are filled
local LISTS = {
  function() return { false } end,
  function() return { false, false } end,
  function() return { false, false, false } end,
  function() return { false, false, false, false } end,
  function() return { false, false, false, false, false } end,
  function() return { false, false, false, false, false, false } end,
  function() return { false, false, false, false, false, false, false } end,
  function() return { false, false, false, false, false, false, false, false } end,
}
local function list(n)
  local f = LISTS[n]
  if f then return f() end
  return {}
end
M.list = list

local read
read = function(conn)
  local line, err = conn:receive("*l")
  -- the most common replies (and each command inside MULTI's), without a call
  if line == "+OK" then return "OK" end
  if line == "+QUEUED" then return "QUEUED" end
  if not line then return nil, err end
  local t = byte(line, 1)
  if t == 36 then                                   -- $ bulk
    local n = tonumber(sub(line, 2))
    if not n then return nil, "protocol error: bad bulk length" end
    if n < 0 then return false end
    local data, derr = conn:receive(n + 2)
    if not data then return nil, derr end
    return sub(data, 1, n)
  elseif t == 43 then                               -- + status
    return sub(line, 2)
  elseif t == 58 then                               -- : integer
    local v = tonumber(sub(line, 2))
    if not v then return nil, "protocol error: bad integer" end
    if BIG and #line > 16 then
      -- beyond 2^53 a double is not exact (2^53 + 1 reads as 2^53): the text, for the
      -- caller to judge
      local text = sub(line, 2)
      if v > BIG or v < -BIG or ((v == BIG or v == -BIG) and text ~= "9007199254740992"
                                 and text ~= "-9007199254740992") then
        return text
      end
    end
    return v
  elseif t == 45 then                               -- - error
    return setmetatable({ msg = sub(line, 2) }, Err)
  elseif t == 42 then                               -- * array
    local n = tonumber(sub(line, 2))
    if not n then return nil, "protocol error: bad array length" end
    if n < 0 then return false end
    local arr = list(n)
    for i = 1, n do
      local v, e = read(conn)
      if v == nil then return nil, e end
      arr[i] = v
    end
    return arr
  end
  return nil, "protocol error: unexpected reply " .. tostring(sub(line, 1, 40))
end
M.read = read

return M
