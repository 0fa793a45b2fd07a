/*
 * clock.c -- the engine's time: a monotonic clock in milliseconds for ttls
 * (with an offset tests use to move time), its coarse variant for checks that
 * tolerate a few ms, and raw nanoseconds for measuring lock holds.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <time.h>

#include "internal.h"

static _Atomic int64_t clock_offset_ms;

void zkv_set_clock_offset(int64_t offset_ms) { clock_offset_ms = offset_ms; }

static int64_t offset(void) { return atomic_load_explicit(&clock_offset_ms, memory_order_relaxed); }

int64_t clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + offset();
}

int64_t clock_coarse_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + offset();
}

/* CPU time of this thread: what a lock hold cost its holder, without the
 * time the scheduler gave other processes meanwhile (a syscall: only for
 * ZKV_TIME_HOLDS) */
int64_t clock_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t zkv_now_ms(void) { return clock_ms(); }
