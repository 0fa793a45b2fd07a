#!/usr/bin/env bash
# examples/openresty/run.sh [PORT]: run the OpenResty example (examples/openresty/nginx.conf)
# in the foreground on 127.0.0.1:PORT (default 8080): a per-client rate limiter and a cache
# of table values, shared by nginx's 2 workers through zeltkv.  Ctrl-C stops it.
#
# Builds zeltkv for LuaJIT when needed and installs lua-cjson when missing (apt-get).
# Runtime files (pid, temp dirs, the config with the port substituted) go to
# build/openresty/.  The stores are named shared-memory segments (in $ZELTKV_SHM_DIR,
# default /dev/shm): counters and cached entries survive a restart.
set -eu
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORT="${1:-8080}"
case "$PORT" in (*[!0-9]*|'') echo "usage: $0 [PORT]" >&2; exit 2 ;; esac
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
cd "$ROOT"

if [ ! -x "$NGINX" ] || [ ! -e /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
  echo "needs Debian's nginx and libnginx-mod-http-lua: apt-get install nginx libnginx-mod-http-lua" >&2
  exit 1
fi
if [ ! -e /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] && ! dpkg -s lua-cjson >/dev/null 2>&1; then
  echo "# installing lua-cjson (apt-get install -y lua-cjson)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua-cjson >/dev/null
fi
make --no-print-directory LUA_VERSION=jit all >/dev/null

mkdir -p build/openresty
sed -e "s/listen 127\.0\.0\.1:8080;/listen 127.0.0.1:$PORT;/" -e "s#127\.0\.0\.1:8080/#127.0.0.1:$PORT/#g" \
  examples/openresty/nginx.conf > build/openresty/nginx.conf
echo "# zeltkv OpenResty example on http://127.0.0.1:$PORT/ (Ctrl-C stops it)" >&2
echo "#   curl -i http://127.0.0.1:$PORT/users/7     curl -i http://127.0.0.1:$PORT/api/ping" >&2
exec "$NGINX" -p "$ROOT" -e stderr -c build/openresty/nginx.conf
