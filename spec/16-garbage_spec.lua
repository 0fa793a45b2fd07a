-- spec/16-garbage_spec.lua: every function and method called with garbage, while
-- finalizers (and, on Lua 5.4, to-be-closed variables) close drivers, write, raise and
-- start atomic() in the middle of the calls.
--
-- What must hold for every call:
--   * it returns, or raises; nothing crashes (make sanitize runs this under ASan+UBSan);
--   * a public method of Driver or Store called on its own kind of object, and every module
--     function, raises a zeltkv error object (a coded error) and nothing else, unless the
--     error is one the garbage itself raised (a finalizer's; the fn given to atomic()), or
--     the self is wrong (a plain Lua argument error, as the API says);
--   * a call that raised a coded error left its store as it was (checked on the calls no
--     finalizer could have written in).
-- The raw methods (_rawget, ...) and the drop-in object may raise plain argument errors.
--
--   ZELTKV_GARBAGE_ITER=N   calls (default 2500); ZELTKV_GARBAGE_SEED=S (default 1)

local H = require("helpers")
local zeltkv = H.zeltkv
local core = require("zeltkv.core")

local ITER = tonumber(os.getenv("ZELTKV_GARBAGE_ITER") or "") or 2500
local SEED = tonumber(os.getenv("ZELTKV_GARBAGE_SEED") or "") or 1
local unpack = table.unpack or unpack
local IS54 = _VERSION == "Lua 5.4" and not rawget(_G, "jit")
-- Finalizers that raise: Lua 5.1-5.3 and LuaJIT pass the error on from the allocation that
-- ran the finalizer (5.4 only warns). LuaJIT 2.1.0-beta3 crashes in its own unwinder when a
-- __gc raises while JIT-compiled code runs: ten lines of plain Lua do it, without zeltkv
-- (a loop of t[i % 100] = "v" .. i inside pcall, with newproxy finalizers that raise). So
-- under LuaJIT they are left out; ZELTKV_GARBAGE_RAISE=1 puts them back.
local RAISE_IN_GC = not rawget(_G, "jit") or os.getenv("ZELTKV_GARBAGE_RAISE") == "1"

local rng = require("support.rng")

local FIN_ERR = "raised by a finalizer"      -- what the finalizers and the garbage raise
local GARBAGE_ERR = "raised by the garbage"

local newproxy = newproxy
local on_gc = H.on_gc

local function raiser() error(GARBAGE_ERR, 0) end
local function yielder() return coroutine.yield(1) end
-- tables whose every metamethod raises, or yields
local function hostile(f)
  local mt = {}
  for _, m in ipairs({ "__index", "__newindex", "__len", "__eq", "__lt", "__le", "__concat",
                       "__call", "__tostring", "__pairs", "__ipairs", "__unm", "__add", "__close",
                       "__name" }) do
    mt[m] = f
  end
  mt.__name = nil
  return setmetatable({}, mt)
end

-- the paths dump() and load() get: temporary files, never in the working tree (and no
-- shell: a child process would show its own allocations to the leak checker)
local PATHS = { os.tmpname(), os.tmpname(), os.tmpname() }

local GARBAGE = {
  false, true, 0, -1, 1, 1.5, -0.0, 2 ^ 31, 2 ^ 53, 2 ^ 53 + 2, 2 ^ 63, -2 ^ 63, 1e300, -1e300,
  math.huge, -math.huge, 0 / 0, "", "k", "\0", "a\0b", string.rep("k", 65535),
  string.rep("x", 65536), "64m", "lru", "ttl", "none", {}, { 1, 2 }, { ttl = 1 }, { ttl = 0 / 0 },
  { ttl = 1, x = 1 }, { a = { b = { 1 } } }, { gc_interval = 0 }, { size = "1m" },
  { [true] = 1 }, hostile(raiser), hostile(yielder), raiser, yielder, type, io.stdout,
  coroutine.create(function() end), setmetatable({}, { __metatable = false }),
}
if math.maxinteger then
  GARBAGE[#GARBAGE + 1] = math.maxinteger
  GARBAGE[#GARBAGE + 1] = math.mininteger
end
if newproxy then GARBAGE[#GARBAGE + 1] = newproxy(true) end
if rawget(_G, "jit") then
  local ok, ffi = pcall(require, "ffi")
  if ok then GARBAGE[#GARBAGE + 1] = ffi.new("int[1]") end
end
local NIL = {}   -- stands for nil in an argument list

-- the methods of an object: its class's public and raw methods (read through the metatable,
-- as ffi.lua does)
local function methods_of(obj)
  local names = {}
  local dgm = debug and debug.getmetatable
  local idx = type(obj) == "table" and getmetatable(obj) or (dgm and dgm(obj))
  for _ = 1, 3 do
    idx = type(idx) == "table" and rawget(idx, "__index")
    if type(idx) ~= "table" then break end
    for name, f in pairs(idx) do
      if type(name) == "string" and type(f) == "function" then names[name] = true end
    end
    idx = dgm and dgm(idx)
  end
  -- the FFI front end's objects are tables with their methods in __index
  if type(obj) == "table" then
    local mt = dgm and dgm(obj)
    local i = mt and rawget(mt, "__index")
    if type(i) == "table" then
      for name, f in pairs(i) do
        if type(name) == "string" and type(f) == "function" then names[name] = true end
      end
    end
  end
  local list = {}
  for name in pairs(names) do list[#list + 1] = name end
  table.sort(list)
  return list
end

local function state_of(s)
  local ok, out = pcall(function()
    local keys = {}
    for k in s:keys() do keys[#keys + 1] = k end
    table.sort(keys)
    for i, k in ipairs(keys) do keys[i] = H.dump(k) .. "=" .. H.dump(s:get(k)) end
    return table.concat(keys, ",")
  end)
  return ok and out or nil
end

local function is_coded(err)
  return type(err) == "table" and zeltkv.errors[rawget(err, "code")] ~= nil and
    type(rawget(err, "message")) == "string" and tostring(err):sub(1, 8) == "zeltkv: "
end

-- the error came from the garbage or a finalizer, not from zeltkv
local function foreign(err)
  if err == FIN_ERR or err == GARBAGE_ERR then return true end
  if type(err) == "string" and (err:find(FIN_ERR, 1, true) or err:find(GARBAGE_ERR, 1, true) or
                                err:find("yield", 1, true) or err:find("error in __gc", 1, true)) then
    return true
  end
  return false
end

local function run(seed, iter, mod, label, closer)
  local r = rng(seed)
  local world = { closer = closer, pending = 0 }
  local failures = {}
  local function open()
    world.mem = mod.memory({ gc_interval = 0 })
    world.name = world.name or H.segment_name("garbage")
    -- the garbage may have unlinked the segment and made it again at the default size
    -- (unlink and shared get our name), which an 8m open then refuses: start it anew
    local ok, kv = pcall(mod.shared, world.name, { size = "8m" })
    if not ok then
      zeltkv.unlink(world.name)
      kv = mod.shared(world.name, { size = "8m" })
    end
    world.shared = kv
    world.ms = world.mem:namespace("fz")
    world.ss = world.shared:namespace("fz"):namespace("\0")
    for i = 1, 300 do
      world.ms:set("seed" .. i, i)
      world.ss:namespace("c" .. i % 7)
    end
    local ok, d = pcall(world.ms.shdict, world.ms)
    world.dict = ok and d or nil
  end
  open()
  local function pick_obj()
    local k = r(5)
    if k == 1 then return world.mem, "Driver" end
    if k == 2 then return world.shared, "Driver" end
    if k == 3 then return world.ms, "Store" end
    if k == 4 then return world.ss, "Store" end
    return world.dict, "Dict"
  end
  local function garbage()
    local k = r(10)
    if k == 1 then return NIL end
    if k == 2 then local o = pick_obj() return o end
    return GARBAGE[r(#GARBAGE)]
  end
  -- what a finalizer or a to-be-closed variable does
  local function action(k)
    if not world.in_call then return end   -- in the middle of a call, not of this harness
    local kv = r(2) == 1 and world.mem or world.shared
    local s = kv == world.mem and world.ms or world.ss
    if k == 1 then pcall(kv.close, kv)
    elseif k == 2 then pcall(s.set, s, "fin" .. r(5), { written = "by a finalizer" })
    elseif k == 3 then if RAISE_IN_GC then error(FIN_ERR, 0) end
    elseif k == 4 then
      pcall(kv.atomic, kv, function() s:incr("fin", 1); if r(2) == 1 then error("undo") end end)
    else pcall(s.del, s, "k")
    end
  end
  local function flagged(f, n, a, walk)
    world.in_call = true
    local it = f(unpack(a, 1, n))
    if walk and type(it) == "function" then   -- keys(), namespaces(): the walk itself
      for _ = 1, 300 do
        if it() == nil then break end
      end
    end
    return it
  end
  local module_fns = {}
  for _, name in ipairs({ "memory", "shared", "unlink", "prometheus", "_raise", "_raise_rc",
                          "_encode", "_decode", "_set_clock_offset", "_own" }) do
    if type(mod[name] or core[name]) == "function" then module_fns[#module_fns + 1] = name end
  end

  for i = 1, iter do
    local armed = r(3) == 1
    if armed then
      for _ = 1, r(3) do
        world.pending = world.pending + 1
        on_gc(function() world.pending = world.pending - 1; action(r(5)) end)
      end
      if r(4) == 1 then collectgarbage("step") end
    end
    -- the call: a method of one of the objects, or a module function
    local obj, kind = pick_obj()
    local fname, f, self, public
    if obj == nil or r(8) == 1 then
      fname = module_fns[r(#module_fns)]
      f = mod[fname] or core[fname]
      kind, public = "module", fname:sub(1, 1) ~= "_"
    else
      local names = methods_of(obj)
      fname = names[r(#names)]
      f = obj[fname]
      self = obj
      public = fname:sub(1, 1) ~= "_" and kind ~= "Dict"
    end
    local args, n = {}, r(5) - 1
    if self ~= nil then
      if r(10) == 1 then self = garbage(); public = false end   -- the wrong self
      args[1] = self
    end
    local nargs0 = (self ~= nil and 1 or 0) + n
    for j = #args + 1, nargs0 do args[j] = garbage() end
    for j = 1, nargs0 do if rawequal(args[j], NIL) then args[j] = nil end end
    local nargs = (self ~= nil and 1 or 0) + n
    if fname == "dump" or fname == "load" then
      -- a path of ours; never a file object (load(io.stdin) would wait for input)
      for j = 2, nargs do
        if type(args[j]) == "string" or io.type(args[j]) then args[j] = PATHS[r(3)] end
      end
    end
    if fname == "_set_clock_offset" then args[1] = 0; nargs = 1 end   -- the engine's clock: not garbage
    if fname == "shared" or fname == "unlink" then
      -- real segment names would be made and left behind: only names of ours, or bad ones
      if type(args[1]) == "string" and #args[1] > 0 and not args[1]:find("[^%w%.%-_]") then
        args[1] = world.name
      end
    end
    if fname == "atomic" or fname == "_atomic_as" then
      -- fn may be garbage; a real fn does garbage-driven calls and, on 5.4, uses <close>
      local fi = fname == "atomic" and 2 or 3
      if r(2) == 1 then
        local target = obj
        args[fi] = function(me, ...)
          local a = { ... }
          local o2, _ = pick_obj()
          if o2 and r(2) == 1 then pcall(o2.set or o2.stats, o2, "in", a[1]) end
          if world.closer and r(3) == 1 then world.closer(function() action(r(5)) end) end
          if r(4) == 1 then error(GARBAGE_ERR, 0) end
          return rawequal(me, target), ...
        end
        if nargs < fi then nargs = fi end
      end
    end
    -- calls no finalizer can write in (none is pending): the store must stay as it was after
    -- a coded error
    local watch = world.pending == 0 and public and kind == "Store" and rawequal(self, obj) and obj or nil
    local before = watch and state_of(watch)
    -- the flag is set inside the pcall and cleared before anything is allocated after it:
    -- a finalizer raises only into the call
    local ok, err = pcall(flagged, f, nargs, args, fname == "keys" or fname == "namespaces")
    world.in_call = false
    if not ok then
      local good = is_coded(err) or foreign(err)
      if not public then good = true end
      if self ~= nil and not rawequal(self, obj) then good = good or type(err) == "string" end
      if (fname == "atomic" or fname == "_atomic_as") and not good then
        -- atomic raises fn's own error again
        good = type(err) == "string"
      end
      if not good then
        failures[#failures + 1] = ("%s call %d: %s.%s raised a non-zeltkv error: %s"):format(
          label, i, kind, tostring(fname), H.describe_err(err))
      end
      if watch and is_coded(err) then
        local after = state_of(watch)
        if before and after and before ~= after then
          failures[#failures + 1] = ("%s call %d: %s.%s failed (%s) but changed the store"):format(
            label, i, kind, fname, tostring(err))
        end
      end
    end
    if #failures >= 5 then break end
    -- drivers closed by a finalizer or the call come back for the next calls
    if world.mem and not pcall(world.mem.stats, world.mem) or
       world.shared and not pcall(world.shared.stats, world.shared) then
      pcall(world.mem.close, world.mem)
      pcall(world.shared.close, world.shared)
      open()
    end
    if i % 97 == 0 then
      -- and sometimes everything is closed and dropped, and collected while in use
      pcall(world.mem.close, world.mem)
      world.mem, world.ms, world.dict = nil, nil, nil
      collectgarbage()
      pcall(world.shared.close, world.shared)
      open()
    end
  end
  pcall(world.mem.close, world.mem)
  pcall(world.shared.close, world.shared)
  zeltkv.unlink(world.name)
  collectgarbage()
  return failures
end

describe("garbage arguments, finalizers and <close> in the middle of calls", function()
  local closer_chunk = IS54 and load([[
    return function(f)
      local c <close> = setmetatable({}, { __close = f })
      return c
    end
  ]])
  teardown(function() for _, p in ipairs(PATHS) do os.remove(p) end end)

  local mods = { { zeltkv, rawget(_G, "jit") and zeltkv._ffi and "ffi" or "C" } }
  if rawget(_G, "jit") and zeltkv._ffi then mods[2] = { core, "C" } end
  for _, m in ipairs(mods) do
    it(("every call returns or raises a coded error (%s binding, %d calls)"):format(m[2], ITER), function()
      local failures = run(SEED, ITER, m[1], m[2], closer_chunk and closer_chunk())
      assert(#failures == 0, table.concat(failures, "\n"))
    end)
  end
end)
