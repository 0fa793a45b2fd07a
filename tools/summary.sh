#!/bin/sh
# summary.sh DIR [SECONDS] -- add up the "N passed, N failed" lines that each suite wrote as
# the last such line of each of its logs in DIR or DIR/<suite>/, print one line per log, the
# time of each suite (DIR/times.txt, written by tools/suite.sh), what they add up to and,
# given, the SECONDS the whole run took (suites run side by side); then, just above the total,
# each log that reports a failure with its first failing lines (a CI page that keeps only the
# end of the output still names the test); fail unless the total has no failure and at least
# one pass.
dir=${1:-build/results}
pass=0; fail=0; bad=
for f in "$dir"/*.log "$dir"/*/*.log; do
  [ -f "$f" ] || continue
  line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$f" | tail -n 1)
  [ -n "$line" ] || continue
  p=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
  q=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
  printf '  %-40s %s\n' "${f#"$dir"/}" "$line"
  pass=$((pass + p)); fail=$((fail + q))
  [ "$q" -eq 0 ] || bad="$bad $f"
done
if [ -f "$dir/times.txt" ]; then
  total=0; ctotal=0
  printf '  time (wall/CPU s):'
  while read -r s t c; do
    printf ' %s %s/%s' "$s" "$t" "${c:-?}"; total=$((total + t)); ctotal=$((ctotal + ${c:-0}))
  done < "$dir/times.txt"
  printf '; the suites add up to %sm%02ds, CPU %sm%02ds' $((total / 60)) $((total % 60)) \
    $((ctotal / 60)) $((ctotal % 60))
  [ -n "${2:-}" ] && printf '; they took %sm%02ds side by side' $(($2 / 60)) $(($2 % 60))
  printf '\n'
fi
for f in $bad; do
  echo "failed: ${f#"$dir"/}"
  # the C harness and shell suites: "FAIL ..." and the check lines under it; spec/run.sh:
  # "not ok N - name" and its "# " lines; tools/suite.sh: "NAME: 0 passed, 1 failed (exit ...)"
  grep -m 12 -E '^FAIL|^not ok|^# |^    [^ ].*:[0-9]+: |failed \(exit' "$f" | cut -c1-300 | sed 's/^/    /'
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
