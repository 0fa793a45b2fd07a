/*
 * log.c -- the undo log's records: writing them (log_record), undoing them
 * back to a mark (rollback, a failed op, crash recovery), the window over the
 * fixed region and the log chunks, and raising FAIL (op_fail).  It sits just
 * above the mappings: the allocator logs through it, so it allocates nothing;
 * the chunks it writes into are taken and freed by txn.c, above the
 * allocator.  The record format is in format.h.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

_Noreturn void op_fail(seg *s, int rc) { siglongjmp(*(sigjmp_buf *)s->jb, rc); }

/* ---- undo log ----------------------------------------------------------- */

/* A shared segment's log is its fixed region, then (inside a transaction
 * only) log chunks taken from the heap's free room as it fills: see format.h.
 * The header's window (log_bias, log_end) is derived from log_chunk here. */

/* the chunk at ref c, checked (0 when it is not one: a damaged ref) */
log_chunk *log_chunk_at(seg *s, ref_t c) {
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
int log_window(seg *s) {
  hdr *h = H(s);
  if (!h->log_chunk) {
    h->log_bias = h->log_off;
    h->log_end = h->log_cap;
    return 0;
  }
  log_chunk *k = log_chunk_at(s, h->log_chunk);
  if (!k) return -1;
  h->log_bias = (uint64_t)h->log_chunk * UNIT + LOG_CHUNK_HDR - k->vbase;
  h->log_end = k->vbase + (uint64_t)BLK_UNITS(k->blk) * UNIT - LOG_CHUNK_HDR;
  return 0;
}

static void put_record(seg *s, const void *p, size_t len);

/* the first log position of the window in *lo; -1 if its chunk is out of
 * the mapping.  Undo reads it after each record, and a damaged log's record
 * may have restored any header bytes, log_chunk among them.  (Only the bounds:
 * a record may restore the chunk's allocator header while it is the window,
 * so log_chunk_at's checks do not hold here.) */
static int window_start(seg *s, uint64_t *lo) {
  hdr *h = H(s);
  uint64_t off = (uint64_t)h->log_chunk * UNIT;
  *lo = 0;
  if (!h->log_chunk) return 0;
  if (off < h->heap_start || off + LOG_CHUNK_HDR > s->mapped) return -1;
  *lo = ((log_chunk *)(s->base + off))->vbase;
  return 0;
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
  log_chunk *k = log_chunk_at(s, c);
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
      size_t cap = (size_t)s->mlog_cap;
      char *n = grow_array(s->mlog, &cap, (size_t)(s->mlog_used + rec), 1, 4096);
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
int log_undo(seg *s, uint64_t mark, int recovering) {
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
    uint64_t pos = h->log_used, lo;
    if (window_start(s, &lo)) return -1;
    if (pos == lo && h->log_chunk) {
      /* the window's chunk is done with (its first record, undone, put it
       * back ahead): the window before it goes on.  Also when the mark is
       * here: a chunk is never both the window and ahead. */
      log_chunk *k = log_chunk_at(s, h->log_chunk);
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
  log_undo(s, mark, 0);
}

int log_chunk_is(seg *s, ref_t r) {
  hdr *h = H(s);
  if (!(h->log_chunk | h->log_ahead) || !log_chunk_at(s, r)) return 0;
  for (int ahead = 0; ahead < 2; ahead++) {
    uint64_t guard = h->top / UNIT;
    for (ref_t c = ahead ? h->log_ahead : h->log_chunk; c && guard--;) {
      log_chunk *k = log_chunk_at(s, c);
      if (!k) return 0;
      if (c == r) return 1;
      c = ahead ? k->next : k->prev;
    }
  }
  return 0;
}
