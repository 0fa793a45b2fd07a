/*
 * test_keys_cursor.c -- zkv_keys walks that resume after the key they
 * returned last is gone and its block reused.
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp, mount and other calls beyond C11 */
#include "zeltkv.h"
#include "harness.h"

#define K(s) (s), (sizeof(s) - 1)

__attribute__((constructor)) static void shm_dir_setup(void) { th_shm_dir("zkvkeys"); }

struct seen {
  int n;
  char keys[512][16];
};

static int collect(void *ud, const void *key, size_t klen) {
  struct seen *s = ud;
  if (s->n < 512 && klen < 16) {
    memcpy(s->keys[s->n], key, klen);
    s->keys[s->n][klen] = '\0';
  }
  s->n++;
  return 0;
}

static int put(zkv_db *db, zkv_ns ns, const char *key, size_t vlen) {
  static char buf[4096];
  memset(buf, 'v', vlen);
  zkv_value v = {.type = ZKV_T_STRING, .data = buf, .len = vlen};
  return zkv_set(db, ns, key, strlen(key), &v, 0, 0);
}

/* Issue 9.6: 256 keys of 300-byte values in A, one in B, 44 more in A; a walk
 * takes the first 256; k255, k256 and k257 are deleted (k256's block merges
 * into the free block k255 left before it) and a key is set in B (in that
 * room).  The rest of the walk is the 43 keys from k258: before, it followed
 * the stale links of k256's old header (a spurious ZKV_ECORRUPT, keys of B,
 * or keys skipped).  For every size of B's new value, on both drivers. */
static void stale_cursor(int shared, size_t bval) {
  char name[64];
  snprintf(name, sizeof name, "keys-%d", (int)th_dir_pid);
  zkv_options o;
  zkv_options_init(&o);
  o.size = 4u << 20;
  zkv_db *db = NULL;
  if (shared) REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  else REQUIRE_RC(zkv_open_memory(&o, &db), ZKV_OK);
  zkv_ns a, b;
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("A"), &a), ZKV_OK);
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, K("B"), &b), ZKV_OK);
  char k[16];
  for (int i = 1; i <= 256; i++) {
    snprintf(k, sizeof k, "k%d", i);
    REQUIRE_RC(put(db, a, k, 300), ZKV_OK);
  }
  REQUIRE_RC(put(db, b, "b1", 300), ZKV_OK);
  for (int i = 257; i <= 300; i++) {
    snprintf(k, sizeof k, "k%d", i);
    REQUIRE_RC(put(db, a, k, 300), ZKV_OK);
  }
  zkv_cursor cur = ZKV_CURSOR_INIT;
  struct seen s = {0};
  size_t n = 0;
  CHECK_RC(zkv_keys(db, a, &cur, 256, collect, &s, &n), ZKV_OK);
  CHECK_EQ(n, 256);
  CHECK_STR(s.keys[255], "k256");
  CHECK_RC(zkv_del(db, a, K("k255")), ZKV_OK);
  CHECK_RC(zkv_del(db, a, K("k256")), ZKV_OK);
  CHECK_RC(zkv_del(db, a, K("k257")), ZKV_OK);
  CHECK_RC(put(db, b, "b2", bval), ZKV_OK);
  struct seen rest = {0};
  int rc = ZKV_OK, guard = 0;
  while (!cur.done && rc == ZKV_OK && guard++ < 100) rc = zkv_keys(db, a, &cur, 256, collect, &rest, &n);
  CHECK_RC(rc, ZKV_OK);
  CHECK_EQ(rest.n, 43);
  int wrong = 0;
  for (int i = 0; i < rest.n && i < 43; i++) {
    snprintf(k, sizeof k, "k%d", 258 + i);
    wrong += strcmp(rest.keys[i], k) != 0;
  }
  CHECK_EQ(wrong, 0);
  const char *why = NULL;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(db);
  if (shared) CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}

TEST(keys_resume_after_last_key_merged_away) {
  static const size_t sizes[] = {1, 40, 100, 280, 300, 320, 500, 600, 620};
  for (int shared = 0; shared < 2; shared++)
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) stale_cursor(shared, sizes[i]);
}
