/*
 * test_snapshot.c -- snapshots, the JSON form of values, dump files, and
 * zkv_dump / zkv_load (include/zeltkv.h, "Snapshots and dump files").
 *
 * Files and segments live in a private temporary directory (th_dir).
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp, syscall and other calls beyond C11 */
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>

#include "zeltkv.h"
#include "harness.h"

#define K(s) (s), (sizeof(s) - 1)

__attribute__((constructor)) static void dir_setup(void) { th_shm_dir("zkvsnap"); }

static void file_path(char *buf, size_t n, const char *tag) {
  snprintf(buf, n, "%s/%s", th_dir, tag);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  REQUIRE(f != NULL);
  fputs(text, f);
  fclose(f);
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static zkv_db *mem(uint64_t max_bytes) {
  zkv_options o;
  zkv_options_init(&o);
  o.gc_interval = 0;
  o.max_bytes = max_bytes;
  zkv_db *db = NULL;
  CHECK_RC(zkv_open_memory(&o, &db), ZKV_OK);
  return db;
}

static zkv_value vstr(const void *p, size_t n) {
  zkv_value v = {0};
  v.type = ZKV_T_STRING;
  v.data = p;
  v.len = n;
  return v;
}
static zkv_value vint(int64_t i) { zkv_value v = {0}; v.type = ZKV_T_INT; v.i = i; return v; }
static zkv_value vflt(double f) { zkv_value v = {0}; v.type = ZKV_T_FLOAT; v.f = f; return v; }
static zkv_value vjson(const char *t) {
  zkv_value v = {0};
  v.type = ZKV_T_JSON;
  v.data = t;
  v.len = strlen(t);
  return v;
}

/* value -> JSON text (NUL-terminated in a static buffer), or NULL */
static const char *to_json(zkv_value v) {
  static zkv_buf b;
  b.len = 0;
  if (zkv_value_to_json(&v, &b) != ZKV_OK) return NULL;
  static char out[8192];
  snprintf(out, sizeof out, "%.*s", (int)b.len, b.data);
  return out;
}

/* ------------------------------------------------------------------------ */
/* the JSON form of values                                                   */

TEST(json_scalars) {
  CHECK_STR(to_json(vint(42)), "42");
  CHECK_STR(to_json(vint(INT64_MIN)), "-9223372036854775808");
  CHECK_STR(to_json(vflt(1.0)), "1.0");
  CHECK_STR(to_json(vflt(-0.0)), "-0.0");
  CHECK_STR(to_json(vflt(0.1)), "0.1");
  CHECK_STR(to_json(vflt(1e300)), "1e+300");
  CHECK(to_json(vflt(NAN)) == NULL);
  CHECK(to_json(vflt(INFINITY)) == NULL);
  zkv_value b = {0};
  b.type = ZKV_T_BOOL;
  b.i = 1;
  CHECK_STR(to_json(b), "true");
  b.i = 0;
  CHECK_STR(to_json(b), "false");
  CHECK_STR(to_json(vstr(K("a\"b\\c\n\t\x01"))), "\"a\\\"b\\\\c\\n\\t\\u0001\"");
  CHECK_STR(to_json(vstr(K("caf\xc3\xa9"))), "\"caf\xc3\xa9\"");       /* UTF-8 kept */
  CHECK_STR(to_json(vstr(K("\xff\xc3"))), "\"\\udcff\\udcc3\"");       /* not UTF-8 */
  CHECK_STR(to_json(vstr(K("\xed\xa0\x80"))), "\"\\udced\\udca0\\udc80\"");  /* a surrogate's UTF-8 */
  CHECK_STR(to_json(vstr(K("a\0b"))), "\"a\\u0000b\"");
  zkv_value l = vstr(K("xx"));
  l.type = ZKV_T_LIST;
  CHECK(to_json(l) == NULL);   /* no JSON form */
}

TEST(json_tables) {
  CHECK_STR(to_json(vjson("{\"a\":[1,2.5,true,\"x\"]}")), "{\"a\":[1,2.5,true,\"x\"]}");
  CHECK_STR(to_json(vjson("{\"k\xff\":\"v\xfe\"}")), "{\"k\\udcff\":\"v\\udcfe\"}");
  CHECK_STR(to_json(vjson("[\"\\u0001\\\"\"]")), "[\"\\u0001\\\"\"]");
  CHECK_STR(to_json(vjson("{}")), "{}");
  /* not a table the Lua API stores: no JSON form */
  CHECK(to_json(vjson("{\"a\":null}")) == NULL);
  CHECK(to_json(vjson("{\"a\":")) == NULL);
  CHECK(to_json(vjson("42")) == NULL);
  CHECK(to_json(vjson("[\"a\\u0000\"]")) == NULL);
}

static int from(const char *text, zkv_value *v, zkv_buf *sb, const char **why) {
  return zkv_value_from_json(text, strlen(text), v, sb, why);
}

TEST(json_read) {
  zkv_buf sb = {0};
  zkv_value v;
  const char *why;
  CHECK_RC(from(" 42 ", &v, &sb, &why), ZKV_OK);
  CHECK_EQ(v.type, ZKV_T_INT);
  CHECK_EQ(v.i, 42);
  CHECK_RC(from("-9223372036854775808", &v, &sb, &why), ZKV_OK);
  CHECK_EQ(v.i, INT64_MIN);
  CHECK_RC(from("9223372036854775808", &v, &sb, &why), ZKV_EINVAL_VALUE);
  CHECK_RC(from("1.0", &v, &sb, &why), ZKV_OK);
  CHECK_EQ(v.type, ZKV_T_FLOAT);
  CHECK_DBL(v.f, 1.0);
  CHECK_RC(from("1e3", &v, &sb, &why), ZKV_OK);
  CHECK_EQ(v.type, ZKV_T_FLOAT);
  CHECK_RC(from("1e999", &v, &sb, &why), ZKV_EINVAL_VALUE);
  CHECK_RC(from("true", &v, &sb, &why), ZKV_OK);
  CHECK(v.type == ZKV_T_BOOL && v.i == 1);
  CHECK_RC(from("\"a\\u0000\\udcff\\u00e9\\ud83d\\ude00\"", &v, &sb, &why), ZKV_OK);
  CHECK_EQ(v.type, ZKV_T_STRING);
  CHECK_MEM(v.data, v.len, "a\0\xff\xc3\xa9\xf0\x9f\x98\x80", 9);
  CHECK_RC(from("{\"a\":\"\\udcff\\n\",\"b\":[1,{}]}", &v, &sb, &why), ZKV_OK);
  CHECK_EQ(v.type, ZKV_T_JSON);
  CHECK_MEM(v.data, v.len, "{\"a\":\"\xff\\u000a\",\"b\":[1,{}]}", 26);
  /* bad inputs, each with a reason */
  const char *bad[] = {"null", "", "nul", "\"abc", "\"\\ud800\"", "\"\\udc00\"", "\"\\udc7f\"",
                       "\"\xff\"", "\"a\nb\"", "{\"a\":null}", "[\"a\\u0000\"]", "{\"a\\u0000\":1}",
                       "[9007199254740993]", "[1e999]", "01", "1.", "[1,]", "{\"a\" 1}", "1 2",
                       "\"\\x\"", "[1", "{\"a\":1}}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    why = NULL;
    int rc = from(bad[i], &v, &sb, &why);
    if (rc != ZKV_EINVAL_VALUE || !why || !*why)
      th_fail(__FILE__, __LINE__, "from_json(%s): rc %s, why %s", bad[i], th_rcname(rc),
              why ? why : "(null)");
  }
  CHECK_RC(from("null", &v, &sb, &why), ZKV_EINVAL_VALUE);
  CHECK_STR(why, "null cannot be stored");
  /* nesting: 100 deep is a table, 101 is refused */
  char deep[512];
  for (int d = 100; d <= 101; d++) {
    memset(deep, '[', (size_t)d);
    memset(deep + d, ']', (size_t)d);
    deep[2 * d] = 0;
    CHECK_RC(from(deep, &v, &sb, &why), d == 100 ? ZKV_OK : ZKV_EINVAL_VALUE);
  }
  free(sb.data);
}

/* every byte string of one and two bytes: to JSON and back, unchanged (the
 * reader refuses raw bytes that are not UTF-8, so the text is valid UTF-8) */
TEST(json_bytes_roundtrip) {
  zkv_buf jb = {0}, sb = {0};
  long bad = 0;
  for (unsigned a = 0; a < 256; a++)
    for (unsigned c = 0; c < 257; c++) {
      unsigned char s[2] = {(unsigned char)a, (unsigned char)c};
      size_t n = c == 256 ? 1 : 2;
      zkv_value v = vstr(s, n), back;
      jb.len = 0;
      if (zkv_value_to_json(&v, &jb) != ZKV_OK) { bad++; continue; }
      const char *why;
      if (zkv_value_from_json(jb.data, jb.len, &back, &sb, &why) != ZKV_OK ||
          back.type != ZKV_T_STRING || back.len != n || memcmp(back.data, s, n))
        bad++;
    }
  CHECK_EQ(bad, 0);
  free(jb.data);
  free(sb.data);
}

/* ------------------------------------------------------------------------ */
/* snapshots                                                                 */

TEST(snapshot_walk) {
  zkv_db *db = mem(0);
  zkv_ns a, ab, c;
  REQUIRE_EQ(zkv_namespace(db, ZKV_ROOT, K("a"), &a), ZKV_OK);
  REQUIRE_EQ(zkv_namespace(db, a, K("b/x"), &ab), ZKV_OK);
  REQUIRE_EQ(zkv_namespace(db, ZKV_ROOT, K("c"), &c), ZKV_OK);
  zkv_value v = vint(1);
  CHECK_RC(zkv_set(db, ZKV_ROOT, K("r1"), &v, 0, 0), ZKV_OK);
  CHECK_RC(zkv_set(db, a, K("a1"), &v, 0, 0), ZKV_OK);
  CHECK_RC(zkv_set(db, a, K("a2"), &v, 60000, 0), ZKV_OK);
  CHECK_RC(zkv_set(db, ab, K("k\0b"), &v, 0, 0), ZKV_OK);
  CHECK_RC(zkv_set(db, c, K("gone"), &v, 0, 0), ZKV_OK);
  CHECK_RC(zkv_del(db, c, K("gone")), ZKV_OK);
  CHECK_RC(zkv_set(db, c, K("expires"), &v, 5, 0), ZKV_OK);
  zkv_set_clock_offset(1000);
  zkv_snapshot *sn;
  REQUIRE_EQ(zkv_snapshot_take(db, &sn), ZKV_OK);
  /* writes after the instant are not in it */
  CHECK_RC(zkv_set(db, ZKV_ROOT, K("later"), &v, 0, 0), ZKV_OK);
  zkv_snapshot_info info;
  zkv_snapshot_info_get(sn, &info);
  CHECK(info.lock_ns > 0);
  CHECK(info.bytes > 0);
  zkv_item it;
  int n = 0, seen_r1 = 0, seen_a1 = 0, seen_a2 = 0, seen_ab = 0;
  while (zkv_snapshot_next(sn, &it) == ZKV_OK) {
    n++;
    if (it.depth == 0 && it.klen == 2 && !memcmp(it.key, "r1", 2)) seen_r1++;
    if (it.depth == 1 && !memcmp(it.path[0].data, "a", 1) && it.klen == 2 && !memcmp(it.key, "a1", 2)) {
      seen_a1++;
      CHECK_EQ(it.expires_ms, 0);
      CHECK_EQ(it.value.type, ZKV_T_INT);
      CHECK_EQ(it.value.i, 1);
    }
    if (it.depth == 1 && it.klen == 2 && !memcmp(it.key, "a2", 2)) {
      seen_a2++;
      /* 60 s from the set, 1 s of which the clock offset took */
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      int64_t wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1000;
      CHECK(llabs((long long)(it.expires_ms - (wall + 59000))) < 1000);
    }
    if (it.depth == 2 && it.path[1].len == 3 && !memcmp(it.path[1].data, "b/x", 3)) {
      seen_ab++;
      CHECK_MEM(it.key, it.klen, "k\0b", 3);
    }
  }
  CHECK_EQ(n, 4);   /* not the deleted key, nor the expired one, nor "later" */
  CHECK(seen_r1 == 1 && seen_a1 == 1 && seen_a2 == 1 && seen_ab == 1);
  CHECK_RC(zkv_snapshot_next(sn, &it), ZKV_NOTFOUND);
  zkv_snapshot_free(sn);
  zkv_set_clock_offset(0);
  /* inside a transaction: no instant holds its writes */
  REQUIRE_EQ(zkv_begin(db), ZKV_OK);
  CHECK_RC(zkv_snapshot_take(db, &sn), ZKV_ETXN);
  CHECK(sn == NULL);
  zkv_rollback(db);
  CHECK_RC(zkv_snapshot_take(NULL, &sn), ZKV_EINVAL);
  CHECK_RC(zkv_snapshot_take(db, NULL), ZKV_EINVAL);
  zkv_snapshot_free(NULL);
  zkv_close(db);
}

/* A snapshot of a shared segment shows one instant while another process
 * writes: a writer keeps moving one unit between two keys in transactions
 * (their sum stays 1000), and no snapshot sees a sum other than 1000. */
TEST(snapshot_one_instant) {
  char name[64];
  snprintf(name, sizeof name, "snap-%d-instant", (int)getpid());
  zkv_db *db = NULL;
  REQUIRE_EQ(zkv_open_shared(name, NULL, &db), ZKV_OK);
  zkv_value v = vint(1000);
  CHECK_RC(zkv_set(db, ZKV_ROOT, K("x"), &v, 0, 0), ZKV_OK);
  v = vint(0);
  CHECK_RC(zkv_set(db, ZKV_ROOT, K("y"), &v, 0, 0), ZKV_OK);
  for (int i = 0; i < 2000; i++) {   /* bulk, so that a copy takes a while */
    char k[32];
    int kn = snprintf(k, sizeof k, "fill%d", i);
    zkv_value f = vstr("0123456789012345678901234567890123456789", 40);
    zkv_set(db, ZKV_ROOT, k, (size_t)kn, &f, 0, 0);
  }
  pid_t pid = fork();
  if (pid == 0) {
    zkv_db *w = NULL;
    if (zkv_open_shared(name, NULL, &w)) _exit(3);
    for (int i = 0; i < 200000; i++) {
      if (zkv_begin(w)) _exit(4);
      zkv_incr(w, ZKV_ROOT, K("x"), -1, 0, NULL);
      zkv_incr(w, ZKV_ROOT, K("y"), 1, 0, NULL);
      zkv_commit(w);
    }
    _exit(0);
  }
  int snaps = 0, bad = 0;
  for (int round = 0; round < 200; round++) {
    zkv_snapshot *sn;
    if (zkv_snapshot_take(db, &sn) != ZKV_OK) { bad++; continue; }
    snaps++;
    zkv_item it;
    int64_t sum = 0;
    while (zkv_snapshot_next(sn, &it) == ZKV_OK)
      if (it.value.type == ZKV_T_INT) sum += it.value.i;
    if (sum != 1000) bad++;
    zkv_snapshot_free(sn);
  }
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  CHECK_EQ(snaps, 200);
  CHECK_EQ(bad, 0);
  zkv_close(db);
  zkv_unlink(name, NULL);
}

/* ------------------------------------------------------------------------ */
/* dump and load                                                             */

static void fill(zkv_db *db) {
  zkv_ns a, b;
  REQUIRE_EQ(zkv_namespace(db, ZKV_ROOT, K("a"), &a), ZKV_OK);
  REQUIRE_EQ(zkv_namespace(db, a, K("b\xff"), &b), ZKV_OK);
  zkv_value v = vstr(K("bin\0\xff"));
  CHECK_RC(zkv_set(db, ZKV_ROOT, K("s"), &v, 0, 0), ZKV_OK);
  v = vint(-7);
  CHECK_RC(zkv_set(db, a, K("i"), &v, 0, 0), ZKV_OK);
  v = vflt(2.5);
  CHECK_RC(zkv_set(db, a, K("f"), &v, 120000, 0), ZKV_OK);
  v = vjson("{\"n\":[1,2],\"s\":\"\xfe\"}");
  CHECK_RC(zkv_set(db, b, K("t\0"), &v, 0, 0), ZKV_OK);
  v = vflt(NAN);
  v.flags = 7;
  CHECK_RC(zkv_set(db, b, K("nan"), &v, 0, 0), ZKV_OK);
  v = vstr(K("00000001s00000001x00000001"));   /* a list in its encoding */
  v.type = ZKV_T_LIST;
  CHECK_RC(zkv_set(db, b, K("l"), &v, 0, 0), ZKV_OK);
}

/* a and b hold the same live keys, values, flags, and ttls within 1 s */
static void same_store(zkv_db *x, zkv_db *y) {
  zkv_snapshot *sx, *sy;
  REQUIRE_EQ(zkv_snapshot_take(x, &sx), ZKV_OK);
  REQUIRE_EQ(zkv_snapshot_take(y, &sy), ZKV_OK);
  zkv_item a, b;
  int n = 0;
  for (;;) {
    int ra = zkv_snapshot_next(sx, &a), rb = zkv_snapshot_next(sy, &b);
    CHECK_EQ(ra, rb);
    if (ra != ZKV_OK || rb != ZKV_OK) break;
    n++;
    CHECK_EQ(a.depth, b.depth);
    for (size_t i = 0; i < a.depth && i < b.depth; i++)
      CHECK_MEM(a.path[i].data, a.path[i].len, b.path[i].data, b.path[i].len);
    CHECK_MEM(a.key, a.klen, b.key, b.klen);
    CHECK_EQ(a.value.type, b.value.type);
    CHECK_EQ(a.value.flags, b.value.flags);
    CHECK_MEM(a.value.data, a.value.len, b.value.data, b.value.len);
    CHECK((a.expires_ms == 0) == (b.expires_ms == 0));
    CHECK(llabs((long long)(a.expires_ms - b.expires_ms)) < 1000);
  }
  CHECK(n > 0);
  zkv_snapshot_free(sx);
  zkv_snapshot_free(sy);
}

TEST(dump_load_roundtrip) {
  char path[600];
  file_path(path, sizeof path, "rt.jsonl");
  zkv_db *db = mem(0);
  fill(db);
  zkv_dump_stats ds;
  CHECK_RC(zkv_dump(db, path, -1, NULL, NULL, &ds), ZKV_OK);
  CHECK_EQ(ds.keys, 6);
  const char *text = read_file(path);
  REQUIRE(text != NULL);
  CHECK(strncmp(text, "{\"format\":\"zeltkv-dump\",\"version\":1,\"time\":", 43) == 0);
  CHECK(strstr(text, "{\"ns\":[],\"key\":\"s\",\"value\":\"bin\\u0000\\udcff\"}\n") != NULL);
  CHECK(strstr(text, "{\"ns\":[\"a\"],\"key\":\"i\",\"value\":-7}\n") != NULL);
  CHECK(strstr(text, "\"key\":\"t\\u0000\",\"value\":{\"n\":[1,2],\"s\":\"\\udcfe\"}}\n") != NULL);
  CHECK(strstr(text, "\"key\":\"nan\",\"flags\":7,\"type\":3,\"value\":") != NULL);
  CHECK(strstr(text, "\"key\":\"l\",\"type\":6,\"value\":\"00000001s00000001x00000001\"}") != NULL);
  CHECK(strstr(text, "\n{\"count\":6}\n") != NULL);
  struct stat st;
  CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
  zkv_db *fresh = mem(0);
  zkv_load_stats ls;
  CHECK_RC(zkv_load(fresh, path, -1, NULL, NULL, &ls), ZKV_OK);
  CHECK_EQ(ls.loaded, 6);
  CHECK_EQ(ls.expired, 0);
  CHECK(ls.steps >= 1);
  same_store(db, fresh);
  /* the same store again: each key replaced by itself */
  CHECK_RC(zkv_load(fresh, path, -1, NULL, NULL, &ls), ZKV_OK);
  CHECK_EQ(ls.loaded, 6);
  same_store(db, fresh);
  zkv_close(fresh);
  /* a shared segment the same way */
  char name[64];
  snprintf(name, sizeof name, "snap-%d-rt", (int)getpid());
  zkv_db *sh = NULL;
  REQUIRE_EQ(zkv_open_shared(name, NULL, &sh), ZKV_OK);
  CHECK_RC(zkv_load(sh, path, -1, NULL, NULL, &ls), ZKV_OK);
  same_store(db, sh);
  CHECK_RC(zkv_dump(sh, path, -1, NULL, NULL, &ds), ZKV_OK);
  zkv_close(sh);
  zkv_unlink(name, NULL);
  zkv_db *again = mem(0);
  CHECK_RC(zkv_load(again, path, -1, NULL, NULL, &ls), ZKV_OK);
  same_store(db, again);
  zkv_close(again);
  zkv_close(db);
}

TEST(load_skips_expired) {
  char path[600];
  file_path(path, sizeof path, "exp.jsonl");
  zkv_db *db = mem(0);
  zkv_value v = vint(1);
  CHECK_RC(zkv_set(db, ZKV_ROOT, K("short"), &v, 2000, 0), ZKV_OK);
  CHECK_RC(zkv_set(db, ZKV_ROOT, K("long"), &v, 60000, 0), ZKV_OK);
  CHECK_RC(zkv_dump(db, path, -1, NULL, NULL, NULL), ZKV_OK);
  zkv_set_clock_offset(5000);   /* 5 s later: "short" has expired */
  zkv_db *fresh = mem(0);
  zkv_load_stats ls;
  CHECK_RC(zkv_load(fresh, path, -1, NULL, NULL, &ls), ZKV_OK);
  CHECK_EQ(ls.loaded, 1);
  CHECK_EQ(ls.expired, 1);
  int64_t left;
  CHECK_RC(zkv_ttl(fresh, ZKV_ROOT, K("long"), &left), ZKV_OK);
  CHECK(left > 54000 && left <= 55000);   /* the absolute expiry is kept */
  CHECK_RC(zkv_has(fresh, ZKV_ROOT, K("short")), ZKV_NOTFOUND);
  zkv_set_clock_offset(0);
  zkv_close(fresh);
  zkv_close(db);
}

/* a load that fails changes nothing: keys it would replace keep their values */
static uint64_t nkeys(zkv_db *db) {
  zkv_stats s;
  zkv_stats_get(db, &s);
  return s.keys;
}

TEST(load_bad_lines) {
  char path[600];
  file_path(path, sizeof path, "bad.jsonl");
  const char *H = "{\"format\":\"zeltkv-dump\",\"version\":1,\"time\":1}\n";
  const char *good = "{\"ns\":[\"n\"],\"key\":\"k\",\"value\":\"new\"}\n";
  struct { const char *body; int line; const char *why; } cases[] = {
    {"", 1, "line 1: an empty file"},
    {"{\"a\":1}\n", 1, "line 1: not a zeltkv dump"},
    {"not json\n", 1, "line 1: not a zeltkv dump"},
    {"{\"format\":\"zeltkv-dump\",\"version\":2,\"time\":1}\n{\"count\":0}\n", 1, "line 1: a dump of format version 2"},
    {"H" "{\"ns\":[\"n\"],\"key\":\"k\",\"value\":null}\n{\"count\":1}\n", 2, "line 2: value: null cannot be stored"},
    {"HG" "{\"ns\":[\"n\"],\"key\":\"\",\"value\":1}\n{\"count\":2}\n", 3, "line 3: key: an empty key"},
    {"HG" "{\"ns\":[\"\"],\"key\":\"k\",\"value\":1}\n{\"count\":2}\n", 3, "line 3: ns: an empty namespace name"},
    {"HG" "{\"ns\":[\"n\"],\"key\":\"k\"}\n{\"count\":2}\n", 3, "line 3: the value is missing"},
    {"HG" "{\"ns\":[\"n\"],\"key\":\"k\",\"value\":1,\"x\":1}\n{\"count\":2}\n", 3, "line 3: an unknown field \"x\""},
    {"HG" "{\"ns\":[\"n\"],\"key\":\"k\",\"value\":1,\"expires\":-5}\n{\"count\":2}\n", 3, "line 3: expires:"},
    {"HG" "{\"ns\":[\"n\"],\"key\":\"k\",\"value\":1,\"type\":2}\n{\"count\":2}\n", 3, "line 3: type:"},
    {"HG" "{\"ns\":[\"n\"],\"key\":\"k\",\"value\":[1,null]}\n{\"count\":2}\n", 3, "line 3: value: null cannot be stored"},
    {"HG" "{\"ns\":[\"n\"],\"key\":\"\xff\",\"value\":1}\n{\"count\":2}\n", 3, "line 3: key: a string is not valid UTF-8"},
    {"HG" "\n{\"count\":1}\n", 3, "line 3: an empty line"},
    {"HG", 3, "line 3: the file ends without its closing"},
    {"HG" "{\"count\":5}\n", 3, "line 3: the closing line counts 5 keys, the file holds 1"},
    {"HG" "{\"count\":1}\n" "{\"count\":1}\n", 4, "line 4: a line after the closing count line"},
    {"HG" "{\"ns\":[\"n\"],\"key\":\"k\",\"value\":1,\"key\":\"j\"}\n{\"count\":2}\n", 3, "line 3: key: given twice"},
  };
  zkv_db *db = mem(0);
  zkv_ns n;
  REQUIRE_EQ(zkv_namespace(db, ZKV_ROOT, K("n"), &n), ZKV_OK);
  zkv_value old = vstr(K("old"));
  CHECK_RC(zkv_set(db, n, K("k"), &old, 0, 0), ZKV_OK);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char text[2048] = "";
    for (const char *p = cases[i].body; *p; p++) {
      if (p == cases[i].body && *p == 'H') { strcat(text, H); continue; }
      if (p == cases[i].body + 1 && *p == 'G' && cases[i].body[0] == 'H') { strcat(text, good); continue; }
      strcat(text, p);
      break;
    }
    write_file(path, text);
    zkv_load_stats ls;
    int rc = zkv_load(db, path, -1, NULL, NULL, &ls);
    if (rc != ZKV_EINVAL_VALUE || ls.line != (uint64_t)cases[i].line ||
        strncmp(ls.why, cases[i].why, strlen(cases[i].why)))
      th_fail(__FILE__, __LINE__, "case %zu: rc %s line %llu why \"%s\" (want line %d \"%s\")", i,
              th_rcname(rc), (unsigned long long)ls.line, ls.why, cases[i].line, cases[i].why);
    CHECK_EQ(ls.loaded, 0);
    zkv_value v;
    CHECK_RC(zkv_get(db, n, K("k"), &v), ZKV_OK);
    CHECK_MEM(v.data, v.len, "old", 3);
    CHECK_EQ(nkeys(db), 1);
  }
  /* a missing file */
  zkv_load_stats ls;
  file_path(path, sizeof path, "missing.jsonl");
  CHECK_RC(zkv_load(db, path, -1, NULL, NULL, &ls), ZKV_EIO);
  CHECK_RC(zkv_load(db, NULL, -1, NULL, NULL, &ls), ZKV_EINVAL);
  REQUIRE_EQ(zkv_begin(db), ZKV_OK);
  CHECK_RC(zkv_load(db, path, -1, NULL, NULL, &ls), ZKV_ETXN);
  zkv_rollback(db);
  zkv_close(db);
}

/* A store too small for the dump: the load fails with ZKV_EFULL after some
 * steps were committed, and every key is as it was, the replaced ones too. */
TEST(load_full_store_changes_nothing) {
  char path[600];
  file_path(path, sizeof path, "big.jsonl");
  zkv_db *src = mem(0);
  char val[200];
  memset(val, 'v', sizeof val);
  int N = th_light() ? 3000 : 20000;
  for (int i = 0; i < N; i++) {
    char k[32];
    int kn = snprintf(k, sizeof k, "k%06d", i);
    zkv_value v = vstr(val, sizeof val);
    REQUIRE_EQ(zkv_set(src, ZKV_ROOT, k, (size_t)kn, &v, 0, 0), ZKV_OK);
  }
  REQUIRE_EQ(zkv_dump(src, path, -1, NULL, NULL, NULL), ZKV_OK);
  zkv_db *dst = mem((uint64_t)N * 120);   /* about half of what the dump needs */
  /* keys the dump replaces, and one it does not know */
  zkv_value mine = vstr(K("mine"));
  CHECK_RC(zkv_set(dst, ZKV_ROOT, K("k000000"), &mine, 0, 0), ZKV_OK);
  CHECK_RC(zkv_set(dst, ZKV_ROOT, K("k000100"), &mine, 90000, 0), ZKV_OK);
  CHECK_RC(zkv_set(dst, ZKV_ROOT, K("other"), &mine, 0, 0), ZKV_OK);
  zkv_stats before;
  zkv_stats_get(dst, &before);
  zkv_load_stats ls;
  int rc = zkv_load(dst, path, -1, NULL, NULL, &ls);
  CHECK_RC(rc, ZKV_EFULL);
  CHECK(ls.line > 2);
  CHECK(ls.steps >= 2);   /* committed steps had to be undone */
  CHECK(strstr(ls.why, "the store is full") != NULL);
  CHECK(strstr(ls.why, "failed too") == NULL);
  CHECK_EQ(ls.loaded, 0);
  CHECK_EQ(nkeys(dst), 3);
  zkv_value v;
  CHECK_RC(zkv_get(dst, ZKV_ROOT, K("k000000"), &v), ZKV_OK);
  CHECK_MEM(v.data, v.len, "mine", 4);
  int64_t left;
  CHECK_RC(zkv_ttl(dst, ZKV_ROOT, K("k000100"), &left), ZKV_OK);
  CHECK(left > 85000 && left <= 90000);
  CHECK_RC(zkv_has(dst, ZKV_ROOT, K("k000050")), ZKV_NOTFOUND);
  CHECK_RC(zkv_get(dst, ZKV_ROOT, K("other"), &v), ZKV_OK);
  const char *why;
  CHECK_RC(zkv_verify(dst, &why), ZKV_OK);
  zkv_close(dst);
  zkv_close(src);
}

/* The same on a shared segment, whose undo log (1/16 of the segment) is
 * smaller than a step's writes: steps end early when it fills, forward and
 * while undoing. */
TEST(load_full_shared_segment) {
  char path[600], name[64];
  file_path(path, sizeof path, "bigsh.jsonl");
  snprintf(name, sizeof name, "snap-%d-full", (int)getpid());
  zkv_db *src = mem(0);
  char val[200];
  memset(val, 'v', sizeof val);
  for (int i = 0; i < 20000; i++) {
    char k[32];
    int kn = snprintf(k, sizeof k, "k%06d", i);
    zkv_value v = vstr(val, sizeof val);
    REQUIRE_EQ(zkv_set(src, ZKV_ROOT, k, (size_t)kn, &v, 0, 0), ZKV_OK);
  }
  REQUIRE_EQ(zkv_dump(src, path, -1, NULL, NULL, NULL), ZKV_OK);
  zkv_options o;
  zkv_options_init(&o);
  o.size = 2u << 20;
  zkv_db *dst = NULL;
  REQUIRE_EQ(zkv_open_shared(name, &o, &dst), ZKV_OK);
  zkv_value mine = vstr(K("mine"));
  CHECK_RC(zkv_set(dst, ZKV_ROOT, K("k000000"), &mine, 0, 0), ZKV_OK);
  zkv_load_stats ls;
  CHECK_RC(zkv_load(dst, path, -1, NULL, NULL, &ls), ZKV_EFULL);
  CHECK(strstr(ls.why, "failed too") == NULL);
  CHECK_EQ(nkeys(dst), 1);
  zkv_value v;
  CHECK_RC(zkv_get(dst, ZKV_ROOT, K("k000000"), &v), ZKV_OK);
  CHECK_MEM(v.data, v.len, "mine", 4);
  /* a load that fits, replacing every key it writes: each replace logs the old value */
  zkv_db *half = mem(0);
  for (int i = 0; i < 5000; i++) {
    char k[32];
    int kn = snprintf(k, sizeof k, "k%06d", i);
    zkv_value w = vstr(val, sizeof val);
    REQUIRE_EQ(zkv_set(half, ZKV_ROOT, k, (size_t)kn, &w, 0, 0), ZKV_OK);
    if (i % 2) REQUIRE_EQ(zkv_set(dst, ZKV_ROOT, k, (size_t)kn, &mine, 0, 0), ZKV_OK);
  }
  REQUIRE_EQ(zkv_dump(half, path, -1, NULL, NULL, NULL), ZKV_OK);
  CHECK_RC(zkv_load(dst, path, -1, NULL, NULL, &ls), ZKV_OK);
  CHECK_EQ(ls.loaded, 5000);
  CHECK(ls.steps > 1);
  CHECK_EQ(nkeys(dst), 5000);
  const char *why;
  CHECK_RC(zkv_verify(dst, &why), ZKV_OK);
  zkv_close(half);
  zkv_close(dst);
  zkv_unlink(name, NULL);
  zkv_close(src);
}

TEST(load_from_pipe) {
  char path[600];
  file_path(path, sizeof path, "pipe.jsonl");
  zkv_db *db = mem(0);
  fill(db);
  REQUIRE_EQ(zkv_dump(db, path, -1, NULL, NULL, NULL), ZKV_OK);
  char fifo[600];
  file_path(fifo, sizeof fifo, "fifo");
  REQUIRE(mkfifo(fifo, 0600) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* the writer end: cat the dump into the fifo */
    zkv_close(db);
    int in = open(path, O_RDONLY), out = open(fifo, O_WRONLY);
    char buf[4096];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
      if (write(out, buf, (size_t)n) != n) _exit(1);
    _exit(0);
  }
  zkv_db *fresh = mem(0);
  zkv_load_stats ls;
  CHECK_RC(zkv_load(fresh, fifo, -1, NULL, NULL, &ls), ZKV_OK);
  CHECK_EQ(ls.loaded, 6);
  int status;
  waitpid(pid, &status, 0);
  same_store(db, fresh);
  /* and a dump written to a fifo is written in place */
  pid = fork();
  if (pid == 0) {
    zkv_close(fresh);
    zkv_close(db);
    int in = open(fifo, O_RDONLY);
    char buf[4096];
    while (read(in, buf, sizeof buf) > 0) {}
    _exit(0);
  }
  CHECK_RC(zkv_dump(db, fifo, -1, NULL, NULL, NULL), ZKV_OK);
  waitpid(pid, &status, 0);
  zkv_close(fresh);
  zkv_close(db);
}

/* to and from an open file descriptor, which stays open */
TEST(dump_load_fd) {
  char path[600];
  file_path(path, sizeof path, "fd.jsonl");
  zkv_db *db = mem(0);
  fill(db);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, "", 0) == 0);
  CHECK_RC(zkv_dump(db, NULL, fd, NULL, NULL, NULL), ZKV_OK);
  CHECK(write(fd, "", 0) == 0);   /* still open */
  close(fd);
  CHECK_RC(zkv_dump(db, NULL, -1, NULL, NULL, NULL), ZKV_EINVAL);
  fd = open(path, O_RDONLY);
  zkv_db *fresh = mem(0);
  zkv_load_stats ls;
  CHECK_RC(zkv_load(fresh, NULL, fd, NULL, NULL, &ls), ZKV_OK);
  CHECK_EQ(ls.loaded, 6);
  close(fd);
  same_store(db, fresh);
  zkv_close(fresh);
  zkv_close(db);
}

/* the state of a store as one string (keys, values, flags): to compare before and after */
static size_t state_of(zkv_db *db, char *out, size_t cap) {
  zkv_snapshot *sn;
  size_t n = 0;
  if (zkv_snapshot_take(db, &sn) != ZKV_OK) return 0;
  zkv_item it;
  while (zkv_snapshot_next(sn, &it) == ZKV_OK) {
    int k = snprintf(out + n, cap - n, "%zu|%.*s|%d|%u|%lld|%.*s\n", it.depth, (int)it.klen,
                     (const char *)it.key, it.value.type, it.value.flags, (long long)it.value.i,
                     (int)(it.value.type == ZKV_T_INT ? 0 : it.value.len), (const char *)it.value.data);
    if (k < 0 || (size_t)k >= cap - n) break;
    n += (size_t)k;
  }
  zkv_snapshot_free(sn);
  return n;
}

/* A dump file with random bytes changed: each load of it either loads every
 * key or fails with a coded error, the store as it was, and never crashes. */
TEST(load_mutated_files) {
  char path[600], bad[600];
  file_path(path, sizeof path, "mut.jsonl");
  file_path(bad, sizeof bad, "mut-bad.jsonl");
  zkv_db *db = mem(0);
  fill(db);
  REQUIRE_EQ(zkv_dump(db, path, -1, NULL, NULL, NULL), ZKV_OK);
  FILE *f = fopen(path, "rb");
  static char text[8192], mut[8192], before[65536], after[65536];
  size_t len = fread(text, 1, sizeof text, f);
  fclose(f);
  zkv_db *dst = mem(0);
  zkv_value v = vstr(K("keep"));
  zkv_ns a;
  REQUIRE_EQ(zkv_namespace(dst, ZKV_ROOT, K("a"), &a), ZKV_OK);
  CHECK_RC(zkv_set(dst, a, K("i"), &v, 0, 0), ZKV_OK);   /* a key the dump replaces */
  size_t bn = state_of(dst, before, sizeof before);
  unsigned seed = 12345;
  int ok = 0, failed = 0, changed = 0, other = 0;
  int rounds = th_light() ? 200 : 1000;
  for (int r = 0; r < rounds; r++) {
    memcpy(mut, text, len);
    int edits = 1 + (int)(rand_r(&seed) % 3);
    for (int e = 0; e < edits; e++) {
      size_t at = rand_r(&seed) % len;
      const char pick[] = "\"{}[]:,0123456789-.eE\\unlt\n \xff\xc3";
      mut[at] = (rand_r(&seed) % 2) ? pick[rand_r(&seed) % (sizeof pick - 1)] : (char)rand_r(&seed);
    }
    size_t ml = len - ((rand_r(&seed) % 8 == 0) ? rand_r(&seed) % len : 0);   /* truncated too */
    f = fopen(bad, "wb");
    fwrite(mut, 1, ml, f);
    fclose(f);
    zkv_load_stats ls;
    int rc = zkv_load(dst, bad, -1, NULL, NULL, &ls);
    size_t an = state_of(dst, after, sizeof after);
    if (rc == ZKV_OK) {
      ok++;
      /* back to the state before, for the next round */
      zkv_close(dst);
      dst = mem(0);
      REQUIRE_EQ(zkv_namespace(dst, ZKV_ROOT, K("a"), &a), ZKV_OK);
      CHECK_RC(zkv_set(dst, a, K("i"), &v, 0, 0), ZKV_OK);
      continue;
    }
    failed++;
    if (rc != ZKV_EINVAL_VALUE || !ls.line || strncmp(ls.why, "line ", 5)) other++;
    if (an != bn || memcmp(before, after, bn)) changed++;
  }
  CHECK(failed > rounds / 2);
  CHECK_EQ(other, 0);
  CHECK_EQ(changed, 0);
  const char *why;
  CHECK_RC(zkv_verify(dst, &why), ZKV_OK);
  (void)ok;
  zkv_close(dst);
  zkv_close(db);
}

/* a dump that fails leaves the file it would replace as it was */
TEST(dump_failure_keeps_old_file) {
  char path[600];
  file_path(path, sizeof path, "keep.jsonl");
  write_file(path, "precious\n");
  zkv_db *db = mem(0);
  zkv_value v = vint(1);
  CHECK_RC(zkv_set(db, ZKV_ROOT, K("k"), &v, 0, 0), ZKV_OK);
  REQUIRE_EQ(zkv_begin(db), ZKV_OK);
  CHECK_RC(zkv_dump(db, path, -1, NULL, NULL, NULL), ZKV_ETXN);
  zkv_rollback(db);
  CHECK_STR(read_file(path), "precious\n");
  char dir[600];
  file_path(dir, sizeof dir, "no/such/dir/x.jsonl");
  CHECK_RC(zkv_dump(db, dir, -1, NULL, NULL, NULL), ZKV_EIO);
  zkv_close(db);
}

static uint64_t calls, last_done, last_total;
static void prog(void *ud, uint64_t done, uint64_t total) {
  (void)ud;
  calls++;
  last_done = done;
  last_total = total;
}

TEST(progress) {
  char path[600];
  file_path(path, sizeof path, "prog.jsonl");
  zkv_db *db = mem(0);
  for (int i = 0; i < 10000; i++) {
    char k[32];
    int kn = snprintf(k, sizeof k, "k%d", i);
    zkv_value v = vint(i);
    zkv_set(db, ZKV_ROOT, k, (size_t)kn, &v, 0, 0);
  }
  calls = 0;
  CHECK_RC(zkv_dump(db, path, -1, prog, NULL, NULL), ZKV_OK);
  CHECK(calls >= 2);
  CHECK_EQ(last_done, 10000);
  CHECK_EQ(last_total, 10000);
  calls = 0;
  zkv_db *fresh = mem(0);
  CHECK_RC(zkv_load(fresh, path, -1, prog, NULL, NULL), ZKV_OK);
  CHECK(calls >= 2);
  CHECK(last_done == last_total && last_total > 0);
  zkv_close(fresh);
  zkv_close(db);
}

