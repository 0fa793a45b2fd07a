# spec/packaging/lib.sh: what the packaging tests share (sourced by bash).
#   check NAME CMD...   run CMD; "ok NAME" when it succeeds, else "FAIL NAME" and its output
#   finish              print "SUITE: N passed, N failed" (SUITE set by the script); status
# Each test works in $TMPD (removed at exit) and never writes outside it.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 2
TMPD="$(mktemp -d "${TMPDIR:-/tmp}/zeltkv-pkg.XXXXXX")"
chmod 755 "$TMPD"
trap 'rm -rf "$TMPD"' EXIT
PASS=0; FAIL=0
check() {
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then PASS=$((PASS + 1)); echo "ok   $name"
  else FAIL=$((FAIL + 1)); echo "FAIL $name"; echo "$out" | tail -n 25 | sed 's/^/     /'; fi
}
finish() {
  echo "$SUITE: $PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ] && [ "$PASS" -gt 0 ]
}
# use_lua PREFIX LUA_ABI LUA [ffi]: spec/packaging/use.lua under LUA, with the Lua paths of an
# installation under PREFIX (lib/lua/ABI, share/lua/ABI), from a directory outside the checkout
use_lua() {
  local p=$1 abi=$2 lua=$3; shift 3
  (cd "$TMPD" && ZKV_EXPECT_PREFIX="$p" \
    LUA_PATH="$p/share/lua/$abi/?.lua;$p/share/lua/$abi/?/init.lua" LUA_CPATH="$p/lib/lua/$abi/?.so" \
    "$lua" "$ROOT/spec/packaging/use.lua" "$@")
}
