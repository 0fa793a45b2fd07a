/*
 * bench/snapshot.c -- what a dump and a load of a full 64 MiB shared segment cost,
 * and above all how long the dump holds the lock (the copy of the arena).
 *
 * Prints figures only (a benchmark never asserts timings):
 *   1. the segment: keys, bytes used
 *   2. zkv_snapshot_take: the lock hold (the copy), median and worst of 9, and the
 *      bytes copied; for scale, one zkv_set under the lock
 *   3. zkv_dump to a file: seconds, keys/s, MiB/s of file
 *   4. a writer process beside the dump: its slowest set during the dump
 *   5. zkv_load into an empty segment: seconds, keys/s, steps, longest step
 * Segments live in a private temporary directory; ZKV_BENCH_MIB sets the size (64).
 */
#define _GNU_SOURCE 1
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zeltkv.h"

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench/snapshot: %s: %s\n", what, zkv_strerror(rc));
  exit(1);
}

static zkv_db *open_seg(const char *name, uint64_t size) {
  zkv_options o;
  zkv_options_init(&o);
  o.size = size;
  o.gc_interval = 0;
  zkv_db *db;
  int rc = zkv_open_shared(name, &o, &db);
  if (rc) die("open", rc);
  return db;
}

int main(void) {
  char dir[] = "/tmp/zkv-bench-snap-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  setenv("ZELTKV_SHM_DIR", dir, 1);
  const char *mib_env = getenv("ZKV_BENCH_MIB");
  uint64_t mib = mib_env ? strtoull(mib_env, NULL, 10) : 64;
  char file[600];
  snprintf(file, sizeof file, "%s/dump.jsonl", dir);

  /* 1. fill to 90%: keys of 12 bytes, values of 20-180 bytes or integers, some with a
   * ttl (a segment filled to the brim may not take its own dump back: its blocks
   * are laid out otherwise) */
  zkv_db *db = open_seg("bench-snap", mib << 20);
  zkv_ns ns[4];
  const char *nsn[4] = {"sessions", "cache", "ratelimit", "locks"};
  for (int i = 0; i < 4; i++) zkv_namespace(db, ZKV_ROOT, nsn[i], strlen(nsn[i]), &ns[i]);
  char val[256];
  memset(val, 'v', sizeof val);
  uint64_t n = 0;
  for (;; n++) {
    char k[32];
    int kl = snprintf(k, sizeof k, "key:%08" PRIu64, n);
    zkv_value v = {.type = ZKV_T_STRING, .data = val, .len = 20 + (n * 37) % 160};
    if (n % 3 == 0) { v.type = ZKV_T_INT; v.i = (int64_t)n; }
    int rc = zkv_set(db, ns[n % 4], k, (size_t)kl, &v, n % 5 == 0 ? 3600000 : 0, 0);
    if (rc) die("fill", rc);
    if (n % 1024 == 0) {
      zkv_stats fs;
      zkv_stats_get(db, &fs);
      if (fs.bytes_used >= fs.capacity / 10 * 9) break;
    }
  }
  zkv_stats st;
  zkv_stats_get(db, &st);
  printf("snapshot bench: a %" PRIu64 " MiB shared segment, %" PRIu64 " keys, %.1f MiB used\n", mib,
         st.keys, (double)st.bytes_used / 1048576.0);

  /* 2. the lock hold of the copy */
  uint64_t holds[9], bytes = 0;
  for (int i = 0; i < 9; i++) {
    zkv_snapshot *sn;
    int rc = zkv_snapshot_take(db, &sn);
    if (rc) die("snapshot", rc);
    zkv_snapshot_info info;
    zkv_snapshot_info_get(sn, &info);
    holds[i] = info.lock_ns;
    bytes = info.bytes;
    zkv_snapshot_free(sn);
  }
  qsort(holds, 9, sizeof *holds, cmp_u64);
  int64_t t0 = now_ns();
  for (int i = 0; i < 1000; i++) {
    zkv_value v = {.type = ZKV_T_INT, .i = i};
    zkv_set(db, ns[0], "probe", 5, &v, 0, 0);
  }
  double set_us = (double)(now_ns() - t0) / 1000.0 / 1000.0;
  printf("  lock held by the copy      median %.2f ms, worst %.2f ms of 9 (%.1f MiB copied, %.1f GB/s)\n",
         (double)holds[4] / 1e6, (double)holds[8] / 1e6, (double)bytes / 1048576.0,
         (double)bytes / (double)holds[4]);
  printf("  for scale: one set         %.2f us (the lock held for about that)\n", set_us);

  /* 3 and 4. the dump, with a writer beside it recording its slowest set */
  uint64_t *slowest = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  volatile uint64_t *go = slowest + 1;
  *slowest = 0;
  *go = 0;
  pid_t pid = fork();
  if (pid == 0) {
    zkv_db *w = open_seg("bench-snap", mib << 20);
    zkv_ns wn;
    zkv_namespace(w, ZKV_ROOT, "writer", 6, &wn);
    while (*go == 0) usleep(100);
    uint64_t i = 0;
    while (*go == 1) {
      zkv_value v = {.type = ZKV_T_INT, .i = (int64_t)i};
      int64_t a = now_ns();
      zkv_set(w, wn, "w", 1, &v, 0, 0);
      uint64_t d = (uint64_t)(now_ns() - a);
      if (d > *slowest) *slowest = d;
      i++;
    }
    zkv_close(w);
    _exit(0);
  }
  usleep(200000);
  *go = 1;
  usleep(20000);
  zkv_dump_stats ds;
  t0 = now_ns();
  int rc = zkv_dump(db, file, -1, NULL, NULL, &ds);
  double dump_s = (double)(now_ns() - t0) / 1e9;
  *go = 2;
  int status;
  waitpid(pid, &status, 0);
  if (rc) die("dump", rc);
  FILE *f = fopen(file, "r");
  fseek(f, 0, SEEK_END);
  double fmib = (double)ftell(f) / 1048576.0;
  fclose(f);
  printf("  dump to a file             %.2f s, %.0f keys/s, %.0f MiB of JSON lines (%.0f MiB/s); its copy held the lock %.2f ms\n",
         dump_s, (double)ds.keys / dump_s, fmib, fmib / dump_s, (double)ds.lock_ns / 1e6);
  printf("  a writer beside the dump   its slowest set took %.2f ms\n", (double)*slowest / 1e6);

  /* 5. the load into an empty segment */
  zkv_db *dst = open_seg("bench-snap-load", mib << 20);
  zkv_load_stats ls;
  t0 = now_ns();
  rc = zkv_load(dst, file, -1, NULL, NULL, &ls);
  double load_s = (double)(now_ns() - t0) / 1e9;
  if (rc) die(ls.why, rc);
  printf("  load into an empty segment %.2f s, %.0f keys/s, %" PRIu64 " steps, the longest held the lock %.2f ms\n",
         load_s, (double)ls.loaded / load_s, ls.steps, (double)ls.max_lock_ns / 1e6);

  zkv_close(dst);
  zkv_close(db);
  zkv_unlink("bench-snap", NULL);
  zkv_unlink("bench-snap-load", NULL);
  unlink(file);
  rmdir(dir);
  return 0;
}
