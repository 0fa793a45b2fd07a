/*
 * index.c -- entries, the hash index, namespaces, eviction and expiry sweeps.
 *
 * One chained hash index (refs in a bucket array) holds every key of every
 * namespace and every namespace record; the hash is XXH3 of the key seeded
 * with the namespace ref, and a lookup compares namespace, kind and bytes, so
 * no two namespace paths can meet whatever bytes they hold.  Each namespace
 * also keeps its keys on a doubly linked list in insertion order: keys(),
 * count() and clear() walk that list, so they cost what the namespace holds.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "internal.h"

uint64_t zkv_hash(ref_t ns, const void *key, size_t klen, int is_ns) {
  uint64_t seed = (uint64_t)ns * 0x9E3779B97F4A7C15ull + (is_ns ? 0x5bd1e995u : 0);
  return XXH3_64bits_withSeed(key, klen, seed);
}

static inline ent *ent_at(seg *s, ref_t r) {
  if (UNLIKELY(!ent_ok(s, r))) FAIL(s, ZKV_ECORRUPT);
  return E(s, r);
}

nsdata *ns_data(seg *s, ref_t ns) {
  if (UNLIKELY(!ns_valid(s, ns))) FAIL(s, ZKV_ECORRUPT);
  return (nsdata *)((char *)P(s, ns) + NS_DATA_OFF);
}

static ref_t *ring(seg *s);
static ref_t *dead_slot(seg *s, ref_t r);

static ref_t *bucket(seg *s, uint64_t h) {
  hdr *hd = H(s);
  uint64_t nb = nbuckets(s);
  uint64_t off = (uint64_t)hd->buckets * UNIT;
  if (UNLIKELY(!hd->buckets || off < hd->heap_start ||
               off + BUCKETS_OFF + nb * 4 > hd->top))
    FAIL(s, ZKV_ECORRUPT);
  return (ref_t *)((char *)P(s, hd->buckets) + BUCKETS_OFF) + (h & (nb - 1));
}

ref_t do_find(seg *s, ref_t ns, const void *key, size_t klen, uint64_t h, int is_ns) {
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

static void chain_remove(seg *s, ref_t r, uint64_t h) {
  ref_t *pp = bucket(s, h);
  uint64_t guard = ent_limit(s);
  while (*pp && *pp != r) {
    pp = (ref_t *)((char *)ent_at(s, *pp) + 4);  /* &hnext: blocks are 8-aligned */
    if (UNLIKELY(guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
  }
  if (UNLIKELY(!*pp)) FAIL(s, ZKV_ECORRUPT);
  LOGW(s, pp, 4);
  *pp = E(s, r)->hnext;
}

/* put an entry on a namespace's key list (or a ns record on its parent's
 * child list) at the tail */
/* The three below change fields of the namespace record d (head, tail,
 * next_seq, nkeys, nttl: its first 32 bytes), which their callers log in one
 * record beforehand (LOG_NSDATA). */
#define LOG_NSDATA(s, d) LOGW(s, d, 32)

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
  LOGW(s, &h->nentries, 16);
  h->nentries += (uint64_t)(int64_t)delta;
  h->nkeys += (uint64_t)(int64_t)delta;
}

/* link a freshly built entry r (its header filled but for links and seq) */
void do_link_new(zkv_db *db, ref_t ns, ref_t r, uint64_t h) {
  seg *s = db->s;
  nsdata *d = ns_data(s, ns);
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

/* put nw where old is (same chain place, same list place, same seq), free old */
void do_replace(zkv_db *db, ref_t old, ref_t nw, uint64_t h) {
  do_replace_keep(db, old, nw, h);
  do_free(db->s, old);
}

/* move a key entry to a copy of it at nw (compaction); old is left as it is */
void do_relocate(zkv_db *db, ref_t old, ref_t nw) {
  seg *s = db->s;
  ent *o = ent_at(s, old);
  if (o->type == T_NSREC) FAIL(s, ZKV_ECORRUPT);
  do_replace_keep(db, old, nw, zkv_hash(o->ns, ent_key(o), o->klen, 0));
}

/* link nw in old's place; old stays allocated */
void do_replace_keep(zkv_db *db, ref_t old, ref_t nw, uint64_t h) {
  seg *s = db->s;
  ent *o = ent_at(s, old);
  ent *n = E(s, nw);
  nsdata *d = ns_data(s, o->ns);
  n->ns = o->ns;
  n->seq = o->seq;
  n->hnext = o->hnext;
  n->nprev = o->nprev;
  n->nnext = o->nnext;
  ref_t *pp = bucket(s, h);
  uint64_t guard = ent_limit(s);
  while (*pp && *pp != old) {
    pp = (ref_t *)((char *)ent_at(s, *pp) + 4);  /* &hnext: blocks are 8-aligned */
    if (UNLIKELY(guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
  }
  if (UNLIKELY(!*pp)) FAIL(s, ZKV_ECORRUPT);
  LOGW(s, pp, 4);
  *pp = nw;
  if (o->nprev) {
    ent *p = ent_at(s, o->nprev);
    LOGW(s, &p->nnext, 4);
    p->nnext = nw;
  } else {
    LOGW(s, &d->head, 4);
    d->head = nw;
  }
  if (o->nnext) {
    ent *x = ent_at(s, o->nnext);
    LOGW(s, &x->nprev, 4);
    x->nprev = nw;
  } else {
    LOGW(s, &d->tail, 4);
    d->tail = nw;
  }
  if (o->flags & EF_DELETED) {
    if (n->flags & EF_DELETED) {   /* relocated (a copy): its ring slot follows it */
      ref_t *slot = dead_slot(s, old);
      LOGW(s, slot, 4);
      *slot = nw;
    } else {
      do_dead_forget(s, old);
    }
  }
  int had = ent_timed(o), has = ent_timed(n);
  if (had != has) {
    LOGW(s, &d->nttl, 8);
    d->nttl += has ? 1 : (uint64_t)-1;
  }
}

/* remove a key entry from its namespace and the index, and free it */
void do_unlink_free(zkv_db *db, ref_t r, int expired) {
  ent *e = ent_at(db->s, r);
  do_unlink_free_h(db, r, expired, zkv_hash(e->ns, ent_key(e), e->klen, 0));
}

/* the same, when the caller has the key's hash already */
void do_unlink_free_h(zkv_db *db, ref_t r, int expired, uint64_t h) {
  seg *s = db->s;
  ent *e = ent_at(s, r);
  if (UNLIKELY(e->type == T_NSREC)) FAIL(s, ZKV_ECORRUPT);
  if (e->flags & EF_DELETED) {
    do_dead_forget(s, r);
    expired = 0;   /* it was deleted, not expired */
  }
  nsdata *d = ns_data(s, e->ns);
  chain_remove(s, r, h);
  LOG_NSDATA(s, d);
  list_unlink(s, d, e);
  count_add(s, d, ent_timed(e), -1);
  if (expired) {
    hdr *hd = H(s);
    LOGW(s, &hd->expired_freed, 8);
    hd->expired_freed++;
  }
  do_free(s, r);
}

/* a key written back in place after it was deleted or expired goes to the
 * end of its namespace's list with a new insertion number, as a new key
 * would (keys() lists in insertion order) */
void do_move_to_tail(zkv_db *db, ref_t r) {
  seg *s = db->s;
  ent *e = ent_at(s, r);
  if (!e->nnext) return;   /* the last already */
  nsdata *d = ns_data(s, e->ns);
  LOG_NSDATA(s, d);
  LOGW(s, &e->nprev, 16);   /* nprev, nnext, ns, seq */
  list_unlink(s, d, e);
  list_append(s, d, r);
  e->seq = d->next_seq++;
}

/* ---- deleted keys (see internal.h) ---------------------------------------- */

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

/* the ring slot of the deleted key r, checked both ways */
static ref_t *dead_slot(seg *s, ref_t r) {
  ent *e = ent_at(s, r);
  uint32_t slot = e->atime;
  ref_t *rg = ring(s);
  if (UNLIKELY(!rg || !(e->flags & EF_DELETED) || e->type == T_NSREC || slot >= NDEAD ||
               rg[slot] != r || H(s)->ndead == 0))
    FAIL(s, ZKV_ECORRUPT);
  return rg + slot;
}

/* r, a deleted key, is freed or written back: it leaves the ring */
void do_dead_forget(seg *s, ref_t r) {
  ref_t *slot = dead_slot(s, r);
  hdr *h = H(s);
  LOGW(s, slot, 4);
  *slot = 0;
  LOGW(s, &h->ndead, 16);   /* ndead and dead_bytes */
  h->ndead--;
  h->dead_bytes -= (uint64_t)BLK_UNITS(E(s, r)->blk) * UNIT;
}

/* delete the live key r by flagging it, keeping its block (the ring's
 * oldest is freed if the ring is full).  Returns 0, having changed nothing,
 * when the store has no ring: the caller frees r instead. */
int do_bury(zkv_db *db, ref_t r) {
  seg *s = db->s;
  hdr *h = H(s);
  if (!h->dead_ring) return 0;   /* the store had no room for the ring when it was made */
  uint32_t slot = h->dead_next;
  if (UNLIKELY(slot >= NDEAD)) FAIL(s, ZKV_ECORRUPT);
  ref_t *rs = ring(s) + slot;
  if (*rs) {
    dead_slot(s, *rs);   /* checked before it is freed */
    do_unlink_free(db, *rs, 0);
    h = H(s);
  }
  ent *e = ent_at(s, r);
  LOGW(s, &e->atime, 4);   /* atime, type, flags */
  e->atime = (uint16_t)slot;
  e->flags |= EF_DELETED;
  LOGW(s, rs, 4);
  *rs = r;
  LOGW(s, &h->ndead, 20);   /* ndead, dead_bytes, dead_next */
  h->ndead++;
  h->dead_bytes += (uint64_t)BLK_UNITS(e->blk) * UNIT;
  h->dead_next = (slot + 1) % NDEAD;
  return 1;
}

/* free the kept deleted keys (but the one pinned by the running op), as many
 * as a shared segment's undo log has room for; returns how many */
int do_dead_flush(zkv_db *db) {
  seg *s = db->s;
  int n = 0;
  for (uint32_t slot = 0; slot < NDEAD && H(s)->ndead; slot++) {
    ref_t r = ring(s)[slot];
    if (!r || r == s->pin) continue;
    if (s->shared && H(s)->log_cap - H(s)->log_used < 4096) break;
    dead_slot(s, r);
    do_unlink_free(db, r, 0);
    n++;
  }
  return n;
}

/* double the bucket array when the index is fuller than one entry a bucket;
 * a failed allocation only leaves the index denser, never loses anything */
void do_maybe_grow(zkv_db *db) {
  seg *s = db->s;
  hdr *h = H(s);
  if (h->nb_log2 >= 30 || h->nentries < nbuckets(s)) return;
  uint32_t lg = h->nb_log2 + 1;
  uint64_t nb = 1ull << lg;
  int rc;
  /* never evict keys to make a bigger index */
  ref_t nbk = do_alloc_try(db, (BUCKETS_OFF + nb * 4 + UNIT - 1) / UNIT, 0, &rc);
  if (!nbk) return;
  h = H(s);
  ref_t *nbv = (ref_t *)((char *)P(s, nbk) + BUCKETS_OFF);
  memset(nbv, 0, nb * 4);
  ref_t *old = bucket(s, 0);
  uint64_t onb = nbuckets(s);
  uint64_t guard = ent_limit(s);
  /* Relinking every entry is not logged (that would log 24 bytes a key, more
   * than the log of a big store holds).  Instead the `rebuild` mark says that
   * after any undo in this lock hold the chains must be rebuilt from the
   * namespace lists, which the log does restore. */
  h->rebuild = 1;
  for (uint64_t i = 0; i < onb; i++) {
    ref_t r = old[i];
    while (r) {
      ent *e = ent_at(s, r);
      ref_t nx = e->hnext;
      uint64_t hv = zkv_hash(e->ns, ent_key(e), e->klen, e->type == T_NSREC);
      e->hnext = nbv[hv & (nb - 1)];
      nbv[hv & (nb - 1)] = r;
      r = nx;
      if (UNLIKELY(guard-- == 0)) FAIL(s, ZKV_ECORRUPT);
    }
  }
  ref_t oldref = h->buckets;
  LOGW(s, &h->buckets, 8);
  h->buckets = nbk;
  h->nb_log2 = lg;
  LOGW(s, &h->gc_cursor, 4);
  h->gc_cursor = 0;   /* a sweep in progress starts over on the new array */
  do_free(s, oldref);
}

/* Rebuild every hash chain from the namespace tree and key lists (after an
 * undo that crossed an index growth).  Writes are not logged: the result
 * follows from state the log restores. */
void do_rebuild_index(seg *s) {
  hdr *h = H(s);
  uint64_t nb = nbuckets(s);
  ref_t *bv = bucket(s, 0);
  memset(bv, 0, nb * 4);
  ref_t root = h->root_ns, cur = root;
  uint64_t guard = ent_limit(s), kguard = ent_limit(s);
  for (;;) {
    nsdata *d = ns_data(s, cur);
    if (cur != root) {
      ent *n = E(s, cur);
      uint64_t hv = zkv_hash(n->ns, ent_key(n), n->klen, 1);
      n->hnext = bv[hv & (nb - 1)];
      bv[hv & (nb - 1)] = cur;
    }
    for (ref_t r = d->head; r;) {
      ent *e = ent_at(s, r);
      if (kguard-- == 0) FAIL(s, ZKV_ECORRUPT);
      uint64_t hv = zkv_hash(cur, ent_key(e), e->klen, 0);
      e->hnext = bv[hv & (nb - 1)];
      bv[hv & (nb - 1)] = r;
      r = e->nnext;
    }
    if (guard-- == 0) FAIL(s, ZKV_ECORRUPT);
    if (d->child) {
      cur = d->child;
      continue;
    }
    while (cur != root && !E(s, cur)->nnext) {
      cur = E(s, cur)->ns;
      if (!ns_valid(s, cur) || guard-- == 0) FAIL(s, ZKV_ECORRUPT);
    }
    if (cur == root) return;
    cur = E(s, cur)->nnext;
    if (!ns_valid(s, cur)) FAIL(s, ZKV_ECORRUPT);
  }
}

/* ---- namespaces --------------------------------------------------------- */

ref_t do_new_ns(zkv_db *db, ref_t parent, const void *name, size_t len, uint64_t h) {
  seg *s = db->s;
  size_t bytes = NS_DATA_OFF + sizeof(nsdata) + len;
  ref_t r = do_alloc(db, (bytes + UNIT - 1) / UNIT);
  ent *e = E(s, r);
  memset((char *)e + 4, 0, NS_DATA_OFF + sizeof(nsdata) - 4);
  e->klen = (uint16_t)len;
  e->type = T_NSREC;
  e->ns = parent;
  ((nsdata *)((char *)e + NS_DATA_OFF))->tag = (uint32_t)(zkv_rand(s) >> 16) | 1u;
  memcpy((char *)e + NS_DATA_OFF + sizeof(nsdata), name, len);
  if (parent) {
    nsdata *pd = ns_data(s, parent);
    ref_t *b = bucket(s, h);
    e->hnext = *b;
    LOGW(s, b, 4);
    *b = r;
    /* children hang off the parent's `child` as a list through nprev/nnext */
    e->nnext = pd->child;
    if (pd->child) {
      ent *c = ent_at(s, pd->child);
      LOGW(s, &c->nprev, 4);
      c->nprev = r;
    }
    LOGW(s, &pd->child, 4);
    pd->child = r;
    hdr *hd = H(s);
    LOGW(s, &hd->nentries, 8);
    hd->nentries++;
  }
  hdr *hd = H(s);
  LOGW(s, &hd->nns, 8);
  hd->nns++;
  return r;
}

void zkv_index_init(zkv_db *db) {
  seg *s = db->s;
  hdr *h = H(s);
  uint32_t lg = 4;
  ref_t b = do_alloc(db, (BUCKETS_OFF + (1ull << lg) * 4 + UNIT - 1) / UNIT);
  h = H(s);
  memset((char *)P(s, b) + BUCKETS_OFF, 0, (1ull << lg) * 4);
  h->buckets = b;
  h->nb_log2 = lg;
  h->root_ns = do_new_ns(db, 0, "", 0, 0);
  /* the ring of kept deleted keys, made now so that it is part of an empty
   * store's bytes_used (a first delete does not make the store bigger); a
   * store too small for it frees deleted keys at once */
  int rc;
  ref_t rg = do_alloc_try(db, (RING_OFF + NDEAD * 4 + UNIT - 1) / UNIT, 0, &rc);
  if (rg) {
    memset((char *)P(s, rg) + RING_OFF, 0, NDEAD * 4);
    H(s)->dead_ring = rg;
  }
}

/* ---- eviction: sampled LRU ---------------------------------------------- */
/* Like Redis, sample a few keys and evict the one unused longest: no list to
 * update on every read, so a get writes at most two bytes, once a second. */
uint64_t zkv_rand(seg *s) {
  uint64_t x = s->rng ? s->rng : 0x2545F4914F6CDD1Dull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return s->rng = x;
}

uint16_t zkv_lru_now(seg *s) {
  hdr *h = H(s);
  unsigned lg = h->nkeys ? 64u - (unsigned)__builtin_clzll(h->nkeys) : 0;
  return (uint16_t)(h->lru_clock >> (lg > 10 ? lg - 10 : 0));
}

/* Candidates are kept between evictions in a small pool of the process (as
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
  return do_find(s, e->ns, ent_key(e), e->klen, zkv_hash(e->ns, ent_key(e), e->klen, 0), 0) == r;
}

int do_evict_one(zkv_db *db) {
  seg *s = db->s;
  hdr *h = H(s);
  if (h->nkeys == 0) return 0;
  uint64_t nb = nbuckets(s);
  uint16_t now = zkv_lru_now(s);
  s->pool_now = now;
  ref_t best = 0;
  int best_age = -1, seen = 0;
  ref_t *bv = bucket(s, 0);
  for (uint64_t tries = 0; tries < nb * 2 && seen < 16; tries++) {
    ref_t r = bv[zkv_rand(s) & (nb - 1)];
    for (int depth = 0; r && depth < 8; depth++) {
      ent *e = ent_at(s, r);
      if (e->type != T_NSREC && r != s->pin) {
        pool_add(s, r, e->atime, age_of(e, now));
        seen++;
      }
      r = e->hnext;
    }
  }
  int bi = -1;
  for (int i = 0; i < s->npool; i++) {
    ref_t r = s->pool[i].r;
    if (r == s->pin || !pooled_key_ok(s, r) || E(s, r)->atime != s->pool[i].atime) {
      s->pool[i--] = s->pool[--s->npool];   /* gone, or used since: drop it */
      continue;
    }
    int a = age_of(E(s, r), now);
    if (a > best_age) { best_age = a; best = r; bi = i; }
  }
  if (!best) return 0;
  s->pool[bi] = s->pool[--s->npool];
  int expired = best_age == (1 << 20);
  do_unlink_free(db, best, expired);   /* a deleted one counts as neither */
  if (!expired) {
    h = H(s);
    LOGW(s, &h->evictions, 8);
    h->evictions++;
    s->evicted++;
  }
  return 1;
}

/* ---- expiry sweep -------------------------------------------------------- */
ref_t *bucket_at(seg *s, uint64_t i) { return bucket(s, i); }

/* Visit at most `budget` buckets from *cursor and free the expired keys found
 * there (every key when `all`), stopping once `max` (0 = no limit) were freed.
 * Returns 1 when the walk reached the end of the index. */
int do_sweep(zkv_db *db, uint64_t *cursor, uint64_t budget, int all, uint64_t *freed,
             uint64_t max) {
  seg *s = db->s;
  int64_t now = zkv_now();
  uint64_t i = *cursor, n = 0;
  for (; i < nbuckets(s) && budget; i++, budget--) {
    ref_t r = *bucket(s, i);
    uint64_t guard = ent_limit(s);
    while (r) {
      ent *e = ent_at(s, r);
      ref_t nx = e->hnext;
      /* the pinned entry is the one the running op replaces: not ours */
      if (e->type != T_NSREC && r != s->pin) {
        int live = ent_live(e, now);
        if (all || !live) {
          int dead = (e->flags & EF_DELETED) != 0;
          do_unlink_free(db, r, !live);
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
