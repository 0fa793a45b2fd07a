/*
 * arena.c -- where a store lives: private growable mappings (memory driver)
 * and named shared-memory segments (shared driver): their files, mapping,
 * checking, creating without races, growing, unmapping.  It calls nothing of
 * the engine but the clock: the store inside is open.c's.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "internal.h"

#define MEM_INITIAL 8192u
/* the header and the first index fit */
_Static_assert(sizeof(hdr) + 4096 <= MEM_INITIAL, "MEM_INITIAL too small for the header");

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* ---- what went wrong ------------------------------------------------------ */

/* The detail of this thread's last failure that had one, for zkv_errdetail: a
 * system call (the call, the path, the system's message), or why an open was
 * refused (the room missing, a missing segment, a size or policy that does
 * not match): a result code alone cannot say which file or which limit it was
 * about.  The open and unlink calls clear it when they start. */
#define DETAIL_CAP 4400
/* The buffer is allocated per thread when first needed: a large _Thread_local
 * array would not fit the static TLS a dlopen()ed module gets (the module has
 * initial-exec TLS for the lock's hot path, txn.c), and fails to load. */
static _Thread_local char *sys_detail;
static _Thread_local int sys_errno;
static pthread_key_t detail_key;
static pthread_once_t detail_once = PTHREAD_ONCE_INIT;
/* at the thread's end; a later destructor that fails a call makes a new one */
static void detail_free(void *p) {
  free(p);
  sys_detail = NULL;
}
static void detail_key_init(void) { pthread_key_create(&detail_key, detail_free); }

const char *zkv_errdetail(int *err) {
  if (err) *err = sys_errno;
  return sys_detail ? sys_detail : "";
}

void arena_detail_clear(void) {
  if (sys_detail) sys_detail[0] = '\0';
  sys_errno = 0;
}

/* note the detail of a failure; err: the errno it stands for (0: none) */
void arena_detail(int err, const char *fmt, ...) {
  sys_errno = err;
  if (!sys_detail) {
    pthread_once(&detail_once, detail_key_init);
    sys_detail = malloc(DETAIL_CAP);
    if (!sys_detail) return;   /* no detail then, only the code */
    pthread_setspecific(detail_key, sys_detail);   /* freed when the thread ends */
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sys_detail, DETAIL_CAP, fmt, ap);
  va_end(ap);
}

/* note that `call` on `path` failed (errno, kept); returns ZKV_EIO */
static int sys_fail(const char *call, const char *path) {
  int e = errno;
  arena_detail(e, "%s %s: %s", call, path, strerror(e));
  errno = e;
  return ZKV_EIO;
}

/* "64.0 MiB": sizes in messages */
static const char *fmt_bytes(uint64_t n, char buf[32]) {
  static const char *unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 5) { v /= 1024; u++; }
  if (u == 0) snprintf(buf, 32, "%llu bytes", (unsigned long long)n);
  else snprintf(buf, 32, "%.1f %s", v, unit[u]);
  return buf;
}

/* a new private arena of MEM_INITIAL bytes in s */
int arena_map_memory(seg *s) {
  void *m = mmap(NULL, MEM_INITIAL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return ZKV_ENOMEM;
  s->base = m;
  s->mapped = MEM_INITIAL;
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

/* the directory of a segment: the dir option, else $ZELTKV_SHM_DIR, else /dev/shm */
static const char *seg_dir(const zkv_options *o) {
  if (o && o->dir && *o->dir) return o->dir;
  const char *dir = getenv("ZELTKV_SHM_DIR");
  return dir && *dir ? dir : "/dev/shm";
}

static int seg_path(const char *dir, const char *name, char *buf, size_t cap, const char *prefix) {
  int n = snprintf(buf, cap, "%s/%s" SEG_PREFIX "%s", dir, prefix, name);
  if (n > 0 && (size_t)n < cap) return 1;
  arena_detail(ENAMETOOLONG, "the segment path in directory %.200s... is too long", dir);
  return 0;
}

/* the checks a segment passes before anything in it is followed; the file may
 * be longer than the segment (a growth that died before it was recorded) */
int arena_validate(const hdr *h, uint64_t file_size) {
  if (file_size < sizeof(hdr)) return ZKV_ECORRUPT;
  if (memcmp(h->magic, ZKV_MAGIC, 8) != 0) return ZKV_ECORRUPT;
  if (h->format != ZKV_FORMAT) return ZKV_EVERSION;
  if (h->hdr_bytes != sizeof(hdr) || h->size > file_size || h->size < sizeof(hdr) || !h->shared)
    return ZKV_ECORRUPT;
  if (atomic_load(&h->ready) != 1) return ZKV_ECORRUPT;
  uint64_t size = h->size;
  /* a log that spilled into chunks may be longer than the fixed region (a
   * dead holder's: recovery checks each chunk before it reads it); a
   * committed log's window is the fixed region (txn.c, release) */
  if (h->log_off < SLOTS_OFF + SLOTS_BYTES || h->log_cap > size ||
      (!h->log_chunk && h->log_used > h->log_cap) ||
      (!h->log_used && (h->log_bias != h->log_off || h->log_end != h->log_cap)) ||
      h->log_off + h->log_cap != h->heap_start || h->heap_start > h->top ||
      h->top > size || (h->top & 7) || (h->heap_start & 7) || (h->log_off & 7))
    return ZKV_ECORRUPT;
  if ((h->log_chunk && ((uint64_t)h->log_chunk * UNIT < h->heap_start ||
                        (uint64_t)h->log_chunk * UNIT + LOG_CHUNK_HDR > h->top)) ||
      (h->log_spare && ((uint64_t)h->log_spare * UNIT < h->heap_start ||
                        (uint64_t)h->log_spare * UNIT + LOG_CHUNK_HDR > h->top)) ||
      (h->log_ahead && ((uint64_t)h->log_ahead * UNIT < h->heap_start ||
                        (uint64_t)h->log_ahead * UNIT + LOG_CHUNK_HDR > h->top)))
    return ZKV_ECORRUPT;
  if (h->evict > ZKV_EVICT_LRU || h->nb_log2 > 30 || h->bytes_used > size ||
      h->dead_next >= NDEAD || h->dead_bytes > h->bytes_used ||
      h->lgarb_units > h->bytes_used / UNIT || h->dead_bytes + h->lgarb_units * UNIT > h->bytes_used ||
      (h->dead_ring && ((uint64_t)h->dead_ring * UNIT < h->heap_start ||
                        (uint64_t)h->dead_ring * UNIT + RING_OFF + NDEAD * 4 > h->top)))
    return ZKV_ECORRUPT;
  uint64_t b = (uint64_t)h->buckets * UNIT, nb = 1ull << (h->nb_log2 & 31);  /* nb_log2 <= 30 checked above */
  if (b < h->heap_start || b + BUCKETS_OFF + nb * 4 > h->top) return ZKV_ECORRUPT;
  if (h->room_res && ((uint64_t)h->room_res * UNIT < h->heap_start ||
                      (uint64_t)h->room_res * UNIT + 8 > h->top))
    return ZKV_ECORRUPT;
  uint64_t ob = (uint64_t)h->obuckets * UNIT;   /* growing: half the size; moving: the same */
  if (h->obuckets && (h->nb_log2 == 0 || ob < h->heap_start ||
                      ob + BUCKETS_OFF + OLD_NB(h, nb) * 4 > h->top || !OCURSOR_OK(h, nb)))
    return ZKV_ECORRUPT;
  uint64_t r = (uint64_t)h->root_ns * UNIT;
  if (r < h->heap_start || r + NS_DATA_OFF + sizeof(nsdata) > h->top) return ZKV_ECORRUPT;
  return ZKV_OK;
}

/* Give the file fd `size` bytes of real room (tmpfs pages, disk blocks) now, so
 * that a segment never meets a full filesystem later: writing a page the
 * filesystem cannot back kills the process with SIGBUS.  `have` bytes of it
 * are reserved already. */
static int reserve_room(int fd, const char *path, uint64_t size, uint64_t have) {
  char a[32], b[32];
  struct statvfs v;
  if (size > have && fstatvfs(fd, &v) == 0) {
    uint64_t room = (uint64_t)v.f_bavail * v.f_frsize;
    if (room < size - have) goto no_room;
  }
  int e = posix_fallocate(fd, 0, (off_t)size);
  if (e == 0) return ZKV_OK;
  if (e != ENOSPC && e != EFBIG) {
    errno = e;
    return sys_fail("posix_fallocate", path);
  }
no_room:
  if (fstatvfs(fd, &v) != 0) memset(&v, 0, sizeof v);
  arena_detail(ENOSPC, "%s: no room for a segment of %s: %s free in its filesystem", path,
             fmt_bytes(size, a), fmt_bytes((uint64_t)v.f_bavail * v.f_frsize, b));
  errno = ENOSPC;
  return ZKV_EIO;
}

/* the bytes of a segment asked to hold `size`: whole 4 KiB pages, 64 KiB at least */
static uint64_t seg_bytes(uint64_t size) {
  uint64_t n = round_up(size, 4096);
  return n < 65536 ? 65536 : n;
}

/* Temporary files.  A segment is built where nobody can open it and linked
 * under its name once complete.  Where the filesystem has O_TMPFILE the file
 * has no name at all, so a creator killed half-way leaves nothing behind.
 * Elsewhere it is ".tmpPID-STAMP-zeltkv-NAME" in the same directory (older
 * versions always did that), and the next creator of NAME removes those whose
 * process is gone. */
static void remove_stale_temps(const char *dir, const char *name) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *p = e->d_name;
    if (strncmp(p, ".tmp", 4) != 0) continue;
    char *end;
    long pid = strtol(p + 4, &end, 10);
    if (pid <= 0 || end == p + 4 || *end != '-') continue;
    p = end + 1;
    while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')) p++;
    if (*p != '-' || strncmp(p + 1, SEG_PREFIX, strlen(SEG_PREFIX)) != 0 ||
        strcmp(p + 1 + strlen(SEG_PREFIX), name) != 0)
      continue;
    /* a live process (or one we may not signal) may still be building it */
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    unlinkat(dirfd(d), e->d_name, 0);
  }
  closedir(d);
}

void (*arena_test_create_hook)(void);
static _Atomic int no_tmpfile_link;   /* linking an O_TMPFILE failed here once: name them */

/* an unnamed file in dir (fd), or -1 with errno when the filesystem has none */
static int open_unnamed(const char *dir, unsigned mode) {
  if (atomic_load_explicit(&no_tmpfile_link, memory_order_relaxed)) {
    errno = EOPNOTSUPP;
    return -1;
  }
  return open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode & 0777);
}

/* give the unnamed file fd the name path: 0, or -1 with errno */
static int link_unnamed(int fd, const char *path) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0) return 0;
  if (errno == EEXIST) return -1;
  /* no /proc: linking the descriptor itself needs CAP_DAC_READ_SEARCH */
  return linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH);
}

/* create the segment `path` (absent a moment ago): ZKV_OK, ZKV_EXISTS when
 * another creator published one first, or an error */
static int create_segment(const char *dir, const char *name, const zkv_options *o,
                          const char *path, arena_layout_fn *layout) {
  char tmp[PATH_CAP], a[32];
  uint64_t size = seg_bytes(o->size ? o->size : ZKV_DEFAULT_SIZE);
  remove_stale_temps(dir, name);
  int fd = open_unnamed(dir, o->mode);
  int named = fd < 0;
  if (named) {
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return sys_fail("open", dir);
    char pfx[64];
    snprintf(pfx, sizeof pfx, ".tmp%ld-%lx-", (long)getpid(), (unsigned long)clock_ns());
    if (!seg_path(dir, name, tmp, sizeof tmp, pfx)) return ZKV_EINVAL_KEY;
    fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, o->mode & 0777);
    if (fd < 0) return sys_fail("open", tmp);
  }
  int rc;
  if (fchmod(fd, o->mode & 07777) != 0) {
    rc = sys_fail("fchmod", named ? tmp : path);
    goto fail;
  }
  rc = reserve_room(fd, path, size, 0);
  if (rc) goto fail;
  void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    rc = sys_fail("mmap", path);
    goto fail;
  }
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
    rc = layout(&tmpdb, size, log_cap, o);
    hdr *h = (hdr *)m;
    atomic_store(&h->lock, 0);
    atomic_store(&h->seq, 0);
    atomic_store(&h->ready, 1);
    munmap(m, size);
    if (rc) {
      arena_detail(0, "%s: a size of %s cannot hold a store", path, fmt_bytes(size, a));
      goto fail;
    }
  }
  if (arena_test_create_hook) arena_test_create_hook();
  /* publish the finished segment under its name in one step: nobody ever
   * opens a half-made one, and a racing creator that loses just opens ours */
  if (named ? link(tmp, path) != 0 : link_unnamed(fd, path) != 0) {
    if (errno == EEXIST) {
      rc = ZKV_EXISTS;
    } else if (!named) {
      /* this filesystem makes unnamed files it cannot link: name them */
      atomic_store(&no_tmpfile_link, 1);
      close(fd);
      return create_segment(dir, name, o, path, layout);
    } else {
      rc = sys_fail("link", path);
    }
    goto fail;
  }
  rc = ZKV_OK;
fail:
  close(fd);
  if (named) unlink(tmp);
  return rc;
}

/* Map a segment file of file_size bytes.  Address space is reserved for the
 * largest segment, so that a segment that grows only needs the file mapped
 * further into the reservation (MAP_FIXED) and its base address never changes
 * under readers that hold no lock.  The part past the end of the file is an
 * inaccessible anonymous mapping, not the file: a stray access there is a
 * SIGSEGV rather than a SIGBUS, and tools that read every readable page
 * (valgrind's leak check, core dumps) do not fault on each word of it (a
 * forked child under valgrind took hours to exit so).  Where the address space
 * is short (an rlimit, a 39-bit arm64 kernel, valgrind), less is reserved. */
static void *map_segment(int fd, uint64_t file_size, uint64_t *reserved) {
  for (uint64_t r = ZKV_MAX_SEGMENT;; r /= 8) {
    if (r < file_size) r = file_size;
    void *m = mmap(NULL, r, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m != MAP_FAILED) {
      if (mmap(m, file_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == m) {
        *reserved = r;
        return m;
      }
      munmap(m, r);
    }
    if (r == file_size) return MAP_FAILED;
  }
}

/* Follow a segment that another process (or handle) grew: map the file further
 * into this process's reservation.  Called with the segment's lock held, before
 * anything past the old end is followed (txn.c, lock_shared): the grower
 * publishes the new size under the lock, after the file's room is reserved. */
int arena_follow(seg *s) {
  uint64_t size = H(s)->size;
  struct stat st;
  char a[32], b[32];
  if (size < s->mapped || size > ZKV_MAX_SEGMENT || (size & 4095) || fstat(s->fd, &st) != 0 ||
      (uint64_t)st.st_size < size)
    return ZKV_ECORRUPT;
  if (size > s->reserved) {
    /* only where address space was short when it was mapped (valgrind, rlimit) */
    arena_detail(ENOMEM, "%s: the segment grew to %s, past the %s of address space this process "
               "reserved for it: open it anew", s->path, fmt_bytes(size, a),
               fmt_bytes(s->reserved, b));
    return ZKV_ENOMEM;
  }
  /* from the page that holds the old end: offsets must be page-aligned, and
   * pages may be larger than the 4 KiB sizes are rounded to */
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t from = s->mapped / page * page;
  if (mmap(s->base + from, size - from, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, s->fd,
           (off_t)from) == MAP_FAILED)
    return sys_fail("mmap", s->path);
  s->mapped = size;
  return ZKV_OK;
}
static const char *open_what(int rc) {
  return rc == ZKV_EVERSION ? "a segment of another format version"
                            : "not a zeltkv segment, or truncated or damaged";
}

/* Open the file of segment `name` (a valid name), creating it when absent
 * (unless ZKV_OPEN_EXISTING), a new one's store laid out by `layout`: its
 * descriptor in *fd, its status in *st, its path in path (PATH_CAP bytes). */
int arena_open_file(const char *name, const zkv_options *opts, arena_layout_fn *layout,
                    char *path, int *fd_out, struct stat *st) {
  const char *dir = seg_dir(opts);
  if (!seg_path(dir, name, path, PATH_CAP, "")) return ZKV_EINVAL_KEY;
  if (opts->size > ZKV_MAX_SEGMENT) {
    char a[32], b[32];
    arena_detail(0, "%s: a size of %s is more than the largest segment, %s", path,
                 fmt_bytes(opts->size, a), fmt_bytes(ZKV_MAX_SEGMENT, b));
    return ZKV_EINVAL;
  }
  int fd = -1, rc;
  for (int tries = 0; tries < 10 && fd < 0; tries++) {
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) break;
    if (errno != ENOENT) return sys_fail("open", path);
    if (opts->flags & ZKV_OPEN_EXISTING) {
      arena_detail(ENOENT, "%s: no such segment (and create is off)", path);
      errno = ENOENT;
      return ZKV_EIO;
    }
    rc = create_segment(dir, name, opts, path, layout);
    if (rc != ZKV_OK && rc != ZKV_EXISTS) return rc;
  }
  if (fd < 0) return sys_fail("open", path);
  if (fstat(fd, st) != 0) {
    rc = sys_fail("fstat", path);
    close(fd);
    return rc;
  }
  /* the file's times say when a process last opened the segment (zkv list shows
   * it); nothing else sets them on tmpfs.  Best effort: a failure changes nothing. */
  (void)futimens(fd, NULL);
  *fd_out = fd;
  return ZKV_OK;
}

/* map the segment file fd (file_size bytes, at path) into s and check it */
int arena_map_shared(seg *s, int fd, uint64_t file_size, const char *path) {
  int rc = ZKV_ECORRUPT;
  uint64_t reserved = 0;
  if (file_size >= sizeof(hdr)) {
    void *m = map_segment(fd, file_size, &reserved);
    if (m == MAP_FAILED) return sys_fail("mmap", path);
    rc = arena_validate((hdr *)m, file_size);
    if (rc) {
      munmap(m, reserved);
    } else {
      s->base = m;
      s->mapped = ((hdr *)m)->size;
      s->reserved = reserved;
      s->shared = 1;
    }
  }
  if (rc == ZKV_ECORRUPT || rc == ZKV_EVERSION) arena_detail(0, "%s: %s", path, open_what(rc));
  return rc;
}

/* Room for an existing segment opened with the size option `size` (0: as it
 * is): *want is the size it must grow to (0: none), its file's room reserved
 * already.  A smaller size is refused (ZKV_EINVAL), never ignored. */
int arena_reserve(seg *s, uint64_t size, uint64_t *want) {
  char a[32], b[32];
  *want = 0;
  if (size == 0) return ZKV_OK;
  uint64_t w = seg_bytes(size), have = H(s)->size;
  if (w == have) return ZKV_OK;
  if (w < have) {
    arena_detail(0, "%s: the segment is %s: a size of %s is refused (a segment never shrinks)",
                 s->path, fmt_bytes(have, a), fmt_bytes(w, b));
    return ZKV_EINVAL;
  }
  if (w > s->reserved) {
    arena_detail(ENOMEM, "%s: cannot grow the segment to %s in this process: %s of address space was "
                 "reserved for it", s->path, fmt_bytes(w, a), fmt_bytes(s->reserved, b));
    return ZKV_ENOMEM;
  }
  /* the room first, without the lock (it can take a while for a large size):
   * the file grows, nothing in it is used past the old end until the new
   * size is published (open.c) */
  int rc = reserve_room(s->fd, s->path, w, have);
  if (!rc) *want = w;
  return rc;
}

/* unmap s's arena (the descriptor and path stay the caller's) */
void arena_unmap(seg *s) { munmap(s->base, s->shared ? s->reserved : s->mapped); }

int zkv_unlink_ex(const char *name, const zkv_options *opts, int *existed) {
  char path[PATH_CAP];
  if (existed) *existed = 0;
  arena_detail_clear();
  if (!name_ok(name)) return ZKV_EINVAL_KEY;
  const char *dir = seg_dir(opts);
  if (!seg_path(dir, name, path, sizeof path, "")) return ZKV_EINVAL_KEY;
  remove_stale_temps(dir, name);
  if (unlink(path) == 0) {
    if (existed) *existed = 1;
    return ZKV_OK;
  }
  return errno == ENOENT ? ZKV_OK : sys_fail("unlink", path);
}

int zkv_unlink(const char *name, int *existed) { return zkv_unlink_ex(name, NULL, existed); }
