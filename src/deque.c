#define _GNU_SOURCE
/*
 * deque.c -- lists (ZKV_T_LIST values: ngx.shared.DICT's lpush, rpush, lpop,
 * rpop, llen) as linked items, so that a push or a pop costs the same
 * whatever the length of the list, and nothing copies the list.
 *
 * A list is an entry of type ZKV_T_LIST whose value is a struct lhead (item
 * count, first and last node; format.h).  Each item is a node: a block laid
 * out as an entry header of type T_LNODE, in no hash chain and no key list,
 * whose nprev / nnext link the items in order and whose value is the item: a
 * tag byte ('s' string, 'i' integer, 'f' float: the tags of the list encoding
 * in zeltkv.h) and the payload.  Because a node starts like an entry, code
 * that walks blocks (compaction, room.c) can tell it and leaves it in place.
 *
 * Outside the engine a list keeps its encoding (zeltkv.h): zkv_get of a list
 * returns it, made from the nodes (list_encode), and zkv_set of a ZKV_T_LIST
 * value builds the nodes from it (list_build), so dumps, loads, snapshots and
 * the store API see the same bytes as before lists were linked.
 *
 * Every change goes through the undo log: nodes come from room_alloc (pushes
 * never evict, as in shdict) and go back with blk_free (restorable by a
 * rollback); the links and the head are logged before they change.  The
 * entry's lifetime is the index's: when an entry holding a list is freed or
 * overwritten (delete, set, eviction, expiry, clear), list_drop hands its
 * nodes to a chain of garbage in one step, and list_reclaim frees them a few
 * at a time: by every list operation and write, by the background gc step,
 * and by room.c when a write needs their room.  The garbage chain is linked
 * both ways too, from hdr.lgarb.
 *
 * Compaction (room.c) moves entries and nodes alike.  A moved node's
 * neighbours are fixed through its links; at an end of a list the head must
 * be, so the first and the last node of a list hold their entry's ref in ns
 * (0 in every other node, and in the garbage chain's head and tail), and when
 * the entry moves (list_owner_moved) those two are updated.
 *
 * This file knows entries and blocks only (it sits between alloc.c and
 * index.c, which calls list_drop, and room.c, which calls list_reclaim and
 * list_relocate); the operations that look keys up and make room for an item
 * (push, pop, a list set from its encoding) are in ops.c.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* the head of a list entry, checked */
lhead *list_head(seg *s, ent *e) {
  size_t vlen;
  char *v = ent_val(e, &vlen);
  if (UNLIKELY(e->type != ZKV_T_LIST || vlen != sizeof(lhead))) FAIL(s, ZKV_ECORRUPT);
  return (lhead *)v;
}

/* the node at r, checked */
static ent *node_at(seg *s, ref_t r) {
  if (UNLIKELY(!ent_ok(s, r) || E(s, r)->type != T_LNODE)) FAIL(s, ZKV_ECORRUPT);
  return E(s, r);
}

static const char *node_item(ent *n, size_t *len) { return ent_val(n, len); }

uint64_t list_node_units(size_t plen) { return ent_units(0, plen + 1, 0); }

void list_node_init(seg *s, ref_t r, int tag, const void *payload, size_t plen) {
  ent *n = E(s, r);   /* a fresh block: a rollback frees it, its bytes need no log */
  n->hnext = n->nprev = n->nnext = n->ns = n->seq = 0;
  n->klen = 0;
  n->atime = 0;
  n->type = T_LNODE;
  n->flags = (uint8_t)(((size_t)BLK_UNITS(n->blk) * UNIT - ENT_HDR - plen - 1) << 5);
  ((char *)n)[ENT_HDR] = (char)tag;
  if (plen) memcpy((char *)n + ENT_HDR + 1, payload, plen);
}

static void set_owner(seg *s, ent *n, ref_t owner) {
  if (n->ns != owner) {
    LOGW(s, &n->ns, 4);
    n->ns = owner;
  }
}

void list_link_end(seg *s, ref_t r, ref_t nr, int left) {
  lhead *hd = list_head(s, E(s, r));
  ent *n = E(s, nr);
  if (hd->count == UINT32_MAX) FAIL(s, ZKV_ERANGE);
  LOGW(s, hd, sizeof *hd);
  n->ns = r;   /* an end (a fresh block: no log) */
  if (left) {
    n->nnext = hd->first;
    if (hd->first) {
      ent *f = node_at(s, hd->first);
      LOGW(s, &f->nprev, 4);
      f->nprev = nr;
      if (hd->first != hd->last) set_owner(s, f, 0);
    } else {
      hd->last = nr;
    }
    hd->first = nr;
  } else {
    n->nprev = hd->last;
    if (hd->last) {
      ent *l = node_at(s, hd->last);
      LOGW(s, &l->nnext, 4);
      l->nnext = nr;
      if (hd->first != hd->last) set_owner(s, l, 0);
    } else {
      hd->first = nr;
    }
    hd->last = nr;
  }
  hd->count++;
  hd->units += BLK_UNITS(n->blk);
}

/* The items of a list that is gone (deleted, overwritten, evicted, expired)
 * join the chain of garbage items in one step, whatever their number, and are
 * freed a few at a time after (list_reclaim): freeing a long list at once
 * would hold the lock, and fill the undo log, in proportion to its length. */
void list_drop(zkv_db *db, ent *e) {
  seg *s = db->s;
  lhead *hd = list_head(s, e);
  if (!hd->first) return;
  ent *first = node_at(s, hd->first), *last = node_at(s, hd->last);
  hdr *h = H(s);
  set_owner(s, first, 0);   /* the garbage's new head */
  if (h->lgarb) {
    ent *g = node_at(s, h->lgarb);
    LOGW(s, &g->nprev, 4);
    g->nprev = hd->last;
    set_owner(s, last, 0);
  } else {
    set_owner(s, last, 0);  /* the garbage's tail */
  }
  LOGW(s, &last->nnext, 4);
  last->nnext = h->lgarb;
  LOG_SPAN(s, h, lgarb, lgarb_units);
  h->lgarb = hd->first;
  h->lgarb_n += hd->count;
  h->lgarb_units += hd->units;
}

uint64_t list_reclaim(zkv_db *db, uint64_t max) {
  seg *s = db->s;
  uint64_t n = 0;
  while (n < max && H(s)->lgarb) {
    hdr *h = H(s);
    ref_t r = h->lgarb;
    ent *x = node_at(s, r);
    uint64_t u = BLK_UNITS(x->blk);
    if (UNLIKELY(h->lgarb_n == 0 || h->lgarb_units < u)) FAIL(s, ZKV_ECORRUPT);
    if (x->nnext) {
      ent *nx = node_at(s, x->nnext);
      LOGW(s, &nx->nprev, 4);
      nx->nprev = 0;
      set_owner(s, nx, 0);
    }
    LOG_SPAN(s, h, lgarb, lgarb_units);
    h->lgarb = x->nnext;
    h->lgarb_n--;
    h->lgarb_units -= u;
    blk_free(s, r);
    n++;
  }
  return n;
}

/* the entry of a list moved to nw (compaction, or rebuilt with another
 * expiry field): its first and last nodes follow */
void list_owner_moved(zkv_db *db, ent *e, ref_t nw) {
  seg *s = db->s;
  lhead *hd = list_head(s, e);
  if (hd->first) set_owner(s, node_at(s, hd->first), nw);
  if (hd->last) set_owner(s, node_at(s, hd->last), nw);
}

/* the head of the list whose end node `old` is, from the node's owner ref */
static lhead *owner_head(seg *s, ref_t owner) {
  if (UNLIKELY(!ent_ok(s, owner) || E(s, owner)->type != ZKV_T_LIST)) FAIL(s, ZKV_ECORRUPT);
  return list_head(s, E(s, owner));
}

/* compaction copied the node at old to nw: its neighbours (or its list's
 * head, or the garbage chain's head) now point at nw */
void list_relocate(zkv_db *db, ref_t old, ref_t nw) {
  seg *s = db->s;
  ent *x = node_at(s, nw);
  if (x->nprev) {
    ent *p = node_at(s, x->nprev);
    if (UNLIKELY(p->nnext != old)) FAIL(s, ZKV_ECORRUPT);
    LOGW(s, &p->nnext, 4);
    p->nnext = nw;
  } else if (x->ns) {
    lhead *hd = owner_head(s, x->ns);
    if (UNLIKELY(hd->first != old)) FAIL(s, ZKV_ECORRUPT);
    LOGW(s, &hd->first, 4);
    hd->first = nw;
  } else {
    hdr *h = H(s);
    if (UNLIKELY(h->lgarb != old)) FAIL(s, ZKV_ECORRUPT);
    LOGW(s, &h->lgarb, 4);
    h->lgarb = nw;
  }
  if (x->nnext) {
    ent *n = node_at(s, x->nnext);
    if (UNLIKELY(n->nprev != old)) FAIL(s, ZKV_ECORRUPT);
    LOGW(s, &n->nprev, 4);
    n->nprev = nw;
  } else if (x->ns) {
    lhead *hd = owner_head(s, x->ns);
    if (UNLIKELY(hd->last != old)) FAIL(s, ZKV_ECORRUPT);
    LOGW(s, &hd->last, 4);
    hd->last = nw;
  }   /* else the garbage chain's tail: nothing points at it from behind */
}

/* ---- the list encoding (zeltkv.h) ---------------------------------------- */

static int hex8_get(const char *p, uint32_t *out) {
  uint32_t n = 0;
  for (int i = 0; i < 8; i++) {
    char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return 0;
    n = n << 4 | (uint32_t)d;
  }
  *out = n;
  return 1;
}

static void hex8_put(char *p, uint32_t n) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 7; i >= 0; i--, n >>= 4) p[i] = digits[n & 15];
}

/* the items of an encoded list, checked: the count, and (when `each` is set)
 * each item as tag + payload, in order; ZKV_OK or ZKV_EINVAL_VALUE */
int list_decode(const char *p, size_t n, uint32_t *count, list_item_fn each, void *ud) {
  if (n < 8 || !hex8_get(p, count) || *count == 0) return ZKV_EINVAL_VALUE;
  size_t at = 8;
  for (uint32_t i = 0; i < *count; i++) {
    uint32_t len, len2;
    if (n - at < 17 || !hex8_get(p + at + 1, &len) || len > n - at - 17 ||
        !hex8_get(p + at + 9 + len, &len2) || len2 != len)
      return ZKV_EINVAL_VALUE;
    char t = p[at];
    if (t != 's' && t != 'i' && t != 'f') return ZKV_EINVAL_VALUE;
    if (each) each(ud, p + at, p + at + 9, len);
    at += 17 + (size_t)len;
  }
  return at == n ? ZKV_OK : ZKV_EINVAL_VALUE;
}

int list_check_encoding(const void *p, size_t n) {
  uint32_t count;
  return list_decode(p, n, &count, NULL, NULL);
}

/* the encoding of the list entry e into *buf (realloc'ed, *cap bytes), *len
 * bytes.  Never FAILs: it also reads snapshots, outside any op.  Returns
 * ZKV_OK, ZKV_ENOMEM or ZKV_ECORRUPT. */
int list_encode(seg *s, ent *e, char **buf, size_t *cap, size_t *len) {
  size_t vlen;
  const char *v = ent_val(e, &vlen);
  if (vlen != sizeof(lhead)) return ZKV_ECORRUPT;
  lhead hd;
  memcpy(&hd, v, sizeof hd);
  size_t need = 8;
  uint64_t n = 0;
  for (ref_t r = hd.first; r; r = E(s, r)->nnext) {
    if (!ent_ok(s, r) || E(s, r)->type != T_LNODE || ++n > hd.count) return ZKV_ECORRUPT;
    size_t il;
    node_item(E(s, r), &il);
    if (il == 0 || il - 1 > UINT32_MAX) return ZKV_ECORRUPT;
    need += 16 + il;
  }
  if (n != hd.count || n == 0) return ZKV_ECORRUPT;
  if (need > *cap) {
    char *nb = realloc(*buf, need);
    if (!nb) return ZKV_ENOMEM;
    *buf = nb;
    *cap = need;
  }
  char *p = *buf;
  hex8_put(p, hd.count);
  p += 8;
  for (ref_t r = hd.first; r; r = E(s, r)->nnext) {
    size_t il;
    const char *it = node_item(E(s, r), &il);
    *p++ = it[0];
    hex8_put(p, (uint32_t)(il - 1));
    memcpy(p + 8, it + 1, il - 1);
    hex8_put(p + 8 + il - 1, (uint32_t)(il - 1));
    p += 16 + il - 1;
  }
  *len = need;
  return ZKV_OK;
}

ref_t list_take_end(seg *s, ref_t r, int left) {
  lhead *hd = list_head(s, E(s, r));
  ref_t nr = left ? hd->first : hd->last;
  if (UNLIKELY(!nr || hd->count < 2)) FAIL(s, ZKV_ECORRUPT);
  ent *n = node_at(s, nr);
  ref_t nb = left ? n->nnext : n->nprev;
  ent *b = node_at(s, nb);
  LOGW(s, hd, sizeof *hd);
  if (left) {
    LOGW(s, &b->nprev, 4);
    b->nprev = 0;
    hd->first = nb;
  } else {
    LOGW(s, &b->nnext, 4);
    b->nnext = 0;
    hd->last = nb;
  }
  set_owner(s, b, r);
  hd->count--;
  hd->units -= BLK_UNITS(n->blk);
  return nr;
}

const char *list_end_item(seg *s, ent *e, int left, size_t *len) {
  lhead *hd = list_head(s, e);
  ref_t nr = left ? hd->first : hd->last;
  if (UNLIKELY(!nr || hd->count == 0)) FAIL(s, ZKV_ECORRUPT);
  const char *it = node_item(node_at(s, nr), len);
  if (UNLIKELY(*len == 0)) FAIL(s, ZKV_ECORRUPT);
  return it;
}

/* the verification of one list entry (zkv_verify): NULL, or what is wrong */
const char *list_verify(seg *s, ref_t er) {
  ent *e = E(s, er);
  size_t vlen;
  char *v = ent_val(e, &vlen);
  if (vlen != sizeof(lhead)) return "list head of the wrong size";
  lhead hd;
  memcpy(&hd, v, sizeof hd);
  if (hd.count == 0 || !hd.first || !hd.last) return "empty list kept";
  uint64_t n = 0, units = 0;
  ref_t pv = 0;
  for (ref_t r = hd.first; r; r = E(s, r)->nnext) {
    if (!ent_ok(s, r) || E(s, r)->type != T_LNODE || ++n > hd.count) return "list runs wild";
    ent *x = E(s, r);
    if (x->nprev != pv) return "list back link is wrong";
    size_t il;
    const char *it = node_item(x, &il);
    if (il == 0 || (it[0] != 's' && it[0] != 'i' && it[0] != 'f')) return "list item is damaged";
    units += BLK_UNITS(x->blk);
    pv = r;
  }
  if (n != hd.count || pv != hd.last) return "list count or last item is wrong";
  if (units != hd.units) return "list size is wrong";
  if (E(s, hd.first)->ns != er || E(s, hd.last)->ns != er) return "list ends do not name their entry";
  for (ref_t r = E(s, hd.first)->nnext; r && r != hd.last; r = E(s, r)->nnext)
    if (E(s, r)->ns) return "inner list item names an entry";
  return NULL;
}

/* the chain of garbage items (zkv_verify): NULL, or what is wrong */
const char *list_verify_garbage(seg *s) {
  hdr *h = H(s);
  uint64_t n = 0, units = 0;
  ref_t pv = 0;
  for (ref_t r = h->lgarb; r; r = E(s, r)->nnext) {
    if (!ent_ok(s, r) || E(s, r)->type != T_LNODE || ++n > h->lgarb_n) return "garbage items run wild";
    if (E(s, r)->nprev != pv) return "garbage back link is wrong";
    units += BLK_UNITS(E(s, r)->blk);
    pv = r;
  }
  if (n != h->lgarb_n || units != h->lgarb_units) return "garbage item counters are wrong";
  if (h->lgarb && (E(s, h->lgarb)->ns || E(s, pv)->ns)) return "garbage ends name an entry";
  return NULL;
}
