-- spec/redis/redis_spec.lua: what only the redis driver has (issue 14, docs/redis.md):
-- options and URLs, AUTH and TLS, the stored form of values, round trips, optimistic
-- atomic under conflicts and across processes, faults, and a cluster's routing.
-- The contract every driver keeps is in spec/02-04 (ZELTKV_DRIVER=redis runs them here).
-- Servers: spec/redis/servers.sh (make redis-test), addresses in ZELTKV_REDIS_*.

local H = require("helpers")
local R = require("redis.lib")
local zeltkv = require("zeltkv")
local slotlib = require("zeltkv.slot")

local UNIX, TCP = R.env("ZELTKV_REDIS_UNIX"), R.env("ZELTKV_REDIS_TCP")
local TLS, CA, TLS_PW = R.env("ZELTKV_REDIS_TLS"), R.env("ZELTKV_REDIS_CA"), R.env("ZELTKV_REDIS_TLS_PASSWORD")
local CLUSTER = R.env("ZELTKV_REDIS_CLUSTER")
local URL = UNIX or TCP
local function cluster_nodes()
  local t = {}
  for n in CLUSTER:gmatch("[^,]+") do t[#t + 1] = n end
  return t
end

-- a fresh driver on the standalone server (fresh prefix)
local function fresh(opts)
  local o = { url = URL }
  for k, v in pairs(opts or {}) do o[k] = v end
  return zeltkv.redis(H.redis_opts(o))
end

local function raw_addr() return URL end

-- requests fn sends (stats().round_trips counts them; read here without stats' own)
local function round_trips(kv, fn)
  local before = kv.round_trips
  fn()
  return kv.round_trips - before
end

-- resp.replies reads an exchange's replies inside nginx from receiveany's chunks; here
-- over a stand-in that gives the same bytes cut at every place, against resp.read over
-- the bytes whole.  No server needed.
describe("zeltkv.resp replies (cosockets)", function()
  local resp = require("zeltkv.resp")

  -- a cosocket stand-in: receiveany(max) gives at most the rest of the current chunk,
  -- receive(n) exactly n bytes (across chunks), both "closed" at the end of the bytes
  local function chunked(chunks)
    local i, rest = 1, chunks[1] or ""
    local c = { anys = 0 }
    local function fill()
      while rest == "" and i < #chunks do i = i + 1; rest = chunks[i] end
      return rest ~= ""
    end
    function c.receiveany(_, max)
      c.anys = c.anys + 1
      if not fill() then return nil, "closed" end
      local d = rest:sub(1, max)
      rest = rest:sub(#d + 1)
      return d
    end
    function c.receive(_, n)
      local parts = {}
      while n > 0 do
        if not fill() then return nil, "closed", table.concat(parts) end
        local d = rest:sub(1, n)
        rest, n = rest:sub(#d + 1), n - #d
        parts[#parts + 1] = d
      end
      return table.concat(parts)
    end
    function c.left() fill(); return rest end
    return c
  end

  -- resp.read over the bytes whole (LuaSocket's receive("*l") / receive(n))
  local function whole(bytes)
    local pos = 1
    return { receive = function(_, what)
      if what == "*l" then
        local e = bytes:find("\n", pos, true)
        if not e then return nil, "closed" end
        local line = bytes:sub(pos, e - 1):gsub("\r$", "")
        pos = e + 1
        return line
      end
      if pos + what - 1 > #bytes then return nil, "closed" end
      local d = bytes:sub(pos, pos + what - 1)
      pos = pos + what
      return d
    end }
  end

  -- what exchange makes of n replies with resp.read: the reply, the list, or with `last`
  -- the first that is not "OK" / "QUEUED" (or the n-th)
  local function expected(bytes, n, last)
    local c, r = whole(bytes), nil
    if n > 1 and not last then r = {} end
    for i = 1, n do
      local v, err = resp.read(c)
      assert(v ~= nil, err)
      if n == 1 then r = v
      elseif not last then r[i] = v
      elseif r == nil and (i == n or (v ~= "OK" and v ~= "QUEUED")) then r = v end
    end
    return r
  end

  -- Err objects compared by message
  local function plain(v)
    if resp.is_err(v) then return { err = v.msg } end
    if type(v) == "table" then
      local t = {}
      for k, x in pairs(v) do t[k] = plain(x) end
      return t
    end
    return v
  end

  local CASES = {
    { "+OK\r\n", 1 }, { "$-1\r\n", 1 }, { "$5\r\nhello\r\n", 1 }, { "$0\r\n\r\n", 1 },
    { "$4\r\na\r\nb\r\n", 1 }, { ":42\r\n", 1 }, { ":-7\r\n", 1 },
    { ":9007199254740993\r\n", 1 }, { ":9007199254740992\r\n", 1 }, { "-ERR no such key\r\n", 1 },
    { "+PONG\r\n", 1 }, { "*-1\r\n", 1 }, { "*0\r\n", 1 }, { "*2\r\n:1\r\n$2\r\nab\r\n", 1 },
    { "*2\r\n*1\r\n+a\r\n$-1\r\n", 1 },
    -- incr with a ttl: MULTI, SET .. NX, INCRBY, EXEC (one reply wanted, and all four)
    { "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n$-1\r\n:3\r\n", 4, true },
    { "+OK\r\n-ERR wrong number\r\n+QUEUED\r\n-EXECABORT Transaction discarded\r\n", 4, true },
    { "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:1\r\n", 4 },
    -- atomic's WATCH, GET, PTTL
    { "+OK\r\n$2\r\n17\r\n:-1\r\n", 3 },
  }

  it("gives what resp.read gives, however the bytes are cut", function()
    for _, case in ipairs(CASES) do
      local bytes, n, last = case[1], case[2], case[3]
      local want = plain(expected(bytes, n, last))
      local cuts = { { bytes } }
      for k = 1, #bytes - 1 do cuts[#cuts + 1] = { bytes:sub(1, k), bytes:sub(k + 1) } end
      local singles = {}
      for k = 1, #bytes do singles[k] = bytes:sub(k, k) end
      cuts[#cuts + 1] = singles
      for _, chunks in ipairs(cuts) do
        local c = chunked(chunks)
        local r, got, err = resp.replies(c, n, last)
        assert.are.same({ want, n, nil }, { plain(r), got, err },
                        ("%q cut as %d chunks"):format(bytes, #chunks))
        assert.are.equal("", c.left())     -- read to the end of the replies, no further
      end
    end
  end)

  it("reads one packet with one receiveany and a large bulk's rest with one receive", function()
    local c = chunked({ "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n$-1\r\n:3\r\n" })
    assert.are.equal(3, select(1, resp.replies(c, 4, true))[2])
    assert.are.equal(1, c.anys)
    local big = string.rep("x", 300000)
    c = chunked({ "$300000\r\nxxx", big:sub(4) .. "\r\n" })
    local v, got = resp.replies(c, 1)
    assert.are.equal(1, got)
    assert.is_true(v == big)
    assert.are.equal(1, c.anys)
  end)

  it("fails on a closed connection, garbage and bytes beyond the replies", function()
    local function try(bytes, n, last) return resp.replies(chunked({ bytes }), n, last) end
    assert.are.same({ nil, 0, "closed" }, { try("", 1) })
    assert.are.same({ nil, 0, "closed" }, { try("$5\r\nhel", 1) })
    assert.are.same({ nil, 1, "closed" }, { try("+OK\r\n+QUE", 2) })
    local r, got, err = try("+OK\r\n+OK\r\n", 1)
    assert.are.same({ nil, -1 }, { r, got })
    assert.matches("protocol error: more bytes than the replies", err)
    for _, bad in ipairs({ "?what\r\n", "$x\r\n", ":1x\r\n", "*y\r\n" }) do
      r, got, err = try(bad, 1)
      assert.are.same({ nil, 0 }, { r, got })
      assert.matches("^protocol error", err)
    end
    -- a header line that never ends: refused once it passes 64 KiB, not read forever
    local c = chunked({ "+" .. string.rep("a", 70000), string.rep("b", 70000) .. "\r\n" })
    r, got, err = resp.replies(c, 1)
    assert.are.same({ nil, 0 }, { r, got })
    assert.matches("protocol error: a line without an end", err)
  end)
end)

describe("zeltkv.redis", function()
  if not URL then
    pending("no redis server (ZELTKV_REDIS_UNIX / ZELTKV_REDIS_TCP): run make redis-test")
    return
  end

  after_each(function() H.redis_cleanup() end)

  -------------------------------------------------------------------------
  describe("options", function()
    it("refuses the options of the other drivers, naming them", function()
      for _, name in ipairs({ "size", "max_bytes", "evict", "mode", "gc_interval", "create", "atomic_timeout" }) do
        local err = H.assert_error_code("INVALID_VALUE", zeltkv.redis, { url = URL, [name] = 1 })
        assert.truthy(err.message:find(name, 1, true), err.message)
      end
    end)

    it("refuses unknown options and bad values", function()
      local bad = {
        { frobnicate = true }, { url = 42 }, { url = "http://x" }, { url = "redis://" },
        { url = "redis://h:1/x" }, { url = URL, cluster = { "a:1" } }, { cluster = {} },
        { cluster = { "nohostport" } }, { prefix = "" }, { prefix = "a{b}" }, { prefix = "a b" },
        { timeout = 0 }, { timeout = -1 }, { timeout = 0 / 0 }, { timeout = "1" },
        { lock_timeout = math.huge }, { pool_size = 0 }, { pool_size = 1.5 }, { shard = "x" },
        { db = -1 }, { db = 1.5 }, { tls = "yes" }, { tls = { verify = true, bogus = 1 } },
        { tls = { server_name = 5 } }, { tls = { verify = "no" } }, { tls = { cafile = {} } },
        { tls = { cert = true } }, { tls = { key = 1 } }, { tls = { capath = false } },
        { username = "u" }, { password = 5 }, { keepalive = 0 }, { [1] = "x" },
      }
      for _, o in ipairs(bad) do
        H.assert_error_code("INVALID_VALUE", zeltkv.redis, o)
      end
      H.assert_error_code("INVALID_VALUE", zeltkv.redis, "redis://x")
    end)

    it("connects lazily: a driver can be made while the server is down", function()
      local kv = zeltkv.redis({ url = "redis://127.0.0.1:1", timeout = 0.2 })
      local err = H.assert_error_code("STORE_OPERATION_FAILED", kv.namespace(kv, "a").get, kv:namespace("a"), "k")
      assert.are.equal("connection", err.reason)
      kv:close()
    end)

    it("selects the database of the url", function()
      local kv = zeltkv.redis(H.redis_opts({ url = URL .. (URL:find("^unix") and "?db=3" or "/3") }))
      kv:namespace("db"):set("k", "in db 3")
      local c = R.connect(raw_addr())
      R.cmd(c, "SELECT", "3")
      assert.are.equal(1, #R.cmd(c, "KEYS", "*{db}:k"))
      R.cmd(c, "SELECT", "0")
      assert.are.equal(0, #R.cmd(c, "KEYS", "*{db}:k"))
      c:close()
      kv:flush()
      kv:close()
    end)
  end)

  -------------------------------------------------------------------------
  describe("AUTH", function()
    local user = "zkvspec" .. math.random(1, 1e6)
    setup(function()
      R.raw(raw_addr(), "ACL", "SETUSER", user, "on", ">s3cret", "~*", "+@all")
    end)
    teardown(function() R.raw(raw_addr(), "ACL", "DELUSER", user) end)

    it("logs in as an ACL user", function()
      local kv = fresh({ username = user, password = "s3cret" })
      kv:namespace("a"):set("k", 1)
      assert.are.equal(1, kv:namespace("a"):get("k"))
      kv:close()
    end)

    it("fails incr with a ttl that the user may not SET, and leaves the key as it was", function()
      -- the SET inside MULTI is refused when queued, so EXEC aborts: nothing ran.  The
      -- driver once read EXEC's error as a result out of range and sent DECRBY to undo an
      -- increment that never happened (the key went from 5 to 4)
      local nouser = user .. "noset"
      R.raw(raw_addr(), "ACL", "SETUSER", nouser, "on", ">s3cret", "~*", "+@all", "-set")
      local pfx = "zkvnoset" .. math.random(1, 1e6)
      local admin = fresh({ prefix = pfx })
      local kv = fresh({ username = nouser, password = "s3cret", prefix = pfx })
      local s = kv:namespace("a")
      admin:namespace("a"):set("n", 5)
      local err = H.assert_error_code("STORE_OPERATION_FAILED", s.incr, s, "n", 1, 10)
      assert.are.equal("auth", err.reason)
      assert.are.equal(5, admin:namespace("a"):get("n"))
      assert.are.equal(6, s:incr("n", 1))         -- INCRBY alone is allowed
      admin:flush()
      kv:close(); admin:close()
      R.raw(raw_addr(), "ACL", "DELUSER", nouser)
    end)

    it("reports a wrong password as STORE_OPERATION_FAILED (reason auth)", function()
      local kv = fresh({ username = user, password = "wrong" })
      local s = kv:namespace("a")
      local err = H.assert_error_code("STORE_OPERATION_FAILED", s.get, s, "k")
      assert.are.equal("auth", err.reason)
      kv:close()
    end)
  end)

  describe("TLS with a password", function()
    if not TLS then pending("no TLS server (ZELTKV_REDIS_TLS)") return end

    it("works with the server's CA", function()
      local kv = zeltkv.redis(H.redis_opts({ url = TLS, tls = { cafile = CA } }))
      local s = kv:namespace("tls")
      assert.is_true(s:set("k", { secure = true }))
      assert.are.same({ secure = true }, s:get("k"))
      assert.are.equal(3, s:incr("n", 3, 10))
      kv:atomic(function() s:set("k", s:incr("n")) end)
      assert.are.equal(4, s:get("k"))
      kv:flush()
      kv:close()
    end)

    it("refuses a server whose certificate it cannot verify", function()
      local kv = zeltkv.redis(H.redis_opts({ url = TLS, tls = { cafile = "/etc/ssl/certs/ca-certificates.crt" } }))
      local s = kv:namespace("tls")
      local err = H.assert_error_code("STORE_OPERATION_FAILED", s.get, s, "k")
      assert.are.equal("connection", err.reason)
      kv:close()
    end)

    it("refuses a wrong password (reason auth)", function()
      local url = TLS:gsub(":[^:@/]*@", ":nope@")
      local kv = zeltkv.redis(H.redis_opts({ url = url, tls = { cafile = CA } }))
      local s = kv:namespace("tls")
      local err = H.assert_error_code("STORE_OPERATION_FAILED", s.get, s, "k")
      assert.are.equal("auth", err.reason)
      kv:close()
    end)

    it("needs the password", function()
      local url = TLS:gsub("//:[^@]*@", "//")
      local kv = zeltkv.redis(H.redis_opts({ url = url, tls = { cafile = CA } }))
      local s = kv:namespace("tls")
      H.assert_error_code("STORE_OPERATION_FAILED", s.set, s, "k", 1)
      kv:close()
      assert.truthy(TLS_PW)
    end)
  end)

  -------------------------------------------------------------------------
  describe("stored values", function()
    local kv, s, c
    before_each(function()
      kv = fresh({ prefix = "vals" .. math.random(1, 1e9) })
      s = kv:namespace("v")
      c = R.connect(raw_addr())
    end)
    after_each(function()
      kv:flush()
      kv:close()
      c:close()
    end)
    local function stored(key) return R.cmd(c, "GET", kv.prefix .. "{v}:" .. key) end

    it("are readable text: integers as decimal (INCRBY works), strings as themselves", function()
      s:set("int", 42)
      assert.are.equal("42", stored("int"))
      assert.are.equal(50, R.cmd(c, "INCRBY", kv.prefix .. "{v}:int", "8"))
      assert.are.equal(50, s:get("int"))
      s:set("str", "hello world")
      assert.are.equal("hello world", stored("str"))
      s:set("t", { name = "ada", list = { 1, 2 } })
      local json = stored("t")
      assert.truthy(json:find('"name":"ada"', 1, true), json)
      assert.truthy(json:find('"list":[1,2]', 1, true), json)
      s:set("f", 1.5)
      assert.are.equal("1.5", stored("f"))
      s:set("b", true)
      assert.are.equal("true", stored("b"))
    end)

    it("keep strings that look like other values apart (a 0xFF byte first)", function()
      for _, v in ipairs({ "42", "-7", "1.5", "true", "false", "{}", "[1]", "\255x", "1e5" }) do
        s:set("s", v)
        assert.are.equal("\255" .. v, stored("s"))
        assert.are.equal(v, s:get("s"))
      end
      s:set("e", "")
      assert.are.equal("", stored("e"))
      assert.are.equal("", s:get("e"))
    end)

    it("keeps float subtypes and -0.0", function()
      s:set("one", 1.0)
      if H.has_int then                               -- 1.0 is a float only on 5.3+
        assert.are.equal("1.0", stored("one"))
        assert.are.equal("float", math.type(s:get("one")))
      else
        assert.are.equal("1", stored("one"))
      end
      s:set("z", -1 / math.huge)
      assert.are.equal("-0.0", stored("z"))
      assert.are.equal(-math.huge, 1 / s:get("z"))
      s:set("big", 1.5e300)
      assert.are.equal(1.5e300, s:get("big"))
      s:set("third", 1 / 3)
      assert.are.equal(1 / 3, s:get("third"))
    end)

    it("reads text written by another client as a string", function()
      local k = kv.prefix .. "{v}:foreign"
      for _, text in ipairs({ "007", "+1", " 42", "{not json", "[1,", "1.", "nil", "\0bin" }) do
        R.cmd(c, "SET", k, text)
        assert.are.equal(text, s:get("foreign"))
      end
    end)

    it("refuses incr on a float, a string and a foreign value, leaving them", function()
      s:set("f", 1.5)
      s:set("s", "42")
      H.assert_error_code("INVALID_VALUE", s.incr, s, "f")
      H.assert_error_code("INVALID_VALUE", s.incr, s, "s")
      assert.are.equal("1.5", stored("f"))
      assert.are.equal("\25542", stored("s"))
      R.cmd(c, "RPUSH", kv.prefix .. "{v}:list", "x")
      local err = H.assert_error_code("STORE_OPERATION_FAILED", s.incr, s, "list")
      assert.truthy(err.message:find("WRONGTYPE", 1, true), err.message)
    end)

    it("keeps ttls in milliseconds", function()
      s:set("k", 1, 1.5)
      local p = R.cmd(c, "PTTL", kv.prefix .. "{v}:k")
      assert.is_true(p > 1400 and p <= 1500, tostring(p))
      s:expire("k", 0.25)
      p = R.cmd(c, "PTTL", kv.prefix .. "{v}:k")
      assert.is_true(p > 150 and p <= 250, tostring(p))
    end)

    it("keys are <prefix>{<root>}<path>:<key>, names escaped", function()
      s:namespace("child"):set("k", 1)
      kv:namespace("a{b}/c:d*"):set("x", 1)
      local keys = R.cmd(c, "KEYS", kv.prefix .. "*")
      table.sort(keys)
      assert.are.same({ kv.prefix .. "{a%7Bb%7D%2Fc%3Ad%2A}:x", kv.prefix .. "{v}/child:k" }, keys)
      local ns = {}
      for n in kv:namespace("a{b}/c:d*"):namespaces() do ns[#ns + 1] = n end
      assert.are.same({}, ns)
      for n in s:namespaces() do ns[#ns + 1] = n end
      assert.are.same({ "child" }, ns)
    end)
  end)

  -------------------------------------------------------------------------
  describe("round trips", function()
    local kv, s
    before_each(function()
      kv = fresh()
      s = kv:namespace("rt")
      s:set("v", 1)
    end)
    after_each(function() kv:close() end)

    it("one for each single command, incr with a ttl and setnx with a ttl included", function()
      assert.are.equal(1, round_trips(kv, function() s:get("v") end))
      assert.are.equal(1, round_trips(kv, function() s:set("v", 2, 10) end))
      assert.are.equal(1, round_trips(kv, function() assert.are.equal(1, s:incr("c", 1, 10)) end))
      assert.are.equal(1, round_trips(kv, function() assert.are.equal(2, s:incr("c", 1, 10)) end))
      assert.is_true(s:ttl("c") > 9)
      assert.are.equal(1, round_trips(kv, function() assert.is_true(s:setnx("l", 1, 10)) end))
      assert.are.equal(1, round_trips(kv, function() assert.is_false(s:setnx("l", 1, 10)) end))
    end)

    it("two for an uncontended atomic read-modify-write", function()
      assert.are.equal(2, round_trips(kv, function()
        kv:atomic(function() s:set("v", s:get("v") + 1) end)
      end))
      assert.are.equal(2, s:get("v"))
      -- every further key read is one more; blind writes cost nothing until EXEC
      assert.are.equal(3, round_trips(kv, function()
        kv:atomic(function()
          s:set("v", s:get("v") + s:incr("c2"))
          s:set("blind", 1)
        end)
      end))
    end)
  end)

  -------------------------------------------------------------------------
  describe("atomic", function()
    local kv, other, s, so
    before_each(function()
      kv = fresh({ lock_timeout = 1 })
      other = zeltkv.redis({ url = URL, prefix = kv.prefix })
      s, so = kv:namespace("at"), other:namespace("at")
    end)
    after_each(function()
      other:close()
      kv:close()
    end)

    it("runs fn again when another client changes a key it read", function()
      s:set("n", 1)
      local runs = 0
      local res = kv:atomic(function()
        runs = runs + 1
        local v = s:get("n")
        if runs == 1 then so:set("n", 100) end           -- a conflicting write
        s:set("n", v + 1)
        return v
      end)
      assert.are.equal(2, runs)
      assert.are.equal(100, res)
      assert.are.equal(101, s:get("n"))
    end)

    it("runs fn again when a key it read expires before EXEC", function()
      s:set("e", "short", 0.05)
      local runs, seen = 0, {}
      kv:atomic(function()
        runs = runs + 1
        seen[runs] = s:get("e")
        if runs == 1 then R.sleep(0.15) end
        s:set("out", seen[runs] or "gone")
      end)
      assert.are.same({ "short", nil }, { seen[1], seen[2] })
      assert.are.equal(2, runs)
      assert.are.equal("gone", s:get("out"))
    end)

    it("gives up after lock_timeout with STORE_OPERATION_FAILED (reason conflict)", function()
      s:set("n", 1)
      local runs = 0
      local t0 = R.now()
      local err = H.assert_error_code("STORE_OPERATION_FAILED", kv.atomic, kv, function()
        runs = runs + 1
        s:get("n")
        so:incr("n")                                    -- conflicts every time
        s:set("x", 1)
      end)
      local dt = R.now() - t0
      assert.are.equal("conflict", err.reason)
      assert.is_true(runs > 3, tostring(runs))
      assert.is_true(dt >= 1 and dt < 2, tostring(dt))
      assert.is_nil(s:get("x"))
    end)

    it("sends nothing when fn raises, and raises the same error", function()
      s:set("n", 1)
      local e = {}
      local ok, got = pcall(kv.atomic, kv, function()
        s:set("n", 2)
        s:incr("c")
        s:del("n")
        error(e)
      end)
      assert.is_false(ok)
      assert.are.equal(e, got)
      assert.are.equal(1, so:get("n"))
      assert.is_nil(so:get("c"))
      -- the connection is usable (UNWATCHed) for the next call
      assert.are.equal(1, s:get("n"))
    end)

    -- Lua 5.1 cannot yield across pcall (LuaJIT and 5.2+ can)
    local probe = coroutine.create(function() pcall(coroutine.yield) end)
    coroutine.resume(probe)
    local yieldable = coroutine.status(probe) == "suspended"
    ;(yieldable and it or pending)("keeps the transaction of one coroutine away from the others", function()
      s:set("n", 1)
      local co = coroutine.create(function()
        return kv:atomic(function()
          local v = s:get("n")
          coroutine.yield("inside")                     -- allowed on this driver
          s:set("n", v + 10)
          return "done"
        end)
      end)
      assert.are.same({ true, "inside" }, { coroutine.resume(co) })
      -- this coroutine is outside that transaction: its calls go to the server now
      assert.are.equal(1, s:get("n"))
      s:set("n", 5)                                     -- and conflict with it
      assert.are.equal(5, so:get("n"))
      assert.are.equal(6, kv:atomic(function() return s:incr("n") end))
      local ok, r = coroutine.resume(co)
      if ok and r == "inside" then ok, r = coroutine.resume(co) end   -- its second run
      assert.are.same({ true, "done" }, { ok, r })
      assert.are.equal(16, s:get("n"))
    end)

    it("undoes only the inner writes of a nested atomic that raises", function()
      kv:atomic(function()
        s:set("outer", 1)
        local ok = pcall(kv.atomic, kv, function()
          s:set("inner", 1)
          s:set("outer", 2)
          s:del("outer")
          error("inner fails")
        end)
        assert.is_false(ok)
        assert.are.equal(1, s:get("outer"))
        assert.is_nil(s:get("inner"))
        s:incr("outer")
      end)
      assert.are.equal(2, so:get("outer"))
      assert.is_nil(so:get("inner"))
    end)

    it("8 processes x 2 000 read-modify-writes of one key end at exactly 16 000", function()
      local N, P = 2000, 8
      s:set("counter", 0)
      local code = R.prelude() .. ([[
        local zeltkv = require("zeltkv")
        local kv = zeltkv.redis({ url = %q, prefix = %q, lock_timeout = 60, timeout = 10 })
        local s = kv:namespace("at")
        local fails, first = 0, ""
        for _ = 1, %d do
          local ok, err = pcall(kv.atomic, kv, function()
            local v = s:get("counter")
            s:set("counter", v + 1)
          end)
          if not ok then
            fails = fails + 1
            if fails == 1 then first = " first: " .. tostring(err) end
          end
        end
        local st = kv:stats()
        print(("done fails=%%d attempts=%%d%%s"):format(fails, st.atomic_attempts, first))
      ]]):format(URL, kv.prefix, N)
      local kids = {}
      for i = 1, P do kids[i] = R.child(code) end
      local t0 = R.now()
      local out = R.run_children(kids)
      local dt = R.now() - t0
      local attempts = 0
      for i = 1, P do
        assert.truthy(out[i]:find("done fails=0", 1, true), out[i])
        attempts = attempts + tonumber(out[i]:match("attempts=(%d+)"))
      end
      assert.are.equal(P * N, s:get("counter"))
      print(("# %d x %d atomic RMW: %.1f s, %d attempts (%.2f per commit)"):format(
        P, N, dt, attempts, attempts / (P * N)))
    end)
  end)

  -------------------------------------------------------------------------
  describe("store:shdict()", function()
    local kv, st, d
    before_each(function()
      kv = fresh()
      st = kv:namespace("dict")
      d = st:shdict()
    end)
    after_each(function() kv:close() end)

    it("gets and sets values with flags and ttls, add and replace", function()
      assert.are.same({ true, nil, false }, { d:set("a", "x", 10) })
      assert.are.equal("x", d:get("a"))
      assert.is_true(d:set("f", 1.5, 0, 7))
      assert.are.same({ 1.5, 7 }, { d:get("f") })
      assert.are.same({ false, "exists", false }, { d:add("a", "y") })
      assert.are.same({ false, "not found", false }, { d:replace("q", 1) })
      assert.is_true(d:add("q", 2))
      assert.is_true(d:set("b", true))
      assert.is_true(d:get("b"))
      assert.is_true(d:set("nan", 0 / 0))
      local nan = d:get("nan")
      assert.is_true(nan ~= nan)
      assert.is_true(d:set("inf", -math.huge))
      assert.are.equal(-math.huge, d:get("inf"))
      local t = d:ttl("a")
      assert.is_true(t > 9 and t <= 10)
      assert.are.equal(0, d:ttl("q"))
      assert.are.same({ nil, "not found" }, { d:ttl("nope") })
      assert.is_true(d:expire("q", 5))
      assert.is_true(d:expire("q", 0))
      assert.are.equal(0, d:ttl("q"))
      -- the Store API reads the dict's values and the other way round
      assert.are.equal("x", st:get("a"))
      st:set("fromstore", 12)
      assert.are.equal(12, d:get("fromstore"))
    end)

    it("incr: integers in one round trip when created, floats, missing keys, lists", function()
      local before = kv.round_trips
      assert.are.same({ 5, nil, false }, { d:incr("n", 5, 0) })
      assert.are.equal(1, kv.round_trips - before)
      assert.are.equal(6, d:incr("n", 1))
      assert.are.equal(6.5, d:incr("n", 0.5))
      assert.are.same({ nil, "not found" }, { d:incr("zz", 1) })
      assert.are.equal(1, d:lpush("l", 1))
      assert.are.same({ nil, "not a number" }, { d:incr("l", 1, 0) })
      -- without init, or with a float, incr took the list for a missing key: "not found",
      -- and with init the list was replaced by a number
      assert.are.same({ nil, "not a number" }, { d:incr("l", 1) })
      assert.are.same({ nil, "not a number" }, { d:incr("l", 0.5, 0) })
      assert.are.same({ nil, "not a number" }, { d:incr("l", 1, 0.5, 10) })
      assert.are.equal(1, d:llen("l"))
      assert.are.equal(1, d:rpop("l"))
      d:set("str", "x")
      assert.are.same({ nil, "not a number" }, { d:incr("str", 1) })
    end)

    it("lists are Redis lists", function()
      assert.are.equal(1, d:lpush("l", "one"))
      assert.are.equal(2, d:rpush("l", 2))
      assert.are.equal(2, d:llen("l"))
      assert.are.same({ nil, "value is a list" }, { d:get("l") })
      assert.are.equal("one", d:lpop("l"))
      assert.are.equal(2, d:rpop("l"))
      assert.are.equal(0, d:llen("l"))
      d:set("s", "str")
      assert.are.same({ nil, "value not a list" }, { d:lpush("s", 1) })
    end)

    it("get_keys, flush_all, flush_expired, capacity and free_space", function()
      for i = 1, 5 do d:set("k" .. i, i) end
      st:namespace("child"):set("c", 1)                -- not the dict's
      assert.are.equal(5, #d:get_keys(0))
      assert.are.equal(2, #d:get_keys(2))
      d:flush_all()
      assert.are.equal(0, #d:get_keys(0))
      assert.are.equal(1, st:namespace("child"):get("c"))
      assert.are.equal(0, d:flush_expired())
      assert.are.equal(math.huge, d:capacity())
      assert.are.equal(math.huge, d:free_space())
    end)
  end)

  -------------------------------------------------------------------------
  describe("faults", function()
    local srv
    setup(function()
      srv = R.server()
      srv.start()
    end)
    teardown(function() srv.cleanup() end)

    it("a stopped server: STORE_OPERATION_FAILED (connection) within timeout, then works again", function()
      local kv = zeltkv.redis({ url = srv.url, timeout = 0.5 })
      local s = kv:namespace("f")
      s:set("k", 1)
      srv.stop()
      for _, call in ipairs({ function() return s:get("k") end, function() return s:set("k", 2) end,
                              function() return s:incr("k", 1, 10) end,
                              function() return kv:atomic(function() s:set("k", s:get("k")) end) end,
                              function() return s:count() end }) do
        local t0 = R.now()
        local err = H.assert_error_code("STORE_OPERATION_FAILED", call)
        assert.are.equal("connection", err.reason)
        assert.is_true(R.now() - t0 < 0.6)
      end
      srv.start()
      assert.is_true(s:set("k", 3))                    -- no reconnect code needed
      assert.are.equal(3, s:get("k"))
      kv:close()
    end)

    it("a server that stops answering: the call fails within timeout, never hangs", function()
      local kv = zeltkv.redis({ url = srv.url, timeout = 0.3 })
      local s = kv:namespace("f")
      s:set("k", 1)
      srv.pause()
      local t0 = R.now()
      local err = H.assert_error_code("STORE_OPERATION_FAILED", s.get, s, "k")
      local dt = R.now() - t0
      srv.resume()
      assert.are.equal("connection", err.reason)
      assert.is_true(dt >= 0.25 and dt < 0.6, tostring(dt))
      assert.are.equal(1, s:get("k"))
      kv:close()
    end)

    it("a server restarted between calls: the next call reconnects by itself", function()
      local kv = zeltkv.redis({ url = srv.url, timeout = 0.5 })
      local s = kv:namespace("f")
      s:set("k", 1)                                    -- a kept connection
      srv.stop()
      srv.start()                                      -- without persistence: empty
      assert.is_nil(s:get("k"))                        -- the stale connection is replaced
      assert.is_true(s:set("k", 2))
      kv:close()
    end)
  end)

  -------------------------------------------------------------------------
  describe("in a cluster", function()
    if not CLUSTER then pending("no cluster (ZELTKV_REDIS_CLUSTER)") return end
    local nodes = cluster_nodes()
    local kv
    before_each(function() kv = zeltkv.redis(H.redis_opts({ cluster = nodes })) end)
    after_each(function() kv:close() end)

    -- the node that owns a root namespace's slot, and one that does not
    local function owner_of(root)
      local slot = slotlib.tag_slot(root)
      for _, n in ipairs(nodes) do
        local ok, r = pcall(R.raw, n, "CLUSTER", "COUNTKEYSINSLOT", tostring(slot))
        if ok and type(r) == "number" then
          local shards = R.raw(n, "CLUSTER", "SLOTS")
          for _, range in ipairs(shards) do
            if slot >= range[1] and slot <= range[2] then
              return range[3][1] .. ":" .. range[3][2], slot
            end
          end
        end
      end
    end

    it("follows MOVED from a seed that does not own the slot", function()
      local own = owner_of("moved")
      local seed
      for _, n in ipairs(nodes) do if n ~= own then seed = n end end
      local k2 = zeltkv.redis(H.redis_opts({ cluster = { seed } }))
      local s = k2:namespace("moved")
      s:set("k", "v")
      assert.are.equal("v", s:get("k"))
      assert.are.equal(1, R.raw(own, "EXISTS", k2.prefix .. "{moved}:k"))
      k2:flush()
      k2:close()
    end)

    it("refuses an atomic across roots in different slots before anything is sent", function()
      local a, b = "ra", "rb"
      assert.are_not.equal(slotlib.tag_slot(a), slotlib.tag_slot(b))
      local sa, sb = kv:namespace(a), kv:namespace(b)
      local err = H.assert_error_code("STORE_OPERATION_FAILED", kv.atomic, kv, function()
        sa:set("x", 1)
        sb:set("y", 1)
      end)
      assert.are.equal("cluster", err.reason)
      assert.is_nil(sa:get("x"))
      assert.is_nil(sb:get("y"))
      -- stores under one root share the slot: that works
      kv:atomic(function()
        sa:set("x", 1)
        sa:namespace("child"):set("y", sa:get("x") + 1)
      end)
      assert.are.equal(2, sa:namespace("child"):get("y"))
    end)

    it("walks and clears a root on its node, every master for the driver", function()
      for i = 1, 50 do kv:namespace("w" .. i):set("k", i) end
      assert.are.equal(1, kv:namespace("w7"):count())
      local st = kv:stats()
      assert.are.equal(50, st.keys)
      assert.are.equal(3, st.nodes)
      assert.are.equal(50, kv:flush())
    end)

    it("shard = \"key\" spreads one root's keys over the slots", function()
      local k2 = zeltkv.redis(H.redis_opts({ cluster = nodes, shard = "key" }))
      local s = k2:namespace("hot")
      for i = 1, 100 do s:incr("ip" .. i, 1, 60) end
      assert.are.equal(100, s:count())
      local per = {}
      for _, n in ipairs(nodes) do per[#per + 1] = R.raw(n, "DBSIZE") end
      for _, c in ipairs(per) do assert.is_true(c > 0) end
      -- a single-key atomic works; two keys in two slots do not
      k2:atomic(function() s:set("ip1", s:get("ip1") + 1) end)
      assert.are.equal(2, s:get("ip1"))
      H.assert_error_code("STORE_OPERATION_FAILED", k2.atomic, k2, function()
        s:get("ip1"); s:get("ip2"); s:get("ip3"); s:get("ip4")
      end)
      assert.are.equal(100, s:clear())
      k2:close()
    end)

    it("loses no write while the slot of a root moves between nodes under traffic", function()
      local root = "mig"
      local N = 3000
      local code = R.prelude() .. ([[
        local zeltkv = require("zeltkv")
        local nodes = {}
        for n in (%q):gmatch("[^,]+") do nodes[#nodes + 1] = n end
        local kv = zeltkv.redis({ cluster = nodes, prefix = %q, timeout = 2, lock_timeout = 30 })
        local s = kv:namespace(%q)
        local fails, last = 0, ""
        for i = 1, %d do
          local ok, e = pcall(s.incr, s, "plain")
          if not ok then fails = fails + 1; last = tostring(e) end
          ok, e = pcall(kv.atomic, kv, function() s:set("rmw", (s:get("rmw") or 0) + 1) end)
          if not ok then fails = fails + 1; last = tostring(e) end
          ok, e = pcall(s.set, s, "k" .. (i %% 50), i)
          if not ok then fails = fails + 1; last = tostring(e) end
        end
        print(("done fails=%%d %%s"):format(fails, last))
      ]]):format(CLUSTER, kv.prefix, root, N)
      local kid = R.child(code)
      local pipe = assert(io.popen(kid.cmd, "r"))
      -- move the slot to each other node and back, as redis-cli --cluster reshard does
      local slot = slotlib.tag_slot(root)
      local function id_of(addr) return R.raw(addr, "CLUSTER", "MYID") end
      -- every step's reply is checked: a refused step would leave the cluster in a state no
      -- reshard makes, and what the driver does there is not what this test is about
      local function step(addr, ...)
        local r = R.raw(addr, ...)
        assert(not require("zeltkv.resp").is_err(r), addr .. " " .. table.concat({ ... }, " ") .. ": " .. tostring(r and r.msg))
        return r
      end
      -- the slot's owner as every node sees it.  A node learns a move over the cluster bus,
      -- which can lag by seconds on a busy machine; a move planned from one node's stale
      -- view (the old owner taken for the owner) would have SETSLOT NODE give the slot to
      -- a node beside the one that still holds its keys, and the holder then drops them
      -- when the bus tells it of the newer owner: keys lost by the test, not by the driver.
      local function agreed_owner()
        local deadline = os.time() + 30
        repeat
          local seen, same = nil, true
          for _, n in ipairs(nodes) do
            local o
            for _, range in ipairs(R.raw(n, "CLUSTER", "SLOTS")) do
              if slot >= range[1] and slot <= range[2] then o = range[3][1] .. ":" .. range[3][2] end
            end
            if seen == nil then seen = o elseif o ~= seen then same = false end
          end
          if same and seen then return seen end
          R.sleep(0.05)
        until os.time() > deadline
        error("the nodes do not agree on the owner of slot " .. slot)
      end
      local moves = 0
      for round = 1, 3 do
        local from = agreed_owner()
        local to
        for _, n in ipairs(nodes) do if n ~= from then to = n; if round % 2 == 0 then break end end end
        local f, t = id_of(from), id_of(to)
        -- IMPORTING / MIGRATING, the keys over, then the slot's new owner: the target first,
        -- then the source, then the others (as redis-cli --cluster does: a node that gives
        -- the slot away before the new owner claims it leaves the slot with no owner a while)
        step(to, "CLUSTER", "SETSLOT", tostring(slot), "IMPORTING", f)
        step(from, "CLUSTER", "SETSLOT", tostring(slot), "MIGRATING", t)
        while true do
          local keys = step(from, "CLUSTER", "GETKEYSINSLOT", tostring(slot), "100")
          if #keys == 0 then break end
          local th, tp = to:match("^(.*):(%d+)$")
          step(from, "MIGRATE", th, tp, "", "0", "5000", "KEYS", (table.unpack or unpack)(keys))
          R.sleep(0.01)
        end
        step(to, "CLUSTER", "SETSLOT", tostring(slot), "NODE", t)
        step(from, "CLUSTER", "SETSLOT", tostring(slot), "NODE", t)
        for _, n in ipairs(nodes) do
          if n ~= to and n ~= from then step(n, "CLUSTER", "SETSLOT", tostring(slot), "NODE", t) end
        end
        moves = moves + 1
        R.sleep(0.2)
      end
      local out = pipe:read("*a")
      pipe:close()
      os.remove(kid.file)
      assert.truthy(out:find("done fails=0", 1, true), out)
      local s = kv:namespace(root)
      assert.are.equal(N, s:get("plain"))
      assert.are.equal(N, s:get("rmw"))
      assert.are.equal(3, moves)
      kv:flush()
    end)
  end)
end)
