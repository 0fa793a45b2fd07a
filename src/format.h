/*
 * format.h -- the bytes of a zeltkv segment: everything a store holds, laid
 * out in one arena that any process maps at any address.
 *
 *   ANY CHANGE TO A LAYOUT BELOW (a field added, removed, moved, resized, a
 *   constant whose value is stored or relied on) BUMPS ZKV_FORMAT.  A library
 *   refuses a segment of another format (ZKV_EVERSION) instead of reading it
 *   wrong; the static assertions at the end catch a layout that moved without
 *   the code that relies on it following.
 *
 * Nothing inside the arena is a pointer: blocks refer to each other by "refs",
 * offsets in 8-byte units (0 = none), so the bytes mean the same at any
 * address, in any process, after mremap moves them.
 *
 *   [hdr] [counter slots (shared)] [undo log region: log_cap bytes]
 *   [heap: blocks ... top) [never used)
 *
 * The undo log of a shared segment starts in its fixed region and, inside a
 * transaction, goes on in log chunks: heap blocks taken from the free room
 * (struct log_chunk below), chained from the header (log_chunk), freed when
 * the transaction ends; so a transaction is as big as the free room allows.
 *
 * Fields marked HINT are not restored by a rollback or by crash recovery
 * (they are written without the undo log, and nothing relies on their exact
 * value); everything else in the header and in allocated blocks is, byte for
 * byte.
 */
#ifndef ZKV_FORMAT_H
#define ZKV_FORMAT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define ZKV_MAGIC "ZELTKV\0\1"
#define ZKV_FORMAT 10u
#define UNIT 8u
typedef uint32_t ref_t;

/* ---- blocks (alloc.c) ------------------------------------------------------ */
/* Every block starts with a u32 header: size in units << 2 | flags.  A free
 * block also keeps its size in its last u32 (footer), so that freeing its
 * right-hand neighbour can coalesce backwards, and (when 2 units or more) list
 * links: u32 next at byte 4, u32 prev at byte 8.  Free blocks of 1 unit are on
 * no list; coalescing reclaims them. */
#define BLK_FREE 1u
#define BLK_PREVFREE 2u
/* the tags a free block keeps at its start, logged as one record when they
 * change: the header and the two links (2 units or more), or the whole block
 * (1 unit) */
#define FREE_TAGS_BYTES (3 * sizeof(uint32_t))
#define FREE1_TAGS_BYTES UNIT
#define BLK_UNITS(h) ((h) >> 2)
#define NCLASS 96        /* free lists: 0..63 exact sizes in units, then log2 classes */

/* ---- entries (index.c) ----------------------------------------------------- */
/* An entry (a key, or a namespace record) is one allocated block:
 *   ent header (30 bytes) [int64 expires_ms if EF_EXP] [u32 uflags if EF_UFLAGS]
 *   key bytes, value bytes, slack (0..7 bytes, its size in flags)
 * Namespace records (type T_NSREC) hold a struct nsdata at byte NS_DATA_OFF
 * and their name (as key) after it. */
typedef struct ent {
  uint32_t blk;       /* allocator header */
  uint32_t hnext;     /* next in hash chain */
  uint32_t nprev;     /* namespace key list (sibling list for ns records) */
  uint32_t nnext;
  uint32_t ns;        /* namespace record ref (the parent, for ns records) */
  uint32_t seq;       /* insertion number in its namespace: keys() order */
  uint16_t klen;
  uint16_t atime;     /* HINT: lru stamp of the last use; a deleted key's ring slot (not a hint) */
  uint8_t type;       /* enum zkv_type, or T_NSREC */
  uint8_t flags;      /* EF_* | slack << 5 */
} __attribute__((packed)) ent;

#define ENT_HDR 30u
#define EF_EXP 1u
#define EF_UFLAGS 2u
#define EF_FLUSHED 4u   /* expired now by zkv_expire_all, whatever its ttl said (its
                         * namespace's nttl does not count it for that: nsdata) */
#define EF_DELETED 8u   /* deleted, its block kept for a while (index.c, "deleted keys") */
#define EF_SLACK(f) ((f) >> 5)
#define T_NSREC 255u
#define T_LNODE 254u    /* an item of a list (deque.c): in no hash chain and no key list */

/* the value of a ZKV_T_LIST entry: its items are nodes (blocks laid out as an
 * entry header of type T_LNODE whose value is a tag byte and the payload),
 * linked through nprev / nnext (deque.c) */
typedef struct lhead {
  uint32_t count;        /* items, >= 1 (a list without items is no key) */
  ref_t first, last;
  uint32_t units;        /* of its nodes' blocks */
} __attribute__((packed)) lhead;   /* a value: at any offset of its entry */

/* the ring of kept deleted keys: a block of NDEAD refs after RING_OFF bytes */
#define NDEAD 2048u
#define RING_OFF 8u
#define DEAD_MAX_BYTES 256u   /* larger blocks are freed at once */

typedef struct nsdata {
  uint32_t head, tail;   /* key list, in seq order */
  uint32_t child;        /* first child namespace record */
  uint32_t next_seq;
  uint64_t nkeys;        /* entries in the list (live or expired) */
  uint64_t nttl;         /* of which carry an expiry (EF_FLUSHED or not) */
  uint32_t tag;          /* random: tells a live record from a reused block */
  /* zkv_expire_all bumps `flushes` before each step's first EF_FLUSHED flag
   * (the flags themselves need no undo record then: ops.c); a flush_expired
   * walk that went through the whole list sets `swept` to it.  While they
   * differ, some key of the list may be flushed. */
  uint16_t flushes, swept;
} nsdata;
#define NS_DATA_OFF 32u
/* the bucket array is a block too: its refs start after BUCKETS_OFF bytes */
#define BUCKETS_OFF 8u
/* hdr.ocursor's top bit: the index moves to an array of the same size (a
 * cursor is at most 2^30 buckets, so the bit is free) */
#define OC_MOVING 0x80000000u
/* the buckets of the old array of an index of nb, and whether its cursor is
 * in range (checks of a header read from a segment) */
#define OLD_NB(h, nb) (((h)->ocursor & OC_MOVING) ? (nb) : (nb) / 2)
#define OCURSOR_OK(h, nb) (((h)->ocursor & ~OC_MOVING) <= OLD_NB(h, nb))

/* ---- the arena header ------------------------------------------------------ */
typedef struct hdr {
  char magic[8];
  uint32_t format;
  uint32_t hdr_bytes;
  uint64_t size;           /* bytes of the arena (the file size, for shared); memory:
                            * the mapping, which a rollback does not shrink */
  uint64_t capacity;       /* data limit in bytes, 0 = unbounded */
  _Atomic uint32_t ready;  /* 1 once the creator finished */
  uint32_t evict;
  uint32_t shared;
  uint32_t pad0;
  /* The lock has a cache line of its own: a waiter spinning on it must not
   * pull away the line the holder keeps writing (seq, log_used). */
  char pad1[16];
  _Atomic uint32_t lock;   /* shared driver: 0, or the holder's thread id | LOCK_WAITERS (txn.c) */
  uint32_t pad2a;
  /* HINT counters a holder writes just after taking the lock (its line is the
   * holder's then): waits that found it taken, their ns in total and the
   * longest (txn.c) */
  uint64_t lock_waits, lock_wait_ns, lock_wait_max_ns;
  char pad2[28];
  _Atomic uint64_t seq;    /* odd while a writer is changing the arena (seqlock) */
  uint64_t log_used;       /* bytes of undo log in use; 0 = committed */
  /* HINT counters of the holder, on the line it writes anyway (ops.c, txn.c):
   * writes that stored a value, deletes that removed a key, outermost
   * transaction ends; and the reads counted in slots since released */
  uint64_t sets, deletes, commits, rollbacks;
  uint64_t retired_hits, retired_misses;
  /* allocator */
  uint64_t heap_start;     /* bytes */
  uint64_t top;            /* bytes: first byte never allocated */
  uint64_t bytes_used;     /* bytes in allocated blocks */
  uint64_t fixed_bytes;    /* of which blocks that are not keys: the index arrays, the
                            * deleted-key ring, namespace records (room.c: what no
                            * eviction can give back) */
  uint64_t class_bits[2];  /* non-empty free lists */
  ref_t free_heads[NCLASS];
  /* index: while it grows, `obuckets` is the old array (half the size), whose
   * buckets [0, ocursor) have moved to the new one; while it moves (ocursor
   * has OC_MOVING set: compaction, room.c), the old array is of the same
   * size and its buckets [0, ocursor & ~OC_MOVING) are copied (index.c) */
  ref_t buckets;
  uint32_t nb_log2;
  ref_t obuckets;          /* 0 when neither growing nor moving */
  uint32_t ocursor;
  uint64_t nentries;       /* entries in the index (keys + ns records) */
  uint64_t nkeys;
  ref_t root_ns;
  uint32_t pad3;
  uint64_t nns;
  /* undo log (shared driver: in the arena).  Log positions (log_used, the
   * marks of txn.c) count bytes from the start of the log; the window is
   * the part the next record goes into: position p lies at arena byte
   * log_bias + p for p < log_end (modulo 2^64: a chunk may lie lower in the
   * arena than its positions).  The window is the fixed region
   * [log_off, log_off + log_cap) when log_chunk is 0, else that chunk; it is
   * derived from log_chunk (log.c, log_window) and rewritten from it by
   * crash recovery, never trusted alone. */
  uint64_t log_bias, log_end;
  ref_t log_chunk;         /* the last chunk of the log in use (0: none) */
  ref_t log_ahead;         /* chunks allocated ahead, not yet in use (linked by next) */
  ref_t log_spare;         /* chunks of a log already committed, still to free */
  uint32_t pad4;
  uint64_t log_off, log_cap;   /* the fixed region */
  /* stats */
  uint64_t evictions, expired_freed, gc_runs, lock_recoveries;
  uint64_t lru_clock;      /* HINT (memory reads count without the log): write ops, the lru age unit */
  /* sweep */
  uint32_t gc_active, gc_cursor;
  int64_t gc_next_ms;
  /* deleted keys whose blocks are kept (index.c, idx_bury) */
  uint64_t ndead;          /* how many */
  uint64_t dead_bytes;     /* their blocks' bytes (not counted as used by stats) */
  uint32_t dead_next;      /* the ring slot the next one takes */
  ref_t dead_ring;         /* block of NDEAD refs (after RING_OFF bytes), made with the store;
                            * a deleted key's slot is its atime */
  /* items of lists that are gone, linked through nnext, freed in steps (deque.c) */
  ref_t lgarb;
  uint32_t pad5;
  uint64_t lgarb_n, lgarb_units;
  /* making room in steps (room.c): an allocated block that grows until the
   * write of the thread room_owner fits in it; 0 = none */
  ref_t room_res;
  uint32_t room_owner;     /* a thread id, as the lock word holds it */
} hdr;

/* ---- counter slots (shared driver, arena.c) -------------------------------- */
/* Reads that take no lock count into a slot of their handle, a cache line no
 * other process writes; stats() sums the slots.  A handle takes a free slot
 * (pid 0, one compare-and-swap); slots of processes that died are folded into
 * retired_hits/misses under the lock and taken again.  Slot 0 is shared by the
 * handles that found none: they add atomically. */
#define NSLOTS 128u
typedef struct ctr_slot {
  _Atomic uint32_t pid;    /* the owner's process id; 0 = free */
  uint32_t pad;
  _Atomic uint64_t hits, misses;
  char pad2[40];
} ctr_slot;
#define SLOTS_OFF ((sizeof(hdr) + 63) / 64 * 64)
#define SLOTS_BYTES (NSLOTS * sizeof(ctr_slot))

/* ---- undo log records (log.c) ---------------------------------------------- */
/* A record is the old bytes, padded to 8, followed by an 8-byte trailer
 * (offset << REC_LEN_BITS | length), so the log is walked backwards from its
 * end; crash recovery reads it from the segment. */
#define REC_LEN_BITS 24
#define REC_MAX ((1ull << REC_LEN_BITS) - 1)

/* A log chunk: an allocated heap block whose bytes after this header hold
 * the log positions [vbase, vbase + its bytes - LOG_CHUNK_HDR).  No record
 * spans two chunks (a long one is split; a chunk starts where the records
 * before it end).  Chunks are allocated ahead, where the heap is whole
 * (txn.c, log_room): the allocation and the push on the log_ahead list are
 * logged, so undoing the log past them gives the block back.  A record that
 * finds its window full moves the window to the first chunk ahead (header
 * stores only: safe anywhere), logging the list's change as the new window's
 * first record.  A chunk's own bytes are never logged: it is taken only from
 * free room that holds nothing a rollback needs. */
typedef struct log_chunk {
  uint32_t blk;            /* allocator header */
  ref_t prev;              /* in use: the chunk before (0: the fixed region) */
  ref_t next;              /* ahead: the next chunk ahead */
  uint32_t magic;          /* LOG_CHUNK_MAGIC: tells a chunk from a damaged ref */
  uint64_t vbase;          /* in use: its first log position */
} log_chunk;
#define LOG_CHUNK_HDR 24u
#define LOG_CHUNK_MAGIC 0x474f4c5au   /* "ZLOG" */

/* ---- what the code relies on ----------------------------------------------- */
/* bytes from field a to the end of field b of a struct: one undo record for
 * adjacent fields (LOG_SPAN in internal.h), never a length counted by hand */
#define SPAN(T, a, b) (offsetof(T, b) + sizeof(((T *)0)->b) - offsetof(T, a))

_Static_assert(FREE_TAGS_BYTES + sizeof(uint32_t) <= 2 * UNIT && FREE1_TAGS_BYTES == UNIT,
               "a free block of 2 units holds its tags and its footer");
_Static_assert(sizeof(ent) == ENT_HDR, "ent is packed to ENT_HDR bytes");
_Static_assert(offsetof(ent, blk) == 0, "an entry starts with its block header");
_Static_assert(offsetof(ent, hnext) == 4, "hash chains are followed through byte 4 of a block");
_Static_assert(offsetof(ent, nnext) == offsetof(ent, nprev) + 4 &&
               offsetof(ent, ns) == offsetof(ent, nnext) + 4 &&
               offsetof(ent, seq) == offsetof(ent, ns) + 4,
               "a move in a key list logs nprev..seq as one span");
_Static_assert(offsetof(ent, type) == offsetof(ent, atime) + 2 &&
               offsetof(ent, flags) == offsetof(ent, type) + 1,
               "atime, type and flags are logged as one span");
_Static_assert(offsetof(ent, klen) == offsetof(ent, seq) + 4 &&
               offsetof(ent, atime) == offsetof(ent, klen) + 2,
               "a key written back in place logs nprev..flags as one span (idx_revive)");
_Static_assert(NS_DATA_OFF >= ENT_HDR && NS_DATA_OFF % 8 == 0, "nsdata follows the ent header, aligned");
_Static_assert(sizeof(lhead) == 16, "lhead layout");
_Static_assert(sizeof(nsdata) == 40 && offsetof(nsdata, nttl) == 24, "nsdata layout");
_Static_assert(UNIT == 8 && BUCKETS_OFF >= 4 && RING_OFF >= 4, "refs are 8-byte units after a block header");
_Static_assert(NDEAD <= 65536, "a deleted key's ring slot fits in its 16-bit atime");
_Static_assert(offsetof(hdr, lock) % 64 == 0, "the lock word starts a cache line");
_Static_assert(offsetof(hdr, seq) % 64 == 0 && offsetof(hdr, seq) >= offsetof(hdr, lock) + 64,
               "seq starts a cache line of its own, apart from the lock's");
_Static_assert(offsetof(hdr, log_used) / 64 == offsetof(hdr, seq) / 64,
               "seq and log_used share the holder's cache line");
_Static_assert(offsetof(hdr, heap_start) >= offsetof(hdr, seq) + 64, "the allocator fields follow seq's line");
_Static_assert(offsetof(hdr, nkeys) == offsetof(hdr, nentries) + 8, "nentries and nkeys are logged as one span");
_Static_assert(offsetof(hdr, nb_log2) == offsetof(hdr, buckets) + 4 &&
               offsetof(hdr, obuckets) == offsetof(hdr, nb_log2) + 4 &&
               offsetof(hdr, ocursor) == offsetof(hdr, obuckets) + 4,
               "buckets, nb_log2, obuckets and ocursor are logged as one span");
_Static_assert(offsetof(hdr, gc_cursor) == offsetof(hdr, gc_active) + 4, "gc_active and gc_cursor are logged as one span");
_Static_assert(offsetof(hdr, dead_bytes) == offsetof(hdr, ndead) + 8 &&
               offsetof(hdr, dead_next) == offsetof(hdr, dead_bytes) + 8,
               "ndead, dead_bytes and dead_next are logged as one span");
_Static_assert(offsetof(hdr, lgarb_units) == offsetof(hdr, lgarb_n) + 8 &&
               offsetof(hdr, lgarb_n) == offsetof(hdr, lgarb) + 8,
               "lgarb, lgarb_n and lgarb_units are logged as one span");
_Static_assert(offsetof(hdr, room_owner) == offsetof(hdr, room_res) + 4,
               "room_res and room_owner are logged as one span");
_Static_assert(sizeof(hdr) % UNIT == 0, "the header is a whole number of units");
_Static_assert(sizeof(ctr_slot) == 64, "a counter slot is one cache line");
_Static_assert(offsetof(hdr, lock_waits) / 64 == offsetof(hdr, lock) / 64 &&
               offsetof(hdr, lock_wait_max_ns) / 64 == offsetof(hdr, lock) / 64,
               "the lock-wait counters share the lock's line");
_Static_assert(offsetof(hdr, retired_misses) / 64 == offsetof(hdr, seq) / 64,
               "the holder's counters share seq's line");
_Static_assert(sizeof(log_chunk) == LOG_CHUNK_HDR && LOG_CHUNK_HDR % UNIT == 0,
               "a chunk's records start after its header, aligned");
_Static_assert(offsetof(hdr, log_chunk) / 64 == offsetof(hdr, log_end) / 64 &&
               offsetof(hdr, log_bias) / 64 == offsetof(hdr, log_end) / 64,
               "the window and the chunk refs share a line (log_write, release)");
_Static_assert(REC_LEN_BITS + 40 <= 64, "a log trailer holds a 40-bit offset");

#endif
