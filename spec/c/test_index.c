#define _GNU_SOURCE 1 /* first: internal.h wants it */
/*
 * test_index.c -- the hash index: incremental growth (no stop-the-world
 * doubling), lookups through both arrays while it grows, lock-free readers
 * of a shared segment finding every key during a growth, and a crash in the
 * middle of one.
 *
 * It reads the header through src/internal.h to see a growth in progress.
 */
#include <sys/wait.h>

#include "internal.h"
#include "harness.h"

static int set_int(zkv_db *db, zkv_ns ns, const char *k, int64_t v) {
  zkv_value x = {.type = ZKV_T_INT, .i = v};
  return zkv_set(db, ns, k, strlen(k), &x, 0, 0);
}

static int64_t get_int(zkv_db *db, zkv_ns ns, const char *k, int *rc) {
  zkv_value v;
  *rc = zkv_get(db, ns, k, strlen(k), &v);
  return *rc == ZKV_OK ? v.i : -1;
}

static int growing(zkv_db *db) { return H(db->s)->obuckets != 0; }

/* a growth takes many inserts: in the middle of one, every key is found,
 * replaced, deleted and counted whichever array it is in */
TEST(index_grows_in_steps) {
  zkv_db *db;
  REQUIRE_RC(zkv_open_memory(NULL, &db), ZKV_OK);
  char k[32];
  int seen_growing = 0, max_steps_growing = 0, run = 0;
  for (int i = 0; i < 100000; i++) {
    snprintf(k, sizeof k, "k%d", i);
    REQUIRE_RC(set_int(db, ZKV_ROOT, k, i), ZKV_OK);
    if (growing(db)) {
      seen_growing++;
      run++;
      if (run > max_steps_growing) max_steps_growing = run;
      /* mid-growth: an old key, the newest key, a replaced key */
      if (i % 97 == 0) {
        int rc;
        char o[32];
        snprintf(o, sizeof o, "k%d", i / 2);
        CHECK_EQ(get_int(db, ZKV_ROOT, o, &rc), i / 2);
        CHECK_EQ(get_int(db, ZKV_ROOT, k, &rc), i);
        CHECK_RC(set_int(db, ZKV_ROOT, o, i / 2), ZKV_OK);
        const char *why;
        if (i % (97 * 20) == 0) CHECK_RC(zkv_verify(db, &why), ZKV_OK);
      }
    } else {
      run = 0;
    }
  }
  /* growths happened, each spread over many inserts */
  CHECK(seen_growing > 1000);
  CHECK(max_steps_growing > 100);
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK(st.buckets >= 65536);
  for (int i = 0; i < 100000; i += 7) {
    snprintf(k, sizeof k, "k%d", i);
    int rc;
    CHECK_EQ(get_int(db, ZKV_ROOT, k, &rc), i);
  }
  /* deletes in the middle of a growth */
  for (int i = 100000; i < 300000 && !growing(db); i++) {
    snprintf(k, sizeof k, "k%d", i);
    REQUIRE_RC(set_int(db, ZKV_ROOT, k, i), ZKV_OK);
  }
  REQUIRE(growing(db));
  for (int i = 0; i < 100000; i += 3) {
    snprintf(k, sizeof k, "k%d", i);
    CHECK_RC(zkv_del(db, ZKV_ROOT, k, strlen(k)), ZKV_OK);
  }
  const char *why;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  uint64_t n;
  CHECK_RC(zkv_count(db, ZKV_ROOT, &n), ZKV_OK);
  uint64_t expect = 0;
  for (int i = 0; i < 100000; i++) expect += i % 3 != 0;
  zkv_stats st2;
  zkv_stats_get(db, &st2);
  CHECK_EQ(n, st2.keys);
  CHECK(n > expect);
  zkv_close(db);
}

/* Lock-free readers of a shared segment find every key while another
 * process grows the index under them. */
TEST(index_lockfree_readers_during_growth) {
  th_shm_dir("index");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 64 << 20;
  zkv_db *db;
  REQUIRE_RC(zkv_open_shared("grow", &o, &db), ZKV_OK);
  char k[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(k, sizeof k, "r%d", i);
    REQUIRE_RC(set_int(db, ZKV_ROOT, k, i), ZKV_OK);
  }
  int pfd[2];
  REQUIRE(pipe(pfd) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {   /* the reader: read r0..r999 until the writer is done */
    close(pfd[1]);
    zkv_db *rd;
    if (zkv_open_shared("grow", &o, &rd) != ZKV_OK) _exit(2);
    long missing = 0, wrong = 0, reads = 0;
    char buf;
    for (;;) {
      for (int i = 0; i < 1000; i++) {
        char kk[32];
        snprintf(kk, sizeof kk, "r%d", i);
        int rc;
        int64_t v = get_int(rd, ZKV_ROOT, kk, &rc);
        reads++;
        if (rc == ZKV_NOTFOUND) missing++;
        else if (rc != ZKV_OK || v != i) wrong++;
      }
      struct timeval tv = {0, 0};
      fd_set fs;
      FD_ZERO(&fs);
      FD_SET(pfd[0], &fs);
      if (select(pfd[0] + 1, &fs, NULL, NULL, &tv) > 0 && read(pfd[0], &buf, 1) <= 1) break;
    }
    zkv_close(rd);
    printf("    note: reader: %ld reads, %ld missing, %ld wrong\n", reads, missing, wrong);
    _exit(missing == 0 && wrong == 0 && reads > 1000 ? 0 : 1);
  }
  close(pfd[0]);
  uint32_t lg0 = H(db->s)->nb_log2;
  for (int i = 0; i < 300000; i++) {
    snprintf(k, sizeof k, "w%d", i);
    if (set_int(db, ZKV_ROOT, k, i) != ZKV_OK) break;
  }
  CHECK(H(db->s)->nb_log2 >= lg0 + 4);   /* it grew several times meanwhile */
  close(pfd[1]);
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  const char *why;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(db);
  zkv_unlink("grow", NULL);
}

/* a crash test's child: x0..x(n-1) set in a transaction (each after one op
 * of `step`, when there is one), then SIGKILLed holding the lock */
static void die_in_txn(zkv_db *c, int n, int (*step)(zkv_db *, void *), void *arg) {
  zkv_begin(c);
  for (int j = 0; j < n; j++) {
    if (step) op_run(c, step, arg);
    char kk[32];
    snprintf(kk, sizeof kk, "x%d", j);
    set_int(c, ZKV_ROOT, kk, j);
  }
  kill(getpid(), SIGKILL);   /* inside the transaction, holding the lock */
  _exit(3);
}

/* A process killed in the middle of a growth, holding the lock: the next
 * one undoes its half-done step and the index goes on growing. */
TEST(index_crash_during_growth) {
  th_shm_dir("index");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 16 << 20;
  zkv_db *db;
  REQUIRE_RC(zkv_open_shared("growc", &o, &db), ZKV_OK);
  char k[32];
  int i = 0;
  while (!growing(db)) {
    snprintf(k, sizeof k, "c%d", i);
    REQUIRE_RC(set_int(db, ZKV_ROOT, k, i), ZKV_OK);
    i++;
  }
  int before = i;
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    zkv_db *c;
    if (zkv_open_shared("growc", &o, &c) != ZKV_OK) _exit(2);
    die_in_txn(c, 2000, NULL, NULL);
  }
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFSIGNALED(st));
  int rc;
  CHECK_EQ(get_int(db, ZKV_ROOT, "x5", &rc), -1);
  CHECK_RC(rc, ZKV_NOTFOUND);
  const char *why;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  for (int j = 0; j < before; j += 11) {
    snprintf(k, sizeof k, "c%d", j);
    CHECK_EQ(get_int(db, ZKV_ROOT, k, &rc), j);
  }
  for (int j = before; j < before + 50000; j++) {
    snprintf(k, sizeof k, "c%d", j);
    REQUIRE_RC(set_int(db, ZKV_ROOT, k, j), ZKV_OK);
  }
  CHECK(!growing(db) || H(db->s)->ocursor > 0);
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(db);
  zkv_unlink("growc", NULL);
}

/* ---- moving the index (compaction moves it out of its way in steps) ---- */

static int moving(zkv_db *db) { return H(db->s)->obuckets && (H(db->s)->ocursor & OC_MOVING); }

/* under the lock: start a move of the index to a new block (as compaction
 * does, room.c), or go on with one by n buckets' worth */
static int start_move(zkv_db *db, void *arg) {
  (void)arg;
  seg *s = db->s;
  if (H(s)->obuckets) return ZKV_EXISTS;
  ref_t r = blk_alloc(s, idx_array_units(s));
  if (!r) return ZKV_EFULL;
  idx_move(db, r);
  return ZKV_OK;
}

static int move_on(zkv_db *db, void *arg) {
  idx_rehash(db, *(unsigned *)arg);
  return ZKV_OK;
}

/* keys m0..m(n-1) hold i, but those deleted (-1 in want): every step-th
 * (a get of the memory driver moves the index on too) */
static void check_model(zkv_db *db, const int64_t *want, int n, int step) {
  char k[32];
  int rc;
  for (int i = 0; i < n; i += step) {
    snprintf(k, sizeof k, "m%d", i);
    int64_t got = get_int(db, ZKV_ROOT, k, &rc);
    if (got != want[i]) {
      CHECK_EQ(got, want[i]);
      return;
    }
  }
}

/* A move spans many lock holds: between its runs every key is found,
 * replaced, deleted and added whichever array its bucket is in, a
 * transaction's writes and moves roll back, and the old array is freed
 * with the last run.  Both drivers. */
static void move_interleaved(zkv_db *db) {
  enum { N = 6000 };
  static int64_t want[N];
  char k[32];
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "m%d", i);
    want[i] = i < N / 2 ? i : -1;
    if (i < N / 2) REQUIRE_RC(set_int(db, ZKV_ROOT, k, i), ZKV_OK);
  }
  while (H(db->s)->obuckets) REQUIRE_RC(set_int(db, ZKV_ROOT, "pad", 0), ZKV_OK);   /* no growth on */
  uint64_t nb = nbuckets(db->s), used = H(db->s)->bytes_used;
  ref_t old = H(db->s)->buckets;
  REQUIRE_RC(op_run(db, start_move, NULL), ZKV_OK);
  REQUIRE(moving(db));
  CHECK(H(db->s)->buckets != old);
  unsigned n = 1;
  int runs = 0, rc;
  const char *why;
  for (uint64_t round = 0; moving(db); round++) {
    REQUIRE_RC(op_run(db, move_on, &n), ZKV_OK);   /* MOVE_PER_BUCKET buckets */
    runs++;
    int i = (int)(round * 7919 % N);
    snprintf(k, sizeof k, "m%d", i);
    switch (round % 4) {
    case 0: REQUIRE_RC(set_int(db, ZKV_ROOT, k, i), ZKV_OK); want[i] = i; break;
    case 1: rc = zkv_del(db, ZKV_ROOT, k, strlen(k)); CHECK_RC(rc, want[i] >= 0 ? ZKV_OK : ZKV_NOTFOUND); want[i] = -1; break;
    case 2:
      /* a transaction that moves on and writes, rolled back: as it was */
      REQUIRE_RC(zkv_begin(db), ZKV_OK);
      uint32_t cur = H(db->s)->ocursor;
      unsigned big = 4;
      REQUIRE_RC(op_run(db, move_on, &big), ZKV_OK);
      REQUIRE_RC(set_int(db, ZKV_ROOT, k, -5), ZKV_OK);
      REQUIRE_RC(set_int(db, ZKV_ROOT, "txn-new", 1), ZKV_OK);
      REQUIRE_RC(zkv_rollback(db), ZKV_OK);
      CHECK_EQ(H(db->s)->ocursor, cur);
      CHECK_EQ(get_int(db, ZKV_ROOT, "txn-new", &rc), -1);
      break;
    default: CHECK_EQ(get_int(db, ZKV_ROOT, k, &rc), want[i]); break;
    }
    if (round % 16 == 5) {
      CHECK_RC(zkv_verify(db, &why), ZKV_OK);
      check_model(db, want, N, 211 + (int)(round % 7));
    }
  }
  /* many holds, the same buckets, the old block freed */
  CHECK(runs > 20);
  CHECK_EQ(nbuckets(db->s), nb);
  CHECK_EQ(H(db->s)->ocursor, 0);
  CHECK(H(db->s)->bytes_used < used + 64 * 1024);
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  check_model(db, want, N, 1);
}

TEST(index_moves_in_steps_shared) {
  zkv_db *db = th_open_unlinked("move", 8 << 20, ZKV_EVICT_NONE);
  REQUIRE(db != NULL);
  move_interleaved(db);
  zkv_close(db);
}

TEST(index_moves_in_steps_memory) {
  zkv_db *db;
  REQUIRE_RC(zkv_open_memory(NULL, &db), ZKV_OK);
  move_interleaved(db);
  zkv_close(db);
}

/* A process killed in the middle of a move, between two of its runs and
 * inside one (in a transaction, holding the lock): the next opener finds
 * every key, undoes the half-done run, and the move goes on to its end. */
TEST(index_crash_during_move) {
  th_shm_dir("index");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 16 << 20;
  o.gc_interval = 0;
  zkv_db *db;
  REQUIRE_RC(zkv_open_shared("movec", &o, &db), ZKV_OK);
  char k[32];
  int n = 20000;
  for (int i = 0; i < n; i++) {
    snprintf(k, sizeof k, "c%d", i);
    REQUIRE_RC(set_int(db, ZKV_ROOT, k, i), ZKV_OK);
  }
  while (H(db->s)->obuckets) REQUIRE_RC(set_int(db, ZKV_ROOT, "pad", 0), ZKV_OK);
  alarm(60);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    zkv_db *c;
    if (zkv_open_shared("movec", &o, &c) != ZKV_OK) _exit(2);
    if (op_run(c, start_move, NULL) != ZKV_OK) _exit(4);
    unsigned m = 8;
    for (int j = 0; j < 10; j++) op_run(c, move_on, &m);   /* committed runs */
    die_in_txn(c, 10, move_on, &m);
  }
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  int rc;
  CHECK_EQ(get_int(db, ZKV_ROOT, "x5", &rc), -1);   /* recovery undid the transaction */
  CHECK(moving(db));                                /* and kept the committed runs */
  CHECK((H(db->s)->ocursor & ~OC_MOVING) >= 10u * 8 * MOVE_PER_BUCKET);
  const char *why;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  for (int j = 0; j < n; j++) {
    snprintf(k, sizeof k, "c%d", j);
    if (get_int(db, ZKV_ROOT, k, &rc) != j) { CHECK_EQ(get_int(db, ZKV_ROOT, k, &rc), j); break; }
  }
  /* every op moves it on (REHASH_STEP): writes finish it */
  for (int j = 0; moving(db) && j < 1000000; j++) REQUIRE_RC(set_int(db, ZKV_ROOT, "w", j), ZKV_OK);
  CHECK(!moving(db));
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  CHECK_EQ(get_int(db, ZKV_ROOT, "c777", &rc), 777);
  alarm(0);
  zkv_close(db);
  zkv_unlink("movec", NULL);
}
