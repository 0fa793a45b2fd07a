-- zeltkv.redis: the redis driver -- the Store and Driver API of zeltkv on a Redis (7.0+)
-- or Valkey server, standalone or Redis Cluster, from plain Lua (LuaSocket) and inside
-- nginx (cosockets).  User documentation: docs/redis.md.
--
-- Layout of this file:
--   errors, checks     the error objects and argument rules of the C binding
--   values             Lua value <-> stored text (integers as decimal text for INCRBY)
--   keys               namespace path -> Redis key, hash tag = the root namespace
--   connections        per-node connections (LuaSocket: kept here; nginx: its pool)
--   routing            one command or pipeline to the node that owns the slot, MOVED/ASK
--   transactions       atomic(): WATCH + client overlay + MULTI/EXEC, per coroutine
--   Store, Driver      the API methods
--
-- Why Lua and not C: atomic(fn) has to call fn from Lua so that cosocket yields inside
-- fn are legal, and nginx's cosockets are only reachable from Lua.

local core = require("zeltkv.core")
local CLOSES = core._closes
local resp = require("zeltkv.resp")
local socket = require("zeltkv.socket")
local slotlib = require("zeltkv.slot")

local type, tostring, tonumber, select, error, pcall, setmetatable, getmetatable, rawget,
      pairs, ipairs, next =
      type, tostring, tonumber, select, error, pcall, setmetatable, getmetatable, rawget,
      pairs, ipairs, next
local byte, sub, find, fmt, gsub, char = string.byte, string.sub, string.find, string.format,
      string.gsub, string.char
local floor, huge, random, min, max = math.floor, math.huge, math.random, math.min, math.max
local math_type, tointeger = math.type, math.tointeger
local concat, unpack = table.concat, table.unpack or unpack
local co_running = coroutine.running
local cmd1, cmd2, cmd3, cmd4, cmd5, pack1, pack, read, is_err =
      resp.cmd1, resp.cmd2, resp.cmd3, resp.cmd4, resp.cmd5, resp.pack1, resp.pack, resp.read, resp.is_err
local Err = resp.Err
local replies = resp.replies

local IN_NGX = rawget(_G, "ngx") ~= nil and socket.kind ~= nil
local HAS_INT = math_type ~= nil
local LIMIT = 9007199254740992                 -- 2^53: incr's range where numbers are doubles
local MAX_KEY = 65535
local MAX_MS = 4.0e15                          -- the C binding's cap: "forever", no overflow
local NEG0 = -1 / huge

local M = {}

---------------------------------------------------------------------------------------------
-- errors, checks

-- the C binding's error metatable (tostring "zeltkv: CODE: message")
local ERR_MT = getmetatable(select(2, pcall(core.unlink, "")))

-- the binding's core._raise when it has one (the C methods' own way: a table when the
-- call is caught, else a string naming the caller's line), else the same table
local core_raise = rawget(core, "_raise")
local function raise(code, msg, reason)
  if core_raise then core_raise(code, msg, reason) end
  error(setmetatable({ code = code, message = msg, reason = reason }, ERR_MT), 0)
end
local function failed(msg, reason) raise("STORE_OPERATION_FAILED", msg, reason) end

local Store, Driver = {}, {}
local STORE_MT = { __index = Store, __name = "zeltkv.Store", __metatable = false }
local DRIVER_MT = { __index = Driver, __name = "zeltkv.Driver", __metatable = false }
-- __metatable hides the tables, so the checks look a value up in a private set of the
-- stores made here (a table index: no C call on the hot path) or compare a private field
local STORES = setmetatable({}, { __mode = "k" })
local DRIVER_TAG = {}

-- level: the user's call, as error() counts (argerr 1, check_* 2, the method 3, its caller 4)
local function argerr(what, name, got, level)
  error(("bad argument #1 to '%s' (%s expected, got %s)"):format(name, what, type(got)), level or 4)
end
local function check_store(self, name, level)
  if not STORES[self] then argerr("zeltkv.Store", name, self, level) end
  local d = self.drv
  if d.closed then failed("closed", "closed") end
  return d
end
local function check_driver(self, name)
  if type(self) ~= "table" or rawget(self, "_tag") ~= DRIVER_TAG then argerr("zeltkv.Driver", name, self) end
  if self.closed then failed("closed", "closed") end
  return self
end

local function check_key(k)
  local t = type(k)
  if t == "string" then
    local n = #k
    if n == 0 or n > MAX_KEY then raise("INVALID_KEY", "key must be 1 to 65535 bytes, got " .. n) end
    return k
  elseif t == "number" then
    if HAS_INT and math_type(k) == "integer" then return fmt("%d", k) end
    if k == floor(k) and k >= -LIMIT and k <= LIMIT then return fmt("%d", k) end
    raise("INVALID_KEY", "key must be a string or an integer, got a non-integer number")
  end
  raise("INVALID_KEY", "key must be a string or an integer, got " .. (t == "nil" and "no value" or t))
end

local function ms_of(n)
  if type(n) ~= "number" then
    raise("INVALID_TTL", "ttl must be a number of seconds, got " .. (n == nil and "nil" or type(n)))
  end
  if not (n > 0) or n == huge then raise("INVALID_TTL", "ttl must be a finite number > 0") end
  local ms = floor(n * 1000 + 0.5)
  if ms < 1 then ms = 1 end
  if ms > MAX_MS then ms = MAX_MS end
  return ms
end

-- the optional ttl argument: nil, seconds or { ttl = seconds } -> milliseconds and their
-- text, or nil.  The results for the last numbers given are kept (256 at most, emptied
-- when full): a program uses a few ttls, and checking one and making its text (snprintf
-- on Lua 5.4) is a good part of a short command's CPU.
local ttl_ms, ttl_text, ttl_n = {}, {}, 0
local function opt_ttl(t, required)
  local ms = ttl_ms[t]                          -- (nil or a table: never kept)
  if ms then return ms, ttl_text[t] end
  if t == nil then
    if required then raise("INVALID_TTL", "ttl missing") end
    return nil
  end
  if type(t) == "table" then
    for k, v in pairs(t) do
      if k ~= "ttl" then
        if type(k) == "string" then raise("INVALID_VALUE", "unknown option '" .. k .. "'") end
        raise("INVALID_VALUE", "unknown option (a " .. type(k) .. " key)")
      end
      ms = ms_of(v)
    end
    if not ms then raise("INVALID_TTL", "ttl missing: the table has no 'ttl' field") end
    return ms, fmt("%d", ms)
  end
  ms = ms_of(t)
  local text = fmt("%d", ms)
  if ttl_n >= 256 then ttl_ms, ttl_text, ttl_n = {}, {}, 0 end
  ttl_n = ttl_n + 1
  ttl_ms[t], ttl_text[t] = ms, text
  return ms, text
end

-- an integer as text, the way Redis wants it (never "1500.0").  Lua 5.4 makes the text
-- with snprintf, a good part of a short command's CPU: the texts of 0..1023 (incr steps,
-- flags, small values) are made once.
local SMALL = {}
for i = 0, 1023 do SMALL[i] = fmt("%d", i) end
local function int_text(n) return SMALL[n] or fmt("%d", n) end

local function check_by(by)
  if by == nil or by == 1 then return 1 end      -- the default and most common step
  if type(by) ~= "number" then
    raise("INVALID_VALUE", "incr: by must be an integer, got " .. type(by))
  end
  if HAS_INT and math_type(by) == "integer" then return by end
  if by ~= floor(by) or by ~= by or by == huge or by == -huge then
    raise("INVALID_VALUE", "incr: by must be an integer")
  end
  if not HAS_INT and (by > LIMIT or by < -LIMIT) then raise("INVALID_VALUE", "incr: by is beyond 2^53") end
  if HAS_INT then
    local i = tointeger(by)
    if not i then raise("INVALID_VALUE", "incr: by must be an integer") end
    return i
  end
  return by
end

---------------------------------------------------------------------------------------------
-- values
--
-- stored text, decided by its first byte (docs/redis.md, "Values"):
--   integer  canonical decimal ("42", "-7")        float  JSON number with "." or "e"
--   boolean  "true" / "false"                      table  JSON ("{...}" / "[...]")
--   string   itself, unless it would read back as one of the above (or starts with
--            0xFF): then 0xFF followed by the string
-- Text in no such form (another client's) reads back as a string.

-- Tables go through the C binding's codec, so the rules and the INVALID_VALUE messages
-- are the memory driver's: core._encode / core._decode where the binding exports them,
-- else a private memory store whose raw methods give the JSON text in and out.
local T_JSON = 5                        -- ZKV_T_JSON (include/zeltkv.h)
local enc_table, dec_table
if rawget(core, "_encode") and rawget(core, "_decode") then
  local c_encode, c_decode = core._encode, core._decode
  enc_table = function(v)
    local _, text = c_encode(v)
    return text
  end
  dec_table = function(text)
    local ok, v = pcall(c_decode, T_JSON, text)
    if ok then return v end
    return text                         -- not our JSON: the text as it is
  end
else
  local codec = core.memory():namespace("codec")
  enc_table = function(v)
    codec:set("v", v)                   -- raises INVALID_VALUE as the other drivers do
    local _, text = codec:_rawget("v")
    return text
  end
  dec_table = function(text)
    codec:_rawset("v", T_JSON, text)
    local ok, v = pcall(codec.get, codec, "v")
    if ok then return v end
    return text
  end
end

local FF = "\255"

local function float_text(x)
  local s
  for p = 15, 17 do
    s = fmt("%." .. p .. "g", x)
    if tonumber(s) == x then break end
  end
  if not find(s, "[%.eEn]") then s = s .. ".0" end
  return s
end

local function encode(v)
  local t = type(v)
  if t == "string" then
    local b = byte(v, 1)
    if b == nil then return v end
    -- digits, '-', 't'/'f' (true/false), '{', '[', 0xFF, and 0xFE (the flags form of
    -- store:shdict() items) might read back as something else
    if b <= 57 and b >= 45 or b == 116 or b == 102 or b == 123 or b == 91 or b >= 254 then
      if b >= 254 or b == 123 or b == 91 or v == "true" or v == "false" or tonumber(v) then
        return FF .. v
      end
    end
    return v
  elseif t == "number" then
    if HAS_INT then
      if math_type(v) == "integer" then return SMALL[v] or fmt("%d", v) end
    elseif v == floor(v) and v >= -LIMIT and v <= LIMIT and not (v == 0 and 1 / v < 0) then
      return SMALL[v] or fmt("%d", v)
    end
    if v ~= v then raise("INVALID_VALUE", "value: NaN cannot be stored") end
    if v == huge or v == -huge then raise("INVALID_VALUE", "value: infinity cannot be stored") end
    return float_text(v)
  elseif t == "boolean" then
    return v and "true" or "false"
  elseif t == "table" then
    return enc_table(v)
  elseif t == "nil" then
    raise("INVALID_VALUE", "value: nil cannot be stored")
  elseif t == "function" then
    raise("INVALID_VALUE", "value: functions cannot be stored")
  elseif t == "thread" then
    raise("INVALID_VALUE", "value: threads cannot be stored")
  end
  raise("INVALID_VALUE", "value: userdata cannot be stored")
end
M._encode = encode

local function decode(s)
  local b = byte(s, 1)
  if b == nil then return s end
  if b == 255 then return sub(s, 2) end
  if b <= 57 and (b >= 48 or b == 45) then
    -- canonical decimal integers (what the driver and INCRBY write): tonumber and back
    -- (cheaper than a pattern, and compiled by LuaJIT)
    local n = tonumber(s)
    if n and (HAS_INT and math_type(n) == "integer"
              or not HAS_INT and n == floor(n) and n >= -LIMIT and n <= LIMIT)
       and (SMALL[n] or fmt("%d", n)) == s then
      return n
    end
    if find(s, "^%-?%d+%.%d+$") or find(s, "^%-?%d+%.?%d*[eE][-+]?%d+$") then
      return tonumber(s)                        -- a float on 5.3+ (it has "." or "e")
    end
    return s
  end
  if b == 123 or b == 91 then return dec_table(s) end
  if s == "true" then return true end
  if s == "false" then return false end
  return s
end
M._decode = decode

-- the integer a stored text holds, for incr inside atomic (nil: not an integer)
local function int_of(s)
  if find(s, "^%-?[1-9]%d*$") or s == "0" then
    local n = tonumber(s)
    if HAS_INT then return tointeger(n) end
    if n > LIMIT or n < -LIMIT then return nil end
    return n
  end
  return nil
end

---------------------------------------------------------------------------------------------
-- keys
--
--   shard = "root": <prefix>{<esc(root)>}<path>:<key>    zkv{cache}:user:1   zkv{a}/b:c
--   shard = "key" : <prefix>:<esc(root)><path>:<key>
--   path: ("/" .. esc(child))*
-- esc() turns % { } / : * ? [ ] \ into %XX, so a name never holds the separators, the
-- tag's braces or a SCAN glob character; key bytes stay raw (one concatenation).

local function esc(name)
  return (gsub(name, "[%%{}/:%*%?%[%]\\]", function(c) return fmt("%%%02X", byte(c)) end))
end
local function unesc(name)
  return (gsub(name, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

local function check_ns_name(name)
  if type(name) ~= "string" then
    raise("INVALID_KEY", "namespace name must be a string, got " .. (name == nil and "no value" or type(name)))
  end
  if #name == 0 then raise("EMPTY_NAMESPACE", "namespace name is empty") end
  if #name > MAX_KEY then raise("INVALID_KEY", "namespace name must be 1 to 65535 bytes") end
end

local function new_store(d, base, slot, root)
  local s = setmetatable({ drv = d, base = base, kbase = base .. ":", slot = slot, root = root },
                         STORE_MT)
  STORES[s] = true
  return s
end

local function root_store(d, name)
  local e = esc(name)
  if d.shard == "key" then return new_store(d, d.prefix .. ":" .. e, nil, name) end
  return new_store(d, d.prefix .. "{" .. e .. "}", slotlib.tag_slot(e), name)
end

-- the slot of a full key (shard = "key": each key by itself)
local function slot_of(s, rk)
  return s.slot or slotlib.slot(rk)
end

---------------------------------------------------------------------------------------------
-- connections
--
-- A node is { name, host, port | path, idle = { ... } } plus the connect settings.  In
-- plain Lua a node keeps its idle LuaSocket connections (at most pool_size); a call takes
-- one and gives it back, so a transaction pinned to one never shares it.  Inside nginx a
-- call takes a cosocket from nginx's pool and gives it back with setkeepalive.
-- A connection is given back only after a complete exchange: one with unread replies,
-- an open WATCH or an open MULTI is closed instead.

local function conn_failed(node, err)
  failed(("%s: %s"):format(node.name, tostring(err)), "connection")
end

local cos_connect = socket.connect_cosocket
local function open(d, node, cos, slot)
  local c, fresh, why
  if cos then c, fresh, why = cos_connect(node, slot) else c, fresh, why = socket.connect(node) end
  if not c then
    if why == "phase" then failed(fresh, "phase") end
    conn_failed(node, fresh)
  end
  if fresh and d.hello then
    d.round_trips = d.round_trips + 1
    local ok, err = c:send(d.hello)
    local r
    for _ = 1, d.hello_n do
      if not ok then break end
      r, err = read(c)
      if r == nil then ok = false
      elseif is_err(r) then
        c:close()
        local code = resp.err_kind(r)
        failed(("%s: %s"):format(node.name, r.msg),
               (code == "WRONGPASS" or code == "NOAUTH" or code == "NOPERM") and "auth" or "connection")
      end
    end
    if not ok then c:close(); conn_failed(node, err) end
  end
  return c, fresh, why                    -- (why: the cosocket's slot, for socket.keepalive)
end

-- acquire(d, node, cos, slot) -> conn, reused, slot.  cos: this call runs where cosockets
-- work; slot: socket.slot(node), when the caller has it
local function acquire(d, node, cos, slot)
  if cos then
    local c, fresh
    c, fresh, slot = open(d, node, true, slot)
    return c, not fresh, slot
  end
  if IN_NGX then
    local kind, why = socket.kind()
    if not kind then failed(why, "phase") end
  end
  local idle = node.idle
  local n = #idle
  if n > 0 then
    local c = idle[n]
    idle[n] = nil
    return c, true
  end
  return open(d, node), false
end

-- release(d, node, conn, cos): after a complete exchange only.  LuaSocket connections made
-- in nginx's init phase are not kept: the workers forked after it must not share them.
local function release(d, node, c, cos)
  if cos then return socket.keepalive(c, node) end
  local idle = node.idle
  if d.closed or IN_NGX or #idle >= node.pool_size then c:close() else idle[#idle + 1] = c end
end

local function use_cosockets()
  return IN_NGX and socket.kind() == "cosocket"
end

-- an idle connection the server closed shows "closed" (or a reset) on first use
local function stale_error(err)
  return err == "closed" or (type(err) == "string" and (find(err, "reset", 1, true)
    or find(err, "broken pipe", 1, true)) ~= nil)
end

-- exchange(d, node, payload, n, last) -> reply (n == 1) or list of n replies,
-- or nil, err, sent (err: a zeltkv error or a socket message; sent: the payload may
-- have reached the server).  last: a MULTI pipeline whose caller wants one reply, the
-- first of the n that is not MULTI's "OK" or a command's "QUEUED" (a command refused
-- when queued, or EXEC's reply): no list is made (a tenth of incr's CPU on Lua 5.4)
local function exchange(d, node, payload, n, last)
  -- inside nginx: this coroutine's slot of this request (then the phase has cosockets),
  -- else the phase asked
  local slot = IN_NGX and socket.slot(node)
  local cos = slot and true or IN_NGX and socket.kind() == "cosocket"
  for try = 1, 2 do
    local c, reused
    local idle = node.idle
    local k = #idle
    if k > 0 and not cos then
      -- an idle LuaSocket connection (never one inside nginx: release() keeps none there)
      c, reused = idle[k], true
      idle[k] = nil
    elseif d.cluster then                   -- a node that cannot be reached: call() decides
      local ok
      ok, c, reused, slot = pcall(acquire, d, node, cos, slot)
      if not ok then return nil, c, false end
    elseif cos then                         -- (acquire's first step, without its call)
      local fresh
      c, fresh, slot = open(d, node, true, slot)
      reused = not fresh
    else
      c, reused = acquire(d, node, false)
    end
    d.round_trips = d.round_trips + 1
    local sent, err = c:send(payload)
    local r, got = nil, 0
    if sent and cos and c.receiveany then   -- (lua-nginx-module 0.10.14 and later)
      r, got, err = replies(c, n, last)
    elseif sent then
      if n == 1 then
        r, err = read(c)
        if r ~= nil then got = 1 end
      elseif last then
        for i = 1, n do
          local v
          v, err = read(c)
          if v == nil then break end
          got = i
          if r == nil and (i == n or (v ~= "OK" and v ~= "QUEUED")) then r = v end
        end
      else
        r = resp.list(n)
        for i = 1, n do
          local v
          v, err = read(c)
          if v == nil then break end
          r[i] = v
          got = i
        end
      end
    end
    if got == n then
      if cos then socket.keepalive(c, node, slot)
      elseif d.closed or IN_NGX or #idle >= node.pool_size then c:close()
      else idle[#idle + 1] = c end
      return r
    end
    c:close()
    -- a kept connection the server had closed (a restart): once more on a new one.
    -- Nothing was read, and a server that closed the connection did not run the command.
    if not (try == 1 and got == 0 and reused and stale_error(err)) then
      return nil, err, true
    end
  end
end

---------------------------------------------------------------------------------------------
-- routing
--
-- Standalone: every command goes to the one node.  Cluster: the slot map (CLUSTER SHARDS,
-- or CLUSTER SLOTS on servers without it) says which master owns a slot; MOVED updates
-- the map and retries (the command did not run), ASK sends ASKING and the command to the
-- importing node once, TRYAGAIN / CLUSTERDOWN / LOADING back off and retry until
-- `timeout`.  A node that cannot be reached makes the driver read the map again (a
-- failover moves its slots to a promoted replica) and retry if the slot has a new owner
-- and the command cannot have run (the connection was never made).

local function node_of(d, name)
  local node = d.nodes[name]
  if not node then
    local host, port = name:match("^(.*):(%d+)$")
    node = d.new_node(host, tonumber(port))
    d.nodes[name] = node
  end
  return node
end

local function parse_shards(d, r)
  local slots = {}
  for _, shard in ipairs(r) do
    local f = {}
    for i = 1, #shard, 2 do f[shard[i]] = shard[i + 1] end
    local master
    for _, nd in ipairs(f.nodes or {}) do
      local n = {}
      for i = 1, #nd, 2 do n[nd[i]] = nd[i + 1] end
      if n.role == "master" and n.health ~= "fail" then master = n end
    end
    if master and f.slots then
      local host = master.endpoint
      if not host or host == "?" or host == "" then host = master.ip end
      local port = d.tls and master["tls-port"] or master.port
      local name = host .. ":" .. tostring(port)
      for i = 1, #f.slots, 2 do
        for s = f.slots[i], f.slots[i + 1] do slots[s] = name end
      end
    end
  end
  return slots
end

local function parse_slots(_, r)
  local slots = {}
  for _, range in ipairs(r) do
    local m = range[3]
    local name = tostring(m[1]) .. ":" .. tostring(m[2])
    for s = range[1], range[2] do slots[s] = name end
  end
  return slots
end

local SHARDS = pack1("CLUSTER", "SHARDS")
local SLOTS = pack1("CLUSTER", "SLOTS")

-- refresh(d): read the slot map from the first node that answers
local function refresh(d)
  local tried, candidates = {}, {}
  for name in pairs(d.nodes) do candidates[#candidates + 1] = name end
  for _, name in ipairs(d.seeds) do candidates[#candidates + 1] = name end
  local last = "no node"
  for _, name in ipairs(candidates) do
    if not tried[name] then
      tried[name] = true
      local node = node_of(d, name)
      local r, err = exchange(d, node, SHARDS, 1)
      local parse = parse_shards
      if is_err(r) then
        r, err = exchange(d, node, SLOTS, 1)
        parse = parse_slots
      end
      if type(r) == "table" and not is_err(r) then
        local slots = parse(d, r)
        if next(slots) then
          d.slots = slots
          d.map_stale = false
          return true
        end
        last = name .. ": an empty slot map"
      else
        last = name .. ": " .. tostring(is_err(r) and r.msg or err)
      end
    end
  end
  return nil, last
end

-- owner(d, slot) -> node, or nil and why (no map, or no master for the slot: during a
-- failover its shard has none until a replica is promoted; the map is read again then)
local function try_owner(d, slot)
  if d.map_stale or not d.slots then
    local ok, err = refresh(d)
    if not ok and not d.slots then return nil, "cluster: cannot read the slot map: " .. err end
  end
  local name = d.slots[slot]
  if not name then
    d.map_stale = true
    return nil, ("cluster: no master serves slot %d"):format(slot)
  end
  return node_of(d, name)
end

local function owner(d, slot)
  local node, why = try_owner(d, slot)
  if not node then failed(why, "connection") end
  return node
end

local ASKING = pack1("ASKING")
local MULTI, EXEC, UNWATCH = pack1("MULTI"), pack1("EXEC"), pack1("UNWATCH")

-- a reply (or list of replies) that redirects: its Err, else nil
local function redirect_of(r, n)
  if n == 1 then
    if is_err(r) then
      local k = resp.err_kind(r)
      if k == "MOVED" or k == "ASK" or k == "TRYAGAIN" or k == "CLUSTERDOWN" or k == "LOADING" then return r, k end
    end
    return nil
  end
  for i = 1, n do
    local v = r[i]
    if is_err(v) then
      local k = resp.err_kind(v)
      if k == "MOVED" or k == "ASK" or k == "TRYAGAIN" or k == "CLUSTERDOWN" or k == "LOADING" then return v, k end
    end
  end
  return nil
end

local function backoff(attempt)
  socket.sleep(min(0.001 * 2 ^ attempt, 0.1) * (0.5 + random()))
end

-- call(d, slot, payload, n): send a command (or a pipeline of n) where `slot` lives and
-- return its reply (a list of n replies); raises STORE_OPERATION_FAILED on connection
-- failures.  A MULTI pipeline (n > 1) that meets ASK is retried as TRYAGAIN: ASKING
-- covers one command, and the slot's migration ends soon.
local function call(d, slot, payload, n, last)
  if not d.cluster then
    local r, err = exchange(d, d.node, payload, n, last)
    if r == nil then
      if type(err) == "table" then error(err, 0) end
      conn_failed(d.node, err)
    end
    return r
  end
  local deadline, asking
  for attempt = 1, 1000 do
    local node, why = asking, nil
    if not node then node, why = try_owner(d, slot) end
    local r, err, sent
    if not node then
      -- no master for the slot yet: wait for the promotion, within timeout
      deadline = deadline or socket.now_ms() + d.timeout * 1000
      if socket.now_ms() > deadline then failed(why, "connection") end
      backoff(min(attempt, 6))
    elseif asking then
      r, err, sent = exchange(d, node, ASKING .. payload, n + 1, last)
      if r ~= nil and not last then                -- (last: ASKING's OK is passed over)
        if n == 1 then r = r[2] else table.remove(r, 1) end
      end
      asking = nil
    else
      r, err, sent = exchange(d, node, payload, n, last)
    end
    if not node then
      -- (waited above)
    elseif r == nil then
      if type(err) == "table" and err.reason ~= "connection" then error(err, 0) end
      local msg = type(err) == "table" and err.message or (node.name .. ": " .. tostring(err))
      -- the node is gone: a failover may move its slots to a promoted replica.  Retried
      -- only if the command cannot have run (no connection was made).
      d.map_stale = true
      if sent then failed(msg, "connection") end
      deadline = deadline or socket.now_ms() + d.timeout * 1000
      if socket.now_ms() > deadline then failed(msg, "connection") end
      pcall(refresh, d)
      backoff(min(attempt, 6))
    else
      local e, kind = redirect_of(r, last and 1 or n)
      if not e then return r end
      if attempt > 30 then failed("cluster: too many redirections: " .. e.msg, "connection") end
      if kind == "MOVED" then
        local s, where = e.msg:match("^MOVED (%d+) (%S+)")
        -- several slots probably moved: read the map again, and trust the redirection
        -- for this slot whatever the map (a node can answer before the map says so)
        pcall(refresh, d)
        if s and d.slots then d.slots[tonumber(s)] = where end
      elseif kind == "ASK" and n == 1 then
        asking = node_of(d, e.msg:match("^ASK %d+ (%S+)"))
      else
        deadline = deadline or socket.now_ms() + d.timeout * 1000
        if socket.now_ms() > deadline then failed("cluster: " .. e.msg, "connection") end
        backoff(min(attempt, 6))
      end
    end
  end
  failed("cluster: too many retries", "connection")
end

-- the server's error for a command, as zeltkv errors
local function server_error(e, what)
  local msg = e.msg
  if find(msg, "not an integer", 1, true) or find(msg, "overflow", 1, true) then
    if find(msg, "overflow", 1, true) then raise("INVALID_VALUE", what .. ": result out of range") end
    raise("INVALID_VALUE", what .. ": the stored value is not an integer")
  end
  local k = resp.err_kind(e)
  local reason = "server"
  if k == "OOM" then reason = "full"
  elseif k == "NOAUTH" or k == "WRONGPASS" or k == "NOPERM" then reason = "auth"
  elseif k == "READONLY" or k == "CLUSTERDOWN" or k == "LOADING" or k == "MASTERDOWN" then reason = "connection" end
  failed(what .. ": " .. msg, reason)
end

---------------------------------------------------------------------------------------------
-- transactions
--
-- atomic(fn) on this driver is optimistic (docs/redis.md, "atomic"):
--   * the first time fn touches a key, one round trip WATCHes it and reads its value and
--     PTTL; later reads come from fn's own writes (the overlay) or that first read;
--   * writes stay in the overlay; when fn returns, MULTI, one command per written key and
--     EXEC go out as one pipeline: all of them run, or (a watched key changed) none;
--   * EXEC refused: fn runs again after a jittered backoff, until lock_timeout;
--   * fn raises: UNWATCH, nothing was sent, the same error is raised again;
--   * a nested atomic keeps a journal of the overlay entries it replaced, and puts them
--     back if it raises.
-- The transaction belongs to the coroutine that opened it (one driver serves concurrent
-- nginx requests, each its own coroutine); calls from another coroutine are not part of it.

local MAIN = {}                               -- key of Lua 5.1's main thread (running() = nil)

local function current_tx(d)
  local co = co_running()
  return d.txs[co or MAIN]
end

local NONE = {}                               -- journal: "the key had no overlay entry"
local RETRY = setmetatable({}, { __tostring = function() return "zeltkv: atomic retry" end })

local now_ms = socket.now_ms

local function cross_slot(tx, s)
  failed(("atomic: root namespaces '%s' and '%s' live in different cluster slots; one atomic "
          .. "works within one root namespace"):format(tostring(tx.root), tostring(s.root)), "cluster")
end

-- the first key fixes the transaction's slot (cluster) and connection
local function tx_route(tx, s, rk)
  local d = tx.d
  if d.cluster then
    local slot = slot_of(s, rk)
    if tx.slot == nil then tx.slot, tx.root = slot, s.root
    elseif tx.slot ~= slot then cross_slot(tx, s) end
  end
end

local function tx_conn(tx)
  if tx.broken then error(tx.broken, 0) end
  if not tx.conn then
    local d = tx.d
    tx.node = d.cluster and owner(d, tx.slot) or d.node
    tx.conn = acquire(d, tx.node, tx.cos)
  end
  return tx.conn
end

-- the connection failed inside fn: its WATCHes are gone, so the attempt cannot commit
local function tx_lost(tx, err)
  local conn = tx.conn
  tx.conn = nil
  if conn then conn:close() end
  local e = setmetatable({ code = "STORE_OPERATION_FAILED", reason = "connection",
                           message = ("atomic: %s: %s"):format(tx.node and tx.node.name or "?",
                                                               tostring(err)) }, ERR_MT)
  tx.broken = e
  error(e, 0)
end

-- the cached server state of rk, read (WATCH, GET, PTTL in one round trip) on first touch:
-- { text = string | false, exp = absolute ms | false, server = true }
local function tx_load(tx, s, rk)
  local c = tx.cache[rk]
  if c then return c end
  tx_route(tx, s, rk)
  local conn = tx_conn(tx)
  tx.d.round_trips = tx.d.round_trips + 1
  local ok, err = conn:send(cmd1("WATCH", rk) .. cmd1("GET", rk) .. cmd1("PTTL", rk))
  local w, v, p
  if ok then w, err = read(conn) end
  if w ~= nil then v, err = read(conn) end
  if v ~= nil then p, err = read(conn) end
  if p == nil then tx_lost(tx, err) end
  local e = is_err(w) and w or is_err(v) and v or is_err(p) and p or nil
  if e then
    local k = resp.err_kind(e)
    if k == "MOVED" or k == "ASK" or k == "TRYAGAIN" or k == "CLUSTERDOWN" then
      if k == "MOVED" then tx.d.map_stale = true end
      tx.broken = RETRY                      -- the attempt restarts on the slot's owner
      error(RETRY, 0)
    end
    if k ~= "WRONGTYPE" then server_error(e, "atomic") end
    v = false                                -- a key of another Redis type: not a value
  end
  -- other_type: a list of the shdict face (or any non-string key): absent to get/set, but
  -- shdict's incr must answer "not a number" on it, never make a number over it
  c = { text = v or false, exp = false, server = true, other_type = e ~= nil or nil }
  if v and p >= 0 then c.exp = now_ms() + max(p, 1) end
  tx.cache[rk] = c
  return c
end

-- the key's state as fn sees it (overlay, then cache), or nil when absent or expired
local function tx_view(tx, s, rk)
  local e = tx.overlay[rk]
  if e == nil then e = tx_load(tx, s, rk) end
  if e.text == false then return nil end
  if e.exp and e.exp <= now_ms() then return nil end
  return e
end

-- put the new state of rk into the overlay (journalled when nested)
local function tx_put(tx, s, rk, entry)
  tx_route(tx, s, rk)
  if tx.depth > 1 then
    local j = tx.journal
    j[#j + 1] = rk
    j[#j + 1] = tx.overlay[rk] or NONE
  end
  tx.overlay[rk] = entry
  if not tx.dirty[rk] then
    tx.dirty[rk] = true
    tx.order[#tx.order + 1] = rk
  end
end

-- one command per written key, making the server hold what the overlay says:
--   deleted (or expired meanwhile) -> UNLINK   only the ttl changed -> PEXPIRE
--   new value, server's ttl kept -> SET KEEPTTL (incr)   new value -> SET [PX]
local function commit_cmds(tx)
  local cmds, t = {}, now_ms()
  for _, rk in ipairs(tx.order) do
    local e = tx.overlay[rk]
    if e then
      if e.text == false or (e.exp and e.exp <= t) then
        cmds[#cmds + 1] = cmd1("UNLINK", rk)
      elseif not e.vdirty then
        cmds[#cmds + 1] = cmd2("PEXPIRE", rk, int_text(max(1, floor(e.exp - t + 0.5))))
      elseif e.keep and e.exp then
        cmds[#cmds + 1] = cmd3("SET", rk, e.text, "KEEPTTL")
      elseif e.exp then
        cmds[#cmds + 1] = cmd4("SET", rk, e.text, "PX", int_text(max(1, floor(e.exp - t + 0.5))))
      else
        cmds[#cmds + 1] = cmd2("SET", rk, e.text)
      end
    end
  end
  return cmds
end


local function tx_end(tx, keep)
  local conn = tx.conn
  tx.conn = nil
  if not conn then return end
  if keep then release(tx.d, tx.node, conn, tx.cos) else conn:close() end
end

local function redirected(replies, n)
  for i = 1, n do
    local v = replies[i]
    if is_err(v) then
      local k = resp.err_kind(v)
      if k == "MOVED" or k == "ASK" or k == "TRYAGAIN" or k == "CLUSTERDOWN" then return k end
    end
  end
end

-- MULTI, the writes and EXEC in one round trip: true (committed), false (a watched key
-- changed, or the slot moved: run fn again), or raises
local function tx_commit(tx)
  if tx.broken == RETRY then return false end
  local cmds = commit_cmds(tx)
  if #cmds == 0 and next(tx.cache) == nil then return true end   -- touched nothing
  local d, conn = tx.d, tx_conn(tx)
  d.round_trips = d.round_trips + 1
  local ok, err = conn:send(MULTI .. concat(cmds) .. EXEC)
  local replies, n = {}, #cmds + 2
  if ok then
    for i = 1, n do
      local v
      v, err = read(conn)
      if v == nil then ok = false; break end
      replies[i] = v
    end
  end
  if not ok then
    tx.conn = nil
    conn:close()
    failed(("atomic: %s: %s (the commit may or may not have been applied)")
           :format(tx.node.name, tostring(err)), "connection")
  end
  local res = replies[n]
  if res == false then tx_end(tx, true); return false end       -- a watched key changed
  if is_err(res) then
    tx_end(tx, true)
    local k = redirected(replies, n)
    if k then
      if k == "MOVED" then tx.d.map_stale = true end
      return false
    end
    for i = 2, n - 1 do if is_err(replies[i]) then server_error(replies[i], "atomic") end end
    server_error(res, "atomic")
  end
  tx_end(tx, true)
  for i = 1, #res do
    -- cannot happen (every write was checked before MULTI); said if it does
    if is_err(res[i]) then server_error(res[i], "atomic (some writes were applied)") end
  end
  return true
end

local function pack_n(...) return { n = select("#", ...), ... } end

local function run_atomic(d, self, fn, ...)
  -- a coded error, as the C binding's atomic() raises (docs/reference.md, atomic)
  if type(fn) ~= "function" then raise("INVALID_VALUE", "atomic: fn must be a function, got " .. type(fn)) end
  local co = co_running() or MAIN
  local tx = d.txs[co]
  if tx then                                  -- nested: a savepoint in the journal
    tx.depth = tx.depth + 1
    local mark = #tx.journal
    local r = pack_n(pcall(fn, self, ...))
    tx.depth = tx.depth - 1
    if not r[1] then
      local j = tx.journal
      for i = #j - 1, mark + 1, -2 do
        local prev = j[i + 1]
        tx.overlay[j[i]] = prev ~= NONE and prev or nil
        j[i], j[i + 1] = nil, nil
      end
      error(r[2], 0)
    end
    if tx.depth == 1 then tx.journal = {} end
    return unpack(r, 2, r.n)
  end
  local deadline = now_ms() + d.lock_timeout * 1000
  local cos = use_cosockets()
  local attempt = 0
  while true do
    attempt = attempt + 1
    tx = { d = d, depth = 1, cache = {}, overlay = {}, dirty = {}, order = {}, journal = {},
           cos = cos }
    d.txs[co] = tx
    d.ntx = d.ntx + 1
    d.attempts = d.attempts + 1
    local r = pack_n(pcall(fn, self, ...))
    local ok, committed = true, false
    if r[1] then ok, committed = pcall(tx_commit, tx) end
    d.txs[co] = nil
    d.ntx = d.ntx - 1
    if r[1] then
      if not ok then tx_end(tx, false); error(committed, 0) end
      if committed then return unpack(r, 2, r.n) end
    elseif tx.broken ~= RETRY then
      -- fn raised: nothing but reads was sent; UNWATCH, or close if that fails
      if tx.conn then
        local conn = tx.conn
        d.round_trips = d.round_trips + 1
        local sent = conn:send(UNWATCH)
        local v = sent and read(conn)
        tx_end(tx, v == "OK")
      end
      error(r[2], 0)
    else
      tx_end(tx, false)
    end
    d.conflicts = d.conflicts + 1
    if now_ms() > deadline then
      failed(("atomic: gave up after %d attempts in %g s: other clients kept changing its keys")
             :format(attempt, d.lock_timeout), "conflict")
    end
    if d.cluster and d.map_stale then pcall(refresh, d) end
    backoff(min(attempt, 5))
  end
end

local function no_walk_in_tx(d, what)
  if d.ntx > 0 and current_tx(d) then
    failed(what .. ": not available inside atomic on the redis driver (it walks every master)",
           "unsupported")
  end
end

---------------------------------------------------------------------------------------------
-- Store

-- what every keyed method starts with: the driver, the full key, and the transaction of
-- this coroutine (nil outside atomic)
local function begin(self, name, key)
  if not STORES[self] then argerr("zeltkv.Store", name, self, 4) end
  local d = self.drv
  if d.closed then failed("closed", "closed") end
  -- the common key (a string of 1 to 65535 bytes) without a call; check_key for the rest
  local rk
  if type(key) == "string" and key ~= "" and #key <= MAX_KEY then rk = self.kbase .. key
  else rk = self.kbase .. check_key(key) end
  if d.ntx > 0 then return d, rk, current_tx(d) end
  return d, rk, nil
end

function Store.namespace(self, name)
  local d = check_store(self, "namespace")
  check_ns_name(name)
  return new_store(d, self.base .. "/" .. esc(name), self.slot, self.root)
end

function Store.get(self, key)
  local d, rk, tx = begin(self, "get", key)
  if tx then
    local e = tx_view(tx, self, rk)
    if e then return decode(e.text) end      -- (which may be false: a stored false)
    return nil
  end
  local v = call(d, self.slot or slotlib.slot(rk), cmd1("GET", rk), 1)
  if v == false then return nil end
  if getmetatable(v) == Err then              -- is_err(v), without a call
    if resp.err_kind(v) == "WRONGTYPE" then
      failed("get: " .. v.msg, "server")
    end
    server_error(v, "get")
  end
  return decode(v)
end

function Store.set(self, key, value, ttl)
  local d, rk, tx = begin(self, "set", key)
  local text = encode(value)
  local ms, mst
  if ttl ~= nil then ms, mst = opt_ttl(ttl) end
  if tx then
    tx_put(tx, self, rk, { text = text, exp = ms and now_ms() + ms or false, vdirty = true })
    return true
  end
  local r
  if ms then r = call(d, self.slot or slotlib.slot(rk), cmd4("SET", rk, text, "PX", mst), 1)
  else r = call(d, self.slot or slotlib.slot(rk), cmd2("SET", rk, text), 1) end
  if r ~= "OK" then server_error(is_err(r) and r or setmetatable({ msg = tostring(r) }, Err), "set") end
  return true
end

function Store.del(self, key)
  local d, rk, tx = begin(self, "del", key)
  if tx then
    local e = tx_view(tx, self, rk)
    if not e then return false end
    tx_put(tx, self, rk, { text = false, exp = false, vdirty = true })
    return true
  end
  local r = call(d, self.slot or slotlib.slot(rk), cmd1("UNLINK", rk), 1)
  if is_err(r) then server_error(r, "del") end
  return r == 1
end

function Store.has(self, key)
  local d, rk, tx = begin(self, "has", key)
  if tx then return tx_view(tx, self, rk) ~= nil end
  local r = call(d, self.slot or slotlib.slot(rk), cmd1("EXISTS", rk), 1)
  if is_err(r) then server_error(r, "has") end
  return r == 1
end

function Store.expire(self, key, ttl)
  local d, rk, tx = begin(self, "expire", key)
  local ms, mst = opt_ttl(ttl, true)
  if tx then
    local e = tx_view(tx, self, rk)
    if not e then return false end
    tx_put(tx, self, rk, { text = e.text, exp = now_ms() + ms, vdirty = e.vdirty })
    return true
  end
  local r = call(d, self.slot or slotlib.slot(rk), cmd2("PEXPIRE", rk, mst), 1)
  if is_err(r) then server_error(r, "expire") end
  return r == 1
end

local function ttl_of_ms(p)
  if p < 1 then p = 1 end
  return p / 1000
end

function Store.ttl(self, key)
  local d, rk, tx = begin(self, "ttl", key)
  if tx then
    local e = tx_view(tx, self, rk)
    if not e then return nil end
    if not e.exp then return huge end
    return ttl_of_ms(e.exp - now_ms())
  end
  local r = call(d, self.slot or slotlib.slot(rk), cmd1("PTTL", rk), 1)
  if is_err(r) then server_error(r, "ttl") end
  if r == -2 then return nil end
  if r == -1 then return huge end
  return ttl_of_ms(r)
end

-- incr's result.  Where numbers are doubles, resp gives an integer reply beyond +-2^53 as
-- its text (it would not be exact): such a result is taken back (DECRBY) and refused, so
-- the range is that of the other drivers there.
local function incr_result(d, slot, rk, by, r)
  if type(r) == "number" then return r end
  if is_err(r) then server_error(r, "incr") end
  local back = call(d, slot, cmd2("DECRBY", rk, int_text(by)), 1)
  if is_err(back) then server_error(back, "incr") end
  raise("INVALID_VALUE", "incr: result out of range")
end

-- incr with a ttl on create: MULTI; SET rk 0 PX ms NX; INCRBY rk by; EXEC, as one string
-- made by one concatenation (Lua 5.4 copies each intermediate string: the three commands
-- made apart and joined cost 0.4 us more, a tenth of the call's CPU there)
local blen, bulk = resp.len, resp.bulk
local INCR_TTL_1 = MULTI .. "*6\r\n" .. bulk("SET")
local INCR_TTL_2 = "\r\n" .. bulk("0") .. bulk("PX")
local INCR_TTL_3 = "\r\n" .. bulk("NX") .. "*3\r\n" .. bulk("INCRBY")
local INCR_TTL_4 = "\r\n" .. EXEC
local function incr_ttl_cmd(rk, mst, byt)
  local l = blen(#rk)
  return INCR_TTL_1 .. l .. rk .. INCR_TTL_2 .. blen(#mst) .. mst .. INCR_TTL_3 .. l .. rk .. "\r\n"
         .. blen(#byt) .. byt .. INCR_TTL_4
end

function Store.incr(self, key, by, ttl)
  local d, rk, tx = begin(self, "incr", key)
  by = check_by(by)
  local ms, mst
  if ttl ~= nil then ms, mst = opt_ttl(ttl) end
  if tx then
    local e = tx_view(tx, self, rk)
    if not e then
      tx_put(tx, self, rk, { text = int_text(by), exp = ms and now_ms() + ms or false, vdirty = true })
      return by
    end
    local cur = int_of(e.text)
    if cur == nil then raise("INVALID_VALUE", "incr: the stored value is not an integer") end
    local n = cur + by
    if HAS_INT then
      if (by > 0 and n < cur) or (by < 0 and n > cur) then raise("INVALID_VALUE", "incr: result out of range") end
    elseif n > LIMIT or n < -LIMIT then
      raise("INVALID_VALUE", "incr: result out of range")
    end
    -- the ttl stays: the server's (KEEPTTL, exact) or the one fn gave
    tx_put(tx, self, rk, { text = int_text(n), exp = e.exp, keep = e.server or e.keep, vdirty = true })
    return n
  end
  local slot = self.slot or slotlib.slot(rk)
  if not ms then return incr_result(d, slot, rk, by, call(d, slot, cmd2("INCRBY", rk, int_text(by)), 1)) end
  -- one round trip: MULTI; SET k 0 PX ms NX (creates it with the ttl only if absent);
  -- INCRBY; EXEC.  INCRBY can fail only on an existing key, and then nothing changed.
  -- EXEC's reply, or the error of a command refused when queued (then EXEC aborted and
  -- nothing ran: no DECRBY may "undo" it)
  local res = call(d, slot, incr_ttl_cmd(rk, mst, int_text(by)), 4, true)
  if type(res) ~= "table" or getmetatable(res) == Err then
    server_error(is_err(res) and res or setmetatable({ msg = "EXEC: " .. tostring(res) }, Err), "incr")
  end
  return incr_result(d, slot, rk, by, res[2])
end

function Store.setnx(self, key, value, ttl)
  local d, rk, tx = begin(self, "setnx", key)
  local text = encode(value)
  local ms, mst
  if ttl ~= nil then ms, mst = opt_ttl(ttl) end
  if tx then
    if tx_view(tx, self, rk) then return false end
    tx_put(tx, self, rk, { text = text, exp = ms and now_ms() + ms or false, vdirty = true })
    return true
  end
  local slot = self.slot or slotlib.slot(rk)
  local r
  if ms then
    r = call(d, slot, cmd5("SET", rk, text, "NX", "PX", mst), 1)
  else
    r = call(d, slot, cmd3("SET", rk, text, "NX"), 1)
  end
  if r == "OK" then return true end
  if getmetatable(r) == Err then server_error(r, "setnx") end
  return false
end

function Store.atomic(self, fn, ...)
  local d = check_store(self, "atomic")
  return run_atomic(d, self, fn, ...)
end

-- the nodes a walk of this store visits: the root's slot owner, or (shard = "key", or
-- the whole driver) every master
local function walk_nodes(d, slot)
  if not d.cluster then return { d.node } end
  if slot then return { owner(d, slot) } end
  if d.map_stale or not d.slots then refresh(d) end
  local seen, list = {}, {}
  for s = 0, 16383 do
    local name = d.slots[s]
    if name and not seen[name] then
      seen[name] = true
      list[#list + 1] = node_of(d, name)
    end
  end
  return list
end

local SCAN_COUNT = "1000"

-- scan(d, slot, pattern): an iterator over the keys matching pattern, each once.  SCAN
-- may return a key twice; the seen-set costs memory in proportion to the walk.
local function scan(d, slot, pattern)
  local nodes = walk_nodes(d, slot)
  local ni, cursor, page, pi = 1, "0", {}, 0
  local seen, started = {}, false
  return function()
    -- every step, not only those that ask the server: after close() the rest of a page is
    -- "closed" too, as on the other drivers
    if d.closed then failed("closed", "closed") end
    while true do
      pi = pi + 1
      local k = page[pi]
      if k then
        if not seen[k] then
          seen[k] = true
          return k
        end
      else
        if started and cursor == "0" then
          ni = ni + 1
          started = false
          if ni > #nodes then return nil end
        end
        local node = nodes[ni]
        local r, err = exchange(d, node, pack1("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT), 1)
        if r == nil then
          if type(err) == "table" then error(err, 0) end
          conn_failed(node, err)
        end
        if is_err(r) then server_error(r, "keys") end
        started = true
        cursor, page, pi = r[1], r[2], 0
      end
    end
  end
end

-- a glob pattern matching exactly the bytes of s (the key part of a prefix)
local function glob_quote(s) return (gsub(s, "[%*%?%[%]\\]", "\\%0")) end

-- a walk inside atomic: SCAN on the transaction's connection, every key found WATCHed
-- (a key another client changes or deletes makes fn run again; one it adds is not seen),
-- merged with fn's own writes.  Returns the sorted list of live full keys of the
-- namespace (subtree: and of its children).
local function tx_walk(tx, s, subtree, what)
  local d = tx.d
  if d.cluster and not s.slot then
    failed(what .. ": not available inside atomic with shard = \"key\" (the keys live in every slot)", "cluster")
  end
  tx_route(tx, s, s.kbase)
  local conn = tx_conn(tx)
  local kbase, cbase = s.kbase, s.base .. "/"
  local pattern = glob_quote(s.base) .. (subtree and "[:/]*" or ":*")
  local found, cursor = {}, "0"
  repeat
    d.round_trips = d.round_trips + 1
    local ok, err = conn:send(pack1("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT))
    local r
    if ok then r, err = read(conn) end
    if r == nil then tx_lost(tx, err) end
    if is_err(r) then server_error(r, what) end
    cursor = r[1]
    local page = r[2]
    if #page > 0 then
      local w = { "WATCH" }
      for i = 1, #page do
        found[page[i]] = true
        w[i + 1] = page[i]
      end
      d.round_trips = d.round_trips + 1
      ok, err = conn:send(pack({ w }))
      local v
      if ok then v, err = read(conn) end
      if v == nil then tx_lost(tx, err) end
      if is_err(v) then server_error(v, what) end
    end
  until cursor == "0"
  local t = now_ms()
  for rk, e in pairs(tx.overlay) do
    if sub(rk, 1, #kbase) == kbase or (subtree and sub(rk, 1, #cbase) == cbase) then
      found[rk] = e.text ~= false and not (e.exp and e.exp <= t) or nil
    end
  end
  for rk, c in pairs(tx.cache) do           -- read as absent or expired inside fn
    if found[rk] and tx.overlay[rk] == nil and (c.text == false or (c.exp and c.exp <= t)) then
      found[rk] = nil
    end
  end
  local list = {}
  for rk in pairs(found) do list[#list + 1] = rk end
  table.sort(list)
  return list
end

function Store.keys(self)
  local d = check_store(self, "keys")
  local skip = #self.kbase
  if d.ntx > 0 then
    local tx = current_tx(d)
    if tx then
      local list, i = tx_walk(tx, self, false, "keys"), 0
      return function()
        -- stepped after close() (the iterator kept past atomic): "closed", as scan's
        if d.closed then failed("closed", "closed") end
        i = i + 1
        local k = list[i]
        if k then return sub(k, skip + 1) end
      end
    end
  end
  local it = scan(d, self.slot, glob_quote(self.kbase) .. "*")
  return function()
    local k = it()
    if k then return sub(k, skip + 1) end
  end
end

function Store.count(self)
  local d = check_store(self, "count")
  if d.ntx > 0 then
    local tx = current_tx(d)
    if tx then return #tx_walk(tx, self, false, "count") end
  end
  local n = 0
  for _ in scan(d, self.slot, glob_quote(self.kbase) .. "*") do n = n + 1 end
  return n
end

-- the names that follow `head` in the keys `it` yields (up to the pattern `stop`), each
-- once: the child namespaces of a store, or the root namespaces of a driver
local function child_names(it, head, stop)
  local skip, seen = #head, {}
  return function()
    while true do
      local k = it()
      if not k then return nil end
      if sub(k, 1, skip) == head then
        local e = k:match(stop, skip + 1)
        if e ~= "" and not seen[e] then
          seen[e] = true
          return unesc(e)
        end
      end
    end
  end
end

function Store.namespaces(self)
  local d = check_store(self, "namespaces")
  local base = self.base .. "/"
  local it
  if d.ntx > 0 then
    local tx = current_tx(d)
    if tx then
      local list, i = tx_walk(tx, self, true, "namespaces"), 0
      it = function()
        if d.closed then failed("closed", "closed") end
        i = i + 1
        return list[i]
      end
    end
  end
  return child_names(it or scan(d, self.slot, glob_quote(base) .. "*"), base, "^[^:/]*")
end

-- delete the keys `it` yields, UNLINK in batches (one slot per batch in a cluster)
local function unlink_all(d, it, what)
  local total, batch, bslot = 0, {}, nil
  local function flush()
    if #batch == 0 then return end
    local cmd = { "UNLINK" }
    for i = 1, #batch do cmd[i + 1] = batch[i] end
    local r = call(d, bslot or 0, pack({ cmd }), 1)
    if is_err(r) then server_error(r, what) end
    total = total + r
    batch = {}
  end
  for k in it do
    local s = d.cluster and slotlib.slot(k) or nil
    if s ~= bslot or #batch >= 500 then flush(); bslot = s end
    batch[#batch + 1] = k
  end
  flush()
  return total
end

function Store.clear(self)
  local d = check_store(self, "clear")
  if d.ntx > 0 then
    local tx = current_tx(d)
    if tx then
      local list = tx_walk(tx, self, true, "clear")
      for _, rk in ipairs(list) do tx_put(tx, self, rk, { text = false, exp = false, vdirty = true }) end
      return #list
    end
  end
  return unlink_all(d, scan(d, self.slot, glob_quote(self.base) .. "[:/]*"), "clear")
end

Store.shdict = function(self)
  check_store(self, "shdict")
  return require("zeltkv.shdict").new(self)
end

---------------------------------------------------------------------------------------------
-- raw access for store:shdict() (lua/zeltkv/shdict.lua builds ngx.shared.DICT on these;
-- their contract is the C binding's, src/lua/raw.c).  Items keep the value
-- forms above, so the Store API and the dict read each other's values; an item with user
-- flags is 0xFE <flags> ":" <value form>; a list is a Redis list of shdict's item
-- encoding.  These calls are not part of an atomic() (each is one command, or its own).

local T_STRING, T_INT, T_FLOAT, T_BOOL, T_LIST = 1, 2, 3, 4, 6
local RC_OK, RC_NOTFOUND, RC_EXISTS, RC_ETYPE = 0, 1, 2, -5
local FE = "\254"

local function raw_type(v)
  local t = type(v)
  if t == "string" then return T_STRING end
  if t == "boolean" then return T_BOOL end
  if t == "number" then
    if HAS_INT then return math_type(v) == "integer" and T_INT or T_FLOAT end
    if v == floor(v) and v >= -LIMIT and v <= LIMIT and not (v == 0 and 1 / v < 0) then return T_INT end
    return T_FLOAT
  end
  return T_JSON
end

local NONFINITE = { nan = 0 / 0, inf = huge, ["-inf"] = -huge }

-- stored text -> type, value, flags
local function raw_decode(text)
  local flags = 0
  if byte(text, 1) == 254 then
    local f, rest = text:match("^\254(%d+):(.*)$")
    if f then
      flags, text = tonumber(f), rest
      local x = NONFINITE[rest]
      if x then return T_FLOAT, x, flags end
    end
  end
  local v = decode(text)
  return raw_type(v), v, flags
end

local function raw_encode(t, value, flags)
  local text
  if t == T_INT then text = int_text(value)
  elseif t == T_FLOAT then
    -- shdict stores NaN and infinities; the value forms have none: the flags form has
    if value ~= value or value == huge or value == -huge then
      return FE .. int_text(flags or 0) .. ":" .. (value ~= value and "nan" or value > 0 and "inf" or "-inf")
    end
    text = encode(HAS_INT and value + 0.0 or value)
    if not HAS_INT and not find(text, "[%.eEn]") then text = text .. ".0" end
  elseif t == T_BOOL then text = value and "true" or "false"
  else text = encode(value) end
  if flags and flags ~= 0 then text = FE .. int_text(flags) .. ":" .. text end
  return text
end

function Store._rawget(self, key)
  local d = check_store(self, "_rawget")
  local rk = self.kbase .. check_key(key)
  local slot = self.slot or slotlib.slot(rk)
  local v = call(d, slot, cmd1("GET", rk), 1)
  if v == false then return nil end
  if is_err(v) then
    if resp.err_kind(v) ~= "WRONGTYPE" then server_error(v, "get") end
    local n = call(d, slot, cmd1("LLEN", rk), 1)
    if is_err(n) then return T_JSON + 100, "", 0, false end      -- a foreign Redis type
    return T_LIST, fmt("%08x", n), 0, false
  end
  local t, val, flags = raw_decode(v)
  return t, val, flags, false
end

function Store._rawset(self, key, t, value, flags, ttl_ms, setflags)
  local d = check_store(self, "_rawset")
  local rk = self.kbase .. check_key(key)
  local cmd = { "SET", rk, raw_encode(t, value, flags) }
  if ttl_ms and ttl_ms > 0 then cmd[4], cmd[5] = "PX", int_text(ttl_ms) end
  setflags = setflags or 0
  if setflags % 2 == 1 then cmd[#cmd + 1] = "NX"
  elseif setflags % 4 >= 2 then cmd[#cmd + 1] = "XX" end
  local r = call(d, self.slot or slotlib.slot(rk), pack({ cmd }), 1)
  if is_err(r) then server_error(r, "set") end
  if r == false then return setflags % 2 == 1 and RC_EXISTS or RC_NOTFOUND, false end
  return RC_OK, false
end

-- the drop-in's ttl (the other drivers count it from their coarse clock): Redis's own clock
Store._ttl_coarse = Store.ttl

function Store._expire_ms(self, key, ms)
  local d = check_store(self, "_expire_ms")
  local rk = self.kbase .. check_key(key)
  local r
  if ms and ms > 0 then r = call(d, self.slot or slotlib.slot(rk), cmd2("PEXPIRE", rk, int_text(ms)), 1)
  else
    local slot = self.slot or slotlib.slot(rk)
    r = call(d, slot, cmd1("EXISTS", rk) .. cmd1("PERSIST", rk), 2)[1]
  end
  if is_err(r) then server_error(r, "expire") end
  return r == 1 and RC_OK or RC_NOTFOUND
end

-- shdict's incr: a number (integer or float) plus by; a missing key is created holding
-- init + by (ttl init_ttl_ms) when `create`, else not found.  Integers with an integral
-- init take one round trip (MULTI; SET NX [PX]; INCRBY; EXEC); the rest an atomic().
function Store._incr_num(self, key, by, create, init, ttl_ms)
  local d = check_store(self, "_incr_num")
  local k = check_key(key)
  local rk = self.kbase .. k
  local integral = by == floor(by) and by >= -LIMIT and by <= LIMIT
  init = init or 0
  if create and integral and init == floor(init) and init >= -LIMIT and init <= LIMIT then
    local slot = self.slot or slotlib.slot(rk)
    local set = { "SET", rk, int_text(init) }
    if ttl_ms and ttl_ms > 0 then set[4], set[5] = "PX", int_text(ttl_ms) end
    set[#set + 1] = "NX"
    local r = call(d, slot, MULTI .. pack({ set }) .. cmd2("INCRBY", rk, int_text(by)) .. EXEC, 4)
    local res = r[4]
    if type(res) == "table" and type(res[2]) == "number" then return RC_OK, res[2] end
    if type(res) == "table" and is_err(res[2]) and resp.err_kind(res[2]) == "WRONGTYPE" then return RC_ETYPE end
    -- not an integer there (a float, flags, a list...): the general way below
  end
  local rc, result = RC_OK, nil
  run_atomic(d, self, function()
    rc, result = RC_OK, nil
    local tx = current_tx(d)
    local e = tx_view(tx, self, rk)
    if not e then
      local c = tx.overlay[rk] == nil and tx.cache[rk]
      if c and c.other_type then rc = RC_ETYPE; return end   -- a list: shdict's "not a number"
      if not create then rc = RC_NOTFOUND; return end
      result = init + by
      tx_put(tx, self, rk, { text = raw_encode(raw_type(result), result, 0),
                             exp = (ttl_ms and ttl_ms > 0) and now_ms() + ttl_ms or false, vdirty = true })
      return
    end
    local t, v, flags = raw_decode(e.text)
    if t ~= T_INT and t ~= T_FLOAT then rc = RC_ETYPE; return end
    result = v + by
    local rt = (t == T_INT and integral and result >= -LIMIT and result <= LIMIT) and T_INT or T_FLOAT
    tx_put(tx, self, rk, { text = raw_encode(rt, result, flags), exp = e.exp, keep = e.server or e.keep,
                           vdirty = true })
  end)
  if rc ~= RC_OK then return rc end
  return RC_OK, result
end

function Store._flush_all(self)
  local d = check_store(self, "_flush_all")
  unlink_all(d, scan(d, self.slot, glob_quote(self.kbase) .. "*"), "flush_all")
end

function Store._flush_expired(self)
  check_store(self, "_flush_expired")
  return 0                                    -- the server frees expired keys itself
end

-- nothing, or "closed": the drop-in asks it before answering without the store (src/lua/raw.c)
function Store._live(self)
  check_store(self, "_live")
end

function Store._space(self)
  check_store(self, "_space")
  return nil                                  -- the server's maxmemory: not per store
end

function Store._keys_list(self, max)
  check_store(self, "_keys_list")
  local list = {}
  for k in Store.keys(self) do
    list[#list + 1] = k
    if max and max > 0 and #list >= max then break end
  end
  return list
end

-- an item (tag, payload) as a Redis list element: shdict.lua's item encoding (the tag, 8 hex
-- digits of payload length, the payload, the 8 digits again), which _list_pop reads
function Store._list_push(self, key, left, tag, payload)
  local d = check_store(self, "_list_push")
  local rk = self.kbase .. check_key(key)
  local h = fmt("%08x", #payload)
  local r = call(d, self.slot or slotlib.slot(rk),
                 cmd2(left and "LPUSH" or "RPUSH", rk, tag .. h .. payload .. h), 1)
  if is_err(r) then
    if resp.err_kind(r) == "WRONGTYPE" then return RC_ETYPE end
    server_error(r, "push")
  end
  return RC_OK, r
end

function Store._list_pop(self, key, left)
  local d = check_store(self, "_list_pop")
  local rk = self.kbase .. check_key(key)
  local r = call(d, self.slot or slotlib.slot(rk), cmd1(left and "LPOP" or "RPOP", rk), 1)
  if r == false then return RC_NOTFOUND end
  if is_err(r) then
    if resp.err_kind(r) == "WRONGTYPE" then return RC_ETYPE end
    server_error(r, "pop")
  end
  return RC_OK, sub(r, 1, 1), sub(r, 10, -9)
end

function Store._list_len(self, key)
  local d = check_store(self, "_list_len")
  local rk = self.kbase .. check_key(key)
  local r = call(d, self.slot or slotlib.slot(rk), cmd1("LLEN", rk), 1)
  if is_err(r) then
    if resp.err_kind(r) == "WRONGTYPE" then return RC_ETYPE end
    server_error(r, "llen")
  end
  if r == 0 then return RC_NOTFOUND, 0 end
  return RC_OK, r
end

STORE_MT.__tostring = function(self)
  return ("zeltkv.Store (redis %s)%s"):format(self.base, self.drv.closed and " (closed)" or "")
end

---------------------------------------------------------------------------------------------
-- Driver

function Driver.namespace(self, name)
  local d = check_driver(self, "namespace")
  check_ns_name(name)
  return root_store(d, name)
end

function Driver.atomic(self, fn, ...)
  local d = check_driver(self, "atomic")
  return run_atomic(d, self, fn, ...)
end

function Driver.gc(self)
  check_driver(self, "gc")
  return 0                                    -- the server expires keys itself
end

local function all_keys(d)
  local pattern = d.shard == "key" and (d.prefix .. ":*") or (d.prefix .. "{*")
  return scan(d, nil, pattern)
end

function Driver.flush(self)
  local d = check_driver(self, "flush")
  no_walk_in_tx(d, "flush")
  return unlink_all(d, all_keys(d), "flush")
end

local function info_fields(text, into)
  for k, v in text:gmatch("([%w_]+):([^\r\n]*)") do into[k] = v end
  return into
end

function Driver.stats(self)
  local d = check_driver(self, "stats")
  no_walk_in_tx(d, "stats")
  local n = 0
  for _ in all_keys(d) do n = n + 1 end
  local f = {}
  for _, node in ipairs(walk_nodes(d, nil)) do
    local r, err = exchange(d, node, pack1("INFO"), 1)
    if r == nil then conn_failed(node, type(err) == "table" and err.message or err) end
    if is_err(r) then server_error(r, "stats") end
    local one = info_fields(r, {})
    for _, k in ipairs({ "used_memory", "maxmemory", "evicted_keys", "expired_keys" }) do
      f[k] = (f[k] or 0) + (tonumber(one[k]) or 0)
    end
    f.redis_version = one.redis_version or one.valkey_version
  end
  local cap = f.maxmemory
  return {
    driver = "redis", keys = n, bytes_used = f.used_memory, capacity = (cap and cap > 0) and cap or nil,
    evictions = f.evicted_keys, expired_freed = f.expired_keys, gc_runs = 0,
    server_version = f.redis_version, nodes = #walk_nodes(d, nil), cluster = d.cluster or false,
    -- this driver's own counters: requests sent (each a round trip, pipelines count one),
    -- atomic attempts, and attempts that EXEC refused (a watched key changed)
    round_trips = d.round_trips, atomic_attempts = d.attempts, atomic_conflicts = d.conflicts,
  }
end

-- kv:namespaces(): the names of the root namespaces under this driver's prefix, as
-- s:namespaces() gives a store's children (walks every master with SCAN)
function Driver.namespaces(self)
  local d = check_driver(self, "namespaces")
  no_walk_in_tx(d, "namespaces")
  local open = d.shard == "key" and (d.prefix .. ":") or (d.prefix .. "{")
  local stop = d.shard == "key" and "^[^:/]*" or "^[^}]*"
  return child_names(all_keys(d), open, stop)
end

-- kv:dump(path | file [, opts]), kv:load(path | file [, opts]): lua/zeltkv/snapshot.lua
-- (docs/snapshots.md: the file format, and how a Lua driver's dump and load work)
function Driver.dump(self, dst, opts)
  local d = check_driver(self, "dump")
  no_walk_in_tx(d, "dump")
  return require("zeltkv.snapshot").dump(self, dst, opts)
end

function Driver.load(self, src, opts)
  local d = check_driver(self, "load")
  no_walk_in_tx(d, "load")
  return require("zeltkv.snapshot").load(self, src, opts)
end

function Driver.close(self)
  if type(self) ~= "table" or rawget(self, "_tag") ~= DRIVER_TAG then argerr("zeltkv.Driver", "close", self) end
  if self.closed then return end
  if self.ntx > 0 and current_tx(self) then
    failed("close: cannot close a driver inside its own atomic()", "closed")
  end
  self.closed = true
  CLOSES.n = CLOSES.n + 1                     -- as the C drivers count theirs (src/lua/binding.h)
  for _, node in pairs(self.nodes) do
    for i = #node.idle, 1, -1 do
      node.idle[i]:close()
      node.idle[i] = nil
    end
  end
end

DRIVER_MT.__gc = function(self) pcall(Driver.close, self) end
DRIVER_MT.__close = function(self) Driver.close(self) end
DRIVER_MT.__tostring = function(self)
  return ("zeltkv.Driver (redis %s)%s"):format(self.where, self.closed and " (closed)" or "")
end

---------------------------------------------------------------------------------------------
-- zeltkv.redis(opts)

local OTHER_DRIVERS = {
  gc_interval = "memory and shared (the server expires keys itself)",
  size = "shared (the server's memory is its maxmemory setting)",
  max_bytes = "memory (the server's memory is its maxmemory setting)",
  evict = "memory and shared (eviction is the server's maxmemory-policy)",
  mode = "shared", create = "shared",
  atomic_timeout = "memory and shared (atomic holds no lock on this driver)",
}

local function opt_err(msg) raise("INVALID_VALUE", msg) end

local function positive(o, name, default)
  local v = o[name]
  if v == nil then return default end
  if type(v) ~= "number" or not (v > 0) or v == huge then
    opt_err(("option '%s' must be a finite number of seconds > 0"):format(name))
  end
  return v
end

local function count_opt(o, name, default)
  local v = o[name]
  if v == nil then return default end
  if type(v) ~= "number" or v < 1 or v ~= floor(v) or v == huge then
    opt_err(("option '%s' must be a whole number >= 1"):format(name))
  end
  return v
end

local function pct_decode(s) return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end)) end

-- "redis://[user[:password]@]host[:port][/db]", "rediss://..." (TLS), "unix:///path[?db=N]"
local function parse_url(url)
  if type(url) ~= "string" then opt_err("option 'url' must be a string, got " .. type(url)) end
  local scheme, rest = url:match("^(%a+)://(.*)$")
  if scheme == "unix" then
    local path, q = rest:match("^([^?]+)%??(.*)$")
    if not path or path:sub(1, 1) ~= "/" then opt_err("option 'url': unix:///path/to/socket expected, got '" .. url .. "'") end
    local t = { path = path }
    for k, v in q:gmatch("([^&=]+)=([^&]*)") do
      if k == "db" then t.db = tonumber(v)
      elseif k == "user" or k == "username" then t.username = pct_decode(v)
      elseif k == "password" then t.password = pct_decode(v)
      else opt_err("option 'url': unknown parameter '" .. k .. "'") end
    end
    return t
  end
  if scheme ~= "redis" and scheme ~= "rediss" then
    opt_err("option 'url' must start with redis://, rediss:// or unix://, got '" .. url .. "'")
  end
  local t = { tls = scheme == "rediss" or nil }
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  if not auth then hostpart = rest end
  if auth then
    local u, p = auth:match("^([^:]*):(.*)$")
    if u then
      t.username = u ~= "" and pct_decode(u) or nil
      t.password = pct_decode(p)
    else
      t.password = pct_decode(auth)
    end
  end
  local hp, db = hostpart:match("^([^/]*)/?(.*)$")
  local host, port = hp:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = hp:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then opt_err("option 'url': no host in '" .. url .. "'") end
  t.host, t.port = host, tonumber(port) or 6379
  if db ~= "" then
    t.db = tonumber(db)
    if not t.db then opt_err("option 'url': the database must be a number, got '" .. db .. "'") end
  end
  return t
end

local KNOWN = {
  url = true, cluster = true, prefix = true, timeout = true, lock_timeout = true,
  pool_size = true, keepalive = true, backlog = true, username = true, password = true,
  db = true, tls = true, shard = true,
}

function M.redis(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then opt_err("options must be a table, got " .. type(opts)) end
  for k in pairs(opts) do
    if type(k) ~= "string" then opt_err("unknown option (a " .. type(k) .. " key)") end
    if OTHER_DRIVERS[k] then
      opt_err(("unknown option '%s' (it is an option of %s, not of zeltkv.redis)"):format(k, OTHER_DRIVERS[k]))
    end
    if not KNOWN[k] then opt_err("unknown option '" .. k .. "'") end
  end
  if opts.url ~= nil and opts.cluster ~= nil then opt_err("options 'url' and 'cluster' exclude each other") end
  local u = opts.url ~= nil and parse_url(opts.url) or (opts.cluster == nil and parse_url("redis://127.0.0.1:6379/0")) or {}
  local prefix = opts.prefix == nil and "zkv" or opts.prefix
  if type(prefix) ~= "string" or not prefix:match("^[%w%._%-]+$") or #prefix > 64 then
    opt_err("option 'prefix' must be 1 to 64 characters of A-Z a-z 0-9 . _ -")
  end
  local shard = opts.shard == nil and "root" or opts.shard
  if shard ~= "root" and shard ~= "key" then opt_err("option 'shard' must be \"root\" or \"key\"") end
  local tls = opts.tls
  if tls == nil then tls = u.tls end
  if tls == true then tls = {} end
  if tls == false then tls = nil end
  if tls ~= nil and type(tls) ~= "table" then opt_err("option 'tls' must be true, false or a table") end
  if tls then
    for k, v in pairs(tls) do
      if k == "verify" then
        if type(v) ~= "boolean" then opt_err("option 'tls.verify' must be true or false") end
      elseif k == "cafile" or k == "capath" or k == "server_name" or k == "cert" or k == "key" then
        if type(v) ~= "string" then opt_err("option 'tls." .. k .. "' must be a string") end
      else
        opt_err("unknown option 'tls." .. tostring(k) .. "'")
      end
    end
  end
  local username = opts.username
  if username == nil then username = u.username end
  local password = opts.password
  if password == nil then password = u.password end
  if username ~= nil and type(username) ~= "string" then opt_err("option 'username' must be a string") end
  if password ~= nil and type(password) ~= "string" then opt_err("option 'password' must be a string") end
  local db = opts.db
  if db == nil then db = u.db end
  if db ~= nil and (type(db) ~= "number" or db < 0 or db ~= floor(db)) then
    opt_err("option 'db' must be a whole number >= 0")
  end
  if opts.cluster ~= nil and db and db ~= 0 then opt_err("a cluster has only database 0") end

  local d = setmetatable({
    _tag = DRIVER_TAG, prefix = prefix, shard = shard,
    timeout = positive(opts, "timeout", 1), lock_timeout = positive(opts, "lock_timeout", 5),
    nodes = {}, txs = setmetatable({}, { __mode = "k" }), ntx = 0, closed = false, tls = tls,
    round_trips = 0, attempts = 0, conflicts = 0,
  }, DRIVER_MT)
  local keepalive = positive(opts, "keepalive", 60)
  local pool_size = count_opt(opts, "pool_size", 32)
  local backlog = opts.backlog ~= nil and count_opt(opts, "backlog", 0) or nil

  -- AUTH and SELECT, sent once on every new connection
  local hello, n = {}, 0
  if password then
    n = n + 1
    hello[n] = username and { "AUTH", username, password } or { "AUTH", password }
  elseif username then
    opt_err("option 'username' needs a password")
  end
  if db and db ~= 0 then
    n = n + 1
    hello[n] = { "SELECT", int_text(db) }
  end
  if n > 0 then d.hello, d.hello_n = pack(hello), n end
  -- nginx's pool hands a connection to any cosocket that names the same pool, already
  -- past AUTH and the TLS handshake, so the name holds all that AUTH/SELECT/TLS made of
  -- it: the user and the server name by length (a "/" in them cannot make two names one),
  -- whether the certificate was verified (else a verifying driver could take a connection
  -- whose handshake checked nothing), and the password as its SHA-1 (a crc16 let one in
  -- 65,536 wrong passwords take connections the right one had authenticated; the password
  -- itself would show in nginx's debug log).  Only cosockets use the name.
  local pw_tag = password or ""
  if password and ngx and ngx.sha1_bin then pw_tag = ngx.encode_base64(ngx.sha1_bin(password)) end
  local tls_tag = ""
  if tls then
    local sn = tls.server_name or ""
    tls_tag = ("tls:%s:%d:%s"):format(tls.verify == false and "noverify" or "verify", #sn, sn)
  end
  local pool_tag = ("%s/%d:%s/%s/%s"):format(tostring(db or 0), #(username or ""), username or "",
                                             tls_tag, pw_tag)
  d.new_node = function(host, port, path)
    local name = path and ("unix:" .. path) or (host .. ":" .. port)
    return {
      name = name, host = host, port = port, path = path, tls = tls, timeout = d.timeout,
      pool_name = name .. "/" .. pool_tag, pool_size = pool_size, backlog = backlog,
      keepalive_ms = keepalive * 1000, idle = {}, upath = path and ("unix:" .. path),
    }
  end

  if opts.cluster ~= nil then
    if type(opts.cluster) ~= "table" or #opts.cluster == 0 then
      opt_err("option 'cluster' must be a list of \"host:port\" seed nodes")
    end
    d.cluster, d.seeds = true, {}
    for i, s in ipairs(opts.cluster) do
      if type(s) ~= "string" or not s:match("^.+:%d+$") then
        opt_err(("option 'cluster'[%d] must be \"host:port\", got %s"):format(i, tostring(s)))
      end
      d.seeds[i] = s
    end
    d.map_stale = true
    d.where = "cluster " .. concat(d.seeds, ",")
  else
    d.node = d.new_node(u.host, u.port, u.path)
    d.nodes[d.node.name] = d.node
    d.where = d.node.name
  end
  return d
end

M.Store, M.Driver = Store, Driver
return M
