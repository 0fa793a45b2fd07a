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
 * zeltkv.Error (its __tostring gives "zeltkv: CODE: message").  reason is set
 * for STORE_OPERATION_FAILED only: one word a program can test. */

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

/* raise the error whose message is on top of the stack */
static int raise_msg(lua_State *L, int cls, const char *reason) {
  if (cls != C_FAILED) reason = NULL;
  else if (!reason) reason = "failed";
  push_error(L, cls, reason, lua_gettop(L));
  return lua_error(L);
}

int zkv_l_raise(lua_State *L, int cls, const char *reason, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return raise_msg(L, cls, reason);
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

int raise_rc(lua_State *L, int rc, const char *what) {
  int cls = zkv_errclass(rc);
  if (cls == ZKV_CLASS_NONE) cls = C_FAILED;
  if (rc == ZKV_EIO) {
    /* a system call: name it, its path and the system's message */
    int e;
    const char *detail = zkv_errdetail(&e);
    if (*detail)
      return zkv_l_raise(L, cls, e == EACCES || e == EPERM || e == EROFS ? "permission" : "system",
                         "%s: %s", what, detail);
  }
  return zkv_l_raise(L, cls, rc_reason(rc), "%s: %s", what, zkv_strerror(rc));
}

int error_tostring(lua_State *L) {
  lua_getfield(L, 1, "code");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "zeltkv: %s: %s", luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, "?"));
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
  return raise_msg(L, cls, reason);
}

/* core._raise_rc(rc, what): raises the error of an engine result code as the
 * C methods do ("<what>: <zkv_strerror>", its class and reason) */
int l_raise_rc(lua_State *L) {
  int rc = (int)luaL_checkinteger(L, 1);
  return raise_rc(L, rc, luaL_checkstring(L, 2));
}

/* ---- numbers ------------------------------------------------------------- */

int double_is_whole53(double x) { return x == floor(x) && fabs(x) <= 9007199254740992.0; }

int double_is_exact_int(double x) { return double_is_whole53(x) && !(x == 0 && signbit(x)); }

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
   * key.  Only then is the ttl itself checked. */
  const char *unknown = NULL;
  size_t ulen = 0;
  int other = LUA_TNONE;
  lua_pushnil(L);
  while (lua_next(L, i)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      if (other == LUA_TNONE) other = lua_type(L, -1);
      continue;
    }
    size_t n;
    const char *k = lua_tolstring(L, -1, &n);
    if (n == 3 && memcmp(k, "ttl", 3) == 0) continue;
    int c = unknown ? memcmp(k, unknown, n < ulen ? n : ulen) : -1;
    if (c < 0 || (c == 0 && n < ulen)) {
      unknown = k;   /* stays valid: the key is in the table */
      ulen = n;
    }
  }
  if (unknown) lraise(L, C_VALUE, "unknown option '%s'", unknown);
  if (other != LUA_TNONE) lraise(L, C_VALUE, "unknown option (a %s key)", lua_typename(L, other));
  lua_pushliteral(L, "ttl");
  lua_rawget(L, i);
  if (lua_isnil(L, -1)) lraise(L, C_TTL, "ttl missing: the table has no 'ttl' field");
  int64_t ms = ttl_ms_of(L, lua_gettop(L));
  lua_pop(L, 1);
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
  int ok = n >= 1 && n <= ZKV_MAX_NAME && strlen(s) == n;
  for (size_t j = 0; ok && j < n; j++) {
    char c = s[j];
    ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
  }
  if (!ok) lraise(L, C_KEY, "segment name must be 1 to 128 characters of A-Z a-z 0-9 . _ -");
  return s;
}

/* ---- buffers -------------------------------------------------------------- */

int buf_reserve(char **buf, size_t *cap, size_t need, size_t first) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : first;
  while (c < need) c *= 2;
  char *b = realloc(*buf, c);
  if (!b) return -1;
  *buf = b;
  *cap = c;
  return 0;
}
