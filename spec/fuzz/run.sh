#!/bin/bash
# spec/fuzz/run.sh -- build the segment fuzzer (libFuzzer, clang-14, ASan +
# UBSan) into build/fuzz/ and run it for a bounded time.
#
#   spec/fuzz/run.sh                 20000 runs or 60 s, whichever first
#   FUZZ_RUNS=N FUZZ_TIME=S spec/fuzz/run.sh
#   spec/fuzz/run.sh FILE...         replay inputs (crash reproducers)
#
# Starts from spec/fuzz/corpus/ (read-only; new inputs go to a temporary
# directory).  Crash, leak and timeout inputs are saved to build/fuzz/artifacts/.
# The last line is "fuzz: 1 passed, 0 failed" when the run ended clean, else
# "fuzz: 0 passed, 1 failed".
set -u
cd "$(dirname "$0")/../.."
CLANG=${CLANG:-$(command -v clang-14 || command -v clang)}
OUT=build/fuzz
BIN=$OUT/fuzz_segment
RUNS=${FUZZ_RUNS:-20000}
TIME=${FUZZ_TIME:-60}
mkdir -p "$OUT/artifacts"
# the engine: every file of src/ itself, as the Makefile's ENGINE_SRC (the Lua
# binding is src/lua/*.c, which this glob does not reach)
SRC="$(ls src/*.c) spec/fuzz/fuzz_segment.c"
if [ ! -x "$BIN" ] || [ -n "$(find $SRC spec/c/segment_image.h src/*.h include/zeltkv.h -newer "$BIN" 2>/dev/null)" ]; then
  if ! "$CLANG" -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
       -fno-omit-frame-pointer -Iinclude $SRC -o "$BIN" -lcjson -lpthread -lm 2> "$OUT/build.log"; then
    cat "$OUT/build.log"
    echo "fuzz: build failed (clang-14 and libclang-rt-14-dev installed?)"
    echo "fuzz: 0 passed, 1 failed"
    exit 1
  fi
fi
ZKV_FUZZ_DIR=$(mktemp -d "${TMPDIR:-/tmp}/zkvfuzz-XXXXXX")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zkvfuzz-corpus-XXXXXX")
trap 'rm -rf "$ZKV_FUZZ_DIR" "$WORK"' EXIT
export ZKV_FUZZ_DIR
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=spec/fuzz/ubsan.supp"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
if [ $# -gt 0 ]; then
  "$BIN" -timeout=10 "$@"
  rc=$?
else
  "$BIN" -runs="$RUNS" -max_total_time="$TIME" -max_len=1024 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$OUT/artifacts/" -print_final_stats=1 "$WORK" spec/fuzz/corpus > "$OUT/fuzz.log" 2>&1
  rc=$?
  tail -n 40 "$OUT/fuzz.log"
fi
if [ $rc -eq 0 ]; then
  echo "fuzz: 1 passed, 0 failed"
else
  echo "fuzz: 0 passed, 1 failed"
fi
exit $rc
