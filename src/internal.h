/*
 * internal.h -- the layout of a zeltkv arena and the engine's private API.
 *
 * Everything a store holds lives in one arena: a private mapping (memory
 * driver) or a file in /dev/shm mapped by every process (shared driver).
 * Nothing inside the arena is a pointer: blocks refer to each other by "refs",
 * offsets in 8-byte units (0 = none), so the bytes mean the same at any
 * address, in any process, after mremap moves them.
 *
 * Locking discipline (as in memcached's items.c): functions named do_* assume
 * the caller holds the store lock and is inside op_enter/op_leave; the public
 * zkv_* functions in ops.c take it.
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

#include "zeltkv.h"

#define ZKV_MAGIC "ZELTKV\0\1"
#define ZKV_FORMAT 2u
#define UNIT 8u
typedef uint32_t ref_t;

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

/* ---- allocator ---------------------------------------------------------- */
/* Every block starts with a u32 header: size in units << 2 | flags.  A free
 * block also keeps its size in its last u32 (footer), so that freeing its
 * right-hand neighbour can coalesce backwards, and (when 2 units or more) list
 * links.  Free blocks of 1 unit are on no list; coalescing reclaims them. */
#define BLK_FREE 1u
#define BLK_PREVFREE 2u
#define BLK_UNITS(h) ((h) >> 2)
#define NCLASS 96        /* 0..63 exact sizes in units, then log2 classes */

/* ---- entries ------------------------------------------------------------ */
/* An entry (a key, or a namespace record) is one allocated block:
 *   ent header (30 bytes) [int64 expires_ms if EF_EXP] [u32 uflags if EF_UFLAGS]
 *   key bytes, value bytes, slack (0..7 bytes, its size in flags)
 * Namespace records (type T_NSREC) hold a struct nsdata at byte 32 and their
 * name (as key) after it. */
typedef struct ent {
  uint32_t blk;       /* allocator header */
  uint32_t hnext;     /* next in hash chain */
  uint32_t nprev;     /* namespace key list (sibling list for ns records) */
  uint32_t nnext;
  uint32_t ns;        /* namespace record ref (the parent, for ns records) */
  uint32_t seq;       /* insertion number in its namespace: keys() order */
  uint16_t klen;
  uint16_t atime;     /* coarse seconds of last use (lru sampling) */
  uint8_t type;       /* enum zkv_type, or T_NSREC */
  uint8_t flags;      /* EF_* | slack << 5 */
} __attribute__((packed)) ent;

#define ENT_HDR 30u
#define EF_EXP 1u
#define EF_UFLAGS 2u
#define EF_FLUSHED 4u   /* expired now by zkv_expire_all, whatever its ttl said */
#define EF_DELETED 8u   /* deleted, its block kept for a while: see "deleted keys" below */
#define EF_SLACK(f) ((f) >> 5)
#define T_NSREC 255u

/* Deleted keys.  Deleting a small key does not unlink and free it: it is
 * flagged EF_DELETED in place (one record of undo log instead of some thirty
 * for the unlink and the free), and a set of the same key soon after (a lock
 * released and taken again, shdict's add + delete) writes it back in place
 * instead of allocating.  Such a key is absent for every function and not
 * counted by stats; it keeps its place in the index and its namespace list
 * (count() walks the list while any is kept).  At most
 * NDEAD are kept, in a ring (a block of the arena): the key's atime holds its slot
 * (recency means nothing for it).  When the ring is full the oldest is freed
 * for real, and an allocation that finds no room frees them all first. */
#define NDEAD 2048u
#define DEAD_MAX_BYTES 256u   /* larger blocks are freed at once */

typedef struct nsdata {
  uint32_t head, tail;   /* key list, in seq order */
  uint32_t child;        /* first child namespace record */
  uint32_t next_seq;
  uint64_t nkeys;        /* entries in the list (live or expired) */
  uint64_t nttl;         /* of which carry an expiry */
  uint32_t tag;          /* random: tells a live record from a reused block */
  uint32_t pad;
} nsdata;
#define NS_DATA_OFF 32u
/* the bucket array is a block too: its refs start after the block header */
#define BUCKETS_OFF 8u

/* ---- arena header ------------------------------------------------------- */
typedef struct hdr {
  char magic[8];
  uint32_t format;
  uint32_t hdr_bytes;
  uint64_t size;           /* bytes of the arena (the file size, for shared) */
  uint64_t capacity;       /* data limit in bytes, 0 = unbounded */
  _Atomic uint32_t ready;  /* 1 once the creator finished */
  uint32_t evict;
  uint32_t shared;
  uint32_t pad0;
  /* The lock has a cache line of its own: a waiter spinning on it must not
   * pull away the line the holder keeps writing (seq, log_used). */
  char pad1[16];
  _Atomic uint32_t lock;   /* shared driver: 0, or the holder's thread id | LOCK_WAITERS (txn.c) */
  char pad2[60];
  _Atomic uint64_t seq;    /* odd while a writer is changing the arena */
  uint64_t log_used;       /* bytes of undo log in use; 0 = committed */
  char pad_seq[48];
  /* allocator */
  uint64_t heap_start;     /* bytes */
  uint64_t top;            /* bytes: first byte never allocated */
  uint64_t bytes_used;     /* bytes in allocated blocks */
  uint64_t class_bits[2];  /* non-empty free lists */
  ref_t free_heads[NCLASS];
  /* index */
  ref_t buckets;
  uint32_t nb_log2;
  uint64_t nentries;       /* entries in the index (keys + ns records) */
  uint64_t nkeys;
  ref_t root_ns;
  uint32_t pad3;
  uint64_t nns;
  /* undo log (shared driver: in the arena) */
  uint64_t log_off, log_cap;
  /* stats */
  uint64_t evictions, expired_freed, gc_runs, lock_recoveries;
  uint64_t lru_clock;      /* write operations so far: the lru age unit */
  uint32_t rebuild;        /* the index was regrown in this lock hold (not logged) */
  uint32_t pad4;
  /* sweep */
  uint32_t gc_active, gc_cursor;
  int64_t gc_next_ms;
  /* deleted keys whose blocks are kept (index.c, do_bury) */
  uint64_t ndead;          /* how many */
  uint64_t dead_bytes;     /* their blocks' bytes (not counted as used by stats) */
  uint32_t dead_next;      /* the ring slot the next one takes */
  ref_t dead_ring;         /* block of NDEAD refs (after 8 bytes), made with the store;
                            * a deleted key's slot is its atime */
} hdr;
#define RING_OFF 8u

/* ---- process-side state ------------------------------------------------- */
/* A segment mapping, shared by every handle of this process on that segment,
 * so that lock ownership and transaction depth are per process-thread, not
 * per handle. */
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
  ref_t *move;             /* compaction: keys to move */
  size_t cap_move;
  size_t npend, cap_pend;
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
  uint64_t max_map;        /* memory: largest mapping allowed (0 = none) */
  void *jb;                /* sigjmp_buf: where FAIL goes during an op */
  int64_t gc_t0;           /* ns: start of the gc step in this lock hold */
  uint64_t max_lock_ns;
  uint32_t pin;            /* entry that eviction must not take */
  int noevict;             /* this op must not evict (ZKV_SET_NOEVICT) */
  uint64_t evicted;        /* live keys evicted so far (for zkv_set_ex) */
  uint64_t rng;
  uint64_t seen_recoveries; /* lock_recoveries when the header was last checked */
  struct { ref_t r; uint16_t atime; } pool[16]; /* lru eviction candidates */
  int npool;
  uint16_t pool_now;
} seg;
#define EVICT_POOL 16

uint64_t zkv_rand(seg *s);

struct zkv_db {
  seg *s;
  int closed;
  int64_t gc_interval_ms;
  int64_t lock_timeout_ms;
  uint32_t opcount;
  int txn_levels;           /* zkv_begin levels opened through this handle */
  char *buf;               /* copies of values read without the lock */
  size_t buf_cap;
};

/* ---- helpers ------------------------------------------------------------ */
#define H(s) ((hdr *)(s)->base)
#define P(s, ref) ((void *)((s)->base + (uint64_t)(ref) * UNIT))
#define E(s, ref) ((ent *)P(s, ref))
#define REF(s, ptr) ((ref_t)(((char *)(ptr) - (s)->base) / UNIT))

/* raise an engine error from deep inside an op: rolls back to the op's start */
_Noreturn void zkv_fail(seg *s, int rc);
#define FAIL(s, rc) zkv_fail(s, rc)

/* undo log */
void zkv_log(seg *s, const void *p, size_t len);
#define REC_LEN_BITS 24
#define REC_MAX ((1ull << REC_LEN_BITS) - 1)

/* Before the first change of a lock hold on a shared segment: make seq odd
 * (lock-free readers then retry).  Only the lock holder writes seq, so plain
 * stores do (no atomic read-modify-write); the release fence orders the odd
 * value before the changes that follow. */
static inline void zkv_mark_dirty(seg *s) {
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
static inline void zkv_logw(seg *s, const void *p, size_t len) {
  if (len <= 64 && s->shared) {
    hdr *h = (hdr *)s->base;
    if (UNLIKELY(!s->dirty)) zkv_mark_dirty(s);
    uint64_t rec = ((len + 7) & ~(size_t)7) + 8;
    if (LIKELY(h->log_used + rec <= h->log_cap && h->log_off + h->log_cap <= s->mapped)) {
      char *dst = s->base + h->log_off + h->log_used;
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
  zkv_log(s, p, len);
}
#define LOGW(s, p, len) do { if ((s)->logging) zkv_logw(s, p, len); } while (0)
void zkv_undo_to(seg *s, uint64_t mark);
uint64_t zkv_log_pos(seg *s);

/* clock */
int64_t zkv_now(void);          /* ms, monotonic, with the test offset */
int64_t zkv_now_ns_raw(void);
uint16_t zkv_coarse_sec(void);

/* allocator (alloc.c) */
ref_t do_alloc(zkv_db *db, uint64_t units);    /* FAILs with ZKV_EFULL */
ref_t do_alloc_try(zkv_db *db, uint64_t units, int may_evict, int *rc); /* 0 + rc on failure */
void do_free(seg *s, ref_t r);
void do_free_now(seg *s, ref_t r);
void zkv_alloc_init(seg *s);

/* index (index.c) */
uint64_t zkv_hash(ref_t ns, const void *key, size_t klen, int is_ns);
ref_t do_find(seg *s, ref_t ns, const void *key, size_t klen, uint64_t h, int is_ns);
nsdata *ns_data(seg *s, ref_t ns);
int64_t zkv_now_coarse(void);  /* ms, coarse (a few ms), with the test offset */
void do_unlink_free(zkv_db *db, ref_t r, int expired);
void do_unlink_free_h(zkv_db *db, ref_t r, int expired, uint64_t h);
void do_link_new(zkv_db *db, ref_t ns, ref_t r, uint64_t h);
void do_replace(zkv_db *db, ref_t old, ref_t nw, uint64_t h);
void do_replace_keep(zkv_db *db, ref_t old, ref_t nw, uint64_t h);
void do_relocate(zkv_db *db, ref_t old, ref_t nw);
void do_maybe_grow(zkv_db *db);
ref_t do_new_ns(zkv_db *db, ref_t parent, const void *name, size_t len, uint64_t h);
void zkv_index_init(zkv_db *db);
void do_rebuild_index(seg *s);
int do_evict_one(zkv_db *db);
int do_bury(zkv_db *db, ref_t r);
void do_move_to_tail(zkv_db *db, ref_t r);
void do_dead_forget(seg *s, ref_t r);
int do_dead_flush(zkv_db *db);
uint16_t zkv_lru_now(seg *s);
int do_sweep(zkv_db *db, uint64_t *cursor, uint64_t budget, int all, uint64_t *freed, uint64_t max);
ref_t *bucket_at(seg *s, uint64_t i);

/* this thread's id for seg.owner: a number no other thread of the process
 * ever had, not pthread_self() (a new thread may get the control block of one
 * that ended holding the lock, and would then take its lock as its own).
 * Initial-exec TLS: one load, no __tls_get_addr call. */
extern __thread uintptr_t zkv_thread_token __attribute__((tls_model("initial-exec")));
uintptr_t zkv_new_token(void);
static inline uintptr_t zkv_self(void) {
  uintptr_t t = zkv_thread_token;
  return LIKELY(t != 0) ? t : zkv_new_token();
}

/* does this thread hold the store lock (inside an op or transaction)?  A
 * private store has one thread; elsewhere the owner word tells, without a
 * read of depth (the holder writes it: a data race for anyone else). */
static inline int seg_owned(seg *s) {
  if (!s->threadsafe && !s->shared) return s->depth > 0;
  uintptr_t o = atomic_load_explicit(&s->owner, memory_order_relaxed);
  return o != 0 && o == zkv_self();
}

/* Loop bounds that hold whatever a damaged segment says: no list or chain
 * can hold more entries than fit in the arena (an entry takes >= 32 bytes). */
static inline uint64_t ent_limit(const seg *s) { return s->mapped / 32 + 1; }

/* the bucket count, checked: a damaged exponent is a damaged segment */
static inline uint64_t nbuckets(seg *s) {
  uint32_t lg = H(s)->nb_log2;
  if (UNLIKELY(lg > 30)) FAIL(s, ZKV_ECORRUPT);
  return 1ull << lg;
}

/* entries (inline: they are on every lookup) */
static inline size_t opt_bytes(unsigned f) {
  return ((f & EF_EXP) ? 8u : 0u) + ((f & EF_UFLAGS) ? 4u : 0u);
}

static inline size_t ent_units(size_t klen, size_t vlen, unsigned eflags) {
  return (ENT_HDR + opt_bytes(eflags) + klen + vlen + UNIT - 1) / UNIT;
}

static inline const char *ent_key(const ent *e) {
  if (e->type == T_NSREC) return (const char *)e + NS_DATA_OFF + sizeof(nsdata);
  return (const char *)e + ENT_HDR + opt_bytes(e->flags);
}

static inline char *ent_val(ent *e, size_t *vlen) {
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

static inline int ent_live(const ent *e, int64_t now) {
  if (!(e->flags & (EF_EXP | EF_FLUSHED | EF_DELETED))) return 1;
  if (e->flags & (EF_FLUSHED | EF_DELETED)) return 0;
  int64_t x;
  memcpy(&x, (const char *)e + ENT_HDR, 8);
  return x == 0 || now < x;
}

/* does the entry count among its namespace's nttl (it can expire, or has)? */
static inline int ent_timed(const ent *e) {
  return (e->flags & EF_FLUSHED) || ent_exp(e) != 0;
}

/* validation: every ref read from the arena is checked */

/* is r the start of an allocated entry block inside the heap? */
/* ent_live at the current time; reads the clock only for keys with a ttl */
static inline int ent_alive(const ent *e) {
  if (!(e->flags & (EF_EXP | EF_FLUSHED | EF_DELETED))) return 1;
  if (e->flags & (EF_FLUSHED | EF_DELETED)) return 0;
  int64_t x;
  memcpy(&x, (const char *)e + ENT_HDR, 8);
  /* the coarse clock is at most one tick (<= 10 ms) behind: a key expiring
   * well after it is alive without reading the precise clock (~20 ns) */
  if (x == 0 || x - zkv_now_coarse() > 25) return 1;
  return zkv_now() < x;
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

static inline int ns_valid(seg *s, ref_t ns) {
  return ent_ok(s, ns) && E(s, ns)->type == T_NSREC;
}

/* ops.c / txn.c */
int op_enter(zkv_db *db);
int op_leave(zkv_db *db, int rc);
void zkv_seg_forked(seg *s);   /* in a child just forked: can it still be used? */

/* arena.c */
int zkv_grow(seg *s, uint64_t need_bytes);     /* memory driver */
int zkv_validate(const hdr *h, uint64_t file_size); /* header checks, ZKV_OK or an error */
int zkv_bounds(seg *s, uint64_t off, uint64_t len);
/* tests (C tests link the static library): called when a segment being
 * created is complete, just before it is published under its name */
extern void (*zkv_test_create_hook)(void);

#endif
