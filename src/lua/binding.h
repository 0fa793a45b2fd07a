/*
 * binding.h -- private to the Lua binding (src/lua/ *.c); nothing else
 * includes it.  The binding is split by concern:
 *
 *   check.c   errors (the error objects, their reasons), self / key / ttl /
 *             number / name checks shared by every method
 *   value.c   Lua values <-> stored bytes: the JSON encoder and decoder, and
 *             the codec exported to pure-Lua drivers (core._encode/_decode)
 *   store.c   the public Store and Driver methods, keys(), namespaces(),
 *             atomic() and its time limit
 *   raw.c     the raw methods the ngx.shared.DICT face (lua/zeltkv/shdict.lua)
 *             and the LuaJIT front end (lua/zeltkv/ffi.lua) are built on
 *   module.c  the module table, the classes, driver options, constants
 *   ffi.c     the entry points of the LuaJIT front end (lua/zeltkv/ffi.lua)
 *
 * The engine knows nothing of Lua; the binding knows nothing of hash tables.
 *
 * Finalizers (__gc) may run inside any Lua allocation, and may use or close
 * any driver.  So a method never keeps, across a Lua allocation, a pointer
 * into memory that Lua code can free or move: the zkv_db handle is fetched
 * after the arguments are checked (an integer key is turned into a Lua
 * string, which allocates), and the engine's value bytes (they point into the
 * arena or the handle's read buffer) are copied into a Lua string before
 * anything else is allocated.
 */
#ifndef ZKV_BINDING_H
#define ZKV_BINDING_H

#include <stddef.h>
#include <stdint.h>

#include "../compat.h"
#include "zeltkv.h"
#include "../util.h" /* double_is_exact_int, double_is_whole53, grow_array */

#define DRIVER_MT "zeltkv.Driver"
/* the registry's { n = closes } (core._closes): every driver close counts one,
 * so that the drop-in can tell, without a call, that no driver was closed since
 * it last asked its store (shdict.lua capacity) */
#define CLOSES_KEY "zeltkv.closes"
#define STORE_MT "zeltkv.Store"
#define ERROR_MT "zeltkv.Error"

#define LIKELY_(x) __builtin_expect(!!(x), 1)
#define UNLIKELY_(x) __builtin_expect(!!(x), 0)

/* ---- the entry points lua/zeltkv/ffi.lua calls (ffi.c) ---------------------
 * The LuaJIT front end calls these through the FFI, passing a store's
 * userdata as void * (LuaJIT passes its payload: a Store).  The handle and
 * the namespace id are read here, at the call, never by Lua code: a
 * finalizer may run at any allocation of Lua code and close the driver, so
 * Lua must not hold a zkv_db * across one.  Results come back as numbers and
 * as bytes copied into the caller's buffer: reading a pointer or an int64
 * through the FFI boxes it (an allocation, where a finalizer may run and
 * free or move what it points to).  A closed driver is ZKV_ECLOSED, and
 * ffi.lua lets the C method raise the error.  ffi.lua gets this text from
 * core._const.FFI (ffi.cdef), so the declaration below is the only copy.
 *
 * zkv_lua_out: type (ZKV_T_*), stale (GET_STALE read an expired value), the
 * user flags, len (the value's bytes copied into buf; -1: more than cap, the
 * C method reads it) and num (an integer, float or boolean as a double:
 * LuaJIT's numbers). */
#define ZKV_LUA_FFI                                                                        \
  typedef struct zkv_lua_out { int type; int stale; uint32_t flags; int32_t len; double num; } \
      zkv_lua_out;                                                                         \
  int zkv_lua_get(void *store, const void *key, size_t klen, unsigned flags, zkv_lua_out *out, \
                  char *buf, size_t cap);                                                  \
  int zkv_lua_set(void *store, const void *key, size_t klen, const zkv_value *v,           \
                  int64_t ttl_ms, unsigned flags, int *forcible);                          \
  int zkv_lua_del(void *store, const void *key, size_t klen);                              \
  int zkv_lua_has(void *store, const void *key, size_t klen);                              \
  int zkv_lua_ttl(void *store, const void *key, size_t klen, unsigned flags,              \
                  double *ms_left);                                                        \
  int zkv_lua_incr(void *store, const void *key, size_t klen, int64_t by, int64_t ttl_ms,  \
                   double *result);                                                        \
  int zkv_lua_incr_num(void *store, const void *key, size_t klen, double by, int create,   \
                       double init, int64_t init_ttl_ms, double *result, int *forcible);   \
  int zkv_lua_expire(void *store, const void *key, size_t klen, int64_t ttl_ms);            \
  int zkv_lua_list_push(void *store, const void *key, size_t klen, int left, int tag,      \
                        const void *payload, size_t plen, double *count);                  \
  int zkv_lua_list_pop(void *store, const void *key, size_t klen, int left, zkv_lua_out *out, \
                       char *buf, size_t cap, char **big);                                 \
  void zkv_lua_free(void *p);                                                              \
  int zkv_lua_list_len(void *store, const void *key, size_t klen, double *count);          \
  int zkv_lua_keys(void *store, zkv_cursor *cur, size_t max, char *buf, size_t cap,         \
                   uint32_t *lens, double *n);                                             \
  int zkv_lua_flush_all(void *store, double *n);                                           \
  int zkv_lua_flush_expired(void *store, double max, double *n);                           \
  int zkv_lua_space(void *store, double *capacity, double *free_bytes, int *grows);        \
  double zkv_lua_free_space(void *store);                                                  \
  const volatile uint64_t *zkv_lua_capacity_word(void *store, double *base);              \
  int zkv_lua_live(void *store);
ZKV_LUA_FFI
#define ZKV_STR_(...) #__VA_ARGS__   /* the text holds commas */
#define ZKV_STR(...) ZKV_STR_(__VA_ARGS__)

/* atomic_timeout's default, in seconds: an atomic() function that holds the
 * lock longer is aborted.  Shorter than lock_timeout's 5 s, so that the
 * processes waiting for the lock get it back before they give up; long
 * enough for any read-modify-write (they take microseconds). */
#define ZKV_ATOMIC_TIMEOUT 1.0

/* a growable byte buffer (the encoder's output) */
typedef struct Scratch { char *buf; size_t len, cap; } Scratch;

typedef struct Driver {
  zkv_db *db;            /* NULL once closed */
  int atomic_depth;      /* atomic() frames running on this driver */
  double atomic_timeout; /* seconds an atomic() may hold the lock; 0 = no limit */
  Scratch enc;           /* the encoder's buffer for tables */
} Driver;

typedef struct Store {
  Driver *drv;          /* kept alive by the store's user value */
  zkv_ns ns;
} Store;

/* ---- errors (check.c) ------------------------------------------------------ */

/* error classes: the codes of zeltkv.errors (enum zkv_errclass) */
enum { C_TTL = ZKV_CLASS_INVALID_TTL, C_EMPTY_NS = ZKV_CLASS_EMPTY_NAMESPACE,
       C_VALUE = ZKV_CLASS_INVALID_VALUE, C_KEY = ZKV_CLASS_INVALID_KEY,
       C_FAILED = ZKV_CLASS_STORE_OPERATION_FAILED };

/* raise the error of class cls (reason may be NULL); never returns */
int zl_raise(lua_State *L, int cls, const char *reason, const char *fmt, ...);
#define lraise(L, cls, ...) zl_raise(L, cls, NULL, __VA_ARGS__)
/* raise STORE_OPERATION_FAILED with a reason */
#define lraise_failed(L, reason, ...) zl_raise(L, C_FAILED, reason, __VA_ARGS__)
/* raise the error of class cls whose message is the string on top */
int zl_raise_top(lua_State *L, int cls, const char *reason);
/* raise INVALID_VALUE "unknown option 'NAME'<suffix>"; NAME is len bytes, any bytes */
int raise_unknown_option(lua_State *L, const char *name, size_t len, const char *suffix);
/* the same from a hook: the stack is looked at from the hooked function */
int zl_raise_here(lua_State *L, int cls, const char *reason, const char *fmt, ...);
/* raise the error of an engine result code: "<what>: <zkv_strerror>" */
int raise_rc(lua_State *L, int rc, const char *what);
/* the same for an open or unlink that failed: the engine cleared its detail
 * (zkv_errdetail) when the call began, so a detail there is this failure's,
 * whatever the code (a size that does not match, a missing segment, no room) */
int raise_open(lua_State *L, int rc, const char *what);
/* the reason word of an engine result code ("full", "timeout", ...), or NULL */
const char *rc_reason(int rc);
/* module.c registers these */
int error_tostring(lua_State *L);
int l_raise(lua_State *L);
int l_raise_rc(lua_State *L);
int l_own(lua_State *L);
/* the error metatable and the registry tables raising uses */
void errors_init(lua_State *L);

/* ---- checks (check.c) ------------------------------------------------------ */

/* methods get their class metatable as upvalue 1: self is checked by
 * comparing metatables, without a registry lookup by name.  check_self_keep
 * leaves self's metatable on the stack, for get (KEY_ARGS_GET). */
static inline void *check_self_keep(lua_State *L, const char *tname) {
  void *p = lua_touserdata(L, 1);
  if (LIKELY_(p && lua_getmetatable(L, 1) && lua_rawequal(L, -1, lua_upvalueindex(1))))
    return p;
  luaL_typeerror(L, 1, tname);
  return NULL;
}
static inline void *check_self(lua_State *L, const char *tname) {
  void *p = check_self_keep(L, tname);
  lua_pop(L, 1);
  return p;
}

/* the handle of a live driver, or "closed".  Fetch it after the arguments
 * are checked, right before the engine call (see the banner). */
static inline zkv_db *live_db(lua_State *L, Driver *d) {
  if (UNLIKELY_(!d->db)) lraise_failed(L, "closed", "closed");
  return d->db;
}

/* A closed driver is "closed" for every method, whatever its arguments (the
 * rule of kv:close(), docs/reference.md): only a wrong self is checked before.
 * So every method begins with check_store / check_driver, which test the
 * driver once before the arguments are looked at.  That early test does not
 * replace live_db: checking the arguments may allocate, and a finalizer run
 * there may close the driver, so the handle is still fetched (and tested
 * again) last.  On the hot path the early test is two loads of lines the
 * call reads anyway and a branch never taken. */
static inline Store *check_store_keep(lua_State *L) {
  Store *s = (Store *)check_self_keep(L, STORE_MT);
  if (UNLIKELY_(!s->drv->db)) lraise_failed(L, "closed", "closed");
  return s;
}
static inline Store *check_store(lua_State *L) {
  Store *s = check_store_keep(L);
  lua_pop(L, 1);
  return s;
}
static inline Driver *check_driver(lua_State *L) {
  Driver *d = (Driver *)check_self(L, DRIVER_MT);
  if (UNLIKELY_(!d->db)) lraise_failed(L, "closed", "closed");
  return d;
}

const char *check_key_slow(lua_State *L, int i, size_t *len);
/* the key at i: a string of 1..ZKV_MAX_KEY bytes, or an integer (replaced on
 * the stack by its decimal string: that allocates) */
static inline const char *check_key(lua_State *L, int i, size_t *len) {
  if (LIKELY_(lua_type(L, i) == LUA_TSTRING)) {
    const char *k = lua_tolstring(L, i, len);
    if (LIKELY_(*len - 1 < ZKV_MAX_KEY)) return k;   /* 1..65535 (0 wraps) */
  }
  return check_key_slow(L, i, len);
}

/* self (a Store of a live driver) and the key at 2: the prologue of every key
 * method */
static inline Store *key_args(lua_State *L, const char **k, size_t *kl) {
  Store *s = check_store(L);
  *k = check_key(L, 2, kl);
  return s;
}
/* ... declaring them: Store *s, the key k of kl bytes */
#define KEY_ARGS(L)  \
  const char *k;     \
  size_t kl;         \
  Store *s = key_args(L, &k, &kl)
/* KEY_ARGS for get, which reads no argument after the key and returns its
 * last push: self's metatable stays on the stack above the arguments, which
 * saves get the pop (lua_settop: on Lua 5.4 it also looks for to-be-closed
 * variables), unless it took the key's place (no key given) */
#define KEY_ARGS_GET(L)                                     \
  const char *k;                                            \
  size_t kl;                                                \
  Store *s = check_store_keep(L);                           \
  if (UNLIKELY_(lua_gettop(L) < 3)) lua_pop(L, 1);          \
  k = check_key(L, 2, &kl)

/* an integral number that an int64_t holds exactly: 1 and *out, else 0
 * (Lua integers are always integral; a float must be whole and in range) */
int num_to_int64(lua_State *L, int i, int64_t *out);

int64_t opt_ttl_slow(lua_State *L, int i, int required);
/* the optional ttl at i: nil, seconds, or { ttl = seconds } -> milliseconds,
 * 0 for none; required turns none into INVALID_TTL */
static inline int64_t opt_ttl(lua_State *L, int i, int required) {
  /* none (no argument there: lua_gettop is the cheapest test) or nil */
  if (LIKELY_(!required && (lua_gettop(L) < i || lua_type(L, i) == LUA_TNIL))) return 0;
  return opt_ttl_slow(L, i, required);
}

/* a namespace name at i (1..ZKV_MAX_KEY bytes) */
const char *check_ns_name(lua_State *L, int i, size_t *len);
/* a segment name at i */
const char *check_seg_name(lua_State *L, int i);

/* A malloc'ed thing held while Lua allocates: its owner is a userdata pushed
 * on the stack before the thing is made, so that an error raised at one of
 * those allocations (out of memory; on Lua 5.1-5.3 and LuaJIT the error of a
 * finalizer they run, which Lua passes on from there) frees it at the owner's
 * __gc instead of leaking it.  Set p (and release, free() when NULL) once
 * it is made; give it up (p = NULL) when it is freed by the function. */
typedef struct Owned { void *p; void (*release)(void *); } Owned;
Owned *owned_push(lua_State *L);
void owned_init(lua_State *L);

/* grow *buf (capacity *cap, first size first) to hold at least need bytes;
 * 0 on success, -1 when out of memory (the buffer is then unchanged) */
int buf_reserve(char **buf, size_t *cap, size_t need, size_t first);

/* ---- values (value.c) -------------------------------------------------- */

/* turn the Lua value at idx into a zkv_value; the bytes stay valid while the
 * value is on the stack (strings) or until the next encoding on this driver
 * (tables, in d->buf).  Raises INVALID_VALUE saying where. */
void to_value(lua_State *L, Driver *d, int idx, zkv_value *v);
/* push the n bytes at p, which a call into the engine just returned (the
 * arena, or the handle's buffer), as a string, copied before anything can
 * run on the Lua heap.  Lua 5.3 and 5.4 copy in lua_pushlstring before they
 * collect; Lua 5.1, 5.2 and LuaJIT collect first, and a finalizer run there
 * may write to the store (the arena grows and moves, the block is reused) or
 * close the driver (the buffer is freed): there push_read copies first. */
#if LUA_VERSION_NUM >= 503
static inline void push_read(lua_State *L, const void *p, size_t n) {
  lua_pushlstring(L, (const char *)p, n);
}
#else
void push_read(lua_State *L, const void *p, size_t n);
#endif
/* push a value read from the engine; v->data is read before anything is
 * allocated on the Lua heap (see the banner, and push_read).  A string is
 * pushed here (inline: get's common case), every other type by
 * push_value_slow. */
int push_value_slow(lua_State *L, const zkv_value *v);
static inline int push_value(lua_State *L, const zkv_value *v) {
  if (LIKELY_(v->type == ZKV_T_STRING)) {
    push_read(L, v->data, v->len);
    return 1;
  }
  return push_value_slow(L, v);
}
/* push a double: a Lua integer when it is one exactly (Lua 5.3+) */
void push_double(lua_State *L, double x);
int l_encode(lua_State *L);
int l_decode(lua_State *L);
int scratch_gc(lua_State *L);

/* t[name] = v for the table on top of the stack (stats and the like); L in scope */
#define SETINT(name, v) (zl_pushinteger(L, (v)), lua_setfield(L, -2, name))
#define SETNUM(name, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, name))

/* ---- stores and drivers (store.c) ------------------------------------------ */

/* a namespace made inside a rolled-back atomic() is gone: make it anew, retry
 * (the store is at stack index si) */
int reresolve(lua_State *L, int si, Store *s);
#define CALL_AT(si, rc, call)                                               \
  do {                                                                      \
    rc = (call);                                                            \
    if (UNLIKELY_(rc == ZKV_ESTALE) && reresolve(L, si, s) == ZKV_OK) rc = (call); \
  } while (0)
#define CALL(rc, call) CALL_AT(1, rc, call)

Store *new_store(lua_State *L, int drv_idx, int parent_idx, int name_idx, Driver *d,
                 zkv_ns ns);
/* the result of a call that finds a key or not: true / false, or the error */
int push_found(lua_State *L, int rc, const char *what);
/* the result of a call that counts: n, or the error */
int push_count(lua_State *L, int rc, uint64_t n, const char *what);

extern const luaL_Reg zl_store_methods[], zl_driver_methods[], zl_raw_methods[],
    zl_driver_raw_methods[];
int store_atomic_as(lua_State *L);
int store_ttl_flags(lua_State *L, unsigned flags);   /* s:ttl() with zkv_ttl_ex's flags */
int store_tostring(lua_State *L);
int driver_tostring(lua_State *L);
int driver_gcmeta(lua_State *L);
int driver_closemeta(lua_State *L);

/* a collector of keys for zkv_keys: length-prefixed keys in one buffer */
typedef struct KeyBatch { char *buf; size_t len, cap; size_t n; } KeyBatch;
int collect_key(void *ud, const void *key, size_t klen);
/* append the keys of b to the table on top of the stack, after index *n */
void push_batch(lua_State *L, const KeyBatch *b, lua_Integer *n);
#define KEYS_BATCH 256

/* ---- dump and load (snapshot.c) -------------------------------------------- */

/* kv:dump and kv:load, methods of every C driver */
extern const luaL_Reg zl_snapshot_driver_methods[];
/* the dump file classes, and the module's _json, _json_decode, _dump_writer,
 * _dump_reader, _progress, _isatty, _segments and _wall_ms into the table at
 * module_idx */
void snapshot_init(lua_State *L, int module_idx);

#endif
