#!/usr/bin/env bash
# Backfill every day from FROM to TO (both included) with fund_mail_one_day: one DB per day.
#
#   ./run_one_day.sh [-y] FROM TO [fund_mail_one_day options, e.g. --env-file PATH]
#   ./run_one_day.sh 2025-01-01 2025-03-31
#
# -y skips the confirmation prompt (needed when there is no terminal to answer it).
# Exit code: that of fund_mail_one_day (0 all days done, 1 some day or upload failed, 2 bad input).
set -uo pipefail

usage() {
  echo "usage: $0 [-y] FROM TO [fund_mail_one_day options]   (dates as YYYY-MM-DD)" >&2
  exit 2
}

assume_yes=0
if [ "${1:-}" = "-y" ]; then assume_yes=1; shift; fi
[ $# -ge 2 ] || usage
from="$1"; to="$2"; shift 2

for day in "$from" "$to"; do
  if ! [[ "$day" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then
    echo "error: '$day' is not a date: use YYYY-MM-DD, e.g. 2025-06-30" >&2
    exit 2
  fi
done
if [[ "$from" > "$to" ]]; then
  echo "error: FROM $from is after TO $to: swap them" >&2
  exit 2
fi

# The program: next to this script (the Windows install), then dist/, then PATH, then uv.
here="$(cd "$(dirname "$0")" && pwd)"
if [ -x "$here/fund_mail_one_day.exe" ]; then program=("$here/fund_mail_one_day.exe")
elif [ -x "$here/fund_mail_one_day" ]; then program=("$here/fund_mail_one_day")
elif [ -x "$here/dist/fund_mail_one_day" ]; then program=("$here/dist/fund_mail_one_day")
elif [ -x "$here/dist/fund_mail_one_day.exe" ]; then program=("$here/dist/fund_mail_one_day.exe")
elif command -v fund_mail_one_day >/dev/null 2>&1; then program=(fund_mail_one_day)
else program=(uv run --project "$here" fund_mail_one_day)
fi

if [ "$assume_yes" -ne 1 ]; then
  if [ ! -t 0 ]; then
    echo "error: no terminal to confirm on; pass -y to run without asking" >&2
    exit 2
  fi
  read -r -p "Archive every day from $from to $to? [y/N] " answer
  case "$answer" in y|Y|yes|YES) ;; *) echo "Nothing done."; exit 0 ;; esac
fi

started=$(date +%s)
"${program[@]}" --from "$from" --to "$to" "$@"
status=$?
elapsed=$(( $(date +%s) - started ))
if [ "$status" -eq 0 ]; then
  echo "run_one_day: $from to $to done in ${elapsed}s."
else
  echo "run_one_day: $from to $to finished with exit code $status after ${elapsed}s;" \
       "the lines above name the failed days (rerun them with --date)." >&2
fi
exit "$status"
