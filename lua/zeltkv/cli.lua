-- zeltkv.cli: the `zkv` command (bin/zkv is its launcher; docs/cli.md is its manual).
--
-- It looks into the stores of this machine (shared segments) and of Redis servers
-- (redis:// or unix:// URLs): lists them, reads and writes keys, prints stats, and
-- dumps and loads them.  Values are printed and read as JSON in the dump files' form
-- (zeltkv.core._json_encode / _json_decode: bytes that are not UTF-8 are \udcXX).
--
-- Exit status: 0 success, 1 a failed operation (no such segment or key, a full store,
-- a server that is down), 2 bad usage.  Every error is one line on stderr.
--
-- Opening a segment never creates one (create = false) and never changes it: no size
-- or evict option is given, and gc_interval = 0, so that no expiry sweep starts.

local zeltkv = require("zeltkv")
local core = require("zeltkv.core")

local M = {}

local concat, byte, char, fmt, sub = table.concat, string.byte, string.char, string.format, string.sub

-- ---- errors -------------------------------------------------------------------------

local USAGE, FAIL = {}, {}
local function usage(msg) error(setmetatable({ msg = msg }, USAGE), 0) end
local function fail(msg) error(setmetatable({ msg = msg }, FAIL), 0) end

-- the message of a zeltkv error (or any error value) as one line
local function message(e)
  local m = type(e) == "table" and e.message or tostring(e)
  return (tostring(m):gsub("[\r\n]+", " "))
end

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

-- run fn, turning a zeltkv error (or any other) into a failed operation
local function try(fn, ...)
  local r = pack(pcall(fn, ...))
  if r[1] then return unpack(r, 2, r.n) end
  local e = r[2]
  if type(e) == "table" and (getmetatable(e) == USAGE or getmetatable(e) == FAIL) then error(e, 0) end
  fail(message(e))
end

-- ---- output -------------------------------------------------------------------------

local out = io.stdout
local function say(...) out:write(...) out:write("\n") end

-- a Lua value in the JSON form of dump files
local function json(v) return core._json(core._encode(v)) end

local function human_bytes(n)
  if type(n) ~= "number" then return "-" end
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do n = n / 1024; i = i + 1 end
  if i == 1 then return fmt("%d B", n) end
  return fmt("%.1f %s", n, units[i])
end

-- a time given in seconds or milliseconds since 1970, as local time
local function human_time(t)
  if type(t) ~= "number" or t <= 0 then return "-" end
  if t > 1e11 then t = t / 1000 end
  return os.date("%Y-%m-%d %H:%M:%S", math.floor(t))
end

-- rows (lists of strings) as columns separated by two spaces
local function columns(rows)
  local w = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do if not w[i] or #c > w[i] then w[i] = #c end end
  end
  for _, r in ipairs(rows) do
    local line = {}
    for i, c in ipairs(r) do
      line[i] = i < #r and c .. string.rep(" ", w[i] - #c) or c
    end
    say(concat(line, "  "))
  end
end

-- ---- namespace paths ----------------------------------------------------------------
-- PATH is the names joined by "/"; inside a name "%" is %25 and "/" is %2F (any byte
-- may be written %XX).  "" and "/" are the root; a leading "/" is allowed.

local function decode_path(p)
  if p == nil or p == "" or p == "/" then return {} end
  local names = {}
  local s = p:sub(1, 1) == "/" and p:sub(2) or p
  for part in (s .. "/"):gmatch("([^/]*)/") do
    if part == "" then usage(fmt("PATH %q has an empty name (names are joined by one '/')", p)) end
    if part:gsub("%%%x%x", ""):find("%", 1, true) then
      usage(fmt("PATH %q: '%%' must start an escape %%XX (%%25 is '%%', %%2F is '/')", p))
    end
    local name = part:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end)
    if #name > 65535 then usage("PATH: a name is longer than 65535 bytes") end
    names[#names + 1] = name
  end
  return names
end

-- the length of the valid UTF-8 sequence at i of s, or nil
local function utf8_at(s, i)
  local c = byte(s, i)
  if c < 0x80 then return 1 end
  local n, lo, hi = nil, 0x80, 0xBF
  if c >= 0xC2 and c <= 0xDF then n = 2
  elseif c >= 0xE0 and c <= 0xEF then
    n = 3
    if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
  elseif c >= 0xF0 and c <= 0xF4 then
    n = 4
    if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
  else return nil end
  local c2 = byte(s, i + 1)
  if not c2 or c2 < lo or c2 > hi then return nil end
  for k = i + 2, i + n - 1 do
    local ck = byte(s, k)
    if not ck or ck < 0x80 or ck > 0xBF then return nil end
  end
  return n
end

-- a name as PATH writes it: printable ASCII and UTF-8 as they are, '%', '/',
-- spaces, control bytes and bytes that are not UTF-8 as %XX
local function encode_name(name)
  local parts, i, n = {}, 1, #name
  while i <= n do
    local c = byte(name, i)
    local k = (c > 0x20 and c < 0x7f and c ~= 0x25 and c ~= 0x2f) and 1 or (c >= 0x80 and utf8_at(name, i))
    if k then
      parts[#parts + 1] = sub(name, i, i + k - 1)
      i = i + k
    else
      parts[#parts + 1] = fmt("%%%02X", c)
      i = i + 1
    end
  end
  return concat(parts)
end

local function encode_path(names)
  local t = {}
  for i, n in ipairs(names) do t[i] = encode_name(n) end
  return concat(t, "/")
end

-- ---- globs ----------------------------------------------------------------------------
-- * any bytes, ? one byte, [abc] [a-z] [!a-z] one of (or none of) a set, \x the byte x

local function class_at(g, i)   -- g[i] == "["; returns matcher, next index (or nil)
  local j = i + 1
  local negate = false
  local c = sub(g, j, j)
  if c == "!" or c == "^" then negate = true; j = j + 1 end
  local set, first = {}, true
  while j <= #g do
    c = sub(g, j, j)
    if c == "]" and not first then
      return function(b)
        local hit = false
        for _, r in ipairs(set) do if b >= r[1] and b <= r[2] then hit = true break end end
        return hit ~= negate
      end, j + 1
    end
    if c == "\\" and j < #g then j = j + 1; c = sub(g, j, j) end
    local lo = byte(c)
    if sub(g, j + 1, j + 1) == "-" and j + 2 <= #g and sub(g, j + 2, j + 2) ~= "]" then
      local hc = sub(g, j + 2, j + 2)
      local hj = j + 2
      if hc == "\\" and hj < #g then hj = hj + 1; hc = sub(g, hj, hj) end
      set[#set + 1] = { lo, byte(hc) }
      j = hj + 1
    else
      set[#set + 1] = { lo, lo }
      j = j + 1
    end
    first = false
  end
  return nil
end

-- compile a glob into a list of tokens: "*", a function (one byte), or a byte
local function compile_glob(g)
  local toks, i = {}, 1
  while i <= #g do
    local c = sub(g, i, i)
    if c == "*" then
      if toks[#toks] ~= "*" then toks[#toks + 1] = "*" end
      i = i + 1
    elseif c == "?" then
      toks[#toks + 1] = function() return true end
      i = i + 1
    elseif c == "[" then
      local m, nxt = class_at(g, i)
      if not m then usage(fmt("GLOB %q: a '[' without its ']'", g)) end
      toks[#toks + 1] = m
      i = nxt
    else
      if c == "\\" and i < #g then i = i + 1; c = sub(g, i, i) end
      toks[#toks + 1] = byte(c)
      i = i + 1
    end
  end
  return toks
end

-- does s match the tokens? (iterative, backtracking to the last "*" only)
local function glob_match(toks, s)
  local ti, si, star_t, star_s = 1, 1, nil, nil
  local nt, ns = #toks, #s
  while si <= ns do
    local t = toks[ti]
    local b = byte(s, si)
    if t == "*" then
      star_t, star_s = ti, si
      ti = ti + 1
    elseif t ~= nil and ((type(t) == "number" and t == b) or (type(t) == "function" and t(b))) then
      ti, si = ti + 1, si + 1
    elseif star_t then
      star_s = star_s + 1
      ti, si = star_t + 1, star_s
    else
      return false
    end
  end
  while toks[ti] == "*" do ti = ti + 1 end
  return ti > nt
end

M._glob_match = function(glob, s) return glob_match(compile_glob(glob), s) end
M._decode_path, M._encode_path = decode_path, encode_path

-- ---- arguments ------------------------------------------------------------------------

local function is_url(name)
  return type(name) == "string" and (name:match("^rediss?://") or name:match("^unix://")) ~= nil
end

local function check_name(name)
  if is_url(name) then return end
  if type(name) ~= "string" or not name:match("^[A-Za-z0-9._-]+$") or #name > 128 then
    usage(fmt("%q is not a segment name (1-128 of A-Z a-z 0-9 . _ -) nor a redis:// URL", tostring(name)))
  end
end

local function seconds(s, what)
  local n = tonumber(s)
  if not n or n ~= n or n <= 0 or n == math.huge then
    usage(fmt("%s %q is not a number of seconds > 0", what, tostring(s)))
  end
  return n
end

local function key_arg(k, opts)
  if opts["key-json"] then
    local ok, v = pcall(core._json_decode, k)
    if not ok or type(v) ~= "string" then usage(fmt("KEY %q is not a JSON string", k)) end
    k = v
  end
  if #k == 0 or #k > 65535 then usage("KEY must be 1 to 65535 bytes") end
  return k
end

-- ---- opening stores -------------------------------------------------------------------

local G = {}   -- global options: dir, prefix

local function segment_dir()
  return G.dir or os.getenv("ZELTKV_SHM_DIR") or "/dev/shm"
end

local function segment_path(name) return segment_dir() .. "/zeltkv-" .. name end

-- A segment file's times say when a process last opened it (zkv_open_shared sets
-- them); zkv's own opens do not count: done() puts back the times read before.
local file_times = setmetatable({}, { __mode = "k" })   -- kv -> { path, size, atime, mtime }

-- open the segment name (never creating it): kv, or nil and the error
local function open_segment(name)
  local path = segment_path(name)
  local size, atime, mtime = core._file_times(path)
  local f = { path = path, size = size, atime = atime, mtime = mtime }
  local ok, kv = pcall(zeltkv.shared, name, { create = false, gc_interval = 0, dir = G.dir })
  if not ok then
    if mtime then core._set_file_times(path, atime, mtime) end   -- a file that is no segment
    return nil, kv
  end
  file_times[kv] = f
  return kv
end

local function done(kv)
  kv:close()
  local f = file_times[kv]
  if f and f.mtime then core._set_file_times(f.path, f.atime, f.mtime) end
end

local function open(name)
  check_name(name)
  if is_url(name) then
    if not zeltkv.redis then fail("this zeltkv has no Redis driver") end
    return try(zeltkv.redis, { url = name, prefix = G.prefix })
  end
  local kv, err = open_segment(name)
  if kv then return kv end
  fail(fmt("segment %s: %s", name, message(err)))
end

-- the store of a namespace path; the root ({}) is the driver itself, which has
-- namespaces() but no keys of its own in the Lua API
local function store_at(kv, names)
  local s = kv
  for _, n in ipairs(names) do s = try(s.namespace, s, n) end
  return s
end

-- PATH for the commands on keys: a namespace, not the root
local function key_path(p)
  local names = decode_path(p)
  if #names == 0 then usage("PATH must name a namespace (keys live in namespaces, not at the root)") end
  return names
end

-- ---- commands -------------------------------------------------------------------------

local C = {}       -- name -> { synopsis, summary, help, min, max, opts, run }
local order = {}

local function command(name, def)
  def.name = name
  C[name] = def
  order[#order + 1] = name
end

-- what zkv list shows of a segment: its stats() (name, path, size, evict policy,
-- figures) and its file's last open
local function stats_row(name, st, kv)
  local f = file_times[kv] or {}
  return {
    name = st.name or name,
    path = st.path or f.path or segment_path(name),
    size = st.size or f.size,
    used = st.bytes_used,
    keys = st.keys,
    evict = st.evict,
    last_open = f.mtime,
  }
end

command("list", {
  synopsis = "zkv list [--json]",
  summary = "the segments on this machine",
  help = [[
Lists the shared segments in the segment directory ($ZELTKV_SHM_DIR, else
/dev/shm; --dir DIR before the command names another): name, size, bytes used,
keys, evict policy, when it was last opened, and its path.  A file that is not
a readable zeltkv segment is listed with the reason in place of its figures.
--json prints one JSON object per segment and line instead.]],
  min = 0, max = 0, opts = { json = true },
  run = function(args, opts)
    local dir = segment_dir()
    local names = try(core._segments, dir)
    local rows = { { "NAME", "SIZE", "USED", "KEYS", "EVICT", "LAST OPEN", "PATH" } }
    for _, name in ipairs(names) do
      local kv, err = open_segment(name)
      local r
      if kv then
        local sok, st = pcall(kv.stats, kv)
        if sok then r = stats_row(name, st, kv) else r = { name = name, error = message(st) } end
        done(kv)
      else
        r = { name = name, error = message(err) }
      end
      r.path = r.path or segment_path(name)
      if opts.json then
        say(json(r))
      elseif r.error then
        rows[#rows + 1] = { r.name, "-", "-", "-", "-", "-", r.path .. "  (" .. r.error .. ")" }
      else
        rows[#rows + 1] = { r.name, human_bytes(r.size), human_bytes(r.used), tostring(r.keys or "-"),
                            tostring(r.evict or "-"), human_time(r.last_open), r.path }
      end
    end
    if not opts.json then columns(rows) end
  end,
})

local function print_table(t, as_json)
  if as_json then return say(json(t)) end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local rows = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    rows[#rows + 1] = { k .. ":", type(v) == "number" and v == math.floor(v) and fmt("%.0f", v) or tostring(v) }
  end
  columns(rows)
end

command("info", {
  synopsis = "zkv info NAME [--json]",
  summary = "one segment: its figures and every stat",
  help = [[
Prints what `zkv list` shows of one segment (or Redis URL), then every field of
its stats(), one "name: value" per line (--json: one JSON object).]],
  min = 1, max = 1, opts = { json = true },
  run = function(args, opts)
    local kv = open(args[1])
    local st = try(kv.stats, kv)
    local t = {}
    for k, v in pairs(st) do t[k] = v end
    if not is_url(args[1]) then
      for k, v in pairs(stats_row(args[1], st, kv)) do if t[k] == nil then t[k] = v end end
      -- as zkv list shows it (--json: ms since 1970)
      if not opts.json and t.last_open then t.last_open = human_time(t.last_open) end
    end
    done(kv)
    print_table(t, opts.json)
  end,
})

command("unlink", {
  synopsis = "zkv unlink NAME",
  summary = "remove a segment",
  help = [[
Removes the segment NAME (zeltkv.unlink).  Processes that have it open keep
using it; the next open of the name makes a new one.  Fails (status 1) when there
is no such segment.  Not for Redis URLs.]],
  min = 1, max = 1, opts = {},
  run = function(args)
    check_name(args[1])
    if is_url(args[1]) then usage("unlink removes a segment; a Redis URL is not one") end
    local existed = try(zeltkv.unlink, args[1], G.dir and { dir = G.dir } or nil)
    if not existed then fail("no segment named " .. args[1] .. " in " .. segment_dir()) end
  end,
})

-- child namespaces of s (path names), depth first when recursive
local function walk_ns(s, names, recursive, each)
  local children = {}
  if not s.namespaces then fail("this zeltkv cannot list namespaces (namespaces())") end
  for n in try(s.namespaces, s) do children[#children + 1] = n end
  table.sort(children)
  for _, n in ipairs(children) do
    local c = try(s.namespace, s, n)
    local p = {}
    for i, x in ipairs(names) do p[i] = x end
    p[#p + 1] = n
    each(p, c)
    if recursive then walk_ns(c, p, true, each) end
  end
end

command("ns", {
  synopsis = "zkv ns NAME [PATH] [-r|--recursive] [--json]",
  summary = "child namespaces of PATH, with their key counts",
  help = [[
Lists the namespaces directly under PATH (the root when absent), each as its PATH
and its number of keys (not counting those of its own children); -r lists every
namespace below PATH.  PATH: names joined by '/', with '%' and '/' inside a name
written %25 and %2F.  --json: {"path":...,"ns":[names],"keys":N} per line.]],
  min = 1, max = 2, opts = { recursive = true, r = "recursive", json = true },
  run = function(args, opts)
    local names = decode_path(args[2])
    local kv = open(args[1])
    local rows = {}
    walk_ns(store_at(kv, names), names, opts.recursive, function(p, c)
      local n = try(c.count, c)
      if opts.json then say(json({ path = encode_path(p), ns = p, keys = n }))
      else rows[#rows + 1] = { encode_path(p), fmt("%d", n) } end
    end)
    if not opts.json then columns(rows) end
    done(kv)
  end,
})

command("keys", {
  synopsis = "zkv keys NAME PATH [GLOB] [--raw]",
  summary = "the keys of one namespace",
  help = [[
Prints the live keys of the namespace PATH, one per line
as a JSON string (bytes that are not UTF-8 as \udcXX), in the store's order.
GLOB keeps those that match it: * any bytes, ? one byte, [abc], [a-z], [!a-z],
\x the byte x.  --raw prints the keys' bytes as they are instead.]],
  min = 2, max = 3, opts = { raw = true },
  run = function(args, opts)
    local names = key_path(args[2])
    local toks = args[3] and compile_glob(args[3])
    local kv = open(args[1])
    local s = store_at(kv, names)
    for k in try(s.keys, s) do
      if not toks or glob_match(toks, k) then
        if opts.raw then say(k) else say(json(k)) end
      end
    end
    done(kv)
  end,
})

local KEY_HELP = [[
KEY is taken as its bytes; --key-json reads it as a JSON string instead (for keys
with bytes a shell cannot pass, e.g. "a\u0000b").]]

-- A command on one key: NAME PATH KEY [...].  def.prepare(args, opts) reads the other
-- arguments (before anything is opened: bad usage never touches a store) and
-- def.key(s, key, prepared) does the work on the namespace's store.
local function key_command(name, def)
  def.opts["key-json"] = true
  def.help = def.help .. KEY_HELP
  def.run = function(args, opts)
    local names, key = key_path(args[2]), key_arg(args[3], opts)
    local prepared = def.prepare and def.prepare(args, opts)
    local kv = open(args[1])
    def.key(store_at(kv, names), key, prepared, opts)
    done(kv)
  end
  command(name, def)
end

key_command("get", {
  synopsis = "zkv get NAME PATH KEY [--key-json]",
  summary = "print a value as JSON",
  help = [[
Prints the value of KEY in the namespace PATH as JSON: strings as JSON strings
(bytes that are not UTF-8 as \udcXX), integers as digits, floats with a '.' or an
exponent, booleans, tables as objects or arrays.  Fails when the key is absent.
]],
  min = 3, max = 3, opts = {},
  key = function(s, key)
    local v = try(s.get, s, key)
    if v == nil then fail("no such key") end
    say(try(json, v))
  end,
})

-- VALUE as JSON, or (--string) as bytes; "-" reads standard input
local function value_arg(text, opts)
  if text == "-" then text = io.stdin:read("*a") or "" end
  if opts.string then return text end
  local ok, v = pcall(core._json_decode, text)
  if not ok then
    usage(fmt("VALUE is not JSON that can be stored (%s); --string takes it as a plain string", message(v)))
  end
  return v
end

key_command("set", {
  synopsis = "zkv set NAME PATH KEY VALUE [--ttl SECONDS] [--nx] [--string] [--key-json]",
  summary = "store a value read as JSON",
  help = [[
Stores VALUE (JSON, as `zkv get` prints it; "-" reads it from standard input)
under KEY in the namespace PATH.  --string stores VALUE's bytes as a string
instead.  --ttl gives it a time to live; without, it never expires.  --nx stores
only if the key is absent (status 1 if it was there).
]],
  min = 4, max = 4, opts = { ttl = "value", nx = true, string = true },
  prepare = function(args, opts)
    return { ttl = opts.ttl and seconds(opts.ttl, "--ttl"), value = value_arg(args[4], opts) }
  end,
  key = function(s, key, p, opts)
    if opts.nx then
      if not try(s.setnx, s, key, p.value, p.ttl) then fail("the key exists (--nx)") end
    else
      try(s.set, s, key, p.value, p.ttl)
    end
  end,
})

key_command("del", {
  synopsis = "zkv del NAME PATH KEY [--key-json]",
  summary = "remove a key",
  help = "Removes KEY from the namespace PATH; fails when it was absent.\n",
  min = 3, max = 3, opts = {},
  key = function(s, key)
    if not try(s.del, s, key) then fail("no such key") end
  end,
})

key_command("ttl", {
  synopsis = "zkv ttl NAME PATH KEY [--key-json]",
  summary = "seconds a key has left",
  help = [[
Prints the seconds KEY has left (to the millisecond), or null when it never
expires.  Fails when the key is absent.
]],
  min = 3, max = 3, opts = {},
  key = function(s, key)
    local t = try(s.ttl, s, key)
    if t == nil then fail("no such key") end
    say(t == math.huge and "null" or fmt("%.3f", t))
  end,
})

key_command("expire", {
  synopsis = "zkv expire NAME PATH KEY SECONDS [--key-json]",
  summary = "give a key a new time to live",
  help = "Sets KEY to expire SECONDS from now; fails when the key is absent.\n",
  min = 4, max = 4, opts = {},
  prepare = function(args) return seconds(args[4], "SECONDS") end,
  key = function(s, key, ttl)
    if not try(s.expire, s, key, ttl) then fail("no such key") end
  end,
})

key_command("incr", {
  synopsis = "zkv incr NAME PATH KEY [BY] [--ttl SECONDS] [--key-json]",
  summary = "add to an integer, print the result",
  help = [[
Adds BY (an integer, default 1, may be negative) to the integer under KEY and
prints the result.  A missing key is created holding BY, with the --ttl given
(the ttl never changes an existing key).  Fails when the value is not an integer.
]],
  min = 3, max = 4, opts = { ttl = "value" },
  prepare = function(args, opts)
    local by = 1
    if args[4] then
      by = args[4]:match("^[+-]?%d+$") and tonumber(args[4])
      if not by then usage(fmt("BY %q is not an integer", args[4])) end
    end
    return { by = by, ttl = opts.ttl and seconds(opts.ttl, "--ttl") }
  end,
  key = function(s, key, p)
    say(try(json, try(s.incr, s, key, p.by, p.ttl)))
  end,
})

command("stats", {
  synopsis = "zkv stats NAME [--json|--prometheus]",
  summary = "a store's stats()",
  help = [[
Prints the store's stats(), one "name: value" per line; --json as one JSON
object; --prometheus in the Prometheus text format (zeltkv.prometheus), for a
cron job to write into a node exporter's textfile directory.]],
  min = 1, max = 1, opts = { json = true, prometheus = true },
  run = function(args, opts)
    if opts.json and opts.prometheus then usage("--json and --prometheus exclude each other") end
    local kv = open(args[1])
    if opts.prometheus then
      out:write(try(zeltkv.prometheus, kv))
    else
      print_table(try(kv.stats, kv), opts.json)
    end
    done(kv)
  end,
})

local function isatty_err() return core._isatty and core._isatty(2) end

command("dump", {
  synopsis = "zkv dump NAME [FILE]",
  summary = "write the whole store to a dump file",
  help = [[
Writes every key of the store to FILE (standard output when absent or "-") as a
dump file: JSON lines, one per key, as the store was at one instant
(docs/snapshots.md).  A FILE that is a regular file is replaced only once the
dump is complete.  A progress bar is drawn on stderr when it is a terminal.]],
  min = 1, max = 2, opts = {},
  run = function(args)
    local file = args[2]
    local kv = open(args[1])
    local n, info
    if file == nil or file == "-" then
      n, info = try(kv.dump, kv, io.stdout)
      io.stdout:flush()
    else
      n, info = try(kv.dump, kv, file)
    end
    if isatty_err() then
      io.stderr:write(fmt("zkv: dumped %d keys%s\n", n,
        info and info.lock_ms and fmt(" (the lock was held %.1f ms)", info.lock_ms) or ""))
    end
    done(kv)
  end,
})

command("load", {
  synopsis = "zkv load NAME [FILE]",
  summary = "add the keys of a dump file",
  help = [[
Adds the keys of the dump FILE (standard input when absent or "-") to the store,
all or nothing: a bad line or a full store fails the load (status 1, the error
names the line) and leaves every key as it was.  Keys whose expiry has passed
are skipped.  A progress bar is drawn on stderr when it is a terminal.]],
  min = 1, max = 2, opts = {},
  run = function(args)
    local file = args[2]
    local kv = open(args[1])
    local n, info
    if file == nil or file == "-" then n, info = try(kv.load, kv, io.stdin)
    else n, info = try(kv.load, kv, file) end
    if isatty_err() then
      io.stderr:write(fmt("zkv: loaded %d keys%s\n", n,
        info and info.expired and info.expired > 0 and fmt(" (%d expired ones skipped)", info.expired) or ""))
    end
    done(kv)
  end,
})

command("help", {
  synopsis = "zkv help [COMMAND]",
  summary = "this text, or a command's",
  help = "Prints how to use zkv, or one command.",
  min = 0, max = 1, opts = {},
  run = function(args)
    if args[1] then
      local c = C[args[1]]
      if not c then usage(fmt("no command %q (zkv help lists them)", args[1])) end
      say("usage: " .. c.synopsis)
      say("")
      say(c.help)
      return
    end
    say([[
usage: zkv [--dir DIR] [--prefix PREFIX] COMMAND [ARGS]

Looks into zeltkv stores: shared segments of this machine, by NAME, or Redis
servers, by URL (redis://[user:password@]host:port[/db] or unix:///path; --prefix
is the driver's key prefix, default "zkv").  --dir DIR: the directory of the
segments (default $ZELTKV_SHM_DIR, else /dev/shm).  No command creates a segment.
]])
    local rows = {}
    for _, n in ipairs(order) do rows[#rows + 1] = { "  " .. n, C[n].summary } end
    say("commands:")
    columns(rows)
    say([[

PATH is a namespace path: names joined by '/', with '%' and '/' inside a name
written %25 and %2F ("" or / is the root).  Values are JSON (docs/cli.md).
Exit status: 0 success, 1 the operation failed, 2 bad usage.
`zkv help COMMAND` or `zkv COMMAND --help` tells more.]])
  end,
})

-- ---- main -----------------------------------------------------------------------------

-- split a command's arguments into positionals and options (opts: name -> true
-- for a flag, "value" for one taking a value, or another name it is short for)
local function parse(cmd, argv, from)
  local args, opts, i = {}, {}, from
  local ended = false
  while i <= #argv do
    local a = argv[i]
    if not ended and a == "--" then
      ended = true
    elseif not ended and (a == "-h" or a == "--help") then
      opts.help = true
    elseif not ended and a:match("^%-%-?[%a]") then
      local name, val = a:match("^%-%-?([%w-]+)=(.*)$")
      name = name or a:match("^%-%-?([%w-]+)$")
      local kind = name and cmd.opts[name]
      if type(kind) == "string" and kind ~= "value" then name, kind = kind, cmd.opts[kind] end
      if not kind then usage(fmt("no option %s (zkv %s --help)", a, cmd.name)) end
      if kind == "value" then
        if val == nil then
          i = i + 1
          val = argv[i]
          if val == nil then usage(fmt("%s needs a value", a)) end
        end
        opts[name] = val
      else
        if val ~= nil then usage(fmt("--%s takes no value", name)) end
        opts[name] = true
      end
    else
      args[#args + 1] = a
    end
    i = i + 1
  end
  return args, opts
end

local function run(argv)
  local i = 1
  while argv[i] do
    local a = argv[i]
    if a == "--dir" or a == "--prefix" then
      if not argv[i + 1] then usage(a .. " needs a value") end
      G[a:sub(3)] = argv[i + 1]
      i = i + 2
    elseif a:match("^%-%-dir=") or a:match("^%-%-prefix=") then
      local k, v = a:match("^%-%-(%w+)=(.*)$")
      G[k] = v
      i = i + 1
    elseif a == "-h" or a == "--help" then
      return C.help.run({}, {})
    elseif a == "--version" then
      return say("zkv (zeltkv) " .. tostring(zeltkv.version))
    elseif a:match("^%-") then
      usage("no option " .. a .. " (zkv --help)")
    else
      break
    end
  end
  local name = argv[i]
  if not name then usage("a command is needed (zkv --help lists them)") end
  local cmd = C[name]
  if not cmd then usage(fmt("no command %q (zkv --help lists them)", name)) end
  local args, opts = parse(cmd, argv, i + 1)
  if opts.help then return C.help.run({ name }, {}) end
  if #args < cmd.min or #args > cmd.max then
    usage(fmt("%d argument%s given; usage: %s", #args, #args == 1 and "" or "s", cmd.synopsis))
  end
  return cmd.run(args, opts)
end

-- main(argv) -> exit status; argv as the script's `arg`
function M.main(argv)
  local t = {}
  for i = 1, #argv do t[i] = argv[i] end
  local ok, e = pcall(run, t)
  out:flush()
  if ok then return 0 end
  local mt = type(e) == "table" and getmetatable(e)
  local cmd = t[1] and C[t[1]] and t[1]
  for _, a in ipairs(t) do if C[a] then cmd = a break end end
  local where = cmd and ("zkv: " .. cmd .. ": ") or "zkv: "
  local msg = (mt == USAGE or mt == FAIL) and e.msg or message(e)
  -- the library's message may start with its call's name, the command's too
  if cmd and msg:sub(1, #cmd + 2) == cmd .. ": " then msg = msg:sub(#cmd + 3) end
  io.stderr:write(where, msg, "\n")
  return mt == USAGE and 2 or 1
end

return M
