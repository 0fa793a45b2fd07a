/*
 * test_txn_stress.c -- random writes inside transactions that commit or roll
 * back, on memory stores and on small shared segments (so that stores fill,
 * fragment, compact and evict), with zkv_verify after every round: the arena,
 * free lists, hash chains and namespace lists must stay consistent, and a
 * rollback must bring back exactly what was there.
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp, syscall and other calls beyond C11 */
#include "zeltkv.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* a tiny deterministic generator, so a failure replays */
static unsigned long long rng_state;
static unsigned rnd(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (unsigned)(rng_state >> 33);
}

/* the live contents of a namespace as one string, to compare before/after */
typedef struct { char *buf; size_t len, cap; } dump_t;
static int dump_key(void *ud, const void *key, size_t klen) {
  dump_t *d = ud;
  if (d->len + klen + 2 > d->cap) {
    d->cap = (d->len + klen + 2) * 2;
    d->buf = realloc(d->buf, d->cap);
  }
  memcpy(d->buf + d->len, key, klen);
  d->len += klen;
  d->buf[d->len++] = ';';
  return 0;
}

static void dump_ns(zkv_db *db, zkv_ns ns, dump_t *d) {
  zkv_cursor cur = ZKV_CURSOR_INIT;
  while (!cur.done) CHECK_RC(zkv_keys(db, ns, &cur, 64, dump_key, d, NULL), ZKV_OK);
}

static void run(const char *what, int shared, uint64_t size, int evict, int rounds) {
  zkv_db *db;
  zkv_options o;
  zkv_options_init(&o);
  o.size = size;
  o.evict = evict;
  o.gc_interval = 0;
  char name[64];
  snprintf(name, sizeof name, "stress-%d", (int)getpid());
  if (shared) {
    zkv_unlink(name, NULL);
    REQUIRE(zkv_open_shared(name, &o, &db) == ZKV_OK);
  } else {
    o.max_bytes = size;
    REQUIRE(zkv_open_memory(&o, &db) == ZKV_OK);
  }
  zkv_ns ns[3];
  CHECK_RC(zkv_namespace(db, ZKV_ROOT, "a", 1, &ns[0]), ZKV_OK);
  CHECK_RC(zkv_namespace(db, ns[0], "b", 1, &ns[1]), ZKV_OK);
  CHECK_RC(zkv_namespace(db, ZKV_ROOT, "c", 1, &ns[2]), ZKV_OK);
  static char val[6000];
  memset(val, 'x', sizeof val);
  int failures = 0;
  for (int round = 0; round < rounds && failures == 0; round++) {
    int txn = rnd() % 3 != 0, rollback = rnd() % 2;
    dump_t before = {0};
    if (txn && rollback)
      for (int i = 0; i < 3; i++) dump_ns(db, ns[i], &before);
    if (txn) CHECK_RC(zkv_begin(db), ZKV_OK);
    int nops = (int)(rnd() % 40);
    for (int i = 0; i < nops; i++) {
      char k[32];
      int n = snprintf(k, sizeof k, "k%u", rnd() % 300);
      zkv_ns s = ns[rnd() % 3];
      val[0] = (char)('a' + rnd() % 26);
      zkv_value v = {.type = ZKV_T_STRING, .data = val,
                     .len = (size_t)(rnd() % 5 == 0 ? rnd() % 5000 : rnd() % 200)};
      int orc = ZKV_OK;
      switch (rnd() % 8) {
      case 0: case 1: case 2: orc = zkv_set(db, s, k, (size_t)n, &v, rnd() % 4 ? 0 : 100000 + rnd() % 50, 0); break;
      case 3: orc = zkv_del(db, s, k, (size_t)n); break;
      case 4: orc = zkv_incr(db, s, k, (size_t)n, 1, 0, NULL); break;
      case 5: orc = zkv_expire(db, s, k, (size_t)n, rnd() % 2 ? 0 : 100000); break;
      case 6: if (rnd() % 20 == 0) orc = zkv_clear(db, s, NULL); break;
      case 7: orc = zkv_set(db, s, k, (size_t)n, &v, 0, ZKV_SET_NX); break;
      }
      /* full (store or undo log) and type errors are expected here; anything
       * else (a damaged-segment error above all) is a bug */
      if (orc != ZKV_OK && orc != ZKV_NOTFOUND && orc != ZKV_EXISTS && orc != ZKV_EFULL &&
          orc != ZKV_ETXN && orc != ZKV_ETYPE) {
        fprintf(stderr, "%s: round %d: op returned %s\n", what, round, zkv_strerror(orc));
        CHECK_RC(orc, ZKV_OK);
        failures++;
        break;
      }
    }
    if (txn) CHECK_RC(rollback ? zkv_rollback(db) : zkv_commit(db), ZKV_OK);
    const char *why = "";
    int rc = zkv_verify(db, &why);
    if (rc != ZKV_OK) {
      fprintf(stderr, "%s: round %d: %s\n", what, round, why);
      failures++;
    }
    CHECK_RC(rc, ZKV_OK);
    if (txn && rollback) {
      dump_t after = {0};
      for (int i = 0; i < 3; i++) dump_ns(db, ns[i], &after);
      int same = before.len == after.len && (before.len == 0 || memcmp(before.buf, after.buf, before.len) == 0);
      if (!same) fprintf(stderr, "%s: round %d: rollback changed the keys\n", what, round);
      CHECK(same);
      if (!same) failures++;
      free(after.buf);
    }
    free(before.buf);
  }
  zkv_close(db);
  if (shared) zkv_unlink(name, NULL);
}

static int rounds(void) { return th_light() ? 300 : 3000; }

TEST(stress_memory) { rng_state = 1; run("memory", 0, 1 << 20, ZKV_EVICT_NONE, rounds()); }
TEST(stress_memory_lru) { rng_state = 2; run("memory lru", 0, 256 << 10, ZKV_EVICT_LRU, rounds()); }
TEST(stress_shared_roomy) { rng_state = 3; run("shared 1m", 1, 1 << 20, ZKV_EVICT_NONE, rounds()); }
TEST(stress_shared_full) { rng_state = 4; run("shared 64k", 1, 64 << 10, ZKV_EVICT_NONE, rounds()); }
TEST(stress_shared_fragmented) { rng_state = 5; run("shared 128k", 1, 128 << 10, ZKV_EVICT_NONE, rounds()); }
TEST(stress_shared_lru) { rng_state = 6; run("shared 128k lru", 1, 128 << 10, ZKV_EVICT_LRU, rounds()); }

/* segments go to a private directory, removed at exit */
__attribute__((constructor)) static void setup_dir(void) { th_shm_dir("zkv-stress"); }
