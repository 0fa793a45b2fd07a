#!/bin/sh
# layers.sh OBJDIR: prints which engine file calls which (from nm of the objects) and fails
# when the calls between files form a cycle: the engine is layered (docs/inside.md), a file
# only calls files below it.
set -eu
dir=${1:-build/obj}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/layers-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for o in "$dir"/*.o; do
  f=$(basename "$o" .o)
  nm "$o" | awk -v f="$f" '$1 ~ /^[0-9a-fA-F]+$/ && $2 ~ /^[TDBRC]$/ { print $3, f }' >> "$tmp/def"
  nm -u "$o" | awk -v f="$f" '{ print f, $2 }' >> "$tmp/use"
done
# edges "caller callee" between two different files, each once
awk 'NR == FNR { home[$1] = $2; next } ($2 in home) && home[$2] != $1 { print $1, home[$2] }' \
  "$tmp/def" "$tmp/use" | sort -u > "$tmp/edges"
awk '{ a[$1] = a[$1] " " $2 } END { for (f in a) print f " ->" a[f] }' "$tmp/edges" | sort
# tsort prints "input contains a loop" on stderr when the graph has a cycle
if tsort "$tmp/edges" 2>"$tmp/err" >/dev/null && ! [ -s "$tmp/err" ]; then
  echo "layers: no cycle between $(ls "$dir"/*.o | wc -l) engine files"
  echo "1 passed, 0 failed"
else
  sed 's/^/layers: /' "$tmp/err"
  echo "0 passed, 1 failed"
  exit 1
fi
