#!/usr/bin/env bash
# bench/redis-nginx.sh URL: the redis driver inside nginx (1 worker, cosockets) against a
# bare cosocket client doing the same commands on the same server, in one run.
# Each figure is the median over requests that each run CHUNK operations in their handler
# (timed with clock_gettime: wall time, and the worker's CPU time, which a busy machine
# stretches much less), the sides in turns (kept, pooled, driver, then the reverse), and
# each ratio the median of the ratios within one turn: a burst of load on the shared
# machine falls on all three sides of a turn.  Two bare clients:
#   kept     one cosocket for the whole request, the commands written out by hand
#   pooled   per operation: ngx.socket.tcp, settimeouts, connect (from nginx's pool), the
#            command, setkeepalive (the driver takes a connection from the pool per call
#            too, but reconnects one cosocket object per coroutine: no new object, no
#            settimeouts)
#   reused   one cosocket object for the request, per operation connect (from nginx's
#            pool), getreusedtimes, the command, setkeepalive: what the driver has to do
#            per call at the least, so "reused/kept" is the floor of the driver's /kept
# The worker's CPU is printed for kept, reused and the driver.  Then, without I/O: nginx's
# pool alone per call (the reused client's setkeepalive, connect from the pool and
# getreusedtimes on a connection that stays idle; strace shows the same sendto, recvfrom
# and epoll_wait per call for kept, reused and the driver: the pool costs no syscall, only
# CPU), and the driver's own Lua per call over a fake cosocket that answers at once.
# Then one call per request, as most requests make: the driver (a pooled connection)
# against a new connection per request, which is what keeping a connection for the whole
# request would cost it, since nginx closes a request's cosockets when its handler ends.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
URL=${1:?usage: bench/redis-nginx.sh redis://127.0.0.1:PORT}
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
N=${REDIS_BENCH_N:-20000}
HOST=$(echo "$URL" | sed -n 's|^redis://\([^:/]*\):\([0-9]*\).*|\1|p')
RPORT=$(echo "$URL" | sed -n 's|^redis://\([^:/]*\):\([0-9]*\).*|\2|p')

# shellcheck source=spec/nginx/lib.sh
. "$ROOT/spec/nginx/lib.sh"
ngx_prefix zeltkv-redis-nginx-bench
trap 'stop_nginx; rm -rf "$T"' EXIT

write_conf() {
  cat > "$T/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
include /etc/nginx/modules-enabled/*.conf;
$USER_LINE
pid $T/run/nginx.pid;
error_log $T/logs/error.log warn;
events { worker_connections 1024; }
http {
$NGX_HTTP_COMMON
  init_by_lua_block {
    zeltkv = require("zeltkv")
    kv = zeltkv.redis({ url = "$URL", prefix = "nbench" })
    local bare = require("redis_bare").ops("nbench")      -- bench/redis_bare.lua
    BARE = bare
    local function ops(kv)
      local s = kv:namespace("b")
      return {
        get = function() return s:get("k") end,
        set = function() return s:set("k", "hello") end,
        incr_ttl = function() return s:incr("c", 1, 60) end,
        setnx_ttl = function() return s:setnx("l", 1, 30) end,
        atomic_rmw = function() return kv:atomic(function() s:set("rmw", (s:get("rmw") or 0) + 1) end) end,
      }
    end
    DRV = ops(kv)
    -- a driver of its own for /fake: its idle cosocket objects are fakes, and none of
    -- them may ever serve DRV
    FAKE_DRV = ops(zeltkv.redis({ url = "$URL", prefix = "nbench" }))
    -- a monotonic clock in nanoseconds (ngx.now() counts milliseconds only)
    local ffi = require("ffi")
    ffi.cdef("typedef struct { long tv_sec; long tv_nsec; } zkv_bench_ts; int clock_gettime(int, zkv_bench_ts *);")
    local ts = ffi.new("zkv_bench_ts")
    function NOW_NS()
      ffi.C.clock_gettime(1, ts)                          -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
    end
    function CPU_NS()
      ffi.C.clock_gettime(3, ts)                          -- CLOCK_THREAD_CPUTIME_ID
      return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
    end
    function CONNECT()
      local c = ngx.socket.tcp()
      c:settimeouts(1000, 1000, 1000)
      assert(c:connect("$HOST", $RPORT, { pool = "bare" }))
      return c
    end
  }
  server {
    listen 127.0.0.1:$1;
    location = /pool {
      content_by_lua_block {
        local n = tonumber(ngx.var.arg_n)
        local c, popts = CONNECT(), { pool = "bare" }
        local t0 = CPU_NS()
        for _ = 1, n do
          c:setkeepalive(60000, 32); assert(c:connect("$HOST", $RPORT, popts)); c:getreusedtimes()
        end
        local dt = (CPU_NS() - t0) / n
        c:setkeepalive(60000, 32)
        ngx.say(string.format("%.0f", dt))
      }
    }
    location = /fake {
      content_by_lua_block {
        -- the driver over a cosocket object that answers each command at once from
        -- memory: connect, send, receiveany and setkeepalive are Lua, nothing in C
        local op, n = ngx.var.arg_op, tonumber(ngx.var.arg_n)
        local reply = ({ get = "\$5\r\nhello\r\n", set = "+OK\r\n", setnx_ttl = "\$-1\r\n",
          incr_ttl = "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n\$-1\r\n:123\r\n" })[op]
        FAKE_REPLY = reply          -- (a recycled request may find an older fake in its slot)
        local F = {}
        F.__index = F
        function F.connect() return 1 end
        function F.getreusedtimes() return 1 end
        function F.settimeouts() end
        function F.setkeepalive() return 1 end
        function F.close() return 1 end
        function F.send(self, p) self.out = FAKE_REPLY; return #p end
        function F.receiveany(self) local r = self.out; self.out = ""; return r end
        local real = ngx.socket.tcp
        ngx.socket.tcp = function() return setmetatable({ out = "" }, F) end
        local f = FAKE_DRV[op]
        local ok, err = pcall(function()
          for _ = 1, 200 do f() end
          local t0 = CPU_NS()
          for _ = 1, n do f() end
          return (CPU_NS() - t0) / n
        end)
        ngx.socket.tcp = real
        ngx.say(ok and string.format("%.0f", err) or ("failed: " .. tostring(err)))
      }
    }
    location = /ping { content_by_lua_block { ngx.say("pong") } }
    location = /one {
      content_by_lua_block {
        local side = ngx.var.arg_side
        local t0, c0 = NOW_NS(), CPU_NS()
        if side == "drv" then
          DRV.get()
        else                                  -- a new connection, closed when the request ends
          local c = ngx.socket.tcp()
          c:settimeouts(1000, 1000, 1000)
          assert(c:connect("$HOST", $RPORT))
          BARE.get(c)
          c:close()
        end
        ngx.say(string.format("%.0f %.0f", NOW_NS() - t0, CPU_NS() - c0))
      }
    }
    location = /run {
      content_by_lua_block {
        local op, n, side = ngx.var.arg_op, tonumber(ngx.var.arg_n), ngx.var.arg_side
        local t0, c0 = NOW_NS(), CPU_NS()
        if side == "drv" then
          local f = DRV[op]
          for _ = 1, n do f() end
        elseif side == "kept" then
          local f, c = BARE[op], CONNECT()
          for _ = 1, n do f(c) end
          c:setkeepalive(60000, 32)
        elseif side == "reused" then
          local f, c, popts = BARE[op], CONNECT(), { pool = "bare" }
          c:setkeepalive(60000, 32)
          for _ = 1, n do
            assert(c:connect("$HOST", $RPORT, popts)); c:getreusedtimes()
            f(c); c:setkeepalive(60000, 32)
          end
        else
          local f = BARE[op]
          for _ = 1, n do local c = CONNECT(); f(c); c:setkeepalive(60000, 32) end
        end
        ngx.say(string.format("%.0f %.0f", (NOW_NS() - t0) / n, (CPU_NS() - c0) / n))
      }
    }
  }
}
EOF
}
ready() { [ "$(curl -s -m 2 "http://127.0.0.1:$1/ping")" = pong ]; }
ngx_start write_conf ready || { echo "nginx did not start: skipped"; cat "$T/logs/error.log"; exit 0; }
U="http://127.0.0.1:$PORT"

CHUNK=500
TURNS=$(( N / CHUNK )); [ "$TURNS" -ge 8 ] || TURNS=8
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "inside nginx (1 worker, LuaJIT, cosockets), $URL, $TURNS turns of $CHUNK ops per request, medians:"
printf '  %-20s %9s %9s %9s %9s %7s %7s %7s %8s %8s %8s %7s %7s\n' operation "kept ns" "pooled ns" "reused ns" "driver ns" \
  "/kept" "/pooled" "reu/kept" "kept cpu" "reu cpu" "drv cpu" "reu/kept" "cpu/kept"
for op in get set incr_ttl setnx_ttl atomic_rmw; do
  for s in kept pooled reused drv; do curl -s -m 60 "$U/run?op=$op&n=200&side=$s" >/dev/null; done   # warm up
  : > "$T/k"; : > "$T/p"; : > "$T/u"; : > "$T/d"; : > "$T/rk"; : > "$T/rp"; : > "$T/ru"; : > "$T/ck"; : > "$T/cd"
  : > "$T/rc"; : > "$T/cu"; : > "$T/ruc"
  for i in $(seq 1 "$TURNS"); do
    if [ $((i % 2)) = 1 ]; then order="kept pooled reused drv"; else order="drv reused pooled kept"; fi
    for s in $order; do
      v=$(curl -s -m 120 "$U/run?op=$op&n=$CHUNK&side=$s")
      case $s in kept) k=${v% *}; kc=${v#* } ;; pooled) p=${v% *} ;; reused) u=${v% *}; uc=${v#* } ;;
        drv) d=${v% *}; dc=${v#* } ;; esac
    done
    echo "$k" >> "$T/k"; echo "$p" >> "$T/p"; echo "$u" >> "$T/u"; echo "$d" >> "$T/d"; echo "$kc" >> "$T/ck"
    echo "$dc" >> "$T/cd"; echo "$uc" >> "$T/cu"
    awk -v a="$uc" -v b="$kc" 'BEGIN { print a / b }' >> "$T/ruc"
    awk -v a="$d" -v b="$k" 'BEGIN { print a / b }' >> "$T/rk"
    awk -v a="$d" -v b="$p" 'BEGIN { print a / b }' >> "$T/rp"
    awk -v a="$u" -v b="$k" 'BEGIN { print a / b }' >> "$T/ru"
    awk -v a="$dc" -v b="$kc" 'BEGIN { print a / b }' >> "$T/rc"
  done
  printf '  %-20s %9.0f %9.0f %9.0f %9.0f %6.2fx %6.2fx %7.2fx %8.0f %8.0f %8.0f %6.2fx %6.2fx\n' "$op" \
    "$(median < "$T/k")" "$(median < "$T/p")" "$(median < "$T/u")" "$(median < "$T/d")" "$(median < "$T/rk")" \
    "$(median < "$T/rp")" "$(median < "$T/ru")" "$(median < "$T/ck")" "$(median < "$T/cu")" "$(median < "$T/cd")" \
    "$(median < "$T/ruc")" "$(median < "$T/rc")"
done
# without I/O, medians of 9 requests of 20,000 calls: nginx's pool alone, the driver's own Lua
: > "$T/pool"
for _ in $(seq 1 9); do curl -s -m 60 "$U/pool?n=20000" >> "$T/pool"; done
line="no I/O, worker CPU per call (medians of 9 x 20,000): nginx's pool (setkeepalive, connect from the pool, getreusedtimes) $(median < "$T/pool") ns; the driver's Lua over a fake cosocket:"
for op in get set incr_ttl setnx_ttl; do
  : > "$T/fk"
  for _ in $(seq 1 9); do curl -s -m 60 "$U/fake?op=$op&n=20000" >> "$T/fk"; done
  line="$line $op $(median < "$T/fk")"
done
echo "$line ns"
# one get per request: the driver against a new connection per request (the request's own
# time in its handler; the new connection's close and the server's accept come on top)
ONE=$((TURNS * 5))
: > "$T/od"; : > "$T/of"; : > "$T/odc"; : > "$T/ofc"
for s in drv fresh; do curl -s -m 10 "$U/one?side=$s" >/dev/null; done
for i in $(seq 1 "$ONE"); do
  if [ $((i % 2)) = 1 ]; then order="drv fresh"; else order="fresh drv"; fi
  for s in $order; do
    v=$(curl -s -m 10 "$U/one?side=$s")
    case $s in drv) echo "${v% *}" >> "$T/od"; echo "${v#* }" >> "$T/odc" ;; *) echo "${v% *}" >> "$T/of"; echo "${v#* }" >> "$T/ofc" ;; esac
  done
done
echo "one get per request ($ONE requests each, medians): the driver (pooled connection) $(median < "$T/od") ns" \
  "($(median < "$T/odc") ns cpu), a new connection per request $(median < "$T/of") ns ($(median < "$T/ofc") ns cpu)"
if grep -q "\[error\]" "$T/logs/error.log"; then grep -m 5 "\[error\]" "$T/logs/error.log"; fi
