#!/bin/bash
# spec/packaging/distcheck.sh: `make dist`, then the tarball builds with make, and the .src.rock
# installs with `luarocks install` offline (no proxy reachable, git limited to file://)
# and is used from Lua 5.4; make dist refuses a version that is not the same everywhere.
SUITE=distcheck
source "$(dirname "$0")/lib.sh"
export http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 GIT_ALLOW_PROTOCOL=file
ver=$(sed -n 's/^#define ZKV_VERSION "\(.*\)"/\1/p' include/zeltkv.h)
rockspec=$(ls zeltkv-*.rockspec)
rver=$(sed -n 's/^version = "\(.*\)"/\1/p' "$rockspec")
OUT="$TMPD/dist"
tgz="$OUT/zeltkv-$ver.tar.gz"; rock="$OUT/zeltkv-$rver.src.rock"

check "make dist" make --no-print-directory -s dist B="$TMPD/b"
mv "$TMPD/b/dist" "$OUT" 2>/dev/null
contents() {
  local list; list=$(tar tzf "$tgz") || return 1
  for f in LICENSE CHANGELOG.md README.md Makefile "$rockspec" include/zeltkv.h src/compat.h \
           lua/zeltkv.lua tools/deps.sh; do
    grep -qx "zeltkv-$ver/$f" <<<"$list" || { echo "missing $f"; return 1; }
  done
  ! grep -q "^zeltkv-$ver/build/" <<<"$list" || { echo "build/ is in the tarball"; return 1; }
}
check "the tarball holds the tree under zeltkv-$ver/ (and no build/)" contents
built() {
  tar xzf "$tgz" -C "$TMPD" && make --no-print-directory -s -C "$TMPD/zeltkv-$ver" all >/dev/null &&
  [ -f "$TMPD/zeltkv-$ver/build/lua5.4/zeltkv/core.so" ] && [ -f "$TMPD/zeltkv-$ver/build/libzeltkv.a" ]
}
check "the tarball builds with make" built
check "luarocks install of the .src.rock, offline" \
  luarocks --lua-version=5.4 --tree "$TMPD/tree" install "$rock"
check "lua5.4 uses the rock installed from the .src.rock" use_lua "$TMPD/tree" 5.4 lua5.4

refuses() {
  tools/snapshot.sh "$TMPD/bad" && cd "$TMPD/bad" &&
  sed -i 's/^version = ".*"/version = "9.9.9-1"/' "$rockspec" &&
  ! tools/dist.sh "$TMPD/bad-out" "$rockspec" 2>"$TMPD/err" && grep -q 'is not ZKV_VERSION' "$TMPD/err" &&
  [ ! -e "$TMPD/bad-out" ]
}
check "make dist refuses a rockspec whose version is not ZKV_VERSION" refuses
finish
