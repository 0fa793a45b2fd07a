-- zeltkv: an embedded key-value store for Lua, in C.
-- Build from a checkout with:  luarocks --lua-version=5.4 make
-- (also 5.1 / LuaJIT: luarocks --lua-version=5.1 make).  It needs Debian's
-- libcjson-dev and libxxhash-dev (the Makefile's `make deps` installs them).
rockspec_format = "3.0"
package = "zeltkv"
version = "0.1.0-1"
source = {
  url = "git+https://example.invalid/zeltkv.git",
  tag = "v0.1.0",
}
description = {
  summary = "Embedded key-value store for Lua: namespaces, TTLs, tables, atomic(), shared memory",
  detailed = [[
zeltkv is a key-value engine written in C and driven from Lua. It lives inside the
program that uses it (no server): zeltkv.memory() for one process, zeltkv.shared(name)
for every process that opens the same name (nginx workers, pre-forked servers, cron
jobs). Values are strings, numbers, booleans and JSON-shaped tables; atomic(fn) runs a
function under the store's lock and undoes its writes if it raises.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
}
external_dependencies = {
  CJSON = { header = "cjson/cJSON.h", library = "cjson" },
  XXHASH = { header = "xxhash.h" },
}
build = {
  type = "builtin",
  modules = {
    ["zeltkv"] = "lua/zeltkv.lua",
    ["zeltkv.ffi"] = "lua/zeltkv/ffi.lua",
    ["zeltkv.shdict"] = "lua/zeltkv/shdict.lua",
    ["zeltkv.core"] = {
      sources = { "src/alloc.c", "src/arena.c", "src/index.c", "src/ops.c", "src/txn.c",
                  "src/snapshot.c", "src/dumpfile.c",
                  "src/lua/check.c", "src/lua/value.c", "src/lua/store.c", "src/lua/raw.c",
                  "src/lua/module.c" },
      defines = { "_GNU_SOURCE" },
      incdirs = { "include", "$(CJSON_INCDIR)", "$(XXHASH_INCDIR)" },
      libdirs = { "$(CJSON_LIBDIR)" },
      libraries = { "cjson", "pthread", "m" },
    },
  },
  copy_directories = { "examples" },
}
