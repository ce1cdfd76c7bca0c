#!/usr/bin/env bash
# Build a standalone executable with PyInstaller, everything bundled (tzdata, certifi, the
# schema). Works on Linux and in Git Bash on Windows (where the results end in .exe).
#   fund_mail_once: a folder, dist/fund_mail_once/ (fund_mail_once.exe and _internal\). It runs
#     every 5 minutes: nothing to unpack per run, no _MEI temp folders left behind when Task
#     Scheduler ends it, and one process, so no orphaned child keeps holding the lock.
#   fund_mail_one_day, fund_mail_pst: one file each, dist/NAME(.exe), run by hand.
# Usage: ./make_exe.sh [fund_mail_once|fund_mail_one_day|fund_mail_pst]   (default: fund_mail_once)
set -euo pipefail
cd "$(dirname "$0")"

name="${1:-fund_mail_once}"
case "$name" in
  fund_mail_once|fund_mail_one_day|fund_mail_pst) ;;
  *) echo "usage: $0 [fund_mail_once|fund_mail_one_day|fund_mail_pst]" >&2; exit 2 ;;
esac

# uv from PATH, or as a module where pip installed it without a launcher on PATH.
if command -v uv >/dev/null 2>&1; then uv=(uv); else uv=(python3 -m uv); fi
# --extra pst: fund_mail_pst bundles libpff (pypff); the others simply do not import it.
"${uv[@]}" sync --quiet --group build --extra pst
if [ "$name" = fund_mail_once ]; then layout=--onedir; else layout=--onefile; fi
rm -rf "dist/$name" "dist/$name.exe"
"${uv[@]}" run --group build pyinstaller --noconfirm --log-level WARN "$layout" --name "$name" \
  --collect-data tzdata --collect-data certifi --collect-data fund_mail \
  --specpath build --workpath "build/$name" --distpath dist \
  src/fund_mail/cli.py
# Ship the sample, never a real .env.
cp .env.sample dist/.env.sample
echo "built dist/$name"
