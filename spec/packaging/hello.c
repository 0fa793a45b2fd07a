/* spec/packaging/hello.c: a C host of zeltkv built against an installation with
 * `pkg-config --cflags --libs zeltkv`: a memory store and a shared segment (in
 * $ZELTKV_SHM_DIR), a set, a get, an incr and a rolled-back transaction. */
#include <stdio.h>
#include <string.h>

#include <zeltkv.h>

#define TRY(x) do { int rc_ = (x); if (rc_ != ZKV_OK) { \
  fprintf(stderr, "%s: %s\n", #x, zkv_strerror(rc_)); return 1; } } while (0)

static int use(zkv_db *db) {
  zkv_ns users;
  TRY(zkv_namespace(db, ZKV_ROOT, "users", 5, &users));
  zkv_value v = { .type = ZKV_T_STRING, .data = "ada", .len = 3 };
  TRY(zkv_set(db, users, "u:1", 3, &v, 60000, 0));
  int64_t n = 0;
  TRY(zkv_incr(db, users, "logins", 6, 1, 0, &n));
  TRY(zkv_begin(db));
  TRY(zkv_del(db, users, "u:1", 3));
  TRY(zkv_rollback(db));
  zkv_value got;
  TRY(zkv_get(db, users, "u:1", 3, &got));
  if (got.type != ZKV_T_STRING || got.len != 3 || memcmp(got.data, "ada", 3) != 0) return 1;
  printf("logins=%lld\n", (long long)n);
  return 0;
}

int main(void) {
  zkv_db *db;
  TRY(zkv_open_memory(NULL, &db));
  if (use(db)) return 1;
  zkv_close(db);
  TRY(zkv_open_shared("pkgtest-hello", NULL, &db));
  if (use(db)) return 1;
  zkv_close(db);
  TRY(zkv_unlink("pkgtest-hello", NULL));
  printf("zeltkv %s from C: ok\n", ZKV_VERSION);
  return 0;
}
