"""Benchmark fund_mail_pst: time and peak memory against item count.

    FUND_MAIL_PST_FIXTURES=/path/to/fixtures uv run python benchmarks/bench_pst.py
    uv run python benchmarks/bench_pst.py --rounds 1,8,32

No multi-gigabyte PST is available, so each round imports the fixtures N times into one target
(as N differently named links, so each import is a full one, into its own DB beside the others,
sharing attach/), in one child process. It reports items, wall time, items/s and the child's
peak RSS, and the ratios against the smallest round: time should grow with the items, memory
should not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(
    os.environ.get("FUND_MAIL_PST_FIXTURES") or ROOT.parent / "shared" / "fixtures" / "pst"
)
NAMES = ("Outlook.pst", "testPST.pst", "dist-list.pst")


def child(target: Path, psts: list[Path]) -> None:
    """Import every PST into target in this process; print the items seen."""
    from fund_mail.pst.importer import import_pst

    seen = 0
    for pst in psts:
        report = import_pst(pst, target, ZoneInfo("Asia/Seoul"), "cp949")
        seen += report.totals().seen
    print(seen)


def round_trip(copies: int, work: Path) -> tuple[int, float, int]:
    """(items, seconds, peak RSS in KiB) of one child importing the fixtures `copies` times."""
    sources = work / f"src{copies}"
    sources.mkdir()
    psts = []
    for index in range(copies):
        for name in NAMES:
            link = sources / f"{Path(name).stem}_{index:04d}.pst"
            link.symlink_to(FIXTURES / name)
            psts.append(link)
    target = work / f"target{copies}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", str(target), *map(str, psts)],
        stdout=subprocess.PIPE,
        text=True,
    )
    out = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if status:
        raise SystemExit(f"the import of {copies} copies failed ({status})")
    return int(out.strip().splitlines()[-1]), elapsed, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", default="1,4,16", help="copies of the fixtures per round")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), [Path(p) for p in args.child[1:]])
        return
    if not all((FIXTURES / n).is_file() for n in NAMES):
        raise SystemExit(f"PST fixtures not found at {FIXTURES} (set FUND_MAIL_PST_FIXTURES)")
    work = Path(tempfile.mkdtemp(prefix="bench_pst_"))
    try:
        rows = [(c, *round_trip(c, work)) for c in map(int, args.rounds.split(","))]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base_items, base_time, base_rss = rows[0][1:]
    print(f"{'copies':>6} {'items':>7} {'seconds':>8} {'items/s':>8} {'peak RSS MiB':>13} "
          f"{'x items':>8} {'x time':>7} {'x RSS':>6}")  # fmt: skip
    for copies, items, seconds, rss in rows:
        print(
            f"{copies:>6} {items:>7} {seconds:>8.2f} {items / seconds:>8.1f} {rss / 1024:>13.1f} "
            f"{items / base_items:>8.1f} {seconds / base_time:>7.1f} {rss / base_rss:>6.2f}"
        )


if __name__ == "__main__":
    main()
