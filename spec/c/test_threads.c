/*
 * test_threads.c -- several threads of one process on one store: a
 * ZKV_THREADSAFE memory store, and handles of their own on one shared segment.
 *
 * `make test` also runs this file built with ThreadSanitizer (make tsan):
 * every shared field is then checked for unguarded access, not only the end
 * results.  ZKV_TEST_LIGHT (valgrind, tsan) makes the runs shorter.
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp, mount and other calls beyond C11 */
#include <errno.h>
#include <pthread.h>

#include "zeltkv.h"
#include "harness.h"

#define K(s) (s), (sizeof(s) - 1)

__attribute__((constructor)) static void shm_dir_setup(void) { th_shm_dir("zkvthreads"); }

static void seg_name(char *buf, size_t n, const char *tag) {
  snprintf(buf, n, "threads-%d-%s", (int)th_dir_pid, tag);
}

static int64_t get_int(zkv_db *db, zkv_ns ns, const char *key) {
  zkv_value v;
  if (zkv_get(db, ns, key, strlen(key), &v) != ZKV_OK || v.type != ZKV_T_INT) return -1;
  return v.i;
}

struct worker {
  zkv_db *db;          /* the handle to use, or NULL: open `name` */
  const char *name;
  int n;
  int errors;
  pthread_t th;
};

static void *incr_worker(void *p) {
  struct worker *w = p;
  zkv_db *db = w->db;
  if (!db && zkv_open_shared(w->name, NULL, &db) != ZKV_OK) {
    w->errors = -1;
    return NULL;
  }
  for (int i = 0; i < w->n; i++) w->errors += zkv_incr(db, ZKV_ROOT, K("n"), 1, 0, NULL) != ZKV_OK;
  /* and transactions, nested through the same thread */
  for (int i = 0; i < w->n / 100; i++) {
    int rc = zkv_begin(db);
    rc |= zkv_incr(db, ZKV_ROOT, K("t"), 2, 0, NULL);
    rc |= zkv_begin(db);
    rc |= zkv_incr(db, ZKV_ROOT, K("t"), 100, 0, NULL);
    rc |= zkv_rollback(db);
    rc |= zkv_commit(db);
    w->errors += rc != ZKV_OK;
  }
  if (!w->db) zkv_close(db);
  return NULL;
}

/* run 8 workers of `n` increments on db (or each on its own handle on name);
 * the errors they met, or -1 when a thread could not start */
static int run_8(zkv_db *db, const char *name, int n) {
  struct worker w[8];
  for (int i = 0; i < 8; i++) {
    w[i] = (struct worker){.db = db, .name = name, .n = n};
    if (pthread_create(&w[i].th, NULL, incr_worker, &w[i]) != 0) return -1;
  }
  int errors = 0;
  for (int i = 0; i < 8; i++) {
    pthread_join(w[i].th, NULL);
    errors += w[i].errors;
  }
  return errors;
}

static int rounds(void) { return th_light() ? 2 : 10; }
static int per_thread(void) { return th_light() ? 5000 : 50000; }

/* Issue 9.9: 8 threads x zkv_incr on one ZKV_THREADSAFE memory store.  An
 * unguarded read of the lock depth and owner let a thread run without the
 * mutex: increments lost, threads hung in pthread_mutex_lock, a glibc abort. */
TEST(threadsafe_memory_store_8_threads) {
  for (int r = 0; r < rounds(); r++) {
    zkv_options o;
    zkv_options_init(&o);
    o.flags = ZKV_THREADSAFE;
    zkv_db *db = NULL;
    REQUIRE_RC(zkv_open_memory(&o, &db), ZKV_OK);
    CHECK_EQ(run_8(db, NULL, per_thread()), 0);
    CHECK_EQ(get_int(db, ZKV_ROOT, "n"), 8 * (int64_t)per_thread());
    CHECK_EQ(get_int(db, ZKV_ROOT, "t"), 8 * 2 * (int64_t)(per_thread() / 100));
    zkv_close(db);
  }
}

/* the same on a shared segment, each thread with a handle of its own (they
 * share this process's mapping and lock state) */
TEST(shared_segment_8_threads) {
  char name[64];
  seg_name(name, sizeof name, "incr");
  for (int r = 0; r < rounds(); r++) {
    zkv_db *db = NULL;
    REQUIRE_RC(zkv_open_shared(name, NULL, &db), ZKV_OK);
    CHECK_EQ(run_8(NULL, name, per_thread() / 2), 0);
    CHECK_EQ(get_int(db, ZKV_ROOT, "n"), 8 * (int64_t)(per_thread() / 2));
    zkv_close(db);
    CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
  }
}

/* readers that take no lock while writers change the same keys: every value
 * read is one that was written whole */
struct rw {
  const char *name;
  int n, writer, bad;
  pthread_t th;
};

static void *rw_worker(void *p) {
  struct rw *a = p;
  zkv_db *db = NULL;
  if (zkv_open_shared(a->name, NULL, &db) != ZKV_OK) {
    a->bad = -1;
    return NULL;
  }
  char buf[200];
  for (int i = 0; i < a->n; i++) {
    char key[8];
    snprintf(key, sizeof key, "k%d", i % 16);
    if (a->writer) {
      memset(buf, 'a' + i % 26, sizeof buf);
      zkv_value v = {.type = ZKV_T_STRING, .data = buf, .len = 1 + (size_t)(i % 199)};
      a->bad += zkv_set(db, ZKV_ROOT, key, strlen(key), &v, 0, 0) != ZKV_OK;
    } else {
      zkv_value v;
      int rc = zkv_get(db, ZKV_ROOT, key, strlen(key), &v);
      if (rc == ZKV_NOTFOUND) continue;
      if (rc != ZKV_OK || v.len == 0 || v.len > sizeof buf) {
        a->bad++;
        continue;
      }
      const char *d = v.data;
      for (size_t j = 1; j < v.len; j++) a->bad += d[j] != d[0];
    }
  }
  zkv_close(db);
  return NULL;
}

TEST(lock_free_readers_beside_writers) {
  char name[64];
  seg_name(name, sizeof name, "rw");
  struct rw a[6];
  for (int i = 0; i < 6; i++) {
    a[i] = (struct rw){.name = name, .n = per_thread(), .writer = i < 2};
    REQUIRE(pthread_create(&a[i].th, NULL, rw_worker, &a[i]) == 0);
  }
  for (int i = 0; i < 6; i++) {
    pthread_join(a[i].th, NULL);
    CHECK_EQ(a[i].bad, 0);
  }
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}

/* Issue 9.9: zkv_clear in one thread while another thread, with a handle of
 * its own, is in a transaction.  The clear read the other thread's
 * transaction depth and ran as one lock hold (all its keys in one undo log),
 * failing with ZKV_ETXN; it runs in steps, each its own lock hold. */
struct txn_holder {
  zkv_db *db;
  int fd_out, fd_in;
  int rc;
};

static void *hold_txn(void *p) {
  struct txn_holder *h = p;
  char c = 0;
  h->rc = zkv_begin(h->db);
  h->rc |= zkv_incr(h->db, ZKV_ROOT, K("held"), 1, 0, NULL);
  if (write(h->fd_out, &c, 1) != 1) h->rc = -1;
  usleep(200000);   /* the clear is waiting for the lock by now */
  h->rc |= zkv_commit(h->db);
  return NULL;
}

TEST(clear_in_steps_while_another_thread_is_in_a_transaction) {
  char name[64];
  seg_name(name, sizeof name, "clear");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 4u << 20;   /* an undo log of 256 KiB: far less than 20000 keys' worth */
  zkv_db *a = NULL, *b = NULL;
  REQUIRE_RC(zkv_open_shared(name, &o, &a), ZKV_OK);
  REQUIRE_RC(zkv_open_shared(name, &o, &b), ZKV_OK);
  zkv_ns ns;
  REQUIRE_RC(zkv_namespace(b, ZKV_ROOT, K("many"), &ns), ZKV_OK);
  const int N = 20000;
  for (int i = 0; i < N; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    REQUIRE_RC(zkv_incr(b, ns, k, strlen(k), 1, 0, NULL), ZKV_OK);
  }
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  struct txn_holder h = {.db = a, .fd_out = fds[1]};
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, hold_txn, &h) == 0);
  char c;
  CHECK(read(fds[0], &c, 1) == 1);
  uint64_t removed = 0;
  CHECK_RC(zkv_clear(b, ns, &removed), ZKV_OK);
  CHECK_EQ(removed, N);
  pthread_join(th, NULL);
  CHECK_RC(h.rc, ZKV_OK);
  CHECK_EQ(get_int(b, ZKV_ROOT, "held"), 1);
  uint64_t cnt = 99;
  CHECK_RC(zkv_count(b, ns, &cnt), ZKV_OK);
  CHECK_EQ(cnt, 0);
  close(fds[0]);
  close(fds[1]);
  zkv_close(a);
  zkv_close(b);
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}
