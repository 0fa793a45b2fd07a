#!/bin/bash
# spec/packaging/installcheck.sh: `make install` into a temporary prefix, for Lua 5.4 and for
# LuaJIT, then used from there: Lua 5.4 and LuaJIT (FFI front end on) from another folder,
# and a C program built with `pkg-config --cflags --libs zeltkv` (shared library) and
# against libzeltkv.a. Also DESTDIR staging, and `make uninstall`.
SUITE=installcheck
source "$(dirname "$0")/lib.sh"
P="$TMPD/usr"
MK=(make --no-print-directory -s)

check "make install PREFIX=... (Lua 5.4)" "${MK[@]}" install PREFIX="$P" LUA_VERSION=5.4
check "make install PREFIX=... LUA_VERSION=jit" "${MK[@]}" install PREFIX="$P" LUA_VERSION=jit
files() {
  local f
  for f in include/zeltkv.h lib/libzeltkv.a lib/libzeltkv.so lib/libzeltkv.so.0 \
           lib/pkgconfig/zeltkv.pc lib/lua/5.4/zeltkv/core.so lib/lua/5.1/zeltkv/core.so \
           share/zeltkv/types/zeltkv.lua bin/zkv; do
    [ -e "$1/$f" ] || { echo "missing $f"; return 1; }
  done
  for f in $(cd lua && find . -name '*.lua'); do
    for abi in 5.4 5.1; do [ -e "$1/share/lua/$abi/$f" ] || { echo "missing share/lua/$abi/$f"; return 1; }; done
  done
}
check "every file is installed (header, libraries, zeltkv.pc, module, all of lua/, types/)" files "$P"
check "lua5.4 uses the installation" use_lua "$P" 5.4 lua5.4
check "luajit uses the installation, FFI front end on" use_lua "$P" 5.1 luajit ffi
# bin/zkv of the last install (LuaJIT) finds its module without LUA_PATH, from elsewhere
zkv_runs() {
  (cd "$TMPD" && env -u LUA_PATH -u LUA_CPATH "$P/bin/zkv" --version | grep -q "^zkv (zeltkv) " &&
   env -u LUA_PATH -u LUA_CPATH "$P/bin/zkv" help list | grep -q "^usage: zkv list") &&
  head -n 1 "$P/bin/zkv" | grep -qx '#!/usr/bin/env luajit'
}
check "the installed zkv command runs" zkv_runs

export PKG_CONFIG_PATH="$P/lib/pkgconfig" ZELTKV_SHM_DIR="$TMPD/shm"
mkdir -p "$ZELTKV_SHM_DIR"
c_shared() {
  cc -std=c11 -Wall -Werror spec/packaging/hello.c -o "$TMPD/hello" $(pkg-config --cflags --libs zeltkv) \
    -Wl,-rpath,"$P/lib" &&
  ldd "$TMPD/hello" | grep -q "$P/lib/libzeltkv.so.0" && "$TMPD/hello"
}
check "a C program built with pkg-config --cflags --libs zeltkv (shared)" c_shared
c_static() {
  cc -std=c11 -Wall -Werror spec/packaging/hello.c -o "$TMPD/hello-static" $(pkg-config --cflags zeltkv) \
    "$P/lib/libzeltkv.a" $(pkg-config --static --libs-only-l zeltkv | sed 's/-lzeltkv//') &&
  ! ldd "$TMPD/hello-static" | grep -q libzeltkv && "$TMPD/hello-static"
}
check "a C program linked with libzeltkv.a" c_static
check "pkg-config --modversion is ZKV_VERSION" \
  test "$(pkg-config --modversion zeltkv)" = "$(sed -n 's/^#define ZKV_VERSION "\(.*\)"/\1/p' include/zeltkv.h)"

staged() {
  "${MK[@]}" install DESTDIR="$TMPD/stage" PREFIX=/opt/zeltkv-pkgtest LUA_VERSION=5.4 &&
  "${MK[@]}" install DESTDIR="$TMPD/stage" PREFIX=/opt/zeltkv-pkgtest LUA_VERSION=jit &&
  files "$TMPD/stage/opt/zeltkv-pkgtest" && [ ! -e /opt/zeltkv-pkgtest ] &&
  grep -qx 'prefix=/opt/zeltkv-pkgtest' "$TMPD/stage/opt/zeltkv-pkgtest/lib/pkgconfig/zeltkv.pc"
}
check "DESTDIR stages under DESTDIR, zeltkv.pc names PREFIX" staged
unstaged() {
  "${MK[@]}" uninstall PREFIX="$P" LUA_VERSION=5.4 && "${MK[@]}" uninstall PREFIX="$P" LUA_VERSION=jit &&
  left=$(find "$P" -type f) && [ -z "$left" ] || { echo "left: $left"; return 1; }
}
check "make uninstall removes every file" unstaged
finish
