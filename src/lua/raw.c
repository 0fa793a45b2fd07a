/*
 * raw.c -- the raw methods of zeltkv.Store that lua/zeltkv/shdict.lua (the
 * ngx.shared.DICT face) and lua/zeltkv/ffi.lua (the LuaJIT front end) are
 * built on.  Not part of the public Lua API, and registered apart from it
 * (zl_raw_methods, reached through the public method table's own __index):
 * type codes are enum zkv_type, results are the engine's codes (core._const
 * names them all), ttls are milliseconds.  Bad arguments still raise.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

/* s:_rawget(key, stale) -> nil | type, value, flags, is_stale */
static int store_rawget(lua_State *L) {
  KEY_ARGS(L);
  unsigned f = lua_toboolean(L, 3) ? ZKV_GET_STALE : 0;
  zkv_db *db = live_db(L, s->drv);
  zkv_value v;
  int stale = 0, rc;
  CALL(rc, zkv_get_ex(db, s->ns, k, kl, f, &v, &stale));
  if (rc == ZKV_NOTFOUND) return 0;
  if (rc < 0) return raise_rc(L, rc, "get");
  /* the bytes first: v.data may move once anything else is allocated */
  switch (v.type) {
  case ZKV_T_INT: zl_pushinteger(L, v.i); break;
  case ZKV_T_FLOAT: lua_pushnumber(L, v.f); break;
  case ZKV_T_BOOL: lua_pushboolean(L, (int)v.i); break;
  default: push_read(L, v.data, v.len); break;
  }
  lua_pushinteger(L, v.type);
  lua_insert(L, -2);
  zl_pushinteger(L, v.flags);
  lua_pushboolean(L, stale);
  return 4;
}

/* s:_rawset(key, type, value, flags, ttl_ms, setflags) -> rc, forcible */
static int store_rawset(lua_State *L) {
  KEY_ARGS(L);
  zkv_value v;
  memset(&v, 0, sizeof v);
  v.type = (int)luaL_checkinteger(L, 3);
  switch (v.type) {
  case ZKV_T_INT:
    luaL_checknumber(L, 4);
    luaL_argcheck(L, num_to_int64(L, 4, &v.i), 4, "integer expected");
    break;
  case ZKV_T_FLOAT: v.f = luaL_checknumber(L, 4); break;
  case ZKV_T_BOOL: v.i = lua_toboolean(L, 4); break;
  default: v.data = luaL_checklstring(L, 4, &v.len); break;
  }
  lua_Number fl = luaL_optnumber(L, 5, 0), ms = luaL_optnumber(L, 6, 0);
  luaL_argcheck(L, fl >= 0 && fl <= 4294967295.0 && fl == floor(fl), 5, "flags out of range");
  luaL_argcheck(L, ms >= 0 && ms <= 4.0e15, 6, "ttl out of range");
  v.flags = (uint32_t)fl;
  int64_t ttl = (int64_t)ms;
  unsigned sf = (unsigned)luaL_optinteger(L, 7, 0);
  zkv_db *db = live_db(L, s->drv);
  int forcible = 0, rc;
  CALL(rc, zkv_set_ex(db, s->ns, k, kl, &v, ttl, sf, &forcible));
  lua_pushinteger(L, rc);
  lua_pushboolean(L, forcible);
  return 2;
}

/* s:_incr_num(key, by, create, init, init_ttl_ms) -> rc, result, forcible */
static int store_incr_num(lua_State *L) {
  KEY_ARGS(L);
  double by = luaL_checknumber(L, 3), res = 0;
  int create = lua_toboolean(L, 4);
  double init = luaL_optnumber(L, 5, 0);
  lua_Number ms = luaL_optnumber(L, 6, 0);
  luaL_argcheck(L, ms >= 0 && ms <= 4.0e15, 6, "ttl out of range");
  zkv_db *db = live_db(L, s->drv);
  int rc;
  int forcible = 0;
  CALL(rc, zkv_incr_num(db, s->ns, k, kl, by, create, init, (int64_t)ms, &res, &forcible));
  lua_pushinteger(L, rc);
  push_double(L, res);
  lua_pushboolean(L, forcible);
  return 3;
}

/* s:_expire_ms(key, ms) -> rc   (ms 0 = no expiry; counted from the coarse clock) */
static int store_expire_ms(lua_State *L) {
  KEY_ARGS(L);
  lua_Number n = luaL_checknumber(L, 3);
  luaL_argcheck(L, n > -9.2e18 && n < 9.2e18, 3, "ttl out of range");   /* int64_t holds it */
  int64_t ms = (int64_t)n;
  zkv_db *db = live_db(L, s->drv);
  int rc;
  CALL(rc, zkv_expire_ex(db, s->ns, k, kl, ms, ZKV_EXPIRE_COARSE));   /* as zkv_lua_expire */
  lua_pushinteger(L, rc);
  return 1;
}

/* s:_ttl_coarse(key) -> as s:ttl(key), counted from the coarse clock (ZKV_TTL_COARSE) */
static int store_ttl_coarse(lua_State *L) { return store_ttl_flags(L, ZKV_TTL_COARSE); }

/* s:_flush_all() -> how many live keys of this namespace now count as expired */
static int store_flush_all(lua_State *L) {
  Store *s = check_store(L);
  zkv_db *db = live_db(L, s->drv);
  uint64_t n = 0;
  int rc;
  CALL(rc, zkv_expire_all(db, s->ns, &n));
  return push_count(L, rc, n, "flush_all");
}

/* s:_flush_expired(max) -> how many expired keys of this namespace were freed */
static int store_flush_expired(lua_State *L) {
  Store *s = check_store(L);
  lua_Number max = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, max >= 0 && max <= 1e15, 2, "max out of range");
  zkv_db *db = live_db(L, s->drv);
  uint64_t n = 0;
  int rc;
  CALL(rc, zkv_flush_expired_ns(db, s->ns, (uint64_t)max, &n));
  return push_count(L, rc, n, "flush_expired");
}

/* ---- lists of the ngx.shared.DICT face (lua/zeltkv/shdict.lua) -----------
 * The engine links a list's items (zkv_list_*, src/deque.c); an item is a tag
 * byte and its payload, which shdict.lua makes and reads. */

/* s:_list_push(key, left, tag, payload) -> rc, count */
static int store_list_push(lua_State *L) {
  KEY_ARGS(L);
  size_t tl, pl;
  int left = lua_toboolean(L, 3);
  const char *tag = luaL_checklstring(L, 4, &tl);
  const char *payload = luaL_checklstring(L, 5, &pl);
  luaL_argcheck(L, tl == 1, 4, "a one-byte tag expected");
  zkv_db *db = live_db(L, s->drv);
  uint64_t count = 0;
  int rc;
  CALL(rc, zkv_list_push(db, s->ns, k, kl, left, (unsigned char)tag[0], payload, pl, &count));
  lua_pushinteger(L, rc);
  lua_pushinteger(L, (lua_Integer)count);
  return 2;
}

/* s:_list_pop(key, left) -> rc[, tag, payload] */
static int store_list_pop(lua_State *L) {
  KEY_ARGS(L);
  int left = lua_toboolean(L, 3);
  zkv_db *db = live_db(L, s->drv);
  zkv_value v;
  int rc;
  CALL(rc, zkv_list_pop(db, s->ns, k, kl, left, &v));
  lua_pushinteger(L, rc);
  if (rc != ZKV_OK) return 1;
  /* the item in one copy first: the handle's memory at v.data may be reused
   * by a finalizer that the next allocation runs (push_read) */
  push_read(L, v.data, v.len);
  size_t n;
  const char *item = lua_tolstring(L, -1, &n);
  lua_pushlstring(L, item, 1);
  lua_pushlstring(L, item + 1, n - 1);
  lua_remove(L, -3);
  return 3;
}

/* s:_list_len(key) -> rc, count */
static int store_list_len(lua_State *L) {
  KEY_ARGS(L);
  zkv_db *db = live_db(L, s->drv);
  uint64_t count = 0;
  int rc;
  CALL(rc, zkv_list_len(db, s->ns, k, kl, &count));
  lua_pushinteger(L, rc);
  lua_pushinteger(L, (lua_Integer)count);
  return 2;
}

/* s:_live() -> nothing, or "closed": what the drop-in asks before it answers
 * without reaching the store (an argument it refuses, the capacity it keeps),
 * so that a dict over a closed driver is "closed" for every call, as a store */
static int store_live(lua_State *L) {
  check_store(L);
  return 0;
}

/* s:_capacity() -> the capacity alone (nothing when unbounded): zkv_capacity */
static int store_capacity(lua_State *L) {
  Store *s = check_store(L);
  uint64_t cap = 0;
  int rc = zkv_capacity(live_db(L, s->drv), &cap);
  if (rc) return raise_rc(L, rc, "stats");
  if (!cap) return 0;
  zl_pushinteger(L, cap);
  return 1;
}

/* s:_space() -> capacity, free bytes, grows (nothing when unbounded): stats
 * without the table; grows is true where the capacity may change (a shared
 * segment: any process may open it with a larger size, which grows it) */
static int store_space(lua_State *L) {
  Store *s = check_store(L);
  zkv_db *db = live_db(L, s->drv);
  uint64_t cap = 0, fr = 0;
  int rc = zkv_space(db, &cap, &fr);
  if (rc) return raise_rc(L, rc, "stats");
  if (!cap) return 0;
  zl_pushinteger(L, cap);
  zl_pushinteger(L, fr);
  lua_pushboolean(L, zkv_is_shared(db));
  return 3;
}



/* s:_keys_list(max) -> a table of up to max live keys (0 = all), in steps of
 * at most KEYS_BATCH keys a lock hold (ngx.shared.DICT's get_keys) */
static int store_keys_list(lua_State *L) {
  Store *s = check_store(L);
  lua_Number mx = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, mx >= 0 && mx <= 1e15, 2, "max out of range");
  uint64_t max = (uint64_t)mx;
  zkv_cursor cur;
  memset(&cur, 0, sizeof cur);
  Owned *own = owned_push(L);   /* b.buf's, while the keys are pushed */
  lua_Integer n = 0;
  int made = 0;   /* the table is made the size of the first batch (no regrowth) */
  KeyBatch b = {NULL, 0, 0, 0};
  while (!cur.done && (max == 0 || (uint64_t)n < max)) {
    size_t want = KEYS_BATCH, got = 0;
    if (max && max - (uint64_t)n < want) want = (size_t)(max - (uint64_t)n);
    b.len = 0;
    b.n = 0;
    /* the handle anew each step: pushing the keys allocates */
    zkv_db *db = s->drv->db;
    int rc = db ? zkv_keys(db, s->ns, &cur, want, collect_key, &b, &got) : ZKV_ECLOSED;
    own->p = b.buf;
    if (rc == ZKV_ESTALE && n == 0 && reresolve(L, 1, s) == ZKV_OK) {   /* made anew */
      memset(&cur, 0, sizeof cur);
      rc = zkv_keys(db, s->ns, &cur, want, collect_key, &b, &got);
    }
    own->p = b.buf;
    if (rc == ZKV_ESTALE) break;   /* gone and not made again: an empty namespace */
    if (rc) return raise_rc(L, rc, "keys");
    if (!made) lua_createtable(L, (int)b.n, 0);
    made = 1;
    push_batch(L, &b, &n);
  }
  own->p = NULL;
  free(b.buf);
  if (!made) lua_newtable(L);
  return 1;
}

const luaL_Reg zl_raw_methods[] = {
  {"_rawget", store_rawget}, {"_rawset", store_rawset},
  {"_incr_num", store_incr_num}, {"_expire_ms", store_expire_ms}, {"_ttl_coarse", store_ttl_coarse},
  {"_flush_all", store_flush_all}, {"_flush_expired", store_flush_expired},
  {"_space", store_space}, {"_capacity", store_capacity}, {"_list_push", store_list_push}, {"_list_pop", store_list_pop},
  {"_list_len", store_list_len}, {"_keys_list", store_keys_list}, {"_atomic_as", store_atomic_as},
  {"_live", store_live},
  {NULL, NULL}};
