/*
 * snapshot.c (binding) -- kv:dump and kv:load, the JSON form of values for the
 * zkv command, dump files for pure-Lua drivers, and the progress bar.
 *
 *   kv:dump(path | file [, opts])  -> n, { lock_ms, bytes, seconds }
 *   kv:load(path | file [, opts])  -> n, { expired, steps, max_lock_ms, seconds }
 *       file: an open Lua file (io.stdout, io.stdin); opts.progress: false to
 *       never draw the progress bar (drawn on stderr when it is a terminal and
 *       the call has run for half a second)
 *   core._json(type, text)      -> the JSON form (dump files' form) of a value
 *                                  given as core._encode gives it
 *   core._json_decode(text)     -> the value a JSON form stands for
 *   core._dump_writer(path | file, time_ms) -> w; w:add(names, key, type, text,
 *                                  expires_ms [, flags]); w:finish() -> n; w:abort()
 *   core._dump_reader(path | file) -> r; r:next() -> names, key, value,
 *                                  expires_ms, flags (nil at the end);
 *                                  r:rewind(); r:position() -> line, offset, size;
 *                                  r:seek(offset, line); r:close()
 *   core._progress(label, done, total [, bytes]) the bar, for pure-Lua drivers;
 *                                  core._progress() ends it
 *   core._isatty(fd), core._wall_ms(), core._segments(dir) -> sorted names of the
 *                                  segments in dir
 *   core._file_times(path) -> size, atime_ms, mtime_ms; core._set_file_times(path,
 *                                  atime_ms, mtime_ms): a segment's last open (zkv list)
 *
 * The engine does the work (src/snapshot.c, src/dumpfile.c); this file turns
 * its results and errors into Lua ones.
 */
#define _GNU_SOURCE 1 /* first: clock_gettime, fileno, strdup beyond C11 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>    /* AT_FDCWD */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lualib.h>   /* LUA_FILEHANDLE (5.1 and LuaJIT keep it here) */

#include "binding.h"

#define WRITER_MT "zeltkv.DumpWriter"
#define READER_MT "zeltkv.DumpReader"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the progress bar --------------------------------------------------------- */
/* One bar at a time (a process draws one on its terminal); drawn only when
 * stderr is a terminal and the work has gone on for BAR_DELAY seconds
 * ($ZELTKV_PROGRESS_DELAY overrides it: the tests draw at once). */

#define BAR_DELAY 0.5
#define BAR_EVERY 0.1
#define BAR_WIDTH 30

typedef struct Bar {
  const char *label;
  int bytes;           /* done/total are bytes (else keys) */
  int on;              /* may draw */
  int shown;           /* has drawn */
  int pass;            /* a load reads its file twice */
  uint64_t last_done;
  double t0, last;
  double delay;
} Bar;

static Bar bar;

static void bar_start(const char *label, int bytes, int on) {
  memset(&bar, 0, sizeof bar);
  bar.label = label;
  bar.bytes = bytes;
  bar.on = on && isatty(2);
  bar.t0 = now_s();
  const char *d = getenv("ZELTKV_PROGRESS_DELAY");
  bar.delay = d && *d ? strtod(d, NULL) : BAR_DELAY;
}

static void bar_draw(uint64_t done, uint64_t total) {
  if (!bar.on) return;
  double t = now_s();
  if (done < bar.last_done) bar.pass++;
  bar.last_done = done;
  if (t - bar.t0 < bar.delay || (t - bar.last < BAR_EVERY && done < total)) return;
  bar.last = t;
  bar.shown = 1;
  double f = total ? (double)done / (double)total : 0;
  if (f > 1) f = 1;
  char fill[BAR_WIDTH + 1];
  int k = (int)(f * BAR_WIDTH);
  for (int i = 0; i < BAR_WIDTH; i++) fill[i] = i < k ? '#' : '.';
  fill[BAR_WIDTH] = 0;
  const char *phase = bar.bytes && bar.pass == 0 ? " (checking)" : "";
  if (bar.bytes)
    fprintf(stderr, "\r%s%s [%s] %3d%%  %.1f/%.1f MiB  %.0fs ", bar.label, phase, fill,
            (int)(f * 100), (double)done / 1048576.0, (double)total / 1048576.0, t - bar.t0);
  else
    fprintf(stderr, "\r%s [%s] %3d%%  %llu/%llu keys  %.0fs ", bar.label, fill, (int)(f * 100),
            (unsigned long long)done, (unsigned long long)total, t - bar.t0);
  fflush(stderr);
}

static void bar_end(void) {
  if (bar.shown) {
    fputs("\r\033[K", stderr);   /* the bar's line is cleared: nothing is left of it */
    fflush(stderr);
  }
  bar.on = bar.shown = 0;
}

static void bar_cb(void *ud, uint64_t done, uint64_t total) {
  (void)ud;
  bar_draw(done, total);
}

static int l_progress(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    bar_end();
    return 0;
  }
  const char *label = luaL_checkstring(L, 1);
  lua_Number done = luaL_checknumber(L, 2), total = luaL_checknumber(L, 3);
  if (!bar.label || strcmp(bar.label, label) || bar.t0 == 0) {
    /* labels are literals of the caller's: keep a copy of our own */
    static char keep[64];
    snprintf(keep, sizeof keep, "%s", label);
    bar_start(keep, lua_toboolean(L, 4), 1);
  }
  bar_draw(done > 0 ? (uint64_t)done : 0, total > 0 ? (uint64_t)total : 0);
  return 0;
}

/* core._wall_ms(): the wall clock, ms since 1970 (dumps of pure-Lua drivers) */
static int l_wall_ms(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000));
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* ---- arguments ----------------------------------------------------------------- */

/* an open Lua file at i: its FILE (flushed), else NULL.  Every Lua keeps the
 * FILE * first in its file userdata (5.1's FILE **, 5.2+'s luaL_Stream,
 * LuaJIT's IOFileUD). */
static FILE *lua_file(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TUSERDATA || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, LUA_FILEHANDLE);
  int is_file = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!is_file) return NULL;
  FILE *f = *(FILE **)lua_touserdata(L, i);
#if LUA_VERSION_NUM >= 502
  if (((luaL_Stream *)lua_touserdata(L, i))->closef == NULL) f = NULL;
#endif
  if (!f) luaL_argerror(L, i, "the file is closed");
  fflush(f);
  return f;
}

/* a path or an open file at i: *fd is the file's descriptor (and the path
 * NULL) for a file */
static const char *path_or_file(lua_State *L, int i, int *fd, const char *what) {
  *fd = -1;
  FILE *f = lua_file(L, i);
  if (f) {
    *fd = fileno(f);
    return NULL;
  }
  if (lua_type(L, i) != LUA_TSTRING || lua_rawlen(L, i) == 0)
    lraise(L, C_VALUE, "%s: a file name or an open file was expected, got %s", what,
           lua_type(L, i) == LUA_TSTRING ? "an empty string" : luaL_typename(L, i));
  size_t len;
  const char *p = lua_tolstring(L, i, &len);
  /* the system would take the name only up to the NUL: another file than the one named */
  if (strlen(p) != len) lraise(L, C_VALUE, "%s: a file name cannot hold a NUL byte", what);
  return p;
}

/* opts.progress at i (a table or nil): may the bar be drawn? */
static int opt_progress(lua_State *L, int i, const char *what) {
  int t = lua_type(L, i);
  if (t == LUA_TNONE || t == LUA_TNIL) return 1;
  if (t != LUA_TTABLE) lraise(L, C_VALUE, "%s: options must be a table, got %s", what, luaL_typename(L, i));
  int on = 1;
  lua_pushnil(L);
  while (lua_next(L, i)) {
    if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "progress"))
      lraise(L, C_VALUE, "%s: unknown option '%s'", what,
             lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2));
    if (lua_type(L, -1) != LUA_TBOOLEAN) lraise(L, C_VALUE, "%s: option 'progress' must be a boolean", what);
    on = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return on;
}

/* raise the error of a failed dump / load / file call */
static int raise_file(lua_State *L, int rc, const char *what, const char *path, int err,
                      const char *why) {
  if (why && *why) {
    if (rc == ZKV_EINVAL_VALUE) return lraise(L, C_VALUE, "%s: %s", what, why);
    return zl_raise(L, C_FAILED, rc_reason(rc), "%s: %s", what, why);
  }
  if (rc == ZKV_EIO)
    return zl_raise(L, C_FAILED, "io", "%s: %s: %s", what, path ? path : "(file)", strerror(err));
  return raise_rc(L, rc, what);
}

/* ---- kv:dump, kv:load ---------------------------------------------------------- */

/* what kv:dump and kv:load begin with: self, the path or open file at 2, the
 * options at 3, the handle (fetched last, see binding.h), and the bar started */
typedef struct FileCall { zkv_db *db; const char *path; int fd; double t0; } FileCall;

static FileCall file_call(lua_State *L, const char *what, int bytes) {
  Driver *d = check_driver(L);
  FileCall c;
  c.path = path_or_file(L, 2, &c.fd, what);
  int on = opt_progress(L, 3, what);
  c.db = live_db(L, d);
  c.t0 = now_s();
  bar_start(what, bytes, on);
  return c;
}

static int driver_dump(lua_State *L) {
  FileCall c = file_call(L, "dump", 0);
  zkv_dump_stats st;
  int rc = zkv_dump(c.db, c.path, c.fd, bar_cb, NULL, &st);
  int err = errno;
  bar_end();
  if (rc) return raise_file(L, rc, "dump", c.path, err, NULL);
  zl_pushinteger(L, st.keys);
  lua_createtable(L, 0, 3);
  SETNUM("lock_ms", (double)st.lock_ns / 1e6);
  SETINT("bytes", st.bytes);
  SETNUM("seconds", now_s() - c.t0);
  return 2;
}

static int driver_load(lua_State *L) {
  FileCall c = file_call(L, "load", 1);
  zkv_load_stats st;
  int rc = zkv_load(c.db, c.path, c.fd, bar_cb, NULL, &st);
  int err = errno;
  bar_end();
  if (rc) return raise_file(L, rc, "load", c.path, err, st.why);
  zl_pushinteger(L, st.loaded);
  lua_createtable(L, 0, 4);
  SETINT("expired", st.expired);
  SETINT("steps", st.steps);
  SETNUM("max_lock_ms", (double)st.max_lock_ns / 1e6);
  SETNUM("seconds", now_s() - c.t0);
  return 2;
}

/* ---- the JSON form of values --------------------------------------------------- */

/* (type, text) as core._encode gives them -> a zkv_value over text */
static void value_of(lua_State *L, int ti, zkv_value *v) {
  memset(v, 0, sizeof *v);
  v->type = (int)luaL_checkinteger(L, ti);
  size_t n;
  const char *t = luaL_checklstring(L, ti + 1, &n);
  char *end = NULL;
  switch (v->type) {
  case ZKV_T_INT: v->i = strtoll(t, &end, 10); break;
  case ZKV_T_FLOAT: v->f = strtod(t, &end); break;
  case ZKV_T_BOOL: v->i = n == 4 && !memcmp(t, "true", 4); end = (char *)t + n; break;
  default: v->data = t; v->len = n; return;
  }
  if (n == 0 || end != t + n) lraise(L, C_VALUE, "not a value of type %d: %s", v->type, t);
}

/* core._json(type, text) */
static int l_json(lua_State *L) {
  zkv_value v;
  value_of(L, 1, &v);
  zkv_buf b = {0};
  int rc = zkv_value_to_json(&v, &b);
  if (rc == ZKV_OK) lua_pushlstring(L, b.data ? b.data : "", b.len);
  free(b.data);
  if (rc == ZKV_EINVAL_VALUE) return lraise(L, C_VALUE, "this value has no JSON form");
  if (rc) return raise_rc(L, rc, "json");
  return 1;
}

/* core._json_decode(text) */
static int l_json_decode(lua_State *L) {
  size_t n;
  const char *t = luaL_checklstring(L, 1, &n);
  zkv_buf b = {0};
  zkv_value v;
  const char *why;
  int rc = zkv_value_from_json(t, n, &v, &b, &why);
  if (rc == ZKV_OK) {
    /* push_value copies the bytes before it allocates anything else */
    push_value(L, &v);
    free(b.data);
    return 1;
  }
  free(b.data);
  if (rc == ZKV_EINVAL_VALUE) return lraise(L, C_VALUE, "%s", why);
  return raise_rc(L, rc, "json");
}

/* ---- dump files for pure-Lua drivers ------------------------------------------- */

typedef struct Writer { zkv_dump_writer *w; } Writer;
typedef struct Reader { zkv_dump_reader *r; } Reader;

static void *check_ud(lua_State *L, const char *mt, const char *what) {
  void **p = (void **)luaL_checkudata(L, 1, mt);
  if (!*p) lraise_failed(L, "closed", "%s: closed", what);
  return p;
}

/* argument i as a whole number in [lo, 2^63): a NaN, a fraction or one out of range is
 * INVALID_VALUE (a cast of such a double to an integer is undefined behaviour) */
static int64_t check_whole(lua_State *L, int i, int64_t lo, const char *what) {
  int64_t v;
  if (!num_to_int64(L, i, &v) || v < lo)
    return lraise(L, C_VALUE, "%s: argument #%d must be a whole number", what, i), 0;
  return v;
}

static int l_dump_writer(lua_State *L) {
  int fd;
  const char *path = path_or_file(L, 1, &fd, "dump");
  int64_t t = check_whole(L, 2, INT64_MIN, "dump");
  Writer *w = (Writer *)lua_newuserdatauv(L, sizeof(Writer), 0);
  w->w = NULL;
  luaL_getmetatable(L, WRITER_MT);
  lua_setmetatable(L, -2);
  int rc = zkv_dump_writer_open(path, fd, t, &w->w);
  if (rc) return raise_file(L, rc, "dump", path, errno, NULL);
  return 1;
}

/* the namespace names of the table at i into a zkv_bytes array (on the Lua heap) */
static zkv_bytes *names_of(lua_State *L, int i, size_t *depth) {
  luaL_checktype(L, i, LUA_TTABLE);
  size_t n = (size_t)lua_rawlen(L, i);
  zkv_bytes *p = (zkv_bytes *)lua_newuserdatauv(L, (n ? n : 1) * sizeof *p, 0);
  for (size_t k = 0; k < n; k++) {
    lua_rawgeti(L, i, (lua_Integer)k + 1);
    if (lua_type(L, -1) != LUA_TSTRING) lraise(L, C_KEY, "dump: namespace names must be strings");
    p[k].data = lua_tolstring(L, -1, &p[k].len);
    lua_pop(L, 1);   /* still referenced by the table */
  }
  *depth = n;
  return p;
}

/* w:add(names, key, type, text, expires_ms [, flags]) */
static int writer_add(lua_State *L) {
  Writer *w = (Writer *)check_ud(L, WRITER_MT, "dump");
  lua_settop(L, 7);   /* names_of pushes: the optional arguments must be slots of their own */
  zkv_item it;
  memset(&it, 0, sizeof it);
  it.path = names_of(L, 2, &it.depth);
  it.key = luaL_checklstring(L, 3, &it.klen);
  value_of(L, 4, &it.value);
  it.expires_ms = (int64_t)luaL_optnumber(L, 6, 0);
  it.value.flags = (uint32_t)luaL_optinteger(L, 7, 0);
  int rc = zkv_dump_writer_add(w->w, &it);
  if (rc) return raise_file(L, rc, "dump", NULL, errno, NULL);
  return 0;
}

static int writer_finish(lua_State *L) {
  Writer *w = (Writer *)check_ud(L, WRITER_MT, "dump");
  uint64_t n = 0;
  int rc = zkv_dump_writer_finish(w->w, &n);
  int err = errno;
  w->w = NULL;
  if (rc) return raise_file(L, rc, "dump", NULL, err, NULL);
  zl_pushinteger(L, n);
  return 1;
}

static int writer_gc(lua_State *L) {
  Writer *w = (Writer *)luaL_checkudata(L, 1, WRITER_MT);
  zkv_dump_writer_abort(w->w);
  w->w = NULL;
  return 0;
}

static int l_dump_reader(lua_State *L) {
  int fd;
  const char *path = path_or_file(L, 1, &fd, "load");
  Reader *r = (Reader *)lua_newuserdatauv(L, sizeof(Reader), 0);
  r->r = NULL;
  luaL_getmetatable(L, READER_MT);
  lua_setmetatable(L, -2);
  int rc = zkv_dump_reader_open(path, fd, &r->r);
  if (rc == ZKV_EINVAL_VALUE) {
    lua_pushstring(L, zkv_dump_reader_error(r->r, NULL));
    zkv_dump_reader_close(r->r);
    r->r = NULL;
    return lraise(L, C_VALUE, "load: %s", lua_tostring(L, -1));
  }
  if (rc) return raise_file(L, rc, "load", path, errno, NULL);
  return 1;
}

/* r:next() -> names, key, value, expires_ms, flags; nil at the end */
static int reader_next(lua_State *L) {
  Reader *r = (Reader *)check_ud(L, READER_MT, "load");
  zkv_item it;
  int rc = zkv_dump_reader_next(r->r, &it);
  if (rc == ZKV_NOTFOUND) return 0;
  if (rc) return raise_file(L, rc, "load", NULL, errno, zkv_dump_reader_error(r->r, NULL));
  /* the item points into the reader, which Lua allocations do not touch */
  lua_createtable(L, (int)it.depth, 0);
  for (size_t i = 0; i < it.depth; i++) {
    lua_pushlstring(L, (const char *)it.path[i].data, it.path[i].len);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_pushlstring(L, (const char *)it.key, it.klen);
  push_value(L, &it.value);
  if (it.expires_ms) lua_pushnumber(L, (double)it.expires_ms);
  else lua_pushnil(L);
  zl_pushinteger(L, it.value.flags);
  return 5;
}

static int reader_rewind(lua_State *L) {
  Reader *r = (Reader *)check_ud(L, READER_MT, "load");
  int rc = zkv_dump_reader_rewind(r->r);
  if (rc) return raise_file(L, rc, "load", NULL, errno, NULL);
  return 0;
}

static int reader_position(lua_State *L) {
  Reader *r = (Reader *)check_ud(L, READER_MT, "load");
  uint64_t line, off, size;
  zkv_dump_reader_position(r->r, &line, &off, &size);
  zl_pushinteger(L, line);
  zl_pushinteger(L, off);
  zl_pushinteger(L, size);
  return 3;
}

static int reader_seek(lua_State *L) {
  Reader *r = (Reader *)check_ud(L, READER_MT, "load");
  uint64_t line = (uint64_t)check_whole(L, 2, 0, "load"), off = (uint64_t)check_whole(L, 3, 0, "load");
  int rc = zkv_dump_reader_seek(r->r, line, off);
  if (rc) return raise_file(L, rc, "load", NULL, errno, NULL);
  return 0;
}

static int reader_close(lua_State *L) {
  Reader *r = (Reader *)luaL_checkudata(L, 1, READER_MT);
  zkv_dump_reader_close(r->r);
  r->r = NULL;
  return 0;
}

/* ---- segments --------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* core._segments(dir): names of the "zeltkv-NAME" files in dir, sorted */
static int l_segments(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  DIR *dh = opendir(dir);
  if (!dh) return zl_raise(L, C_FAILED, "io", "%s: %s", dir, strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  int oom = 0;
  while (!oom && (e = readdir(dh))) {
    const char *nm = e->d_name;
    if (strncmp(nm, "zeltkv-", 7)) continue;
    nm += 7;
    if (!zkv_segment_name_ok(nm, strlen(nm))) continue;
    char **nn = grow_array(names, &cap, n + 1, sizeof *nn, 16);
    if (!nn) { oom = 1; break; }
    names = nn;
    if (!(names[n] = strdup(nm))) oom = 1;
    else n++;
  }
  closedir(dh);
  if (!oom) {
    if (n) qsort(names, n, sizeof *names, cmp_str);   /* names is NULL when n is 0 */
    lua_createtable(L, (int)n, 0);
  }
  /* freed before anything that can raise */
  for (size_t i = 0; i < n; i++) {
    if (!oom) {
      lua_pushstring(L, names[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(names[i]);
  }
  free(names);
  if (oom) return lraise_failed(L, "memory", "segments: out of memory");
  return 1;
}

/* core._file_times(path) -> size, atime_ms, mtime_ms (wall clock, ms since 1970),
 * or nil, message.  A segment file's times say when a process last opened it
 * (zkv_open_shared sets them); zkv list reads them before its own open ... */
static int l_file_times(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  zl_pushinteger(L, (uint64_t)st.st_size);
  lua_pushnumber(L, (double)st.st_atim.tv_sec * 1e3 + (double)(st.st_atim.tv_nsec / 1000000));
  lua_pushnumber(L, (double)st.st_mtim.tv_sec * 1e3 + (double)(st.st_mtim.tv_nsec / 1000000));
  return 3;
}

/* core._set_file_times(path, atime_ms, mtime_ms) -> true, or nil, message:
 * ... and puts them back after it, so that looking at a segment is not
 * counted as opening it. */
static int l_set_file_times(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct timespec ts[2];
  for (int i = 0; i < 2; i++) {
    double ms = luaL_checknumber(L, 2 + i);
    if (!(ms >= 0 && ms < 1e15)) return luaL_argerror(L, 2 + i, "a time in ms since 1970");
    ts[i].tv_sec = (time_t)(ms / 1e3);
    ts[i].tv_nsec = (long)((ms - (double)ts[i].tv_sec * 1e3) * 1e6);
  }
  if (utimensat(AT_FDCWD, path, ts, 0) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- registration ------------------------------------------------------------------ */

const luaL_Reg zl_snapshot_driver_methods[] = {
  {"dump", driver_dump}, {"load", driver_load}, {NULL, NULL}};

static void new_meta(lua_State *L, const char *name, const luaL_Reg *m, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  for (; m->name; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

void snapshot_init(lua_State *L, int module_idx) {
  static const luaL_Reg wm[] = {
    {"add", writer_add}, {"finish", writer_finish}, {"abort", writer_gc}, {NULL, NULL}};
  static const luaL_Reg rm[] = {
    {"next", reader_next}, {"rewind", reader_rewind}, {"position", reader_position},
    {"seek", reader_seek}, {"close", reader_close}, {NULL, NULL}};
  new_meta(L, WRITER_MT, wm, writer_gc);
  new_meta(L, READER_MT, rm, reader_close);
  static const luaL_Reg funcs[] = {
    {"_json", l_json}, {"_json_decode", l_json_decode}, {"_dump_writer", l_dump_writer},
    {"_dump_reader", l_dump_reader}, {"_progress", l_progress}, {"_isatty", l_isatty},
    {"_segments", l_segments}, {"_file_times", l_file_times},
    {"_set_file_times", l_set_file_times}, {"_wall_ms", l_wall_ms}, {NULL, NULL}};
  for (const luaL_Reg *r = funcs; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, module_idx, r->name);
  }
}
