/*
 * ops.c -- the public key operations: argument checks, the lock, and the
 * do_* work under it.  Every operation runs inside RUN(): a failure raised
 * deep inside (store full, undo log full, a damaged segment) unwinds to here,
 * the undo log puts back what the operation had changed, and the lock is
 * released.  Reads on a shared segment first try without the lock.
 */
#define _GNU_SOURCE 1 /* first: the engine uses Linux and POSIX calls beyond C11 (internal.h) */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

/* After a siglongjmp back into RUN, only the frame's own variables (s_,
 * prevjb_, mark_, db) are read, and none is modified after sigsetjmp, which
 * C11 7.13.2.1 makes well defined; gcc's -Wclobbered cannot see that. */
#if defined(__GNUC__) && !defined(__clang__) /* clang has no -Wclobbered */
#pragma GCC diagnostic ignored "-Wclobbered"
#endif

/* ---- error strings ------------------------------------------------------ */

const char *zkv_strerror(int rc) {
  switch (rc) {
  case ZKV_OK: return "ok";
  case ZKV_NOTFOUND: return "not found";
  case ZKV_EXISTS: return "exists";
  case ZKV_EINVAL_TTL: return "ttl must be a finite number > 0";
  case ZKV_EEMPTY_NS: return "namespace name is empty";
  case ZKV_EINVAL_VALUE: return "value cannot be stored";
  case ZKV_EINVAL_KEY: return "key must be 1 to 65535 bytes";
  case ZKV_ETYPE: return "value is not an integer";
  case ZKV_ERANGE: return "result out of range";
  case ZKV_EFULL: return "store is full";
  case ZKV_ETIMEDOUT: return "lock timeout";
  case ZKV_ECLOSED: return "closed";
  case ZKV_ECORRUPT: return "segment is damaged or not a zeltkv segment";
  case ZKV_EVERSION: return "segment has another format version";
  case ZKV_ENOMEM: return "out of memory";
  case ZKV_EIO: return "system call failed";
  case ZKV_ETXN: return "transaction too large or not open";
  case ZKV_EINVAL: return "invalid argument";
  case ZKV_ESTALE: return "namespace is gone (created in a rolled-back transaction)";
  case ZKV_EFORKED: return "store inherited through fork() while its lock was held (inside atomic): unusable in the child";
  default: return "unknown error";
  }
}

int zkv_errclass(int rc) {
  switch (rc) {
  case ZKV_OK: case ZKV_NOTFOUND: case ZKV_EXISTS: return ZKV_CLASS_NONE;
  case ZKV_EINVAL_TTL: return ZKV_CLASS_INVALID_TTL;
  case ZKV_EEMPTY_NS: return ZKV_CLASS_EMPTY_NAMESPACE;
  case ZKV_EINVAL_VALUE: case ZKV_ETYPE: case ZKV_ERANGE: case ZKV_EINVAL:
    return ZKV_CLASS_INVALID_VALUE;
  case ZKV_EINVAL_KEY: return ZKV_CLASS_INVALID_KEY;
  default: return ZKV_CLASS_STORE_OPERATION_FAILED;
  }
}

int zkv_version(uint32_t *segment_format) {
  if (segment_format) *segment_format = ZKV_FORMAT;
  return ZKV_VERSION_NUMBER;
}

const char *zkv_errclass_name(int cls) {
  static const char *const names[] = {"", "INVALID_TTL", "EMPTY_NAMESPACE", "INVALID_VALUE",
                                      "INVALID_KEY", "STORE_OPERATION_FAILED"};
  return cls >= 0 && cls <= 5 ? names[cls] : "";
}

/* ---- the op frame -------------------------------------------------------- */

/* After every op under the lock: a growing index moves a few more buckets
 * (so that its old array goes soon whatever the ops are), and every 8th op
 * looks whether a sweep step is due.  Inline: it is on every write, and the
 * answer is nearly always no. */
static inline void maybe_gc(zkv_db *db) {
  /* (in a transaction, a growth when its undo log can take the moves: it
   * is not the op's own work, and must not make it fail; a move waits for
   * the transaction's end: its runs would log 4 bytes a bucket into the
   * transaction's log, which grows into the free room the writes need) */
  if (UNLIKELY(H(db->s)->obuckets) &&
      (!db->s->txn_depth ||
       (!(H(db->s)->ocursor & OC_MOVING) && log_room(db->s, LOG_KEY_ROOM))))
    idx_rehash(db, REHASH_STEP);
  if ((++db->opcount & 7) && !H(db->s)->gc_active) return;
  room_gc_step(db);
}

/* the holder's counters (stats): a write that stored a value, a delete that
 * removed a key; written without the undo log, so a rollback keeps them */
static inline int count_set(zkv_db *db, int rc) {
  if (rc == ZKV_OK) H(db->s)->sets++;
  return rc;
}
static inline int count_del(zkv_db *db, int rc) {
  if (rc == ZKV_OK) H(db->s)->deletes++;
  return rc;
}

/* Run `body` (an expression giving a result code) as one operation.  A
 * write that needs room it cannot find at once asks for it (ROOM_AGAIN: its
 * changes are undone): the room is made in steps of their own (room_make),
 * and the body runs again. */
#define RUN(db, body)                                                        \
  do {                                                                       \
    room_req rq_;                                                            \
    rq_.round = 0;                                                           \
    rq_.reserved = 0;                                                        \
    rq_.ns_moved = 0;                                                        \
    for (;;) {                                                               \
      int rc_ = op_enter(db);                                                \
      if (rc_) return rc_;                                                   \
      seg *s_ = (db)->s;                                                     \
      void *prevjb_ = s_->jb;                                                \
      room_req *prevrq_ = s_->room;                                          \
      sigjmp_buf jb_;                                                        \
      uint64_t mark_ = log_pos(s_);                                          \
      s_->jb = &jb_;                                                         \
      s_->room = s_->depth == 1 && s_->txn_depth == 0 ? &rq_ : NULL;          \
      hold_begin(s_);                                                        \
      if ((rc_ = sigsetjmp(jb_, 0)) == 0) {                                  \
        LOG_AHEAD(s_, LOG_OP_ROOM);                                          \
        rc_ = (body);                                                        \
        if (rc_ >= 0) maybe_gc(db);                                          \
      }                                                                      \
      if (rc_ < 0 && s_->logging) log_undo_to(s_, mark_);                    \
      s_->jb = prevjb_;                                                      \
      s_->room = prevrq_;                                                    \
      hold_end(s_);                                                          \
      if (LIKELY(rc_ != ROOM_AGAIN)) {                                       \
        rc_ = op_leave(db, rc_);                                             \
        if (UNLIKELY(rq_.reserved)) room_done(db, &rq_);                     \
        return rc_;                                                          \
      }                                                                      \
      op_leave(db, 0);                                                       \
      rq_.round++;                                                           \
      if ((rc_ = room_make(db, &rq_)) != ZKV_OK) {                           \
        room_done(db, &rq_);                                                 \
        return rc_;                                                          \
      }                                                                      \
    }                                                                        \
  } while (0)

/* A private store logs only inside a transaction; a list op that fails half
 * way (a new list made, no room for its item) must change nothing, so there
 * it runs in one. */
#define LOGGED(db, call)                                                     \
  do {                                                                       \
    if ((db)->s->shared) return (call);                                      \
    int rc__ = zkv_begin(db);                                                \
    if (rc__) return rc__;                                                   \
    rc__ = (call);                                                           \
    if (rc__ < 0) zkv_rollback(db); else zkv_commit(db);                     \
    return rc__;                                                             \
  } while (0)

#define CHECK_DB(db) do { if (!(db)) return ZKV_EINVAL; } while (0)
#define CHECK_KEY(k, n) do { if (!(k) || (n) == 0 || (n) > ZKV_MAX_KEY) return ZKV_EINVAL_KEY; } while (0)

/* the arena ref of a namespace id, or 0 when it names no live record: the
 * id is the record's ref and its tag (inline: on every lookup, also without
 * the lock, where it must not FAIL) */
static inline ref_t ns_of_id(seg *s, zkv_ns ns) {
  ref_t r = ns == ZKV_ROOT ? H(s)->root_ns : (ref_t)ns;
  if (UNLIKELY(!ns_valid(s, r))) return 0;
  if (ns != ZKV_ROOT && UNLIKELY(ns_data_raw(s, r)->tag != (uint32_t)(ns >> 32))) return 0;
  return r;
}

/* the same under the lock, checked: a bad root is a damaged segment, another
 * id was made stale (or never was one) */
static ref_t ns_ref(seg *s, zkv_ns ns) {
  ref_t r = ns_of_id(s, ns);
  if (UNLIKELY(!r)) {
    /* the write's own namespace, moved while it made room (room.c): this
     * call goes on with it where it is now (other ids of it are stale) */
    room_req *q = s->room;
    if (q && q->ns_moved && q->ns_id == ns &&
        (r = ns_of_id(s, (ns >> 32) << 32 | q->ns_moved)) != 0)
      return r;
    FAIL(s, ns == ZKV_ROOT ? ZKV_ECORRUPT : ZKV_ESTALE);
  }
  return r;
}

static zkv_ns ns_id(seg *s, ref_t r) {
  return r == H(s)->root_ns ? ZKV_ROOT : ((uint64_t)idx_nsdata(s, r)->tag << 32) | r;
}

/* ---- namespaces ---------------------------------------------------------- */

static int do_namespace(zkv_db *db, zkv_ns parent, const void *name, size_t len, zkv_ns *out) {
  seg *s = db->s;
  ref_t p = ns_ref(s, parent);   /* checked */
  uint64_t h = idx_hash(p, name, len, 1);
  ref_t r = idx_find(s, p, name, len, h, 1);
  if (!r) {
    r = room_alloc(db, (idx_ns_bytes(len) + UNIT - 1) / UNIT, 0, p, ROOM_LOW);
    idx_new_ns(db, r, p, name, len, h);
    room_grow_index(db);
  }
  *out = ns_id(s, r);
  return ZKV_OK;
}

int zkv_namespace(zkv_db *db, zkv_ns parent, const void *name, size_t len, zkv_ns *out) {
  CHECK_DB(db);
  if (len == 0) return ZKV_EEMPTY_NS;
  if (!name || len > ZKV_MAX_KEY || !out) return ZKV_EINVAL_KEY;
  RUN(db, do_namespace(db, parent, name, len, out));
}

/* ---- reading ------------------------------------------------------------- */

/* inline: on every read, the lock-free one included */
static inline __attribute__((always_inline)) void fill_value(zkv_value *out, ent *e, const char *v, size_t vlen) {
  out->type = e->type;
  out->flags = ent_uflags(e);
  out->data = v;
  out->len = vlen;
  out->i = 0;
  out->f = 0;
  if (e->type == ZKV_T_INT && vlen == 8) memcpy(&out->i, v, 8);
  else if (e->type == ZKV_T_FLOAT && vlen == 8) memcpy(&out->f, v, 8);
  else if (e->type == ZKV_T_BOOL && vlen == 1) out->i = v[0] != 0;
}

static int keep_copy(zkv_db *db, const char *v, size_t vlen, const void **res) {
  if (vlen > db->buf_cap) {
    size_t cap = vlen < 256 ? 256 : vlen + vlen / 4;
    char *n = realloc(db->buf, cap);
    if (!n) return ZKV_ENOMEM;
    db->buf = n;
    db->buf_cap = cap;
  }
  if (vlen) memcpy(db->buf, v, vlen);
  *res = db->buf;
  return ZKV_OK;
}

/* The caller's buffer of zkv_get_into (NULL for zkv_get: the bytes stay
 * where they are, or in the handle's buffer for a shared segment). */
typedef struct dstbuf { void *buf; size_t cap; } dstbuf;

/* the value's bytes copied into d: d->buf, or NULL when they do not fit
 * (nothing copied).  Without the lock a torn copy is thrown away by the
 * sequence check that follows it. */
static inline const char *copy_out(const dstbuf *d, const char *v, size_t vlen) {
  if (vlen > d->cap) return NULL;
  if (vlen) memcpy(d->buf, v, vlen);
  return d->buf;
}

/* find a live key under the lock; ns was checked by ns_ref */
static ent *find_live(seg *s, ref_t ns, const void *key, size_t klen, uint64_t h, ref_t *rr) {
  ref_t r = idx_find(s, ns, key, klen, h, 0);
  if (rr) *rr = r;
  if (!r) return NULL;
  ent *e = E(s, r);
  return ent_alive(e) ? e : NULL;
}

/* A use of the key e, for lru eviction: the calls that read or write a key
 * they find (get, set, setnx that finds it, incr), as ngx.shared.DICT's
 * lookup moves a key it finds to the front; has, ttl, expire, keys and count
 * only look at it, as shdict's peek does.  The stamp is a hint: not logged, and written only when it
 * changes; a memory store's clock ticks with every use, a shared segment's
 * with writes only (`tick`), so that reads do not write shared memory. */
static inline void lru_use(seg *s, ent *e, int tick) {
  hdr *h = H(s);
  if (h->evict != ZKV_EVICT_LRU) return;
  if (tick || !s->shared) h->lru_clock++;
  uint16_t now = lru_now(s);
  if (e->atime != now) e->atime = now;
}

static int do_get(zkv_db *db, ref_t ns, const void *key, size_t klen, zkv_value *out,
                  unsigned flags, int *stale, const dstbuf *dst) {
  seg *s = db->s;
  ref_t r;
  ent *e = find_live(s, ns, key, klen, idx_hash(ns, key, klen, 0), &r);
  if (stale) *stale = 0;
  if (!e && r && (flags & ZKV_GET_STALE) && !(E(s, r)->flags & EF_DELETED)) {
    e = E(s, r);
    if (stale) *stale = 1;
  }
  if (!e) return ZKV_NOTFOUND;
  size_t vlen;
  const char *v = ent_val(e, &vlen);
  if (e->type == ZKV_T_LIST) {
    int rc = list_encode(s, e, &db->buf, &db->buf_cap, &vlen);
    if (rc) return rc;
    v = db->buf;
  }
  lru_use(s, e, 0);
  fill_value(out, e, v, vlen);
  if (dst) {
    out->data = copy_out(dst, v, vlen);
  } else if (s->shared && e->type != ZKV_T_LIST) {
    int rc = keep_copy(db, v, vlen, &out->data);
    if (rc) return rc;
  }
  return ZKV_OK;
}

/* Lock-free read of a shared segment.  Returns ZKV_OK / ZKV_NOTFOUND, or 99
 * when the caller must retry or take the lock: a writer was active, an offset
 * failed its check, or lru recency is due for an update. */
#define RETRY 99
/* `priv`: a private memory store used by one thread, read in place: no
 * sequence check, no copy, and lru recency written directly.  `dst`: the
 * bytes go to the caller's buffer (else a shared segment's to the handle's). */
static inline __attribute__((always_inline)) int get_nolock(zkv_db *db, zkv_ns nsid,
                                                           const void *key, size_t klen,
                             zkv_value *out, int priv, int64_t *exp,
                             const dstbuf *dst) {
  seg *s = db->s;
  hdr *hd = H(s);
  uint64_t s1 = priv ? 0 : atomic_load_explicit(&hd->seq, memory_order_acquire);
  if (s1 & 1) return RETRY;
  ref_t ns = ns_of_id(s, nsid);
  if (!ns) return RETRY;
  uint64_t h = idx_hash(ns, key, klen, 0);
  int rc = ZKV_NOTFOUND;
  ref_t *slot = idx_slot(s, h);
  if (!slot) return RETRY;
  ref_t r = *slot;
  for (int guard = 0; r; guard++) {
    if (guard > 100000 || !ent_ok(s, r)) return RETRY;
    ent *e = E(s, r);
    if (e->ns == ns && e->klen == klen && e->type != T_NSREC &&
        key_eq(ent_key(e), key, klen)) {
      if (!ent_alive(e)) break;
      if (exp) {   /* has / ttl: the expiry, not the value (and not a use) */
        *exp = ent_exp(e);
        rc = ZKV_OK;
        break;
      }
      if (e->type == ZKV_T_LIST) return RETRY;   /* its encoding is made under the lock */
      if (hd->evict == ZKV_EVICT_LRU) {
        if (priv) lru_use(s, e, 0);
        else if (e->atime != lru_now(s)) return RETRY;   /* recency is due: the locked path writes it */
      }
      size_t vlen;
      const char *v = ent_val(e, &vlen);
      if (vlen > s->mapped) return RETRY;
      fill_value(out, e, v, vlen);   /* numbers read here: checked by the sequence below */
      if (dst) out->data = copy_out(dst, v, vlen);
      else if (!priv && keep_copy(db, v, vlen, &out->data) != ZKV_OK) return RETRY;
      rc = ZKV_OK;
      break;
    }
    r = e->hnext;
  }
  if (priv) return rc;
  atomic_thread_fence(memory_order_acquire);
  if (atomic_load_explicit(&hd->seq, memory_order_relaxed) != s1) return RETRY;
  return rc;
}

/* get (exp NULL: the value in *out) or has / ttl (the expiry, 0 = none, in
 * *exp) without the lock where that is safe: a private store read by its one
 * thread (no lock, no unwinding frame; one read in 64 takes the full path,
 * which runs the expiry sweep), or a shared segment this thread does not hold
 * (tried again a few times while a writer is active).  RETRY: take the lock. */
static inline __attribute__((always_inline)) int read_nolock(zkv_db *db, zkv_ns ns,
                                                            const void *key, size_t klen,
                              zkv_value *out, int64_t *exp, const dstbuf *dst) {
  seg *s = db->s;
  if (UNLIKELY(s->forked)) return RETRY;   /* op_enter refuses it */
  if (!s->shared) {
    if (!s->threadsafe && (++db->opcount & 63))
      return get_nolock(db, ns, key, klen, out, 1, exp, dst);
  } else if (!seg_owned(s)) {
    for (int i = 0; i < 16; i++) {
      int rc = get_nolock(db, ns, key, klen, out, 0, exp, dst);
      if (rc != RETRY) return rc;
      cpu_relax();
    }
  }
  return RETRY;
}

/* The read under the lock (the op frame's sigsetjmp): a shared segment this
 * thread holds or whose writer kept it busy, a list, a stale read, and a
 * private store's one read in 64.  Apart from get_any so that its lock-free
 * path runs without that frame (no spills of every argument to the stack). */
static __attribute__((noinline)) int get_locked(zkv_db *db, zkv_ns ns, const void *key,
                                                size_t klen, zkv_value *out, unsigned flags,
                                                int *stale, const dstbuf *dst) {
  RUN(db, ctr_get(db, do_get(db, ns_ref(db->s, ns), key, klen, out, flags, stale, dst)));
}

/* zkv_get, zkv_get_ex and zkv_get_into: inline in each, as their lock-free
 * read is the hot path */
static inline __attribute__((always_inline)) int get_any(zkv_db *db, zkv_ns ns, const void *key,
                                                         size_t klen, unsigned flags,
                                                         zkv_value *out, int *stale,
                                                         const dstbuf *dst) {
  if (stale) *stale = 0;
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  if (!out) return ZKV_EINVAL;
  if (db->closed) return ZKV_ECLOSED;
  if (!(flags & ZKV_GET_STALE)) {   /* a stale value is found under the lock */
    int rc = read_nolock(db, ns, key, klen, out, NULL, dst);
    if (LIKELY(rc != RETRY)) return ctr_get(db, rc);
  }
  return get_locked(db, ns, key, klen, out, flags, stale, dst);
}

int zkv_get(zkv_db *db, zkv_ns ns, const void *key, size_t klen, zkv_value *out) {
  return get_any(db, ns, key, klen, 0, out, NULL, NULL);
}

int zkv_get_ex(zkv_db *db, zkv_ns ns, const void *key, size_t klen, unsigned flags,
               zkv_value *out, int *stale) {
  return get_any(db, ns, key, klen, flags, out, stale, NULL);
}

int zkv_get_into(zkv_db *db, zkv_ns ns, const void *key, size_t klen, void *buf, size_t cap,
                 zkv_value *out) {
  if (!buf && cap) return ZKV_EINVAL;
  dstbuf d = {buf, cap};
  return get_any(db, ns, key, klen, 0, out, NULL, &d);
}

static int do_has(zkv_db *db, ref_t ns, const void *key, size_t klen) {
  return find_live(db->s, ns, key, klen, idx_hash(ns, key, klen, 0), NULL) ? ZKV_OK
                                                                           : ZKV_NOTFOUND;
}

int zkv_has(zkv_db *db, zkv_ns ns, const void *key, size_t klen) {
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  if (db->closed) return ZKV_ECLOSED;
  int64_t x;
  int rc = read_nolock(db, ns, key, klen, NULL, &x, NULL);
  if (rc != RETRY) return rc;
  RUN(db, do_has(db, ns_ref(db->s, ns), key, klen));
}

/* milliseconds left until the expiry x of a live key (at least 1), -1 for
 * none; `coarse` (ZKV_TTL_COARSE): from the coarse clock unless x is near */
static int64_t ms_until(int64_t x, unsigned coarse) {
  if (!x) return -1;
  if (coarse) {
    int64_t left = x - clock_coarse_ms();
    if (left > CLOCK_COARSE_SLACK_MS) return left;
  }
  int64_t left = x - clock_ms();
  return left < 1 ? 1 : left;
}

static int do_ttl(zkv_db *db, ref_t ns, const void *key, size_t klen, unsigned coarse,
                  int64_t *left) {
  ent *e = find_live(db->s, ns, key, klen, idx_hash(ns, key, klen, 0), NULL);
  if (!e) return ZKV_NOTFOUND;
  if (left) *left = ms_until(ent_exp(e), coarse);
  return ZKV_OK;
}

int zkv_ttl_ex(zkv_db *db, zkv_ns ns, const void *key, size_t klen, unsigned flags,
               int64_t *ms_left) {
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  if (flags & ~ZKV_TTL_COARSE) return ZKV_EINVAL;
  if (db->closed) return ZKV_ECLOSED;
  int64_t x;
  int rc = read_nolock(db, ns, key, klen, NULL, &x, NULL);
  if (rc == ZKV_OK) {
    if (ms_left) *ms_left = ms_until(x, flags);
    return ZKV_OK;
  }
  if (rc != RETRY) return rc;
  RUN(db, do_ttl(db, ns_ref(db->s, ns), key, klen, flags, ms_left));
}

int zkv_ttl(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int64_t *ms_left) {
  return zkv_ttl_ex(db, ns, key, klen, 0, ms_left);
}

/* ---- writing ------------------------------------------------------------- */

/* the bytes a value is stored as */
static int value_bytes(const zkv_value *v, const void **p, size_t *n, char tmp[8]) {
  switch (v->type) {
  case ZKV_T_INT: memcpy(tmp, &v->i, 8); *p = tmp; *n = 8; return ZKV_OK;
  case ZKV_T_FLOAT: memcpy(tmp, &v->f, 8); *p = tmp; *n = 8; return ZKV_OK;
  case ZKV_T_BOOL: tmp[0] = v->i != 0; *p = tmp; *n = 1; return ZKV_OK;
  case ZKV_T_STRING: case ZKV_T_JSON: case ZKV_T_LIST: break;
  default:
    if (v->type < ZKV_T_USER || v->type > 127) return ZKV_EINVAL_VALUE;
  }
  if (!v->data && v->len) return ZKV_EINVAL_VALUE;
  *p = v->data ? v->data : "";
  *n = v->len;
  return ZKV_OK;
}

/* the expiry time of a ttl from now, saturating: a huge ttl never wraps */
static int64_t expiry_at(int64_t now, int64_t ttl_ms) {
  return ttl_ms > INT64_MAX - now ? INT64_MAX : now + ttl_ms;
}

/* Where a ttl counted "from the coarse clock" (ZKV_SET_COARSE,
 * ZKV_EXPIRE_COARSE) starts.  The coarse clock lags the precise one by up to
 * a tick (4 ms here, more on a loaded machine), and liveness is told by the
 * precise one: a ttl shorter than the lag made the key dead on arrival
 * (set(k, v, 0.001) then get(k) was nil 3 times in 4; lua-resty-core's
 * t/shdict.t TEST 43, 44 and 46 read such a key back at once, and shdict,
 * whose expiry and liveness both read nginx's cached time, keeps it for the
 * rest of the event-loop iteration).  A ttl under half the slack counts from
 * the precise clock: its key is then within the slack of its end from the
 * start, where ZKV_TTL_COARSE reads the precise clock too, so a ttl read is
 * still never more than the one set.  Longer ttls keep the cheap read and may
 * end up to the lag early, as documented. */
#define COARSE_MIN_TTL_MS (CLOCK_COARSE_SLACK_MS / 2)
static int64_t coarse_start(int64_t coarse_now, int64_t ttl_ms) {
  return ttl_ms < COARSE_MIN_TTL_MS ? clock_ms() : coarse_now;
}

/* build an entry into a fresh block r */
static void build(seg *s, ref_t r, const void *key, size_t klen, int type, uint32_t uflags,
                  int64_t exp, const void *val, size_t vlen) {
  ent *e = E(s, r);
  unsigned f = (exp ? EF_EXP : 0) | (uflags ? EF_UFLAGS : 0);
  size_t used = ENT_HDR + (exp ? 8 : 0) + (uflags ? 4 : 0) + klen + vlen;
  size_t total = (size_t)BLK_UNITS(e->blk) * UNIT;
  e->klen = (uint16_t)klen;
  e->type = (uint8_t)type;
  e->flags = (uint8_t)(f | ((total - used) << 5));
  e->atime = lru_now(s);
  char *p = (char *)e + ENT_HDR;
  if (exp) { memcpy(p, &exp, 8); p += 8; }
  if (uflags) { memcpy(p, &uflags, 4); p += 4; }
  memcpy(p, key, klen);
  if (vlen) memcpy(p + klen, val, vlen);
}

/* store (type, bytes) under key, whose lookup found r (0: none) and old (its
 * live entry, or NULL); the heart of set, setnx, incr's create */
static int do_store_at(zkv_db *db, ref_t ns, const void *key, size_t klen, uint64_t h, ref_t r,
                       ent *old, int type, uint32_t uflags, const void *val, size_t vlen,
                       int64_t ttl_ms, unsigned flags) {
  seg *s = db->s;
  if ((flags & ZKV_SET_NX) && old) {
    lru_use(s, old, 1);   /* found: a use, as shdict's add that finds the key */
    return ZKV_EXISTS;
  }
  if ((flags & ZKV_SET_XX) && !old) return ZKV_NOTFOUND;
  int64_t exp = 0;
  if (flags & ZKV_SET_KEEPTTL) exp = old ? ent_exp(old) : 0;
  else if (ttl_ms > 0)
    exp = expiry_at((flags & ZKV_SET_COARSE) ? coarse_start(clock_coarse_ms(), ttl_ms) : clock_ms(),
                    ttl_ms);
  unsigned f = (exp ? EF_EXP : 0) | (uflags ? EF_UFLAGS : 0);
  uint64_t units = ent_units(klen, vlen, f);
  hdr *hd = H(s);
  if (units >= (1u << 30) || (hd->capacity && units * UNIT > hd->capacity)) return ZKV_EFULL;
  if (hd->evict == ZKV_EVICT_LRU) hd->lru_clock++;   /* a hint: not logged */
  if (UNLIKELY(hd->lgarb)) list_reclaim(db, 2);   /* a write frees a little of the garbage */
  /* a list (live or not) replaced by any value: its items go, once nothing
   * below can fail (a private store outside a transaction has no undo) */
  int was_list = r && E(s, r)->type == ZKV_T_LIST && !(E(s, r)->flags & EF_DELETED);
  if (r) {
    ent *e = E(s, r);
    if (BLK_UNITS(e->blk) == units && (e->flags & (EF_EXP | EF_UFLAGS)) == f &&
        (!s->logging || vlen <= 256)) {
      /* same shape (and so the same key, options and value offset): write
       * only what changes, in place, keeping links, seq and place */
      if (was_list) list_drop(db, e);
      size_t used = ENT_HDR + (exp ? 8 : 0) + (uflags ? 4 : 0) + klen + vlen;
      uint8_t nflags = (uint8_t)(f | ((units * UNIT - used) << 5));
      char *p = (char *)e + ENT_HDR;
      if (!old) {
        /* a deleted or expired key comes back: a new key, as far as anyone
         * can tell (a deleted key's atime held its ring slot: written below,
         * logged with the header) */
        idx_revive(db, r, ns, type, nflags);
        e = E(s, r);
      } else if (e->type != type || e->flags != nflags) {
        LOG_SPAN(s, e, type, flags);
        e->type = (uint8_t)type;
        e->flags = nflags;
      }
      if (exp) {
        LOGW(s, p, 8);
        memcpy(p, &exp, 8);
        p += 8;
      }
      if (uflags) {
        LOGW(s, p, 4);
        memcpy(p, &uflags, 4);
        p += 4;
      }
      p += klen;
      LOGW(s, p, vlen);
      if (vlen) memcpy(p, val, vlen);
      e->atime = lru_now(s);
      return ZKV_OK;
    }
    if (!old) {
      /* a deleted or expired key of another shape: its block goes first (a
       * write that fits only with its room must not fail), the key is new */
      idx_unlink_free_h(db, r, 0, h);
      r = 0;
    }
  }
  ref_t nr = room_alloc(db, units, r, ns, (flags & ZKV_SET_NOEVICT) ? ROOM_NOEVICT : 0);
  if (was_list && r) list_drop(db, E(s, r));
  build(s, nr, key, klen, type, uflags, exp, val, vlen);
  if (r) {
    idx_replace(db, r, nr, h);
  } else {
    idx_link_new(db, ns, nr, h);
    room_grow_index(db);   /* after the write: it takes only what is left free */
  }
  return ZKV_OK;
}

static int do_store(zkv_db *db, ref_t ns, const void *key, size_t klen, uint64_t h, int type,
                    uint32_t uflags, const void *val, size_t vlen, int64_t ttl_ms,
                    unsigned flags) {
  ref_t r;
  ent *old = find_live(db->s, ns, key, klen, h, &r);
  return do_store_at(db, ns, key, klen, h, r, old, type, uflags, val, vlen, ttl_ms, flags);
}

/* ---- lists (their items: deque.c) ------------------------------------------- */

/* items a list operation frees of the garbage chain on its way */
#define RECLAIM_PER_OP 8

/* a new item, linked to nothing yet; `pin` (its list's entry) is neither
 * evicted nor moved to make room; pushes never evict (shdict's way) */
static ref_t item_new(zkv_db *db, int tag, const void *payload, size_t plen, ref_t pin) {
  seg *s = db->s;
  uint64_t units = list_node_units(plen);
  if (units >= (1u << 30) || (H(s)->capacity && units * UNIT > H(s)->capacity))
    FAIL(s, ZKV_EFULL);
  ref_t r = room_alloc(db, units, pin, E(s, pin)->ns, ROOM_NOEVICT);
  list_node_init(s, r, tag, payload, plen);
  return r;
}

/* the live entry of a list under key, made empty when there is none */
static ref_t list_entry(zkv_db *db, ref_t ns, const void *key, size_t klen, uint64_t h,
                        uint32_t uflags, int64_t ttl_ms, unsigned flags, int *rc) {
  seg *s = db->s;
  lhead empty;
  memset(&empty, 0, sizeof empty);
  *rc = do_store(db, ns, key, klen, h, ZKV_T_LIST, uflags, &empty, sizeof empty, ttl_ms, flags);
  if (*rc) return 0;
  ref_t r = idx_find(s, ns, key, klen, h, 0);
  if (!r) FAIL(s, ZKV_ECORRUPT);
  return r;
}

static int list_push(zkv_db *db, ref_t ns, const void *key, size_t klen, int left, int tag,
                     const void *payload, size_t plen, uint64_t *count) {
  seg *s = db->s;
  if (UNLIKELY(H(s)->lgarb)) list_reclaim(db, RECLAIM_PER_OP);
  uint64_t h = idx_hash(ns, key, klen, 0);
  ref_t r;
  ent *e = find_live(s, ns, key, klen, h, &r);
  /* a key found is a use even if the push then fails (not a list, no room for the
   * item), as shdict's lookup moves it to the front before anything can fail; the
   * stamp is not logged, so an undone op keeps it */
  if (e) lru_use(s, e, 1);
  if (e && e->type != ZKV_T_LIST) return ZKV_ETYPE;
  if (!e) {   /* a new list: no ttl, and never evicting for it */
    int rc;
    r = list_entry(db, ns, key, klen, h, 0, 0, ZKV_SET_NOEVICT, &rc);
    if (rc) return rc;
  }
  ref_t nr = item_new(db, tag, payload, plen, r);
  list_link_end(s, r, nr, left);
  if (!e) lru_use(s, E(s, r), 1);   /* a new list: a use too */
  e = E(s, r);
  *count = list_head(s, e)->count;
  return ZKV_OK;
}

static int list_pop(zkv_db *db, ref_t ns, const void *key, size_t klen, int left,
                    zkv_value *out) {
  seg *s = db->s;
  if (UNLIKELY(H(s)->lgarb)) list_reclaim(db, RECLAIM_PER_OP);
  uint64_t h = idx_hash(ns, key, klen, 0);
  ref_t r;
  ent *e = find_live(s, ns, key, klen, h, &r);
  if (!e) return ZKV_NOTFOUND;
  lru_use(s, e, 1);   /* a use even if not a list, as list_push's */
  if (e->type != ZKV_T_LIST) return ZKV_ETYPE;
  size_t il;
  const char *it = list_end_item(s, e, left, &il);
  const void *copy;
  int rc = keep_copy(db, it, il, &copy);
  if (rc) return rc;
  memset(out, 0, sizeof *out);
  out->type = ZKV_T_LIST;
  out->data = copy;
  out->len = il;
  if (list_head(s, e)->count == 1) {
    idx_unlink_free_h(db, r, 0, h);   /* the last item takes the key with it */
    return ZKV_OK;
  }
  ref_t nr = list_take_end(s, r, left);
  blk_free(s, nr);
  return ZKV_OK;
}

typedef struct builder {
  zkv_db *db;
  ref_t r;
} builder;

static void build_one(void *ud, const char *tag, const char *payload, uint32_t len) {
  builder *b = ud;
  ref_t nr = item_new(b->db, *tag, payload, len, b->r);
  list_link_end(b->db->s, b->r, nr, 0);
}

/* a list given in its encoding: an empty list entry, then its items */
static int store_list(zkv_db *db, ref_t ns, const void *key, size_t klen, uint64_t h,
                      uint32_t uflags, const void *val, size_t vlen, int64_t ttl_ms,
                      unsigned flags) {
  int rc = list_check_encoding(val, vlen);
  if (rc) return rc;
  ref_t r = list_entry(db, ns, key, klen, h, uflags, ttl_ms, flags, &rc);
  if (rc) return rc;
  builder b = {db, r};
  uint32_t count;
  rc = list_decode(val, vlen, &count, build_one, &b);
  if (rc) FAIL(db->s, rc);
  return ZKV_OK;
}

/* ev0: this process's evictions when the call began (room may have been made
 * between runs of the op: those count too) */
static int do_set(zkv_db *db, zkv_ns nsid, const void *key, size_t klen, int type,
                  uint32_t uflags, const void *val, size_t vlen, int64_t ttl_ms, unsigned flags,
                  int *forcible, uint64_t ev0) {
  seg *s = db->s;
  ref_t ns = ns_ref(s, nsid);
  uint64_t h = idx_hash(ns, key, klen, 0);
  int rc = type == ZKV_T_LIST
             ? store_list(db, ns, key, klen, h, uflags, val, vlen, ttl_ms, flags)
             : do_store(db, ns, key, klen, h, type, uflags, val, vlen, ttl_ms, flags);
  if (forcible) *forcible = s->evicted != ev0;
  return rc;
}

static int set_op(zkv_db *db, zkv_ns ns, const void *key, size_t klen, const zkv_value *v,
                  const void *p, size_t n, int64_t ttl_ms, unsigned flags, int *forcible,
                  uint64_t ev0) {
  RUN(db, count_set(db, do_set(db, ns, key, klen, v->type, v->flags, p, n, ttl_ms, flags,
                               forcible, ev0)));
}

int zkv_set(zkv_db *db, zkv_ns ns, const void *key, size_t klen, const zkv_value *v,
            int64_t ttl_ms, unsigned flags) {
  return zkv_set_ex(db, ns, key, klen, v, ttl_ms, flags, NULL);
}

int zkv_set_ex(zkv_db *db, zkv_ns ns, const void *key, size_t klen, const zkv_value *v,
               int64_t ttl_ms, unsigned flags, int *forcible) {
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  if (!v) return ZKV_EINVAL_VALUE;
  if (ttl_ms < 0) return ZKV_EINVAL_TTL;
  const void *p;
  size_t n;
  char tmp[8];
  int rc = value_bytes(v, &p, &n, tmp);
  if (rc) return rc;
  if (db->closed) return ZKV_ECLOSED;
  if (forcible) *forcible = 0;
  uint64_t ev0 = db->s->evicted;
  if (v->type == ZKV_T_LIST)
    LOGGED(db, set_op(db, ns, key, klen, v, p, n, ttl_ms, flags, forcible, ev0));
  return set_op(db, ns, key, klen, v, p, n, ttl_ms, flags, forcible, ev0);
}

static int do_del(zkv_db *db, ref_t ns, const void *key, size_t klen) {
  seg *s = db->s;   /* ns was checked by ns_ref */
  uint64_t h = idx_hash(ns, key, klen, 0);
  ref_t r = idx_find(s, ns, key, klen, h, 0);
  if (!r) return ZKV_NOTFOUND;
  ent *e = E(s, r);
  if (e->flags & EF_DELETED) return ZKV_NOTFOUND;
  int live = ent_alive(e);
  /* kept a while: see "deleted keys" in index.c */
  if (live && e->type != ZKV_T_LIST && (uint64_t)BLK_UNITS(e->blk) * UNIT <= DEAD_MAX_BYTES &&
      idx_bury(db, r))
    return ZKV_OK;
  idx_unlink_free_h(db, r, !live, h);
  return live ? ZKV_OK : ZKV_NOTFOUND;
}

int zkv_del(zkv_db *db, zkv_ns ns, const void *key, size_t klen) {
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  if (db->closed) return ZKV_ECLOSED;
  RUN(db, count_del(db, do_del(db, ns_ref(db->s, ns), key, klen)));
}

/* give the live entry r (of key) the absolute expiry exp (0 = none) */
static void set_expiry(zkv_db *db, ref_t r, const void *key, size_t klen, uint64_t h, int64_t exp);

static int do_expire(zkv_db *db, ref_t ns, const void *key, size_t klen, int64_t ttl_ms,
                     unsigned flags) {
  seg *s = db->s;
  uint64_t h = idx_hash(ns, key, klen, 0);
  ref_t r = idx_find(s, ns, key, klen, h, 0);
  if (!r) return ZKV_NOTFOUND;
  ent *e = E(s, r);
  int64_t now;
  if (flags & ZKV_EXPIRE_COARSE) {
    /* one coarse clock read for both (it is never ahead of the precise
     * one); the precise clock only for a key near its end, as ent_alive */
    now = ttl_ms > 0 || (e->flags & EF_EXP) ? clock_coarse_ms() : 0;
    if (!ent_live(e, now)) return ZKV_NOTFOUND;
    int64_t x = ent_exp(e);
    if (x && x - now <= CLOCK_COARSE_SLACK_MS && !ent_live(e, clock_ms())) return ZKV_NOTFOUND;
    if (ttl_ms > 0) now = coarse_start(now, ttl_ms);
  } else {
    /* one clock read for both: is it live, and the new expiry (a clock read
     * costs about as much as the rest of the lookup) */
    now = ttl_ms > 0 || (e->flags & EF_EXP) ? clock_ms() : 0;
    if (!ent_live(e, now)) return ZKV_NOTFOUND;
  }
  set_expiry(db, r, key, klen, h, ttl_ms > 0 ? expiry_at(now, ttl_ms) : 0);
  return ZKV_OK;
}

static void set_expiry(zkv_db *db, ref_t r, const void *key, size_t klen, uint64_t h, int64_t exp) {
  seg *s = db->s;
  ent *e = E(s, r);
  if ((exp != 0) == ((e->flags & EF_EXP) != 0)) {
    if (exp) {
      LOGW(s, (char *)e + ENT_HDR, 8);
      memcpy((char *)e + ENT_HDR, &exp, 8);
    }
    return;
  }
  /* the expiry field comes or goes: rebuild the entry */
  size_t vlen;
  ent_val(e, &vlen);
  uint32_t uf = ent_uflags(e);
  unsigned f = (exp ? EF_EXP : 0) | (uf ? EF_UFLAGS : 0);
  ref_t nr = room_alloc(db, ent_units(klen, vlen, f), r, e->ns, 0);
  e = E(s, r);
  size_t vl2;
  const char *v = ent_val(e, &vl2);
  build(s, nr, key, klen, e->type, uf, exp, v, vlen);
  idx_replace(db, r, nr, h);
}

static inline int expire_op(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int64_t ttl_ms,
                            unsigned flags) {
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  if (ttl_ms < 0) return ZKV_EINVAL_TTL;
  if (flags & ~ZKV_EXPIRE_COARSE) return ZKV_EINVAL;
  if (db->closed) return ZKV_ECLOSED;
  RUN(db, do_expire(db, ns_ref(db->s, ns), key, klen, ttl_ms, flags));
}

int zkv_expire(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int64_t ttl_ms) {
  return expire_op(db, ns, key, klen, ttl_ms, 0);
}

int zkv_expire_ex(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int64_t ttl_ms,
                  unsigned flags) {
  return expire_op(db, ns, key, klen, ttl_ms, flags);
}

static int do_incr(zkv_db *db, ref_t ns, const void *key, size_t klen, int64_t by, int64_t ttl_ms,
                   int64_t lo, int64_t hi, int64_t *result) {
  seg *s = db->s;
  uint64_t h = idx_hash(ns, key, klen, 0);
  ref_t r;
  ent *e = find_live(s, ns, key, klen, h, &r);
  int64_t v;
  if (e) {
    lru_use(s, e, 1);
    size_t vlen;
    char *p = ent_val(e, &vlen);
    if (e->type != ZKV_T_INT || vlen != 8) return ZKV_ETYPE;
    memcpy(&v, p, 8);
    if (__builtin_add_overflow(v, by, &v) || v < lo || v > hi) return ZKV_ERANGE;
    LOGW(s, p, 8);
    memcpy(p, &v, 8);
  } else {
    v = by;
    if (v < lo || v > hi) return ZKV_ERANGE;
    int rc = do_store_at(db, ns, key, klen, h, r, NULL, ZKV_T_INT, 0, &v, 8, ttl_ms, 0);
    if (rc) return rc;
  }
  if (result) *result = v;
  return ZKV_OK;
}

int zkv_incr_limited(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int64_t by,
                     int64_t ttl_ms, int64_t lo, int64_t hi, int64_t *result) {
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  if (ttl_ms < 0) return ZKV_EINVAL_TTL;
  if (db->closed) return ZKV_ECLOSED;
  RUN(db, count_set(db, do_incr(db, ns_ref(db->s, ns), key, klen, by, ttl_ms, lo, hi, result)));
}

int zkv_incr(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int64_t by, int64_t ttl_ms,
             int64_t *result) {
  return zkv_incr_limited(db, ns, key, klen, by, ttl_ms, INT64_MIN, INT64_MAX, result);
}

/* ev0: as do_set's */
static int do_incr_num(zkv_db *db, ref_t ns, const void *key, size_t klen, double by, int create,
                       double init, int64_t init_ttl, double *result, int *forcible,
                       uint64_t ev0) {
  seg *s = db->s;
  uint64_t h = idx_hash(ns, key, klen, 0);
  ref_t r;
  ent *e = find_live(s, ns, key, klen, h, &r);
  double x;
  if (e) {
    lru_use(s, e, 1);
    size_t vlen;
    char *p = ent_val(e, &vlen);
    if (vlen != 8 || (e->type != ZKV_T_INT && e->type != ZKV_T_FLOAT)) return ZKV_ETYPE;
    if (e->type == ZKV_T_INT) {
      int64_t i;
      memcpy(&i, p, 8);
      x = (double)i;
    } else {
      memcpy(&x, p, 8);
    }
    x += by;
  } else {
    if (!create) return ZKV_NOTFOUND;
    x = init + by;
  }
  int type = ZKV_T_FLOAT;
  char bytes[8];
  if (double_is_exact_int(x)) {
    int64_t i = (int64_t)x;
    memcpy(bytes, &i, 8);
    type = ZKV_T_INT;
  } else {
    memcpy(bytes, &x, 8);
  }
  if (e) {
    size_t vlen;
    char *p = ent_val(e, &vlen);
    LOGW(s, &e->type, 1);
    e->type = (uint8_t)type;
    LOGW(s, p, 8);
    memcpy(p, bytes, 8);
  } else {
    int rc = do_store_at(db, ns, key, klen, h, r, NULL, type, 0, bytes, 8, init_ttl,
                         ZKV_SET_COARSE);   /* shdict's incr: its ttl as its expire's */
    if (rc) return rc;
    if (forcible) *forcible = s->evicted != ev0;
  }
  if (result) *result = x;
  return ZKV_OK;
}

int zkv_incr_num(zkv_db *db, zkv_ns ns, const void *key, size_t klen, double by, int create,
                 double init, int64_t init_ttl_ms, double *result, int *forcible) {
  if (forcible) *forcible = 0;
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  if (init_ttl_ms < 0) return ZKV_EINVAL_TTL;
  if (db->closed) return ZKV_ECLOSED;
  uint64_t ev0 = db->s->evicted;
  RUN(db, count_set(db, do_incr_num(db, ns_ref(db->s, ns), key, klen, by, create, init,
                                    init_ttl_ms, result, forcible, ev0)));
}

/* ---- lists: the public functions --------------------------------------------- */

static int list_push_op(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int left, int tag,
                        const void *payload, size_t plen, uint64_t *count) {
  RUN(db, list_push(db, ns_ref(db->s, ns), key, klen, left, tag, payload, plen, count));
}

static int list_pop_op(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int left,
                       zkv_value *out) {
  RUN(db, list_pop(db, ns_ref(db->s, ns), key, klen, left, out));
}

int zkv_list_push(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int left, int tag,
                  const void *payload, size_t plen, uint64_t *count) {
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  uint64_t tmp;
  if (!count) count = &tmp;
  *count = 0;
  if ((tag != 's' && tag != 'i' && tag != 'f') || (!payload && plen) || plen >= UINT32_MAX)
    return ZKV_EINVAL_VALUE;
  if (db->closed) return ZKV_ECLOSED;
  LOGGED(db, list_push_op(db, ns, key, klen, left, tag, payload, plen, count));
}

int zkv_list_pop(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int left, zkv_value *out) {
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  if (!out) return ZKV_EINVAL;
  if (db->closed) return ZKV_ECLOSED;
  /* not LOGGED: a pop changes nothing before its last failure point (the
   * copy of the item), so a private store needs no transaction for it */
  return list_pop_op(db, ns, key, klen, left, out);
}

static int do_list_len(zkv_db *db, ref_t ns, const void *key, size_t klen, uint64_t *count) {
  seg *s = db->s;
  ent *e = find_live(s, ns, key, klen, idx_hash(ns, key, klen, 0), NULL);
  if (!e) return ZKV_NOTFOUND;
  lru_use(s, e, 0);   /* a use even if not a list, as list_push's */
  if (e->type != ZKV_T_LIST) return ZKV_ETYPE;
  *count = list_head(s, e)->count;
  return ZKV_OK;
}

int zkv_list_len(zkv_db *db, zkv_ns ns, const void *key, size_t klen, uint64_t *count) {
  CHECK_DB(db);
  CHECK_KEY(key, klen);
  uint64_t tmp;
  if (!count) count = &tmp;
  *count = 0;
  if (db->closed) return ZKV_ECLOSED;
  RUN(db, do_list_len(db, ns_ref(db->s, ns), key, klen, count));
}

/* ---- walks of a key list in steps (keys(), flush_all) ---------------------- */

static int seq_after(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }

/* How far past the entry it is at a walk of a key list prefetches (the
 * entries made in a row lie in a row: see flag_keys) */
#define WALK_AHEAD 512u

/* Is the cursor's hint r still the entry it passed last (insertion number
 * `seq`: a key of namespace ns, or with `children` a child namespace's
 * record)?  Looking like it is not enough: a deleted key's header stays
 * behind as stale bytes inside the free block its room merged into, or
 * inside the value of whatever is allocated there next, with the old links.
 * An entry the index finds under its own key is a real one: the index links
 * only entries. */
static int cursor_still_listed(seg *s, ref_t ns, ref_t r, uint32_t seq, int children) {
  if (!ent_ok(s, r)) return 0;
  ent *e = E(s, r);
  if ((e->type == T_NSREC) != children || e->ns != ns || e->seq != seq) return 0;
  const char *key = ent_key(e);
  return idx_find(s, ns, key, e->klen, idx_hash(ns, key, e->klen, children), children) == r;
}

/* A step of a walk passes at most this many entries, live or not: a
 * namespace whose keys are mostly expired or flushed (and not freed yet),
 * or a resume that must find its place again from the head, is then many
 * short lock holds rather than one as long as the namespace (passing an
 * entry is a header check and a liveness test: a step of them, cold, is well
 * under 0.1 ms).  Such a step may return no key and not be done. */
#define WALK_PASS 1024

/* tests (test_keys_cursor.c): after each step of zkv_keys, zkv_count (the
 * entries it passed) and zkv_clear (the namespace records it passed) */
void (*walk_step_hook)(uint64_t passed);

/* Is r an entry of ns's list (with `children` its list of child namespaces)
 * at or before the position `last` of the walk?  Then the walk can go on
 * looking for its place from r rather than from the head: the list is in
 * insertion order (children: newest first) and a key keeps its place. */
static int listed_before(seg *s, ref_t ns, ref_t r, uint32_t last, int children) {
  if (!ent_ok(s, r)) return 0;
  uint32_t seq = E(s, r)->seq;
  if (children ? seq_after(last, seq) : seq_after(seq, last)) return 0;
  return cursor_still_listed(s, ns, r, seq, children);
}

/* Where a walk of ns's key list (with `children` its list of child
 * namespaces) goes on: the first entry when the cursor has not started
 * (then it notes the insertion number the walk ends before), else the one
 * after the last passed, found by number again when that one went away.
 * Finding it counts against *budget (entries passed); when that runs out
 * first, *pending is set and the cursor's hint names the place the search
 * reached, for the next step to go on from. */
static ref_t walk_resume(seg *s, ref_t ns, const nsdata *d, zkv_cursor *cur, int children,
                         uint64_t *budget, int *pending) {
  uint32_t last = cur->seq;
  ref_t r;
  *pending = 0;
  if (!cur->started) {
    cur->started = 1;
    cur->end = d->next_seq;
    return children ? d->child : d->head;
  }
  if (cursor_still_listed(s, ns, cur->ref, last, children))
    return E(s, cur->ref)->nnext;   /* the last one passed is still there */
  /* it went away: skip what was passed, from where an earlier step's search
   * got to if that entry is still listed, else from the head */
  ref_t from = listed_before(s, ns, cur->ref, last, children) ? cur->ref
               : children ? d->child : d->head;
  uint64_t guard = ent_limit(s);
  for (r = from; r; r = E(s, r)->nnext) {
    if (!ent_ok(s, r) || guard-- == 0) FAIL(s, ZKV_ECORRUPT);
    if (children ? seq_after(last, E(s, r)->seq) : seq_after(E(s, r)->seq, last)) break;
    /* at least one entry is left of the budget for the step to pass once
     * the place is found, and a pending search has got past its start:
     * every step makes progress */
    if (*budget <= 1 && r != from) {   /* the next step goes on from r */
      cur->ref = r;
      *pending = 1;
      return 0;
    }
    if (*budget > 1) --*budget;
  }
  return r;
}

/* ---- namespace-wide ------------------------------------------------------ */

/* is every key listed in d live?  So when none carries an expiry, none may
 * be flushed (format.h, nsdata) and no deleted key is kept anywhere: then no
 * walk is needed to count them, nor to find the expired ones */
static int ns_all_live(seg *s, const nsdata *d) {
  return d->nkeys == 0 || (d->nttl == 0 && d->flushes == d->swept && H(s)->ndead == 0);
}

/* A clear walks the namespace tree under root in preorder, freeing keys,
 * each step at most `budget` keys and WALK_PASS namespace records passed,
 * and goes on where the step before stopped: before, every step began again
 * at root and passed every namespace already emptied, so a subtree of many
 * namespaces (one per user, say) made each step as long as the tree and the
 * clear quadratic.  The place is a namespace record, known again by its
 * parent and insertion number (a record that moved, or was removed, is not
 * found: then from root again, which only passes what is already empty). */
typedef struct clear_walk {
  ref_t at, parent;   /* where the next step begins (0: at root) */
  uint32_t seq;
  uint64_t passed;    /* records passed since the walk last began at root */
} clear_walk;

static void clear_note(seg *s, clear_walk *w, ref_t at) {
  w->at = at;
  w->parent = E(s, at)->ns;
  w->seq = E(s, at)->seq;
}

/* the namespace the step begins at: the noted one if it is still listed
 * where it was and still under root, else root */
static ref_t clear_resume(seg *s, ref_t root, clear_walk *w) {
  if (w->at && w->at != root && cursor_still_listed(s, w->parent, w->at, w->seq, 1)) {
    uint64_t guard = ent_limit(s);
    ref_t p = w->parent;
    while (p && p != root && ns_valid(s, p) && guard--) p = E(s, p)->ns;
    if (p == root) return w->at;
  }
  w->at = 0;
  w->passed = 0;
  return root;
}

/* free up to `budget` keys of the subtree at root, going on from w; returns
 * 1 once the whole subtree is empty */
static int do_clear_some(zkv_db *db, ref_t root, clear_walk *w, uint64_t budget,
                         uint64_t *removed) {
  seg *s = db->s;
  int64_t now = clock_ms();
  uint64_t limit = ent_limit(s), pass = WALK_PASS;
  for (ref_t cur = clear_resume(s, root, w), next; cur; cur = next) {
    nsdata *d = idx_nsdata(s, cur);
    while (d->head) {
      if (budget-- == 0) {
        clear_note(s, w, cur);
        if (UNLIKELY(walk_step_hook != NULL)) walk_step_hook(WALK_PASS - pass);
        return 0;
      }
      ref_t r = d->head;
      if (!ent_ok(s, r)) FAIL(s, ZKV_ECORRUPT);
      int live = ent_live(E(s, r), now);
      idx_unlink_free(db, r, !live);
      *removed += (uint64_t)live;
      d = idx_nsdata(s, cur);
    }
    if (w->passed++ > limit) FAIL(s, ZKV_ECORRUPT);   /* a tree that loops */
    next = idx_ns_next(s, root, cur);
    if (next && --pass == 0) {
      clear_note(s, w, next);
      break;
    }
  }
  if (UNLIKELY(walk_step_hook != NULL)) walk_step_hook(WALK_PASS - pass);
  return pass != 0;
}

static int clear_step_op(zkv_db *db, zkv_ns ns, clear_walk *w, uint64_t budget,
                         uint64_t *removed, int *done) {
  RUN(db, (*done = do_clear_some(db, ns_ref(db->s, ns), w, budget, removed), ZKV_OK));
}

int zkv_clear(zkv_db *db, zkv_ns ns, uint64_t *removed) {
  CHECK_DB(db);
  uint64_t tmp = 0;
  if (!removed) removed = &tmp;
  *removed = 0;
  if (db->closed) return ZKV_ECLOSED;
  clear_walk w;
  memset(&w, 0, sizeof w);
  uint64_t budget = room_step_budget(db);
  int done = 0;
  while (!done) {
    int rc = clear_step_op(db, ns, &w, budget, removed, &done);
    if (rc) return rc;
  }
  return ZKV_OK;
}

static int step_sweep(zkv_db *db, uint64_t *cursor, uint64_t budget, int all, uint64_t *n,
                      uint64_t max, int *done) {
  *done = room_sweep(db, cursor, budget, all, n, max, 0);
  return ZKV_OK;
}

static int sweep_op(zkv_db *db, uint64_t *cursor, uint64_t budget, int all, uint64_t *n,
                    uint64_t max, int *done) {
  RUN(db, step_sweep(db, cursor, budget, all, n, max, done));
}

static int sweep_all(zkv_db *db, int all, uint64_t max, uint64_t *count) {
  CHECK_DB(db);
  uint64_t tmp = 0;
  if (!count) count = &tmp;
  *count = 0;
  if (db->closed) return ZKV_ECLOSED;
  uint64_t cursor = 0;
  uint64_t budget = room_step_budget(db) < 256 ? room_step_budget(db) : 256;   /* buckets */
  int done = 0;
  while (!done && !(max && *count >= max)) {
    uint64_t n = 0;
    int rc = sweep_op(db, &cursor, budget, all, &n, max ? max - *count : 0, &done);
    if (rc) return rc;
    *count += n;
  }
  return ZKV_OK;
}

int zkv_gc(zkv_db *db, uint64_t *freed) { return sweep_all(db, 0, 0, freed); }
int zkv_flush(zkv_db *db, uint64_t *removed) { return sweep_all(db, 1, 0, removed); }
int zkv_flush_expired(zkv_db *db, uint64_t max, uint64_t *freed) {
  return sweep_all(db, 0, max, freed);
}


/* ---- namespace-wide expiry (ngx.shared.DICT's flush_all, flush_expired) --- */

/* A flush marks each live key of the namespace expired in place: one flag
 * byte (EF_FLUSHED), no allocation, so it cannot run out of room; the keys
 * are freed later by flush_expired or a sweep, as shdict frees them.  The
 * flag is the only change a key gets (nttl does not count it: format.h), so
 * outside a transaction it is written without an undo record: a process
 * killed in the middle of the walk leaves a partly flushed namespace (what an
 * interrupted flush is), with every counter right, and the `flushes` mark
 * bumped before the step's first flag tells ns_all_live not to trust the
 * counters.  The walk goes on from a cursor from step to step (each step a
 * lock hold of at most `budget` entries passed), up to the keys made after it
 * began. */
void (*expire_test_hook)(void);   /* test_crash.c kills the flushing process there */

typedef struct flush_walk {
  zkv_cursor cur;
  uint64_t passed;   /* entries passed by all steps: a list longer than any can be is damaged */
} flush_walk;

/* bump d->flushes (never onto d->swept): some key of d may be flushed from
 * now on.  Logged only when the flags are (`undo`): crash recovery must not
 * take the mark back from flags it leaves set. */
static void flush_mark(seg *s, nsdata *d, int undo) {
  uint16_t f = (uint16_t)(d->flushes + 1);
  if (f == d->swept) f++;
  if (undo) LOGW(s, &d->flushes, 2);
  d->flushes = f;
  atomic_signal_fence(memory_order_seq_cst);   /* stored before any flag it stands for */
}

/* a run of the walk: from r, at most `left` entries; the live ones made
 * before `end` are flagged (n of them), and `last` is the last one passed */
typedef struct flag_run {
  ref_t r, last;
  uint64_t left, n;
  uint64_t kept;   /* of flag_keys' general steps: passed, not flagged */
} flag_run;

/* x's value, hidden from the optimizer (so that it computes nothing else
 * from the same expression: see flag_keys) */
#if defined(__GNUC__)
#define OPAQUE(x) __asm__("" : "+r"(x))
#else
#define OPAQUE(x) ((void)0)
#endif

/* `undo`, `hooked` (call expire_test_hook if set) and `check_end` (keys made
 * after the walk began may be in the list) are constants at each call: the
 * run without undo records or test hook (flag_keys_plain) is a loop of its
 * own with nothing else in it.  Returns 0, or -1 at a damaged entry (f->r):
 * the caller FAILs, so that the loop keeps no seg pointer live.
 *
 * The general steps are a chain of dependent loads (the next ref is in the
 * entry), each entry costing that load's latency or its instructions,
 * whichever is more.  1,000 fresh keys of 72 bytes (the nginx bench's
 * flush_all; bench/hotpath.c's flush_all row: zkv_expire_all, best of 500):
 * 4.1 us before the three points below, 1.7-1.9 us with them, of which some
 * 0.1 us is the call's lock and set-up.
 *  - The next ref is read through its own array view of the heap (nnext of
 *    the entry at ref r is links[r * 2]), as one load indexed by the ref
 *    itself: the chain is that load alone.  Left to itself the compiler
 *    computes r * UNIT once for the entry's address and indexes the view
 *    with it (a shift on the chain: 2.4 us), or sinks the load below the
 *    other checks with its address computed ahead (an add on the chain:
 *    2.3 us): the index and the loaded ref are OPAQUE to it.  The load
 *    comes right after the range check, which is in refs for that (the
 *    branch is predicted: the load does not wait for it).
 *  - The keys of a namespace filled in a row sit one after the other in the
 *    heap, in list order, so the line WALK_AHEAD bytes further on is most
 *    often one the walk comes to soon: it is prefetched (for writing: its
 *    flag is), and the chain is one of L1 hits instead of L2 hits.  Where
 *    the keys lie elsewhere the prefetch is one wasted line fetch beside the
 *    chain, never on it.  384, 576 or 1,024 bytes ahead, or 8 blocks of the
 *    entry's size, were slower than 512 (8 lines).  The address is integer
 *    arithmetic: it may be past the mapping, which a prefetch never faults on.
 *  - The checks are ent_hdr_ok_in's, folded: r - rlo > rspan is off < lo or
 *    off + ENT_HDR > top (nothing is in range when the heap is smaller than
 *    ENT_HDR), and a block of ENT_HDR + 12
 *    bytes holds any header, so only a smaller one is compared with what its
 *    header says it holds.  n is counted as the entries passed less those
 *    not flagged (the rare case), and the end's insertion number is only
 *    compared when some key was made since the walk began (check_end).
 * Such keys made in a row are a run (run_of): each block as big as the one
 * before, the next entry the block right after it.  Two entries so in a row
 * hand the walk to the run, where the next ref is computed (r + the block's
 * units) and only checked against the loaded one, a branch the CPU predicts:
 * the loads of successive entries overlap instead of waiting on each other.
 * The same 1,000 keys: 0.83-0.89 us (1.7-1.9 before; 1,000 to 4,000 keys:
 * 0.8 ns an entry, what the L2 cache delivers of 1.1 lines an entry, read
 * and written back: two runs in a row, or a prefetch in the run at 512 to
 * 2,048 bytes, were no faster).  A plain prediction of the next ref as r +
 * the last step's delta in the general step too (1.48 us for these keys)
 * was dropped: where sizes change at every key it was mispredicted most
 * steps (1.8 us before, 2.6-4.4 with it).  What the run costs where it is
 * never entered (measured alongside, a C loop of 1,000 keys, best of 500):
 * sizes changing at every key 1.77 us both; A's keys between B's (every
 * other block) 2.14 before, 2.29 after. */
/* flag e (its flags fl) if still live, else count it among the kept */
static inline __attribute__((always_inline)) void flag_one(seg *s, ent *e, unsigned fl,
                                                         int64_t now, uint64_t *kept,
                                                         const int undo, const int hooked) {
  if (LIKELY(!(fl & (EF_EXP | EF_FLUSHED | EF_DELETED))) || ent_live(e, now)) {
    if (undo) {
      LOG_AHEAD(s, LOG_KEY_ROOM);
      LOGW(s, &e->flags, 1);
    }
    e->flags = (uint8_t)(fl | EF_FLUSHED);
    if (hooked && expire_test_hook) expire_test_hook();
  } else {
    (*kept)++;
  }
}

/* the smallest and largest block, in units, the run loop of flag_keys takes:
 * at least ENT_HDR + 12 bytes (any header's options fit), and delta << 2 a blk */
#define RUN_MIN_UNITS ((ENT_HDR + 12 + UNIT - 1) / UNIT)
#define RUN_MAX_UNITS (UINT32_MAX >> 2)

/* what a run (run_of) takes and gives back of flag_keys' walk */
typedef struct run_state {
  uint64_t left, kept;
  ref_t last;
} run_state;

/* The run of flag_keys from r: blocks of delta units each, one after the
 * other, linked in that order, up to rmax.  The next ref is taken to be
 * r + delta (ALU only: the next entry's loads need not wait for this one's)
 * and checked against the real one; the run ends at the first that differs,
 * or at a block of another size, and returns where the general step goes on.
 * Each entry's checks are the general step's, folded: its block is allocated
 * and of delta units (one compare of its blk), so it holds any header (delta
 * >= RUN_MIN_UNITS) and ends in the heap (r <= rmax, rmax + delta <= rtop),
 * and its header is in the heap (rlo <= r <= rmax <= rlo + rspan: r only
 * grows).  A loop of its own (run_plain, run_plain_end): inlined into
 * flag_keys, beside the general step's live values, it kept some of its own
 * on the stack (0.99 us instead of 0.85 for the 1,000 keys of flag_keys' comment). */
static inline __attribute__((always_inline)) uint64_t run_of(seg *s, char *base, uint64_t r,
                                                           uint64_t rmax, uint64_t delta,
                                                           uint32_t end, int64_t now,
                                                           run_state *st, const int undo,
                                                           const int hooked,
                                                           const int check_end) {
  uint64_t left = st->left, kept = st->kept;
  ref_t last = st->last;
  const uint32_t want = (uint32_t)delta << 2;   /* allocated, delta units */
  while (r <= rmax) {
    ent *e = (ent *)(base + r * UNIT);
    if (UNLIKELY((e->blk & ~BLK_PREVFREE) != want)) break;
    if (check_end && !seq_after(end, e->seq)) break;
    uint64_t nx = e->nnext;
    flag_one(s, e, e->flags, now, &kept, undo, hooked);
    left--;
    last = (ref_t)r;
    uint64_t pred = r + delta, next = pred;
    OPAQUE(next);   /* a copy the compiler cannot take for nx where nx == pred */
    if (UNLIKELY(nx != pred)) {
      r = nx;
      break;
    }
    r = next;   /* computed, not loaded */
  }
  st->left = left;
  st->kept = kept;
  st->last = last;
  return r;
}

static __attribute__((noinline)) uint64_t run_plain(char *base, uint64_t r, uint64_t rmax,
                                                    uint64_t delta, int64_t now,
                                                    run_state *st) {
  return run_of(NULL, base, r, rmax, delta, 0, now, st, 0, 0, 0);
}

static __attribute__((noinline)) uint64_t run_plain_end(char *base, uint64_t r, uint64_t rmax,
                                                        uint64_t delta, uint32_t end,
                                                        int64_t now, run_state *st) {
  return run_of(NULL, base, r, rmax, delta, end, now, st, 0, 0, 1);
}

static inline __attribute__((always_inline)) int flag_keys(seg *s, heap_view v, flag_run *f,
                                                         uint32_t end, int64_t now,
                                                         const int undo, const int hooked,
                                                         const int check_end) {
  char *base = v.base;
  const uint64_t lo = v.lo, top = v.top;
  /* the refs whose header is inside the heap: rlo .. rlo + rspan (never ref
   * 0, the list's end: the range check tells it) */
  const uint64_t rlo = lo >= UNIT ? (lo + UNIT - 1) / UNIT : 1;
  const uint64_t rspan = top >= rlo * UNIT + ENT_HDR ? (top - ENT_HDR) / UNIT - rlo : 0;
  const uint64_t rtop = top / UNIT;   /* the block of ref r, u units, is in the heap: r + u <= rtop */
  const ref_t *links = (const ref_t *)(base + offsetof(ent, nnext));   /* links[r * 2]: r's nnext */
  uint64_t r = f->r;
  ref_t last = f->last;
  uint64_t left = f->left;
  const uint64_t steps = left;
  int rc = 0, ended = 0;
  f->kept = 0;
  if (r && left && top < rlo * UNIT + ENT_HDR) {   /* no entry fits in the heap */
    rc = -1;
    left = 0;
  }
  while (left) {
    uint64_t units = 0;
    /* the general steps: one entry each, every check (no call in this loop:
     * with run_plain's call in it, its values were kept in the few registers
     * a call keeps, or on the stack, and it took 15 % longer) */
    for (;;) {
      if (UNLIKELY(r - rlo > rspan)) {
        if (r != 0) rc = -1;   /* else the list's end */
        goto out;
      }
      uint64_t ri = r;
      OPAQUE(ri);
      uint64_t nx = links[ri * (UNIT / sizeof(ref_t))];
      OPAQUE(nx);
      ent *e = (ent *)(base + r * UNIT);
      uint32_t blk = e->blk;
      unsigned fl = e->flags;
      uint64_t pu = units;
      units = BLK_UNITS(blk);
      __builtin_prefetch((const void *)((uintptr_t)e + WALK_AHEAD), 1);
      if (UNLIKELY((blk & BLK_FREE) || r + units > rtop ||
                   (units * UNIT < ENT_HDR + 12 && units * UNIT < ENT_HDR + opt_bytes(fl)))) {
        rc = -1;
        goto out;
      }
      if (check_end && !seq_after(end, e->seq)) {   /* made after the flush began: the end */
        ended = 1;
        goto out;
      }
      /* kept in *f, not a register: only the rare entries not flagged count */
      flag_one(s, e, fl, now, &f->kept, undo, hooked);
      last = (ref_t)r;
      if (!--left) {
        r = nx;
        goto out;
      }
      /* this block as big as the one before and followed by the next: a
       * run of keys made in a row is likely (where sizes change the two
       * compares are seldom both true: a branch seldom mispredicted) */
      int in_row = nx == r + units;
      r = nx;
      if (UNLIKELY(in_row) && units == pu && r - rlo <= rspan &&
          units - RUN_MIN_UNITS <= RUN_MAX_UNITS - RUN_MIN_UNITS)
        break;
    }
    uint64_t rmax = rtop - units < rlo + rspan ? rtop - units : rlo + rspan, span;
    /* and at most `left` entries: the last at r + (left - 1) * units */
    if (r <= rmax && !__builtin_mul_overflow(left - 1, units, &span) && span <= rmax - r)
      rmax = r + span;
    run_state st = {left, 0, last};
    if (undo || hooked) r = run_of(s, base, r, rmax, units, end, now, &st, undo, hooked, check_end);
    else if (check_end) r = run_plain_end(base, r, rmax, units, end, now, &st);
    else r = run_plain(base, r, rmax, units, now, &st);
    left = st.left;
    f->kept += st.kept;
    last = st.last;
    /* the general steps go on at r: the run's end, or what broke it */
  }
out:
  f->r = ended ? 0 : (ref_t)r;
  f->last = last;
  f->n = steps - left - f->kept;
  f->left = left;
  return rc;
}

static __attribute__((noinline)) int flag_keys_plain(heap_view v, flag_run *f, uint32_t end,
                                                     int64_t now) {
  return flag_keys(NULL, v, f, end, now, 0, 0, 0);
}

static __attribute__((noinline)) int flag_keys_plain_end(heap_view v, flag_run *f, uint32_t end,
                                                         int64_t now) {
  return flag_keys(NULL, v, f, end, now, 0, 0, 1);
}

static int do_expire_some(zkv_db *db, zkv_ns nsid, flush_walk *w, uint64_t budget,
                          uint64_t *count, int *done) {
  seg *s = db->s;
  ref_t ns = ns_ref(s, nsid);
  nsdata *d = idx_nsdata(s, ns);
  zkv_cursor *cur = &w->cur;
  int pending;
  ref_t r = walk_resume(s, ns, d, cur, 0, &budget, &pending);
  *done = 0;
  if (pending) return ZKV_OK;   /* the step went to finding the place again */
  if (r && budget) {
    int undo = s->txn_depth > 0;   /* a rollback of atomic() gives the flags back */
    if (!undo && s->shared && !s->dirty) log_dirty(s);   /* lock-free readers retry */
    flush_mark(s, d, undo);
    uint64_t limit = ent_limit(s);
    if (w->passed > limit) FAIL(s, ZKV_ECORRUPT);
    /* this step passes at most its budget, and no more than is left of the
     * most any list can hold (a longer one loops: damaged) */
    flag_run f = {r, 0, budget < limit - w->passed ? budget : limit - w->passed + 1, 0, 0};
    uint64_t steps = f.left;
    heap_view v = heap_view_of(s);
    int rc;
    int64_t now = clock_ms();
    if (undo) rc = flag_keys(s, v, &f, cur->end, now, 1, 1, 1);
    else if (UNLIKELY(expire_test_hook != NULL)) rc = flag_keys(s, v, &f, cur->end, now, 0, 1, 1);
    else if (d->next_seq != cur->end) rc = flag_keys_plain_end(v, &f, cur->end, now);
    else rc = flag_keys_plain(v, &f, cur->end, now);   /* every key was made before the walk */
    if (rc) FAIL(s, ZKV_ECORRUPT);
    r = f.r;
    w->passed += steps - f.left;
    if (w->passed > limit) FAIL(s, ZKV_ECORRUPT);
    if (f.last) {
      cur->ref = f.last;
      cur->seq = E(s, f.last)->seq;
    }
    *count += f.n;
  }
  *done = r == 0;
  return ZKV_OK;
}

static int expire_step_op(zkv_db *db, zkv_ns ns, flush_walk *w, uint64_t budget, uint64_t *n,
                          int *done) {
  RUN(db, do_expire_some(db, ns, w, budget, n, done));
}

int zkv_expire_all(zkv_db *db, zkv_ns ns, uint64_t *n) {
  CHECK_DB(db);
  uint64_t tmp = 0;
  if (!n) n = &tmp;
  *n = 0;
  if (db->closed) return ZKV_ECLOSED;
  /* in steps, like clear: each its own short lock hold, unless in a transaction */
  flush_walk w;
  memset(&w, 0, sizeof w);
  /* in a transaction its level must be able to undo it all: one step.
   * Outside one, WALK_PASS entries, not room_step_budget's BATCH: that is
   * sized for steps that free keys (a free touches some five cache lines and
   * logs its changes), a flag touches the entry's header alone and logs
   * nothing; 1M keys flagged: steps of 11 us on average (bench/holds.c) */
  uint64_t budget = room_step_budget(db) == UINT64_MAX ? UINT64_MAX : WALK_PASS;
  int done = 0;
  while (!done) {
    int rc = expire_step_op(db, ns, &w, budget, n, &done);
    if (rc) return rc;
  }
  return ZKV_OK;
}

/* flush_expired of one namespace walks its key list from a cursor, like
 * flush_all: each step (one lock hold) passes at most `budget` entries, live
 * or not, and frees the expired ones among them.  Before, each step began
 * again at the head and passed live keys without a bound, so a big namespace
 * with ttls but few expired keys was one long lock hold (and many expired
 * keys took steps that each walked the live ones before them again).  The
 * cursor is the last entry passed and kept: a step never frees it, so the next
 * finds it listed unless another op deleted it in between (then walk_resume
 * finds the place by number).  Until a step keeps one, every entry passed was
 * freed and the walk goes on from the head. */
void (*flush_expired_step_hook)(uint64_t passed);   /* after each step: entries it passed */

typedef struct expired_walk {
  flush_walk w;
  int kept;           /* w.cur names an entry passed and kept */
  uint16_t flushes;   /* d->flushes when the walk began */
} expired_walk;

/* free the expired keys among the next `budget` entries of ns's list (at
 * most `max_free` of them); *done when the walk reached its end */
static int do_flush_expired_ns(zkv_db *db, zkv_ns nsid, expired_walk *x, uint64_t budget,
                               uint64_t max_free, uint64_t *freed, int *done) {
  seg *s = db->s;
  ref_t ns = ns_ref(s, nsid);
  nsdata *d = idx_nsdata(s, ns);
  zkv_cursor *cur = &x->w.cur;
  *done = 0;
  if (!cur->started) {
    if (ns_all_live(s, d)) {   /* nothing to free: no walk */
      *done = 1;
      return ZKV_OK;
    }
    x->flushes = d->flushes;
  }
  /* the first step notes where the walk ends; until one is kept, the head */
  int pending = 0;
  uint64_t left = budget;
  ref_t r = !cur->started || x->kept ? walk_resume(s, ns, d, cur, 0, &left, &pending) : d->head;
  if (pending) return ZKV_OK;   /* the step went to finding the place again */
  int64_t now = clock_ms();
  uint64_t limit = ent_limit(s), n = 0;
  while (r && left && n < max_free) {
    if (!ent_ok(s, r) || x->w.passed++ > limit) FAIL(s, ZKV_ECORRUPT);
    ent *e = E(s, r);
    ref_t next = e->nnext;
    if (!seq_after(cur->end, e->seq)) {   /* made after the walk began: the end */
      r = 0;
      break;
    }
    if (!ent_live(e, now)) {
      int dead = (e->flags & EF_DELETED) != 0;
      idx_unlink_free(db, r, 1);
      n += !dead;   /* a deleted key was not expired */
    } else {
      cur->ref = r;
      cur->seq = e->seq;
      x->kept = 1;
    }
    left--;
    r = next;
  }
  *freed += n;
  *done = r == 0;
  if (UNLIKELY(flush_expired_step_hook != NULL)) flush_expired_step_hook(budget - left);
  if (*done && d->head && d->swept != d->flushes && d->flushes == x->flushes) {
    /* the whole list walked, and no flush step began since the walk did: no
     * key of it is flushed any more */
    LOGW(s, &d->swept, 2);
    d->swept = d->flushes;
  }
  return ZKV_OK;
}

static int flush_expired_step_op(zkv_db *db, zkv_ns ns, expired_walk *x, uint64_t budget,
                                 uint64_t max_free, uint64_t *n, int *done) {
  RUN(db, do_flush_expired_ns(db, ns, x, budget, max_free, n, done));
}

int zkv_flush_expired_ns(zkv_db *db, zkv_ns ns, uint64_t max, uint64_t *freed) {
  CHECK_DB(db);
  uint64_t tmp = 0;
  if (!freed) freed = &tmp;
  *freed = 0;
  if (db->closed) return ZKV_ECLOSED;
  expired_walk x;
  memset(&x, 0, sizeof x);
  uint64_t budget = room_step_budget(db);
  int done = 0;
  while (!done && !(max && *freed >= max)) {
    uint64_t max_free = max ? max - *freed : UINT64_MAX;
    int rc = flush_expired_step_op(db, ns, &x, budget, max_free, freed, &done);
    if (rc) return rc;
  }
  return ZKV_OK;
}

/* ---- keys ---------------------------------------------------------------- */


/* keys() walks a namespace's key list, which runs in insertion order; the
 * child walk (children = 1) its list of child namespaces, which runs from the
 * newest.  Either way the cursor holds the insertion number of the last one
 * passed: when that one is gone, the walk finds its place by number again;
 * those made after the walk began are not passed (at the key list's end: the
 * walk ends there; at the child list's head: passed over). */
/* where zkv_keys_into copies the keys */
typedef struct key_sink {
  char *buf;
  size_t cap, used;
  uint32_t *lens;
} key_sink;

/* a run of zkv_keys_into's walk: from r, at most `left` entries passed and
 * `max` keys copied (n of them so far); `at` the last one passed.  `coarse`
 * and `now` are the clocks (coarse and precise, ent_alive's), NO_CLOCK until
 * a key with a ttl needs them. */
#define NO_CLOCK INT64_MIN
typedef struct copy_run {
  ref_t r, at;
  uint64_t left;
  size_t n, max;
  int64_t coarse, now;
} copy_run;

/* the n (up to 16) bytes at src to dst, without a call: n > 16 is done in
 * moves of 8, the last overlapping */
static inline __attribute__((always_inline)) void copy_key(char *dst, const char *src,
                                                         size_t n) {
  if (n >= 8) {
    uint64_t x;
    for (size_t i = 0; i + 8 < n; i += 8) {
      memcpy(&x, src + i, 8);
      memcpy(dst + i, &x, 8);
    }
    memcpy(&x, src + n - 8, 8);
    memcpy(dst + n - 8, &x, 8);
  } else if (n >= 4) {   /* two overlapping moves */
    uint32_t x0, x1;
    memcpy(&x0, src, 4);
    memcpy(&x1, src + n - 4, 4);
    memcpy(dst, &x0, 4);
    memcpy(dst + n - 4, &x1, 4);
  } else if (n) {   /* 1 to 3 bytes: the first, the middle and the last */
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}

/* zkv_keys_into's walk of a key list, a loop of its own as flag_keys is (and
 * for the same reasons, which its comment gives).  In do_walk, with the sink
 * behind a pointer, every byte copied into buf could alias the header, the
 * handle and the sink, so the compiler reloaded them for each key, and with
 * calls in the loop (memcpy, the clock) what lives across them had to stay in
 * the few callee-saved registers or on the stack: some 100 instructions a
 * key.  Here the heap's bounds, the sink and the position are locals, the
 * loop calls nothing (a key copied inline; a clock it needs is read by the
 * caller, which runs the loop again from the same entry), the next ref is
 * loaded first, through the links view, with nothing else on the chain, and
 * the line WALK_AHEAD bytes on is prefetched.  The common entry takes a fast
 * path of a few compares and one 16-byte move: an allocated block of at
 * least FAST_BLOCK bytes inside the heap, a key of up to 16 bytes at
 * ENT_HDR (no ttl, no user flags), no flag set, no namespace record, and 16
 * bytes of room in buf.  Any other takes the full checks: ent_ok's, folded as
 * flag_keys folds them, the key inside its block, a namespace record in a key
 * list is damage (it has no key to copy), and ent_alive's liveness.  A ref of
 * 0, the list's end, fails the range check too, and is told apart there.  A
 * key that does not fit in what is left of buf ends the run (counted as
 * passed, as do_walk counts the entry it stops at) and is the next batch's
 * first.  100 keys of a 1,000-key namespace (the nginx bench's get_keys(100),
 * bench/README.md, section 7): 10,260 instructions a call in do_walk, 4,870
 * here (callgrind).  Returns 0; 1 when the entry at f->r needs a clock not read yet
 * (f->coarse, else f->now); -1 at a damaged entry (f->r): the caller FAILs. */
/* a key of up to 16 bytes is moved as 16 bytes on copy_keys' fast path, so
 * from a block of at least this many: ENT_HDR, the 16 bytes, and the most
 * slack (7) rounded up to a unit (56) */
#define FAST_BLOCK (ENT_HDR + 16 + 8 + 2)
/* an entry's type and flags bytes (next to each other, format.h) as one
 * 16-bit load: type | flags << 8 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define TYPE_FLAGS(x) ((uint16_t)((x) >> 8 | (x) << 8))
#else
#define TYPE_FLAGS(x) (x)
#endif
_Static_assert(offsetof(ent, flags) == offsetof(ent, type) + 1, "flags follows type");

static inline __attribute__((always_inline)) int copy_keys(heap_view v, copy_run *f,
                                                         key_sink *k, uint32_t end,
                                                         const int check_end) {
  char *base = v.base;
  const uint64_t lo = v.lo, top = v.top;
  /* never 0 (the list's end must fail the range check) */
  const uint64_t rlo = lo >= UNIT ? (lo + UNIT - 1) / UNIT : 1;
  const uint64_t rspan = top >= rlo * UNIT + ENT_HDR ? (top - ENT_HDR) / UNIT - rlo : 0;
  const ref_t *links = (const ref_t *)(base + offsetof(ent, nnext));
  char *dst = k->buf + k->used;
  /* a key copied on the fast path is moved as 16 bytes: room for them */
  char *const dend = k->buf + k->cap, *const dfast = dend - 16;
  uint32_t *lp = k->lens + f->n, *const lend = k->lens + f->max;
  ref_t r = f->r, at = f->at;
  /* Every entry passed is a key copied (lp moves on) or, rarely, one passed
   * over (left goes down): so the loop runs while lp < lim, lim being where
   * lp is when max keys are copied or the step's budget is spent, whichever
   * comes first, and a key passed over moves lim (and left) only. */
  uint64_t left = f->left;
  uint32_t *lp0 = lp, *lim = lp;
  int rc = 0;
  if (lp < lend) lim = (uint64_t)(lend - lp) < left ? lend : lp + left;
  if (r && lp < lim && top < rlo * UNIT + ENT_HDR) {   /* no entry fits in the heap */
    rc = -1;
    lim = lp;
  }
  while (lp < lim) {
    if (UNLIKELY((uint64_t)r - rlo > rspan)) {
      if (r) rc = -1;
      break;
    }
    uint64_t ri = r;
    OPAQUE(ri);
    ref_t nx = links[ri * (UNIT / sizeof(ref_t))];
    OPAQUE(nx);
    uint64_t off = (uint64_t)r * UNIT;
    const ent *e = (const ent *)(base + off);
    uint32_t blk = e->blk;
    size_t klen = e->klen;
    uint64_t bytes = (uint64_t)(blk & ~3u) * (UNIT / 4);   /* BLK_UNITS(blk) * UNIT */
    __builtin_prefetch((const void *)((uintptr_t)e + WALK_AHEAD));
    uint16_t tf;   /* the type and the flags bytes, side by side (format.h) */
    memcpy(&tf, &e->type, 2);
    /* the fast path: an allocated block inside the heap of at least
     * FAST_BLOCK bytes (so a key of up to 16 bytes at ENT_HDR lies inside it,
     * whatever its slack, and so do the 16 bytes moved from there), the key
     * at ENT_HDR and live (no ttl, no user flags, no flag; no namespace
     * record), room for 16 bytes in buf */
    if (LIKELY(!(blk & BLK_FREE)) && LIKELY(bytes >= FAST_BLOCK) && LIKELY(off + bytes <= top) &&
        LIKELY(klen <= 16) && LIKELY((unsigned)(TYPE_FLAGS(tf) & 0x0fffu) < T_NSREC) &&
        LIKELY(dst <= dfast)) {
      if (check_end && !seq_after(end, e->seq)) {   /* made after the walk began: the end */
        r = 0;
        break;
      }
      memcpy(dst, (const char *)e + ENT_HDR, 16);
      dst += klen;
      *lp++ = (uint32_t)klen;
      at = r;
      r = nx;
      continue;
    }
    unsigned fl = e->flags;
    if (UNLIKELY((blk & BLK_FREE) || bytes > top - off)) {
      rc = -1;
      break;
    }
    size_t kofs = ENT_HDR;
    /* the type and the flags that move the key or decide its liveness, in
     * one compare: below 0xff is none of those flags and no namespace record */
    if (UNLIKELY((e->type | (fl & 0x0fu) << 8) >= T_NSREC)) {
      if (e->type == T_NSREC) {
        rc = -1;
        break;
      }
      kofs += opt_bytes(fl);
    }
    if (UNLIKELY(kofs + klen + EF_SLACK(fl) > bytes)) {
      rc = -1;
      break;
    }
    if (check_end && !seq_after(end, e->seq)) {   /* made after the walk began: the end */
      r = 0;
      break;
    }
    if (UNLIKELY(fl & (EF_EXP | EF_FLUSHED | EF_DELETED))) {   /* as ent_alive */
      int live = 1;
      if (fl & (EF_FLUSHED | EF_DELETED)) {
        live = 0;
      } else {
        int64_t x;
        memcpy(&x, (const char *)e + ENT_HDR, 8);
        if (x != 0 && (f->coarse == NO_CLOCK || x - f->coarse <= CLOCK_COARSE_SLACK_MS)) {
          if (f->now == NO_CLOCK) {   /* the caller reads the clock; then again from r */
            rc = 1;
            break;
          }
          live = f->now < x;
        }
      }
      if (!live) {   /* passed over */
        lim--;
        at = r;
        r = nx;
        continue;
      }
    }
    if (UNLIKELY(klen > (size_t)(dend - dst))) {   /* the next batch's first, counted as passed */
      lim--;
      break;
    }
    copy_key(dst, (const char *)e + kofs, klen);
    dst += klen;
    *lp++ = (uint32_t)klen;
    at = r;
    r = nx;
  }
  /* passed: the keys copied and the entries passed over (lim's moves) */
  uint64_t budget = (uint64_t)(lend - lp0) < left ? (uint64_t)(lend - lp0) : left;
  uint64_t over = budget - (uint64_t)(lim - lp0);
  f->left = left - (uint64_t)(lp - lp0) - over;
  f->r = r;
  f->at = at;
  f->n = (size_t)(lp - k->lens);
  k->used = (size_t)(dst - k->buf);
  return rc;
}


static __attribute__((noinline)) int copy_keys_plain(heap_view v, copy_run *f, key_sink *k,
                                                     uint32_t end) {
  return copy_keys(v, f, k, end, 0);
}

static __attribute__((noinline)) int copy_keys_end(heap_view v, copy_run *f, key_sink *k,
                                                   uint32_t end) {
  return copy_keys(v, f, k, end, 1);
}

/* one step of zkv_keys_into: as do_walk's, with copy_keys as the loop */
static int do_keys_into(zkv_db *db, ref_t ns, zkv_cursor *cur, size_t max, key_sink *k,
                        size_t *count) {
  seg *s = db->s;
  nsdata *d = idx_nsdata(s, ns);
  if (count) *count = 0;
  if (cur->done) return ZKV_OK;
  uint64_t limit = ent_limit(s), pass = WALK_PASS <= limit ? WALK_PASS : limit + 1, pass0 = pass;
  int pending;
  ref_t r = walk_resume(s, ns, d, cur, 0, &pass, &pending);
  if (pending) return ZKV_OK;   /* the step went to finding the place again */
  copy_run f = {r, cur->ref, pass, 0, max, NO_CLOCK, NO_CLOCK};
  heap_view v = heap_view_of(s);
  /* every key listed was made before the walk began unless one was made since */
  int check_end = d->next_seq != cur->end, rc;
  while ((rc = check_end ? copy_keys_end(v, &f, k, cur->end)
                         : copy_keys_plain(v, &f, k, cur->end)) > 0) {
    /* a key with a ttl: the coarse clock tells most (as ent_alive), the precise
     * one (read once for the step, as flush_all's `now`) those near their end */
    if (f.coarse == NO_CLOCK) f.coarse = clock_coarse_ms();
    else f.now = clock_ms();
  }
  if (rc) FAIL(s, ZKV_ECORRUPT);
  pass = f.left;
  r = f.r;
  if (r && !pass && WALK_PASS > limit) FAIL(s, ZKV_ECORRUPT);
  if (UNLIKELY(walk_step_hook != NULL)) walk_step_hook(pass0 - pass);
  if (f.at != cur->ref) {   /* passed some: a checked entry */
    cur->ref = f.at;
    cur->seq = E(s, f.at)->seq;
  }
  if (!r) cur->done = 1;
  if (count) *count = f.n;
  return ZKV_OK;
}

static inline int do_walk(zkv_db *db, ref_t ns, zkv_cursor *cur, size_t max, zkv_key_fn fn,
                          void *ud, size_t *count, int children) {
  seg *s = db->s;
  nsdata *d = idx_nsdata(s, ns);
  ref_t r;
  if (cur->done) return ZKV_OK;
  /* the step's bound is also the guard against a damaged list: one passing
   * more entries than any list can hold in one step loops */
  uint64_t limit = ent_limit(s), pass = WALK_PASS <= limit ? WALK_PASS : limit + 1, pass0 = pass;
  int pending;
  r = walk_resume(s, ns, d, cur, children, &pass, &pending);
  size_t n = 0;
  if (count) *count = 0;
  if (pending) return ZKV_OK;   /* the step went to finding the place again */
  /* the position in locals, stored once at the end: fn may not look at the
   * cursor (it must not call into the store), and the stores would otherwise
   * be redone, and cur->end reloaded, around every call of fn */
  uint32_t end = cur->end, at_seq = cur->seq;
  ref_t at_ref = cur->ref;
  while (r && n < max && pass) {
    if (!ent_ok(s, r)) FAIL(s, ZKV_ECORRUPT);
    pass--;
    ent *e = E(s, r);
    /* the entries made after this one most often come next in the heap */
    if (!children) __builtin_prefetch((const void *)((uintptr_t)e + WALK_AHEAD));
    if (UNLIKELY(children && e->type != T_NSREC)) FAIL(s, ZKV_ECORRUPT);
    if (!seq_after(end, e->seq)) {   /* made after the walk began */
      if (!children) { r = 0; break; }
      r = e->nnext;
      continue;
    }
    if (children || ent_alive(e)) {   /* the precise clock only for keys near their end */
      if (!fn) {   /* zkv_count */
        n++;
      } else {
        n++;
        if (fn(ud, ent_key(e), e->klen)) { at_ref = r; at_seq = e->seq; r = e->nnext; break; }
      }
    }
    at_ref = r;
    at_seq = e->seq;
    r = e->nnext;
  }
  if (r && !pass && WALK_PASS > limit) FAIL(s, ZKV_ECORRUPT);
  if (UNLIKELY(walk_step_hook != NULL)) walk_step_hook(pass0 - pass);
  cur->ref = at_ref;
  cur->seq = at_seq;
  if (!r) cur->done = 1;
  if (count) *count = n;
  return ZKV_OK;
}

static int walk(zkv_db *db, zkv_ns ns, zkv_cursor *cur, size_t max, zkv_key_fn fn, void *ud,
                size_t *n, int children) {
  CHECK_DB(db);
  if (!cur || !fn) return ZKV_EINVAL;
  if (n) *n = 0;
  if (db->closed) return ZKV_ECLOSED;
  RUN(db, do_walk(db, ns_ref(db->s, ns), cur, max, fn, ud, n, children));
}

int zkv_keys_into(zkv_db *db, zkv_ns ns, zkv_cursor *cur, size_t max, char *buf, size_t cap,
                  uint32_t *lens, size_t *n) {
  CHECK_DB(db);
  if (n) *n = 0;
  if (!cur || !buf || !lens || cap < ZKV_MAX_KEY) return ZKV_EINVAL;
  if (db->closed) return ZKV_ECLOSED;
  key_sink k = {buf, cap, 0, lens};
  RUN(db, do_keys_into(db, ns_ref(db->s, ns), cur, max, &k, n));
}

/* zkv_count: a namespace whose keys are all live (none carries a ttl, none
 * flushed, no deleted key kept anywhere) has the count in its record; any
 * other is counted by a walk of its list in steps, as zkv_keys walks it:
 * before, that walk was one lock hold as long as the namespace (a big one of
 * keys with ttls, a session store, was tens of ms with every process
 * waiting).  The first step looks at the record and, when it must walk,
 * begins the walk. */
static int do_count_step(zkv_db *db, ref_t ns, zkv_cursor *cur, uint64_t *count) {
  seg *s = db->s;
  if (!cur->started) {
    nsdata *d = idx_nsdata(s, ns);
    if (ns_all_live(s, d)) {
      *count = d->nkeys;
      cur->done = 1;
      return ZKV_OK;
    }
  }
  size_t n = 0;
  int rc = do_walk(db, ns, cur, SIZE_MAX, NULL, NULL, &n, 0);
  *count += n;
  return rc;
}

static int count_step_op(zkv_db *db, zkv_ns ns, zkv_cursor *cur, uint64_t *count) {
  RUN(db, do_count_step(db, ns_ref(db->s, ns), cur, count));
}

int zkv_count(zkv_db *db, zkv_ns ns, uint64_t *count) {
  CHECK_DB(db);
  uint64_t tmp;
  if (!count) count = &tmp;
  *count = 0;
  if (db->closed) return ZKV_ECLOSED;
  zkv_cursor cur = ZKV_CURSOR_INIT;
  while (!cur.done) {
    int rc = count_step_op(db, ns, &cur, count);
    if (rc) {
      *count = 0;
      return rc;
    }
  }
  return ZKV_OK;
}

int zkv_keys(zkv_db *db, zkv_ns ns, zkv_cursor *cur, size_t max, zkv_key_fn fn, void *ud,
             size_t *n) {
  return walk(db, ns, cur, max, fn, ud, n, 0);
}

int zkv_namespaces(zkv_db *db, zkv_ns ns, zkv_cursor *cur, size_t max, zkv_key_fn fn, void *ud,
                   size_t *n) {
  return walk(db, ns, cur, max, fn, ud, n, 1);
}

/* ---- stats --------------------------------------------------------------- */

static int do_stats(zkv_db *db, zkv_stats *o) {
  seg *s = db->s;
  hdr *h = H(s);
  memset(o, 0, sizeof *o);
  /* deleted keys kept for reuse are neither keys nor used bytes: any
   * allocation that needs their room frees them first */
  o->keys = h->nkeys - h->ndead;
  o->bytes_used = h->bytes_used - h->dead_bytes - h->lgarb_units * UNIT;   /* both are free room */
  o->capacity = s->shared ? h->size - h->heap_start : h->capacity;
  o->arena_bytes = s->mapped;
  if (o->capacity) o->free_bytes = o->capacity > o->bytes_used ? o->capacity - o->bytes_used : 0;
  o->evictions = h->evictions;
  o->expired_freed = h->expired_freed;
  o->gc_runs = h->gc_runs;
  o->namespaces = h->nns;
  o->buckets = nbuckets(s);
  o->max_lock_ns = s->max_lock_ns;
  o->lock_recoveries = h->lock_recoveries;
  o->evict = h->evict == ZKV_EVICT_LRU ? ZKV_EVICT_LRU : ZKV_EVICT_NONE;
  open_count_reads(db, &o->hits, &o->misses);
  o->gets = o->hits + o->misses;
  o->sets = h->sets;
  o->deletes = h->deletes;
  o->commits = h->commits;
  o->rollbacks = h->rollbacks;
  o->lock_waits = h->lock_waits;
  o->lock_wait_ns = h->lock_wait_ns;
  o->lock_wait_max_ns = h->lock_wait_max_ns;
  if (s->shared) {
    o->size = h->size;
    o->path = s->path;
    const char *base = strrchr(s->path, '/');
    o->name = (base ? base + 1 : s->path) + strlen(SEG_PREFIX);
  }
  return ZKV_OK;
}

int zkv_stats_get(zkv_db *db, zkv_stats *out) {
  CHECK_DB(db);
  if (!out) return ZKV_EINVAL;
  if (db->closed) return ZKV_ECLOSED;
  RUN(db, do_stats(db, out));
}

/* capacity and free bytes as do_stats counts them (0, 0 when unbounded) */
static void space_of(seg *s, uint64_t *capacity, uint64_t *free_bytes) {
  hdr *h = H(s);
  uint64_t cap = s->shared ? h->size - h->heap_start : h->capacity;
  uint64_t used = h->bytes_used - h->dead_bytes - h->lgarb_units * UNIT;
  *capacity = cap;
  *free_bytes = cap > used ? cap - used : 0;
}

static int do_space(zkv_db *db, uint64_t *capacity, uint64_t *free_bytes) {
  space_of(db->s, capacity, free_bytes);
  return ZKV_OK;
}

int zkv_space(zkv_db *db, uint64_t *capacity, uint64_t *free_bytes) {
  CHECK_DB(db);
  if (!capacity || !free_bytes) return ZKV_EINVAL;
  if (db->closed) return ZKV_ECLOSED;
  seg *s = db->s;
  /* without the lock where get reads without it: a few header words, read
   * between two equal even values of seq (a shared segment), or by the one
   * thread of a private store */
  if (!s->shared && !s->threadsafe) {
    space_of(s, capacity, free_bytes);
    return ZKV_OK;
  }
  if (s->shared && !seg_owned(s)) {
    hdr *h = H(s);
    for (int i = 0; i < 16; i++) {
      uint64_t s1 = atomic_load_explicit(&h->seq, memory_order_acquire);
      if (!(s1 & 1)) {
        space_of(s, capacity, free_bytes);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&h->seq, memory_order_relaxed) == s1) return ZKV_OK;
      }
      cpu_relax();
    }
  }
  RUN(db, do_space(db, capacity, free_bytes));
}

int zkv_capacity(zkv_db *db, uint64_t *capacity) {
  CHECK_DB(db);
  if (!capacity) return ZKV_EINVAL;
  if (db->closed) return ZKV_ECLOSED;
  seg *s = db->s;
  hdr *h = H(s);
  /* space_of's capacity without zkv_space's seq loop: heap_start is fixed when
   * the segment is made and size is one aligned word that only grows (written
   * under the lock by a process that opens it larger), so a read of it alone
   * is never torn: 8.5-12.6 ns a call with the loop, which reads the seq word
   * every writer dirties, as the drop-in's capacity() */
  *capacity = s->shared ? *(volatile uint64_t *)&h->size - h->heap_start : h->capacity;
  return ZKV_OK;
}

const volatile uint64_t *zkv_capacity_word(zkv_db *db, uint64_t *base) {
  if (base) *base = 0;
  if (!db || !base || db->closed || !db->s->shared) return NULL;
  /* the header is at the mapping's start, which a shared segment never moves
   * (it grows inside the address space reserved at open: arena_follow) */
  hdr *h = H(db->s);
  *base = h->heap_start;
  return (const volatile uint64_t *)&h->size;
}

/* ---- verify -------------------------------------------------------------- */

#define BAD(msg) do { *why = (msg); return ZKV_ECORRUPT; } while (0)

static int do_verify(zkv_db *db, const char **why) {
  seg *s = db->s;
  *why = "a walk met a damaged block";   /* what a FAIL from a checked walk leaves */
  hdr *h = H(s);
  uint64_t first = h->heap_start / UNIT, top = h->top / UNIT;
  if (h->top > s->mapped || h->heap_start > h->top) BAD("top is out of the arena");
  /* 1. the heap, block by block */
  uint64_t used = 0, fixed = 0, nfree = 0, r = first;
  int prev_free = 0;
  while (r < top) {
    uint32_t hd = ((uint32_t *)P(s, r))[0];
    uint64_t u = BLK_UNITS(hd);
    if (u == 0 || r + u > top) BAD("block runs past top");
    if (((hd & BLK_PREVFREE) != 0) != (prev_free != 0)) BAD("prev-free bit is wrong");
    if (hd & BLK_FREE) {
      if (prev_free) BAD("two free blocks side by side");
      uint32_t foot = ((uint32_t *)((char *)P(s, r) + u * UNIT))[-1];
      if (foot != u) BAD("free block footer is wrong");
      if (u >= 2) nfree++;
      prev_free = 1;
    } else {
      used += u;
      /* the index's arrays and the ring here (the old array of a moving index
       * is on its way out: not counted); the namespace records in 4., from
       * the namespace tree: an allocated block that is no entry (a log chunk,
       * the reservation) may begin with the bytes of a namespace record freed
       * where it now lies, and read as one here */
      if (r == h->buckets || r == h->dead_ring || (r == h->obuckets && !(h->ocursor & OC_MOVING)))
        fixed += u;
      prev_free = 0;
    }
    r += u;
  }
  if (prev_free) BAD("a free block touches top");
  if (used * UNIT != h->bytes_used) BAD("bytes_used disagrees with the blocks");
  /* 2. free lists */
  uint64_t listed = 0;
  for (unsigned c = 0; c < NCLASS; c++) {
    ref_t x = h->free_heads[c], pv = 0;
    int bit = (h->class_bits[c >> 6] >> (c & 63)) & 1;
    if ((x != 0) != bit) BAD("class bit disagrees with its list");
    for (uint64_t guard = 0; x; guard++) {
      if (guard > nfree || x < first || x >= top) BAD("free list runs wild");
      uint32_t *b = (uint32_t *)P(s, x);
      if (!(b[0] & BLK_FREE) || BLK_UNITS(b[0]) < 2) BAD("listed block is not free");
      if (b[2] != pv) BAD("free list back link is wrong");
      pv = x;
      x = b[1];
      listed++;
    }
  }
  if (listed != nfree) BAD("free blocks and free lists disagree");
  /* 3. the hash index (both arrays while it grows: each entry must sit in the
   *    chain its hash leads a lookup to) */
  uint64_t nb = nbuckets(s), indexed = 0;
  if (h->obuckets && !OCURSOR_OK(h, nb)) BAD("index growth cursor is out of range");
  for (uint64_t i = 0; i < nb; i++) {
    ref_t *slot = idx_bucket_slot(s, i);
    if (!slot) continue;
    for (ref_t e = *slot; e; e = E(s, e)->hnext) {
      if (!ent_ok(s, e) || ++indexed > h->nentries) BAD("hash chain runs wild");
      ent *x = E(s, e);
      if (idx_slot(s, idx_hash(x->ns, ent_key(x), x->klen, x->type == T_NSREC)) != slot)
        BAD("key in the wrong bucket");
    }
  }
  if (indexed != h->nentries) BAD("index count disagrees");
  /* 4. namespaces and their key lists */
  uint64_t keys = 0, nss = 0, ndead = 0, dbytes = 0;
  ref_t *rg = NULL;
  if (h->dead_ring) {
    uint64_t off = (uint64_t)h->dead_ring * UNIT;
    if (off < h->heap_start || off + RING_OFF + NDEAD * 4 > h->top) BAD("deleted key ring is out of bounds");
    rg = (ref_t *)((char *)P(s, h->dead_ring) + RING_OFF);
  }
  ref_t root = h->root_ns;
  if (!ns_valid(s, root)) BAD("the root namespace record is damaged");
  for (ref_t cur = root; cur; cur = idx_ns_next(s, root, cur)) {
    if (++nss > h->nns) BAD("namespace tree runs wild");
    fixed += BLK_UNITS(E(s, cur)->blk);
    nsdata *d = ns_data_raw(s, cur);
    uint64_t n = 0, nt = 0;
    ref_t pv = 0;
    for (ref_t e = d->head; e; e = E(s, e)->nnext) {
      if (!ent_ok(s, e) || n > h->nkeys) BAD("key list runs wild");
      ent *x = E(s, e);
      if (x->ns != cur || x->nprev != pv) BAD("key list links are wrong");
      if (pv && (int32_t)(x->seq - E(s, pv)->seq) <= 0) BAD("key list out of order");
      if (idx_find(s, cur, ent_key(x), x->klen, idx_hash(cur, ent_key(x), x->klen, 0), 0) != e)
        BAD("listed key not found in the index");
      if (x->type == ZKV_T_LIST && !(x->flags & EF_DELETED)) {
        const char *bad = list_verify(s, e);
        if (bad) BAD(bad);
      }
      n++;
      nt += ent_timed(x);
      if (x->flags & EF_DELETED) {
        if (x->atime >= NDEAD || !rg || rg[x->atime] != e) BAD("deleted key not in its ring slot");
        ndead++;
        dbytes += (uint64_t)BLK_UNITS(x->blk) * UNIT;
      }
      pv = e;
    }
    if (d->tail != pv) BAD("key list tail is wrong");
    if (n != d->nkeys || nt != d->nttl) BAD("namespace counters are wrong");
    keys += n;
  }
  if (keys != h->nkeys) BAD("key count disagrees");
  uint64_t ring = 0;
  for (uint32_t i = 0; rg && i < NDEAD; i++) ring += rg[i] != 0;
  if (ndead != h->ndead || ring != ndead || dbytes != h->dead_bytes || h->dead_next >= NDEAD)
    BAD("deleted key ring disagrees");
  if (nss != h->nns) BAD("namespace count disagrees");
  if (fixed * UNIT != h->fixed_bytes) BAD("fixed_bytes disagrees with the blocks");
  const char *gbad = list_verify_garbage(s);
  if (gbad) BAD(gbad);
  if (h->nentries != keys + nss - 1) BAD("index holds something else");
  *why = "ok";
  return ZKV_OK;
}

int zkv_verify(zkv_db *db, const char **why) {
  const char *tmp;
  if (!why) why = &tmp;
  *why = "closed";
  CHECK_DB(db);
  if (db->closed) return ZKV_ECLOSED;
  RUN(db, do_verify(db, why));
}
