/*
 * internal.h -- the engine's private API: the process-side state of a store,
 * and the functions of each layer, lowest first.
 *
 *   snapshot.c snapshots, dump and load (calls the key operations); dumpfile.c,
 *             the dump file's format, knows no store
 *   ops.c     the public zkv_* key operations: checks, the op frame, lock-free reads
 *   open.c    opening and closing stores: options, a new store's layout, the
 *             registry, counter slots, fork handlers            (zkv_open_*, zkv_close)
 *   room.c    making room: kept deleted keys, expiry sweeps, eviction, compaction,
 *             gc scheduling and step budgets                               (room_*)
 *   index.c   entries, the hash index, namespaces, the deleted-key ring   (idx_*)
 *   deque.c   the items of lists                                          (list_*)
 *   alloc.c   blocks: free lists, coalescing, the bump pointer            (blk_*)
 *   txn.c     the lock, the op frame, the log's chunks, transactions, recovery
 *                                                                   (op_*, lock_*)
 *   log.c     the undo log's records: write, undo, FAIL     (log_*, op_fail)
 *   arena.c   mappings: memory arenas and shared segments, their files    (arena_*)
 *   clock.c   time                                                        (clock_*)
 *   format.h  the bytes of a segment
 *
 * A layer calls only the layers below it (tools/layers.sh checks the objects;
 * docs/inside.md).  The public API (include/zeltkv.h)
 * is the only thing named zkv_*.  Everything that reads or writes the arena
 * runs under the store lock, inside an op (op_enter .. op_leave); an error
 * deep inside raises FAIL, which unwinds to the op frame (RUN in ops.c), where
 * the undo log puts back what the op had changed.
 */
#ifndef ZKV_INTERNAL_H
#define ZKV_INTERNAL_H

/* The engine uses mremap, futexes, sigsetjmp and other calls beyond C11: every
 * engine file defines _GNU_SOURCE on its first line, before any header (the
 * build passes no -D flag, so this cannot be forgotten silently). */
#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE on the first line of the .c file, before any #include"
#endif

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL   /* the index hash is inline (idx_hash) */
#include <xxhash.h>

#include "format.h"
#include "util.h"
#include "zeltkv.h"

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* cpu_relax(): the hint a spin-wait loop gives the CPU between two looks at a
 * shared word (x86 PAUSE, Arm YIELD): it saves power and lets the other
 * hyperthread, or the holder, run.  Elsewhere a compiler barrier only. */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || (defined(__arm__) && __ARM_ARCH >= 7)
  __asm__ __volatile__("yield" ::: "memory");
#else
  __asm__ __volatile__("" ::: "memory");
#endif
}

/* ---- process-side state ------------------------------------------------- */
/* A segment mapping, shared by every handle of this process on that segment,
 * so that lock ownership and transaction depth are per process-thread, not
 * per handle. */
/* a write's request for room, from room_alloc (deep in the op) to the op
 * frame, which then makes room in steps (room.c) and runs the op again: a
 * local of the frame (RUN), reached through seg.room under the lock */
typedef struct room_req {
  uint64_t units;          /* the block the write needs */
  ref_t pin;               /* the entry it replaces (0: none); checked before use */
  ref_t ns;                /* the namespace it writes into: kept */
  unsigned how;            /* ROOM_NOEVICT */
  unsigned round;          /* times the op ran for this call */
  int reserved;            /* room_res of this request may be set */
  uint64_t evicted_bytes;  /* by this request's steps */
  uint64_t cursor;         /* its expiry sweep */
  int swept;               /* the sweep went once round */
  uint64_t from;           /* its next reservation starts at a free block from here */
  uint64_t seq_next;       /* hdr.seq at the next step if no one else wrote meanwhile */
  int from_stale;          /* others wrote since: `from` may lie inside a block */
  int wrapped;             /* its reservation went once round the heap */
  uint64_t work;           /* of this step, in buckets of index growth or move (room.c) */
  /* the write's own namespace, empty, moved by its steps (room.c): the id
   * the op was called with, and where its record is now (0: none moved);
   * the op's runs after it take ns_moved for that id (ops.c, ns_ref) */
  zkv_ns ns_id;
  ref_t ns_moved;
} room_req;

#define EVICT_POOL 16
typedef struct seg {
  struct seg *next;
  unsigned long dev, ino;
  int refs;
  char *base;              /* mapping */
  uint64_t mapped;         /* bytes of the arena in use (memory: mapped) */
  uint64_t reserved;       /* shared: bytes of address space mapped (>= mapped) */
  int fd;                  /* shared: the segment file */
  char *path;              /* shared: its path */
  /* The thread holding the lock (0: none).  Only that thread writes it with
   * its own id, and clears it before it lets the lock go, so a thread reads
   * its own id here only while it holds the lock; others read another id or
   * 0.  depth and everything below it are touched by the holder only. */
  _Atomic uintptr_t owner;
  int depth;               /* lock depth: ops and transaction levels */
  int txn_depth;           /* open zkv_begin levels */
  uint64_t *txn_marks;     /* log position at each level */
  int txn_cap;
  ref_t *pend;             /* (ref, units) pairs freed under the log in this lock hold */
  size_t npend, cap_pend;
  int pend_whole;          /* past FREED_MAX pairs: every allocation is logged whole (alloc.c) */
  size_t pend_seen;        /* pairs of pend already checked against txn_own (alloc.c, blk_txn_op) */
  uint64_t *txn_own;       /* in a transaction: blocks allocated since its innermost
                            * begin, ref << 32 | units, open addressing (alloc.c) */
  size_t txn_own_n, txn_own_cap;
  int logging;             /* record undo for writes now */
  int dirty;               /* seq made odd in this lock hold */
  /* memory driver: private growable log */
  char *mlog;
  uint64_t mlog_used, mlog_cap;
  pthread_mutex_t tlock;   /* memory driver with ZKV_THREADSAFE */
  int threadsafe;
  int shared;
  int forked;              /* inherited through fork() while held: ZKV_EFORKED (txn.c) */
  struct seg *all_next;    /* every seg of this process (arena.c, for fork) */
  struct zkv_db *dbs;      /* shared: its handles in this process (under registry_lock) */
  void *jb;                /* sigjmp_buf: where FAIL goes during an op */
  room_req *room;          /* the op frame's request for room, when it can make
                            * room in steps (outside a transaction), else NULL */
  int64_t hold_t0;         /* ns: start of the timed part of this op: a gc step
                            * (clock_ns), or with ZKV_TIME_HOLDS the op (clock_cpu_ns) */
  uint64_t max_lock_ns;
  int time_holds;          /* ZKV_TIME_HOLDS: time every op's lock hold */
  uint64_t evicted;        /* live keys evicted so far (zkv_set_ex's forcible) */
  uint64_t rng;
  uint64_t seen_recoveries; /* lock_recoveries when the header was last checked */
  struct { ref_t r; uint16_t atime; } pool[EVICT_POOL]; /* lru eviction candidates (room.c) */
  int npool;
  uint16_t pool_now;
} seg;


struct zkv_db {
  seg *s;
  /* where reads count hits and misses (stats): a slot of its own in a shared
   * segment, else `own`; ctr_shared when the slot is slot 0, which handles
   * without one share (atomic adds) */
  ctr_slot *ctr;
  int ctr_shared;
  ctr_slot own;
  struct zkv_db *seg_next; /* shared: the handles of this process on s (arena.c, for fork) */
  int closed;
  int64_t gc_interval_ms;
  int64_t lock_timeout_ms;
  uint32_t opcount;
  int txn_levels;           /* zkv_begin levels opened through this handle */
  char *buf;               /* copies of values read without the lock */
  size_t buf_cap;
};

#define H(s) ((hdr *)(s)->base)
#define P(s, ref) ((void *)((s)->base + (uint64_t)(ref) * UNIT))
#define E(s, ref) ((ent *)P(s, ref))
#define REF(s, ptr) ((ref_t)(((char *)(ptr) - (s)->base) / UNIT))

/* count one read result in the handle's slot: a plain add on a line no other
 * process writes (the lock-free read path stays free of shared writes) */
static inline void ctr_inc(zkv_db *db, _Atomic uint64_t *c) {
  if (__builtin_expect(db->ctr_shared, 0))
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
  else
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}
static inline int ctr_get(zkv_db *db, int rc) {
  if (rc == ZKV_OK) ctr_inc(db, &db->ctr->hits);
  else if (rc == ZKV_NOTFOUND) ctr_inc(db, &db->ctr->misses);
  return rc;
}
void open_count_reads(zkv_db *db, uint64_t *hits, uint64_t *misses); /* lock held: the sums (open.c) */

static inline uint64_t seg_rand(seg *s) {
  uint64_t x = s->rng ? s->rng : 0x2545F4914F6CDD1Dull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return s->rng = x;
}

/* ---- clock (clock.c) ---------------------------------------------------- */
int64_t clock_ms(void);          /* ms, monotonic, with the test offset */
int64_t clock_coarse_ms(void);   /* the same, coarse (a few ms behind at most) */
/* How far behind the precise clock the coarse one may be for a check that
 * skips the precise read. One tick (4 ms at HZ=250) when the kernel's
 * timekeeping CPU runs; in a VM whose vCPUs the host preempts, that CPU can
 * miss ticks (18 ms measured here under load), so the margin is far wider:
 * only a key within a second of its end pays the precise read (~20 ns). */
#define CLOCK_COARSE_SLACK_MS 1000
int64_t clock_ns(void);          /* ns, monotonic, no offset: for measuring */
int64_t clock_cpu_ns(void);      /* ns of CPU time of this thread */

/* the timing of an op's lock hold (max_lock_ns): from the start of its body
 * (with ZKV_TIME_HOLDS, in CPU time) to its end; a gc step may start it */
static inline void hold_begin(seg *s) {
  s->hold_t0 = UNLIKELY(s->time_holds) && s->depth == 1 ? clock_cpu_ns() : 0;
}
static inline void hold_end(seg *s) {
  if (!s->hold_t0) return;
  uint64_t d = (uint64_t)((s->time_holds ? clock_cpu_ns() : clock_ns()) - s->hold_t0);
  if (d > s->max_lock_ns) s->max_lock_ns = d;
}

/* ---- arena (arena.c) ---------------------------------------------------- */
int arena_grow(seg *s, uint64_t need_bytes);         /* memory driver */
int arena_validate(const hdr *h, uint64_t file_size); /* header checks, ZKV_OK or an error */
int arena_follow(seg *s);   /* shared, lock held: map what another process grew */
int arena_map_memory(seg *s);   /* a new private arena in s, ZKV_OK or ZKV_ENOMEM */
/* lays out an empty store in db->s's arena of size bytes, undo log of log_cap (open.c) */
typedef int arena_layout_fn(zkv_db *db, uint64_t size, uint64_t log_cap, const zkv_options *o);
#define PATH_CAP 4200   /* the bytes of a segment's path */
struct stat;
int arena_open_file(const char *name, const zkv_options *opts, arena_layout_fn *layout,
                    char *path, int *fd, struct stat *st);
int arena_map_shared(seg *s, int fd, uint64_t file_size, const char *path);
int arena_reserve(seg *s, uint64_t size, uint64_t *want);   /* room to grow to size */
void arena_unmap(seg *s);
/* the detail of this thread's last failure, for zkv_errdetail (err: its errno, 0 none) */
__attribute__((format(printf, 2, 3))) void arena_detail(int err, const char *fmt, ...);
void arena_detail_clear(void);
#define SEG_PREFIX "zeltkv-"   /* a segment's file is SEG_PREFIX NAME in its directory */
static inline int arena_bounds(const seg *s, uint64_t off, uint64_t len) {
  return off <= s->mapped && len <= s->mapped - off;
}
/* tests (C tests link the static library): called when a segment being
 * created is complete, just before it is published under its name */
extern void (*arena_test_create_hook)(void);
/* tests: called before each record crash recovery applies (log.c) */
extern void (*txn_test_recover_hook)(void);
/* tests: called after each key zkv_expire_all flags (ops.c) */
extern void (*expire_test_hook)(void);
/* tests: called after each step of zkv_flush_expired_ns with the entries it
 * passed (ops.c) */
extern void (*flush_expired_step_hook)(uint64_t passed);
extern void (*walk_step_hook)(uint64_t passed);   /* ops.c: after each step of a walk */

/* ---- the undo log's records (log.c) --------------------------------------- */
/* raise an engine error from deep inside an op: rolls back to the op's start */
_Noreturn void op_fail(seg *s, int rc);
#define FAIL(s, rc) op_fail(s, rc)

void log_record(seg *s, const void *p, size_t len);
void log_undo_to(seg *s, uint64_t mark);
/* the log position now (a mark to undo to); inline: every op takes one */
static inline uint64_t log_pos(seg *s) { return s->shared ? ((hdr *)s->base)->log_used : s->mlog_used; }
/* is the allocated block r one of the log's chunks (in a transaction: a
 * compaction must not take it for an entry and move it)? */
int log_chunk_is(seg *s, ref_t r);
log_chunk *log_chunk_at(seg *s, ref_t c);   /* the chunk at c, checked; 0 if damaged */
int log_window(seg *s);   /* the window from log_chunk; -1 if that chunk is damaged */
/* apply the log backwards down to mark; 0, or -1 if damaged (recovering: the
 * crash-recovery test hook runs) */
int log_undo(seg *s, uint64_t mark, int recovering);

/* ---- the op frame, the lock and the log's chunks (txn.c) ------------------ */
int op_enter(zkv_db *db);
int op_leave(zkv_db *db, int rc);
int op_run(zkv_db *db, int (*fn)(zkv_db *, void *), void *arg);
uint32_t lock_tid(void);
int lock_tid_dead(uint32_t tid);
void lock_forked(seg *s);   /* in a child just forked: can it still be used? */
/* Can the undo log take `need` more bytes now?  Inside a transaction on a
 * shared segment it grows into the heap's free room for them (a log chunk,
 * format.h) if it must: call it only where the heap is whole and no free
 * block is held for later use (between the steps of an op, never inside
 * the allocator).  Outside a transaction the fixed region is all there is
 * (ops there work in bounded steps); a private store's log is the process
 * heap (always 1). */
int log_room_grow(seg *s, uint64_t need);
static inline int log_room(seg *s, uint64_t need) {
  if (!s->shared) return 1;
  hdr *h = (hdr *)s->base;
  if (LIKELY(h->log_end - h->log_used >= need && h->log_used <= h->log_end)) return 1;
  return log_room_grow(s, need);
}
/* what one step of a loop over keys (a key freed, flagged or evicted) may
 * log at most, and what an op may log outside such loops and its value's
 * bytes: the room a transaction's log keeps ahead of each */
#define LOG_KEY_ROOM 2048u
#define LOG_OP_ROOM 4096u
/* in a transaction, before a step that logs up to `need`: grow the log now
 * if it must (see log_room) */
#define LOG_AHEAD(s, need) \
  do { if (UNLIKELY((s)->txn_depth > 0) && (s)->shared) (void)log_room(s, need); } while (0)

/* Before the first change of a lock hold on a shared segment: make seq odd
 * (lock-free readers then retry).  Only the lock holder writes seq, so plain
 * stores do (no atomic read-modify-write); the release fence orders the odd
 * value before the changes that follow. */
static inline void log_dirty(seg *s) {
  hdr *h = (hdr *)s->base;
  uint64_t v = atomic_load_explicit(&h->seq, memory_order_relaxed);
  if (!(v & 1)) {
    atomic_store_explicit(&h->seq, v + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
  }
  s->dirty = 1;
}

/* Log the bytes at p before they change.  The common record (a field of a
 * shared segment) is written inline. */
static inline void log_write(seg *s, const void *p, size_t len) {
  if (len <= 64 && s->shared) {
    hdr *h = (hdr *)s->base;
    if (UNLIKELY(!s->dirty)) log_dirty(s);
    uint64_t rec = ((len + 7) & ~(size_t)7) + 8;
    uint64_t used = h->log_used, at = h->log_bias + used;   /* the window: format.h */
    if (LIKELY(used + rec <= h->log_end && at <= s->mapped - rec)) {
      char *dst = s->base + at;
      uint64_t tr = (uint64_t)((const char *)p - s->base) << REC_LEN_BITS | len;
      switch (len) {   /* constant sizes: the copies compile to a move or two */
      case 1: memcpy(dst, p, 1); break;
      case 2: memcpy(dst, p, 2); break;
      case 4: memcpy(dst, p, 4); break;
      case 8: memcpy(dst, p, 8); break;
      case 12: memcpy(dst, p, 12); break;
      case 16: memcpy(dst, p, 16); break;
      case 20: memcpy(dst, p, 20); break;
      case 32: memcpy(dst, p, 32); break;
      default: memcpy(dst, p, len); break;
      }
      memcpy(dst + rec - 8, &tr, 8);
      atomic_signal_fence(memory_order_seq_cst);
      h->log_used += rec;
      atomic_signal_fence(memory_order_seq_cst);
      return;
    }
  }
  log_record(s, p, len);
}
#define LOGW(s, p, len) do { if ((s)->logging) log_write(s, p, len); } while (0)

/* Several records with one look at the window: the fast path of log_write
 * for each, its checks done once for all.  log_batch_begin(s, &b, max)
 * takes the window when it has room for `max` bytes of records (a record of
 * len bytes takes ((len + 7) & ~7) + 8); log_batch_put writes a record there
 * (its old bytes, read now), or, where the window had no room (or the store
 * is private), logs it by log_write; log_batch_end makes the batch part of
 * the log, before any of the changes it undoes (so a crash before it leaves
 * no change to undo).  Only while s->logging, and with nothing else logged
 * between begin and end. */
typedef struct log_batch { char *at, *start; } log_batch;   /* at NULL: each by log_write */
static inline void log_batch_begin(seg *s, log_batch *b, uint64_t max) {
  b->at = b->start = NULL;
  if (!s->shared) return;
  hdr *h = (hdr *)s->base;
  if (UNLIKELY(!s->dirty)) log_dirty(s);
  uint64_t used = h->log_used, at = h->log_bias + used;
  if (UNLIKELY(used + max > h->log_end || max > s->mapped || at > s->mapped - max)) return;
  b->at = b->start = s->base + at;
}
static inline __attribute__((always_inline)) void log_batch_put(seg *s, log_batch *b,
                                                                const void *p, size_t len) {
  if (UNLIKELY(!b->at)) {
    log_write(s, p, len);
    return;
  }
  uint64_t rec = ((len + 7) & ~(size_t)7) + 8;
  uint64_t tr = (uint64_t)((const char *)p - s->base) << REC_LEN_BITS | len;
  memcpy(b->at, p, len);   /* len is a constant at every call: a move or two */
  memcpy(b->at + rec - 8, &tr, 8);
  b->at += rec;
}
static inline void log_batch_end(seg *s, log_batch *b) {
  if (!b->at) return;
  atomic_signal_fence(memory_order_seq_cst);
  ((hdr *)s->base)->log_used += (uint64_t)(b->at - b->start);
  atomic_signal_fence(memory_order_seq_cst);
}
/* log the fields a..b (adjacent, in declaration order) of the struct at p as
 * one record; the layout they rely on is asserted in format.h */
#define LOG_SPAN(s, p, a, b) LOGW(s, &(p)->a, SPAN(__typeof__(*(p)), a, b))

/* ---- blocks (alloc.c) --------------------------------------------------- */
/* blk_alloc hands out a block of `units` (at least 2) from the free lists, or
 * from never-used space (growing a memory arena up to its capacity); 0 when
 * there is none.  It never frees, evicts or moves anything: that is room.c. */
ref_t blk_alloc(seg *s, uint64_t units);
void blk_free(seg *s, ref_t r);      /* its old bytes stay restorable by a rollback */
void blk_free_now(seg *s, ref_t r);  /* a block whose bytes no rollback needs */
void blk_init(seg *s);
/* take the free block r off its list, allocated (its bytes held nothing) */
void blk_claim(seg *s, ref_t r);
/* the allocated block r keeps `units`, the rest of it is freed */
ref_t blk_split(seg *s, ref_t r, uint64_t units);
/* the block at r: its units, and whether it is free (checked: a damaged heap FAILs) */
uint64_t blk_units_at(seg *s, uint64_t r, int *is_free);
/* would blk_alloc(units) find a block now?  (changes nothing) */
int blk_fits(seg *s, uint64_t units);
/* For a reservation block r that room.c grows until a write fits in it:
 * blk_grow: r takes in the block after it (a free one, or an allocated one
 * whose contents are no longer needed, e.g. an evicted key); returns r's
 * new units.  blk_grow_top: r, which ends at top, grows into never-used
 * space to `units`.  blk_slide: the block after r moves down to r's start
 * (the bytes it lands on logged first), r goes after it; returns r's new
 * ref, the moved block now starting at the old one.  blk_lowest_free: the
 * free block on a list with the lowest address above `above`, or 0 (a walk
 * of every list: blocks of one unit are on none).  blk_next_free: the first
 * free block (any size) at or after *from, a block start (0: the heap's
 * start), looking at `budget` blocks at most; 0 when none was found, *from
 * then where to look on, *at_top set when the walk reached top. */
uint64_t blk_grow(seg *s, ref_t r);
void blk_grow_top(seg *s, ref_t r, uint64_t units);
ref_t blk_slide(seg *s, ref_t r);
ref_t blk_lowest_free(seg *s, uint64_t above);
ref_t blk_next_free(seg *s, uint64_t *from, unsigned budget, int *at_top);
/* the most bytes an allocation could have to log now (log_reused): those
 * freed under the log in this lock hold, UINT64_MAX once too many ranges were
 * freed to track (every allocation is then logged whole) */
uint64_t blk_freed_bytes(seg *s);
/* blk_alloc from the free block lowest in the heap that fits (a slow walk
 * of every free list: for the records that never move, which then split
 * the free room as little as they can) */
ref_t blk_alloc_low(seg *s, uint64_t units);
/* Inside a transaction, at the start of each outermost op and of each
 * begin: the blocks that were allocated since the innermost begin and freed
 * again by an op that has ended leave the freed ranges, since no rollback
 * needs their bytes (alloc.c).  blk_txn_forget, at each begin (a savepoint
 * for which the blocks allocated before it hold data) and at the end of the
 * outermost level: no block is remembered as allocated since a begin. */
void blk_txn_op(seg *s);
void blk_txn_forget(seg *s);
/* blk_alloc for the undo log's own chunks (shared segment, txn.c): only from
 * free room that holds nothing a rollback needs (no block this lock hold
 * freed that a rollback needs, alloc.c), so its old bytes are not logged.
 * A block of `units`, else the biggest such free block of `least` units or
 * more, whole (its size in its header); 0 when there is none. */
ref_t blk_alloc_clean(seg *s, uint64_t units, uint64_t least);

/* ---- the index (index.c) ------------------------------------------------ */
/* the index hash: XXH3 of the key seeded with the namespace ref (and the
 * kind, a key or a namespace record).  Inline: it is on every lookup, and a
 * call costs a tenth of a short key's hash in spilled registers. */
static inline uint64_t idx_hash(ref_t ns, const void *key, size_t klen, int is_ns) {
  uint64_t seed = (uint64_t)ns * 0x9E3779B97F4A7C15ull + (is_ns ? 0x5bd1e995u : 0);
  return XXH3_64bits_withSeed(key, klen, seed);
}
ref_t idx_find(seg *s, ref_t ns, const void *key, size_t klen, uint64_t h, int is_ns);
/* bucket i of [0, nbuckets) as walks see it: the old array's bucket while it
 * has not moved, NULL for the new array's upper half meanwhile */
ref_t *idx_bucket_slot(seg *s, uint64_t i);
ref_t idx_bucket_head(seg *s, uint64_t i);   /* first entry of bucket i */
nsdata *idx_nsdata(seg *s, ref_t ns);
void idx_link_new(zkv_db *db, ref_t ns, ref_t r, uint64_t h);
void idx_unlink_free(zkv_db *db, ref_t r, int expired);
void idx_unlink_free_h(zkv_db *db, ref_t r, int expired, uint64_t h);
/* unlink a key from its namespace and the index, its block left allocated */
void idx_unlink_keep(zkv_db *db, ref_t r, int expired, uint64_t h);
/* the key whose bytes were at old is now at nw (a copy; old may be
 * overwritten already): its chain, list and ring links follow it */
void idx_moved(zkv_db *db, ref_t old, ref_t nw);
/* an empty namespace (no keys, no children, not the root) whose record may
 * be freed to make room: its ids then give ZKV_ESTALE (zkv_namespace makes
 * it anew; the Lua binding does so by itself) */
int idx_ns_freeable(seg *s, ref_t r);
void idx_free_ns(zkv_db *db, ref_t r);
/* Can the record of the namespace r move (compaction, room.c)?  Not the
 * root, and at most NS_MOVE_MAX keys and children, which name it by its
 * place and are hashed with it: a move relinks each (some 100 bytes of
 * undo log each).  idx_ns_moved: such a record at old now has a copy at nw
 * (its tag too): its chain, its parent's child list, its keys and children
 * name nw, and old's tag is taken away, so that ids naming old give
 * ZKV_ESTALE (old stays allocated: the caller frees it). */
#define NS_MOVE_MAX 256u
#define NS_MOVE_LOG 112u   /* the undo log a move writes for each key or child */
int idx_ns_movable(seg *s, ref_t r);
void idx_ns_moved(zkv_db *db, ref_t old, ref_t nw);
void idx_replace(zkv_db *db, ref_t old, ref_t nw, uint64_t h);
void idx_relocate(zkv_db *db, ref_t old, ref_t nw);
/* the units of the bigger bucket array the index is due for (0: not due),
 * and the growth into that block */
uint64_t idx_grow_units(seg *s);
void idx_grow(zkv_db *db, ref_t block);
/* move up to n buckets of a growing index to its new array, or n *
 * MOVE_PER_BUCKET of a moving one (no-op when neither); every op under the
 * lock moves REHASH_STEP, so the old array has moved by the time the index is
 * at most 1.5 times fuller than at the start */
void idx_rehash(zkv_db *db, unsigned n);
#define REHASH_STEP 2
/* a moved bucket is a 4-byte copy where a split one rehashes its chain */
#define MOVE_PER_BUCKET 32
/* the units of the bucket array as it is (what a move needs), and the start
 * of a move to `block` (at least that big; not while growing or moving):
 * compaction moves the index out of its way in steps (room.c) */
uint64_t idx_array_units(seg *s);
void idx_move(zkv_db *db, ref_t block);
/* link the block r (of the size bytes the record needs) as namespace `name` under parent */
void idx_new_ns(zkv_db *db, ref_t r, ref_t parent, const void *name, size_t len, uint64_t h);
size_t idx_ns_bytes(size_t name_len);
void idx_init(zkv_db *db);
int idx_bury(zkv_db *db, ref_t r);
void idx_revive(zkv_db *db, ref_t r, ref_t ns, int type, unsigned flags);   /* a dead key written back in place */
void idx_dead_forget(seg *s, ref_t r);
ref_t idx_dead_at(seg *s, uint32_t slot);    /* the deleted key in a ring slot, checked, or 0 */
/* the pre-order walk of the namespace tree: the record after cur under root,
 * or 0 at the end (checked: a damaged tree FAILs) */
ref_t idx_ns_next(seg *s, ref_t root, ref_t cur);

/* ---- making room (room.c) ----------------------------------------------- */
/* room_alloc: a block of `units` for a write, making room by the store's
 * policy when none is free: kept deleted keys, then (lru, unless
 * ROOM_NOEVICT) the least recently used keys, then expired keys; a shared
 * segment is compacted when its free room is enough but broken up.  `pin`
 * (0: none) is the entry the write replaces: never evicted, swept or moved
 * (a step may move it); `ns` is the namespace the write goes into: its
 * record is never freed for it.
 * FAILs with ZKV_EFULL (also when, in a transaction, the undo log cannot
 * grow into the free room for what the room needs). */
#define ROOM_NOEVICT 1u
#define ROOM_LOW 2u       /* a record that never moves: as low in the heap as it fits */
ref_t room_alloc(zkv_db *db, uint64_t units, ref_t pin, ref_t ns, unsigned how);
/* Outside a transaction room_alloc does not make room inside the op: it
 * FAILs with ROOM_AGAIN (s->room says what for), and the op frame runs
 * room_make (steps, each its own committed lock hold), then the op again;
 * room_done frees a reservation the op did not take. */
#define ROOM_AGAIN (-100)
int room_make(zkv_db *db, room_req *q);
void room_done(zkv_db *db, room_req *q);
/* grow the hash index when it is due, if free room allows (never evicting) */
void room_grow_index(zkv_db *db);
/* the sweep: visit at most `budget` buckets from *cursor and free the expired
 * keys found there (every key when `all`), stopping once `max` (0 = no limit)
 * were freed; returns 1 when the walk reached the end of the index */
int room_sweep(zkv_db *db, uint64_t *cursor, uint64_t budget, int all, uint64_t *freed,
               uint64_t max, ref_t pin);
/* keys a step of a long walk (clear, flush, gc) may touch in one lock hold */
uint64_t room_step_budget(zkv_db *db);
void room_gc_step(zkv_db *db);

/* this thread's id for seg.owner: a number no other thread of the process
 * ever had, not pthread_self() (a new thread may get the control block of one
 * that ended holding the lock, and would then take its lock as its own).
 * Initial-exec TLS: one load, no __tls_get_addr call. */
extern __thread uintptr_t lock_thread_token __attribute__((tls_model("initial-exec")));
uintptr_t lock_new_token(void);
static inline uintptr_t lock_self(void) {
  uintptr_t t = lock_thread_token;
  return LIKELY(t != 0) ? t : lock_new_token();
}

/* does this thread hold the store lock (inside an op or transaction)?  A
 * private store has one thread; elsewhere the owner word tells, without a
 * read of depth (the holder writes it: a data race for anyone else). */
static inline int seg_owned(seg *s) {
  if (!s->threadsafe && !s->shared) return s->depth > 0;
  uintptr_t o = atomic_load_explicit(&s->owner, memory_order_relaxed);
  return o != 0 && o == lock_self();
}

/* the lru clock: write operations so far, coarser as the store grows, so
 * that a 16-bit stamp spans the store's life between two uses */
/* lists: their items as linked blocks (deque.c: entries and blocks only; the
 * operations are in ops.c).  Inside an op unless said otherwise. */
lhead *list_head(seg *s, ent *e);              /* a list entry's head, checked */
uint64_t list_node_units(size_t plen);         /* the block size of an item */
void list_node_init(seg *s, ref_t r, int tag, const void *payload, size_t plen);
void list_link_end(seg *s, ref_t r, ref_t nr, int left);   /* item nr at one end of list r */
ref_t list_take_end(seg *s, ref_t r, int left); /* unlinks an end item of a list of >= 2 */
const char *list_end_item(seg *s, ent *e, int left, size_t *len);   /* tag + payload */
void list_drop(zkv_db *db, ent *e);            /* a list's items to the garbage chain */
uint64_t list_reclaim(zkv_db *db, uint64_t max);   /* frees up to max garbage items */
void list_owner_moved(zkv_db *db, ent *e, ref_t nw);   /* its entry is now at nw */
void list_relocate(zkv_db *db, ref_t old, ref_t nw);   /* an item copied to nw */
typedef void (*list_item_fn)(void *ud, const char *tag, const char *payload, uint32_t len);
int list_decode(const char *p, size_t n, uint32_t *count, list_item_fn each, void *ud);
int list_check_encoding(const void *p, size_t n);
int list_encode(seg *s, ent *e, char **buf, size_t *cap, size_t *len);   /* never FAILs */
const char *list_verify(seg *s, ref_t er);
const char *list_verify_garbage(seg *s);

static inline uint16_t lru_now(seg *s) {
  hdr *h = H(s);
  unsigned lg = h->nkeys ? 64u - (unsigned)__builtin_clzll(h->nkeys) : 0;
  return (uint16_t)(h->lru_clock >> (lg > 10 ? lg - 10 : 0));
}

/* ---- checks and entries (inline: they are on every lookup) --------------- */

/* Loop bounds that hold whatever a damaged segment says: no list or chain
 * can hold more entries than fit in the arena (an entry takes >= 32 bytes). */
static inline uint64_t ent_limit(const seg *s) { return s->mapped / 32 + 1; }

/* the bucket count, checked: a damaged exponent is a damaged segment */
static inline uint64_t nbuckets(seg *s) {
  uint32_t lg = H(s)->nb_log2;
  if (UNLIKELY(lg > 30)) FAIL(s, ZKV_ECORRUPT);
  return 1ull << lg;
}

/* The bucket slot of hash h: in the new array, or while the index grows in
 * the old one if h's old bucket has not moved yet.  NULL when the header
 * says something impossible (a damaged segment, or a torn read without the
 * lock).  Inline: it is on every lookup, locked or not. */
static inline ref_t *idx_slot(seg *s, uint64_t h) {
  hdr *hd = H(s);
  uint32_t lg = hd->nb_log2;
  if (UNLIKELY(lg > 30 || lg == 0)) return NULL;
  uint64_t nb = 1ull << lg, i = h & (nb - 1);
  ref_t t = hd->buckets;
  if (UNLIKELY(hd->obuckets)) {   /* growing (old array: half the size) or moving */
    uint32_t c = hd->ocursor;
    uint64_t onb = (c & OC_MOVING) ? nb : nb >> 1, j = h & (onb - 1);
    if (j >= (c & ~OC_MOVING)) {
      t = hd->obuckets;
      nb = onb;
      i = j;
    }
  }
  uint64_t off = (uint64_t)t * UNIT;
  if (UNLIKELY(off < hd->heap_start || off + BUCKETS_OFF + nb * 4 > hd->top || hd->top > s->mapped))
    return NULL;
  return (ref_t *)(s->base + off + BUCKETS_OFF) + i;
}

/* (a multiply of the two bits, no branch or select: every ent_ok reads it) */
_Static_assert(EF_EXP == 1u && EF_UFLAGS == 2u, "opt_bytes scales the two flag bits");
static inline size_t opt_bytes(unsigned f) { return (f & EF_EXP) * 8u + (f & EF_UFLAGS) * 2u; }

static inline size_t ent_units(size_t klen, size_t vlen, unsigned eflags) {
  return (ENT_HDR + opt_bytes(eflags) + klen + vlen + UNIT - 1) / UNIT;
}

/* ent_key and ent_val are always inline: a read computes the entry's layout
 * once for ent_ok, the key compare and the value (a call repeats it) */
static inline __attribute__((always_inline)) const char *ent_key(const ent *e) {
  if (e->type == T_NSREC) return (const char *)e + NS_DATA_OFF + sizeof(nsdata);
  return (const char *)e + ENT_HDR + opt_bytes(e->flags);
}

static inline __attribute__((always_inline)) char *ent_val(ent *e, size_t *vlen) {
  size_t off = ENT_HDR + opt_bytes(e->flags) + e->klen;
  size_t total = (size_t)BLK_UNITS(e->blk) * UNIT;
  *vlen = total - off - EF_SLACK(e->flags);
  return (char *)e + off;
}

static inline int64_t ent_exp(const ent *e) {
  int64_t x = 0;
  if (e->flags & EF_EXP) memcpy(&x, (const char *)e + ENT_HDR, 8);
  return x;
}

static inline uint32_t ent_uflags(const ent *e) {
  uint32_t f = 0;
  if (e->flags & EF_UFLAGS) memcpy(&f, (const char *)e + ENT_HDR + ((e->flags & EF_EXP) ? 8 : 0), 4);
  return f;
}

static inline int ent_live(const ent *e, int64_t now) {
  if (!(e->flags & (EF_EXP | EF_FLUSHED | EF_DELETED))) return 1;
  if (e->flags & (EF_FLUSHED | EF_DELETED)) return 0;
  int64_t x;
  memcpy(&x, (const char *)e + ENT_HDR, 8);
  return x == 0 || now < x;
}

/* does the entry count among its namespace's nttl (it carries an expiry;
 * EF_FLUSHED is not counted there: format.h, nsdata)? */
static inline int ent_timed(const ent *e) { return ent_exp(e) != 0; }

/* ent_live at the current time; reads the clock only for keys with a ttl */
static inline int ent_alive(const ent *e) {
  if (!(e->flags & (EF_EXP | EF_FLUSHED | EF_DELETED))) return 1;
  if (e->flags & (EF_FLUSHED | EF_DELETED)) return 0;
  int64_t x;
  memcpy(&x, (const char *)e + ENT_HDR, 8);
  /* the coarse clock is never ahead and at most CLOCK_COARSE_SLACK_MS behind:
   * a key expiring well after it is alive without the precise read */
  if (x == 0 || x - clock_coarse_ms() > CLOCK_COARSE_SLACK_MS) return 1;
  return clock_ms() < x;
}

/* a == b for n bytes; keys are short, and a call to memcmp costs more than
 * comparing them: up to 16 bytes are two overlapping 8-byte loads */
static inline int key_eq(const void *a, const void *b, size_t n) {
  const char *x = a, *y = b;
  if (n >= 8 && n <= 16) {
    uint64_t x0, y0, x1, y1;
    memcpy(&x0, x, 8);
    memcpy(&y0, y, 8);
    memcpy(&x1, x + n - 8, 8);
    memcpy(&y1, y + n - 8, 8);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  if (n >= 4 && n < 8) {
    uint32_t x0, y0, x1, y1;
    memcpy(&x0, x, 4);
    memcpy(&y0, y, 4);
    memcpy(&x1, x + n - 4, 4);
    memcpy(&y1, y + n - 4, 4);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  if (n < 4) {
    for (size_t i = 0; i < n; i++)
      if (x[i] != y[i]) return 0;
    return 1;
  }
  return memcmp(x, y, n) == 0;
}

/* validation: every ref read from the arena is checked */

/* The heap's bounds as ent_ok checks a ref against them: read once for a
 * walk that checks many refs and stores into entries (a byte store may alias
 * the header and the handle, so ent_ok would read them again for each). */
typedef struct heap_view {
  char *base;
  uint64_t lo, top;   /* 0, 0 when the header's are out of the mapping (nothing is ok) */
} heap_view;
static inline heap_view heap_view_of(const seg *s) {
  const hdr *h = H(s);
  heap_view v = {s->base, h->heap_start, h->top};
  if (v.top > s->mapped) v.lo = v.top = 0;
  return v;
}
/* ent_ok against a heap_view taken in this lock hold */
static inline int ent_ok_in(heap_view v, ref_t r) {
  uint64_t off = (uint64_t)r * UNIT;
  if (off < v.lo || off + ENT_HDR > v.top) return 0;
  const ent *e = (const ent *)(v.base + off);
  uint64_t units = BLK_UNITS(e->blk);
  if ((e->blk & BLK_FREE) || off + units * UNIT > v.top) return 0;
  size_t need = (e->type == T_NSREC) ? NS_DATA_OFF + sizeof(nsdata) + e->klen
                                     : ENT_HDR + opt_bytes(e->flags) + e->klen +
                                           EF_SLACK(e->flags);
  return need <= units * UNIT;
}

/* What a walk that reads only entry headers (with their expiry) and flips a
 * flag bit needs of r, and less than ent_ok: an allocated block inside the
 * heap that holds that much.  (Not its key: such a walk never reads it.) */
static inline int ent_hdr_ok_in(heap_view v, ref_t r) {
  uint64_t off = (uint64_t)r * UNIT;
  if (off < v.lo || off + ENT_HDR > v.top) return 0;
  const ent *e = (const ent *)(v.base + off);
  uint64_t bytes = (uint64_t)BLK_UNITS(e->blk) * UNIT;
  return !(e->blk & BLK_FREE) && bytes >= ENT_HDR + opt_bytes(e->flags) && bytes <= v.top - off;
}

/* is r the start of an allocated entry block inside the heap? */
static inline int ent_ok(seg *s, ref_t r) {
  hdr *h = H(s);
  uint64_t off = (uint64_t)r * UNIT;
  if (off < h->heap_start || off + ENT_HDR > h->top || h->top > s->mapped) return 0;
  ent *e = E(s, r);
  uint64_t units = BLK_UNITS(e->blk);
  if ((e->blk & BLK_FREE) || off + units * UNIT > h->top) return 0;
  size_t need = (e->type == T_NSREC) ? NS_DATA_OFF + sizeof(nsdata) + e->klen
                                     : ENT_HDR + opt_bytes(e->flags) + e->klen +
                                           EF_SLACK(e->flags);
  return need <= units * UNIT;
}

/* an entry whose ref was read from the arena: checked, a damaged one FAILs */
static inline ent *ent_at(seg *s, ref_t r) {
  if (UNLIKELY(!ent_ok(s, r))) FAIL(s, ZKV_ECORRUPT);
  return E(s, r);
}

static inline int ns_valid(seg *s, ref_t ns) {
  return ent_ok(s, ns) && E(s, ns)->type == T_NSREC;
}

static inline nsdata *ns_data_raw(seg *s, ref_t ns) {
  return (nsdata *)((char *)P(s, ns) + NS_DATA_OFF);
}

#endif
