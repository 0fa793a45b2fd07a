-- spec/07-shared_spec.lua: the shared driver across processes (API.md: zeltkv.shared,
-- zeltkv.unlink, driver options size / evict / mode / lock_timeout, Atomic, Errors).
--
-- Every segment is made and used by child processes (spec/support/shared_child.lua, run
-- with this interpreter and this package.path / package.cpath) whose ZELTKV_SHM_DIR is a
-- fresh temporary directory, removed at the end: nothing reaches /dev/shm, and a crash in a
-- child shows as a signal exit instead of killing busted. This process never opens a
-- segment itself (Lua cannot set its own environment); it only reads, damages and lists
-- the segment files.
--
-- Child chunks are Lua source strings below; in them `...` are the arguments, and the
-- globals zeltkv, H, assert (luassert), out, pid, now, sleep, barrier, code_of exist (see
-- the child script). Children of one group start their real work together (barrier()).

local H = require("helpers")

local CHILD_TIMEOUT = 60   -- seconds; a child still running then is killed (status 137)

---------------------------------------------------------------------------
-- Processes

local function q(s)
  return "'" .. (tostring(s):gsub("'", "'\\''")) .. "'"
end

local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local s = p:read("*a")
  p:close()
  return s
end

local function sleep(s) os.execute("sleep " .. tostring(s)) end

local function now() return tonumber(capture("date +%s.%N")) end

-- the interpreter running this spec (busted is started as `INTERP /usr/bin/busted ...`)
local function interpreter()
  local env = os.getenv("ZELTKV_TEST_LUA")
  if env and env ~= "" then return env end
  if type(arg) == "table" then
    local lo = 0
    while arg[lo - 1] ~= nil do lo = lo - 1 end
    if lo < 0 then return arg[lo] end
  end
  if rawget(_G, "jit") then return "luajit" end
  return "lua" .. _VERSION:match("%d+%.%d+")
end

local LUA = interpreter()
local SPEC_DIR = (debug.getinfo(1, "S").source or ""):match("^@(.*/)") or "spec/"
local CHILD = SPEC_DIR .. "support/shared_child.lua"

local T = { n = 0 }   -- T.root: the temporary directory; T.shm: ZELTKV_SHM_DIR of children

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function seg_path(name) return T.shm .. "/zeltkv-" .. name end

-- starts a child running `code` with the given arguments; returns a handle for finish()
local function spawn(code, args, opts)
  opts = opts or {}
  T.n = T.n + 1
  local file = ("%s/chunk%d.lua"):format(T.root, T.n)
  write_file(file, code)
  local env = {
    "ZELTKV_SHM_DIR=" .. q(T.shm),
    "LUA_PATH=" .. q(package.path), "LUA_CPATH=" .. q(package.cpath),
    "ZELTKV_TEST_LPATH=" .. q(package.path), "ZELTKV_TEST_CPATH=" .. q(package.cpath),
  }
  if opts.barrier then env[#env + 1] = "ZELTKV_TEST_BARRIER=" .. q(opts.barrier) end
  local qargs = {}
  for i, a in ipairs(args or {}) do qargs[i] = q(a) end
  local cmd = ("env %s timeout -s KILL %d %s %s %s %s 2>&1; echo \"__exit=$?\""):format(
    table.concat(env, " "), opts.timeout or CHILD_TIMEOUT, q(LUA), q(CHILD), q(file),
    table.concat(qargs, " "))
  return { p = assert(io.popen(cmd, "r")) }
end

-- waits for the child; returns its output and exit status (128+N: killed by signal N)
local function finish(h)
  local s = h.p:read("*a")
  h.p:close()
  local body, st = s:match("^(.-)__exit=(%d+)%s*$")
  assert(body, "could not read the child's exit status from: " .. s)
  return body, tonumber(st)
end

local function describe_status(st)
  if st == 0 then return "exit 0" end
  if st == 3 then return "exit 3: the chunk raised" end
  if st == 137 then return "killed by SIGKILL (timed out after the child timeout?)" end
  if st > 128 then return "killed by signal " .. (st - 128) .. " (a crash)" end
  return "exit " .. st
end

local function assert_ok(body, st, what)
  assert(st == 0, ("%s: child %s; its output:\n%s"):format(what or "child",
                                                          describe_status(st), body))
  return body
end

-- runs a child to the end and checks that it succeeded; returns its output
local function run(code, args, opts)
  local body, st = finish(spawn(code, args, opts))
  return assert_ok(body, st)
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

-- the first output line that starts with `tag` and a tab, split on tabs (without the tag)
local function field(body, tag)
  for _, l in ipairs(lines(body)) do
    local parts = {}
    for p in (l .. "\t"):gmatch("([^\t]*)\t") do parts[#parts + 1] = p end
    if parts[1] == tag then
      table.remove(parts, 1)
      return H.unpack(parts)
    end
  end
  return nil
end

-- how many children of the barrier in dir wrote a file "<what>.<pid>" (ready, opened)
local function count_marks(dir, what)
  local n = 0
  for l in capture("ls -A " .. q(dir)):gmatch("[^\n]+") do
    if l:sub(1, #what + 1) == what .. "." then n = n + 1 end
  end
  return n
end

-- Starts n children running `code` (args_for(i) gives child i's arguments) and releases
-- them together once all are waiting in barrier(): their open() of a FIFO blocks until this
-- process opens it. Returns { {out =, status =}, ... } once all have exited.
local function run_group(n, code, args_for, opts)
  T.n = T.n + 1
  local dir = ("%s/barrier%d"):format(T.root, T.n)
  assert(os.execute("mkdir " .. q(dir) .. " && mkfifo " .. q(dir .. "/fifo")))
  local hs = {}
  for i = 1, n do
    local o = { barrier = dir, timeout = opts and opts.timeout }
    hs[i] = spawn(code, args_for(i), o)
  end
  local deadline = os.time() + 20
  while count_marks(dir, "ready") < n and os.time() < deadline do sleep(0.02) end
  sleep(0.05)                           -- the last one from its ready file into open()
  local w = assert(io.open(dir .. "/fifo", "r+"))   -- O_RDWR: does not block
  -- open until every child got through its open(): one preempted between its ready file
  -- and open() (a loaded machine: 250 ms happen) would otherwise block there with no
  -- writer left, until its timeout killed it
  deadline = os.time() + 20
  while count_marks(dir, "opened") < n and os.time() < deadline do sleep(0.02) end
  w:close()
  local res = {}
  for i = 1, n do
    local body, st = finish(hs[i])
    res[i] = { out = body, status = st }
  end
  return res
end

local function assert_group_ok(res)
  for i, r in ipairs(res) do assert_ok(r.out, r.status, "child " .. i) end
end

local function file_mode(path)
  return (capture("stat -c %a " .. q(path)):gsub("%s+$", ""))
end

local function file_inode(path)
  return (capture("stat -c %i " .. q(path)):gsub("%s+$", ""))
end

local function dir_entries(dir)
  return lines(capture("ls -A " .. q(dir)))
end

local function proc_state(pid)
  local s = read_file("/proc/" .. pid .. "/stat")
  return s and s:match("%) (%a)")
end

-- deterministic garbage bytes
local function garbage(n, seed)
  local x = seed or 12345
  local t = {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char(math.floor(x / 65536) % 256)
  end
  return table.concat(t)
end

-- the segment format number (ZKV_FORMAT in src/format.h)
local FORMAT = 10

local function le32(v)
  return string.char(v % 256, math.floor(v / 256) % 256, math.floor(v / 65536) % 256,
                     math.floor(v / 16777216) % 256)
end

---------------------------------------------------------------------------
-- Child chunks used by more than one test

-- the values that must come back exactly in another process
local VALUES = [[
local V = {
  { "str", "a\0b\255 zeltkv" }, { "empty_str", "" },
  { "int", 42 }, { "neg", -7 }, { "zero", 0 }, { "max", H.MAXINT }, { "min", H.MININT },
  { "float", 1.5 }, { "tenth", 0.1 }, { "huge", 1e300 }, { "fint", 3.0 }, { "negf", -2.75 },
  { "t", true }, { "f", false },
  { "tbl", { name = "ada", roles = { "admin", "dev" }, n = 3, f = 2.25, ok = true,
             nested = { {}, { a = false, b = { 1, 2, { 3 } } } } } },
  { "arr", { 1, 2.5, "three", false, { x = -1 } } },
  { "empty_tbl", {} },
}
]]

-- opens NAME and prints `refused CODE` or `opened` for two attempts; when it opens, it
-- also tries some operations: each must return or fail with STORE_OPERATION_FAILED
local OPEN_DAMAGED = [[
local name = ...
for _ = 1, 2 do
  local ok, kv = pcall(zeltkv.shared, name, { lock_timeout = 1 })
  if not ok then
    out("refused", code_of(kv))
  else
    out("opened")
    local s
    local ok1, e1 = pcall(function() s = kv:namespace("n") end)
    out("op0", ok1 and "ok" or code_of(e1))
    if not ok1 then s = setmetatable({}, { __index = function() error(e1) end }) end
    local ops = {
      function() return s:get("k1") end, function() return s:set("new", "v") end,
      function() return s:count() end, function() local n = 0; for _ in s:keys() do n = n + 1 end; return n end,
      function() return kv:stats().keys end, function() return s:incr("c") end,
      function() return kv:gc() end,
    }
    for i, op in ipairs(ops) do
      local ok2, r = pcall(op)
      out("op" .. i, ok2 and "ok" or code_of(r))
    end
    kv:close()
  end
end
]]

---------------------------------------------------------------------------

describe("shared driver across processes #shared #multiprocess", function()

  lazy_setup(function()
    T.root = capture("mktemp -d \"${TMPDIR:-/tmp}/zeltkv-spec07.XXXXXX\""):gsub("%s+$", "")
    assert(T.root ~= "" and T.root:match("zeltkv%-spec07"), "mktemp -d failed")
    T.shm = T.root .. "/shm"
    assert(os.execute("mkdir " .. q(T.shm)))
  end)

  -- every test starts with an empty segment directory
  after_each(function()
    os.execute("rm -rf " .. q(T.shm) .. " && mkdir " .. q(T.shm))
  end)

  lazy_teardown(function()
    if T.root and T.root:match("zeltkv%-spec07") then
      os.execute("rm -rf " .. q(T.root))
    end
  end)

  it("children run this interpreter with this module", function()
    local body = run([[
      out("version", _VERSION, rawget(_G, "jit") and "jit" or "nojit", zeltkv.version)
    ]])
    local v, j, zv = field(body, "version")
    assert.are.equal(_VERSION, v)
    assert.are.equal(rawget(_G, "jit") and "jit" or "nojit", j)
    assert.are.equal(H.zeltkv.version, zv)
  end)

  -------------------------------------------------------------------------
  describe("same keys in every process", function()
    it("a value written by one process is read back exactly by another", function()
      local name = H.segment_name("rt")
      run(VALUES .. [[
        local kv = zeltkv.shared(...)
        local s = kv:namespace("rt")
        for _, kvp in ipairs(V) do assert.is_true(s:set(kvp[1], kvp[2])) end
        s:set("ttl", "x", 100)
        s:incr("counter", 41)
        kv:namespace("rt"):namespace("child"):set("deep", { 1 })
        kv:close()
      ]], { name })
      -- the writer has exited: the segment outlived it
      assert.is_truthy(read_file(seg_path(name)))
      run(VALUES .. [[
        local kv = zeltkv.shared(...)
        local s = kv:namespace("rt")
        for _, kvp in ipairs(V) do H.assert_round_trip(kvp[2], s:get(kvp[1]), kvp[1]) end
        local ttl = s:ttl("ttl")
        assert(ttl > 90 and ttl <= 100, "ttl across processes: " .. tostring(ttl))
        assert.are.equal(math.huge, s:ttl("int"))
        assert.are.equal(42, s:incr("counter"))
        assert.are.same({ 1 }, kv:namespace("rt"):namespace("child"):get("deep"))
        assert.are.equal(#V + 2, s:count())
        assert.are.equal(#V + 3, kv:stats().keys)
        -- and back the other way
        s:set("from_reader", { answer = 42, pi = 3.25, list = { true, false } })
      ]], { name })
      run([[
        local s = zeltkv.shared(...):namespace("rt")
        assert.are.same({ answer = 42, pi = 3.25, list = { true, false } }, s:get("from_reader"))
        assert.are.equal(42, s:get("counter"))
      ]], { name })
    end)

    it("the barrier releases a child that reaches its open() late", function()
      -- child 2 sleeps 0.6 s between its ready file and its open() of the FIFO: the
      -- parent's end must still be open then (it was closed 0.25 s after the last ready
      -- file, and such a child blocked until its timeout killed it)
      local res = run_group(2, [[
        local late = ...
        barrier(tonumber(late))
        out("through", "yes")
      ]], function(i) return { i == 2 and "0.6" or "0" } end, { timeout = 10 })
      assert_group_ok(res)
      for i = 1, 2 do assert.is_truthy(res[i].out:find("through\tyes", 1, true), "child " .. i) end
    end)

    it("two processes running at the same time see each other's writes", function()
      local name = H.segment_name("pingpong")
      run([[ zeltkv.shared(..., { size = "1m" }):close() ]], { name })
      local res = run_group(2, [[
        local name, role = ...
        local s = zeltkv.shared(name):namespace("pp")
        barrier()
        local function wait_for(key)
          for _ = 1, 2000 do
            local v = s:get(key)
            if v ~= nil then return v end
            sleep(0.005)
          end
          error("never saw " .. key)
        end
        if role == "a" then
          s:set("ping", { from = "a" })
          out("got", wait_for("pong").from)
        else
          out("got", wait_for("ping").from)
          s:set("pong", { from = "b" })
        end
      ]], function(i) return { name, i == 1 and "a" or "b" } end)
      assert_group_ok(res)
      assert.are.equal("b", field(res[1].out, "got"))
      assert.are.equal("a", field(res[2].out, "got"))
    end)

    it("a forked child (LuaJIT FFI fork) shares the keys, through the inherited handle too",
       function()
      if not rawget(_G, "jit") then
        pending("needs fork(): LuaJIT FFI only")
        return
      end
      local name = H.segment_name("fork")
      local body = run([[
        local ffi = require("ffi")
        pcall(ffi.cdef, "int fork(void); void _exit(int); int waitpid(int, int *, int);")
        local name = ...
        local kv = zeltkv.shared(name, { size = "1m" })
        local s = kv:namespace("f")
        s:set("from_parent", { n = 1 })
        io.stdout:flush()
        local kids = {}
        for i = 1, 3 do
          local p = ffi.C.fork()
          assert(p >= 0, "fork failed")
          if p == 0 then
            local ok = pcall(function()
              assert(s:get("from_parent").n == 1)
              s:set("inherited" .. i, i)                       -- the inherited handle
              for _ = 1, 1000 do s:incr("count") end
              local kv2 = zeltkv.shared(name)                   -- and a fresh open
              kv2:namespace("f"):set("fresh" .. i, i)
            end)
            ffi.C._exit(ok and 0 or 1)
          end
          kids[i] = p
        end
        for i = 1, 3 do
          local st = ffi.new("int[1]")
          assert(ffi.C.waitpid(kids[i], st, 0) == kids[i])
          out("status", i, st[0])
        end
        for i = 1, 3 do
          assert.are.equal(i, s:get("inherited" .. i))
          assert.are.equal(i, s:get("fresh" .. i))
        end
        assert.are.equal(3000, s:get("count"))
      ]], { name })
      for _, l in ipairs(lines(body)) do
        local i, st = l:match("^status\t(%d)\t(%d+)$")
        if i then assert.are.equal("0", st, "forked child " .. i .. " failed") end
      end
    end)

    it("unlink returns true then false; the next open starts empty", function()
      local name = H.segment_name("unlink")
      run([[
        local name = ...
        local kv = zeltkv.shared(name, { size = "1m" })
        kv:namespace("n"):set("k", "v")
        kv:close()
      ]], { name })
      assert.is_truthy(read_file(seg_path(name)))
      local body = run([[
        local name = ...
        local kv = zeltkv.shared(name)
        local s = kv:namespace("n")
        assert.are.equal("v", s:get("k"))
        out("first", tostring(zeltkv.unlink(name)))
        out("second", tostring(zeltkv.unlink(name)))
        -- a handle that is still open keeps working on the unlinked segment
        assert.are.equal("v", s:get("k"))
        s:set("k2", 2)
        assert.are.equal(2, s:get("k2"))
        kv:close()
        out("never", tostring(zeltkv.unlink(name .. "-never-existed")))
      ]], { name })
      assert.are.equal("true", field(body, "first"))
      assert.are.equal("false", field(body, "second"))
      assert.are.equal("false", field(body, "never"))
      assert.is_nil(read_file(seg_path(name)))
      run([[
        local name = ...
        local kv = zeltkv.shared(name)
        assert.is_nil(kv:namespace("n"):get("k"))
        assert.are.equal(0, kv:stats().keys)
        kv:close()
        assert.is_true(zeltkv.unlink(name))
      ]], { name })
      assert.are.same({}, dir_entries(T.shm))
    end)
  end)

  -------------------------------------------------------------------------
  describe("creation race", function()
    it("4 processes opening a new name at once: one segment, every key kept", function()
      for round = 1, 4 do
        local name = H.segment_name("race" .. round)
        local res = run_group(4, [[
          local name, idx = ...
          idx = tonumber(idx)
          barrier()
          -- all ask for one size (a larger one would grow the segment, a smaller one
          -- be refused: segment_life_spec.lua)
          local kv = zeltkv.shared(name, { size = "256k" })
          local s = kv:namespace("race")
          s:set("k" .. idx, idx)
          s:incr("opened")
          local p = io.popen("stat -c %i " .. os.getenv("ZELTKV_SHM_DIR") .. "/zeltkv-" .. name)
          out("inode", (p:read("*l")))
          p:close()
          out("capacity", kv:stats().capacity)
        ]], function(i) return { name, i } end)
        assert_group_ok(res)
        local inode = file_inode(seg_path(name))
        local cap = field(res[1].out, "capacity")
        for i, r in ipairs(res) do
          assert.are.equal(inode, field(r.out, "inode"),
                           "round " .. round .. ": child " .. i .. " used another segment file")
          assert.are.equal(cap, field(r.out, "capacity"),
                           "round " .. round .. ": child " .. i .. " saw another capacity")
        end
        run([[
          local s = zeltkv.shared(...):namespace("race")
          for i = 1, 4 do assert.are.equal(i, s:get("k" .. i), "key k" .. i) end
          assert.are.equal(4, s:get("opened"))
          assert.are.equal(5, s:count())
        ]], { name })
        -- no half-made or temporary file is left behind
        assert.are.same({ "zeltkv-" .. name }, dir_entries(T.shm))
        os.remove(seg_path(name))
      end
    end)
  end)

  -------------------------------------------------------------------------
  describe("modes and names", function()
    it("creates segments with mode 0600 by default, `mode` when given", function()
      local n1, n2 = H.segment_name("mode"), H.segment_name("mode")
      run([[
        local n1, n2 = ...
        zeltkv.shared(n1, { size = "64k" }):close()
        zeltkv.shared(n2, { size = "64k", mode = tonumber("640", 8) }):close()
      ]], { n1, n2 })
      assert.are.equal("600", file_mode(seg_path(n1)))
      assert.are.equal("640", file_mode(seg_path(n2)))
      -- `mode` applies only to a segment this call creates
      run([[
        local n1 = ...
        local kv = zeltkv.shared(n1, { mode = tonumber("644", 8) })
        kv:namespace("n"):set("k", 1)
        kv:close()
      ]], { n1 })
      assert.are.equal("600", file_mode(seg_path(n1)))
      os.remove(seg_path(n1))
      os.remove(seg_path(n2))
    end)

    it("validates names: INVALID_KEY for bad ones, and no file is made", function()
      local body = run([[
        local bad = { "", string.rep("n", 129), "a/b", "a b", "../x", "nul\0byte", "tab\t",
                      "caf\195\169", "x*", 42, true, {} }
        for i, name in ipairs(bad) do
          local ok, err = pcall(zeltkv.shared, name)
          assert(not ok, "shared(#" .. i .. ") should fail")
          H.check_error("INVALID_KEY", err)
          ok, err = pcall(zeltkv.unlink, name)
          assert(not ok, "unlink(#" .. i .. ") should fail")
          H.check_error("INVALID_KEY", err)
        end
        H.assert_error_code("INVALID_KEY", zeltkv.shared)
        H.assert_error_code("INVALID_KEY", zeltkv.unlink)
        for _, name in ipairs({ string.rep("n", 128), "Az09._-", "..", "-" }) do
          local kv = zeltkv.shared(name, { size = "64k" })
          kv:namespace("n"):set("k", name)
          kv:close()
          out("made", name)
        end
      ]])
      local expect = {}
      for _, n in ipairs({ string.rep("n", 128), "Az09._-", "..", "-" }) do
        expect[#expect + 1] = "zeltkv-" .. n
        assert.are.equal("600", file_mode(seg_path(n)))
      end
      table.sort(expect)
      local got = dir_entries(T.shm)
      table.sort(got)
      assert.are.same(expect, got)
      assert.is_truthy(body:find("made", 1, true))
      for _, n in ipairs(expect) do os.remove(T.shm .. "/" .. n) end
    end)
  end)

  -------------------------------------------------------------------------
  describe("damaged segments are refused with STORE_OPERATION_FAILED, never a crash", function()
    local name, path, original

    before_each(function()
      name = H.segment_name("bad")
      path = seg_path(name)
      run([[
        local kv = zeltkv.shared(..., { size = "64k" })
        local s = kv:namespace("n")
        for i = 1, 50 do s:set("k" .. i, { i = i, s = string.rep("x", i) }) end
        kv:close()
      ]], { name })
      original = assert(read_file(path))
      assert.are.equal("ZELTKV\0\1", original:sub(1, 8))
      assert.are.equal(le32(FORMAT), original:sub(9, 12))
    end)

    after_each(function() os.remove(path) end)

    local function assert_refused()
      local body, st = finish(spawn(OPEN_DAMAGED, { name }, { timeout = 20 }))
      assert_ok(body, st, "opening the damaged segment")
      local got = lines(body)
      assert.are.same({ "refused\tSTORE_OPERATION_FAILED", "refused\tSTORE_OPERATION_FAILED" },
                      got)
    end

    it("the undamaged segment opens (control)", function()
      local body = run(OPEN_DAMAGED, { name })
      assert.are.equal("opened", lines(body)[1])
      assert.is_nil(body:find("STORE_OPERATION_FAILED", 1, true))
    end)

    it("another format version", function()
      for _, v in ipairs({ FORMAT - 1, FORMAT + 1, 0, 4294967295 }) do
        write_file(path, original:sub(1, 8) .. le32(v) .. original:sub(13))
        assert_refused()
      end
    end)

    it("another magic", function()
      write_file(path, "ZELTKV\0\2" .. original:sub(9))
      assert_refused()
      write_file(path, "zeltkv\0\1" .. original:sub(9))
      assert_refused()
    end)

    it("a truncated segment", function()
      for _, n in ipairs({ math.floor(#original / 2), #original - 4096, 4096, 100, 12, 7, 0 }) do
        write_file(path, original:sub(1, n))
        assert_refused()
      end
    end)

    it("a segment overwritten with garbage, or with zeros", function()
      write_file(path, garbage(#original, 1))
      assert_refused()
      write_file(path, string.rep("\0", #original))
      assert_refused()
      -- magic and version intact, the rest garbage
      write_file(path, original:sub(1, 12) .. garbage(#original - 12, 2))
      assert_refused()
    end)

    it("a segment with a good header and a garbage body never crashes a process", function()
      -- whether it opens is not said; what it must not do is crash or hang, and every
      -- failure must be STORE_OPERATION_FAILED
      for seed = 1, 3 do
        write_file(path, original:sub(1, 4096) .. garbage(#original - 4096, seed))
        local body, st = finish(spawn(OPEN_DAMAGED, { name }, { timeout = 20 }))
        assert_ok(body, st, "seed " .. seed)
        for _, l in ipairs(lines(body)) do
          local what, res = l:match("^(%S+)\t(%S+)$")
          if what then
            assert(res == "ok" or res == "STORE_OPERATION_FAILED",
                   "seed " .. seed .. ": " .. l .. "\n" .. body)
          end
        end
      end
    end)
  end)

  -------------------------------------------------------------------------
  describe("a stopped lock holder", function()
    local HOLDER = [[
      local name = ...
      local kv = zeltkv.shared(name)
      local s = kv:namespace("n")
      kv:atomic(function()
        s:set("held", "uncommitted")
        out("pid", pid())
        os.execute("kill -STOP $PPID")      -- stops this process, holding the lock
        s:set("after_cont", true)
      end)
      out("released")
    ]]
    -- opens its handles first, then waits for the go file, then meets the stopped holder
    local CONTENDER = [[
      local name, go = ...
      local kv = zeltkv.shared(name, { lock_timeout = 0.3 })
      local s = kv:namespace("n")
      out("ready")
      for _ = 1, 2000 do
        local f = io.open(go, "r")
        if f then f:close(); break end
        sleep(0.01)
      end
      local t0 = now()
      local ok, err = pcall(s.set, s, "contender", 1)
      out("set", ok and "ok" or code_of(err), ("%.3f"):format(now() - t0))
      t0 = now()
      ok, err = pcall(kv.atomic, kv, function() s:set("x", 1) end)
      out("atomic", ok and "ok" or code_of(err), ("%.3f"):format(now() - t0))
      t0 = now()
      ok, err = pcall(kv.namespace, kv, "n")
      out("namespace", ok and "ok" or code_of(err), ("%.3f"):format(now() - t0))
      local ok2, v = pcall(s.get, s, "held")
      out("get", ok2 and tostring(v) or code_of(v))
      ok2, v = pcall(s.get, s, "before")
      out("before", ok2 and tostring(v) or code_of(v))
    ]]

    local name, holder, holder_pid, contender, go

    before_each(function()
      holder_pid = nil
      name = H.segment_name("stop")
      T.n = T.n + 1
      go = T.root .. "/go" .. T.n
      run([[
        local kv = zeltkv.shared(..., { size = "1m" })
        kv:namespace("n"):set("before", 1)
        kv:close()
      ]], { name })
      contender = spawn(CONTENDER, { name, go }, { timeout = 30 })
      assert.are.equal("ready", contender.p:read("*l"))
      holder = spawn(HOLDER, { name }, { timeout = 30 })
      local l = holder.p:read("*l")
      holder_pid = l and l:match("^pid\t(%d+)$")
      assert(holder_pid, "the holder did not start: " .. tostring(l))
      for _ = 1, 500 do
        if proc_state(holder_pid) == "T" then break end
        sleep(0.01)
      end
      assert.are.equal("T", proc_state(holder_pid))
    end)

    after_each(function()
      if contender then
        write_file(go, "go")
        finish(contender)
        contender = nil
      end
      if holder then
        if holder_pid then os.execute("kill -KILL " .. holder_pid .. " 2>/dev/null") end
        finish(holder)
        holder = nil
      end
    end)

    local function check_contender()
      write_file(go, "go")
      local body, st = finish(contender)
      contender = nil
      assert_ok(body, st, "the contender")
      if os.getenv("ZELTKV_SPEC_DEBUG") then io.stderr:write(body) end
      local code, dt = field(body, "set")
      assert.are.equal("STORE_OPERATION_FAILED", code, body)
      dt = tonumber(dt)
      assert(dt >= 0.25 and dt < 1.5, "set failed after " .. dt .. " s, lock_timeout is 0.3")
      code, dt = field(body, "atomic")
      assert.are.equal("STORE_OPERATION_FAILED", code, body)
      assert(tonumber(dt) < 1.5, "atomic failed after " .. dt .. " s, lock_timeout is 0.3")
      -- an existing namespace: it may need the lock or not, but never hangs
      code, dt = field(body, "namespace")
      assert(code == "ok" or code == "STORE_OPERATION_FAILED", body)
      assert(tonumber(dt) < 1.5, "namespace() took " .. dt .. " s, lock_timeout is 0.3")
      -- the holder's write is not visible before its atomic returns
      local got = field(body, "get")
      assert(got == "nil" or got == "STORE_OPERATION_FAILED",
             "a reader saw a write of an unfinished atomic: " .. tostring(got))
      got = field(body, "before")
      assert(got == "1" or got == "STORE_OPERATION_FAILED", "before = " .. tostring(got))
    end

    it("makes others fail after lock_timeout; after SIGCONT it commits", function()
      check_contender()
      os.execute("kill -CONT " .. holder_pid)
      local body, st = finish(holder)
      holder = nil
      assert_ok(body, st, "the holder after SIGCONT")
      assert.is_truthy(body:find("released", 1, true))
      run([[
        local kv = zeltkv.shared(..., { lock_timeout = 2 })
        local s = kv:namespace("n")
        assert.are.equal("uncommitted", s:get("held"))
        assert.is_true(s:get("after_cont"))
        assert.is_nil(s:get("contender"))
        assert.is_nil(s:get("x"))
        assert.is_true(s:set("later", 1))
        assert.are.equal(4, s:count())
      ]], { name })
    end)

    it("makes others fail after lock_timeout; after SIGKILL the store recovers", function()
      check_contender()
      os.execute("kill -KILL " .. holder_pid)
      local _, st = finish(holder)
      holder = nil
      assert.are.equal(137, st)
      run([[
        local kv = zeltkv.shared(..., { lock_timeout = 2 })
        local s = kv:namespace("n")
        assert.is_true(s:set("later", 1))
        assert.are.equal(1, s:get("before"))
        assert.is_nil(s:get("held"), "the killed holder's unfinished atomic was kept")
        assert.is_nil(s:get("after_cont"))
        assert.are.equal(2, s:count())
        assert.are.equal(2, kv:stats().keys)
        assert(kv:stats().lock_recoveries >= 1, "lock_recoveries not counted")
        assert.are.equal(7, kv:atomic(function() s:incr("n", 7); return s:get("n") end))
      ]], { name })
    end)
  end)

  -------------------------------------------------------------------------
  describe("fixed capacity", function()
    it("evict = \"none\": the write that does not fit fails, everything before is intact",
       function()
      local name = H.segment_name("full")
      run([[
        local name = ...
        local kv = zeltkv.shared(name, { size = "256k", evict = "none" })
        local s = kv:namespace("fill")
        local cap = kv:stats().capacity
        assert(cap > 0 and cap <= 256 * 1024, "capacity " .. tostring(cap))
        local val = string.rep("v", 200)
        local n = 0
        while true do
          local ok, err = pcall(s.set, s, "k" .. (n + 1), val .. (n + 1))
          if not ok then H.check_error("STORE_OPERATION_FAILED", err); break end
          n = n + 1
          assert(n < 5000, "256k never filled up")
        end
        assert(n > 100, "only " .. n .. " values of 200 bytes fit in 256k")
        local snap = H.snapshot({ s }, kv)
        -- more failing writes change nothing
        H.assert_error_code("STORE_OPERATION_FAILED", s.set, s, "k" .. (n + 1), val)
        H.assert_error_code("STORE_OPERATION_FAILED", s.set, s, "k1", string.rep("x", 300000))
        H.assert_unchanged(snap)
        for i = 1, n do assert.are.equal(val .. i, s:get("k" .. i)) end
        local st = kv:stats()
        assert.are.equal(n, st.keys)
        assert.are.equal(0, st.evictions)
        assert(st.bytes_used <= cap)
        out("n", n)
      ]], { name })
      -- another process sees the same
      run([[
        local s = zeltkv.shared(...):namespace("fill")
        local val = string.rep("v", 200)
        local n = s:count()
        assert(n > 100)
        for i = 1, n do assert.are.equal(val .. i, s:get("k" .. i)) end
      ]], { name })
      os.remove(seg_path(name))
    end)

    it("evict = \"lru\": writes keep succeeding and old keys are evicted", function()
      local name = H.segment_name("lru")
      run([[
        local name = ...
        local kv = zeltkv.shared(name, { size = "256k", evict = "lru" })
        local s = kv:namespace("lru")
        local cap = kv:stats().capacity
        local val = string.rep("v", 200)
        s:set("hot", "keep me")
        local n = 3000          -- about 2.5 times the capacity
        for i = 1, n do
          assert.are.equal("keep me", s:get("hot"), "the hot key was evicted at " .. i)
          local ok, err = pcall(s.set, s, "k" .. i, val .. i)
          assert(ok, "write " .. i .. " failed: " .. H.describe_err(err))
        end
        local st = kv:stats()
        assert(st.evictions > 0, "no evictions")
        assert(st.bytes_used <= cap)
        assert(st.keys < n)
        assert.are.equal(val .. n, s:get("k" .. n))
        assert.is_nil(s:get("k1"))
        assert.are.equal(st.keys, s:count())
      ]], { name })
      os.remove(seg_path(name))
    end)

    it("a write that fits the free space in total is not refused for fragmentation",
       function()
      local name = H.segment_name("frag")
      local body = run([[
        local name = ...
        local kv = zeltkv.shared(name, { size = "256k", evict = "none" })
        local s = kv:namespace("frag")
        local small = string.rep("s", 100)
        local n = 0
        while true do
          local ok, err = pcall(s.set, s, "k" .. (n + 1), small)
          if not ok then H.check_error("STORE_OPERATION_FAILED", err); break end
          n = n + 1
        end
        local full = kv:stats()
        for i = 1, n, 2 do assert.is_true(s:del("k" .. i)) end  -- every other one: holes
        local holed = kv:stats()
        local freed = holed.free_bytes - full.free_bytes
        local hole = freed / math.ceil(n / 2)          -- bytes freed per deleted entry
        assert(hole >= 100, "freed " .. freed .. " bytes from " .. math.ceil(n / 2) .. " entries")
        -- values 4 times the size of a whole freed entry: larger than any one hole
        local big = string.rep("B", math.floor(hole * 4))
        local m = math.floor(freed * 0.6 / (#big + hole))
        assert(m >= 20, "m = " .. m)
        for j = 1, m do
          local ok, err = pcall(s.set, s, "big" .. j, big)
          assert(ok, ("big write %d of %d (%d bytes; %d bytes were free, %d in holes of ~%.0f) failed: %s")
                     :format(j, m, #big, holed.free_bytes, freed, hole, H.describe_err(err)))
        end
        for i = 2, n, 2 do assert.are.equal(small, s:get("k" .. i)) end
        for j = 1, m do assert.are.equal(big, s:get("big" .. j)) end
        out("n", n, "m", m, "big", #big)
      ]], { name })
      assert.is_truthy(field(body, "n"))
      os.remove(seg_path(name))
    end)
  end)

  -------------------------------------------------------------------------
  describe("atomicity under 4 concurrent processes", function()
    local name
    before_each(function()
      name = H.segment_name("conc")
      run([[ zeltkv.shared(..., { size = "4m" }):close() ]], { name })
    end)
    after_each(function() os.remove(seg_path(name)) end)

    it("4 x 50k incr on one key give exactly 200k", function()
      local res = run_group(4, [[
        local name, n = ...
        n = tonumber(n)
        local s = zeltkv.shared(name):namespace("c")
        barrier()
        local last = 0
        for _ = 1, n do
          local v = s:incr("hits")
          if v <= last then error(("incr went from %d to %d"):format(last, v)) end
          last = v
        end
        out("last", last)
      ]], function() return { name, 50000 } end)
      assert_group_ok(res)
      local top = 0
      for _, r in ipairs(res) do top = math.max(top, tonumber(field(r.out, "last"))) end
      assert.are.equal(200000, top)
      local body = run([[ out("hits", zeltkv.shared(...):namespace("c"):get("hits")) ]], { name })
      assert.are.equal("200000", field(body, "hits"))
    end)

    it("4 x 5k atomic get-then-set give exactly 20k", function()
      local res = run_group(4, [[
        local name, n = ...
        n = tonumber(n)
        local kv = zeltkv.shared(name)
        local s = kv:namespace("a")
        barrier()
        for _ = 1, n do
          kv:atomic(function()
            local v = s:get("n") or 0
            s:set("n", v + 1)
            s:set("last", { v = v + 1 })
          end)
        end
      ]], function() return { name, 5000 } end)
      assert_group_ok(res)
      local body = run([[
        local s = zeltkv.shared(...):namespace("a")
        out("n", s:get("n"))
        out("last", s:get("last").v)
      ]], { name })
      assert.are.equal("20000", field(body, "n"))
      assert.are.equal("20000", field(body, "last"))
    end)

    it("setnx on the same keys from 4 processes: exactly one winner per key", function()
      local NKEYS = 2000
      local res = run_group(4, [[
        local name, idx, nkeys = ...
        local s = zeltkv.shared(name):namespace("locks")
        barrier()
        local won = {}
        for i = 1, tonumber(nkeys) do
          if s:setnx("job:" .. i, tonumber(idx)) then won[#won + 1] = i end
        end
        out("won", table.concat(won, ","))
      ]], function(i) return { name, i, NKEYS } end)
      assert_group_ok(res)
      local winner, total = {}, 0
      for idx, r in ipairs(res) do
        local won = field(r.out, "won") or ""
        for k in won:gmatch("%d+") do
          k = tonumber(k)
          assert(winner[k] == nil, ("job:%d won by %d and %d"):format(k, winner[k] or -1, idx))
          winner[k] = idx
          total = total + 1
        end
      end
      assert.are.equal(NKEYS, total)
      local body = run([[
        local name, nkeys = ...
        local s = zeltkv.shared(name):namespace("locks")
        local t = {}
        for i = 1, tonumber(nkeys) do t[i] = tostring(s:get("job:" .. i)) end
        out("values", table.concat(t, ","))
        out("count", s:count())
      ]], { name, NKEYS })
      assert.are.equal(tostring(NKEYS), field(body, "count"))
      local i = 0
      for v in field(body, "values"):gmatch("[^,]+") do
        i = i + 1
        assert.are.equal(tostring(winner[i]), v, "job:" .. i .. " holds another value")
      end
      assert.are.equal(NKEYS, i)
    end)
  end)

  -------------------------------------------------------------------------
  describe("a second handle on the same segment in one process", function()
    local name
    before_each(function()
      name = H.segment_name("twice")
      run([[ zeltkv.shared(..., { size = "1m" }):close() ]], { name })
    end)
    after_each(function() os.remove(seg_path(name)) end)

    it("opened inside kv:atomic joins the transaction without deadlock", function()
      run([[
        local name = ...
        local kv = zeltkv.shared(name, { lock_timeout = 1 })
        local s = kv:namespace("n")
        local kv2
        local r = kv:atomic(function()
          s:set("a", 1)
          kv2 = zeltkv.shared(name, { lock_timeout = 1 })
          local s2 = kv2:namespace("n")
          assert.are.equal(1, s2:get("a"))       -- sees the open transaction's write
          s2:set("b", 2)
          s2:incr("c", 3)
          assert.are.equal(2, s:get("b"))
          -- kv2's own atomic nests in the outer one
          assert.are.equal("inner", kv2:atomic(function() s2:set("d", 4); return "inner" end))
          return "outer"
        end)
        assert.are.equal("outer", r)
        local s2 = kv2:namespace("n")
        for k, v in pairs({ a = 1, b = 2, c = 3, d = 4 }) do
          assert.are.equal(v, s:get(k), k)
          assert.are.equal(v, s2:get(k), k)
        end
        -- both handles still take the lock normally afterwards
        kv2:atomic(function() s2:incr("c") end)
        kv:atomic(function() s:incr("c") end)
        assert.are.equal(5, s:get("c"))
        kv2:close()
        kv:close()
      ]], { name })
      -- and the writes are in the segment for another process
      run([[
        local s = zeltkv.shared(...):namespace("n")
        assert.are.equal(1, s:get("a"))
        assert.are.equal(5, s:get("c"))
        assert.are.equal(4, s:get("d"))
      ]], { name })
    end)

    it("when fn raises, the writes made through the second handle are undone too", function()
      run([[
        local name = ...
        local kv = zeltkv.shared(name, { lock_timeout = 1 })
        local s = kv:namespace("n")
        s:set("a", 1)
        local kv2
        local ok, err = pcall(kv.atomic, kv, function()
          s:set("a", 10)
          kv2 = zeltkv.shared(name, { lock_timeout = 1 })
          kv2:namespace("n"):set("new", true)
          kv2:namespace("other"):set("x", { 1 })
          error({ mine = true })
        end)
        assert.is_false(ok)
        assert.is_true(err.mine)
        assert.are.equal(1, s:get("a"))
        assert.is_nil(s:get("new"))
        assert.is_nil(kv2:namespace("other"):get("x"))
        assert.are.equal(1, kv:stats().keys)
        kv2:namespace("n"):set("after", 1)      -- kv2 works after the rollback
        assert.are.equal(1, s:get("after"))
      ]], { name })
    end)

    it("closing the second handle inside kv:atomic does not end the outer transaction",
       function()
      run([[
        local name = ...
        local kv = zeltkv.shared(name, { lock_timeout = 1 })
        local s = kv:namespace("n")
        kv:atomic(function()
          s:set("a", 1)
          local kv2 = zeltkv.shared(name, { lock_timeout = 1 })
          kv2:namespace("n"):set("b", 2)
          kv2:close()
          s:set("c", 3)
        end)
        assert.are.equal(1, s:get("a"), "a write before kv2:close() was lost")
        assert.are.equal(2, s:get("b"), "kv2's write was lost")
        assert.are.equal(3, s:get("c"))
        -- a raise after the close still undoes everything
        local ok = pcall(kv.atomic, kv, function()
          s:set("a", 100)
          local kv2 = zeltkv.shared(name, { lock_timeout = 1 })
          kv2:namespace("n"):set("b", 200)
          kv2:close()
          s:set("c", 300)
          error("undo")
        end)
        assert.is_false(ok)
        assert.are.equal(1, s:get("a"))
        assert.are.equal(2, s:get("b"))
        assert.are.equal(3, s:get("c"))
      ]], { name })
    end)

    it("a second handle garbage-collected inside kv:atomic does not end the transaction",
       function()
      run([[
        local name = ...
        local kv = zeltkv.shared(name, { lock_timeout = 1 })
        local s = kv:namespace("n")
        local r = kv:atomic(function()
          s:set("x", 1)
          do local kv2 = zeltkv.shared(name, { lock_timeout = 1 }) end
          collectgarbage()
          collectgarbage()
          s:set("y", 2)
          return "done"
        end)
        assert.are.equal("done", r)
        assert.are.equal(1, s:get("x"), "the write before the collection was lost")
        assert.are.equal(2, s:get("y"))
      ]], { name })
    end)
  end)
end)
