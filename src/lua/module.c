/*
 * module.c -- the module table zeltkv.core: the classes zeltkv.Driver and
 * zeltkv.Store, the driver constructors and their options, and the
 * constants the binding's Lua parts read (core._const).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

/* ---- driver options ---------------------------------------------------------- */

static int parse_size(const char *s, uint64_t *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || !(v > 0) || !isfinite(v)) return 0;
  double mul = 1;
  switch (*end) {
  case 'k': case 'K': mul = 1024.0; end++; break;
  case 'm': case 'M': mul = 1048576.0; end++; break;
  case 'g': case 'G': mul = 1073741824.0; end++; break;
  default: break;
  }
  if (*end == 'b' || *end == 'B') end++;
  if (*end) return 0;
  v *= mul;
  if (v < 1 || v > 1.0e15) return 0;
  *out = (uint64_t)v;
  return 1;
}

static uint64_t opt_bytes(lua_State *L, int i, const char *name) {
  uint64_t n = 0;
  if (lua_type(L, i) == LUA_TNUMBER) {
    lua_Number x = lua_tonumber(L, i);
    if (x >= 1 && x <= 1.0e15 && x == floor(x)) return (uint64_t)x;
  } else if (lua_type(L, i) == LUA_TSTRING && strlen(lua_tostring(L, i)) == lua_rawlen(L, i) &&
             parse_size(lua_tostring(L, i), &n)) {
    return n;
  }
  lraise(L, C_VALUE, "option '%s' must be a positive number of bytes or a size such as \"64m\"",
        name);
  return 0;
}

static double opt_seconds(lua_State *L, int i, const char *name) {
  if (lua_type(L, i) == LUA_TNUMBER) {
    lua_Number x = lua_tonumber(L, i);
    if (x >= 0 && isfinite(x)) return x;
  }
  lraise(L, C_VALUE, "option '%s' must be a finite number of seconds >= 0", name);
  return 0;
}

/* the string at i is exactly name (a string holding a NUL byte never is) */
static int is_str(lua_State *L, int i, const char *name) {
  size_t n;
  const char *s = lua_tolstring(L, i, &n);
  return n == strlen(name) && memcmp(s, name, n) == 0;
}

/* read the driver options table at i into o and *atomic_timeout (the
 * binding's own option); shared says which driver */
static void read_options(lua_State *L, int i, zkv_options *o, double *atomic_timeout,
                         int shared) {
  zkv_options_init(o);
  *atomic_timeout = ZKV_ATOMIC_TIMEOUT;
  int t = lua_type(L, i);
  if (t == LUA_TNONE || t == LUA_TNIL) return;
  if (t != LUA_TTABLE) lraise(L, C_VALUE, "options must be a table, got %s", luaL_typename(L, i));
  lua_pushnil(L);
  while (lua_next(L, i)) {
    int v = lua_gettop(L);
    if (lua_type(L, -2) != LUA_TSTRING) lraise(L, C_VALUE, "unknown option (a %s key)", luaL_typename(L, -2));
    int ki = v - 1;
    const char *k = lua_tostring(L, ki);   /* known names hold no NUL: %s is whole for them */
    if (is_str(L, ki, "gc_interval")) {
      o->gc_interval = opt_seconds(L, v, k);
    } else if (is_str(L, ki, "evict")) {
      if (lua_type(L, v) == LUA_TSTRING && is_str(L, v, "none")) o->evict = ZKV_EVICT_NONE;
      else if (lua_type(L, v) == LUA_TSTRING && is_str(L, v, "lru")) o->evict = ZKV_EVICT_LRU;
      else lraise(L, C_VALUE, "option 'evict' must be \"none\" or \"lru\"");
    } else if (is_str(L, ki, "size") && shared) {
      o->size = opt_bytes(L, v, k);
    } else if (is_str(L, ki, "max_bytes") && !shared) {
      o->max_bytes = opt_bytes(L, v, k);
    } else if (is_str(L, ki, "mode") && shared) {
      if (lua_type(L, v) != LUA_TNUMBER || lua_tonumber(L, v) < 0 || lua_tonumber(L, v) > 0777 ||
          lua_tonumber(L, v) != floor(lua_tonumber(L, v)))
        lraise(L, C_VALUE, "option 'mode' must be permission bits such as 384 (0600)");
      o->mode = (unsigned)lua_tonumber(L, v);
    } else if (is_str(L, ki, "atomic_timeout")) {
      *atomic_timeout = opt_seconds(L, v, k);
    } else if (is_str(L, ki, "lock_timeout") && shared) {
      o->lock_timeout = opt_seconds(L, v, k);
    } else if (is_str(L, ki, "dir") && shared) {
      /* the string stays referenced by the options table until the open is done */
      if (lua_type(L, v) != LUA_TSTRING || lua_rawlen(L, v) == 0 ||
          strlen(lua_tostring(L, v)) != lua_rawlen(L, v))
        lraise(L, C_VALUE, "option 'dir' must be a directory path (a non-empty string)");
      o->dir = lua_tostring(L, v);
    } else if (is_str(L, ki, "create") && shared) {
      if (lua_type(L, v) != LUA_TBOOLEAN) lraise(L, C_VALUE, "option 'create' must be a boolean");
      if (!lua_toboolean(L, v)) o->flags |= ZKV_OPEN_EXISTING;
    } else if (is_str(L, ki, "size") || is_str(L, ki, "mode") || is_str(L, ki, "lock_timeout") ||
               is_str(L, ki, "dir") || is_str(L, ki, "create")) {
      lraise(L, C_VALUE, "unknown option '%s' (it is an option of zeltkv.shared)", k);
    } else if (is_str(L, ki, "max_bytes")) {
      lraise(L, C_VALUE, "unknown option '%s' (it is an option of zeltkv.memory; a shared store's capacity is 'size')", k);
    } else {
      size_t kl;
      k = lua_tolstring(L, ki, &kl);
      raise_unknown_option(L, k, kl, "");
    }
    lua_pop(L, 1);
  }
}

static Driver *new_driver(lua_State *L, double atomic_timeout) {
  Driver *d = (Driver *)lua_newuserdatauv(L, sizeof(Driver), 0);
  memset(d, 0, sizeof *d);   /* "closed" until the store is open (liolib's way) */
  d->atomic_timeout = atomic_timeout;
  luaL_getmetatable(L, DRIVER_MT);
  lua_setmetatable(L, -2);
  return d;
}

static int l_memory(lua_State *L) {
  zkv_options o;
  double at;
  read_options(L, 1, &o, &at, 0);
  Driver *d = new_driver(L, at);
  int rc = zkv_open_memory(&o, &d->db);
  if (rc) return raise_open(L, rc, "memory");
  return 1;
}

static int l_shared(lua_State *L) {
  const char *name = check_seg_name(L, 1);
  zkv_options o;
  double at;
  read_options(L, 2, &o, &at, 1);
  Driver *d = new_driver(L, at);
  int rc = zkv_open_shared(name, &o, &d->db);
  if (rc) return raise_open(L, rc, "shared");
  return 1;
}

static int l_unlink(lua_State *L) {
  const char *name = check_seg_name(L, 1);
  zkv_options o;
  double at;
  read_options(L, 2, &o, &at, 1);   /* only dir means anything here */
  int existed;
  int rc = zkv_unlink_ex(name, &o, &existed);
  if (rc) return raise_open(L, rc, "unlink");
  lua_pushboolean(L, existed);
  return 1;
}

static int l_set_clock_offset(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  luaL_argcheck(L, ms > -9.2e18 && ms < 9.2e18, 1, "offset out of range");   /* int64_t holds it */
  zkv_set_clock_offset((int64_t)ms);
  return 0;
}

/* ---- constants ------------------------------------------------------------
 * core._const: the result codes, value types and flags of include/zeltkv.h
 * under their names without ZKV_, for the binding's Lua parts (ffi.lua,
 * shdict.lua) to read at load instead of copying numbers; FFI is the
 * declaration of the entry points ffi.lua calls (binding.h). */
#define K(name) {#name, ZKV_##name}
static const struct { const char *name; lua_Integer v; } CONSTS[] = {
  K(OK), K(NOTFOUND), K(EXISTS), K(EINVAL_TTL), K(EEMPTY_NS), K(EINVAL_VALUE),
  K(EINVAL_KEY), K(ETYPE), K(ERANGE), K(EFULL), K(ETIMEDOUT), K(ECLOSED), K(ECORRUPT),
  K(EVERSION), K(ENOMEM), K(EIO), K(ETXN), K(EINVAL), K(ESTALE), K(EFORKED),
  K(T_NONE), K(T_STRING), K(T_INT), K(T_FLOAT), K(T_BOOL), K(T_JSON), K(T_LIST), K(T_USER),
  K(SET_NX), K(SET_XX), K(SET_KEEPTTL), K(SET_NOEVICT), K(SET_COARSE), K(GET_STALE),
  K(MAX_KEY), K(MAX_NAME),
};
#undef K

static void push_consts(lua_State *L) {
  lua_createtable(L, 0, (int)(sizeof CONSTS / sizeof CONSTS[0]) + 3);
  for (size_t i = 0; i < sizeof CONSTS / sizeof CONSTS[0]; i++) {
    lua_pushinteger(L, CONSTS[i].v);
    lua_setfield(L, -2, CONSTS[i].name);
  }
  /* incr's range: the int64 range (0 here) or, where numbers are doubles, 2^53 */
  lua_pushnumber(L, (lua_Number)ZKV_INT_LIMIT);
  lua_setfield(L, -2, "INT_LIMIT");
  /* the longest ttl, in ms: more is the same as forever */
  lua_pushnumber(L, 4.0e15);
  lua_setfield(L, -2, "MAX_TTL_MS");
  lua_pushstring(L, ZKV_STR(ZKV_LUA_FFI));
  lua_setfield(L, -2, "FFI");
}

#define NOJIT "zeltkv.nojit"

/* ---- classes ------------------------------------------------------------------- */

/* set each function into the table at -2 with upvalues: 1 the table at -1
 * (the class metatable, for check_self), 2 the weak-keyed table of the
 * functions atomic() took out of the JIT (store.c) */
static void set_methods(lua_State *L, const luaL_Reg *r) {
  for (; r->name; r++) {
    lua_pushvalue(L, -1);
    lua_getfield(L, LUA_REGISTRYINDEX, NOJIT);
    lua_pushcclosure(L, r->func, 2);
    lua_setfield(L, -3, r->name);
  }
}

/* the metatable `name`, with the methods as __index (raw: the raw methods in
 * a table of their own, behind the public ones) */
static void new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      const luaL_Reg *raw, lua_CFunction tostring, lua_CFunction gc,
                      lua_CFunction close) {
  luaL_newmetatable(L, name);          /* mt */
  lua_newtable(L);                     /* mt, methods */
  lua_pushvalue(L, -2);                /* mt, methods, mt */
  set_methods(L, methods);
  if (raw) {
    lua_createtable(L, 0, 1);          /* mt, methods, mt, {__index = raw} */
    lua_newtable(L);                   /* mt, methods, mt, {}, raw */
    lua_pushvalue(L, -3);
    set_methods(L, raw);
    lua_pop(L, 1);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -3);
  }
  lua_pop(L, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  if (close) {
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
  }
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

/* ---- module ------------------------------------------------------------------- */

ZKV_API int luaopen_zeltkv_core(lua_State *L);

int luaopen_zeltkv_core(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, NOJIT);
  if (!lua_istable(L, -1)) {
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, NOJIT);
  }
  lua_pop(L, 1);
  new_class(L, STORE_MT, zl_store_methods, zl_raw_methods, store_tostring, NULL, NULL);
  new_class(L, DRIVER_MT, zl_driver_methods, zl_driver_raw_methods, driver_tostring, driver_gcmeta,
            driver_closemeta);
  /* kv:dump and kv:load (snapshot.c) beside the driver's own methods */
  luaL_getmetatable(L, DRIVER_MT);     /* mt */
  lua_getfield(L, -1, "__index");      /* mt, methods */
  lua_pushvalue(L, -2);                /* mt, methods, mt */
  set_methods(L, zl_snapshot_driver_methods);
  lua_pop(L, 3);
  errors_init(L);
  /* core._closes (binding.h, CLOSES_KEY): one table per Lua state, however often the
   * module is loaded in it */
  lua_getfield(L, LUA_REGISTRYINDEX, CLOSES_KEY);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "n");
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, CLOSES_KEY);
  }
  int closes = lua_gettop(L);
  owned_init(L);

  static const luaL_Reg funcs[] = {
    {"memory", l_memory}, {"shared", l_shared}, {"unlink", l_unlink},
    {"_set_clock_offset", l_set_clock_offset}, {"_raise", l_raise}, {"_raise_rc", l_raise_rc},
    {"_own", l_own},
    {"_decode", l_decode}, {NULL, NULL}};
  lua_newtable(L);
  for (const luaL_Reg *r = funcs; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  snapshot_init(L, lua_gettop(L));
  /* core._encode keeps its encoding buffer as an upvalue (freed by __gc) */
  lua_newuserdatauv(L, sizeof(Scratch), 0);
  memset(lua_touserdata(L, -1), 0, sizeof(Scratch));
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, scratch_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, l_encode, 1);
  lua_setfield(L, -2, "_encode");
  lua_pushstring(L, ZKV_VERSION);
  lua_setfield(L, -2, "version");
  push_consts(L);
  lua_setfield(L, -2, "_const");
  /* the method tables, so that Lua parts (lua/zeltkv.lua) can add methods */
  luaL_getmetatable(L, STORE_MT);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "_Store");
  lua_pop(L, 1);
  lua_createtable(L, 0, 5);
  for (int c = ZKV_CLASS_INVALID_TTL; c <= ZKV_CLASS_STORE_OPERATION_FAILED; c++) {
    lua_pushstring(L, zkv_errclass_name(c));
    lua_setfield(L, -2, zkv_errclass_name(c));
  }
  lua_setfield(L, -2, "errors");
  lua_pushvalue(L, closes);
  lua_setfield(L, -2, "_closes");
  lua_remove(L, closes);
  return 1;
}
