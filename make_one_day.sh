#!/usr/bin/env bash
# Build dist/fund_mail_one_day(.exe); see make_exe.sh.
set -euo pipefail
exec "$(dirname "$0")/make_exe.sh" fund_mail_one_day
