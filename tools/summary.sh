#!/bin/sh
# summary.sh DIR -- add up the "N passed, N failed" lines that each suite wrote as the
# last such line of each of its logs in DIR, print one line per log, the time of each
# suite (DIR/times.txt, written by tools/suite.sh) and the total; fail unless the total
# has no failure and at least one pass.
dir=${1:-build/results}
pass=0; fail=0
for f in "$dir"/*.log; do
  [ -f "$f" ] || continue
  line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$f" | tail -n 1)
  [ -n "$line" ] || continue
  p=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
  q=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
  printf '  %-28s %s\n' "$(basename "$f" .log)" "$line"
  pass=$((pass + p)); fail=$((fail + q))
done
if [ -f "$dir/times.txt" ]; then
  total=0; ctotal=0
  printf '  time (wall/CPU s):'
  while read -r s t c; do
    printf ' %s %s/%s' "$s" "$t" "${c:-?}"; total=$((total + t)); ctotal=$((ctotal + ${c:-0}))
  done < "$dir/times.txt"
  printf '; total %sm%02ds, CPU %sm%02ds\n' $((total / 60)) $((total % 60)) $((ctotal / 60)) $((ctotal % 60))
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
