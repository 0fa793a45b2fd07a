/*
 * test_bigtxn.c -- a transaction is as big as the store's free room, not as a
 * fixed undo log (issue 9.4).
 *
 * A shared segment's undo log starts in a fixed region (1/16 of the segment)
 * and goes on in chunks taken from the free room (format.h, txn.c); a memory
 * store's log is the process heap.  On both drivers: a transaction that
 * writes most of the free room in thousands of keys succeeds, and a rollback
 * gives back exactly what was there; one that needs more than the free room
 * fails with ZKV_EFULL, its failed write changing nothing; a write inside a
 * transaction that must compact a fragmented segment, or evict thousands of
 * small keys, succeeds.  The chunks are read through the engine's private
 * header (src/internal.h), to check that the log did spill.
 */
#define _GNU_SOURCE 1 /* first: internal.h wants it */
#include "internal.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K(s) (s), (sizeof(s) - 1)

__attribute__((constructor)) static void dir_setup(void) { th_shm_dir("engine-bigtxn"); }

static zkv_db *open_store(int shared, const char *tag, uint64_t size, int evict) {
  if (shared) return th_open_unlinked(tag, size, evict);
  zkv_options o;
  zkv_options_init(&o);
  o.size = size;
  o.max_bytes = size;
  o.evict = evict;
  o.gc_interval = 0;
  zkv_db *db = NULL;
  if (zkv_open_memory(&o, &db) != ZKV_OK) return NULL;
  return db;
}

static uint64_t free_bytes(zkv_db *db) {
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  return st.free_bytes;
}

/* ---- the contents of a namespace as one string (keys in order, values
 * hashed), to compare before and after ---- */
typedef struct { char *buf; size_t len, cap; } sbuf;
static void sb_add(sbuf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->buf = realloc(b->buf, b->cap);
  }
  memcpy(b->buf + b->len, p, n);
  b->len += n;
}
static int add_key(void *ud, const void *key, size_t klen) {
  sbuf *b = ud;
  sb_add(b, key, klen);
  sb_add(b, "\n", 1);
  return 0;
}
static uint64_t fnv(const void *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
  return h;
}
static void contents(zkv_db *db, zkv_ns ns, sbuf *out) {
  sbuf keys = {0};
  zkv_cursor cur = ZKV_CURSOR_INIT;
  while (!cur.done) CHECK_RC(zkv_keys(db, ns, &cur, 256, add_key, &keys, NULL), ZKV_OK);
  for (size_t i = 0; i < keys.len;) {
    char *nl = memchr(keys.buf + i, '\n', keys.len - i);
    size_t kl = (size_t)(nl - (keys.buf + i));
    zkv_value v;
    char line[64];
    int rc = zkv_get(db, ns, keys.buf + i, kl, &v);
    int n = snprintf(line, sizeof line, "=%d:%zu:%llx;", rc, rc ? 0 : v.len,
                     rc ? 0ull : (unsigned long long)fnv(v.data, v.len));
    sb_add(out, keys.buf + i, kl);
    sb_add(out, line, (size_t)n);
    i += kl + 1;
  }
  free(keys.buf);
}
static char *snapshot(zkv_db *db, zkv_ns other, size_t *len) {
  sbuf b = {0};
  contents(db, ZKV_ROOT, &b);
  sb_add(&b, "|", 1);
  contents(db, other, &b);
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  char line[96];
  int n = snprintf(line, sizeof line, "|keys %llu used %llu", (unsigned long long)st.keys,
                   (unsigned long long)st.bytes_used);
  sb_add(&b, line, (size_t)n);
  *len = b.len;
  return b.buf;
}
static int same(const char *a, size_t al, const char *b, size_t bl) {
  return al == bl && memcmp(a, b, al) == 0;
}

/* roll back, and the store is as its snapshot s0 says */
static void rollback_is(zkv_db *db, zkv_ns other, const char *s0, size_t l0) {
  CHECK_RC(zkv_rollback(db), ZKV_OK);
  size_t l1;
  char *s1 = snapshot(db, other, &l1);
  CHECK(same(s0, l0, s1, l1));
  free(s1);
}

static int set_len(zkv_db *db, zkv_ns ns, const char *key, size_t len, char fill) {
  static char val[1 << 20];
  memset(val, fill, len);
  zkv_value v = {.type = ZKV_T_STRING, .data = val, .len = len};
  return zkv_set(db, ns, key, strlen(key), &v, 0, 0);
}

/* the header's chunk refs (0 on a memory store) */
static int spilled(zkv_db *db) { return db->s->shared && H(db->s)->log_chunk != 0; }

#define VLEN 1000

/* Writes of VLEN bytes in a transaction until `target` bytes of the free room
 * are taken (or one fails): returns the keys written; *rc the first failure. */
static int fill_txn(zkv_db *db, zkv_ns ns, uint64_t target, int *rc, int *saw_spill) {
  uint64_t f0 = free_bytes(db);
  int n = 0;
  *rc = ZKV_OK;
  for (;;) {
    if (target && f0 - free_bytes(db) >= target) break;
    char k[32];
    snprintf(k, sizeof k, "t%d", n);
    int r = set_len(db, n % 3 ? ZKV_ROOT : ns, k, VLEN - (size_t)(n % 7) * 50, (char)('a' + n % 26));
    if (r != ZKV_OK) {
      *rc = r;
      break;
    }
    if (spilled(db)) *saw_spill = 1;
    n++;
  }
  return n;
}

/* the store before: keys to overwrite, delete and clear inside the transaction */
static zkv_ns prefill(zkv_db *db) {
  zkv_ns other;
  CHECK_RC(zkv_namespace(db, ZKV_ROOT, K("other"), &other), ZKV_OK);
  for (int i = 0; i < 400; i++) {
    char k[32];
    snprintf(k, sizeof k, "p%d", i);
    CHECK_RC(set_len(db, i % 2 ? ZKV_ROOT : other, k, 20 + (size_t)i % 300, 'p'), ZKV_OK);
  }
  return other;
}

static void big_txn(int shared) {
  /* (ZKV_TEST_LIGHT, valgrind and qemu: 8 MiB, whose fixed log is 512 KiB) */
  zkv_db *db = open_store(shared, "big", (th_light() ? 8u : 16u) << 20, ZKV_EVICT_NONE);
  REQUIRE(db != NULL);
  zkv_ns other = prefill(db);
  size_t l0;
  char *s0 = snapshot(db, other, &l0);
  uint64_t target = free_bytes(db) * 7 / 10;
  for (int round = 0; round < 2; round++) {
    CHECK_RC(zkv_begin(db), ZKV_OK);
    /* what was there changes too: overwrites (other sizes), deletes, a clear */
    for (int i = 0; i < 400; i += 3) {
      char k[32];
      snprintf(k, sizeof k, "p%d", i);
      CHECK_RC(set_len(db, i % 2 ? ZKV_ROOT : other, k, 500 + (size_t)i, 'q'), ZKV_OK);
    }
    for (int i = 1; i < 400; i += 3) {
      char k[32];
      snprintf(k, sizeof k, "p%d", i);
      CHECK_RC(zkv_del(db, i % 2 ? ZKV_ROOT : other, k, strlen(k)), ZKV_OK);
    }
    int rc, spill = 0;
    int n = fill_txn(db, other, target, &rc, &spill);
    CHECK_RC(rc, ZKV_OK);
    CHECK(n > (th_light() ? 4000 : 8000));   /* thousands of keys, 70% of the free room */
    CHECK_RC(zkv_clear(db, other, NULL), ZKV_OK);
    if (shared) CHECK(spill);   /* the fixed log (1 MiB here, or 512 KiB) was not enough */
    if (shared && round == 0) printf("  %d keys: %llu bytes of undo log\n", n, (unsigned long long)H(db->s)->log_used);
    if (round == 0) {
      rollback_is(db, other, s0, l0);   /* exactly as before */
      CHECK(!spilled(db));
      if (shared) CHECK_EQ(H(db->s)->log_spare, 0);
    } else {
      CHECK_RC(zkv_commit(db), ZKV_OK);
      uint64_t c = 0;
      CHECK_RC(zkv_count(db, ZKV_ROOT, &c), ZKV_OK);
      CHECK(c >= (uint64_t)n * 2 / 3);
      CHECK_RC(zkv_count(db, other, &c), ZKV_OK);
      CHECK_EQ(c, 0);
      CHECK(!spilled(db));
      if (shared) CHECK_EQ(H(db->s)->log_spare, 0);
    }
    const char *why = "";
    CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  }
  free(s0);
  zkv_close(db);
}

TEST(txn_of_most_of_the_free_room_shared) { big_txn(1); }
TEST(txn_of_most_of_the_free_room_memory) { big_txn(0); }

/* A transaction that needs more than the free room: the write that does not
 * fit fails with ZKV_EFULL and changes nothing; the transaction goes on (a
 * smaller write fits in what is left), and a rollback restores the store. */
static void too_big_txn(int shared) {
  zkv_db *db = open_store(shared, "toobig", 4u << 20, ZKV_EVICT_NONE);
  REQUIRE(db != NULL);
  zkv_ns other = prefill(db);
  size_t l0;
  char *s0 = snapshot(db, other, &l0);
  uint64_t f0 = free_bytes(db);
  CHECK_RC(zkv_begin(db), ZKV_OK);
  int rc, spill = 0;
  int n = fill_txn(db, other, 0, &rc, &spill);
  CHECK_RC(rc, ZKV_EFULL);
  if (shared) CHECK(spill);
  /* the undo log took some of the room, not most of it */
  CHECK((uint64_t)n * VLEN > f0 * 3 / 4);
  char k[32];
  snprintf(k, sizeof k, "t%d", n);
  CHECK_RC(zkv_has(db, n % 3 ? ZKV_ROOT : other, k, strlen(k)), ZKV_NOTFOUND);
  CHECK_EQ(zkv_txn_depth(db), 1);
  CHECK_RC(set_len(db, ZKV_ROOT, "small", 10, 's'), ZKV_OK);
  rollback_is(db, other, s0, l0);
  free(s0);
  CHECK_EQ(free_bytes(db), f0);
  const char *why = "";
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(db);
}

TEST(txn_beyond_the_free_room_fails_cleanly_shared) { too_big_txn(1); }
TEST(txn_beyond_the_free_room_fails_cleanly_memory) { too_big_txn(0); }

/* A write inside a transaction that needs the free room of a fragmented
 * segment compacted (thousands of small keys moved), or thousands of small
 * keys evicted: it succeeds, and a rollback restores everything.  The free
 * room is in holes of HOLE bytes between runs of small keys: the undo log
 * grows into holes (a chunk is some KiB at least), the write into the room
 * the compaction gathers. */
#define HOLE 8000
static void big_value_in_txn(int evict) {
  zkv_db *db = open_store(1, evict ? "evict" : "compact", (evict ? 8u : 4u) << 20, evict);
  REQUIRE(db != NULL);
  zkv_ns other;
  CHECK_RC(zkv_namespace(db, ZKV_ROOT, K("other"), &other), ZKV_OK);
  int n = 0, holes = 0;
  if (evict) {   /* the oldest: small keys, a third of the segment */
    for (; n % 64 || free_bytes(db) > (11u << 20) / 2; n++) {   /* (stats every 64 sets) */
      char k[32];
      snprintf(k, sizeof k, "s%d", n);
      CHECK_RC(set_len(db, ZKV_ROOT, k, 40, 's'), ZKV_OK);
    }
  }
  for (int i = 0;; i++) {   /* runs of small keys between the holes to be */
    char k[32];
    snprintf(k, sizeof k, "h%d", i);
    size_t len = evict || i % 41 == 40 ? HOLE : 200;
    if ((i % 16 == 0 && free_bytes(db) < 16 * (HOLE + 256)) ||
        set_len(db, ZKV_ROOT, k, len, 'h') != ZKV_OK)
      break;
    if (len == HOLE) holes++;
  }
  CHECK(holes > 100);
  for (int i = 0, h = 0; h < holes; i++) {   /* the holes (every other one, with lru) */
    char k[32];
    snprintf(k, sizeof k, "h%d", i);
    if (!(evict || i % 41 == 40)) continue;
    if (h++ % 2 == 0 || !evict) CHECK_RC(zkv_del(db, ZKV_ROOT, k, strlen(k)), ZKV_OK);
  }
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  /* lru: a write that fits in the free room, but in no hole, evicts first
   * as many bytes of the least recently used keys (the small ones) */
  size_t big = evict ? 256u << 10 : (size_t)st.free_bytes / 4;
  size_t l0;
  char *s0 = snapshot(db, other, &l0);
  for (int round = 0; round < 2; round++) {
    CHECK_RC(zkv_begin(db), ZKV_OK);
    CHECK_RC(set_len(db, other, "big", big, 'B'), ZKV_OK);
    zkv_value v;
    CHECK_RC(zkv_get(db, other, K("big"), &v), ZKV_OK);
    CHECK_EQ(v.len, big);
    CHECK(spilled(db));
    zkv_stats st2;
    CHECK_RC(zkv_stats_get(db, &st2), ZKV_OK);
    printf("  a %zu-byte value with %llu bytes free in %d holes: %llu bytes of undo log, %llu evictions\n",
           big, (unsigned long long)st.free_bytes, holes, (unsigned long long)H(db->s)->log_used,
           (unsigned long long)(st2.evictions - st.evictions));
    if (evict) CHECK(st2.evictions - st.evictions > 2000);
    if (round == 0) {
      rollback_is(db, other, s0, l0);
    } else {
      CHECK_RC(zkv_commit(db), ZKV_OK);
      CHECK_RC(zkv_get(db, other, K("big"), &v), ZKV_OK);
      CHECK_EQ(v.len, big);
    }
    CHECK(!spilled(db));
    const char *why = "";
    CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  }
  free(s0);
  zkv_close(db);
}

TEST(txn_write_that_compacts_thousands_of_keys) { big_value_in_txn(ZKV_EVICT_NONE); }
TEST(txn_write_that_evicts_thousands_of_small_keys) { big_value_in_txn(ZKV_EVICT_LRU); }

/* 9.4: after a flush, the records of the empty namespaces opened over time
 * are freed for a write that needs their room, inside a transaction too:
 * a 1 MiB segment takes a 100 KB value in one, and a rollback brings the
 * namespaces back. */
TEST(txn_write_after_flush_frees_empty_namespaces) {
  zkv_db *db = open_store(1, "nsrec", 1u << 20, ZKV_EVICT_NONE);
  REQUIRE(db != NULL);
  zkv_ns first = 0;
  for (int i = 0; i < 300; i++) {
    char name[16], k[16];
    snprintf(name, sizeof name, "ns%d", i);
    snprintf(k, sizeof k, "k%d", i);
    zkv_ns ns;
    REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, name, strlen(name), &ns), ZKV_OK);
    if (!first) first = ns;
    CHECK_RC(set_len(db, ns, k, 3000, 'n'), ZKV_OK);
  }
  CHECK_RC(zkv_flush(db, NULL), ZKV_OK);
  zkv_stats st0;
  CHECK_RC(zkv_stats_get(db, &st0), ZKV_OK);
  for (int round = 0; round < 2; round++) {
    CHECK_RC(zkv_begin(db), ZKV_OK);
    CHECK_RC(set_len(db, ZKV_ROOT, "big", 100000, 'B'), ZKV_OK);
    if (round == 0) {
      CHECK_RC(zkv_rollback(db), ZKV_OK);
      zkv_stats st;
      CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
      CHECK_EQ(st.namespaces, st0.namespaces);
      CHECK_EQ(st.bytes_used, st0.bytes_used);
      uint64_t c = 1;
      CHECK_RC(zkv_count(db, first, &c), ZKV_OK);   /* its id is good again */
      CHECK_EQ(c, 0);
    } else {
      CHECK_RC(zkv_commit(db), ZKV_OK);
      zkv_value v;
      CHECK_RC(zkv_get(db, ZKV_ROOT, K("big"), &v), ZKV_OK);
      CHECK_EQ(v.len, 100000);
    }
    const char *why = "";
    CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  }
  zkv_close(db);
}

/* 9.4: room a transaction allocated and freed again is free room again for
 * it (a rollback frees those blocks anyway): a 1 MiB segment takes 1,000
 * sets of one key with a value of an eighth of its free room in one
 * transaction, and 500 sets and deletes of a temporary key of that size;
 * the undo log (some 230 bytes a write) is the only room that grows.
 * Before, each block freed stayed out of use until the commit (a reuse
 * logged it whole): the fifth set failed, ZKV_EFULL.  Then the rollback: as before, byte for
 * byte of the keys, with a nested savepoint inside (a block the outer
 * level allocated and the inner one freed and took again is brought back). */
static void set_again_case(int shared) {
  zkv_db *db = open_store(shared, "again", 1u << 20, ZKV_EVICT_NONE);
  REQUIRE(db != NULL);
  zkv_ns other = prefill(db);
  size_t l0;
  char *s0 = snapshot(db, other, &l0);
  size_t big = (size_t)free_bytes(db) / 8;
  for (int round = 0; round < 2; round++) {
    CHECK_RC(zkv_begin(db), ZKV_OK);
    int i, rc = ZKV_OK;
    for (i = 0; i < 1000 && rc == ZKV_OK; i++) rc = set_len(db, ZKV_ROOT, "k", big, (char)('a' + i % 26));
    CHECK_RC(rc, ZKV_OK);
    CHECK_EQ(i, 1000);
    for (i = 0; i < 500 && rc == ZKV_OK; i++) {
      rc = set_len(db, other, "tmp", big, 't');
      if (rc == ZKV_OK) rc = zkv_del(db, other, K("tmp"));
    }
    CHECK_RC(rc, ZKV_OK);
    CHECK_EQ(i, 500);
    /* a savepoint: what it frees and takes again of the outer level's is
     * brought back by its rollback */
    CHECK_RC(zkv_begin(db), ZKV_OK);
    CHECK_RC(zkv_del(db, ZKV_ROOT, K("k")), ZKV_OK);
    CHECK_RC(set_len(db, other, "inner", big, 'i'), ZKV_OK);
    CHECK_RC(zkv_rollback(db), ZKV_OK);
    zkv_value v;
    CHECK_RC(zkv_get(db, ZKV_ROOT, K("k"), &v), ZKV_OK);
    CHECK(v.len == big && ((const char *)v.data)[0] == 'a' + 999 % 26 &&
          ((const char *)v.data)[big - 1] == 'a' + 999 % 26);
    CHECK_RC(zkv_has(db, other, K("inner")), ZKV_NOTFOUND);
    if (round == 0) {
      rollback_is(db, other, s0, l0);
    } else {
      CHECK_RC(zkv_commit(db), ZKV_OK);
      CHECK_RC(zkv_get(db, ZKV_ROOT, K("k"), &v), ZKV_OK);
      CHECK_EQ(v.len, big);
    }
    const char *why = "";
    CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  }
  free(s0);
  zkv_close(db);
}

TEST(txn_sets_one_key_again_and_again_shared) { set_again_case(1); }
TEST(txn_sets_one_key_again_and_again_memory) { set_again_case(0); }

/* 9.4: the undo log of a transaction grows into free room in pieces: a
 * 256 KiB segment full of 300-byte values, every other one deleted (the
 * free room in 344-byte blocks, none of 1 KiB), then a transaction
 * overwrites the others with small values until one fails.  The log's
 * chunks must have taken most of the room that was free at begin (before,
 * a chunk was 1 KiB at least: none, and the log stopped at the fixed
 * region, 83 of the 306 writes).  A rollback restores the store. */
TEST(txn_log_grows_into_small_pieces) {
  zkv_db *db = open_store(1, "pieces", 256u << 10, ZKV_EVICT_NONE);
  REQUIRE(db != NULL);
  int n = 0;
  for (;; n++) {
    char k[16];
    snprintf(k, sizeof k, "s%d", n);
    if (set_len(db, ZKV_ROOT, k, 300, 's') != ZKV_OK) break;
  }
  for (int i = 0; i < n; i += 2) {
    char k[16];
    snprintf(k, sizeof k, "s%d", i);
    CHECK_RC(zkv_del(db, ZKV_ROOT, k, strlen(k)), ZKV_OK);
  }
  size_t l0;
  char *s0 = snapshot(db, ZKV_ROOT, &l0);
  uint64_t f0 = free_bytes(db);
  CHECK_RC(zkv_begin(db), ZKV_OK);
  int i, rc = ZKV_OK;
  for (i = 1; i < n && rc == ZKV_OK; i += 2) {
    char k[16];
    snprintf(k, sizeof k, "s%d", i);
    rc = set_len(db, ZKV_ROOT, k, 20, 't');
  }
  hdr *h = H(db->s);
  uint64_t chunks = 0, nchunks = 0;
  for (ref_t c = h->log_chunk; c; c = log_chunk_at(db->s, c)->prev, nchunks++)
    chunks += (uint64_t)BLK_UNITS(log_chunk_at(db->s, c)->blk) * UNIT;
  for (ref_t c = h->log_ahead; c; c = log_chunk_at(db->s, c)->next, nchunks++)
    chunks += (uint64_t)BLK_UNITS(log_chunk_at(db->s, c)->blk) * UNIT;
  printf("  %d of %d overwrites with %llu bytes free in pieces: %llu bytes of log, %llu in %llu chunks\n",
         i / 2, n / 2, (unsigned long long)f0, (unsigned long long)h->log_used,
         (unsigned long long)chunks, (unsigned long long)nchunks);
  CHECK(chunks > f0 * 3 / 4);
  rollback_is(db, ZKV_ROOT, s0, l0);
  free(s0);
  CHECK_EQ(free_bytes(db), f0);
  const char *why = "";
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(db);
}
