/*
 * value.c -- Lua values <-> the bytes the engine stores.
 *
 * Top-level scalars are a type tag and raw bytes (ZKV_T_STRING, _INT,
 * _FLOAT, _BOOL); tables become JSON text (ZKV_T_JSON).  The encoder is ours
 * (it must refuse, and say where, anything JSON or cJSON would not give back
 * exactly); the decoder reads our own dialect directly and anything else
 * through cJSON.  core._encode / core._decode give the same rules to
 * pure-Lua drivers (the Redis driver).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "binding.h"

#define MAX_DEPTH 100

typedef struct Enc {
  lua_State *L;
  Scratch *b;         /* the driver's (or core._encode's) buffer */
  int depth;
  const void *seen[MAX_DEPTH + 1];
  /* path to the current element, for error messages */
  struct { int is_index; lua_Integer index; const char *name; size_t len; } path[MAX_DEPTH + 1];
} Enc;

/* append to the encoding buffer; the common case (room left) inline */
static inline void put(Enc *e, const char *p, size_t n) {
  Scratch *b = e->b;
  if (UNLIKELY_(b->len + n > b->cap) && buf_reserve(&b->buf, &b->cap, b->len + n, 256))
    lraise_failed(e->L, "memory", "out of memory");
  memcpy(b->buf + b->len, p, n);
  b->len += n;
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
  return zl_raise_top(L, C_VALUE, NULL);   /* the path may hold NUL bytes */
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

/* an integer as decimal digits, without printf (integers are most numbers in
 * tables); returns the length written at the end of tmp[40] */
static size_t fmt_int(char tmp[40], long long v, char **start) {
  char *q = tmp + 40;
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do { *--q = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) *--q = '-';
  *start = q;
  return (size_t)(tmp + 40 - q);
}

static void enc_number(Enc *e, int idx) {
  char tmp[40], *q;
#ifndef ZKV_LUA51
  if (lua_isinteger(e->L, idx)) {
    long long v = (long long)lua_tointeger(e->L, idx);
    if (v > EXACT_INT_LIMIT || v < -EXACT_INT_LIMIT)
      enc_fail(e, "integers beyond 2^53 inside tables cannot be stored exactly");
    size_t n = fmt_int(tmp, v, &q);
    put(e, q, n);
    return;
  }
#endif
  lua_Number x = lua_tonumber(e->L, idx);
  if (!isfinite(x)) enc_fail(e, isnan(x) ? "NaN cannot be stored" : "infinity cannot be stored");
  if (double_is_exact_int(x)) {
    size_t n = fmt_int(tmp, (long long)x, &q);
    put(e, q, n);
    return;
  }
  /* -0 as "-0"; any other float in 17 digits, which read back exactly */
  int n = snprintf(tmp, sizeof tmp, double_is_whole53(x) ? "%.0f" : "%.17g", (double)x);
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
    size_t mark = e->b->len;
    int first = 1;
    e->depth++;
    PUTS(e, "{");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) != LUA_TSTRING) {
        lua_pop(L, 2);
        e->depth--;
        e->b->len = mark;
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
    else if (kt == LUA_TNUMBER && zl_isinteger(L, -1) && zl_tointeger(L, -1) >= 1) {
      lua_Integer k = (lua_Integer)zl_tointeger(L, -1);
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
  case LUA_TNIL: enc_fail(e, "nil cannot be stored"); break;
  default: enc_fail(e, "values of this type cannot be stored"); break;   /* LuaJIT's cdata */
  }
}

/* the message of a top-level value that cannot be stored, or NULL (every
 * type but these, and a table, is refused: LuaJIT has one more, cdata) */
static const char *scalar_refusal(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: case LUA_TBOOLEAN: case LUA_TTABLE: return NULL;
  case LUA_TNONE: case LUA_TNIL: return "value: nil cannot be stored";
  case LUA_TFUNCTION: return "value: functions cannot be stored";
  case LUA_TTHREAD: return "value: threads cannot be stored";
  case LUA_TUSERDATA: case LUA_TLIGHTUSERDATA: return "value: userdata cannot be stored";
  case LUA_TNUMBER: {
    lua_Number x = lua_tonumber(L, idx);
    if (isnan(x)) return "value: NaN cannot be stored";
    if (!isfinite(x)) return "value: infinity cannot be stored";
    return NULL;
  }
  default: return "value: values of this type cannot be stored";
  }
}

static void encode_table(lua_State *L, Scratch *b, int idx) {
  Enc e;
  e.L = L;
  e.b = b;
  e.depth = 0;
  b->len = 0;
  enc_table(&e, idx < 0 ? lua_gettop(L) + idx + 1 : idx);
}

void to_value(lua_State *L, Driver *d, int idx, zkv_value *v) {
  memset(v, 0, sizeof *v);
  int t = lua_type(L, idx);
  if (LIKELY_(t == LUA_TSTRING)) {   /* set's common case: one type test */
    v->type = ZKV_T_STRING;
    v->data = lua_tolstring(L, idx, &v->len);
    return;
  }
  const char *why = scalar_refusal(L, idx);
  if (why) lraise(L, C_VALUE, "%s", why);
  switch (t) {
  case LUA_TNUMBER: {
#ifndef ZKV_LUA51
    if (lua_isinteger(L, idx)) {
      v->type = ZKV_T_INT;
      v->i = lua_tointeger(L, idx);
      return;
    }
#endif
    lua_Number x = lua_tonumber(L, idx);
#ifdef ZKV_LUA51
    /* numbers are doubles: a whole one within 2^53 is an integer (incr) */
    if (double_is_exact_int(x)) {
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
  default:   /* a table: scalar_refusal took every other type */
    encode_table(L, &d->enc, idx);
    v->type = ZKV_T_JSON;
    v->data = d->enc.buf;
    v->len = d->enc.len;
    return;
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
    zl_pushinteger(L, v);
    return q;
  }
  double x = strtod(tmp, &e);
  if (*e) return NULL;
  push_double(L, x);
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
    push_double(L, j->valuedouble);
  } else if (cJSON_IsBool(j)) {
    lua_pushboolean(L, cJSON_IsTrue(j));
  } else {
    lua_pushnil(L);
  }
}

/* push the table of the JSON text s (stable: a Lua string on the stack) */
static void push_json_text(lua_State *L, const char *s, size_t n) {
  int top = lua_gettop(L);
  if (dec_value(L, s, s + n, 0) == s + n) return;
  lua_settop(L, top);   /* not our own dialect: let cJSON read it */
  if (!lua_checkstack(L, 2 * MAX_DEPTH + 8)) lraise_failed(L, "memory", "stack overflow");
  Owned *own = owned_push(L);   /* push_json allocates while the tree is held */
  cJSON *j = cJSON_ParseWithLength(s, n);
  if (!j) lraise_failed(L, "damaged", "stored table is damaged");
  own->p = j;
  own->release = (void (*)(void *))cJSON_Delete;
  push_json(L, j, 0);
  own->p = NULL;
  cJSON_Delete(j);
  lua_remove(L, -2);   /* the owner */
}

void push_double(lua_State *L, double x) {
#ifndef ZKV_LUA51
  if (double_is_exact_int(x)) {
    lua_pushinteger(L, (lua_Integer)x);
    return;
  }
#endif
  lua_pushnumber(L, x);
}

int push_value_slow(lua_State *L, const zkv_value *v) {
  switch (v->type) {
  case ZKV_T_INT: zl_pushinteger(L, v->i); return 1;
  case ZKV_T_FLOAT: lua_pushnumber(L, v->f); return 1;
  case ZKV_T_BOOL: lua_pushboolean(L, (int)v->i); return 1;
  case ZKV_T_JSON: {
    /* v->data points into the arena or the handle's read buffer, which a
     * finalizer run by the decoder's allocations may move or free: copy it
     * into a Lua string first */
    size_t n;
    push_read(L, v->data, v->len);
    const char *s = lua_tolstring(L, -1, &n);
    push_json_text(L, s, n);
    lua_remove(L, -2);
    return 1;
  }
  default: push_read(L, v->data, v->len); return 1;
  }
}

#if LUA_VERSION_NUM < 503
/* Lua 5.1, 5.2 and LuaJIT (see binding.h): a value up to READ_ON_STACK bytes
 * is copied onto the C stack, a bigger one into a malloc'ed block, then pushed
 * from there in a protected call, so that an error raised by a finalizer the
 * push runs (or out of memory) frees the block before it goes on. */
#define READ_ON_STACK 4096
#define READ_SLOT "zeltkv.read"   /* where lua_cpcall's function leaves the string */

typedef struct { const char *p; size_t n; } Bytes;

static int push_bytes(lua_State *L) {
  Bytes *b = (Bytes *)lua_touserdata(L, 1);
  lua_pushlstring(L, b->p, b->n);
#if LUA_VERSION_NUM == 501
  lua_setfield(L, LUA_REGISTRYINDEX, READ_SLOT);   /* lua_cpcall drops the results */
  return 0;
#else
  return 1;
#endif
}

void push_read(lua_State *L, const void *p, size_t n) {
  if (n <= READ_ON_STACK) {
    char tmp[READ_ON_STACK];
    if (n) memcpy(tmp, p, n);   /* an empty value may come with no bytes at all (p NULL) */
    lua_pushlstring(L, tmp, n);
    return;
  }
  Bytes b = {malloc(n), n};
  if (!b.p) lraise_failed(L, "memory", "out of memory");
  memcpy((char *)b.p, p, n);
#if LUA_VERSION_NUM == 501
  int st = lua_cpcall(L, push_bytes, &b);   /* allocates its function inside the protection */
#else
  lua_pushcfunction(L, push_bytes);         /* a light C function: nothing allocated */
  lua_pushlightuserdata(L, &b);
  int st = lua_pcall(L, 1, 1, 0);
#endif
  free((void *)b.p);
  if (st != 0) lua_error(L);   /* the same error, on */
#if LUA_VERSION_NUM == 501
  lua_getfield(L, LUA_REGISTRYINDEX, READ_SLOT);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, READ_SLOT);
#endif
}
#endif

/* ---- the codec for pure-Lua drivers -----------------------------------------
 * core._encode(value) -> type, text
 *   The value as the memory driver would store it, with exactly its
 *   INVALID_VALUE rules and messages: type is a ZKV_T_* code (core._const),
 *   text is the string itself (T_STRING), the decimal integer (T_INT), the
 *   float in the shortest form that reads back exactly and always holds a '.'
 *   or an exponent (T_FLOAT), "true" / "false" (T_BOOL), or the JSON text of a
 *   table (T_JSON).
 * core._decode(type, text) -> value
 *   The inverse (a table comes back a fresh copy); a text that does not parse
 *   as its type raises STORE_OPERATION_FAILED, reason "damaged". */

/* the encoder's buffer for core._encode: upvalue 1, a Scratch userdata */
int scratch_gc(lua_State *L) {
  Scratch *b = (Scratch *)lua_touserdata(L, 1);
  free(b->buf);
  b->buf = NULL;
  b->cap = b->len = 0;
  return 0;
}

/* the shortest "%.*g" of x that reads back exactly, with a '.' or an 'e' */
static int fmt_float(char *out, size_t cap, double x) {
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(out, cap, "%.*g", prec, x);
    if (strtod(out, NULL) == x) break;
  }
  if (!strpbrk(out, ".e") && (size_t)n + 2 < cap) {   /* "1" -> "1.0" (nan, inf are refused earlier) */
    memcpy(out + n, ".0", 3);
    n += 2;
  }
  return n;
}

int l_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  zkv_value v;
  const char *why = scalar_refusal(L, 1);
  if (why) lraise(L, C_VALUE, "%s", why);
  char tmp[48], *q;
  size_t n;
  switch (lua_type(L, 1)) {
  case LUA_TSTRING:
    lua_pushinteger(L, ZKV_T_STRING);
    lua_pushvalue(L, 1);
    return 2;
  case LUA_TBOOLEAN:
    lua_pushinteger(L, ZKV_T_BOOL);
    lua_pushstring(L, lua_toboolean(L, 1) ? "true" : "false");
    return 2;
  case LUA_TNUMBER:
    memset(&v, 0, sizeof v);
    {
#ifndef ZKV_LUA51
      if (lua_isinteger(L, 1)) {
        v.type = ZKV_T_INT;
        v.i = lua_tointeger(L, 1);
      } else
#endif
      {
        lua_Number x = lua_tonumber(L, 1);
#ifdef ZKV_LUA51
        if (double_is_exact_int(x)) {
          v.type = ZKV_T_INT;
          v.i = (int64_t)x;
        } else
#endif
        {
          v.type = ZKV_T_FLOAT;
          v.f = x;
        }
      }
    }
    lua_pushinteger(L, v.type);
    if (v.type == ZKV_T_INT) {
      n = fmt_int(tmp, (long long)v.i, &q);
      lua_pushlstring(L, q, n);
    } else {
      n = (size_t)fmt_float(tmp, sizeof tmp, v.f);
      lua_pushlstring(L, tmp, n);
    }
    return 2;
  default: {
    Scratch *b = (Scratch *)lua_touserdata(L, lua_upvalueindex(1));
    encode_table(L, b, 1);
    lua_pushinteger(L, ZKV_T_JSON);
    lua_pushlstring(L, b->buf, b->len);
    if (b->cap > (1u << 20)) {   /* keep no big buffer for one big table */
      free(b->buf);
      b->buf = NULL;
      b->cap = 0;
    }
    return 2;
  }
  }
}

static int damaged(lua_State *L, const char *what) {
  return lraise_failed(L, "damaged", "stored %s is damaged", what);
}

int l_decode(lua_State *L) {
  lua_Integer t = luaL_checkinteger(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  char *e;
  switch (t) {
  case ZKV_T_STRING: lua_settop(L, 2); return 1;
  case ZKV_T_BOOL:
    if (n == 4 && memcmp(s, "true", 4) == 0) lua_pushboolean(L, 1);
    else if (n == 5 && memcmp(s, "false", 5) == 0) lua_pushboolean(L, 0);
    else return damaged(L, "boolean");
    return 1;
  case ZKV_T_INT: {
    if (n == 0 || n > 20 || strlen(s) != n) return damaged(L, "integer");
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (*e || errno) return damaged(L, "integer");
#ifdef ZKV_LUA51
    if (v > ZKV_INT_LIMIT || v < -ZKV_INT_LIMIT) return damaged(L, "integer");
#endif
    zl_pushinteger(L, v);
    return 1;
  }
  case ZKV_T_FLOAT: {
    if (n == 0 || n > 40 || strlen(s) != n) return damaged(L, "number");
    double x = strtod(s, &e);
    if (*e || !isfinite(x)) return damaged(L, "number");
    lua_pushnumber(L, x);
    return 1;
  }
  case ZKV_T_JSON:
    push_json_text(L, s, n);
    return 1;
  default:
    return luaL_argerror(L, 1, "not a value type of core._encode");
  }
}
