/*
 * snapshot.c -- a store as it was at one instant (a copy of its arena taken
 * under the lock, walked without it), and the dump and load of a whole store.
 *
 * The copy is the only lock hold a dump costs: the used part of the arena is
 * copied with one memcpy into memory allocated and touched beforehand (so no
 * page fault lands inside the hold), and the walk, the JSON and the file
 * writing happen on the copy while other processes go on.  Because nothing
 * in the arena is a pointer, the copy's refs mean what they meant in place.
 *
 * A load is all or nothing with bounded lock holds: every line is checked
 * first (dumpfile.c, no lock), then keys are written in steps of about 1 ms
 * of lock hold, each a transaction; the old value of every key the load
 * replaces is kept in this process, so that if a step fails (a full store)
 * it is rolled back and the steps before it are undone, newest first.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "internal.h"

/* ---- clocks ------------------------------------------------------------------ */

/* wall-clock ms, moved by the same test offset as the engine's monotonic
 * clock (zkv_set_clock_offset), so that tests can age a dump */
static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t offset = clock_ms() - clock_ns() / 1000000;
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + offset;
}

/* ---- snapshots --------------------------------------------------------------- */

struct zkv_snapshot {
  char *base;            /* the copy: same offsets as the arena */
  size_t map_bytes;      /* of the mapping */
  seg view;              /* a seg over the copy, for the inline entry checks */
  int64_t mono_ms;       /* the engine clock at the instant (expiry is in it) */
  zkv_snapshot_info info;
  /* walk: the namespace path from the root, and the next key of the deepest */
  ref_t *stack;
  zkv_bytes *names;
  size_t depth, cap;
  ref_t next_key;
  uint64_t guard;        /* steps left before the walk must have ended */
  int started, done;
  char *lbuf;            /* the encoding of the last list item returned (deque.c) */
  size_t lcap;
};

static void *map_copy(size_t n) {
  /* MAP_POPULATE: the pages exist before the lock is taken */
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* the header fields the copy relies on, checked (a damaged store says
 * anything) */
static int layout_ok(const hdr *h, uint64_t mapped) {
  return h->top <= mapped && h->heap_start <= h->top && h->heap_start >= sizeof(hdr);
}

int zkv_snapshot_take(zkv_db *db, zkv_snapshot **out) {
  if (!out) return ZKV_EINVAL;
  *out = NULL;
  if (!db) return ZKV_EINVAL;
  if (db->closed) return ZKV_ECLOSED;
  if (zkv_txn_depth(db) > 0) return ZKV_ETXN;
  zkv_snapshot *sn = calloc(1, sizeof *sn);
  if (!sn) return ZKV_ENOMEM;
  uint64_t want = 0;
  for (;;) {
    int rc = op_enter(db);
    if (rc) {
      zkv_snapshot_free(sn);
      return rc;
    }
    seg *s = db->s;
    hdr *h = H(s);
    if (!layout_ok(h, s->mapped)) {
      op_leave(db, 0);
      zkv_snapshot_free(sn);
      return ZKV_ECORRUPT;
    }
    if (h->top <= sn->map_bytes) {
      int64_t t0 = clock_ns();
      memcpy(sn->base, h, sizeof(hdr));
      memcpy(sn->base + h->heap_start, s->base + h->heap_start, h->top - h->heap_start);
      sn->mono_ms = clock_ms();
      sn->info.time_ms = wall_ms();
      sn->info.entries = h->nkeys - h->ndead;
      sn->info.bytes = sizeof(hdr) + (h->top - h->heap_start);
      sn->info.lock_ns = (uint64_t)(clock_ns() - t0);
      op_leave(db, 0);
      break;
    }
    /* too small (or the first round): allocate without the lock, with room
     * for some growth meanwhile */
    want = h->top + h->top / 16 + 4096;
    op_leave(db, 0);
    if (sn->base) munmap(sn->base, sn->map_bytes);
    sn->map_bytes = 0;
    if (!(sn->base = map_copy(want))) {
      zkv_snapshot_free(sn);
      return ZKV_ENOMEM;
    }
    sn->map_bytes = want;
  }
  sn->view.base = sn->base;
  sn->view.mapped = H(&sn->view)->top;
  sn->guard = ent_limit(&sn->view) * 2;
  *out = sn;
  return ZKV_OK;
}

void zkv_snapshot_info_get(const zkv_snapshot *sn, zkv_snapshot_info *out) {
  if (!out) return;
  if (!sn) memset(out, 0, sizeof *out);
  else *out = sn->info;
}

static int push_ns(zkv_snapshot *sn, ref_t r) {
  seg *v = &sn->view;
  if (!ns_valid(v, r)) return ZKV_ECORRUPT;
  if (sn->depth == sn->cap) {   /* two arrays of one capacity */
    size_t cap = sn->cap;
    ref_t *st = grow_array(sn->stack, &cap, sn->depth + 1, sizeof *st, 16);
    if (!st) return ZKV_ENOMEM;
    sn->stack = st;
    cap = sn->cap;
    zkv_bytes *nm = grow_array(sn->names, &cap, sn->depth + 1, sizeof *nm, 16);
    if (!nm) return ZKV_ENOMEM;
    sn->names = nm;
    sn->cap = cap;
  }
  ent *e = E(v, r);
  if (sn->depth > 0) {
    if (e->ns != sn->stack[sn->depth - 1]) return ZKV_ECORRUPT;   /* not a child of its parent */
    sn->names[sn->depth - 1].data = ent_key(e);
    sn->names[sn->depth - 1].len = e->klen;
  }
  sn->stack[sn->depth++] = r;
  sn->next_key = ((nsdata *)((char *)e + NS_DATA_OFF))->head;
  return ZKV_OK;
}

static const nsdata *top_ns(zkv_snapshot *sn) {
  return (const nsdata *)((char *)P(&sn->view, sn->stack[sn->depth - 1]) + NS_DATA_OFF);
}

/* the item of a key entry of the copy; ZKV_ECORRUPT if its value's bytes do
 * not fit its type */
static int fill_item(zkv_snapshot *sn, ent *e, zkv_item *it) {
  size_t vlen;
  const char *v = ent_val(e, &vlen);
  zkv_value *val = &it->value;
  memset(it, 0, sizeof *it);
  val->type = e->type;
  if (e->flags & EF_UFLAGS) memcpy(&val->flags, (char *)e + ENT_HDR + ((e->flags & EF_EXP) ? 8 : 0), 4);
  val->data = v;
  val->len = vlen;
  if (e->type == ZKV_T_LIST) {   /* its items, in the list encoding */
    int rc = list_encode(&sn->view, e, &sn->lbuf, &sn->lcap, &val->len);
    if (rc) return rc;
    val->data = sn->lbuf;
  } else if (e->type == ZKV_T_INT || e->type == ZKV_T_FLOAT) {
    if (vlen != 8) return ZKV_ECORRUPT;
    if (e->type == ZKV_T_INT) memcpy(&val->i, v, 8);
    else memcpy(&val->f, v, 8);
  } else if (e->type == ZKV_T_BOOL) {
    if (vlen != 1) return ZKV_ECORRUPT;
    val->i = v[0] != 0;
  }
  int64_t exp = ent_exp(e);
  /* the same instant in the wall clock: expiry - now(mono) + now(wall) */
  it->expires_ms = exp ? exp - sn->mono_ms + sn->info.time_ms : 0;
  if (exp && it->expires_ms <= 0) it->expires_ms = 1;
  it->path = sn->names;
  it->depth = sn->depth - 1;
  it->key = ent_key(e);
  it->klen = e->klen;
  return ZKV_OK;
}

/* Depth first: a namespace's keys, then its children, then its next
 * sibling.  Every ref is checked against the copy, and the walk is bounded
 * by what the copy can hold, so a damaged store ends in ZKV_ECORRUPT. */
int zkv_snapshot_next(zkv_snapshot *sn, zkv_item *out) {
  if (!sn || !out) return ZKV_EINVAL;
  if (sn->done) return ZKV_NOTFOUND;
  seg *v = &sn->view;
  int rc;
  if (!sn->started) {
    sn->started = 1;
    if ((rc = push_ns(sn, H(v)->root_ns))) return rc;
  }
  for (;;) {
    if (sn->guard-- == 0) return ZKV_ECORRUPT;
    ref_t r = sn->next_key;
    if (r) {
      if (!ent_ok(v, r)) return ZKV_ECORRUPT;
      ent *e = E(v, r);
      if (e->type == T_NSREC || e->ns != sn->stack[sn->depth - 1]) return ZKV_ECORRUPT;
      sn->next_key = e->nnext;
      if (!ent_live(e, sn->mono_ms)) continue;
      return fill_item(sn, e, out);
    }
    ref_t child = top_ns(sn)->child;
    if (child) {
      if ((rc = push_ns(sn, child))) return rc;
      continue;
    }
    /* up until a namespace with a next sibling */
    for (;;) {
      if (sn->depth == 1) {
        sn->done = 1;
        return ZKV_NOTFOUND;
      }
      ref_t sib = E(v, sn->stack[sn->depth - 1])->nnext;
      sn->depth--;
      if (sib) {
        if ((rc = push_ns(sn, sib))) return rc;
        break;
      }
      if (sn->guard-- == 0) return ZKV_ECORRUPT;
    }
  }
}

void zkv_snapshot_free(zkv_snapshot *sn) {
  if (!sn) return;
  if (sn->base) munmap(sn->base, sn->map_bytes);
  free(sn->stack);
  free(sn->names);
  free(sn->lbuf);
  free(sn);
}

/* ---- dump -------------------------------------------------------------------- */

#define PROGRESS_EVERY 4096

int zkv_dump(zkv_db *db, const char *path, int fd, zkv_progress_fn progress, void *ud,
             zkv_dump_stats *st) {
  if (st) memset(st, 0, sizeof *st);
  if (!db || (!path && fd < 0)) return ZKV_EINVAL;
  zkv_snapshot *sn;
  int rc = zkv_snapshot_take(db, &sn);
  if (rc) return rc;
  zkv_dump_writer *w;
  if ((rc = zkv_dump_writer_open(path, fd, sn->info.time_ms, &w))) {
    zkv_snapshot_free(sn);
    return rc;
  }
  zkv_item it;
  uint64_t n = 0;
  while ((rc = zkv_snapshot_next(sn, &it)) == ZKV_OK) {
    if ((rc = zkv_dump_writer_add(w, &it))) break;
    if (++n % PROGRESS_EVERY == 0 && progress) progress(ud, n, sn->info.entries);
  }
  if (rc != ZKV_NOTFOUND) {
    int e = errno;
    zkv_dump_writer_abort(w);
    zkv_snapshot_free(sn);
    errno = e;
    return rc;
  }
  rc = zkv_dump_writer_finish(w, &n);
  if (progress && !rc) progress(ud, n, n);
  if (st) {
    st->keys = n;
    st->bytes = sn->info.bytes;
    st->lock_ns = sn->info.lock_ns;
    st->time_ms = sn->info.time_ms;
  }
  zkv_snapshot_free(sn);
  return rc;
}

/* ---- load -------------------------------------------------------------------- */

/* What a key held before the load replaced it (kept for the keys that
 * existed only: a key that was absent is undone by deleting it). */
typedef struct before {
  uint64_t index;        /* the key's place in the file (0 = first key) */
  zkv_value v;           /* data points at a copy of its own */
  int64_t exp;           /* engine clock; 0 = none */
} before;

/* where each step began in the file (to read it again when undoing it),
 * and, once committed, where it ended */
typedef struct step_mark {
  uint64_t offset, line;  /* reader position before the step's first line */
  uint64_t index, end;    /* its keys: [index, end) */
  size_t bef, bef_end;    /* its befores: befores[bef .. bef_end) */
} step_mark;

typedef struct loader {
  zkv_db *db;
  zkv_dump_reader *r;
  zkv_load_stats *st;
  /* the namespace path of the last key, resolved */
  zkv_buf path_bytes;
  size_t *path_len;
  zkv_ns *path_ids;
  size_t path_depth, path_cap;
  int path_ok;
  before *bef;
  size_t nbef, cap_bef;
  step_mark *steps;
  size_t nsteps, cap_steps;
  int64_t now;           /* wall clock ms, read at each look at the step's time */
  int64_t step_t0;       /* when the open step began (ns) */
} loader;

static int same_path(loader *ld, const zkv_item *it) {
  if (!ld->path_ok || ld->path_depth != it->depth) return 0;
  const char *p = ld->path_bytes.data;
  for (size_t i = 0; i < it->depth; i++) {
    if (ld->path_len[i] != it->path[i].len || memcmp(p, it->path[i].data, it->path[i].len)) return 0;
    p += it->path[i].len;
  }
  return 1;
}

/* the namespace id of it's path (made if missing), cached for the next key */
static int resolve(loader *ld, const zkv_item *it, zkv_ns *out) {
  if (same_path(ld, it)) {
    *out = ld->path_depth ? ld->path_ids[ld->path_depth - 1] : ZKV_ROOT;
    return ZKV_OK;
  }
  ld->path_ok = 0;
  if (it->depth > ld->path_cap) {   /* two arrays of one capacity */
    size_t cap = ld->path_cap;
    size_t *nl = grow_array(ld->path_len, &cap, it->depth, sizeof *nl, 8);
    if (!nl) return ZKV_ENOMEM;
    ld->path_len = nl;
    cap = ld->path_cap;
    zkv_ns *ni = grow_array(ld->path_ids, &cap, it->depth, sizeof *ni, 8);
    if (!ni) return ZKV_ENOMEM;
    ld->path_ids = ni;
    ld->path_cap = cap;
  }
  size_t total = 0;
  for (size_t i = 0; i < it->depth; i++) total += it->path[i].len;
  if (total > ld->path_bytes.cap) {
    char *d = realloc(ld->path_bytes.data, total);
    if (!d) return ZKV_ENOMEM;
    ld->path_bytes.data = d;
    ld->path_bytes.cap = total;
  }
  zkv_ns ns = ZKV_ROOT;
  char *p = ld->path_bytes.data;
  for (size_t i = 0; i < it->depth; i++) {
    int rc = zkv_namespace(ld->db, ns, it->path[i].data, it->path[i].len, &ns);
    if (rc) return rc;
    ld->path_ids[i] = ns;
    ld->path_len[i] = it->path[i].len;
    memcpy(p, it->path[i].data, it->path[i].len);
    p += it->path[i].len;
  }
  ld->path_depth = it->depth;
  ld->path_ok = 1;
  *out = ns;
  return ZKV_OK;
}

static void free_befores(loader *ld, size_t from) {
  for (size_t i = from; i < ld->nbef; i++) free((void *)ld->bef[i].v.data);
  ld->nbef = from;
}

/* note what key `index` holds now, if anything, before the load writes it */
static int keep_before(loader *ld, zkv_ns ns, const zkv_item *it, uint64_t index) {
  zkv_value old;
  int rc = zkv_get(ld->db, ns, it->key, it->klen, &old);
  if (rc == ZKV_NOTFOUND) return ZKV_OK;
  if (rc) return rc;
  /* copied at once: old.data is the handle's until its next call */
  char *copy = malloc(old.len ? old.len : 1);
  if (!copy) return ZKV_ENOMEM;
  if (old.len) memcpy(copy, old.data, old.len);
  old.data = copy;
  int64_t left = 0;
  rc = zkv_ttl(ld->db, ns, it->key, it->klen, &left);
  if (rc == ZKV_OK) {
    before *nb = grow_array(ld->bef, &ld->cap_bef, ld->nbef + 1, sizeof *nb, 64);
    if (nb) ld->bef = nb;
    else rc = ZKV_ENOMEM;
  }
  if (rc != ZKV_OK) {
    free(copy);
    return rc < 0 ? rc : ZKV_OK;
  }
  before *b = &ld->bef[ld->nbef++];
  b->index = index;
  b->v = old;
  b->exp = left > 0 ? clock_ms() + left : 0;
  return ZKV_OK;
}

static int same_value(const zkv_value *a, const zkv_value *b) {
  if (a->type != b->type || a->flags != b->flags) return 0;
  switch (a->type) {
  case ZKV_T_INT: case ZKV_T_BOOL: return a->i == b->i;
  case ZKV_T_FLOAT: return memcmp(&a->f, &b->f, 8) == 0;
  default: return a->len == b->len && (a->len == 0 || !memcmp(a->data, b->data, a->len));
  }
}

/* Undo one key the load wrote (it: as the file has it): put back what it
 * held, unless another writer changed it since. */
static int undo_key(loader *ld, const zkv_item *it, const before *b) {
  zkv_ns ns;
  int rc = resolve(ld, it, &ns);
  if (rc) return rc;
  zkv_value cur;
  rc = zkv_get(ld->db, ns, it->key, it->klen, &cur);
  if (rc == ZKV_NOTFOUND) return ZKV_OK;
  if (rc) return rc;
  if (!same_value(&cur, &it->value)) return ZKV_OK;
  int64_t ttl = b && b->exp ? b->exp - clock_ms() : 0;
  if (!b || (b->exp && ttl <= 0)) {   /* it was absent (or has expired since) */
    rc = zkv_del(ld->db, ns, it->key, it->klen);
    return rc < 0 ? rc : ZKV_OK;
  }
  return zkv_set(ld->db, ns, it->key, it->klen, &b->v, ttl, ZKV_SET_NOEVICT);
}

/* Undo the committed steps, newest first: each is read from the file again
 * and its keys undone newest first, in one transaction, or in several when
 * the undo log fills (undoing a key is idempotent: it is put back only while
 * it still holds what the load wrote). */
static int undo_steps(loader *ld, size_t nsteps) {
  uint64_t (*pos)[2] = NULL;   /* (offset, line) before each key line of a step */
  size_t cap = 0;
  int rc = ZKV_OK;
  for (size_t s = nsteps; s-- > 0 && rc == ZKV_OK;) {
    step_mark *m = &ld->steps[s];
    size_t n = (size_t)(m->end - m->index);
    if (n > cap) {
      void *np = realloc(pos, n * sizeof *pos);
      if (!np) { rc = ZKV_ENOMEM; break; }
      pos = np;
      cap = n;
    }
    if ((rc = zkv_dump_reader_seek(ld->r, m->offset, m->line))) break;
    zkv_item it;
    for (size_t k = 0; k < n && rc == ZKV_OK; k++) {
      zkv_dump_reader_position(ld->r, &pos[k][1], &pos[k][0], NULL);
      rc = zkv_dump_reader_next(ld->r, &it);
    }
    if (rc || (rc = zkv_begin(ld->db))) break;
    size_t bi = m->bef_end, in_txn = 0;
    for (size_t k = n; k-- > 0 && rc == ZKV_OK;) {
      if ((rc = zkv_dump_reader_seek(ld->r, pos[k][0], pos[k][1])) ||
          (rc = zkv_dump_reader_next(ld->r, &it)))
        break;
      uint64_t index = m->index + k;
      const before *b = NULL;
      while (bi > m->bef && ld->bef[bi - 1].index > index) bi--;
      if (bi > m->bef && ld->bef[bi - 1].index == index) b = &ld->bef[--bi];
      rc = undo_key(ld, &it, b);
      /* the undo log is full (it grows into the free room: that may be what
       * is full): keep what is done, and go on in a transaction of its own */
      if ((rc == ZKV_ETXN || rc == ZKV_EFULL) && in_txn > 0) {
        if ((rc = zkv_commit(ld->db)) || (rc = zkv_begin(ld->db))) break;
        in_txn = 0;
        rc = undo_key(ld, &it, b);
      }
      in_txn++;
    }
    if (rc) zkv_rollback(ld->db);
    else rc = zkv_commit(ld->db);
    ld->path_ok = 0;   /* a rolled-back transaction may have taken namespaces with it */
  }
  free(pos);
  return rc;
}

#define STEP_NS 1000000    /* a step's lock hold: about 1 ms */
#define STEP_CHECK 32      /* keys between looks at the clock */

static void load_fail(loader *ld, const char *what) {
  uint64_t line;
  zkv_dump_reader_position(ld->r, &line, NULL, NULL);
  ld->st->line = line;
  snprintf(ld->st->why, sizeof ld->st->why, "line %llu: %s", (unsigned long long)line, what);
}

/* open a step whose first key is `index`, its line at (line, offset) */
static int begin_step(loader *ld, uint64_t index, uint64_t line, uint64_t offset) {
  step_mark *ns = grow_array(ld->steps, &ld->cap_steps, ld->nsteps + 1, sizeof *ns, 64);
  if (!ns) return ZKV_ENOMEM;
  ld->steps = ns;
  int rc = zkv_begin(ld->db);
  if (rc) return rc;
  step_mark *m = &ld->steps[ld->nsteps++];
  m->line = line;
  m->offset = offset;
  m->index = m->end = index;
  m->bef = m->bef_end = ld->nbef;
  ld->step_t0 = clock_ns();
  ld->now = wall_ms();
  return ZKV_OK;
}

/* commit the open step, its keys ending before `index`, and note where it
 * ended for undo_steps */
static int end_step(loader *ld, uint64_t index) {
  zkv_load_stats *st = ld->st;
  int64_t held = clock_ns() - ld->step_t0;
  if ((uint64_t)held > st->max_lock_ns) st->max_lock_ns = (uint64_t)held;
  st->steps++;
  step_mark *m = &ld->steps[ld->nsteps - 1];
  m->end = index;
  m->bef_end = ld->nbef;
  return zkv_commit(ld->db);
}

/* write one key (or skip it, expired); within an open step.  A write that
 * fails leaves no before-image of its own behind. */
static int load_key(loader *ld, const zkv_item *it, uint64_t index) {
  int64_t now = ld->now;
  if (it->expires_ms && it->expires_ms <= now) {
    ld->st->expired++;
    return ZKV_OK;
  }
  zkv_ns ns;
  size_t nbef = ld->nbef;
  int rc = resolve(ld, it, &ns);
  if (!rc) rc = keep_before(ld, ns, it, index);
  if (!rc) rc = zkv_set(ld->db, ns, it->key, it->klen, &it->value,
                        it->expires_ms ? it->expires_ms - now : 0, ZKV_SET_NOEVICT);
  if (!rc) ld->st->loaded++;
  else free_befores(ld, nbef);
  return rc;
}

/* The write pass: ZKV_OK, or the error of the key that failed, once its
 * step is rolled back and the committed ones are undone.  A step ends after
 * STEP_NS of lock hold, or early when its undo log is full (ZKV_ETXN, or
 * ZKV_EFULL once the log has grown into all the free room: the key is then
 * written again in a step of its own, which fails alone if the store is). */
static int write_pass(loader *ld, zkv_progress_fn progress, void *ud) {
  zkv_load_stats *st = ld->st;
  uint64_t index = 0;
  int in_step = 0, rc;
  for (;;) {
    uint64_t line, off;
    zkv_dump_reader_position(ld->r, &line, &off, NULL);   /* where this key's line starts */
    zkv_item it;
    rc = zkv_dump_reader_next(ld->r, &it);
    if (rc == ZKV_NOTFOUND) {
      rc = in_step ? end_step(ld, index) : ZKV_OK;
      in_step = 0;
      break;
    }
    if (rc) break;
    if (!in_step) {
      if ((rc = begin_step(ld, index, line, off))) break;
      in_step = 1;
    }
    rc = load_key(ld, &it, index);
    if ((rc == ZKV_ETXN || rc == ZKV_EFULL) && ld->steps[ld->nsteps - 1].index < index) {
      in_step = 0;
      if ((rc = end_step(ld, index)) || (rc = begin_step(ld, index, line, off))) break;
      in_step = 1;
      rc = load_key(ld, &it, index);
    }
    if (rc) break;
    index++;
    if (index % STEP_CHECK != 0) continue;
    ld->now = wall_ms();   /* expiry is judged by a clock at most STEP_CHECK keys old */
    if (clock_ns() - ld->step_t0 < STEP_NS) continue;
    in_step = 0;
    if ((rc = end_step(ld, index))) break;
    if (progress) {
      uint64_t size;
      zkv_dump_reader_position(ld->r, NULL, &off, &size);
      progress(ud, off, size);
    }
  }
  if (!rc) return ZKV_OK;
  /* the file changed since the first pass: its own words say best what */
  const char *rerr = zkv_dump_reader_error(ld->r, NULL);
  if (*rerr) snprintf(st->why, sizeof st->why, "%s", rerr);
  else load_fail(ld, rc == ZKV_EFULL ? "the store is full" : zkv_strerror(rc));
  size_t committed = ld->nsteps;
  if (in_step) {
    zkv_rollback(ld->db);   /* the engine undoes the open step */
    committed--;
  }
  ld->path_ok = 0;
  int urc = undo_steps(ld, committed);
  if (urc) {
    size_t n = strlen(st->why);
    snprintf(st->why + n, sizeof st->why - n, "; undoing the keys loaded before it failed too (%s)",
             zkv_strerror(urc));
  }
  st->loaded = 0;
  return rc;
}

int zkv_load(zkv_db *db, const char *path, int fd, zkv_progress_fn progress, void *ud,
             zkv_load_stats *st) {
  zkv_load_stats local;
  if (!st) st = &local;
  memset(st, 0, sizeof *st);
  if (!db || (!path && fd < 0)) return ZKV_EINVAL;
  if (db->closed) return ZKV_ECLOSED;
  if (zkv_txn_depth(db) > 0) return ZKV_ETXN;
  loader ld = {0};
  ld.db = db;
  ld.st = st;
  int rc = zkv_dump_reader_open(path, fd, &ld.r);
  if (rc == ZKV_OK) {
    /* pass 1: every line checked, nothing written */
    zkv_item it;
    uint64_t n = 0, off, size;
    while ((rc = zkv_dump_reader_next(ld.r, &it)) == ZKV_OK)
      if (++n % PROGRESS_EVERY == 0 && progress) {
        zkv_dump_reader_position(ld.r, NULL, &off, &size);
        progress(ud, off, size);
      }
    if (rc == ZKV_NOTFOUND) rc = zkv_dump_reader_rewind(ld.r);
  }
  if (rc == ZKV_EINVAL_VALUE) {
    snprintf(st->why, sizeof st->why, "%s", zkv_dump_reader_error(ld.r, &st->line));
  } else if (rc == ZKV_OK) {
    rc = write_pass(&ld, progress, ud);
    if (rc == ZKV_OK && progress) {
      uint64_t off, size;
      zkv_dump_reader_position(ld.r, NULL, &off, &size);
      progress(ud, size, size);
    }
  }
  int e = errno;
  zkv_dump_reader_close(ld.r);
  free_befores(&ld, 0);
  free(ld.bef);
  free(ld.steps);
  free(ld.path_bytes.data);
  free(ld.path_len);
  free(ld.path_ids);
  errno = e;
  return rc;
}
