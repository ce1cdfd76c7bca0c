#!/usr/bin/env bash
# Build a standalone executable with PyInstaller, everything bundled (tzdata, certifi, the
# schema). Works on Linux and in Git Bash on Windows (where the results end in .exe).
#   fund_mail_once, fund_mail_service: a folder, dist/NAME/ (NAME.exe and _internal\). They
#     start every 5 minutes (the task, or the service's cycle): nothing to unpack per run, no
#     _MEI temp folders left behind when a run is ended, and one process, so no orphaned child
#     keeps holding the lock.
#   fund_mail_one_day, fund_mail_pst: one file each, dist/NAME(.exe), run by hand.
# Usage: ./make_exe.sh [fund_mail_once|fund_mail_one_day|fund_mail_pst|fund_mail_service]
# (default: fund_mail_once)
set -euo pipefail
cd "$(dirname "$0")"

name="${1:-fund_mail_once}"
case "$name" in
  fund_mail_once|fund_mail_one_day|fund_mail_pst|fund_mail_service) ;;
  *) echo "usage: $0 [fund_mail_once|fund_mail_one_day|fund_mail_pst|fund_mail_service]" >&2; exit 2 ;;
esac

# uv from PATH, or as a module where pip installed it without a launcher on PATH.
if command -v uv >/dev/null 2>&1; then uv=(uv); else uv=(python3 -m uv); fi
# --extra pst: fund_mail_pst bundles libpff (pypff); the others simply do not import it.
"${uv[@]}" sync --quiet --group build --extra pst
case "$name" in fund_mail_once|fund_mail_service) layout=--onedir ;; *) layout=--onefile ;; esac
rm -rf "dist/$name" "dist/$name.exe"
# The Windows service imports pywin32's modules dynamically; PyInstaller must be told of them.
# The list lives in fund_mail/winservice.py. On Linux the service runs in the foreground only.
hidden=()
if [ "$name" = fund_mail_service ] && [ "${OS:-}" = Windows_NT ]; then
  for module in $("${uv[@]}" run python -c \
      "from fund_mail.winservice import HIDDEN_IMPORTS; print(*HIDDEN_IMPORTS)"); do
    hidden+=(--hidden-import "$module")
  done
fi
"${uv[@]}" run --group build pyinstaller --noconfirm --log-level WARN "$layout" --name "$name" \
  --collect-data tzdata --collect-data certifi --collect-data fund_mail \
  --specpath build --workpath "build/$name" --distpath dist ${hidden[@]+"${hidden[@]}"} \
  src/fund_mail/cli.py
# Ship the sample, never a real .env.
cp .env.sample dist/.env.sample
echo "built dist/$name"
