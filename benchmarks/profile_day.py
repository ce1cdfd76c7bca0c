"""Profile fund_mail_one_day over a 5,000-message day and print the top functions.

    uv run python benchmarks/profile_day.py            # top 10 by own time, all threads

The program runs in a separate process under cProfile, against the emulator (no latency, so
the client's own CPU shows). Every thread is profiled, not only the main one.
"""

from __future__ import annotations

import argparse
import pstats
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fund_mail.emulator import GraphEmulator, file_attachment

BIN = Path(sys.executable).parent

# Runs in the child: profile every thread into one file per thread, then merge.
CHILD = r"""
import cProfile, os, sys, threading
out = sys.argv.pop(1)
profiles = []
def start(*_):
    p = cProfile.Profile(); profiles.append(p); p.enable()
threading.setprofile(lambda *a: start())
main = cProfile.Profile(); profiles.append(main)
from fund_mail.cli import one_day_main
main.enable()
try:
    code = one_day_main(sys.argv[1:])
finally:
    main.disable()
    for n, p in enumerate(profiles):
        p.disable(); p.dump_stats(f"{out}.{n}")
sys.exit(code)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--attachments", type=int, default=0, help="messages with a 60 kB file")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fm-profile-"))
    try:
        with GraphEmulator(tls_dir=workdir / "tls") as graph:
            env = graph.write_env(workdir / ".env", workdir / "data")
            start = datetime(2025, 6, 30, 0, 0, 1, tzinfo=ZoneInfo("Asia/Seoul"))
            for i in range(args.messages):
                graph.mailbox.add_message(
                    start + timedelta(seconds=i * 17),
                    subject=f"d{i}",
                    body_html="<p>" + "Daily mail. " * 40 + "</p>",
                    attachments=[file_attachment(f"r{i}.pdf", synthetic_size=60_000)]
                    if i < args.attachments
                    else [],
                )
            out = workdir / "prof"
            command = [sys.executable, "-c", CHILD, str(out), "--env-file", str(env), "--quiet"]
            environment = {"REQUESTS_CA_BUNDLE": str(graph.tls.ca_cert)}
            import os

            environment = {**os.environ, **environment}
            subprocess.run([*command, "--date", "2025-06-29"], check=True, env=environment)
            for stale in workdir.glob("prof.*"):
                stale.unlink()
            subprocess.run([*command, "--date", "2025-06-30"], check=True, env=environment)
            files = sorted(str(p) for p in workdir.glob("prof.*"))
            stats = pstats.Stats(files[0])
            for extra in files[1:]:
                stats.add(extra)
            stats.sort_stats("tottime").print_stats(args.top)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
