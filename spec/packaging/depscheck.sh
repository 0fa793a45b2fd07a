#!/bin/bash
# spec/packaging/depscheck.sh: tools/deps.sh as a user who is not root: nothing to do is silent
# and succeeds; a missing package prints the exact apt-get line and fails; `make demo`
# stops at that line before building anything.
SUITE=depscheck
source "$(dirname "$0")/lib.sh"
if [ "$(id -u)" = 0 ]; then
  grp=nogroup; getent group nogroup >/dev/null || grp=nobody
  AS_USER=(setpriv --reuid=nobody --regid="$grp" --clear-groups env HOME="$TMPD")
else
  AS_USER=(env)
fi
quiet() { out=$("${AS_USER[@]}" tools/deps.sh coreutils dpkg 2>&1) && [ -z "$out" ]; }
check "installed packages: silent, status 0" quiet
missing() {
  ! out=$("${AS_USER[@]}" tools/deps.sh coreutils zeltkv-no-such-pkg 2>&1) &&
  grep -qx '  apt-get update && apt-get install -y zeltkv-no-such-pkg' <<<"$out" || { echo "$out"; return 1; }
}
check "a missing package: the exact apt-get line, status 1" missing
demo_stops() {
  tools/snapshot.sh "$TMPD/src" && chown -R "$(id -u nobody 2>/dev/null || id -u)" "$TMPD/src" &&
  ! out=$(cd "$TMPD/src" && "${AS_USER[@]}" make --no-print-directory demo PKGS_BUILD='coreutils zeltkv-no-such-pkg' 2>&1) &&
  grep -qx '  apt-get update && apt-get install -y zeltkv-no-such-pkg' <<<"$out" && [ ! -e "$TMPD/src/build" ] ||
  { echo "$out"; return 1; }
}
check "make demo with a package missing: the line, and nothing built" demo_stops
finish
