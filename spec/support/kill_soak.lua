-- spec/support/kill_soak.lua: SIGKILL soak of one shared store, through the Lua API.
--
--   <lua> spec/support/kill_soak.lua run SECONDS WORKERS SEED      (the parent)
--   <lua> spec/support/kill_soak.lua worker ID GEN LOGFILE SEED    (one writer; never returns)
--
-- ZELTKV_SHM_DIR must name a private directory (the segments are made there). The parent
-- starts WORKERS writer processes on two segments ("main", evict "none", and "lru", a small
-- one with evict "lru"), kills one of them with SIGKILL at a random moment, checks what the
-- killed one was told, starts it again (a new generation), and so on for SECONDS; then it
-- kills them all and checks once more. Each writer logs to its own file, unbuffered, an
-- intent line before each call ("I ...") and an ack line after it returned ("A ...").
--
-- What must hold after every kill (the killed writer is not running, the others are):
--   * both segments open;
--   * every key of a writer's own namespace holds what its log says: the last acked write,
--     or, when its last line is an intent (killed in the call or before its ack), the state
--     before or after that write; no other key is there (deletes and the clear()ed child
--     included), and its count() agrees;
--   * the shared counter "hits" and the per-writer counters are exact: at least the acked
--     incrs, at most one more per generation killed with an incr intent;
--   * "pa" == "pb" (incremented together in one atomic), and both are within the acked and
--     intended atomics; the atomic's two own keys "t1", "t2" hold the same version;
--   * a writer's children are "tmp" and the n<i>/m<j> it makes at random moments (a kill may
--     land in the making), each m<j> holding only "v", a version;
--   * the lru store: every key present holds a value naming that key (no torn or foreign
--     value), and a writer's lru namespace holds only its keys;
--   * no key of a namespace shows in another (each writer's keys carry its id).
-- Prints "soak: ..." lines and a last line "N passed, N failed" (N checks).

local zeltkv = require("zeltkv")
local unpack = table.unpack or unpack

local MAIN_SIZE, LRU_SIZE = "8m", "1m"
local NKEYS = 40            -- own keys per writer
local NLRU = 3000           -- lru keys per writer (more than fit)

-- the specs' generator, found beside this script (it also runs without spec/ in LUA_PATH)
local rng = dofile((arg[0]:match("^(.*/)") or "./") .. "rng.lua")

local function open_main()
  return zeltkv.shared("soak-main", { size = MAIN_SIZE, gc_interval = 0, lock_timeout = 20 })
end
local function open_lru()
  return zeltkv.shared("soak-lru", { size = LRU_SIZE, evict = "lru", gc_interval = 0,
                                     lock_timeout = 20 })
end

-- a value of own key k written at version v by writer id: a table, its size varying
local function own_value(id, k, v, r)
  return { id = id, k = k, v = v, pad = string.rep("p", r(300)) }
end

---------------------------------------------------------------------------
-- The writer

local function worker(id, gen, logfile, seed)
  local r = rng(seed * 7919 + id * 104729 + gen)
  local log = assert(io.open(logfile, "a"))
  log:setvbuf("no")
  local function note(line) log:write(line .. "\n") end
  local kv, lkv = open_main(), open_lru()
  local own = kv:namespace("w" .. id)
  local shared = kv:namespace("shared")
  local tmp = own:namespace("tmp")
  local lown = lkv:namespace("l" .. id)
  local v = 0
  note("G " .. gen)
  while true do
    v = v + 1
    local ver = gen * 1000000 + v
    local op = r(100)
    if op <= 30 then
      local k = "k" .. r(NKEYS)
      local ttl = r(3) == 1 and 3600 or nil
      note(("I set %s %d"):format(k, ver))
      own:set(k, own_value(id, k, ver, r), ttl)
      note(("A set %s %d"):format(k, ver))
    elseif op <= 40 then
      local k = "k" .. r(NKEYS)
      note(("I del %s %d"):format(k, ver))
      own:del(k)
      note(("A del %s %d"):format(k, ver))
    elseif op <= 55 then
      note("I hits " .. ver)
      shared:incr("hits", 1)
      own:incr("mine", 1)   -- not in one atomic: each is its own intent
      note("A hits " .. ver)
    elseif op <= 70 then
      note("I pair " .. ver)
      local ok = pcall(kv.atomic, kv, function()
        shared:incr("pa", 1)
        own:set("t1", ver)
        if r(8) == 1 then own:set("k" .. r(NKEYS), "never seen") error("undone", 0) end
        own:set("t2", ver)
        shared:incr("pb", 1)
      end)
      note((ok and "A pair " or "N pair ") .. ver)
    elseif op <= 75 then
      -- an atomic that raises: nothing of it may stay
      note("I undo " .. ver)
      pcall(kv.atomic, kv, function()
        shared:incr("pa", 1)
        own:set("k" .. r(NKEYS), "never seen")
        error("undone", 0)
      end)
      note("A undo " .. ver)
    elseif op <= 76 then
      -- namespaces made (and written) at random moments: a kill may land in the making
      own:namespace("n" .. r(30)):namespace("m" .. r(3)):set("v", ver)
    elseif op <= 78 then
      for i = 1, r(20) do tmp:set("x" .. i, ver) end
      note("I clear " .. ver)
      tmp:clear()
      note("A clear " .. ver)
    elseif op <= 95 then
      local k = "l" .. r(NLRU)
      lown:set(k, id .. ":" .. k .. ":" .. string.rep("z", r(400)))
    else
      local k = "l" .. r(NLRU)
      local x = lown:get(k)
      if x ~= nil and x:match("^(%d+:[^:]+):") ~= id .. ":" .. k then
        io.stderr:write(("soak: writer %d read a wrong lru value at %s: %q\n"):format(id, k, x))
        os.exit(9)
      end
    end
  end
end

---------------------------------------------------------------------------
-- Reading a writer's log

local check_log   -- check(), below
-- the states the writer's log allows: keys[k] = list of allowed versions (false: absent),
-- and the counters' bounds
local function read_log(logfile)
  local f = io.open(logfile, "r")
  local st = { keys = {}, mine = { 0, 0 }, hits = { 0, 0 }, pair = { 0, 0 }, t = { false },
               gens = 0 }
  if not f then return st end
  local pending   -- the last intent, not acked yet
  local function settle(p, happened_or_not)
    -- p: an intent; happened_or_not: true when it was acked, "maybe" when its writer died
    local kind, k, ver = p[1], p[2], p[3]
    local maybe = happened_or_not == "maybe"
    if kind == "set" or kind == "del" then
      local now = kind == "set" and ver or false
      if maybe then
        local before = st.keys[k] or { false }
        local allowed = { now }
        for _, b in ipairs(before) do allowed[#allowed + 1] = b end
        st.keys[k] = allowed
      else
        st.keys[k] = { now }
      end
    elseif kind == "hits" then
      st.hits[2] = st.hits[2] + 1
      st.mine[2] = st.mine[2] + 1
      if not maybe then st.hits[1] = st.hits[1] + 1; st.mine[1] = st.mine[1] + 1 end
    elseif kind == "pair" then
      -- an ack means fn returned, or raised "undone" (then atomic raised: no ack)
      st.pair[2] = st.pair[2] + 1
      if not maybe then
        st.pair[1] = st.pair[1] + 1
        st.t = { ver }
      else
        local allowed = { ver }
        for _, b in ipairs(st.t) do allowed[#allowed + 1] = b end
        st.t = allowed
      end
    end
  end
  for line in f:lines() do
    local tag, rest = line:match("^([GIAN]) (.*)$")
    if tag == "G" then
      st.gens = st.gens + 1
      if pending then settle(pending, "maybe") end
      pending = nil
    elseif tag == "I" then
      if pending then
        check_log(false, logfile, "an intent without its ack before the next: " .. line)
      end
      local kind, a, b = rest:match("^(%a+) (%S+) ?(%S*)$")
      if kind == "set" or kind == "del" then pending = { kind, a, tonumber(b) }
      else pending = { kind, nil, tonumber(a) } end
    elseif tag == "A" then
      if pending then settle(pending, true) end
      pending = nil
    elseif tag == "N" then   -- the call raised as planned: it changed nothing
      pending = nil
    end
  end
  f:close()
  if pending then settle(pending, "maybe") end
  return st
end

local function has(list, x)
  for _, y in ipairs(list) do if y == x then return true end end
  return false
end

---------------------------------------------------------------------------
-- The parent

local passed, failed = 0, 0
local function check(ok, fmt, ...)
  if ok then passed = passed + 1 return true end
  failed = failed + 1
  io.stdout:write("soak: FAILED: " .. fmt:format(...) .. "\n")
  io.stdout:flush()
  return false
end

check_log = function(ok, logfile, what) check(ok, "%s: %s", logfile, what) end

local function sh(cmd) return os.execute(cmd) end
local function sleep(s) sh(("sleep %.3f"):format(s)) end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local s = f:read("*a")
  f:close()
  local state = s:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local function check_writer(kv, lkv, id, logfile, errfile)
  local st = read_log(logfile)
  local own = kv:namespace("w" .. id)
  local seen, n = {}, 0
  for k in own:keys() do
    n = n + 1
    seen[k] = true
  end
  check(own:count() == n, "writer %d: count() %d, keys() %d", id, own:count(), n)
  for i = 1, NKEYS do
    local k = "k" .. i
    local x = own:get(k)
    local allowed = st.keys[k] or { false }
    local got = x ~= nil and type(x) == "table" and x.id == id and x.k == k and x.v or
                (x ~= nil and -1 or false)
    check(has(allowed, got), "writer %d key %s: holds %s, the log allows %s", id, k,
          x == nil and "nothing" or (type(x) == "table" and tostring(x.v) or ("%q"):format(tostring(x))),
          table.concat((function() local t = {} for j, a in ipairs(allowed) do t[j] = tostring(a) end return t end)(), " or "))
    seen[k] = nil
  end
  local mine = own:get("mine") or 0
  check(mine >= st.mine[1] and mine <= st.mine[2], "writer %d: mine %s, the log says %d..%d",
        id, tostring(mine), st.mine[1], st.mine[2])
  local t1, t2 = own:get("t1"), own:get("t2")
  check(t1 == t2 and has(st.t, t1 or false), "writer %d: t1 %s, t2 %s, the log allows %s", id,
        tostring(t1), tostring(t2), (function() local t = {} for j, a in ipairs(st.t) do t[j] = tostring(a) end return table.concat(t, " or ") end)())
  seen.mine, seen.t1, seen.t2 = nil, nil, nil
  for k in pairs(seen) do check(false, "writer %d: a key its log never wrote: %q", id, k) end
  local tmp = own:namespace("tmp")
  local tn = tmp:count()
  -- the tmp child: filled then cleared; a kill between fill and clear leaves its keys,
  -- each holding a version of this writer
  for k in tmp:keys() do
    local x = tmp:get(k)
    check(type(x) == "number" and k:match("^x%d+$") ~= nil, "writer %d tmp: %q = %s", id, k, tostring(x))
  end
  -- the children: tmp and the n<i> made at random, each holding only m<j> children whose
  -- only key is "v", a version of this writer
  for name in own:namespaces() do
    if check(name == "tmp" or name:match("^n%d+$") ~= nil, "writer %d: a child nobody made: %q", id, name)
       and name ~= "tmp" then
      local c = own:namespace(name)
      check(c:count() == 0, "writer %d: %s holds %d keys", id, name, c:count())
      for sub in c:namespaces() do
        local m = c:namespace(sub)
        check(sub:match("^m%d$") ~= nil, "writer %d: %s/%q: a child nobody made", id, name, sub)
        for k in m:keys() do
          local x = m:get(k)
          check(k == "v" and math.type and math.type(x) == "integer" or k == "v" and type(x) == "number",
                "writer %d: %s/%s holds %q = %s", id, name, sub, k, tostring(x))
        end
      end
    end
  end
  local lown = lkv:namespace("l" .. id)
  local ln = 0
  for k in lown:keys() do
    ln = ln + 1
    local x = lown:get(k)
    if x ~= nil then
      check(type(x) == "string" and x:match("^(%d+:[^:]+):") == id .. ":" .. k,
            "writer %d lru key %q holds %q", id, k, tostring(x):sub(1, 40))
    end
  end
  local ef = io.open(errfile, "r")
  if ef then
    local e = ef:read("*a")
    ef:close()
    check(not e:find("soak: ") and not e:find("zeltkv: "), "writer %d said: %s", id, e:sub(1, 400))
  end
  return st, tn, ln
end

local function run(secs, nworkers, seed)
  local dir = assert(os.getenv("ZELTKV_SHM_DIR"), "kill_soak.lua: set ZELTKV_SHM_DIR")
  local lua = assert(os.getenv("ZELTKV_SOAK_LUA"), "kill_soak.lua: set ZELTKV_SOAK_LUA")
  local self = arg[0]
  local r = rng(seed)
  -- made once here, so that every writer opens with the same options
  local kv0, lkv0 = open_main(), open_lru()
  kv0:close()
  lkv0:close()
  local pids, gens = {}, {}
  local function logfile(id) return ("%s/log%d"):format(dir, id) end
  local function errfile(id) return ("%s/err%d"):format(dir, id) end
  local function start(id)
    gens[id] = (gens[id] or 0) + 1
    local p = assert(io.popen(("%s %s worker %d %d %s %d </dev/null >/dev/null 2>>%s & echo $!"):format(
      lua, self, id, gens[id], logfile(id), seed, errfile(id))))
    pids[id] = tonumber(p:read("*l"))
    p:close()
  end
  local function kill(id)
    sh("kill -KILL " .. pids[id] .. " 2>/dev/null")
    for _ = 1, 200 do
      if not alive(pids[id]) then return end
      sleep(0.01)
    end
    check(false, "writer %d (pid %d) still runs after SIGKILL", id, pids[id])
  end
  for id = 1, nworkers do start(id) end
  local t_end = os.time() + secs
  local kills = 0
  local function full_check(id)
    local ok, kv = pcall(open_main)
    if not check(ok, "the main segment does not open after a kill: %s", tostring(kv)) then return end
    local ok2, lkv = pcall(open_lru)
    if not check(ok2, "the lru segment does not open after a kill: %s", tostring(lkv)) then return end
    local ids = id and { id } or {}
    if not id then for i = 1, nworkers do ids[i] = i end end
    local tot = { 0, 0 }
    for _, i in ipairs(ids) do
      local st = check_writer(kv, lkv, i, logfile(i), errfile(i))
      tot[1], tot[2] = tot[1] + st.pair[1], tot[2] + st.pair[2]
    end
    -- pa == pb, read in one atomic (the others are running)
    local pa, pb = kv:atomic(function()
      local sh_ = kv:namespace("shared")
      return sh_:get("pa") or 0, sh_:get("pb") or 0
    end)
    check(pa == pb, "pa %s ~= pb %s (one atomic increments both)", tostring(pa), tostring(pb))
    if not id then
      local hits = kv:namespace("shared"):get("hits") or 0
      local lo, hi = 0, 0
      for i = 1, nworkers do
        local st = read_log(logfile(i))
        lo, hi = lo + st.hits[1], hi + st.hits[2]
      end
      check(hits >= lo and hits <= hi, "hits %s, the logs say %d..%d", tostring(hits), lo, hi)
      check(pa >= tot[1] and pa <= tot[2], "pa %s, the logs say %d..%d", tostring(pa), tot[1], tot[2])
      -- the root holds only the namespaces the writers made
      for name in kv:namespaces() do
        check(name == "shared" or name:match("^w%d+$") ~= nil, "a namespace nobody made: %q", name)
      end
      for k in kv:namespace("shared"):keys() do
        check(k == "hits" or k == "pa" or k == "pb", "shared holds a key nobody wrote: %q", k)
      end
      local s = lkv:stats()
      io.stdout:write(("soak: lru store: %d keys, %d evictions\n"):format(s.keys, s.evictions or -1))
    end
    kv:close()
    lkv:close()
  end
  while os.time() < t_end do
    sleep((r(400) - 1) / 1000)
    local id = r(nworkers)
    kill(id)
    kills = kills + 1
    full_check(id)
    start(id)
  end
  for id = 1, nworkers do kill(id) end
  full_check(nil)
  io.stdout:write(("soak: %d kills of %d writers in %d s\n"):format(kills, nworkers, secs))
  io.stdout:write(("%d passed, %d failed\n"):format(passed, failed))
  os.exit(failed == 0 and 0 or 1)
end

local mode = arg[1]
if mode == "worker" then
  worker(tonumber(arg[2]), tonumber(arg[3]), arg[4], tonumber(arg[5]))
elseif mode == "run" then
  run(tonumber(arg[2]) or 10, tonumber(arg[3]) or 3, tonumber(arg[4]) or 1)
else
  io.stderr:write("usage: kill_soak.lua run SECONDS WORKERS SEED | worker ID GEN LOGFILE SEED\n")
  os.exit(2)
end
