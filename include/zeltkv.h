/*
 * zeltkv.h -- the public C API of the zeltkv engine, and its manual.
 *
 * zeltkv is an embedded key-value store: one arena (a private mapping, or a
 * named shared-memory segment) holds every byte of a store, addressed by
 * offsets, guarded by one lock, with an undo log that gives both rollback of
 * transactions and recovery after a process dies holding the lock.  The Lua
 * module is a layer over this API; this header is the spec for C hosts.
 *
 * OVERVIEW
 *
 * Life cycle.  zkv_open_memory makes a store in a private mapping of this
 * process; zkv_open_shared opens (or creates) a named segment that every
 * process opening the name shares.  Both give a handle (zkv_db); zkv_close
 * releases it.  A shared segment outlives its processes until zkv_unlink or
 * a reboot.  Keys live in namespaces (zkv_namespace), nested under ZKV_ROOT.
 *
 * Threads and processes.  A handle is used by one thread at a time.  Threads
 * share a shared segment by each opening their own handle (handles of one
 * process on one segment share its mapping and its lock state), or share a
 * memory store opened with ZKV_THREADSAFE, taking turns on its mutex.
 * Processes share a store only through a shared segment.
 *
 * Transactions and the lock.  Every call takes the store's lock for as long
 * as it runs (reads of a shared segment, and of a memory store used by one
 * thread, first try without it).  zkv_begin takes it and keeps it: the
 * calls until the matching zkv_commit or zkv_rollback are one transaction,
 * seen by no one else until the outermost level ends; nested levels are
 * savepoints.  A shared segment's waiters wait up to lock_timeout, then get
 * ZKV_ETIMEDOUT.  A process that dies holding the lock leaves an undo log
 * in the segment: the next process to take the lock undoes what it had
 * half-done, so a store never holds half of an operation or transaction.
 *
 * Expiry.  A key may have a ttl (ms).  An expired key is absent for every
 * function at once; its memory is freed later: by a sweep that normal
 * operations run in small steps every gc_interval seconds, by zkv_gc and
 * zkv_flush_expired, or when a write needs the room.
 *
 * Memory.  A memory store grows its mapping as it fills, up to max_bytes of
 * data when given; a shared segment has the fixed size it was created with.
 * A write that finds no room makes it, in this order: blocks of deleted keys
 * kept for reuse, then (evict = ZKV_EVICT_LRU) keys chosen by sampled LRU
 * (an expired one before any live one among those sampled), then expired
 * keys; a shared segment whose free room is enough but broken up is
 * compacted (keys are moved down, one block after another, and the records
 * of empty namespaces in the way are freed).  Outside a transaction this
 * runs in steps, each a short lock hold of its own that stays done whatever
 * happens to the write after (as in Redis, which evicts before it runs a
 * command), so no write that fits fails for the size of the undo log or of
 * the eviction it needs; inside one it runs within the transaction, whose
 * undo log needs room too: a shared segment's log starts in a fixed region
 * (1/16 of the segment) and grows into the free room (in blocks of 272
 * bytes or more), a memory store's is the process heap.  So a transaction
 * is as big as the free room, not as a fixed log: what it writes, what it
 * evicts and what its compaction moves are all undone by a log that takes
 * about as many bytes as they do.  The free room inside a transaction is:
 * the room that was free when it began, plus the room its own writes took
 * and gave back (a value it set and then replaced or deleted: a rollback
 * frees that anyway), less what its undo log takes.  Room it frees of what
 * was there when it began (a key deleted, a value replaced or evicted)
 * stays with the bytes a rollback brings back, until the commit.  A write that could not fit even if every
 * key were gone fails at once, evicting nothing.  When that is not enough
 * the write fails with ZKV_EFULL.  Free room can still be lost to pieces
 * held next to the records of the root and of namespaces with more than
 * 256 keys and children (which never move: keys name them by their place;
 * an empty one goes, one with fewer keys moves when no key can hop over it;
 * inside a transaction none moves) and blocks larger than a shared
 * segment's undo log (1/16 of it), which are not moved.  Recency is kept by the calls that read or write a key
 * they find (zkv_get, zkv_get_ex, zkv_set that replaces, zkv_set with
 * ZKV_SET_NX that finds the key, zkv_incr, zkv_incr_num); zkv_has, zkv_ttl,
 * zkv_expire, zkv_keys and zkv_count only look, as ngx.shared.DICT's do.
 *
 * Fork.  A child process may go on using the handles it inherited.  A store
 * that no thread of the parent held at the fork (no operation running, no
 * transaction open) works in the child as in any other process: a shared
 * segment is the same store, and the child takes its lock under its own
 * identity, so no write of either is lost; a memory store is the child's own
 * copy from then on.  A store that a thread of the parent held at the fork
 * (inside zkv_begin, or a fork from a zkv_keys callback) belongs to that
 * parent's transaction: in the child every call on its handles returns
 * ZKV_EFORKED, nothing is written, and zkv_close only releases the child's
 * mapping.  The child may open the segment anew, and then waits for the lock
 * like any other process.
 *
 * CONVENTIONS (they hold for every function below unless it says otherwise)
 *  - Every function returns an int result code from enum zkv_rc.  ZKV_OK (0)
 *    is success; ZKV_NOTFOUND and ZKV_EXISTS are ordinary outcomes, not
 *    errors; negative codes are errors.
 *  - A call that returns an error changed nothing in the store, except the
 *    stepped walks (zkv_clear, zkv_flush, zkv_gc, zkv_flush_expired,
 *    zkv_flush_expired_ns, zkv_expire_all): outside a transaction they run
 *    as a series of short lock holds, each committed, so an error in one
 *    step leaves the earlier steps done (inside a transaction the whole walk
 *    is undone with the transaction, as any write).
 *  - Every function that takes a handle returns ZKV_EINVAL for a NULL one,
 *    ZKV_ECLOSED once it was closed, and ZKV_EFORKED in a child forked while
 *    the store was held (see "Fork"); every function that takes the lock
 *    may return ZKV_ETIMEDOUT (shared), ZKV_ECORRUPT (a damaged segment,
 *    found when followed; every offset read from the arena is checked), and
 *    on a shared segment that another process grew (zkv_open_shared with a
 *    larger size) ZKV_ENOMEM or ZKV_EIO when this process cannot map the new
 *    part (zkv_errdetail says why).  The Returns lists below name the other
 *    codes.
 *  - Handles (zkv_db) are opaque and created through out-parameters.
 *  - Keys and values are binary-safe: a pointer plus a length.
 *  - Times are in milliseconds; a ttl of 0 means "no expiry".
 *
 * CAVEATS
 *  - Linux only: shared segments are files under /dev/shm (or
 *    $ZELTKV_SHM_DIR) locked with futexes, and a dead lock holder is found by
 *    its thread id.  All the processes that use one segment must therefore
 *    live in one PID namespace (two containers sharing a /dev/shm mount but
 *    not their PIDs would take each other's holders for dead).
 *  - fork: see "Fork" above (a store held at the fork is ZKV_EFORKED in the
 *    child).
 *  - The zkv_keys callback runs with the lock held: it must return normally
 *    (no longjmp, no C++ exception, no Lua error across it) and must not call
 *    into the same store.
 *  - A zkv_value returned by a read points into memory the handle owns,
 *    valid until the next call on that handle.
 *  - Segment files hold the format this library writes (zkv_version); a
 *    segment of another format is refused (ZKV_EVERSION), never read.
 */
#ifndef ZELTKV_H
#define ZELTKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ZKV_API __attribute__((visibility("default")))
#else
#define ZKV_API
#endif

/* The library's version: ZKV_VERSION is the string, the other three its
 * numbers; ZKV_VERSION_NUMBER is MAJOR * 10000 + MINOR * 100 + PATCH, to
 * compare with what zkv_version() says of the library a program runs with. */
#define ZKV_VERSION "0.1.0"
#define ZKV_VERSION_MAJOR 0
#define ZKV_VERSION_MINOR 1
#define ZKV_VERSION_PATCH 0
#define ZKV_VERSION_NUMBER (ZKV_VERSION_MAJOR * 10000 + ZKV_VERSION_MINOR * 100 + ZKV_VERSION_PATCH)

/* Result codes.  zkv_errclass() maps each error to one of the five error
 * codes of the Lua API (INVALID_TTL, EMPTY_NAMESPACE, INVALID_VALUE,
 * INVALID_KEY, STORE_OPERATION_FAILED). */
enum zkv_rc {
  ZKV_OK = 0,
  ZKV_NOTFOUND = 1,       /* the key is absent (or expired) */
  ZKV_EXISTS = 2,         /* ZKV_SET_NX found a live key */
  ZKV_EINVAL_TTL = -1,    /* a ttl < 0 */
  ZKV_EEMPTY_NS = -2,     /* a namespace name of length 0 */
  ZKV_EINVAL_VALUE = -3,  /* a value, type or option that cannot be used */
  ZKV_EINVAL_KEY = -4,    /* a key or name of length 0 or > ZKV_MAX_KEY */
  ZKV_ETYPE = -5,         /* incr on a value that is not an integer */
  ZKV_ERANGE = -6,        /* incr result outside the int64 range or the limits asked */
  ZKV_EFULL = -10,        /* no room for the write (max_bytes / size; see "Memory") */
  ZKV_ETIMEDOUT = -11,    /* the lock was not had within lock_timeout */
  ZKV_ECLOSED = -12,      /* the handle was closed */
  ZKV_ECORRUPT = -13,     /* the segment is damaged, truncated or not zeltkv */
  ZKV_EVERSION = -14,     /* the segment has another format version */
  ZKV_ENOMEM = -15,       /* the process ran out of memory */
  ZKV_EIO = -16,          /* a system call failed (see errno) */
  ZKV_ETXN = -17,         /* no transaction open (or, outside one, an op's undo log over its fixed region) */
  ZKV_EINVAL = -18,       /* a bad argument (NULL handle, bad option) */
  ZKV_ESTALE = -19,       /* the namespace id is not (or no longer) one of this store */
  ZKV_EFORKED = -20       /* the handle came through fork() while its store was held */
};

/* The five error classes of the Lua API. */
enum zkv_errclass {
  ZKV_CLASS_NONE = 0,
  ZKV_CLASS_INVALID_TTL,
  ZKV_CLASS_EMPTY_NAMESPACE,
  ZKV_CLASS_INVALID_VALUE,
  ZKV_CLASS_INVALID_KEY,
  ZKV_CLASS_STORE_OPERATION_FAILED
};

#define ZKV_MAX_KEY 65535u     /* longest key or namespace name, in bytes */
#define ZKV_MAX_NAME 128u      /* longest shared segment name */

/* Value types.  The engine stores a type tag and bytes; it interprets only
 * ZKV_T_INT (zkv_incr) and ZKV_T_INT / ZKV_T_FLOAT (zkv_incr_num). */
enum zkv_type {
  ZKV_T_NONE = 0,
  ZKV_T_STRING = 1,   /* bytes */
  ZKV_T_INT = 2,      /* int64 in zkv_value.i */
  ZKV_T_FLOAT = 3,    /* double in zkv_value.f */
  ZKV_T_BOOL = 4,     /* 0 or 1 in zkv_value.i */
  ZKV_T_JSON = 5,     /* bytes: a JSON text (tables of the Lua API) */
  ZKV_T_LIST = 6,     /* bytes: a list in the zkv list encoding (shdict lists) */
  ZKV_T_USER = 16     /* 16..127: free for hosts, bytes */
};

/* A value.  For ZKV_T_INT / ZKV_T_BOOL the number is in i, for ZKV_T_FLOAT
 * in f; for every other type the bytes are data/len.  A value returned by
 * zkv_get points into memory owned by the handle, valid until the next call
 * on that handle. */
typedef struct zkv_value {
  int type;           /* enum zkv_type */
  uint32_t flags;     /* opaque user flags (ngx.shared.DICT's "flags"), 0 if none */
  const void *data;
  size_t len;
  int64_t i;
  double f;
} zkv_value;

/* A namespace: an opaque id, stable for the life of the store (namespaces are
 * not deleted; clearing one removes its keys), except that a namespace first
 * created inside a transaction that is rolled back is gone with it, and that
 * the record of an empty namespace (no keys, no child namespaces) of a
 * shared segment may be freed to make room for a write into another one,
 * and that the record of a namespace other than the root with few keys and
 * children (256 at most) may be moved to make room (a write into it that
 * needs the room succeeds): its id then gives ZKV_ESTALE, and zkv_namespace
 * makes it anew or gives its new id (the Lua binding does so by itself).
 * ZKV_ROOT is the root, and never changes.  An id is valid for the store it came from only. */
typedef uint64_t zkv_ns;
#define ZKV_ROOT ((zkv_ns)0)

typedef struct zkv_db zkv_db;

/* ZKV_EVICT_DEFAULT: none for a store this call makes; an existing segment
 * keeps its own policy (any other policy given is refused, ZKV_EINVAL). */
enum zkv_evict { ZKV_EVICT_DEFAULT = -1, ZKV_EVICT_NONE = 0, ZKV_EVICT_LRU = 1 };

/* Options for zkv_open_memory / zkv_open_shared.  Initialise with
 * zkv_options_init(); fields a driver does not use are ignored. */
typedef struct zkv_options {
  double gc_interval;      /* seconds between expiry sweeps; 0 = only zkv_gc. default 60 */
  uint64_t size;           /* shared: bytes of the segment (rounded up to 4 KiB, 64 KiB at
                            * least).  0 (the default): ZKV_DEFAULT_SIZE when made, an
                            * existing segment as it is.  Given for an existing segment:
                            * larger grows it in place, smaller is refused (ZKV_EINVAL) */
  uint64_t max_bytes;      /* memory: cap on the arena in bytes; 0 = unbounded */
  int evict;               /* enum zkv_evict. default ZKV_EVICT_DEFAULT */
  unsigned mode;           /* shared: permission bits of a created segment. default 0600 */
  double lock_timeout;     /* shared: seconds to wait for the lock. default 5 */
  unsigned flags;          /* ZKV_THREADSAFE (memory), ZKV_TIME_HOLDS, ZKV_OPEN_EXISTING (shared) */
  const char *dir;         /* shared: directory of the segment file; NULL = $ZELTKV_SHM_DIR,
                            * else /dev/shm.  Copied by the open call. */
} zkv_options;

#define ZKV_THREADSAFE 1u  /* memory store: guard the handle with a mutex */
#define ZKV_TIME_HOLDS 2u  /* time every operation's lock hold in this process, in CPU
                            * time of the holder (two clock reads an operation):
                            * zkv_stats.max_lock_ns */
#define ZKV_OPEN_EXISTING 4u  /* shared: open only an existing segment, never create one */

#define ZKV_MAX_SEGMENT (1ull << 40)  /* largest shared segment: 1 TiB */
#define ZKV_DEFAULT_SIZE (64ull << 20) /* a segment made without a size: 64 MiB */

/* zkv_options_init: fill *opts with the defaults. */
ZKV_API void zkv_options_init(zkv_options *opts);

/* zkv_strerror: a static English string for a result code.  Never NULL. */
ZKV_API const char *zkv_strerror(int rc);

/* zkv_errclass: the Lua API error class of a result code (ZKV_CLASS_NONE for
 * ZKV_OK, ZKV_NOTFOUND and ZKV_EXISTS). */
ZKV_API int zkv_errclass(int rc);

/* zkv_errclass_name: "INVALID_TTL", ... for a class; "" for ZKV_CLASS_NONE
 * and for a number that is no class. */
ZKV_API const char *zkv_errclass_name(int cls);

/* zkv_errdetail: what this thread's last failure that had a detail was
 * about, in English: a failed system call (the call, the path and the
 * system's message, e.g. "open /dev/shm/zeltkv-app: Permission denied"), or
 * why zkv_open_shared refused (the path and the room missing, "no such
 * segment", a size or evict that does not match the segment's).
 * zkv_open_memory, zkv_open_shared, zkv_unlink and zkv_unlink_ex clear it
 * when they start, so after one of them fails it is about that failure.
 *  [out] err  the errno it stands for (may be NULL): that of the system
 *             call, ENOSPC for no room, ENOENT for a missing segment; 0 for
 *             none
 * Returns "" when there was none.  The string belongs to the library and
 * stays valid until the next failing call in this thread. */
ZKV_API const char *zkv_errdetail(int *err);

/* zkv_version: ZKV_VERSION_NUMBER of the library linked (which may be newer
 * than the header a program was compiled with).
 *  [out] segment_format  the segment format this library writes and reads
 *                        (a segment of any other is ZKV_EVERSION); may be NULL */
ZKV_API int zkv_version(uint32_t *segment_format);

/* ------------------------------------------------------------------------ */
/* Opening and closing                                                       */

/* zkv_open_memory: create a store in a private mapping of this process.
 *  [in]  opts  options, or NULL for the defaults
 *  [out] out   the new handle; set to NULL on failure
 * Returns ZKV_OK, ZKV_EINVAL (out NULL, a bad option), ZKV_EFULL (max_bytes
 * too small for an empty store's own records), ZKV_ENOMEM. */
ZKV_API int zkv_open_memory(const zkv_options *opts, zkv_db **out);

/* zkv_open_shared: open the named shared segment, creating it if absent.
 * Every process and thread that opens the same name sees the same keys.  A
 * half-made segment is never visible: it is built under a temporary name and
 * linked into place.  Opening a name already open in this process joins the
 * same mapping, so the lock is shared by both handles and never
 * self-deadlocks.
 *  [in]  name  1..128 characters of A-Z a-z 0-9 . _ -
 *  [in]  opts  options (size, mode, evict, lock_timeout, gc_interval, dir,
 *              flags) or NULL; mode applies only when this call creates the
 *              segment, size and evict are checked against an existing one
 *  [out] out   the new handle; NULL on failure
 * A segment this call creates has its whole size reserved in its filesystem
 * (posix_fallocate) before anyone uses it: a size the filesystem cannot hold
 * is refused here (ZKV_EIO, errno ENOSPC, zkv_errdetail() names the path and
 * the free room), never met later as a SIGBUS.  A creator killed half-way
 * leaves no file behind (or, on a filesystem without O_TMPFILE, a hidden one
 * that the next creator of the name removes).
 * Growing in place: opening an existing segment with a larger size reserves
 * the room, then grows it under the lock, keeping every key; every process
 * that has it open maps the new part at its next locked call (reads that find
 * a key past its old end take the lock).  A smaller size, or another evict
 * than the segment's, is refused (ZKV_EINVAL) rather than ignored.
 * ZKV_OPEN_EXISTING opens only an existing segment (a missing one is ZKV_EIO,
 * errno ENOENT).  Every open sets the file's access and modification times to
 * now: they tell when a process last opened the segment (zkv list).
 * Returns ZKV_OK, ZKV_EINVAL_KEY (a bad name, or a path that is too long),
 * ZKV_EINVAL (out NULL, a bad option, a size over ZKV_MAX_SEGMENT, a smaller
 * size or another evict than an existing segment's), ZKV_ECORRUPT (not a
 * zeltkv segment, truncated, damaged), ZKV_EVERSION (another segment format),
 * ZKV_EIO (a system call failed; errno ENOENT: a missing segment with
 * ZKV_OPEN_EXISTING, ENOSPC: no room for its size), ZKV_ENOMEM (also: a
 * growth past the address space this process reserved, where that is short,
 * as under valgrind), ZKV_ETIMEDOUT (growing waited for the lock).
 * zkv_errdetail() tells more after any failure of this call.
 * Segments live in opts->dir, else $ZELTKV_SHM_DIR, else /dev/shm, as
 * "zeltkv-NAME". */
ZKV_API int zkv_open_shared(const char *name, const zkv_options *opts, zkv_db **out);

/* zkv_segment_name_ok: 1 if name[0..len) is a segment name zkv_open_shared
 * takes (1..ZKV_MAX_NAME characters of A-Z a-z 0-9 . _ -, so no NUL), else 0. */
ZKV_API int zkv_segment_name_ok(const char *name, size_t len);

/* zkv_unlink: remove a named segment.  Processes that have it open keep
 * using their mapping; later opens create a new one.
 *  [out] existed  1 if the segment existed (may be NULL)
 * Returns ZKV_OK (also when there was none), ZKV_EINVAL_KEY (bad name), ZKV_EIO.
 * zkv_unlink_ex looks in opts->dir (as zkv_open_shared does; opts may be NULL). */
ZKV_API int zkv_unlink(const char *name, int *existed);
ZKV_API int zkv_unlink_ex(const char *name, const zkv_options *opts, int *existed);

/* zkv_close: release a handle.  NULL is a no-op.  The transaction levels this
 * handle opened and left open are rolled back. */
ZKV_API void zkv_close(zkv_db *db);

/* zkv_is_shared: 1 for a shared-segment handle, 0 for a memory store (or NULL). */
ZKV_API int zkv_is_shared(const zkv_db *db);

/* ------------------------------------------------------------------------ */
/* Namespaces                                                                */

/* zkv_namespace: find or create the namespace `name` under `parent`.
 *  [in]  parent  ZKV_ROOT or an id from an earlier call on this store
 *  [out] out     the namespace id
 * Returns ZKV_OK, ZKV_EEMPTY_NS (len 0), ZKV_EINVAL_KEY (name or out NULL,
 * len > ZKV_MAX_KEY), ZKV_ESTALE (parent is no namespace of this store), and
 * when it creates one ZKV_EFULL, ZKV_ETXN, ZKV_ENOMEM (see "Writes" below). */
ZKV_API int zkv_namespace(zkv_db *db, zkv_ns parent, const void *name, size_t len,
                          zkv_ns *out);

/* ------------------------------------------------------------------------ */
/* Keys                                                                      */

/* Every key function takes a namespace id (ZKV_ESTALE when it is no
 * namespace of this store) and a key of 1..ZKV_MAX_KEY bytes (ZKV_EINVAL_KEY
 * for a NULL or empty key, or a longer one).  An expired key is absent for
 * every function.
 *
 * Writes (zkv_set*, zkv_del, zkv_expire, zkv_incr*, and zkv_namespace when
 * it creates) may also return ZKV_EFULL (no room: see "Memory" above; in a
 * transaction on a shared segment also when its undo log cannot grow into
 * the free room for the write: the store is full for it, and the failed
 * write changed nothing) and ZKV_ENOMEM (this process is out of memory for
 * the undo log of a memory store's transaction, or for its own
 * bookkeeping). */

/* zkv_get: read a key.
 *  [out] out  the value; out->data points into handle-owned memory that stays
 *             valid until the next call on this handle
 * Returns ZKV_OK, ZKV_NOTFOUND, ZKV_EINVAL (out NULL), ZKV_ENOMEM (a shared
 * segment's value is copied out for the caller). */
ZKV_API int zkv_get(zkv_db *db, zkv_ns ns, const void *key, size_t klen, zkv_value *out);

/* zkv_get_ex: zkv_get with options.
 *  [in]  flags  ZKV_GET_STALE: also return a key that has expired but whose
 *               memory was not freed yet (ngx.shared.DICT's get_stale)
 *  [out] stale  1 if the value returned has expired (may be NULL)
 * Returns as zkv_get. */
#define ZKV_GET_STALE 1u
ZKV_API int zkv_get_ex(zkv_db *db, zkv_ns ns, const void *key, size_t klen, unsigned flags,
                       zkv_value *out, int *stale);

/* zkv_get_into: zkv_get with the value's bytes copied into the caller's
 * buffer instead of handle-owned memory (a shared segment's value is copied
 * once, straight from the segment, the copy checked against writers as
 * zkv_get's own copy is).
 *  [in]  buf, cap  where the bytes go (buf may be NULL when cap is 0)
 *  [out] out       the value as zkv_get gives it (type, flags, len, i, f),
 *                  but out->data is buf when out->len <= cap, and NULL when
 *                  the value is longer (nothing copied: call again with a
 *                  larger buffer, or zkv_get)
 * Returns as zkv_get; ZKV_EINVAL also for buf NULL with cap > 0. */
ZKV_API int zkv_get_into(zkv_db *db, zkv_ns ns, const void *key, size_t klen, void *buf,
                         size_t cap, zkv_value *out);

/* Flags for zkv_set. */
#define ZKV_SET_NX 1u       /* store only if no live key exists (else ZKV_EXISTS) */
#define ZKV_SET_XX 2u       /* store only if a live key exists (else ZKV_NOTFOUND) */
#define ZKV_SET_KEEPTTL 4u  /* keep the key's current ttl (ttl_ms is ignored) */
#define ZKV_SET_NOEVICT 8u  /* never evict other keys to make room (else ZKV_EFULL) */
/* count ttl_ms from the coarse clock (as ZKV_EXPIRE_COARSE: the key may
 * expire up to the coarse clock's lag early), as ngx.shared.DICT counts it
 * from nginx's cached time; it spares the precise clock read.  A ttl_ms under
 * 500 counts from the precise clock (one shorter than the lag would leave the
 * key dead on arrival).  A ttl read with ZKV_TTL_COARSE is never more than
 * ttl_ms. */
#define ZKV_SET_COARSE 16u

/* zkv_set: store a value.
 *  [in] v       the value (copied)
 *  [in] ttl_ms  milliseconds to live, 0 = never expires (a previous ttl is dropped)
 *  [in] flags   ZKV_SET_* bits
 * Returns ZKV_OK, ZKV_EXISTS (NX found a live key), ZKV_NOTFOUND (XX found
 * none), ZKV_EINVAL_VALUE (v NULL, a type outside enum zkv_type's ranges,
 * data NULL with len > 0), ZKV_EINVAL_TTL (ttl_ms < 0), and the codes of
 * writes. */
ZKV_API int zkv_set(zkv_db *db, zkv_ns ns, const void *key, size_t klen,
                    const zkv_value *v, int64_t ttl_ms, unsigned flags);

/* zkv_set_ex: zkv_set that also tells whether live keys were evicted (lru)
 * to make room.  [out] forcible  1 if so (may be NULL).  Returns as zkv_set. */
ZKV_API int zkv_set_ex(zkv_db *db, zkv_ns ns, const void *key, size_t klen,
                       const zkv_value *v, int64_t ttl_ms, unsigned flags, int *forcible);

/* zkv_del: remove a key.  A small key's block may be kept a while for a
 * later set of the same key (absent for every function meanwhile; not
 * counted by zkv_stats_get; freed first when the store needs room).
 * Returns ZKV_OK if a live key was removed, ZKV_NOTFOUND, and the codes of
 * writes. */
ZKV_API int zkv_del(zkv_db *db, zkv_ns ns, const void *key, size_t klen);

/* zkv_has: ZKV_OK if a live key exists, else ZKV_NOTFOUND.  Not a use of the
 * key for lru. */
ZKV_API int zkv_has(zkv_db *db, zkv_ns ns, const void *key, size_t klen);

/* zkv_expire: set a new ttl on a live key; ttl_ms == 0 removes its ttl.  Not
 * a use of the key for lru.
 * Returns ZKV_OK, ZKV_NOTFOUND, ZKV_EINVAL_TTL (ttl_ms < 0), and the codes of
 * writes (a key given its first ttl, or losing its last, is rewritten). */
ZKV_API int zkv_expire(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int64_t ttl_ms);

/* zkv_expire_ex: zkv_expire with flags.  ZKV_EXPIRE_COARSE counts the new
 * ttl from the coarse clock (behind the precise one by up to a kernel tick,
 * a few ms, or more on an overloaded machine: the key may expire that much
 * early), as ngx.shared.DICT counts it from nginx's cached time: it spares
 * the precise clock read, about a third of the call; a ttl_ms under 500
 * counts from the precise clock, as with ZKV_SET_COARSE.  Whether the key is
 * live is told as precisely as by zkv_expire.
 * Returns the codes of zkv_expire, and ZKV_EINVAL for an unknown flag. */
#define ZKV_EXPIRE_COARSE 1u
ZKV_API int zkv_expire_ex(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int64_t ttl_ms,
                          unsigned flags);

/* zkv_ttl: milliseconds left.  Not a use of the key for lru.
 *  [out] ms_left  > 0, or -1 for a key without ttl (may be NULL)
 * Returns ZKV_OK or ZKV_NOTFOUND. */
ZKV_API int zkv_ttl(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int64_t *ms_left);

/* zkv_ttl_ex: zkv_ttl with flags.  ZKV_TTL_COARSE counts what is left from
 * the coarse clock, as ngx.shared.DICT counts it from nginx's cached time,
 * unless the key is within a second of its end, where the
 * precise clock tells (so an expired key is never reported); it spares the
 * precise clock read, about a third of the call.  The coarse clock is never
 * ahead of the precise one, and never goes back: of a key whose ttl was
 * counted from it (ZKV_SET_COARSE, ZKV_EXPIRE_COARSE, zkv_incr_num) the ttl
 * read is never more than the one set; of one counted from the precise
 * clock it can be up to the coarse clock's lag (a tick, a few ms) more.
 * Returns the codes of zkv_ttl, and ZKV_EINVAL for an unknown flag. */
#define ZKV_TTL_COARSE 1u
ZKV_API int zkv_ttl_ex(zkv_db *db, zkv_ns ns, const void *key, size_t klen, unsigned flags,
                       int64_t *ms_left);

/* zkv_incr: add `by` to an integer value; a missing key is created holding
 * `by` with ttl_ms (0 = none).  The ttl never changes an existing key.
 *  [out] result  the new value (may be NULL)
 * Returns ZKV_OK, ZKV_ETYPE (the value is not ZKV_T_INT), ZKV_ERANGE (the
 * result would overflow int64 or lie outside [limit_lo, limit_hi]: the value
 * is unchanged), ZKV_EINVAL_TTL (ttl_ms < 0), and the codes of writes.
 * zkv_incr uses the int64 range; zkv_incr_limited lets a host whose numbers
 * are doubles (LuaJIT) ask for +-2^53. */
ZKV_API int zkv_incr(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int64_t by,
                     int64_t ttl_ms, int64_t *result);
ZKV_API int zkv_incr_limited(zkv_db *db, zkv_ns ns, const void *key, size_t klen,
                             int64_t by, int64_t ttl_ms, int64_t limit_lo,
                             int64_t limit_hi, int64_t *result);

/* zkv_incr_num: ngx.shared.DICT's incr over numbers.  The key must hold a
 * ZKV_T_INT or ZKV_T_FLOAT; the result is stored as ZKV_T_INT when it is an
 * integer in +-2^53, else ZKV_T_FLOAT.  A missing key is created holding
 * init + by with init_ttl_ms (counted from the coarse clock, as shdict counts
 * it from nginx's cached time: ZKV_SET_COARSE) when `create` is non-zero,
 * else ZKV_NOTFOUND.  The stored user flags and ttl are kept.
 *  [out] result    the new value (may be NULL)
 *  [out] forcible  (may be NULL) 1 when making room for the created key
 *                  evicted live keys (as zkv_set_ex), else 0
 * Returns ZKV_OK, ZKV_NOTFOUND, ZKV_ETYPE (neither ZKV_T_INT nor
 * ZKV_T_FLOAT), ZKV_EINVAL_TTL (init_ttl_ms < 0), and the codes of writes. */
ZKV_API int zkv_incr_num(zkv_db *db, zkv_ns ns, const void *key, size_t klen, double by,
                         int create, double init, int64_t init_ttl_ms, double *result,
                         int *forcible);

/* Lists (ZKV_T_LIST: ngx.shared.DICT's lists).  A list holds items, each a
 * tag byte ('s' string, 'i' integer in decimal, 'f' float as text) and its
 * payload; an item costs the same to push or pop whatever the list's length.
 * zkv_get of a list returns its encoding: 8 hex digits of item count, then
 * each item as its tag, 8 hex digits of payload length, the payload and the
 * same 8 digits again; zkv_set of a ZKV_T_LIST value in that encoding makes
 * the list (ZKV_EINVAL_VALUE if it does not parse).  A list has at least one
 * item: the last pop removes the key. */

/* zkv_list_push: add the item (tag, and plen bytes of payload, copied) at the
 * head (left != 0) or the tail of the list under key.  A missing (or expired)
 * key becomes a list without ttl; a list keeps its ttl.  Pushes never evict
 * other keys.
 *  [out] count  the list's items after the push (may be NULL)
 * Returns ZKV_OK, ZKV_ETYPE (the key holds another type), ZKV_EINVAL_VALUE
 * (a tag other than 's', 'i', 'f'; payload NULL with plen > 0), ZKV_EFULL,
 * ZKV_ERANGE (2^32 - 1 items already). */
ZKV_API int zkv_list_push(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int left, int tag,
                          const void *payload, size_t plen, uint64_t *count);

/* zkv_list_pop: remove the head (left != 0) or tail item of the list under
 * key.  out->type is ZKV_T_LIST and out->data / out->len the item (tag +
 * payload), in memory owned by the handle until its next call.
 * Returns ZKV_OK, ZKV_NOTFOUND, ZKV_ETYPE. */
ZKV_API int zkv_list_pop(zkv_db *db, zkv_ns ns, const void *key, size_t klen, int left,
                         zkv_value *out);

/* zkv_list_len: the number of items of the list under key.
 * Returns ZKV_OK, ZKV_NOTFOUND (count 0), ZKV_ETYPE. */
ZKV_API int zkv_list_len(zkv_db *db, zkv_ns ns, const void *key, size_t klen, uint64_t *count);

/* ------------------------------------------------------------------------ */
/* Namespace-wide operations                                                 */

/* zkv_count: number of live keys in ns (not in its children).  When no key
 * of ns carries a ttl or was flushed, and no deleted key is kept for reuse,
 * the count is read from the namespace at once; otherwise it costs what the
 * namespace holds, in bounded lock holds: a walk of its keys in steps, as
 * zkv_keys walks (a key present throughout is counted once, keys made
 * meanwhile are not; inside a transaction nobody else writes meanwhile).
 * [out] count (may be NULL; 0 on an error)
 * Returns ZKV_OK, ZKV_ESTALE, ZKV_ETIMEDOUT, ZKV_ECLOSED, ZKV_ECORRUPT. */
ZKV_API int zkv_count(zkv_db *db, zkv_ns ns, uint64_t *count);

/* zkv_clear: remove every key of ns and of the namespaces nested in it.  A
 * stepped walk (see the conventions): an error leaves the steps before it
 * done.  [out] removed  how many live keys were removed (may be NULL; on an
 * error, by the steps done)
 * Returns ZKV_OK, ZKV_ESTALE, ZKV_ETXN, ZKV_ENOMEM. */
ZKV_API int zkv_clear(zkv_db *db, zkv_ns ns, uint64_t *removed);

/* A cursor for zkv_keys.  Zero it (ZKV_CURSOR_INIT) before the first call.
 * It holds no lock and no reference: keys may change between calls. */
typedef struct zkv_cursor {
  uint32_t seq;       /* position: insertion number of the last key returned */
  uint32_t end;       /* insertion number the namespace had when the walk began */
  uint32_t ref;       /* a hint; checked before it is used */
  uint16_t started, done;
} zkv_cursor;
#define ZKV_CURSOR_INIT {0, 0, 0, 0, 0}

/* Called by zkv_keys for each key; the key bytes are valid during the call
 * only.  Return 0 to go on, non-zero to stop early.  It runs holding the
 * store's lock: it must return (no longjmp or exception across it) and must
 * not call into the same store. */
typedef int (*zkv_key_fn)(void *ud, const void *key, size_t klen);

/* zkv_keys: the next batch of up to max live keys of ns, in insertion order
 * (a key keeps its place when its value is replaced).  Takes the lock for one
 * batch only.  A key present throughout a walk is returned exactly once; keys
 * added after the walk began are not returned, so a walk always ends.  A
 * batch passes a bounded number of entries, live or not, so it may hold
 * fewer than max keys, even none, before the end (many expired or
 * flushed keys not yet freed, or a walk finding its place again after the
 * key it stopped at was deleted): call again until cur->done.
 *  [in,out] cur  the walk position; cur->done is set at the end
 *  [out]    n    how many keys were passed to fn (may be NULL)
 * Returns ZKV_OK, ZKV_EINVAL (cur or fn NULL), ZKV_ESTALE. */
ZKV_API int zkv_keys(zkv_db *db, zkv_ns ns, zkv_cursor *cur, size_t max, zkv_key_fn fn,
                     void *ud, size_t *n);

/* zkv_keys_into: zkv_keys with the keys copied, not passed to a callback:
 * the next batch of up to max live keys, back to back into buf, the length
 * of the i-th into lens[i] (lens holds max).  A key that does not fit in
 * what is left of buf ends the batch and is the first of the next one; cap
 * is at least ZKV_MAX_KEY, so that a batch holds at least one key.
 *  [in,out] cur  the walk position, as for zkv_keys
 *  [out]    n    how many keys were copied (may be NULL)
 * Returns ZKV_OK, ZKV_EINVAL (cur, buf or lens NULL, cap < ZKV_MAX_KEY),
 * ZKV_ESTALE, ZKV_ETIMEDOUT, ZKV_ECLOSED, ZKV_ECORRUPT. */
ZKV_API int zkv_keys_into(zkv_db *db, zkv_ns ns, zkv_cursor *cur, size_t max, char *buf,
                          size_t cap, uint32_t *lens, size_t *n);

/* zkv_namespaces: the next batch of up to max child namespaces of ns (not
 * their own children): fn gets each one's name.  Newest first.  The same
 * cursor rules and guarantees as zkv_keys: the lock is taken for one batch
 * only; a child present throughout a walk is passed exactly once; children
 * made after the walk began are not passed.
 *  [in,out] cur  the walk position (zero it first); cur->done is set at the end
 *  [out]    n    how many names were passed to fn (may be NULL)
 * Returns ZKV_OK, ZKV_EINVAL (NULL cur or fn), ZKV_ESTALE, ZKV_ETIMEDOUT,
 * ZKV_ECLOSED, ZKV_ECORRUPT.  The callback must not call into the same handle. */
ZKV_API int zkv_namespaces(zkv_db *db, zkv_ns ns, zkv_cursor *cur, size_t max, zkv_key_fn fn,
                           void *ud, size_t *n);

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */

/* zkv_begin: take the store's lock and open a (possibly nested) transaction.
 * Nested calls on handles of the same store in the same thread join it: the
 * inner level is a savepoint.  Until the outermost zkv_commit, no other
 * thread or process sees the writes or writes itself.  The stepped walks run
 * whole inside a transaction (one lock hold), so that it can undo them.
 * Returns ZKV_OK, ZKV_ENOMEM. */
ZKV_API int zkv_begin(zkv_db *db);

/* zkv_commit: end the innermost level, keeping its writes (they become
 * visible to others when the outermost level ends).
 * Returns ZKV_OK or ZKV_ETXN (no level open in this thread). */
ZKV_API int zkv_commit(zkv_db *db);

/* zkv_rollback: end the innermost level, undoing every write made in it.
 * Returns ZKV_OK or ZKV_ETXN (no level open in this thread). */
ZKV_API int zkv_rollback(zkv_db *db);

/* zkv_txn_depth: how many levels are open on this handle's store by this
 * thread (0 outside a transaction, and for NULL or a closed handle). */
ZKV_API int zkv_txn_depth(const zkv_db *db);

/* ------------------------------------------------------------------------ */
/* Whole store                                                               */

/* The four below and zkv_expire_all are stepped walks (see the conventions):
 * each step holds the lock for a bounded number of keys, so an error (a lock
 * timeout, a damaged segment) leaves the steps before it done, and the count
 * out-parameter says how many they did.  They return ZKV_OK, ZKV_ETXN and
 * ZKV_ENOMEM (see "Writes" above). */

/* zkv_gc: free every expired key now.  [out] freed (may be NULL) */
ZKV_API int zkv_gc(zkv_db *db, uint64_t *freed);

/* zkv_flush: remove every key.  [out] removed  live keys removed (may be NULL) */
ZKV_API int zkv_flush(zkv_db *db, uint64_t *removed);

/* zkv_flush_expired: free up to max expired keys (0 = all). [out] freed (may be NULL) */
ZKV_API int zkv_flush_expired(zkv_db *db, uint64_t max, uint64_t *freed);

/* zkv_flush_expired_ns: the same for the keys of one namespace (not its
 * children).  [out] freed (may be NULL).  Also returns ZKV_ESTALE. */
ZKV_API int zkv_flush_expired_ns(zkv_db *db, zkv_ns ns, uint64_t max, uint64_t *freed);

/* zkv_expire_all: make every live key of ns (not its children) expire now;
 * their memory stays until a sweep, so ZKV_GET_STALE still reads them
 * (ngx.shared.DICT's flush_all).  Keys made while it runs (it works in steps,
 * see above) are kept.  Outside a transaction a key's mark is not undone: a
 * process killed part way through leaves the namespace partly flushed, as an
 * interrupted flush is; inside one, a rollback gives every key back.
 * [out] n  how many (may be NULL).  Also returns ZKV_ESTALE. */
ZKV_API int zkv_expire_all(zkv_db *db, zkv_ns ns, uint64_t *n);

typedef struct zkv_stats {
  uint64_t keys;           /* entries held (live, and expired not yet freed; not deleted ones kept) */
  uint64_t bytes_used;     /* bytes of the arena in use (entries, index, namespaces; not
                            * the blocks of deleted keys kept for reuse) */
  uint64_t capacity;       /* arena limit in bytes; 0 = unbounded */
  uint64_t arena_bytes;    /* bytes mapped now */
  uint64_t free_bytes;     /* bytes free for data: capacity - bytes_used (0 when unbounded) */
  uint64_t evictions;      /* keys evicted by lru */
  uint64_t expired_freed;  /* expired keys freed by sweeps, gc and access */
  uint64_t gc_runs;        /* completed sweeps */
  uint64_t namespaces;     /* namespace records */
  uint64_t buckets;        /* hash index size */
  uint64_t max_lock_ns;    /* this process on this store: the longest lock hold of a gc
                            * step, or with ZKV_TIME_HOLDS of any operation (each step
                            * of a stepped walk is one; a transaction is not timed) */
  uint64_t lock_recoveries;/* times a dead lock holder was recovered from */
  uint64_t size;           /* shared: bytes of the segment (its file, as grown); memory: 0 */
  int evict;               /* the store's policy: ZKV_EVICT_NONE or ZKV_EVICT_LRU */
  const char *path;        /* shared: the segment's file; NULL for a memory store */
  const char *name;        /* shared: the segment's name (the end of path); NULL for memory.
                            * path and name belong to the handle, valid until zkv_close */
  /* Counters of the whole store since it was made, every process's (a
   * shared segment's reads count in a slot of their handle, summed here; the
   * rest in the segment, by the lock holder).  Writes count whether or not a
   * transaction around them commits. */
  uint64_t gets;           /* zkv_get and zkv_get_ex calls that found (hits) or not (misses) */
  uint64_t hits, misses;
  uint64_t sets;           /* writes that stored a value: zkv_set/_ex (ZKV_SET_NX ones that
                            * set), zkv_incr/_limited/_num */
  uint64_t deletes;        /* zkv_del calls that removed a key */
  uint64_t commits;        /* outermost transactions committed (zkv_commit) */
  uint64_t rollbacks;      /* outermost transactions rolled back (zkv_rollback, zkv_close) */
  uint64_t lock_waits;     /* lock takings that had to wait for another holder */
  uint64_t lock_wait_ns;   /* their waits in total (ns) */
  uint64_t lock_wait_max_ns; /* the longest of them (ns) */
} zkv_stats;

/* zkv_stats_get: counters of the store.  Returns ZKV_OK, ZKV_EINVAL (out NULL). */
ZKV_API int zkv_stats_get(zkv_db *db, zkv_stats *out);

/* zkv_space: the capacity and free bytes of zkv_stats_get, alone and cheaper
 * (read without the lock where zkv_get reads without it).  Both are 0 for an
 * unbounded memory store.
 * Returns ZKV_OK, ZKV_EINVAL (a NULL out), ZKV_ECLOSED, ZKV_ETIMEDOUT. */
ZKV_API int zkv_space(zkv_db *db, uint64_t *capacity, uint64_t *free_bytes);

/* zkv_capacity: the capacity of zkv_space alone, cheaper still: one header
 * word read without the lock or a retry (a shared segment's size only grows,
 * a memory store's max_bytes is fixed at open).  A shared segment's capacity
 * grows when any process opens it with a larger size; 0 for an unbounded
 * memory store.  Returns ZKV_OK, ZKV_EINVAL (capacity NULL), ZKV_ECLOSED. */
ZKV_API int zkv_capacity(zkv_db *db, uint64_t *capacity);

/* zkv_capacity_word: for a host that reads a shared segment's capacity without
 * a call: the address of the word that holds the segment's size in bytes, in
 * the segment itself (any process may grow it; it never shrinks), and in
 * *base the bytes of it that are not capacity: zkv_capacity is *word - *base.
 * The word stays at its address until zkv_close(db), and not after.  NULL (and
 * *base 0) for a memory store, whose capacity never changes, for a NULL db,
 * a NULL base or a closed handle. */
ZKV_API const volatile uint64_t *zkv_capacity_word(zkv_db *db, uint64_t *base);

/* zkv_verify: check the store's internal consistency (every block, free
 * list, hash chain, namespace list and counter).  Costs a walk of the whole
 * store under the lock: for tests and diagnosis.
 * Returns ZKV_OK, or ZKV_ECORRUPT with a static description in *why (may be
 * NULL; "ok" on success). */
ZKV_API int zkv_verify(zkv_db *db, const char **why);

/* zkv_now_ms: the monotonic clock the engine uses, in milliseconds. */
ZKV_API int64_t zkv_now_ms(void);

/* zkv_set_clock_offset: tests only: add offset_ms to the engine's clock in
 * this process (0 restores real time). */
ZKV_API void zkv_set_clock_offset(int64_t offset_ms);

/* ------------------------------------------------------------------------ */
/* Snapshots and dump files (src/snapshot.c, src/dumpfile.c)                 */
/*
 * A snapshot is a private copy of a store as it was at one instant: the
 * lock is held only while the arena's bytes are copied (a memcpy of the used
 * part), and the copy is then walked without the lock while other threads
 * and processes go on writing.  A dump file holds a snapshot as JSON lines
 * (docs/snapshots.md is the format's documentation):
 *
 *   {"format":"zeltkv-dump","version":1,"time":1733050000000}
 *   {"ns":["cache"],"key":"user:1","expires":1733053600000,"value":{"name":"ada"}}
 *   {"count":1}
 *
 * Byte strings (names, keys, string values, strings inside tables) are JSON
 * strings; a byte that is not part of valid UTF-8 is written \udcXX (XX the
 * byte, 80..ff), the mapping Python calls "surrogateescape", so that any
 * bytes round-trip and every line stays valid JSON. */

typedef struct zkv_snapshot zkv_snapshot;

/* A byte string: data/len. */
typedef struct zkv_bytes {
  const void *data;
  size_t len;
} zkv_bytes;

/* One key of a snapshot or of a dump file. */
typedef struct zkv_item {
  const zkv_bytes *path;   /* namespace names from the root: path[0..depth-1] */
  size_t depth;            /* 0: the root namespace */
  const void *key;
  size_t klen;
  zkv_value value;         /* type, user flags, bytes (or i / f) */
  int64_t expires_ms;      /* wall clock, ms since 1970-01-01 UTC; 0 = never */
} zkv_item;

/* zkv_snapshot_take: copy the store as it is now.  Takes the lock once to
 * learn the size, allocates (and touches) the copy without it, then takes
 * it again for the copy alone.
 *  [out] out  the snapshot, to free with zkv_snapshot_free; NULL on failure
 * Returns ZKV_OK, ZKV_ETXN (called inside a transaction of this store: its
 * writes are not committed, so no instant holds them), ZKV_ENOMEM,
 * ZKV_ETIMEDOUT, ZKV_ECLOSED, ZKV_ECORRUPT. */
ZKV_API int zkv_snapshot_take(zkv_db *db, zkv_snapshot **out);

typedef struct zkv_snapshot_info {
  uint64_t entries;        /* keys held when taken (expired ones not yet freed
                            * included): an upper bound of what next() gives */
  uint64_t bytes;          /* bytes copied under the lock */
  uint64_t lock_ns;        /* how long the copy held the lock */
  int64_t time_ms;         /* the instant, wall clock ms since 1970 */
} zkv_snapshot_info;

/* zkv_snapshot_info_get: figures of a snapshot. */
ZKV_API void zkv_snapshot_info_get(const zkv_snapshot *snap, zkv_snapshot_info *out);

/* zkv_snapshot_next: the next live key of the snapshot (keys expired at the
 * instant are left out), namespace by namespace, each in insertion order.
 *  [out] out  the key; every pointer in it points into the snapshot and is
 *             valid until the next call
 * Returns ZKV_OK, ZKV_NOTFOUND (no more keys), ZKV_ECORRUPT (the copy does
 * not check out: the store is damaged), ZKV_ENOMEM, ZKV_EINVAL. */
ZKV_API int zkv_snapshot_next(zkv_snapshot *snap, zkv_item *out);

/* zkv_snapshot_free: release a snapshot.  NULL is a no-op. */
ZKV_API void zkv_snapshot_free(zkv_snapshot *snap);

/* A growable byte buffer the functions below append to.  Zero it before the
 * first use; free(buf.data) when done. */
typedef struct zkv_buf {
  char *data;
  size_t len, cap;
} zkv_buf;

/* zkv_value_to_json: append the JSON form of a value (as a dump file's
 * "value" field writes it): a string as a JSON string (escaped as above), an
 * integer as digits, a float with a '.' or an exponent (the shortest form
 * that reads back the same double), a boolean, a table (ZKV_T_JSON) as its
 * JSON with strings escaped as above.
 * Returns ZKV_OK, ZKV_EINVAL_VALUE (the value has no such form: a type other
 * than these, a float that is NaN or infinite, a ZKV_T_JSON text that is not
 * an object or array zeltkv could have stored; out is unchanged), ZKV_ENOMEM. */
ZKV_API int zkv_value_to_json(const zkv_value *v, zkv_buf *out);

/* zkv_value_from_json: read a value from its JSON form (whitespace around
 * it allowed): a JSON string is ZKV_T_STRING, a number without fraction or
 * exponent ZKV_T_INT (int64 range), another number ZKV_T_FLOAT, true/false
 * ZKV_T_BOOL, an object or array ZKV_T_JSON (a table, checked as the Lua
 * API checks one: no null, no NUL inside strings or keys, integers within
 * +-2^53, nesting at most 100 deep).
 *  [out] out      the value; its bytes point into *scratch (whose old
 *                 contents are dropped), valid until scratch changes
 *  [out] why      a static description of what is wrong (may be NULL)
 * Returns ZKV_OK, ZKV_EINVAL_VALUE, ZKV_ENOMEM. */
ZKV_API int zkv_value_from_json(const char *text, size_t len, zkv_value *out, zkv_buf *scratch,
                                const char **why);

/* Called with how far a dump or load has come: done out of total (keys for
 * a dump, bytes of the file read for a load; each of a load's two passes
 * goes from 0 to the file's size). */
typedef void (*zkv_progress_fn)(void *ud, uint64_t done, uint64_t total);

/* A dump file being written.  zkv_dump does all of it; the writer is for
 * hosts that produce the keys themselves (the Redis driver). */
typedef struct zkv_dump_writer zkv_dump_writer;

/* zkv_dump_writer_open: start a dump file at path, or on the open file
 * descriptor fd when path is NULL.  A regular file (or a missing one) at
 * path is written under a temporary name in the same directory (mode 0600)
 * and renamed over path only by zkv_dump_writer_finish, so that a dump that
 * fails never leaves a partial file in place of a good one; anything else at
 * path (a pipe, /dev/null), and fd, are written in place (fd stays open: the
 * writer writes through a duplicate of it).
 *  [in]  time_ms  the instant the dump shows (wall clock ms), for the header
 * Returns ZKV_OK, ZKV_EIO (errno set), ZKV_ENOMEM, ZKV_EINVAL. */
ZKV_API int zkv_dump_writer_open(const char *path, int fd, int64_t time_ms, zkv_dump_writer **out);

/* zkv_dump_writer_add: append a key.  Returns ZKV_OK, ZKV_EINVAL_KEY (an
 * empty or too long key or name), ZKV_EINVAL_VALUE (a type no store can
 * hold), ZKV_EIO, ZKV_ENOMEM. */
ZKV_API int zkv_dump_writer_add(zkv_dump_writer *w, const zkv_item *it);

/* zkv_dump_writer_finish: write the closing line, flush, fsync, rename into
 * place, and free the writer (also on failure, after removing the temporary
 * file).  [out] count  keys written (may be NULL)
 * Returns ZKV_OK or ZKV_EIO (errno set). */
ZKV_API int zkv_dump_writer_finish(zkv_dump_writer *w, uint64_t *count);

/* zkv_dump_writer_abort: drop a dump being written (its temporary file is
 * removed; path is left as it was) and free the writer.  NULL is a no-op. */
ZKV_API void zkv_dump_writer_abort(zkv_dump_writer *w);

/* A dump file being read. */
typedef struct zkv_dump_reader zkv_dump_reader;

/* zkv_dump_reader_open: open a dump file at path, or read the open file
 * descriptor fd when path is NULL (fd stays open), and read its first line.
 * Input that cannot seek (a pipe) is first copied to a temporary file, so
 * that it can be read twice (zkv_dump_reader_rewind).
 *  [out] out  the reader, to close with zkv_dump_reader_close: set on
 *             ZKV_OK and on ZKV_EINVAL_VALUE (so that the error can be
 *             read), NULL otherwise
 * Returns ZKV_OK, ZKV_EINVAL_VALUE (the first line is not a dump header:
 * zkv_dump_reader_error says why), ZKV_EIO (errno set), ZKV_ENOMEM. */
ZKV_API int zkv_dump_reader_open(const char *path, int fd, zkv_dump_reader **out);

/* zkv_dump_reader_next: the next key of the file.
 *  [out] out  the key, pointing into the reader until the next call
 * Returns ZKV_OK, ZKV_NOTFOUND (the closing line was read, its count matched
 * and nothing follows it), ZKV_EINVAL_VALUE (a bad line, or a file that ends
 * without its closing line: zkv_dump_reader_error says which line and why;
 * every later call returns it again), ZKV_EIO, ZKV_ENOMEM. */
ZKV_API int zkv_dump_reader_next(zkv_dump_reader *r, zkv_item *out);

/* zkv_dump_reader_error: "line N: what is wrong" for the last
 * ZKV_EINVAL_VALUE (else ""); valid until the reader is closed.
 *  [out] line  that line number, counting from 1 (may be NULL) */
ZKV_API const char *zkv_dump_reader_error(const zkv_dump_reader *r, uint64_t *line);

/* zkv_dump_reader_time: the header's time (wall clock ms). */
ZKV_API int64_t zkv_dump_reader_time(const zkv_dump_reader *r);

/* zkv_dump_reader_position: the line last read (1 = the header), and bytes
 * read so far out of the file's size. */
ZKV_API void zkv_dump_reader_position(const zkv_dump_reader *r, uint64_t *line,
                                      uint64_t *offset, uint64_t *size);

/* zkv_dump_reader_rewind: go back to the first key.  Returns ZKV_OK, ZKV_EIO. */
ZKV_API int zkv_dump_reader_rewind(zkv_dump_reader *r);

/* zkv_dump_reader_seek: go back to a place zkv_dump_reader_position gave
 * (line: the lines read by then, offset: the bytes read by then); reading
 * goes on with the line after it.  Returns ZKV_OK, ZKV_EIO. */
ZKV_API int zkv_dump_reader_seek(zkv_dump_reader *r, uint64_t offset, uint64_t line);

/* zkv_dump_reader_close: close the reader (removing a temporary copy).
 * NULL is a no-op. */
ZKV_API void zkv_dump_reader_close(zkv_dump_reader *r);

typedef struct zkv_dump_stats {
  uint64_t keys;           /* keys written */
  uint64_t bytes;          /* bytes of arena copied under the lock */
  uint64_t lock_ns;        /* how long the copy held the lock */
  int64_t time_ms;         /* the instant the dump shows (wall clock) */
} zkv_dump_stats;

/* zkv_dump: write the whole store to a dump file (path, or fd when path is
 * NULL: see zkv_dump_writer_open), as it was at one instant
 * (zkv_snapshot_take, then zkv_dump_writer_* without the lock).
 *  [in]  progress  called every few thousand keys (may be NULL)
 *  [out] st        figures (may be NULL)
 * Returns ZKV_OK, or an error of zkv_snapshot_take, zkv_snapshot_next or the
 * writer; the file at path is then left as it was. */
ZKV_API int zkv_dump(zkv_db *db, const char *path, int fd, zkv_progress_fn progress, void *ud,
                     zkv_dump_stats *st);

typedef struct zkv_load_stats {
  uint64_t loaded;         /* keys written */
  uint64_t expired;        /* keys skipped: expired by the time of the load */
  uint64_t line;           /* a failed load: the line that failed; else 0 */
  uint64_t steps;          /* lock holds the writing took */
  uint64_t max_lock_ns;    /* the longest of them */
  char why[256];           /* a failed load: "line N: what" ("" if none) */
} zkv_load_stats;

/* zkv_load: add the keys of a dump file (path, or fd when path is NULL: see
 * zkv_dump_reader_open), all or nothing.
 * The file is read twice: first every line is checked (without the lock;
 * a bad line fails the load before anything is written), then the keys
 * are written in steps of about 1 ms of lock hold each, never evicting
 * (ZKV_SET_NOEVICT).  A key replaced by the load first has its old value
 * kept in this process's memory; if a write fails (a full store), that
 * step is rolled back and the steps already committed are undone, newest
 * first, each key put back unless another writer changed it since.  Other
 * processes can see keys of a load that is still going on (or being
 * undone); an empty namespace the load made may stay (namespaces are never
 * removed).  Keys whose expiry has passed are skipped; the others keep
 * their absolute expiry.  A key listed twice ends with its last value.
 *  [in]  progress  called between steps (may be NULL)
 *  [out] st        figures and, on failure, the line and reason (may be NULL)
 * Returns ZKV_OK, ZKV_EINVAL_VALUE (a bad line, or a value the store cannot
 * hold), ZKV_EFULL, ZKV_EIO, ZKV_ETXN (called inside a transaction),
 * ZKV_ENOMEM, ZKV_ETIMEDOUT, ZKV_ECLOSED, ZKV_ECORRUPT. */
ZKV_API int zkv_load(zkv_db *db, const char *path, int fd, zkv_progress_fn progress, void *ud,
                     zkv_load_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* ZELTKV_H */
