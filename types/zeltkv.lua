---@meta zeltkv
-- LuaLS / EmmyLua annotations of the zeltkv Lua API (docs/reference.md is the manual).
-- Add this directory to `workspace.library` in .luarc.json. Not loaded at run time.
-- spec/12-types_spec.lua checks that every public function, method, option and stats()
-- field of the real module is annotated here, and nothing else.

---A ttl: seconds (a finite number > 0, kept to the millisecond), or `{ ttl = seconds }`.
---@alias zeltkv.TTL number|{ ttl: number }

---What a store holds: strings (any bytes), booleans, numbers, and tables that are arrays
---(keys exactly 1..n) or objects (string keys), nested up to 100 deep.
---@alias zeltkv.Value string|number|boolean|table

---A size in bytes, or a string such as "64k", "64m", "1g".
---@alias zeltkv.Size integer|string

---@class zeltkv.Options
---Seconds between sweeps that free the memory of expired keys; 0: only `kv:gc()` (default 60).
---@field gc_interval? number
---"none": a write that does not fit fails; "lru": the least recently used keys are evicted
---(default "none"; an existing segment keeps its own, and another one given is refused).
---@field evict? "none"|"lru"
---Seconds an atomic() function may hold the lock before it is aborted and undone; 0: no limit
---(default 1).
---@field atomic_timeout? number

---@class zeltkv.MemoryOptions: zeltkv.Options
---Cap on the store's memory (default unbounded).
---@field max_bytes? zeltkv.Size

---@class zeltkv.SharedOptions: zeltkv.Options
---The segment's size (default "64m" when created); larger than an existing segment's grows
---it in place, smaller is refused.
---@field size? zeltkv.Size
---Permission bits of the segment file when this call creates it (default 0600 = 384).
---@field mode? integer
---Seconds to wait for the lock before STORE_OPERATION_FAILED (default 5).
---@field lock_timeout? number
---The directory of the segment file (default $ZELTKV_SHM_DIR, else /dev/shm); a directory on
---disk keeps the segment across reboots (docs/segments.md).
---@field dir? string
---false: open only an existing segment; a missing one is STORE_OPERATION_FAILED (default true).
---@field create? boolean

---Options of zeltkv.redis (docs/redis.md); the options of the other drivers are refused.
---@class zeltkv.RedisOptions
---"redis://[user:password@]host[:port][/db]", "rediss://..." (TLS) or "unix:///path/to/socket"
---(default "redis://127.0.0.1:6379/0").
---@field url? string
---Seed nodes of a Redis Cluster, "host:port" each (instead of url).
---@field cluster? string[]
---AUTH: an ACL user (with password), or the password alone; they override the url's.
---@field username? string
---@field password? string
---The database (standalone only; default 0).
---@field db? integer
---TLS: true, or { cafile?, capath?, verify? (false: no check), server_name?, cert?, key? }.
---@field tls? boolean|{ cafile?: string, capath?: string, verify?: boolean, server_name?: string, cert?: string, key?: string }
---The first part of every key: 1 to 64 characters of A-Z a-z 0-9 . _ - (default "zkv").
---@field prefix? string
---"root": the root namespace is the cluster hash tag; "key": every key its own slot (default "root").
---@field shard? "root"|"key"
---Seconds for connecting and for each reply (default 1).
---@field timeout? number
---Seconds atomic keeps running fn again after conflicts (default 5).
---@field lock_timeout? number
---Idle connections kept per node (plain Lua), or nginx's pool size per worker (default 32).
---@field pool_size? integer
---Seconds an idle cosocket stays in nginx's pool (default 60).
---@field keepalive? number
---nginx: connections that may wait for a pooled one.
---@field backlog? integer

---The error codes, each value the code string itself.
---@class zeltkv.errors
---@field INVALID_TTL "INVALID_TTL"
---@field EMPTY_NAMESPACE "EMPTY_NAMESPACE"
---@field INVALID_VALUE "INVALID_VALUE"
---@field INVALID_KEY "INVALID_KEY"
---@field STORE_OPERATION_FAILED "STORE_OPERATION_FAILED"

---@alias zeltkv.ErrorCode "INVALID_TTL"|"EMPTY_NAMESPACE"|"INVALID_VALUE"|"INVALID_KEY"|"STORE_OPERATION_FAILED"

---What every failing call raises when a pcall or xpcall catches it (uncaught, it is the string
---"FILE:LINE: zeltkv: CODE: message"); `tostring(err)` is "zeltkv: CODE: message".
---@class zeltkv.Error
---@field code zeltkv.ErrorCode
---@field message string
---STORE_OPERATION_FAILED only: "full", "timeout", "closed", "damaged", "version", "permission",
---"system", "memory", "transaction" (the Redis driver: "connection", "conflict").
---@field reason? string

---What `kv:stats()` returns (a fresh table).
---@class zeltkv.Stats
---@field driver "memory"|"shared"
---Keys held: live ones, and expired ones not freed yet.
---@field keys integer
---Bytes of the store in use.
---@field bytes_used integer
---The most bytes the store may use; nil for an unbounded memory store.
---@field capacity? integer
---capacity - bytes_used; nil when capacity is.
---@field free_bytes? integer
---Bytes mapped now.
---@field arena_bytes integer
---Namespace records, the root included.
---@field namespaces integer
---Size of the hash index.
---@field buckets integer
---Keys evicted by evict = "lru".
---@field evictions integer
---Expired keys whose memory was freed.
---@field expired_freed integer
---Completed sweeps.
---@field gc_runs integer
---The longest sweep step this handle ran holding the lock, in nanoseconds.
---@field max_lock_ns integer
---Times a dead lock holder was recovered from.
---@field lock_recoveries integer
---The store's eviction policy.
---@field evict "none"|"lru"
---Shared: the segment's name, its file, and its size in bytes (as grown).
---@field name? string
---@field path? string
---@field size? integer
---get() calls, those that found the key, and those that did not (every process's).
---@field gets integer
---@field hits integer
---@field misses integer
---Writes that stored a value (set, setnx that set, incr), deletes that removed a key.
---@field sets integer
---@field deletes integer
---Outermost atomic() calls committed, and rolled back (fn raised, or ran out of time).
---@field commits integer
---@field rollbacks integer
---Lock takings that waited for another holder, their waits in total and the longest (ns).
---@field lock_waits integer
---@field lock_wait_ns integer
---@field lock_wait_max_ns integer

---@class zeltkv
---The version of the module, such as "0.1.0".
---@field version string
---The error codes.
---@field errors zeltkv.errors
local zeltkv = {}

---A driver for a store in this process.
---@param opts? zeltkv.MemoryOptions
---@return zeltkv.Driver
function zeltkv.memory(opts) end

---A driver for the store in the shared-memory segment `name` (created if absent), seen by
---every process that opens the name.
---@param name string 1 to 128 characters of A-Z a-z 0-9 . _ -
---@param opts? zeltkv.SharedOptions
---@return zeltkv.Driver
function zeltkv.shared(name, opts) end

---A driver for a store on a Redis (7.0+) or Valkey server, standalone or cluster, from plain
---Lua (LuaSocket) and inside nginx (cosockets).  Connects on first use.
---@param opts? zeltkv.RedisOptions
---@return zeltkv.Driver
function zeltkv.redis(opts) end

---The driver's stats() in the Prometheus text format (a string ending in a newline); kv may
---also be a list of { driver, labels } pairs, rendered as one exposition.
---@param kv zeltkv.Driver|{ [1]: zeltkv.Driver, [2]?: table<string, string|number> }[]
---@param labels? table<string, string|number> label names to values, on every sample
---@return string text
function zeltkv.prometheus(kv, labels) end

---Removes the segment `name` (in opts.dir when given); true if it existed.
---@param name string
---@param opts? { dir?: string }
---@return boolean existed
function zeltkv.unlink(name, opts) end

---A driver: what zeltkv.memory() and zeltkv.shared() return.
---@class zeltkv.Driver
local Driver = {}

---The store of the namespace `name` at the top of this driver.
---@param name string
---@return zeltkv.Store
function Driver:namespace(name) end

---An iterator over the names of the namespaces at the top of this driver, as
---Store:namespaces() is over a namespace's children.
---@return fun(): string|nil
function Driver:namespaces() end

---Calls fn(kv, ...) holding the store's lock; all of fn's writes are kept, or none if it
---raises (the error is raised again). Returns what fn returns.
---@generic R
---@param fn fun(kv: zeltkv.Driver, ...: any): R
---@param ... any
---@return R
function Driver:atomic(fn, ...) end

---Frees the memory of every expired key now; returns how many.
---@return integer freed
function Driver:gc() end

---Counters of the store.
---@return zeltkv.Stats
function Driver:stats() end

---Removes every key of every namespace; returns how many live keys it removed.
---@return integer removed
function Driver:flush() end

---Writes the whole store to a dump file (JSON lines, docs/snapshots.md) as it was at one
---instant; the lock is held only to copy the store. A progress bar is drawn on stderr when
---it is a terminal, unless opts.progress is false.
---@param dst string|file* a path (a regular file is replaced only when complete), or an open file
---@param opts? { progress?: boolean }
---@return integer keys
---@return { lock_ms: number, bytes: integer, seconds: number } info
function Driver:dump(dst, opts) end

---Adds the keys of a dump file, all or nothing: a bad line or a full store changes nothing
---and the error names the line. Keys already expired are skipped.
---@param src string|file* a path, or an open file
---@param opts? { progress?: boolean }
---@return integer loaded
---@return { expired: integer, steps: integer, max_lock_ms: number, seconds: number } info
function Driver:load(src, opts) end

---Releases the driver (idempotent; also on __gc and __close). Any later use raises
---STORE_OPERATION_FAILED ("closed"), whatever the arguments.
function Driver:close() end

---A store: one namespace of a driver.
---@class zeltkv.Store
local Store = {}

---The value at key, or nil when absent or expired (tables: a fresh copy).
---@param key string|integer
---@return zeltkv.Value|nil
function Store:get(key) end

---Stores value at key; without a ttl the key never expires.
---@param key string|integer
---@param value zeltkv.Value
---@param ttl? zeltkv.TTL
---@return true
function Store:set(key, value, ttl) end

---Removes key; true if a live key was removed.
---@param key string|integer
---@return boolean
function Store:del(key) end

---True if a live key exists.
---@param key string|integer
---@return boolean
function Store:has(key) end

---Gives a live key a new ttl; false (and nothing created) when absent.
---@param key string|integer
---@param ttl zeltkv.TTL
---@return boolean
function Store:expire(key, ttl) end

---Seconds left (a float > 0); math.huge without a ttl; nil when absent.
---@param key string|integer
---@return number|nil
function Store:ttl(key) end

---Adds by (default 1) to the integer at key and returns the new value; a missing key is
---created holding by, with the ttl (which never extends an existing key).
---@param key string|integer
---@param by? integer
---@param ttl? zeltkv.TTL
---@return integer
function Store:incr(key, by, ttl) end

---Stores only if no live key exists; true if it stored.
---@param key string|integer
---@param value zeltkv.Value
---@param ttl? zeltkv.TTL
---@return boolean
function Store:setnx(key, value, ttl) end

---A child namespace.
---@param name string
---@return zeltkv.Store
function Store:namespace(name) end

---Calls fn(s, ...) holding the lock of the store's driver (see zeltkv.Driver.atomic).
---@generic R
---@param fn fun(s: zeltkv.Store, ...: any): R
---@param ... any
---@return R
function Store:atomic(fn, ...) end

---An iterator over the keys of this namespace (not its children).
---@return fun(): string|nil
function Store:keys() end

---An iterator over the names of this namespace's child namespaces (not their children).
---@return fun(): string|nil
function Store:namespaces() end

---The number of live keys of this namespace (not its children).
---@return integer
function Store:count() end

---Removes every key of this namespace and of its nested namespaces; returns how many.
---@return integer
function Store:clear() end

---This store with the interface of ngx.shared.DICT.
---@return zeltkv.ShDict
function Store:shdict() end

---The ngx.shared.DICT interface of a store (store:shdict()): shdict's arguments, results and
---error strings. `exptime` is in seconds, 0 = never; `flags` a user number.
---@class zeltkv.ShDict
local ShDict = {}

---@param key string|number
---@return any value, integer|string|nil flags_or_err
function ShDict:get(key) end

---@param key string|number
---@return any value, integer|string|nil flags_or_err, boolean? stale
function ShDict:get_stale(key) end

---@param key string|number
---@param value any
---@param exptime? number
---@param flags? integer
---@return boolean ok, string|nil err, boolean forcible
function ShDict:set(key, value, exptime, flags) end

---@param key string|number
---@param value any
---@param exptime? number
---@param flags? integer
---@return boolean ok, string|nil err
function ShDict:safe_set(key, value, exptime, flags) end

---@param key string|number
---@param value any
---@param exptime? number
---@param flags? integer
---@return boolean ok, string|nil err, boolean forcible
function ShDict:add(key, value, exptime, flags) end

---@param key string|number
---@param value any
---@param exptime? number
---@param flags? integer
---@return boolean ok, string|nil err
function ShDict:safe_add(key, value, exptime, flags) end

---@param key string|number
---@param value any
---@param exptime? number
---@param flags? integer
---@return boolean ok, string|nil err, boolean forcible
function ShDict:replace(key, value, exptime, flags) end

---@param key string|number
---@return boolean ok, string|nil err
function ShDict:delete(key) end

---@param key string|number
---@param value number
---@param init? number
---@param init_ttl? number
---@return number|nil new_value, string|nil err, boolean? forcible
function ShDict:incr(key, value, init, init_ttl) end

---@param key string|number
---@param value string|number
---@return integer|nil length, string|nil err
function ShDict:lpush(key, value) end

---@param key string|number
---@param value string|number
---@return integer|nil length, string|nil err
function ShDict:rpush(key, value) end

---@param key string|number
---@return string|number|nil value, string|nil err
function ShDict:lpop(key) end

---@param key string|number
---@return string|number|nil value, string|nil err
function ShDict:rpop(key) end

---@param key string|number
---@return integer|nil length, string|nil err
function ShDict:llen(key) end

---@param key string|number
---@return number|nil ttl, string|nil err
function ShDict:ttl(key) end

---@param key string|number
---@param exptime number
---@return boolean|nil ok, string|nil err
function ShDict:expire(key, exptime) end

function ShDict:flush_all() end

---@param max_count? integer
---@return integer flushed
function ShDict:flush_expired(max_count) end

---@param max_count? integer 0 = all (default 1024)
---@return string[]
function ShDict:get_keys(max_count) end

---@return number bytes
function ShDict:capacity() end

---@return number bytes
function ShDict:free_space() end

---The module `require("zeltkv.shdict")`: the ngx.shared.DICT drop-in.
---@class zeltkv.shdict
---@field _VERSION string
local shdict = {}

---The ngx.shared.DICT interface of a store (the same as store:shdict()).
---@param store zeltkv.Store
---@return zeltkv.ShDict
function shdict.new(store) end

---@class zeltkv.ZoneOptions
---"reload" (default): empty at each nginx start, kept across reloads and binary upgrades;
---"restart": kept across restarts too.
---@field keep? "reload"|"restart"
---"lru" (default) or "none".
---@field evict? "none"|"lru"
---The segment's name (default: made from the nginx prefix, configuration file and the name).
---@field segment? string
---@field mode? integer
---@field lock_timeout? number
---@field gc_interval? number

---In init_by_lua*: makes ngx.shared[name] a zeltkv dict over a shared segment of `size`, as
---`lua_shared_dict name size;` would, and returns it.
---@param name string
---@param size zeltkv.Size
---@param opts? zeltkv.ZoneOptions
---@return zeltkv.ShDict
function shdict.zone(name, size, opts) end

return zeltkv
