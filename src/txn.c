/*
 * txn.c -- the store lock, the undo log, transactions and crash recovery.
 *
 * One mechanism serves three needs.  While the lock is held, every change to
 * bytes of the arena first appends (offset, old bytes) to the undo log:
 *  - an operation that fails half-way is undone back to its start;
 *  - zkv_rollback undoes back to the savepoint of its zkv_begin;
 *  - a process that dies holding the lock leaves the log behind, and the
 *    next process to take the lock (from the dead holder) undoes it.
 * Commit is truncating the log.  The shared driver logs always (it must
 * survive a SIGKILL); the memory driver only inside transactions, and its
 * operations are written to fail before they change anything.
 *
 * Lock-free readers (shared driver) rely on `seq`: a writer makes it odd
 * before its first change and even again at commit.
 *
 * The record format is in format.h (crash recovery reads it from the segment).
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

_Noreturn void op_fail(seg *s, int rc) { siglongjmp(*(sigjmp_buf *)s->jb, rc); }

/* ---- undo log ----------------------------------------------------------- */

/* A shared segment's log is its fixed region, then (inside a transaction
 * only) log chunks taken from the heap's free room as it fills: see format.h.
 * The header's window (log_bias, log_end) is derived from log_chunk here. */

/* the chunk at ref c, checked (0 when it is not one: a damaged ref) */
static log_chunk *chunk_at(seg *s, ref_t c) {
  hdr *h = H(s);
  uint64_t off = (uint64_t)c * UNIT;
  if (off < h->heap_start || off + LOG_CHUNK_HDR > h->top || h->top > s->mapped) return NULL;
  log_chunk *k = (log_chunk *)(s->base + off);
  uint64_t bytes = (uint64_t)BLK_UNITS(k->blk) * UNIT;
  if ((k->blk & BLK_FREE) || k->magic != LOG_CHUNK_MAGIC || bytes <= LOG_CHUNK_HDR ||
      bytes > h->top - off)
    return NULL;
  return k;
}

/* set the window from log_chunk; -1 if the chunk is damaged */
static int log_window(seg *s) {
  hdr *h = H(s);
  if (!h->log_chunk) {
    h->log_bias = h->log_off;
    h->log_end = h->log_cap;
    return 0;
  }
  log_chunk *k = chunk_at(s, h->log_chunk);
  if (!k) return -1;
  h->log_bias = (uint64_t)h->log_chunk * UNIT + LOG_CHUNK_HDR - k->vbase;
  h->log_end = k->vbase + (uint64_t)BLK_UNITS(k->blk) * UNIT - LOG_CHUNK_HDR;
  return 0;
}

static void put_record(seg *s, const void *p, size_t len);

/* the first log position of the window */
static uint64_t window_start(seg *s) {
  hdr *h = H(s);
  return h->log_chunk ? ((log_chunk *)P(s, h->log_chunk))->vbase : 0;
}

/* A chunk is an eighth of the log so far, at least LOG_CHUNK_MIN, at most
 * LOG_CHUNK_MAX and an eighth of the free room (few chunks for a big
 * transaction, none that takes much of the room its writes need), more if
 * one block can give what is asked at once; down to LOG_CHUNK_FLOOR when the
 * free room is in pieces.  GROW_LOG_BYTES is what a chunk's allocation
 * itself may log. */
#define LOG_CHUNK_MIN (16u << 10)
#define LOG_CHUNK_MAX (16u << 20)
#define LOG_CHUNK_FLOOR 1024u
#define GROW_LOG_BYTES 1024u

/* the log bytes a chunk holds, less what a record split at its end wastes */
static uint64_t chunk_room(const log_chunk *k) {
  return (uint64_t)BLK_UNITS(k->blk) * UNIT - LOG_CHUNK_HDR - 16;
}

int log_room_grow(seg *s, uint64_t need) {
  hdr *h = H(s);
  if (h->log_used > h->log_end) return 0;
  uint64_t avail = h->log_end - h->log_used;
  for (ref_t c = h->log_ahead; c && avail < need;) {
    log_chunk *k = chunk_at(s, c);
    if (!k) FAIL(s, ZKV_ECORRUPT);
    avail += chunk_room(k);
    c = k->next;
  }
  if (avail >= need) return 1;
  if (s->txn_depth == 0 || !s->logging) return 0;
  /* the allocations are logged: in the window, or in a chunk ahead */
  if (h->log_end - h->log_used < GROW_LOG_BYTES && !h->log_ahead) return 0;
  uint64_t heap = h->size - h->heap_start;
  uint64_t free_room = heap > h->bytes_used ? heap - h->bytes_used : 0;
  while (avail < need) {
    uint64_t want = h->log_used / 8;
    if (want < LOG_CHUNK_MIN) want = LOG_CHUNK_MIN;
    if (want > LOG_CHUNK_MAX) want = LOG_CHUNK_MAX;
    if (want > free_room / 8) want = free_room / 8;
    if (want < need - avail + GROW_LOG_BYTES) want = need - avail + GROW_LOG_BYTES;
    uint64_t u = (want + LOG_CHUNK_HDR + 16 + UNIT - 1) / UNIT, floor = LOG_CHUNK_FLOOR / UNIT;
    ref_t c = 0;
    for (;;) {
      c = blk_alloc_clean(s, u);
      if (c || u <= floor) break;
      u = u / 2 > floor ? u / 2 : floor;
    }
    if (!c) return 0;
    h = H(s);
    uint64_t cost = h->log_used;
    log_chunk *k = (log_chunk *)P(s, c);   /* its bytes are free room's: not logged */
    k->prev = 0;
    k->magic = LOG_CHUNK_MAGIC;
    k->vbase = 0;
    LOGW(s, &h->log_ahead, 4);   /* (may move the window to a chunk ahead first) */
    h = H(s);
    k->next = h->log_ahead;
    atomic_signal_fence(memory_order_seq_cst);
    h->log_ahead = c;
    avail += chunk_room(k);
    /* the records of the allocation came out of avail (no more than the
     * log so far: its records were written before cost was read) */
    (void)cost;
    avail -= avail > GROW_LOG_BYTES / 2 ? GROW_LOG_BYTES / 2 : avail;
  }
  return 1;
}

/* The window is full: the first chunk ahead becomes the window, its first
 * record the change of log_ahead.  Only header and chunk stores: safe in
 * the middle of any change (no allocation).  A process that dies in between
 * leaves log_chunk naming it with no record in it yet, which undo steps
 * over (the chunk is still first ahead). */
static int window_next(seg *s) {
  hdr *h = H(s);
  ref_t c = h->log_ahead;
  if (!c) return 0;
  log_chunk *k = chunk_at(s, c);
  if (!k) FAIL(s, ZKV_ECORRUPT);
  k->prev = h->log_chunk;
  k->vbase = h->log_used;
  atomic_signal_fence(memory_order_seq_cst);
  h->log_chunk = c;
  atomic_signal_fence(memory_order_seq_cst);
  if (log_window(s)) FAIL(s, ZKV_ECORRUPT);
  put_record(s, &h->log_ahead, 4);
  h->log_ahead = k->next;
  return 1;
}

/* write one record that fits in the window (shared) or the private log */
static void put_record(seg *s, const void *p, size_t len) {
  uint64_t off = (uint64_t)((const char *)p - s->base);
  uint64_t padded = (len + 7) & ~(uint64_t)7;
  char *dst;
  if (s->shared) {
    hdr *h = H(s);
    uint64_t at = h->log_bias + h->log_used;
    if (UNLIKELY(at > s->mapped || padded + 8 > s->mapped - at)) FAIL(s, ZKV_ECORRUPT);
    dst = s->base + at;
  } else {
    dst = s->mlog + s->mlog_used;
  }
  memcpy(dst, p, len);
  uint64_t tr = off << REC_LEN_BITS | len;
  memcpy(dst + padded, &tr, 8);
  /* the record must be complete before it counts, and count before the change
   * it protects is made: a process may die between any two stores */
  atomic_signal_fence(memory_order_seq_cst);
  if (s->shared) H(s)->log_used += padded + 8;
  else s->mlog_used += padded + 8;
  atomic_signal_fence(memory_order_seq_cst);
}

void log_record(seg *s, const void *p, size_t len) {
  /* a record holds at most REC_MAX bytes: longer ones are split */
  while (len > REC_MAX) {
    log_record(s, p, REC_MAX);
    p = (const char *)p + REC_MAX;
    len -= REC_MAX;
  }
  uint64_t rec = ((len + 7) & ~(uint64_t)7) + 8;
  if (!s->shared) {
    if (s->mlog_used + rec > s->mlog_cap) {
      uint64_t cap = s->mlog_cap ? s->mlog_cap * 2 : 4096;
      while (cap < s->mlog_used + rec) cap *= 2;
      char *n = realloc(s->mlog, cap);
      if (!n) FAIL(s, ZKV_ENOMEM);
      s->mlog = n;
      s->mlog_cap = cap;
    }
    put_record(s, p, len);
    return;
  }
  if (!s->dirty) log_dirty(s);
  hdr *h = H(s);
  for (;;) {
    uint64_t room = h->log_used <= h->log_end ? h->log_end - h->log_used : 0;
    if (rec <= room) break;
    if (!h->log_ahead) {
      /* the window is full and nothing is ahead: in a transaction the log
       * grew as far as the free room allowed (log_room), so the store is
       * full; outside one an op logged more than the fixed region holds */
      FAIL(s, s->txn_depth > 0 ? ZKV_EFULL : ZKV_ETXN);
    }
    if (room >= 24 && len > 8) {   /* the window's rest takes a piece of it */
      size_t piece = (size_t)((room - 8) & ~(uint64_t)7);
      put_record(s, p, piece);
      p = (const char *)p + piece;
      len -= piece;
      rec = ((len + 7) & ~(uint64_t)7) + 8;
    }
    window_next(s);
    h = H(s);
  }
  put_record(s, p, len);
}

uint64_t log_pos(seg *s) { return s->shared ? H(s)->log_used : s->mlog_used; }

/* Check a record's trailer `t` found at a log position ending at pos, whose
 * record must lie in [lo, pos): returns its offset and length, or -1 */
static int rec_check(seg *s, uint64_t t, uint64_t pos, uint64_t lo, uint64_t *at, uint64_t *len) {
  *at = t >> REC_LEN_BITS;
  *len = t & REC_MAX;
  uint64_t padded = (*len + 7) & ~(uint64_t)7;
  if (padded + 8 > pos - lo || *at > s->mapped || *len > s->mapped - *at) return -1;
  return 0;
}

/* apply the log backwards down to `mark`; returns 0, or -1 if the log is
 * damaged (then the rest is left alone).  Each record applied shortens the
 * log at once, and a chunk left behind is dropped from the chain before the
 * records under it (its own allocation among them) are applied: a process
 * killed while it undoes leaves a log the next one undoes on from there. */
/* tests: called before each record crash recovery applies (test_crash.c
 * kills the recovering process there) */
void (*txn_test_recover_hook)(void);
static __thread int recovering;

static int undo(seg *s, uint64_t mark) {
  if (!s->shared) {
    uint64_t pos = s->mlog_used;
    while (pos > mark) {
      uint64_t t, at, len;
      if (pos < mark + 8) return -1;
      memcpy(&t, s->mlog + pos - 8, 8);
      if (rec_check(s, t, pos, mark, &at, &len)) return -1;
      pos -= 8 + ((len + 7) & ~(uint64_t)7);
      memmove(s->base + at, s->mlog + pos, len);
      s->mlog_used = pos;
    }
    return 0;
  }
  hdr *h = H(s);
  for (;;) {
    uint64_t pos = h->log_used;
    uint64_t lo = window_start(s);
    if (pos == lo && h->log_chunk) {
      /* the window's chunk is done with (its first record, undone, put it
       * back ahead): the window before it goes on.  Also when the mark is
       * here: a chunk is never both the window and ahead. */
      log_chunk *k = chunk_at(s, h->log_chunk);
      if (!k) return -1;
      h->log_chunk = k->prev;
      atomic_signal_fence(memory_order_seq_cst);
      if (log_window(s)) return -1;
      continue;
    }
    if (pos <= mark) return 0;
    if (lo < mark) lo = mark;
    uint64_t base_end = h->log_bias + h->log_end;   /* the window's end in the arena */
    if (pos > h->log_end || pos < lo + 8 || base_end > s->mapped) return -1;
    uint64_t t, at, len;
    memcpy(&t, s->base + (h->log_bias + pos - 8), 8);
    if (rec_check(s, t, pos, lo, &at, &len)) return -1;
    /* a record never restores bytes of the log itself (the fixed region, the
     * window's chunk past its allocator header, whose PREVFREE bit a free of
     * the block before changes) or of the lock (none is ever written; a
     * damaged log might say so, and the lock must stay ours) */
    uint64_t c0 = (uint64_t)h->log_chunk * UNIT + 4, c1 = h->log_chunk ? base_end : 0;
    if ((at < h->log_off + h->log_cap && at + len > h->log_off) || (at < c1 && at + len > c0) ||
        (at < offsetof(hdr, lock) + sizeof(uint32_t) && at + len > offsetof(hdr, lock)))
      return -1;
    if (UNLIKELY(recovering) && txn_test_recover_hook) txn_test_recover_hook();
    pos -= 8 + ((len + 7) & ~(uint64_t)7);
    memmove(s->base + at, s->base + (h->log_bias + pos), len);
    atomic_signal_fence(memory_order_seq_cst);
    h->log_used = pos;
  }
}

void log_undo_to(seg *s, uint64_t mark) {
  if (s->shared && !s->dirty) log_dirty(s);
  undo(s, mark);
}

/* After the commit point (log_used 0): free the chunks of the log just
 * committed (or of one a dead holder committed), each free a small logged
 * change of its own in the fixed region, committed at once; a process killed
 * in between leaves log_spare for the next holder (recover). */
static void free_chunks(seg *s) {
  hdr *h = H(s);
  if (h->log_chunk) {
    if (!h->log_spare) h->log_spare = h->log_chunk;
    atomic_signal_fence(memory_order_seq_cst);
    h->log_chunk = 0;
  }
  log_window(s);
  int logging = s->logging;
  void *prevjb = s->jb;
  sigjmp_buf jb;
  s->jb = &jb;
  s->logging = 1;
  if (!s->dirty) log_dirty(s);
  if (sigsetjmp(jb, 0) == 0) {
    /* the chain of the log (linked by prev), then the chunks ahead (by next) */
    for (ref_t *head = &h->log_spare;; head = &h->log_ahead) {
      while (*head) {
        ref_t c = *head;
        log_chunk *k = chunk_at(s, c);
        if (!k) FAIL(s, ZKV_ECORRUPT);
        LOGW(s, head, 4);
        *head = head == &h->log_spare ? k->prev : k->next;
        blk_free_now(s, c);
        atomic_signal_fence(memory_order_seq_cst);
        h->log_used = 0;
      }
      if (head == &h->log_ahead) break;
    }
  } else {
    /* a damaged chain: what it still holds stays allocated (lost room, never
     * a block freed twice) */
    undo(s, 0);
    h->log_used = 0;
    h->log_spare = 0;
    h->log_ahead = 0;
  }
  s->jb = prevjb;
  s->logging = logging;
}

int log_chunk_is(seg *s, ref_t r) {
  hdr *h = H(s);
  if (!(h->log_chunk | h->log_ahead) || !chunk_at(s, r)) return 0;
  for (int ahead = 0; ahead < 2; ahead++) {
    uint64_t guard = h->top / UNIT;
    for (ref_t c = ahead ? h->log_ahead : h->log_chunk; c && guard--;) {
      log_chunk *k = chunk_at(s, c);
      if (!k) return 0;
      if (c == r) return 1;
      c = ahead ? k->next : k->prev;
    }
  }
  return 0;
}

/* ---- lock --------------------------------------------------------------- */


static void recover(seg *s) {
  hdr *h = H(s);
  s->dirty = 0;
  log_dirty(s);
  /* the window as log_chunk says (the dead holder may have died between the
   * two), unless the log was committed: then its chunks are spare */
  recovering = 1;
  int bad = h->log_used && (log_window(s) != 0 || undo(s, 0) != 0);
  recovering = 0;
  if (bad) {
    h->log_chunk = 0;   /* damaged: what the chains hold stays allocated */
    h->log_spare = 0;
    h->log_ahead = 0;
  }
  h->log_used = 0;
  if (h->log_chunk || h->log_spare || h->log_ahead) free_chunks(s);
  log_window(s);
  h->lock_recoveries++;
}

/* The shared segment's lock is a futex word of our own: 0 when free, else
 * the holder's thread id, with LOCK_WAITERS set once someone sleeps on it.
 * Taking it free is one compare-and-swap and giving it back one exchange
 * (a robust pthread mutex costs two to three times as much: it keeps the
 * kernel's robust list on every lock and unlock).  A holder that died is
 * found by its waiters instead: its thread id names no thread, or a zombie.
 * The waiter that swaps its own id in over the dead one then undoes the
 * dead holder's log (recover).  Thread ids are at most
 * 2^22 on Linux (PID_MAX_LIMIT), so bit 31 is free for LOCK_WAITERS. */
#define LOCK_WAITERS 0x80000000u
#define LOCK_TID 0x7fffffffu
#define LOCK_CHECK_NS 20000000   /* a sleeping waiter looks at the holder this often */
#define LOCK_SPIN_NS 50000       /* a waiter spins this long before it sleeps */

__thread uintptr_t lock_thread_token __attribute__((tls_model("initial-exec")));
static _Atomic uintptr_t last_token;

uintptr_t lock_new_token(void) {
  lock_thread_token = atomic_fetch_add(&last_token, 1) + 1;
  return lock_thread_token;
}

/* initial-exec, as lock_thread_token: read by every locked op, and the
 * default model of a shared object calls __tls_get_addr for each read */
static __thread uint32_t tid_cache __attribute__((tls_model("initial-exec")));
static pthread_once_t tid_once = PTHREAD_ONCE_INIT;
static void tid_forget(void) { tid_cache = 0; }   /* a forked child has its own id */
static void tid_init(void) { pthread_atfork(NULL, NULL, tid_forget); }

static uint32_t my_tid(void) {
  if (UNLIKELY(!tid_cache)) {
    pthread_once(&tid_once, tid_init);
    tid_cache = (uint32_t)syscall(SYS_gettid);
  }
  return tid_cache;
}

/* is the thread `tid` gone (or a zombie, which never runs again)? */
static int holder_dead(uint32_t tid) {
  if (tid == 0 || tid > 0x400000u) return 1;   /* no thread has that id */
  if (kill((pid_t)tid, 0) != 0 && errno == ESRCH) return 1;
  char path[48], buf[512];
  snprintf(path, sizeof path, "/proc/%u/stat", (unsigned)tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  char *p = strrchr(buf, ')');   /* "tid (comm) S ...": comm may hold anything */
  return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val, int64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, &ts, NULL, 0);
}

/* take the lock the slow way: spin, then sleep; returns ZKV_OK, ZKV_ETIMEDOUT,
 * or 1 when it was taken from a dead holder */
static int lock_slow(zkv_db *db, _Atomic uint32_t *w, uint32_t me) {
  /* Spin a little before sleeping: operations hold the lock for well under a
   * microsecond, and a waiter that sleeps costs both sides a futex system call
   * (the holder must wake it).  With exponential backoff: a waiter that looks
   * at the lock word less and less often leaves the holder its cache lines,
   * so two processes hammering one key lose little to each other.  Bounded
   * in time, not in pauses: in a virtual machine a pause may exit to the
   * hypervisor and cost half a microsecond (64 rounds were 100 ms here). */
  int64_t spin_end = clock_ns() + LOCK_SPIN_NS;
  for (int pause = 16;; pause = pause < 4096 ? pause * 2 : pause) {
    for (int i = 0; i < pause; i++) cpu_relax();
    uint32_t z = 0;
    if (atomic_load_explicit(w, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong_explicit(w, &z, me, memory_order_acquire,
                                                memory_order_relaxed))
      return ZKV_OK;
    if (clock_ns() >= spin_end) break;
  }
  int64_t now = clock_ns();
  int64_t deadline = now + db->lock_timeout_ms * 1000000;
  int64_t check_at = now;   /* look at the holder at once, then every LOCK_CHECK_NS */
  for (;;) {
    uint32_t v = atomic_load_explicit(w, memory_order_relaxed);
    if (v == 0) {
      /* others may sleep still: keep the bit, so that our unlock wakes one */
      if (atomic_compare_exchange_strong_explicit(w, &v, me | LOCK_WAITERS, memory_order_acquire,
                                                  memory_order_relaxed))
        return ZKV_OK;
      continue;
    }
    now = clock_ns();
    /* our own id in the word, though we do not hold the lock (op_enter looked):
     * a dead holder's id given to this thread since, or a damaged word */
    if (now >= check_at || (v & LOCK_TID) == me) {
      if ((v & LOCK_TID) == me || holder_dead(v & LOCK_TID)) {
        if (atomic_compare_exchange_strong_explicit(w, &v, me | LOCK_WAITERS,
                                                    memory_order_acquire, memory_order_relaxed))
          return 1;
        continue;
      }
      check_at = now + LOCK_CHECK_NS;
    }
    if (now >= deadline) return ZKV_ETIMEDOUT;
    if (!(v & LOCK_WAITERS)) {
      if (!atomic_compare_exchange_strong_explicit(w, &v, v | LOCK_WAITERS, memory_order_relaxed,
                                                   memory_order_relaxed))
        continue;
      v |= LOCK_WAITERS;
    }
    int64_t t = deadline - now;
    if (t > check_at - now) t = check_at - now;
    if (t < 1000) t = 1000;
    futex_wait(w, v, t);
  }
}

/* a wait for the lock, counted by the waiter once it holds it (stats) */
static void count_wait(hdr *h, int64_t ns) {
  h->lock_waits++;
  h->lock_wait_ns += (uint64_t)ns;
  if ((uint64_t)ns > h->lock_wait_max_ns) h->lock_wait_max_ns = (uint64_t)ns;
}

static void unlock_shared(hdr *h) {
  if (atomic_exchange_explicit(&h->lock, 0, memory_order_release) & LOCK_WAITERS)
    syscall(SYS_futex, (uint32_t *)&h->lock, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static int lock_shared(zkv_db *db) {
  seg *s = db->s;
  hdr *h = H(s);
  uint32_t me = my_tid(), z = 0;
  int rc = ZKV_OK;
  if (UNLIKELY(!atomic_compare_exchange_strong_explicit(&h->lock, &z, me, memory_order_acquire,
                                                        memory_order_relaxed))) {
    int64_t t0 = clock_ns();
    rc = lock_slow(db, &h->lock, me);
    if (rc != ZKV_OK && rc != 1) return rc;
    count_wait(h, clock_ns() - t0);
  }
  /* another process grew the segment: map the rest before anything past the
   * old end is followed (a dead holder's log included) */
  if (UNLIKELY(h->size != s->mapped)) {
    int f = arena_follow(s);
    if (f) {
      unlock_shared(h);   /* a dead holder's log stays for the next taker */
      return f;
    }
  }
  if (rc == 1) {
    /* the holder died: put back what it had half-done, then carry on.  If it
     * was a thread of this process, its transaction levels are gone too. */
    s->txn_depth = 0;
    s->depth = 1;
    recover(s);
    uint64_t v = atomic_load(&h->seq);
    if (v & 1) atomic_store(&h->seq, v + 1);
    s->dirty = 0;
    s->depth = 0;
    return ZKV_OK;
  }
  return rc;
}

int op_enter(zkv_db *db) {
  if (UNLIKELY(db->closed)) return ZKV_ECLOSED;
  seg *s = db->s;
  if (seg_owned(s)) {
    s->depth++;
    return ZKV_OK;
  }
  if (UNLIKELY(s->forked)) return ZKV_EFORKED;
  if (s->shared) {
    int rc = lock_shared(db);
    if (rc) return rc;
    /* a log left by a holder that died in a way the mutex did not report
     * (a segment copied while it was held) is undone too */
    if (H(s)->log_used) recover(s);
    /* recovery writes what a (possibly damaged) log says: check the header
     * again before anything in it is followed */
    if (UNLIKELY(H(s)->lock_recoveries != s->seen_recoveries)) {
      s->seen_recoveries = H(s)->lock_recoveries;
      if (arena_validate(H(s), s->mapped) != ZKV_OK) {
        unlock_shared(H(s));
        return ZKV_ECORRUPT;
      }
    }
  } else if (s->threadsafe) {
    if (pthread_mutex_trylock(&s->tlock) != 0) {
      int64_t t0 = clock_ns();
      pthread_mutex_lock(&s->tlock);
      count_wait(H(s), clock_ns() - t0);
    }
  } else {
    s->depth = 1;   /* a private store has one thread: no owner to note */
    s->dirty = 0;
    s->logging = s->txn_depth > 0;
    return ZKV_OK;
  }
  s->depth = 1;
  s->dirty = 0;
  s->logging = s->shared || s->txn_depth > 0;
  atomic_store_explicit(&s->owner, lock_self(), memory_order_relaxed);
  return ZKV_OK;
}

static void release(seg *s) {
  s->npend = 0;
  s->pend_whole = 0;
  atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
  if (s->shared) {
    hdr *h = H(s);
    /* the window is the fixed region again before the commit point, so that
     * a committed log (log_used 0) always has it (log_chunk still names the
     * chunks, for recovery if this process dies before it frees them) */
    if (LIKELY(!(h->log_chunk | h->log_ahead | h->log_spare))) {
      h->log_used = 0;   /* the commit point */
    } else {
      h->log_bias = h->log_off;
      h->log_end = h->log_cap;
      atomic_signal_fence(memory_order_seq_cst);
      h->log_used = 0;   /* the commit point */
      free_chunks(s);
    }
    uint64_t v = atomic_load_explicit(&h->seq, memory_order_relaxed);
    if (v & 1) atomic_store_explicit(&h->seq, v + 1, memory_order_release);
    s->dirty = 0;
    unlock_shared(h);
  } else {
    s->mlog_used = 0;
    if (s->threadsafe) pthread_mutex_unlock(&s->tlock);
  }
}

int op_leave(zkv_db *db, int rc) {
  seg *s = db->s;
  if (--s->depth == 0) {
    s->logging = 0;
    release(s);
  }
  return rc;
}

/* fn(db, arg) as one op: the lock, a frame for FAIL, its changes undone when
 * it fails (the ops of ops.c use the RUN macro, the same inline) */
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__) /* clang has no -Wclobbered */
#pragma GCC diagnostic ignored "-Wclobbered"
#endif
int op_run(zkv_db *db, int (*fn)(zkv_db *, void *), void *arg) {
  int rc = op_enter(db);
  if (rc) return rc;
  seg *s = db->s;
  void *prev = s->jb;
  sigjmp_buf jb;
  uint64_t mark = log_pos(s);
  s->jb = &jb;
  hold_begin(s);
  if ((rc = sigsetjmp(jb, 0)) == 0) {
    LOG_AHEAD(s, LOG_OP_ROOM);
    rc = fn(db, arg);
  }
  if (rc < 0 && s->logging) log_undo_to(s, mark);
  s->jb = prev;
  hold_end(s);
  return op_leave(db, rc);
}
#pragma GCC diagnostic pop

/* this thread's id as the lock word holds it, and whether the thread of an
 * id is gone (room.c: a reservation whose owner died is freed) */
uint32_t lock_tid(void) { return my_tid(); }
int lock_tid_dead(uint32_t tid) { return holder_dead(tid); }

/* ---- fork ----------------------------------------------------------------- */

/* Called in a child just forked (arena.c's atfork handler, before anything
 * else runs in it), for every store of the process.  Only the thread that
 * forked lives on here.  A store no thread held at the fork goes on working:
 * its next operation takes the lock as this process, under this thread's own
 * id.  A store some thread held (an operation, an atomic, a held mutex) is
 * held forever here, and its undo log, transaction levels and uncommitted
 * writes are the parent's (which carries on with them in a shared segment):
 * every later call on it is refused with ZKV_EFORKED, and closing it touches
 * nothing but this process's mapping. */
void lock_forked(seg *s) {
  int held = s->depth > 0 || s->txn_depth > 0 ||
             atomic_load_explicit(&s->owner, memory_order_relaxed) != 0;
  if (!held && s->threadsafe) {
    if (pthread_mutex_trylock(&s->tlock) != 0) held = 1;
    else pthread_mutex_unlock(&s->tlock);
  }
  atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
  if (held) {
    s->forked = 1;
    s->depth = 0;
  }
}

/* ---- transactions ------------------------------------------------------- */

int zkv_begin(zkv_db *db) {
  if (!db) return ZKV_EINVAL;
  int rc = op_enter(db);
  if (rc) return rc;
  seg *s = db->s;
  if (s->txn_depth == s->txn_cap) {
    int cap = s->txn_cap ? s->txn_cap * 2 : 16;
    uint64_t *n = realloc(s->txn_marks, (size_t)cap * sizeof *n);
    if (!n) {
      op_leave(db, 0);
      return ZKV_ENOMEM;
    }
    s->txn_marks = n;
    s->txn_cap = cap;
  }
  s->txn_marks[s->txn_depth++] = log_pos(s);
  s->logging = 1;
  db->txn_levels++;
  return ZKV_OK;
}

static int txn_end(zkv_db *db, int undo_it) {
  if (!db) return ZKV_EINVAL;
  seg *s = db->s;
  if (db->closed) return ZKV_ECLOSED;
  if (s->forked) return ZKV_EFORKED;
  if (s->txn_depth == 0 || !seg_owned(s)) return ZKV_ETXN;
  uint64_t mark = s->txn_marks[--s->txn_depth];
  if (db->txn_levels > 0) db->txn_levels--;
  if (undo_it) log_undo_to(s, mark);
  if (s->txn_depth == 0) {
    if (undo_it) H(s)->rollbacks++;   /* after the undo: the log does not cover it */
    else H(s)->commits++;
    if (!s->shared) s->logging = 0;
  }
  return op_leave(db, ZKV_OK);
}

int zkv_commit(zkv_db *db) { return txn_end(db, 0); }
int zkv_rollback(zkv_db *db) { return txn_end(db, 1); }

int zkv_txn_depth(const zkv_db *db) {
  if (!db || db->closed) return 0;
  return seg_owned(db->s) ? db->s->txn_depth : 0;
}
