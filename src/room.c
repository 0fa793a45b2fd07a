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
    if (!log_room(s, LOG_KEY_ROOM)) break;
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

/* evict the key unused longest (an expired one first), never pin; returns
 * the bytes of its block, 0 if none */
static uint64_t evict_one(zkv_db *db, ref_t pin) {
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
  uint64_t bytes = (uint64_t)BLK_UNITS(E(s, best)->blk) * UNIT;
  idx_unlink_free(db, best, expired);   /* a deleted one counts as neither */
  if (!expired) {
    h = H(s);
    LOGW(s, &h->evictions, 8);
    h->evictions++;
    s->evicted++;
  }
  return bytes;
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

/* ---- room for a write ---------------------------------------------------- */
/* Outside a transaction a write never makes room inside its own op: when no
 * block is free, room_alloc asks for room (ROOM_AGAIN, which undoes the op
 * so far) and the op frame runs room_make: steps of at most STEP_NS each,
 * each its own lock hold, each committed, then the op again.  So no lock
 * hold is long however much must go, no undo log fills up (a step logs only
 * its own changes), and what was evicted stays evicted whatever happens to
 * the write after (as in Redis, which evicts before it runs a command).
 *
 * A shared segment cannot grow: when the free room is enough in total but
 * in pieces, a step grows a reservation, an allocated block recorded in the
 * header (room_res, with the owner's thread id, so that another process
 * frees it if the owner died), from the lowest free block upwards: a free
 * block after it is taken in, a key after it is evicted into it (lru) or
 * slid below it (none: the key moves down, the reservation up, with the
 * bytes the move lands on logged first), until the write fits in it.  The
 * reservation survives the lock being released between steps, and the op
 * takes it when it runs again.  A namespace record in its way is freed if
 * the namespace is empty, or moved if it is empty and the write's own
 * (move_ns); else a key of the few just past it hops over it into the
 * reservation, the first that fits there, and the next reservation starts
 * with what is left; when none fits, the record moves if its namespace has
 * few keys and children (they name it by its place and are relinked).  A
 * bucket array of the index over 256 KiB moves in steps, a run of buckets
 * per turn (index_out_of_way), a smaller one and the deleted-key ring
 * (8 KiB) by a copy (move_array); either is hopped over when it has nowhere
 * to go; a key too
 * big to hop or to slide within the undo log stops it, and it starts again
 * above.  Inside a transaction everything runs in the op, limited by the
 * free room its undo log can grow into (txn.c), and no key hops nor array
 * moves by a copy (the op may hold them). */

#define STEP_NS 200000   /* a step's lock hold */
/* and its work on the index: 1,024 buckets of growth (some 1,500 entries
 * rehashed and logged) or 32,768 of a move (128 KiB copied and logged),
 * 20-150 us: bounded by work too, as a time budget is stretched by
 * preemption and by a cold cache on a busy machine */
#define STEP_WORK 1024
#define INDEX_TURN 64    /* buckets of growth (MOVE_PER_BUCKET times as many of a move) a turn */
/* an index array up to this size may slide or hop in one copy (~20 us); a
 * bigger one only moves in steps */
#define ARRAY_COPY_MAX (256u << 10)
#define ROOM_ROUNDS 8    /* runs of an op that others keep taking the room from */
#define ROOM_LOG_MARGIN 4096   /* undo log a transaction's next step may need (a slide asks for its own) */
#define SLIDE_LOG_SLACK 1024   /* undo log a slide needs beyond the bytes it lands on */

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

/* the free room, and the old array of a moving index: free once the move,
 * which the steps take on when it is in the way, is done */
static uint64_t free_total(seg *s) {
  hdr *h = H(s);
  uint64_t moving = h->obuckets && (h->ocursor & OC_MOVING)
                        ? (uint64_t)BLK_UNITS(*(uint32_t *)P(s, h->obuckets)) * UNIT : 0;
  return (h->size - h->heap_start) - h->bytes_used + moving;
}

/* the reservation, checked: 0 when there is none; one whose owner thread is
 * gone is freed (a process that died between two steps) */
static ref_t reservation(seg *s, int *mine) {
  hdr *h = H(s);
  *mine = 0;
  if (!h->room_res) return 0;
  int is_free;
  blk_units_at(s, h->room_res, &is_free);
  if (UNLIKELY(is_free)) FAIL(s, ZKV_ECORRUPT);
  if (h->room_owner == lock_tid()) {
    *mine = 1;
    return h->room_res;
  }
  if (!lock_tid_dead(h->room_owner)) return h->room_res;   /* another writer's, in use */
  ref_t r = h->room_res;
  LOG_SPAN(s, h, room_res, room_owner);
  h->room_res = 0;
  h->room_owner = 0;
  blk_free_now(s, r);
  return 0;
}

static void reservation_set(seg *s, ref_t r) {
  hdr *h = H(s);
  LOG_SPAN(s, h, room_res, room_owner);
  h->room_res = r;
  h->room_owner = r ? lock_tid() : 0;
}

/* take this thread's reservation for a block of `units` (the rest freed) */
static ref_t reservation_take(seg *s, room_req *q, uint64_t units) {
  int mine;
  ref_t r = reservation(s, &mine);
  if (!r || !mine) return 0;
  uint64_t have = BLK_UNITS(*(uint32_t *)P(s, r));
  if (have < units) return 0;
  reservation_set(s, 0);
  if (q) q->reserved = 0;
  return blk_split(s, r, units);
}

/* the pin of a request, if it still is the start of a key (a step runs in a
 * later lock hold than the op that asked: the key may be gone) */
static ref_t live_pin(seg *s, ref_t pin) {
  return pin && ent_ok(s, pin) && E(s, pin)->type != T_NSREC ? pin : 0;
}

enum { GROW_DONE, GROW_MORE, GROW_STUCK, GROW_NEXT_STEP };

/* Can a move of a block of `units` be logged now?  A slide or a hop logs at
 * most the bytes it lands on, and a little more.  If not, *later says
 * whether it could in a step of its own (an empty log). */
static int log_fits(seg *s, uint64_t units, int *later) {
  hdr *h = H(s);
  uint64_t need = units * UNIT + SLIDE_LOG_SLACK;
  *later = 0;
  if (log_room(s, need)) return 1;   /* in a transaction it grows */
  *later = need <= h->log_cap && h->log_used > 0;
  return 0;
}

/* the block at `from` now starts at `to` (a copy): whatever refers to it follows */
static void block_moved(zkv_db *db, room_req *q, uint64_t from, ref_t to) {
  seg *s = db->s;
  hdr *h = H(s);
  if (from == h->buckets) {
    LOGW(s, &h->buckets, 4);
    h->buckets = to;
  } else if (from == h->obuckets) {
    LOGW(s, &h->obuckets, 4);
    h->obuckets = to;
  } else if (from == h->dead_ring) {
    LOGW(s, &h->dead_ring, 4);
    h->dead_ring = to;
  } else if (E(s, to)->type == T_LNODE) {
    list_relocate(db, (ref_t)from, to);   /* an item of a list (deque.c) */
  } else if (E(s, to)->type == T_NSREC) {
    idx_ns_moved(db, (ref_t)from, to);   /* move_ns */
    if (from == q->ns) {
      if (!q->ns_moved) q->ns_id = (uint64_t)ns_data_raw(s, to)->tag << 32 | from;
      q->ns_moved = to;
      q->ns = to;
    }
  } else {
    idx_moved(db, (ref_t)from, to);
    if (from == q->pin) q->pin = to;
  }
}

/* The reservation r (have units) is stuck below a block that stays (x, xu
 * units: a namespace record, or an array that has nowhere to go): copy a key
 * of the few blocks just above it into the start of r, the rest of r freed:
 * the first that fits in r (one too big for r is passed over: the room it
 * leaves above it is joined by the next reservations, which start above).
 * Free room so hops over what stays, a key at a time, to where the
 * reservation can grow on.  Only in a step of its own (nothing holds the
 * key).  Returns 1 when a key hopped, 2 when it must wait for a step of its
 * own (the undo log), else 0. */
#define HOP_LOOK 64   /* blocks above x looked at for one that fits */

static int hop_over(zkv_db *db, room_req *q, ref_t r, uint64_t have, uint64_t x, uint64_t xu) {
  seg *s = db->s;
  hdr *h = H(s);
  uint64_t y = x + xu, yu = 0;
  int found = 0;
  for (int n = 0; n < HOP_LOOK && y * UNIT < h->top; n++, y += yu) {
    int is_free;
    yu = blk_units_at(s, y, &is_free);
    if (is_free || yu > have) continue;
    int is_array = y == h->buckets || y == h->obuckets || y == h->dead_ring;
    if (is_array && yu * UNIT > ARRAY_COPY_MAX) continue;   /* moves in steps, never by one copy */
    if (!is_array && (!ent_ok(s, (ref_t)y) || E(s, y)->type == T_NSREC)) continue;
    found = 1;
    break;
  }
  if (!found) return 0;
  int later;
  if (!log_fits(s, yu, &later)) return later ? 2 : 0;
  reservation_set(s, 0);
  q->reserved = 0;
  blk_split(s, r, yu);   /* r keeps yu units (its bytes logged where a rollback needs them) */
  memcpy((char *)P(s, r) + 4, (char *)P(s, y) + 4, yu * UNIT - 4);
  block_moved(db, q, y, r);
  blk_free(s, (ref_t)y);   /* its bytes stay restorable */
  q->from = r;             /* the next reservation starts with the rest of r */
  return 1;
}

/* The index's bucket arrays can be far bigger than the undo log (a 1 MiB
 * segment's index of 32,768 buckets is 128 KiB, its log 64 KiB) and than
 * what one lock hold may copy (2^25 buckets, 128 MiB, took 70-130 ms in one
 * memcpy): a slide, which logs the bytes of itself it lands on, cannot move
 * it, and a reservation stuck below it would split the free room in two for
 * good (the index, grown late, sits anywhere).  So the index moves to a
 * block it does not overlap as it grows, in runs of buckets, a few each turn
 * of a step (idx_move, index.c): to the start of r when r is big enough (the
 * next reservation starts just above it, and takes in the old place when the
 * last run frees it), else to any free block that fits (r takes in the old
 * place then).  While the index grows or moves already, a turn goes on with
 * that.  Returns a GROW_ code, or -1 when the array has nowhere to go. */
static int index_out_of_way(zkv_db *db, room_req *q, ref_t *rp, uint64_t have) {
  seg *s = db->s;
  hdr *h = H(s);
  if (h->obuckets) {
    idx_rehash(db, INDEX_TURN);
    q->work += INDEX_TURN;
    return GROW_MORE;
  }
  uint64_t units = idx_array_units(s), logged = blk_freed_bytes(s);
  if (logged > units * UNIT) logged = units * UNIT;
  if (logged + SLIDE_LOG_SLACK > h->log_cap - h->log_used) return h->log_used > 0 ? GROW_NEXT_STEP : -1;
  if (have >= units) {
    reservation_set(s, 0);
    q->reserved = 0;
    ref_t to = blk_split(s, *rp, units);   /* the rest of r freed (logged where a rollback needs it) */
    idx_move(db, to);
    q->from = to;   /* the next reservation: just above it */
    *rp = 0;
    return GROW_STUCK;
  }
  ref_t to = blk_alloc(s, units);
  if (!to) return -1;
  idx_move(db, to);
  return GROW_MORE;
}

/* The deleted-key ring (NDEAD refs, 8 KiB) and an index array of at most
 * ARRAY_COPY_MAX move by a copy to a block they do not overlap: its old bytes
 * stay as they were (freed, noted: what a rollback or a crash brings back),
 * and only the bytes of the new place freed in this lock hold are logged,
 * besides the ref in the header (block_moved).  Where to:
 *   - the start of the reservation r when r is big enough (the array goes
 *     down; the rest of r and the array's old place become one free block,
 *     where the next reservation starts): MOVED_DOWN;
 *   - else any free block that fits, above or below (first fit): MOVED_AWAY,
 *     r then grows into the array's old place; when the reservation reaches
 *     the new place with room enough, that is the first case;
 *   - else (MOVE_NONE) grow_once slides it down by r's size when the part of
 *     itself it lands on fits in the log, or keys past it hop over it.
 * Only in a step of its own (no op holds a bucket's address then), with the
 * log room for it: MOVE_LATER when a step of its own would have it.  One
 * memcpy of at most ARRAY_COPY_MAX: the ring, or an index array that small
 * (which may also slide, below); a bigger one moves in steps. */
enum { MOVE_NONE, MOVED_DOWN, MOVED_AWAY, MOVE_LATER };

/* the block x (xu units) past the reservation r (have units) moves by a
 * copy: into the start of r when r is big enough (MOVED_DOWN: the rest of r
 * freed), else into a free block that fits (MOVED_AWAY: the first fit, or
 * with `low` the lowest), or nowhere (MOVE_NONE) */
static int move_block(zkv_db *db, room_req *q, ref_t r, uint64_t have, uint64_t x, uint64_t xu,
                      int low) {
  seg *s = db->s;
  ref_t to;
  int how;
  if (have >= xu) {
    reservation_set(s, 0);
    q->reserved = 0;
    to = blk_split(s, r, xu);   /* the rest of r freed (logged where a rollback needs it) */
    how = MOVED_DOWN;
  } else {
    to = low ? blk_alloc_low(s, xu) : blk_alloc(s, xu);
    if (!to) return MOVE_NONE;
    how = MOVED_AWAY;
  }
  memcpy((char *)P(s, to) + 4, (char *)P(s, x) + 4, xu * UNIT - 4);
  block_moved(db, q, x, to);
  blk_free(s, (ref_t)x);   /* its bytes stay restorable */
  if (how == MOVED_DOWN) q->from = to;   /* the next reservation: just above it */
  return how;
}

static int move_array(zkv_db *db, room_req *q, ref_t r, uint64_t have, uint64_t x, uint64_t xu) {
  seg *s = db->s;
  hdr *h = H(s);
  uint64_t logged = blk_freed_bytes(s);
  if (logged > xu * UNIT) logged = xu * UNIT;
  uint64_t need = logged + SLIDE_LOG_SLACK;
  if (need > h->log_cap - h->log_used) return h->log_used > 0 ? MOVE_LATER : MOVE_NONE;
  return move_block(db, q, r, have, x, xu, 0);
}

/* A namespace's record in the way of the reservation r (have units), x of
 * xu units, moves, as an array does (move_array): the write's own when it
 * is empty (it is not freed: the write goes into it), another when no key
 * past it can hop over it and it has few keys and children
 * (idx_ns_movable).  Into the start of r when r is big enough
 * (MOVED_DOWN), else into the lowest free block that fits (MOVED_AWAY); its
 * chain, its parent's list, its keys and children follow it, its old ids go
 * stale (ZKV_ESTALE), and the op that asked (which runs again after the
 * steps) follows its own through q (ns_ref).  Only in a step of its own (no
 * op holds a record's ref then).  Without it, a namespace made anew amid a
 * full heap kept the room below its record apart from the room above. */
static int move_ns(zkv_db *db, room_req *q, ref_t r, uint64_t have, uint64_t x, uint64_t xu) {
  seg *s = db->s;
  int later;
  nsdata *d = idx_nsdata(s, (ref_t)x);
  uint64_t n = d->nkeys + (d->child ? NS_MOVE_MAX : 0);   /* children: at most that many */
  if (!log_fits(s, xu + (n * NS_MOVE_LOG + UNIT - 1) / UNIT, &later)) return later ? MOVE_LATER : MOVE_NONE;
  return move_block(db, q, r, have, x, xu, 1);
}

/* grow the reservation r by the block after it; GROW_STUCK when that block
 * cannot go (r is then freed and the next starts above it).  The entry
 * the write replaces (pin) is never evicted; in a step of its own (bounded)
 * it may move, as no op holds it then (q->pin follows it). */
static int grow_once(zkv_db *db, room_req *q, ref_t *rp, ref_t pin, int may_evict, int bounded) {
  seg *s = db->s;
  hdr *h = H(s);
  ref_t r = *rp;
  uint64_t units = q->units;
  uint64_t have = BLK_UNITS(*(uint32_t *)P(s, r));
  if (have >= units) return GROW_DONE;
  uint64_t x = r + have;
  if (x * UNIT >= h->top) {   /* r ends at top: never-used space, if there is enough */
    if ((r + units) * UNIT > h->size) goto stuck;
    blk_grow_top(s, r, units);
    return GROW_DONE;
  }
  int is_free;
  uint64_t xu = blk_units_at(s, x, &is_free);
  if (is_free) {
    blk_grow(s, r);
    return GROW_MORE;
  }
  int is_array = x == h->buckets || x == h->obuckets || x == h->dead_ring;
  if (!is_array && !ent_ok(s, (ref_t)x)) goto stuck;
  if (!bounded && UNLIKELY(log_chunk_is(s, (ref_t)x))) goto stuck;   /* the log's: never moves */
  if (!is_array && E(s, x)->type == T_NSREC) {
    /* an empty namespace's record goes (an op holds no namespace's ref
     * but its own, q->ns; inside a transaction too: the log brings it back
     * if the transaction rolls back), unless the write goes into it */
    int empty = idx_ns_freeable(s, (ref_t)x);
    if (empty && x != q->ns) {
      idx_free_ns(db, (ref_t)x);
      return GROW_MORE;   /* a free block now: the next turn takes it in */
    }
    /* in a step of its own, the write's own namespace, empty, moves out of
     * the way (move_ns); past another, a key hops over it (hop_over), or
     * else it moves too, if it has few keys */
    if (bounded && empty) goto move;
    goto hop;
  }
  if (x == pin && !bounded) goto stuck;
  /* an item of a list is not a key: it slides (below) */
  if (may_evict && !is_array && x != pin && E(s, x)->type != T_LNODE) {
    ent *e = E(s, x);
    int live = ent_alive(e), dead = (e->flags & EF_DELETED) != 0;
    idx_unlink_keep(db, (ref_t)x, !live, idx_hash(e->ns, ent_key(e), e->klen, 0));
    blk_grow(s, r);
    if (live && !dead) {
      h = H(s);
      LOGW(s, &h->evictions, 8);
      h->evictions++;
      s->evicted++;
      q->evicted_bytes += xu * UNIT;
    }
    return GROW_MORE;
  }
  /* a big index (or one moving): in steps (index_out_of_way); with nowhere
   * to go, the keys above it hop over it.  A small one moves by one copy or
   * slides, as the ring does (below) */
  if (is_array && bounded && x != h->dead_ring &&
      (xu * UNIT > ARRAY_COPY_MAX || (h->obuckets && (h->ocursor & OC_MOVING)))) {
    int g = index_out_of_way(db, q, rp, have);
    if (g >= 0) return g;
    goto hop;
  }
  /* the ring (or a small index): by a copy, which logs least (move_array);
   * when it has nowhere to go, the keys above it hop over it as over a
   * namespace record */
  if (is_array && bounded && (have >= xu || xu * UNIT + SLIDE_LOG_SLACK > h->log_cap)) {
    int mv = move_array(db, q, r, have, x, xu);
    if (mv == MOVE_LATER) return GROW_NEXT_STEP;
    if (mv == MOVED_AWAY) return GROW_MORE;   /* a free block now: the next turn takes it in */
    if (mv == MOVED_DOWN) {
      *rp = 0;
      return GROW_STUCK;   /* the next reservation starts just above it */
    }
    /* nowhere to go whole: a slide down by r's size logs only the part of
     * itself it lands on (and of r what was freed in this lock hold) */
    uint64_t freed = blk_freed_bytes(s);
    uint64_t need = (have < xu ? (xu - have) * UNIT : 0) + SLIDE_LOG_SLACK;
    need += freed < have * UNIT ? freed : have * UNIT;
    if (need <= h->log_cap - h->log_used) goto slide;
    if (need <= h->log_cap && h->log_used > 0) return GROW_NEXT_STEP;
    goto hop;
  }
  /* slide the block below r; what the move lands on of itself is logged
   * first, so it must fit in the undo log with room to spare: in a step, a
   * big one waits for a step of its own (an empty log) */
  int later;
  if (!log_fits(s, xu, &later)) {
    if (bounded && later) return GROW_NEXT_STEP;
    goto stuck;
  }
slide:;
  ref_t nr = blk_slide(s, r);
  block_moved(db, q, x, r);
  reservation_set(s, nr);
  *rp = nr;
  return GROW_MORE;
hop:
  if (bounded) {
    int hv = hop_over(db, q, r, have, x, xu);
    if (hv == 2) return GROW_NEXT_STEP;
    if (hv == 1) {
      *rp = 0;
      return GROW_STUCK;   /* the next reservation starts with the rest of r */
    }
    if (!is_array && E(s, x)->type == T_NSREC && idx_ns_movable(s, (ref_t)x)) {
    move:;
      int mv = move_ns(db, q, r, have, x, xu);
      if (mv == MOVE_LATER) return GROW_NEXT_STEP;
      if (mv == MOVED_AWAY) return GROW_MORE;   /* a free block now: the next turn takes it in */
      if (mv == MOVED_DOWN) {
        *rp = 0;
        return GROW_STUCK;   /* the next reservation starts with the rest of r */
      }
    }
  }
stuck:
  reservation_set(s, 0);
  blk_free_now(s, r);
  q->reserved = 0;
  q->from = x;
  return GROW_STUCK;
}

/* Make room for q: returns ZKV_OK (*done set once the write can run: a block
 * fits, or this thread's reservation holds it), or ZKV_EFULL.  `bounded`: a
 * step, which stops (not done) after STEP_NS or half the undo log; else all
 * of it in this op (inside a transaction). */
static int make_room(zkv_db *db, room_req *q, int bounded, int *done) {
  seg *s = db->s;
  uint64_t units = q->units;
  ref_t pin = live_pin(s, q->pin);
  int64_t t0 = clock_ns();
  int may_evict = !(q->how & ROOM_NOEVICT) && H(s)->evict == ZKV_EVICT_LRU;
  *done = 0;
  q->work = 0;
  int mine;
  ref_t r = reservation(s, &mine);
  if (!mine) r = 0;   /* another writer's: this step only frees and evicts */
  for (;;) {
    /* a move of the index these steps began ends in them: a transaction
     * never meets one half done (but after a crash) */
    int moving = bounded && H(s)->obuckets && (H(s)->ocursor & OC_MOVING);
    int fits = r ? BLK_UNITS(*(uint32_t *)P(s, r)) >= units : blk_fits(s, units);
    if (fits && !moving) break;
    if (!fits && !could_fit(s, units, pin)) return ZKV_EFULL;
    if (bounded && (clock_ns() - t0 > STEP_NS || q->work >= STEP_WORK ||
                    (s->shared && H(s)->log_used > H(s)->log_cap / 2)))
      return ZKV_OK;   /* the next step goes on */
    if (moving) {
      idx_rehash(db, INDEX_TURN);
      q->work += INDEX_TURN;
      continue;
    }
    /* in a transaction a shared segment's undo log grows into the free
     * room: when it cannot take the next move, the store is full */
    if (!bounded && !log_room(s, ROOM_LOG_MARGIN)) return ZKV_EFULL;
    /* what loses nothing first: deleted keys kept for reuse, and the items
     * of lists that are gone, as many as the undo log has room for */
    if (H(s)->ndead && flush_dead(db, pin)) continue;
    if (H(s)->lgarb && (bounded ? !(s->shared && H(s)->log_used > H(s)->log_cap / 2)
                                : log_room(s, ROOM_LOG_MARGIN)) &&
        list_reclaim(db, 16))
      continue;
    /* then the least recently used keys (an expired one first), as many
     * bytes as the write needs */
    if (may_evict && q->evicted_bytes < units * UNIT) {
      uint64_t b = evict_one(db, pin);
      if (b) {
        q->evicted_bytes += b;
        continue;
      }
    }
    /* then expired keys, the whole index once (without eviction, or when
     * what was evicted is enough in total but in pieces) */
    if (!q->swept && H(s)->nkeys) {
      uint64_t freed = 0;
      q->swept = room_sweep(db, &q->cursor, 64, 0, &freed, 0, pin);
      continue;
    }
    /* a memory store grows its mapping: only its capacity bounds it */
    if (!s->shared) {
      if (may_evict && evict_one(db, pin)) continue;
      return ZKV_EFULL;
    }
    uint64_t have = r ? (uint64_t)BLK_UNITS(*(uint32_t *)P(s, r)) * UNIT : 0;
    if (free_total(s) + have < units * UNIT) {   /* a reservation of its own counts */
      if (may_evict && evict_one(db, pin)) continue;
      return ZKV_EFULL;
    }
    /* enough room in pieces: grow a reservation from the lowest free block */
    if (!r) {
      int other;
      if (reservation(s, &other)) {   /* another writer's is growing: wait for it */
        if (!bounded) return ZKV_EFULL;
        return ZKV_OK;
      }
      /* the lowest free block (of any size) from q->from on, walking the
       * heap a few blocks at a time (the walk of a big heap spans steps);
       * when another process wrote since the last step, q->from may lie
       * inside a block: the lists (slower: all of them) find the next one */
      int at_top = 0;
      if (q->from_stale) {
        q->from_stale = 0;
        r = blk_lowest_free(s, q->from);
        at_top = !r;
      } else {
        r = blk_next_free(s, &q->from, 256, &at_top);
      }
      if (!r) {
        if (!at_top) continue;
        /* once round the heap, then once more (between steps others may have
         * freed blocks below where this pass went) */
        if (!q->wrapped++) { q->from = 0; continue; }
        return ZKV_EFULL;
      }
      blk_claim(s, r);
      reservation_set(s, r);
      q->reserved = 1;
    }
    int g = grow_once(db, q, &r, pin, may_evict, bounded);
    pin = live_pin(s, q->pin);
    if (g == GROW_STUCK) r = 0;
    if (g == GROW_NEXT_STEP) return ZKV_OK;
  }
  *done = 1;
  return ZKV_OK;
}

typedef struct { room_req *q; int done; } step_arg;

static int room_step(zkv_db *db, void *arg) {
  step_arg *a = arg;
  seg *s = db->s;
  room_req *q = a->q;
  if (s->shared && q->from && H(s)->seq != q->seq_next) q->from_stale = 1;
  int rc = make_room(db, q, 1, &a->done);
  uint64_t v = H(s)->seq;   /* odd if this step wrote: its release makes it even */
  q->seq_next = v + (v & 1);
  return rc;
}

int room_make(zkv_db *db, room_req *q) {
  q->evicted_bytes = 0;
  q->cursor = 0;
  q->swept = 0;
  q->from = 0;
  q->from_stale = 0;
  q->wrapped = 0;
  for (;;) {
    step_arg a = {q, 0};
    int rc = op_run(db, room_step, &a);
    if (rc) {
      q->reserved = 1;   /* the failed step's undo may have brought one back */
      return rc;
    }
    if (a.done) return ZKV_OK;
  }
}

static int drop_reservation(zkv_db *db, void *arg) {
  room_req *q = arg;
  seg *s = db->s;
  int mine;
  ref_t r = reservation(s, &mine);
  if (r && mine) {
    reservation_set(s, 0);
    blk_free_now(s, r);
  }
  q->reserved = 0;
  return ZKV_OK;
}

void room_done(zkv_db *db, room_req *q) {
  if (q->reserved) op_run(db, drop_reservation, q);
}

ref_t room_alloc(zkv_db *db, uint64_t units, ref_t pin, ref_t ns, unsigned how) {
  seg *s = db->s;
  if (units < 2) units = 2;
  if (units >= (1u << 30)) FAIL(s, ZKV_EFULL);
  /* a block that this lock hold freed is logged whole when it is reused */
  LOG_AHEAD(s, (s->npend ? units * UNIT : 0) + LOG_OP_ROOM);
  int low = UNLIKELY(how & ROOM_LOW) && s->shared;
  ref_t r = low ? blk_alloc_low(s, units) : blk_alloc(s, units);
  if (LIKELY(r)) return r;
  room_req *q = s->room;
  if (s->shared && (r = reservation_take(s, q, units))) return r;
  if (!could_fit(s, units, pin)) FAIL(s, ZKV_EFULL);
  if (q && q->round < ROOM_ROUNDS) {
    q->units = units;
    q->pin = pin;
    q->ns = ns;
    q->how = how;
    FAIL(s, ROOM_AGAIN);
  }
  /* in a transaction: all of it in this op */
  room_req t;
  memset(&t, 0, sizeof t);
  t.units = units;
  t.pin = pin;
  t.ns = ns;
  t.how = how;
  int done = 0, rc = make_room(db, &t, 0, &done);
  if (rc == ZKV_OK && !done) rc = ZKV_EFULL;
  /* the block it takes holds bytes this op freed or moved: logged whole */
  if (rc == ZKV_OK) LOG_AHEAD(s, units * UNIT + LOG_OP_ROOM);
  if (rc == ZKV_OK && !(r = low ? blk_alloc_low(s, units) : blk_alloc(s, units)) &&
      !(r = reservation_take(s, &t, units)))
    rc = ZKV_EFULL;
  if (rc) FAIL(s, rc);
  return r;
}

/* A denser index only makes lookups a little longer: its growth takes free
 * room (kept deleted keys freed, a shared segment compacted), never keys.
 * The buckets move after every op (REHASH_STEP, ops.c).  Nothing is moved or
 * evicted for it: free blocks, and the deleted keys kept for reuse. */
void room_grow_index(zkv_db *db) {
  seg *s = db->s;
  uint64_t units = idx_grow_units(s);
  if (LIKELY(!units)) return;
  LOG_AHEAD(s, (s->npend ? units * UNIT : 0) + LOG_OP_ROOM);
  ref_t r = blk_alloc(s, units);
  if (!r && H(s)->ndead && flush_dead(db, 0)) r = blk_alloc(s, units);
  if (r) idx_grow(db, r);
}

/* ---- the periodic sweep and the step budgets ------------------------------ */

/* Long walks (clear, flush, gc) run in steps of BATCH keys, each its own
 * lock hold, so no one waits long behind them: 1,024 keys took 0.6-0.9 ms of
 * CPU a step on a busy 2-core machine (load 5-7: a cold cache makes every
 * key's links a miss), 4,096 took 2-3 ms; 256 keys stay well under the 1 ms
 * goal whatever the load (bench/holds.c).  Inside a transaction they run
 * whole, since the transaction must be able to undo them. */
#define BATCH 256

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
  /* a step visits at most 1024 buckets, frees about BATCH keys at most (a
   * bound by work: a time budget is stretched by preemption and a cold
   * cache) and stops early after 250 us, so that no operation holds the
   * lock much longer than it needs */
  int64_t t0 = clock_ns();
  uint64_t cur = h->gc_cursor, freed = 0;
  int done = 0;
  if (h->lgarb && !(s->shared && h->log_used > h->log_cap / 4)) list_reclaim(db, 256);
  for (int chunk = 0; chunk < 64 && !done; chunk++) {
    /* on a shared segment, leave the undo log room for the operation's own
     * records: a sweep must never make the caller's write fail */
    if (s->shared && H(s)->log_used > H(s)->log_cap / 4) break;
    done = room_sweep(db, &cur, 16, 0, &freed, 0, 0);
    if (freed >= BATCH || clock_ns() - t0 > 250000) break;
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
