#!/bin/sh
# deps.sh PKG... -- make sure the Debian packages PKG... are installed.
# As root it installs the missing ones with apt-get; otherwise it prints the exact
# line to run as root and fails, so that the make target that needs them stops there.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || apt-get update
  # shellcheck disable=SC2086
  apt-get install -y -qq $missing >/dev/null || apt-get install -y $missing
else
  echo "missing Debian packages:$missing" >&2
  echo "install them as root, then run make again:" >&2
  echo "  apt-get update && apt-get install -y$missing" >&2
  exit 1
fi
