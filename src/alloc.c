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

ref_t blk_alloc_clean(seg *s, uint64_t units) {
  hdr *h = H(s);
  if (units < 2) units = 2;
  if (units >= (1u << 30)) return 0;
  /* as high in the heap as it finds: never-used space first, else the
   * highest of the first free blocks that fit (each check walks the freed
   * ranges), so that a compaction, which works upwards from the lowest free
   * block, meets it late */
  uint64_t t = h->top / UNIT;
  ref_t r = 0;
  if (h->top + units * UNIT <= h->size && !overlaps_freed(s, t, t + units) &&
      (r = from_top(s, units)) != 0)
    goto taken;
  ref_t best = 0, low = 0;
  uint64_t have = 0, low_have = 0;
  int budget = s->npend > 8192 ? 32 : 256;   /* fewer when the freed ranges are many */
  for (unsigned c = cls_of(units); c < NCLASS && budget > 0; c++) {
    if (!(h->class_bits[c >> 6] & (1ull << (c & 63)))) continue;
    for (ref_t x = h->free_heads[c]; x && budget > 0; budget--) {
      chk(s, x, 2);
      uint32_t hd = blk(s, x)[0];
      uint64_t u = BLK_UNITS(hd);
      if (UNLIKELY(!(hd & BLK_FREE))) FAIL(s, ZKV_ECORRUPT);
      chk(s, x, u);
      /* the chunk would be its upper end: the rest stays a free block below;
       * a block freed in this lock hold merged into its upper end: its lower
       * end, if that was free before (the last choice) */
      if (u >= units && x + u > (uint64_t)best + have && !overlaps_freed(s, x + u - units, x + u)) {
        best = x;
        have = u;
      } else if (u >= units && !best && !low && !overlaps_freed(s, x, x + units)) {
        low = x;
        low_have = u;
      }
      x = blk(s, x)[1];
    }
  }
  if (!best && low) {
    r = take(s, low, low_have, units);
    goto taken;
  }
  if (!best) return 0;
  if (have == units) {
    r = take(s, best, have, units);
  } else {
    list_remove(s, best, have);
    LOGW(s, (char *)blk(s, best) + have * UNIT - 4, 4);   /* its footer, a tag to restore */
    make_free(s, best, have - units);
    r = (ref_t)(best + have - units);
    LOGW(s, blk(s, r), 4);
    blk(s, r)[0] = (uint32_t)(units << 2) | BLK_PREVFREE;
    set_prevfree(s, r + units, 0);
  }
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
