#!/bin/bash
# spec/packaging/buildcheck.sh: the build honours what a packager gives it (make -n, nothing
# is compiled): CPPFLAGS on every compile line, LDFLAGS on every link line, the user's CFLAGS
# instead of the default ones, LUA_INCDIR instead of pkg-config, a Lua found through
# PKG_CONFIG_PATH, -Werror only when asked (WERROR=1 or CI=true), no -D flag of our own.
SUITE=buildcheck
source "$(dirname "$0")/lib.sh"
# the environment of the run (CI=true in CI, or `make test CI=true`, which reaches this
# make through MAKEFLAGS) must not decide what the default is
dry() { env -u CI -u WERROR -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -n -B B="$TMPD/b" "$@" all 2>&1; }
lines() { grep -E '^(gcc|cc|clang) ' <<<"$1"; }

DRY=$(dry CPPFLAGS=-DZKV_PKG_CPP LDFLAGS=-Wl,-zkvpkgld CFLAGS=-Ozkv)
flags() {
  local compiles links
  compiles=$(lines "$DRY" | grep -e ' -c ') links=$(lines "$DRY" | grep -e ' -shared ')
  [ -n "$compiles" ] && [ -n "$links" ] || { echo "no compile or link line: $DRY"; return 1; }
  ! grep -v -e '-DZKV_PKG_CPP' <<<"$compiles" || { echo "CPPFLAGS missing above"; return 1; }
  ! grep -v -e '-Ozkv' <<<"$compiles" || { echo "CFLAGS missing above"; return 1; }
  ! grep -e '-O2' <<<"$compiles" || { echo "the default CFLAGS stayed"; return 1; }
  ! grep -v -e '-Wl,-zkvpkgld' <<<"$links" || { echo "LDFLAGS missing above"; return 1; }
}
check "CPPFLAGS, CFLAGS and LDFLAGS reach every compile and link line" flags
nodefs() { ! lines "$DRY" | grep -E -e '-D[A-Za-z_]' | grep -v -e '-DZKV_PKG_CPP'; }
check "the sources need no -D flag of the build's own" nodefs
werror() {
  ! lines "$(dry)" | grep -e '-Werror' &&
  lines "$(dry WERROR=1)" | grep -q -e '-Werror' && lines "$(dry CI=true)" | grep -q -e '-Werror'
}
check "-Werror only with WERROR=1 or CI=true" werror
incdir() {
  local o; o=$(lines "$(dry LUA_INCDIR=/opt/zkv-lua/include)" | grep "/b/lua5.4/obj/")   # the binding's compile lines
  grep -q -e '-I/opt/zkv-lua/include' <<<"$o" && ! grep -q -e '-I/usr/include/lua5.4' <<<"$o" || { echo "$o"; return 1; }
}
check "LUA_INCDIR replaces pkg-config" incdir
pcfile() {
  mkdir -p "$TMPD/pc" && printf 'Name: lua5.4\nDescription: x\nVersion: 5.4.9\nCflags: -I/opt/zkv-pc-lua\n' > "$TMPD/pc/lua5.4.pc" &&
  local o; o=$(lines "$(PKG_CONFIG_PATH="$TMPD/pc" dry)" | grep "/b/lua5.4/obj/")   # the binding's compile lines
  grep -q -e '-I/opt/zkv-pc-lua' <<<"$o" || { echo "$o"; return 1; }
}
check "the Lua headers come from pkg-config (PKG_CONFIG_PATH honoured)" pcfile
finish
