/*
 * test_segment_life.c -- a shared segment's life: its room reserved when it
 * is created, a creator killed half-way, fork, growth in place, segments in
 * a directory on disk.
 *
 * Segments live in a private temporary directory (ZELTKV_SHM_DIR), or in a
 * small tmpfs a test mounts when it runs as root (skipped with a note
 * otherwise).
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp, mount and other calls beyond C11 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <sys/types.h>

#include "zeltkv.h"
#include "harness.h"

#define K(s) (s), (sizeof(s) - 1)

/* the library's test hook (src/internal.h) */
extern void (*arena_test_create_hook)(void);

__attribute__((constructor)) static void shm_dir_setup(void) { th_shm_dir("zkvlife"); }

static void seg_name(char *buf, size_t n, const char *tag) {
  snprintf(buf, n, "life-%d-%s", (int)th_dir_pid, tag);
}

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

static int set_val(zkv_db *db, const char *key, size_t vlen, int *rc_out) {
  static char buf[1 << 16];
  memset(buf, 'v', vlen);
  zkv_value v;
  memset(&v, 0, sizeof v);
  v.type = ZKV_T_STRING;
  v.data = buf;
  v.len = vlen;
  int rc = zkv_set(db, ZKV_ROOT, key, strlen(key), &v, 0, 0);
  if (rc_out) *rc_out = rc;
  return rc;
}

/* a tmpfs of `size` mounted on a fresh directory: its path, or NULL (not
 * root, or no mount allowed here) */
static char tmpfs_dir[600];
static const char *mount_tmpfs(const char *size) {
  snprintf(tmpfs_dir, sizeof tmpfs_dir, "%s/tmpfs-XXXXXX", th_dir);
  if (mkdtemp(tmpfs_dir) == NULL) return NULL;
  char opt[64];
  snprintf(opt, sizeof opt, "size=%s,mode=0700", size);
  if (geteuid() != 0 || mount("zkvtest", tmpfs_dir, "tmpfs", 0, opt) != 0) {
    TH_NOTE("skipped: mounting a tmpfs needs root (%s)", strerror(errno));
    rmdir(tmpfs_dir);
    return NULL;
  }
  return tmpfs_dir;
}

static void umount_tmpfs(void) {
  CHECK(umount(tmpfs_dir) == 0);
  rmdir(tmpfs_dir);
}

static uint64_t free_room(const char *dir) {
  struct statvfs v;
  return statvfs(dir, &v) == 0 ? (uint64_t)v.f_bavail * v.f_frsize : 0;
}

/* ------------------------------------------------------------------------ */
/* the whole size is reserved when a segment is created                      */

/* a segment larger than its filesystem's free room is refused at once, with
 * the path and the room in zkv_errdetail(NULL); nothing is left behind */
TEST(create_refuses_a_size_the_filesystem_cannot_hold) {
  char name[64];
  seg_name(name, sizeof name, "toobig");
  zkv_options o;
  zkv_options_init(&o);
  o.size = free_room(th_dir) + (1ull << 30);
  zkv_db *db = (zkv_db *)&db;
  errno = 0;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_EIO);
  CHECK_EQ(errno, ENOSPC);
  CHECK(db == NULL);
  const char *why = zkv_errdetail(NULL);
  CHECK(strstr(why, th_dir) != NULL);
  CHECK(strstr(why, name) != NULL);
  CHECK(strstr(why, "free") != NULL);
  TH_NOTE("%s", why);
  CHECK_EQ(count_files(th_dir), 0);

  /* over the largest segment: a bad option */
  o.size = ZKV_MAX_SEGMENT + 1;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_EINVAL);
  CHECK(strstr(zkv_errdetail(NULL), "largest") != NULL);
  CHECK_EQ(count_files(th_dir), 0);
  /* a success clears the detail */
  o.size = 1 << 20;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  CHECK_STR(zkv_errdetail(NULL), "");
  zkv_close(db);
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}

/* Issue 9.4: on an 8 MiB tmpfs, a 16 MiB segment is refused when it is made,
 * a 4 MiB one fills up with ZKV_EFULL (never a SIGBUS), and a second 6 MiB one
 * no longer fits beside it. */
TEST(small_tmpfs_reserves_or_refuses) {
  const char *dir = mount_tmpfs("8m");
  if (dir == NULL) return;
  char name[64];
  seg_name(name, sizeof name, "tmpfs");
  zkv_options o;
  zkv_options_init(&o);
  o.dir = dir;
  o.size = 16u << 20;
  zkv_db *db = NULL;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_EIO);
  CHECK(strstr(zkv_errdetail(NULL), dir) != NULL && strstr(zkv_errdetail(NULL), "free") != NULL);
  TH_NOTE("%s", zkv_errdetail(NULL));
  CHECK_EQ(count_files(dir), 0);

  o.size = 4u << 20;
  REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  pid_t pid = fork();
  if (pid == 0) {   /* a SIGBUS would end this child only */
    int rc = ZKV_OK, n = 0;
    char k[32];
    while (rc == ZKV_OK && n < 100000) {
      snprintf(k, sizeof k, "k%d", n++);
      set_val(db, k, 4000, &rc);
    }
    _exit(rc == ZKV_EFULL && n > 500 ? 0 : 1);
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  if (WIFSIGNALED(st)) TH_NOTE("filler died of signal %d", WTERMSIG(st));

  char name2[64];
  seg_name(name2, sizeof name2, "tmpfs2");
  o.size = 6u << 20;
  zkv_db *db2 = NULL;
  CHECK_RC(zkv_open_shared(name2, &o, &db2), ZKV_EIO);
  CHECK_EQ(count_files(dir), 1);
  zkv_close(db);
  umount_tmpfs();
}

/* ------------------------------------------------------------------------ */
/* a creator killed half-way                                                 */

static void die_now(void) { raise(SIGKILL); }

/* Issue 9.13: a process killed while it creates a segment leaves no file, and
 * the next opener creates the segment as if nothing happened. */
TEST(killed_creator_leaves_no_file) {
  char name[64];
  seg_name(name, sizeof name, "killed");
  pid_t pid = fork();
  if (pid == 0) {
    arena_test_create_hook = die_now;
    zkv_db *db = NULL;
    zkv_open_shared(name, NULL, &db);
    _exit(3);   /* not reached */
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  CHECK_EQ(count_files(th_dir), 0);
  zkv_db *db = NULL;
  REQUIRE_RC(zkv_open_shared(name, NULL, &db), ZKV_OK);
  CHECK_RC(set_val(db, "k", 10, NULL), ZKV_OK);
  CHECK_EQ(count_files(th_dir), 1);
  zkv_close(db);
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}

/* where a temporary file had to be named (a filesystem without O_TMPFILE, or
 * an older version), the next creator and zkv_unlink remove those of dead
 * processes, and only those of that name */
TEST(stale_named_temporaries_are_removed) {
  char name[64], other[64], p[1024];
  seg_name(name, sizeof name, "stale");
  seg_name(other, sizeof other, "stale-other");
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, NULL, 0);
  const char *files[4][2] = {{"dead", name}, {"live", name}, {"dead", other}, {"dead", name}};
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/.tmp%d-%x-zeltkv-%s%s", th_dir,
             strcmp(files[i][0], "dead") == 0 ? (int)dead : (int)getpid(), 0x1234abc + i,
             files[i][1], i == 3 ? "x" : "");
    int fd = open(p, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
  }
  CHECK_EQ(count_files(th_dir), 4);
  zkv_db *db = NULL;
  REQUIRE_RC(zkv_open_shared(name, NULL, &db), ZKV_OK);
  /* gone: the dead creator's of this name; kept: the live one's, another
   * name's, and a name that only begins like this one */
  CHECK_EQ(count_files(th_dir), 4);
  snprintf(p, sizeof p, "%s/.tmp%d-%x-zeltkv-%s", th_dir, (int)dead, 0x1234abc, name);
  CHECK(access(p, F_OK) != 0);
  zkv_close(db);
  int existed = 0;
  CHECK_RC(zkv_unlink(other, &existed), ZKV_OK);
  CHECK_EQ(existed, 0);
  CHECK_RC(zkv_unlink(name, &existed), ZKV_OK);
  CHECK_EQ(existed, 1);
  CHECK_EQ(count_files(th_dir), 2);   /* the live one's, and "...x" */
  DIR *d = opendir(th_dir);
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.' || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(p, sizeof p, "%s/%s", th_dir, e->d_name);
    unlink(p);
  }
  if (d != NULL) closedir(d);
}

/* ------------------------------------------------------------------------ */

/* the directory option, the create flag */
TEST(dir_option_and_open_existing) {
  char name[64], sub[600], p[1200];
  seg_name(name, sizeof name, "dir");
  snprintf(sub, sizeof sub, "%s/sub", th_dir);
  CHECK(mkdir(sub, 0700) == 0);
  zkv_options o;
  zkv_options_init(&o);
  o.dir = sub;
  o.flags = ZKV_OPEN_EXISTING;
  zkv_db *db = NULL;
  errno = 0;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_EIO);
  CHECK_EQ(errno, ENOENT);
  CHECK(strstr(zkv_errdetail(NULL), sub) != NULL);
  CHECK_EQ(count_files(sub), 0);
  o.flags = 0;
  o.size = 1 << 20;
  REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  snprintf(p, sizeof p, "%s/zeltkv-%s", sub, name);
  CHECK(access(p, F_OK) == 0);
  CHECK_RC(set_val(db, "k", 10, NULL), ZKV_OK);
  zkv_close(db);
  /* not in ZELTKV_SHM_DIR */
  CHECK_RC(zkv_open_shared(name, &(zkv_options){.size = 1 << 20, .mode = 0600, .lock_timeout = 5,
                                                 .flags = ZKV_OPEN_EXISTING},
                           &db),
           ZKV_EIO);
  o.flags = ZKV_OPEN_EXISTING;
  REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  zkv_value v;
  CHECK_RC(zkv_get(db, ZKV_ROOT, K("k"), &v), ZKV_OK);
  zkv_close(db);
  int existed = 0;
  CHECK_RC(zkv_unlink(name, &existed), ZKV_OK);
  CHECK_EQ(existed, 0);
  CHECK_RC(zkv_unlink_ex(name, &o, &existed), ZKV_OK);
  CHECK_EQ(existed, 1);
  o.dir = "/nonexistent/zkv";
  o.flags = 0;
  CHECK_RC(zkv_open_shared(name, &o, &db), ZKV_EIO);
  CHECK(strstr(zkv_errdetail(NULL), "/nonexistent/zkv") != NULL);
  CHECK(rmdir(sub) == 0);
}

static int64_t get_int(zkv_db *db, const char *key);
static int wait_ok(pid_t pid);

/* Issue 13.5: a segment in a directory on disk is kept by the page cache and
 * written back by the kernel.  Every handle closed, the file written back and
 * the page cache dropped (root only), it reopens from the disk with every key. */
TEST(dir_on_disk_survives_a_dropped_page_cache) {
  char dir[600], name[64];
  const char *base = getenv("ZKV_DISK_DIR");
  /* on the disk the tests run from (build/ when there), not in TMPDIR: a tmpfs often */
  if (!base || !*base) base = access("build", W_OK) == 0 ? "build" : ".";
  snprintf(dir, sizeof dir, "%s/zkvdisk-XXXXXX", base);
  REQUIRE(mkdtemp(dir) != NULL);
  struct statfs fs;
  if (statfs(dir, &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
    TH_NOTE("skipped: %s is a tmpfs, not a disk (set ZKV_DISK_DIR)", dir);
    rmdir(dir);
    return;
  }
  seg_name(name, sizeof name, "disk");
  zkv_options o;
  zkv_options_init(&o);
  o.dir = dir;
  o.size = 2u << 20;
  const int N = th_light() ? 300 : 3000;
  zkv_db *db = NULL;
  REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  char k[32];
  int bad = 0;
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "k%d", i);
    bad += set_val(db, k, 300 + i % 7, NULL) != ZKV_OK;
  }
  CHECK_EQ(bad, 0);
  zkv_close(db);
  char path[1200];
  snprintf(path, sizeof path, "%s/zeltkv-%s", dir, name);
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0 && fsync(fd) == 0);   /* written back: a dirty page is never dropped */
  int dropped = 0;
  if (geteuid() == 0) {
    int dc = open("/proc/sys/vm/drop_caches", O_WRONLY);
    dropped = dc >= 0 && write(dc, "1", 1) == 1;
    if (dc >= 0) close(dc);
  }
  if (!dropped) {
    TH_NOTE("skipped the drop: writing /proc/sys/vm/drop_caches needs root (%s)", strerror(errno));
  } else {
    /* how much of the file the page cache still holds (mincore of a fresh map) */
    void *m = mmap(NULL, o.size, PROT_READ, MAP_SHARED, fd, 0);
    unsigned char vec[512];
    int resident = 0;
    if (m != MAP_FAILED && mincore(m, o.size, vec) == 0)
      for (size_t i = 0; i < o.size / 4096 && i < sizeof vec; i++) resident += vec[i] & 1;
    if (m != MAP_FAILED) munmap(m, o.size);
    TH_NOTE("page cache dropped: %d of %u pages of the segment still resident", resident,
            (unsigned)(o.size / 4096));
  }
  if (fd >= 0) close(fd);
  o.flags = ZKV_OPEN_EXISTING;
  o.size = 0;
  REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  zkv_value v;
  bad = 0;
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "k%d", i);
    bad += zkv_get(db, ZKV_ROOT, k, strlen(k), &v) != ZKV_OK || v.len != (size_t)(300 + i % 7);
  }
  CHECK_EQ(bad, 0);
  const char *why = NULL;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(db);
  CHECK_RC(zkv_unlink_ex(name, &o, NULL), ZKV_OK);
  CHECK(rmdir(dir) == 0);
}

/* the detail of a failed open is per thread, and freed when its thread ends
 * (valgrind's leak check fails this test otherwise) */
static void *fail_an_open(void *arg) {
  zkv_options o;
  zkv_options_init(&o);
  o.dir = "/nonexistent/zkv-thread";
  zkv_db *db = NULL;
  int e = 0;
  int ok = zkv_open_shared("thr", &o, &db) == ZKV_EIO &&
           strstr(zkv_errdetail(&e), "/nonexistent/zkv-thread") != NULL && e == ENOENT;
  *(int *)arg = ok;
  return NULL;
}
TEST(failure_detail_is_per_thread) {
  CHECK_RC(zkv_unlink("ok-name", NULL), ZKV_OK);   /* clears this thread's detail */
  int ok = 0;
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, fail_an_open, &ok) == 0);
  pthread_join(th, NULL);
  CHECK(ok);
  CHECK_STR(zkv_errdetail(NULL), "");   /* the other thread's failure is not ours */
}

/* ------------------------------------------------------------------------ */
/* growing in place (issue 13.4)                                             */

static uint64_t file_size_of(const char *name) {
  char p[1200];
  struct stat sb;
  snprintf(p, sizeof p, "%s/zeltkv-%s", th_dir, name);
  return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static zkv_db *open_sized(const char *name, uint64_t size, int evict, int *rc) {
  zkv_options o;
  zkv_options_init(&o);
  o.size = size;
  o.evict = evict;
  zkv_db *db = NULL;
  *rc = zkv_open_shared(name, &o, &db);
  return db;
}

/* size and evict given for an existing segment are checked, never ignored */
TEST(existing_segment_size_and_evict_checked) {
  char name[64];
  seg_name(name, sizeof name, "gcheck");
  int rc;
  zkv_db *db = open_sized(name, 256 << 10, ZKV_EVICT_LRU, &rc);
  REQUIRE_RC(rc, ZKV_OK);
  CHECK_RC(set_val(db, "k", 100, NULL), ZKV_OK);
  zkv_db *x = open_sized(name, 128 << 10, ZKV_EVICT_DEFAULT, &rc);
  CHECK_RC(rc, ZKV_EINVAL);
  CHECK(x == NULL);
  CHECK(strstr(zkv_errdetail(NULL), "never shrinks") != NULL && strstr(zkv_errdetail(NULL), name));
  TH_NOTE("%s", zkv_errdetail(NULL));
  x = open_sized(name, 0, ZKV_EVICT_NONE, &rc);
  CHECK_RC(rc, ZKV_EINVAL);
  CHECK(strstr(zkv_errdetail(NULL), "evict \"lru\"") != NULL);
  TH_NOTE("%s", zkv_errdetail(NULL));
  /* the same size (as rounded when made), the same policy, or neither: fine */
  x = open_sized(name, (256 << 10) - 100, ZKV_EVICT_LRU, &rc);
  CHECK_RC(rc, ZKV_OK);
  zkv_close(x);
  x = open_sized(name, 0, ZKV_EVICT_DEFAULT, &rc);
  CHECK_RC(rc, ZKV_OK);
  zkv_close(x);
  CHECK_EQ(file_size_of(name), 256 << 10);
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK_EQ(st.size, 256 << 10);
  CHECK_EQ(st.evict, ZKV_EVICT_LRU);
  CHECK_STR(st.name, name);
  zkv_db *m = NULL;
  CHECK_RC(zkv_open_memory(NULL, &m), ZKV_OK);
  CHECK_RC(zkv_stats_get(m, &st), ZKV_OK);
  CHECK(st.size == 0 && st.path == NULL && st.name == NULL && st.evict == ZKV_EVICT_NONE);
  zkv_close(m);
  zkv_value v;
  CHECK_RC(zkv_get(db, ZKV_ROOT, K("k"), &v), ZKV_OK);
  zkv_close(db);
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}

/* zkv_capacity and zkv_capacity_word say what zkv_space says, before and after
 * another handle grows the segment; a memory store has no word, and bad
 * arguments are refused */
TEST(capacity_follows_growth) {
  char name[64];
  seg_name(name, sizeof name, "gcap");
  int rc;
  zkv_db *db = open_sized(name, 1 << 20, ZKV_EVICT_DEFAULT, &rc);
  REQUIRE_RC(rc, ZKV_OK);
  uint64_t cap = 0, sp = 0, fr = 0, base = 1;
  const volatile uint64_t *w = zkv_capacity_word(db, &base);
  REQUIRE(w != NULL);
  CHECK_RC(zkv_capacity(db, &cap), ZKV_OK);
  CHECK_RC(zkv_space(db, &sp, &fr), ZKV_OK);
  CHECK(cap == sp && cap > 0 && *w - base == cap);
  zkv_db *big = open_sized(name, 4 << 20, ZKV_EVICT_DEFAULT, &rc);   /* grows it in place */
  REQUIRE_RC(rc, ZKV_OK);
  uint64_t cap2 = 0;
  CHECK_RC(zkv_capacity(db, &cap2), ZKV_OK);
  CHECK_RC(zkv_space(db, &sp, &fr), ZKV_OK);
  CHECK(cap2 == sp && cap2 > cap + (2u << 20) && *w - base == cap2);
  zkv_close(big);
  CHECK(zkv_capacity(db, NULL) == ZKV_EINVAL && zkv_capacity(NULL, &cap) == ZKV_EINVAL);
  CHECK(zkv_capacity_word(db, NULL) == NULL && zkv_capacity_word(NULL, &base) == NULL);
  zkv_db *m = NULL;
  zkv_options o;
  zkv_options_init(&o);
  o.max_bytes = 1 << 20;
  CHECK_RC(zkv_open_memory(&o, &m), ZKV_OK);
  base = 1;
  CHECK(zkv_capacity_word(m, &base) == NULL && base == 0);
  CHECK_RC(zkv_capacity(m, &cap), ZKV_OK);
  CHECK_RC(zkv_space(m, &sp, &fr), ZKV_OK);
  CHECK(cap == sp && cap == 1 << 20);
  zkv_close(m);
  zkv_close(db);
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}

/* write `n` keys "wI-J" (and incr "nI" with each), waiting out ZKV_EFULL
 * until the segment grows; tells `fd` once when it first finds it full.
 * Then reads every one back.  Returns the number of failures. */
static int grow_writer(const char *name, int id, int n, int fd) {
  int rc, bad = 0, told = 0;
  zkv_db *db = open_sized(name, 0, ZKV_EVICT_DEFAULT, &rc);
  if (!db) return 1;
  char k[32];
  double until = th_now() + 60;
  for (int j = 0; j < n && th_now() < until; j++) {
    snprintf(k, sizeof k, "w%d-%d", id, j);
    if (zkv_begin(db) != ZKV_OK) return 1;
    rc = set_val(db, k, 200, NULL);
    if (rc == ZKV_OK) rc = zkv_incr(db, ZKV_ROOT, id ? "n1" : "n0", 2, 1, 0, NULL);
    if (rc == ZKV_OK) {
      if (zkv_commit(db) != ZKV_OK) bad++;
      continue;
    }
    zkv_rollback(db);
    if (rc != ZKV_EFULL) { bad++; break; }
    if (!told && write(fd, "f", 1) == 1) told = 1;
    usleep(2000);
    j--;
  }
  zkv_value v;
  for (int j = 0; j < n; j++) {
    snprintf(k, sizeof k, "w%d-%d", id, j);
    bad += zkv_get(db, ZKV_ROOT, k, strlen(k), &v) != ZKV_OK || v.len != 200;
  }
  zkv_close(db);
  return bad;
}

/* Issue 13.4: two writer processes fill a 256 KiB segment; a third opens it
 * with 4 MiB and it grows under them: no write lost, every key readable by a
 * process that mapped it before (its reads past the old end take the lock
 * and map the rest). */
TEST(grow_under_two_writers) {
  char name[64];
  seg_name(name, sizeof name, "grow");
  const int N = th_light() ? 800 : 2000;
  int rc;
  zkv_db *db = open_sized(name, 256 << 10, ZKV_EVICT_DEFAULT, &rc);
  REQUIRE_RC(rc, ZKV_OK);
  int full[2], go[2];
  REQUIRE(pipe(full) == 0 && pipe(go) == 0);
  pid_t w[2];
  for (int i = 0; i < 2; i++) {
    w[i] = fork();
    if (w[i] == 0) _exit(grow_writer(name, i, N, full[1]));
  }
  /* a reader that maps the segment before it grows */
  pid_t r = fork();
  if (r == 0) {
    int bad = 0;
    zkv_db *rd = open_sized(name, 0, ZKV_EVICT_DEFAULT, &bad);
    char c, k[32];
    if (!rd || read(go[0], &c, 1) != 1) _exit(1);
    zkv_value v;
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < N; j++) {
        snprintf(k, sizeof k, "w%d-%d", i, j);
        bad += zkv_get(rd, ZKV_ROOT, k, strlen(k), &v) != ZKV_OK || v.len != 200;
      }
    bad += get_int(rd, "n0") != N || get_int(rd, "n1") != N;
    zkv_close(rd);
    _exit(bad ? 1 : 0);
  }
  char c;
  CHECK(read(full[0], &c, 1) == 1);   /* one writer found it full */
  zkv_db *g = open_sized(name, 4u << 20, ZKV_EVICT_DEFAULT, &rc);
  CHECK_RC(rc, ZKV_OK);
  CHECK_EQ(file_size_of(name), 4u << 20);
  for (int i = 0; i < 2; i++) CHECK(wait_ok(w[i]));
  CHECK(write(go[1], "g", 1) == 1);
  CHECK(wait_ok(r));
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);   /* a handle opened before the growth */
  CHECK_EQ(st.keys, (uint64_t)(2 * N + 2));
  CHECK(st.capacity > (3u << 20));
  CHECK_EQ(st.size, 4u << 20);
  CHECK_EQ(st.evict, ZKV_EVICT_NONE);
  CHECK_STR(st.name, name);
  CHECK(st.path != NULL && strstr(st.path, th_dir) == st.path && strstr(st.path, name) != NULL);
  CHECK_EQ(get_int(db, "n0"), N);
  CHECK_EQ(get_int(db, "n1"), N);
  const char *why = NULL;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(g);
  zkv_close(db);
  /* reopened from scratch: as grown */
  db = open_sized(name, 0, ZKV_EVICT_DEFAULT, &rc);
  REQUIRE_RC(rc, ZKV_OK);
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK_EQ(st.keys, (uint64_t)(2 * N + 2));
  zkv_close(db);
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
  close(full[0]);
  close(full[1]);
  close(go[0]);
  close(go[1]);
}

/* ------------------------------------------------------------------------ */
/* counters (issue 13.6)                                                     */

static void some_traffic(zkv_db *db, int hits, int misses) {
  zkv_value v;
  char k[32];
  for (int i = 0; i < hits; i++) zkv_get(db, ZKV_ROOT, K("here"), &v);
  for (int i = 0; i < misses; i++) {
    snprintf(k, sizeof k, "absent%d", i);
    zkv_get(db, ZKV_ROOT, k, strlen(k), &v);
  }
}

/* every process's reads and writes, summed for the whole segment: slots of
 * closed handles and of dead processes (folded when their slots are taken
 * again) included; lock waits with their longest */
TEST(counters_of_every_process) {
  char name[64];
  seg_name(name, sizeof name, "ctr");
  int rc;
  zkv_db *db = open_sized(name, 1 << 20, ZKV_EVICT_DEFAULT, &rc);
  REQUIRE_RC(rc, ZKV_OK);
  CHECK_RC(set_val(db, "here", 10, NULL), ZKV_OK);
  CHECK_RC(zkv_incr(db, ZKV_ROOT, K("n"), 1, 0, NULL), ZKV_OK);
  CHECK_RC(zkv_del(db, ZKV_ROOT, K("n")), ZKV_OK);
  CHECK_RC(zkv_del(db, ZKV_ROOT, K("n")), ZKV_NOTFOUND);   /* removed nothing */
  REQUIRE_RC(zkv_begin(db), ZKV_OK);
  CHECK_RC(set_val(db, "t", 10, NULL), ZKV_OK);
  CHECK_RC(zkv_commit(db), ZKV_OK);
  REQUIRE_RC(zkv_begin(db), ZKV_OK);
  REQUIRE_RC(zkv_begin(db), ZKV_OK);   /* a savepoint: not counted */
  CHECK_RC(zkv_rollback(db), ZKV_OK);
  CHECK_RC(zkv_rollback(db), ZKV_OK);
  some_traffic(db, 3, 2);
  /* a process that closes its handle, and 130 handles of one that dies
   * without closing any (more than the slots: the rest share slot 0) */
  pid_t p = fork();
  if (p == 0) {
    zkv_db *c = open_sized(name, 0, ZKV_EVICT_DEFAULT, &rc);
    if (!c) _exit(1);
    some_traffic(c, 5, 1);
    zkv_close(c);
    _exit(0);
  }
  CHECK(wait_ok(p));
  p = fork();
  if (p == 0) {
    for (int i = 0; i < 130; i++) {
      zkv_db *c = open_sized(name, 0, ZKV_EVICT_DEFAULT, &rc);
      if (!c) _exit(1);
      some_traffic(c, 1, 0);
    }
    _exit(0);
  }
  CHECK(wait_ok(p));
  /* every slot is taken by the dead process: a new handle folds one in */
  zkv_db *late = open_sized(name, 0, ZKV_EVICT_DEFAULT, &rc);
  REQUIRE_RC(rc, ZKV_OK);
  some_traffic(late, 1, 0);
  zkv_stats st;
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK_EQ(st.hits, 3 + 5 + 130 + 1);
  CHECK_EQ(st.misses, 2 + 1);
  CHECK_EQ(st.gets, st.hits + st.misses);
  CHECK_EQ(st.sets, 3);
  CHECK_EQ(st.deletes, 1);
  CHECK_EQ(st.commits, 1);
  CHECK_EQ(st.rollbacks, 1);
  zkv_close(late);

  /* a holder keeps the lock 100 ms: the write that waits counts it */
  uint64_t waits0 = st.lock_waits;
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  p = fork();
  if (p == 0) {
    zkv_db *c = open_sized(name, 0, ZKV_EVICT_DEFAULT, &rc);
    if (!c || zkv_begin(c) != ZKV_OK || write(ready[1], "r", 1) != 1) _exit(1);
    usleep(100000);
    zkv_commit(c);
    zkv_close(c);
    _exit(0);
  }
  char ch;
  CHECK(read(ready[0], &ch, 1) == 1);
  CHECK_RC(set_val(db, "w", 10, NULL), ZKV_OK);
  CHECK(wait_ok(p));
  CHECK_RC(zkv_stats_get(db, &st), ZKV_OK);
  CHECK_EQ(st.lock_waits, waits0 + 1);
  CHECK(st.lock_wait_max_ns >= 50000000ull && st.lock_wait_ns >= st.lock_wait_max_ns);
  TH_NOTE("longest lock wait %.1f ms", (double)st.lock_wait_max_ns / 1e6);
  close(ready[0]);
  close(ready[1]);
  zkv_close(db);
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);

  /* a memory store counts the same */
  zkv_db *m = NULL;
  REQUIRE_RC(zkv_open_memory(NULL, &m), ZKV_OK);
  CHECK_RC(set_val(m, "here", 10, NULL), ZKV_OK);
  some_traffic(m, 4, 3);
  CHECK_RC(zkv_stats_get(m, &st), ZKV_OK);
  CHECK(st.hits == 4 && st.misses == 3 && st.sets == 1 && st.gets == 7);
  zkv_close(m);
}

/* ------------------------------------------------------------------------ */
/* fork                                                                      */

static int64_t get_int(zkv_db *db, const char *key) {
  zkv_value v;
  if (zkv_get(db, ZKV_ROOT, key, strlen(key), &v) != ZKV_OK || v.type != ZKV_T_INT) return -1;
  return v.i;
}

static int wait_ok(pid_t pid) {
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return 0;
  if (WIFSIGNALED(st)) TH_NOTE("child died of signal %d", WTERMSIG(st));
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Issue 9.8: a child that uses a driver it inherited outside any lock hold
 * works as a process of its own: its own lock identity, no write lost while
 * the parent writes too. */
TEST(fork_child_uses_an_inherited_segment) {
  char name[64];
  seg_name(name, sizeof name, "fork");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 1 << 20;
  zkv_db *db = NULL;
  REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  CHECK_RC(zkv_incr(db, ZKV_ROOT, K("n"), 1, 0, NULL), ZKV_OK);   /* the lock was used here */
  const int N = th_light() ? 2000 : 20000;
  pid_t pid = fork();
  if (pid == 0) {
    int bad = 0;
    for (int i = 0; i < N; i++) bad += zkv_incr(db, ZKV_ROOT, K("n"), 1, 0, NULL) != ZKV_OK;
    /* a transaction of the child's own */
    bad += zkv_begin(db) != ZKV_OK;
    bad += zkv_incr(db, ZKV_ROOT, K("c"), 5, 0, NULL) != ZKV_OK;
    bad += zkv_commit(db) != ZKV_OK;
    zkv_close(db);
    _exit(bad ? 1 : 0);
  }
  int bad = 0;
  for (int i = 0; i < N; i++) bad += zkv_incr(db, ZKV_ROOT, K("n"), 1, 0, NULL) != ZKV_OK;
  CHECK_EQ(bad, 0);
  CHECK(wait_ok(pid));
  CHECK_EQ(get_int(db, "n"), 2 * N + 1);
  CHECK_EQ(get_int(db, "c"), 5);
  const char *why = NULL;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(db);
  CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}

/* a memory store is copied by fork: the child's copy works, apart */
TEST(fork_child_uses_a_copy_of_a_memory_store) {
  zkv_db *db = NULL;
  REQUIRE_RC(zkv_open_memory(NULL, &db), ZKV_OK);
  CHECK_RC(zkv_incr(db, ZKV_ROOT, K("n"), 1, 0, NULL), ZKV_OK);
  pid_t pid = fork();
  if (pid == 0) {
    int bad = zkv_incr(db, ZKV_ROOT, K("n"), 10, 0, NULL) != ZKV_OK || get_int(db, "n") != 11;
    zkv_close(db);
    _exit(bad);
  }
  CHECK(wait_ok(pid));
  CHECK_EQ(get_int(db, "n"), 1);
  zkv_close(db);
}

/* Issue 9.8: fork inside a transaction.  The child is refused (ZKV_EFORKED)
 * for every call, writes and reads alike, and writes nothing: before, its
 * writes returned ZKV_OK, made without the lock, and were lost.  A fresh
 * handle in the child waits for the lock like any other process. */
static void fork_inside_txn(int shared) {
  char name[64];
  seg_name(name, sizeof name, "forktxn");
  zkv_options o;
  zkv_options_init(&o);
  o.size = 1 << 20;
  zkv_db *db = NULL;
  if (shared) REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
  else REQUIRE_RC(zkv_open_memory(NULL, &db), ZKV_OK);
  CHECK_RC(zkv_incr(db, ZKV_ROOT, K("n"), 1, 0, NULL), ZKV_OK);
  REQUIRE_RC(zkv_begin(db), ZKV_OK);
  CHECK_RC(zkv_incr(db, ZKV_ROOT, K("n"), 1, 0, NULL), ZKV_OK);
  pid_t pid = fork();
  if (pid == 0) {
    int bad = 0;
    zkv_value v;
    bad += zkv_incr(db, ZKV_ROOT, K("n"), 100, 0, NULL) != ZKV_EFORKED;
    bad += zkv_incr(db, ZKV_ROOT, K("child"), 1, 0, NULL) != ZKV_EFORKED;
    bad += zkv_get(db, ZKV_ROOT, K("n"), &v) != ZKV_EFORKED;
    bad += zkv_begin(db) != ZKV_EFORKED;
    bad += zkv_commit(db) != ZKV_EFORKED;
    bad += zkv_rollback(db) != ZKV_EFORKED;
    bad += zkv_txn_depth(db) != 0;
    bad += zkv_errclass(ZKV_EFORKED) != ZKV_CLASS_STORE_OPERATION_FAILED;
    zkv_close(db);   /* touches nothing of the parent's */
    if (shared) {
      zkv_db *fresh = NULL;
      zkv_options_init(&o);
      o.lock_timeout = 0.2;
      bad += zkv_open_shared(name, &o, &fresh) != ZKV_OK;
      /* the parent holds the lock: a write waits, and times out */
      bad += zkv_incr(fresh, ZKV_ROOT, K("child"), 1, 0, NULL) != ZKV_ETIMEDOUT;
      zkv_close(fresh);
    }
    _exit(bad);
  }
  CHECK(wait_ok(pid));
  CHECK_EQ(zkv_txn_depth(db), 1);
  CHECK_RC(zkv_commit(db), ZKV_OK);
  CHECK_EQ(get_int(db, "n"), 2);
  CHECK_EQ(get_int(db, "child"), -1);
  const char *why = NULL;
  CHECK_RC(zkv_verify(db, &why), ZKV_OK);
  zkv_close(db);
  if (shared) CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
}
TEST(fork_inside_txn_shared) { fork_inside_txn(1); }
TEST(fork_inside_txn_memory) { fork_inside_txn(0); }

struct holder {
  zkv_db *db;
  int fd_in, fd_out;
};

/* holds the store (a transaction) until told to let go */
static void *hold_store(void *arg) {
  struct holder *h = arg;
  char c = 0;
  if (zkv_begin(h->db) != ZKV_OK) c = 'x';
  zkv_incr(h->db, ZKV_ROOT, K("t"), 1, 0, NULL);
  if (write(h->fd_out, &c, 1) != 1) return NULL;
  if (read(h->fd_in, &c, 1) != 1) return NULL;
  zkv_commit(h->db);
  return NULL;
}

/* another thread holds a ZKV_THREADSAFE memory store (or a shared segment)
 * at the fork: the child is refused instead of waiting forever for a mutex
 * whose holder does not exist there */
static void fork_while_thread_holds(int shared) {
  char name[64];
  seg_name(name, sizeof name, "forkthr");
  zkv_options o;
  zkv_options_init(&o);
  o.flags = ZKV_THREADSAFE;
  o.size = 1 << 20;
  zkv_db *db = NULL, *db2 = NULL;
  if (shared) {
    REQUIRE_RC(zkv_open_shared(name, &o, &db), ZKV_OK);
    REQUIRE_RC(zkv_open_shared(name, &o, &db2), ZKV_OK);
  } else {
    REQUIRE_RC(zkv_open_memory(&o, &db), ZKV_OK);
    db2 = db;
  }
  int to_thr[2], from_thr[2];
  REQUIRE(pipe(to_thr) == 0 && pipe(from_thr) == 0);
  struct holder h = {db2, to_thr[0], from_thr[1]};
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, hold_store, &h) == 0);
  char c = 'x';
  CHECK(read(from_thr[0], &c, 1) == 1 && c == 0);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(20);
    int bad = zkv_incr(db, ZKV_ROOT, K("n"), 1, 0, NULL) != ZKV_EFORKED;
    zkv_close(db);
    _exit(bad);
  }
  CHECK(wait_ok(pid));
  CHECK(write(to_thr[1], &c, 1) == 1);
  pthread_join(th, NULL);
  CHECK_RC(zkv_incr(db, ZKV_ROOT, K("n"), 1, 0, NULL), ZKV_OK);
  CHECK_EQ(get_int(db, "t"), 1);
  CHECK_EQ(get_int(db, "n"), 1);
  if (shared) zkv_close(db2);
  zkv_close(db);
  if (shared) CHECK_RC(zkv_unlink(name, NULL), ZKV_OK);
  close(to_thr[0]);
  close(to_thr[1]);
  close(from_thr[0]);
  close(from_thr[1]);
}
TEST(fork_while_a_thread_holds_memory) { fork_while_thread_holds(0); }
TEST(fork_while_a_thread_holds_shared) { fork_while_thread_holds(1); }

TEST(zz_no_leftover_files) { CHECK_EQ(count_files(th_dir), 0); }

