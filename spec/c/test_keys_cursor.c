/*
 * test_keys_cursor.c -- zkv_keys walks that resume after the key they
 * returned last is gone and its block reused.
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp, mount and other calls beyond C11 */
#include "zeltkv.h"
#include "harness.h"

#define K(s) (s), (sizeof(s) - 1)

__attribute__((constructor)) static void shm_dir_setup(void) { th_shm_dir("zkvkeys"); }

struct seen {
  int n;
  char keys[512][16];
};

static int collect(void *ud, const void *key, size_t klen) {
  struct seen *s = ud;
  if (s->n < 512 && klen < 16) {
    memcpy(s->keys[s->n], key, klen);
    s->keys[s->n][klen] = '\0';
  }
  s->n++;
  return 0;
}

static int put(zkv_db *db, zkv_ns ns, const char *key, size_t vlen) {
  static char buf[4096];
  memset(buf, 'v', vlen);
  zkv_value v = {.type = ZKV_T_STRING, .data = buf, .len = vlen};
  return zkv_set(db, ns, key, strlen(key), &v, 0, 0);
}

/* Issue 9.6: 256 keys of 300-byte values in A, one in B, 44 more in A; a walk
 * takes the first 256; k255, k256 and k257 are deleted (k256's block merges
 * into the free block k255 left before it) and a key is set in B (in that
 * room).  The rest of the walk is the 43 keys from k258: before, it followed
 * the stale links of k256's old header (a spurious ZKV_ECORRUPT, keys of B,
 * or keys skipped).  For every size of B's new value, on both drivers. */
static void stale_cursor(int shared, size_t bval) {
  char name[64];
  snprintf(name, sizeof name, "keys-%d", (int)th_dir_pid);
  zkv_options o;
  zkv_options_init(&o);
  o.size = 4u << 20;
  zkv_db *db = NULL;
  if (shared) REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  else REQUIRE_RC(zkv_open_memory(&o, &db), ZKV_OK);
  zkv_ns a, b;
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("A"), &a), ZKV_OK);
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("B"), &b), ZKV_OK);
  char k[16];
  for (int i = 1; i <= 256; i++) {
    snprintf(k, sizeof k, "k%d", i);
    REQUIRE_RC(put(db, a, k, 300), ZKV_OK);
  }
  REQUIRE_RC(put(db, b, "b1", 300), ZKV_OK);
  for (int i = 257; i <= 300; i++) {
    snprintf(k, sizeof k, "k%d", i);
    REQUIRE_RC(put(db, a, k, 300), ZKV_OK);
  }
  zkv_cursor cur = ZKV_CURSOR_INIT;
  struct seen s = {0};
  size_t n = 0;
  CHECK_RC(zkv_keys(db, a, &cur, 256, collect, &s, &n), ZKV_OK);
  CHECK_EQ(n, 256);
  CHECK_STR(s.keys[255], "k256");
  CHECK_RC(zkv_del(db, a, K("k255")), ZKV_OK);
  CHECK_RC(zkv_del(db, a, K("k256")), ZKV_OK);
  CHECK_RC(zkv_del(db, a, K("k257")), ZKV_OK);
  CHECK_RC(put(db, b, "b2", bval), ZKV_OK);
  struct seen rest = {0};
  int rc = ZKV_OK, guard = 0;
  while (!cur.done && rc == ZKV_OK && guard++ < 100) rc = zkv_keys(db, a, &cur, 256, collect, &rest, &n);
  CHECK_RC(rc, ZKV_OK);
  CHECK_EQ(rest.n, 43);
  int wrong = 0;
  for (int i = 0; i < rest.n && i < 43; i++) {
    snprintf(k, sizeof k, "k%d", 258 + i);
    wrong += strcmp(rest.keys[i], k) != 0;
  }
  CHECK_EQ(wrong, 0);
  const char *why = NULL;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(db);
  if (shared) CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}

TEST(keys_resume_after_last_key_merged_away) {
  static const size_t sizes[] = {1, 40, 100, 280, 300, 320, 500, 600, 620};
  for (int shared = 0; shared < 2; shared++)
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) stale_cursor(shared, sizes[i]);
}

/* a walk of ns to its end in batches of max, every key into seen (which
 * counts each key it has been given: a key twice is a key twice); the number
 * of batches that held no key before the end into *empty */
struct tally {
  int n, dup;
  unsigned char *got;   /* by key number */
  int nkeys;
};

static int tally_key(void *ud, const void *key, size_t klen) {
  struct tally *t = ud;
  char k[16];
  if (klen >= sizeof k) return 0;
  memcpy(k, key, klen);
  k[klen] = '\0';
  int i = atoi(k + 1);
  if (i >= 0 && i < t->nkeys) {
    if (t->got[i]) t->dup++;
    t->got[i] = 1;
  }
  t->n++;
  return 0;
}

/* the store of the walk tests below: 16 MiB, memory or a shared segment
 * named tag-pid (in name, which holds 64) */
static int open_walk_store(int shared, const char *tag, char *name, zkv_db **db) {
  zkv_options o;
  zkv_options_init(&o);
  o.size = 16u << 20;
  snprintf(name, 64, "%s-%d", tag, (int)th_dir_pid);
  if (!shared) return zkv_open_memory(&o, db);
  zkv_unlink(name, NULL);
  return zkv_open_shared(name, &o, db);
}

static void close_walk_store(zkv_db *db, int shared, const char *name) {
  zkv_close(db);
  if (shared) CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}

/* a test of fn on both drivers */
#define TEST_BOTH_DRIVERS(test, fn) \
  TEST(test) {                      \
    fn(0);                          \
    fn(1);                          \
  }

#define WALK_KEYS 20000

/* namespace A of db, filled with k0 .. k(WALK_KEYS - 1), 8-byte values, in order */
static int fill_walk_ns(zkv_db *db, zkv_ns *a) {
  int rc = zkv_namespace(db, ZKV_ROOT, K("A"), a);
  char k[16];
  for (int i = 0; i < WALK_KEYS && rc == ZKV_OK; i++) {
    snprintf(k, sizeof k, "k%d", i);
    rc = put(db, *a, k, 8);
  }
  return rc;
}

/* A walk over a namespace whose keys are all flushed (flush_all marks them
 * expired; they stay until a sweep) but one passes them in bounded steps:
 * before, the one step that found the live key passed all 20,000 flushed
 * entries in one lock hold.  Now the first steps return no key and are not
 * done, and the walk still ends with the live key exactly once. */
static void walk_over_flushed(int shared) {
  char name[64];
  zkv_db *db = NULL;
  REQUIRE_RC(open_walk_store(shared, "keysflushed", name, &db), ZKV_OK);
  zkv_ns a;
  REQUIRE_RC(fill_walk_ns(db, &a), ZKV_OK);
  uint64_t flagged = 0;
  CHECK_RC(zkv_expire_all(db, a, &flagged), ZKV_OK);
  CHECK_EQ(flagged, WALK_KEYS);
  CHECK_RC(put(db, a, "k20000", 8), ZKV_OK);   /* the one live key, at the end */
  unsigned char got[WALK_KEYS + 1] = {0};
  struct tally t = {0, 0, got, WALK_KEYS + 1};
  zkv_cursor cur = ZKV_CURSOR_INIT;
  int calls = 0, empty = 0, rc = ZKV_OK;
  while (!cur.done && rc == ZKV_OK && calls < 10 * WALK_KEYS) {
    size_t n = 0;
    rc = zkv_keys(db, a, &cur, 256, tally_key, &t, &n);
    calls++;
    empty += n == 0 && !cur.done;
  }
  CHECK_RC(rc, ZKV_OK);
  CHECK(cur.done);
  CHECK_EQ(t.n, 1);
  CHECK(got[WALK_KEYS]);
  CHECK(empty >= WALK_KEYS / 1024);   /* 20,000 entries in steps of at most 1,024 */
  close_walk_store(db, shared, name);
}

TEST_BOTH_DRIVERS(keys_walk_over_flushed_keys_in_bounded_steps, walk_over_flushed)

/* zkv_expire_all takes each next entry for the one past the entry before it
 * (keys made in a row lie in a row, in list order: flag_keys in ops.c) and
 * checks that guess against the entry's real next ref.  Here the heap order
 * is not the list order: a run of A's keys, A's keys between B's, keys of
 * other sizes and with ttls, and A's and B's keys deleted, their blocks
 * freed, and keys of both set again (at the end of their lists, in those
 * holes).  Every key of A is flushed, no key of B; a walk that trusted its
 * guess flushes B's keys or misses A's. */
static int put_ttl(zkv_db *db, zkv_ns ns, const char *key, size_t vlen, int64_t ttl_ms) {
  static char buf[256];
  memset(buf, 'w', vlen);
  zkv_value v = {.type = ZKV_T_STRING, .data = buf, .len = vlen};
  return zkv_set(db, ns, key, strlen(key), &v, ttl_ms, 0);
}

static void flush_walk_heap_order(int shared) {
  char name[64], k[16];
  zkv_db *db = NULL;
  REQUIRE_RC(open_walk_store(shared, "flushorder", name, &db), ZKV_OK);
  zkv_ns a, b;
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("A"), &a), ZKV_OK);
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("B"), &b), ZKV_OK);
  for (int i = 0; i < 40; i++) {   /* a run */
    snprintf(k, sizeof k, "a%02d", i);
    REQUIRE_RC(put(db, a, k, 31), ZKV_OK);
  }
  for (int i = 0; i < 40; i++) {   /* A's between B's: every other block */
    snprintf(k, sizeof k, "i%02d", i);
    REQUIRE_RC(put(db, a, k, 31), ZKV_OK);
    snprintf(k, sizeof k, "j%02d", i);
    REQUIRE_RC(put(db, b, k, 31), ZKV_OK);
  }
  for (int i = 0; i < 40; i++) {   /* sizes that change, some with a ttl */
    snprintf(k, sizeof k, "m%02d", i);
    REQUIRE_RC(put_ttl(db, a, k, (size_t)(31 + (i / 3 % 4) * 24), i % 5 == 2 ? 3600000 : 0),
               ZKV_OK);
  }
  const char *gone_a[] = {"a05", "a06", "a20", "a39", "i10", "m07"}, *gone_b[] = {"j05", "j06"};
  for (size_t i = 0; i < sizeof gone_a / sizeof gone_a[0]; i++)
    REQUIRE_RC(zkv_del(db, a, gone_a[i], 3), ZKV_OK);
  for (size_t i = 0; i < sizeof gone_b / sizeof gone_b[0]; i++)
    REQUIRE_RC(zkv_del(db, b, gone_b[i], 3), ZKV_OK);
  REQUIRE_RC(zkv_gc(db, NULL), ZKV_OK);   /* the deleted keys' blocks freed */
  REQUIRE_RC(put(db, b, "b00", 31), ZKV_OK);   /* into the holes, at the lists' ends */
  REQUIRE_RC(put(db, a, "a05", 31), ZKV_OK);
  REQUIRE_RC(put(db, b, "b01", 31), ZKV_OK);
  REQUIRE_RC(put(db, a, "a20", 31), ZKV_OK);
  REQUIRE_RC(put(db, a, "m07", 40), ZKV_OK);
  REQUIRE_RC(put(db, b, "b02", 31), ZKV_OK);
  uint64_t flagged = 0;
  CHECK_RC(zkv_expire_all(db, a, &flagged), ZKV_OK);
  CHECK_EQ(flagged, 40 + 40 + 40 - 6 + 3);
  zkv_value out;
  const char *pre[] = {"a", "i", "m"};
  for (int p = 0; p < 3; p++)
    for (int i = 0; i < 40; i++) {
      snprintf(k, sizeof k, "%s%02d", pre[p], i);
      CHECK_RC(zkv_get(db, a, k, 3, &out), ZKV_NOTFOUND);
    }
  int live_b = 0;
  for (int i = 0; i < 40; i++) {
    snprintf(k, sizeof k, "j%02d", i);
    live_b += zkv_get(db, b, k, 3, &out) == ZKV_OK;
  }
  for (int i = 0; i < 3; i++) {
    snprintf(k, sizeof k, "b%02d", i);
    live_b += zkv_get(db, b, k, 3, &out) == ZKV_OK;
  }
  CHECK_EQ(live_b, 40 - 2 + 3);
  close_walk_store(db, shared, name);
}

TEST_BOTH_DRIVERS(flush_walk_follows_the_list_not_the_heap, flush_walk_heap_order)

/* The key a walk stopped at is deleted and freed (zkv_gc frees the deleted
 * keys kept for reuse): the walk finds its place again by
 * insertion number from the head, which was one lock hold as long as the
 * part already walked (10,000 entries here).  Now that search goes in
 * bounded steps too (batches with no key, not done), going on from where it
 * got to, and from the head again when that entry is deleted as well
 * (deleted here after every such step).  Every key present throughout is
 * returned exactly once. */
static void resume_search_in_steps(int shared) {
  char name[64];
  zkv_db *db = NULL;
  REQUIRE_RC(open_walk_store(shared, "keyssearch", name, &db), ZKV_OK);
  zkv_ns a;
  REQUIRE_RC(fill_walk_ns(db, &a), ZKV_OK);
  char k[16];
  static unsigned char got[WALK_KEYS];
  memset(got, 0, sizeof got);
  struct tally t = {0, 0, got, WALK_KEYS};
  zkv_cursor cur = ZKV_CURSOR_INIT;
  size_t n = 0;
  while (t.n < WALK_KEYS / 2) REQUIRE_RC(zkv_keys(db, a, &cur, 10, tally_key, &t, &n), ZKV_OK);
  snprintf(k, sizeof k, "k%d", t.n - 1);   /* the last one returned */
  CHECK_RC(zkv_del(db, a, k, strlen(k)), ZKV_OK);
  CHECK_RC(zkv_gc(db, NULL), ZKV_OK);
  int calls = 0, empty = 0, gone = 1, rc = ZKV_OK;
  unsigned seed = 7;
  while (!cur.done && rc == ZKV_OK && calls < 10 * WALK_KEYS) {
    rc = zkv_keys(db, a, &cur, 10, tally_key, &t, &n);
    calls++;
    if (n == 0 && !cur.done) {
      empty++;
      /* a key already returned (before the place the search looks for): the
       * entry the search got to may be among them */
      seed = seed * 1103515245u + 12345u;
      snprintf(k, sizeof k, "k%u", (seed >> 8) % (unsigned)(WALK_KEYS / 2 - 1));
      gone += zkv_del(db, a, k, strlen(k)) == ZKV_OK;
      CHECK_RC(zkv_gc(db, NULL), ZKV_OK);
    }
  }
  CHECK_RC(rc, ZKV_OK);
  CHECK(cur.done);
  CHECK_EQ(t.dup, 0);
  int missing = 0;
  for (int i = 0; i < WALK_KEYS; i++) missing += !got[i];
  CHECK_EQ(missing, 0);
  CHECK_EQ(t.n, WALK_KEYS);
  CHECK(empty >= (WALK_KEYS / 2) / 1024);   /* 10,000 entries to pass again */
  uint64_t cnt = 0;
  CHECK_RC(zkv_count(db, a, &cnt), ZKV_OK);
  CHECK_EQ(cnt, (uint64_t)(WALK_KEYS - gone));
  const char *why = NULL;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  close_walk_store(db, shared, name);
}

TEST_BOTH_DRIVERS(keys_resume_search_in_bounded_steps, resume_search_in_steps)

/* zkv_count of a namespace whose keys carry ttls walks them: before, in one
 * lock hold as long as the namespace (20,000 entries here); now in steps of
 * at most WALK_PASS entries, each its own lock hold, with the same count.
 * Keys without a ttl are counted from the namespace record, with no walk. */
extern void (*walk_step_hook)(uint64_t passed);   /* src/internal.h */
static uint64_t count_steps, count_most;
static void count_step(uint64_t passed) {
  count_steps++;
  if (passed > count_most) count_most = passed;
}

static void count_in_steps(int shared) {
  char name[64];
  zkv_db *db = NULL;
  REQUIRE_RC(open_walk_store(shared, "keyscount", name, &db), ZKV_OK);
  zkv_ns a, b;
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("A"), &a), ZKV_OK);
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("B"), &b), ZKV_OK);
  char k[16];
  zkv_value v = {.type = ZKV_T_STRING, .data = "v", .len = 1};
  for (int i = 0; i < WALK_KEYS; i++) {
    snprintf(k, sizeof k, "k%d", i);
    REQUIRE_RC(zkv_set(db, a, k, strlen(k), &v, i % 2 ? 3600000 : 1000, 0), ZKV_OK);
    REQUIRE_RC(zkv_set(db, b, k, strlen(k), &v, 0, 0), ZKV_OK);
  }
  zkv_set_clock_offset(2000);   /* the 1 s keys have expired */
  count_steps = count_most = 0;
  walk_step_hook = count_step;
  uint64_t n = 0;
  CHECK_RC(zkv_count(db, a, &n), ZKV_OK);
  CHECK_EQ(n, WALK_KEYS / 2);
  CHECK(count_steps >= WALK_KEYS / 1024);
  CHECK(count_most <= 1024);
  count_steps = 0;
  CHECK_RC(zkv_count(db, b, &n), ZKV_OK);   /* no ttl, none flushed or deleted */
  CHECK_EQ(n, WALK_KEYS);
  CHECK_EQ(count_steps, 0);
  walk_step_hook = NULL;
  zkv_set_clock_offset(0);
  close_walk_store(db, shared, name);
}

TEST_BOTH_DRIVERS(count_walks_in_bounded_steps, count_in_steps)

/* zkv_clear of a subtree of many namespaces goes on from where its last step
 * stopped: before, each step (256 keys) began again at the subtree's root
 * and passed every namespace it had emptied, so with 5,000 namespaces of one
 * key each a step passed up to 5,000 records (and the clear was quadratic).
 * Now a step passes at most WALK_PASS records.  A tree of three levels with
 * keys at every level is emptied whole, and the namespace beside it is not
 * touched. */
static void clear_in_steps(int shared) {
  char name[64];
  zkv_db *db = NULL;
  REQUIRE_RC(open_walk_store(shared, "keysclear", name, &db), ZKV_OK);
  zkv_ns t, other;
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("T"), &t), ZKV_OK);
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("O"), &other), ZKV_OK);
  REQUIRE_RC(put(db, other, "keep", 4), ZKV_OK);
  char k[32];
  uint64_t made = 0;
  for (int i = 0; i < 5000; i++) {
    zkv_ns c;
    snprintf(k, sizeof k, "u%d", i);
    REQUIRE_RC(zkv_namespace(db, t, k, strlen(k), &c), ZKV_OK);
    REQUIRE_RC(put(db, c, "x", 4), ZKV_OK);
    made++;
  }
  /* a deeper part: 20 x 20 namespaces under T/d, keys at every level */
  zkv_ns dd;
  REQUIRE_RC(zkv_namespace(db, t, K("d"), &dd), ZKV_OK);
  for (int i = 0; i < 20; i++) {
    zkv_ns c;
    snprintf(k, sizeof k, "c%d", i);
    REQUIRE_RC(zkv_namespace(db, dd, k, strlen(k), &c), ZKV_OK);
    for (int j = 0; j < 20; j++) {
      zkv_ns g;
      snprintf(k, sizeof k, "g%d", j);
      REQUIRE_RC(zkv_namespace(db, c, k, strlen(k), &g), ZKV_OK);
      for (int m = 0; m < j * 3; m++) {
        snprintf(k, sizeof k, "k%d", m);
        REQUIRE_RC(put(db, g, k, 4), ZKV_OK);
        made++;
      }
      REQUIRE_RC(put(db, c, k, 4), ZKV_OK);   /* a key of the level above (g0, then k0..) */
      made++;
    }
  }
  for (int m = 0; m < 300; m++) {
    snprintf(k, sizeof k, "t%d", m);
    REQUIRE_RC(put(db, t, k, 4), ZKV_OK);
    made++;
  }
  count_steps = count_most = 0;
  walk_step_hook = count_step;
  uint64_t removed = 0;
  CHECK_RC(zkv_clear(db, t, &removed), ZKV_OK);
  walk_step_hook = NULL;
  CHECK_EQ(removed, made);
  CHECK(count_steps > 0);
  CHECK(count_most <= 1024);
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK_EQ(st.keys, 1);   /* O's key */
  uint64_t n = 0;
  CHECK_RC(zkv_count(db, other, &n), ZKV_OK);
  CHECK_EQ(n, 1);
  const char *why = NULL;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  close_walk_store(db, shared, name);
}

TEST_BOTH_DRIVERS(clear_goes_on_where_its_last_step_stopped, clear_in_steps)

/* zkv_clear beside a process that keeps making namespaces and keys under
 * the subtree (before and after the clear's place, so the place a step
 * notes is found again or not): every clear ends without an error, one
 * alone afterwards empties the subtree, and the segment verifies. */
TEST(clear_in_steps_beside_a_writer) {
  char name[64];
  zkv_db *db = NULL;
  REQUIRE_RC(open_walk_store(1, "keysclearw", name, &db), ZKV_OK);
  zkv_ns t;
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("T"), &t), ZKV_OK);
  char k[32];
  for (int i = 0; i < 3000; i++) {
    zkv_ns c;
    snprintf(k, sizeof k, "u%d", i);
    REQUIRE_RC(zkv_namespace(db, t, k, strlen(k), &c), ZKV_OK);
    REQUIRE_RC(put(db, c, "old", 4), ZKV_OK);
  }
  pid_t pid = fork();
  if (pid == 0) {
    zkv_db *w = NULL;
    zkv_options o;
    zkv_options_init(&o);
    if (zkv_open_shared(name, &o, &w) != ZKV_OK) _exit(2);
    zkv_ns tw;
    if (zkv_namespace(w, ZKV_ROOT, K("T"), &tw) != ZKV_OK) _exit(3);
    for (int i = 0; i < 20000; i++) {
      zkv_ns c;
      char kk[32];
      snprintf(kk, sizeof kk, "u%d", (i * 7919) % 6000);   /* old ones and new ones */
      if (zkv_namespace(w, tw, kk, strlen(kk), &c) != ZKV_OK) _exit(4);
      if (put(w, c, "new", 4) != ZKV_OK) _exit(5);
    }
    zkv_close(w);
    _exit(0);
  }
  REQUIRE(pid > 0);
  /* at least 20 clears, and on until the writer is done (how much they
   * overlap is up to the scheduler: nothing here counts on it) */
  for (int rounds = 0; rounds < 100000; rounds++) {
    uint64_t removed = 0;
    CHECK_RC(zkv_clear(db, t, &removed), ZKV_OK);
    int st = 0;
    if (rounds >= 20 && waitpid(pid, &st, WNOHANG) == pid) {
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
      pid = 0;
      break;
    }
  }
  if (pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  uint64_t removed = 0;
  CHECK_RC(zkv_clear(db, t, &removed), ZKV_OK);   /* alone: everything goes */
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK_EQ(st.keys, 0);
  const char *why = NULL;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(db);
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}
