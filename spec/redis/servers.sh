#!/usr/bin/env bash
# spec/redis/servers.sh: the throw-away redis-server instances of the redis tests.
#
#   spec/redis/servers.sh start DIR [what...]   start them; writes DIR/env (sourced by the tests)
#   spec/redis/servers.sh stop DIR              stop every server started in DIR, by pid
#
# what: unix (a unix socket, no TCP), tcp (a free port on 127.0.0.1), tls (TLS and a
# password, certificate made here with openssl), cluster (3 masters, redis-cli --cluster
# create), replicas (3 masters + 3 replicas, for the failover test).  Default: all but
# replicas.  No persistence; ports are picked free at random in 20000-22700, or in
# ZKV_PORTS ("LO-HI"; never 6379; cluster buses are port + 10000, below the ephemeral
# ports when HI is 22700 or less).  DIR/env holds:
#   ZELTKV_REDIS_UNIX=unix:///DIR/unix/redis.sock     ZELTKV_REDIS_TCP=redis://127.0.0.1:P
#   ZELTKV_REDIS_TLS=rediss://:PASSWORD@127.0.0.1:P   ZELTKV_REDIS_CA=DIR/tls/ca.crt
#   ZELTKV_REDIS_CLUSTER=127.0.0.1:P1,...              ZELTKV_REDIS_REPLICAS=127.0.0.1:Q1,...
set -u

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [unix tcp tls cluster replicas]" >&2; exit 2; }
shift 2

port_free() {   # nothing listens on $1 nor on its cluster bus
  local p
  for p in "$1" $(($1 + 10000)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 1
  done
  return 0
}

# pick_ports N: N consecutive free ports, printed
pick_ports() {
  local n=$1 try base ok i
  for try in $(seq 1 50); do
    # below the ephemeral range (32768+), bus ports (+10000) included: no outgoing
    # connection can hold the port when the server binds it
    local lo=20000 hi=22700
    case ${ZKV_PORTS:-} in [0-9]*-[0-9]*) lo=${ZKV_PORTS%-*}; hi=${ZKV_PORTS#*-} ;; esac
    base=$((lo + RANDOM % (hi - lo - n + 2)))
    ok=1
    for i in $(seq 0 $((n - 1))); do port_free $((base + i)) || { ok=0; break; }; done
    [ $ok = 1 ] && { seq "$base" $((base + n - 1)); return 0; }
  done
  return 1
}

common=(--save '' --appendonly no --daemonize yes --bind 127.0.0.1)

# start_one NAME ARGS...: a server in DIR/NAME, pid file DIR/NAME/redis.pid
start_one() {
  local name=$1; shift
  mkdir -p "$dir/$name"
  ( cd "$dir/$name" && redis-server "${common[@]}" --dir "$dir/$name" --pidfile "$dir/$name/redis.pid" \
      --logfile "$dir/$name/redis.log" "$@" ) || return 1
}

# wait_ping ARGS...: until redis-cli ARGS ping answers (5 s)
wait_ping() {
  local i
  for i in $(seq 1 100); do
    [ "$(redis-cli "$@" ping 2>/dev/null)" = "PONG" ] && return 0
    sleep 0.05
  done
  echo "redis-server did not answer: redis-cli $*" >&2
  return 1
}

make_cluster() {   # make_cluster NAME REPLICAS NODES
  local name=$1 reps=$2 nodes=$3 ports p addrs=()
  ports=$(pick_ports "$nodes") || { echo "no free ports" >&2; return 1; }
  for p in $ports; do
    # replicas sync without disk and without delay, and may always be promoted
    start_one "$name/$p" --port "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 1000 --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
      --cluster-replica-validity-factor 0 || return 1
    addrs+=("127.0.0.1:$p")
  done
  for p in $ports; do wait_ping -p "$p" || return 1; done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$reps" --cluster-yes \
    > "$dir/$name/create.log" 2>&1 || { cat "$dir/$name/create.log" >&2; return 1; }
  local i first=${addrs[0]##*:}
  for i in $(seq 1 100); do
    local all=1
    for p in $ports; do
      redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || { all=0; break; }
    done
    [ $all = 1 ] && break
    sleep 0.1
  done
  [ "$(redis-cli -p "$first" cluster info | grep -c 'cluster_state:ok')" = 1 ] || { echo "cluster not ok" >&2; return 1; }
  # every replica has finished its first sync (a failover needs that)
  if [ "$reps" -gt 0 ]; then
    for i in $(seq 1 100); do
      local pending=0
      for p in $ports; do
        local info
        info=$(redis-cli -p "$p" info replication 2>/dev/null | tr -d '\r')
        if echo "$info" | grep -q '^role:slave'; then
          echo "$info" | grep -q '^master_link_status:up' || pending=1
        fi
      done
      [ $pending = 0 ] && break
      sleep 0.1
    done
  fi
  (IFS=,; echo "${addrs[*]}")
}

start() {
  mkdir -p "$dir"
  : > "$dir/env"
  local what=("$@")
  [ ${#what[@]} -eq 0 ] && what=(unix tcp tls cluster)
  local w port
  for w in "${what[@]}"; do
    case $w in
      unix)
        start_one unix --port 0 --unixsocket "$dir/unix/redis.sock" --unixsocketperm 700 \
          --enable-debug-command local || return 1
        wait_ping -s "$dir/unix/redis.sock" || return 1
        echo "export ZELTKV_REDIS_UNIX=unix://$dir/unix/redis.sock" >> "$dir/env"
        ;;
      tcp)
        port=$(pick_ports 1) || return 1
        start_one tcp --port "$port" --enable-debug-command local || return 1
        wait_ping -p "$port" || return 1
        echo "export ZELTKV_REDIS_TCP=redis://127.0.0.1:$port" >> "$dir/env"
        echo "export ZELTKV_REDIS_TCP_PORT=$port" >> "$dir/env"
        ;;
      tls)
        mkdir -p "$dir/tls"
        local t=$dir/tls pw
        pw="pw-$RANDOM$RANDOM"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=zeltkv test CA" \
          -keyout "$t/ca.key" -out "$t/ca.crt" >/dev/null 2>&1 || return 1
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$t/server.key" \
          -out "$t/server.csr" >/dev/null 2>&1 || return 1
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$t/ext.cnf"
        openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial \
          -days 2 -extfile "$t/ext.cnf" -out "$t/server.crt" >/dev/null 2>&1 || return 1
        port=$(pick_ports 1) || return 1
        start_one tls --port 0 --tls-port "$port" --tls-cert-file "$t/server.crt" \
          --tls-key-file "$t/server.key" --tls-ca-cert-file "$t/ca.crt" --tls-auth-clients no \
          --requirepass "$pw" || return 1
        wait_ping --tls --cacert "$t/ca.crt" -p "$port" -a "$pw" --no-auth-warning || return 1
        echo "export ZELTKV_REDIS_TLS=rediss://:$pw@127.0.0.1:$port" >> "$dir/env"
        echo "export ZELTKV_REDIS_TLS_PASSWORD=$pw" >> "$dir/env"
        echo "export ZELTKV_REDIS_TLS_PORT=$port" >> "$dir/env"
        echo "export ZELTKV_REDIS_CA=$t/ca.crt" >> "$dir/env"
        ;;
      cluster)
        local nodes
        nodes=$(make_cluster cluster 0 3) || return 1
        echo "export ZELTKV_REDIS_CLUSTER=$nodes" >> "$dir/env"
        ;;
      replicas)
        local nodes
        nodes=$(make_cluster replicas 1 6) || return 1
        echo "export ZELTKV_REDIS_REPLICAS=$nodes" >> "$dir/env"
        ;;
      *) echo "unknown server kind: $w" >&2; return 2 ;;
    esac
  done
}

stop() {
  local f pid i
  while IFS= read -r f; do
    pid=$(cat "$f" 2>/dev/null) || continue
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || continue
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null
  done < <(find "$dir" -name redis.pid 2>/dev/null)
  return 0
}

case $cmd in
  start) start "$@" || { stop; exit 1; } ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR [what...]" >&2; exit 2 ;;
esac
