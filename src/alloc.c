/*
 * alloc.c -- the block allocator inside an arena.
 *
 * Segregated free lists (exact sizes below 64 units, then one list per power
 * of two) with immediate coalescing through boundary tags, and a bump pointer
 * ("top") over never-used space.  A free block next to top is given back to
 * top, so the used part of the arena stays compact.  Every byte the allocator
 * changes is written to the undo log first, so a rolled-back transaction (or a
 * process that died holding the lock) restores the free lists exactly.
 *
 * The allocator knows blocks only: what is in them, and what to free when
 * there is no room, is decided above it (room.c).
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
    LOGW(s, b, FREE_TAGS_BYTES);
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
    LOGW(s, b, FREE1_TAGS_BYTES);
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
    LOGW(s, b, FREE_TAGS_BYTES);
    LOGW(s, (char *)b + units * UNIT - 4, 4);
  } else {
    LOGW(s, b, FREE1_TAGS_BYTES);
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
  LOGW(s, b, FREE_TAGS_BYTES);
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
static void note_freed(seg *s, ref_t r, uint64_t units);
static void own_add(seg *s, ref_t r, uint64_t units);

/* a free block of at least `units` from the lists (0: none); *have gets its size */
static ref_t find_free(seg *s, uint64_t units, uint64_t *have) {
  hdr *h = H(s);
  unsigned c = cls_of(units);
  if (c < 64) {
    uint64_t m = h->class_bits[0] & (~0ull << c);
    if (m) {
      unsigned k = (unsigned)__builtin_ctzll(m);
      ref_t r = h->free_heads[k];
      chk(s, r, k);
      *have = k;
      return r;
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
      uint64_t n_units = BLK_UNITS(hd);
      if (UNLIKELY(!(hd & BLK_FREE))) FAIL(s, ZKV_ECORRUPT);
      chk(s, r, n_units);
      if (n_units >= units) {
        *have = n_units;
        return r;
      }
      r = blk(s, r)[1];
    }
  }
  return 0;
}

static ref_t from_lists(seg *s, uint64_t units) {
  uint64_t have;
  ref_t r = find_free(s, units, &have);
  return r ? take(s, r, have, units) : 0;
}

static ref_t from_top(seg *s, uint64_t units) {
  uint64_t need = units * UNIT;
  if (H(s)->top + need > H(s)->size) {
    if (s->shared || arena_grow(s, H(s)->top + need) != ZKV_OK) return 0;
  }
  hdr *h = H(s);
  ref_t r = (ref_t)(h->top / UNIT);
  LOGW(s, &h->top, 8);
  h->top += need;
  LOGW(s, blk(s, r), 4);
  blk(s, r)[0] = (uint32_t)(units << 2);
  return r;
}

ref_t blk_alloc(seg *s, uint64_t units) {
  if (units < 2) units = 2;
  hdr *h = H(s);
  if (units >= (1u << 30)) return 0;
  /* a memory store's capacity bounds the bytes in blocks, not the mapping */
  if (!s->shared && h->capacity && h->bytes_used + units * UNIT > h->capacity) return 0;
  ref_t r = from_lists(s, units);
  if (!r) r = from_top(s, units);
  if (!r) return 0;
  log_reused(s, r, units);
  if (UNLIKELY(s->txn_depth > 0)) own_add(s, r, units);
  h = H(s);
  LOGW(s, &h->bytes_used, 8);
  h->bytes_used += units * UNIT;
  return r;
}

int blk_fits(seg *s, uint64_t units) {
  hdr *h = H(s);
  if (units < 2) units = 2;
  if (units >= (1u << 30)) return 0;
  if (!s->shared && h->capacity && h->bytes_used + units * UNIT > h->capacity) return 0;
  uint64_t have;
  if (find_free(s, units, &have)) return 1;
  return !s->shared || h->top + units * UNIT <= h->size;   /* a memory arena grows */
}

uint64_t blk_units_at(seg *s, uint64_t r, int *is_free) {
  uint32_t hd = blk(s, (ref_t)r)[0];
  uint64_t units = BLK_UNITS(hd);
  chk(s, r, units);
  *is_free = (hd & BLK_FREE) != 0;
  return units;
}

/* ---- for making room (room.c) -------------------------------------------- */

void blk_claim(seg *s, ref_t r) {
  hdr *h = H(s);
  uint32_t hd = blk(s, r)[0];
  uint64_t u = BLK_UNITS(hd);
  chk(s, r, u);
  if (UNLIKELY(!(hd & BLK_FREE))) FAIL(s, ZKV_ECORRUPT);
  if (u >= 2) list_remove(s, r, u);
  log_tags(s, r, u);
  blk(s, r)[0] = (uint32_t)(u << 2);   /* PREVFREE is 0: no two free blocks touch */
  set_prevfree(s, r + u, 0);
  LOGW(s, &h->bytes_used, 8);
  h->bytes_used += u * UNIT;
}

/* the units of the allocated block r, *hd its header (checked: a free one,
 * or one past top, is a damaged heap) */
static uint64_t used_units(seg *s, ref_t r, uint32_t *hd) {
  *hd = blk(s, r)[0];
  uint64_t units = BLK_UNITS(*hd);
  chk(s, r, units);
  if (UNLIKELY(*hd & BLK_FREE)) FAIL(s, ZKV_ECORRUPT);
  return units;
}

uint64_t blk_grow(seg *s, ref_t r) {
  hdr *h = H(s);
  uint32_t rh;
  uint64_t ru = used_units(s, r, &rh);
  uint64_t x = r + ru;
  if (x * UNIT >= h->top) {
    FAIL(s, ZKV_ECORRUPT);   /* the caller grows into never-used space with blk_grow_top */
  }
  uint32_t xh = blk(s, (ref_t)x)[0];
  uint64_t xu = BLK_UNITS(xh);
  chk(s, x, xu);
  if (xh & BLK_FREE) {
    if (xu >= 2) list_remove(s, (ref_t)x, xu);
    log_tags(s, (ref_t)x, xu);
    set_prevfree(s, x + xu, 0);
    LOGW(s, &h->bytes_used, 8);
    h->bytes_used += xu * UNIT;
  } else {
    note_freed(s, (ref_t)x, xu);   /* its bytes are what a rollback restores */
  }
  LOGW(s, blk(s, r), 4);
  blk(s, r)[0] = (uint32_t)((ru + xu) << 2) | (rh & BLK_PREVFREE);
  return ru + xu;
}

void blk_grow_top(seg *s, ref_t r, uint64_t units) {
  hdr *h = H(s);
  uint32_t rh;
  uint64_t ru = used_units(s, r, &rh);
  if (UNLIKELY((r + ru) * UNIT != h->top || units < ru || (r + units) * UNIT > h->size))
    FAIL(s, ZKV_ECORRUPT);
  LOGW(s, &h->top, 8);
  h->top = (r + units) * UNIT;
  LOGW(s, &h->bytes_used, 8);
  h->bytes_used += (units - ru) * UNIT;
  LOGW(s, blk(s, r), 4);
  blk(s, r)[0] = (uint32_t)(units << 2) | (rh & BLK_PREVFREE);
}

ref_t blk_slide(seg *s, ref_t r) {
  uint32_t rh, nh;
  uint64_t f = used_units(s, r, &rh);
  ref_t n = (ref_t)(r + f);
  uint64_t u = used_units(s, n, &nh);
  /* what the copy overwrites and a rollback needs: the bytes of the block
   * that moves which it lands on, and whatever of r's own was freed in this
   * lock hold (an evicted key r took in) */
  if (u > f) LOGW(s, P(s, n), (u - f) * UNIT);
  LOGW(s, blk(s, r), 4);
  log_reused(s, r, u < f ? u : f);
  ref_t nr = (ref_t)(r + u);
  LOGW(s, blk(s, nr), 4);   /* r's header goes there: a byte of n's, or of r's */
  memmove(P(s, r), P(s, n), u * UNIT);
  blk(s, r)[0] = (uint32_t)(u << 2) | (rh & BLK_PREVFREE);
  blk(s, nr)[0] = (uint32_t)(f << 2);
  /* the moved block's old bytes, now inside r, are what a rollback puts back:
   * whatever overwrites them later in this lock hold logs them first */
  note_freed(s, n, u);
  return nr;
}

/* the free block (on a list) lowest in the heap above `above` of at least
 * `units` (0: none); *have gets its units */
static ref_t lowest(seg *s, uint64_t above, uint64_t units, uint64_t *have) {
  hdr *h = H(s);
  ref_t best = 0;
  uint64_t guard = ent_limit(s);
  for (unsigned c = cls_of(units < 2 ? 2 : units); c < NCLASS; c++) {
    for (ref_t r = h->free_heads[c]; r; r = blk(s, r)[1]) {
      chk(s, r, 2);
      uint64_t u = BLK_UNITS(blk(s, r)[0]);
      if (r > above && u >= units && (!best || r < best)) {
        best = r;
        *have = u;
      }
      if (UNLIKELY(guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
    }
  }
  return best;
}

ref_t blk_lowest_free(seg *s, uint64_t above) {
  uint64_t have;
  return lowest(s, above, 2, &have);
}

ref_t blk_next_free(seg *s, uint64_t *from, unsigned budget, int *at_top) {
  hdr *h = H(s);
  uint64_t r = *from, top = h->top / UNIT;
  if (r < h->heap_start / UNIT) r = h->heap_start / UNIT;
  *at_top = 0;
  for (; r < top && budget; budget--) {
    int is_free;
    uint64_t u = blk_units_at(s, r, &is_free);
    if (is_free) {
      *from = r;
      return (ref_t)r;
    }
    r += u;
  }
  *from = r;
  *at_top = r >= top;
  return 0;
}

ref_t blk_alloc_low(seg *s, uint64_t units) {
  if (units < 2) units = 2;
  uint64_t have;
  ref_t r = lowest(s, 0, units, &have);
  if (!r) return blk_alloc(s, units);
  take(s, r, have, units);
  log_reused(s, r, units);
  if (s->txn_depth > 0) own_add(s, r, units);
  hdr *h = H(s);
  LOGW(s, &h->bytes_used, 8);
  h->bytes_used += units * UNIT;
  return r;
}

ref_t blk_split(seg *s, ref_t r, uint64_t units) {
  uint32_t rh;
  uint64_t have = used_units(s, r, &rh);
  if (UNLIKELY(have < units)) FAIL(s, ZKV_ECORRUPT);
  if (have > units) {
    LOGW(s, blk(s, r), 4);
    blk(s, r)[0] = (uint32_t)(units << 2) | (rh & BLK_PREVFREE);
    /* the rest becomes a block of its own, then free (coalescing onwards) */
    ref_t rest = (ref_t)(r + units);
    LOGW(s, blk(s, rest), 4);
    blk(s, rest)[0] = (uint32_t)((have - units) << 2);
    blk_free_now(s, rest);
  }
  log_reused(s, r, units);
  return r;
}

void blk_free_now(seg *s, ref_t r) {
  hdr *h = H(s);
  uint32_t hd;
  uint64_t units = used_units(s, r, &hd);
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
 * ranges every allocation is logged whole (slower, never wrong); the ranges
 * are still kept, for the log's own chunks (blk_alloc_clean), which must
 * never take one. */
#define FREED_MAX 256

/* remember that [r, r+units) held data a rollback needs, in this lock hold */
static void note_freed(seg *s, ref_t r, uint64_t units) {
  if (!s->logging) return;
  if (s->npend >= 2 * FREED_MAX) s->pend_whole = 1;   /* log every allocation whole */
  ref_t *n = grow_array(s->pend, &s->cap_pend, s->npend + 2, sizeof *n, 32);
  if (!n) FAIL(s, ZKV_ENOMEM);
  s->pend = n;
  s->pend[s->npend++] = r;
  s->pend[s->npend++] = (ref_t)units;
}

/* Room a transaction allocated and freed again.  A block allocated under the
 * log holds, once allocated, nothing a rollback needs: its old bytes were
 * free room, or were logged by log_reused.  So when it is freed again, only
 * the savepoints taken while it was allocated need its bytes: the op that
 * frees it (a failed op is undone to its start) and a nested begin.  At the
 * start of the next outermost op of the transaction (blk_txn_op) such a
 * block leaves the freed ranges: reusing it logs nothing, and the log's
 * chunks may take it.  A set of the same key again and again in one
 * transaction so needs room for two values, not for one each time.  The
 * blocks are remembered from the innermost begin on (blk_txn_begin forgets
 * the older ones: they hold what a rollback to it restores, blk_txn_forget), up to OWN_MAX
 * (past it, the others stay freed ranges: more logged, never wrong). */
#define OWN_MAX (1u << 20)

static size_t own_slot(const seg *s, ref_t r) {
  return (size_t)(((uint64_t)r * 0x9E3779B97F4A7C15ull) >> 40) & (s->txn_own_cap - 1);
}

static void own_put(seg *s, ref_t r, uint64_t units) {
  for (size_t i = own_slot(s, r);; i = (i + 1) & (s->txn_own_cap - 1)) {
    uint64_t e = s->txn_own[i];
    if (!e || (ref_t)(e >> 32) == r) {
      /* a block at r since the begin, of the most units: all of those bytes
       * were allocated since it */
      if (!e) s->txn_own_n++;
      else if ((e & 0xffffffffu) > units) return;
      s->txn_own[i] = (uint64_t)r << 32 | units;
      return;
    }
  }
}

static void own_add(seg *s, ref_t r, uint64_t units) {
  if (!s->logging) return;
  if (2 * (s->txn_own_n + 1) > s->txn_own_cap) {
    size_t cap = s->txn_own_cap ? 2 * s->txn_own_cap : 1024;
    if (cap > 2 * (size_t)OWN_MAX) return;
    uint64_t *n = calloc(cap, sizeof *n), *old = s->txn_own;
    if (!n) return;   /* not remembered: its room stays a freed range */
    size_t ocap = s->txn_own_cap;
    s->txn_own = n;
    s->txn_own_cap = cap;
    s->txn_own_n = 0;
    for (size_t i = 0; i < ocap; i++)
      if (old[i]) own_put(s, (ref_t)(old[i] >> 32), old[i] & 0xffffffffu);
    free(old);
  }
  own_put(s, r, units);
}

/* the units of the block allocated at r since the innermost begin (0: none) */
static uint64_t own_units(const seg *s, ref_t r) {
  if (!s->txn_own_n) return 0;
  for (size_t i = own_slot(s, r);; i = (i + 1) & (s->txn_own_cap - 1)) {
    uint64_t e = s->txn_own[i];
    if (!e) return 0;
    if ((ref_t)(e >> 32) == r) return e & 0xffffffffu;
  }
}

void blk_txn_op(seg *s) {
  size_t j = s->pend_seen;
  for (size_t i = s->pend_seen; i + 1 < s->npend; i += 2) {
    uint64_t u = own_units(s, s->pend[i]);
    if (u && s->pend[i + 1] <= u) continue;   /* its bytes: no rollback's */
    s->pend[j] = s->pend[i];
    s->pend[j + 1] = s->pend[i + 1];
    j += 2;
  }
  s->npend = j;
  s->pend_seen = j;   /* the rest are older than any block remembered from now on */
  if (s->pend_whole && j < 2 * FREED_MAX) s->pend_whole = 0;   /* every range is kept */
}

void blk_txn_forget(seg *s) {
  if (s->txn_own_n) {
    memset(s->txn_own, 0, s->txn_own_cap * sizeof *s->txn_own);
    s->txn_own_n = 0;
  }
}

uint64_t blk_freed_bytes(seg *s) {
  if (!s->logging) return 0;
  if (s->pend_whole) return UINT64_MAX;
  uint64_t n = 0;
  for (size_t i = 1; i < s->npend; i += 2) n += (uint64_t)s->pend[i] * UNIT;
  return n;
}

void blk_free(seg *s, ref_t r) {
  note_freed(s, r, BLK_UNITS(blk(s, r)[0]));
  blk_free_now(s, r);
}

static void log_reused(seg *s, ref_t r, uint64_t units) {
  if (!s->logging || s->npend == 0) return;
  if (s->pend_whole) {
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

/* does [a, b) (units) overlap a range freed under the log in this lock hold? */
static int overlaps_freed(const seg *s, uint64_t a, uint64_t b) {
  for (size_t i = 0; i < s->npend; i += 2) {
    uint64_t fa = s->pend[i], fb = fa + s->pend[i + 1];
    if (fa < b && a < fb) return 1;
  }
  return 0;
}

/* The biggest part of [a, b) (units) that overlaps no range freed under the
 * log in this lock hold: its start in *at, its units returned (b - a: none
 * does).  The freed ranges inside are sorted (a few: past GAP_RANGES only
 * the two ends count). */
#define GAP_RANGES 64

static uint64_t clean_gap(const seg *s, uint64_t a, uint64_t b, uint64_t *at) {
  uint64_t fa_[GAP_RANGES], fb_[GAP_RANGES];
  size_t n = 0;
  int many = 0;
  uint64_t first = b, last = a;
  for (size_t i = 0; i < s->npend; i += 2) {
    uint64_t fa = s->pend[i], fb = fa + s->pend[i + 1];
    if (!(fa < b && a < fb)) continue;
    if (fa < a) fa = a;
    if (fb > b) fb = b;
    if (fa < first) first = fa;
    if (fb > last) last = fb;
    if (n == GAP_RANGES) {
      many = 1;
      continue;
    }
    size_t j = n++;   /* insertion by start */
    for (; j > 0 && fa_[j - 1] > fa; j--) {
      fa_[j] = fa_[j - 1];
      fb_[j] = fb_[j - 1];
    }
    fa_[j] = fa;
    fb_[j] = fb;
  }
  *at = a;
  if (first == b) return b - a;
  uint64_t g = first - a;   /* the lower end */
  if (b - last >= g) {
    g = b - last;
    *at = last;
  }
  if (!many) {
    uint64_t reach = a;   /* the end of the freed ranges so far */
    for (size_t j = 0; j < n; j++) {
      if (fa_[j] > reach && fa_[j] - reach > g) {
        g = fa_[j] - reach;
        *at = reach;
      }
      if (fb_[j] > reach) reach = fb_[j];
    }
  }
  return g;
}

/* allocate [r, r + units) out of the free block x of `have` units: what is
 * left below and above stays free */
static ref_t carve(seg *s, ref_t x, uint64_t have, ref_t r, uint64_t units) {
  if (r == x) return take(s, x, have, units);
  list_remove(s, x, have);
  LOGW(s, (char *)blk(s, x) + have * UNIT - 4, 4);   /* its footer, a tag to restore */
  make_free(s, x, r - x);
  LOGW(s, blk(s, r), 4);
  blk(s, r)[0] = (uint32_t)(units << 2) | BLK_PREVFREE;
  if (r + units < x + have) make_free(s, (ref_t)(r + units), x + have - r - units);   /* the next block keeps PREVFREE */
  else set_prevfree(s, r + units, 0);
  return r;
}

ref_t blk_alloc_clean(seg *s, uint64_t units, uint64_t least) {
  hdr *h = H(s);
  if (units < 2) units = 2;
  if (units >= (1u << 30)) return 0;
  if (least < 2 || least > units) least = units;
  /* As high in the heap as it finds, so that a compaction, which works
   * upwards from the lowest free block, meets it late: never-used space
   * first, else a part of a free block that holds nothing a rollback needs
   * (blocks freed in this lock hold may have merged into it), `units` of it
   * if it can (the upper end of that part in the highest such block), else
   * the most it finds, down to `least` (the free room in pieces; each check
   * walks the freed ranges). */
  uint64_t t = h->top / UNIT, ut = h->size / UNIT - t;
  if (ut > units) ut = units;
  ref_t r = 0;
  if (ut == units && !overlaps_freed(s, t, t + units) && (r = from_top(s, units)) != 0) goto taken;
  ref_t best = 0;
  uint64_t have = 0, got = 0, at = 0;
  int budget = s->npend > 8192 ? 32 : 256;   /* fewer when the freed ranges are many */
  for (unsigned c = NCLASS; c-- > cls_of(least) && budget > 0;) {
    if (got == units && c < cls_of(units)) break;   /* the lists below hold smaller blocks */
    if (!(h->class_bits[c >> 6] & (1ull << (c & 63)))) continue;
    for (ref_t x = h->free_heads[c]; x && budget > 0; budget--) {
      chk(s, x, 2);
      uint32_t hd = blk(s, x)[0];
      uint64_t u = BLK_UNITS(hd);
      if (UNLIKELY(!(hd & BLK_FREE))) FAIL(s, ZKV_ECORRUPT);
      chk(s, x, u);
      if (u >= least) {
        uint64_t gs, g = clean_gap(s, x, x + u, &gs);
        if (g > units) {   /* the upper end of the gap */
          gs += g - units;
          g = units;
        }
        if (g >= least && (g > got || (g == got && gs > at))) {
          best = x;
          have = u;
          got = g;
          at = gs;
        }
      }
      x = blk(s, x)[1];
    }
  }
  if (ut >= least && ut > got && !overlaps_freed(s, t, t + ut) && (r = from_top(s, ut)) != 0) {
    units = ut;
    goto taken;
  }
  if (!best) return 0;
  units = got;
  r = carve(s, best, have, (ref_t)at, units);
taken:
  h = H(s);
  LOGW(s, &h->bytes_used, 8);
  h->bytes_used += units * UNIT;
  return r;
}

void blk_init(seg *s) {
  hdr *h = H(s);
  memset(h->free_heads, 0, sizeof h->free_heads);
  memset(h->class_bits, 0, sizeof h->class_bits);
  h->top = h->heap_start;
  h->bytes_used = 0;
}
