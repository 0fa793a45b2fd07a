#!/bin/sh
# summary.sh DIR -- add up the "N passed, N failed" lines that each suite
# wrote as the last such line of its log in DIR, and print the total.
dir=${1:-build/results}
pass=0; fail=0
for f in "$dir"/*.log; do
  line=$(grep -E '([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$f" | tail -n 1)
  [ -n "$line" ] || continue
  p=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
  q=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
  printf '  %-28s %s\n' "$(basename "$f" .log)" "$line"
  pass=$((pass + p)); fail=$((fail + q))
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
