#!/usr/bin/env bash
# spec/redis/run.sh: every test of the redis driver (make redis-test).
#
# Starts its own servers (spec/redis/servers.sh: unix socket, TCP, TLS + password, a
# 3-master cluster, and a cluster with replicas for the failover test), runs
#   * the contract specs (spec/02-04) with ZELTKV_DRIVER=redis over the unix socket and
#     over TCP, and ZELTKV_DRIVER=redis-cluster on the cluster (Lua 5.4),
#   * spec/redis/redis_spec.lua (the driver's own) under Lua 5.4, 5.3, 5.2, 5.1 and LuaJIT,
#   * spec/redis/failover_spec.lua against the cluster with replicas,
#   * the rate limiter and lock examples on the redis driver,
# writes one log per leg into RESULTS (each ends with "N passed, N failed"), and stops
# every server it started, by pid, whatever happens.
#
# Environment: RESULTS (default build/results), LEGS (default: all of
# "contract own failover examples nginx"), ZELTKV_REDIS_KEEP=1 keeps the servers' folder.
set -u
cd "$(dirname "$0")/../.." || exit 2

RESULTS=${RESULTS:-build/results}
LEGS=${LEGS:-contract own failover examples nginx}
mkdir -p "$RESULTS"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "redis: redis-server / redis-cli missing (make deps installs them)"
  echo "redis: 0 passed, 1 failed" > "$RESULTS/redis-setup.log"
  exit 1
fi

srv=$(mktemp -d /tmp/zeltkv-redis.XXXXXX)
cleanup() {
  spec/redis/servers.sh stop "$srv"
  [ "${ZELTKV_REDIS_KEEP:-0}" = 1 ] || rm -rf "$srv"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

want_replicas=
case " $LEGS " in *" failover "*) want_replicas=replicas ;; esac
t0=$(date +%s)
if ! spec/redis/servers.sh start "$srv" unix tcp tls cluster $want_replicas > "$srv/start.log" 2>&1; then
  cat "$srv/start.log"
  echo "redis: 0 passed, 1 failed" > "$RESULTS/redis-setup.log"
  exit 1
fi
# shellcheck disable=SC1091
. "$srv/env"
echo "redis: servers up in $(( $(date +%s) - t0 )) s ($srv)"

export ZELTKV_REDIS_UNIX ZELTKV_REDIS_TCP ZELTKV_REDIS_TLS ZELTKV_REDIS_CA ZELTKV_REDIS_TLS_PASSWORD \
       ZELTKV_REDIS_CLUSTER
[ -n "$want_replicas" ] && export ZELTKV_REDIS_REPLICAS

status=0
# leg NAME LOG COMMAND...: run one leg, print its summary and time
leg() {
  local name=$1 log=$RESULTS/$2; shift 2
  local s=$(date +%s)
  "$@" > "$log" 2>&1
  local rc=$?
  local last
  last=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  printf 'redis %-34s %-28s %3d s\n' "$name" "${last:-no summary}" $(( $(date +%s) - s ))
  if [ $rc -ne 0 ]; then
    status=1
    grep -A6 '^not ok' "$log" | head -40
    [ -n "$last" ] || { tail -n 20 "$log"; echo "$name: 0 passed, 1 failed" >> "$log"; }
  fi
}

CONTRACT="spec/02-store_spec.lua spec/03-bad_inputs_spec.lua spec/04-atomic_spec.lua spec/05-expiry_spec.lua
          spec/13-snapshot_spec.lua"
for l in $LEGS; do
  case $l in
    contract)
      leg "contract specs, unix socket" redis-contract-unix.log \
        env ZELTKV_DRIVER=redis ZELTKV_REDIS_URL="$ZELTKV_REDIS_UNIX" ./spec/run.sh $CONTRACT
      leg "contract specs, TCP" redis-contract-tcp.log \
        env ZELTKV_DRIVER=redis ZELTKV_REDIS_URL="$ZELTKV_REDIS_TCP" ./spec/run.sh $CONTRACT
      leg "contract specs, 3-node cluster" redis-contract-cluster.log \
        env ZELTKV_DRIVER=redis-cluster ./spec/run.sh $CONTRACT
      ;;
    own)
      for lua in lua5.4 lua5.3 lua5.2 lua5.1 luajit; do
        leg "driver spec ($lua)" "redis-own-$lua.log" env LUA=$lua ./spec/run.sh spec/redis/redis_spec.lua
      done
      ;;
    failover)
      leg "failover (cluster with replicas)" redis-failover.log ./spec/run.sh spec/redis/failover_spec.lua
      ;;
    examples)
      leg "examples on redis" redis-examples.log bash spec/redis/examples.sh
      ;;
    nginx)
      leg "inside nginx (cosockets)" redis-nginx.log bash spec/redis/nginx.sh
      ;;
    *) echo "unknown leg $l"; status=1 ;;
  esac
done
exit $status
