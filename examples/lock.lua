-- lock.lua: a mutual-exclusion lock with setnx and a ttl.
--
-- acquire: setnx stores the owner's token only if nobody holds the lock; the
-- ttl frees the lock if its owner dies.  release: inside atomic, delete the key
-- only if it still holds our token, so a worker whose lock already expired can
-- never release a lock that someone else has taken since.

local zeltkv = require("zeltkv")

local offset_ms = 0
local function advance(seconds)
  offset_ms = offset_ms + math.floor(seconds * 1000)
  zeltkv._set_clock_offset(offset_ms)
end

local TTL = 30
local kv = zeltkv.memory()
local locks = kv:namespace("locks")

local function acquire(name, owner)
  return locks:setnx(name, owner, { ttl = TTL })
end

local function release(name, owner)
  return kv:atomic(function()
    if locks:get(name) ~= owner then return false end
    return locks:del(name)
  end)
end

local function say(fmt, ...) print(("  t=%3ds  " .. fmt):format(offset_ms // 1000, ...)) end

local got = acquire("job:42", "worker-A")
say("worker-A acquires job:42 -> %s", tostring(got))
assert(got == true)

got = acquire("job:42", "worker-B")
say("worker-B acquires job:42 -> %s (held by %s)", tostring(got), locks:get("job:42"))
assert(got == false)

local freed = release("job:42", "worker-B")
say("worker-B tries to release it -> %s; holder is still %s", tostring(freed), locks:get("job:42"))
assert(freed == false and locks:get("job:42") == "worker-A")

advance(5)
freed = release("job:42", "worker-A")
say("worker-A finishes and releases -> %s", tostring(freed))
assert(freed == true and locks:get("job:42") == nil)

got = acquire("job:42", "worker-B")
say("worker-B acquires job:42 -> %s", tostring(got))
assert(got == true)

-- worker-B now hangs without releasing: the ttl frees the lock.
advance(TTL - 1)
got = acquire("job:42", "worker-A")
say("worker-B hangs; %ds later worker-A tries -> %s", TTL - 1, tostring(got))
assert(got == false)
advance(2)
got = acquire("job:42", "worker-A")
say("the ttl has run out; worker-A tries again -> %s", tostring(got))
assert(got == true and locks:get("job:42") == "worker-A")

-- worker-B wakes up and releases "its" lock: the owner check protects worker-A.
freed = release("job:42", "worker-B")
say("worker-B wakes and releases its stale lock -> %s; holder is %s",
  tostring(freed), locks:get("job:42"))
assert(freed == false and locks:get("job:42") == "worker-A")

assert(release("job:42", "worker-A") == true)
say("worker-A releases -> true")
assert(locks:has("job:42") == false)

zeltkv._set_clock_offset(0)
kv:close()
print("lock: ok")
