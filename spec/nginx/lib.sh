# spec/nginx/lib.sh: what the scripts that run a private nginx share.  Sourced (bash) by
# spec/nginx/run.sh, spec/shdict_diff/run.sh and bench/nginx/run.sh after they set NGINX.
#
#   ngx_apt_install PKG      install a Debian package, saying so
#   ngx_prefix NAME          make the temporary prefix $T (shm/, run/, logs/, modules -> the
#                            nginx modules), set USER_LINE ("user nobody ...;" when root),
#                            NGX_HTTP_COMMON (the http{} lines every config has: no access
#                            log, temp paths in $T, the package paths of $ROOT and $HERE),
#                            MASTER="" and PORT=""
#   ngx_start WRITE READY    start nginx on a free port: `WRITE PORT` writes $T/nginx.conf,
#                            `READY PORT` succeeds once it serves; up to 3 ports are tried
#                            (another process may take the port first).  Sets PORT and MASTER;
#                            returns 0 once READY said so (within 10 s), else 1.
#   stop_nginx               stop the nginx of $MASTER (SIGQUIT, then SIGKILL after 5 s)
#   pick_port                print a port nobody listens on
#   rand_port LO HI          a random port in LO..HI, or in ZKV_PORTS ("LO-HI") when it is
#                            set (several people testing on one machine each keep to a range)

ngx_apt_install() {
  echo "# installing $1 (apt-get install -y $1)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1; }
}

ngx_prefix() {
  T="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  chmod 755 "$T"
  mkdir -p "$T/shm" "$T/run" "$T/logs"
  chmod 1777 "$T/shm" "$T/run"            # workers may run as nobody
  # the load_module lines of /etc/nginx/modules-enabled name modules/... relative to the prefix
  local moddir
  moddir="$("$NGINX" -V 2>&1 | sed -n "s/.*--modules-path=\([^ ]*\).*/\1/p")"
  ln -s "${moddir:-/usr/lib/nginx/modules}" "$T/modules"
  if [ "$(id -u)" = 0 ]; then
    local grp=nogroup
    getent group nogroup >/dev/null || grp=nobody
    USER_LINE="user nobody $grp;"
  else
    USER_LINE=""
  fi
  NGX_HTTP_COMMON="  access_log off;
  client_body_temp_path $T/tmp_body;
  proxy_temp_path $T/tmp_proxy;
  fastcgi_temp_path $T/tmp_fastcgi;
  uwsgi_temp_path $T/tmp_uwsgi;
  scgi_temp_path $T/tmp_scgi;
  lua_package_path \"$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$HERE/?.lua;;\";
  lua_package_cpath \"$ROOT/build/luajit/?.so;;\";"
  MASTER=""
  PORT=""
}

stop_nginx() {
  [ -n "$MASTER" ] || return 0
  local kids
  kids="$(ps -o pid= --ppid "$MASTER" 2>/dev/null | tr '\n' ' ')"
  kill -QUIT "$MASTER" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$MASTER" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$MASTER" 2>/dev/null; then
    echo "# nginx did not stop on SIGQUIT; SIGKILL" >&2
    kids="$kids $(ps -o pid= --ppid "$MASTER" 2>/dev/null | tr '\n' ' ')"
    kill -KILL "$MASTER" 2>/dev/null
  fi
  for k in $kids; do kill -KILL "$k" 2>/dev/null; done
  wait "$MASTER" 2>/dev/null
  MASTER=""
}

rand_port() {
  local lo=$1 hi=$2
  case ${ZKV_PORTS:-} in
    [0-9]*-[0-9]*) lo=${ZKV_PORTS%-*}; hi=${ZKV_PORTS#*-} ;;
  esac
  echo $((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
}

# a port nobody listens on (re-tried by ngx_start if nginx then fails to bind it)
pick_port() {
  local p
  for _ in $(seq 1 100); do
    p=$(rand_port 20000 59999)
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

ngx_start() {
  local write="$1" ready="$2"
  for _attempt in 1 2 3; do
    PORT="$(pick_port)" || return 1
    "$write" "$PORT"
    : >"$T/logs/error.log"
    "$NGINX" -p "$T" -c "$T/nginx.conf" -e "$T/logs/error.log" >"$T/logs/stdout.log" 2>&1 &
    MASTER=$!
    for _ in $(seq 1 100); do
      kill -0 "$MASTER" 2>/dev/null || break
      if "$ready" "$PORT"; then return 0; fi
      sleep 0.1
    done
    if grep -q "Address already in use" "$T/logs/error.log"; then stop_nginx; continue; fi
    return 1
  done
  return 1
}
