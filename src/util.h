/*
 * util.h -- two small facts the engine's files and the Lua binding share,
 * each with one home: how an array grows, and which doubles are exact
 * integers.  Plain C; it knows no store and no Lua.
 */
#ifndef ZKV_UTIL_H
#define ZKV_UTIL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Grow the array p of *cap elements of elem bytes to hold at least need,
 * doubling from first (or from *cap): the array (moved, *cap updated), p
 * itself when it holds need already, or NULL when out of memory (then p and
 * *cap are as they were, and p is still the caller's). */
static inline void *grow_array(void *p, size_t *cap, size_t need, size_t elem, size_t first) {
  if (need <= *cap) return p;
  size_t n = *cap ? *cap : first;
  while (n < need) {
    if (n > SIZE_MAX / 2 / elem) return NULL;
    n *= 2;
  }
  void *q = realloc(p, n * elem);
  if (q) *cap = n;
  return q;
}

/* 2^53: every integer up to it in size is exact as a double */
#define EXACT_INT_LIMIT 9007199254740992LL

/* a whole number within 2^53 (-0 included) */
static inline int double_is_whole53(double x) {
  return x == floor(x) && fabs(x) <= (double)EXACT_INT_LIMIT;
}
/* a double that is an exact integer: whole, within 2^53, not -0 (which an
 * integer would lose) */
static inline int double_is_exact_int(double x) {
  return double_is_whole53(x) && !(x == 0 && signbit(x));
}

#endif
