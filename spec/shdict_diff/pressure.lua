-- spec/shdict_diff/pressure.lua: the differential test's cases for a full dict (see run.sh):
-- which calls count as a use for LRU eviction, what a write that must evict many small items
-- returns, and a method wrapped through the shared metatable.  They run on a second pair of
-- dicts, small enough to fill in a few thousand calls: `lua_shared_dict small 1m` and a
-- zeltkv dict over a 1 MiB segment opened with evict = "lru".
--
-- The two dicts hold a different number of items when full (another memory layout), so these
-- cases compare outcomes, not counts: whether a key survived, the results of one call made on
-- each side once it is full.  Each case also checks shdict against what its source says
-- (lua-nginx-module's ngx_http_lua_shdict.c: every call that looks its key up moves it to the
-- head of the LRU queue, ttl and expire only peek), so a scenario that does not exercise what
-- it claims fails instead of passing on both sides.
--
-- pressure.run(R, A, B, A2, B2): A the shdict, B the zeltkv dict, A2 and B2 another dict of
-- each kind (the metatable case); R the report (R.pass(), R.fail(what),
-- R.known(kind, what), R.say(line), R.run(d, name, args) -> captured results, R.same(name, a, b),
-- R.show(r)).

local M = {}

local fmt, rep = string.format, string.rep

local FILL = rep("f", 1000)

-- Cases that fail until a fix lands elsewhere: a pending case that still fails is listed,
-- not counted; one that passes is counted as a failure, so that it is taken off this list
-- the day its fix lands.  None is left: issue 11's A (incr counts as a use for LRU), B
-- (making room never fails for the size of the undo log) and incr's forcible landed.
local PENDING = {}

-- the verdict of one case: ok (true, or a known difference's kind), its id and description
local function verdict(R, id, ok, what)
  local pending = PENDING[id]
  if pending then
    if ok then
      R.fail(what .. " -- passes now: take \"" .. id .. "\" off PENDING in pressure.lua")
    else
      R.say("PENDING (" .. pending .. ") " .. what)
    end
  elseif ok == true then
    R.pass()
  elseif ok then
    R.known(ok, what)
  else
    R.fail(what)
  end
end

local function flush(d) d:flush_all(); d:flush_expired() end

local function present(d, key)
  local v = d:ttl(key)        -- a peek on both sides: does not touch the key
  return v ~= nil
end

-- One recency case per call that may or may not count as a use: the key "hot" is written,
-- then after each of enough 1000-byte writes to fill the dict three times over, the call is
-- made on "hot".  A call that counts as a use keeps "hot" all along; any other lets it be
-- evicted.
-- shdict's own behaviour (ngx_http_lua_shdict_lookup vs _peek) is in `use`.
local RECENCY = {
  { name = "nothing",       use = false, init = "s", op = function() end },
  { name = "get",           use = true,  init = "s", op = function(d) d:get("hot") end },
  { name = "get_stale",     use = true,  init = "s", op = function(d) d:get_stale("hot") end },
  { name = "set",           use = true,  init = "s", op = function(d) d:set("hot", "h") end },
  { name = "safe_set",      use = true,  init = "s", op = function(d) d:safe_set("hot", "h") end },
  { name = "add (exists)",  use = true,  init = "s", op = function(d) d:add("hot", "h") end },
  { name = "replace",       use = true,  init = "s", op = function(d) d:replace("hot", "h") end },
  { name = "incr",          use = true,  init = "n", op = function(d) d:incr("hot", 1) end },
  { name = "incr with init", use = true, init = "n", op = function(d) d:incr("hot", 1, 0) end },
  { name = "llen",          use = true,  init = "l", op = function(d) d:llen("hot") end },
  { name = "rpush",         use = true,  init = "l", op = function(d) d:rpush("hot", 1) end },
  { name = "rpush + lpop",  use = true,  init = "l",
    op = function(d) d:rpush("hot", 1); d:lpop("hot") end },
  { name = "lpush",         use = true,  init = "l", op = function(d) d:lpush("hot", 1) end },
  -- "L": a list of one item more than the pops, so that none empties it
  { name = "lpop",          use = true,  init = "L", op = function(d) d:lpop("hot") end },
  { name = "rpop",          use = true,  init = "L", op = function(d) d:rpop("hot") end },
  { name = "safe_add (exists)", use = true, init = "s", op = function(d) d:safe_add("hot", "h") end },
  -- a lookup that finds the key is a use in shdict even when the call then fails on its type
  { name = "get (a list: \"value is a list\")", use = true, init = "l",
    op = function(d) d:get("hot") end },
  { name = "incr (\"not a number\")", use = true, init = "s", op = function(d) d:incr("hot", 1) end },
  { name = "rpush (\"value not a list\")", use = true, init = "s",
    op = function(d) d:rpush("hot", 1) end },
  { name = "lpop (\"value not a list\")", use = true, init = "s", op = function(d) d:lpop("hot") end },
  { name = "llen (\"value not a list\")", use = true, init = "s", op = function(d) d:llen("hot") end },
  { name = "ttl",           use = false, init = "s", op = function(d) d:ttl("hot") end },
  { name = "expire",        use = false, init = "s", op = function(d) d:expire("hot", 0) end },
  { name = "get_keys",      use = false, init = "s", op = function(d) d:get_keys(1) end },
  { name = "flush_expired", use = false, init = "s", op = function(d) d:flush_expired(1) end },
}

local function recency_one(d, case, n)
  flush(d)
  if case.init == "s" then d:set("hot", "h")
  elseif case.init == "n" then d:set("hot", 0)
  elseif case.init == "L" then for _ = 1, n + 1 do d:rpush("hot", 1) end
  else d:rpush("hot", 1) end
  -- "hot" must be there before every call: a call that creates a missing key (set, add,
  -- incr with init, a push) would otherwise bring it back after an eviction, and the case
  -- could not fail
  for i = 1, n do
    d:set("f" .. i, FILL)
    if not present(d, "hot") then return false end
    case.op(d)
  end
  return present(d, "hot")
end

local function recency(R, A, B)
  local n = math.floor(3 * A:capacity() / #FILL)
  for _, case in ipairs(RECENCY) do
    local a = recency_one(A, case, n)
    local b = recency_one(B, case, n)
    local what = fmt("recency: %s on \"hot\" after each of %d writes that fill the dict 3 times: "
                     .. "shdict %s, zeltkv %s", case.name, n, a and "kept it" or "evicted it",
                     b and "kept it" or "evicted it")
    if a ~= case.use then
      R.fail(what .. fmt(" (shdict was expected to %s it: the scenario is wrong)",
                         case.use and "keep" or "evict"))
    else
      verdict(R, "recency:" .. case.name, a == b, what)
    end
  end
  flush(A); flush(B)
end

-- fill with small items until a set reports that it evicted (forcible); then "last", the
-- most recently used key on both sides
local function fill_small(d)
  for i = 1, 1000000 do
    local ok, _, forcible = d:set("s" .. i, "aaaa")
    if not ok or forcible then break end
  end
  d:set("last", "aaaa")
end

-- compare one call made on each side once both are full of small items
local EVICTING = { set = true, add = true, replace = true }

local function on_full(R, A, B, name, ...)
  local args = { n = select("#", ...), ... }
  flush(A); flush(B)
  fill_small(A); fill_small(B)
  local a, b = R.run(A, name, args), R.run(B, name, args)
  local size = type(args[2]) == "string" and #args[2] or nil
  local id = "full:" .. name .. (size and ":" .. size or "")
  local what = fmt("full of small items: %s(%s): shdict %s, zeltkv %s", name,
                   size and size .. " bytes" or "...", R.show(a), R.show(b))
  local ok = R.same(name, a, b)
  if not ok and EVICTING[name] and a[1] == false and a[2] == "no memory" and a[3] == true
     and b[1] == true and b[2] == nil and b[3] == true then
    -- shdict gives up after 30 evictions, or when the slots it freed are not the pages the
    -- value needs; zeltkv evicts until the value fits (examples/shdict/README.md, "Deliberate
    -- differences")
    ok = "evicts-until-it-fits"
  elseif not ok and EVICTING[name] and a[1] == false and a[2] == "no memory" and a[3] == true
     and b[1] == false and b[2] == "no memory" and b[3] == false then
    -- a value that can never fit: shdict evicted 30 items before giving up; zeltkv fails
    -- without changing anything
    ok = "nomem-changes-nothing"
  end
  verdict(R, id, ok, what)
end

local function big_writes(R, A, B)
  -- one more small item: evicts one, on both
  on_full(R, A, B, "set", "new", "aaaa")
  on_full(R, A, B, "add", "new", "aaaa")
  on_full(R, A, B, "safe_set", "new", "aaaa")
  on_full(R, A, B, "safe_add", "new", "aaaa")
  for _, size in ipairs({ 100, 1000, 3000, 16384, 65536, 262144 }) do
    on_full(R, A, B, "set", "big", rep("b", size))
  end
  on_full(R, A, B, "safe_set", "big", rep("b", 16384))
  on_full(R, A, B, "add", "big", rep("b", 3000))
  on_full(R, A, B, "replace", "last", rep("b", 3000))
  on_full(R, A, B, "incr", "ctr", 1, 0)
  on_full(R, A, B, "lpush", "list", rep("b", 3000))
  -- a value larger than the whole dict
  on_full(R, A, B, "set", "huge", rep("b", 2 * 1048576))
  on_full(R, A, B, "safe_set", "huge", rep("b", 2 * 1048576))
  flush(A); flush(B)
end

-- a method wrapped through the metatable, for every dict at once: wrapped through d's, it
-- runs for `other` (another dict of the same kind) too
local function metatable(R, A, B, A2, B2)
  local function probe(d, other)
    local mt = getmetatable(d)
    if type(mt) ~= "table" then return "metatable is a " .. type(mt) end
    if mt.__index ~= mt then return "mt.__index ~= mt" end
    if getmetatable(other) ~= mt then return "another dict has another metatable" end
    local orig, calls = mt.flush_expired, 0
    mt.flush_expired = function(self, ...)
      calls = calls + 1
      return orig(self, ...)
    end
    local ok, r1 = pcall(d.flush_expired, d)
    local ok2, r2 = pcall(function() return d:flush_expired(3) end)
    local ok3 = pcall(function() return other:flush_expired(0) end)
    mt.flush_expired = orig
    return fmt("calls=%d ok=%s,%s,%s results=%s,%s restored=%s", calls, tostring(ok),
               tostring(ok2), tostring(ok3), tostring(r1), tostring(r2),
               tostring(d.flush_expired == orig and other.flush_expired == orig))
  end
  local a, b = probe(A, A2), probe(B, B2)
  if a == b then R.pass() else R.fail(fmt("metatable wrap: shdict %s, zeltkv %s", a, b)) end
end

function M.run(R, A, B, A2, B2)
  metatable(R, A, B, A2, B2)
  recency(R, A, B)
  big_writes(R, A, B)
end

return M
