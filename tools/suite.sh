#!/bin/bash
# suite.sh NAME CMD... -- run one suite of `make test` and hold it to the rules:
# a suite reports "N passed, N failed" as the last such line of each log it writes in
# $RESULTS/NAME (RESULTS defaults to build/results; the Makefile gives CMD that directory
# as its RESULTS, so that suites running at the same time keep their logs apart). When CMD
# fails yet its logs report no failed test, or CMD writes no summary at all, this adds a log
# of its own that counts one failure, so that tools/summary.sh cannot add up to "0 failed"
# over a broken suite.
# The suite's time goes to $RESULTS/times.txt: wall-clock seconds, and the CPU seconds (user
# + system) of the processes it waited for, which a busy machine does not inflate.
set -u
name=$1; shift
results=${RESULTS:-build/results}
dir=$results/$name
mkdir -p "$dir"
stamp=$(mktemp "${TMPDIR:-/tmp}/zeltkv-suite.XXXXXX")
trap 'rm -f "$stamp" "$stamp.times"' EXIT
sleep 0.01                                   # logs written from now on are -newer
# SUITE_SYNC=1 (make test, suites side by side): the output goes to $dir/output.txt and is
# printed whole at the end, under a lock, so that two suites' lines never mix. (Redirected
# around a function, not by exec: the suite's make inherits the jobserver's descriptors.)
run() {
  start=$(date +%s)
  echo "==== $name"
  RESULTS=$dir "$@"
  rc=$?
  secs=$(( $(date +%s) - start ))
  # `times`, second line: the user and system time of this shell's children, e.g. 1m2.345s
  times > "$stamp.times"        # in this shell: a subshell would count its own children only
  cpu=$(sed -n 2p "$stamp.times" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
                                    printf "%d", s + 0.5 }')

  re='[0-9]+ passed, [0-9]+ failed'
  failed=0; counted=0
  while IFS= read -r log; do
    line=$(grep -E "$re" "$log" | tail -n 1)
    [ -n "$line" ] || continue
    counted=$((counted + 1))
    n=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
    failed=$((failed + n))
  done < <(find "$dir" -maxdepth 1 -name '*.log' -newer "$stamp")

  if [ "$counted" -eq 0 ]; then
    echo "$name: 0 passed, 1 failed (exit status $rc, and no log with a summary line)" \
      | tee "$dir/$name.suite.log"
  elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "$name: 0 passed, 1 failed (exit status $rc, yet no failed test reported)" \
      | tee "$dir/$name.suite.log"
  fi
  echo "$name $secs $cpu" >> "$results/times.txt"
  echo "---- $name: ${secs} s (CPU ${cpu} s), exit status $rc"
}
if [ -n "${SUITE_SYNC:-}" ]; then
  run "$@" > "$dir/output.txt" 2>&1
  flock "$results/.output.lock" cat "$dir/output.txt"
else
  run "$@"
fi
exit 0
