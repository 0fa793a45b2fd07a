/*
 * test_list.c -- lists (zkv_list_push / zkv_list_pop / zkv_list_len, and a
 * list through zkv_get / zkv_set: include/zeltkv.h), on memory stores and
 * shared segments: every way an entry holding a list ends (pop, delete, set,
 * eviction, expiry, clear) frees its items; rollbacks and failed pushes
 * change nothing; compaction moves the lists' entries around their items;
 * zkv_verify agrees throughout.
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp and other calls beyond C11 */
#include "zeltkv.h"
#include "harness.h"

#define K(s) (s), (sizeof(s) - 1)

__attribute__((constructor)) static void shm_dir_setup(void) { th_shm_dir("zkvlist"); }

static zkv_db *open_shared_size(const char *name, uint64_t size, int evict) {
  zkv_options o;
  zkv_options_init(&o);
  o.size = size;
  o.evict = evict;
  o.gc_interval = 0;
  zkv_unlink(name, NULL);
  zkv_db *db = NULL;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  return db;
}

static zkv_db *open_mem_max(uint64_t max) {
  zkv_options o;
  zkv_options_init(&o);
  o.max_bytes = max;
  o.gc_interval = 0;
  zkv_db *db = NULL;
  CHECK_RC(zkv_open_memory(&o, &db), ZKV_OK);
  return db;
}

static uint64_t used(zkv_db *db) {
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  return st.bytes_used;
}

static void verify(zkv_db *db) {
  const char *why = NULL;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  if (why && strcmp(why, "ok") != 0) TH_NOTE("verify: %s", why);
}

/* push the string text at one end; returns the count */
static uint64_t push(zkv_db *db, zkv_ns ns, const char *key, int left, const char *text) {
  uint64_t count = 0;
  CHECK_RC(zkv_list_push(db, ns, key, strlen(key), left, 's', text, strlen(text), &count), ZKV_OK);
  return count;
}

/* pop one end and check it is "s<want>" */
static void pop_is(zkv_db *db, zkv_ns ns, const char *key, int left, const char *want) {
  zkv_value v;
  CHECK_RC(zkv_list_pop(db, ns, key, strlen(key), left, &v), ZKV_OK);
  CHECK_EQ(v.type, ZKV_T_LIST);
  CHECK(v.len == strlen(want) + 1 && ((const char *)v.data)[0] == 's' &&
        memcmp((const char *)v.data + 1, want, v.len - 1) == 0);
}

static void both(void (*fn)(zkv_db *)) {
  zkv_db *m = open_mem_max(0);
  fn(m);
  verify(m);
  zkv_close(m);
  zkv_db *s = open_shared_size("list-both", 1 << 20, ZKV_EVICT_NONE);
  fn(s);
  verify(s);
  zkv_close(s);
  zkv_unlink("list-both", NULL);
}

static void basics(zkv_db *db) {
  uint64_t base = used(db), n = 9;
  CHECK_EQ(push(db, ZKV_ROOT, "l", 0, "b"), 1);
  CHECK_EQ(push(db, ZKV_ROOT, "l", 1, "a"), 2);
  CHECK_EQ(push(db, ZKV_ROOT, "l", 0, "c"), 3);
  CHECK_RC(zkv_list_len(db, ZKV_ROOT, K("l"), &n), ZKV_OK);
  CHECK_EQ(n, 3);
  zkv_value v;
  CHECK_RC(zkv_get(db, ZKV_ROOT, K("l"), &v), ZKV_OK);   /* the list encoding */
  CHECK_EQ(v.type, ZKV_T_LIST);
  CHECK_MEM(v.data, v.len, "00000003s00000001a00000001s00000001b00000001s00000001c00000001", 62);
  verify(db);
  pop_is(db, ZKV_ROOT, "l", 1, "a");
  pop_is(db, ZKV_ROOT, "l", 0, "c");
  pop_is(db, ZKV_ROOT, "l", 0, "b");            /* the last item takes the key */
  CHECK_RC(zkv_has(db, ZKV_ROOT, K("l")), ZKV_NOTFOUND);
  CHECK_RC(zkv_list_pop(db, ZKV_ROOT, K("l"), 1, &v), ZKV_NOTFOUND);
  CHECK_RC(zkv_list_len(db, ZKV_ROOT, K("l"), &n), ZKV_NOTFOUND);
  CHECK_EQ(n, 0);
  CHECK_EQ(used(db), base);
  /* bad inputs, each changing nothing */
  zkv_value s = {ZKV_T_STRING, 0, "x", 1, 0, 0};
  CHECK_RC(zkv_set(db, ZKV_ROOT, K("str"), &s, 0, 0), ZKV_OK);
  CHECK_RC(zkv_list_push(db, ZKV_ROOT, K("str"), 1, 's', "x", 1, NULL), ZKV_ETYPE);
  CHECK_RC(zkv_list_pop(db, ZKV_ROOT, K("str"), 1, &v), ZKV_ETYPE);
  CHECK_RC(zkv_list_len(db, ZKV_ROOT, K("str"), &n), ZKV_ETYPE);
  CHECK_RC(zkv_list_push(db, ZKV_ROOT, K("l"), 1, 0, "x", 1, NULL), ZKV_EINVAL_VALUE);
  CHECK_RC(zkv_list_push(db, ZKV_ROOT, K("l"), 1, 'x', "1", 1, NULL), ZKV_EINVAL_VALUE);
  CHECK_RC(zkv_list_push(db, ZKV_ROOT, K("l"), 1, 's', NULL, 2, NULL), ZKV_EINVAL_VALUE);
  CHECK_RC(zkv_list_push(db, ZKV_ROOT, "", 0, 1, 's', "x", 1, NULL), ZKV_EINVAL_KEY);
  CHECK_RC(zkv_list_pop(db, ZKV_ROOT, K("l"), 1, NULL), ZKV_EINVAL);
  CHECK_RC(zkv_list_push(NULL, ZKV_ROOT, K("l"), 1, 's', "x", 1, NULL), ZKV_EINVAL);
  /* an empty string is an item */
  CHECK_RC(zkv_list_push(db, ZKV_ROOT, K("e"), 1, 's', "", 0, &n), ZKV_OK);
  CHECK_EQ(n, 1);
  pop_is(db, ZKV_ROOT, "e", 1, "");
  CHECK_RC(zkv_has(db, ZKV_ROOT, K("l")), ZKV_NOTFOUND);
  zkv_del(db, ZKV_ROOT, K("str"));
}
TEST(list_push_pop_len) { both(basics); }

/* every way a list entry ends frees its items */
static void endings(zkv_db *db) {
  zkv_ns ns;
  CHECK_RC(zkv_namespace(db, ZKV_ROOT, K("n"), &ns), ZKV_OK);
  uint64_t base = used(db);
  zkv_value s = {ZKV_T_STRING, 0, "x", 1, 0, 0};
  for (int i = 0; i < 100; i++) push(db, ns, "l", i & 1, "item");
  CHECK_RC(zkv_del(db, ns, K("l")), ZKV_OK);
  CHECK_EQ(used(db), base);
  for (int i = 0; i < 100; i++) push(db, ns, "l", 0, "item");
  CHECK_RC(zkv_set(db, ns, K("l"), &s, 0, 0), ZKV_OK);   /* a set over it */
  CHECK_RC(zkv_del(db, ns, K("l")), ZKV_OK);
  CHECK_EQ(used(db), base);
  for (int i = 0; i < 100; i++) push(db, ns, "l", 0, "item");
  uint64_t removed = 0;
  CHECK_RC(zkv_clear(db, ns, &removed), ZKV_OK);
  CHECK_EQ(removed, 1);
  CHECK_EQ(used(db), base);
  /* expiry: a ttl given to the list (its entry is rebuilt with the field) keeps the items */
  for (int i = 0; i < 100; i++) push(db, ns, "l", 0, "item");
  CHECK_RC(zkv_expire(db, ns, K("l"), 1000), ZKV_OK);
  uint64_t n = 0;
  CHECK_RC(zkv_list_len(db, ns, K("l"), &n), ZKV_OK);
  CHECK_EQ(n, 100);
  verify(db);
  zkv_set_clock_offset(2000);
  CHECK_RC(zkv_list_len(db, ns, K("l"), &n), ZKV_NOTFOUND);
  uint64_t freed = 0;
  CHECK_RC(zkv_flush_expired_ns(db, ns, 0, &freed), ZKV_OK);
  CHECK_EQ(freed, 1);
  CHECK_EQ(used(db), base);
  /* a push on an expired list starts a new one: the old items go */
  for (int i = 0; i < 10; i++) push(db, ns, "l", 0, "old");
  CHECK_RC(zkv_expire(db, ns, K("l"), 500), ZKV_OK);
  zkv_set_clock_offset(3000);
  CHECK_EQ(push(db, ns, "l", 0, "new"), 1);
  pop_is(db, ns, "l", 0, "new");
  CHECK_EQ(used(db), base);
  zkv_set_clock_offset(0);
  /* a list set in its encoding */
  zkv_value enc = {ZKV_T_LIST, 0, "00000002s00000001a00000001s00000001b00000001", 44, 0, 0};
  CHECK_RC(zkv_set(db, ns, K("e"), &enc, 0, 0), ZKV_OK);
  pop_is(db, ns, "e", 0, "b");
  pop_is(db, ns, "e", 0, "a");
  CHECK_EQ(used(db), base);
}
TEST(list_every_end_frees_its_items) { both(endings); }

/* rolled back pushes and pops change nothing, in and out of atomic levels */
static void rollback(zkv_db *db) {
  push(db, ZKV_ROOT, "l", 0, "keep");
  uint64_t base = used(db);
  REQUIRE_EQ(zkv_begin(db), ZKV_OK);
  for (int i = 0; i < 50; i++) push(db, ZKV_ROOT, "l", i & 1, "gone");
  push(db, ZKV_ROOT, "new", 0, "gone");
  pop_is(db, ZKV_ROOT, "l", 0, "gone");
  CHECK_RC(zkv_rollback(db), ZKV_OK);
  uint64_t n = 0;
  CHECK_RC(zkv_list_len(db, ZKV_ROOT, K("l"), &n), ZKV_OK);
  CHECK_EQ(n, 1);
  CHECK_RC(zkv_has(db, ZKV_ROOT, K("new")), ZKV_NOTFOUND);
  CHECK_EQ(used(db), base);
  REQUIRE_EQ(zkv_begin(db), ZKV_OK);
  pop_is(db, ZKV_ROOT, "l", 1, "keep");       /* the key goes with its last item... */
  CHECK_RC(zkv_has(db, ZKV_ROOT, K("l")), ZKV_NOTFOUND);
  CHECK_RC(zkv_rollback(db), ZKV_OK);         /* ...and comes back with it */
  pop_is(db, ZKV_ROOT, "l", 1, "keep");
}
TEST(list_rollback) { both(rollback); }

/* a push with no room fails and changes nothing, even on a new key of a
 * private store (which logs only in transactions); pushes never evict */
TEST(list_push_without_room) {
  zkv_db *m = open_mem_max(256 * 1024);
  zkv_db *s = open_shared_size("list-full", 1 << 20, ZKV_EVICT_LRU);
  zkv_db *dbs[2] = {m, s};
  char big[200];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = 0;
  for (int d = 0; d < 2; d++) {
    zkv_db *db = dbs[d];
    zkv_value v = {ZKV_T_STRING, 0, big, 100, 0, 0};
    char key[32];
    int keys = 0;
    for (; keys < 100000; keys++) {   /* fill with keys (evict none on the memory store) */
      snprintf(key, sizeof key, "k%d", keys);
      unsigned fl = d == 1 ? ZKV_SET_NOEVICT : 0;
      if (zkv_set(db, ZKV_ROOT, key, strlen(key), &v, 0, fl) != ZKV_OK) break;
    }
    CHECK(keys > 100);
    uint64_t base = used(db);
    zkv_stats st0, st1;
    CHECK_RC(zkv_stats_get(db, &st0), ZKV_OK);
    char item[200];
    item[0] = 's';
    memset(item + 1, 'x', sizeof item - 1);
    int rc = ZKV_OK;
    for (int i = 0; i < 100000 && rc == ZKV_OK; i++)
      rc = zkv_list_push(db, ZKV_ROOT, K("newlist"), 0, 's', item + 1, sizeof item - 1, NULL);
    CHECK_RC(rc, ZKV_EFULL);
    /* full: a push on a new key fails and leaves no key */
    CHECK_RC(zkv_list_push(db, ZKV_ROOT, K("other"), 0, 's', item + 1, sizeof item - 1, NULL),
             ZKV_EFULL);
    CHECK_RC(zkv_has(db, ZKV_ROOT, K("other")), ZKV_NOTFOUND);
    CHECK_RC(zkv_stats_get(db, &st1), ZKV_OK);
    CHECK_EQ(st1.evictions, st0.evictions);    /* no key was evicted for it */
    uint64_t n = 0;
    zkv_list_len(db, ZKV_ROOT, K("newlist"), &n);
    /* only the pushes that fitted are there: pop them, and the store is as it was */
    zkv_value out;
    while (n--) CHECK_RC(zkv_list_pop(db, ZKV_ROOT, K("newlist"), 0, &out), ZKV_OK);
    CHECK_EQ(used(db), base);
    verify(db);
  }
  zkv_close(m);
  zkv_close(s);
  zkv_unlink("list-full", NULL);
}

/* a set that evicts (lru) may evict a list: its items are freed too */
TEST(list_evicted_with_its_items) {
  zkv_db *db = open_shared_size("list-evict", 1 << 20, ZKV_EVICT_LRU);
  uint64_t base = used(db);
  for (int i = 0; i < 2000; i++) push(db, ZKV_ROOT, "victim", 0, "a list item of some length");
  uint64_t with = used(db);
  CHECK(with > base + 2000 * 40);
  char val[600];
  memset(val, 'v', sizeof val);
  zkv_value v = {ZKV_T_STRING, 0, val, sizeof val, 0, 0};
  char key[32];
  int forcible = 0;
  for (int i = 0; i < 20000 && zkv_has(db, ZKV_ROOT, K("victim")) == ZKV_OK; i++) {
    snprintf(key, sizeof key, "k%d", i);
    CHECK_RC(zkv_set_ex(db, ZKV_ROOT, key, strlen(key), &v, 0, 0, &forcible), ZKV_OK);
  }
  CHECK_RC(zkv_has(db, ZKV_ROOT, K("victim")), ZKV_NOTFOUND);
  verify(db);
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK(st.evictions > 0);
  zkv_close(db);
  zkv_unlink("list-evict", NULL);
}

/* compaction (a large value into a broken-up heap) moves list entries, their
 * items and the garbage chain's items; the lists read the same after */
TEST(list_survives_compaction) {
  zkv_db *db = open_shared_size("list-compact", 1 << 20, ZKV_EVICT_NONE);
  char val[100];
  memset(val, 'v', sizeof val);
  zkv_value v = {ZKV_T_STRING, 0, val, sizeof val, 0, 0};
  char key[32], text[32];
  int keys = 0;
  for (; keys < 100000; keys++) {
    snprintf(key, sizeof key, "k%d", keys);
    if (zkv_set(db, ZKV_ROOT, key, strlen(key), &v, 0, 0) != ZKV_OK) break;
    if (keys % 10 == 0) {
      snprintf(text, sizeof text, "%d", keys);
      char lk[32];
      snprintf(lk, sizeof lk, "l%d", keys % 50);
      uint64_t c = 0;
      char item[40];
      item[0] = 's';
      size_t n = strlen(text);
      memcpy(item + 1, text, n);
      if (zkv_list_push(db, ZKV_ROOT, lk, strlen(lk), 0, 's', item + 1, n, &c) != ZKV_OK) break;
    }
  }
  CHECK(keys > 1000);
  for (int i = 0; i < keys; i += 2) {   /* every other key: holes everywhere */
    snprintf(key, sizeof key, "k%d", i);
    zkv_del(db, ZKV_ROOT, key, strlen(key));
  }
  /* half the lists go: their items wait in the garbage chain, and compaction
   * may move them there too */
  for (int i = 25; i < 50; i++) {
    char lk[32];
    snprintf(lk, sizeof lk, "l%d", i);
    zkv_del(db, ZKV_ROOT, lk, strlen(lk));
  }
  verify(db);
  zkv_value before[50];
  char *saved[50];
  for (int i = 0; i < 50; i++) {
    char lk[32];
    snprintf(lk, sizeof lk, "l%d", i);
    saved[i] = NULL;
    if (zkv_get(db, ZKV_ROOT, lk, strlen(lk), &before[i]) == ZKV_OK) {
      saved[i] = malloc(before[i].len);
      memcpy(saved[i], before[i].data, before[i].len);
    }
  }
  /* a value larger than any hole: only compaction can place it */
  static char large[8000];
  memset(large, 'L', sizeof large);
  zkv_value lv = {ZKV_T_STRING, 0, large, sizeof large, 0, 0};
  zkv_stats st0, st1;
  CHECK_RC(zkv_stats_get(db, &st0), ZKV_OK);
  CHECK_RC(zkv_set(db, ZKV_ROOT, K("large"), &lv, 0, 0), ZKV_OK);
  CHECK_RC(zkv_stats_get(db, &st1), ZKV_OK);
  CHECK_EQ(st1.keys, st0.keys + 1);   /* nothing was evicted: the room came from moving */
  verify(db);
  for (int i = 0; i < 50; i++) {
    char lk[32];
    snprintf(lk, sizeof lk, "l%d", i);
    zkv_value now;
    if (!saved[i]) continue;
    CHECK_RC(zkv_get(db, ZKV_ROOT, lk, strlen(lk), &now), ZKV_OK);
    CHECK_MEM(now.data, now.len, saved[i], before[i].len);
    free(saved[i]);
  }
  zkv_close(db);
  zkv_unlink("list-compact", NULL);
}

/* a set over a list that fails for room leaves the list whole: on a private
 * store outside a transaction nothing is undone, so nothing may change first */
TEST(list_overwritten_without_room) {
  zkv_db *m = open_mem_max(64 * 1024);
  zkv_db *s = open_shared_size("list-over", 1 << 20, ZKV_EVICT_NONE);
  zkv_db *dbs[2] = {m, s};
  static char big[2 << 20];
  memset(big, 'b', sizeof big);
  for (int d = 0; d < 2; d++) {
    zkv_db *db = dbs[d];
    for (int i = 0; i < 100; i++) push(db, ZKV_ROOT, "l", 0, "item");
    /* within the capacity (no early refusal), beyond the free room */
    zkv_stats st;
    CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
    zkv_value v = {ZKV_T_STRING, 0, big, (size_t)st.free_bytes + 1024, 0, 0};
    CHECK(v.len < st.capacity && v.len <= sizeof big);
    CHECK_RC(zkv_set(db, ZKV_ROOT, K("l"), &v, 0, 0), ZKV_EFULL);
    uint64_t n = 0;
    CHECK_RC(zkv_list_len(db, ZKV_ROOT, K("l"), &n), ZKV_OK);
    CHECK_EQ(n, 100);
    verify(db);
    for (int i = 0; i < 100; i++) pop_is(db, ZKV_ROOT, "l", 1, "item");
    verify(db);
  }
  zkv_close(m);
  zkv_close(s);
  zkv_unlink("list-over", NULL);
}
