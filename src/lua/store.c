/*
 * store.c -- the public methods of zeltkv.Store and zeltkv.Driver, keys(),
 * and atomic().
 *
 * Hot path (get/set/incr/setnx): self is checked against the class
 * metatable held as an upvalue, keys go to the engine as they lie on the
 * Lua stack, and nothing is allocated on the Lua heap but the result.  Every
 * method checks self, then that its driver is open (check_store /
 * check_driver: a closed driver is "closed" whatever the arguments), then
 * its arguments, and fetches the handle (live_db) last: checking may
 * allocate, and a finalizer may close the driver then.
 */
#define _GNU_SOURCE 1 /* first: clock_gettime */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "binding.h"

/* ---- results ------------------------------------------------------------- */

int push_found(lua_State *L, int rc, const char *what) {
  if (rc < 0) return raise_rc(L, rc, what);
  lua_pushboolean(L, rc == ZKV_OK);
  return 1;
}

int push_count(lua_State *L, int rc, uint64_t n, const char *what) {
  if (rc) return raise_rc(L, rc, what);
  zl_pushinteger(L, n);
  return 1;
}

/* ---- namespaces ------------------------------------------------------------ */

/* A store's user value is { driver, parent store or false, name }: it keeps
 * the driver alive and lets the namespace be found again (reresolve). */
Store *new_store(lua_State *L, int drv_idx, int parent_idx, int name_idx, Driver *d,
                 zkv_ns ns) {
  Store *s = (Store *)lua_newuserdatauv(L, sizeof(Store), 1);
  s->drv = d;
  s->ns = ns;
  luaL_getmetatable(L, STORE_MT);
  lua_setmetatable(L, -2);
  lua_createtable(L, 3, 0);
  lua_pushvalue(L, drv_idx);
  lua_rawseti(L, -2, 1);
  if (parent_idx) lua_pushvalue(L, parent_idx);
  else lua_pushboolean(L, 0);
  lua_rawseti(L, -2, 2);
  lua_pushvalue(L, name_idx);
  lua_rawseti(L, -2, 3);
  zl_setuservalue(L, -2);
  return s;
}

int reresolve(lua_State *L, int si, Store *s) {
  int rc;
  zkv_ns parent = ZKV_ROOT;
  if (!s->drv->db) return ZKV_ECLOSED;
  luaL_checkstack(L, 4, "namespace too deep");
  zl_getuservalue(L, si);
  int t = lua_gettop(L);
  lua_rawgeti(L, t, 2);
  if (lua_type(L, -1) == LUA_TUSERDATA) {
    Store *p = (Store *)lua_touserdata(L, -1);
    rc = reresolve(L, lua_gettop(L), p);
    if (rc) { lua_settop(L, t - 1); return rc; }
    parent = p->ns;
  }
  lua_rawgeti(L, t, 3);
  size_t len;
  const char *name = lua_tolstring(L, -1, &len);
  rc = zkv_namespace(s->drv->db, parent, name, len, &s->ns);
  lua_settop(L, t - 1);
  return rc;
}

/* ---- Store methods ---------------------------------------------------------- */

static int store_get(lua_State *L) {
  KEY_ARGS_GET(L);
  zkv_db *db = live_db(L, s->drv);
  zkv_value v;
  int rc;
  CALL(rc, zkv_get(db, s->ns, k, kl, &v));
  if (LIKELY_(rc == ZKV_OK)) return push_value(L, &v);
  if (rc == ZKV_NOTFOUND) {
    lua_pushnil(L);
    return 1;
  }
  return raise_rc(L, rc, "get");
}

static int store_set_impl(lua_State *L, unsigned flags, const char *what) {
  KEY_ARGS(L);
  zkv_value v;
  to_value(L, s->drv, 3, &v);
  int64_t ttl = opt_ttl(L, 4, 0);   /* allocates only to raise */
  zkv_db *db = live_db(L, s->drv);
  int rc;
  CALL(rc, zkv_set_ex(db, s->ns, k, kl, &v, ttl, flags, NULL));   /* zkv_set, one call less */
  if (LIKELY_(rc == ZKV_OK || rc == ZKV_EXISTS)) {
    lua_pushboolean(L, rc == ZKV_OK);
    return 1;
  }
  return raise_rc(L, rc, what);
}

static int store_set(lua_State *L) { return store_set_impl(L, 0, "set"); }
static int store_setnx(lua_State *L) { return store_set_impl(L, ZKV_SET_NX, "setnx"); }

/* s:del(key), s:has(key): true when the key was there */
static int store_found_op(lua_State *L, int (*op)(zkv_db *, zkv_ns, const void *, size_t),
                          const char *what) {
  KEY_ARGS(L);
  zkv_db *db = live_db(L, s->drv);
  int rc;
  CALL(rc, op(db, s->ns, k, kl));
  return push_found(L, rc, what);
}

static int store_del(lua_State *L) { return store_found_op(L, zkv_del, "del"); }
static int store_has(lua_State *L) { return store_found_op(L, zkv_has, "has"); }

static int store_expire(lua_State *L) {
  KEY_ARGS(L);
  int64_t ttl = opt_ttl(L, 3, 1);
  zkv_db *db = live_db(L, s->drv);
  int rc;
  CALL(rc, zkv_expire(db, s->ns, k, kl, ttl));
  return push_found(L, rc, "expire");
}

/* s:ttl(key), and with ZKV_TTL_COARSE the drop-in's s:_ttl_coarse(key) */
int store_ttl_flags(lua_State *L, unsigned flags) {
  KEY_ARGS(L);
  zkv_db *db = live_db(L, s->drv);
  int64_t left;
  int rc;
  CALL(rc, zkv_ttl_ex(db, s->ns, k, kl, flags, &left));
  if (rc < 0) return raise_rc(L, rc, "ttl");
  if (rc == ZKV_NOTFOUND) lua_pushnil(L);
  else if (left < 0) lua_pushnumber(L, HUGE_VAL);
  else lua_pushnumber(L, (lua_Number)left / 1000.0);
  return 1;
}

static int store_ttl(lua_State *L) { return store_ttl_flags(L, 0); }

static int store_incr(lua_State *L) {
  KEY_ARGS(L);
  int64_t by = 1;
  int t = lua_type(L, 3);
  if (t == LUA_TNUMBER) {
    if (!num_to_int64(L, 3, &by)) return lraise(L, C_VALUE, "incr: by must be an integer");
    if (ZKV_INT_LIMIT && (by > ZKV_INT_LIMIT || by < -ZKV_INT_LIMIT))
      return lraise(L, C_VALUE, "incr: by is beyond 2^53");
  } else if (t != LUA_TNONE && t != LUA_TNIL) {
    return lraise(L, C_VALUE, "incr: by must be an integer, got %s", luaL_typename(L, 3));
  }
  int64_t ttl = opt_ttl(L, 4, 0);
  zkv_db *db = live_db(L, s->drv);
  int64_t res;
  int64_t lim = ZKV_INT_LIMIT;
  int rc;
  CALL(rc, lim ? zkv_incr_limited(db, s->ns, k, kl, by, ttl, -lim, lim, &res)
               : zkv_incr(db, s->ns, k, kl, by, ttl, &res));
  if (LIKELY_(rc == ZKV_OK)) {
    zl_pushinteger(L, res);
    return 1;
  }
  if (rc == ZKV_ETYPE) return lraise(L, C_VALUE, "incr: the stored value is not an integer");
  if (rc == ZKV_ERANGE) return lraise(L, C_VALUE, "incr: result out of range");
  return raise_rc(L, rc, "incr");
}

static int store_namespace(lua_State *L) {
  Store *s = check_store(L);
  size_t len;
  const char *name = check_ns_name(L, 2, &len);
  zkv_db *db = live_db(L, s->drv);
  zkv_ns ns;
  int rc;
  CALL(rc, zkv_namespace(db, s->ns, name, len, &ns));
  if (rc) return raise_rc(L, rc, "namespace");
  zl_getuservalue(L, 1);
  lua_rawgeti(L, -1, 1);   /* the driver userdata */
  new_store(L, lua_gettop(L), 1, 2, s->drv, ns);
  return 1;
}

/* s:count(), s:clear() */
static int store_count_op(lua_State *L, int (*op)(zkv_db *, zkv_ns, uint64_t *),
                          const char *what) {
  Store *s = check_store(L);
  zkv_db *db = live_db(L, s->drv);
  uint64_t n;
  int rc;
  CALL(rc, op(db, s->ns, &n));
  return push_count(L, rc, n, what);
}

static int store_count(lua_State *L) { return store_count_op(L, zkv_count, "count"); }
static int store_clear(lua_State *L) { return store_count_op(L, zkv_clear, "clear"); }

/* ---- keys(), namespaces() --------------------------------------------------
 * Batches of keys (or child names) are copied out under the lock into a C
 * buffer, then pushed as Lua strings; the lock is never held while Lua runs. */

int collect_key(void *ud, const void *key, size_t klen) {
  KeyBatch *b = ud;
  size_t need = b->len + klen + 4;
  if (UNLIKELY_(need > b->cap) && buf_reserve(&b->buf, &b->cap, need, 4096)) return 1;
  uint32_t l = (uint32_t)klen;
  memcpy(b->buf + b->len, &l, 4);
  memcpy(b->buf + b->len + 4, key, klen);
  b->len += klen + 4;
  b->n++;
  return 0;
}

void push_batch(lua_State *L, const KeyBatch *b, lua_Integer *n) {
  size_t off = 0;
  for (size_t i = 0; i < b->n; i++) {
    uint32_t l;
    memcpy(&l, b->buf + off, 4);
    lua_pushlstring(L, b->buf + off + 4, l);   /* may raise: b->buf has an owner (Owned) */
    lua_rawseti(L, -2, (int)++*n);
    off += 4 + l;
  }
}

/* keys() and namespaces() walk the same way, with one of these */
typedef int (*walk_fn)(zkv_db *, zkv_ns, zkv_cursor *, size_t, zkv_key_fn, void *, size_t *);
static const walk_fn WALKS[] = {zkv_keys, zkv_namespaces};

static int walk_iter(lua_State *L) {
  /* upvalues: 1 store, 2 cursor userdata, 3 batch table, 4 position, 5 batch size,
   * 6 which walk (an index of WALKS) */
  Store *s = (Store *)lua_touserdata(L, lua_upvalueindex(1));
  walk_fn walk = WALKS[lua_tointeger(L, lua_upvalueindex(6))];
  zkv_cursor *cur = (zkv_cursor *)lua_touserdata(L, lua_upvalueindex(2));
  lua_Integer pos = (lua_Integer)lua_tonumber(L, lua_upvalueindex(4));
  lua_Integer n = (lua_Integer)lua_tonumber(L, lua_upvalueindex(5));
  /* every step, not only the ones that read a batch: after close() the rest of a batch
   * read before it, or the end of a walk that fitted in one, is "closed" as well */
  zkv_db *db = live_db(L, s->drv);
  if (pos < n) {
    lua_rawgeti(L, lua_upvalueindex(3), (int)(pos + 1));
    lua_pushnumber(L, (lua_Number)(pos + 1));
    lua_replace(L, lua_upvalueindex(4));
    return 1;
  }
  if (cur->done) return 0;
  Owned *own = owned_push(L);   /* b.buf's, while the keys are pushed */
  KeyBatch b = {NULL, 0, 0, 0};
  size_t got = 0;
  int rc;
  lua_pushvalue(L, lua_upvalueindex(1));   /* the store, for reresolve */
  int si = lua_gettop(L);
  do {
    rc = walk(db, s->ns, cur, KEYS_BATCH, collect_key, &b, &got);
    own->p = b.buf;
    if (rc == ZKV_ESTALE && reresolve(L, si, s) == ZKV_OK) {
      /* made anew: a walk of the new namespace (nothing of it was returned) */
      memset(cur, 0, sizeof *cur);
      rc = walk(db, s->ns, cur, KEYS_BATCH, collect_key, &b, &got);
      own->p = b.buf;
    }
  } while (rc == ZKV_OK && b.n == 0 && !cur->done);
  lua_pop(L, 1);
  if (rc == ZKV_ESTALE) {   /* gone and not made again: an empty namespace */
    cur->done = 1;
    return 0;   /* the owner frees b.buf */
  }
  if (rc) return raise_rc(L, rc, walk == zkv_keys ? "keys" : "namespaces");
  if (!lua_checkstack(L, 4)) return lraise_failed(L, "memory", "stack overflow");
  lua_createtable(L, (int)b.n, 0);
  lua_Integer pushed = 0;
  push_batch(L, &b, &pushed);
  own->p = NULL;
  free(b.buf);
  lua_replace(L, lua_upvalueindex(3));
  lua_pushnumber(L, 0);
  lua_replace(L, lua_upvalueindex(4));
  lua_pushnumber(L, (lua_Number)b.n);
  lua_replace(L, lua_upvalueindex(5));
  if (b.n == 0) return 0;
  return walk_iter(L);
}

/* the iterator of a walk of the store s at 1 */
static int walk_start(lua_State *L, Store *s, int which) {
  live_db(L, s->drv);
  lua_settop(L, 1);
  zkv_cursor *cur = (zkv_cursor *)lua_newuserdatauv(L, sizeof(zkv_cursor), 0);
  memset(cur, 0, sizeof *cur);
  lua_newtable(L);
  lua_pushnumber(L, 0);
  lua_pushnumber(L, 0);
  lua_pushinteger(L, which);
  lua_pushcclosure(L, walk_iter, 6);
  return 1;
}

static int store_walk(lua_State *L, int which) {
  return walk_start(L, check_store(L), which);
}

/* s:keys(): an iterator over the live keys of this namespace */
static int store_keys(lua_State *L) { return store_walk(L, 0); }
/* s:namespaces(): an iterator over the names of its child namespaces */
static int store_namespaces(lua_State *L) { return store_walk(L, 1); }

/* ---- atomic ----------------------------------------------------------------
 * atomic_timeout: while fn runs, a count hook looks at the clock every
 * HOOK_EVERY VM instructions and, past the deadline, raises
 * STORE_OPERATION_FAILED (reason "timeout") inside fn; atomic() then undoes
 * fn's writes and releases the lock as for any error.  What a hook cannot
 * see: time spent inside one C function (a huge string.rep, a clear() of a
 * big namespace), a coroutine fn resumes that was made before atomic()
 * began (hooks are per coroutine), a pcall inside fn that swallows the error
 * (it is raised again at the next check, but fn keeps the lock until it
 * returns), and on LuaJIT a loop the JIT compiled (docs/reference.md).  A hook
 * another tool set (a debugger, a profiler) is left alone: no limit then.
 *
 * A fn that catches the timeout (a pcall around a library call) and returns
 * is still aborted: once the hook has raised, an atomic whose own limit has
 * passed undoes fn's writes and raises the timeout when fn returns, so the
 * writes of a fn that overran are never kept.
 *
 * The clock starts at fn's first hook call (after its first 1000
 * instructions), so that an atomic that ends sooner never reads it.  The
 * limit state is per thread (one Lua state runs in one thread at a time, and
 * atomic() cannot yield, so atomics nest in time); nested atomics are timed
 * from the outermost one's start, with the smallest limit of those running. */

#define HOOK_EVERY 1000

static _Thread_local struct {
  int active;        /* an atomic with a limit is running */
  double secs;       /* the limit */
  int64_t start_ns;  /* when the outermost one's first hook call came; 0: not yet */
  int raised;        /* the hook raised the timeout since the outermost one began */
} atomic_limit;

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

typedef int (*raise_fn)(lua_State *, int, const char *, const char *, ...);
static int raise_timeout(lua_State *L, raise_fn raise, double limit) {
  char secs[32];
  snprintf(secs, sizeof secs, "%g", limit);
  return raise(L, C_FAILED, "timeout",
               "atomic: fn ran longer than atomic_timeout (%s s); its writes are undone", secs);
}

static void atomic_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (!atomic_limit.active) return;
  int64_t now = now_ns();
  if (!atomic_limit.start_ns) {
    atomic_limit.start_ns = now;
    return;
  }
  if ((double)(now - atomic_limit.start_ns) >= atomic_limit.secs * 1e9) {
    atomic_limit.raised = 1;
    raise_timeout(L, zl_raise_here, atomic_limit.secs);
  }
}

/* LuaJIT: a loop the JIT compiled never looks at hooks, so fn is kept out of
 * the JIT (luaJIT_setmode, found when the host is LuaJIT: a weak reference,
 * NULL under PUC Lua) */
extern int luaJIT_setmode(lua_State *L, int idx, int mode) __attribute__((weak));
#define ZKV_LUAJIT_MODE_ALLFUNC_OFF 3   /* LUAJIT_MODE_ALLFUNC (3) | LUAJIT_MODE_OFF (0), luajit.h; 2 is
                                        * LUAJIT_MODE_FUNC: fn alone, not the functions it defines */

/* fn at i and the functions it defines out of the JIT, once per function
 * (setting the mode flushes its traces: hundreds of ns).  The functions done
 * are the keys of a weak table, upvalue 2 of atomic. */
static void keep_out_of_jit(lua_State *L, int i) {
  lua_pushvalue(L, i);
  lua_rawget(L, lua_upvalueindex(2));
  int done = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (done) return;
  luaJIT_setmode(L, i, ZKV_LUAJIT_MODE_ALLFUNC_OFF);
  lua_pushvalue(L, i);
  lua_pushboolean(L, 1);
  lua_rawset(L, lua_upvalueindex(2));
}

/* fn at fn_idx, called as fn(<value at self_idx>, <the values after fn>) */
static int do_atomic(lua_State *L, Driver *d, int fn_idx, int self_idx) {
  if (lua_type(L, fn_idx) != LUA_TFUNCTION)
    return lraise(L, C_VALUE, "atomic: fn must be a function, got %s", luaL_typename(L, fn_idx));
  int nargs = lua_gettop(L) - fn_idx;
  /* everything that can raise comes before the lock is taken */
  luaL_checkstack(L, nargs + 2, "too many arguments");
  if (luaJIT_setmode && d->atomic_timeout > 0) keep_out_of_jit(L, fn_idx);
  zkv_db *db = live_db(L, d);
  int rc = zkv_begin(db);
  if (rc) return raise_rc(L, rc, "atomic");
  d->atomic_depth++;
  /* the time limit */
  int saved_active = atomic_limit.active;
  double saved_secs = atomic_limit.secs;
  int hooked = 0;
  if (d->atomic_timeout > 0) {
    if (!saved_active) {
      atomic_limit.active = 1;
      atomic_limit.start_ns = 0;
      atomic_limit.raised = 0;
      atomic_limit.secs = d->atomic_timeout;
    } else if (d->atomic_timeout < atomic_limit.secs) {
      atomic_limit.secs = d->atomic_timeout;
    }
    if (!lua_gethook(L)) {
      lua_sethook(L, atomic_hook, LUA_MASKCOUNT, HOOK_EVERY);
      hooked = 1;
    }
  }
  /* fn(self, ...) */
  lua_pushvalue(L, fn_idx);
  lua_pushvalue(L, self_idx);
  for (int i = 0; i < nargs; i++) lua_pushvalue(L, fn_idx + 1 + i);
  int base = lua_gettop(L) - nargs - 2;
  /* a yield inside fn cannot cross this C call: Lua raises an error, which
   * lands here like any other, and the writes are undone */
  int st = lua_pcall(L, nargs + 1, LUA_MULTRET, 0);
  if (hooked) lua_sethook(L, NULL, 0, 0);
  /* fn returned after it caught the timeout: past this atomic's limit, it failed */
  double limit = atomic_limit.secs;
  int late = st == LUA_OK && d->atomic_timeout > 0 && atomic_limit.raised &&
             (double)(now_ns() - atomic_limit.start_ns) >= limit * 1e9;
  atomic_limit.active = saved_active;
  atomic_limit.secs = saved_secs;
  d->atomic_depth--;
  /* fn cannot close this driver (close() is refused inside it), but nothing
   * here trusts the handle fetched before fn ran */
  db = d->db;
  if (st != LUA_OK) {
    if (db) zkv_rollback(db);
    return lua_error(L);   /* the same error value, unchanged */
  }
  if (!db) return lraise_failed(L, "closed", "atomic: the driver was closed");
  if (late) {
    zkv_rollback(db);
    return raise_timeout(L, zl_raise, limit);
  }
  rc = zkv_commit(db);
  if (rc) return raise_rc(L, rc, "atomic");
  return lua_gettop(L) - base;
}

static int store_atomic(lua_State *L) {
  Store *s = check_store(L);
  return do_atomic(L, s->drv, 2, 1);
}

/* s:_atomic_as(self, fn, ...) and kv:_atomic_as(self, fn, ...): atomic()
 * calling fn(self, ...): the LuaJIT front end passes its own object */
int store_atomic_as(lua_State *L) {
  Store *s = check_store(L);
  return do_atomic(L, s->drv, 3, 2);
}

static int driver_atomic_as(lua_State *L) {
  return do_atomic(L, check_driver(L), 3, 2);
}

int store_tostring(lua_State *L) {
  Store *s = (Store *)luaL_checkudata(L, 1, STORE_MT);
  lua_pushfstring(L, "zeltkv.Store (%p)%s", (void *)s, s->drv->db ? "" : " (closed)");
  return 1;
}

/* ---- Driver ------------------------------------------------------------------ */

static int driver_namespace(lua_State *L) {
  Driver *d = check_driver(L);
  size_t len;
  const char *name = check_ns_name(L, 2, &len);
  zkv_ns ns;
  int rc = zkv_namespace(live_db(L, d), ZKV_ROOT, name, len, &ns);
  if (rc) return raise_rc(L, rc, "namespace");
  new_store(L, 1, 0, 2, d, ns);
  return 1;
}

/* kv:namespaces(): an iterator over the root namespaces, as s:namespaces() is
 * over a store's children (zkv ns lists them).  The root is no Store in the Lua
 * API: the walk runs on a hidden one, which keeps the driver alive. */
static int driver_namespaces(lua_State *L) {
  Driver *d = check_driver(L);
  live_db(L, d);
  lua_settop(L, 1);
  lua_pushliteral(L, "");   /* its name: never used, the root is never stale */
  Store *root = new_store(L, 1, 0, 2, d, ZKV_ROOT);
  lua_replace(L, 1);
  return walk_start(L, root, 1);
}

static int driver_atomic(lua_State *L) {
  return do_atomic(L, check_driver(L), 2, 1);
}

/* kv:gc(), kv:flush() */
static int driver_count_op(lua_State *L, int (*op)(zkv_db *, uint64_t *), const char *what) {
  Driver *d = check_driver(L);
  uint64_t n;
  int rc = op(live_db(L, d), &n);
  return push_count(L, rc, n, what);
}

static int driver_gc(lua_State *L) { return driver_count_op(L, zkv_gc, "gc"); }
static int driver_flush(lua_State *L) { return driver_count_op(L, zkv_flush, "flush"); }

static int driver_stats(lua_State *L) {
  Driver *d = check_driver(L);
  zkv_db *db = live_db(L, d);
  zkv_stats st;
  int rc = zkv_stats_get(db, &st);
  if (rc) return raise_rc(L, rc, "stats");
  /* db is not used past this point: the table's allocations may run a
   * finalizer that closes this driver */
  const char *kind = zkv_is_shared(db) ? "shared" : "memory";
  /* the name and path belong to the handle: copied before anything allocates */
  char path[4400], name[ZKV_MAX_NAME + 1];
  snprintf(path, sizeof path, "%s", st.path ? st.path : "");
  snprintf(name, sizeof name, "%s", st.name ? st.name : "");
  lua_createtable(L, 0, 28);
  SETINT("keys", st.keys);
  SETINT("bytes_used", st.bytes_used);
  if (st.capacity) {
    SETINT("capacity", st.capacity);
    SETINT("free_bytes", st.free_bytes);
  }
  SETINT("arena_bytes", st.arena_bytes);
  SETINT("evictions", st.evictions);
  SETINT("expired_freed", st.expired_freed);
  SETINT("gc_runs", st.gc_runs);
  SETINT("namespaces", st.namespaces);
  SETINT("buckets", st.buckets);
  SETINT("max_lock_ns", st.max_lock_ns);
  SETINT("lock_recoveries", st.lock_recoveries);
  SETINT("gets", st.gets);
  SETINT("hits", st.hits);
  SETINT("misses", st.misses);
  SETINT("sets", st.sets);
  SETINT("deletes", st.deletes);
  SETINT("commits", st.commits);
  SETINT("rollbacks", st.rollbacks);
  SETINT("lock_waits", st.lock_waits);
  SETINT("lock_wait_ns", st.lock_wait_ns);
  SETINT("lock_wait_max_ns", st.lock_wait_max_ns);
  lua_pushstring(L, st.evict == ZKV_EVICT_LRU ? "lru" : "none");
  lua_setfield(L, -2, "evict");
  if (*path) {
    SETINT("size", st.size);
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
  }
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "driver");
  return 1;
}

/* count a close in the registry's CLOSES_KEY table: n + 1 at a key that holds
 * an integer already, so nothing is allocated (this runs in __gc too) */
static void count_close(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CLOSES_KEY);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_getfield(L, -1, "n");
    lua_Integer n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_pushinteger(L, n + 1);
    lua_setfield(L, -2, "n");
  }
  lua_pop(L, 1);
}

static void close_driver(lua_State *L, Driver *d) {
  if (d->db) {
    zkv_close(d->db);
    d->db = NULL;
    count_close(L);
  }
  free(d->enc.buf);
  d->enc.buf = NULL;
  d->enc.cap = d->enc.len = 0;
}

/* kv:close() and __close: idempotent; refused inside the driver's own
 * atomic() (atomic would then commit on a closed handle) */
static int driver_close(lua_State *L) {
  Driver *d = (Driver *)luaL_checkudata(L, 1, DRIVER_MT);
  if (d->atomic_depth > 0 && d->db)
    return lraise_failed(L, "closed", "close: cannot close a driver inside its own atomic()");
  close_driver(L, d);
  return 0;
}

int driver_closemeta(lua_State *L) { return driver_close(L); }

/* __gc: nothing can be running on an unreachable driver (lua_close runs
 * every finalizer with no frame left) */
int driver_gcmeta(lua_State *L) {
  Driver *d = (Driver *)luaL_checkudata(L, 1, DRIVER_MT);
  d->atomic_depth = 0;
  close_driver(L, d);
  return 0;
}

int driver_tostring(lua_State *L) {
  Driver *d = (Driver *)luaL_checkudata(L, 1, DRIVER_MT);
  lua_pushfstring(L, "zeltkv.Driver (%s, %p)%s",
                  d->db ? (zkv_is_shared(d->db) ? "shared" : "memory") : "-", (void *)d,
                  d->db ? "" : " (closed)");
  return 1;
}

const luaL_Reg zl_store_methods[] = {
  {"get", store_get}, {"set", store_set}, {"del", store_del}, {"has", store_has},
  {"expire", store_expire}, {"ttl", store_ttl}, {"incr", store_incr}, {"setnx", store_setnx},
  {"namespace", store_namespace}, {"atomic", store_atomic}, {"keys", store_keys},
  {"namespaces", store_namespaces},
  {"count", store_count}, {"clear", store_clear},
  {NULL, NULL}};

const luaL_Reg zl_driver_raw_methods[] = {{"_atomic_as", driver_atomic_as}, {NULL, NULL}};

const luaL_Reg zl_driver_methods[] = {
  {"namespace", driver_namespace}, {"namespaces", driver_namespaces},
  {"atomic", driver_atomic}, {"gc", driver_gc},
  {"stats", driver_stats}, {"flush", driver_flush}, {"close", driver_close}, {NULL, NULL}};
