/*
 * fuzz_segment.c -- libFuzzer target: a damaged shared segment is refused or
 * worked on with error codes, never crashes, hangs or trips ASan/UBSan.
 *
 * At start it builds two valid segment images (spec/c/segment_image.h): a
 * clean one and one left by a process killed holding the lock.  Each input
 * is a mutation of one of them (XORed bytes, stored 8-byte fields, truncation,
 * extension: the format is in segment_image.h), written as a segment file in
 * a private temporary directory, opened with zkv_open_shared and exercised
 * with every kind of operation.
 *
 *   spec/fuzz/run.sh    builds it into build/fuzz/ and runs it
 */
#define _GNU_SOURCE 1 /* first: fork, mkdtemp, syscall and other calls beyond C11 */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>

#include "../c/segment_image.h"

static unsigned char *g_img[2];
static size_t g_len[2];
static char g_dir[512];

/* the directory is removed at exit; run.sh passes its own in ZKV_FUZZ_DIR
 * (and removes it), since a crashing input ends the process without atexit */
static void cleanup(void) {
  DIR *d = opendir(g_dir);
  if (d != NULL) {
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *given = getenv("ZKV_FUZZ_DIR");
  if (given != NULL && *given) {
    snprintf(g_dir, sizeof g_dir, "%s", given);
  } else {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/zkvfuzz-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    if (mkdtemp(g_dir) == NULL) {
      perror("mkdtemp");
      exit(2);
    }
    atexit(cleanup);
  }
  setenv("ZELTKV_SHM_DIR", g_dir, 1);
  for (int i = 0; i < 2; i++) {
    if (zseg_build(i, &g_img[i], &g_len[i]) != 0) {
      fprintf(stderr, "fuzz_segment: cannot build the base image %d\n", i);
      exit(2);
    }
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int which = size > 0 ? (data[0] & 1) : 0;
  unsigned char *b;
  size_t len;
  zseg_apply(g_img[which], g_len[which], data, size, &b, &len);
  char path[4200];
  zseg_path(path, sizeof path, ZSEG_NAME);
  if (zseg_write_file(path, b, len) == 0) {
    int orc = 0;
    int wild = zseg_exercise(ZSEG_NAME, &orc);
    if (wild) {
      fprintf(stderr, "fuzz_segment: %d result codes outside the API\n", wild);
      abort();
    }
  }
  unlink(path);
  free(b);
  return 0;
}
