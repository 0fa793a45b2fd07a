/*
 * harness.h -- a tiny test harness for the zeltkv C specs (no external framework).
 *
 *   TEST(name) { CHECK(x); CHECK_EQ(a, b); CHECK_RC(zkv_get(...), ZKV_OK); }
 *
 * Tests register themselves (a constructor per TEST) and run in the order they
 * are written.  A failed CHECK prints file:line and the test goes on; REQUIRE
 * returns from the test when it fails.
 *
 * Each test runs in a fork()ed child by default, so a crash or a hang (alarm,
 * ZKV_TEST_TIMEOUT seconds, default 300; past it and 10 s more the harness kills
 * the child and every process it forked) fails that test only and the rest still
 * run.  The check counters live in a MAP_SHARED mapping, so CHECKs made in
 * processes a test forks itself are counted too.  ZKV_TEST_NOFORK=1 runs every
 * test in the main process (for gdb).  Arguments select tests whose name
 * contains one of them.
 *
 * The very last line printed is "N passed, N failed", counting TESTS (a test
 * fails when any of its checks fails, it crashes, or it times out).  The line
 * before it counts checks.  Exit status: 1 if a test failed or no test ran.
 */
#ifndef ZKV_TEST_HARNESS_H
#define ZKV_TEST_HARNESS_H

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TH_MAX_TESTS 512
#define TH_MAX_REPORTS 25 /* failure lines printed per test; the rest are counted */

typedef void (*th_fn)(void);

struct th_test {
  const char *name;
  th_fn fn;
  int line;
};

struct th_counts {
  long checks;
  long failed;
  long reports; /* failure lines printed in the current test */
};

static struct th_test th_tests[TH_MAX_TESTS];
static int th_ntests;
static struct th_counts th_local_counts;
static struct th_counts *th_c = &th_local_counts;

__attribute__((unused)) static void th_register(const char *name, th_fn fn, int line) {
  if (th_ntests < TH_MAX_TESTS) {
    th_tests[th_ntests].name = name;
    th_tests[th_ntests].fn = fn;
    th_tests[th_ntests].line = line;
    th_ntests++;
  }
}

#define TEST(name)                                                          \
  static void name(void);                                                   \
  __attribute__((constructor)) static void th_reg_##name(void) {            \
    th_register(#name, name, __LINE__);                                     \
  }                                                                         \
  static void name(void)

__attribute__((format(printf, 3, 4), unused)) static void th_fail(const char *file, int line,
                                                                    const char *fmt, ...) {
  __atomic_fetch_add(&th_c->failed, 1, __ATOMIC_SEQ_CST);
  if (__atomic_fetch_add(&th_c->reports, 1, __ATOMIC_SEQ_CST) >= TH_MAX_REPORTS) {
    return;
  }
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  printf("    %s:%d: %s\n", file, line, buf);
  fflush(stdout);
}

/* A note printed under the current test (context for the failures that follow). */
#define TH_NOTE(...)            \
  do {                          \
    printf("    note: ");       \
    printf(__VA_ARGS__);        \
    printf("\n");               \
    fflush(stdout);             \
  } while (0)

static inline int th_check(int ok, const char *file, int line, const char *expr) {
  __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
  if (!ok) th_fail(file, line, "CHECK(%s)", expr);
  return ok;
}

#define CHECK(cond) ((void)th_check((cond) ? 1 : 0, __FILE__, __LINE__, #cond))
#define REQUIRE(cond)                                             \
  do {                                                            \
    if (!th_check((cond) ? 1 : 0, __FILE__, __LINE__, #cond)) {   \
      return;                                                     \
    }                                                             \
  } while (0)

static inline int th_check_eq(long long a, long long b, const char *file, int line,
                              const char *ea, const char *eb) {
  __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
  if (a != b) th_fail(file, line, "CHECK_EQ(%s, %s): %lld != %lld", ea, eb, a, b);
  return a == b;
}
#define CHECK_EQ(a, b) \
  ((void)th_check_eq((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b))
#define REQUIRE_EQ(a, b)                                                              \
  do {                                                                                \
    if (!th_check_eq((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b)) {   \
      return;                                                                         \
    }                                                                                 \
  } while (0)

static inline int th_check_dbl(double a, double b, const char *file, int line, const char *ea,
                               const char *eb) {
  __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
  /* bit-exact: -0.0 and 0.0 differ, so do NaN payloads */
  int ok = memcmp(&a, &b, sizeof a) == 0;
  if (!ok) th_fail(file, line, "CHECK_DBL(%s, %s): %.17g != %.17g", ea, eb, a, b);
  return ok;
}
#define CHECK_DBL(a, b) ((void)th_check_dbl((double)(a), (double)(b), __FILE__, __LINE__, #a, #b))

static inline int th_check_mem(const void *a, size_t alen, const void *b, size_t blen,
                               const char *file, int line, const char *ea, const char *eb) {
  __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
  int ok = alen == blen && (alen == 0 || (a != NULL && b != NULL && memcmp(a, b, alen) == 0));
  if (!ok) {
    size_t at = 0;
    if (a != NULL && b != NULL) {
      while (at < alen && at < blen && ((const unsigned char *)a)[at] == ((const unsigned char *)b)[at]) at++;
    }
    th_fail(file, line, "CHECK_MEM(%s, %s): lengths %zu vs %zu, first difference at byte %zu%s",
            ea, eb, alen, blen, at, a == NULL ? " (first is NULL)" : "");
  }
  return ok;
}
#define CHECK_MEM(a, alen, b, blen) \
  ((void)th_check_mem((a), (alen), (b), (blen), __FILE__, __LINE__, #a, #b))

static inline int th_check_str(const char *a, const char *b, const char *file, int line,
                               const char *ea, const char *eb) {
  __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
  int ok = a != NULL && b != NULL && strcmp(a, b) == 0;
  if (!ok) th_fail(file, line, "CHECK_STR(%s, %s): \"%s\" != \"%s\"", ea, eb, a ? a : "(null)",
                   b ? b : "(null)");
  return ok;
}
#define CHECK_STR(a, b) ((void)th_check_str((a), (b), __FILE__, __LINE__, #a, #b))

/* th_light(): ZKV_TEST_LIGHT is set (valgrind runs): tests scale their loop
 * counts down, not their assertions. */
__attribute__((unused)) static int th_light(void) {
  const char *l = getenv("ZKV_TEST_LIGHT");
  return l != NULL && *l != '\0' && strcmp(l, "0") != 0;
}

/* ------------------------------------------------------------------------ */
/* zeltkv result codes, when zeltkv.h was included first                     */

#ifdef ZELTKV_H
__attribute__((unused)) static const char *th_rcname(int rc) {
  switch (rc) {
    case ZKV_OK: return "ZKV_OK";
    case ZKV_NOTFOUND: return "ZKV_NOTFOUND";
    case ZKV_EXISTS: return "ZKV_EXISTS";
    case ZKV_EINVAL_TTL: return "ZKV_EINVAL_TTL";
    case ZKV_EEMPTY_NS: return "ZKV_EEMPTY_NS";
    case ZKV_EINVAL_VALUE: return "ZKV_EINVAL_VALUE";
    case ZKV_EINVAL_KEY: return "ZKV_EINVAL_KEY";
    case ZKV_ETYPE: return "ZKV_ETYPE";
    case ZKV_ERANGE: return "ZKV_ERANGE";
    case ZKV_EFULL: return "ZKV_EFULL";
    case ZKV_ETIMEDOUT: return "ZKV_ETIMEDOUT";
    case ZKV_ECLOSED: return "ZKV_ECLOSED";
    case ZKV_ECORRUPT: return "ZKV_ECORRUPT";
    case ZKV_EVERSION: return "ZKV_EVERSION";
    case ZKV_ENOMEM: return "ZKV_ENOMEM";
    case ZKV_EIO: return "ZKV_EIO";
    case ZKV_ETXN: return "ZKV_ETXN";
    case ZKV_EINVAL: return "ZKV_EINVAL";
    case ZKV_ESTALE: return "ZKV_ESTALE";
    default: return "(unknown rc)";
  }
}

static inline int th_check_rc(int got, int want, const char *file, int line, const char *expr) {
  __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
  if (got != want) {
    th_fail(file, line, "%s: got %s (%d), want %s (%d)", expr, th_rcname(got), got,
            th_rcname(want), want);
  }
  return got == want;
}
/* CHECK_RC(call, want): the call returned result code `want`. */
#define CHECK_RC(call, want) ((void)th_check_rc((call), (want), __FILE__, __LINE__, #call))
#define REQUIRE_RC(call, want)                                        \
  do {                                                                \
    if (!th_check_rc((call), (want), __FILE__, __LINE__, #call)) {    \
      return;                                                         \
    }                                                                 \
  } while (0)

/* CHECK_RC2(call, a, b): either of two codes is acceptable (the header allows both). */
static inline int th_check_rc2(int got, int a, int b, const char *file, int line,
                               const char *expr) {
  __atomic_fetch_add(&th_c->checks, 1, __ATOMIC_SEQ_CST);
  if (got != a && got != b) {
    th_fail(file, line, "%s: got %s (%d), want %s or %s", expr, th_rcname(got), got,
            th_rcname(a), th_rcname(b));
  }
  return got == a || got == b;
}
#define CHECK_RC2(call, a, b) ((void)th_check_rc2((call), (a), (b), __FILE__, __LINE__, #call))
#endif /* ZELTKV_H */

/* ------------------------------------------------------------------------ */
/* main                                                                      */

static double th_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int th_cmp_line(const void *a, const void *b) {
  return ((const struct th_test *)a)->line - ((const struct th_test *)b)->line;
}

static int th_selected(const char *name, int argc, char **argv) {
  if (argc <= 1) return 1;
  for (int i = 1; i < argc; i++) {
    if (strstr(name, argv[i]) != NULL) return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  qsort(th_tests, (size_t)th_ntests, sizeof th_tests[0], th_cmp_line);
  void *shared = mmap(NULL, sizeof(struct th_counts), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared != MAP_FAILED) th_c = shared;
  const char *nf = getenv("ZKV_TEST_NOFORK");
  int nofork = nf != NULL && *nf != '\0' && strcmp(nf, "0") != 0;
  const char *to = getenv("ZKV_TEST_TIMEOUT");
  unsigned timeout = to != NULL ? (unsigned)atoi(to) : 300u;
  int passed = 0, failed = 0;
  for (int i = 0; i < th_ntests; i++) {
    const struct th_test *t = &th_tests[i];
    if (!th_selected(t->name, argc, argv)) continue;
    long before = th_c->failed;
    th_c->reports = 0;
    double t0 = th_now();
    if (nofork) {
      t->fn();
    } else {
      fflush(stdout);
      fflush(stderr);
      pid_t pid = fork();
      if (pid < 0) {
        th_fail(__FILE__, __LINE__, "fork failed");
      } else if (pid == 0) {
        setpgid(0, 0); /* its own group: a timeout ends the processes it forks too */
        alarm(timeout);
        t->fn();
        fflush(stdout);
        exit(0);
      } else {
        int st = 0;
        setpgid(pid, pid); /* whichever of the two runs first */
        /* The child's alarm is not enough: a process under valgrind can go
         * for hours without taking a signal (valgrind blocks them in its own
         * loops), and a grandchild may be the one that hangs.  The harness
         * waits `timeout` seconds and 10 more, then kills the whole group. */
        double deadline = th_now() + timeout + 10.0;
        useconds_t nap = 200;
        pid_t got;
        while ((got = waitpid(pid, &st, WNOHANG)) == 0 || (got < 0 && errno == EINTR)) {
          if (th_now() > deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            st = SIGALRM; /* reported as a timeout below */
            break;
          }
          usleep(nap);
          if (nap < 20000) nap *= 2;
        }
        if (WIFSIGNALED(st)) {
          th_fail(__FILE__, __LINE__, "test %s died of signal %d (%s)%s", t->name, WTERMSIG(st),
                  strsignal(WTERMSIG(st)),
                  WTERMSIG(st) == SIGALRM ? ": timed out (hang or deadlock?)" : "");
        } else if (WEXITSTATUS(st) != 0) {
          th_fail(__FILE__, __LINE__, "test %s exited with status %d (sanitizer/valgrind report?)",
                  t->name, WEXITSTATUS(st));
        }
      }
    }
    int bad = th_c->failed > before;
    if (bad) failed++; else passed++;
    printf("%s %s (%.2fs)\n", bad ? "FAIL" : "ok  ", t->name, th_now() - t0);
    fflush(stdout);
  }
  printf("%ld checks, %ld failed checks\n", th_c->checks, th_c->failed);
  printf("%d passed, %d failed\n", passed, failed);
  fflush(stdout);
  return (failed > 0 || passed + failed == 0) ? 1 : 0;
}

/* ---- a private directory for shared segments ---------------------------
 * Every test binary that opens segments sends them to a directory of its own
 * (ZELTKV_SHM_DIR), removed with whatever is left in it when the binary that
 * made it exits (not when one of its forked children does).  Call
 * th_shm_dir("prefix") from a constructor; th_dir is the directory and
 * th_dir_pid the process that made it. */
static char th_dir[512];
static pid_t th_dir_pid;

static void th_shm_dir_cleanup(void) {
  if (getpid() != th_dir_pid || th_dir[0] == '\0') return;
  DIR *d = opendir(th_dir);
  if (d != NULL) {
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      snprintf(p, sizeof p, "%s/%s", th_dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(th_dir);
}

__attribute__((unused)) static void th_shm_dir(const char *prefix) {
  const char *tmp = getenv("TMPDIR");
  snprintf(th_dir, sizeof th_dir, "%s/%s-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp", prefix);
  if (mkdtemp(th_dir) == NULL) {
    perror("mkdtemp");
    exit(2);
  }
  setenv("ZELTKV_SHM_DIR", th_dir, 1);
  th_dir_pid = getpid();
  atexit(th_shm_dir_cleanup);
}

#ifdef ZELTKV_H
/* A shared segment of size bytes no other process can open: made, then
 * unlinked at once (the mapping stays, nothing is left to remove).  gc is
 * off, so that only the test's own calls change it.  NULL if it cannot open. */
__attribute__((unused)) static zkv_db *th_open_unlinked(const char *tag, uint64_t size, int evict) {
  char name[64];
  snprintf(name, sizeof name, "th-%d-%s", (int)getpid(), tag);
  zkv_unlink(name, NULL);
  zkv_options o;
  zkv_options_init(&o);
  o.size = size;
  o.evict = evict;
  o.gc_interval = 0;
  zkv_db *db = NULL;
  if (zkv_open_shared(name, &o, &db) != ZKV_OK) return NULL;
  zkv_unlink(name, NULL);
  return db;
}
#endif

#endif /* ZKV_TEST_HARNESS_H */
