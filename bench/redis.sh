#!/usr/bin/env bash
# redis.sh: the Redis peer figures, measured on this machine.
#
# Starts a throw-away redis-server on 127.0.0.1 and a random high port (no
# persistence), runs redis-benchmark for get/set/incr with one client, once
# without pipelining and once with -P 64, prints ns/op = 1e9 / requests per
# second, and always stops the server.  With --raw it prints one line per op,
# "op ns_one_client ns_pipeline64", for bench.lua to read.
set -u

raw=0
[ "${1:-}" = "--raw" ] && raw=1
REQUESTS=${REDIS_BENCH_N:-100000}

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
  echo "redis-server not installed: skipped"
  exit 0
fi

workdir=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# A few ports are tried in case one is taken.
port=""
for _ in 1 2 3 4 5; do
  try=$((20000 + RANDOM % 40000))
  case ${ZKV_PORTS:-} in [0-9]*-[0-9]*) try=$((${ZKV_PORTS%-*} + RANDOM % (${ZKV_PORTS#*-} - ${ZKV_PORTS%-*} + 1))) ;; esac
  ping "$try" && continue          # something already answers there
  redis-server --bind 127.0.0.1 --port "$try" --save '' --appendonly no \
    --daemonize no --dir "$workdir" --logfile "$workdir/redis.log" &
  pid=$!
  for _ in $(seq 1 50); do
    ping "$try" && { port=$try; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] && break
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=""
done
if [ -z "$port" ]; then
  echo "redis-server did not start: skipped"
  exit 0
fi

# run_bench PIPELINE: prints "op rps" per test (get, set, incr).
run_bench() {
  timeout 300 redis-benchmark -h 127.0.0.1 -p "$port" -q -n "$REQUESTS" -c 1 -P "$1" \
      -t get,set,incr 2>/dev/null |
    tr '\r' '\n' |
    awk '/requests per second/ { op = tolower($1); sub(":", "", op); rps[op] = $2 }
         END { for (o in rps) print o, rps[o] }'
}

single=$(run_bench 1)
piped=$(run_bench 64)

ns_of() { # ns_of "lines" op
  printf '%s\n' "$1" | awk -v op="$2" '$1 == op && $2 > 0 { printf "%.0f", 1e9 / $2 }'
}

[ $raw = 1 ] || {
  echo "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), 127.0.0.1:$port, $REQUESTS requests, 1 client"
  printf '%-6s %18s %18s\n' op "ns/op (1 client)" "ns/op (-P 64)"
}
for op in get set incr; do
  a=$(ns_of "$single" "$op"); b=$(ns_of "$piped" "$op")
  if [ $raw = 1 ]; then
    echo "$op ${a:-nan} ${b:-nan}"
  else
    printf '%-6s %18s %18s\n' "$op" "${a:-n/a}" "${b:-n/a}"
  fi
done
