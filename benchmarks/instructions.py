"""Count the instructions fund_mail_one_day spends on a 5,000-message day, under callgrind.

    uv run python benchmarks/instructions.py                  # this checkout, and the reference
    uv run python benchmarks/instructions.py --against HEAD~3 # and an earlier revision

Wall times on a shared 2-core machine swing by tens of percent from one minute to the next;
an instruction count does not (two runs of the same code agree within 0.2%). It counts the
client's own work, all threads: start-up, TLS, decoding, rows, SQLite, publishing, exit. It
does not count waiting, so it shows what a change does to the CPU the run needs, not to its
wall time; bench.py measures that. Needs valgrind (apt-get install valgrind).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from fund_mail.graph.client import ATTACHMENT_EXPAND, MESSAGE_FIELDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402 - a sibling script, not a package

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "from fund_mail.cli import one_day_program; one_day_program()"


def counted(command: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Instructions the command executed, every thread, under callgrind."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        cwd=cwd, env=env, capture_output=True, text=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or not found:
        raise SystemExit(f"{' '.join(command)} failed under callgrind:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="REV", help="also count this git revision")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    workdir = Path(tempfile.mkdtemp(prefix="fm-instructions-"))
    sources = {"this checkout": ROOT / "src"}
    if args.against:
        export = workdir / "against"
        export.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.against, "src"],
            capture_output=True, check=True,
        )  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(export)], input=archive.stdout, check=True)
        sources[args.against] = export / "src"
    b = bench.Bench(0.0, None, 1)
    try:
        with b._scenario("instructions") as (cwd, graph, env_file):
            mail = bench.day_of_mail(graph, date(2025, 6, 30), 5000, 0)
            command = [str(bench.BIN / "python"), "-c", PROGRAM, "--env-file", str(env_file)]
            command.append("--quiet")

            def environment(source: Path) -> dict[str, str]:
                return {**bench.child_env(), "PYTHONPATH": str(source)}

            # The day before is empty: it compiles the bytecode and keeps the discovery answer.
            for source in sources.values():
                subprocess.run([*command, "--date", "2025-06-29"], cwd=cwd, env=environment(source),
                               check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            graph.prerender(MESSAGE_FIELDS, ATTACHMENT_EXPAND)
            data, before = cwd / "data", cwd / "data-before"
            shutil.copytree(data, before, symlinks=True)
            for label, source in sources.items():
                shutil.rmtree(data)
                shutil.copytree(before, data, symlinks=True)
                graph.reset_log()
                count = counted([*command, "--date", "2025-06-30"], cwd, environment(source))
                problems = bench.archive_problems(data, mail)
                if problems:
                    raise SystemExit(f"{label}: the archive does not match: {problems[:3]}")
                print(f"{label}: {count / 1e6:,.1f} M instructions", flush=True)
                records = graph.records()
            # The reference client, for the GETs of the last run.
            reference = counted(
                bench.reference_command(graph, cwd, records), cwd, bench.child_env()
            )
            print(f"reference client: {reference / 1e6:,.1f} M instructions")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.exit(main())
