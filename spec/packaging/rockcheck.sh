#!/bin/bash
# spec/packaging/rockcheck.sh: `luarocks --lua-version=X make` of a clean copy of the tree for
# X = 5.1 .. 5.4, each into a private tree, offline; each interpreter then uses the
# installed rock from another folder (LuaJIT the 5.1 rock, with its FFI front end on).
# Also: `luarocks lint`, and the rockspec names every source file and Lua module.
SUITE=rockcheck
source "$(dirname "$0")/lib.sh"
tools/snapshot.sh "$TMPD/src"
export http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 GIT_ALLOW_PROTOCOL=file
rockspec=$(ls zeltkv-*.rockspec)

check "luarocks lint $rockspec" luarocks lint "$rockspec"
check "the rockspec builds every file of src/ and names every module of lua/" \
  lua5.4 spec/packaging/rockspec_check.lua "$rockspec"
# 5.4 is built as a user builds it; the others at -O0, which checks the same packaging in a
# quarter of the compile time (about 4.5 CPU seconds less each)
for v in 5.1 5.2 5.3 5.4; do
  flags=(); [ "$v" = 5.4 ] || flags=(CFLAGS="-O0 -fPIC")
  check "luarocks --lua-version=$v make${flags:+ (-O0)}" \
    bash -c "cd '$TMPD/src' && luarocks --lua-version=$v --tree '$TMPD/t$v' make '$rockspec' ${flags[*]:+\"${flags[*]}\"}"
  check "lua$v uses the installed rock" use_lua "$TMPD/t$v" $v lua$v
  check "the rock's zkv command runs (Lua $v)" \
    bash -c "cd '$TMPD' && '$TMPD/t$v/bin/zkv' --version | grep -q '^zkv (zeltkv) '"
done
check "luajit uses the 5.1 rock, FFI front end on" use_lua "$TMPD/t5.1" 5.1 luajit ffi
finish
