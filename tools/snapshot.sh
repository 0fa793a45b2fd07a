#!/bin/sh
# snapshot.sh DEST -- copy the source tree as git would ship it (the files git tracks
# and the new files it does not ignore, as they are in the working tree now, without
# build/) into DEST. What `make dist` packs and what the packaging tests build from.
set -eu
dest=$1
cd "$(dirname "$0")/.."
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' | sort -zu \
  | tar --null -T - -cf - | tar -xf - -C "$dest"
