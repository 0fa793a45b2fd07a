#!/usr/bin/env bash
# bench/redis-driver.sh: the redis driver's figures (make bench), measured in one run on
# one throw-away server (unix socket + a free TCP port on 127.0.0.1, no persistence):
#   1. redis-benchmark -c 1 (a C client, no pipelining): get, set, incr on TCP
#   2. bench/redis_driver.lua: the driver against a bare LuaSocket loop doing the same
#      commands, unix socket and TCP (Lua 5.4, and LuaJIT)
#   3. bench/redis-nginx.sh: inside nginx, against a bare cosocket client
# The server is stopped by pid whatever happens.
set -u
cd "$(dirname "$0")/.." || exit 2
command -v redis-server >/dev/null || { echo "redis-server not installed: skipped"; exit 0; }

T=$(mktemp -d /tmp/zeltkv-redis-bench.XXXXXX)
PID=""
cleanup() {
  [ -n "$PID" ] && { kill "$PID" 2>/dev/null; for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done; }
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

for _ in 1 2 3 4 5; do
  PORT=$((20000 + RANDOM % 12000))          # below the ephemeral ports (32768+)
  case ${ZKV_PORTS:-} in [0-9]*-[0-9]*) PORT=$((${ZKV_PORTS%-*} + RANDOM % (${ZKV_PORTS#*-} - ${ZKV_PORTS%-*} + 1))) ;; esac
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && continue
  redis-server --port "$PORT" --bind 127.0.0.1 --unixsocket "$T/redis.sock" --unixsocketperm 700 \
    --save '' --appendonly no --daemonize yes --dir "$T" --pidfile "$T/redis.pid" --logfile "$T/redis.log" || continue
  for _ in $(seq 1 50); do [ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] && break; sleep 0.05; done
  PID=$(cat "$T/redis.pid" 2>/dev/null)
  [ -n "$PID" ] && break
done
[ -n "$PID" ] || { echo "redis-server did not start: skipped"; exit 0; }

N=${REDIS_BENCH_N:-20000}
echo "redis driver: $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), 127.0.0.1:$PORT and a unix socket"
echo
echo "redis-benchmark -c 1 -n $((N * 5)) (a C client, one request at a time, TCP):"
redis-benchmark -p "$PORT" -q -n $((N * 5)) -c 1 -t get,set,incr 2>/dev/null | tr '\r' '\n' |
  awk '/requests per second/ { printf "  %-6s %8.0f ns/op\n", tolower($1), 1e9 / $2 }' | sed 's/://'
echo
for lua in lua5.4 luajit; do
  case $lua in luajit) dir=luajit ;; *) dir=$lua ;; esac
  [ -f "build/$dir/zeltkv/core.so" ] || continue
  REDIS_BENCH_N=$N LUA_CPATH="build/$dir/?.so;;" $lua bench/redis_driver.lua \
    "unix://$T/redis.sock" "redis://127.0.0.1:$PORT"
  echo
done
if [ -f build/luajit/zeltkv/core.so ] && command -v nginx >/dev/null; then
  bash bench/redis-nginx.sh "redis://127.0.0.1:$PORT"
fi
