/*
 * bench/holds.c -- the longest single lock hold of the engine's big jobs.
 *
 * Every store is opened with ZKV_TIME_HOLDS, so zkv_stats.max_lock_ns is the
 * longest lock hold of any operation (each step of a stepped walk is one), in
 * CPU time of the holder: on a loaded machine the wall time of a hold also
 * counts the time slices other processes got meanwhile.
 * Prints figures only (a benchmark never asserts timings):
 *   fill      4M new keys set one by one (the hash index doubles along the way)
 *   clear     zkv_clear of a namespace of 1M keys
 *   flush     zkv_flush of a store of 1M keys
 *   flush_all zkv_expire_all (the drop-in's flush_all) of a namespace of 1M
 *             keys, in a store of its own
 *   evict     a 1 MiB value set into a 64 MiB lru store full of small keys
 *   compact   a 1 MiB value set into a 64 MiB shared segment (evict none) whose
 *             free room is enough in total but broken up
 *   big index a 64 MiB segment filled with small keys, emptied, then a value
 *             of all its room: compaction moves the index (4 MiB or more) in
 *             steps; the set's own op then copies the value (some 50 MiB);
 *             a memcpy of it is printed beside
 *   noise     incr of one key for as long as the fill ran: no work to speak
 *             of, so its longest hold is
 *             what the machine adds to any hold (preemption of the VM, a cold
 *             cache, interrupts counted as the holder's CPU time)
 * for the memory driver and the shared one.  Segments live in a private
 * directory of /dev/shm ($ZELTKV_SHM_DIR if set).  ZKV_BENCH_FILL sets the
 * keys of `fill` (4194304).
 */
#define _GNU_SOURCE 1
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zeltkv.h"

static void die(const char *what, int rc) {
  fprintf(stderr, "bench/holds: %s: %s\n", what, zkv_strerror(rc));
  exit(1);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char dir[256];
static int nseg;

/* a store of the driver (0 memory, 1 shared) with `bytes` of room (0: unbounded) */
static zkv_db *open_store(int shared, uint64_t bytes, int evict) {
  zkv_options o;
  zkv_options_init(&o);
  o.flags = ZKV_TIME_HOLDS;
  o.evict = evict;
  o.gc_interval = 0;
  zkv_db *db;
  int rc;
  if (shared) {
    char name[32];
    snprintf(name, sizeof name, "holds%d", nseg++);
    o.size = bytes;
    zkv_unlink(name, NULL);
    rc = zkv_open_shared(name, &o, &db);
    if (rc == ZKV_OK) zkv_unlink(name, NULL);   /* the mapping lives on */
  } else {
    o.max_bytes = bytes;
    rc = zkv_open_memory(&o, &db);
  }
  if (rc) die("open", rc);
  return db;
}

static double max_hold_ms(zkv_db *db) {
  zkv_stats st;
  int rc = zkv_stats_get(db, &st);
  if (rc) die("stats", rc);
  return st.max_lock_ns / 1e6;
}

static int set_n(zkv_db *db, zkv_ns ns, const char *fmt, uint64_t i, const void *v, size_t vlen) {
  char k[48];
  int n = snprintf(k, sizeof k, fmt, (unsigned long long)i);
  zkv_value x = {.type = ZKV_T_STRING, .data = v, .len = vlen};
  return zkv_set(db, ns, k, (size_t)n, &x, 0, 0);
}

static const char VAL[] = "0123456789abcdefghijklmnopqrstu";   /* 31 bytes */

static double fill_secs[2];   /* wall seconds of each driver's fill */

static double fill(int shared, uint64_t n) {
  zkv_db *db = open_store(shared, shared ? n * 80 + (64ull << 20) : 0, ZKV_EVICT_NONE);
  int64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++) {
    int rc = set_n(db, ZKV_ROOT, "k%llu", i, VAL, 8);
    if (rc) die("fill", rc);
  }
  double ms = max_hold_ms(db);
  fill_secs[shared] = (now_ns() - t0) / 1e9;
  fprintf(stderr, "  (fill %s: %.2f s)\n", shared ? "shared" : "memory", fill_secs[shared]);
  zkv_close(db);
  return ms;
}

/* A store of 1M keys, then the job.  max_lock_ns is the longest hold since
 * the store was opened, so the job's figure is known only when it is above
 * the filling's; else it is printed as "(<fill)", at most that. */
static void walk_jobs(int shared, double *clear_ms, double *flush_ms, double *fill_ms) {
  uint64_t n = 1000000;
  zkv_db *db = open_store(shared, shared ? 256ull << 20 : 0, ZKV_EVICT_NONE);
  zkv_ns ns;
  int rc = zkv_namespace(db, ZKV_ROOT, "c", 1, &ns);
  if (rc) die("namespace", rc);
  for (uint64_t i = 0; i < n; i++)
    if ((rc = set_n(db, ns, "c%llu", i, VAL, 31))) die("fill for clear", rc);
  *fill_ms = max_hold_ms(db);
  uint64_t removed;
  if ((rc = zkv_clear(db, ns, &removed))) die("clear", rc);
  *clear_ms = max_hold_ms(db);
  if (*clear_ms <= *fill_ms) *clear_ms = -*fill_ms;
  for (uint64_t i = 0; i < n; i++)
    if ((rc = set_n(db, ZKV_ROOT, "f%llu", i, VAL, 31))) die("fill for flush", rc);
  double before = max_hold_ms(db);
  if ((rc = zkv_flush(db, &removed))) die("flush", rc);
  *flush_ms = max_hold_ms(db);
  if (*flush_ms <= before) *flush_ms = -before;
  zkv_close(db);
}

/* the flag walk: steps of WALK_PASS entries (ops.c), each one flag a key */
static double flag_job(int shared) {
  uint64_t n = 1000000;
  zkv_db *db = open_store(shared, shared ? 256ull << 20 : 0, ZKV_EVICT_NONE);
  zkv_ns ns;
  int rc = zkv_namespace(db, ZKV_ROOT, "x", 1, &ns);
  if (rc) die("namespace", rc);
  for (uint64_t i = 0; i < n; i++)
    if ((rc = set_n(db, ns, "x%llu", i, VAL, 31))) die("fill for flush_all", rc);
  double before = max_hold_ms(db);
  uint64_t flagged = 0;
  int64_t t0 = now_ns();
  if ((rc = zkv_expire_all(db, ns, &flagged))) die("expire_all", rc);
  /* its steps' holds are often below the fill's: their mean, beside */
  fprintf(stderr, "  (expire_all %s: %.3f ms wall for 1M keys, %.1f us a step of 1,024)\n",
          shared ? "shared" : "memory", (now_ns() - t0) / 1e6, (now_ns() - t0) / 1e3 / (n / 1024.0));
  if (flagged != n) die("expire_all count", ZKV_ECORRUPT);
  double ms = max_hold_ms(db);
  zkv_close(db);
  return ms <= before ? -before : ms;
}

static double evict_job(int shared) {
  zkv_db *db = open_store(shared, 64ull << 20, ZKV_EVICT_LRU);
  int forcible = 0, rc;
  zkv_value x = {.type = ZKV_T_STRING, .data = VAL, .len = 31};
  char k[32];
  for (uint64_t i = 0; !forcible; i++) {
    int n = snprintf(k, sizeof k, "e%llu", (unsigned long long)i);
    if ((rc = zkv_set_ex(db, ZKV_ROOT, k, (size_t)n, &x, 0, 0, &forcible))) die("fill for evict", rc);
  }
  double before = max_hold_ms(db);
  char *big = malloc(1 << 20);
  memset(big, 'b', 1 << 20);
  zkv_value b = {.type = ZKV_T_STRING, .data = big, .len = 1 << 20};
  rc = zkv_set_ex(db, ZKV_ROOT, "big", 3, &b, 0, 0, &forcible);
  double ms = max_hold_ms(db);
  if (rc) fprintf(stderr, "  (evict %s: the 1 MiB set failed: %s)\n", shared ? "shared" : "memory",
                  zkv_strerror(rc));
  free(big);
  zkv_close(db);
  return ms > before ? ms : -before;   /* negative: the set held no longer than the filling */
}

static double compact_job(void) {
  zkv_db *db = open_store(1, 64ull << 20, ZKV_EVICT_NONE);
  static char v[4096];
  memset(v, 'v', sizeof v);
  uint64_t i = 0;
  int rc;
  for (;; i++) {
    size_t len = 200 + (size_t)(i * 7919 % 3000);
    if ((rc = set_n(db, ZKV_ROOT, "m%llu", i, v, len)) == ZKV_EFULL) break;
    if (rc) die("fill for compact", rc);
  }
  for (uint64_t j = 0; j < i; j += 2) {
    char k[32];
    int n = snprintf(k, sizeof k, "m%llu", (unsigned long long)j);
    zkv_del(db, ZKV_ROOT, k, (size_t)n);
  }
  double before = max_hold_ms(db);
  char *big = malloc(1 << 20);
  memset(big, 'b', 1 << 20);
  zkv_value b = {.type = ZKV_T_STRING, .data = big, .len = 1 << 20};
  rc = zkv_set(db, ZKV_ROOT, "big", 3, &b, 0, 0);
  double ms = max_hold_ms(db);
  if (rc) fprintf(stderr, "  (compact: the 1 MiB set failed: %s)\n", zkv_strerror(rc));
  free(big);
  zkv_close(db);
  return ms > before ? ms : -before;
}

/* A 64 MiB segment filled with small keys until full (its index grew to
 * 2^20 buckets or more, 4 MiB, amid them), then emptied: the free room is in
 * two by the index, and a value of all of it but a little fits only once
 * compaction moved the index out of the way (in steps: an array this big
 * never moves in one copy).  The set's own op then copies the value (some
 * 50 MiB): *copy_ms is a memcpy of it in CPU time, for scale. */
static double bigindex_job(uint64_t *vlen_out, double *copy_ms, uint64_t *nb_out) {
  zkv_db *db = open_store(1, 64ull << 20, ZKV_EVICT_NONE);
  zkv_stats st;
  uint64_t i = 0;
  int rc;
  for (;; i++) {
    if ((rc = set_n(db, ZKV_ROOT, "b%llu", i, "aaaa", 4)) == ZKV_EFULL) break;
    if (rc) die("fill for big index", rc);
  }
  if ((rc = zkv_stats_get(db, &st))) die("stats", rc);
  *nb_out = st.buckets;
  uint64_t removed;
  if ((rc = zkv_clear(db, ZKV_ROOT, &removed))) die("clear for big index", rc);
  uint64_t cap, free_b;
  if ((rc = zkv_space(db, &cap, &free_b))) die("space", rc);
  uint64_t vlen = free_b - 4096;
  *vlen_out = vlen;
  char *big = malloc(vlen), *copy = malloc(vlen);
  memset(big, 'B', vlen);
  memset(copy, 0, vlen);
  struct timespec a, b2;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
  memcpy(copy, big, vlen);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b2);
  *copy_ms = ((b2.tv_sec - a.tv_sec) * 1e9 + (b2.tv_nsec - a.tv_nsec)) / 1e6;
  volatile char sink = copy[vlen / 2];   /* the copy is used: not elided */
  (void)sink;
  double before = max_hold_ms(db);
  zkv_value b = {.type = ZKV_T_STRING, .data = big, .len = vlen};
  rc = zkv_set(db, ZKV_ROOT, "big", 3, &b, 0, 0);
  double ms = max_hold_ms(db);
  if (rc) fprintf(stderr, "  (big index: the %llu-byte set with %llu bytes free failed: %s)\n",
                  (unsigned long long)vlen, (unsigned long long)free_b, zkv_strerror(rc));
  free(big);
  free(copy);
  zkv_close(db);
  return ms > before ? ms : -before;
}

/* the longest hold of incr of one key for `secs` seconds (as long as the
 * fill ran: a burst of the machine's is as likely to meet it): what the
 * machine adds */
static double noise_job(int shared, double secs) {
  zkv_db *db = open_store(shared, shared ? 8ull << 20 : 0, ZKV_EVICT_NONE);
  int64_t end = now_ns() + (int64_t)(secs * 1e9);
  for (int i = 0; (i & 4095) || now_ns() < end; i++) {
    int64_t v;
    int rc = zkv_incr(db, ZKV_ROOT, "n", 1, 1, 0, &v);
    if (rc) die("incr", rc);
  }
  double ms = max_hold_ms(db);
  zkv_close(db);
  return ms;
}

static void cell(double ms) {
  if (ms < 0) printf("  %9s", "(<fill)");
  else printf("  %9.3f", ms);
}

int main(void) {
  /* in /dev/shm (tmpfs) as segments are: a file on a disk pays for blocks at
   * first touch, inside the holds */
  snprintf(dir, sizeof dir, "/dev/shm/zkv-holds-XXXXXX");
  const char *shm = getenv("ZELTKV_SHM_DIR");
  if (!shm || !*shm) {
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    setenv("ZELTKV_SHM_DIR", dir, 1);
  }
  uint64_t n = 4194304;
  const char *e = getenv("ZKV_BENCH_FILL");
  if (e) n = strtoull(e, NULL, 10);
  double fm = fill(0, n), fs = fill(1, n);
  double cm, fl_m, fillm, cs, fl_s, fills;
  walk_jobs(0, &cm, &fl_m, &fillm);
  walk_jobs(1, &cs, &fl_s, &fills);
  double xm = flag_job(0), xs = flag_job(1);
  double em = evict_job(0), es = evict_job(1);
  double cp = compact_job();
  uint64_t bvlen = 0, bnb = 0;
  double bcopy = 0, bi = bigindex_job(&bvlen, &bcopy, &bnb);
  double nm = noise_job(0, fill_secs[0]), ns = noise_job(1, fill_secs[1]);
  printf("longest single lock hold, ms of the holder's CPU time (ZKV_TIME_HOLDS; goal: 1 ms or less)\n");
  printf("  %-44s  %9s  %9s\n", "job", "memory", "shared");
  printf("  %-44s  %9s  %9s\n", "--------------------------------------------", "---------", "---------");
  printf("  %-44s", "fill to 4M keys, one set at a time");
  cell(fm); cell(fs); printf("\n");
  printf("  %-44s", "zkv_clear of a namespace of 1M keys");
  cell(cm); cell(cs); printf("\n");
  printf("  %-44s", "zkv_flush of 1M keys");
  cell(fl_m); cell(fl_s); printf("\n");
  printf("  %-44s", "zkv_expire_all of a namespace of 1M keys");
  cell(xm); cell(xs); printf("\n");
  printf("  %-44s", "set 1 MiB into a full 64 MiB lru store");
  cell(em); cell(es); printf("\n");
  printf("  %-44s  %9s", "set 1 MiB into a fragmented 64 MiB segment", "-");
  cell(cp); printf("\n");
  printf("  %-44s  %9s", "set all the room of an emptied 64 MiB segment", "-");
  cell(bi); printf("\n");
  printf("  %-44s", "noise: incr of one key, as long as the fill");
  cell(nm); cell(ns); printf("\n");
  printf("  (emptied 64 MiB segment: compaction moves its index of %llu buckets (%.1f MiB) in steps\n"
         "   of at most 32,768; the set of %.1f MiB then copies its value in its own op: a memcpy\n"
         "   of it in this process took %.3f ms of CPU)\n",
         (unsigned long long)bnb, bnb * 4 / 1048576.0, bvlen / 1048576.0, bcopy);
  printf("  (noise: a hold with no work to speak of; a figure above it is work)\n");
  printf("  (<fill): no longer than the longest hold of filling the store before it (%.3f / %.3f ms)\n",
         fillm, fills);
  if (!shm || !*shm) rmdir(dir);
  return 0;
}
