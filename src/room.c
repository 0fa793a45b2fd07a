/*
 * room.c -- making room: what to free or move when a write finds no block,
 * and the expiry sweeps that free expired keys in the background.
 *
 * It sits above both the allocator (alloc.c, which knows blocks only) and the
 * index (index.c, which knows entries): when blk_alloc finds nothing, room
 * frees in this order what costs least to lose:
 *   1. deleted keys whose blocks were kept for reuse (nothing is lost),
 *   2. expired keys (nothing is lost),
 *   3. with evict = "lru", the least recently used live keys (sampled, as
 *      Redis does),
 * and a shared segment (which cannot grow) whose free room is enough in
 * total but broken up is compacted: keys are moved out of the way.  The
 * periodic sweep (gc) and the step budgets of the long walks live here too.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

/* ---- kept deleted keys -------------------------------------------------- */

/* free the kept deleted keys (but pin), as many as a shared segment's undo
 * log has room for; returns how many */
static int flush_dead(zkv_db *db, ref_t pin) {
  seg *s = db->s;
  int n = 0;
  for (uint32_t slot = 0; slot < NDEAD && H(s)->ndead; slot++) {
    ref_t r = idx_dead_at(s, slot);
    if (!r || r == pin) continue;
    if (s->shared && H(s)->log_cap - H(s)->log_used < 4096) break;
    idx_unlink_free(db, r, 0);
    n++;
  }
  return n;
}

/* ---- eviction: sampled LRU ---------------------------------------------- */
/* Like Redis, sample a few keys and evict the one unused longest: no list to
 * update on every read, so a get writes at most two bytes, once a second.
 *
 * Candidates are kept between evictions in a small pool of the process (as
 * Redis does): each eviction samples a few more keys into it and takes the
 * one unused longest, so the choice gets close to true LRU at the cost of a
 * few random probes.  A pooled ref is checked before use: still a key, not
 * the one being replaced, and not used since it was pooled. */
static int age_of(const ent *e, uint16_t now) {
  return ent_alive(e) ? (uint16_t)(now - e->atime) : 1 << 20;   /* expired first */
}

static void pool_add(seg *s, ref_t r, uint16_t atime, int age) {
  for (int i = 0; i < s->npool; i++)
    if (s->pool[i].r == r) return;
  if (s->npool < EVICT_POOL) {
    s->pool[s->npool].r = r;
    s->pool[s->npool].atime = atime;
    s->npool++;
    return;
  }
  /* full: replace the youngest if this one is older */
  int young = 0, young_age = INT32_MAX;
  uint16_t now = s->pool_now;
  for (int i = 0; i < s->npool; i++) {
    int a = (uint16_t)(now - s->pool[i].atime);
    if (a < young_age) { young_age = a; young = i; }
  }
  if (age > young_age) {
    s->pool[young].r = r;
    s->pool[young].atime = atime;
  }
}

/* is r still the start of a key in the index?  A pooled ref may be stale:
 * since it was pooled the key may have been freed (here, or by another
 * process, or by a rollback) and its bytes reused by anything, inside which
 * r may now point anywhere; only the index can tell. */
static int pooled_key_ok(seg *s, ref_t r) {
  if (!ent_ok(s, r)) return 0;
  ent *e = E(s, r);
  if (e->type == T_NSREC || !ns_valid(s, e->ns)) return 0;
  return idx_find(s, e->ns, ent_key(e), e->klen, idx_hash(e->ns, ent_key(e), e->klen, 0), 0) == r;
}

/* evict the key unused longest (an expired one first), never pin; 0 if none */
static int evict_one(zkv_db *db, ref_t pin) {
  seg *s = db->s;
  hdr *h = H(s);
  if (h->nkeys == 0) return 0;
  uint64_t nb = nbuckets(s);
  uint16_t now = lru_now(s);
  s->pool_now = now;
  ref_t best = 0;
  int best_age = -1, seen = 0;
  for (uint64_t tries = 0; tries < nb * 2 && seen < 16; tries++) {
    ref_t r = idx_bucket_head(s, seg_rand(s) & (nb - 1));
    for (int depth = 0; r && depth < 8; depth++) {
      ent *e = ent_at(s, r);
      if (e->type != T_NSREC && r != pin) {
        pool_add(s, r, e->atime, age_of(e, now));
        seen++;
      }
      r = e->hnext;
    }
  }
  int bi = -1;
  for (int i = 0; i < s->npool; i++) {
    ref_t r = s->pool[i].r;
    if (r == pin || !pooled_key_ok(s, r) || E(s, r)->atime != s->pool[i].atime) {
      s->pool[i--] = s->pool[--s->npool];   /* gone, or used since: drop it */
      continue;
    }
    int a = age_of(E(s, r), now);
    if (a > best_age) { best_age = a; best = r; bi = i; }
  }
  if (!best) return 0;
  s->pool[bi] = s->pool[--s->npool];
  int expired = best_age == (1 << 20);
  idx_unlink_free(db, best, expired);   /* a deleted one counts as neither */
  if (!expired) {
    h = H(s);
    LOGW(s, &h->evictions, 8);
    h->evictions++;
    s->evicted++;
  }
  return 1;
}

/* ---- expiry sweep -------------------------------------------------------- */

int room_sweep(zkv_db *db, uint64_t *cursor, uint64_t budget, int all, uint64_t *freed,
               uint64_t max, ref_t pin) {
  seg *s = db->s;
  int64_t now = clock_ms();
  uint64_t i = *cursor, n = 0;
  for (; i < nbuckets(s) && budget; i++, budget--) {
    ref_t r = idx_bucket_head(s, i);
    uint64_t guard = ent_limit(s);
    while (r) {
      ent *e = ent_at(s, r);
      ref_t nx = e->hnext;
      /* the pinned entry is the one the running op replaces: not ours */
      if (e->type != T_NSREC && r != pin) {
        int live = ent_live(e, now);
        if (all || !live) {
          int dead = (e->flags & EF_DELETED) != 0;
          idx_unlink_free(db, r, !live);
          if (!dead && (live || !all)) n++;
          if (max && n >= max) { i++; goto out; }
        }
      }
      r = nx;
      if (UNLIKELY(guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
    }
  }
out:
  *cursor = i;
  if (freed) *freed += n;
  return i >= nbuckets(s);
}

/* ---- compaction (shared segments) ---------------------------------------- */
/* A shared segment cannot grow, so when no single free block is large enough
 * but the free space in total is, make one: pick the run of adjacent blocks
 * (free blocks and movable keys; never namespace records, the bucket array or
 * the key being replaced) that holds the fewest live bytes, move those keys
 * elsewhere, and hand out the run as one block.  Every step goes through the
 * undo log like any other change, so a failure or a crash half-way undoes it. */

enum { B_FREE, B_MOVABLE, B_PINNED };

static int block_kind(seg *s, uint64_t r, uint64_t *units, ref_t pin) {
  hdr *h = H(s);
  int is_free;
  *units = blk_units_at(s, r, &is_free);
  if (is_free) return B_FREE;
  if (r == h->buckets || r == h->obuckets || r == pin || r == h->root_ns || r == h->dead_ring)
    return B_PINNED;
  if (!ent_ok(s, (ref_t)r) || E(s, r)->type == T_NSREC) return B_PINNED;
  return B_MOVABLE;
}

/* the start of the run of blocks spanning `units` with the fewest live units,
 * or 0; *live_out gets those units */
static uint64_t best_window(seg *s, uint64_t units, uint64_t *live_out, ref_t pin) {
  hdr *h = H(s);
  uint64_t top = h->top / UNIT, limit = h->size / UNIT;
  uint64_t best_a = 0, best_live = UINT64_MAX;
  uint64_t a = h->heap_start / UNIT, b = a, live = 0;
  while (a < top) {
    uint64_t u;
    int k = block_kind(s, a, &u, pin);
    if (k == B_PINNED) {
      a += u;
      b = a;
      live = 0;
      continue;
    }
    int blocked = 0;
    while (b - a < units && b < top) {
      uint64_t ub;
      int kb = block_kind(s, b, &ub, pin);
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

static ref_t compact_for(zkv_db *db, uint64_t units, ref_t pin) {
  seg *s = db->s;
  hdr *h = H(s);
  uint64_t live;
  uint64_t wa = best_window(s, units, &live, pin);
  if (!wa) return 0;
  uint64_t free_total = (h->size - h->heap_start) - h->bytes_used;
  if (free_total < (units + live) * UNIT) return 0;   /* the moved keys need room too */
  uint64_t top = h->top / UNIT;
  uint64_t mark = log_pos(s);   /* shared segments always log */
  /* 1. walk the window: its free blocks leave their lists (nothing may move
   *    into the window) and count as used; note the keys to move, in a
   *    buffer of the process's segment state, not a local allocation: a
   *    FAIL below unwinds past this frame */
  size_t nmove = 0;
  uint64_t wend = wa;
  while (wend - wa < units && wend < top) {
    uint64_t u;
    int k = block_kind(s, wend, &u, pin);
    if (k == B_FREE) {
      blk_claim(s, (ref_t)wend);
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
    blk_claim_top(s, (wa + units) * UNIT);
    wend = wa + units;
  }
  /* 2. move the keys out; their old blocks stay inside the window.  If the
   *    room outside is too broken up to take them all, undo the lot: the
   *    caller goes on to evict (lru) or reports the store full. */
  for (size_t i = 0; i < nmove; i++) {
    ref_t old = s->move[i];
    uint64_t u = BLK_UNITS(E(s, old)->blk);
    ref_t nr = blk_alloc(s, u);
    if (!nr) {
      log_undo_to(s, mark);
      return 0;
    }
    memcpy((char *)P(s, nr) + 4, (char *)P(s, old) + 4, u * UNIT - 4);
    if (E(s, nr)->type == T_LNODE) list_relocate(db, old, nr);   /* a list item */
    else idx_relocate(db, old, nr);
    /* its old bytes, inside the window, are what a rollback puts back */
    blk_note_freed(s, old);
  }
  /* 3. the window is one block: `units` for the caller, the rest free */
  return blk_merge(s, (ref_t)wa, (ref_t)wend, units);
}

/* ---- room for a write ---------------------------------------------------- */

/* Could a block of `units` fit at all, were every key gone but pin?  The
 * store's own records (index, ring, namespaces: fixed_bytes) and pin stay.
 * A write that cannot fails before anything is freed or evicted for it. */
static int could_fit(seg *s, uint64_t units, ref_t pin) {
  hdr *h = H(s);
  uint64_t room = s->shared ? h->size - h->heap_start : h->capacity;
  if (!room) return 1;   /* an unbounded memory store */
  uint64_t keep = h->fixed_bytes;
  if (pin) keep += (uint64_t)BLK_UNITS(ent_at(s, pin)->blk) * UNIT;
  return keep <= room && units * UNIT <= room - keep;
}

ref_t room_try(zkv_db *db, uint64_t units, ref_t pin, unsigned how) {
  seg *s = db->s;
  if (units < 2) units = 2;
  if (units >= (1u << 30)) return 0;
  int may_evict = !(how & ROOM_NOEVICT) && H(s)->evict == ZKV_EVICT_LRU;
  int reclaimed = (how & ROOM_NOSWEEP) ? 2 : 0;
  ref_t r = blk_alloc(s, units);
  if (r) return r;
  if (!could_fit(s, units, pin)) return 0;
  for (;; r = blk_alloc(s, units)) {
    /* a shared segment with room in total but not in one piece: compact */
    hdr *h = H(s);
    if (!r && s->shared && (h->size - h->heap_start) - h->bytes_used >= units * UNIT)
      r = compact_for(db, units, pin);
    if (r) return r;
    /* deleted keys kept for reuse go first: freeing them loses nothing; so
     * do the items of lists that are gone, as many as the undo log has room
     * for (a shared segment's log is fixed) */
    if (H(s)->ndead && flush_dead(db, pin)) continue;
    if (H(s)->lgarb && !(s->shared && H(s)->log_used > H(s)->log_cap / 2) &&
        list_reclaim(db, 16))
      continue;
    if (may_evict && evict_one(db, pin)) continue;
    if (reclaimed < 2 && H(s)->nkeys) {
      /* full: take back the room of keys that have expired, as many as
       * the undo log has room for (a shared segment's log is fixed) */
      uint64_t cursor = 0, freed = 0, max = 0;
      if (s->shared) {
        hdr *hh = H(s);
        max = hh->log_used < hh->log_cap ? (hh->log_cap - hh->log_used) / 1024 : 0;
        if (max == 0) max = 1;
      }
      reclaimed++;
      room_sweep(db, &cursor, UINT64_MAX, 0, &freed, max, pin);
      if (freed) continue;
    }
    return 0;
  }
}

ref_t room_alloc(zkv_db *db, uint64_t units, ref_t pin, unsigned how) {
  ref_t r = room_try(db, units, pin, how);
  if (!r) FAIL(db->s, ZKV_EFULL);
  return r;
}

/* A denser index only makes lookups a little longer: its growth takes free
 * room (kept deleted keys freed, a shared segment compacted), never keys.
 * The buckets move after every op (REHASH_STEP, ops.c). */
void room_grow_index(zkv_db *db) {
  uint64_t units = idx_grow_units(db->s);
  if (LIKELY(!units)) return;
  ref_t r = room_try(db, units, 0, ROOM_NOEVICT | ROOM_NOSWEEP);
  if (r) idx_grow(db, r);
}

/* ---- the periodic sweep and the step budgets ------------------------------ */

void room_gc_step(zkv_db *db) {
  seg *s = db->s;
  hdr *h = H(s);
  if (s->txn_depth > 0 || s->depth != 1) return;   /* keep transactions short */
  if (!h->gc_active) {
    if (db->gc_interval_ms <= 0) return;
    if (clock_coarse_ms() < h->gc_next_ms) return;
    LOG_SPAN(s, h, gc_active, gc_cursor);
    h->gc_active = 1;
    h->gc_cursor = 0;
  }
  /* a step visits at most 1024 buckets and stops early after 250 us, so
   * that no operation holds the lock much longer than it needs */
  int64_t t0 = clock_ns();
  uint64_t cur = h->gc_cursor;
  int done = 0;
  if (h->lgarb && !(s->shared && h->log_used > h->log_cap / 4)) list_reclaim(db, 256);
  for (int chunk = 0; chunk < 64 && !done; chunk++) {
    /* on a shared segment, leave the undo log room for the operation's own
     * records: a sweep must never make the caller's write fail */
    if (s->shared && H(s)->log_used > H(s)->log_cap / 4) break;
    done = room_sweep(db, &cur, 16, 0, NULL, 0, 0);
    if (clock_ns() - t0 > 250000) break;
  }
  h = H(s);
  LOG_SPAN(s, h, gc_active, gc_cursor);
  h->gc_cursor = (uint32_t)cur;
  if (done) {
    h->gc_active = 0;
    h->gc_cursor = 0;
    LOGW(s, &h->gc_runs, 8);
    h->gc_runs++;
    LOGW(s, &h->gc_next_ms, 8);
    h->gc_next_ms = clock_ms() + (db->gc_interval_ms > 0 ? db->gc_interval_ms : 60000);
  }
  if (!s->hold_t0) s->hold_t0 = t0;   /* timed from the op's start if ZKV_TIME_HOLDS */
}

/* Long walks (clear, flush, gc) run in steps of BATCH keys, each its own
 * lock hold, so no one waits long behind them; inside a transaction they run
 * whole, since the transaction must be able to undo them. */
#define BATCH 4096

/* BATCH, or fewer when the undo log of a shared segment could not hold
 * BATCH keys' worth of records (freeing a key logs some 500 bytes: links,
 * counters, free-list tags; 1 KiB is the margin) */
uint64_t room_step_budget(zkv_db *db) {
  seg *s = db->s;
  /* a transaction of this thread must be able to undo it all (another
   * thread's levels are not ours to read: it holds the lock) */
  if (seg_owned(s) && s->txn_depth > 0) return UINT64_MAX;
  if (!s->shared) return BATCH;
  uint64_t room = H(s)->log_cap / 1024;
  return room < 16 ? 16 : room < BATCH ? room : BATCH;
}
