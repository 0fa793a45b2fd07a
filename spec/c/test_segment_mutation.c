/*
 * test_segment_mutation.c -- damaged segments are refused or worked on with
 * error codes, and never crash a process (a deterministic companion of the
 * libFuzzer target spec/fuzz/fuzz_segment.c, using the same images and the
 * same mutation format: spec/c/segment_image.h).
 *
 * Every mutation runs in a fork()ed child (with an alarm), so a crash or a
 * hang fails a check and prints the mutation as hex; to replay one:
 *     echo HEX | xxd -r -p > /tmp/in && build/fuzz/fuzz_segment /tmp/in
 *
 * ZKV_MUTATIONS sets the number of random mutations (default 3000, 200 when
 * ZKV_TEST_LIGHT is set); ZKV_MUTATION_SEED the seed (default 1).
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp, syscall and other calls beyond C11 */
#include <dirent.h>

#include "zeltkv.h"
#include "harness.h"
#include "segment_image.h"

static unsigned char *g_img[2];
static size_t g_len[2];


__attribute__((constructor)) static void dir_setup(void) { th_shm_dir("zkvmut"); }

static int light(void) {
  const char *l = getenv("ZKV_TEST_LIGHT");
  return l != NULL && *l != '\0' && strcmp(l, "0") != 0;
}

static long env_long(const char *name, long dflt) {
  const char *v = getenv(name);
  return v != NULL && *v != '\0' ? atol(v) : dflt;
}

static int images(void) {
  for (int i = 0; i < 2; i++) {
    if (g_img[i] == NULL && zseg_build(i, &g_img[i], &g_len[i]) != 0) return 0;
  }
  return 1;
}

static uint64_t xs(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void hex(const uint8_t *in, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 3 < cap; i++) o += (size_t)snprintf(out + o, cap - o, "%02x", in[i]);
  out[o] = '\0';
}

static int g_reported;

/* run one mutation in a child; returns 0 if the child finished cleanly.
 * `open_rc` (if not NULL) gets the result of zkv_open_shared. */
static int run_one(const uint8_t *in, size_t n, int *open_rc) {
  int pfd[2];
  if (pipe(pfd) != 0) return -1;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    /* valgrind (ZKV_TEST_LIGHT) on a loaded machine is 20-50x slower: a longer alarm */
    alarm(getenv("ZKV_TEST_LIGHT") ? 120 : 10);
    int which = n > 0 ? (in[0] & 1) : 0;
    unsigned char *b;
    size_t len;
    zseg_apply(g_img[which], g_len[which], in, n, &b, &len);
    char name[64], path[4200];
    snprintf(name, sizeof name, "m%d", (int)getpid());
    zseg_path(path, sizeof path, name);
    int orc = -999;
    int wild = 0;
    if (zseg_write_file(path, b, len) == 0) wild = zseg_exercise(name, &orc);
    unlink(path);
    free(b);
    if (write(pfd[1], &orc, sizeof orc) != (ssize_t)sizeof orc) _exit(5);
    _exit(wild ? 6 : 0);
  }
  close(pfd[1]);
  int orc = -999;
  if (read(pfd[0], &orc, sizeof orc) != (ssize_t)sizeof orc) orc = -999;
  close(pfd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (open_rc) *open_rc = orc;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  /* a leftover file of a dead child */
  char name[64];
  snprintf(name, sizeof name, "m%d", (int)pid);
  zkv_unlink(name, NULL);
  if (g_reported++ < 12) {
    char h[1200];
    hex(in, n, h, sizeof h);
    if (WIFSIGNALED(st))
      TH_NOTE("mutation %s: child died of signal %d (%s)%s", h, WTERMSIG(st),
              strsignal(WTERMSIG(st)), WTERMSIG(st) == SIGALRM ? " -- a hang" : "");
    else
      TH_NOTE("mutation %s: child exited with status %d (6: a result code outside the API; "
              "1: sanitizer/valgrind report)", h, WEXITSTATUS(st));
  }
  return 1;
}

/* the fields of the header, rewritten one at a time with telling values */
TEST(mutation_header_fields) {
  REQUIRE(images());
  uint32_t hdr_bytes;
  memcpy(&hdr_bytes, g_img[0] + 12, 4);
  REQUIRE(hdr_bytes >= 64 && hdr_bytes < 8192);
  const uint64_t size = g_len[0];
  const uint64_t vals[] = {0, 1, 7, 0xffffffffull, 0xffffffffffffffffull, 0x8000000000000000ull,
                           size, size - 8, size + 8, size / 2, size / 8, 0x7fffffff, 31, 64};
  size_t nv = sizeof vals / sizeof vals[0];
  int fails = 0, runs = 0;
  for (int base = 0; base < 2; base++) {
    for (uint32_t off = 0; off < hdr_bytes; off += 8) {
      for (size_t k = 0; k < nv; k++) {
        if (light() && (k % 16) != (off / 8) % 16) continue;   /* valgrind: ~1 value a field */
        uint8_t in[1 + 3 + 8];
        in[0] = (uint8_t)base;
        in[1] = (uint8_t)(off & 0xff);
        in[2] = (uint8_t)(off >> 8);
        in[3] = 0;
        memcpy(in + 4, &vals[k], 8);
        fails += run_one(in, sizeof in, NULL) != 0;
        runs++;
        if (light()) continue;
        /* the same value in the low half only (u32 fields) */
        uint64_t lo = (vals[k] & 0xffffffffull);
        uint64_t cur;
        memcpy(&cur, g_img[base] + off, 8);
        lo |= cur & 0xffffffff00000000ull;
        memcpy(in + 4, &lo, 8);
        fails += run_one(in, sizeof in, NULL) != 0;
        runs++;
      }
    }
  }
  TH_NOTE("%d header mutations, %d failed", runs, fails);
  CHECK_EQ(fails, 0);
}

/* refused with STORE_OPERATION_FAILED: truncated, another version, not zeltkv */
/* The flush's walk (zkv_expire_all, flag_keys in ops.c) folds its checks of
 * each ref into few compares: a key list damaged in each way they stand for
 * gives ZKV_ECORRUPT, not a crash nor a flag written into what is no entry.
 * fk:05's next ref is pointed past the heap, below it and at a free block;
 * fk:06's block is made too small for the header its flags say it has, and
 * too big for the heap.  The keys lie one after the other in list order, so
 * the walk takes each next ref for the one past the entry before it reads
 * it (flag_keys' runs): fk:05's next ref is also pointed at fk:07, past
 * fk:06 (the walk follows the list: 19 keys flushed, fk:06 not), and back
 * at fk:02 (a loop: ZKV_ECORRUPT once more entries were passed than the heap
 * can hold).  A walk that trusted its guess would flush fk:06 in both. */
static size_t find_bytes(const unsigned char *b, size_t len, const char *pat, size_t n) {
  for (size_t i = 0; i + n <= len; i++)
    if (memcmp(b + i, pat, n) == 0) return i;
  return (size_t)-1;
}

TEST(flush_walk_damaged_links) {
  char name[64], path[4200];
  snprintf(name, sizeof name, "mutflush%d", (int)getpid());
  zseg_path(path, sizeof path, name);
  zkv_options o;
  zkv_options_init(&o);
  o.size = 1u << 20;
  zkv_db *db = NULL;
  zkv_ns ns;
  zkv_unlink(name, NULL);
  REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, "f", 1, &ns), ZKV_OK);
  zkv_value v = {.type = ZKV_T_STRING, .data = "0123456789012345678901234567890", .len = 31};
  for (int i = 0; i < 20; i++) {
    char k[16];
    snprintf(k, sizeof k, "fk:%02d", i);
    REQUIRE_RC(zkv_set(db, ns, k, 5, &v, 0, 0), ZKV_OK);
  }
  static char big[1000];
  memset(big, 'B', sizeof big);
  zkv_value bv = {.type = ZKV_T_STRING, .data = big, .len = sizeof big};
  REQUIRE_RC(zkv_set(db, ZKV_ROOT, "big", 3, &bv, 0, 0), ZKV_OK);
  REQUIRE_RC(zkv_set(db, ZKV_ROOT, "after", 5, &v, 0, 0), ZKV_OK);   /* big is not the last */
  REQUIRE_RC(zkv_del(db, ZKV_ROOT, "big", 3), ZKV_OK);   /* over DEAD_MAX_BYTES: freed at once */
  zkv_close(db);
  unsigned char *img = NULL;
  size_t len = 0;
  REQUIRE(zseg_read_file(path, &img, &len) == 0);
  /* an entry without ttl or user flags: its key right after the 30-byte header */
  size_t e5 = find_bytes(img, len, "fk:05", 5) - 30, e6 = find_bytes(img, len, "fk:06", 5) - 30;
  size_t e2 = find_bytes(img, len, "fk:02", 5) - 30, e7 = find_bytes(img, len, "fk:07", 5) - 30;
  size_t fb = find_bytes(img, len, big, 64);
  REQUIRE(e5 < len && e6 < len && e2 < len && e7 < len && fb < len);
  fb -= 30 + 3;   /* the freed block's start, where "big"'s header was */
  uint32_t blk;
  memcpy(&blk, img + fb, 4);
  REQUIRE((blk & 1) != 0);   /* BLK_FREE */
  REQUIRE(img[e5 + 24] == 5 && img[e6 + 24] == 5);   /* klen: the entries found */
  uint32_t blk6;
  memcpy(&blk6, img + e6, 4);
  for (int c = 0; c < 7; c++) {
    unsigned char *b = malloc(len);
    REQUIRE(b != NULL);
    memcpy(b, img, len);
    uint32_t x;
    switch (c) {
    case 0: x = 0xfffffff0u; memcpy(b + e5 + 12, &x, 4); break;              /* past the heap */
    case 1: x = 1; memcpy(b + e5 + 12, &x, 4); break;                        /* below it */
    case 2: x = (uint32_t)(fb / 8); memcpy(b + e5 + 12, &x, 4); break;       /* a free block */
    case 3:   /* 32 bytes, flags saying ttl and user flags: a header of 42 */
      x = (4u << 2) | (blk6 & 2u);
      memcpy(b + e6, &x, 4);
      b[e6 + 29] |= 3;
      break;
    case 4: x = (0x3fffffffu << 2) | (blk6 & 2u); memcpy(b + e6, &x, 4); break;   /* past top */
    case 5: x = (uint32_t)(e7 / 8); memcpy(b + e5 + 12, &x, 4); break;         /* past fk:06 */
    default: x = (uint32_t)(e2 / 8); memcpy(b + e5 + 12, &x, 4); break;        /* a loop */
    }
    REQUIRE(zseg_write_file(path, b, len) == 0);
    free(b);
    REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
    REQUIRE_RC(zkv_namespace(db, ZKV_ROOT, "f", 1, &ns), ZKV_OK);
    uint64_t n = 0;
    TH_NOTE("damage %d", c);
    if (c == 5) {
      CHECK_RC(zkv_expire_all(db, ns, &n), ZKV_OK);
      CHECK_EQ(n, 19);
      zkv_value out;
      CHECK_RC(zkv_get(db, ns, "fk:06", 5, &out), ZKV_OK);   /* not on the list's way */
      CHECK_RC(zkv_get(db, ns, "fk:07", 5, &out), ZKV_NOTFOUND);
    } else {
      CHECK_RC(zkv_expire_all(db, ns, &n), ZKV_ECORRUPT);
    }
    zkv_close(db);
  }
  free(img);
  zkv_unlink(name, NULL);
}

TEST(mutation_refused_at_open) {
  REQUIRE(images());
  uint32_t hdr_bytes;
  memcpy(&hdr_bytes, g_img[0] + 12, 4);
  const size_t cuts[] = {0, 1, 8, 12, (size_t)hdr_bytes - 1, hdr_bytes, 4096, 32768,
                         g_len[0] - 4096, g_len[0] - 8, g_len[0] - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    for (int base = 0; base < 2; base++) {
      uint8_t in[3] = {(uint8_t)(2 | base), (uint8_t)(cuts[i] & 0xff), (uint8_t)(cuts[i] >> 8)};
      int orc = 0;
      CHECK_EQ(run_one(in, sizeof in, &orc), 0);
      CHECK_RC(orc, ZKV_ECORRUPT);
      CHECK_EQ(zkv_errclass(orc), ZKV_CLASS_STORE_OPERATION_FAILED);
    }
  }
  /* longer than its header says (a growth that died after extending the
   * file, before the header said so): opens, at the size its header says */
  {
    uint8_t in[1] = {4};
    int orc = 0;
    CHECK_EQ(run_one(in, sizeof in, &orc), 0);
    CHECK_RC(orc, ZKV_OK);
  }
  /* another format version */
  uint32_t cur_format;
  memcpy(&cur_format, g_img[0] + 8, 4);
  for (uint32_t v = 0; v < 4; v++) {
    if (v == cur_format) continue;
    uint8_t in[1 + 3 + 8] = {0, 8, 0, 0};
    uint64_t w;
    memcpy(&w, g_img[0] + 8, 8);
    w = (w & 0xffffffff00000000ull) | v;
    memcpy(in + 4, &w, 8);
    int orc = 0;
    CHECK_EQ(run_one(in, sizeof in, &orc), 0);
    CHECK_RC(orc, ZKV_EVERSION);
    CHECK_EQ(zkv_errclass(orc), ZKV_CLASS_STORE_OPERATION_FAILED);
  }
  /* not a zeltkv segment: magic damaged, or all garbage */
  {
    uint8_t in[1 + 3 + 1] = {0, 3, 0, 1, 0x40};
    int orc = 0;
    CHECK_EQ(run_one(in, sizeof in, &orc), 0);
    CHECK_RC(orc, ZKV_ECORRUPT);
  }
  {
    uint8_t in[1 + 3 * 4 + 4 * 200];
    size_t n = 1;
    in[0] = 0;
    uint64_t rs = 12345;
    for (int r = 0; r < 4; r++) {
      in[n++] = (uint8_t)(r * 200);
      in[n++] = 0;
      in[n++] = 200;
      for (int j = 0; j < 200; j++) in[n++] = (uint8_t)(xs(&rs) | 1);
    }
    int orc = 0;
    CHECK_EQ(run_one(in, n, &orc), 0);
    CHECK(orc != ZKV_OK);
    CHECK_EQ(zkv_errclass(orc), ZKV_CLASS_STORE_OPERATION_FAILED);
  }
  /* the unmutated images open (the crashed one is recovered) */
  for (int base = 0; base < 2; base++) {
    uint8_t in[1] = {(uint8_t)base};
    int orc = -1;
    CHECK_EQ(run_one(in, sizeof in, &orc), 0);
    CHECK_RC(orc, ZKV_OK);
  }
}

/* random byte flips, stored fields and truncations all over the image */
TEST(mutation_random) {
  REQUIRE(images());
  long iters = env_long("ZKV_MUTATIONS", light() ? 200 : 3000);
  uint64_t rs = (uint64_t)env_long("ZKV_MUTATION_SEED", 1) * 0x9E3779B97F4A7C15ull + 1;
  uint32_t hdr_bytes;
  memcpy(&hdr_bytes, g_img[0] + 12, 4);
  int fails = 0;
  for (long it = 0; it < iters; it++) {
    uint8_t in[512];
    size_t n = 0;
    uint64_t m = xs(&rs);
    in[n++] = (uint8_t)((m & 1) | ((m % 29 == 0) ? 2 : 0) | ((m % 31 == 0) ? 4 : 0));
    if (in[0] & 2) {
      uint16_t cut = (uint16_t)(xs(&rs) % ZSEG_SIZE);
      in[n++] = (uint8_t)(cut & 0xff);
      in[n++] = (uint8_t)(cut >> 8);
    }
    int recs = 1 + (int)(xs(&rs) % 6);
    for (int r = 0; r < recs && n + 3 + 16 < sizeof in; r++) {
      uint64_t where = xs(&rs) % 10;
      uint32_t off;
      if (where < 4) off = (uint32_t)(xs(&rs) % hdr_bytes);               /* header */
      else if (where < 6) off = (uint32_t)(hdr_bytes + xs(&rs) % 32768);  /* undo log */
      else off = (uint32_t)(xs(&rs) % ZSEG_SIZE);                          /* anywhere */
      in[n++] = (uint8_t)(off & 0xff);
      in[n++] = (uint8_t)(off >> 8);
      if (xs(&rs) % 3 == 0) {
        in[n++] = 0;
        uint64_t v;
        switch (xs(&rs) % 6) {
        case 0: v = 0; break;
        case 1: v = ~0ull; break;
        case 2: v = xs(&rs) % ZSEG_SIZE; break;
        case 3: v = (xs(&rs) % ZSEG_SIZE) / 8; break;
        case 4: v = xs(&rs) & 0xffffffffull; break;
        default: v = xs(&rs); break;
        }
        memcpy(in + n, &v, 8);
        n += 8;
      } else {
        int k = 1 + (int)(xs(&rs) % 8);
        in[n++] = (uint8_t)k;
        for (int j = 0; j < k; j++) {
          uint64_t b = xs(&rs);
          in[n++] = (uint8_t)((b & 3) == 0 ? (1u << ((b >> 2) % 8)) : (b >> 8));
        }
      }
    }
    fails += run_one(in, n, NULL) != 0;
  }
  TH_NOTE("%ld random mutations, %d failed", iters, fails);
  CHECK_EQ(fails, 0);
}
