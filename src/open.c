/*
 * open.c -- opening and closing stores: the options, a new store's layout
 * (the allocator's and the index's empty state), this process's registry of
 * segments, the counter slots, the fork handlers.  It sits above the
 * allocator, the index and the op frame, which it calls; the mappings and
 * files themselves are arena.c's.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ---- options and a new store ---------------------------------------------- */

void zkv_options_init(zkv_options *o) {
  memset(o, 0, sizeof *o);
  o->gc_interval = 60;
  o->size = 0;   /* ZKV_DEFAULT_SIZE when made; an existing segment as it is */
  o->max_bytes = 0;
  o->evict = ZKV_EVICT_DEFAULT;
  o->mode = 0600;
  o->lock_timeout = 5;
}

/* fields a driver does not use are not checked (the header says ignored) */
static int check_options(const zkv_options *o, int shared) {
  if (!isfinite(o->gc_interval) || o->gc_interval < 0) return ZKV_EINVAL;
  if (o->evict != ZKV_EVICT_DEFAULT && o->evict != ZKV_EVICT_NONE && o->evict != ZKV_EVICT_LRU)
    return ZKV_EINVAL;
  if (shared && (!isfinite(o->lock_timeout) || o->lock_timeout < 0)) return ZKV_EINVAL;
  if (shared && o->mode > 07777) return ZKV_EINVAL;
  return ZKV_OK;
}

static zkv_db *new_handle(const zkv_options *o) {
  zkv_db *db = calloc(1, sizeof *db);
  if (!db) return NULL;
  db->gc_interval_ms = (int64_t)(o->gc_interval * 1000.0);
  db->lock_timeout_ms = (int64_t)(o->lock_timeout * 1000.0);
  db->ctr = &db->own;
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
  h->evict = o->evict == ZKV_EVICT_LRU ? ZKV_EVICT_LRU : ZKV_EVICT_NONE;
  h->shared = (uint32_t)s->shared;
  h->log_off = s->shared ? SLOTS_OFF + SLOTS_BYTES : (sizeof(hdr) + 63) / 64 * 64;
  h->log_cap = log_cap;
  h->log_bias = h->log_off;   /* the window: the fixed region (format.h) */
  h->log_end = log_cap;
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

/* ---- the stores of this process ------------------------------------------ */

/* registry: the shared segments mapped (one seg per file, joined by every
 * handle on it); all_segs: every store, memory ones too, for fork */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static seg *registry, *all_segs;

/* ---- counter slots (format.h) ------------------------------------------- */

static ctr_slot *slots(seg *s) { return (ctr_slot *)(void *)(s->base + SLOTS_OFF); }

/* give db a free slot of its own (no lock: one compare-and-swap); 0 if none */
static int slot_take_free(zkv_db *db) {
  ctr_slot *sl = slots(db->s);
  uint32_t me = (uint32_t)getpid();
  for (unsigned i = 1; i < NSLOTS; i++) {
    uint32_t z = 0;
    if (atomic_load_explicit(&sl[i].pid, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong(&sl[i].pid, &z, me)) {
      db->ctr = &sl[i];
      db->ctr_shared = 0;
      return 1;
    }
  }
  return 0;
}

/* lock held: add a slot's counts to the retired ones and empty it */
static void slot_fold(hdr *h, ctr_slot *c) {
  h->retired_hits += atomic_exchange(&c->hits, 0);
  h->retired_misses += atomic_exchange(&c->misses, 0);
}

/* a slot for a new handle: a free one, else one whose process died (folded
 * under the lock), else slot 0, shared */
static void slot_claim(zkv_db *db) {
  if (slot_take_free(db)) return;
  ctr_slot *sl = slots(db->s);
  if (op_enter(db) == ZKV_OK) {
    for (unsigned i = 1; i < NSLOTS && db->ctr == &db->own; i++) {
      uint32_t pid = atomic_load(&sl[i].pid);
      if (pid == 0 || pid == (uint32_t)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
        continue;
      slot_fold(H(db->s), &sl[i]);
      atomic_store(&sl[i].pid, (uint32_t)getpid());
      db->ctr = &sl[i];
    }
    op_leave(db, ZKV_OK);
  }
  if (db->ctr == &db->own) {
    db->ctr = &sl[0];
    db->ctr_shared = 1;
  }
}

/* at close: the counts stay in the segment, the slot is free again */
static void slot_release(zkv_db *db) {
  if (db->ctr == &db->own || db->ctr_shared) return;
  if (op_enter(db) != ZKV_OK) return;   /* kept until this process is gone */
  slot_fold(H(db->s), db->ctr);
  atomic_store(&db->ctr->pid, 0);
  op_leave(db, ZKV_OK);
  db->ctr = &db->own;
}

void open_count_reads(zkv_db *db, uint64_t *hits, uint64_t *misses) {
  seg *s = db->s;
  if (!s->shared) {
    *hits = atomic_load_explicit(&db->own.hits, memory_order_relaxed);
    *misses = atomic_load_explicit(&db->own.misses, memory_order_relaxed);
    return;
  }
  uint64_t h = H(s)->retired_hits, m = H(s)->retired_misses;
  ctr_slot *sl = slots(s);
  for (unsigned i = 0; i < NSLOTS; i++) {
    h += atomic_load_explicit(&sl[i].hits, memory_order_relaxed);
    m += atomic_load_explicit(&sl[i].misses, memory_order_relaxed);
  }
  *hits = h;
  *misses = m;
}

/* fork: the registry is consistent in the child (no other thread was halfway
 * through it), and each store is judged usable or not there (lock_forked) */
static void fork_prepare(void) { pthread_mutex_lock(&registry_lock); }
static void fork_parent(void) { pthread_mutex_unlock(&registry_lock); }
static void fork_child(void) {
  for (seg *s = all_segs; s; s = s->all_next) {
    lock_forked(s);
    /* the parent's handles keep their slots; the child's copies count apart */
    for (zkv_db *db = s->shared ? s->dbs : NULL; db; db = db->seg_next) {
      db->ctr = &db->own;
      db->ctr_shared = 0;
      if (!s->forked && !slot_take_free(db)) {
        db->ctr = &slots(s)[0];
        db->ctr_shared = 1;
      }
    }
    if (!s->forked || !s->shared) continue;
    /* a new open in the child maps the segment afresh instead of joining this */
    seg **pp = &registry;
    while (*pp && *pp != s) pp = &(*pp)->next;
    if (*pp) *pp = s->next;
    s->next = NULL;
  }
  pthread_mutex_unlock(&registry_lock);
}
static void fork_init(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* under registry_lock */
static void track(seg *s) {
  s->all_next = all_segs;
  all_segs = s;
}

static void untrack(seg *s) {
  seg **pp = &all_segs;
  while (*pp && *pp != s) pp = &(*pp)->all_next;
  if (*pp) *pp = s->all_next;
}

/* ---- memory driver ------------------------------------------------------- */

int zkv_open_memory(const zkv_options *opts, zkv_db **out) {
  zkv_options d;
  if (!out) return ZKV_EINVAL;
  *out = NULL;
  arena_detail_clear();
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
  if (arena_map_memory(s)) { free(db); free(s); return ZKV_ENOMEM; }
  pthread_once(&fork_once, fork_init);
  pthread_mutex_lock(&registry_lock);
  track(s);
  pthread_mutex_unlock(&registry_lock);
  rc = init_arena(db, s->mapped, 0, opts);
  if (rc) { zkv_close(db); return rc == ZKV_EFULL ? ZKV_EFULL : ZKV_ENOMEM; }
  *out = db;
  return ZKV_OK;
}


/* "size" and "evict" describe a segment when it is made; opening an existing
 * one with them given checks them: a larger size grows it, a smaller one or
 * another policy is refused (ZKV_EINVAL), never ignored */
static int check_existing(zkv_db *db, const zkv_options *o) {
  seg *s = db->s;
  hdr *h = H(s);
  static const char *const policy[] = {"none", "lru"};
  if (o->evict >= 0 && (uint32_t)o->evict != h->evict) {
    arena_detail(0, "%s: the segment was made with evict \"%s\": it cannot be opened with evict \"%s\"",
                 s->path, policy[h->evict & 1], policy[o->evict & 1]);
    return ZKV_EINVAL;
  }
  uint64_t want;
  int rc = arena_reserve(s, o->size, &want);
  if (rc || !want) return rc;
  rc = op_enter(db);
  if (rc) return rc;
  h = H(s);
  if (h->size < want) {
    h->size = want;
    h->capacity = want;
    rc = arena_follow(s);
  }
  return op_leave(db, rc);
}

int zkv_open_shared(const char *name, const zkv_options *opts, zkv_db **out) {
  zkv_options d;
  char path[PATH_CAP];
  if (!out) return ZKV_EINVAL;
  *out = NULL;
  arena_detail_clear();
  if (!name || !zkv_segment_name_ok(name, strlen(name))) return ZKV_EINVAL_KEY;
  if (!opts) { zkv_options_init(&d); opts = &d; }
  int rc = check_options(opts, 1);
  if (rc) return rc;
  int fd;
  struct stat st;
  rc = arena_open_file(name, opts, init_arena, path, &fd, &st);
  if (rc) return rc;
  zkv_db *db = new_handle(opts);
  if (!db) { close(fd); return ZKV_ENOMEM; }
  pthread_once(&fork_once, fork_init);
  pthread_mutex_lock(&registry_lock);
  seg *s;
  for (s = registry; s; s = s->next)
    if (s->dev == (unsigned long)st.st_dev && s->ino == (unsigned long)st.st_ino) break;
  if (s) {
    s->refs++;
    close(fd);
  } else {
    seg t;
    memset(&t, 0, sizeof t);
    rc = arena_map_shared(&t, fd, (uint64_t)st.st_size, path);
    if (rc) goto bad;
    s = calloc(1, sizeof *s);
    char *p = s ? strdup(path) : NULL;
    if (!p) {
      rc = ZKV_ENOMEM;
      free(s);
      arena_unmap(&t);
      goto bad;
    }
    *s = t;
    s->fd = fd;
    s->path = p;
    s->refs = 1;
    s->dev = (unsigned long)st.st_dev;
    s->ino = (unsigned long)st.st_ino;
    s->rng = (uint64_t)clock_ns() ^ ((uint64_t)getpid() << 32);
    s->next = registry;
    registry = s;
    track(s);
  }
  if (opts->flags & ZKV_TIME_HOLDS) s->time_holds = 1;
  db->s = s;
  db->seg_next = s->dbs;
  s->dbs = db;
  pthread_mutex_unlock(&registry_lock);
  rc = check_existing(db, opts);
  if (rc) {
    zkv_close(db);
    return rc;
  }
  slot_claim(db);
  *out = db;
  return ZKV_OK;
bad:
  pthread_mutex_unlock(&registry_lock);
  close(fd);
  free(db);
  return rc;
}

void zkv_close(zkv_db *db) {
  if (!db) return;
  seg *s = db->s;
  if (!db->closed && s) {
    /* the transaction levels this handle opened and left open are rolled
     * back; levels of other handles on the same segment are theirs */
    while (db->txn_levels > 0 && s->txn_depth > 0 && seg_owned(s)) zkv_rollback(db);
    if (s->shared) slot_release(db);
  }
  db->closed = 1;
  if (s) {
    pthread_mutex_lock(&registry_lock);
    zkv_db **dp = &s->dbs;
    while (*dp && *dp != db) dp = &(*dp)->seg_next;
    if (*dp) *dp = db->seg_next;
    if (--s->refs == 0) {
      if (s->shared) {
        seg **pp = &registry;
        while (*pp && *pp != s) pp = &(*pp)->next;
        if (*pp) *pp = s->next;
      }
      untrack(s);
    } else {
      s = NULL;
    }
    pthread_mutex_unlock(&registry_lock);
  }
  if (s) {
    arena_unmap(s);
    if (s->shared) {
      close(s->fd);
      free(s->path);
    } else {
      free(s->mlog);
      /* a mutex held by a thread lost in a fork cannot be destroyed */
      if (s->threadsafe && !s->forked) pthread_mutex_destroy(&s->tlock);
    }
    free(s->pend);
    free(s->txn_own);
    free(s->txn_marks);
    free(s);
  }
  free(db->buf);
  free(db);
}

int zkv_is_shared(const zkv_db *db) { return db && db->s && db->s->shared; }
