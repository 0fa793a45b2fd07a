-- spec/13-cli_spec.lua: the zkv command (bin/zkv, lua/zeltkv/cli.lua; docs/cli.md).
-- Every subcommand runs as a real process, good inputs and bad, and the test checks
-- what it prints on stdout and stderr and its exit status (0 done, 1 failed, 2 usage).
-- Segments live in a private directory; Redis tests start their own server on a unix
-- socket and are pending when redis-server or the Redis driver is missing.
local zeltkv = require("zeltkv")
local core = require("zeltkv.core")
local H = require("helpers")

local LUA = H.interpreter()
-- on tmpfs, where segments live by default (a write through a mapping of a file on disk
-- also sets its modification time; on tmpfs only zeltkv's open does: the LAST OPEN test)
local DIR = assert(io.popen("mktemp -d " .. (io.open("/dev/shm") and "/dev/shm" or "/tmp") .. "/zkv-cli-XXXXXX")):read("*l")
local TMP = DIR .. "/files"
os.execute("mkdir -p " .. TMP)

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- zkv(args..., [{ stdin = text, env = "K=V ..." }]) -> status, stdout, stderr
local function zkv(...)
  local args, opts = { ... }, {}
  if type(args[#args]) == "table" then opts = table.remove(args) end
  local cmd = { "env", "ZELTKV_SHM_DIR=" .. q(DIR), "LUA_PATH=" .. q(package.path),
                "LUA_CPATH=" .. q(package.cpath), opts.env or "", LUA, "bin/zkv" }
  for _, a in ipairs(args) do cmd[#cmd + 1] = q(a) end
  local input = TMP .. "/stdin"
  write(input, opts.stdin or "")
  local line = table.concat(cmd, " ") .. " <" .. input .. " >" .. TMP .. "/out 2>" .. TMP .. "/err"
  local a, _, c = os.execute(line)
  local status = type(a) == "number" and math.floor(a / 256) or c
  return status, slurp(TMP .. "/out"), slurp(TMP .. "/err")
end

local function lines(s)
  local t = {}
  for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- the process ran and status, stdout (a string or a pattern table) and one stderr line are as given
local function expect(status, want_out, want_err, ...)
  local st, o, e = zkv(...)
  local shown = {}
  for _, a in ipairs({ ... }) do if type(a) == "string" then shown[#shown + 1] = a end end
  local args = table.concat(shown, " ")
  assert.are.equal(status, st, "zkv " .. args .. "\nstdout: " .. o .. "\nstderr: " .. e)
  if want_out ~= nil then
    if type(want_out) == "table" then assert.matches(want_out[1], o, nil, false, "stdout of zkv " .. args)
    else assert.are.equal(want_out, o, "stdout of zkv " .. args) end
  end
  if status == 0 then
    assert.are.equal("", e, "stderr of zkv " .. args)
  else
    -- exactly one line, starting "zkv: "
    assert.are.equal(1, #lines(e), "one line on stderr: " .. e)
    assert.matches("^zkv: ", e)
    if want_err then assert.matches(want_err, e, nil, true, "stderr of zkv " .. args) end
  end
  return o, e
end

local seq = 0
local function name(tag)
  seq = seq + 1
  return ("operators-cli-%s-%d"):format(tag, seq)
end

local function open(n, opts)
  local o = { dir = DIR }
  for k, v in pairs(opts or {}) do o[k] = v end
  return zeltkv.shared(n, o)
end

local function exists(n) return io.open(DIR .. "/zeltkv-" .. n, "rb") ~= nil end
local function decode(text) return core._json_decode(text) end

-- a segment with keys of every kind in a few namespaces
local function seeded(tag)
  local n = name(tag)
  local kv = open(n)
  local cache = kv:namespace("cache")
  cache:set("user:1", { name = "ada", roles = { "admin" } })
  cache:set("bin", "a\255b")
  cache:set("int", 42)
  cache:set("float", 1.5)
  cache:set("bool", true)
  cache:set("timed", "x", 3600)
  cache:namespace("eu"):set("k", 1)
  kv:namespace("odd/na%me"):set("k\0z", "v")
  return n, kv
end

local function sh_ok(cmd)
  local a = os.execute(cmd)
  return a == true or a == 0
end
local redis_ok = zeltkv.redis ~= nil and pcall(require, "socket") and sh_ok("command -v redis-server >/dev/null 2>&1")

teardown(function() os.execute("rm -rf " .. q(DIR)) end)

describe("zkv (command, usage, help)", function()
  it("--help and help list every command; exit 0", function()
    local o = expect(0, nil, nil, "--help")
    for _, c in ipairs({ "list", "info", "unlink", "ns", "keys", "get", "set", "del", "ttl",
                         "expire", "incr", "stats", "dump", "load", "help" }) do
      assert.matches("\n  " .. c .. " ", o, nil, true)
      local h = expect(0, nil, nil, "help", c)
      assert.matches("^usage: zkv " .. c, h)
      assert.are.equal(h, (expect(0, nil, nil, c, "--help")))
      assert.are.equal(h, (expect(0, nil, nil, c, "-h")))
    end
    assert.are.equal(o, (expect(0, nil, nil, "help")))
    expect(0, { "^zkv %(zeltkv%) %d" }, nil, "--version")
  end)

  it("bad usage is status 2 with one line", function()
    expect(2, "", "a command is needed")
    expect(2, "", 'no command "frob"', "frob")
    expect(2, "", 'no command "frob"', "help", "frob")
    expect(2, "", "no option --bogus", "--bogus", "list")
    expect(2, "", "no option --frob", "list", "--frob")
    expect(2, "", "0 arguments given; usage: zkv get", "get")
    expect(2, "", "4 arguments given", "get", "a", "b", "c", "d")
    expect(2, "", "--ttl needs a value", "set", "a", "b", "c", "1", "--ttl")
    expect(2, "", "--nx takes no value", "set", "a", "b", "c", "1", "--nx=1")
    expect(2, "", "is not a segment name", "info", "bad name!")
    expect(2, "", "is not a segment name", "get", string.rep("x", 129), "p", "k")
    expect(2, "", "--dir needs a value", "--dir")
  end)
end)

describe("zkv list / info / unlink", function()
  it("list shows each segment with its figures, and changes none of them", function()
    local n, kv = seeded("list")
    local small = name("small")
    local kv2 = open(small, { size = "1m", evict = "lru" })
    kv2:namespace("a"):set("k", "v")
    local junk_path = DIR .. "/zeltkv-" .. name("junk")
    write(junk_path, "not a segment")
    assert.is_true(core._set_file_times(junk_path, 1000, 2000))
    local before1, before2 = kv:stats(), kv2:stats()
    local _, at1, mt1 = core._file_times(DIR .. "/zeltkv-" .. n)
    local o = expect(0, nil, nil, "list")
    local rows = lines(o)
    assert.matches("^NAME +SIZE +USED +KEYS +EVICT +LAST OPEN +PATH$", rows[1])
    local seen = {}
    for i = 2, #rows do seen[rows[i]:match("^(%S+)")] = rows[i] end
    assert.matches("^" .. n:gsub("%-", "%%-") .. " .* 8 .*" .. "zeltkv%-" .. n:gsub("%-", "%%-") .. "$", seen[n])
    assert.matches(" 1 +lru ", seen[small])
    local junk
    for k, v in pairs(seen) do if k:match("junk") then junk = v end end
    assert.truthy(junk, "the junk file is listed")
    assert.matches("%(", junk)
    -- --json: one object per segment, exact figures
    local js = {}
    for _, l in ipairs(lines(expect(0, nil, nil, "list", "--json"))) do
      local t = decode(l)
      js[t.name] = t
    end
    assert.are.equal(8, js[n].keys)
    assert.are.equal(before1.bytes_used, js[n].used)
    assert.are.equal(64 * 1048576, js[n].size)
    assert.are.equal(1048576, js[small].size)
    assert.matches(" 64%.0 MiB ", seen[n])
    -- last open: when the test opened it (zkv's own opens do not count)
    assert.is_true(math.abs(js[n].last_open - mt1) < 1, "last_open is the file's time")
    assert.is_true(math.abs(js[n].last_open - os.time() * 1000) < 60000)
    local _, at2, mt2 = core._file_times(DIR .. "/zeltkv-" .. n)
    assert.are.equal(mt1, mt2)
    assert.are.equal(at1, at2)
    assert.are.same({ 1000, 2000 }, { select(2, core._file_times(junk_path)) })
    assert.are.equal(1, js[small].keys)
    assert.are.equal("lru", js[small].evict)
    -- nothing changed: figures, size and policy
    local after1, after2 = kv:stats(), kv2:stats()
    for _, f in ipairs({ "keys", "bytes_used", "capacity" }) do
      assert.are.equal(before1[f], after1[f], f)
      assert.are.equal(before2[f], after2[f], f)
    end
    kv:close()
    kv2:close()
    expect(0, "NAME  SIZE  USED  KEYS  EVICT  LAST OPEN  PATH\n", nil, "--dir", TMP, "list")   -- no segments there
    expect(1, "", "no/such/dir", "--dir", DIR .. "/no/such/dir", "list")
  end)

  it("LAST OPEN is when a process last opened the segment; zkv's own opens do not count", function()
    local n, kv = seeded("lastopen")
    kv:close()
    local p = DIR .. "/zeltkv-" .. n
    local hour_ago = (os.time() - 3600) * 1000
    assert.is_true(core._set_file_times(p, hour_ago, hour_ago))
    local function last_open()
      for _, l in ipairs(lines(expect(0, nil, nil, "list", "--json"))) do
        local t = decode(l)
        if t.name == n then return t.last_open end
      end
    end
    assert.are.equal(hour_ago, last_open())
    assert.are.equal(hour_ago, last_open())
    expect(0, "42\n", nil, "get", n, "cache", "int")
    expect(0, "", nil, "set", n, "cache", "int", "43")
    assert.are.equal(hour_ago, last_open())
    open(n):close()
    local t = last_open()
    assert.is_true(math.abs(t - os.time() * 1000) < 5000, "opened now: " .. t)
  end)

  it("info prints one segment; a missing one is status 1 and is not created", function()
    local n, kv = seeded("info")
    local o = expect(0, nil, nil, "info", n)
    assert.matches("\nkeys: +8\n", o)
    assert.matches("path: +" .. DIR:gsub("%p", "%%%0") .. "/zeltkv%-", o)
    assert.matches("\nlast_open: +%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d\n", o)
    local t = decode(expect(0, nil, nil, "info", n, "--json"))
    assert.are.equal(8, t.keys)
    assert.is_true(math.abs(t.last_open - os.time() * 1000) < 60000)
    kv:close()
    local missing = name("missing")
    expect(1, "", missing, "info", missing)
    assert.is_false(exists(missing))
  end)

  it("unlink removes a segment; again is status 1", function()
    local n, kv = seeded("unlink")
    kv:close()
    expect(0, "", nil, "unlink", n)
    assert.is_false(exists(n))
    expect(1, "", "no segment named " .. n, "unlink", n)
    expect(2, "", "not a segment name", "unlink", "a b")
    expect(2, "", "not one", "unlink", "redis://127.0.0.1:1/0")
  end)
end)

describe("zkv ns / keys", function()
  it("ns lists child namespaces with their key counts", function()
    local n, kv = seeded("ns")
    local row = function(p, k) return ("%-13s  %d\n"):format(p, k) end
    expect(0, row("cache", 6) .. row("odd%2Fna%25me", 1), nil, "ns", n)
    expect(0, "cache/eu  1\n", nil, "ns", n, "cache")
    expect(0, row("cache", 6) .. row("cache/eu", 1) .. row("odd%2Fna%25me", 1), nil, "ns", n, "-r")
    expect(0, row("cache", 6) .. row("cache/eu", 1) .. row("odd%2Fna%25me", 1), nil, "ns", n, "--recursive")
    expect(0, "", nil, "ns", n, "cache/eu")
    local j = decode(lines(expect(0, nil, nil, "ns", n, "--json"))[2])
    assert.are.same({ path = "odd%2Fna%25me", ns = { "odd/na%me" }, keys = 1 }, j)
    expect(2, "", "'%' must start an escape", "ns", n, "a%zz")
    expect(2, "", "empty name", "ns", n, "a//b")
    expect(1, "", nil, "ns", name("none"))
    kv:close()
  end)

  it("keys prints a namespace's keys as JSON strings; GLOB filters; --raw", function()
    local n, kv = seeded("keys")
    local o = expect(0, nil, nil, "keys", n, "cache")
    local got = {}
    for _, l in ipairs(lines(o)) do got[#got + 1] = decode(l) end
    table.sort(got)
    assert.are.same({ "bin", "bool", "float", "int", "timed", "user:1" }, got)
    expect(0, '"bin"\n"bool"\n', nil, "keys", n, "cache", "b*")
    expect(0, '"user:1"\n', nil, "keys", n, "cache", "user:?")
    expect(0, '"int"\n', nil, "keys", n, "cache", "[h-j]*")
    expect(0, '"bin"\n', nil, "keys", n, "cache", "[!fitu]*[!l]")
    expect(0, "", nil, "keys", n, "cache", "nothing*")
    expect(0, '"k\\u0000z"\n', nil, "keys", n, "odd%2Fna%25me")
    expect(0, "k\0z\n", nil, "keys", n, "odd%2Fna%25me", "--raw")
    expect(2, "", "PATH must name a namespace", "keys", n, "")
    expect(2, "", "without its ']'", "keys", n, "cache", "[ab")
    expect(1, "", nil, "keys", name("none"), "cache")
    kv:close()
  end)
end)

describe("zkv get / set / del / ttl / expire / incr", function()
  it("get prints every kind of value as JSON", function()
    local n, kv = seeded("get")
    local t = decode(expect(0, nil, nil, "get", n, "cache", "user:1"))
    assert.are.same({ name = "ada", roles = { "admin" } }, t)
    expect(0, '"a\\udcffb"\n', nil, "get", n, "cache", "bin")
    expect(0, "42\n", nil, "get", n, "cache", "int")
    expect(0, "1.5\n", nil, "get", n, "cache", "float")
    expect(0, "true\n", nil, "get", n, "cache", "bool")
    expect(0, '"v"\n', nil, "get", n, "odd%2Fna%25me", '"k\\u0000z"', "--key-json")
    expect(1, "", "no such key", "get", n, "cache", "nope")
    expect(2, "", "not a JSON string", "get", n, "cache", "k", "--key-json")
    expect(2, "", "PATH must name a namespace", "get", n, "/", "k")
    local missing = name("missing")
    expect(1, "", missing, "get", missing, "cache", "k")
    assert.is_false(exists(missing))
    kv:close()
  end)

  it("set reads JSON (or --string), with --ttl and --nx; values round-trip", function()
    local n, kv = seeded("set")
    local s = kv:namespace("new")
    for _, case in ipairs({ { '"text"', "text" }, { "7", 7 }, { "-2.25", -2.25 }, { "false", false },
                            { '{"a":[1,"\\udcfe"]}', { a = { 1, "\254" } } }, { '"nul\\u0000"', "nul\0" } }) do
      expect(0, "", nil, "set", n, "new", "k", case[1])
      assert.are.same(case[2], s:get("k"))
      expect(0, case[1] .. "\n", nil, "get", n, "new", "k")
    end
    expect(0, "", nil, "set", n, "new", "str", "plain words", "--string")
    assert.are.equal("plain words", s:get("str"))
    expect(0, "", nil, "set", n, "new", "stdin", "-", { stdin = '{"from":"stdin"}' })
    assert.are.same({ from = "stdin" }, s:get("stdin"))
    expect(0, "", nil, "set", n, "new", "t", "1", "--ttl", "100")
    assert.is_true(s:ttl("t") > 99 and s:ttl("t") <= 100)
    expect(1, "", "exists", "set", n, "new", "t", "2", "--nx")
    assert.are.equal(1, s:get("t"))
    expect(0, "", nil, "set", n, "new", "fresh", "2", "--nx")
    expect(2, "", "not JSON", "set", n, "new", "k", "not json")
    expect(2, "", "null cannot be stored", "set", n, "new", "k", "null")
    expect(2, "", "not a number of seconds", "set", n, "new", "k", "1", "--ttl", "0")
    expect(2, "", "not a number of seconds", "set", n, "new", "k", "1", "--ttl=abc")
    assert.are.same("nul\0", s:get("k"))
    kv:close()
  end)

  it("del, ttl, expire", function()
    local n, kv = seeded("del")
    local c = kv:namespace("cache")
    expect(0, "", nil, "del", n, "cache", "int")
    assert.is_nil(c:get("int"))
    expect(1, "", "no such key", "del", n, "cache", "int")
    local o = expect(0, nil, nil, "ttl", n, "cache", "timed")
    assert.is_true(tonumber(o) > 3590 and tonumber(o) <= 3600)
    expect(0, "null\n", nil, "ttl", n, "cache", "bool")
    expect(1, "", "no such key", "ttl", n, "cache", "int")
    expect(0, "", nil, "expire", n, "cache", "bool", "50")
    assert.is_true(c:ttl("bool") <= 50)
    expect(1, "", "no such key", "expire", n, "cache", "int", "5")
    expect(2, "", "not a number of seconds", "expire", n, "cache", "bool", "-1")
    kv:close()
  end)

  it("incr adds and prints; a ttl only on create", function()
    local n, kv = seeded("incr")
    local c = kv:namespace("cache")
    expect(0, "43\n", nil, "incr", n, "cache", "int")
    expect(0, "33\n", nil, "incr", n, "cache", "int", "-10")
    expect(0, "5\n", nil, "incr", n, "cache", "hits", "5", "--ttl", "60")
    assert.is_true(c:ttl("hits") <= 60)
    expect(1, "", nil, "incr", n, "cache", "float")
    assert.are.equal(1.5, c:get("float"))
    expect(2, "", "not an integer", "incr", n, "cache", "int", "1.5")
    expect(2, "", "not an integer", "incr", n, "cache", "int", "x")
    kv:close()
  end)
end)

describe("zkv stats", function()
  it("prints stats() as lines, --json, --prometheus", function()
    local n, kv = seeded("stats")
    local o = expect(0, nil, nil, "stats", n)
    assert.matches("\nkeys: +8\n", o)
    local t = decode(expect(0, nil, nil, "stats", n, "--json"))
    assert.are.equal(8, t.keys)
    assert.are.equal(kv:stats().bytes_used, t.bytes_used)
    local p = expect(0, nil, nil, "stats", n, "--prometheus")
    assert.matches('\nzeltkv_keys{driver="shared",name="' .. n:gsub("%p", "%%%0") .. '"} 8\n', "\n" .. p)
    -- the text format: comments, or samples NAME{LABELS} NUMBER
    for _, l in ipairs(lines(p)) do
      assert.truthy(l:match("^# ") or l:match('^[%a_][%w_]*{[%a_][%w_]*="[^"]*"[^}]*} %-?[%d.e+-]+$'), l)
    end
    expect(2, "", "exclude each other", "stats", n, "--json", "--prometheus")
    expect(1, "", nil, "stats", name("none"))
    kv:close()
  end)
end)

describe("zkv dump / load", function()
  it("dump to stdout and to a file; load from a file and from stdin", function()
    local n, kv = seeded("dump")
    local o = expect(0, nil, nil, "dump", n)
    local ls = lines(o)
    assert.matches('^{"format":"zeltkv%-dump","version":1,"time":%d+}$', ls[1])
    assert.are.equal('{"count":8}', ls[#ls])
    assert.are.equal(10, #ls)
    local file = TMP .. "/d.jsonl"
    expect(0, "", nil, "dump", n, file)
    -- the same lines (the instants, and expiries to the ms, may differ)
    local function same(t) return (t:gsub('"time":%d+', ""):gsub('"expires":%d+', "")) end
    assert.are.equal(same(o), same(slurp(file)))
    local m = name("target")
    open(m):close()
    expect(0, "", nil, "load", m, file)
    local kv2 = open(m)
    assert.are.same({ name = "ada", roles = { "admin" } }, kv2:namespace("cache"):get("user:1"))
    assert.are.equal("a\255b", kv2:namespace("cache"):get("bin"))
    assert.is_true(kv2:namespace("cache"):ttl("timed") > 3500)
    kv2:flush()
    expect(0, "", nil, "load", m, { stdin = o })
    assert.are.equal(8, kv2:stats().keys)
    kv2:close()
    kv:close()
  end)

  it("a bad file or a missing segment is status 1 and changes nothing", function()
    local n, kv = seeded("badload")
    local file = TMP .. "/bad.jsonl"
    write(file, '{"format":"zeltkv-dump","version":1,"time":1}\n' ..
                '{"ns":["cache"],"key":"int","value":1000}\n' ..
                '{"ns":["cache"],"key":"x","value":nul}\n{"count":2}\n')
    expect(1, "", "line 3: value:", "load", n, file)
    assert.are.equal(42, kv:namespace("cache"):get("int"))
    expect(1, "", "line 1", "load", n, { stdin = "garbage\n" })
    expect(1, "", "no/such/file", "load", n, TMP .. "/no/such/file")
    local missing = name("missing")
    expect(1, "", missing, "load", missing, file)
    expect(1, "", missing, "dump", missing)
    assert.is_false(exists(missing))
    expect(1, "", nil, "dump", n, TMP .. "/no/such/dir/x")
    assert.are.equal(8, kv:stats().keys)
    kv:close()
  end)
end)

describe("zkv against a Redis URL", function()
  local servers = {}
  local run = redis_ok and it or pending
  local R
  setup(function()
    if not redis_ok then return end
    package.path = "spec/redis/?.lua;" .. package.path
    R = require("lib")
    -- one server on a unix socket, one on TCP (a free port of 127.0.0.1)
    local sock = DIR .. "/redis.sock"
    local unix = R.server("--port 0 --unixsocket " .. sock)
    unix.addr = "unix:" .. sock
    unix.url = "unix://" .. sock
    unix.start()
    local tcp = R.server()
    tcp.start()
    servers = { unix, tcp }
  end)
  teardown(function() for _, srv in ipairs(servers) do srv.cleanup() end end)

  run("every subcommand on unix:// and redis:// URLs, good and bad", function()
    for _, srv in ipairs(servers) do
      local url = srv.url
      local function r(status, out, err, ...)
        return expect(status, out, err, "--prefix", "zkvcli", ...)
      end
      r(0, "", nil, "set", url, "cache", "user:1", '{"name":"ada"}')
      r(0, '{"name":"ada"}\n', nil, "get", url, "cache", "user:1")
      r(0, "", nil, "set", url, "cache/eu", "b", '"a\\udcffb"')
      r(0, '"a\\udcffb"\n', nil, "get", url, "cache/eu", "b")
      r(0, "", nil, "set", url, "odd%2Fna%25me", '"k\\u0000z"', "1.5", "--key-json")
      r(0, "1.5\n", nil, "get", url, "odd%2Fna%25me", '"k\\u0000z"', "--key-json")
      r(0, '"user:1"\n', nil, "keys", url, "cache")
      r(0, '"k\\u0000z"\n', nil, "keys", url, "odd%2Fna%25me", "k?z")
      r(0, "cache          1\nodd%2Fna%25me  1\n", nil, "ns", url)
      r(0, "cache          1\ncache/eu       1\nodd%2Fna%25me  1\n", nil, "ns", url, "-r")
      r(0, "3\n", nil, "incr", url, "cache", "n", "3")
      r(0, "null\n", nil, "ttl", url, "cache", "n")
      r(0, "", nil, "expire", url, "cache", "n", "100")
      local t = tonumber((r(0, nil, nil, "ttl", url, "cache", "n")))
      assert.is_true(t > 99 and t <= 100, tostring(t))
      r(0, "", nil, "del", url, "cache", "n")
      r(1, "", "no such key", "get", url, "cache", "n")
      r(1, "", "no such key", "del", url, "cache", "n")
      r(1, "", "exists", "set", url, "cache", "user:1", "1", "--nx")
      r(1, "", nil, "incr", url, "cache/eu", "b")
      r(2, "", "not JSON", "set", url, "cache", "k", "nope")
      assert.matches("\nkeys: +3\n", "\n" .. r(0, nil, nil, "stats", url))
      assert.are.equal(3, decode(r(0, nil, nil, "stats", url, "--json")).keys)
      assert.matches('\nzeltkv_keys{driver="redis"} 3\n', r(0, nil, nil, "stats", url, "--prometheus"))
      assert.matches("\nkeys: +3\n", "\n" .. r(0, nil, nil, "info", url))
      local o = r(0, nil, nil, "dump", url)
      assert.are.equal('{"count":3}', lines(o)[#lines(o)])
      r(0, "", nil, "del", url, "cache", "user:1")
      r(0, "", nil, "load", url, { stdin = o })
      r(0, '{"name":"ada"}\n', nil, "get", url, "cache", "user:1")
      r(1, "", "line 1", "load", url, { stdin = "garbage\n" })
      r(2, "", "not one", "unlink", url)
      -- another prefix is another store
      expect(0, "", nil, "--prefix", "other", "ns", url)
    end
    -- servers that are not there: status 1, one line
    expect(1, "", nil, "get", "unix://" .. DIR .. "/no.sock", "cache", "k")
    local closed = servers[2].port
    servers[2].stop()
    expect(1, "", nil, "get", "redis://127.0.0.1:" .. closed, "cache", "k")
    expect(1, "", nil, "stats", "redis://127.0.0.1:" .. closed)
  end)
end)
