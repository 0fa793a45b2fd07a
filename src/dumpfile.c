/*
 * dumpfile.c -- the dump file format (JSON lines) and the JSON form of values.
 *
 * A dump file is a header line, one line per key, and a closing line with
 * the count (docs/snapshots.md documents it; this file is its one home):
 *
 *   {"format":"zeltkv-dump","version":1,"time":1733050000000}
 *   {"ns":["cache"],"key":"user:1","expires":1733053600000,"value":{"name":"ada"}}
 *   {"count":1}
 *
 * Two JSON dialects meet here.  The *stored* dialect is how the Lua binding
 * writes tables (ZKV_T_JSON): strings hold raw bytes, whatever they are, with
 * only '"', '\' and control characters escaped.  The *dump* dialect is what
 * files and the zkv command show: valid UTF-8 JSON, in which each byte that is
 * not part of a valid UTF-8 sequence is the escape \udcXX (the lone low
 * surrogates U+DC80..U+DCFF, which UTF-8 text can never hold: Python's
 * "surrogateescape").  Converting a table between them walks its JSON once.
 *
 * Nothing here takes the store's lock: the writer is fed from a snapshot,
 * the reader feeds zkv_load (snapshot.c).
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zeltkv.h"
#include "util.h"

#define DUMP_FORMAT "zeltkv-dump"
#define DUMP_VERSION 1
#define TABLE_DEPTH 100                   /* as the Lua API: nesting deeper than this is refused */

/* ---- output buffer ------------------------------------------------------- */
/* Appends never fail on the spot: the first allocation failure marks the
 * buffer and later appends do nothing, so callers check once at the end. */

typedef struct ob {
  zkv_buf *b;
  int oom;
} ob;

static void ob_reserve(ob *o, size_t n) {
  zkv_buf *b = o->b;
  if (o->oom || b->len + n <= b->cap) return;
  char *d = grow_array(b->data, &b->cap, b->len + n, 1, 256);
  if (!d) {
    o->oom = 1;
    return;
  }
  b->data = d;
}

static void ob_put(ob *o, const void *p, size_t n) {
  ob_reserve(o, n);
  if (o->oom) return;
  if (n) memcpy(o->b->data + o->b->len, p, n);
  o->b->len += n;
}

static void ob_ch(ob *o, char c) { ob_put(o, &c, 1); }
#define OB_LIT(o, s) ob_put(o, s, sizeof(s) - 1)

static void ob_int(ob *o, long long v) {
  char t[24];
  int n = snprintf(t, sizeof t, "%lld", v);
  ob_put(o, t, (size_t)n);
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* length of the valid UTF-8 sequence starting at p (1..4), 0 if there is none
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF) */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  size_t n;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else
    return 0;
  if ((size_t)(end - p) < n) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  return n;
}

static void put_utf8(ob *o, unsigned long cp) {
  char t[4];
  size_t n;
  if (cp < 0x80) { t[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { t[0] = (char)(0xC0 | cp >> 6); t[1] = (char)(0x80 | (cp & 63)); n = 2; }
  else if (cp < 0x10000) {
    t[0] = (char)(0xE0 | cp >> 12); t[1] = (char)(0x80 | ((cp >> 6) & 63));
    t[2] = (char)(0x80 | (cp & 63)); n = 3;
  } else {
    t[0] = (char)(0xF0 | cp >> 18); t[1] = (char)(0x80 | ((cp >> 12) & 63));
    t[2] = (char)(0x80 | ((cp >> 6) & 63)); t[3] = (char)(0x80 | (cp & 63)); n = 4;
  }
  ob_put(o, t, n);
}

/* ---- writing strings ------------------------------------------------------ */

static const char hexd[] = "0123456789abcdef";

/* bytes as a dump-dialect JSON string */
static void put_dump_string(ob *o, const void *data, size_t n) {
  const unsigned char *s = data, *end = s + n;
  ob_reserve(o, n + 2);
  ob_ch(o, '"');
  const unsigned char *run = s;
  while (s < end) {
    unsigned c = *s;
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') { s++; continue; }
    if (c >= 0x80) {
      size_t k = utf8_len(s, end);
      if (k) { s += k; continue; }
    }
    ob_put(o, run, (size_t)(s - run));
    switch (c) {
    case '"': OB_LIT(o, "\\\""); break;
    case '\\': OB_LIT(o, "\\\\"); break;
    case '\n': OB_LIT(o, "\\n"); break;
    case '\t': OB_LIT(o, "\\t"); break;
    case '\r': OB_LIT(o, "\\r"); break;
    default: {
      char u[6] = {'\\', 'u', c >= 0x80 ? 'd' : '0', c >= 0x80 ? 'c' : '0', hexd[c >> 4], hexd[c & 15]};
      ob_put(o, u, 6);
    }
    }
    run = ++s;
  }
  ob_put(o, run, (size_t)(s - run));
  ob_ch(o, '"');
}

/* bytes as a stored-dialect JSON string (the Lua binding's own form) */
static void put_stored_string(ob *o, const void *data, size_t n) {
  const unsigned char *s = data, *end = s + n, *run = s;
  ob_reserve(o, n + 2);
  ob_ch(o, '"');
  for (; s < end; s++) {
    unsigned c = *s;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    ob_put(o, run, (size_t)(s - run));
    if (c == '"') OB_LIT(o, "\\\"");
    else if (c == '\\') OB_LIT(o, "\\\\");
    else {
      char u[6] = {'\\', 'u', '0', '0', hexd[c >> 4], hexd[c & 15]};
      ob_put(o, u, 6);
    }
    run = s + 1;
  }
  ob_put(o, run, (size_t)(s - run));
  ob_ch(o, '"');
}

/* ---- reading JSON --------------------------------------------------------- */

enum dialect { DUMP, STORED };

typedef struct jp {
  const char *p, *end;
  const char *why;     /* the first failure */
} jp;

static int jfail(jp *j, const char *why) {
  if (!j->why) j->why = why;
  return -1;
}

static void ws(jp *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int hex4(const char *p, unsigned long *out) {
  unsigned long v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned long)(c - '0');
    else if ((c | 32) >= 'a' && (c | 32) <= 'f') v |= (unsigned long)((c | 32) - 'a' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

/* Decode the JSON string at j->p into its bytes, appended to o.  The dump
 * dialect must be valid UTF-8 and may hold \udc80..\udcff (a raw byte); the
 * stored dialect may hold any raw bytes but no lone surrogate. */
static int get_string(jp *j, ob *o, enum dialect dl) {
  if (j->p >= j->end || *j->p != '"') return jfail(j, "a string was expected");
  const char *p = j->p + 1, *end = j->end, *run = p;
  for (;;) {
    if (p >= end) return jfail(j, "a string does not end");
    unsigned char c = (unsigned char)*p;
    if (c == '"') break;
    if (c < 0x20) return jfail(j, "a control character inside a string must be escaped");
    if (c >= 0x80 && dl == DUMP) {
      size_t k = utf8_len((const unsigned char *)p, (const unsigned char *)end);
      if (!k) return jfail(j, "a string is not valid UTF-8 (write the byte as \\udcXX)");
      p += k;
      continue;
    }
    if (c != '\\') { p++; continue; }
    ob_put(o, run, (size_t)(p - run));
    if (p + 1 >= end) return jfail(j, "a string does not end");
    char e = p[1];
    p += 2;
    switch (e) {
    case '"': ob_ch(o, '"'); break;
    case '\\': ob_ch(o, '\\'); break;
    case '/': ob_ch(o, '/'); break;
    case 'b': ob_ch(o, '\b'); break;
    case 'f': ob_ch(o, '\f'); break;
    case 'n': ob_ch(o, '\n'); break;
    case 'r': ob_ch(o, '\r'); break;
    case 't': ob_ch(o, '\t'); break;
    case 'u': {
      unsigned long cp;
      if (end - p < 4 || hex4(p, &cp)) return jfail(j, "a bad \\u escape");
      p += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned long lo;
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) || lo < 0xDC00 ||
            lo > 0xDFFF)
          return jfail(j, "a lone surrogate in a \\u escape");
        p += 6;
        put_utf8(o, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        if (dl != DUMP || cp < 0xDC80 || cp > 0xDCFF)
          return jfail(j, "a lone surrogate in a \\u escape");
        ob_ch(o, (char)(cp - 0xDC00));   /* surrogateescape: one raw byte */
      } else {
        put_utf8(o, cp);
      }
      break;
    }
    default: return jfail(j, "a bad escape in a string");
    }
    run = p;
  }
  ob_put(o, run, (size_t)(p - run));
  j->p = p + 1;
  return 0;
}

/* Scan the JSON number at j->p.  *is_int: no fraction and no exponent. */
static int scan_number(jp *j, int *is_int) {
  const char *p = j->p, *end = j->end;
  *is_int = 1;
  if (p < end && *p == '-') p++;
  if (p >= end) return jfail(j, "a bad number");
  if (*p == '0') p++;
  else if (*p >= '1' && *p <= '9') while (p < end && *p >= '0' && *p <= '9') p++;
  else return jfail(j, "a bad number");
  if (p < end && *p == '.') {
    *is_int = 0;
    p++;
    if (p >= end || *p < '0' || *p > '9') return jfail(j, "a bad number");
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    *is_int = 0;
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || *p < '0' || *p > '9') return jfail(j, "a bad number");
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p - j->p > 400) return jfail(j, "a number too long");
  j->p = p;
  return 0;
}

/* strtod / strtoll over a scanned number (which is not NUL-terminated) */
static double num_double(const char *p, size_t n) {
  char t[408];
  memcpy(t, p, n);
  t[n] = 0;
  return strtod(t, NULL);
}

static int num_int64(const char *p, size_t n, long long *out) {
  char t[408];
  memcpy(t, p, n);
  t[n] = 0;
  errno = 0;
  *out = strtoll(t, NULL, 10);
  return errno == ERANGE ? -1 : 0;
}

static int literal(jp *j, const char *word, size_t n) {
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n)) return jfail(j, "a bad JSON value");
  j->p += n;
  return 0;
}

/* Convert the table-or-element at j->p from dialect `from` to the other one,
 * appending to o; tmp is scratch for strings.  Checks what a table must be
 * to come from (or go back into) the Lua API: no null, no NUL in strings or
 * keys, integers within 2^53, finite numbers, at most TABLE_DEPTH deep. */
static int conv(jp *j, ob *o, ob *tmp, enum dialect from, int depth) {
  ws(j);
  if (j->p >= j->end) return jfail(j, "a JSON value was expected");
  char c = *j->p;
  if (c == '{' || c == '[') {
    if (depth >= TABLE_DEPTH) return jfail(j, "tables nested deeper than 100 cannot be stored");
    char close = c == '{' ? '}' : ']';
    ob_ch(o, c);
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) {
      j->p++;
      ob_ch(o, close);
      return 0;
    }
    for (;;) {
      if (c == '{') {
        ws(j);
        tmp->b->len = 0;
        if (get_string(j, tmp, from)) return -1;
        if (memchr(tmp->b->data, 0, tmp->b->len))
          return jfail(j, "keys inside tables cannot hold NUL bytes");
        if (from == DUMP) put_stored_string(o, tmp->b->data, tmp->b->len);
        else put_dump_string(o, tmp->b->data, tmp->b->len);
        ws(j);
        if (j->p >= j->end || *j->p != ':') return jfail(j, "':' was expected");
        j->p++;
        ob_ch(o, ':');
      }
      if (conv(j, o, tmp, from, depth + 1)) return -1;
      ws(j);
      if (j->p < j->end && *j->p == ',') {
        j->p++;
        ob_ch(o, ',');
        continue;
      }
      if (j->p < j->end && *j->p == close) {
        j->p++;
        ob_ch(o, close);
        return 0;
      }
      return jfail(j, c == '{' ? "',' or '}' was expected" : "',' or ']' was expected");
    }
  }
  if (depth == 0) return jfail(j, "a table was expected");
  if (c == '"') {
    tmp->b->len = 0;
    if (get_string(j, tmp, from)) return -1;
    if (memchr(tmp->b->data, 0, tmp->b->len))
      return jfail(j, "strings inside tables cannot hold NUL bytes");
    if (from == DUMP) put_stored_string(o, tmp->b->data, tmp->b->len);
    else put_dump_string(o, tmp->b->data, tmp->b->len);
    return 0;
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    const char *s = j->p;
    int is_int;
    if (scan_number(j, &is_int)) return -1;
    size_t n = (size_t)(j->p - s);
    long long i;
    if (is_int ? num_int64(s, n, &i) || i > EXACT_INT_LIMIT || i < -EXACT_INT_LIMIT
               : !isfinite(num_double(s, n)))
      return jfail(j, is_int ? "integers beyond 2^53 inside tables cannot be stored exactly"
                             : "numbers inside tables must be finite");
    ob_put(o, s, (size_t)(j->p - s));
    return 0;
  }
  if (c == 't') { if (literal(j, "true", 4)) return -1; OB_LIT(o, "true"); return 0; }
  if (c == 'f') { if (literal(j, "false", 5)) return -1; OB_LIT(o, "false"); return 0; }
  if (c == 'n') return jfail(j, "null cannot be stored");
  return jfail(j, "a bad JSON value");
}

/* ---- values <-> JSON ------------------------------------------------------ */

/* the shortest "%.Ng" that reads back as x, with ".0" when it looks like an
 * integer, so that the reader knows it is a float */
static void put_float(ob *o, double x) {
  char t[40];
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(t, sizeof t, "%.*g", prec, x);
    if (strtod(t, NULL) == x) break;
  }
  ob_put(o, t, (size_t)n);
  if (!strpbrk(t, ".eE")) OB_LIT(o, ".0");
}

/* a table's stored text as dump-dialect JSON; -1 (o as it was) if it is not
 * a table the Lua API could have stored */
static int put_table(ob *o, const void *data, size_t len) {
  size_t mark = o->b->len;
  zkv_buf tb = {0};
  ob tmp = {&tb, 0};
  jp j = {data, (const char *)data + len, NULL};
  int rc = conv(&j, o, &tmp, STORED, 0);
  if (!rc) {
    ws(&j);
    if (j.p != j.end) rc = -1;
  }
  free(tb.data);
  if (rc || tmp.oom) {
    o->b->len = mark;
    return -1;
  }
  return 0;
}

/* append the JSON form of v; -1 (o as it was) if it has none */
static int put_value(ob *o, const zkv_value *v) {
  switch (v->type) {
  case ZKV_T_STRING: put_dump_string(o, v->data, v->len); return 0;
  case ZKV_T_INT: ob_int(o, (long long)v->i); return 0;
  case ZKV_T_BOOL: if (v->i) OB_LIT(o, "true"); else OB_LIT(o, "false"); return 0;
  case ZKV_T_FLOAT:
    if (!isfinite(v->f)) return -1;
    put_float(o, v->f);
    return 0;
  case ZKV_T_JSON: return put_table(o, v->data, v->len);
  default: return -1;
  }
}

int zkv_value_to_json(const zkv_value *v, zkv_buf *out) {
  if (!v || !out) return ZKV_EINVAL;
  ob o = {out, 0};
  size_t mark = out->len;
  if (put_value(&o, v)) return ZKV_EINVAL_VALUE;
  if (o.oom) {
    out->len = mark;
    return ZKV_ENOMEM;
  }
  return ZKV_OK;
}

/* Read the JSON value at j->p into v.  Bytes (of a string, or a table's
 * stored text) are appended to o; v->data is set to NULL and *off to where
 * they start, since o may move until the caller is done with it. */
static int get_value(jp *j, ob *o, zkv_value *v, size_t *off) {
  memset(v, 0, sizeof *v);
  ws(j);
  *off = o->b->len;
  if (j->p >= j->end) return jfail(j, "a value was expected");
  char c = *j->p;
  if (c == '"') {
    if (get_string(j, o, DUMP)) return -1;
    v->type = ZKV_T_STRING;
  } else if (c == '{' || c == '[') {
    zkv_buf tb = {0};
    ob tmp = {&tb, 0};
    int rc = conv(j, o, &tmp, DUMP, 0);
    int oom = tmp.oom;
    free(tb.data);
    if (rc) return -1;
    if (oom) o->oom = 1;
    v->type = ZKV_T_JSON;
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    const char *s = j->p;
    int is_int;
    if (scan_number(j, &is_int)) return -1;
    size_t n = (size_t)(j->p - s);
    if (is_int) {
      long long x;
      if (num_int64(s, n, &x)) return jfail(j, "an integer outside the 64-bit range");
      v->type = ZKV_T_INT;
      v->i = x;
    } else {
      double x = num_double(s, n);
      if (!isfinite(x)) return jfail(j, "a number too large");
      v->type = ZKV_T_FLOAT;
      v->f = x;
    }
  } else if (c == 't' || c == 'f') {
    if (literal(j, c == 't' ? "true" : "false", c == 't' ? 4 : 5)) return -1;
    v->type = ZKV_T_BOOL;
    v->i = c == 't';
  } else if (c == 'n') {
    return jfail(j, "null cannot be stored");
  } else {
    return jfail(j, "a bad JSON value");
  }
  v->len = o->b->len - *off;
  return 0;
}

int zkv_value_from_json(const char *text, size_t len, zkv_value *out, zkv_buf *scratch,
                        const char **why) {
  if (why) *why = "";
  if (!text || !out || !scratch) return ZKV_EINVAL;
  scratch->len = 0;
  ob o = {scratch, 0};
  jp j = {text, text + len, NULL};
  size_t off;
  int rc = get_value(&j, &o, out, &off);
  if (!rc) {
    ws(&j);
    if (j.p != j.end) rc = jfail(&j, "more text after the value");
  }
  if (o.oom) return ZKV_ENOMEM;
  if (rc) {
    if (why) *why = j.why;
    return ZKV_EINVAL_VALUE;
  }
  if (out->type == ZKV_T_STRING || out->type == ZKV_T_JSON)
    out->data = scratch->data ? scratch->data + off : "";
  return ZKV_OK;
}

/* ---- lines ------------------------------------------------------------------ */

/* a key line: ns, key, then the optional fields, the value last (it can be
 * long: what says whose it is comes first) */
static int put_item(ob *o, const zkv_item *it) {
  if (!it->key || it->klen == 0 || it->klen > ZKV_MAX_KEY) return ZKV_EINVAL_KEY;
  OB_LIT(o, "{\"ns\":[");
  for (size_t i = 0; i < it->depth; i++) {
    if (it->path[i].len == 0 || it->path[i].len > ZKV_MAX_KEY) return ZKV_EINVAL_KEY;
    if (i) ob_ch(o, ',');
    put_dump_string(o, it->path[i].data, it->path[i].len);
  }
  OB_LIT(o, "],\"key\":");
  put_dump_string(o, it->key, it->klen);
  const zkv_value *v = &it->value;
  if (v->flags) {
    OB_LIT(o, ",\"flags\":");
    ob_int(o, (long long)v->flags);
  }
  if (it->expires_ms > 0) {
    OB_LIT(o, ",\"expires\":");
    ob_int(o, (long long)it->expires_ms);
  }
  OB_LIT(o, ",\"value\":");
  if (put_value(o, v)) {
    /* no JSON form: the type tag and the stored bytes */
    int t = v->type;
    if (!(t == ZKV_T_FLOAT || t == ZKV_T_JSON || t == ZKV_T_LIST || (t >= ZKV_T_USER && t <= 127)))
      return ZKV_EINVAL_VALUE;
    o->b->len -= sizeof(",\"value\":") - 1;
    OB_LIT(o, ",\"type\":");
    ob_int(o, t);
    OB_LIT(o, ",\"value\":");
    if (t == ZKV_T_FLOAT) put_dump_string(o, &v->f, 8);
    else put_dump_string(o, v->data, v->len);
  }
  OB_LIT(o, "}\n");
  return ZKV_OK;
}

/* ---- writer ----------------------------------------------------------------- */

struct zkv_dump_writer {
  FILE *f;
  char *path;        /* where the dump goes */
  char *tmp;         /* the temporary file being written, NULL when in place */
  zkv_buf line;
  uint64_t count;
};

static void writer_free(zkv_dump_writer *w) {
  if (w->f) fclose(w->f);
  if (w->tmp) unlink(w->tmp);
  free(w->tmp);
  free(w->path);
  free(w->line.data);
  free(w);
}

static int writer_line(zkv_dump_writer *w, ob *o) {
  if (o->oom) return ZKV_ENOMEM;
  if (fwrite(w->line.data, 1, w->line.len, w->f) != w->line.len) return ZKV_EIO;
  return ZKV_OK;
}

/* a FILE over a duplicate of fd, so that closing it leaves fd open */
static FILE *dup_stream(int fd, const char *mode) {
  int d = dup(fd);
  if (d < 0) return NULL;
  FILE *f = fdopen(d, mode);
  if (!f) close(d);
  return f;
}

int zkv_dump_writer_open(const char *path, int fd, int64_t time_ms, zkv_dump_writer **out) {
  if (!out) return ZKV_EINVAL;
  *out = NULL;
  if (path ? !*path : fd < 0) return ZKV_EINVAL;
  zkv_dump_writer *w = calloc(1, sizeof *w);
  if (!w) return ZKV_ENOMEM;
  struct stat st;
  if (!path) {
    w->f = dup_stream(fd, "w");
  } else if (!(w->path = strdup(path))) {
    free(w);
    return ZKV_ENOMEM;
  } else if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    w->f = fopen(path, "w");
  } else {
    size_t n = strlen(path);
    if (!(w->tmp = malloc(n + 16))) {
      writer_free(w);
      return ZKV_ENOMEM;
    }
    snprintf(w->tmp, n + 16, "%s.tmp.XXXXXX", path);
    int tfd = mkstemp(w->tmp);   /* mode 0600: a dump holds the store's data */
    if (tfd < 0) {
      int e = errno;
      free(w->tmp);
      w->tmp = NULL;
      writer_free(w);
      errno = e;
      return ZKV_EIO;
    }
    if (!(w->f = fdopen(tfd, "w"))) close(tfd);
  }
  if (!w->f) {
    int e = errno;
    writer_free(w);
    errno = e;
    return ZKV_EIO;
  }
  setvbuf(w->f, NULL, _IOFBF, 1 << 20);
  ob o = {&w->line, 0};
  OB_LIT(&o, "{\"format\":\"" DUMP_FORMAT "\",\"version\":");
  ob_int(&o, DUMP_VERSION);
  OB_LIT(&o, ",\"time\":");
  ob_int(&o, (long long)time_ms);
  OB_LIT(&o, "}\n");
  int rc = writer_line(w, &o);
  if (rc) {
    int e = errno;
    writer_free(w);
    errno = e;
    return rc;
  }
  *out = w;
  return ZKV_OK;
}

int zkv_dump_writer_add(zkv_dump_writer *w, const zkv_item *it) {
  if (!w || !it || (it->depth && !it->path)) return ZKV_EINVAL;
  w->line.len = 0;
  ob o = {&w->line, 0};
  int rc = put_item(&o, it);
  if (rc) return rc;
  rc = writer_line(w, &o);
  if (!rc) w->count++;
  return rc;
}

int zkv_dump_writer_finish(zkv_dump_writer *w, uint64_t *count) {
  if (!w) return ZKV_EINVAL;
  w->line.len = 0;
  ob o = {&w->line, 0};
  OB_LIT(&o, "{\"count\":");
  ob_int(&o, (long long)w->count);
  OB_LIT(&o, "}\n");
  int rc = writer_line(w, &o);
  if (!rc && fflush(w->f)) rc = ZKV_EIO;
  /* a backup is only a backup once it is on disk; pipes and ttys cannot */
  if (!rc && w->tmp && fsync(fileno(w->f))) rc = ZKV_EIO;
  int e = errno;
  if (fclose(w->f) && !rc) {
    rc = ZKV_EIO;
    e = errno;
  }
  w->f = NULL;
  if (!rc && w->tmp) {
    if (rename(w->tmp, w->path)) {
      rc = ZKV_EIO;
      e = errno;
    } else {
      free(w->tmp);
      w->tmp = NULL;
    }
  }
  if (count) *count = w->count;
  writer_free(w);
  errno = e;
  return rc;
}

void zkv_dump_writer_abort(zkv_dump_writer *w) {
  if (w) writer_free(w);
}

/* ---- reader ------------------------------------------------------------------ */

struct zkv_dump_reader {
  FILE *f;
  int64_t time_ms;
  char *line;
  size_t line_cap;
  uint64_t lineno;      /* lines read */
  uint64_t keys;        /* key lines read since the header */
  uint64_t offset;      /* bytes read */
  uint64_t size;        /* of the file */
  uint64_t first;       /* offset of the line after the header */
  int state;            /* 0 keys, 1 closing line read, 2 failed */
  zkv_buf scratch;      /* a key line's bytes */
  zkv_buf fname;        /* a field's name */
  zkv_bytes *path;
  size_t path_cap;
  char why[240];
};

static int rfail(zkv_dump_reader *r, const char *why) {
  snprintf(r->why, sizeof r->why, "line %llu: %s", (unsigned long long)r->lineno, why);
  r->state = 2;
  return ZKV_EINVAL_VALUE;
}

/* the next line, without its newline; 1 at the end of the file */
static int read_line(zkv_dump_reader *r, size_t *len) {
  errno = 0;
  ssize_t n = getline(&r->line, &r->line_cap, r->f);
  if (n < 0) {
    if (ferror(r->f)) return ZKV_EIO;
    return 1;
  }
  r->offset += (uint64_t)n;
  r->lineno++;
  if (n > 0 && r->line[n - 1] == '\n') n--;
  *len = (size_t)n;
  return 0;
}

/* A line's fields.  Values are kept as spans of the line and read once the
 * whole object is known, so fields may come in any order. */
enum { F_NS, F_KEY, F_VALUE, F_EXPIRES, F_FLAGS, F_TYPE, F_FORMAT, F_VERSION, F_TIME, F_COUNT, NF };
static const char *const field_names[NF] = {"ns",     "key",     "value", "expires", "flags",
                                            "type",   "format",  "version", "time",  "count"};
static const unsigned char field_len[NF] = {2, 3, 5, 7, 5, 4, 6, 7, 4, 5};

/* skip the JSON value at j->p (checked for form only) */
static int skip_value(jp *j, int depth) {
  ws(j);
  if (j->p >= j->end) return jfail(j, "a value was expected");
  char c = *j->p;
  if (c == '{' || c == '[') {
    if (depth > TABLE_DEPTH + 8) return jfail(j, "nested too deep");
    char close = c == '{' ? '}' : ']';
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) { j->p++; return 0; }
    for (;;) {
      if (c == '{') {
        ws(j);
        if (j->p >= j->end || *j->p != '"') return jfail(j, "a string was expected");
        if (skip_value(j, depth + 1)) return -1;
        ws(j);
        if (j->p >= j->end || *j->p != ':') return jfail(j, "':' was expected");
        j->p++;
      }
      if (skip_value(j, depth + 1)) return -1;
      ws(j);
      if (j->p < j->end && *j->p == ',') { j->p++; continue; }
      if (j->p < j->end && *j->p == close) { j->p++; return 0; }
      return jfail(j, "a bad JSON value");
    }
  }
  if (c == '"') {
    const char *p = j->p + 1;
    while (p < j->end && *p != '"') p += (*p == '\\') ? 2 : 1;
    if (p >= j->end) return jfail(j, "a string does not end");
    j->p = p + 1;
    return 0;
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    int is_int;
    return scan_number(j, &is_int);
  }
  if (c == 't') return literal(j, "true", 4);
  if (c == 'f') return literal(j, "false", 5);
  if (c == 'n') return literal(j, "null", 4);
  return jfail(j, "a bad JSON value");
}

/* an integer field in [lo, hi] */
static int get_int(jp *j, long long lo, long long hi, long long *out) {
  ws(j);
  const char *s = j->p;
  int is_int;
  if (scan_number(j, &is_int)) return -1;
  if (!is_int || num_int64(s, (size_t)(j->p - s), out) || *out < lo || *out > hi)
    return jfail(j, "out of range");
  return 0;
}

static int field_fail(zkv_dump_reader *r, int f, const char *why) {
  char t[200];
  snprintf(t, sizeof t, "%s: %s", field_names[f], why);
  return rfail(r, t);
}

/* Split the object line into field spans. */
static int line_fields(zkv_dump_reader *r, const char *line, size_t len, jp span[NF]) {
  jp j = {line, line + len, NULL};
  memset(span, 0, sizeof(jp) * NF);
  ws(&j);
  if (j.p >= j.end) return rfail(r, "an empty line");
  if (*j.p != '{') return rfail(r, "not a JSON object");
  j.p++;
  ws(&j);
  if (j.p < j.end && *j.p == '}') {
    j.p++;
  } else {
    for (;;) {
      ws(&j);
      zkv_buf *nb = &r->fname;
      nb->len = 0;
      ob o = {nb, 0};
      if (get_string(&j, &o, DUMP)) return rfail(r, j.why);
      if (o.oom) return ZKV_ENOMEM;
      int f = NF;
      for (int i = 0; i < NF; i++)
        if (nb->len == field_len[i] && !memcmp(nb->data, field_names[i], nb->len)) f = i;
      if (f == NF) {
        char t[80];
        snprintf(t, sizeof t, "an unknown field \"%.*s\"", (int)(nb->len < 32 ? nb->len : 32),
                 nb->data ? nb->data : "");
        return rfail(r, t);
      }
      if (span[f].p) return field_fail(r, f, "given twice");
      ws(&j);
      if (j.p >= j.end || *j.p != ':') return rfail(r, "':' was expected");
      j.p++;
      ws(&j);
      const char *s = j.p;
      if (skip_value(&j, 0)) return field_fail(r, f, j.why);
      span[f].p = s;
      span[f].end = j.p;
      ws(&j);
      if (j.p < j.end && *j.p == ',') { j.p++; continue; }
      if (j.p < j.end && *j.p == '}') { j.p++; break; }
      return rfail(r, "',' or '}' was expected");
    }
  }
  ws(&j);
  if (j.p != j.end) return rfail(r, "more text after the object");
  return 0;
}

static int read_header(zkv_dump_reader *r) {
  size_t len;
  int rc = read_line(r, &len);
  if (rc == 1) {
    r->lineno = 1;
    return rfail(r, "an empty file, not a zeltkv dump");
  }
  if (rc) return rc;
  jp span[NF];
  if (line_fields(r, r->line, len, span)) {
    rfail(r, "not a zeltkv dump (the first line is not its header)");
    return ZKV_EINVAL_VALUE;
  }
  zkv_buf fb = {0};
  ob o = {&fb, 0};
  int bad = !span[F_FORMAT].p || get_string(&span[F_FORMAT], &o, DUMP) || o.oom ||
            fb.len != strlen(DUMP_FORMAT) || memcmp(fb.data, DUMP_FORMAT, fb.len);
  free(fb.data);
  if (bad) return rfail(r, "not a zeltkv dump (the first line is not its header)");
  for (int f = 0; f < NF; f++)
    if (span[f].p && f != F_FORMAT && f != F_VERSION && f != F_TIME)
      return field_fail(r, f, "not a field of the header");
  long long v, t;
  if (!span[F_VERSION].p || get_int(&span[F_VERSION], 1, 1000000, &v))
    return field_fail(r, F_VERSION, "missing or not a number");
  if (v != DUMP_VERSION) {
    char m[120];
    snprintf(m, sizeof m, "a dump of format version %lld (this zeltkv reads version %d)", v,
             DUMP_VERSION);
    return rfail(r, m);
  }
  if (!span[F_TIME].p || get_int(&span[F_TIME], 0, INT64_MAX, &t))
    return field_fail(r, F_TIME, "missing or not a number of milliseconds");
  r->time_ms = t;
  r->first = r->offset;
  return ZKV_OK;
}

int zkv_dump_reader_open(const char *path, int fd, zkv_dump_reader **out) {
  if (!out) return ZKV_EINVAL;
  *out = NULL;
  if (path ? !*path : fd < 0) return ZKV_EINVAL;
  zkv_dump_reader *r = calloc(1, sizeof *r);
  if (!r) return ZKV_ENOMEM;
  FILE *f = path ? fopen(path, "r") : dup_stream(fd, "r");
  if (!f) {
    int e = errno;
    free(r);
    errno = e;
    return ZKV_EIO;
  }
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
    /* a pipe: keep a copy to read it a second time */
    FILE *t = tmpfile();
    char buf[65536];
    size_t n;
    int bad = !t;
    while (!bad && (n = fread(buf, 1, sizeof buf, f)) > 0)
      if (fwrite(buf, 1, n, t) != n) bad = 1;
    if (ferror(f) || (t && (fflush(t) || fseek(t, 0, SEEK_SET)))) bad = 1;
    int e = errno;
    fclose(f);
    if (bad) {
      if (t) fclose(t);
      free(r);
      errno = e;
      return ZKV_EIO;
    }
    f = t;
  }
  r->f = f;
  if (fstat(fileno(f), &st) == 0) r->size = (uint64_t)st.st_size;
  int rc = read_header(r);
  if (rc && rc != ZKV_EINVAL_VALUE) {
    int e = errno;
    zkv_dump_reader_close(r);
    errno = e;
    return rc;
  }
  *out = r;   /* on a bad header too, so that its error can be read */
  return rc;
}

/* read the byte-string field f into the scratch buffer */
static int bytes_field(zkv_dump_reader *r, jp *s, ob *o, int f, size_t *off, size_t *len) {
  *off = o->b->len;
  if (get_string(s, o, DUMP)) return field_fail(r, f, s->why);
  *len = o->b->len - *off;
  return 0;
}

static int key_line(zkv_dump_reader *r, jp span[NF], zkv_item *it) {
  for (int f = F_FORMAT; f < NF; f++)
    if (span[f].p) return field_fail(r, f, "not a field of a key line");
  if (!span[F_KEY].p) return rfail(r, "the key is missing");
  if (!span[F_VALUE].p) return rfail(r, "the value is missing");
  if (!span[F_NS].p) return rfail(r, "ns (the namespace path) is missing");
  memset(it, 0, sizeof *it);
  zkv_buf *sb = &r->scratch;
  sb->len = 0;
  ob o = {sb, 0};
  /* ns: an array of names; their offsets go in path[].len / data until sb stops moving */
  size_t depth = 0;
  jp *s = &span[F_NS];
  if (s->p >= s->end || *s->p != '[') return field_fail(r, F_NS, "not an array of names");
  s->p++;
  ws(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
  } else {
    for (;;) {
      zkv_bytes *np = grow_array(r->path, &r->path_cap, depth + 1, sizeof *np, 8);
      if (!np) return ZKV_ENOMEM;
      r->path = np;
      size_t off, len;
      ws(s);
      if (bytes_field(r, s, &o, F_NS, &off, &len)) return ZKV_EINVAL_VALUE;
      if (len == 0) return field_fail(r, F_NS, "an empty namespace name");
      if (len > ZKV_MAX_KEY) return field_fail(r, F_NS, "a name longer than 65535 bytes");
      r->path[depth].data = (const void *)(uintptr_t)off;
      r->path[depth].len = len;
      depth++;
      ws(s);
      if (s->p < s->end && *s->p == ',') { s->p++; continue; }
      if (s->p < s->end && *s->p == ']') { s->p++; break; }
      return field_fail(r, F_NS, "not an array of names");
    }
  }
  size_t koff, klen;
  if (bytes_field(r, &span[F_KEY], &o, F_KEY, &koff, &klen)) return ZKV_EINVAL_VALUE;
  if (klen == 0) return field_fail(r, F_KEY, "an empty key");
  if (klen > ZKV_MAX_KEY) return field_fail(r, F_KEY, "longer than 65535 bytes");
  long long x = 0;
  if (span[F_EXPIRES].p && get_int(&span[F_EXPIRES], 1, INT64_MAX, &x))
    return field_fail(r, F_EXPIRES, "not a positive number of milliseconds");
  it->expires_ms = x;
  long long flags = 0;
  if (span[F_FLAGS].p && get_int(&span[F_FLAGS], 0, UINT32_MAX, &flags))
    return field_fail(r, F_FLAGS, "not an integer from 0 to 4294967295");
  size_t voff;
  zkv_value *v = &it->value;
  if (span[F_TYPE].p) {
    long long t;
    if (get_int(&span[F_TYPE], 0, 127, &t) ||
        !(t == ZKV_T_FLOAT || t == ZKV_T_JSON || t == ZKV_T_LIST || t >= ZKV_T_USER))
      return field_fail(r, F_TYPE, "not a type written with a type field (3, 5, 6, 16-127)");
    size_t vlen;
    if (bytes_field(r, &span[F_VALUE], &o, F_VALUE, &voff, &vlen)) return ZKV_EINVAL_VALUE;
    v->type = (int)t;
    v->len = vlen;
    if (t == ZKV_T_FLOAT) {
      if (vlen != 8) return field_fail(r, F_VALUE, "a float of type 3 is 8 bytes");
      memcpy(&v->f, sb->data + voff, 8);
    }
  } else {
    jp *vs = &span[F_VALUE];
    if (get_value(vs, &o, v, &voff)) return field_fail(r, F_VALUE, vs->why);
  }
  if (o.oom) return ZKV_ENOMEM;
  v->flags = (uint32_t)flags;
  /* the buffer has stopped moving: turn offsets into pointers */
  for (size_t i = 0; i < depth; i++)
    r->path[i].data = sb->data + (uintptr_t)r->path[i].data;
  it->path = r->path;
  it->depth = depth;
  it->key = sb->data + koff;
  it->klen = klen;
  if (v->type == ZKV_T_STRING || v->type == ZKV_T_JSON || v->type == ZKV_T_LIST ||
      v->type >= ZKV_T_USER)
    v->data = sb->data ? sb->data + voff : "";
  return ZKV_OK;
}

int zkv_dump_reader_next(zkv_dump_reader *r, zkv_item *out) {
  if (!r || !out) return ZKV_EINVAL;
  if (r->state == 2) return ZKV_EINVAL_VALUE;
  size_t len;
  int rc = read_line(r, &len);
  if (rc == 1) {
    if (r->state == 1) return ZKV_NOTFOUND;
    r->lineno++;
    return rfail(r, "the file ends without its closing {\"count\":N} line (truncated?)");
  }
  if (rc) return rc;
  if (r->state == 1) return rfail(r, "a line after the closing count line");
  jp span[NF];
  if (line_fields(r, r->line, len, span)) return ZKV_EINVAL_VALUE;
  if (span[F_COUNT].p) {
    for (int f = 0; f < NF; f++)
      if (span[f].p && f != F_COUNT) return field_fail(r, f, "not a field of the closing line");
    long long n;
    if (get_int(&span[F_COUNT], 0, INT64_MAX, &n)) return field_fail(r, F_COUNT, "not a count");
    if ((uint64_t)n != r->keys) {
      char m[120];
      snprintf(m, sizeof m, "the closing line counts %lld keys, the file holds %llu", n,
               (unsigned long long)r->keys);
      return rfail(r, m);
    }
    r->state = 1;
    /* nothing may follow the closing line */
    return zkv_dump_reader_next(r, out);
  }
  rc = key_line(r, span, out);
  if (rc) {
    if (rc != ZKV_EINVAL_VALUE) r->state = 2;
    return rc;
  }
  r->keys++;
  return ZKV_OK;
}

const char *zkv_dump_reader_error(const zkv_dump_reader *r, uint64_t *line) {
  if (line) *line = r && r->state == 2 ? r->lineno : 0;
  return r && r->state == 2 ? r->why : "";
}

int64_t zkv_dump_reader_time(const zkv_dump_reader *r) { return r ? r->time_ms : 0; }

void zkv_dump_reader_position(const zkv_dump_reader *r, uint64_t *line, uint64_t *offset,
                              uint64_t *size) {
  if (line) *line = r ? r->lineno : 0;
  if (offset) *offset = r ? r->offset : 0;
  if (size) *size = r ? r->size : 0;
}

int zkv_dump_reader_seek(zkv_dump_reader *r, uint64_t offset, uint64_t line) {
  if (!r) return ZKV_EINVAL;
  if (fseeko(r->f, (off_t)offset, SEEK_SET)) return ZKV_EIO;
  r->offset = offset;
  r->lineno = line;
  r->keys = line > 1 ? line - 1 : 0;   /* every line after the header is a key line */
  r->state = 0;
  r->why[0] = 0;
  return ZKV_OK;
}

int zkv_dump_reader_rewind(zkv_dump_reader *r) {
  if (!r) return ZKV_EINVAL;
  return zkv_dump_reader_seek(r, r->first, 1);
}

void zkv_dump_reader_close(zkv_dump_reader *r) {
  if (!r) return;
  if (r->f) fclose(r->f);
  free(r->line);
  free(r->scratch.data);
  free(r->fname.data);
  free(r->path);
  free(r);
}
