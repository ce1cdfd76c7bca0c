#!/usr/bin/env bash
# Build a standalone executable with PyInstaller: one file, everything bundled (tzdata, certifi,
# the schema). Works on Linux and in Git Bash on Windows (where the result is dist/NAME.exe).
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
"${uv[@]}" run --group build pyinstaller --noconfirm --log-level WARN --onefile --name "$name" \
  --collect-data tzdata --collect-data certifi --collect-data fund_mail \
  --specpath build --workpath "build/$name" --distpath dist \
  src/fund_mail/cli.py
# Ship the sample, never a real .env.
cp .env.sample dist/.env.sample
echo "built dist/$name"
