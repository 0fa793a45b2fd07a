/*
 * ffi.c -- the entry points lua/zeltkv/ffi.lua calls through the FFI (the
 * declarations and why they look so are in binding.h, ZKV_LUA_FFI).  Each
 * reads the store's handle and namespace id at the call and makes one engine
 * call; results that would need an allocation to be read from Lua (int64s,
 * pointers) come back as doubles and as copied bytes.  A namespace gone with
 * a rolled-back atomic() is ZKV_ESTALE as from the engine: ffi.lua then lets
 * the C method find it anew.
 */
#include <stdlib.h>
#include <string.h>

#include "binding.h"

/* the handle of the store s, or NULL once its driver is closed */
static zkv_db *db_of(void *store) { return ((Store *)store)->drv->db; }
#define DB_OR_CLOSED(db, store)        \
  zkv_db *db = db_of(store);           \
  if (UNLIKELY_(!db)) return ZKV_ECLOSED

ZKV_API int zkv_lua_get(void *store, const void *key, size_t klen, unsigned flags,
                        zkv_lua_out *out, char *buf, size_t cap) {
  DB_OR_CLOSED(db, store);
  zkv_value v;
  int stale = 0;
  zkv_ns ns = ((Store *)store)->ns;
  int rc;
  if (LIKELY_(!flags)) {
    /* the bytes go straight into buf: no second copy from the handle's buffer */
    rc = zkv_get_into(db, ns, key, klen, buf, cap, &v);
  } else {
    rc = zkv_get_ex(db, ns, key, klen, flags, &v, &stale);
    if (rc == ZKV_OK && v.len <= cap) {
      if (v.len) memcpy(buf, v.data, v.len);
    }
  }
  if (rc != ZKV_OK) return rc;
  out->type = v.type;
  out->stale = stale;
  out->flags = v.flags;
  out->len = 0;
  out->num = 0;
  switch (v.type) {
  case ZKV_T_INT: out->num = (double)v.i; break;
  case ZKV_T_FLOAT: out->num = v.f; break;
  case ZKV_T_BOOL: out->num = v.i != 0; break;
  default: out->len = v.len <= cap && v.len <= INT32_MAX ? (int32_t)v.len : -1;
  }
  return ZKV_OK;
}

ZKV_API int zkv_lua_set(void *store, const void *key, size_t klen, const zkv_value *v,
                        int64_t ttl_ms, unsigned flags, int *forcible) {
  DB_OR_CLOSED(db, store);
  /* zkv_set_ex takes a NULL forcible (zkv_set is that call): one call less */
  return zkv_set_ex(db, ((Store *)store)->ns, key, klen, v, ttl_ms, flags, forcible);
}

ZKV_API int zkv_lua_del(void *store, const void *key, size_t klen) {
  DB_OR_CLOSED(db, store);
  return zkv_del(db, ((Store *)store)->ns, key, klen);
}

ZKV_API int zkv_lua_has(void *store, const void *key, size_t klen) {
  DB_OR_CLOSED(db, store);
  return zkv_has(db, ((Store *)store)->ns, key, klen);
}

/* *ms_left: the milliseconds left, -1 for a key without ttl; flags: zkv_ttl_ex's */
ZKV_API int zkv_lua_ttl(void *store, const void *key, size_t klen, unsigned flags,
                        double *ms_left) {
  DB_OR_CLOSED(db, store);
  int64_t left = 0;
  int rc = zkv_ttl_ex(db, ((Store *)store)->ns, key, klen, flags, &left);
  if (rc == ZKV_OK) *ms_left = left < 0 ? -1.0 : (double)left;
  return rc;
}

/* s:incr() within the range numbers that are doubles hold exactly */
ZKV_API int zkv_lua_incr(void *store, const void *key, size_t klen, int64_t by, int64_t ttl_ms,
                         double *result) {
  DB_OR_CLOSED(db, store);
  const int64_t lim = ZKV_INT_LIMIT ? ZKV_INT_LIMIT : INT64_MAX;
  int64_t res = 0;
  int rc = zkv_incr_limited(db, ((Store *)store)->ns, key, klen, by, ttl_ms, -lim, lim, &res);
  if (rc == ZKV_OK) *result = (double)res;
  return rc;
}

ZKV_API int zkv_lua_incr_num(void *store, const void *key, size_t klen, double by, int create,
                             double init, int64_t init_ttl_ms, double *result, int *forcible) {
  DB_OR_CLOSED(db, store);
  return zkv_incr_num(db, ((Store *)store)->ns, key, klen, by, create, init, init_ttl_ms, result,
                      forcible);
}

ZKV_API int zkv_lua_expire(void *store, const void *key, size_t klen, int64_t ttl_ms) {
  DB_OR_CLOSED(db, store);
  /* the drop-in's expire (its only caller): counted from the coarse clock, as
   * shdict counts from nginx's cached time */
  return zkv_expire_ex(db, ((Store *)store)->ns, key, klen, ttl_ms, ZKV_EXPIRE_COARSE);
}

/* the lists of the drop-in (zkv_list_*): counts as doubles */
ZKV_API int zkv_lua_list_push(void *store, const void *key, size_t klen, int left, int tag,
                              const void *payload, size_t plen, double *count) {
  DB_OR_CLOSED(db, store);
  uint64_t n = 0;
  int rc = zkv_list_push(db, ((Store *)store)->ns, key, klen, left, tag, payload, plen, &n);
  *count = (double)n;
  return rc;
}

/* the item taken (tag and payload) copied into buf, out->len its bytes: one
 * engine call, no transaction.  An item bigger than cap is copied into a
 * block of its own at *big (out->len -1, out->num its bytes), which the
 * caller frees with zkv_lua_free.  As for the C method (whose Lua string can
 * fail to be made after the pop), an allocation that fails after the pop
 * loses the item: ZKV_ENOMEM. */
ZKV_API int zkv_lua_list_pop(void *store, const void *key, size_t klen, int left,
                             zkv_lua_out *out, char *buf, size_t cap, char **big) {
  DB_OR_CLOSED(db, store);
  zkv_value v;
  out->len = -1;
  out->num = 0;
  *big = NULL;
  int rc = zkv_list_pop(db, ((Store *)store)->ns, key, klen, left, &v);
  if (rc != ZKV_OK) return rc;
  if (v.len <= cap && v.len <= INT32_MAX) {
    memcpy(buf, v.data, v.len);
    out->len = (int32_t)v.len;
    return ZKV_OK;
  }
  *big = malloc(v.len);
  if (!*big) return ZKV_ENOMEM;
  memcpy(*big, v.data, v.len);
  out->num = (double)v.len;
  return ZKV_OK;
}

ZKV_API void zkv_lua_free(void *p) { free(p); }

ZKV_API int zkv_lua_list_len(void *store, const void *key, size_t klen, double *count) {
  DB_OR_CLOSED(db, store);
  uint64_t n = 0;
  int rc = zkv_list_len(db, ((Store *)store)->ns, key, klen, &n);
  *count = (double)n;
  return rc;
}

/* get_keys of the drop-in: the next batch of up to max live keys of the
 * namespace (zkv_keys_into, one lock hold), copied back to back into buf,
 * their lengths in lens[0..*n-1] */
ZKV_API int zkv_lua_keys(void *store, zkv_cursor *cur, size_t max, char *buf, size_t cap,
                         uint32_t *lens, double *n) {
  DB_OR_CLOSED(db, store);
  size_t got = 0;
  int rc = zkv_keys_into(db, ((Store *)store)->ns, cur, max, buf, cap, lens, &got);
  *n = (double)got;
  return rc;
}

/* the drop-in's flush_all (zkv_expire_all: stepped) and flush_expired
 * (zkv_flush_expired_ns, up to max keys, 0 = all): *n how many keys */
ZKV_API int zkv_lua_flush_all(void *store, double *n) {
  DB_OR_CLOSED(db, store);
  uint64_t c = 0;
  int rc = zkv_expire_all(db, ((Store *)store)->ns, &c);
  *n = (double)c;
  return rc;
}

ZKV_API int zkv_lua_flush_expired(void *store, double max, double *n) {
  DB_OR_CLOSED(db, store);
  uint64_t c = 0;
  int rc = zkv_flush_expired_ns(db, ((Store *)store)->ns, (uint64_t)max, &c);
  *n = (double)c;
  return rc;
}

/* the free bytes alone, -2 when unbounded, or -1 for an error: the drop-in's
 * free_space(), returned rather than stored through zkv_lua_space's three
 * pointers */
ZKV_API double zkv_lua_free_space(void *store) {
  zkv_db *db = db_of(store);
  uint64_t cap = 0, fr = 0;
  if (UNLIKELY_(!db) || zkv_space(db, &cap, &fr) != ZKV_OK) return -1;
  return cap ? (double)fr : -2;
}

/* zkv_capacity_word of the store's handle (NULL once closed, or a memory
 * store), its base in *base */
ZKV_API const volatile uint64_t *zkv_lua_capacity_word(void *store, double *base) {
  zkv_db *db = db_of(store);
  uint64_t b = 0;
  const volatile uint64_t *w = db ? zkv_capacity_word(db, &b) : NULL;
  *base = (double)b;
  return w;
}

/* capacity and free bytes (0, 0 when unbounded), and whether the capacity may
 * change (*grows: a shared segment, which any process may open larger) */
ZKV_API int zkv_lua_space(void *store, double *capacity, double *free_bytes, int *grows) {
  DB_OR_CLOSED(db, store);
  uint64_t cap = 0, fr = 0;
  int rc = zkv_space(db, &cap, &fr);
  *capacity = (double)cap;
  *free_bytes = (double)fr;
  *grows = zkv_is_shared(db);
  return rc;
}

/* s:_live() of the drop-in: ZKV_OK, or ZKV_ECLOSED (the C method raises it) */
ZKV_API int zkv_lua_live(void *store) {
  DB_OR_CLOSED(db, store);
  (void)db;
  return ZKV_OK;
}
