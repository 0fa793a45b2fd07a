#!/usr/bin/env bash
# spec/run.sh: run zeltkv's busted specs. The very last line printed is
#     N passed, N failed
# and the exit status is non-zero when anything failed or when no test ran.
#
# Usage (from anywhere):
#   spec/run.sh [--lua=INTERPRETER] [busted arguments, e.g. spec/02-store_spec.lua -t shared]
#   LUA=luajit spec/run.sh            # the interpreter: lua5.4 (default), lua5.1, luajit,
#                                     # or a command line such as "valgrind -q lua5.4"
#   ZELTKV_CPATH='build/x/?.so' spec/run.sh   # where zeltkv/core.so is (default: see .busted)
#   BUSTED=/path/to/busted spec/run.sh
#
# busted runs as `$LUA /usr/bin/busted --ignore-lua`, so the interpreter named here is the one
# tested (.busted picks build/<interpreter>/ as the cpath), and its output handler is
# spec/summary_handler.lua. If busted dies before printing the summary (a crash in the C
# module), or exits with a status that does not match its summary, this script counts one
# more failure and prints a corrected summary line last.

set -u
cd "$(dirname "$0")/.." || exit 2

lua="${LUA:-lua5.4}"
args=()
for a in "$@"; do
  case "$a" in
    --lua=*) lua="${a#--lua=}" ;;
    *) args+=("$a") ;;
  esac
done
read -r -a lua_cmd <<<"$lua"

busted_bin="${BUSTED:-$(command -v busted || echo /usr/bin/busted)}"
log="$(mktemp "${TMPDIR:-/tmp}/zeltkv-spec.XXXXXX")"
trap 'rm -f "$log"' EXIT

"${lua_cmd[@]}" "$busted_bin" --ignore-lua -o spec/summary_handler.lua ${args[@]+"${args[@]}"} \
  | tee "$log"
status=${PIPESTATUS[0]}

summary_re='^([0-9]+) passed, ([0-9]+) failed$'
last="$(tail -n 1 "$log")"
corrected=0
if [[ "$last" =~ $summary_re ]]; then
  passed=${BASH_REMATCH[1]}
  failed=${BASH_REMATCH[2]}
  # busted exits with 1 when anything failed, else 0; any other status is a crash
  expected=0
  if (( failed > 0 )); then expected=1; fi
  if (( status != expected )); then
    echo "# busted exited with status $status after its summary (crash at exit?)"
    failed=$((failed + 1))
    corrected=1
  fi
else
  passed=$(grep -c '^ok [0-9]' "$log")
  failed=$(grep -c '^not ok [0-9]' "$log")
  if (( status != 0 )) || (( passed + failed == 0 )); then
    echo "# busted exited with status $status before its summary (crash, or could not start)"
    failed=$((failed + 1))
  fi
  corrected=1
fi

if (( corrected )); then
  echo "$passed passed, $failed failed"
fi
if (( failed > 0 || passed + failed == 0 )); then
  exit 1
fi
exit 0
