#define _GNU_SOURCE 1 /* first: internal.h wants it */
/*
 * test_rollback.c -- a rolled-back transaction gives back the arena byte for
 * byte.
 *
 * The arena is copied at zkv_begin; random operations run (sets of every
 * size, deletes, incr, expiry changes, namespaces made and cleared, nested
 * levels committed or rolled back, evictions in an lru store, index growth);
 * after zkv_rollback every byte of the header and of every block that existed
 * at the copy must be what it was, but for the fields format.h declares as
 * hints (the lru stamps and clock, the seqlock counter, the lock word, a
 * memory arena's mapped size).  Free blocks are compared by their tags only
 * (their insides hold nothing).
 *
 * It reads the arena through the engine's private header (src/internal.h):
 * the point is the layout, which the public API hides.
 */
#include "internal.h"
#include "harness.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

typedef struct snap {
  char *bytes;
  uint64_t len;   /* the arena's bytes up to top at the copy */
} snap;

static void take(zkv_db *db, snap *sn) {
  seg *s = db->s;
  sn->len = H(s)->top;
  sn->bytes = malloc(sn->len);
  memcpy(sn->bytes, s->base, sn->len);
}

/* the header with its hints made equal */
static void hdr_norm(hdr *h) {
  h->lru_clock = 0;
  /* the counters are hints too (stats; a rollback counts, it does not undo) */
  h->lock_waits = h->lock_wait_ns = h->lock_wait_max_ns = 0;
  h->sets = h->deletes = h->commits = h->rollbacks = 0;
  h->retired_hits = h->retired_misses = 0;
  atomic_store(&h->seq, 0);
  atomic_store(&h->lock, 0);
  h->size = 0;   /* memory: the mapping may have grown; shared: checked apart */
}

/* the first differing offset of the arena against the copy, or -1 */
static long long diff_at(zkv_db *db, const snap *sn, const char **what) {
  seg *s = db->s;
  hdr a, b;
  memcpy(&a, sn->bytes, sizeof a);
  memcpy(&b, s->base, sizeof b);
  if (s->shared && a.size != b.size) { *what = "size"; return (long long)offsetof(hdr, size); }
  hdr_norm(&a);
  hdr_norm(&b);
  for (size_t i = 0; i < sizeof a; i++)
    if (((char *)&a)[i] != ((char *)&b)[i]) { *what = "header"; return (long long)i; }
  const hdr *h = (const hdr *)sn->bytes;
  uint64_t r = h->heap_start / UNIT, top = h->top / UNIT;
  while (r < top) {
    const char *o = sn->bytes + r * UNIT, *n = s->base + r * UNIT;
    uint32_t hd;
    memcpy(&hd, o, 4);
    uint64_t u = BLK_UNITS(hd);
    if (u == 0) { *what = "the copy's heap is damaged"; return (long long)(r * UNIT); }
    if (hd & BLK_FREE) {
      /* header, list links (2 units or more), footer */
      size_t tag = u >= 2 ? 12 : 8;
      if (memcmp(o, n, tag) != 0 || memcmp(o + u * UNIT - 4, n + u * UNIT - 4, 4) != 0) {
        *what = "free block tags";
        return (long long)(r * UNIT);
      }
    } else if (r == h->buckets || r == h->obuckets || r == h->dead_ring) {
      if (memcmp(o, n, u * UNIT) != 0) { *what = "bucket array or ring"; return (long long)(r * UNIT); }
    } else {
      /* an entry: all but its lru stamp (a deleted key's atime is its ring slot) */
      const ent *e = (const ent *)o;
      size_t at = offsetof(ent, atime);
      int hint = !(e->flags & EF_DELETED);
      for (size_t i = 0; i < u * UNIT; i++) {
        if (hint && i >= at && i < at + 2) continue;
        if (o[i] != n[i]) {
          static char msg[96];
          snprintf(msg, sizeof msg, "%s (byte %zu of the block)",
                   e->type == T_NSREC ? "namespace record" : "key entry", i);
          *what = msg;
          return (long long)(r * UNIT + i);
        }
      }
    }
    r += u;
  }
  return -1;
}

static zkv_ns nss[8];
static int nns;

static void key_of(char *buf, size_t cap, size_t *len) {
  *len = (size_t)snprintf(buf, cap, "k%u", (unsigned)(rnd() % 3000));
}

/* one random operation; any result code is fine (full, not found, ...) */
static void random_op(zkv_db *db) {
  char key[32], val[3000];
  size_t klen;
  key_of(key, sizeof key, &klen);
  zkv_ns ns = nss[rnd() % (uint64_t)nns];
  unsigned op = (unsigned)(rnd() % 100);
  if (op < 40) {
    size_t sizes[] = {1, 8, 31, 100, 250, 600, 2000};
    size_t vlen = sizes[rnd() % 7];
    memset(val, 'a' + (int)(rnd() % 26), vlen);
    zkv_value v = {.type = ZKV_T_STRING, .data = val, .len = vlen};
    if (rnd() % 5 == 0) v.flags = (uint32_t)rnd();
    int64_t ttl = rnd() % 4 == 0 ? (int64_t)(1 + rnd() % 100000) : 0;
    unsigned flags = rnd() % 10 == 0 ? ZKV_SET_NX : rnd() % 10 == 0 ? ZKV_SET_KEEPTTL : 0;
    int forcible;
    zkv_set_ex(db, ns, key, klen, &v, ttl, flags, &forcible);
  } else if (op < 60) {
    zkv_del(db, ns, key, klen);
  } else if (op < 72) {
    int64_t r;
    zkv_incr(db, ns, key, klen, (int64_t)(rnd() % 7) - 3, 0, &r);
  } else if (op < 80) {
    zkv_expire(db, ns, key, klen, (int64_t)(rnd() % 3) * 1000);
  } else if (op < 85) {
    double r;
    zkv_incr_num(db, ns, key, klen, 0.5, 1, 1.0, 0, &r, NULL);
  } else if (op < 88) {
    if (nns < 8) {
      char name[16];
      int n = snprintf(name, sizeof name, "n%u", (unsigned)(rnd() % 20));
      zkv_ns out;
      if (zkv_namespace(db, nss[rnd() % (uint64_t)nns], name, (size_t)n, &out) == ZKV_OK)
        nss[nns++] = out;
    }
  } else if (op < 90) {
    uint64_t n;
    zkv_clear(db, nss[1 + rnd() % (uint64_t)(nns - 1)], &n);
  } else if (op < 92) {
    uint64_t n;
    zkv_expire_all(db, ns, &n);
  } else if (op < 94) {
    uint64_t n;
    zkv_flush_expired(db, 10, &n);
  } else if (op < 97) {
    /* a nested level, kept or undone */
    if (zkv_begin(db) == ZKV_OK) {
      for (int i = 0; i < 5; i++) random_op(db);
      if (rnd() % 2) zkv_commit(db); else zkv_rollback(db);
    }
  } else {
    zkv_value v;
    zkv_get(db, ns, key, klen, &v);
  }
}

static void fill(zkv_db *db, int n) {
  nns = 0;
  nss[nns++] = ZKV_ROOT;
  CHECK_RC(zkv_namespace(db, ZKV_ROOT, "a", 1, &nss[nns++]), ZKV_OK);
  CHECK_RC(zkv_namespace(db, nss[1], "b", 1, &nss[nns++]), ZKV_OK);
  for (int i = 0; i < n; i++) {
    /* outside a transaction: not compared, it makes the starting state */
    int saved = nns;
    random_op(db);
    nns = saved < nns ? nns : saved;
  }
}

static int rounds(void) { return th_light() ? 30 : 300; }

/* rounds whose undo log spilled out of a shared segment's fixed region into
 * chunks of its free room (format.h) */
static int spills;

static void run_n(zkv_db *db, int ops_per_txn, int nrounds);
static void run(zkv_db *db, int ops_per_txn) { run_n(db, ops_per_txn, rounds()); }

static void run_n(zkv_db *db, int ops_per_txn, int nrounds) {
  int bad = 0;
  for (int round = 0; round < nrounds && !bad; round++) {
    REQUIRE_RC(zkv_begin(db), ZKV_OK);
    snap sn;
    take(db, &sn);
    int saved = nns;
    int n = 1 + (int)(rnd() % (uint64_t)ops_per_txn);
    for (int i = 0; i < n; i++) random_op(db);
    nns = saved;   /* namespaces made in the round are gone with it */
    if (db->s->shared && H(db->s)->log_chunk) spills++;
    CHECK_RC(zkv_rollback(db), ZKV_OK);
    CHECK_EQ(zkv_txn_depth(db), 0);
    const char *what = "";
    long long at = diff_at(db, &sn, &what);
    if (at >= 0) {
      TH_NOTE("round %d (%d ops): %s differs at byte %lld", round, n, what, at);
      bad = 1;
    }
    CHECK(at < 0);
    const char *why;
    CHECK_RC(zkv_verify(db, &why), ZKV_OK);
    free(sn.bytes);
    /* and some committed work between rounds, so each starts elsewhere */
    for (int i = 0; i < 20; i++) random_op(db);
  }
}

TEST(rollback_memory_bytes) {
  zkv_db *db;
  REQUIRE_RC(zkv_open_memory(NULL, &db), ZKV_OK);
  fill(db, 2000);
  run(db, 200);
  zkv_close(db);
}

TEST(rollback_memory_lru_bytes) {
  zkv_options o;
  zkv_options_init(&o);
  o.max_bytes = 256 * 1024;
  o.evict = ZKV_EVICT_LRU;
  zkv_db *db;
  REQUIRE_RC(zkv_open_memory(&o, &db), ZKV_OK);
  fill(db, 3000);
  run(db, 200);
  zkv_close(db);
}

TEST(rollback_shared_bytes) {
  th_shm_dir("rollback");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 1 << 20;
  zkv_db *db;
  REQUIRE_RC(zkv_open_shared("rb", &o, &db), ZKV_OK);
  fill(db, 2000);
  run(db, 60);
  zkv_close(db);
  zkv_unlink("rb", NULL);
}

TEST(rollback_shared_lru_bytes) {
  th_shm_dir("rollback");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 512 * 1024;
  o.evict = ZKV_EVICT_LRU;
  zkv_db *db;
  REQUIRE_RC(zkv_open_shared("rbl", &o, &db), ZKV_OK);
  fill(db, 3000);
  run(db, 60);
  zkv_close(db);
  zkv_unlink("rbl", NULL);
}

/* transactions of up to 1500 operations on a 1 MiB segment, whose fixed
 * undo log (64 KiB) they overflow: the log goes on in chunks of the free
 * room, which the rollback gives back with everything else */
TEST(rollback_shared_spilled_log_bytes) {
  th_shm_dir("rollback");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 1 << 20;
  zkv_db *db;
  REQUIRE_RC(zkv_open_shared("rbs", &o, &db), ZKV_OK);
  fill(db, 1000);
  spills = 0;
  run_n(db, 1500, rounds() / 6);
  TH_NOTE("%d of %d rounds spilled", spills, rounds() / 6);
  CHECK(spills > rounds() / 30);
  zkv_close(db);
  zkv_unlink("rbs", NULL);
}

/* a growth of the hash index inside the transaction */
TEST(rollback_across_index_growth) {
  zkv_db *db;
  REQUIRE_RC(zkv_open_memory(NULL, &db), ZKV_OK);
  nns = 1;
  nss[0] = ZKV_ROOT;
  for (int round = 0; round < 6; round++) {
    REQUIRE_RC(zkv_begin(db), ZKV_OK);
    snap sn;
    take(db, &sn);
    zkv_stats st0, st1;
    zkv_stats_get(db, &st0);
    char key[32];
    zkv_value v = {.type = ZKV_T_STRING, .data = "v", .len = 1};
    for (int i = 0; i < 5000 << round; i++) {
      int n = snprintf(key, sizeof key, "g%d-%d", round, i);
      zkv_set(db, ZKV_ROOT, key, (size_t)n, &v, 0, 0);
    }
    zkv_stats_get(db, &st1);
    CHECK(st1.buckets > st0.buckets);
    CHECK_RC(zkv_rollback(db), ZKV_OK);
    const char *what = "";
    long long at = diff_at(db, &sn, &what);
    if (at >= 0) TH_NOTE("round %d: %s differs at byte %lld", round, what, at);
    CHECK(at < 0);
    free(sn.bytes);
    for (int i = 0; i < 100 * (round + 1); i++) {
      int n = snprintf(key, sizeof key, "c%d-%d", round, i);
      zkv_set(db, ZKV_ROOT, key, (size_t)n, &v, 0, 0);
    }
  }
  zkv_close(db);
}

