/*
 * txn.c -- the store lock, the op frame, the undo log's chunks, transactions
 * and crash recovery (the log's records are log.c's).
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

/* ---- log chunks: the undo log grows into the heap's free room (format.h) -- */


/* A chunk is an eighth of the log so far, at least LOG_CHUNK_MIN, at most
 * LOG_CHUNK_MAX and an eighth of the free room (few chunks for a big
 * transaction, none that takes much of the room its writes need), more if
 * one block can give what is asked at once.  When no free block is that big
 * (the free room in pieces), the biggest one found is taken whole, down to
 * LOG_CHUNK_LEAST: a chunk's header, what taking a free block whole logs
 * (CHUNK_TAKE_LOG: its list links and tags, the next block's PREVFREE bit,
 * bytes_used, the log_ahead push) and one inline record (72 bytes) with
 * what a record split at its end wastes (16); a smaller block would hold
 * less log than its own allocation writes.  GROW_LOG_BYTES is what a
 * chunk's allocation itself may log at most (a block split, or top). */
#define LOG_CHUNK_MIN (16u << 10)
#define LOG_CHUNK_MAX (16u << 20)
#define CHUNK_TAKE_LOG 160u
#define LOG_CHUNK_LEAST (LOG_CHUNK_HDR + CHUNK_TAKE_LOG + 72u + 16u)
#define GROW_LOG_BYTES 1024u

/* the log bytes a chunk holds, less what a record split at its end wastes */
static uint64_t chunk_room(const log_chunk *k) {
  return (uint64_t)BLK_UNITS(k->blk) * UNIT - LOG_CHUNK_HDR - 16;
}

/* the log bytes free now: the window's rest and the chunks ahead (up to
 * `enough`: the walk stops there) */
static uint64_t log_avail(seg *s, uint64_t enough) {
  hdr *h = H(s);
  uint64_t avail = h->log_used <= h->log_end ? h->log_end - h->log_used : 0;
  for (ref_t c = h->log_ahead; c && avail < enough;) {
    log_chunk *k = log_chunk_at(s, c);
    if (!k) FAIL(s, ZKV_ECORRUPT);
    avail += chunk_room(k);
    c = k->next;
  }
  return avail;
}

int log_room_grow(seg *s, uint64_t need) {
  hdr *h = H(s);
  if (h->log_used > h->log_end) return 0;
  uint64_t avail = log_avail(s, need);
  if (avail >= need) return 1;
  if (s->txn_depth == 0 || !s->logging) return 0;
  /* the allocations are logged: in the window, or in a chunk ahead */
  if (h->log_end - h->log_used < GROW_LOG_BYTES && !h->log_ahead) return 0;
  uint64_t heap = h->size - h->heap_start;
  uint64_t free_room = heap > h->bytes_used ? heap - h->bytes_used : 0;
  const uint64_t least = (LOG_CHUNK_LEAST + UNIT - 1) / UNIT;
  while (avail < need) {
    uint64_t want = h->log_used / 8;
    if (want < LOG_CHUNK_MIN) want = LOG_CHUNK_MIN;
    if (want > LOG_CHUNK_MAX) want = LOG_CHUNK_MAX;
    if (want > free_room / 8) want = free_room / 8;
    if (want < need - avail + GROW_LOG_BYTES) want = need - avail + GROW_LOG_BYTES;
    uint64_t u = (want + LOG_CHUNK_HDR + 16 + UNIT - 1) / UNIT;
    ref_t c = blk_alloc_clean(s, u, least);
    if (!c) return 0;
    h = H(s);
    log_chunk *k = (log_chunk *)P(s, c);   /* its bytes are free room's: not logged */
    k->prev = 0;
    k->magic = LOG_CHUNK_MAGIC;
    k->vbase = 0;
    LOGW(s, &h->log_ahead, 4);   /* (may move the window to a chunk ahead first) */
    h = H(s);
    k->next = h->log_ahead;
    atomic_signal_fence(memory_order_seq_cst);
    h->log_ahead = c;
    /* what it gave, less what its allocation logged (counted again: the
     * records may have moved the window to a chunk ahead) */
    uint64_t now = log_avail(s, UINT64_MAX);
    if (now <= avail) return 0;   /* the pieces left hold no more than they cost */
    avail = now;
  }
  return 1;
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
        log_chunk *k = log_chunk_at(s, c);
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
    log_undo(s, 0, 0);
    h->log_used = 0;
    h->log_spare = 0;
    h->log_ahead = 0;
  }
  s->jb = prevjb;
  s->logging = logging;
}


/* ---- lock --------------------------------------------------------------- */


static void recover(seg *s) {
  hdr *h = H(s);
  s->dirty = 0;
  log_dirty(s);
  /* the window as log_chunk says (the dead holder may have died between the
   * two), unless the log was committed: then its chunks are spare */
  int bad = h->log_used && (log_window(s) != 0 || log_undo(s, 0, 1) != 0);
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
    /* an outermost op of a transaction (or a begin): what ops before it
     * allocated and freed again is free room again (alloc.c) */
    if (UNLIKELY(s->npend > s->pend_seen) && s->depth == s->txn_depth) blk_txn_op(s);
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
  s->pend_seen = 0;
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
    size_t cap = (size_t)s->txn_cap;
    uint64_t *n = grow_array(s->txn_marks, &cap, cap + 1, sizeof *n, 16);
    if (!n) {
      op_leave(db, 0);
      return ZKV_ENOMEM;
    }
    s->txn_marks = n;
    s->txn_cap = (int)cap;
  }
  blk_txn_forget(s);   /* blocks allocated before this savepoint hold its data */
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
    blk_txn_forget(s);
  }
  return op_leave(db, ZKV_OK);
}

int zkv_commit(zkv_db *db) { return txn_end(db, 0); }
int zkv_rollback(zkv_db *db) { return txn_end(db, 1); }

int zkv_txn_depth(const zkv_db *db) {
  if (!db || db->closed) return 0;
  return seg_owned(db->s) ? db->s->txn_depth : 0;
}
