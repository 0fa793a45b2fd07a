#!/usr/bin/env bash
# spec/redis/examples.sh: the rate limiter and the lock of examples/ on the redis driver,
# their code unchanged but the constructor (spec/redis/example_prelude.lua).  Needs
# ZELTKV_REDIS_UNIX (spec/redis/run.sh).  Prints "examples on redis: N passed, N failed".
set -u
cd "$(dirname "$0")/../.." || exit 2
LUA=${LUA:-lua5.4}
case $LUA in luajit) dir=luajit ;; *) dir=$LUA ;; esac
pass=0; fail=0
for e in examples/ratelimit.lua examples/lock.lua; do
  if ZELTKV_REDIS_URL=$ZELTKV_REDIS_UNIX LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' \
     LUA_CPATH="build/$dir/?.so;;" $LUA spec/redis/example_prelude.lua "$e"; then
    pass=$((pass + 1)); echo "ok   $e (redis)"
  else
    fail=$((fail + 1)); echo "FAIL $e (redis)"
  fi
done
echo "examples on redis: $pass passed, $fail failed"
[ $fail -eq 0 ]
