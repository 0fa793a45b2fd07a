/*
 * test_shared.c -- zeltkv shared segments (zkv_open_shared / zkv_unlink).
 *
 * Every segment lives in a private temporary directory (ZELTKV_SHM_DIR is set
 * before the first test), named "ztest-<pid>-<test>", and every test unlinks
 * what it made; the last test checks that nothing was left behind.  Children
 * forked by a test record their CHECKs in the harness's shared counters.
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp, syscall and other calls beyond C11 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include "zeltkv.h"
#include "harness.h"

#define K(s) (s), (sizeof(s) - 1)

/* ------------------------------------------------------------------------ */
/* the segment directory                                                     */



__attribute__((constructor)) static void shm_dir_setup(void) { th_shm_dir("zkvtest"); }

/* "ztest-<pid>-<tag>" */
static void seg_name(char *buf, size_t n, const char *tag) {
  snprintf(buf, n, "ztest-%d-%s", (int)th_dir_pid, tag);
}

static void seg_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/zeltkv-%s", th_dir, name);
}

static zkv_db *open_sh(const char *name, const zkv_options *o) {
  zkv_db *db = NULL;
  CHECK_RC(zkv_open_shared(name, o, &db), ZKV_OK);
  CHECK(db != NULL);
  return db;
}

static zkv_db *open_sh_timeout(const char *name, double lock_timeout) {
  zkv_options o;
  zkv_options_init(&o);
  o.lock_timeout = lock_timeout;
  return open_sh(name, &o);
}

static void unlink_seg(const char *name) {
  int existed = -1;
  CHECK_RC(zkv_unlink(name, &existed), ZKV_OK);
  CHECK_EQ(existed, 1);
}

static zkv_value vstr(const char *s) {
  zkv_value v;
  memset(&v, 0, sizeof v);
  v.type = ZKV_T_STRING;
  v.data = s;
  v.len = strlen(s);
  return v;
}

static int set_s(zkv_db *db, zkv_ns ns, const char *k, const char *val) {
  zkv_value v = vstr(val);
  return zkv_set(db, ns, k, strlen(k), &v, 0, 0);
}
static int set_i(zkv_db *db, zkv_ns ns, const char *k, int64_t i) {
  zkv_value v;
  memset(&v, 0, sizeof v);
  v.type = ZKV_T_INT;
  v.i = i;
  return zkv_set(db, ns, k, strlen(k), &v, 0, 0);
}

static void check_str_at(const char *file, int line, zkv_db *db, zkv_ns ns, const char *k,
                         const char *want) {
  zkv_value out;
  memset(&out, 0, sizeof out);
  int rc = zkv_get(db, ns, k, strlen(k), &out);
  if (want == NULL) {
    th_check_rc(rc, ZKV_NOTFOUND, file, line, k);
    return;
  }
  if (!th_check_rc(rc, ZKV_OK, file, line, k)) return;
  th_check_mem(out.data, out.len, want, strlen(want), file, line, k, want);
}
#define CHECK_GET_STR(db, ns, k, want) check_str_at(__FILE__, __LINE__, db, ns, k, want)

static void check_int_at(const char *file, int line, zkv_db *db, zkv_ns ns, const char *k,
                         int64_t want) {
  zkv_value out;
  memset(&out, 0, sizeof out);
  int rc = zkv_get(db, ns, k, strlen(k), &out);
  if (!th_check_rc(rc, ZKV_OK, file, line, k)) return;
  th_check_eq(out.type, ZKV_T_INT, file, line, "type", "ZKV_T_INT");
  th_check_eq(out.i, want, file, line, k, "want");
}
#define CHECK_GET_INT(db, ns, k, want) check_int_at(__FILE__, __LINE__, db, ns, k, want)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Wait for a child; returns its exit status, or 1000 + signal if it died of one. */
static int wait_child(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFSIGNALED(st)) return 1000 + WTERMSIG(st);
  return WEXITSTATUS(st);
}

static void child_exit(int code) {
  fflush(stdout);
  fflush(stderr);
  _exit(code);
}

static uint64_t stats_keys(zkv_db *db) {
  zkv_stats st;
  memset(&st, 0, sizeof st);
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  return st.keys;
}

/* ------------------------------------------------------------------------ */
/* open, close, unlink, names, options                                       */

TEST(shared_open_basics) {
  char name[64], path[1024];
  seg_name(name, sizeof name, "basics");
  seg_path(path, sizeof path, name);
  struct stat sb;
  CHECK(stat(path, &sb) != 0);

  zkv_db *db = (zkv_db *)&db;
  CHECK_RC(zkv_open_shared(name, NULL, &db), ZKV_OK);
  REQUIRE(db != NULL);
  CHECK_EQ(zkv_is_shared(db), 1);
  CHECK_EQ(zkv_txn_depth(db), 0);
  REQUIRE(stat(path, &sb) == 0);
  CHECK_EQ(sb.st_mode & 07777, 0600);
  CHECK(S_ISREG(sb.st_mode));
  CHECK(sb.st_size > 0 && (uint64_t)sb.st_size <= 64ull * 1024 * 1024);

  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK(st.capacity > 0 && st.capacity <= 64ull * 1024 * 1024);
  CHECK_EQ(st.keys, 0);
  CHECK_EQ(st.lock_recoveries, 0);
  CHECK_EQ(st.free_bytes, st.capacity - st.bytes_used);

  zkv_ns ns = 0;
  CHECK_RC(zkv_namespace(db, ZKV_ROOT, K("app"), &ns), ZKV_OK);
  CHECK_RC(set_s(db, ns, "k", "v"), ZKV_OK);
  CHECK_GET_STR(db, ns, "k", "v");
  zkv_close(db);

  /* the segment outlives its handles */
  db = open_sh(name, NULL);
  REQUIRE(db != NULL);
  zkv_ns ns2 = 0;
  CHECK_RC(zkv_namespace(db, ZKV_ROOT, K("app"), &ns2), ZKV_OK);
  CHECK_EQ(ns2, ns);
  CHECK_GET_STR(db, ns2, "k", "v");
  zkv_close(db);

  int existed = -1;
  CHECK_RC(zkv_unlink(name, &existed), ZKV_OK);
  CHECK_EQ(existed, 1);
  CHECK(stat(path, &sb) != 0);
  existed = -1;
  CHECK_RC(zkv_unlink(name, &existed), ZKV_OK);
  CHECK_EQ(existed, 0);
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);

  /* a later open creates a new, empty segment */
  db = open_sh(name, NULL);
  REQUIRE(db != NULL);
  CHECK_GET_STR(db, ZKV_ROOT, "k", NULL);
  CHECK_EQ(stats_keys(db), 0);
  zkv_close(db);
  unlink_seg(name);
}

TEST(shared_bad_names) {
  zkv_db *db;
  int existed;
  char long129[130], long128[129];
  memset(long129, 'a', 129);
  long129[129] = '\0';
  memset(long128, 'b', 128);
  long128[128] = '\0';
  const char *bad[] = {"", long129, "a/b", "a b", "/abs", "a\nb", "a:b", "a*b",
                       "caf\xc3\xa9", "a\\b", "tab\t", "../x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    db = (zkv_db *)&db;
    int rc = zkv_open_shared(bad[i], NULL, &db);
    if (rc != ZKV_EINVAL_KEY) {
      th_fail(__FILE__, __LINE__, "zkv_open_shared(\"%s\"): got %s, want ZKV_EINVAL_KEY", bad[i],
              th_rcname(rc));
    }
    CHECK(db == NULL);
    if (rc == ZKV_OK && db != NULL) zkv_close(db);
    existed = -1;
    rc = zkv_unlink(bad[i], &existed);
    if (rc != ZKV_EINVAL_KEY) {
      th_fail(__FILE__, __LINE__, "zkv_unlink(\"%s\"): got %s, want ZKV_EINVAL_KEY", bad[i],
              th_rcname(rc));
    }
  }
  db = (zkv_db *)&db;
  CHECK_RC2(zkv_open_shared(NULL, NULL, &db), ZKV_EINVAL_KEY, ZKV_EINVAL);
  CHECK(db == NULL);
  CHECK_RC2(zkv_unlink(NULL, &existed), ZKV_EINVAL_KEY, ZKV_EINVAL);

  /* 128 characters, and every allowed character, are fine; they stay inside the directory */
  char n2[64];
  snprintf(n2, sizeof n2, "..%d_AZaz09.-", (int)th_dir_pid);
  const char *good[] = {long128, n2};
  for (size_t i = 0; i < 2; i++) {
    db = NULL;
    CHECK_RC(zkv_open_shared(good[i], NULL, &db), ZKV_OK);
    if (db == NULL) continue;
    CHECK_RC(set_s(db, ZKV_ROOT, "k", "v"), ZKV_OK);
    zkv_close(db);
    char path[1024];
    struct stat sb;
    seg_path(path, sizeof path, good[i]);
    CHECK(stat(path, &sb) == 0);
    unlink_seg(good[i]);
  }
  /* no segment appeared for any bad name */
  DIR *d = opendir(th_dir);
  REQUIRE(d != NULL);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (strstr(e->d_name, "ztest-") != NULL) continue; /* other tests' (none run in parallel) */
    th_fail(__FILE__, __LINE__, "unexpected file %s in the segment directory", e->d_name);
  }
  closedir(d);
}

TEST(shared_bad_options) {
  char name[64], path[1024];
  seg_name(name, sizeof name, "badopt");
  seg_path(path, sizeof path, name);
  zkv_options o;
  zkv_db *db;
  struct stat sb;

  zkv_options_init(&o);
  o.lock_timeout = -1;
  db = (zkv_db *)&db;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_EINVAL);
  CHECK(db == NULL);

  zkv_options_init(&o);
  o.lock_timeout = NAN;
  db = (zkv_db *)&db;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_EINVAL);
  CHECK(db == NULL);

  zkv_options_init(&o);
  o.evict = 9;
  db = (zkv_db *)&db;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_EINVAL);
  CHECK(db == NULL);

  zkv_options_init(&o);
  o.gc_interval = -5;
  db = (zkv_db *)&db;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_EINVAL);
  CHECK(db == NULL);

  CHECK_RC(zkv_open_shared(name, NULL, NULL), ZKV_EINVAL);

  /* a failed open made no segment */
  CHECK(stat(path, &sb) != 0);
  int existed = -1;
  CHECK_RC(zkv_unlink(name, &existed), ZKV_OK);
  CHECK_EQ(existed, 0);

  /* a size too small to hold a store: refused, or a store that says so */
  zkv_options_init(&o);
  o.size = 100;
  db = NULL;
  int rc = zkv_open_shared(name, &o, &db);
  CHECK(rc == ZKV_EINVAL || rc == ZKV_OK);
  if (rc == ZKV_OK) {
    CHECK(db != NULL);
    int r2 = set_s(db, ZKV_ROOT, "k", "v");
    CHECK(r2 == ZKV_OK || r2 == ZKV_EFULL);
    zkv_close(db);
    unlink_seg(name);
  } else {
    CHECK(db == NULL);
    CHECK(stat(path, &sb) != 0);
  }
}

TEST(shared_mode_and_size_options) {
  char name[64], path[1024];
  seg_name(name, sizeof name, "mode");
  seg_path(path, sizeof path, name);
  mode_t old = umask(022);
  zkv_options o;
  zkv_options_init(&o);
  o.mode = 0640;
  o.size = 1u << 20;
  zkv_db *db = open_sh(name, &o);
  REQUIRE(db != NULL);
  struct stat sb;
  REQUIRE(stat(path, &sb) == 0);
  CHECK_EQ(sb.st_mode & 07777, 0640);
  CHECK(sb.st_size > 0 && sb.st_size <= (off_t)(1u << 20));
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK(st.capacity > 0 && st.capacity <= (1u << 20));
  uint64_t cap = st.capacity;

  /* mode applies only when the segment is created; no size given opens it as
   * it is (a larger one grows it: test_segment_life) */
  zkv_options o2;
  zkv_options_init(&o2);
  o2.mode = 0666;
  zkv_db *db2 = open_sh(name, &o2);
  REQUIRE(db2 != NULL);
  CHECK_RC(zkv_stats_get(db2, &st), ZKV_OK);
  CHECK_EQ(st.capacity, cap);
  REQUIRE(stat(path, &sb) == 0);
  CHECK_EQ(sb.st_mode & 07777, 0640);

  /* the segment fills up: ZKV_EFULL, data intact */
  char val[1000], k[24];
  int inserted = 0, rc = ZKV_OK;
  for (int i = 0; i < 5000; i++) {
    memset(val, 'a' + i % 26, sizeof val);
    zkv_value v;
    memset(&v, 0, sizeof v);
    v.type = ZKV_T_STRING;
    v.data = val;
    v.len = sizeof val;
    snprintf(k, sizeof k, "k%d", i);
    rc = zkv_set(db, ZKV_ROOT, k, strlen(k), &v, 0, 0);
    if (rc != ZKV_OK) break;
    inserted++;
  }
  CHECK_RC(rc, ZKV_EFULL);
  CHECK(inserted > 300);
  CHECK_EQ(stats_keys(db2), (uint64_t)inserted);
  int bad = 0;
  for (int i = 0; i < inserted; i++) {
    zkv_value out;
    memset(val, 'a' + i % 26, sizeof val);
    snprintf(k, sizeof k, "k%d", i);
    if (zkv_get(db2, ZKV_ROOT, k, strlen(k), &out) != ZKV_OK || out.len != sizeof val ||
        memcmp(out.data, val, sizeof val) != 0) {
      bad++;
    }
  }
  CHECK_EQ(bad, 0);
  zkv_close(db2);
  zkv_close(db);
  unlink_seg(name);

  /* mode 0644 */
  o.mode = 0644;
  db = open_sh(name, &o);
  REQUIRE(db != NULL);
  REQUIRE(stat(path, &sb) == 0);
  CHECK_EQ(sb.st_mode & 07777, 0644);
  zkv_close(db);
  unlink_seg(name);
  umask(old);
}

TEST(shared_evict_lru) {
  char name[64];
  seg_name(name, sizeof name, "lru");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 1u << 20;
  o.evict = ZKV_EVICT_LRU;
  zkv_db *db = open_sh(name, &o);
  REQUIRE(db != NULL);
  char val[1000], k[24];
  memset(val, 'x', sizeof val);
  zkv_value v;
  memset(&v, 0, sizeof v);
  v.type = ZKV_T_STRING;
  v.data = val;
  v.len = sizeof val;
  int fails = 0;
  for (int i = 0; i < 3000; i++) {
    snprintf(k, sizeof k, "k%d", i);
    if (zkv_set(db, ZKV_ROOT, k, strlen(k), &v, 0, 0) != ZKV_OK) fails++;
  }
  CHECK_EQ(fails, 0);
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK(st.evictions > 0);
  CHECK_EQ(st.keys + st.evictions, 3000);
  CHECK_RC(zkv_has(db, ZKV_ROOT, K("k2999")), ZKV_OK);
  zkv_close(db);
  unlink_seg(name);
}

/* ------------------------------------------------------------------------ */
/* handles in one process                                                    */

TEST(shared_two_handles_one_process) {
  char name[64];
  seg_name(name, sizeof name, "two");
  zkv_db *a = open_sh(name, NULL);
  zkv_db *b = open_sh(name, NULL);
  REQUIRE(a != NULL && b != NULL);
  CHECK(a != b);
  zkv_ns na = 0, nb = 0;
  CHECK_RC(zkv_namespace(a, ZKV_ROOT, K("users"), &na), ZKV_OK);
  CHECK_RC(zkv_namespace(b, ZKV_ROOT, K("users"), &nb), ZKV_OK);
  CHECK_EQ(na, nb);
  CHECK_RC(set_s(a, na, "u1", "ada"), ZKV_OK);
  CHECK_GET_STR(b, nb, "u1", "ada");
  CHECK_RC(set_s(b, nb, "u1", "grace"), ZKV_OK);
  CHECK_GET_STR(a, na, "u1", "grace");
  int64_t r = 0;
  CHECK_RC(zkv_incr(a, ZKV_ROOT, K("ctr"), 1, 0, &r), ZKV_OK);
  CHECK_RC(zkv_incr(b, ZKV_ROOT, K("ctr"), 1, 0, &r), ZKV_OK);
  CHECK_EQ(r, 2);
  CHECK_RC(zkv_del(b, nb, K("u1")), ZKV_OK);
  CHECK_RC(zkv_has(a, na, K("u1")), ZKV_NOTFOUND);
  uint64_t c = 9;
  CHECK_RC(zkv_count(a, ZKV_ROOT, &c), ZKV_OK);
  CHECK_EQ(c, 1);
  /* expiry is the same for both (one monotonic clock) */
  zkv_value v = vstr("t");
  CHECK_RC(zkv_set(a, ZKV_ROOT, K("ttl"), &v, 500, 0), ZKV_OK);
  int64_t ms = 0;
  CHECK_RC(zkv_ttl(b, ZKV_ROOT, K("ttl"), &ms), ZKV_OK);
  CHECK(ms > 0 && ms <= 500);
  zkv_set_clock_offset(1000);
  CHECK_RC(zkv_has(b, ZKV_ROOT, K("ttl")), ZKV_NOTFOUND);
  zkv_set_clock_offset(0);
  /* closing one handle leaves the other working */
  zkv_close(a);
  CHECK_GET_INT(b, ZKV_ROOT, "ctr", 2);
  CHECK_RC(set_s(b, ZKV_ROOT, "after", "close"), ZKV_OK);
  zkv_db *c2 = open_sh(name, NULL);
  REQUIRE(c2 != NULL);
  CHECK_GET_STR(c2, ZKV_ROOT, "after", "close");
  zkv_close(c2);
  zkv_close(b);
  unlink_seg(name);
}

TEST(shared_nested_handles_join_txn) {
  char name[64];
  seg_name(name, sizeof name, "join");
  zkv_db *a = open_sh_timeout(name, 2);
  zkv_db *b = open_sh_timeout(name, 2);
  REQUIRE(a != NULL && b != NULL);
  alarm(60); /* a self-deadlock fails this test, not the run */
  CHECK_RC(set_s(a, ZKV_ROOT, "k", "orig"), ZKV_OK);

  CHECK_RC(zkv_begin(a), ZKV_OK);
  CHECK_EQ(zkv_txn_depth(a), 1);
  CHECK_EQ(zkv_txn_depth(b), 1); /* levels of this store, this thread */
  double t0 = now_s();
  CHECK_RC(set_s(b, ZKV_ROOT, "k", "from-b"), ZKV_OK); /* joins, does not wait */
  CHECK(now_s() - t0 < 1.5);   /* (a wait would be the 2 s lock timeout; the bound no tighter) */
  CHECK_GET_STR(a, ZKV_ROOT, "k", "from-b");
  CHECK_RC(zkv_begin(b), ZKV_OK);
  CHECK_EQ(zkv_txn_depth(a), 2);
  CHECK_RC(set_s(b, ZKV_ROOT, "inner", "x"), ZKV_OK);
  CHECK_RC(zkv_commit(b), ZKV_OK);
  CHECK_EQ(zkv_txn_depth(a), 1);
  CHECK_RC(zkv_rollback(a), ZKV_OK);
  CHECK_EQ(zkv_txn_depth(a), 0);
  CHECK_EQ(zkv_txn_depth(b), 0);
  CHECK_GET_STR(b, ZKV_ROOT, "k", "orig");
  CHECK_GET_STR(b, ZKV_ROOT, "inner", NULL);

  /* commit through the outer handle keeps the inner handle's writes */
  CHECK_RC(zkv_begin(a), ZKV_OK);
  CHECK_RC(set_s(b, ZKV_ROOT, "k", "kept"), ZKV_OK);
  int64_t r;
  CHECK_RC(zkv_incr(b, ZKV_ROOT, K("n"), 5, 0, &r), ZKV_OK);
  CHECK_RC(zkv_commit(a), ZKV_OK);
  CHECK_GET_STR(a, ZKV_ROOT, "k", "kept");
  CHECK_GET_INT(a, ZKV_ROOT, "n", 5);

  /* the inner handle can end a level the outer one opened */
  CHECK_RC(zkv_begin(a), ZKV_OK);
  CHECK_RC(set_s(a, ZKV_ROOT, "x", "1"), ZKV_OK);
  CHECK_RC(zkv_rollback(b), ZKV_OK);
  CHECK_EQ(zkv_txn_depth(a), 0);
  CHECK_GET_STR(a, ZKV_ROOT, "x", NULL);
  CHECK_RC(zkv_commit(a), ZKV_ETXN);

  /* a third handle opened while the transaction is open joins too */
  CHECK_RC(zkv_begin(a), ZKV_OK);
  CHECK_RC(set_s(a, ZKV_ROOT, "y", "1"), ZKV_OK);
  zkv_db *c = open_sh_timeout(name, 2);
  if (c != NULL) {
    CHECK_GET_STR(c, ZKV_ROOT, "y", "1");
    CHECK_EQ(zkv_txn_depth(c), 1);
  }
  CHECK_RC(zkv_commit(a), ZKV_OK);
  CHECK_GET_STR(b, ZKV_ROOT, "y", "1");
  /* (closing c while the transaction was open would roll it back: c is "inside"
   * it by zkv_txn_depth; the header's zkv_close says so) */
  zkv_close(c);
  alarm(0);
  zkv_close(a);
  zkv_close(b);
  unlink_seg(name);
}

TEST(shared_close_inside_txn_rolls_back) {
  char name[64];
  seg_name(name, sizeof name, "closetxn");
  zkv_db *a = open_sh_timeout(name, 1);
  zkv_db *b = open_sh_timeout(name, 1);
  REQUIRE(a != NULL && b != NULL);
  alarm(60);
  CHECK_RC(set_s(b, ZKV_ROOT, "k", "orig"), ZKV_OK);
  CHECK_RC(zkv_begin(a), ZKV_OK);
  CHECK_RC(zkv_begin(a), ZKV_OK);
  CHECK_RC(set_s(a, ZKV_ROOT, "k", "dirty"), ZKV_OK);
  CHECK_RC(set_s(a, ZKV_ROOT, "new", "dirty"), ZKV_OK);
  zkv_close(a);
  CHECK_EQ(zkv_txn_depth(b), 0);
  CHECK_GET_STR(b, ZKV_ROOT, "k", "orig");
  CHECK_GET_STR(b, ZKV_ROOT, "new", NULL);
  /* the lock is free: another process can write */
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(20);
    zkv_close(b); /* the parent's handle: this child uses its own */
    zkv_db *c = NULL;
    zkv_options o;
    zkv_options_init(&o);
    o.lock_timeout = 1;
    int rc = zkv_open_shared(name, &o, &c);
    CHECK_RC(rc, ZKV_OK);
    if (rc == ZKV_OK) {
      CHECK_RC(set_s(c, ZKV_ROOT, "child", "wrote"), ZKV_OK);
      zkv_close(c);
    }
    child_exit(0);
  }
  CHECK_EQ(wait_child(pid), 0);
  CHECK_GET_STR(b, ZKV_ROOT, "child", "wrote");
  alarm(0);
  zkv_close(b);
  unlink_seg(name);
}

/* Another thread, with its own handle, while this thread holds a transaction. */
struct iso_arg {
  zkv_db *c;
  int get_rc;
  char got[32];
  int set_rc;
  double set_secs;
  volatile int done;
  int depth;
};

static void *iso_thread(void *p) {
  struct iso_arg *a = p;
  a->depth = zkv_txn_depth(a->c);
  zkv_value out;
  a->get_rc = zkv_get(a->c, ZKV_ROOT, K("k"), &out);
  if (a->get_rc == ZKV_OK) {
    size_t n = out.len < sizeof a->got - 1 ? out.len : sizeof a->got - 1;
    memcpy(a->got, out.data, n);
    a->got[n] = '\0';
  }
  double t0 = now_s();
  a->set_rc = set_s(a->c, ZKV_ROOT, "other", "x");
  a->set_secs = now_s() - t0;
  __atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

TEST(shared_txn_isolation_and_lock_timeout) {
  char name[64];
  seg_name(name, sizeof name, "iso");
  zkv_db *a = open_sh_timeout(name, 0.3);
  zkv_db *c = open_sh_timeout(name, 0.3);
  REQUIRE(a != NULL && c != NULL);
  alarm(60);
  CHECK_RC(set_s(a, ZKV_ROOT, "k", "old"), ZKV_OK);
  CHECK_RC(zkv_begin(a), ZKV_OK);
  CHECK_RC(set_s(a, ZKV_ROOT, "k", "new"), ZKV_OK);
  struct iso_arg arg;
  memset(&arg, 0, sizeof arg);
  arg.c = c;
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, iso_thread, &arg) == 0);
  double t0 = now_s();
  while (!__atomic_load_n(&arg.done, __ATOMIC_SEQ_CST) && now_s() - t0 < 10) sleep_ms(10);
  CHECK(arg.done);
  /* still inside the transaction: the other thread never saw "new" and could not write */
  CHECK_RC(zkv_rollback(a), ZKV_OK);
  pthread_join(th, NULL);
  CHECK_EQ(arg.depth, 0);
  CHECK(arg.get_rc == ZKV_OK || arg.get_rc == ZKV_ETIMEDOUT);
  if (arg.get_rc == ZKV_OK) CHECK_STR(arg.got, "old");
  CHECK_RC(arg.set_rc, ZKV_ETIMEDOUT);
  CHECK(arg.set_secs >= 0.2 && arg.set_secs < 3.0);
  CHECK_GET_STR(a, ZKV_ROOT, "k", "old");
  CHECK_GET_STR(a, ZKV_ROOT, "other", NULL); /* the timed-out write changed nothing */

  /* once the lock is free the other handle works again */
  memset(&arg, 0, sizeof arg);
  arg.c = c;
  REQUIRE(pthread_create(&th, NULL, iso_thread, &arg) == 0);
  pthread_join(th, NULL);
  CHECK_RC(arg.get_rc, ZKV_OK);
  CHECK_STR(arg.got, "old");
  CHECK_RC(arg.set_rc, ZKV_OK);
  CHECK_GET_STR(a, ZKV_ROOT, "other", "x");
  alarm(0);
  zkv_close(c);
  zkv_close(a);
  unlink_seg(name);
}

TEST(shared_rollback_of_replacements_twice) {
  /* transactions well within the undo log, rolled back one after another */
  char name[64];
  seg_name(name, sizeof name, "rbtwice");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 1u << 20;
  zkv_db *db = open_sh(name, &o);
  REQUIRE(db != NULL);
  char val[1000], k[24];
  zkv_value v;
  memset(&v, 0, sizeof v);
  v.type = ZKV_T_STRING;
  v.data = val;
  v.len = sizeof val;
  memset(val, 'o', sizeof val);
  for (int i = 0; i < 300; i++) {
    snprintf(k, sizeof k, "k%d", i);
    CHECK_RC(zkv_set(db, ZKV_ROOT, k, strlen(k), &v, 0, 0), ZKV_OK);
  }
  for (int round = 0; round < 4; round++) {
    CHECK_RC(zkv_begin(db), ZKV_OK);
    memset(val, 'a' + round, sizeof val);
    for (int i = 0; i < 20; i++) {
      snprintf(k, sizeof k, "k%d", i);
      int rc = zkv_set(db, ZKV_ROOT, k, strlen(k), &v, 0, 0);
      if (rc != ZKV_OK) {
        th_fail(__FILE__, __LINE__, "round %d, set %d: got %s", round, i, th_rcname(rc));
        break;
      }
    }
    CHECK_RC(zkv_rollback(db), ZKV_OK);
  }
  uint64_t c = 0;
  CHECK_RC(zkv_count(db, ZKV_ROOT, &c), ZKV_OK);
  CHECK_EQ(c, 300);
  CHECK_RC(zkv_flush(db, &c), ZKV_OK);
  CHECK_EQ(c, 300);
  zkv_close(db);
  unlink_seg(name);
}

TEST(shared_big_transaction_undo_log_full) {
  /* a transaction bigger than the segment's undo log: the write that does not
   * fit fails (ZKV_ETXN "undo log full", or ZKV_EFULL) and changes nothing; the
   * transaction stays open; rollback undoes all of it, commit keeps all of it */
  char name[64];
  seg_name(name, sizeof name, "biglog");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 1u << 20;
  zkv_db *db = open_sh(name, &o);
  REQUIRE(db != NULL);
  char val[1000], k[24];
  zkv_value v;
  memset(&v, 0, sizeof v);
  v.type = ZKV_T_STRING;
  v.data = val;
  v.len = sizeof val;
  memset(val, 'o', sizeof val);
  for (int i = 0; i < 300; i++) {
    snprintf(k, sizeof k, "k%d", i);
    CHECK_RC(zkv_set(db, ZKV_ROOT, k, strlen(k), &v, 0, 0), ZKV_OK);
  }
  for (int round = 0; round < 2; round++) {
    CHECK_RC(zkv_begin(db), ZKV_OK);
    memset(val, round ? 'c' : 'r', sizeof val);
    int done = 0, rc = ZKV_OK;
    for (int i = 0; i < 300; i++) {
      snprintf(k, sizeof k, "k%d", i);
      rc = zkv_set(db, ZKV_ROOT, k, strlen(k), &v, 0, 0);
      if (rc != ZKV_OK) break;
      done++;
    }
    if (rc != ZKV_OK) {
      CHECK_RC2(rc, ZKV_ETXN, ZKV_EFULL);
      CHECK_EQ(zkv_txn_depth(db), 1);
      /* the failed write changed nothing: the key still holds its old value */
      zkv_value out;
      snprintf(k, sizeof k, "k%d", done);
      CHECK_RC(zkv_get(db, ZKV_ROOT, k, strlen(k), &out), ZKV_OK);
      CHECK(out.len == sizeof val && ((const char *)out.data)[0] == 'o');
    }
    if (round == 0) {
      CHECK_RC(zkv_rollback(db), ZKV_OK);
      int bad = 0;
      for (int i = 0; i < 300; i++) {
        zkv_value out;
        snprintf(k, sizeof k, "k%d", i);
        if (zkv_get(db, ZKV_ROOT, k, strlen(k), &out) != ZKV_OK || out.len != sizeof val ||
            ((const char *)out.data)[0] != 'o')
          bad++;
      }
      CHECK_EQ(bad, 0);
    } else {
      CHECK_RC(zkv_commit(db), ZKV_OK);
      int bad = 0;
      for (int i = 0; i < 300; i++) {
        zkv_value out;
        snprintf(k, sizeof k, "k%d", i);
        char want = i < done ? 'c' : 'o';
        if (zkv_get(db, ZKV_ROOT, k, strlen(k), &out) != ZKV_OK || out.len != sizeof val ||
            ((const char *)out.data)[0] != want)
          bad++;
      }
      CHECK_EQ(bad, 0);
    }
  }
  zkv_close(db);
  unlink_seg(name);
}

/* ------------------------------------------------------------------------ */
/* threads and processes                                                     */

struct incr_arg {
  const char *name;
  int n;
  int errors;
  int open_rc;
};

static void *incr_thread(void *p) {
  struct incr_arg *a = p;
  zkv_db *db = NULL;
  a->open_rc = zkv_open_shared(a->name, NULL, &db);
  if (a->open_rc != ZKV_OK) return NULL;
  for (int i = 0; i < a->n; i++) {
    if (zkv_incr(db, ZKV_ROOT, K("ctr"), 1, 0, NULL) != ZKV_OK) a->errors++;
  }
  zkv_close(db);
  return NULL;
}

TEST(shared_four_threads_incr) {
  char name[64];
  seg_name(name, sizeof name, "threads");
  zkv_db *db = open_sh(name, NULL);
  REQUIRE(db != NULL);
  pthread_t th[4];
  struct incr_arg args[4];
  for (int i = 0; i < 4; i++) {
    args[i].name = name;
    args[i].n = 50000;
    args[i].errors = 0;
    args[i].open_rc = -999;
    REQUIRE(pthread_create(&th[i], NULL, incr_thread, &args[i]) == 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    CHECK_RC(args[i].open_rc, ZKV_OK);
    CHECK_EQ(args[i].errors, 0);
  }
  CHECK_GET_INT(db, ZKV_ROOT, "ctr", 200000);
  zkv_close(db);
  unlink_seg(name);
}

/* a thread of this process that ends while it holds the lock (inside a
 * transaction): the next thread to want the lock finds the holder gone, takes
 * the lock over and undoes the dead thread's writes */
static void *dying_holder(void *p) {
  zkv_db *db = p;
  if (zkv_begin(db) != ZKV_OK) return (void *)1;
  set_s(db, ZKV_ROOT, "k", "dirty");
  set_s(db, ZKV_ROOT, "only-in-txn", "dirty");
  pthread_exit(NULL);   /* no commit, no rollback */
}

TEST(shared_thread_dies_holding_lock) {
  char name[64];
  seg_name(name, sizeof name, "tdies");
  zkv_db *db = open_sh_timeout(name, 5);
  REQUIRE(db != NULL);
  alarm(60);
  CHECK_RC(set_s(db, ZKV_ROOT, "k", "orig"), ZKV_OK);
  zkv_stats st0;
  CHECK_RC(zkv_stats_get(db, &st0), ZKV_OK);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, dying_holder, db) == 0);
  void *ret = NULL;
  pthread_join(th, &ret);
  CHECK(ret == NULL);
  double t0 = now_s();
  CHECK_RC(set_s(db, ZKV_ROOT, "after", "yes"), ZKV_OK);
  /* found dead at once, not after the 5 s lock timeout (the bound is that, less
   * what a preempted run under valgrind on a busy machine may take) */
  CHECK(now_s() - t0 < 4.0);
  CHECK_GET_STR(db, ZKV_ROOT, "k", "orig");
  CHECK_GET_STR(db, ZKV_ROOT, "only-in-txn", NULL);
  CHECK_GET_STR(db, ZKV_ROOT, "after", "yes");
  CHECK_EQ(zkv_txn_depth(db), 0);
  zkv_stats st1;
  CHECK_RC(zkv_stats_get(db, &st1), ZKV_OK);
  CHECK_EQ(st1.lock_recoveries, st0.lock_recoveries + 1);
  /* and transactions work as before */
  CHECK_RC(zkv_begin(db), ZKV_OK);
  CHECK_RC(set_s(db, ZKV_ROOT, "k", "txn"), ZKV_OK);
  CHECK_RC(zkv_rollback(db), ZKV_OK);
  CHECK_GET_STR(db, ZKV_ROOT, "k", "orig");
  /* the dead thread's transaction is gone from this process too: the
   * background sweep (which waits while a transaction is open) runs again */
  zkv_set_clock_offset(3600 * 1000);
  for (int i = 0; i < 64; i++) CHECK_RC(set_s(db, ZKV_ROOT, "tick", "x"), ZKV_OK);
  zkv_set_clock_offset(0);
  CHECK_RC(zkv_stats_get(db, &st1), ZKV_OK);
  CHECK(st1.gc_runs > st0.gc_runs);
  const char *why = "";
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  alarm(0);
  zkv_close(db);
  unlink_seg(name);
}

TEST(shared_fork_children) {
  char name[64];
  seg_name(name, sizeof name, "fork");
  zkv_db *db = open_sh(name, NULL);
  REQUIRE(db != NULL);
  zkv_ns fam = 0;
  CHECK_RC(zkv_namespace(db, ZKV_ROOT, K("family"), &fam), ZKV_OK);
  char k[32];
  for (int i = 0; i < 100; i++) {
    snprintf(k, sizeof k, "p%d", i);
    CHECK_RC(set_i(db, fam, k, i), ZKV_OK);
  }
  const int NCH = 3, NINC = 10000;
  pid_t pids[3];
  fflush(stdout);
  for (int c = 0; c < NCH; c++) {
    pids[c] = fork();
    if (pids[c] == 0) {
      alarm(120);
      zkv_close(db); /* the parent's handle: this child uses its own */
      zkv_db *cd = NULL;
      int rc = zkv_open_shared(name, NULL, &cd);
      CHECK_RC(rc, ZKV_OK);
      if (rc != ZKV_OK) child_exit(3);
      zkv_ns f2 = 0;
      CHECK_RC(zkv_namespace(cd, ZKV_ROOT, K("family"), &f2), ZKV_OK);
      CHECK_EQ(f2, fam);
      char kk[32];
      for (int i = 0; i < 100; i++) {
        snprintf(kk, sizeof kk, "p%d", i);
        CHECK_GET_INT(cd, f2, kk, i);
      }
      int errs = 0;
      for (int i = 0; i < NINC; i++) {
        if (zkv_incr(cd, ZKV_ROOT, K("ctr"), 1, 0, NULL) != ZKV_OK) errs++;
      }
      CHECK_EQ(errs, 0);
      snprintf(kk, sizeof kk, "child%d", c);
      CHECK_RC(set_i(cd, f2, kk, (int64_t)getpid()), ZKV_OK);
      zkv_close(cd);
      child_exit(0);
    }
    CHECK(pids[c] > 0);
  }
  int errs = 0;
  for (int i = 0; i < NINC; i++) {
    if (zkv_incr(db, ZKV_ROOT, K("ctr"), 1, 0, NULL) != ZKV_OK) errs++;
  }
  CHECK_EQ(errs, 0);
  for (int c = 0; c < NCH; c++) {
    if (pids[c] > 0) CHECK_EQ(wait_child(pids[c]), 0);
  }
  CHECK_GET_INT(db, ZKV_ROOT, "ctr", (int64_t)(NCH + 1) * NINC);
  for (int c = 0; c < NCH; c++) {
    snprintf(k, sizeof k, "child%d", c);
    CHECK_GET_INT(db, fam, k, (int64_t)pids[c]);
  }
  uint64_t cnt = 0;
  CHECK_RC(zkv_count(db, fam, &cnt), ZKV_OK);
  CHECK_EQ(cnt, 100 + NCH);
  zkv_close(db);

  /* a segment outlives the process that made it */
  char name2[64];
  seg_name(name2, sizeof name2, "fork2");
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    zkv_db *cd = NULL;
    if (zkv_open_shared(name2, NULL, &cd) != ZKV_OK) child_exit(3);
    if (set_s(cd, ZKV_ROOT, "left", "behind") != ZKV_OK) child_exit(4);
    zkv_close(cd);
    child_exit(0);
  }
  CHECK_EQ(wait_child(pid), 0);
  zkv_db *d2 = open_sh(name2, NULL);
  REQUIRE(d2 != NULL);
  CHECK_GET_STR(d2, ZKV_ROOT, "left", "behind");
  zkv_close(d2);
  unlink_seg(name2);
  unlink_seg(name);
}

TEST(shared_concurrent_create) {
  /* many processes open a new name at once: all succeed, all see one segment */
  for (int round = 0; round < 5; round++) {
    char name[64], tag[32];
    snprintf(tag, sizeof tag, "race%d", round);
    seg_name(name, sizeof name, tag);
    const int N = 8;
    pid_t pids[8];
    fflush(stdout);
    for (int c = 0; c < N; c++) {
      pids[c] = fork();
      if (pids[c] == 0) {
        alarm(60);
        zkv_db *cd = NULL;
        int rc = zkv_open_shared(name, NULL, &cd);
        if (rc != ZKV_OK) {
          TH_NOTE("child %d: zkv_open_shared: %s", c, th_rcname(rc));
          child_exit(10);
        }
        rc = zkv_incr(cd, ZKV_ROOT, K("opened"), 1, 0, NULL);
        zkv_close(cd);
        child_exit(rc == ZKV_OK ? 0 : 11);
      }
    }
    for (int c = 0; c < N; c++) CHECK_EQ(wait_child(pids[c]), 0);
    zkv_db *db = open_sh(name, NULL);
    if (db != NULL) {
      CHECK_GET_INT(db, ZKV_ROOT, "opened", N);
      zkv_close(db);
    }
    unlink_seg(name);
  }
}

TEST(shared_cross_process_lock_timeout) {
  char name[64];
  seg_name(name, sizeof name, "xlock");
  zkv_db *db = open_sh_timeout(name, 0.5);
  REQUIRE(db != NULL);
  CHECK_RC(set_s(db, ZKV_ROOT, "k", "orig"), ZKV_OK);
  zkv_close(db); /* no mapping in this process while the child holds the lock */
  /* pfd: the child holds the lock; gfd: the parent is done, the child may commit (a
   * sleep instead let a slow run, under valgrind on a busy machine, see the commit) */
  int pfd[2], gfd[2];
  REQUIRE(pipe(pfd) == 0);
  REQUIRE(pipe(gfd) == 0);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(30);
    close(pfd[0]);
    close(gfd[1]);
    zkv_db *cd = NULL;
    if (zkv_open_shared(name, NULL, &cd) != ZKV_OK) child_exit(3);
    if (zkv_begin(cd) != ZKV_OK) child_exit(4);
    if (set_s(cd, ZKV_ROOT, "k", "child") != ZKV_OK) child_exit(5);
    if (write(pfd[1], "L", 1) != 1) child_exit(6);
    char go;
    if (read(gfd[0], &go, 1) != 1) child_exit(8);
    if (zkv_commit(cd) != ZKV_OK) child_exit(7);
    zkv_close(cd);
    child_exit(0);
  }
  close(pfd[1]);
  close(gfd[0]);
  char ch = 0;
  CHECK(read(pfd[0], &ch, 1) == 1);
  close(pfd[0]);
  db = open_sh_timeout(name, 0.5);
  if (db != NULL) {
    double t0 = now_s();
    CHECK_RC(set_s(db, ZKV_ROOT, "k", "parent"), ZKV_ETIMEDOUT);
    double el = now_s() - t0;
    CHECK(el >= 0.4 && el < (th_light() ? 5.0 : 2.4));   /* light: valgrind, ASan, qemu */
    zkv_value out;
    int rc = zkv_get(db, ZKV_ROOT, K("k"), &out);
    CHECK(rc == ZKV_OK || rc == ZKV_ETIMEDOUT);
    if (rc == ZKV_OK) CHECK_MEM(out.data, out.len, "orig", 4); /* never the uncommitted value */
  }
  CHECK(write(gfd[1], "G", 1) == 1);
  close(gfd[1]);
  CHECK_EQ(wait_child(pid), 0);
  if (db != NULL) {
    CHECK_GET_STR(db, ZKV_ROOT, "k", "child");
    CHECK_RC(set_s(db, ZKV_ROOT, "k", "parent"), ZKV_OK);
    zkv_close(db);
  } else {
    /* the open itself timed out while the child held the lock: that is allowed */
  }
  unlink_seg(name);
}

/* A process that dies holding the lock: the next locker rolls its writes back. */
TEST(shared_owner_dies_in_txn) {
  char name[64];
  seg_name(name, sizeof name, "dies");
  zkv_db *db = open_sh_timeout(name, 5);
  REQUIRE(db != NULL);
  alarm(120);
  CHECK_RC(set_s(db, ZKV_ROOT, "k", "orig"), ZKV_OK);
  char k[32];
  for (int i = 0; i < 50; i++) {
    snprintf(k, sizeof k, "keep%d", i);
    CHECK_RC(set_i(db, ZKV_ROOT, k, i), ZKV_OK);
  }

  /* 1: the child dies in a transaction while this process keeps its handle */
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    zkv_db *cd = NULL;
    if (zkv_open_shared(name, NULL, &cd) != ZKV_OK) child_exit(3);
    if (zkv_begin(cd) != ZKV_OK) child_exit(4);
    set_s(cd, ZKV_ROOT, "k", "dirty");
    set_s(cd, ZKV_ROOT, "new", "dirty");
    char kk[32];
    for (int i = 0; i < 50; i += 2) {
      snprintf(kk, sizeof kk, "keep%d", i);
      zkv_del(cd, ZKV_ROOT, kk, strlen(kk));
    }
    for (int i = 0; i < 500; i++) {
      snprintf(kk, sizeof kk, "junk%d", i);
      set_i(cd, ZKV_ROOT, kk, i);
    }
    fflush(stdout);
    raise(SIGKILL);
    child_exit(9);
  }
  CHECK_EQ(wait_child(pid), 1000 + SIGKILL);
  CHECK_GET_STR(db, ZKV_ROOT, "k", "orig");
  CHECK_GET_STR(db, ZKV_ROOT, "new", NULL);
  CHECK_GET_STR(db, ZKV_ROOT, "junk0", NULL);
  for (int i = 0; i < 50; i++) {
    snprintf(k, sizeof k, "keep%d", i);
    CHECK_GET_INT(db, ZKV_ROOT, k, i);
  }
  uint64_t cnt = 0;
  CHECK_RC(zkv_count(db, ZKV_ROOT, &cnt), ZKV_OK);
  CHECK_EQ(cnt, 51);
  CHECK_EQ(stats_keys(db), 51);
  CHECK_RC(set_s(db, ZKV_ROOT, "k", "after"), ZKV_OK);
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK(st.lock_recoveries >= 1);
  uint64_t rec1 = st.lock_recoveries;

  /* 2: this thread is waiting for the lock when the holder dies */
  int pfd[2];
  REQUIRE(pipe(pfd) == 0);
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    zkv_db *cd = NULL;
    if (zkv_open_shared(name, NULL, &cd) != ZKV_OK) child_exit(3);
    if (zkv_begin(cd) != ZKV_OK) child_exit(4);
    set_s(cd, ZKV_ROOT, "k", "dirty2");
    set_s(cd, ZKV_ROOT, "new2", "dirty2");
    if (write(pfd[1], "L", 1) != 1) child_exit(6);
    sleep_ms(400);
    raise(SIGKILL);
    child_exit(9);
  }
  close(pfd[1]);
  char ch;
  CHECK(read(pfd[0], &ch, 1) == 1);
  close(pfd[0]);
  double t0 = now_s();
  CHECK_RC(set_s(db, ZKV_ROOT, "waiter", "got-it"), ZKV_OK); /* waits, then recovers */
  CHECK(now_s() - t0 < 4.5);
  CHECK_EQ(wait_child(pid), 1000 + SIGKILL);
  CHECK_GET_STR(db, ZKV_ROOT, "k", "after");
  CHECK_GET_STR(db, ZKV_ROOT, "new2", NULL);
  CHECK_GET_STR(db, ZKV_ROOT, "waiter", "got-it");
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK(st.lock_recoveries > rec1);
  zkv_close(db);

  /* 3: nobody has the segment open when the holder dies; the next open recovers */
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    zkv_db *cd = NULL;
    if (zkv_open_shared(name, NULL, &cd) != ZKV_OK) child_exit(3);
    if (zkv_begin(cd) != ZKV_OK) child_exit(4);
    set_s(cd, ZKV_ROOT, "k", "dirty3");
    zkv_clear(cd, ZKV_ROOT, NULL);
    raise(SIGKILL);
    child_exit(9);
  }
  CHECK_EQ(wait_child(pid), 1000 + SIGKILL);
  db = open_sh_timeout(name, 5);
  REQUIRE(db != NULL);
  CHECK_GET_STR(db, ZKV_ROOT, "k", "after");
  CHECK_GET_INT(db, ZKV_ROOT, "keep49", 49);
  CHECK_RC(zkv_count(db, ZKV_ROOT, &cnt), ZKV_OK);
  CHECK_EQ(cnt, 52);
  zkv_close(db);
  alarm(0);
  unlink_seg(name);
}

TEST(shared_ttl_across_processes) {
  char name[64];
  seg_name(name, sizeof name, "ttl");
  zkv_db *db = open_sh(name, NULL);
  REQUIRE(db != NULL);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    zkv_close(db); /* the parent's handle: this child uses its own */
    zkv_db *cd = NULL;
    if (zkv_open_shared(name, NULL, &cd) != ZKV_OK) child_exit(3);
    zkv_value v = vstr("soon");
    if (zkv_set(cd, ZKV_ROOT, K("t"), &v, 2000, 0) != ZKV_OK) child_exit(4);
    zkv_close(cd);
    child_exit(0);
  }
  CHECK_EQ(wait_child(pid), 0);
  int64_t ms = 0;
  CHECK_RC(zkv_ttl(db, ZKV_ROOT, K("t"), &ms), ZKV_OK);
  CHECK(ms > 0 && ms <= 2000);
  zkv_set_clock_offset(2500);
  CHECK_GET_STR(db, ZKV_ROOT, "t", NULL);
  uint64_t freed = 0;
  CHECK_RC(zkv_gc(db, &freed), ZKV_OK);
  CHECK(freed <= 1);
  CHECK_EQ(stats_keys(db), 0);
  zkv_set_clock_offset(0);
  zkv_close(db);
  unlink_seg(name);
}

/* ------------------------------------------------------------------------ */
/* damaged segments                                                          */

static int noop_key(void *ud, const void *key, size_t klen) {
  (void)ud;
  (void)key;
  (void)klen;
  return 0;
}

static void poke(zkv_db *db) {
  /* exercise the store; any result code is fine, a crash or a hang is not.
   * A lock that cannot be had (its bytes were damaged) ends the poking: each
   * further call would only wait lock_timeout again. */
  char k[32];
  zkv_value out;
  for (int i = 0; i < 200; i++) {
    snprintf(k, sizeof k, "k%d", i);
    if (zkv_get(db, ZKV_ROOT, k, strlen(k), &out) == ZKV_ETIMEDOUT) return;
  }
  if (set_s(db, ZKV_ROOT, "probe", "value") == ZKV_ETIMEDOUT) return;
  (void)set_s(db, ZKV_ROOT, "poke", "value");
  (void)zkv_incr(db, ZKV_ROOT, K("k3"), 1, 0, NULL);
  zkv_ns ns;
  (void)zkv_namespace(db, ZKV_ROOT, K("nsx"), &ns);
  uint64_t c;
  (void)zkv_count(db, ZKV_ROOT, &c);
  zkv_cursor cur = ZKV_CURSOR_INIT;
  for (int i = 0; i < 100 && !cur.done; i++) {
    if (zkv_keys(db, ZKV_ROOT, &cur, 50, noop_key, NULL, NULL) != ZKV_OK) break;
  }
  zkv_stats st;
  (void)zkv_stats_get(db, &st);
  (void)zkv_gc(db, &c);
  (void)zkv_clear(db, ZKV_ROOT, &c);
  (void)zkv_flush(db, &c);
  for (int i = 0; i < 100; i++) {
    snprintf(k, sizeof k, "n%d", i);
    (void)set_s(db, ZKV_ROOT, k, "refill");
  }
}

/* Open `name` in a fresh child process (and poke it if the open works).
 * Returns the result code of the open, or 1000 + signal if the child died, or
 * 2000 + status for another exit. */
static int open_in_child(const char *name, int do_poke) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(30);
    zkv_options o;
    zkv_options_init(&o);
    o.lock_timeout = 0.5;
    zkv_db *db = (zkv_db *)&o;
    int rc = zkv_open_shared(name, &o, &db);
    if (rc != ZKV_OK && db != NULL) child_exit(150); /* out must be NULL on failure */
    if (rc == ZKV_OK) {
      if (do_poke) poke(db);
      zkv_close(db);
    }
    child_exit(rc + 64);
  }
  int st = wait_child(pid);
  if (st >= 1000) return st;
  if (st >= 64 - 20 && st <= 64 + 2) return st - 64;
  return 2000 + st;
}

static const char *outcome(int r, char *buf, size_t n) {
  if (r >= 2000) snprintf(buf, n, "child exit status %d", r - 2000);
  else if (r >= 1000) snprintf(buf, n, "child killed by signal %d (%s)", r - 1000, strsignal(r - 1000));
  else snprintf(buf, n, "%s", th_rcname(r));
  return buf;
}

#define CHECK_OPEN(name, want)                                                           \
  do {                                                                                   \
    char ob_[128];                                                                       \
    int r_ = open_in_child(name, 1);                                                     \
    __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);                              \
    if (r_ != (want))                                                                    \
      th_fail(__FILE__, __LINE__, "open of damaged segment: got %s, want %s",            \
              outcome(r_, ob_, sizeof ob_), th_rcname(want));                            \
  } while (0)

/* make a segment with some keys and close it */
static int make_segment(const char *name, uint64_t size) {
  zkv_options o;
  zkv_options_init(&o);
  o.size = size;
  zkv_db *db = NULL;
  int rc = zkv_open_shared(name, &o, &db);
  if (rc != ZKV_OK) return rc;
  char k[32];
  for (int i = 0; i < 200; i++) {
    snprintf(k, sizeof k, "k%d", i);
    set_i(db, ZKV_ROOT, k, i);
  }
  zkv_ns ns;
  zkv_namespace(db, ZKV_ROOT, K("sub"), &ns);
  set_s(db, ns, "x", "y");
  zkv_close(db);
  return ZKV_OK;
}

static off_t file_size(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 ? sb.st_size : -1;
}

static void overwrite(const char *path, off_t at, const void *buf, size_t n) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) {
    CHECK(fd >= 0);
    return;
  }
  CHECK(pwrite(fd, buf, n, at) == (ssize_t)n);
  close(fd);
}

static void read_at(const char *path, off_t at, void *buf, size_t n) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    CHECK(fd >= 0);
    return;
  }
  CHECK(pread(fd, buf, n, at) == (ssize_t)n);
  close(fd);
}

TEST(shared_damaged_segments) {
  char name[64], path[1024];
  seg_name(name, sizeof name, "damaged");
  seg_path(path, sizeof path, name);
  const uint64_t SZ = 1u << 20;

  /* sanity: an intact segment opens */
  REQUIRE_RC(make_segment(name, SZ), ZKV_OK);
  CHECK_OPEN(name, ZKV_OK);
  unlink_seg(name);

  /* garbage over the whole file */
  REQUIRE_RC(make_segment(name, SZ), ZKV_OK);
  off_t sz = file_size(path);
  REQUIRE(sz > 0);
  unsigned char *junk = malloc((size_t)sz);
  REQUIRE(junk != NULL);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (off_t i = 0; i < sz; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    junk[i] = (unsigned char)x;
  }
  overwrite(path, 0, junk, (size_t)sz);
  CHECK_OPEN(name, ZKV_ECORRUPT);
  unlink_seg(name);

  /* zeros over the whole file */
  REQUIRE_RC(make_segment(name, SZ), ZKV_OK);
  memset(junk, 0, (size_t)sz);
  overwrite(path, 0, junk, (size_t)sz);
  CHECK_OPEN(name, ZKV_ECORRUPT);
  unlink_seg(name);
  free(junk);

  /* truncated: empty, inside the header, half */
  const off_t cuts[] = {0, 7, 100, 4096, (off_t)SZ / 2, (off_t)SZ - 8};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    REQUIRE_RC(make_segment(name, SZ), ZKV_OK);
    REQUIRE(truncate(path, cuts[i]) == 0);
    char ob[128];
    int r = open_in_child(name, 1);
    __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
    if (r != ZKV_ECORRUPT) {
      th_fail(__FILE__, __LINE__, "segment truncated to %lld bytes: got %s, want ZKV_ECORRUPT",
              (long long)cuts[i], outcome(r, ob, sizeof ob));
    }
    unlink_seg(name);
  }

  /* longer than it says */
  REQUIRE_RC(make_segment(name, SZ), ZKV_OK);
  REQUIRE(truncate(path, (off_t)SZ * 2) == 0);
  {
    char ob[128];
    int r = open_in_child(name, 1);
    __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
    if (r != ZKV_OK && r != ZKV_ECORRUPT)
      th_fail(__FILE__, __LINE__, "segment grown to twice its size: got %s", outcome(r, ob, sizeof ob));
  }
  unlink_seg(name);

  /* not a zeltkv file at all */
  {
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    const char text[] = "hello, I am a text file and not a zeltkv segment\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    CHECK_OPEN(name, ZKV_ECORRUPT);
    unlink_seg(name);
  }

  /* the magic changed */
  REQUIRE_RC(make_segment(name, SZ), ZKV_OK);
  overwrite(path, 0, "NOTZELTK", 8);
  CHECK_OPEN(name, ZKV_ECORRUPT);
  unlink_seg(name);

  /* another format version.  The header layout is the engine's (src/internal.h:
   * an 8-byte magic, then a little-endian u32 format number); the test only
   * bumps that number. */
  REQUIRE_RC(make_segment(name, SZ), ZKV_OK);
  uint32_t fmt = 0;
  read_at(path, 8, &fmt, 4);
  uint32_t other = fmt + 1;
  overwrite(path, 8, &other, 4);
  CHECK_OPEN(name, ZKV_EVERSION);
  other = 0xFFFFFFFFu;
  overwrite(path, 8, &other, 4);
  CHECK_OPEN(name, ZKV_EVERSION);
  /* restored, it opens again, keys intact */
  overwrite(path, 8, &fmt, 4);
  CHECK_OPEN(name, ZKV_OK);
  unlink_seg(name);
}

/* The lock word (a u32 at byte 64 of the header, src/internal.h) names a
 * holder that cannot hold it: this very thread (which does not hold the lock),
 * or a thread id no thread has.  Either way the next write takes the lock
 * over at once; a live holder id of another process is waited for (and the
 * wait times out). */
TEST(shared_lock_word_names_no_holder) {
  char name[64], path[1024];
  seg_name(name, sizeof name, "lockword");
  seg_path(path, sizeof path, name);
  zkv_db *db = open_sh_timeout(name, 5);
  REQUIRE(db != NULL);
  CHECK_RC(set_s(db, ZKV_ROOT, "k", "v"), ZKV_OK);
  zkv_close(db);
  uint32_t w = 99;
  read_at(path, 64, &w, 4);
  CHECK_EQ(w, 0);   /* free, and where this test thinks it is */
  const uint32_t words[] = {(uint32_t)syscall(SYS_gettid), 0x3FFFFFu, 0x80000000u | 0x3FFFFEu};
  for (int i = 0; i < 3; i++) {
    overwrite(path, 64, &words[i], 4);
    db = open_sh_timeout(name, 5);
    REQUIRE(db != NULL);
    double t0 = now_s();
    CHECK_RC(set_s(db, ZKV_ROOT, "k", "after"), ZKV_OK);
    CHECK(now_s() - t0 < 4.0);   /* at once, not after the 5 s timeout (nor a stall of 3 s) */
    CHECK_GET_STR(db, ZKV_ROOT, "k", "after");
    zkv_close(db);
    read_at(path, 64, &w, 4);
    CHECK_EQ(w, 0);
  }
  /* a live thread of another process (init, pid 1): waited for, then ETIMEDOUT */
  const uint32_t one = 1;
  overwrite(path, 64, &one, 4);
  db = open_sh_timeout(name, 0.3);
  REQUIRE(db != NULL);
  double t0 = now_s();
  CHECK_RC(set_s(db, ZKV_ROOT, "k", "blocked"), ZKV_ETIMEDOUT);
  CHECK(now_s() - t0 >= 0.25);
  zkv_close(db);
  unlink_seg(name);
}

TEST(shared_header_byte_flips_never_crash) {
  char name[64], path[1024];
  seg_name(name, sizeof name, "flips");
  seg_path(path, sizeof path, name);
  const uint64_t SZ = 256u << 10;
  int crashes = 0, seen_eversion = 0, seen_ecorrupt = 0;
  char ob[128];
  /* every byte of the first 256 (the header, the lock, the allocator state); light
   * (valgrind, ASan, qemu): one byte in four, at every place in a word in turn */
  for (int off = 0; off < 256; off++) {
    if (th_light() && off % 4 != (off / 4) % 4) continue;
    if (make_segment(name, SZ) != ZKV_OK) {
      CHECK(0);
      break;
    }
    unsigned char b = 0;
    read_at(path, off, &b, 1);
    b ^= 0xFF;
    overwrite(path, off, &b, 1);
    int r = open_in_child(name, 1);
    if (r == ZKV_EVERSION) seen_eversion = 1;
    if (r == ZKV_ECORRUPT) seen_ecorrupt = 1;
    __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
    if (!(r == ZKV_OK || r == ZKV_ECORRUPT || r == ZKV_EVERSION || r == ZKV_ETIMEDOUT)) {
      if (crashes++ < 20) {
        th_fail(__FILE__, __LINE__, "byte %d of the segment flipped: %s", off,
                outcome(r, ob, sizeof ob));
      }
    }
    int existed = 0;
    zkv_unlink(name, &existed);
  }
  CHECK(seen_eversion);
  CHECK(seen_ecorrupt);
  CHECK_EQ(crashes, 0);
}

TEST(shared_body_damage_never_crashes) {
  char name[64], path[1024];
  seg_name(name, sizeof name, "body");
  seg_path(path, sizeof path, name);
  const uint64_t SZ = 256u << 10;
  int crashes = 0;
  char ob[128];
  uint64_t x = 0x1234567887654321ull;
  unsigned char junk[64];
  for (int round = 0; round < 40; round++) {
    if (make_segment(name, SZ) != ZKV_OK) {
      CHECK(0);
      break;
    }
    /* a few damaged spots in the used part of the arena (past the first 256 bytes) */
    for (int spot = 0; spot < 3; spot++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      off_t at = 256 + (off_t)(x % (32u << 10));
      for (size_t i = 0; i < sizeof junk; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        junk[i] = (round % 3 == 0) ? 0xFF : (round % 3 == 1) ? 0x00 : (unsigned char)x;
      }
      overwrite(path, at, junk, 1 + (size_t)(x % sizeof junk));
    }
    int r = open_in_child(name, 1);
    __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
    if (r >= 1000) {
      if (crashes++ < 10) {
        th_fail(__FILE__, __LINE__, "round %d: damaged arena: %s", round, outcome(r, ob, sizeof ob));
      }
    }
    int existed = 0;
    zkv_unlink(name, &existed);
  }
  CHECK_EQ(crashes, 0);
}

TEST(shared_eio_on_missing_directory) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("ZELTKV_SHM_DIR", "/nonexistent-zeltkv-test-dir/sub", 1);
    zkv_db *db = (zkv_db *)&pid;
    int rc = zkv_open_shared("eio-test", NULL, &db);
    CHECK_RC(rc, ZKV_EIO);
    CHECK(db == NULL);
    if (rc == ZKV_OK) zkv_close(db);
    child_exit(0);
  }
  CHECK_EQ(wait_child(pid), 0);
}

/* the last test: nothing left behind (temporary files of creators included) */
TEST(shared_zz_no_leftover_files) {
  DIR *d = opendir(th_dir);
  REQUIRE(d != NULL);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    th_fail(__FILE__, __LINE__, "left in the segment directory: %s", e->d_name);
  }
  closedir(d);
}
