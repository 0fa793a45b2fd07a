/*
 * arena.c -- where a store lives: private growable mappings (memory driver)
 * and named shared-memory segments (shared driver); opening, checking,
 * creating without races, closing.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define MEM_INITIAL 8192u
/* the header and the first index fit */
_Static_assert(sizeof(hdr) + 4096 <= MEM_INITIAL, "MEM_INITIAL too small for the header");

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* the last failed system call of this thread, for zkv_errdetail */
static _Thread_local char sys_detail[4400];
static _Thread_local int sys_errno;

/* note that `call` on `path` failed (errno); returns ZKV_EIO */
static int sys_fail(const char *call, const char *path) {
  int e = errno;
  snprintf(sys_detail, sizeof sys_detail, "%s %s: %s", call, path, strerror(e));
  sys_errno = e;
  return ZKV_EIO;
}

const char *zkv_errdetail(int *err) {
  if (err) *err = sys_errno;
  return sys_detail;
}

void zkv_options_init(zkv_options *o) {
  memset(o, 0, sizeof *o);
  o->gc_interval = 60;
  o->size = 64ull << 20;
  o->max_bytes = 0;
  o->evict = ZKV_EVICT_NONE;
  o->mode = 0600;
  o->lock_timeout = 5;
}

/* fields a driver does not use are not checked (the header says ignored) */
static int check_options(const zkv_options *o, int shared) {
  if (!isfinite(o->gc_interval) || o->gc_interval < 0) return ZKV_EINVAL;
  if (o->evict != ZKV_EVICT_NONE && o->evict != ZKV_EVICT_LRU) return ZKV_EINVAL;
  if (shared && (!isfinite(o->lock_timeout) || o->lock_timeout < 0)) return ZKV_EINVAL;
  if (shared && o->mode > 07777) return ZKV_EINVAL;
  return ZKV_OK;
}

static zkv_db *new_handle(const zkv_options *o) {
  zkv_db *db = calloc(1, sizeof *db);
  if (!db) return NULL;
  db->gc_interval_ms = (int64_t)(o->gc_interval * 1000.0);
  db->lock_timeout_ms = (int64_t)(o->lock_timeout * 1000.0);
  return db;
}

/* lay out an empty store in s->base (size bytes), log region of log_cap */
static int init_arena(zkv_db *db, uint64_t size, uint64_t log_cap, const zkv_options *o) {
  seg *s = db->s;
  hdr *h = H(s);
  memset(h, 0, sizeof *h);
  memcpy(h->magic, ZKV_MAGIC, 8);
  h->format = ZKV_FORMAT;
  h->hdr_bytes = sizeof(hdr);
  h->size = size;
  h->evict = (uint32_t)o->evict;
  h->shared = (uint32_t)s->shared;
  h->log_off = round_up(sizeof(hdr), 64);
  h->log_cap = log_cap;
  h->heap_start = h->log_off + log_cap;
  h->capacity = s->shared ? size : o->max_bytes;
  h->gc_next_ms = clock_ms() + db->gc_interval_ms;
  blk_init(s);
  sigjmp_buf jb;
  s->jb = &jb;
  int rc = sigsetjmp(jb, 0);
  if (rc == 0) idx_init(db);
  s->jb = NULL;
  return rc;
}

/* ---- memory driver ------------------------------------------------------- */

int zkv_open_memory(const zkv_options *opts, zkv_db **out) {
  zkv_options d;
  if (!out) return ZKV_EINVAL;
  *out = NULL;
  if (!opts) { zkv_options_init(&d); opts = &d; }
  int rc = check_options(opts, 0);
  if (rc) return rc;
  zkv_db *db = new_handle(opts);
  seg *s = calloc(1, sizeof *s);
  if (!db || !s) { free(db); free(s); return ZKV_ENOMEM; }
  db->s = s;
  s->refs = 1;
  s->threadsafe = (opts->flags & ZKV_THREADSAFE) != 0;
  s->time_holds = (opts->flags & ZKV_TIME_HOLDS) != 0;
  if (s->threadsafe) pthread_mutex_init(&s->tlock, NULL);
  s->rng = (uint64_t)(uintptr_t)s ^ (uint64_t)clock_ns();
  void *m = mmap(NULL, MEM_INITIAL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) { free(db); free(s); return ZKV_ENOMEM; }
  s->base = m;
  s->mapped = MEM_INITIAL;
  rc = init_arena(db, MEM_INITIAL, 0, opts);
  if (rc) { zkv_close(db); return rc == ZKV_EFULL ? ZKV_EFULL : ZKV_ENOMEM; }
  *out = db;
  return ZKV_OK;
}

/* grow a private arena to hold at least need bytes; offsets keep their meaning
 * wherever mremap puts it */
int arena_grow(seg *s, uint64_t need) {
  uint64_t n = s->mapped * 2;
  if (n < need) n = round_up(need, 4096);
  if (n > s->mapped * 2 + (64ull << 20) && need < s->mapped + (64ull << 20))
    n = round_up(need, 4096);  /* past 64 MiB, grow by at most 64 MiB + what was asked */
  void *m = mremap(s->base, s->mapped, n, MREMAP_MAYMOVE);
  if (m == MAP_FAILED) return ZKV_ENOMEM;
  s->base = m;
  s->mapped = n;
  H(s)->size = n;
  return ZKV_OK;
}

/* ---- shared driver ------------------------------------------------------- */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static seg *registry;

int zkv_segment_name_ok(const char *name, size_t len) {
  if (!name || len == 0 || len > ZKV_MAX_NAME) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

static int name_ok(const char *name) { return name && zkv_segment_name_ok(name, strlen(name)); }

static int seg_path(const char *name, char *buf, size_t cap, const char *prefix) {
  const char *dir = getenv("ZELTKV_SHM_DIR");
  if (!dir || !*dir) dir = "/dev/shm";
  int n = snprintf(buf, cap, "%s/%szeltkv-%s", dir, prefix, name);
  return n > 0 && (size_t)n < cap;
}

/* the checks a segment passes before anything in it is followed */
int arena_validate(const hdr *h, uint64_t file_size) {
  if (file_size < sizeof(hdr)) return ZKV_ECORRUPT;
  if (memcmp(h->magic, ZKV_MAGIC, 8) != 0) return ZKV_ECORRUPT;
  if (h->format != ZKV_FORMAT) return ZKV_EVERSION;
  if (h->hdr_bytes != sizeof(hdr) || h->size != file_size || !h->shared) return ZKV_ECORRUPT;
  if (atomic_load(&h->ready) != 1) return ZKV_ECORRUPT;
  if (h->log_off < sizeof(hdr) || h->log_cap > file_size || h->log_used > h->log_cap ||
      h->log_off + h->log_cap != h->heap_start || h->heap_start > h->top ||
      h->top > file_size || (h->top & 7) || (h->heap_start & 7) || (h->log_off & 7))
    return ZKV_ECORRUPT;
  if (h->evict > ZKV_EVICT_LRU || h->nb_log2 > 30 || h->bytes_used > file_size ||
      h->dead_next >= NDEAD || h->dead_bytes > h->bytes_used ||
      h->lgarb_units > h->bytes_used / UNIT || h->dead_bytes + h->lgarb_units * UNIT > h->bytes_used ||
      (h->dead_ring && ((uint64_t)h->dead_ring * UNIT < h->heap_start ||
                        (uint64_t)h->dead_ring * UNIT + RING_OFF + NDEAD * 4 > h->top)))
    return ZKV_ECORRUPT;
  uint64_t b = (uint64_t)h->buckets * UNIT, nb = 1ull << (h->nb_log2 & 31);  /* nb_log2 <= 30 checked above */
  if (b < h->heap_start || b + BUCKETS_OFF + nb * 4 > h->top) return ZKV_ECORRUPT;
  uint64_t ob = (uint64_t)h->obuckets * UNIT;   /* a growing index's old array: half the size */
  if (h->obuckets && (h->nb_log2 == 0 || ob < h->heap_start || ob + BUCKETS_OFF + nb * 2 > h->top ||
                      h->ocursor > nb / 2))
    return ZKV_ECORRUPT;
  uint64_t r = (uint64_t)h->root_ns * UNIT;
  if (r < h->heap_start || r + NS_DATA_OFF + sizeof(nsdata) > h->top) return ZKV_ECORRUPT;
  return ZKV_OK;
}

static int create_segment(const char *name, const zkv_options *o, const char *path) {
  char tmp[4200];
  char pfx[64];
  snprintf(pfx, sizeof pfx, ".tmp%ld-%lx-", (long)getpid(), (unsigned long)clock_ns());
  if (!seg_path(name, tmp, sizeof tmp, pfx)) return ZKV_EINVAL_KEY;
  uint64_t size = round_up(o->size, 4096);
  if (size < 65536) size = 65536;
  int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, o->mode & 0777);
  if (fd < 0) return sys_fail("create", tmp);
  int rc;
  if (fchmod(fd, o->mode & 07777) != 0) { rc = sys_fail("fchmod", tmp); goto fail; }
  if (ftruncate(fd, (off_t)size) != 0) { rc = sys_fail("ftruncate", tmp); goto fail; }
  void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) { rc = sys_fail("mmap", tmp); goto fail; }
  {
    zkv_db tmpdb;
    seg s;
    memset(&tmpdb, 0, sizeof tmpdb);
    memset(&s, 0, sizeof s);
    s.base = m;
    s.mapped = size;
    s.shared = 1;
    tmpdb.s = &s;
    tmpdb.gc_interval_ms = (int64_t)(o->gc_interval * 1000.0);
    uint64_t log_cap = round_up(size / 16, 8);
    if (log_cap < 32768) log_cap = 32768;
    if (log_cap > (64ull << 20)) log_cap = 64ull << 20;
    rc = init_arena(&tmpdb, size, log_cap, o);
    hdr *h = (hdr *)m;
    atomic_store(&h->lock, 0);
    atomic_store(&h->seq, 0);
    atomic_store(&h->ready, 1);
    munmap(m, size);
    if (rc) goto fail;
  }
  close(fd);
  /* publish the finished segment under its name in one step: nobody ever
   * opens a half-made one, and a racing creator that loses just opens ours */
  if (link(tmp, path) != 0) {
    rc = errno == EEXIST ? ZKV_EXISTS : sys_fail("link", path);
    unlink(tmp);
    return rc;
  }
  unlink(tmp);
  return ZKV_OK;
fail:
  close(fd);
  unlink(tmp);
  return rc;
}

int zkv_open_shared(const char *name, const zkv_options *opts, zkv_db **out) {
  zkv_options d;
  char path[4200];
  if (!out) return ZKV_EINVAL;
  *out = NULL;
  if (!name_ok(name)) return ZKV_EINVAL_KEY;
  if (!opts) { zkv_options_init(&d); opts = &d; }
  int rc = check_options(opts, 1);
  if (rc) return rc;
  if (!seg_path(name, path, sizeof path, "")) return ZKV_EINVAL_KEY;
  int fd = -1;
  for (int tries = 0; tries < 10 && fd < 0; tries++) {
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT) break;
    rc = create_segment(name, opts, path);
    if (rc != ZKV_OK && rc != ZKV_EXISTS) return rc;
  }
  if (fd < 0) return sys_fail("open", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = sys_fail("fstat", path);
    close(fd);
    return rc;
  }
  zkv_db *db = new_handle(opts);
  if (!db) { close(fd); return ZKV_ENOMEM; }
  pthread_mutex_lock(&registry_lock);
  seg *s;
  for (s = registry; s; s = s->next)
    if (s->dev == (unsigned long)st.st_dev && s->ino == (unsigned long)st.st_ino) break;
  if (s) {
    s->refs++;
  } else {
    rc = ZKV_ECORRUPT;
    if ((uint64_t)st.st_size < sizeof(hdr)) goto bad;
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
      rc = sys_fail("mmap", path);
      goto bad;
    }
    rc = arena_validate((hdr *)m, (uint64_t)st.st_size);
    if (rc) { munmap(m, (size_t)st.st_size); goto bad; }
    s = calloc(1, sizeof *s);
    rc = ZKV_ENOMEM;
    if (!s) { munmap(m, (size_t)st.st_size); goto bad; }
    s->base = m;
    s->mapped = (uint64_t)st.st_size;
    s->shared = 1;
    s->refs = 1;
    s->dev = (unsigned long)st.st_dev;
    s->ino = (unsigned long)st.st_ino;
    s->rng = (uint64_t)clock_ns() ^ ((uint64_t)getpid() << 32);
    s->next = registry;
    registry = s;
  }
  if (opts->flags & ZKV_TIME_HOLDS) s->time_holds = 1;
  pthread_mutex_unlock(&registry_lock);
  close(fd);
  db->s = s;
  *out = db;
  return ZKV_OK;
bad:
  pthread_mutex_unlock(&registry_lock);
  close(fd);
  free(db);
  return rc;
}

int zkv_unlink(const char *name, int *existed) {
  char path[4200];
  if (existed) *existed = 0;
  if (!name_ok(name)) return ZKV_EINVAL_KEY;
  if (!seg_path(name, path, sizeof path, "")) return ZKV_EINVAL_KEY;
  if (unlink(path) == 0) {
    if (existed) *existed = 1;
    return ZKV_OK;
  }
  return errno == ENOENT ? ZKV_OK : sys_fail("unlink", path);
}

void zkv_close(zkv_db *db) {
  if (!db) return;
  seg *s = db->s;
  if (!db->closed && s) {
    /* the transaction levels this handle opened and left open are rolled
     * back; levels of other handles on the same segment are theirs */
    while (db->txn_levels > 0 && s->txn_depth > 0 && seg_owned(s)) zkv_rollback(db);
  }
  db->closed = 1;
  if (s) {
    if (s->shared) {
      pthread_mutex_lock(&registry_lock);
      if (--s->refs == 0) {
        seg **pp = &registry;
        while (*pp && *pp != s) pp = &(*pp)->next;
        if (*pp) *pp = s->next;
        munmap(s->base, s->mapped);
        free(s->pend);
        free(s->move);
        free(s->txn_marks);
        free(s);
      }
      pthread_mutex_unlock(&registry_lock);
    } else if (--s->refs == 0) {
      munmap(s->base, s->mapped);
      free(s->mlog);
      free(s->pend);
      free(s->move);
      free(s->txn_marks);
      if (s->threadsafe) pthread_mutex_destroy(&s->tlock);
      free(s);
    }
  }
  free(db->buf);
  free(db);
}

int zkv_is_shared(const zkv_db *db) { return db && db->s && db->s->shared; }
