#!/usr/bin/env bash
# spec/docs/nginx_block.sh lua CHUNK NAME
#     run a chain of documentation blocks (spec/docs/doccheck.lua) as the content handler
#     of a real nginx with 2 workers (LuaJIT module of build/luajit): GET /t must answer
#     200, and the error log must hold no error.
# spec/docs/nginx_block.sh conf FILE NAME PATH...
#     run the http{} contents of a documentation block (FILE: its `listen` lines get a free
#     port of 127.0.0.1) and GET each PATH: each must answer 2xx, with no error logged.
# Segments go to a private ZELTKV_SHM_DIR. Prints the error log on failure.
set -u
mode=$1; file=$2; name=$3; shift 3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
# shellcheck source=spec/nginx/lib.sh
. "$ROOT/spec/nginx/lib.sh"
[ -x "$NGINX" ] || { echo "$name: nginx is not installed"; exit 1; }
ngx_prefix zeltkv-docs
trap 'stop_nginx; rm -rf "$T"' EXIT
export ZELTKV_SHM_DIR="$T/shm"
# the block keeps its page's name, so that an error names page:line
BLOCK="$T/src/${name%:*}"
mkdir -p "$(dirname "$BLOCK")" && cp "$file" "$BLOCK" && chmod -R a+rX "$T/src"

write_conf() {
  local port=$1 body
  if [ "$mode" = lua ]; then
    body="  server {
    listen 127.0.0.1:$port;
    location = /t { default_type text/plain; content_by_lua_file $BLOCK; }
  }"
  else
    body="$(sed -E "s/^([[:space:]]*)listen[[:space:]]+[^;]*;/\1listen 127.0.0.1:$port;/" "$BLOCK")"
  fi
  cat >"$T/nginx.conf" <<CONF
include /etc/nginx/modules-enabled/*.conf;
daemon off;
master_process on;
worker_processes 2;
$USER_LINE
pid $T/run/nginx.pid;
error_log $T/logs/error.log notice;
env ZELTKV_SHM_DIR;
events { worker_connections 64; }
http {
$NGX_HTTP_COMMON
$body
}
CONF
}
# up once the port accepts (asking a path would log a 404 on a block's own server)
ready() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! ngx_start write_conf ready; then
  echo "$name: nginx did not start"; cat "$T/logs/error.log" "$T/logs/stdout.log" 2>/dev/null; exit 1
fi
rc=0
paths=("$@"); [ "$mode" = lua ] && paths=(/t)
for p in "${paths[@]}"; do
  code=$(curl -s -m 10 -o "$T/body" -w '%{http_code}' "http://127.0.0.1:$PORT$p")
  case "$code" in
    2??) ;;
    *) echo "$name: GET $p answered $code"; cat "$T/body"; rc=1 ;;
  esac
done
stop_nginx
if grep -E '\[(error|crit|alert|emerg)\]' "$T/logs/error.log"; then rc=1; fi
[ $rc -eq 0 ] || { echo "--- error.log"; tail -n 30 "$T/logs/error.log"; }
exit $rc
