/*
 * raw.c -- the raw methods of zeltkv.Store that lua/zeltkv/shdict.lua (the
 * ngx.shared.DICT face) and lua/zeltkv/ffi.lua (the LuaJIT front end) are
 * built on.  Not part of the public Lua API, and registered apart from it
 * (zkv_raw_methods, reached through the public method table's own __index):
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
  case ZKV_T_INT: zkv_pushinteger(L, v.i); break;
  case ZKV_T_FLOAT: lua_pushnumber(L, v.f); break;
  case ZKV_T_BOOL: lua_pushboolean(L, (int)v.i); break;
  default: lua_pushlstring(L, (const char *)v.data, v.len); break;
  }
  lua_pushinteger(L, v.type);
  lua_insert(L, -2);
  zkv_pushinteger(L, v.flags);
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

/* s:_incr_num(key, by, create, init, init_ttl_ms) -> rc, result */
static int store_incr_num(lua_State *L) {
  KEY_ARGS(L);
  double by = luaL_checknumber(L, 3), res = 0;
  int create = lua_toboolean(L, 4);
  double init = luaL_optnumber(L, 5, 0);
  lua_Number ms = luaL_optnumber(L, 6, 0);
  luaL_argcheck(L, ms >= 0 && ms <= 4.0e15, 6, "ttl out of range");
  zkv_db *db = live_db(L, s->drv);
  int rc;
  CALL(rc, zkv_incr_num(db, s->ns, k, kl, by, create, init, (int64_t)ms, &res));
  lua_pushinteger(L, rc);
  push_double(L, res);
  return 2;
}

/* s:_expire_ms(key, ms) -> rc   (ms 0 = no expiry) */
static int store_expire_ms(lua_State *L) {
  KEY_ARGS(L);
  lua_Number n = luaL_checknumber(L, 3);
  luaL_argcheck(L, n > -9.2e18 && n < 9.2e18, 3, "ttl out of range");   /* int64_t holds it */
  int64_t ms = (int64_t)n;
  zkv_db *db = live_db(L, s->drv);
  int rc;
  CALL(rc, zkv_expire(db, s->ns, k, kl, ms));
  lua_pushinteger(L, rc);
  return 1;
}

/* s:_flush_all() -> how many live keys of this namespace now count as expired */
static int store_flush_all(lua_State *L) {
  Store *s = (Store *)check_self(L, STORE_MT);
  zkv_db *db = live_db(L, s->drv);
  uint64_t n = 0;
  int rc;
  CALL(rc, zkv_expire_all(db, s->ns, &n));
  return push_count(L, rc, n, "flush_all");
}

/* s:_flush_expired(max) -> how many expired keys of this namespace were freed */
static int store_flush_expired(lua_State *L) {
  Store *s = (Store *)check_self(L, STORE_MT);
  lua_Number max = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, max >= 0 && max <= 1e15, 2, "max out of range");
  zkv_db *db = live_db(L, s->drv);
  uint64_t n = 0;
  int rc;
  CALL(rc, zkv_flush_expired_ns(db, s->ns, (uint64_t)max, &n));
  return push_count(L, rc, n, "flush_expired");
}

/* ---- lists of the ngx.shared.DICT face (lua/zeltkv/shdict.lua) -----------
 * A list is a ZKV_T_LIST value: 8 hex digits of item count, then items, each
 * a tag byte, 8 hex digits of payload length, the payload, the 8 digits again
 * (so both ends can be read without a walk).  shdict.lua encodes and decodes
 * items; these two splice one in or out of a stored list in one lock hold and
 * one transaction, without making a Lua string of the whole list. */
/* a stored list that does not parse is ZKV_EINVAL_VALUE: the value cannot
 * be used as a list (ZKV_ETYPE: it is not a list at all) */
#define LIST_DAMAGED ZKV_EINVAL_VALUE

static int hex8_get(const char *p, uint32_t *out) {
  uint32_t n = 0;
  for (int i = 0; i < 8; i++) {
    char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return 0;
    n = n << 4 | (uint32_t)d;
  }
  *out = n;
  return 1;
}

static void hex8_put(char *p, uint32_t n) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 7; i >= 0; i--, n >>= 4) p[i] = digits[n & 15];
}

/* the stored list of key, copied to a malloc'ed buffer: ZKV_OK, ZKV_NOTFOUND,
 * ZKV_ETYPE (not a list), LIST_DAMAGED, or an engine error */
static int list_read(zkv_db *db, Store *s, const char *k, size_t kl, char **buf, size_t *len,
                     uint32_t *count) {
  zkv_value v;
  int rc = zkv_get(db, s->ns, k, kl, &v);
  if (rc != ZKV_OK) return rc;
  if (v.type != ZKV_T_LIST) return ZKV_ETYPE;
  if (v.len < 8 || !hex8_get((const char *)v.data, count) || *count < 1) return LIST_DAMAGED;
  *buf = malloc(v.len ? v.len : 1);
  if (!*buf) return ZKV_ENOMEM;
  memcpy(*buf, v.data, v.len);
  *len = v.len;
  return ZKV_OK;
}

static int list_write(zkv_db *db, Store *s, const char *k, size_t kl, const char *p, size_t n,
                      unsigned flags) {
  zkv_value v;
  memset(&v, 0, sizeof v);
  v.type = ZKV_T_LIST;
  v.data = p;
  v.len = n;
  return zkv_set(db, s->ns, k, kl, &v, 0, flags);
}

/* begin the list op's transaction, the store's namespace found anew first if
 * a rolled-back atomic() removed it (that may raise: no transaction is open) */
static int list_begin(lua_State *L, zkv_db *db, Store *s, const char *k, size_t kl) {
  int rc;
  CALL(rc, zkv_has(db, s->ns, k, kl));
  if (rc < 0) return raise_rc(L, rc, "list");
  rc = zkv_begin(db);
  if (rc) return raise_rc(L, rc, "list");
  return 0;
}

/* s:_list_push(key, left, item) -> rc, count.  item is one encoded item; a
 * missing key becomes a list without ttl (never evicting for it), a list keeps
 * its ttl. */
static int store_list_push(lua_State *L) {
  KEY_ARGS(L);
  size_t il;
  int left = lua_toboolean(L, 3);
  const char *item = luaL_checklstring(L, 4, &il);
  zkv_db *db = live_db(L, s->drv);
  list_begin(L, db, s, k, kl);
  int rc;
  char *old = NULL, *nw = NULL;
  size_t olen = 0;
  uint32_t count = 0;
  rc = list_read(db, s, k, kl, &old, &olen, &count);
  if (rc == ZKV_NOTFOUND) {
    count = 0;
    olen = 8;
    rc = ZKV_OK;
  }
  if (rc == ZKV_OK && count == UINT32_MAX) rc = ZKV_ERANGE;
  if (rc == ZKV_OK) {
    nw = malloc(olen + il);
    if (!nw) rc = ZKV_ENOMEM;
  }
  if (rc == ZKV_OK) {
    hex8_put(nw, count + 1);
    if (left) {
      memcpy(nw + 8, item, il);
      if (old) memcpy(nw + 8 + il, old + 8, olen - 8);
    } else {
      if (old) memcpy(nw + 8, old + 8, olen - 8);
      memcpy(nw + olen, item, il);
    }
    rc = list_write(db, s, k, kl, nw, olen + il,
                    ZKV_SET_NOEVICT | (old ? ZKV_SET_KEEPTTL : 0u));
  }
  free(old);
  free(nw);
  if (rc == ZKV_OK) zkv_commit(db);
  else zkv_rollback(db);
  lua_pushinteger(L, rc);
  lua_pushinteger(L, rc == ZKV_OK ? (lua_Integer)count + 1 : 0);
  return 2;
}

/* s:_list_pop(key, left) -> rc, tag, payload.  The last item takes the key
 * with it; the rest keeps its ttl. */
static int store_list_pop(lua_State *L) {
  KEY_ARGS(L);
  int left = lua_toboolean(L, 3);
  Owned *own = owned_push(L);   /* v's, while the item is pushed */
  zkv_db *db = live_db(L, s->drv);
  list_begin(L, db, s, k, kl);
  int rc;
  char *v = NULL, *nw = NULL;
  size_t n = 0;
  uint32_t count = 0, len = 0;
  size_t tag = 0, rest = 0, rest_len = 0;   /* offsets into v */
  rc = list_read(db, s, k, kl, &v, &n, &count);
  own->p = v;
  if (rc == ZKV_OK) {
    if (left) {
      /* tag at 8, length at 9..16, payload at 17, the length again, the rest */
      if (n < 25 || !hex8_get(v + 9, &len) || len > n - 25) {
        rc = LIST_DAMAGED;
      } else {
        tag = 8;
        rest = 25 + (size_t)len;
        rest_len = n - rest;
      }
    } else {
      /* the length in the last 8 bytes; tag, length, payload, length before it */
      if (n < 25 || !hex8_get(v + n - 8, &len) || len > n - 25) {
        rc = LIST_DAMAGED;
      } else {
        tag = n - 17 - (size_t)len;
        rest = 8;
        rest_len = tag - 8;
      }
    }
  }
  if (rc == ZKV_OK) {
    if (count == 1) {
      rc = zkv_del(db, s->ns, k, kl);
    } else {
      nw = malloc(8 + rest_len);
      if (!nw) {
        rc = ZKV_ENOMEM;
      } else {
        hex8_put(nw, count - 1);
        memcpy(nw + 8, v + rest, rest_len);
        rc = list_write(db, s, k, kl, nw, 8 + rest_len, ZKV_SET_KEEPTTL);
      }
    }
  }
  if (rc == ZKV_OK) zkv_commit(db);
  else zkv_rollback(db);
  free(nw);
  lua_pushinteger(L, rc);
  if (rc == ZKV_OK) {
    lua_pushlstring(L, v + tag, 1);
    lua_pushlstring(L, v + tag + 9, len);
  }
  own->p = NULL;
  free(v);
  return rc == ZKV_OK ? 3 : 1;
}

/* s:_space() -> capacity, free bytes (nil, nil when unbounded): stats without the table */
static int store_space(lua_State *L) {
  Store *s = (Store *)check_self(L, STORE_MT);
  zkv_stats st;
  int rc = zkv_stats_get(live_db(L, s->drv), &st);
  if (rc) return raise_rc(L, rc, "stats");
  if (!st.capacity) return 0;
  zkv_pushinteger(L, st.capacity);
  zkv_pushinteger(L, st.free_bytes);
  return 2;
}



/* s:_keys_list(max) -> a table of up to max live keys (0 = all), in steps of
 * at most KEYS_BATCH keys a lock hold (ngx.shared.DICT's get_keys) */
static int store_keys_list(lua_State *L) {
  Store *s = (Store *)check_self(L, STORE_MT);
  lua_Number mx = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, mx >= 0 && mx <= 1e15, 2, "max out of range");
  uint64_t max = (uint64_t)mx;
  zkv_cursor cur;
  memset(&cur, 0, sizeof cur);
  Owned *own = owned_push(L);   /* b.buf's, while the keys are pushed */
  lua_newtable(L);
  lua_Integer n = 0;
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
    push_batch(L, &b, &n);
  }
  own->p = NULL;
  free(b.buf);
  return 1;
}

const luaL_Reg zkv_raw_methods[] = {
  {"_rawget", store_rawget}, {"_rawset", store_rawset},
  {"_incr_num", store_incr_num}, {"_expire_ms", store_expire_ms},
  {"_flush_all", store_flush_all}, {"_flush_expired", store_flush_expired},
  {"_space", store_space}, {"_list_push", store_list_push}, {"_list_pop", store_list_pop},
  {"_keys_list", store_keys_list}, {"_atomic_as", store_atomic_as},
  {NULL, NULL}};
