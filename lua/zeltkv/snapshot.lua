-- zeltkv.snapshot: kv:dump and kv:load for drivers written in Lua (the Redis driver),
-- through their public methods and the dump file codec of the C engine
-- (core._dump_writer / core._dump_reader: the format has one home, src/dumpfile.c).
-- docs/snapshots.md describes both; the memory and shared drivers have their own, in C.
--
-- These walk the store with namespaces() and keys(), so a dump shows each key as it was
-- when it was read, not the whole store at one instant. A load is all or nothing as in C:
-- every line is checked first, then the keys are written, the old value of each key it
-- replaces kept in memory; if a write fails, the keys already written are put back,
-- newest first (unless another client changed them since).
local core = require("zeltkv.core")

local M = {}

local unpack = table.unpack or unpack
local PROGRESS_EVERY = 1000

local function check_opts(opts, what)
  if opts == nil then return true end
  if type(opts) ~= "table" then
    core._raise("INVALID_VALUE", what .. ": options must be a table, got " .. type(opts))
  end
  local on = true
  for k, v in pairs(opts) do
    if k ~= "progress" then core._raise("INVALID_VALUE", what .. ": unknown option '" .. tostring(k) .. "'") end
    if type(v) ~= "boolean" then core._raise("INVALID_VALUE", what .. ": option 'progress' must be a boolean") end
    on = v
  end
  return on
end

-- every namespace below `s` (names from the root in `path`), depth first
local function walk(s, path, each)
  local children = {}
  for n in s:namespaces() do children[#children + 1] = n end
  for _, n in ipairs(children) do
    local c = s:namespace(n)
    local p = { unpack(path) }
    p[#p + 1] = n
    each(c, p)
    walk(c, p, each)
  end
end

-- kv:dump(path | file [, opts]) -> n, { seconds }
function M.dump(kv, dst, opts)
  local on = check_opts(opts, "dump")
  local t0 = core._wall_ms()
  local w = core._dump_writer(dst, t0)
  local total = (kv:stats() or {}).keys or 0
  local n = 0
  local ok, err = pcall(walk, kv, {}, function(s, path)
    for k in s:keys() do
      local v = s:get(k)
      if v ~= nil then   -- expired or deleted since the walk listed it
        local ttl = s:ttl(k)
        local exp = (ttl and ttl ~= math.huge) and math.floor(core._wall_ms() + ttl * 1000) or nil
        local ty, text = core._encode(v)
        w:add(path, k, ty, text, exp)
        n = n + 1
        if on and n % PROGRESS_EVERY == 0 then core._progress("dump", n, total) end
      end
    end
  end)
  if on then core._progress() end
  if not ok then
    w:abort()
    error(err, 0)
  end
  return w:finish(), { seconds = (core._wall_ms() - t0) / 1000 }
end

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b or (a ~= a and b ~= b) end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- the store of a namespace path; the last one is kept (a dump lists a namespace's keys
-- together)
local function store_of(kv, last, path)
  if last.s and #last.path == #path then
    local same_path = true
    for i = 1, #path do if last.path[i] ~= path[i] then same_path = false break end end
    if same_path then return last.s end
  end
  local s = kv
  for _, n in ipairs(path) do s = s:namespace(n) end
  last.s, last.path = s, path
  return s
end

-- kv:load(path | file [, opts]) -> n, { expired, seconds }
function M.load(kv, src, opts)
  local on = check_opts(opts, "load")
  local t0 = core._wall_ms()
  local r = core._dump_reader(src)
  local ok, res, info = pcall(function()
    -- pass 1: every line checked, nothing written
    local n = 0
    while r:next() do
      n = n + 1
      if on and n % PROGRESS_EVERY == 0 then
        local _, off, size = r:position()
        core._progress("load", off, size, true)
      end
    end
    r:rewind()
    -- pass 2: write, keeping what each replaced key held
    local done, cache, expired = {}, {}, 0
    local wok, werr = pcall(function()
      while true do
        local path, key, value, exp = r:next()
        if not path then break end
        local now = core._wall_ms()
        if exp and exp <= now then
          expired = expired + 1
        else
          local s = store_of(kv, cache, path)
          local old = s:get(key)
          local oldttl = old ~= nil and s:ttl(key) or nil
          done[#done + 1] = { s = s, key = key, value = value, old = old, oldttl = oldttl }
          s:set(key, value, exp and (exp - now) / 1000 or nil)
        end
        if on and #done % PROGRESS_EVERY == 0 then
          local _, off, size = r:position()
          core._progress("load", off, size, true)
        end
      end
    end)
    if not wok then
      -- undo, newest first; the key that failed is not written (nothing to undo in it)
      for i = #done, 1, -1 do
        local d = done[i]
        pcall(function()
          if same(d.s:get(d.key), d.value) then
            if d.old == nil then d.s:del(d.key)
            else d.s:set(d.key, d.old, d.oldttl ~= math.huge and d.oldttl or nil) end
          end
        end)
      end
      local line = r:position()
      if type(werr) == "table" and werr.message then
        core._raise(werr.code, "load: line " .. line .. ": " .. werr.message, werr.reason)
      end
      error(werr, 0)
    end
    return #done, { expired = expired, seconds = (core._wall_ms() - t0) / 1000 }
  end)
  if on then core._progress() end
  r:close()
  if not ok then error(res, 0) end
  return res, info
end

return M
