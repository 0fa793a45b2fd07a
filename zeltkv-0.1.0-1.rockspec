-- zeltkv: an embedded key-value store for Lua, in C.
-- From a checkout:  luarocks --lua-version=5.4 make   (5.1, 5.2, 5.3 and LuaJIT alike:
-- LuaJIT uses the 5.1 tree). It needs Debian's libcjson-dev and libxxhash-dev.
-- The version follows ZKV_VERSION in include/zeltkv.h; `make dist` checks that it does.
rockspec_format = "3.0"
package = "zeltkv"
version = "0.1.0-1"
source = {
  url = "git+https://github.com/zeltkv/zeltkv.git",
  tag = "v0.1.0",
}
description = {
  summary = "Embedded key-value store for Lua: namespaces, TTLs, tables, atomic(), shared memory",
  detailed = [[
zeltkv is a key-value engine written in C and driven from Lua. It lives inside the
program that uses it (no server): zeltkv.memory() for one process, zeltkv.shared(name)
for every process that opens the same name (nginx workers, pre-forked servers, cron
jobs). Values are strings, numbers, booleans and JSON-shaped tables; atomic(fn) runs a
function under the store's lock and undoes its writes if it raises. store:shdict() gives
the ngx.shared.DICT interface over any store.
]],
  homepage = "https://github.com/zeltkv/zeltkv",
  issues_url = "https://github.com/zeltkv/zeltkv/issues",
  license = "MIT",
  labels = { "database", "cache", "shared-memory", "openresty" },
}
-- shared segments use Linux futexes, mremap and /dev/shm
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.1, < 5.5",
}
external_dependencies = {
  CJSON = { header = "cjson/cJSON.h", library = "cjson" },
  XXHASH = { header = "xxhash.h" },
}
build = {
  type = "builtin",
  -- every file of src/: the engine, and the Lua binding (src/lua/); a spec checks this list
  modules = {
    ["zeltkv"] = "lua/zeltkv.lua",
    ["zeltkv.ffi"] = "lua/zeltkv/ffi.lua",
    ["zeltkv.shdict"] = "lua/zeltkv/shdict.lua",
    ["zeltkv.cli"] = "lua/zeltkv/cli.lua",
    ["zeltkv.snapshot"] = "lua/zeltkv/snapshot.lua",
    ["zeltkv.prometheus"] = "lua/zeltkv/prometheus.lua",
    -- the redis driver: plain Lua; needs LuaSocket (and LuaSec for TLS) only when used
    ["zeltkv.redis"] = "lua/zeltkv/redis.lua",
    ["zeltkv.resp"] = "lua/zeltkv/resp.lua",
    ["zeltkv.socket"] = "lua/zeltkv/socket.lua",
    ["zeltkv.slot"] = "lua/zeltkv/slot.lua",
    ["zeltkv.core"] = {
      sources = { "src/alloc.c", "src/arena.c", "src/clock.c", "src/deque.c", "src/index.c", "src/log.c", "src/open.c",
                  "src/ops.c", "src/room.c", "src/txn.c", "src/snapshot.c", "src/dumpfile.c",
                  "src/lua/check.c", "src/lua/ffi.c", "src/lua/value.c", "src/lua/store.c",
                  "src/lua/raw.c",
                  "src/lua/module.c", "src/lua/snapshot.c" },
      incdirs = { "include", "$(CJSON_INCDIR)", "$(XXHASH_INCDIR)" },
      libdirs = { "$(CJSON_LIBDIR)" },
      libraries = { "cjson", "pthread", "m" },
    },
  },
  -- the zkv command (docs/cli.md); luarocks puts a wrapper for the rock's Lua in its bin/
  install = { bin = { zkv = "bin/zkv" } },
  -- docs/: the manual (luarocks doc zeltkv); types/: LuaLS annotations of the API
  copy_directories = { "docs", "examples", "types" },
}
