/*
 * check.c -- the binding's errors and the argument checks every method
 * shares: keys, ttls, integers, namespace and segment names.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

/* ---- errors ----------------------------------------------------------------
 * An error is a table { code =, message = [, reason =] } with the metatable
 * zeltkv.Error (its __tostring gives "zeltkv: CODE: message"); reason is set
 * for STORE_OPERATION_FAILED only: one word a program can test.
 *
 * Hosts print only string errors: nginx logs "unknown reason" for any other
 * value and lua5.1 "(error object is not a string)"; lua5.3+ and luajit call
 * __tostring but add no position to it.  So an error that nothing is going to
 * catch is raised as a string instead, "FILE:LINE: zeltkv: CODE: message"
 * (the file and line of the user's call), which every host prints, with its
 * traceback.  "Going to be caught" means a pcall or xpcall on this
 * coroutine's stack (other C functions pass errors on; an atomic() on the way
 * raises the same value again).  zeltkv's own frames (the Lua files that call
 * core._own(), and C functions) are skipped to find the user's line. */

#define CATCHERS "zeltkv.catchers"   /* registry: { [pcall] = true, [xpcall] = true } */
#define OWN "zeltkv.own"             /* registry: { [chunk source] = true } of zeltkv's files */

/* whether a pcall / xpcall is on the stack from level `from` up; *user gets
 * the first frame of a Lua function that is not zeltkv's own */
static int will_be_caught(lua_State *L, int from, lua_Debug *user, int *have_user) {
  lua_Debug ar;
  int caught = 0;
  *have_user = 0;
  if (!lua_checkstack(L, 4)) return 1;
  lua_getfield(L, LUA_REGISTRYINDEX, CATCHERS);
  lua_getfield(L, LUA_REGISTRYINDEX, OWN);
  int ci = lua_gettop(L) - 1, oi = ci + 1;
  for (int level = from; !caught && lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Slf", &ar)) break;
    if (ar.what[0] == 'C') {
      lua_rawget(L, ci);   /* catchers[function] */
      caught = lua_toboolean(L, -1);
    } else if (!*have_user && ar.currentline > 0) {
      lua_pop(L, 1);
      lua_getfield(L, oi, ar.source);
      if (!lua_toboolean(L, -1)) {
        *user = ar;
        *have_user = 1;
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return caught;
}

/* push the error table of class cls; message is at stack index mi */
static void push_error(lua_State *L, int cls, const char *reason, int mi) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, zkv_errclass_name(cls));
  lua_setfield(L, -2, "code");
  lua_pushvalue(L, mi);
  lua_setfield(L, -2, "message");
  if (reason) {
    lua_pushstring(L, reason);
    lua_setfield(L, -2, "reason");
  }
  luaL_getmetatable(L, ERROR_MT);
  lua_setmetatable(L, -2);
}

/* raise the error whose message is on top of the stack; the stack is looked
 * at from level `from` (1: the caller of the C function raising) */
static int raise_msg(lua_State *L, int cls, const char *reason, int from) {
  if (cls != C_FAILED) reason = NULL;
  else if (!reason) reason = "failed";
  lua_Debug user;
  int have_user;
  if (will_be_caught(L, from, &user, &have_user)) {
    push_error(L, cls, reason, lua_gettop(L));
  } else {
    /* the message may hold NUL bytes (a key or a name): concatenated, not %s */
    int mi = lua_gettop(L);
    if (have_user)
      lua_pushfstring(L, "%s:%d: zeltkv: %s: ", user.short_src, user.currentline,
                      zkv_errclass_name(cls));
    else
      lua_pushfstring(L, "zeltkv: %s: ", zkv_errclass_name(cls));
    lua_pushvalue(L, mi);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

int zl_raise(lua_State *L, int cls, const char *reason, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return raise_msg(L, cls, reason, 1);
}

int zl_raise_here(lua_State *L, int cls, const char *reason, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return raise_msg(L, cls, reason, 0);
}

/* raise the error whose message is the string on top of the stack (it may
 * hold any bytes: a %s of lua_pushfstring would stop at a NUL) */
int zl_raise_top(lua_State *L, int cls, const char *reason) {
  return raise_msg(L, cls, reason, 1);
}

int raise_unknown_option(lua_State *L, const char *name, size_t len, const char *suffix) {
  lua_pushliteral(L, "unknown option '");
  lua_pushlstring(L, name, len);
  lua_pushfstring(L, "'%s", suffix);
  lua_concat(L, 3);
  return raise_msg(L, C_VALUE, NULL, 1);
}

/* registry[name]: a table, made when absent (the module may be opened again
 * in one state: package.loaded cleared; what is there stays) */
static void registry_table(lua_State *L, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, name);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, name);
}

void errors_init(lua_State *L) {
  registry_table(L, CATCHERS);
  for (int i = 0; i < 2; i++) {
    lua_getglobal(L, i ? "xpcall" : "pcall");
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else {
      lua_pushboolean(L, 1);
      lua_rawset(L, -3);
    }
  }
  lua_pop(L, 1);
  registry_table(L, OWN);
  lua_pop(L, 1);
  luaL_newmetatable(L, ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

/* core._own(): the Lua file calling it is zeltkv's own: its frames are not
 * the user's call an error names (lua/zeltkv.lua, ffi.lua, the Redis driver) */
int l_own(lua_State *L) {
  lua_Debug ar;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "S", &ar) && ar.what[0] != 'C') {
    lua_getfield(L, LUA_REGISTRYINDEX, OWN);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, ar.source);
  }
  return 0;
}

const char *rc_reason(int rc) {
  switch (rc) {
  case ZKV_EFULL: return "full";
  case ZKV_ETIMEDOUT: return "timeout";
  case ZKV_ECLOSED: return "closed";
  case ZKV_ECORRUPT: return "damaged";
  case ZKV_EVERSION: return "version";
  case ZKV_ENOMEM: return "memory";
  case ZKV_EIO: return "system";
  case ZKV_ETXN: return "transaction";
  default: return zkv_errclass(rc) == ZKV_CLASS_STORE_OPERATION_FAILED ? "failed" : NULL;
  }
}

/* the reason word of a failure the engine detailed, by its errno */
static const char *errno_reason(int rc, int e) {
  if (e == EACCES || e == EPERM || e == EROFS) return "permission";
  if (e == ENOSPC) return "full";
  return rc == ZKV_EIO ? "system" : rc_reason(rc);
}

int raise_rc(lua_State *L, int rc, const char *what) {
  int cls = zkv_errclass(rc);
  if (cls == ZKV_CLASS_NONE) cls = C_FAILED;
  if (rc == ZKV_EIO) {
    /* a system call: name it, its path and the system's message */
    int e;
    const char *detail = zkv_errdetail(&e);
    if (*detail) return zl_raise(L, cls, errno_reason(rc, e), "%s: %s", what, detail);
  }
  return zl_raise(L, cls, rc_reason(rc), "%s: %s", what, zkv_strerror(rc));
}

int raise_open(lua_State *L, int rc, const char *what) {
  int e;
  const char *detail = zkv_errdetail(&e);
  if (!*detail) return raise_rc(L, rc, what);
  int cls = zkv_errclass(rc);
  if (cls == ZKV_CLASS_NONE) cls = C_FAILED;
  return zl_raise(L, cls, cls == C_FAILED ? errno_reason(rc, e) : NULL, "%s: %s", what, detail);
}

int error_tostring(lua_State *L) {
  lua_settop(L, 1);
  lua_getfield(L, 1, "code");
  lua_getfield(L, 1, "message");
  size_t n;
  const char *msg = luaL_optlstring(L, 3, "?", &n);
  lua_pushfstring(L, "zeltkv: %s: ", luaL_optstring(L, 2, "?"));
  lua_pushlstring(L, msg, n);   /* all of it: a message may hold NUL bytes */
  lua_concat(L, 2);
  return 1;
}

/* the class of a code name ("INVALID_VALUE", ...), or 0 */
static int class_of(const char *code) {
  for (int c = ZKV_CLASS_INVALID_TTL; c <= ZKV_CLASS_STORE_OPERATION_FAILED; c++)
    if (strcmp(code, zkv_errclass_name(c)) == 0) return c;
  return 0;
}

/* core._raise(code, message [, reason]): raises the same error object the C
 * methods raise, for the binding's Lua parts and pure-Lua drivers (the
 * Redis driver).  code is a name of zeltkv.errors; reason is kept for
 * STORE_OPERATION_FAILED ("failed" when absent). */
int l_raise(lua_State *L) {
  const char *code = luaL_checkstring(L, 1);
  int cls = class_of(code);
  luaL_argcheck(L, cls != 0, 1, "not a zeltkv error code");
  luaL_checkstring(L, 2);
  const char *reason = luaL_optstring(L, 3, NULL);
  lua_settop(L, 2);
  return raise_msg(L, cls, reason, 1);
}

/* core._raise_rc(rc, what): raises the error of an engine result code as the
 * C methods do ("<what>: <zkv_strerror>", its class and reason) */
int l_raise_rc(lua_State *L) {
  int rc = (int)luaL_checkinteger(L, 1);
  return raise_rc(L, rc, luaL_checkstring(L, 2));
}

/* ---- numbers ------------------------------------------------------------- */


int num_to_int64(lua_State *L, int i, int64_t *out) {
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
#ifndef ZKV_LUA51
  if (lua_isinteger(L, i)) {
    *out = (int64_t)lua_tointeger(L, i);
    return 1;
  }
#endif
  lua_Number x = lua_tonumber(L, i);
  /* [-2^63, 2^63): both bounds are exact doubles */
  if (x != floor(x) || !(x >= -9223372036854775808.0 && x < 9223372036854775808.0)) return 0;
  *out = (int64_t)x;
  return 1;
}

/* ---- keys, ttls, names ------------------------------------------------------ */

const char *check_key_slow(lua_State *L, int i, size_t *len) {
  int t = lua_type(L, i);
  if (t == LUA_TNUMBER) {
    /* an integer key is its decimal string: a Lua integer, or a whole float
     * within 2^53 (every whole double there is exact) */
    long long n;
#ifndef ZKV_LUA51
    if (lua_isinteger(L, i)) n = (long long)lua_tointeger(L, i);
    else
#endif
    {
      lua_Number x = lua_tonumber(L, i);
      if (!double_is_whole53(x))
        lraise(L, C_KEY, "key must be a string or an integer, got a non-integer number");
      n = (long long)x;
    }
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", n);
    lua_pushstring(L, tmp);
    lua_replace(L, i);
    return lua_tolstring(L, i, len);
  }
  if (t != LUA_TSTRING)
    lraise(L, C_KEY, "key must be a string or an integer, got %s", luaL_typename(L, i));
  lua_tolstring(L, i, len);
  lraise(L, C_KEY, "key must be 1 to 65535 bytes, got %d", (int)*len);
  return NULL;
}

/* seconds (a number) -> milliseconds, > 0 */
static int64_t ttl_ms_of(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TNUMBER)
    lraise(L, C_TTL, "ttl must be a number of seconds, got %s", luaL_typename(L, i));
  lua_Number n = lua_tonumber(L, i);
  if (!(n > 0) || !isfinite(n)) lraise(L, C_TTL, "ttl must be a finite number > 0");
  double ms = floor(n * 1000.0 + 0.5);
  if (ms < 1) ms = 1;
  if (ms > 4.0e15) ms = 4.0e15;  /* over 100,000 years: the same as forever, and no overflow */
  return (int64_t)ms;
}

int64_t opt_ttl_slow(lua_State *L, int i, int required) {
  int t = lua_type(L, i);
  if (t == LUA_TNONE || t == LUA_TNIL) {
    if (required) lraise(L, C_TTL, "ttl missing");
    return 0;
  }
  if (t != LUA_TTABLE) return ttl_ms_of(L, i);
  /* { ttl = seconds }.  An unknown field is INVALID_VALUE whatever the ttl
   * is (the table is wrong as a whole), and the field named is the same on
   * every run: the first unknown string key in byte order, else a non-string
   * key.  Only then is the ttl itself checked.  The ttl field's value is
   * taken by the walk, not looked up by name: pushing the name "ttl" would
   * allocate, and a finalizer run then could re-encode into the buffer that
   * set()'s value already lies in. */
  const char *unknown = NULL;
  size_t ulen = 0;
  int other = LUA_TNONE;
  lua_pushnil(L);   /* the ttl field's value */
  int vi = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, i)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      if (other == LUA_TNONE) other = lua_type(L, -2);
      lua_pop(L, 1);
      continue;
    }
    size_t n;
    const char *k = lua_tolstring(L, -2, &n);
    if (n == 3 && memcmp(k, "ttl", 3) == 0) {
      lua_replace(L, vi);
      continue;
    }
    lua_pop(L, 1);
    int c = unknown ? memcmp(k, unknown, n < ulen ? n : ulen) : -1;
    if (c < 0 || (c == 0 && n < ulen)) {
      unknown = k;   /* stays valid: the key is in the table */
      ulen = n;
    }
  }
  if (unknown) raise_unknown_option(L, unknown, ulen, "");
  if (other != LUA_TNONE) lraise(L, C_VALUE, "unknown option (a %s key)", lua_typename(L, other));
  if (lua_isnil(L, vi)) lraise(L, C_TTL, "ttl missing: the table has no 'ttl' field");
  int64_t ms = ttl_ms_of(L, vi);
  lua_settop(L, vi - 1);
  return ms;
}

const char *check_ns_name(lua_State *L, int i, size_t *len) {
  if (lua_type(L, i) != LUA_TSTRING)
    lraise(L, C_KEY, "namespace name must be a string, got %s", luaL_typename(L, i));
  const char *name = lua_tolstring(L, i, len);
  if (*len == 0) lraise(L, C_EMPTY_NS, "namespace name is empty");
  if (*len > ZKV_MAX_KEY) lraise(L, C_KEY, "namespace name must be 1 to 65535 bytes");
  return name;
}

const char *check_seg_name(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TSTRING)
    lraise(L, C_KEY, "segment name must be a string, got %s", luaL_typename(L, i));
  size_t n;
  const char *s = lua_tolstring(L, i, &n);
  /* the engine's own rule (no NUL among those characters) */
  if (!zkv_segment_name_ok(s, n))
    lraise(L, C_KEY, "segment name must be 1 to %d characters of A-Z a-z 0-9 . _ -", (int)ZKV_MAX_NAME);
  return s;
}

/* ---- buffers -------------------------------------------------------------- */

#define OWNED_MT "zeltkv.Owned"

static int owned_gc(lua_State *L) {
  Owned *o = (Owned *)lua_touserdata(L, 1);
  if (o->p) (o->release ? o->release : free)(o->p);
  o->p = NULL;
  return 0;
}

void owned_init(lua_State *L) {
  luaL_newmetatable(L, OWNED_MT);
  lua_pushcfunction(L, owned_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

Owned *owned_push(lua_State *L) {
  Owned *o = (Owned *)lua_newuserdatauv(L, sizeof(Owned), 0);
  o->p = NULL;
  o->release = NULL;
  luaL_getmetatable(L, OWNED_MT);
  lua_setmetatable(L, -2);
  return o;
}

int buf_reserve(char **buf, size_t *cap, size_t need, size_t first) {
  char *b = grow_array(*buf, cap, need, 1, first);
  if (!b) return -1;
  *buf = b;
  return 0;
}
