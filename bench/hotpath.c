/*
 * bench/hotpath.c -- the C API's hot path, for before/after comparisons of
 * engine changes (such as the stats() counters, issue 13.6).
 *
 * CPU ns per call (CLOCK_THREAD_CPUTIME_ID) of zkv_get finding its key,
 * zkv_get missing it, and zkv_set replacing a 31-byte value, over 1,024 keys,
 * and per pair of calls of the drop-in's delete and incr-with-init rows (the
 * nginx bench's: zkv_set then zkv_del of one of 1,024 other keys, and
 * zkv_incr_num creating a key with a 60 s ttl then zkv_del of it, so each
 * write brings back a key deleted 1,024 pairs before),
 * for the memory driver and the shared one: the best of 15 rounds of 200,000
 * calls (the best round is the one the machine disturbed least).  The keys are
 * made before the clock starts.  Then zkv_expire_all (the drop-in's flush_all)
 * of a namespace of 1,000 keys of 72-byte blocks ("key:N", a 31-byte value, as
 * the nginx bench's), refilled untimed before each call and freed after it
 * (zkv_flush_expired_ns): wall ns of one call (CLOCK_MONOTONIC: the CPU-time
 * clock is a system call of some 0.5 us here, more than a third of the call),
 * the best of 500 calls.  Prints figures only.  To compare two trees,
 * build this file against each one's library and run the two alternately:
 *   gcc -O2 -Iinclude bench/hotpath.c build/libzeltkv.a -lpthread -lm -o /tmp/hp-a
 */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zeltkv.h"

#define NKEYS 1024
#define CALLS 200000
#define ROUNDS 15

/* the time of clock c in ns: the rows' CPU time (CLOCK_THREAD_CPUTIME_ID) or
 * flush_all's wall time (CLOCK_MONOTONIC) */
static double clock_ns(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}
static double cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

static char keys[NKEYS][16], miss[NKEYS][16], dkeys[NKEYS][16], ikeys[NKEYS][16];
static size_t klen[NKEYS], mlen[NKEYS], dlen[NKEYS], ilen[NKEYS];

static void run(zkv_db *db, const char *what) {
  zkv_value v, o;
  memset(&v, 0, sizeof v);
  v.type = ZKV_T_STRING;
  v.data = "0123456789012345678901234567890";
  v.len = 31;
  for (int i = 0; i < NKEYS; i++) {
    if (zkv_set(db, ZKV_ROOT, keys[i], klen[i], &v, 0, 0) != ZKV_OK) {
      fprintf(stderr, "bench/hotpath: set failed\n");
      exit(1);
    }
  }
  double best[5] = {1e18, 1e18, 1e18, 1e18, 1e18};
  for (int r = 0; r < ROUNDS; r++) {
    double t[6], x;
    t[0] = cpu_ns();
    for (int i = 0; i < CALLS; i++) zkv_get(db, ZKV_ROOT, keys[i % NKEYS], klen[i % NKEYS], &o);
    t[1] = cpu_ns();
    for (int i = 0; i < CALLS; i++) zkv_get(db, ZKV_ROOT, miss[i % NKEYS], mlen[i % NKEYS], &o);
    t[2] = cpu_ns();
    for (int i = 0; i < CALLS; i++) zkv_set(db, ZKV_ROOT, keys[i % NKEYS], klen[i % NKEYS], &v, 0, 0);
    t[3] = cpu_ns();
    for (int i = 0; i < CALLS; i++) {
      zkv_set(db, ZKV_ROOT, dkeys[i % NKEYS], dlen[i % NKEYS], &v, 0, 0);
      zkv_del(db, ZKV_ROOT, dkeys[i % NKEYS], dlen[i % NKEYS]);
    }
    t[4] = cpu_ns();
    for (int i = 0; i < CALLS; i++) {
      zkv_incr_num(db, ZKV_ROOT, ikeys[i % NKEYS], ilen[i % NKEYS], 1, 1, 0, 60000, &x, NULL);
      zkv_del(db, ZKV_ROOT, ikeys[i % NKEYS], ilen[i % NKEYS]);
    }
    t[5] = cpu_ns();
    for (int j = 0; j < 5; j++)
      if ((t[j + 1] - t[j]) / CALLS < best[j]) best[j] = (t[j + 1] - t[j]) / CALLS;
  }
  printf("  %-8s %12.1f %12.1f %12.1f %12.1f %12.1f\n", what, best[0], best[1], best[2], best[3],
         best[4]);
}

#define FLUSH_KEYS 1000
#define FLUSH_CALLS 500

static double wall_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

static void flush_all_row(zkv_db *db, const char *what) {
  zkv_ns ns;
  if (zkv_namespace(db, ZKV_ROOT, "flush", 5, &ns) != ZKV_OK) {
    fprintf(stderr, "bench/hotpath: namespace failed\n");
    exit(1);
  }
  zkv_value v;
  memset(&v, 0, sizeof v);
  v.type = ZKV_T_STRING;
  v.data = "0123456789abcdefghijklmnopqrstu";
  v.len = 31;
  double best = 1e18;
  for (int c = 0; c < FLUSH_CALLS; c++) {
    char k[16];
    for (int i = 1; i <= FLUSH_KEYS; i++) {
      size_t n = (size_t)snprintf(k, sizeof k, "key:%d", i);
      if (zkv_set(db, ns, k, n, &v, 0, 0) != ZKV_OK) {
        fprintf(stderr, "bench/hotpath: set failed\n");
        exit(1);
      }
    }
    uint64_t flagged = 0, freed = 0;
    double t0 = wall_ns();
    int rc = zkv_expire_all(db, ns, &flagged);
    double dt = wall_ns() - t0;
    if (rc != ZKV_OK || flagged != FLUSH_KEYS ||
        zkv_flush_expired_ns(db, ns, 0, &freed) != ZKV_OK || freed != FLUSH_KEYS) {
      fprintf(stderr, "bench/hotpath: flush failed\n");
      exit(1);
    }
    if (dt < best) best = dt;
  }
  printf("  %-8s %12.0f\n", what, best);
}

int main(void) {
  for (int i = 0; i < NKEYS; i++) {
    klen[i] = (size_t)snprintf(keys[i], sizeof keys[i], "user:%d", i);
    mlen[i] = (size_t)snprintf(miss[i], sizeof miss[i], "none:%d", i);
    dlen[i] = (size_t)snprintf(dkeys[i], sizeof dkeys[i], "del:%d", i);
    ilen[i] = (size_t)snprintf(ikeys[i], sizeof ikeys[i], "init:%d", i);
  }
  printf("hot path of the C API: CPU ns per call, best of %d rounds of %d calls, %d keys\n",
         ROUNDS, CALLS, NKEYS);
  printf("  %-8s %12s %12s %12s %12s %12s\n", "driver", "get (hit)", "get (miss)", "set",
         "set+del", "incr new+del");
  zkv_db *mem = NULL, *shd = NULL;
  if (zkv_open_memory(NULL, &mem) != ZKV_OK) return 1;
  run(mem, "memory");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 16u << 20;
  char name[64];
  snprintf(name, sizeof name, "bench-hotpath-%d", (int)getpid());
  if (zkv_open_shared(name, &o, &shd) != ZKV_OK) return 1;
  run(shd, "shared");
  printf("flush_all (zkv_expire_all) of %d fresh keys of 72 bytes: wall ns per call, best of %d\n",
         FLUSH_KEYS, FLUSH_CALLS);
  flush_all_row(mem, "memory");
  flush_all_row(shd, "shared");
  zkv_close(mem);
  zkv_close(shd);
  zkv_unlink(name, NULL);
  return 0;
}
