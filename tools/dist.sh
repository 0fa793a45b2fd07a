#!/bin/bash
# dist.sh OUT ROCKSPEC -- make the release files in OUT:
#   zeltkv-V.tar.gz     the source tree (tools/snapshot.sh) under zeltkv-V/
#   zeltkv-V-R.src.rock what `luarocks pack` makes of a git source: the rockspec and the
#                       tree under the directory the rockspec's source.url names, zipped;
#                       `luarocks install` builds it without fetching anything.
# Refuses when the version is not the same everywhere it appears: ZKV_VERSION in
# include/zeltkv.h (and its ZKV_VERSION_MAJOR/MINOR/PATCH), the rockspec's file name, version
# and source.tag, CHANGELOG.md.
set -euo pipefail
out=$1; rockspec=$2
cd "$(dirname "$0")/.."
die() { echo "make dist: $*" >&2; exit 1; }
[ -f "$rockspec" ] || die "no rockspec"
ver=$(sed -n 's/^#define ZKV_VERSION "\(.*\)"/\1/p' include/zeltkv.h)
rver=$(sed -n 's/^version = "\(.*\)"/\1/p' "$rockspec")
tag=$(sed -n 's/^ *tag = "\(.*\)",*/\1/p' "$rockspec")
url=$(sed -n 's/^ *url = "\(.*\)",*/\1/p' "$rockspec")
num=$(for p in MAJOR MINOR PATCH; do sed -n "s/^#define ZKV_VERSION_$p \([0-9]*\)/\1/p" include/zeltkv.h; done | paste -sd.)
[ -z "$num" ] || [ "$num" = "$ver" ] || die "ZKV_VERSION $ver is not ZKV_VERSION_MAJOR.MINOR.PATCH $num"
[ "${rver%-*}" = "$ver" ] || die "rockspec version $rver is not ZKV_VERSION $ver"
[ "$(basename "$rockspec")" = "zeltkv-$rver.rockspec" ] || die "$rockspec should be named zeltkv-$rver.rockspec"
[ "$tag" = "v$ver" ] || die "rockspec source.tag $tag is not v$ver"
grep -q "^## \[$ver\]" CHANGELOG.md || die "CHANGELOG.md has no section \"## [$ver]\""
srcdir=$(basename "${url%.git}")              # luarocks: the source.dir of a git url

mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zeltkv-dist.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tools/snapshot.sh "$tmp/zeltkv-$ver"
tar -C "$tmp" --owner=0 --group=0 --sort=name -czf "$out/zeltkv-$ver.tar.gz" "zeltkv-$ver"
mkdir -p "$tmp/rock"
mv "$tmp/zeltkv-$ver" "$tmp/rock/$srcdir"
cp "$rockspec" "$tmp/rock/"
rm -f "$out/zeltkv-$rver.src.rock"
(cd "$tmp/rock" && zip -qr "$out/zeltkv-$rver.src.rock" "zeltkv-$rver.rockspec" "$srcdir")
echo "$out/zeltkv-$ver.tar.gz"
echo "$out/zeltkv-$rver.src.rock"
