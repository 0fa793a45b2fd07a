/*
 * segment_image.h -- shared by the segment fuzzer (spec/fuzz/fuzz_segment.c)
 * and the deterministic mutation test (spec/c/test_segment_mutation.c).
 *
 *   zseg_build()     makes a small valid segment (64 KiB) in $ZELTKV_SHM_DIR
 *                    with keys of every type, ttls (some already expired),
 *                    nested namespaces, freed blocks, a regrown bucket array,
 *                    and returns its bytes.  With `crashed`, the bytes are
 *                    taken after a process died holding the lock half-way
 *                    through a transaction: a live undo log and a robust
 *                    mutex whose owner died.
 *   zseg_apply()     applies a mutation (the format below) to a copy.
 *   zseg_exercise()  opens a segment file and runs every kind of operation on
 *                    it; any operation may fail, nothing may crash or hang.
 *
 * Mutation format (the fuzzer's input):
 *   byte 0        bit 0: start from the crashed image; bit 1: truncate;
 *                 bit 2: extend the file by 4 KiB of zeros
 *   [2 bytes]     if truncating: the new length (little endian, mod image size)
 *   records       [u16 off][u8 n][n bytes]: XOR n bytes at off (mod size);
 *                 n == 0: [8 bytes] stored (not XORed) at off rounded down to 8
 */
#ifndef ZKV_SEGMENT_IMAGE_H
#define ZKV_SEGMENT_IMAGE_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zeltkv.h"

#define ZSEG_SIZE 65536u
#define ZSEG_NAME "fz"

static void zseg_path(char *buf, size_t n, const char *name) {
  const char *dir = getenv("ZELTKV_SHM_DIR");
  snprintf(buf, n, "%s/zeltkv-%s", dir != NULL && *dir ? dir : "/dev/shm", name);
}

static int zseg_read_file(const char *path, unsigned char **out, size_t *len) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return -1;
  }
  unsigned char *b = malloc((size_t)st.st_size + 1);
  size_t got = 0;
  while (b != NULL && got < (size_t)st.st_size) {
    ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fd);
  if (b == NULL || got != (size_t)st.st_size) {
    free(b);
    return -1;
  }
  *out = b;
  *len = got;
  return 0;
}

static int zseg_write_file(const char *path, const unsigned char *b, size_t len) {
  unlink(path);   /* a new inode each time: no mapping of this process joins it */
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return -1;
  size_t put = 0;
  while (put < len) {
    ssize_t n = write(fd, b + put, len - put);
    if (n <= 0) break;
    put += (size_t)n;
  }
  close(fd);
  return put == len ? 0 : -1;
}

static void zseg_fill(zkv_db *db) {
  static const char pad[400] = "valuevaluevalue";
  zkv_ns a = 0, ab = 0, c = 0;
  zkv_namespace(db, ZKV_ROOT, "a", 1, &a);
  zkv_namespace(db, a, "b", 1, &ab);
  zkv_namespace(db, ZKV_ROOT, "c", 1, &c);
  for (int i = 0; i < 40; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    zkv_value v = {.type = ZKV_T_STRING, .data = pad, .len = (size_t)(i * 9) % 300};
    if (i % 7 == 3) v.flags = 0xabcd;
    zkv_set(db, ZKV_ROOT, k, strlen(k), &v, i % 5 == 0 ? 3600000 : 0, 0);
  }
  for (int i = 0; i < 12; i++) {
    char k[16];
    snprintf(k, sizeof k, "x%d", i);
    zkv_value v = {.type = ZKV_T_JSON, .data = "{\"a\":1}", .len = 7};
    zkv_set(db, i & 1 ? a : ab, k, strlen(k), &v, i % 3 == 0 ? 3600000 : 0, 0);
  }
  zkv_value vi = {.type = ZKV_T_INT, .i = 41};
  zkv_set(db, c, "int", 3, &vi, 0, 0);
  zkv_incr(db, c, "int", 3, 1, 0, NULL);
  zkv_value vf = {.type = ZKV_T_FLOAT, .f = 2.5};
  zkv_set(db, c, "float", 5, &vf, 0, 0);
  zkv_value vb = {.type = ZKV_T_BOOL, .i = 1};
  zkv_set(db, c, "bool", 4, &vb, 0, 0);
  zkv_value vl = {.type = ZKV_T_LIST, .data = "00000001s00000001a00000001", .len = 26};
  zkv_set(db, c, "list", 4, &vl, 0, 0);
  /* lists of linked items, and the items of a dropped one in the garbage chain */
  for (int i = 0; i < 12; i++) {
    zkv_list_push(db, c, "l1", 2, i & 1, 's', "0123456789", 10, NULL);
    zkv_list_push(db, c, "l2", 2, 0, 'i', "42", 2, NULL);
    zkv_list_push(db, c, "gone", 4, 1, 'f', "2.5", 3, NULL);
  }
  zkv_del(db, c, "gone", 4);
  /* keys that expire at once: expired entries stay in the image */
  for (int i = 0; i < 6; i++) {
    char k[16];
    snprintf(k, sizeof k, "e%d", i);
    zkv_value v = {.type = ZKV_T_STRING, .data = pad, .len = 20u + (size_t)i * 10};
    zkv_set(db, c, k, strlen(k), &v, 1, 0);
  }
  usleep(5000);
  /* holes on the free lists */
  for (int i = 1; i < 40; i += 4) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    zkv_del(db, ZKV_ROOT, k, strlen(k));
  }
  /* a rolled-back transaction leaves stale records in the log region */
  if (zkv_begin(db) == ZKV_OK) {
    zkv_value v = {.type = ZKV_T_STRING, .data = pad, .len = 50};
    zkv_set(db, ZKV_ROOT, "k0", 2, &v, 0, 0);
    zkv_del(db, ZKV_ROOT, "k2", 2);
    zkv_rollback(db);
  }
}

/* the bytes of a fresh valid segment; 0 on success */
static int zseg_build(int crashed, unsigned char **img, size_t *len) {
  char name[64], path[4200];
  snprintf(name, sizeof name, "%s-build%d-%d", ZSEG_NAME, crashed, (int)getpid());
  zseg_path(path, sizeof path, name);
  zkv_unlink(name, NULL);
  zkv_options o;
  zkv_options_init(&o);
  o.size = ZSEG_SIZE;
  o.gc_interval = 0;
  zkv_db *db = NULL;
  if (zkv_open_shared(name, &o, &db) != ZKV_OK) return -1;
  zseg_fill(db);
  zkv_close(db);
  if (crashed) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      zkv_db *c = NULL;
      if (zkv_open_shared(name, &o, &c) != ZKV_OK) _exit(3);
      if (zkv_begin(c) != ZKV_OK) _exit(3);
      static const char pad[200] = "crashcrash";
      for (int i = 0; i < 40; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        zkv_value v = {.type = ZKV_T_STRING, .data = pad, .len = (size_t)(i * 13) % 200};
        if (i % 3 == 0) zkv_del(c, ZKV_ROOT, k, strlen(k));
        else zkv_set(c, ZKV_ROOT, k, strlen(k), &v, i % 4 == 0 ? 1000 : 0, 0);
      }
      zkv_ns d = 0;
      zkv_namespace(c, ZKV_ROOT, "d", 1, &d);
      zkv_incr(c, d, "n", 1, 5, 0, NULL);
      kill(getpid(), SIGKILL);   /* dies holding the lock */
      _exit(4);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFSIGNALED(st)) return -1;
  }
  int rc = zseg_read_file(path, img, len);
  unlink(path);
  return rc;
}

/* apply a mutation (format above) to a copy of base; *out is malloc'ed */
static void zseg_apply(const unsigned char *base, size_t blen, const uint8_t *in, size_t n,
                       unsigned char **out, size_t *olen) {
  size_t len = blen;
  unsigned char *b = malloc(blen + 4096);
  memcpy(b, base, blen);
  memset(b + blen, 0, 4096);
  size_t i = 1;
  uint8_t mode = n > 0 ? in[0] : 0;
  if ((mode & 2) && n >= 3) {
    len = (size_t)(in[1] | (in[2] << 8)) % blen;
    i = 3;
  }
  while (i + 3 <= n) {
    size_t off = (size_t)(in[i] | (in[i + 1] << 8));
    size_t k = in[i + 2];
    i += 3;
    if (k == 0) {
      if (i + 8 > n) break;
      off = (off % blen) & ~(size_t)7;
      if (off + 8 <= blen) memcpy(b + off, in + i, 8);
      i += 8;
      continue;
    }
    for (size_t j = 0; j < k && i < n; j++, i++) b[(off + j) % blen] ^= in[i];
  }
  if (mode & 4) len += 4096;
  *out = b;
  *olen = len;
}

/* result codes the API may give; anything else is a bug */
static int zseg_rc_known(int rc) { return rc >= ZKV_ESTALE && rc <= ZKV_EXISTS && rc != -7 && rc != -8 && rc != -9; }

static int zseg_keys_cb(void *ud, const void *key, size_t klen) {
  (void)key;
  *(size_t *)ud += klen;
  return 0;
}

/* open the segment `name` and run every kind of operation on it.  Returns
 * the number of result codes outside the API's set (0 = fine). */
static int zseg_exercise(const char *name, int *open_rc) {
  int wild = 0;
#define ZR(call)                                  \
  do {                                            \
    int rc_ = (call);                             \
    if (!zseg_rc_known(rc_)) {                    \
      fprintf(stderr, "wild rc %d from %s\n", rc_, #call); \
      wild++;                                     \
    }                                             \
  } while (0)
  zkv_options o;
  zkv_options_init(&o);
  o.lock_timeout = 0;   /* a lock held by garbage times out at once */
  o.gc_interval = 0.001;
  zkv_db *db = NULL;
  int rc = zkv_open_shared(name, &o, &db);
  *open_rc = rc;
  if (rc != ZKV_OK) {
    if (db != NULL) wild++;
    if (!zseg_rc_known(rc)) wild++;
    return wild;
  }
  zkv_value v;
  uint64_t u = 0;
  int64_t i64 = 0;
  double d = 0;
  int stale = 0;
  size_t n = 0, acc = 0;
  static const char pad[600] = "newvalue";
  zkv_ns a = 0, ab = 0, c = 0, nn = 0;
  ZR(zkv_namespace(db, ZKV_ROOT, "a", 1, &a));
  ZR(zkv_namespace(db, a, "b", 1, &ab));
  ZR(zkv_namespace(db, ZKV_ROOT, "c", 1, &c));
  for (int i = 0; i < 44; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    ZR(zkv_get(db, ZKV_ROOT, k, strlen(k), &v));
    ZR(zkv_get_ex(db, ZKV_ROOT, k, strlen(k), ZKV_GET_STALE, &v, &stale));
  }
  for (int i = 0; i < 12; i++) {
    char k[16];
    snprintf(k, sizeof k, "x%d", i);
    ZR(zkv_get(db, i & 1 ? a : ab, k, strlen(k), &v));
  }
  ZR(zkv_get(db, c, "int", 3, &v));
  ZR(zkv_get_ex(db, c, "e1", 2, ZKV_GET_STALE, &v, &stale));
  ZR(zkv_has(db, c, "float", 5));
  ZR(zkv_ttl(db, ZKV_ROOT, "k0", 2, &i64));
  ZR(zkv_incr(db, c, "int", 3, 7, 0, &i64));
  ZR(zkv_incr_num(db, c, "float", 5, 0.5, 1, 0, 0, &d, NULL));
  ZR(zkv_incr(db, ZKV_ROOT, "fresh", 5, 1, 100, &i64));
  ZR(zkv_expire(db, ZKV_ROOT, "k0", 2, 5000));
  for (int i = 0; i < 6; i++) {   /* lists: their items and the garbage chain */
    ZR(zkv_list_len(db, c, "l1", 2, &u));
    ZR(zkv_list_pop(db, c, i & 1 ? "l1" : "l2", 2, i & 2, &v));
    ZR(zkv_list_push(db, c, "l1", 2, i & 1, 's', "new", 3, &u));
    ZR(zkv_get(db, c, "l2", 2, &v));
  }
  ZR(zkv_expire(db, c, "l2", 2, 5000));
  ZR(zkv_del(db, c, "l1", 2));
  ZR(zkv_expire(db, ZKV_ROOT, "k5", 2, 0));
  zkv_ns nss[5] = {ZKV_ROOT, a, ab, c, 0};
  for (int j = 0; j < 4; j++) {
    ZR(zkv_count(db, nss[j], &u));
    zkv_cursor cur = ZKV_CURSOR_INIT;
    for (int guard = 0; !cur.done && guard < 1000; guard++) {
      int r = zkv_keys(db, nss[j], &cur, 7, zseg_keys_cb, &acc, &n);
      ZR(r);
      if (r != ZKV_OK) break;
    }
  }
  for (int i = 0; i < 30; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", (i * 7) % 44);
    zkv_value nv = {.type = ZKV_T_STRING, .data = pad, .len = (size_t)(i * 37) % 600};
    ZR(zkv_set(db, ZKV_ROOT, k, strlen(k), &nv, i % 3 ? 0 : 2000, (unsigned)(i % 4 == 1 ? ZKV_SET_NX : 0)));
    if (i % 5 == 0) ZR(zkv_del(db, ZKV_ROOT, k, strlen(k)));
  }
  ZR(zkv_namespace(db, ab, "deep", 4, &nn));
  ZR(zkv_begin(db));
  if (zkv_txn_depth(db) > 0) {
    zkv_value nv = {.type = ZKV_T_STRING, .data = pad, .len = 300};
    ZR(zkv_set(db, a, "t1", 2, &nv, 0, 0));
    ZR(zkv_del(db, ZKV_ROOT, "k3", 2));
    ZR(zkv_begin(db));
    ZR(zkv_incr(db, c, "int", 3, 1, 0, NULL));
    ZR(zkv_rollback(db));
    ZR(zkv_clear(db, a, &u));
    ZR(zkv_rollback(db));
  }
  ZR(zkv_begin(db));
  if (zkv_txn_depth(db) > 0) {
    for (int i = 0; i < 40; i++) {   /* enough new keys to regrow the index */
      char k[16];
      snprintf(k, sizeof k, "g%d", i);
      zkv_value nv = {.type = ZKV_T_INT, .i = i};
      ZR(zkv_set(db, c, k, strlen(k), &nv, 0, 0));
    }
    ZR(zkv_commit(db));
  }
  zkv_stats st;
  ZR(zkv_stats_get(db, &st));
  ZR(zkv_gc(db, &u));
  ZR(zkv_flush_expired(db, 3, &u));
  /* the flush's walks (flag_keys in ops.c): in a transaction (logged, then
   * given back), then outside one (unlogged), then freeing what it flagged */
  ZR(zkv_begin(db));
  if (zkv_txn_depth(db) > 0) {
    ZR(zkv_expire_all(db, c, &u));
    ZR(zkv_rollback(db));
  }
  for (int j = 0; j < 4; j++) {
    ZR(zkv_expire_all(db, nss[j], &u));
    ZR(zkv_flush_expired_ns(db, nss[j], 0, &u));
  }
  ZR(zkv_clear(db, ab, &u));
  ZR(zkv_clear(db, ZKV_ROOT, &u));
  ZR(zkv_count(db, ZKV_ROOT, &u));
  ZR(zkv_flush(db, &u));
  zkv_value nv = {.type = ZKV_T_STRING, .data = pad, .len = 500};
  ZR(zkv_set(db, ZKV_ROOT, "after", 5, &nv, 0, 0));
  ZR(zkv_get(db, ZKV_ROOT, "after", 5, &v));
  zkv_close(db);
#undef ZR
  return wild;
}

#endif
