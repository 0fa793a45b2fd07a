#!/usr/bin/env bash
# spec/redis/nginx.sh: the redis driver inside a real nginx (cosockets), against the
# servers of spec/redis/run.sh (ZELTKV_REDIS_TCP, _TLS, _CA, _CLUSTER).  One worker, so
# that every concurrent request shares it and its one module-level driver:
#   a  the driver made in init_by_lua; a blocking call there works (LuaSocket, init only)
#   b  16 concurrent requests x 100 atomic read-modify-writes of one key, each fn
#      yielding inside (ngx.sleep): exact; transactions of concurrent requests never mix
#   c  16 concurrent requests x 300 incr: exact
#   d  a call in log_by_lua (no cosockets) fails with reason "phase", none blocks
#   e  the same driver works from a timer (ngx.timer.at)
#   f  a server that does not answer: the request fails within timeout, and meanwhile
#      the same worker serves other requests (the worker is not blocked)
#   g  TLS with a password through the cosocket's TLS handshake
#   l  a second driver whose wrong password has the right one's crc16 gets no connection
#      the right one authenticated: each password has a pool of its own
#   m  a driver that verifies the TLS certificate gets no connection whose handshake one
#      that does not verify made (a server name the certificate does not hold)
#   h  a 3-node cluster from nginx (MOVED, slot map per worker)
#   i  store:shdict() on a redis store: get/set/incr/add as on ngx.shared.DICT
#   k  the driver in server_rewrite_by_lua (a phase with cosockets) works
#   j  light threads of one request (4 doing incr, 1 doing atomic read-modify-writes that
#      yield inside fn, and the entry thread): exact totals, no thread fails (each
#      coroutine reconnects its own cosocket object, never another's), and the 1,250
#      calls open only a few new server connections (each goes back to nginx's pool)
# Prints one line per check and last "redis nginx: N passed, N failed".
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"

pass=0; fail=0
ok()   { pass=$((pass+1)); echo "ok   $*"; }
bad()  { fail=$((fail+1)); echo "FAIL $*"; }
summary() { echo "redis nginx: $pass passed, $fail failed"; }

# shellcheck source=spec/nginx/lib.sh
. "$ROOT/spec/nginx/lib.sh"
if [ ! -x "$NGINX" ] || [ ! -e /etc/nginx/modules-enabled/50-mod-http-lua.conf ]; then
  bad "prerequisites: nginx with the lua module"; summary; exit 1
fi
[ -n "${ZELTKV_REDIS_TCP:-}" ] || { bad "prerequisites: ZELTKV_REDIS_TCP (spec/redis/run.sh)"; summary; exit 1; }

ngx_prefix zeltkv-redis-nginx
# a private server that will stop answering (check f)
for _ in $(seq 1 50); do            # below the ephemeral ports (32768+)
  SLOW_PORT=$(rand_port 23000 31999)
  (exec 3<>"/dev/tcp/127.0.0.1/$SLOW_PORT") 2>/dev/null || break
done
redis-server --port "$SLOW_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --dir "$T" --pidfile "$T/slow.pid" --logfile "$T/slow.log"
for _ in $(seq 1 50); do [ "$(redis-cli -p "$SLOW_PORT" ping 2>/dev/null)" = PONG ] && break; sleep 0.05; done
SLOW_PID=$(cat "$T/slow.pid")
cleanup() {
  stop_nginx
  kill -CONT "$SLOW_PID" 2>/dev/null; kill "$SLOW_PID" 2>/dev/null
  for j in $(jobs -p); do kill "$j" 2>/dev/null; done
  if [ -n "${ZKV_NGX_KEEP:-}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

PREFIX="ngx$RANDOM$RANDOM"
CL_LUA="{}"
if [ -n "${ZELTKV_REDIS_CLUSTER:-}" ]; then CL_LUA="{ \"${ZELTKV_REDIS_CLUSTER//,/\", \"}\" }"; fi
TLS_LINES=""
[ -n "${ZELTKV_REDIS_CA:-}" ] && TLS_LINES="lua_ssl_trusted_certificate ${ZELTKV_REDIS_CA}; lua_ssl_verify_depth 2;"

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
  lua_shared_dict out 1m;
  $TLS_LINES
  init_by_lua_block {
    zeltkv = require("zeltkv")
    kv = zeltkv.redis({ url = "$ZELTKV_REDIS_TCP", prefix = "$PREFIX", lock_timeout = 20 })
    -- init may block: LuaSocket here, cosockets in the workers
    kv:namespace("init"):set("at_init", "yes")
    slow = zeltkv.redis({ url = "redis://127.0.0.1:$SLOW_PORT", prefix = "$PREFIX", timeout = 1 })
    tls = ("${ZELTKV_REDIS_TLS:-}" ~= "") and zeltkv.redis({ url = "${ZELTKV_REDIS_TLS:-}", prefix = "$PREFIX", tls = { server_name = "localhost" } }) or nil
    cl = (#$CL_LUA > 0) and zeltkv.redis({ cluster = $CL_LUA, prefix = "$PREFIX" }) or nil
    -- check m: the same server and name, with and without verifying the certificate
    if tls then
      tls_noverify = zeltkv.redis({ url = "${ZELTKV_REDIS_TLS:-}", prefix = "$PREFIX", tls = { server_name = "wrong.example", verify = false } })
      tls_verify = zeltkv.redis({ url = "${ZELTKV_REDIS_TLS:-}", prefix = "$PREFIX", tls = { server_name = "wrong.example" } })
    end
    -- check l: a wrong password with the same crc16 as the TLS server's
    local pw = "${ZELTKV_REDIS_TLS_PASSWORD:-}"
    if tls and pw ~= "" then
      local crc16, want = require("zeltkv.slot").crc16, nil
      want = crc16(pw)
      for i = 1, 1000000 do
        local cand = "wrong" .. i
        if cand ~= pw and crc16(cand) == want then
          local url = ("${ZELTKV_REDIS_TLS:-}"):gsub("^rediss://:[^@]*@", "rediss://:" .. cand .. "@")
          tls_twin = zeltkv.redis({ url = url, prefix = "$PREFIX", tls = { server_name = "localhost" } })
          break
        end
      end
    end
  }
  server {
    listen 127.0.0.1:$1;
    server_rewrite_by_lua_block {
      if ngx.var.uri == "/srw" then   -- check k: the server-rewrite phase has cosockets
        local s = kv:namespace("nginx")
        local ok, err = pcall(s.incr, s, "srw")
        ngx.ctx.srw = ok and ("ok " .. tostring(err)) or ((err.reason or "?") .. " " .. tostring(err.message))
      end
    }
    location = /srw { content_by_lua_block { ngx.say(ngx.ctx.srw) } }
    location = /ping { content_by_lua_block { ngx.say("pong") } }
    location = /init { content_by_lua_block { ngx.say(kv:namespace("init"):get("at_init")) } }
    location = /rmw {
      content_by_lua_block {
        local s = kv:namespace("nginx")
        for _ = 1, 100 do
          kv:atomic(function()
            local v = s:get("rmw") or 0
            ngx.sleep(0.001)                 -- let the other requests run inside fn
            s:set("rmw", v + 1)
          end)
        end
        ngx.say("done")
      }
    }
    location = /incr {
      content_by_lua_block {
        local s = kv:namespace("nginx")
        for _ = 1, 300 do s:incr("plain") end
        ngx.say("done")
      }
    }
    location = /get { content_by_lua_block { ngx.say(tostring(kv:namespace("nginx"):get(ngx.var.arg_k))) } }
    location = /logphase {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block {
        local ok, err = pcall(kv:namespace("nginx").get, kv:namespace("nginx"), "rmw")
        ngx.shared.out:set("log", (ok and "succeeded" or (err.reason or "?")) .. " " .. tostring(err and err.message or ""))
      }
    }
    location = /logresult { content_by_lua_block { ngx.say(ngx.shared.out:get("log")) } }
    location = /timer {
      content_by_lua_block {
        ngx.timer.at(0, function()
          local ok, err = pcall(function() return kv:namespace("nginx"):incr("timer", 1, 60) end)
          ngx.shared.out:set("timer", ok and "ok " .. err or tostring(err))
        end)
        ngx.sleep(0.3)
        ngx.say(ngx.shared.out:get("timer"))
      }
    }
    location = /slow {
      content_by_lua_block {
        local t0 = ngx.now()
        local ok, err = pcall(slow.namespace(slow, "s").get, slow:namespace("s"), "k")
        ngx.update_time()
        ngx.say(ok and "answered" or err.reason, " ", string.format("%.2f", ngx.now() - t0))
      }
    }
    location = /tls {
      content_by_lua_block {
        if not tls then return ngx.say("no tls server") end
        local s = tls:namespace("tls")
        s:set("k", { over = "tls" })
        ngx.say(s:get("k").over, " ", s:incr("n"))
      }
    }
    location = /twin {
      content_by_lua_block {
        if not tls_twin then return ngx.say("no tls server") end
        tls:namespace("tls"):set("twin", "secret")   -- a connection authenticated, pooled
        local t = tls_twin:namespace("tls")
        local ok, err = pcall(t.get, t, "twin")
        if ok then return ngx.say("read ", tostring(err)) end
        ngx.say("refused ", tostring(type(err) == "table" and err.code or err))
      }
    }
    location = /verify {
      content_by_lua_block {
        if not tls_verify then return ngx.say("no tls server") end
        local a, b = tls_noverify:namespace("tls"), tls_verify:namespace("tls")
        a:set("v", "unverified")                       -- pooled, made without verifying
        local ok, err = pcall(b.get, b, "v")
        if ok then return ngx.say("read ", tostring(err)) end
        ngx.say("refused ", tostring(type(err) == "table" and err.code or err))
      }
    }
    location = /cluster {
      content_by_lua_block {
        if not cl then return ngx.say("no cluster") end
        local n = 0
        for i = 1, 30 do n = n + cl:namespace("root" .. i):incr("k") end
        cl:atomic(function() local s = cl:namespace("root1") s:set("k", s:get("k") + 100) end)
        ngx.say(n, " ", cl:namespace("root1"):get("k"))
      }
    }
    location = /threads {
      content_by_lua_block {
        local s = kv:namespace("threads")
        local function incrs() for _ = 1, 200 do s:incr("n") end end
        local function rmws()
          for _ = 1, 50 do
            kv:atomic(function() local v = s:get("rmw") or 0; ngx.sleep(0.001); s:set("rmw", v + 1) end)
            s:incr("after")                  -- a plain call of the same coroutine between atomics
          end
        end
        local th = {}
        for _ = 1, 4 do th[#th + 1] = ngx.thread.spawn(incrs) end
        th[#th + 1] = ngx.thread.spawn(rmws)
        incrs()
        local failed = 0
        for _, t in ipairs(th) do
          local ok, err = ngx.thread.wait(t)
          if not ok then failed = failed + 1; ngx.log(ngx.ERR, "light thread: ", tostring(err)) end
        end
        ngx.say(failed, " ", s:get("n"), " ", s:get("rmw"), " ", s:get("after"))
      }
    }
    location = /shdict {
      content_by_lua_block {
        local d = kv:namespace("dict"):shdict()
        local r = {}
        r[#r + 1] = tostring(d:set("a", "x", 10))
        r[#r + 1] = tostring(d:get("a"))
        r[#r + 1] = tostring(d:incr("n", 5, 0))
        r[#r + 1] = tostring(d:add("a", "y"))
        ngx.say(table.concat(r, " "))
      }
    }
  }
}
EOF
}
ready() { [ "$(curl -s -m 2 "http://127.0.0.1:$1/ping")" = pong ]; }
if ! ngx_start write_conf ready; then
  bad "nginx starts"; cat "$T/logs/error.log"; summary; exit 1
fi
U="http://127.0.0.1:$PORT"

# a
[ "$(curl -s -m 5 "$U/init")" = yes ] && ok "a: the driver of init_by_lua (a blocking call there) serves the worker" \
  || bad "a: init_by_lua driver: $(curl -s -m 5 "$U/init")"

# b, c: concurrent requests on one worker
kids=()
for i in $(seq 1 16); do curl -s -m 60 "$U/rmw" > "$T/rmw.$i" & kids+=($!); done
for i in $(seq 1 16); do curl -s -m 60 "$U/incr" > "$T/incr.$i" & kids+=($!); done
wait "${kids[@]}"        # (nginx is a job of this shell too)
n_rmw=$(curl -s -m 5 "$U/get?k=rmw"); n_incr=$(curl -s -m 5 "$U/get?k=plain")
done_rmw=$(cat "$T"/rmw.* | grep -c done); done_incr=$(cat "$T"/incr.* | grep -c done)
[ "$n_rmw" = 1600 ] && [ "$done_rmw" = 16 ] \
  && ok "b: 16 concurrent requests x 100 atomic RMW (yielding inside fn) on one driver: $n_rmw" \
  || bad "b: atomic RMW total $n_rmw (want 1600), $done_rmw/16 requests done; $(grep -m3 error "$T/logs/error.log")"
[ "$n_incr" = 4800 ] && [ "$done_incr" = 16 ] && ok "c: 16 concurrent requests x 300 incr: $n_incr" \
  || bad "c: incr total $n_incr (want 4800)"

# d
curl -s -m 5 "$U/logphase" >/dev/null; sleep 0.2
r=$(curl -s -m 5 "$U/logresult")
case $r in phase*) ok "d: a call in log_by_lua fails clearly: $r" ;; *) bad "d: log phase gave: $r" ;; esac

# k
r=$(curl -s -m 5 "$U/srw")
case $r in "ok 1") ok "k: the driver works in server_rewrite_by_lua ($r)" ;; *) bad "k: server_rewrite: $r" ;; esac

# e
r=$(curl -s -m 5 "$U/timer")
case $r in "ok "*) ok "e: the driver works from a timer ($r)" ;; *) bad "e: timer: $r" ;; esac

# f: a paused server; the worker keeps serving
kill -STOP "$SLOW_PID"
curl -s -m 10 "$U/slow" > "$T/slow.out" &
slow_curl=$!
sleep 0.2
t0=$(date +%s%N); pong=$(curl -s -m 5 "$U/ping"); t1=$(date +%s%N)
wait $slow_curl
kill -CONT "$SLOW_PID"
ms=$(( (t1 - t0) / 1000000 ))
slow_out=$(cat "$T/slow.out")
case $slow_out in
  "connection "*) secs=${slow_out#connection }
    if [ "$pong" = pong ] && [ "$ms" -lt 500 ] && awk -v s="$secs" 'BEGIN { exit !(s >= 0.9 && s < 1.6) }'; then
      ok "f: a silent server fails the request after ${secs}s (timeout 1 s); meanwhile /ping answered in ${ms} ms"
    else bad "f: slow: $slow_out, ping $pong in $ms ms"; fi ;;
  *) bad "f: slow request gave: $slow_out" ;;
esac

# g
r=$(curl -s -m 5 "$U/tls")
case $r in "tls "*) ok "g: TLS with a password through cosockets ($r)" ;; "no tls server") ok "g: skipped (no TLS server)" ;; *) bad "g: tls: $r $(grep -m2 -i tls "$T/logs/error.log")" ;; esac

# l
r=$(curl -s -m 5 "$U/twin")
case $r in "refused STORE_OPERATION_FAILED") ok "l: a wrong password with the right one's crc16 is refused ($r)" ;; "no tls server") ok "l: skipped (no TLS server)" ;; *) bad "l: a wrong password with the right one's crc16 gave: $r" ;; esac

# m
r=$(curl -s -m 5 "$U/verify")
case $r in "refused STORE_OPERATION_FAILED") ok "m: a verifying driver takes no connection made without verifying ($r)" ;; "no tls server") ok "m: skipped (no TLS server)" ;; *) bad "m: a verifying driver after one that does not verify gave: $r" ;; esac

# h
r=$(curl -s -m 10 "$U/cluster")
case $r in "30 101") ok "h: a 3-node cluster from nginx ($r)" ;; "no cluster") ok "h: skipped (no cluster)" ;; *) bad "h: cluster: $r" ;; esac

# i
r=$(curl -s -m 5 "$U/shdict")
[ "$r" = "true x 5 false" ] && ok "i: store:shdict() on a redis store ($r)" || bad "i: shdict: $r $(grep -m2 error "$T/logs/error.log")"

# j
conns() { redis-cli -u "$ZELTKV_REDIS_TCP" info stats | tr -d '\r' | sed -n 's/^total_connections_received://p'; }
c0=$(conns)
r=$(curl -s -m 60 "$U/threads")
c1=$(conns)
if [ "$r" = "0 1000 50 50" ] && [ $((c1 - c0)) -le 12 ]; then
  ok "j: light threads of one request: $r, $((c1 - c0)) new server connections for 1,250 calls"
else
  bad "j: light threads gave '$r' (want '0 1000 50 50'), $((c1 - c0)) new connections; $(grep -m3 "light thread" "$T/logs/error.log")"
fi

if grep -q "\[error\]\|\[crit\]\|\[alert\]" "$T/logs/error.log"; then
  echo "# error.log:"; grep "\[error\]\|\[crit\]\|\[alert\]" "$T/logs/error.log" | head -5
fi
redis-cli -u "$ZELTKV_REDIS_TCP" --scan --pattern "$PREFIX*" | xargs -r redis-cli -u "$ZELTKV_REDIS_TCP" unlink >/dev/null
summary
[ $fail -eq 0 ]
