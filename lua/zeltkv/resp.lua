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
local byte, sub, find, min, setmetatable = string.byte, string.sub, string.find, math.min, setmetatable

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

-- an integer reply's text as a number (nil: not a number).  Beyond 2^53 a double is not
-- exact (2^53 + 1 reads as 2^53): where numbers are doubles, the text, for the caller to judge
local function integer(text)
  local v = tonumber(text)
  if BIG and v and #text > 15 then
    if v > BIG or v < -BIG or ((v == BIG or v == -BIG) and text ~= "9007199254740992"
                               and text ~= "-9007199254740992") then
      return text
    end
  end
  return v
end

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
    local v = integer(sub(line, 2))
    if v == nil then return nil, "protocol error: bad integer" end
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

---------------------------------------------------------------------------------------------
-- replies(conn, n, last): the n replies of one exchange on a cosocket, parsed out of the
-- chunks receiveany gives.  receive("*l") and receive(n) are a C call each: a bulk reply
-- takes two, incr with a ttl's four replies six; receiveany takes what has arrived, and
-- one exchange's replies mostly arrive at once.  Inside nginx with a pooled connection
-- per call this is what brings a get to within 1.1x of a client that keeps one
-- connection for the whole request (bench/redis-nginx.sh, docs/redis.md).
--   -> r, n          r: the reply (n == 1), the list of the n replies, or with `last` the
--                    first that is not MULTI's "OK" or a command's "QUEUED" (see exchange)
--   -> nil, got, err the connection failed after `got` complete replies (-1: more bytes
--                    came than the n replies: the connection is not fit to keep)
-- The bytes read and not parsed yet are the exchange's own (passed along as buf, pos:
-- other coroutines parse their own replies while this one waits for more).  A bulk that
-- has not fully arrived is read to its end with one receive of the exact size, so a large
-- value is copied once, not once per chunk.
local ANY = 65536                       -- at most this much per receiveany (its buffer is smaller)
local MAX_LINE = 65536                  -- a header line (type, length, status, error) longer is garbage

-- the unread rest of buf and the next chunk
local function more(c, buf, pos)
  local data, err = c:receiveany(ANY)
  if not data then return nil, err end
  if pos <= #buf then return sub(buf, pos) .. data end
  return data
end

-- one reply at buf[pos]: v, buf, pos (after it) | nil, err
local parse
parse = function(c, buf, pos)
  local e = find(buf, "\r\n", pos, true)
  while not e do
    if #buf - pos > MAX_LINE then return nil, "protocol error: a line without an end" end
    local err
    buf, err = more(c, buf, pos)
    if not buf then return nil, err end
    pos = 1
    e = find(buf, "\r\n", 1, true)
  end
  local t = byte(buf, pos)
  if t == 36 then                                   -- $ bulk
    local n = tonumber(sub(buf, pos + 1, e - 1))
    if not n then return nil, "protocol error: bad bulk length" end
    if n < 0 then return false, buf, e + 2 end
    local first, last = e + 2, e + 1 + n
    local have = #buf
    if have < last + 2 then
      -- the rest of this bulk and its CRLF, nothing after them: in one read of that size
      local rest, err = c:receive(last + 2 - have)
      if not rest then return nil, err end
      buf, first, last = sub(buf, first) .. rest, 1, n
    end
    return sub(buf, first, last), buf, last + 3
  elseif t == 43 then                               -- + status
    return sub(buf, pos + 1, e - 1), buf, e + 2
  elseif t == 58 then                               -- : integer
    local v = integer(sub(buf, pos + 1, e - 1))
    if v == nil then return nil, "protocol error: bad integer" end
    return v, buf, e + 2
  elseif t == 45 then                               -- - error
    return setmetatable({ msg = sub(buf, pos + 1, e - 1) }, Err), buf, e + 2
  elseif t == 42 then                               -- * array
    local n = tonumber(sub(buf, pos + 1, e - 1))
    if not n then return nil, "protocol error: bad array length" end
    if n < 0 then return false, buf, e + 2 end
    local arr = list(n)
    pos = e + 2
    for i = 1, n do
      local v
      v, buf, pos = parse(c, buf, pos)
      if v == nil then return nil, buf end
      arr[i] = v
    end
    return arr, buf, pos
  end
  return nil, "protocol error: unexpected reply " .. tostring(sub(buf, pos, min(e - 1, pos + 39)))
end

function M.replies(c, n, last)
  local buf, err = c:receiveany(ANY)      -- (nothing has been read yet)
  if not buf then return nil, 0, err end
  if n == 1 then
    -- set's and setnx's replies whole, without parsing them (strings are interned: one
    -- comparison each)
    if buf == "+OK\r\n" then return "OK", 1 end
    if buf == "$-1\r\n" then return false, 1 end
  end
  local pos, r = 1, nil
  if n > 1 and not last then r = list(n) end
  for i = 1, n do
    local v
    v, buf, pos = parse(c, buf, pos)
    if v == nil then return nil, i - 1, buf end
    if n == 1 then r = v
    elseif not last then r[i] = v
    elseif r == nil and (i == n or (v ~= "OK" and v ~= "QUEUED")) then r = v end
  end
  if pos <= #buf then return nil, -1, "protocol error: more bytes than the replies" end
  return r, n
end

return M
