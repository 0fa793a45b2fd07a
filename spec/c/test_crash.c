/*
 * test_crash.c -- crash recovery soak test for shared segments.
 *
 * Writer processes hammer one small shared segment (allocations, frees,
 * coalescing, ttls, expiry sweeps, lru eviction, clears, rollbacks) while the
 * parent kills one of them with SIGKILL at a random moment, again and again,
 * and after every kill opens its own handle and checks, inside one
 * transaction, the invariants the writers keep:
 *
 *   - pair:     "A" and "B" always hold the same version (written together in
 *               one zkv_begin/zkv_commit);
 *   - counters: "counter" == sum of "mc<i>" (both incremented in one
 *               transaction), and for the slot just killed, mc<i> is exactly
 *               the number of commits that child saw succeed (or one more, if
 *               it was killed between commit and noting it);
 *   - counts:   zkv_count of each namespace agrees with a zkv_keys walk;
 *   - lock_recoveries never goes down, and grows over the run.
 *
 * A reader process reads without the lock all the while: every value written
 * carries a checksum of itself (first 8 bytes = FNV-1a of the rest), so a torn
 * read is seen at once; the pair's version must never go backwards (a value
 * that a crash rolled back must never have been visible).
 *
 * Two phases: evict "none" (the store runs full: EFULL paths, reclaiming of
 * expired keys) and evict "lru" (eviction during sets and inside
 * transactions; keys of the invariants may be evicted there, which the
 * checker tolerates by re-seeding them).
 *
 * Kills: ZKV_CRASH_KILLS (default 250, 60 when ZKV_TEST_LIGHT is set), split
 * over the two phases.  ZKV_CRASH_DRY=1 runs the same load and checks without
 * killing anyone (to tell a crash-recovery bug from a plain one).
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp, syscall and other calls beyond C11 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "zeltkv.h"
#include "harness.h"

#define K(s) (s), (sizeof(s) - 1)

/* ------------------------------------------------------------------------ */
/* the segment directory                                                     */



__attribute__((constructor)) static void shm_dir_setup(void) { th_shm_dir("zkvcrash"); }

/* ------------------------------------------------------------------------ */
/* shared state between the parent and its children                          */

#define NW 4            /* writer processes */
#define NRND 1500       /* random keys */
#define NMSG 24

struct shstate {
  long known[NW];       /* commits of the counter txn child i saw succeed */
  long intent[NW];      /* known + 1 while such a commit is in flight */
  uint64_t vhwm;        /* highest pair version ever written */
  long torn, backwards, reads, bad, pair_commits, incr_commits, ops;
  long pair_bad;        /* A != B seen inside a writer's transaction */
  int nmsg;
  char msg[NMSG][200];
};
static struct shstate *g_sh;

__attribute__((format(printf, 1, 2))) static void child_msg(const char *fmt, ...) {
  int i = __atomic_fetch_add(&g_sh->nmsg, 1, __ATOMIC_SEQ_CST);
  if (i >= NMSG) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_sh->msg[i], sizeof g_sh->msg[i], fmt, ap);
  va_end(ap);
}

static void print_msgs(void) {
  int n = g_sh->nmsg < NMSG ? g_sh->nmsg : NMSG;
  for (int i = 0; i < n; i++) TH_NOTE("child: %s", g_sh->msg[i]);
  if (g_sh->nmsg > NMSG) TH_NOTE("(%d more child messages)", g_sh->nmsg - NMSG);
  g_sh->nmsg = 0;
}

/* ------------------------------------------------------------------------ */
/* self-checking values                                                      */

static uint64_t fnv(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static uint64_t xs(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

#define VMAX 4000

/* len in [24, VMAX]: [fnv of the rest][version][filler] */
static void make_val(unsigned char *buf, size_t len, uint64_t version, uint64_t seed) {
  memcpy(buf + 8, &version, 8);
  uint64_t st = seed | 1;
  for (size_t i = 16; i < len; i++) buf[i] = (unsigned char)xs(&st);
  uint64_t h = fnv(buf + 8, len - 8);
  memcpy(buf, &h, 8);
}

static int val_ok(const zkv_value *v, uint64_t *version) {
  if (v->type != ZKV_T_STRING || v->len < 24 || v->len > VMAX || v->data == NULL) return 0;
  uint64_t h;
  memcpy(&h, v->data, 8);
  if (h != fnv((const unsigned char *)v->data + 8, v->len - 8)) return 0;
  if (version) memcpy(version, (const char *)v->data + 8, 8);
  return 1;
}

static int set_val(zkv_db *db, zkv_ns ns, const char *key, size_t len, uint64_t version,
                   uint64_t seed, int64_t ttl, unsigned flags) {
  unsigned char buf[VMAX];
  make_val(buf, len, version, seed);
  zkv_value v = {.type = ZKV_T_STRING, .data = buf, .len = len};
  return zkv_set(db, ns, key, strlen(key), &v, ttl, flags);
}

static void hwm_max(uint64_t v) {
  uint64_t cur = __atomic_load_n(&g_sh->vhwm, __ATOMIC_SEQ_CST);
  while (cur < v && !__atomic_compare_exchange_n(&g_sh->vhwm, &cur, v, 0, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_SEQ_CST)) {
  }
}

/* ------------------------------------------------------------------------ */
/* the store                                                                 */

struct ids {
  zkv_ns crit, rnd, tmp;
};

static int get_ids(zkv_db *db, struct ids *ids) {
  int rc = zkv_namespace(db, ZKV_ROOT, K("crit"), &ids->crit);
  if (rc == ZKV_OK) rc = zkv_namespace(db, ZKV_ROOT, K("rnd"), &ids->rnd);
  if (rc == ZKV_OK) rc = zkv_namespace(db, ids->rnd, K("tmp"), &ids->tmp);
  return rc;
}

static void mc_key(char *buf, int i) { snprintf(buf, 16, "mc%d", i); }

static void open_opts(zkv_options *o, int evict) {
  zkv_options_init(o);
  o->size = 4u << 20;
  o->evict = evict;
  o->gc_interval = 0.005;
  o->lock_timeout = 5;
}

/* a result code a writer may see in ordinary life */
static int rc_ordinary(int rc) {
  return rc == ZKV_OK || rc == ZKV_NOTFOUND || rc == ZKV_EXISTS || rc == ZKV_EFULL ||
         rc == ZKV_ETXN;
}

#define WBAD(what, rc)                                                                  \
  do {                                                                                  \
    __atomic_fetch_add(&g_sh->bad, 1, __ATOMIC_SEQ_CST);                                \
    child_msg("writer %d: %s: %s (%d)", slot, (what), th_rcname(rc), (rc));             \
  } while (0)

/* ------------------------------------------------------------------------ */
/* writer                                                                    */

static void pair_txn(zkv_db *db, const struct ids *ids, int slot, int lru, uint64_t *rs) {
  if (zkv_begin(db) != ZKV_OK) return;
  zkv_value a, b;
  uint64_t va = 0, vb = 0;
  int ra = zkv_get(db, ids->crit, K("A"), &a);
  if (ra == ZKV_OK && !val_ok(&a, &va)) {
    __atomic_fetch_add(&g_sh->torn, 1, __ATOMIC_SEQ_CST);
    child_msg("writer %d: A damaged inside a transaction (len %zu)", slot, a.len);
  }
  int rb = zkv_get(db, ids->crit, K("B"), &b);
  if (rb == ZKV_OK && !val_ok(&b, &vb)) {
    __atomic_fetch_add(&g_sh->torn, 1, __ATOMIC_SEQ_CST);
    child_msg("writer %d: B damaged inside a transaction (len %zu)", slot, b.len);
  }
  uint64_t nv;
  if (ra == ZKV_OK && rb == ZKV_OK) {
    if (va != vb) {
      __atomic_fetch_add(&g_sh->pair_bad, 1, __ATOMIC_SEQ_CST);
      child_msg("writer %d: A version %llu != B version %llu", slot, (unsigned long long)va,
                (unsigned long long)vb);
    }
    nv = va + 1;
  } else {
    if (!lru) {
      __atomic_fetch_add(&g_sh->pair_bad, 1, __ATOMIC_SEQ_CST);
      child_msg("writer %d: pair key missing with evict none: A %s, B %s", slot, th_rcname(ra),
                th_rcname(rb));
    }
    nv = __atomic_load_n(&g_sh->vhwm, __ATOMIC_SEQ_CST) + 1;
  }
  if (nv <= __atomic_load_n(&g_sh->vhwm, __ATOMIC_SEQ_CST) && lru)
    nv = __atomic_load_n(&g_sh->vhwm, __ATOMIC_SEQ_CST) + 1;
  hwm_max(nv);
  int rc = set_val(db, ids->crit, "A", 24 + xs(rs) % (VMAX - 24), nv, xs(rs), 0, 0);
  if (rc == ZKV_OK) rc = set_val(db, ids->crit, "B", 24 + xs(rs) % (VMAX - 24), nv, xs(rs), 0, 0);
  if (rc != ZKV_OK) {
    if (!rc_ordinary(rc)) WBAD("pair set", rc);
    int r2 = zkv_rollback(db);
    if (r2 != ZKV_OK) WBAD("pair rollback", r2);
    return;
  }
  rc = zkv_commit(db);
  if (rc != ZKV_OK) WBAD("pair commit", rc);
  else __atomic_fetch_add(&g_sh->pair_commits, 1, __ATOMIC_SEQ_CST);
}

static int do_incr1(zkv_db *db, zkv_ns ns, const char *key, int lru) {
  if (!lru) return zkv_incr(db, ns, key, strlen(key), 1, 0, NULL);
  /* lru: never create a key that was evicted (the checker re-seeds) */
  return zkv_incr_num(db, ns, key, strlen(key), 1, 0, 0, 0, NULL, NULL);
}

static void incr_txn(zkv_db *db, const struct ids *ids, int slot, int lru) {
  char mk[16];
  mc_key(mk, slot);
  volatile long *known = &g_sh->known[slot], *intent = &g_sh->intent[slot];
  *intent = *known + 1;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (zkv_begin(db) != ZKV_OK) {
    *intent = *known;
    return;
  }
  int rc = do_incr1(db, ids->crit, "counter", lru);
  if (rc == ZKV_OK) rc = do_incr1(db, ids->crit, mk, lru);
  if (rc != ZKV_OK) {
    if (!rc_ordinary(rc)) WBAD("incr", rc);
    if (rc == ZKV_NOTFOUND && !lru) WBAD("incr key missing", rc);
    int r2 = zkv_rollback(db);
    if (r2 != ZKV_OK) WBAD("incr rollback", r2);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    *intent = *known;
    return;
  }
  rc = zkv_commit(db);
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (rc != ZKV_OK) {
    WBAD("incr commit", rc);
    *intent = *known;
    return;
  }
  *known = *known + 1;
  __atomic_fetch_add(&g_sh->incr_commits, 1, __ATOMIC_SEQ_CST);
}

static unsigned g_nrnd = NRND;   /* random keys in this phase (lru: more than fit) */
static void rnd_key(char *buf, uint64_t *rs) { snprintf(buf, 16, "r%u", (unsigned)(xs(rs) % g_nrnd)); }

static int64_t rnd_ttl(uint64_t *rs) {
  uint64_t x = xs(rs) % 100;
  return x < 25 ? 0 : (int64_t)(5 + xs(rs) % 400);
}

static size_t rnd_len(uint64_t *rs, int lru) {
  /* evict none: the store runs full now and then; lru: evicts all the time */
  return 24 + xs(rs) % (size_t)(lru ? VMAX - 24 : 2500);
}

static void rnd_op(zkv_db *db, const struct ids *ids, int slot, int lru, uint64_t *rs) {
  char k[16];
  rnd_key(k, rs);
  uint64_t x = xs(rs) % 100;
  int rc;
  if (x < 55) {
    rc = set_val(db, ids->rnd, k, rnd_len(rs, lru), 0, xs(rs), rnd_ttl(rs),
                 (xs(rs) % 10 == 0) ? ZKV_SET_NX : 0);
    if (!rc_ordinary(rc)) WBAD("set", rc);
  } else if (x < 75) {
    rc = zkv_del(db, ids->rnd, k, strlen(k));
    if (!rc_ordinary(rc)) WBAD("del", rc);
  } else if (x < 90) {
    zkv_value v;
    rc = zkv_get(db, ids->rnd, k, strlen(k), &v);
    if (rc == ZKV_OK && !val_ok(&v, NULL)) {
      __atomic_fetch_add(&g_sh->torn, 1, __ATOMIC_SEQ_CST);
      child_msg("writer %d: %s damaged (len %zu)", slot, k, v.len);
    }
    if (!rc_ordinary(rc)) WBAD("get", rc);
  } else if (x < 95) {
    rc = zkv_expire(db, ids->rnd, k, strlen(k), (int64_t)(xs(rs) % 300));
    if (!rc_ordinary(rc)) WBAD("expire", rc);
  } else {
    /* integers in their own keys (they carry no checksum) */
    char nk[16];
    snprintf(nk, sizeof nk, "n%u", (unsigned)(xs(rs) % 50));
    rc = zkv_incr(db, ids->rnd, nk, strlen(nk), 3, rnd_ttl(rs), NULL);
    if (!rc_ordinary(rc)) WBAD("incr n", rc);
  }
}

/* a transaction of random writes, rolled back or committed (nested levels too) */
static void rnd_txn(zkv_db *db, const struct ids *ids, int slot, int lru, uint64_t *rs) {
  if (zkv_begin(db) != ZKV_OK) return;
  int n = 1 + (int)(xs(rs) % 8);
  for (int i = 0; i < n; i++) {
    if (xs(rs) % 4 == 0) {
      if (zkv_begin(db) == ZKV_OK) {
        rnd_op(db, ids, slot, lru, rs);
        int rc = (xs(rs) & 1) ? zkv_rollback(db) : zkv_commit(db);
        if (rc != ZKV_OK) WBAD("inner end", rc);
      }
    } else {
      rnd_op(db, ids, slot, lru, rs);
    }
  }
  int rc = (xs(rs) % 3 == 0) ? zkv_commit(db) : zkv_rollback(db);
  if (rc != ZKV_OK) WBAD("txn end", rc);
}

static void tmp_fill_clear(zkv_db *db, const struct ids *ids, int slot, uint64_t *rs) {
  int n = 1 + (int)(xs(rs) % 40);
  for (int i = 0; i < n; i++) {
    char k[16];
    snprintf(k, sizeof k, "t%d", i);
    int rc = set_val(db, ids->tmp, k, 24 + xs(rs) % 200, 0, xs(rs), (xs(rs) & 1) ? 50 : 0, 0);
    if (!rc_ordinary(rc)) WBAD("tmp set", rc);
  }
  uint64_t removed = 0;
  /* now and then the whole of rnd (tmp is nested in it) */
  int rc = zkv_clear(db, (xs(rs) % 25) ? ids->tmp : ids->rnd, &removed);
  if (!rc_ordinary(rc)) WBAD("clear", rc);
}

static void writer_main(const char *name, int slot, int lru) {
  zkv_options o;
  open_opts(&o, lru ? ZKV_EVICT_LRU : ZKV_EVICT_NONE);
  zkv_db *db = NULL;
  int rc = zkv_open_shared(name, &o, &db);
  if (rc != ZKV_OK) {
    WBAD("open", rc);
    _exit(3);
  }
  struct ids ids;
  rc = get_ids(db, &ids);
  if (rc != ZKV_OK) {
    WBAD("namespaces", rc);
    _exit(3);
  }
  uint64_t rs = (uint64_t)zkv_now_ms() * 2654435761u ^ ((uint64_t)getpid() << 20) ^ 0x9e3779b9u;
  for (;;) {
    __atomic_fetch_add(&g_sh->ops, 1, __ATOMIC_RELAXED);
    uint64_t x = xs(&rs) % 100;
    if (x < 25) pair_txn(db, &ids, slot, lru, &rs);
    else if (x < 45) incr_txn(db, &ids, slot, lru);
    else if (x < 85) rnd_op(db, &ids, slot, lru, &rs);
    else if (x < 93) rnd_txn(db, &ids, slot, lru, &rs);
    else if (x < 96) {
      uint64_t n;
      rc = (x & 1) ? zkv_gc(db, &n) : zkv_flush_expired(db, 10, &n);
      if (!rc_ordinary(rc)) WBAD("gc", rc);
    } else if (x < 99) tmp_fill_clear(db, &ids, slot, &rs);
    else {
      zkv_stats st;
      rc = zkv_stats_get(db, &st);
      if (rc != ZKV_OK) WBAD("stats", rc);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* reader: no lock, no transaction                                           */

static void reader_main(const char *name, int lru) {
  zkv_options o;
  open_opts(&o, lru ? ZKV_EVICT_LRU : ZKV_EVICT_NONE);
  zkv_db *db = NULL;
  int slot = -1;
  int rc = zkv_open_shared(name, &o, &db);
  if (rc != ZKV_OK) {
    WBAD("reader open", rc);
    _exit(3);
  }
  struct ids ids;
  rc = get_ids(db, &ids);
  if (rc != ZKV_OK) {
    WBAD("reader namespaces", rc);
    _exit(3);
  }
  uint64_t rs = (uint64_t)getpid() * 7919u + 1;
  uint64_t last[2] = {0, 0};
  for (;;) {
    static const char *const pk[2] = {"A", "B"};
    for (int i = 0; i < 2; i++) {
      zkv_value v;
      uint64_t ver = 0;
      rc = zkv_get(db, ids.crit, pk[i], 1, &v);
      if (rc == ZKV_OK) {
        __atomic_fetch_add(&g_sh->reads, 1, __ATOMIC_RELAXED);
        if (!val_ok(&v, &ver)) {
          __atomic_fetch_add(&g_sh->torn, 1, __ATOMIC_SEQ_CST);
          child_msg("reader: torn read of %s (type %d, len %zu)", pk[i], v.type, v.len);
        } else if (ver < last[i]) {
          __atomic_fetch_add(&g_sh->backwards, 1, __ATOMIC_SEQ_CST);
          child_msg("reader: %s went back from version %llu to %llu (a rolled-back write was "
                    "visible?)", pk[i], (unsigned long long)last[i], (unsigned long long)ver);
          last[i] = ver;
        } else {
          last[i] = ver;
        }
      } else if (rc != ZKV_NOTFOUND || !lru) {
        WBAD(pk[i], rc);
      }
    }
    char k[16];
    rnd_key(k, &rs);
    zkv_value v;
    rc = zkv_get(db, ids.rnd, k, strlen(k), &v);
    if (rc == ZKV_OK) {
      __atomic_fetch_add(&g_sh->reads, 1, __ATOMIC_RELAXED);
      if (!val_ok(&v, NULL)) {
        __atomic_fetch_add(&g_sh->torn, 1, __ATOMIC_SEQ_CST);
        child_msg("reader: torn read of %s (type %d, len %zu)", k, v.type, v.len);
      }
    } else if (rc != ZKV_NOTFOUND) {
      WBAD("reader get", rc);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* parent                                                                    */

static pid_t spawn(const char *name, int slot, int lru) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(0);
    if (slot < 0) reader_main(name, lru);
    else writer_main(name, slot, lru);
    _exit(0);
  }
  return pid;
}

static int count_cb(void *ud, const void *key, size_t klen) {
  (void)key;
  (void)klen;
  (*(uint64_t *)ud)++;
  return 0;
}

static int walk_count(zkv_db *db, zkv_ns ns, uint64_t *n) {
  zkv_cursor cur = ZKV_CURSOR_INIT;
  *n = 0;
  int guard = 0;
  while (!cur.done) {
    int rc = zkv_keys(db, ns, &cur, 100, count_cb, n, NULL);
    if (rc != ZKV_OK) return rc;
    if (++guard > 100000) return ZKV_ECORRUPT;
  }
  return ZKV_OK;
}

struct pstate {
  uint64_t recov;         /* lock_recoveries last seen */
  int reseeded[NW];       /* lru: slot's counter re-seeded since it was spawned */
  long reseeds;
  zkv_stats last;         /* stats at the last check */
};

static void seed_counters(zkv_db *db, const struct ids *ids, struct pstate *ps) {
  zkv_value z = {.type = ZKV_T_INT, .i = 0};
  CHECK_RC(zkv_set(db, ids->crit, K("counter"), &z, 0, 0), ZKV_OK);
  for (int i = 0; i < NW; i++) {
    char mk[16];
    mc_key(mk, i);
    CHECK_RC(zkv_set(db, ids->crit, mk, strlen(mk), &z, 0, 0), ZKV_OK);
    ps->reseeded[i] = 1;
  }
}

/* the invariants, inside one transaction of the parent's own handle;
 * `killed` is the writer slot just killed (-1: none / the reader) */
static int check_store(const char *name, int lru, int killed, struct pstate *ps, int final) {
  zkv_options o;
  open_opts(&o, lru ? ZKV_EVICT_LRU : ZKV_EVICT_NONE);
  o.gc_interval = 0;
  zkv_db *db = NULL;
  int rc = zkv_open_shared(name, &o, &db);
  if (rc != ZKV_OK) {
    CHECK_RC(rc, ZKV_OK);
    return 0;
  }
  long fails0 = th_c->failed;
  struct ids ids;
  /* The live writers may keep the lock past lock_timeout on a machine busy
   * enough (valgrind at a load of 30 did): wait on a few times.  A lock left
   * by the killed one and not recovered times out on every try. */
  int tries = 0;
  while ((rc = get_ids(db, &ids)) == ZKV_ETIMEDOUT && ++tries < 6)
    TH_NOTE("the lock was busy for lock_timeout (try %d): waiting again", tries);
  if (rc != ZKV_OK) {
    CHECK_RC(rc, ZKV_OK);
    zkv_close(db);
    return 0;
  }
  tries = 0;
  while ((rc = zkv_begin(db)) == ZKV_ETIMEDOUT && ++tries < 6)
    TH_NOTE("zkv_begin: the lock was busy for lock_timeout (try %d): waiting again", tries);
  if (rc != ZKV_OK) {
    CHECK_RC(rc, ZKV_OK);
    TH_NOTE("zkv_begin after a kill failed: the lock was not recovered");
    zkv_close(db);
    return 0;
  }
  /* pair */
  zkv_value a, b;
  uint64_t va = 0, vb = 0;
  int ra = zkv_get(db, ids.crit, K("A"), &a);
  if (ra == ZKV_OK) CHECK(val_ok(&a, &va));
  int rb = zkv_get(db, ids.crit, K("B"), &b);
  if (rb == ZKV_OK) CHECK(val_ok(&b, &vb));
  if (ra == ZKV_OK && rb == ZKV_OK) {
    CHECK_EQ(va, vb);
  } else if (lru) {
    uint64_t nv = __atomic_load_n(&g_sh->vhwm, __ATOMIC_SEQ_CST) + 1;
    hwm_max(nv);
    CHECK_RC(set_val(db, ids.crit, "A", 100, nv, 1, 0, ZKV_SET_NOEVICT), ZKV_OK);
    CHECK_RC(set_val(db, ids.crit, "B", 100, nv, 2, 0, ZKV_SET_NOEVICT), ZKV_OK);
    ps->reseeds++;
  } else {
    CHECK_RC(ra, ZKV_OK);
    CHECK_RC(rb, ZKV_OK);
  }
  /* counters */
  zkv_value c;
  int rcn = zkv_get(db, ids.crit, K("counter"), &c);
  int64_t sum = 0, mc[NW];
  int missing = rcn != ZKV_OK;
  for (int i = 0; i < NW; i++) {
    char mk[16];
    mc_key(mk, i);
    zkv_value v;
    int r = zkv_get(db, ids.crit, mk, strlen(mk), &v);
    mc[i] = 0;
    if (r == ZKV_OK) {
      CHECK_EQ(v.type, ZKV_T_INT);
      mc[i] = v.i;
      sum += v.i;
    } else {
      missing = 1;
      if (!lru) CHECK_RC(r, ZKV_OK);
    }
  }
  if (!missing) {
    CHECK_EQ(c.type, ZKV_T_INT);
    if (c.i != sum) {
      CHECK_EQ(c.i, sum);
      TH_NOTE("counter %lld, mc = %lld %lld %lld %lld (killed slot %d)", (long long)c.i,
              (long long)mc[0], (long long)mc[1], (long long)mc[2], (long long)mc[3], killed);
    }
    if (killed >= 0 && !ps->reseeded[killed]) {
      long kn = g_sh->known[killed], in = g_sh->intent[killed];
      if (!(mc[killed] == kn || mc[killed] == in)) {
        CHECK(mc[killed] == kn || mc[killed] == in);
        TH_NOTE("slot %d: mc %lld, but the child saw %ld commits succeed (in flight: %ld)",
                killed, (long long)mc[killed], kn, in);
      }
    }
  } else if (lru) {
    seed_counters(db, &ids, ps);
    ps->reseeds++;
    for (int i = 0; i < NW; i++) mc[i] = 0;
  } else {
    CHECK_RC(rcn, ZKV_OK);
  }
  if (killed >= 0) {
    /* the dead child's journal restarts from what the store holds */
    g_sh->known[killed] = g_sh->intent[killed] = mc[killed];
    ps->reseeded[killed] = 0;
  } else if (killed == -2) {
    for (int i = 0; i < NW; i++) {
      g_sh->known[i] = g_sh->intent[i] = mc[i];
      ps->reseeded[i] = 0;
    }
  }
  /* counts against walks; time only moves forward, so c1 >= walk >= c2 */
  zkv_ns nss[3] = {ids.crit, ids.rnd, ids.tmp};
  for (int i = 0; i < 3; i++) {
    uint64_t c1 = 0, c2 = 0, w = 0;
    CHECK_RC(zkv_count(db, nss[i], &c1), ZKV_OK);
    CHECK_RC(walk_count(db, nss[i], &w), ZKV_OK);
    CHECK_RC(zkv_count(db, nss[i], &c2), ZKV_OK);
    if (!(c1 >= w && w >= c2)) {
      CHECK(c1 >= w && w >= c2);
      TH_NOTE("namespace %d: count %llu, keys walk %llu, count again %llu", i,
              (unsigned long long)c1, (unsigned long long)w, (unsigned long long)c2);
    }
    if (i == 0 && !lru) CHECK_EQ(c1, 2 + 1 + NW);
  }
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK(st.lock_recoveries >= ps->recov);
  ps->recov = st.lock_recoveries;
  ps->last = st;
  CHECK(st.bytes_used <= st.capacity);
  CHECK_RC(zkv_commit(db), ZKV_OK);
  if (final) {
    /* everything gone: the accounting must come back to (nearly) nothing */
    uint64_t removed = 0;
    CHECK_RC(zkv_flush(db, &removed), ZKV_OK);
    CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
    CHECK_EQ(st.keys, 0);
    if (st.bytes_used > 256 * 1024) {
      CHECK(st.bytes_used <= 256 * 1024);
      TH_NOTE("bytes_used %llu after flush (leaked blocks or lost accounting?)",
              (unsigned long long)st.bytes_used);
    }
    /* and the free space must be usable: a value of 1/4 of the capacity */
    size_t big = (size_t)(st.capacity / 4);
    char *buf = calloc(1, big);
    zkv_value v = {.type = ZKV_T_STRING, .data = buf, .len = big};
    CHECK_RC(zkv_set(db, ids.rnd, K("big"), &v, 0, 0), ZKV_OK);
    free(buf);
  }
  zkv_close(db);
  return th_c->failed == fails0;
}

static long env_long(const char *name, long dflt) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') return dflt;
  return atol(v);
}

static int total_kills(void) {
  const char *light = getenv("ZKV_TEST_LIGHT");
  int light_on = light != NULL && *light != '\0' && strcmp(light, "0") != 0;
  return (int)env_long("ZKV_CRASH_KILLS", light_on ? 60 : 250);
}

static void soak(int lru, int kills) {
  char name[64];
  snprintf(name, sizeof name, "crash-%d-%s", (int)getpid(), lru ? "lru" : "none");
  memset(g_sh, 0, sizeof *g_sh);
  g_nrnd = lru ? 3 * NRND : NRND;
  struct pstate ps;
  memset(&ps, 0, sizeof ps);
  /* create and seed */
  {
    zkv_options o;
    open_opts(&o, lru ? ZKV_EVICT_LRU : ZKV_EVICT_NONE);
    zkv_db *db = NULL;
    REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
    struct ids ids;
    REQUIRE_RC(get_ids(db, &ids), ZKV_OK);
    CHECK_RC(set_val(db, ids.crit, "A", 100, 1, 1, 0, 0), ZKV_OK);
    CHECK_RC(set_val(db, ids.crit, "B", 100, 1, 2, 0, 0), ZKV_OK);
    g_sh->vhwm = 1;
    seed_counters(db, &ids, &ps);
    for (int i = 0; i < NW; i++) ps.reseeded[i] = 0;
    zkv_close(db);
  }
  pid_t w[NW], rd;
  for (int i = 0; i < NW; i++) w[i] = spawn(name, i, lru);
  rd = spawn(name, -1, lru);
  uint64_t rs = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull + (uint64_t)lru;
  int reader_kills = 0, bad_checks = 0;
  int dry = env_long("ZKV_CRASH_DRY", 0) != 0;
  double t0 = th_now();
  for (int k = 0; k < kills; k++) {
    usleep((useconds_t)(xs(&rs) % 20000));
    int victim = (int)(xs(&rs) % (NW + 1));   /* NW = the reader */
    pid_t *pp = victim < NW ? &w[victim] : &rd;
    if (dry) {
      /* no kill: the same load and checks, to tell crash bugs from others */
      if (!check_store(name, lru, -3, &ps, 0)) {
        TH_NOTE("invariants broken at dry round %d", k + 1);
        if (++bad_checks >= 3) break;
      }
      if (g_sh->nmsg) print_msgs();
      continue;
    }
    kill(*pp, SIGKILL);
    int st = 0;
    waitpid(*pp, &st, 0);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
      CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
      TH_NOTE("child %d (slot %d) ended by itself before the kill: status 0x%x", (int)*pp,
              victim, st);
    }
    if (victim == NW) reader_kills++;
    if (!check_store(name, lru, victim < NW ? victim : -1, &ps, 0)) {
      TH_NOTE("invariants broken after kill %d (slot %d)", k + 1, victim);
      if (++bad_checks >= 3) {
        print_msgs();
        break;
      }
    }
    if (g_sh->nmsg) print_msgs();
    *pp = spawn(name, victim < NW ? victim : -1, lru);
  }
  /* stop everyone, check once more, then flush and check the accounting */
  usleep(20000);
  for (int i = 0; i < NW; i++) kill(w[i], SIGKILL);
  kill(rd, SIGKILL);
  for (int i = 0; i < NW; i++) waitpid(w[i], NULL, 0);
  waitpid(rd, NULL, 0);
  check_store(name, lru, -2, &ps, 1);
  print_msgs();
  TH_NOTE("evict %s: %d kills (%d of the reader) in %.1fs; %ld pair commits, %ld counter "
          "commits, %ld ops, %ld lock-free reads, %llu lock recoveries, %ld re-seeds (lru)",
          lru ? "lru" : "none", kills, reader_kills, th_now() - t0, g_sh->pair_commits,
          g_sh->incr_commits, g_sh->ops, g_sh->reads, (unsigned long long)ps.recov, ps.reseeds);
  TH_NOTE("evict %s: %llu evictions, %llu expired freed, %llu sweeps, %llu buckets",
          lru ? "lru" : "none", (unsigned long long)ps.last.evictions,
          (unsigned long long)ps.last.expired_freed, (unsigned long long)ps.last.gc_runs,
          (unsigned long long)ps.last.buckets);
  CHECK_EQ(g_sh->torn, 0);
  CHECK_EQ(g_sh->backwards, 0);
  CHECK_EQ(g_sh->pair_bad, 0);
  CHECK_EQ(g_sh->bad, 0);
  CHECK(g_sh->pair_commits > 0);
  CHECK(g_sh->incr_commits > 0);
  CHECK(g_sh->reads > 0);
  if (kills >= 50 && !dry) CHECK(ps.recov > 0);   /* some kills landed while the lock was held */
  int existed = 0;
  CHECK_RC(zkv_unlink(name, &existed), ZKV_OK);
}

static void setup_shared(void) {
  if (g_sh == NULL) {
    void *m = mmap(NULL, sizeof *g_sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      perror("mmap");
      exit(2);
    }
    g_sh = m;
  }
}

TEST(crash_soak_evict_none) {
  setup_shared();
  soak(0, (total_kills() + 1) / 2);
}

TEST(crash_soak_evict_lru) {
  setup_shared();
  soak(1, total_kills() / 2);
}

/* the transaction crash tests' store: segment `name` made with the soak's
 * options and a lock_timeout of 2 s (*o), keys k0..k(n-1) of 24 + i * step
 * bytes, and its stats then (*before); 0 when it could not be made */
static int seed_txn_store(const char *name, int n, size_t step, zkv_options *o,
                          zkv_stats *before) {
  open_opts(o, ZKV_EVICT_NONE);
  o->lock_timeout = 2;
  zkv_db *db = NULL;
  int rc = zkv_open_shared(name, o, &db);
  if (rc != ZKV_OK) {
    CHECK_RC(rc, ZKV_OK);
    return 0;
  }
  for (int i = 0; i < n; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    CHECK_RC(set_val(db, ZKV_ROOT, k, 24 + (size_t)i * step, (uint64_t)i, (uint64_t)i + 1, 0, 0),
             ZKV_OK);
  }
  CHECK_RC(zkv_stats_get(db, before), ZKV_OK);
  zkv_close(db);
  return 1;
}

/* A writer killed while it holds the lock in the middle of a big transaction
 * (many keys, index growth, frees and reuse): the next operation of another
 * process recovers at once and sees the store as before the transaction. */
TEST(crash_inside_big_transaction) {
  setup_shared();
  char name[64];
  snprintf(name, sizeof name, "crash-%d-bigtxn", (int)getpid());
  zkv_options o;
  zkv_stats before;
  if (!seed_txn_store(name, 50, 7, &o, &before)) return;
  zkv_db *db = NULL;
  for (int round = 0; round < 20; round++) {
    int pfd[2];
    REQUIRE(pipe(pfd) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      zkv_db *c = NULL;
      if (zkv_open_shared(name, &o, &c) != ZKV_OK) _exit(3);
      if (zkv_begin(c) != ZKV_OK) _exit(3);
      uint64_t rs = (uint64_t)round + 77;
      for (int i = 0; i < 50; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        if (i % 3 == 0) zkv_del(c, ZKV_ROOT, k, strlen(k));
        else set_val(c, ZKV_ROOT, k, 24 + xs(&rs) % 900, 1000 + (uint64_t)i, xs(&rs), 0, 0);
      }
      for (int i = 0; i < 200 + round * 20; i++) {   /* grows the index */
        char k[16];
        snprintf(k, sizeof k, "new%d", i);
        set_val(c, ZKV_ROOT, k, 24 + xs(&rs) % 100, 5, xs(&rs), 0, 0);
      }
      char x = 'x';
      if (write(pfd[1], &x, 1) != 1) _exit(3);
      for (;;) pause();   /* holds the lock until killed */
    }
    close(pfd[1]);
    char x;
    CHECK(read(pfd[0], &x, 1) == 1);
    close(pfd[0]);
    if (round & 1) usleep(1000);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
    double t = th_now();
    uint64_t n = 0;
    CHECK_RC(zkv_count(db, ZKV_ROOT, &n), ZKV_OK);
    /* recovered at once, not after the 2 s lock timeout (light: valgrind, ASan, qemu) */
    CHECK(th_now() - t < (th_light() ? 1.8 : 1.0));
    CHECK_EQ(n, 50);
    for (int i = 0; i < 50; i++) {
      char k[16];
      snprintf(k, sizeof k, "k%d", i);
      zkv_value v;
      uint64_t ver = 999;
      CHECK_RC(zkv_get(db, ZKV_ROOT, k, strlen(k), &v), ZKV_OK);
      CHECK(val_ok(&v, &ver));
      CHECK_EQ(ver, (uint64_t)i);
      CHECK_EQ(v.len, 24 + (size_t)i * 7);
    }
    CHECK_RC(zkv_has(db, ZKV_ROOT, K("new0")), ZKV_NOTFOUND);
    zkv_stats st;
    CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
    CHECK_EQ(st.keys, before.keys);
    CHECK_EQ(st.bytes_used, before.bytes_used);
    CHECK_EQ(st.lock_recoveries, before.lock_recoveries + (uint64_t)round + 1);
    uint64_t w = 0;
    CHECK_RC(walk_count(db, ZKV_ROOT, &w), ZKV_OK);
    CHECK_EQ(w, 50);
    zkv_close(db);
  }
  int existed = 0;
  CHECK_RC(zkv_unlink(name, &existed), ZKV_OK);
}

/* zkv_expire_all (ngx.shared.DICT's flush_all) flags keys without undo
 * records outside a transaction: a writer killed part way through leaves a
 * partly flushed namespace, and nothing else.  Each round the child refills
 * two namespaces (keys without a ttl, keys with one) and flushes them, killed
 * after the k-th key it flags (expire_test_hook), k taken at random over both
 * flushes (the first step's first key included); the parent then checks that
 * the store verifies, that zkv_count agrees with a walk in each namespace (the
 * count's shortcut must not take a partly flushed namespace for a whole one),
 * that flush_expired frees what was flushed (counted as keys until then), that
 * a second flush flags exactly the keys left, and that the store goes on
 * working. */
#define FL_KEYS 6000
extern void (*expire_test_hook)(void);
static long g_flag_cut;
static void flag_cut(void) {
  if (--g_flag_cut == 0) raise(SIGKILL);
}

static int flush_fill(zkv_db *db, zkv_ns ns[2]) {
  for (int i = 0; i < FL_KEYS; i++) {
    char k[16];
    snprintf(k, sizeof k, "f%d", i);
    zkv_value v;
    memset(&v, 0, sizeof v);
    v.type = ZKV_T_STRING;
    v.data = "0123456789012345678901234567890";
    v.len = 31;
    int rc = zkv_set(db, ns[i & 1], k, strlen(k), &v, (i & 1) ? 3600000 : 0, 0);
    if (rc != ZKV_OK) return rc;
  }
  return ZKV_OK;
}

TEST(crash_inside_flush_all) {
  char name[64];
  snprintf(name, sizeof name, "crash-%d-flushall", (int)getpid());
  zkv_options o;
  zkv_options_init(&o);
  o.size = 4u << 20;   /* 3,000 keys a namespace: three steps of the flush (WALK_PASS, ops.c) */
  o.lock_timeout = 2;
  zkv_db *db = NULL;
  zkv_ns ns[2];
  REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("plain"), &ns[0]), ZKV_OK);
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("timed"), &ns[1]), ZKV_OK);
  REQUIRE_RC(flush_fill(db, ns), ZKV_OK);
  zkv_close(db);
  int rounds = th_light() ? 12 : 40;
  uint64_t rs = 0x5eed ^ (uint64_t)getpid();
  for (int round = 0; round < rounds; round++) {
    /* the first rounds cut the first keys of a step (the mark's first use) */
    long cut = round < 4 ? 1 + round : 1 + (long)(xs(&rs) % (FL_KEYS - 1));
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      zkv_db *c = NULL;
      zkv_ns cn[2];
      if (zkv_open_shared(name, &o, &c) != ZKV_OK ||
          zkv_namespace(c, ZKV_ROOT, K("plain"), &cn[0]) != ZKV_OK ||
          zkv_namespace(c, ZKV_ROOT, K("timed"), &cn[1]) != ZKV_OK || flush_fill(c, cn) != ZKV_OK)
        _exit(3);
      g_flag_cut = cut;
      expire_test_hook = flag_cut;
      zkv_expire_all(c, cn[0], NULL);
      zkv_expire_all(c, cn[1], NULL);
      _exit(4);   /* not reached: the hook killed it */
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
    const char *why = "";
    CHECK_RC(zkv_verify(db, &why), ZKV_OK);
    uint64_t live = 0;
    for (int j = 0; j < 2; j++) {
      uint64_t n = 0, w = 0, freed = 0;
      CHECK_RC(zkv_count(db, ns[j], &n), ZKV_OK);
      CHECK_RC(walk_count(db, ns[j], &w), ZKV_OK);
      CHECK_EQ(n, w);
      live += n;
      zkv_stats st0, st1;
      CHECK_RC(zkv_stats_get(db, &st0), ZKV_OK);
      CHECK_RC(zkv_flush_expired_ns(db, ns[j], 0, &freed), ZKV_OK);
      CHECK_RC(zkv_stats_get(db, &st1), ZKV_OK);
      CHECK_EQ(st0.keys - st1.keys, freed);   /* what it freed had counted as keys */
      CHECK_RC(zkv_count(db, ns[j], &n), ZKV_OK);
      CHECK_RC(walk_count(db, ns[j], &w), ZKV_OK);
      CHECK_EQ(n, w);
      CHECK_RC(zkv_expire_all(db, ns[j], &freed), ZKV_OK);
      CHECK_EQ(freed, n);   /* the keys left live were live */
      CHECK_RC(zkv_count(db, ns[j], &n), ZKV_OK);
      CHECK_EQ(n, 0);
      CHECK_RC(walk_count(db, ns[j], &w), ZKV_OK);
      CHECK_EQ(w, 0);
    }
    CHECK_EQ(live, (uint64_t)(FL_KEYS - cut));   /* every key flagged before the kill stays so */
    CHECK_RC(zkv_verify(db, &why), ZKV_OK);
    CHECK_RC(flush_fill(db, ns), ZKV_OK);   /* it goes on working */
    uint64_t n = 0;
    CHECK_RC(zkv_count(db, ns[0], &n), ZKV_OK);
    CHECK_EQ(n, FL_KEYS / 2);
    CHECK_RC(zkv_verify(db, &why), ZKV_OK);
    zkv_close(db);
  }
  int existed = 0;
  CHECK_RC(zkv_unlink(name, &existed), ZKV_OK);
}

/* A transaction whose undo log spilled out of the segment's fixed region
 * into chunks of the free room (src/format.h): its writer is killed, and so
 * is the first process that recovers it, part way (after `cut` records;
 * txn_test_recover_hook); the next one finishes, and the store is what it
 * was before the transaction, with the chunks given back. */
extern void (*txn_test_recover_hook)(void);
static long g_cut;
static void cut_recovery(void) {
  if (--g_cut == 0) raise(SIGKILL);
}

TEST(crash_inside_spilled_transaction) {
  setup_shared();
  char name[64];
  snprintf(name, sizeof name, "crash-%d-spill", (int)getpid());
  zkv_options o;   /* 4 MiB: a fixed log of 256 KiB */
  zkv_stats before;
  if (!seed_txn_store(name, 300, 3, &o, &before)) return;
  zkv_db *db = NULL;
  long cuts[] = {0, 1, 500, 5000, 20000};
  for (int round = 0; round < 5; round++) {
    int pfd[2];
    REQUIRE(pipe(pfd) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      zkv_db *c = NULL;
      if (zkv_open_shared(name, &o, &c) != ZKV_OK) _exit(3);
      if (zkv_begin(c) != ZKV_OK) _exit(3);
      uint64_t rs = (uint64_t)round + 5;
      for (int i = 0; i < 300; i++) {   /* overwrites and deletes of what was there */
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        if (i % 3 == 0) zkv_del(c, ZKV_ROOT, k, strlen(k));
        else set_val(c, ZKV_ROOT, k, 24 + xs(&rs) % 2000, 1000 + (uint64_t)i, xs(&rs), 0, 0);
      }
      for (int i = 0; i < 2500; i++) {   /* ~1 MiB of undo log: 4 times the fixed region */
        char k[16];
        snprintf(k, sizeof k, "new%d", i);
        if (set_val(c, ZKV_ROOT, k, 24 + xs(&rs) % 900, 5, xs(&rs), 0, 0) != ZKV_OK) _exit(4);
      }
      char x = 'x';
      if (write(pfd[1], &x, 1) != 1) _exit(3);
      for (;;) pause();   /* holds the lock until killed */
    }
    close(pfd[1]);
    char x;
    CHECK(read(pfd[0], &x, 1) == 1);
    close(pfd[0]);
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st));
    if (cuts[round]) {   /* a recovering process killed part way */
      fflush(stdout);
      pid = fork();
      if (pid == 0) {
        g_cut = cuts[round];
        txn_test_recover_hook = cut_recovery;
        zkv_db *c = NULL;
        if (zkv_open_shared(name, &o, &c) != ZKV_OK) _exit(3);
        uint64_t n;
        zkv_count(c, ZKV_ROOT, &n);
        _exit(5);   /* the log was shorter than the cut */
      }
      waitpid(pid, &st, 0);
      CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    }
    REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
    uint64_t n = 0;
    CHECK_RC(zkv_count(db, ZKV_ROOT, &n), ZKV_OK);
    CHECK_EQ(n, 300);
    int bad = 0;
    for (int i = 0; i < 300; i++) {
      char k[16];
      snprintf(k, sizeof k, "k%d", i);
      zkv_value v;
      uint64_t ver = 999;
      if (zkv_get(db, ZKV_ROOT, k, strlen(k), &v) != ZKV_OK || !val_ok(&v, &ver) ||
          ver != (uint64_t)i || v.len != 24 + (size_t)i * 3)
        bad++;
    }
    CHECK_EQ(bad, 0);
    CHECK_RC(zkv_has(db, ZKV_ROOT, K("new0")), ZKV_NOTFOUND);
    zkv_stats now;
    CHECK_RC(zkv_stats_get(db, &now), ZKV_OK);
    CHECK_EQ(now.keys, before.keys);
    CHECK_EQ(now.bytes_used, before.bytes_used);   /* the chunks were given back */
    CHECK_EQ(now.free_bytes, before.free_bytes);
    const char *why = "";
    CHECK_RC(zkv_verify(db, &why), ZKV_OK);
    zkv_close(db);
  }
  int existed = 0;
  CHECK_RC(zkv_unlink(name, &existed), ZKV_OK);
}
