-- spec/docs/doccheck.lua [FILE.md...]: run the code blocks of the documentation, and check
-- its links, so that the pages cannot drift from the code. Run by `make docs`, under Lua 5.4,
-- from the top of the repository, after the modules are built (build/lua5.4, build/luajit).
--
-- Without arguments it reads README.md, every docs/*.md, and the READMEs of examples/*/,
-- bench/ and mk/. The rules a block follows are in
-- docs/contributing.md ("Code blocks"); in short, the fence's info string says how it runs:
--
--   ```lua                      runs under Lua 5.4 in a fresh process; must not raise
--   ```lua continue             runs in the same process as the block before it in the page,
--                               after it (its locals are visible)
--   ```lua raises="TEXT"        must raise an error whose tostring contains TEXT
--   ```lua luajit               runs under LuaJIT instead (a chain runs under one interpreter)
--   ```lua nginx                runs inside a real nginx (2 workers) as a content handler;
--                               the request must answer 200 and log no error
--   ```lua redis                needs a Redis server: one is started on a free port and
--                               "127.0.0.1:6379" in the block is replaced by its address
--   ```lua norun="WHY"          not run (WHY says why), but must compile
--   ```nginx get="/a /b"         the http{} contents of an nginx.conf: run in a real nginx (its
--                               `listen` lines get a free port), each path must answer 2xx
--                               and nothing may be logged as an error; an nginx block
--                               without get= is not run
--   ```c                        a whole program: compiled with -Werror against build/, run,
--                               must exit 0; `norun="WHY"` compiles only
--
-- A line `print(...) --> TEXT` also checks what that print printed (every print made on that
-- line must print TEXT, runs of spaces and tabs counting as one space, and the line must
-- print at least once); `--> TEXT` alone on the next line does the same for a long output. Any other attribute,
-- a raises= block that does not raise, a --> on a line without print(, or a block that fails
-- is a failure. Blocks in other languages (sh, nginx, text, ...) are not run.
--
-- Links: every relative link of the pages checked must name a file of the repository (and a
-- heading of it, for #anchors); nothing may point outside the repository, nor name the
-- design notes kept beside it (API.md, DESIGN.md, STYLE.md).
--
-- Each block counts as one test, each page's links as one; the last line is
-- "docs: N passed, N failed".

local ROOT = assert(os.getenv("PWD"))
local LUA54 = os.getenv("DOC_LUA") or "lua5.4"
local LUAJIT = os.getenv("DOC_LUAJIT") or "luajit"
local CC = os.getenv("CC") or "cc"
local B = os.getenv("B") or "build"
local TIMEOUT = os.getenv("DOC_TIMEOUT") or "120"

local pass, fail = 0, 0
local function ok(what) pass = pass + 1; print("ok   " .. what) end
local function bad(what, detail)
  fail = fail + 1
  print("FAIL " .. what)
  if detail and detail ~= "" then
    for l in (detail .. "\n"):gmatch("(.-)\n") do print("     " .. l) end
  end
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function read(path)
  local f = io.open(path, "rb"); if not f then return nil end
  local s = f:read("a"); f:close(); return s
end
local function write(path, s)
  local f = assert(io.open(path, "wb")); f:write(s); f:close()
end
local function run(cmd) -- -> ok, output (stdout and stderr)
  local p = io.popen(cmd .. " 2>&1", "r")
  local out = p:read("a")
  local okk, _, code = p:close()
  return okk == true and (code == 0 or code == nil), out
end
local function tmpdir()
  local okk, out = run("mktemp -d \"${TMPDIR:-/tmp}/zeltkv-doc.XXXXXX\"")
  assert(okk, out)
  return (out:gsub("%s+$", ""))
end
local TMP = tmpdir()

-- ---- parsing ---------------------------------------------------------------------
-- info string: `lang key key=value key="value with spaces"`
local function parse_info(info)
  local lang, rest = info:match("^(%S*)%s*(.-)%s*$")
  local attrs, order = {}, {}
  local i = 1
  while i <= #rest do
    local s, e, k = rest:find("^([%w_]+)", i)
    if not s then return lang:lower(), nil, "cannot read the info string at: " .. rest:sub(i) end
    i = e + 1
    local v = true
    if rest:sub(i, i) == "=" then
      local s2, e2, qv = rest:find('^="(.-)"', i)
      if s2 then v = qv; i = e2 + 1
      else
        local s3, e3, wv = rest:find("^=(%S+)", i)
        if not s3 then return lang:lower(), nil, "no value after " .. k .. "=" end
        v = wv; i = e3 + 1
      end
    end
    attrs[k] = v; order[#order + 1] = k
    i = (rest:find("%S", i)) or (#rest + 1)
  end
  return lang:lower(), attrs
end

-- blocks of a page: { lang, attrs, first, last (lines of the code), open, close (fence lines),
-- lines = { code lines } }
local function blocks_of(path)
  local text = assert(read(path), "cannot read " .. path)
  local lines = {}
  for l in (text:gsub("\r\n", "\n") .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do
    lines[#lines + 1] = l
  end
  local out, errs = {}, {}
  local n = 1
  while n <= #lines do
    local indent, fence, info = lines[n]:match("^( ? ? ?)(```+)%s*(.-)%s*$")
    if not fence then indent, fence, info = lines[n]:match("^( ? ? ?)(~~~+)%s*(.-)%s*$") end
    if fence then
      local lang, attrs, err = parse_info(info)
      local b = { lang = lang, attrs = attrs, open = n, lines = {}, first = n + 1 }
      local m = n + 1
      while m <= #lines do
        local f2 = lines[m]:match("^ ? ? ?(" .. fence:sub(1, 1):gsub("%p", "%%%0") .. "+)%s*$")
        if f2 and #f2 >= #fence then break end
        local l = lines[m]
        if #indent > 0 and l:sub(1, #indent) == indent then l = l:sub(#indent + 1) end
        b.lines[#b.lines + 1] = l
        m = m + 1
      end
      b.close, b.last = m, m - 1
      if m > #lines then errs[#errs + 1] = path .. ":" .. n .. ": code block never closed" end
      if err then errs[#errs + 1] = path .. ":" .. n .. ": " .. err end
      out[#out + 1] = b
      n = m + 1
    else
      n = n + 1
    end
  end
  return out, lines, errs
end

local LUA_ATTRS = { continue = true, raises = true, luajit = true, nginx = true, redis = true, norun = true }
local C_ATTRS = { norun = true }
local NGINX_ATTRS = { get = true }

-- ---- Redis, started once when a block needs it ------------------------------------
local redis_port
local function redis_addr()
  if redis_port then return "127.0.0.1:" .. redis_port end
  local okk, out = run("command -v redis-server")
  if not okk then return nil, "redis-server is not installed (apt-get install redis-server)" end
  for _ = 1, 5 do
    local port = math.random(20000, 60000)
    local busy = run("(echo > /dev/tcp/127.0.0.1/" .. port .. ") 2>/dev/null")
    if not busy then
      local cmd = "redis-server --port " .. port .. " --bind 127.0.0.1 --save '' --appendonly no " ..
        "--daemonize yes --pidfile " .. q(TMP .. "/redis.pid") .. " --logfile " .. q(TMP .. "/redis.log") ..
        " --dir " .. q(TMP)
      if run(cmd) then
        for _ = 1, 50 do
          if run("redis-cli -p " .. port .. " ping | grep -q PONG") then redis_port = port; break end
          run("sleep 0.1")
        end
        if redis_port then return "127.0.0.1:" .. redis_port end
      end
    end
  end
  return nil, "could not start redis-server: " .. (read(TMP .. "/redis.log") or "")
end
local function stop_redis()
  local pid = read(TMP .. "/redis.pid")
  if pid then run("kill " .. pid:gsub("%s", "")) end
end

-- ---- running a chain of Lua blocks -------------------------------------------------
-- The chunk keeps every block's code on its own line of the page, so that an error says
-- README.md:57 exactly; a raises= block becomes a function run by __doc.raises, opened on
-- its opening fence's line and closed on its closing fence's line.
local function chunk_of(chain, nlines)
  local out = {}
  for i = 1, nlines do out[i] = "" end
  local expect = {}
  for _, b in ipairs(chain) do
    local last -- the line of the last statement, for a `--> TEXT` line of its own
    for k, l in ipairs(b.lines) do
      local ln = b.first + k - 1
      out[ln] = l
      local code, want = l:match("^(.-)%s*%-%->%s?(.-)%s*$")
      if code and not code:find("%-%-") then
        local at = ln
        if code:match("^%s*$") then at = last end
        if not at or not out[at]:find("print%(") then
          return nil, ln .. ": `-->` needs a print( on its line (or on the line above it)"
        end
        if expect[at] then return nil, ln .. ": a second `-->` for the print of line " .. at end
        expect[at] = want
      elseif not l:match("^%s*$") and not l:match("^%s*%-%-") then
        last = ln
      end
    end
    if b.attrs.raises then
      out[b.open] = "__doc.raises(" .. b.open .. ", function()"
      out[b.close] = "end, " .. string.format("%q", b.attrs.raises) .. ")"
    end
  end
  return table.concat(out, "\n") .. "\n", expect
end

local function run_nginx(name, chunkfile, sh)
  return run("bash " .. q(ROOT .. "/spec/docs/nginx_block.sh") .. " lua " .. q(chunkfile) .. " " .. q(name) .. sh)
end

local function run_chain(page, chain, nlines)
  local head = chain[1]
  local name = page .. ":" .. head.open
  local chunk, expect = chunk_of(chain, nlines)
  if not chunk then return false, page .. ":" .. expect, nil end
  local jit = head.attrs.luajit
  local dir = tmpdir()
  local shm = dir .. "/shm"; run("mkdir -p " .. q(shm))
  for _, b in ipairs(chain) do
    if b.attrs.redis then
      local addr, err = redis_addr()
      if not addr then return false, err end
      chunk = chunk:gsub("127%.0%.0%.1:6379", addr):gsub("localhost:6379", addr)
      break
    end
  end
  write(dir .. "/chunk.lua", chunk)
  local ex = { "return {" }
  for ln, want in pairs(expect) do ex[#ex + 1] = string.format("[%d] = %q,", ln, want) end
  ex[#ex + 1] = "}"
  write(dir .. "/expect.lua", table.concat(ex, "\n"))
  local flavour = jit and "luajit" or "lua5.4"
  local env = "cd " .. q(dir) .. " && ZELTKV_SHM_DIR=" .. q(shm) ..
    " LUA_PATH=" .. q(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;") ..
    " LUA_CPATH=" .. q(ROOT .. "/" .. B .. "/" .. flavour .. "/?.so;;")
  local okk, out
  if head.attrs.nginx then
    okk, out = run_nginx(name, dir .. "/chunk.lua", "")
  else
    okk, out = run(env .. " timeout " .. TIMEOUT .. " " .. (jit and LUAJIT or LUA54) .. " " ..
      q(ROOT .. "/spec/docs/prelude.lua") .. " chunk.lua " .. q("@" .. page) .. " expect.lua")
  end
  run("rm -rf " .. q(dir))
  return okk, out
end

-- which block of the chain a failure's output points at (the first page:line it names)
local function failed_block(page, chain, out)
  local pat = page:gsub("%p", "%%%0") .. ":(%d+)"
  for ln in out:gmatch(pat) do
    ln = tonumber(ln)
    for i, b in ipairs(chain) do
      if ln >= b.open and ln <= b.close then return i end
    end
  end
  return nil
end

local function compile_lua(page, b, nlines)
  local chunk = chunk_of({ b }, nlines)
  if not chunk then return false, "cannot build the chunk" end
  local f, err = load(chunk, "@" .. page)
  if f then return true end
  return false, err
end

local function run_c(page, b)
  local dir = tmpdir()
  local src = dir .. "/block.c"
  write(src, string.rep("\n", b.first - 1) .. table.concat(b.lines, "\n") .. "\n")
  local okk, out = run(CC .. " -std=c11 -Wall -Wextra -Werror -I" .. q(ROOT .. "/include") .. " " .. q(src) ..
    " " .. q(ROOT .. "/" .. B .. "/libzeltkv.a") .. " -lpthread -lm -o " .. q(dir .. "/block"))
  out = out:gsub(src:gsub("%p", "%%%0"), page)
  if okk and not b.attrs.norun then
    run("mkdir -p " .. q(dir .. "/shm"))
    okk, out = run("cd " .. q(dir) .. " && ZELTKV_SHM_DIR=" .. q(dir .. "/shm") .. " timeout " .. TIMEOUT .. " ./block")
  end
  run("rm -rf " .. q(dir))
  return okk, out
end

local function check_page_blocks(page)
  local blocks, lines, errs = blocks_of(page)
  for _, e in ipairs(errs) do bad(e) end
  local chains = {}
  for _, b in ipairs(blocks) do
    local where = page .. ":" .. b.open
    if b.lang == "lua" then
      for k in pairs(b.attrs or {}) do
        if not LUA_ATTRS[k] then bad(where .. ": unknown attribute `" .. k .. "`"); b.skip = true end
      end
      if b.skip or not b.attrs then
        -- counted as failed above
      elseif b.attrs.norun then
        if b.attrs.norun == true then bad(where .. ": norun needs a reason (norun=\"why\")")
        else
          local okk, err = compile_lua(page, b, #lines)
          if okk then ok(where .. " (lua, not run: " .. b.attrs.norun .. ")") else bad(where .. " does not compile", err) end
        end
      elseif b.attrs.continue then
        if #chains == 0 then bad(where .. ": `continue` but no block before it")
        else
          local c = chains[#chains]
          for _, k in ipairs({ "luajit", "nginx" }) do
            if (b.attrs[k] or false) ~= (c[1].attrs[k] or false) and b.attrs[k] then
              bad(where .. ": `" .. k .. "` on a continued block (put it on the chain's first block)")
            end
          end
          c[#c + 1] = b
        end
      else
        chains[#chains + 1] = { b }
      end
    elseif b.lang == "nginx" and b.attrs and b.attrs.get then
      local good = true
      for k in pairs(b.attrs) do
        if not NGINX_ATTRS[k] then bad(where .. ": unknown attribute `" .. k .. "`"); good = false end
      end
      if good then
        local dir = tmpdir()
        write(dir .. "/conf", string.rep("\n", b.first - 1) .. table.concat(b.lines, "\n") .. "\n")
        local paths = {}
        for p in tostring(b.attrs.get):gmatch("%S+") do paths[#paths + 1] = q(p) end
        local okk, out = run("bash " .. q(ROOT .. "/spec/docs/nginx_block.sh") .. " conf " .. q(dir .. "/conf") ..
          " " .. q(where) .. " " .. table.concat(paths, " "))
        run("rm -rf " .. q(dir))
        if okk then ok(where .. " (nginx.conf, GET " .. b.attrs.get .. ")") else bad(where .. " (nginx.conf)", out) end
      end
    elseif b.lang == "c" then
      local good = true
      for k in pairs(b.attrs or {}) do
        if not C_ATTRS[k] then bad(where .. ": unknown attribute `" .. k .. "`"); good = false end
      end
      if good and b.attrs then
        local okk, out = run_c(page, b)
        if okk then ok(where .. " (c" .. (b.attrs.norun and ", compiled only" or "") .. ")")
        else bad(where .. " (c)", out) end
      end
    end
  end
  for _, chain in ipairs(chains) do
    local okk, out = run_chain(page, chain, #lines)
    local kind = chain[1].attrs.nginx and "nginx" or chain[1].attrs.luajit and "luajit" or "lua5.4"
    if okk then
      for _, b in ipairs(chain) do
        ok(page .. ":" .. b.open .. " (" .. kind .. (b.attrs.raises and ", raises" or "") .. ")")
      end
    else
      local at = failed_block(page, chain, out or "") or 1
      for i, b in ipairs(chain) do
        local where = page .. ":" .. b.open .. " (" .. kind .. ")"
        if i < at then ok(where)
        elseif i == at then bad(where, out)
        else bad(where .. ": not run (the block at " .. page .. ":" .. chain[at].open .. " before it failed)") end
      end
    end
  end
end

-- ---- links -------------------------------------------------------------------------
local function slug(h)
  h = h:gsub("`", ""):gsub("%*%*", ""):gsub("%[(.-)%]%(.-%)", "%1"):lower()
  h = h:gsub("[^%w%- _]", ""):gsub(" ", "-")
  return h
end
local anchors_cache = {}
local function anchors(path)
  if anchors_cache[path] then return anchors_cache[path] end
  local set, seen = {}, {}
  local text = read(path) or ""
  local infence = false
  for l in (text .. "\n"):gmatch("(.-)\n") do
    if l:match("^ ? ? ?```") or l:match("^ ? ? ?~~~") then infence = not infence
    elseif not infence then
      local h = l:match("^#+%s+(.-)%s*#*%s*$")
      if h then
        local s = slug(h)
        local n = seen[s]
        seen[s] = (n or -1) + 1
        set[n and (s .. "-" .. (n + 1)) or s] = true
      end
      for a in l:gmatch('<a%s+name="(.-)"') do set[a] = true end
      for a in l:gmatch('<a%s+id="(.-)"') do set[a] = true end
    end
  end
  anchors_cache[path] = set
  return set
end

local function normalize(path)
  local parts = {}
  for p in path:gmatch("[^/]+") do
    if p == ".." then
      if #parts == 0 then return nil end
      parts[#parts] = nil
    elseif p ~= "." then parts[#parts + 1] = p end
  end
  return table.concat(parts, "/")
end

local function check_links(page)
  local text = read(page)
  local dir = page:match("^(.*)/[^/]*$") or ""
  local problems = {}
  local infence = false
  local ln = 0
  for l in (text .. "\n"):gmatch("(.-)\n") do
    ln = ln + 1
    if l:match("^ ? ? ?```") or l:match("^ ? ? ?~~~") then infence = not infence
    elseif not infence then
      if l:find("/work/shared", 1, true) or l:find("../shared", 1, true) then
        problems[#problems + 1] = page .. ":" .. ln .. ": points outside the repository (shared/)"
      end
      -- the design notes kept beside the repository are not in a clone: name none of them
      for _, f in ipairs({ "API.md", "DESIGN.md", "STYLE.md" }) do
        if l:find(f, 1, true) and not read(f) and not read("docs/" .. f) then
          problems[#problems + 1] = page .. ":" .. ln .. ": names " .. f .. ", which is not in the repository"
        end
      end
      local stripped = l:gsub("`[^`]*`", "")
      for target in stripped:gmatch("%]%(([^)%s]+)[^)]*%)") do
        if not target:match("^%a[%w+.-]*:") then -- not http:, https:, mailto:
          local file, anchor = target:match("^([^#]*)#?(.*)$")
          local path
          if file == "" then path = page
          else path = normalize((dir ~= "" and dir .. "/" or "") .. file) end
          if not path then
            problems[#problems + 1] = page .. ":" .. ln .. ": " .. target .. " leaves the repository"
          elseif not read(path) and not run("test -d " .. q(path)) then
            problems[#problems + 1] = page .. ":" .. ln .. ": " .. target .. ": no such file"
          elseif anchor ~= "" and path:match("%.md$") and not anchors(path)[anchor] then
            problems[#problems + 1] = page .. ":" .. ln .. ": " .. target .. ": no such heading in " .. path
          end
        end
      end
    end
  end
  if #problems == 0 then ok(page .. ": links") else bad(page .. ": links", table.concat(problems, "\n")) end
end

-- ---- main --------------------------------------------------------------------------
math.randomseed(os.time())
local pages = { ... }
if #pages == 0 then
  pages[1] = "README.md"
  for f in io.popen("ls docs/*.md 2>/dev/null"):lines() do pages[#pages + 1] = f end
  for f in io.popen("ls examples/*/README.md bench/README.md mk/README.md 2>/dev/null"):lines() do
    pages[#pages + 1] = f
  end
end
for _, page in ipairs(pages) do
  check_page_blocks(page)
  check_links(page)
end
stop_redis()
run("rm -rf " .. q(TMP))
print("docs: " .. pass .. " passed, " .. fail .. " failed")
os.exit(fail == 0 and pass > 0 and 0 or 1)
