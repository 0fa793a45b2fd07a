/*
 * index.c -- entries, the hash index, namespaces, the deleted-key ring.
 *
 * One chained hash index (refs in a bucket array) holds every key of every
 * namespace and every namespace record; the hash is XXH3 of the key seeded
 * with the namespace ref, and a lookup compares namespace, kind and bytes, so
 * no two namespace paths can meet whatever bytes they hold.  Each namespace
 * also keeps its keys on a doubly linked list in insertion order: keys(),
 * count() and clear() walk that list, so they cost what the namespace holds.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <stddef.h>

#include "internal.h"

nsdata *idx_nsdata(seg *s, ref_t ns) {
  if (UNLIKELY(!ns_valid(s, ns))) FAIL(s, ZKV_ECORRUPT);
  return ns_data_raw(s, ns);
}

static ref_t *ring(seg *s);
static ref_t *dead_slot(seg *s, ref_t r);
static ref_t *dead_slot_of(seg *s, ref_t r, const ent *e);

static ref_t *bucket(seg *s, uint64_t h) {
  ref_t *p = idx_slot(s, h);
  if (UNLIKELY(!p)) FAIL(s, ZKV_ECORRUPT);
  return p;
}

ref_t idx_find(seg *s, ref_t ns, const void *key, size_t klen, uint64_t h, int is_ns) {
  ref_t r = *bucket(s, h);
  uint64_t guard = ent_limit(s);
  while (r) {
    ent *e = ent_at(s, r);
    if (e->ns == ns && e->klen == klen && ((e->type == T_NSREC) == (is_ns != 0)) &&
        key_eq(ent_key(e), key, klen))
      return r;
    r = e->hnext;
    if (UNLIKELY(guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
  }
  return 0;
}

/* ---- linking ------------------------------------------------------------ */

/* the chain link that holds r (the bucket head or the hnext of the entry
 * before it), checked */
static ref_t *chain_slot(seg *s, ref_t r, uint64_t h) {
  ref_t *pp = bucket(s, h);
  uint64_t guard = ent_limit(s);
  while (*pp && *pp != r) {
    pp = (ref_t *)((char *)ent_at(s, *pp) + offsetof(ent, hnext));   /* 4-aligned: blocks are 8-aligned */
    if (UNLIKELY(guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
  }
  if (UNLIKELY(!*pp)) FAIL(s, ZKV_ECORRUPT);
  return pp;
}

static void chain_remove(seg *s, ref_t r, uint64_t h) {
  ref_t *pp = chain_slot(s, r, h);
  LOGW(s, pp, 4);
  *pp = E(s, r)->hnext;
}

/* put an entry on a namespace's key list (or a ns record on its parent's
 * child list) at the tail */
/* The three below change fields of the namespace record d (head, tail,
 * next_seq, nkeys, nttl: its first 32 bytes), which their callers log in one
 * record beforehand (LOG_NSDATA). */
#define LOG_NSDATA(s, d) LOG_SPAN(s, d, head, nttl)

static void list_append(seg *s, nsdata *d, ref_t r) {
  ent *e = E(s, r);
  e->nprev = d->tail;
  e->nnext = 0;
  if (d->tail) {
    ent *t = ent_at(s, d->tail);
    LOGW(s, &t->nnext, 4);
    t->nnext = r;
  } else {
    d->head = r;
  }
  d->tail = r;
}

static void list_unlink(seg *s, nsdata *d, ent *e) {
  if (e->nprev) {
    ent *p = ent_at(s, e->nprev);
    LOGW(s, &p->nnext, 4);
    p->nnext = e->nnext;
  } else {
    d->head = e->nnext;
  }
  if (e->nnext) {
    ent *n = ent_at(s, e->nnext);
    LOGW(s, &n->nprev, 4);
    n->nprev = e->nprev;
  } else {
    d->tail = e->nprev;
  }
}

static void count_add(seg *s, nsdata *d, int has_ttl, int delta) {
  hdr *h = H(s);
  d->nkeys += (uint64_t)(int64_t)delta;
  if (has_ttl) d->nttl += (uint64_t)(int64_t)delta;
  LOG_SPAN(s, h, nentries, nkeys);
  h->nentries += (uint64_t)(int64_t)delta;
  h->nkeys += (uint64_t)(int64_t)delta;
}

/* link a freshly built entry r (its header filled but for links and seq) */
void idx_link_new(zkv_db *db, ref_t ns, ref_t r, uint64_t h) {
  seg *s = db->s;
  nsdata *d = idx_nsdata(s, ns);
  ent *e = E(s, r);
  e->ns = ns;
  e->seq = d->next_seq;
  LOG_NSDATA(s, d);
  d->next_seq++;
  ref_t *b = bucket(s, h);
  e->hnext = *b;
  LOGW(s, b, 4);
  *b = r;
  list_append(s, d, r);
  count_add(s, d, ent_timed(e), +1);
}

static void replace_keep(zkv_db *db, ref_t old, ref_t nw, uint64_t h);

/* put nw where old is (same chain place, same list place, same seq), free old */
void idx_replace(zkv_db *db, ref_t old, ref_t nw, uint64_t h) {
  replace_keep(db, old, nw, h);
  blk_free(db->s, old);
}

/* move a key entry to a copy of it at nw (compaction); old is left as it is */
void idx_relocate(zkv_db *db, ref_t old, ref_t nw) {
  seg *s = db->s;
  ent *o = ent_at(s, old);
  if (o->type == T_NSREC) FAIL(s, ZKV_ECORRUPT);
  replace_keep(db, old, nw, idx_hash(o->ns, ent_key(o), o->klen, 0));
}

/* what pointed at old (its hash chain slot, its neighbours in the
 * namespace's list or the list's ends) points at nw; e holds old's links
 * (old itself, or a copy of it) */
static void relink(seg *s, nsdata *d, ref_t old, ref_t nw, const ent *e, uint64_t h) {
  ref_t *pp = chain_slot(s, old, h);
  LOGW(s, pp, 4);
  *pp = nw;
  if (e->nprev) {
    ent *p = ent_at(s, e->nprev);
    LOGW(s, &p->nnext, 4);
    p->nnext = nw;
  } else {
    LOGW(s, &d->head, 4);
    d->head = nw;
  }
  if (e->nnext) {
    ent *x = ent_at(s, e->nnext);
    LOGW(s, &x->nprev, 4);
    x->nprev = nw;
  } else {
    LOGW(s, &d->tail, 4);
    d->tail = nw;
  }
}

/* link nw in old's place; old stays allocated */
static void replace_keep(zkv_db *db, ref_t old, ref_t nw, uint64_t h) {
  seg *s = db->s;
  ent *o = ent_at(s, old);
  ent *n = E(s, nw);
  nsdata *d = idx_nsdata(s, o->ns);
  n->ns = o->ns;
  n->seq = o->seq;
  n->hnext = o->hnext;
  n->nprev = o->nprev;
  n->nnext = o->nnext;
  relink(s, d, old, nw, o, h);
  if (o->flags & EF_DELETED) {
    if (n->flags & EF_DELETED) {   /* relocated (a copy): its ring slot follows it */
      ref_t *slot = dead_slot(s, old);
      LOGW(s, slot, 4);
      *slot = nw;
    } else {
      idx_dead_forget(s, old);
    }
  }
  if (n->type == ZKV_T_LIST && !(n->flags & EF_DELETED))
    list_owner_moved(db, n, nw);   /* a list's end items name their entry */
  int had = ent_timed(o), has = ent_timed(n);
  if (had != has) {
    LOGW(s, &d->nttl, 8);
    d->nttl += has ? 1 : (uint64_t)-1;
  }
}

/* remove a key entry from its namespace and the index, and free it */
void idx_unlink_free(zkv_db *db, ref_t r, int expired) {
  ent *e = ent_at(db->s, r);
  idx_unlink_free_h(db, r, expired, idx_hash(e->ns, ent_key(e), e->klen, 0));
}

/* the same, when the caller has the key's hash already */
void idx_unlink_free_h(zkv_db *db, ref_t r, int expired, uint64_t h) {
  idx_unlink_keep(db, r, expired, h);
  blk_free(db->s, r);
}

void idx_unlink_keep(zkv_db *db, ref_t r, int expired, uint64_t h) {
  seg *s = db->s;
  LOG_AHEAD(s, LOG_KEY_ROOM);   /* loops of these (clear, sweep, evict) in a transaction */
  ent *e = ent_at(s, r);
  if (UNLIKELY(e->type == T_NSREC)) FAIL(s, ZKV_ECORRUPT);
  if (e->flags & EF_DELETED) {
    idx_dead_forget(s, r);
    expired = 0;   /* it was deleted, not expired */
  }
  if (e->type == ZKV_T_LIST && !(e->flags & EF_DELETED)) {
    list_drop(db, e);   /* its items first (deque.c) */
    e = ent_at(s, r);
  }
  nsdata *d = idx_nsdata(s, e->ns);
  chain_remove(s, r, h);
  LOG_NSDATA(s, d);
  list_unlink(s, d, e);
  count_add(s, d, ent_timed(e), -1);
  if (expired) {
    hdr *hd = H(s);
    LOGW(s, &hd->expired_freed, 8);
    hd->expired_freed++;
  }
}

void idx_moved(zkv_db *db, ref_t old, ref_t nw) {
  seg *s = db->s;
  ent *n = ent_at(s, nw);
  if (UNLIKELY(n->type == T_NSREC)) FAIL(s, ZKV_ECORRUPT);
  relink(s, idx_nsdata(s, n->ns), old, nw, n, idx_hash(n->ns, ent_key(n), n->klen, 0));
  if (n->type == ZKV_T_LIST && !(n->flags & EF_DELETED))
    list_owner_moved(db, n, nw);   /* a list's end items name their entry */
  if (n->flags & EF_DELETED) {
    ref_t *rg = ring(s);
    uint32_t slot = n->atime;
    if (UNLIKELY(!rg || slot >= NDEAD || rg[slot] != old)) FAIL(s, ZKV_ECORRUPT);
    LOGW(s, &rg[slot], 4);
    rg[slot] = nw;
  }
}

/* a deleted or expired key r (found by a lookup of namespace ns, whose
 * record the op checked: checked) written back in place as a key of `type`
 * with the header flags `flags`: a new key as far as anyone can tell, so out
 * of the ring (deleted) and at the end of its namespace's list with a new
 * insertion number, as a new key would be (keys() lists in insertion order;
 * the last already stays).  What changes of its header (nprev..flags) is
 * one record, and the records of its neighbours, its namespace and the ring
 * are written at once (log_batch): set + delete of a key is the drop-in's
 * add + delete, and this took a fifth of it as a move, a ring exit and a
 * retype of their own.  The caller writes atime. */
void idx_revive(zkv_db *db, ref_t r, ref_t ns, int type, unsigned flags) {
  seg *s = db->s;
  hdr *h = H(s);
  ent *e = E(s, r);
  if (UNLIKELY(e->ns != ns)) FAIL(s, ZKV_ECORRUPT);
  nsdata *d = ns_data_raw(s, ns);
  ref_t *slot = (e->flags & EF_DELETED) ? dead_slot_of(s, r, e) : NULL;
  /* the neighbours (checked) before anything changes: all is logged first */
  ent *pv = NULL, *nx = NULL, *tl = NULL;
  if (e->nnext) {
    if (e->nprev) pv = ent_at(s, e->nprev);
    nx = ent_at(s, e->nnext);
    tl = ent_at(s, d->tail);   /* not e: e has a next */
  }
  if (s->logging) {
    log_batch b;
    /* the most the records below take: 32 + 24 + 3 * 16 + 16 + 24 */
    log_batch_begin(s, &b, 144);
    log_batch_put(s, &b, &e->nprev, SPAN(ent, nprev, flags));
    if (nx) {
      log_batch_put(s, &b, &d->head, SPAN(nsdata, head, next_seq));
      if (pv) log_batch_put(s, &b, &pv->nnext, 4);
      log_batch_put(s, &b, &nx->nprev, 4);
      log_batch_put(s, &b, &tl->nnext, 4);
    }
    if (slot) {
      log_batch_put(s, &b, slot, 4);
      log_batch_put(s, &b, &h->ndead, SPAN(hdr, ndead, dead_bytes));
    }
    log_batch_end(s, &b);
  }
  if (nx) {
    /* out of the list (list_unlink), then at its tail (list_append) */
    if (pv) pv->nnext = e->nnext;
    else d->head = e->nnext;
    nx->nprev = e->nprev;
    e->nprev = d->tail;
    e->nnext = 0;
    tl->nnext = r;
    d->tail = r;
    e->seq = d->next_seq++;
  }
  if (slot) {
    *slot = 0;
    h->ndead--;
    h->dead_bytes -= (uint64_t)BLK_UNITS(e->blk) * UNIT;
  }
  e->type = (uint8_t)type;
  e->flags = (uint8_t)flags;
}

/* ---- deleted keys -------------------------------------------------------- */
/* Deleting a small key does not unlink and free it: it is flagged EF_DELETED
 * in place (one record of undo log instead of some thirty for the unlink and
 * the free), and a set of the same key soon after (a lock released and taken
 * again, shdict's add + delete) writes it back in place instead of
 * allocating.  Such a key is absent for every function and not counted by
 * stats; it keeps its place in the index and its namespace list (count()
 * walks the list while any is kept).  At most NDEAD are kept, in a ring (a
 * block of the arena): the key's atime holds its slot (recency means nothing
 * for it).  When the ring is full the oldest is freed for real, and an
 * allocation that finds no room frees them all first (room.c). */

/* the ring's refs, checked (NULL for a store made without one) */
static ref_t *ring(seg *s) {
  hdr *h = H(s);
  if (!h->dead_ring) return NULL;
  uint64_t off = (uint64_t)h->dead_ring * UNIT;
  if (UNLIKELY(off < h->heap_start || off + RING_OFF + NDEAD * 4 > h->top ||
               h->top > s->mapped ||
               (uint64_t)BLK_UNITS(*(uint32_t *)P(s, h->dead_ring)) * UNIT < RING_OFF + NDEAD * 4))
    FAIL(s, ZKV_ECORRUPT);
  return (ref_t *)((char *)P(s, h->dead_ring) + RING_OFF);
}

/* the ring slot of the deleted key r (its entry e, checked), checked both ways */
static ref_t *dead_slot_of(seg *s, ref_t r, const ent *e) {
  uint32_t slot = e->atime;
  ref_t *rg = ring(s);
  if (UNLIKELY(!rg || !(e->flags & EF_DELETED) || e->type == T_NSREC || slot >= NDEAD ||
               rg[slot] != r || H(s)->ndead == 0))
    FAIL(s, ZKV_ECORRUPT);
  return rg + slot;
}

static ref_t *dead_slot(seg *s, ref_t r) { return dead_slot_of(s, r, ent_at(s, r)); }

/* r, a deleted key, is freed or written back: it leaves the ring */
void idx_dead_forget(seg *s, ref_t r) {
  ref_t *slot = dead_slot(s, r);
  hdr *h = H(s);
  LOGW(s, slot, 4);
  *slot = 0;
  LOG_SPAN(s, h, ndead, dead_bytes);
  h->ndead--;
  h->dead_bytes -= (uint64_t)BLK_UNITS(E(s, r)->blk) * UNIT;
}

/* delete the live key r by flagging it, keeping its block (the ring's
 * oldest is freed if the ring is full).  Returns 0, having changed nothing,
 * when the store has no ring: the caller frees r instead. */
int idx_bury(zkv_db *db, ref_t r) {
  seg *s = db->s;
  hdr *h = H(s);
  if (!h->dead_ring) return 0;   /* the store had no room for the ring when it was made */
  uint32_t slot = h->dead_next;
  if (UNLIKELY(slot >= NDEAD)) FAIL(s, ZKV_ECORRUPT);
  ref_t *rs = ring(s) + slot;
  if (*rs) {
    dead_slot(s, *rs);   /* checked before it is freed */
    idx_unlink_free(db, *rs, 0);
    h = H(s);
  }
  ent *e = E(s, r);   /* found by the caller's lookup: checked (the free above moved no block) */
  if (s->logging) {
    log_batch b;   /* its three records at once (idx_revive): 16 + 16 + 32 bytes */
    log_batch_begin(s, &b, 64);
    log_batch_put(s, &b, &e->atime, SPAN(ent, atime, flags));
    log_batch_put(s, &b, rs, 4);
    log_batch_put(s, &b, &h->ndead, SPAN(hdr, ndead, dead_next));
    log_batch_end(s, &b);
  }
  e->atime = (uint16_t)slot;
  e->flags |= EF_DELETED;
  *rs = r;
  h->ndead++;
  h->dead_bytes += (uint64_t)BLK_UNITS(e->blk) * UNIT;
  h->dead_next = (slot + 1) % NDEAD;
  return 1;
}

/* ---- growth ---------------------------------------------------------------- */
/* The index doubles when it holds more entries than buckets, a few buckets at
 * a time (as Redis's dict does), so that no lock hold pays for relinking
 * every key: the new array is allocated, and each op then moves the chains
 * of the next few buckets of the old array (old bucket j splits into new
 * buckets j and j + old size).  Meanwhile a lookup of hash h reads the
 * old array if h's old bucket has not moved yet (idx_slot).  Every move is
 * logged like any change, so a rollback or a crash half-way puts the index
 * back exactly; the new array's slots are written only when their old bucket
 * moves, so it needs no clearing (no lock hold of O(size) there either). */

uint64_t idx_grow_units(seg *s) {
  hdr *h = H(s);
  if (h->obuckets || h->nb_log2 >= 30 || h->nentries < nbuckets(s)) return 0;
  return (BUCKETS_OFF + (nbuckets(s) << 1) * 4 + UNIT - 1) / UNIT;
}

/* start doubling into nbk (a block of idx_grow_units) */
/* the blocks of the store's own records count as fixed (see format.h) */
static void fixed_add(seg *s, ref_t r, int sign) {
  hdr *h = H(s);
  uint64_t b = (uint64_t)BLK_UNITS(*(uint32_t *)P(s, r)) * UNIT;
  LOGW(s, &h->fixed_bytes, 8);
  h->fixed_bytes = sign > 0 ? h->fixed_bytes + b : h->fixed_bytes - b;
}

void idx_grow(zkv_db *db, ref_t nbk) {
  seg *s = db->s;
  fixed_add(s, nbk, +1);
  hdr *h = H(s);
  LOG_SPAN(s, h, buckets, ocursor);
  h->obuckets = h->buckets;
  h->ocursor = 0;
  h->buckets = nbk;
  h->nb_log2++;
  LOGW(s, &h->gc_cursor, sizeof h->gc_cursor);
  h->gc_cursor = 0;   /* a sweep in progress starts over on the new array */
}

/* ---- moving ------------------------------------------------------------------ */
/* Compaction moves the bucket array out of its way (room.c) the same way: a
 * "growth" into an array of the same size (OC_MOVING in ocursor), whose
 * buckets are copied a run at a time, each run logged as one record, and a
 * lookup reads the old array for a bucket not copied yet.  So no lock hold
 * copies the whole array (128 MiB for 2^25 buckets), a crash or a rollback
 * half-way leaves an index readers know, and the old block is freed with the
 * last run. */

uint64_t idx_array_units(seg *s) { return (BUCKETS_OFF + nbuckets(s) * 4 + UNIT - 1) / UNIT; }

void idx_move(zkv_db *db, ref_t nbk) {
  seg *s = db->s;
  hdr *h = H(s);
  if (UNLIKELY(h->obuckets || BLK_UNITS(*(uint32_t *)P(s, nbk)) < idx_array_units(s)))
    FAIL(s, ZKV_ECORRUPT);
  /* the store's own records count the new array only: the old one is on
   * its way out (what a write could have, were every key gone: room.c) */
  fixed_add(s, nbk, +1);
  fixed_add(s, h->buckets, -1);
  h = H(s);
  LOG_SPAN(s, h, buckets, ocursor);
  h->obuckets = h->buckets;
  h->ocursor = OC_MOVING;
  h->buckets = nbk;
}

/* the old array goes: every bucket moved */
static void old_array_done(seg *s) {
  hdr *h = H(s);
  ref_t old = h->obuckets;
  if (!(h->ocursor & OC_MOVING)) fixed_add(s, old, -1);   /* a moved one was taken off at the start */
  h = H(s);
  h->obuckets = 0;
  h->ocursor = 0;
  blk_free(s, old);
}

static void move_run(seg *s, uint64_t n) {
  hdr *h = H(s);
  uint64_t nb = nbuckets(s), j = h->ocursor & ~OC_MOVING;
  uint64_t ooff = (uint64_t)h->obuckets * UNIT, noff = (uint64_t)h->buckets * UNIT;
  if (UNLIKELY(ooff < h->heap_start || ooff + BUCKETS_OFF + nb * 4 > h->top ||
               noff < h->heap_start || noff + BUCKETS_OFF + nb * 4 > h->top || j > nb))
    FAIL(s, ZKV_ECORRUPT);
  if (n > nb - j) n = nb - j;
  ref_t *ov = (ref_t *)(s->base + ooff + BUCKETS_OFF), *nv = (ref_t *)(s->base + noff + BUCKETS_OFF);
  LOG_SPAN(s, h, obuckets, ocursor);
  LOGW(s, nv + j, n * 4);   /* what a rollback restores of the new block, as of any */
  memcpy(nv + j, ov + j, n * 4);
  h->ocursor = (uint32_t)(j + n) | OC_MOVING;
  if (j + n == nb) old_array_done(s);
}

void idx_rehash(zkv_db *db, unsigned n) {
  seg *s = db->s;
  hdr *h = H(s);
  if (!h->obuckets) return;
  if (h->ocursor & OC_MOVING) {
    move_run(s, (uint64_t)n * MOVE_PER_BUCKET);
    return;
  }
  uint64_t nb = nbuckets(s), onb = nb >> 1;
  uint64_t ooff = (uint64_t)h->obuckets * UNIT, noff = (uint64_t)h->buckets * UNIT;
  if (UNLIKELY(ooff < h->heap_start || ooff + BUCKETS_OFF + onb * 4 > h->top ||
               noff < h->heap_start || noff + BUCKETS_OFF + nb * 4 > h->top || h->ocursor > onb))
    FAIL(s, ZKV_ECORRUPT);
  ref_t *ov = (ref_t *)(s->base + ooff + BUCKETS_OFF), *nv = (ref_t *)(s->base + noff + BUCKETS_OFF);
  LOG_SPAN(s, h, obuckets, ocursor);
  uint64_t j = h->ocursor, guard = ent_limit(s);
  for (; n && j < onb; n--, j++) {
    ref_t lo = 0, hi = 0;
    for (ref_t r = ov[j]; r;) {
      ent *e = ent_at(s, r);
      ref_t nx = e->hnext;
      uint64_t hv = idx_hash(e->ns, ent_key(e), e->klen, e->type == T_NSREC);
      if (UNLIKELY((hv & (onb - 1)) != j || guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
      LOGW(s, &e->hnext, 4);
      if (hv & onb) {
        e->hnext = hi;
        hi = r;
      } else {
        e->hnext = lo;
        lo = r;
      }
      r = nx;
    }
    LOGW(s, &nv[j], 4);
    nv[j] = lo;
    LOGW(s, &nv[j + onb], 4);
    nv[j + onb] = hi;
  }
  h->ocursor = (uint32_t)j;
  if (j == onb) old_array_done(s);   /* every bucket moved */
}

ref_t idx_ns_next(seg *s, ref_t root, ref_t cur) {
  nsdata *d = idx_nsdata(s, cur);
  if (d->child) {
    if (UNLIKELY(!ns_valid(s, d->child))) FAIL(s, ZKV_ECORRUPT);
    return d->child;
  }
  uint64_t guard = ent_limit(s);
  while (cur != root) {
    ent *e = E(s, cur);
    if (e->nnext) {
      if (UNLIKELY(!ns_valid(s, e->nnext))) FAIL(s, ZKV_ECORRUPT);
      return e->nnext;
    }
    cur = e->ns;
    /* a record that is its own ancestor, or a parent that is none */
    if (UNLIKELY(!ns_valid(s, cur) || guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
  }
  return 0;
}

/* ---- namespaces --------------------------------------------------------- */

size_t idx_ns_bytes(size_t name_len) { return NS_DATA_OFF + sizeof(nsdata) + name_len; }

void idx_new_ns(zkv_db *db, ref_t r, ref_t parent, const void *name, size_t len, uint64_t h) {
  seg *s = db->s;
  fixed_add(s, r, +1);
  ent *e = E(s, r);
  /* the tag's old bytes are logged, so that a rollback takes the tag away
   * again: the record's block goes back into a free block whose inside is not
   * restored otherwise, and a handle still holding this id would pass
   * ns_of_id's checks there (the old header still reads as this record) and
   * use a namespace that is gone */
  LOGW(s, &ns_data_raw(s, r)->tag, 4);
  memset((char *)e + 4, 0, NS_DATA_OFF + sizeof(nsdata) - 4);
  e->klen = (uint16_t)len;
  e->type = T_NSREC;
  e->ns = parent;
  ns_data_raw(s, r)->tag = (uint32_t)(seg_rand(s) >> 16) | 1u;
  memcpy((char *)e + NS_DATA_OFF + sizeof(nsdata), name, len);
  if (parent) {
    nsdata *pd = idx_nsdata(s, parent);
    ref_t *b = bucket(s, h);
    e->hnext = *b;
    LOGW(s, b, 4);
    *b = r;
    /* children hang off the parent's `child` as a list through nprev/nnext,
     * the newest first; a child takes its insertion number from the parent's
     * counter, as a key does (zkv_namespaces walks the list by it) */
    e->nnext = pd->child;
    if (pd->child) {
      ent *c = ent_at(s, pd->child);
      LOGW(s, &c->nprev, 4);
      c->nprev = r;
    }
    LOG_SPAN(s, pd, child, next_seq);
    pd->child = r;
    e->seq = pd->next_seq++;
    hdr *hd = H(s);
    LOGW(s, &hd->nentries, 8);
    hd->nentries++;
  }
  hdr *hd = H(s);
  LOGW(s, &hd->nns, 8);
  hd->nns++;
}

/* in the parent's list of children (through nprev/nnext) of the record r,
 * whose links e holds: the link to r before it (the one before, or the
 * parent's `child`) becomes `to_next`, the one after it `to_prev` */
static void siblings_link(seg *s, const ent *e, ref_t r, ref_t to_next, ref_t to_prev) {
  if (e->nprev) {
    ent *p = ent_at(s, e->nprev);
    LOGW(s, &p->nnext, 4);
    p->nnext = to_next;
  } else {
    nsdata *pd = idx_nsdata(s, e->ns);
    if (UNLIKELY(pd->child != r)) FAIL(s, ZKV_ECORRUPT);
    LOGW(s, &pd->child, 4);
    pd->child = to_next;
  }
  if (e->nnext) {
    ent *n = ent_at(s, e->nnext);
    LOGW(s, &n->nprev, 4);
    n->nprev = to_prev;
  }
}

int idx_ns_freeable(seg *s, ref_t r) {
  ent *e = ent_at(s, r);
  if (e->type != T_NSREC || r == H(s)->root_ns || !e->ns) return 0;
  nsdata *d = idx_nsdata(s, r);
  return d->nkeys == 0 && d->child == 0 && !d->head;
}

void idx_free_ns(zkv_db *db, ref_t r) {
  seg *s = db->s;
  if (UNLIKELY(!idx_ns_freeable(s, r))) FAIL(s, ZKV_ECORRUPT);
  ent *e = E(s, r);
  ref_t parent = e->ns;
  chain_remove(s, r, idx_hash(parent, ent_key(e), e->klen, 1));
  siblings_link(s, e, r, e->nnext, e->nprev);   /* off the parent's list of children */
  /* its ids go stale at once, whatever takes the block next */
  nsdata *d = idx_nsdata(s, r);
  LOGW(s, &d->tag, 4);
  d->tag = 0;
  hdr *hd = H(s);
  LOGW(s, &hd->nentries, 8);
  hd->nentries--;
  LOGW(s, &hd->nns, 8);
  hd->nns--;
  fixed_add(s, r, -1);
  blk_free(s, r);
}

int idx_ns_movable(seg *s, ref_t r) {
  ent *e = ent_at(s, r);
  if (e->type != T_NSREC || r == H(s)->root_ns || !e->ns) return 0;
  nsdata *d = idx_nsdata(s, r);
  uint64_t n = d->nkeys;
  for (ref_t c = d->child; c && n <= NS_MOVE_MAX; c = ent_at(s, c)->nnext) n++;
  return n <= NS_MOVE_MAX;
}

/* the entry r (a key, or a child's record: is_ns), hashed with its
 * namespace's ref, now in the namespace whose record is at nw: off the
 * chain of its old hash, onto the one of its new */
static void rechain(seg *s, ref_t r, ref_t nw, int is_ns) {
  ent *e = ent_at(s, r);
  chain_remove(s, r, idx_hash(e->ns, ent_key(e), e->klen, is_ns));
  LOGW(s, &e->ns, 4);
  e->ns = nw;
  ref_t *b = bucket(s, idx_hash(nw, ent_key(e), e->klen, is_ns));
  LOGW(s, &e->hnext, 4);
  e->hnext = *b;
  LOGW(s, b, 4);
  *b = r;
}

void idx_ns_moved(zkv_db *db, ref_t old, ref_t nw) {
  seg *s = db->s;
  if (UNLIKELY(!idx_ns_movable(s, old))) FAIL(s, ZKV_ECORRUPT);
  ent *e = E(s, nw);
  ref_t parent = e->ns;
  ref_t *pp = chain_slot(s, old, idx_hash(parent, ent_key(e), e->klen, 1));
  LOGW(s, pp, 4);
  *pp = nw;
  siblings_link(s, e, old, nw, nw);
  /* its keys and children name it by its place, and are hashed with it
   * (deleted keys kept for reuse too: they stay on its list and chains) */
  nsdata *d = ns_data_raw(s, nw);
  uint64_t guard = NS_MOVE_MAX + 1;
  for (ref_t k = d->head; k; k = ent_at(s, k)->nnext) {
    if (UNLIKELY(guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
    rechain(s, k, nw, 0);
  }
  for (ref_t c = d->child; c; c = ent_at(s, c)->nnext) {
    if (UNLIKELY(guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
    rechain(s, c, nw, 1);
  }
  nsdata *od = ns_data_raw(s, old);
  LOGW(s, &od->tag, 4);
  od->tag = 0;
}

/* blocks for the store's own records, from an empty arena (FAILs if it is
 * too small for them) */
static ref_t init_block(seg *s, uint64_t bytes) {
  ref_t r = blk_alloc(s, (bytes + UNIT - 1) / UNIT);
  if (!r) FAIL(s, ZKV_EFULL);
  return r;
}

void idx_init(zkv_db *db) {
  seg *s = db->s;
  uint32_t lg = 4;
  ref_t b = init_block(s, BUCKETS_OFF + (1ull << lg) * 4);
  fixed_add(s, b, +1);
  hdr *h = H(s);
  memset((char *)P(s, b) + BUCKETS_OFF, 0, (1ull << lg) * 4);
  h->buckets = b;
  h->nb_log2 = lg;
  h->obuckets = 0;
  h->ocursor = 0;
  ref_t root = init_block(s, idx_ns_bytes(0));
  idx_new_ns(db, root, 0, "", 0, 0);
  H(s)->root_ns = root;
  /* the ring of kept deleted keys, made now so that it is part of an empty
   * store's bytes_used (a first delete does not make the store bigger); a
   * store too small for it frees deleted keys at once */
  ref_t rg = blk_alloc(s, (RING_OFF + NDEAD * 4 + UNIT - 1) / UNIT);
  if (rg) {
    fixed_add(s, rg, +1);
    memset((char *)P(s, rg) + RING_OFF, 0, NDEAD * 4);
    H(s)->dead_ring = rg;
  }
}

ref_t *idx_bucket_slot(seg *s, uint64_t i) {
  hdr *h = H(s);
  uint64_t nb = nbuckets(s);
  if (UNLIKELY(i >= nb)) FAIL(s, ZKV_ECORRUPT);
  if (h->obuckets && !(h->ocursor & OC_MOVING)) {   /* growing (a move keeps the numbering) */
    uint64_t onb = nb >> 1;
    if ((i & (onb - 1)) >= h->ocursor && i >= onb) return NULL;   /* still in old bucket i - onb */
  }
  /* hash i's slot: old bucket i while it has not moved, else new bucket i */
  return bucket(s, i);
}

ref_t idx_bucket_head(seg *s, uint64_t i) {
  ref_t *p = idx_bucket_slot(s, i);
  return p ? *p : 0;
}

ref_t idx_dead_at(seg *s, uint32_t slot) {
  if (slot >= NDEAD) return 0;
  ref_t *rg = ring(s);
  if (!rg || !rg[slot]) return 0;
  dead_slot(s, rg[slot]);   /* checked both ways */
  return rg[slot];
}
