/*
 * alloc.c -- the block allocator inside an arena.
 *
 * Segregated free lists (exact sizes below 64 units, then one list per power
 * of two) with immediate coalescing through boundary tags, and a bump pointer
 * ("top") over never-used space.  A free block next to top is given back to
 * top, so the used part of the arena stays compact.  Every byte the allocator
 * changes is written to the undo log first, so a rolled-back transaction (or a
 * process that died holding the lock) restores the free lists exactly.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

static unsigned cls_of(uint64_t u) {
  if (u < 64) return (unsigned)u;
  unsigned lg = 63u - (unsigned)__builtin_clzll(u);
  unsigned c = 64u + (lg - 6u);
  return c < NCLASS ? c : NCLASS - 1;
}

static uint32_t *blk(seg *s, ref_t r) { return (uint32_t *)P(s, r); }

/* check that [r, r+units) lies inside the heap; anything else is a damaged
 * arena, never something to follow */
static void chk(seg *s, uint64_t r, uint64_t units) {
  hdr *h = H(s);
  if (UNLIKELY(r * UNIT < h->heap_start || units == 0 || (r + units) * UNIT > h->top ||
               h->top > h->size))
    FAIL(s, ZKV_ECORRUPT);
}

static void set_bit(seg *s, unsigned c, int on) {
  hdr *h = H(s);
  uint64_t *w = &h->class_bits[c >> 6], m = 1ull << (c & 63);
  if (((*w & m) != 0) == (on != 0)) return;
  LOGW(s, w, sizeof *w);
  if (on) *w |= m; else *w &= ~m;
}

static void list_remove(seg *s, ref_t r, uint64_t units) {
  hdr *h = H(s);
  uint32_t *b = blk(s, r);
  ref_t nx = b[1], pv = b[2];
  unsigned c = cls_of(units);
  if (pv) {
    chk(s, pv, 2);
    LOGW(s, &blk(s, pv)[1], 4);
    blk(s, pv)[1] = nx;
  } else {
    if (UNLIKELY(h->free_heads[c] != r)) FAIL(s, ZKV_ECORRUPT);
    LOGW(s, &h->free_heads[c], 4);
    h->free_heads[c] = nx;
    if (!nx) set_bit(s, c, 0);
  }
  if (nx) {
    chk(s, nx, 2);
    LOGW(s, &blk(s, nx)[2], 4);
    blk(s, nx)[2] = pv;
  }
}

/* write the tags of a free block at r and put it on its list; the bytes it
 * overwrites are logged (they may be an entry that a rollback brings back) */
static void make_free(seg *s, ref_t r, uint64_t units) {
  hdr *h = H(s);
  uint32_t *b = blk(s, r);
  uint32_t *foot = (uint32_t *)((char *)b + units * UNIT - 4);
  if (units >= 2) {
    unsigned c = cls_of(units);
    ref_t head = h->free_heads[c];
    LOGW(s, b, 12);
    LOGW(s, foot, 4);
    b[0] = (uint32_t)(units << 2) | BLK_FREE;
    b[1] = head;
    b[2] = 0;
    *foot = (uint32_t)units;
    if (head) {
      chk(s, head, 2);
      LOGW(s, &blk(s, head)[2], 4);
      blk(s, head)[2] = r;
    }
    LOGW(s, &h->free_heads[c], 4);
    h->free_heads[c] = r;
    set_bit(s, c, 1);
  } else {
    LOGW(s, b, 8);
    b[0] = (1u << 2) | BLK_FREE;
    b[1] = 1;
  }
}

/* A free block about to become the inside of a bigger block (coalescing,
 * compaction): its tags are state a rollback must bring back, and nothing
 * else will log them before they are overwritten. */
static void log_tags(seg *s, ref_t r, uint64_t units) {
  if (!s->logging) return;
  uint32_t *b = blk(s, r);
  if (units >= 2) {
    LOGW(s, b, 12);
    LOGW(s, (char *)b + units * UNIT - 4, 4);
  } else {
    LOGW(s, b, 8);
  }
}

static void set_prevfree(seg *s, uint64_t r, int on) {
  hdr *h = H(s);
  if (r * UNIT >= h->top) return;
  uint32_t *b = blk(s, (ref_t)r);
  uint32_t v = on ? (b[0] | BLK_PREVFREE) : (b[0] & ~BLK_PREVFREE);
  if (v == b[0]) return;
  LOGW(s, b, 4);
  b[0] = v;
}

/* take `units` from the free block r of `have` units: split off the rest */
static ref_t take(seg *s, ref_t r, uint64_t have, uint64_t units) {
  uint32_t *b = blk(s, r);
  list_remove(s, r, have);
  LOGW(s, b, 12);
  LOGW(s, (char *)b + have * UNIT - 4, 4);
  if (have > units) {
    make_free(s, (ref_t)(r + units), have - units);   /* next block keeps PREVFREE */
  } else {
    set_prevfree(s, r + have, 0);
  }
  b = blk(s, r);
  b[0] = (uint32_t)(units << 2);
  return r;
}

static void log_reused(seg *s, ref_t r, uint64_t units);

static ref_t from_lists(seg *s, uint64_t units) {
  hdr *h = H(s);
  unsigned c = cls_of(units);
  if (c < 64) {
    uint64_t m = h->class_bits[0] & (~0ull << c);
    if (m) {
      unsigned k = (unsigned)__builtin_ctzll(m);
      ref_t r = h->free_heads[k];
      chk(s, r, k);
      return take(s, r, k, units);
    }
    c = 64;
  }
  for (;;) {
    /* the next non-empty list from c on: one bit scan, not a loop */
    uint64_t m = c < 128 ? h->class_bits[1] & (~0ull << (c - 64)) : 0;
    if (!m) break;
    c = 64u + (unsigned)__builtin_ctzll(m);
    if (c >= NCLASS) break;
    ref_t r = h->free_heads[c++];
    /* first fit; only the first list can hold blocks too small */
    for (int n = 0; r && n < 64; n++) {
      chk(s, r, 2);
      uint32_t hd = blk(s, r)[0];
      uint64_t have = BLK_UNITS(hd);
      if (UNLIKELY(!(hd & BLK_FREE))) FAIL(s, ZKV_ECORRUPT);
      chk(s, r, have);
      if (have >= units) return take(s, r, have, units);
      r = blk(s, r)[1];
    }
  }
  return 0;
}

static ref_t from_top(zkv_db *db, uint64_t units) {
  seg *s = db->s;
  uint64_t need = units * UNIT;
  if (H(s)->top + need > H(s)->size) {
    if (s->shared || zkv_grow(s, H(s)->top + need) != ZKV_OK) return 0;
  }
  hdr *h = H(s);
  ref_t r = (ref_t)(h->top / UNIT);
  LOGW(s, &h->top, 8);
  h->top += need;
  LOGW(s, blk(s, r), 4);
  blk(s, r)[0] = (uint32_t)(units << 2);
  return r;
}


/* ---- compaction (shared segments) ---------------------------------------- */
/* A shared segment cannot grow, so when no single free block is large enough
 * but the free space in total is, make one: pick the run of adjacent blocks
 * (free blocks and movable keys; never namespace records, the bucket array or
 * the key being replaced) that holds the fewest live bytes, move those keys
 * elsewhere, and hand out the run as one block.  Every step goes through the
 * undo log like any other change, so a failure or a crash half-way undoes it. */

enum { B_FREE, B_MOVABLE, B_PINNED };

static int block_kind(seg *s, uint64_t r, uint64_t *units) {
  hdr *h = H(s);
  uint32_t hd = blk(s, (ref_t)r)[0];
  *units = BLK_UNITS(hd);
  chk(s, r, *units);
  if (hd & BLK_FREE) return B_FREE;
  if (r == h->buckets || r == s->pin || r == h->root_ns || r == h->dead_ring) return B_PINNED;
  if (!ent_ok(s, (ref_t)r) || E(s, r)->type == T_NSREC) return B_PINNED;
  return B_MOVABLE;
}

/* the start of the run of blocks spanning `units` with the fewest live units,
 * or 0; *live_out gets those units */
static uint64_t best_window(seg *s, uint64_t units, uint64_t *live_out) {
  hdr *h = H(s);
  uint64_t top = h->top / UNIT, limit = h->size / UNIT;
  uint64_t best_a = 0, best_live = UINT64_MAX;
  uint64_t a = h->heap_start / UNIT, b = a, live = 0;
  while (a < top) {
    uint64_t u;
    int k = block_kind(s, a, &u);
    if (k == B_PINNED) {
      a += u;
      b = a;
      live = 0;
      continue;
    }
    int blocked = 0;
    while (b - a < units && b < top) {
      uint64_t ub;
      int kb = block_kind(s, b, &ub);
      if (kb == B_PINNED) {
        blocked = 1;
        a = b + ub;   /* every window starting before b would hold it */
        b = a;
        live = 0;
        break;
      }
      if (kb == B_MOVABLE) live += ub;
      b += ub;
    }
    if (blocked) continue;
    if (b - a < units && limit - a < units) break;   /* nothing further can fit */
    if (live < best_live) {
      best_live = live;
      best_a = a;
      if (live == 0) break;
    }
    if (k == B_MOVABLE) live -= u;
    a += u;
  }
  *live_out = best_live;
  return best_live == UINT64_MAX ? 0 : best_a;
}

static ref_t take_raw(zkv_db *db, uint64_t units);
static void note_freed(seg *s, ref_t r, uint64_t units);
static void log_reused(seg *s, ref_t r, uint64_t units);

static ref_t compact_for(zkv_db *db, uint64_t units) {
  seg *s = db->s;
  hdr *h = H(s);
  uint64_t live;
  uint64_t wa = best_window(s, units, &live);
  if (!wa) return 0;
  uint64_t free_total = (h->size - h->heap_start) - h->bytes_used;
  if (free_total < (units + live) * UNIT) return 0;   /* the moved keys need room too */
  uint64_t top = h->top / UNIT;
  uint32_t prevfree = blk(s, (ref_t)wa)[0] & BLK_PREVFREE;
  uint64_t mark = zkv_log_pos(s);   /* shared segments always log */
  /* 1. walk the window: its free blocks leave their lists (nothing may move
   *    into the window) and count as used; note the keys to move */
  /* the keys to move are noted in a buffer of the process's segment state,
   * not a local allocation: a FAIL below unwinds past this frame */
  size_t nmove = 0;
  uint64_t wend = wa;
  while (wend - wa < units && wend < top) {
    uint64_t u;
    int k = block_kind(s, wend, &u);
    if (k == B_FREE) {
      if (u >= 2) list_remove(s, (ref_t)wend, u);
      log_tags(s, (ref_t)wend, u);
      blk(s, (ref_t)wend)[0] = (uint32_t)(u << 2);
      LOGW(s, &h->bytes_used, 8);
      h->bytes_used += u * UNIT;
    } else if (k == B_MOVABLE) {
      if (nmove == s->cap_move) {
        size_t cap = s->cap_move ? s->cap_move * 2 : 16;
        ref_t *n = realloc(s->move, cap * sizeof *n);
        if (!n) FAIL(s, ZKV_ENOMEM);
        s->move = n;
        s->cap_move = cap;
      }
      s->move[nmove++] = (ref_t)wend;
    } else {
      FAIL(s, ZKV_ECORRUPT);   /* best_window never spans a pinned block */
    }
    wend += u;
  }
  if (wend - wa < units) {   /* the window runs on into never-used space */
    LOGW(s, &h->top, 8);
    h->top = (wa + units) * UNIT;
    LOGW(s, &h->bytes_used, 8);
    h->bytes_used += (wa + units - wend) * UNIT;
    wend = wa + units;
  }
  /* 2. move the keys out; their old blocks stay inside the window.  If the
   *    room outside is too broken up to take them all, undo the lot: the
   *    caller goes on to evict (lru) or reports the store full. */
  ref_t *move = s->move;
  for (size_t i = 0; i < nmove; i++) {
    uint64_t u = BLK_UNITS(blk(s, move[i])[0]);
    ref_t nr = take_raw(db, u);
    if (!nr) {
      zkv_undo_to(s, mark);
      return 0;
    }
    h = H(s);
    LOGW(s, &h->bytes_used, 8);
    h->bytes_used += u * UNIT;
    memcpy((char *)blk(s, nr) + 4, (char *)blk(s, move[i]) + 4, u * UNIT - 4);
    do_relocate(db, move[i], nr);
    /* its old bytes, inside the window, are what a rollback puts back */
    note_freed(s, move[i], u);
  }
  /* 3. the window is one block: `units` for the caller, the rest free */
  h = H(s);
  LOGW(s, blk(s, (ref_t)wa), 4);
  blk(s, (ref_t)wa)[0] = (uint32_t)(units << 2) | prevfree;
  LOGW(s, &h->bytes_used, 8);
  h->bytes_used -= (wend - wa) * UNIT;   /* do_alloc_try counts `units` again */
  if (wend - wa > units) {
    /* the rest becomes a block of its own, then free (coalescing onwards) */
    ref_t rest = (ref_t)(wa + units);
    LOGW(s, blk(s, rest), 4);
    blk(s, rest)[0] = (uint32_t)((wend - wa - units) << 2);
    h->bytes_used += (wend - wa - units) * UNIT;
    do_free_now(s, rest);
  } else {
    set_prevfree(s, wend, 0);
  }
  return (ref_t)wa;
}

/* a block from the lists or from top, nothing else */
static ref_t take_raw(zkv_db *db, uint64_t units) {
  ref_t r = from_lists(db->s, units);
  if (!r) r = from_top(db, units);
  if (r) log_reused(db->s, r, units);
  return r;
}

ref_t do_alloc_try(zkv_db *db, uint64_t units, int may_evict, int *rc) {
  seg *s = db->s;
  if (units < 2) units = 2;
  if (units >= (1u << 30)) { *rc = ZKV_EFULL; return 0; }
  int reclaimed = 0;
  for (;;) {
    hdr *h = H(s);
    int over = !s->shared && h->capacity && h->bytes_used + units * UNIT > h->capacity;
    if (!over) {
      ref_t r = take_raw(db, units);
      /* a shared segment with room in total but not in one piece: compact */
      if (!r && s->shared && (h->size - h->heap_start) - h->bytes_used >= units * UNIT) {
        r = compact_for(db, units);
        if (r) log_reused(s, r, units);
      }
      if (r) {
        h = H(s);
        LOGW(s, &h->bytes_used, 8);
        h->bytes_used += units * UNIT;
        return r;
      }
    }
    /* deleted keys kept for reuse go first: freeing them loses nothing */
    if (H(s)->ndead && do_dead_flush(db)) continue;
    if (may_evict && !s->noevict && H(s)->evict == ZKV_EVICT_LRU && do_evict_one(db)) continue;
    if (may_evict && reclaimed < 2 && H(s)->nkeys) {
      /* full: first take back the room of keys that have expired, as many as
       * the undo log has room for (a shared segment's log is fixed) */
      uint64_t cursor = 0, freed = 0, max = 0;
      if (s->shared) {
        hdr *hh = H(s);
        max = hh->log_used < hh->log_cap ? (hh->log_cap - hh->log_used) / 1024 : 0;
        if (max == 0) max = 1;
      }
      reclaimed++;
      do_sweep(db, &cursor, UINT64_MAX, 0, &freed, max);
      if (freed) continue;
    }
    *rc = ZKV_EFULL;
    return 0;
  }
}

ref_t do_alloc(zkv_db *db, uint64_t units) {
  int rc = ZKV_EFULL;
  ref_t r = do_alloc_try(db, units, 1, &rc);
  if (!r) FAIL(db->s, rc);
  return r;
}

void do_free_now(seg *s, ref_t r) {
  hdr *h = H(s);
  uint32_t hd = blk(s, r)[0];
  uint64_t units = BLK_UNITS(hd);
  chk(s, r, units);
  if (UNLIKELY(hd & BLK_FREE)) FAIL(s, ZKV_ECORRUPT);
  LOGW(s, &h->bytes_used, 8);
  h->bytes_used -= units * UNIT;
  uint64_t start = r, n = units;
  if (hd & BLK_PREVFREE) {
    uint32_t psz = blk(s, r)[-1];
    if (UNLIKELY(psz == 0 || psz > r)) FAIL(s, ZKV_ECORRUPT);
    ref_t p = (ref_t)(r - psz);
    chk(s, p, psz);
    uint32_t ph = blk(s, p)[0];
    if (UNLIKELY(!(ph & BLK_FREE) || BLK_UNITS(ph) != psz)) FAIL(s, ZKV_ECORRUPT);
    if (psz >= 2) list_remove(s, p, psz);
    log_tags(s, p, psz);
    start = p;
    n += psz;
  }
  uint64_t next = start + n;
  if (next * UNIT < h->top) {
    uint32_t nh = blk(s, (ref_t)next)[0];
    if (nh & BLK_FREE) {
      uint64_t nu = BLK_UNITS(nh);
      chk(s, next, nu);
      if (nu >= 2) list_remove(s, (ref_t)next, nu);
      log_tags(s, (ref_t)next, nu);
      n += nu;
      next += nu;
    }
  }
  if (next * UNIT >= h->top) {
    /* the block ends at top: give it back to the never-used space */
    LOGW(s, &h->top, 8);
    h->top = start * UNIT;
    return;
  }
  make_free(s, (ref_t)start, n);
  set_prevfree(s, next, 1);
}

/* Under the undo log, a block freed and then handed out again in the same
 * transaction would have its old bytes (which a rollback, or recovery after a
 * crash, must bring back) overwritten by new data that is not logged.  So the
 * ranges freed under the log are remembered until the lock is released, and
 * an allocation that overlaps one logs those bytes first.  Past FREED_MAX
 * ranges every allocation is logged whole: slower, never wrong. */
#define FREED_MAX 256

/* remember that [r, r+units) held data a rollback needs, in this lock hold */
static void note_freed(seg *s, ref_t r, uint64_t units) {
  if (!s->logging || s->npend == SIZE_MAX) return;
  if (s->npend >= 2 * FREED_MAX) {
    s->npend = SIZE_MAX;   /* overflowed: log every allocation whole */
    return;
  }
  if (s->npend + 2 > s->cap_pend) {
    size_t cap = s->cap_pend ? s->cap_pend * 2 : 32;
    ref_t *n = realloc(s->pend, cap * sizeof *n);
    if (!n) FAIL(s, ZKV_ENOMEM);
    s->pend = n;
    s->cap_pend = cap;
  }
  s->pend[s->npend++] = r;
  s->pend[s->npend++] = (ref_t)units;
}

void do_free(seg *s, ref_t r) {
  note_freed(s, r, BLK_UNITS(blk(s, r)[0]));
  do_free_now(s, r);
}

static void log_reused(seg *s, ref_t r, uint64_t units) {
  if (!s->logging || s->npend == 0) return;
  if (s->npend == SIZE_MAX) {
    LOGW(s, (char *)blk(s, r) + 4, units * UNIT - 4);
    return;
  }
  uint64_t a = r, b = r + units;
  for (size_t i = 0; i < s->npend; i += 2) {
    uint64_t fa = s->pend[i], fb = fa + s->pend[i + 1];
    uint64_t lo = fa > a ? fa : a, hi = fb < b ? fb : b;
    if (lo < hi) {
      /* the first 4 bytes of r are its header, logged by take() / from_top() */
      uint64_t off = lo * UNIT + (lo == a ? 4 : 0);
      LOGW(s, s->base + off, hi * UNIT - off);
    }
  }
}

void zkv_alloc_init(seg *s) {
  hdr *h = H(s);
  memset(h->free_heads, 0, sizeof h->free_heads);
  memset(h->class_bits, 0, sizeof h->class_bits);
  h->top = h->heap_start;
  h->bytes_used = 0;
}
