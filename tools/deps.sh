#!/bin/sh
# deps.sh PKG... -- install the Debian packages that are missing.
# As root it runs apt-get; otherwise it prints the line to run and fails.
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
  echo "missing packages:$missing"
  echo "run: sudo apt-get update && sudo apt-get install -y$missing"
  exit 1
fi
