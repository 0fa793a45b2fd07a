/*
 * lzeltkv.c -- the Lua binding: the module table, zeltkv.Driver and
 * zeltkv.Store, argument checks, Lua values <-> stored bytes, error objects.
 *
 * The engine knows nothing of Lua; this file knows nothing of hash tables.
 * Hot path (get/set/incr/setnx): the self check compares metatables held as
 * an upvalue (no registry lookup by name), keys go to the engine as they lie
 * on the Lua stack, and nothing is allocated on the Lua heap but the result.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "compat.h"
#include "zeltkv.h"

#define DRIVER_MT "zeltkv.Driver"
#define STORE_MT "zeltkv.Store"
#define ERROR_MT "zeltkv.Error"

typedef struct Driver {
  zkv_db *db;           /* NULL once closed */
  int atomic_depth;     /* atomic() frames running on this driver */
  char *buf;            /* scratch for encoding tables */
  size_t buf_len, buf_cap;
} Driver;

typedef struct Store {
  Driver *drv;          /* kept alive by the store's user value */
  zkv_ns ns;
} Store;

static Store *new_store(lua_State *L, int drv_idx, int parent_idx, int name_idx, Driver *d,
                        zkv_ns ns);
static int reresolve(lua_State *L, int idx, Store *s);

/* a namespace made inside a rolled-back atomic() is gone: make it anew, retry */
#define CALL(rc, call)                                              \
  do {                                                              \
    rc = (call);                                                    \
    if (rc == ZKV_ESTALE && reresolve(L, 1, s) == ZKV_OK) rc = (call); \
  } while (0)

static const char *const CODES[] = {"", "INVALID_TTL", "EMPTY_NAMESPACE", "INVALID_VALUE",
                                    "INVALID_KEY", "STORE_OPERATION_FAILED"};
enum { C_TTL = 1, C_EMPTY_NS, C_VALUE, C_KEY, C_FAILED };

/* ---- errors -------------------------------------------------------------- */

/* raise {code=, message=} with the shared error metatable */
static int raise(lua_State *L, int cls, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, CODES[cls]);
  lua_setfield(L, -2, "code");
  lua_pushvfstring(L, fmt, ap);
  lua_setfield(L, -2, "message");
  va_end(ap);
  luaL_getmetatable(L, ERROR_MT);
  lua_setmetatable(L, -2);
  return lua_error(L);
}

static int raise_rc(lua_State *L, int rc, const char *what) {
  int cls = zkv_errclass(rc);
  if (cls == ZKV_CLASS_NONE) cls = C_FAILED;
  return raise(L, cls, "%s: %s", what, zkv_strerror(rc));
}

static int error_tostring(lua_State *L) {
  lua_getfield(L, 1, "code");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "zeltkv: %s: %s", luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, "?"));
  return 1;
}

/* ---- self checks ----------------------------------------------------------- */

/* methods get their class metatable as upvalue 1 */
static void *check_self(lua_State *L, const char *tname) {
  void *p = lua_touserdata(L, 1);
  if (p && lua_getmetatable(L, 1)) {
    int ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (ok) return p;
  }
  luaL_typeerror(L, 1, tname);
  return NULL;
}

static zkv_db *open_db(lua_State *L, Driver *d) {
  if (!d->db) raise(L, C_FAILED, "closed");
  return d->db;
}

/* the result of a call that finds a key or not: true / false, or the error */
static int push_found(lua_State *L, int rc, const char *what) {
  if (rc < 0) return raise_rc(L, rc, what);
  lua_pushboolean(L, rc == ZKV_OK);
  return 1;
}

/* the result of a call that counts: n, or the error */
static int push_count(lua_State *L, int rc, uint64_t n, const char *what) {
  if (rc) return raise_rc(L, rc, what);
  zkv_pushinteger(L, n);
  return 1;
}

static Store *check_store(lua_State *L, zkv_db **db) {
  Store *s = (Store *)check_self(L, STORE_MT);
  *db = open_db(L, s->drv);
  return s;
}

/* ---- keys, ttls, options ------------------------------------------------- */

static const char *check_key(lua_State *L, int i, size_t *len) {
  int t = lua_type(L, i);
  const char *k;
  if (t == LUA_TSTRING) {
    k = lua_tolstring(L, i, len);
  } else if (t == LUA_TNUMBER && zkv_isinteger(L, i)) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", zkv_tointeger(L, i));
    lua_pushstring(L, tmp);
    lua_replace(L, i);
    k = lua_tolstring(L, i, len);
  } else if (t == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, i);
    if (n == floor(n) && fabs(n) <= 9007199254740992.0) {
      char tmp[32];
      snprintf(tmp, sizeof tmp, "%lld", (long long)n);
      lua_pushstring(L, tmp);
      lua_replace(L, i);
      return lua_tolstring(L, i, len);
    }
    raise(L, C_KEY, "key must be a string or an integer, got a non-integer number");
    return NULL;
  } else {
    raise(L, C_KEY, "key must be a string or an integer, got %s", luaL_typename(L, i));
    return NULL;
  }
  if (*len == 0 || *len > ZKV_MAX_KEY)
    raise(L, C_KEY, "key must be 1 to 65535 bytes, got %d", (int)*len);
  return k;
}

/* seconds (a number) -> milliseconds, > 0 */
static int64_t ttl_ms_of(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TNUMBER) {
    raise(L, C_TTL, "ttl must be a number of seconds, got %s", luaL_typename(L, i));
    return 0;
  }
  lua_Number n = lua_tonumber(L, i);
  if (!(n > 0) || !isfinite(n)) {
    raise(L, C_TTL, "ttl must be a finite number > 0");
    return 0;
  }
  double ms = floor(n * 1000.0 + 0.5);
  if (ms < 1) ms = 1;
  if (ms > 4.0e15) ms = 4.0e15;  /* over 100,000 years: the same as forever, and no overflow */
  return (int64_t)ms;
}

/* the optional ttl argument: nil, seconds, or { ttl = seconds }.  Returns 0
 * for none, or raises. `required` turns none into INVALID_TTL. */
static int64_t opt_ttl(lua_State *L, int i, int required) {
  int t = lua_type(L, i);
  if (t == LUA_TNONE || t == LUA_TNIL) {
    if (required) raise(L, C_TTL, "ttl missing");
    return 0;
  }
  if (t == LUA_TTABLE) {
    int64_t ms = 0;
    int have = 0;
    lua_pushnil(L);
    while (lua_next(L, i)) {
      if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "ttl") != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING)
          raise(L, C_VALUE, "unknown option '%s'", lua_tostring(L, -1));
        raise(L, C_VALUE, "unknown option (a %s key)", luaL_typename(L, -1));
      }
      ms = ttl_ms_of(L, lua_gettop(L));
      have = 1;
      lua_pop(L, 1);
    }
    if (!have) raise(L, C_TTL, "ttl missing: the table has no 'ttl' field");
    return ms;
  }
  return ttl_ms_of(L, i);
}

/* ---- values: encoding ----------------------------------------------------- */
/* Top-level scalars are a type tag and raw bytes; tables become JSON text.
 * The encoder is ours (it must refuse, and say where, anything JSON or cJSON
 * would not give back exactly); the decoder is cJSON. */

#define MAX_DEPTH 100
#define LIKELY_(x) __builtin_expect(!!(x), 1)

typedef struct Enc {
  lua_State *L;
  Driver *d;
  int depth;
  const void *seen[MAX_DEPTH + 1];
  /* path to the current element, for error messages */
  struct { int is_index; lua_Integer index; const char *name; size_t len; } path[MAX_DEPTH + 1];
} Enc;

static void put_grow(Enc *e, const char *p, size_t n);

/* append to the encoding buffer; the common case (room left) inline */
static inline void put(Enc *e, const char *p, size_t n) {
  Driver *d = e->d;
  if (LIKELY_(d->buf_len + n <= d->buf_cap)) {
    memcpy(d->buf + d->buf_len, p, n);
    d->buf_len += n;
    return;
  }
  put_grow(e, p, n);
}

static void put_grow(Enc *e, const char *p, size_t n) {
  Driver *d = e->d;
  if (d->buf_len + n > d->buf_cap) {
    size_t cap = d->buf_cap ? d->buf_cap * 2 : 256;
    while (cap < d->buf_len + n) cap *= 2;
    char *b = realloc(d->buf, cap);
    if (!b) raise(e->L, C_FAILED, "out of memory");
    d->buf = b;
    d->buf_cap = cap;
  }
  memcpy(d->buf + d->buf_len, p, n);
  d->buf_len += n;
}
#define PUTS(e, s) put(e, s, sizeof(s) - 1)

static int ident(const char *s, size_t n) {
  if (n == 0 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z'))) return 0;
  for (size_t i = 1; i < n; i++)
    if (!(s[i] == '_' || ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z') || (s[i] >= '0' && s[i] <= '9')))
      return 0;
  return 1;
}

static int enc_fail(Enc *e, const char *what) {
  lua_State *L = e->L;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "value");
  for (int i = 1; i <= e->depth; i++) {
    char tmp[64];
    if (e->path[i].is_index) {
      snprintf(tmp, sizeof tmp, "[%lld]", (long long)e->path[i].index);
      luaL_addstring(&b, tmp);
    } else if (ident(e->path[i].name, e->path[i].len)) {
      luaL_addchar(&b, '.');
      luaL_addlstring(&b, e->path[i].name, e->path[i].len);
    } else {
      luaL_addstring(&b, "[\"");
      luaL_addlstring(&b, e->path[i].name, e->path[i].len > 40 ? 40 : e->path[i].len);
      luaL_addstring(&b, "\"]");
    }
  }
  luaL_addstring(&b, ": ");
  luaL_addstring(&b, what);
  luaL_pushresult(&b);
  return raise(L, C_VALUE, "%s", lua_tostring(L, -1));
}

static void enc_string(Enc *e, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  PUTS(e, "\"");
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    if (c == 0) enc_fail(e, "strings inside tables cannot hold NUL bytes");
    put(e, s + run, i - run);
    run = i + 1;
    if (c == '"') PUTS(e, "\\\"");
    else if (c == '\\') PUTS(e, "\\\\");
    else {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      put(e, u, 6);
    }
  }
  put(e, s + run, n - run);
  PUTS(e, "\"");
}

static void enc_value(Enc *e, int idx);

static void enc_number(Enc *e, int idx) {
  char tmp[40];
  int n;
  if (zkv_isinteger(e->L, idx)
#ifdef ZKV_LUA51
      && 0
#endif
  ) {
    long long v = zkv_tointeger(e->L, idx);
    if (v > 9007199254740992LL || v < -9007199254740992LL)
      enc_fail(e, "integers beyond 2^53 inside tables cannot be stored exactly");
    /* integers are most numbers in tables: format them without printf */
    char *q = tmp + sizeof tmp;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do { *--q = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) *--q = '-';
    put(e, q, (size_t)(tmp + sizeof tmp - q));
    return;
  } else {
    lua_Number x = lua_tonumber(e->L, idx);
    if (!isfinite(x)) enc_fail(e, isnan(x) ? "NaN cannot be stored" : "infinity cannot be stored");
    if (x == floor(x) && fabs(x) <= 9007199254740992.0 && !(x == 0 && signbit(x))) {
      long long v = (long long)x;
      char *q = tmp + sizeof tmp;
      unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
      do { *--q = (char)('0' + u % 10); u /= 10; } while (u);
      if (v < 0) *--q = '-';
      put(e, q, (size_t)(tmp + sizeof tmp - q));
      return;
    } else if (x == floor(x) && fabs(x) <= 9007199254740992.0)
      n = snprintf(tmp, sizeof tmp, "%.0f", (double)x);
    else
      n = snprintf(tmp, sizeof tmp, "%.17g", (double)x);
  }
  put(e, tmp, (size_t)n);
}

static void enc_table(Enc *e, int idx) {
  lua_State *L = e->L;
  const void *self = lua_topointer(L, idx);
  for (int i = 0; i < e->depth; i++)
    if (e->seen[i] == self) enc_fail(e, "cyclic tables cannot be stored");
  if (e->depth >= MAX_DEPTH) enc_fail(e, "nesting deeper than 100 cannot be stored");
  luaL_checkstack(L, 6, "value too deep");
  e->seen[e->depth] = self;
  if (lua_rawlen(L, idx) == 0) {
    /* no array part: most likely an object, written in one pass; the first
     * key that is not a string sends us to the classifying path below, which
     * names the error exactly */
    size_t mark = e->d->buf_len;
    int first = 1;
    e->depth++;
    PUTS(e, "{");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) != LUA_TSTRING) {
        lua_pop(L, 2);
        e->depth--;
        e->d->buf_len = mark;
        goto classify;
      }
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      e->path[e->depth].is_index = 0;
      e->path[e->depth].name = k;
      e->path[e->depth].len = kl;
      if (!first) PUTS(e, ",");
      first = 0;
      if (memchr(k, 0, kl)) enc_fail(e, "keys inside tables cannot hold NUL bytes");
      enc_string(e, k, kl);
      PUTS(e, ":");
      enc_value(e, lua_gettop(L));
      lua_pop(L, 1);
    }
    PUTS(e, "}");
    e->depth--;
    return;
  }
classify:;
  /* classify: keys exactly 1..n (an array), else refuse, naming why */
  size_t count = 0, nstr = 0;
  lua_Integer maxk = 0;
  int other = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
    int kt = lua_type(L, -1);
    if (kt == LUA_TSTRING) nstr++;
    else if (kt == LUA_TNUMBER && zkv_isinteger(L, -1) && zkv_tointeger(L, -1) >= 1) {
      lua_Integer k = (lua_Integer)zkv_tointeger(L, -1);
      if (k > maxk) maxk = k;
    } else other = 1;
  }
  /* here some key is not a string (the one-pass path wrote the others) */
  e->depth++;
  if (other && nstr == 0) {
    e->depth--;
    enc_fail(e, "tables with non-string keys cannot be stored");
  } else if (nstr == 0 && !other) {
    if ((size_t)maxk != count) {
      e->depth--;
      enc_fail(e, "sparse arrays cannot be stored");
    }
    PUTS(e, "[");
    for (lua_Integer i = 1; i <= maxk; i++) {
      e->path[e->depth].is_index = 1;
      e->path[e->depth].index = i;
      if (i > 1) PUTS(e, ",");
      lua_rawgeti(L, idx, (int)i);
      enc_value(e, lua_gettop(L));
      lua_pop(L, 1);
    }
    PUTS(e, "]");
  } else {
    e->depth--;
    enc_fail(e, "tables with mixed keys cannot be stored");
  }
  e->depth--;
}

static void enc_value(Enc *e, int idx) {
  switch (lua_type(e->L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(e->L, idx, &n);
    enc_string(e, s, n);
    break;
  }
  case LUA_TNUMBER: enc_number(e, idx); break;
  case LUA_TBOOLEAN:
    if (lua_toboolean(e->L, idx)) PUTS(e, "true");
    else PUTS(e, "false");
    break;
  case LUA_TTABLE: enc_table(e, idx); break;
  case LUA_TFUNCTION: enc_fail(e, "functions cannot be stored"); break;
  case LUA_TUSERDATA: case LUA_TLIGHTUSERDATA: enc_fail(e, "userdata cannot be stored"); break;
  case LUA_TTHREAD: enc_fail(e, "threads cannot be stored"); break;
  default: enc_fail(e, "nil cannot be stored"); break;
  }
}

/* turn the Lua value at idx into a zkv_value (bytes stay valid while the
 * value is on the stack, or in d->buf for tables) */
static void to_value(lua_State *L, Driver *d, int idx, zkv_value *v) {
  memset(v, 0, sizeof *v);
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    v->type = ZKV_T_STRING;
    v->data = lua_tolstring(L, idx, &v->len);
    return;
  case LUA_TNUMBER: {
#ifndef ZKV_LUA51
    if (lua_isinteger(L, idx)) {
      v->type = ZKV_T_INT;
      v->i = lua_tointeger(L, idx);
      return;
    }
#endif
    lua_Number x = lua_tonumber(L, idx);
    if (!isfinite(x))
      raise(L, C_VALUE, "value: %s cannot be stored", isnan(x) ? "NaN" : "infinity");
#ifdef ZKV_LUA51
    if (x == floor(x) && fabs(x) <= 9007199254740992.0 && !(x == 0 && signbit(x))) {
      v->type = ZKV_T_INT;
      v->i = (int64_t)x;
      return;
    }
#endif
    v->type = ZKV_T_FLOAT;
    v->f = x;
    return;
  }
  case LUA_TBOOLEAN:
    v->type = ZKV_T_BOOL;
    v->i = lua_toboolean(L, idx);
    return;
  case LUA_TTABLE: {
    Enc e;
    e.L = L;
    e.d = d;
    e.depth = 0;
    d->buf_len = 0;
    enc_table(&e, idx < 0 ? lua_gettop(L) + idx + 1 : idx);
    v->type = ZKV_T_JSON;
    v->data = d->buf;
    v->len = d->buf_len;
    return;
  }
  case LUA_TNONE: case LUA_TNIL: raise(L, C_VALUE, "value: nil cannot be stored"); return;
  case LUA_TFUNCTION: raise(L, C_VALUE, "value: functions cannot be stored"); return;
  case LUA_TTHREAD: raise(L, C_VALUE, "value: threads cannot be stored"); return;
  default: raise(L, C_VALUE, "value: userdata cannot be stored"); return;
  }
}

/* ---- values: decoding ------------------------------------------------------ */


/* The direct decoder: JSON text straight into Lua values, no tree.  It reads
 * what our encoder writes (no whitespace; escapes only \" \\ and \u00XX) and
 * returns NULL on anything else, in which case cJSON parses the text. */
static const char *dec_value(lua_State *L, const char *p, const char *end, int depth);

static const char *dec_string(lua_State *L, const char *p, const char *end) {
  const char *q = ++p;   /* past the opening quote */
  while (q < end && *q != '"' && *q != '\\') q++;
  if (q >= end) return NULL;
  if (*q == '"') {
    lua_pushlstring(L, p, (size_t)(q - p));
    return q + 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    luaL_addlstring(&b, p, (size_t)(q - p));
    if (q >= end) return NULL;
    if (*q == '"') break;
    /* *q == '\\' */
    if (q + 1 >= end) return NULL;
    char c = q[1];
    if (c == '"' || c == '\\' || c == '/') {
      luaL_addchar(&b, c);
      q += 2;
    } else if (c == 'u' && q + 5 < end && q[2] == '0' && q[3] == '0') {
      int v = 0;
      for (int i = 4; i < 6; i++) {
        char h = q[i];
        v = v * 16 + (h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                      : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1000);
      }
      if (v < 0 || v >= 0x80) return NULL;
      luaL_addchar(&b, (char)v);
      q += 6;
    } else {
      return NULL;
    }
    p = q;
    while (q < end && *q != '"' && *q != '\\') q++;
  }
  luaL_pushresult(&b);
  return q + 1;
}

static const char *dec_number(lua_State *L, const char *p, const char *end) {
  const char *q = p;
  int integral = 1;
  if (q < end && *q == '-') q++;
  while (q < end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' ||
                     *q == '+' || *q == '-')) {
    if (*q == '.' || *q == 'e' || *q == 'E') integral = 0;
    q++;
  }
  size_t n = (size_t)(q - p);
  if (n == 0 || n > 40) return NULL;
  char tmp[48];
  memcpy(tmp, p, n);
  tmp[n] = 0;
  char *e;
  if (integral && n < 17) {
    long long v = strtoll(tmp, &e, 10);
    if (*e) return NULL;
    zkv_pushinteger(L, v);
    return q;
  }
  double x = strtod(tmp, &e);
  if (*e) return NULL;
#ifndef ZKV_LUA51
  if (x == floor(x) && fabs(x) <= 9007199254740992.0) {
    lua_pushinteger(L, (lua_Integer)x);
    return q;
  }
#endif
  lua_pushnumber(L, x);
  return q;
}

static const char *dec_value(lua_State *L, const char *p, const char *end, int depth) {
  if (p >= end || depth > MAX_DEPTH + 1 || !lua_checkstack(L, 4)) return NULL;
  switch (*p) {
  case '"': return dec_string(L, p, end);
  case '{': {
    lua_createtable(L, 0, 4);
    p++;
    if (p < end && *p == '}') return p + 1;
    for (;;) {
      if (p >= end || *p != '"') return NULL;
      if (!(p = dec_string(L, p, end)) || p >= end || *p != ':') return NULL;
      if (!(p = dec_value(L, p + 1, end, depth + 1))) return NULL;
      lua_rawset(L, -3);
      if (p < end && *p == ',') { p++; continue; }
      if (p < end && *p == '}') return p + 1;
      return NULL;
    }
  }
  case '[': {
    lua_createtable(L, 4, 0);
    p++;
    if (p < end && *p == ']') return p + 1;
    for (int i = 1;; i++) {
      if (!(p = dec_value(L, p, end, depth + 1))) return NULL;
      lua_rawseti(L, -2, i);
      if (p < end && *p == ',') { p++; continue; }
      if (p < end && *p == ']') return p + 1;
      return NULL;
    }
  }
  case 't':
    if (end - p >= 4 && memcmp(p, "true", 4) == 0) { lua_pushboolean(L, 1); return p + 4; }
    return NULL;
  case 'f':
    if (end - p >= 5 && memcmp(p, "false", 5) == 0) { lua_pushboolean(L, 0); return p + 5; }
    return NULL;
  default:
    return dec_number(L, p, end);
  }
}

static void push_json(lua_State *L, const cJSON *j, int depth) {
  luaL_checkstack(L, 4, "value too deep");
  if (cJSON_IsArray(j)) {
    int n = cJSON_GetArraySize(j), i = 1;
    lua_createtable(L, n, 0);
    for (const cJSON *c = j->child; c; c = c->next) {
      push_json(L, c, depth + 1);
      lua_rawseti(L, -2, i++);
    }
  } else if (cJSON_IsObject(j)) {
    lua_createtable(L, 0, cJSON_GetArraySize(j));
    for (const cJSON *c = j->child; c; c = c->next) {
      lua_pushstring(L, c->string ? c->string : "");
      push_json(L, c, depth + 1);
      lua_rawset(L, -3);
    }
  } else if (cJSON_IsString(j)) {
    lua_pushstring(L, j->valuestring);
  } else if (cJSON_IsNumber(j)) {
    double x = j->valuedouble;
#ifndef ZKV_LUA51
    if (x == floor(x) && fabs(x) <= 9007199254740992.0) {
      lua_pushinteger(L, (lua_Integer)x);
      return;
    }
#endif
    lua_pushnumber(L, x);
  } else if (cJSON_IsBool(j)) {
    lua_pushboolean(L, cJSON_IsTrue(j));
  } else {
    lua_pushnil(L);
  }
}

static int push_value(lua_State *L, const zkv_value *v) {
  switch (v->type) {
  case ZKV_T_INT: zkv_pushinteger(L, v->i); return 1;
  case ZKV_T_FLOAT: lua_pushnumber(L, v->f); return 1;
  case ZKV_T_BOOL: lua_pushboolean(L, (int)v->i); return 1;
  case ZKV_T_JSON: {
    int top = lua_gettop(L);
    const char *d = (const char *)v->data, *end = d + v->len;
    if (dec_value(L, d, end, 0) == end) return 1;
    lua_settop(L, top);   /* not our own dialect: let cJSON read it */
    cJSON *j = cJSON_ParseWithLength((const char *)v->data, v->len);
    if (!j) return raise(L, C_FAILED, "stored table is damaged");
    /* push_json may raise (stack overflow); free the tree in a way that
     * survives: parse into a tree owned by a userdata with __gc is overkill
     * for a depth <= 100 tree, so check the stack first */
    if (!lua_checkstack(L, 2 * MAX_DEPTH + 8)) {
      cJSON_Delete(j);
      return raise(L, C_FAILED, "stack overflow");
    }
    push_json(L, j, 0);
    cJSON_Delete(j);
    return 1;
  }
  default: lua_pushlstring(L, (const char *)v->data, v->len); return 1;
  }
}

/* ---- Store methods ---------------------------------------------------------- */

static int store_get(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  zkv_value v;
  int rc;
  CALL(rc, zkv_get(db, s->ns, k, kl, &v));
  if (rc == ZKV_OK) return push_value(L, &v);
  if (rc == ZKV_NOTFOUND) {
    lua_pushnil(L);
    return 1;
  }
  return raise_rc(L, rc, "get");
}

static int store_set_impl(lua_State *L, unsigned flags, const char *what) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  zkv_value v;
  to_value(L, s->drv, 2 + 1, &v);
  int64_t ttl = opt_ttl(L, 4, 0);
  int rc;
  CALL(rc, zkv_set(db, s->ns, k, kl, &v, ttl, flags));
  if (rc == ZKV_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rc == ZKV_EXISTS) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return raise_rc(L, rc, what);
}

static int store_set(lua_State *L) { return store_set_impl(L, 0, "set"); }
static int store_setnx(lua_State *L) { return store_set_impl(L, ZKV_SET_NX, "setnx"); }

/* s:del(key), s:has(key): true when the key was there */
static int store_found_op(lua_State *L, int (*op)(zkv_db *, zkv_ns, const void *, size_t),
                          const char *what) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  int rc;
  CALL(rc, op(db, s->ns, k, kl));
  return push_found(L, rc, what);
}

static int store_del(lua_State *L) { return store_found_op(L, zkv_del, "del"); }
static int store_has(lua_State *L) { return store_found_op(L, zkv_has, "has"); }

static int store_expire(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  int64_t ttl = opt_ttl(L, 3, 1);
  int rc;
  CALL(rc, zkv_expire(db, s->ns, k, kl, ttl));
  return push_found(L, rc, "expire");
}

static int store_ttl(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  int64_t left;
  int rc;
  CALL(rc, zkv_ttl(db, s->ns, k, kl, &left));
  if (rc < 0) return raise_rc(L, rc, "ttl");
  if (rc == ZKV_NOTFOUND) lua_pushnil(L);
  else if (left < 0) lua_pushnumber(L, HUGE_VAL);
  else lua_pushnumber(L, (lua_Number)left / 1000.0);
  return 1;
}

static int store_incr(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  int64_t by = 1;
  int t = lua_type(L, 3);
  if (t == LUA_TNUMBER) {
    lua_Number x = lua_tonumber(L, 3);
    if (zkv_isinteger(L, 3)) by = zkv_tointeger(L, 3);
    else if (x == floor(x) && fabs(x) < 9.2233720368547758e18) by = (int64_t)x;
    else return raise(L, C_VALUE, "incr: by must be an integer");
    if (ZKV_INT_LIMIT && (by > ZKV_INT_LIMIT || by < -ZKV_INT_LIMIT))
      return raise(L, C_VALUE, "incr: by is beyond 2^53");
  } else if (t != LUA_TNONE && t != LUA_TNIL) {
    return raise(L, C_VALUE, "incr: by must be an integer, got %s", luaL_typename(L, 3));
  }
  int64_t ttl = opt_ttl(L, 4, 0);
  int64_t res;
  int64_t lim = ZKV_INT_LIMIT;
  int rc;
  CALL(rc, lim ? zkv_incr_limited(db, s->ns, k, kl, by, ttl, -lim, lim, &res)
               : zkv_incr(db, s->ns, k, kl, by, ttl, &res));
  if (rc == ZKV_OK) {
    zkv_pushinteger(L, res);
    return 1;
  }
  if (rc == ZKV_ETYPE) return raise(L, C_VALUE, "incr: the stored value is not an integer");
  if (rc == ZKV_ERANGE) return raise(L, C_VALUE, "incr: result out of range");
  return raise_rc(L, rc, "incr");
}



static zkv_ns check_ns_name(lua_State *L, int i, const char **name, size_t *len) {
  if (lua_type(L, i) != LUA_TSTRING)
    raise(L, C_KEY, "namespace name must be a string, got %s", luaL_typename(L, i));
  *name = lua_tolstring(L, i, len);
  if (*len == 0) raise(L, C_EMPTY_NS, "namespace name is empty");
  if (*len > ZKV_MAX_KEY) raise(L, C_KEY, "namespace name must be 1 to 65535 bytes");
  return 0;
}

static int store_namespace(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  const char *name;
  size_t len;
  check_ns_name(L, 2, &name, &len);
  zkv_ns ns;
  int rc;
  CALL(rc, zkv_namespace(db, s->ns, name, len, &ns));
  if (rc) return raise_rc(L, rc, "namespace");
  zkv_getuservalue(L, 1);
  lua_rawgeti(L, -1, 1);   /* the driver userdata */
  new_store(L, lua_gettop(L), 1, 2, s->drv, ns);
  return 1;
}

static int store_count(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  uint64_t n;
  int rc;
  CALL(rc, zkv_count(db, s->ns, &n));
  return push_count(L, rc, n, "count");
}

static int store_clear(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  uint64_t n;
  int rc;
  CALL(rc, zkv_clear(db, s->ns, &n));
  return push_count(L, rc, n, "clear");
}

/* keys(): batches of keys are copied out under the lock into a C buffer,
 * then pushed; the lock is never held while Lua runs */
typedef struct KeyBatch { char *buf; size_t len, cap; size_t n; } KeyBatch;

static int collect_key(void *ud, const void *key, size_t klen) {
  KeyBatch *b = ud;
  if (b->len + klen + 4 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + klen + 4) cap *= 2;
    char *n = realloc(b->buf, cap);
    if (!n) return 1;
    b->buf = n;
    b->cap = cap;
  }
  uint32_t l = (uint32_t)klen;
  memcpy(b->buf + b->len, &l, 4);
  memcpy(b->buf + b->len + 4, key, klen);
  b->len += klen + 4;
  b->n++;
  return 0;
}

#define KEYS_BATCH 256

/* append the keys of b to the table on top of the stack, after index *n */
static void push_batch(lua_State *L, const KeyBatch *b, lua_Integer *n) {
  size_t off = 0;
  for (size_t i = 0; i < b->n; i++) {
    uint32_t l;
    memcpy(&l, b->buf + off, 4);
    lua_pushlstring(L, b->buf + off + 4, l);   /* may raise: b->buf leaks only on OOM */
    lua_rawseti(L, -2, (int)++*n);
    off += 4 + l;
  }
}

static int keys_iter(lua_State *L) {
  /* upvalues: 1 store, 2 cursor userdata, 3 batch table, 4 position, 5 batch size */
  Store *s = (Store *)lua_touserdata(L, lua_upvalueindex(1));
  zkv_cursor *cur = (zkv_cursor *)lua_touserdata(L, lua_upvalueindex(2));
  lua_Integer pos = (lua_Integer)lua_tonumber(L, lua_upvalueindex(4));
  lua_Integer n = (lua_Integer)lua_tonumber(L, lua_upvalueindex(5));
  if (pos < n) {
    lua_rawgeti(L, lua_upvalueindex(3), (int)(pos + 1));
    lua_pushnumber(L, (lua_Number)(pos + 1));
    lua_replace(L, lua_upvalueindex(4));
    return 1;
  }
  if (cur->done) return 0;
  zkv_db *db = open_db(L, s->drv);
  KeyBatch b = {NULL, 0, 0, 0};
  size_t got = 0;
  int rc;
  do {
    rc = zkv_keys(db, s->ns, cur, KEYS_BATCH, collect_key, &b, &got);
  } while (rc == ZKV_OK && b.n == 0 && !cur->done);
  if (rc == ZKV_ESTALE) {   /* the namespace went with a rolled-back atomic: it is empty */
    free(b.buf);
    cur->done = 1;
    return 0;
  }
  if (rc) {
    free(b.buf);
    return raise_rc(L, rc, "keys");
  }
  if (!lua_checkstack(L, 4)) { free(b.buf); return raise(L, C_FAILED, "stack overflow"); }
  lua_createtable(L, (int)b.n, 0);
  lua_Integer pushed = 0;
  push_batch(L, &b, &pushed);
  free(b.buf);
  lua_replace(L, lua_upvalueindex(3));
  lua_pushnumber(L, 0);
  lua_replace(L, lua_upvalueindex(4));
  lua_pushnumber(L, (lua_Number)b.n);
  lua_replace(L, lua_upvalueindex(5));
  if (b.n == 0) return 0;
  return keys_iter(L);
}

/* s:_keys_list(max) -> a table of up to max live keys (0 = all), in steps of
 * at most KEYS_BATCH keys a lock hold (ngx.shared.DICT's get_keys) */
static int store_keys_list(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  lua_Number mx = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, mx >= 0 && mx <= 1e15, 2, "max out of range");
  uint64_t max = (uint64_t)mx;
  zkv_cursor cur;
  memset(&cur, 0, sizeof cur);
  lua_newtable(L);
  lua_Integer n = 0;
  KeyBatch b = {NULL, 0, 0, 0};
  while (!cur.done && (max == 0 || (uint64_t)n < max)) {
    size_t want = KEYS_BATCH, got = 0;
    if (max && max - (uint64_t)n < want) want = (size_t)(max - (uint64_t)n);
    b.len = 0;
    b.n = 0;
    int rc = zkv_keys(db, s->ns, &cur, want, collect_key, &b, &got);
    if (rc == ZKV_ESTALE) break;   /* the namespace went with a rolled-back atomic: empty */
    if (rc) {
      free(b.buf);
      return raise_rc(L, rc, "keys");
    }
    push_batch(L, &b, &n);
  }
  free(b.buf);
  return 1;
}

static int store_keys(lua_State *L) {
  zkv_db *db;
  check_store(L, &db);
  lua_settop(L, 1);
  zkv_cursor *cur = (zkv_cursor *)lua_newuserdatauv(L, sizeof(zkv_cursor), 0);
  memset(cur, 0, sizeof *cur);
  lua_newtable(L);
  lua_pushnumber(L, 0);
  lua_pushnumber(L, 0);
  lua_pushcclosure(L, keys_iter, 5);
  return 1;
}


/* ---- raw access (for lua/zeltkv/shdict.lua and the LuaJIT FFI front end) ----
 * Not part of the public Lua API: type codes are enum zkv_type, results are
 * the engine's codes, ttls are milliseconds.  Errors of arguments still raise. */

/* s:_handle() -> lightuserdata zkv_db*, namespace id high 32 bits, low 32 bits */
static int store_handle(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  lua_pushlightuserdata(L, db);
  lua_pushnumber(L, (lua_Number)(uint32_t)(s->ns >> 32));
  lua_pushnumber(L, (lua_Number)(uint32_t)s->ns);
  return 3;
}

/* s:_rawget(key, stale) -> nil | type, value, flags, is_stale */
static int store_rawget(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  unsigned f = lua_toboolean(L, 3) ? ZKV_GET_STALE : 0;
  zkv_value v;
  int stale = 0, rc;
  CALL(rc, zkv_get_ex(db, s->ns, k, kl, f, &v, &stale));
  if (rc == ZKV_NOTFOUND) return 0;
  if (rc < 0) return raise_rc(L, rc, "get");
  lua_pushinteger(L, v.type);
  switch (v.type) {
  case ZKV_T_INT: zkv_pushinteger(L, v.i); break;
  case ZKV_T_FLOAT: lua_pushnumber(L, v.f); break;
  case ZKV_T_BOOL: lua_pushboolean(L, (int)v.i); break;
  default: lua_pushlstring(L, (const char *)v.data, v.len); break;
  }
  zkv_pushinteger(L, v.flags);
  lua_pushboolean(L, stale);
  return 4;
}

/* s:_rawset(key, type, value, flags, ttl_ms, setflags) -> rc, forcible */
static int store_rawset(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  zkv_value v;
  memset(&v, 0, sizeof v);
  v.type = (int)luaL_checkinteger(L, 3);
  switch (v.type) {
  case ZKV_T_INT:
    if (zkv_isinteger(L, 4)) {
      v.i = (int64_t)zkv_tointeger(L, 4);
    } else {
      lua_Number x = luaL_checknumber(L, 4);
      luaL_argcheck(L, x == floor(x) && fabs(x) < 9.2e18, 4, "integer expected");
      v.i = (int64_t)x;
    }
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
  int forcible = 0, rc;
  CALL(rc, zkv_set_ex(db, s->ns, k, kl, &v, ttl, sf, &forcible));
  lua_pushinteger(L, rc);
  lua_pushboolean(L, forcible);
  return 2;
}

/* s:_incr_num(key, by, create, init, init_ttl_ms) -> rc, result */
static int store_incr_num(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  double by = luaL_checknumber(L, 3), res = 0;
  int create = lua_toboolean(L, 4);
  double init = luaL_optnumber(L, 5, 0);
  lua_Number ms = luaL_optnumber(L, 6, 0);
  luaL_argcheck(L, ms >= 0 && ms <= 4.0e15, 6, "ttl out of range");
  int rc;
  CALL(rc, zkv_incr_num(db, s->ns, k, kl, by, create, init, (int64_t)ms, &res));
  lua_pushinteger(L, rc);
#ifndef ZKV_LUA51
  if (res == floor(res) && fabs(res) <= 9007199254740992.0 && !(res == 0 && signbit(res))) {
    lua_pushinteger(L, (lua_Integer)res);
    return 2;
  }
#endif
  lua_pushnumber(L, res);
  return 2;
}

/* s:_expire_ms(key, ms) -> rc   (ms 0 = no expiry) */
static int store_expire_ms(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  int64_t ms = (int64_t)luaL_checknumber(L, 3);
  int rc;
  CALL(rc, zkv_expire(db, s->ns, k, kl, ms));
  lua_pushinteger(L, rc);
  return 1;
}

/* s:_driver() -> the driver object this store belongs to */
static int store_driver(lua_State *L) {
  zkv_db *db;
  check_store(L, &db);
  zkv_getuservalue(L, 1);
  lua_rawgeti(L, -1, 1);
  return 1;
}

/* s:_flush_all() -> how many live keys of this namespace now count as expired */
static int store_flush_all(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  uint64_t n = 0;
  int rc;
  CALL(rc, zkv_expire_all(db, s->ns, &n));
  return push_count(L, rc, n, "flush_all");
}

/* s:_flush_expired(max) -> how many expired keys of this namespace were freed */
static int store_flush_expired(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  lua_Number max = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, max >= 0 && max <= 1e15, 2, "max out of range");
  uint64_t n = 0;
  int rc;
  CALL(rc, zkv_flush_expired_ns(db, s->ns, (uint64_t)max, &n));
  return push_count(L, rc, n, "flush_expired");
}

/* ---- lists of the ngx.shared.DICT face (lua/zeltkv/shdict.lua) -----------
 * The engine links a list's items (zkv_list_*); an item is a tag byte and its
 * payload, which shdict.lua makes and reads. */

/* s:_list_push(key, left, tag, payload) -> rc, count */
static int store_list_push(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl, tl, pl;
  const char *k = check_key(L, 2, &kl);
  int left = lua_toboolean(L, 3);
  const char *tag = luaL_checklstring(L, 4, &tl);
  const char *payload = luaL_checklstring(L, 5, &pl);
  luaL_argcheck(L, tl == 1, 4, "a one-byte tag expected");
  uint64_t count = 0;
  int rc;
  CALL(rc, zkv_list_push(db, s->ns, k, kl, left, (unsigned char)tag[0], payload, pl, &count));
  lua_pushinteger(L, rc);
  lua_pushinteger(L, (lua_Integer)count);
  return 2;
}

/* s:_list_pop(key, left) -> rc, tag, payload */
static int store_list_pop(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  int left = lua_toboolean(L, 3);
  zkv_value v;
  int rc;
  CALL(rc, zkv_list_pop(db, s->ns, k, kl, left, &v));
  lua_pushinteger(L, rc);
  if (rc != ZKV_OK) return 1;
  lua_pushlstring(L, (const char *)v.data, 1);
  lua_pushlstring(L, (const char *)v.data + 1, v.len - 1);
  return 3;
}

/* s:_list_len(key) -> rc, count */
static int store_list_len(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  uint64_t count = 0;
  int rc;
  CALL(rc, zkv_list_len(db, s->ns, k, kl, &count));
  lua_pushinteger(L, rc);
  lua_pushinteger(L, (lua_Integer)count);
  return 2;
}

/* s:_space() -> capacity, free bytes (nil, nil when unbounded): stats without the table */
static int store_space(lua_State *L) {
  zkv_db *db;
  check_store(L, &db);
  uint64_t cap = 0, fr = 0;
  int rc = zkv_space(db, &cap, &fr);
  if (rc) return raise_rc(L, rc, "stats");
  if (!cap) return 0;
  zkv_pushinteger(L, cap);
  zkv_pushinteger(L, fr);
  return 2;
}



/* ---- atomic ---------------------------------------------------------------- */

static int do_atomic(lua_State *L, Driver *d, zkv_db *db) {
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 2;
  int rc = zkv_begin(db);
  if (rc) return raise_rc(L, rc, "atomic");
  d->atomic_depth++;
  /* fn(self, ...) */
  luaL_checkstack(L, nargs + 2, "too many arguments");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  for (int i = 0; i < nargs; i++) lua_pushvalue(L, 3 + i);
  int base = lua_gettop(L) - nargs - 2;
  /* a yield inside fn cannot cross this C call: Lua raises an error, which
   * lands here like any other, and the writes are undone */
  int st = lua_pcall(L, nargs + 1, LUA_MULTRET, 0);
  d->atomic_depth--;
  if (st != LUA_OK) {
    zkv_rollback(db);
    return lua_error(L);   /* the same error value, unchanged */
  }
  rc = zkv_commit(db);
  if (rc) return raise_rc(L, rc, "atomic");
  return lua_gettop(L) - base;
}

static int store_atomic(lua_State *L) {
  zkv_db *db;
  Store *s = check_store(L, &db);
  return do_atomic(L, s->drv, db);
}

static int store_tostring(lua_State *L) {
  Store *s = (Store *)luaL_checkudata(L, 1, STORE_MT);
  lua_pushfstring(L, "zeltkv.Store (%p)%s", (void *)s, s->drv->db ? "" : " (closed)");
  return 1;
}

/* ---- Driver ------------------------------------------------------------------ */

static Driver *check_driver(lua_State *L, zkv_db **db) {
  Driver *d = (Driver *)check_self(L, DRIVER_MT);
  *db = open_db(L, d);
  return d;
}

/* A store's user value is { driver, parent store or false, name }: it keeps
 * the driver alive and lets the namespace be found again (reresolve). */
static Store *new_store(lua_State *L, int drv_idx, int parent_idx, int name_idx, Driver *d,
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
  zkv_setuservalue(L, -2);
  return s;
}

static int reresolve(lua_State *L, int idx, Store *s) {
  int rc;
  zkv_ns parent = ZKV_ROOT;
  if (!s->drv->db) return ZKV_ECLOSED;
  luaL_checkstack(L, 4, "namespace too deep");
  zkv_getuservalue(L, idx);
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

static int driver_namespace(lua_State *L) {
  zkv_db *db;
  Driver *d = check_driver(L, &db);
  const char *name;
  size_t len;
  check_ns_name(L, 2, &name, &len);
  zkv_ns ns;
  int rc = zkv_namespace(db, ZKV_ROOT, name, len, &ns);
  if (rc) return raise_rc(L, rc, "namespace");
  new_store(L, 1, 0, 2, d, ns);
  return 1;
}

static int driver_atomic(lua_State *L) {
  zkv_db *db;
  Driver *d = check_driver(L, &db);
  return do_atomic(L, d, db);
}

static int driver_gc(lua_State *L) {
  zkv_db *db;
  check_driver(L, &db);
  uint64_t n;
  int rc = zkv_gc(db, &n);
  return push_count(L, rc, n, "gc");
}

static int driver_flush(lua_State *L) {
  zkv_db *db;
  check_driver(L, &db);
  uint64_t n;
  int rc = zkv_flush(db, &n);
  return push_count(L, rc, n, "flush");
}

#define SETINT(name, v) (zkv_pushinteger(L, (v)), lua_setfield(L, -2, name))

static int driver_stats(lua_State *L) {
  zkv_db *db;
  check_driver(L, &db);
  zkv_stats st;
  int rc = zkv_stats_get(db, &st);
  if (rc) return raise_rc(L, rc, "stats");
  lua_createtable(L, 0, 12);
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
  lua_pushstring(L, zkv_is_shared(db) ? "shared" : "memory");
  lua_setfield(L, -2, "driver");
  return 1;
}

/* one idempotent close for :close(), __gc and __close */
static int driver_close(lua_State *L) {
  Driver *d = (Driver *)luaL_checkudata(L, 1, DRIVER_MT);
  if (d->atomic_depth > 0 && d->db)
    return raise(L, C_FAILED, "close: cannot close a driver inside its own atomic()");
  if (d->db) {
    zkv_close(d->db);
    d->db = NULL;
  }
  free(d->buf);
  d->buf = NULL;
  d->buf_cap = d->buf_len = 0;
  return 0;
}

static int driver_gcmeta(lua_State *L) {
  Driver *d = (Driver *)luaL_checkudata(L, 1, DRIVER_MT);
  d->atomic_depth = 0;
  return driver_close(L);
}

static int driver_tostring(lua_State *L) {
  Driver *d = (Driver *)luaL_checkudata(L, 1, DRIVER_MT);
  lua_pushfstring(L, "zeltkv.Driver (%s, %p)%s",
                  d->db ? (zkv_is_shared(d->db) ? "shared" : "memory") : "-", (void *)d,
                  d->db ? "" : " (closed)");
  return 1;
}

/* ---- module ----------------------------------------------------------------- */

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
  } else if (lua_type(L, i) == LUA_TSTRING && parse_size(lua_tostring(L, i), &n)) {
    return n;
  }
  raise(L, C_VALUE, "option '%s' must be a positive number of bytes or a size such as \"64m\"",
        name);
  return 0;
}

static double opt_seconds(lua_State *L, int i, const char *name) {
  if (lua_type(L, i) == LUA_TNUMBER) {
    lua_Number x = lua_tonumber(L, i);
    if (x >= 0 && isfinite(x)) return x;
  }
  raise(L, C_VALUE, "option '%s' must be a finite number of seconds >= 0", name);
  return 0;
}

/* read the driver options table at i into o; shared says which driver */
static void read_options(lua_State *L, int i, zkv_options *o, int shared) {
  zkv_options_init(o);
  int t = lua_type(L, i);
  if (t == LUA_TNONE || t == LUA_TNIL) return;
  if (t != LUA_TTABLE) raise(L, C_VALUE, "options must be a table, got %s", luaL_typename(L, i));
  lua_pushnil(L);
  while (lua_next(L, i)) {
    int v = lua_gettop(L);
    if (lua_type(L, -2) != LUA_TSTRING) raise(L, C_VALUE, "unknown option (a %s key)", luaL_typename(L, -2));
    const char *k = lua_tostring(L, -2);
    if (strcmp(k, "gc_interval") == 0) {
      o->gc_interval = opt_seconds(L, v, k);
    } else if (strcmp(k, "evict") == 0) {
      const char *e = lua_type(L, v) == LUA_TSTRING ? lua_tostring(L, v) : "";
      if (strcmp(e, "none") == 0) o->evict = ZKV_EVICT_NONE;
      else if (strcmp(e, "lru") == 0) o->evict = ZKV_EVICT_LRU;
      else raise(L, C_VALUE, "option 'evict' must be \"none\" or \"lru\"");
    } else if (strcmp(k, "size") == 0 && shared) {
      o->size = opt_bytes(L, v, k);
    } else if (strcmp(k, "max_bytes") == 0 && !shared) {
      o->max_bytes = opt_bytes(L, v, k);
    } else if (strcmp(k, "mode") == 0 && shared) {
      if (lua_type(L, v) != LUA_TNUMBER || lua_tonumber(L, v) < 0 || lua_tonumber(L, v) > 0777 ||
          lua_tonumber(L, v) != floor(lua_tonumber(L, v)))
        raise(L, C_VALUE, "option 'mode' must be permission bits such as 384 (0600)");
      o->mode = (unsigned)lua_tonumber(L, v);
    } else if (strcmp(k, "lock_timeout") == 0 && shared) {
      o->lock_timeout = opt_seconds(L, v, k);
    } else if (strcmp(k, "size") == 0 || strcmp(k, "mode") == 0 || strcmp(k, "lock_timeout") == 0) {
      raise(L, C_VALUE, "unknown option '%s' (it is an option of zeltkv.shared)", k);
    } else if (strcmp(k, "max_bytes") == 0) {
      raise(L, C_VALUE, "unknown option '%s' (it is an option of zeltkv.memory; a shared store's capacity is 'size')", k);
    } else {
      raise(L, C_VALUE, "unknown option '%s'", k);
    }
    lua_pop(L, 1);
  }
}

static Driver *new_driver(lua_State *L) {
  Driver *d = (Driver *)lua_newuserdatauv(L, sizeof(Driver), 0);
  memset(d, 0, sizeof *d);   /* "closed" until the store is open (liolib's way) */
  luaL_getmetatable(L, DRIVER_MT);
  lua_setmetatable(L, -2);
  return d;
}

static int l_memory(lua_State *L) {
  zkv_options o;
  read_options(L, 1, &o, 0);
  Driver *d = new_driver(L);
  int rc = zkv_open_memory(&o, &d->db);
  if (rc) return raise_rc(L, rc, "memory");
  return 1;
}

static const char *check_seg_name(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TSTRING)
    raise(L, C_KEY, "segment name must be a string, got %s", luaL_typename(L, i));
  size_t n;
  const char *s = lua_tolstring(L, i, &n);
  int ok = n >= 1 && n <= ZKV_MAX_NAME && strlen(s) == n;
  for (size_t j = 0; ok && j < n; j++) {
    char c = s[j];
    ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
  }
  if (!ok) raise(L, C_KEY, "segment name must be 1 to 128 characters of A-Z a-z 0-9 . _ -");
  return s;
}

static int l_shared(lua_State *L) {
  const char *name = check_seg_name(L, 1);
  zkv_options o;
  read_options(L, 2, &o, 1);
  Driver *d = new_driver(L);
  int rc = zkv_open_shared(name, &o, &d->db);
  if (rc) return raise_rc(L, rc, "shared");
  return 1;
}

static int l_unlink(lua_State *L) {
  const char *name = check_seg_name(L, 1);
  int existed;
  int rc = zkv_unlink(name, &existed);
  if (rc) return raise_rc(L, rc, "unlink");
  lua_pushboolean(L, existed);
  return 1;
}

static int l_set_clock_offset(lua_State *L) {
  zkv_set_clock_offset((int64_t)luaL_checknumber(L, 1));
  return 0;
}

static const luaL_Reg store_methods[] = {
  {"get", store_get}, {"set", store_set}, {"del", store_del}, {"has", store_has},
  {"expire", store_expire}, {"ttl", store_ttl}, {"incr", store_incr}, {"setnx", store_setnx},
  {"namespace", store_namespace}, {"atomic", store_atomic}, {"keys", store_keys},
  {"count", store_count}, {"clear", store_clear},
  {"_handle", store_handle}, {"_rawget", store_rawget}, {"_rawset", store_rawset},
  {"_incr_num", store_incr_num}, {"_expire_ms", store_expire_ms}, {"_driver", store_driver},
  {"_flush_all", store_flush_all}, {"_flush_expired", store_flush_expired},
  {"_space", store_space}, {"_list_push", store_list_push}, {"_list_pop", store_list_pop},
  {"_list_len", store_list_len},
  {"_keys_list", store_keys_list},
  {NULL, NULL}};

static const luaL_Reg driver_methods[] = {
  {"namespace", driver_namespace}, {"atomic", driver_atomic}, {"gc", driver_gc},
  {"stats", driver_stats}, {"flush", driver_flush}, {"close", driver_close}, {NULL, NULL}};

/* set each function into the table at -2 with the table at -1 as upvalue */
static void set_methods(lua_State *L, const luaL_Reg *r) {
  for (; r->name; r++) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, r->func, 1);
    lua_setfield(L, -3, r->name);
  }
}

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction tostring, lua_CFunction gc) {
  luaL_newmetatable(L, name);          /* mt */
  lua_newtable(L);                     /* mt, methods */
  lua_pushvalue(L, -2);                /* mt, methods, mt */
  set_methods(L, methods);
  lua_pop(L, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

ZKV_API int luaopen_zeltkv_core(lua_State *L);

int luaopen_zeltkv_core(lua_State *L) {
  new_class(L, STORE_MT, store_methods, store_tostring, NULL);
  new_class(L, DRIVER_MT, driver_methods, driver_tostring, driver_gcmeta);
  luaL_newmetatable(L, ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  lua_newtable(L);
  lua_pushcfunction(L, l_memory);
  lua_setfield(L, -2, "memory");
  lua_pushcfunction(L, l_shared);
  lua_setfield(L, -2, "shared");
  lua_pushcfunction(L, l_unlink);
  lua_setfield(L, -2, "unlink");
  lua_pushcfunction(L, l_set_clock_offset);
  lua_setfield(L, -2, "_set_clock_offset");
  lua_pushstring(L, ZKV_VERSION);
  lua_setfield(L, -2, "version");
  /* the Store method table, so that Lua parts (lua/zeltkv.lua) can add methods */
  luaL_getmetatable(L, STORE_MT);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "_Store");
  lua_pop(L, 1);
  lua_createtable(L, 0, 5);
  for (int i = 1; i <= 5; i++) {
    lua_pushstring(L, CODES[i]);
    lua_setfield(L, -2, CODES[i]);
  }
  lua_setfield(L, -2, "errors");
  return 1;
}
