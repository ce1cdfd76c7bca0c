"""Benchmark fund_mail against the emulator with an injected per-request latency.

    uv run python benchmarks/bench.py                 # all scenarios, 50 ms latency
    uv run python benchmarks/bench.py --only idle,big --latency 0.1

Each scenario drives the real CLI in a separate process, exactly as Task Scheduler would, and
reports the Graph requests it made, wall time, messages/s, bytes/s and the process's peak RSS,
beside the floor: ceil(N/1000) list pages plus one request per attachment, with at most 4 in
flight. It also splits each wall time into start-up, sign-in, mail and finish, from the
emulator's request log. The emulator runs in this process, so its own memory is not counted.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fund_mail.emulator import GraphEmulator, file_attachment

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MB = 1024 * 1024
SIGN_IN = ("discovery", "token")


@dataclass
class Outcome:
    name: str
    messages: int
    downloads: int
    pages: int
    requests: Counter
    wall: float
    peak_rss: int  # bytes
    payload: int  # attachment bytes written
    latency: float
    max_in_flight: int
    phases: dict[str, float]  # start-up, sign-in, mail, finish: they add up to wall
    targets: list[tuple[str, bool]]

    @property
    def graph_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def floor_requests(self) -> int:
        return self.pages + self.downloads

    @property
    def beyond_floor(self) -> str:
        """The per-run requests the floor leaves out: sign-in, and folder names."""
        extra = [
            (sum(self.requests[t] for t in SIGN_IN), "sign-in"),
            (self.requests["folder"], "folder"),
        ]
        return "".join(f" + {count} {kind}" for count, kind in extra if count)

    @property
    def floor_seconds(self) -> float:
        return self.latency * (self.pages + math.ceil(self.downloads / 4))


def child_env() -> dict[str, str]:
    """The children's environment, with Python free to keep compiled bytecode.

    An installed package and the exe both start from bytecode; some machines set
    PYTHONDONTWRITEBYTECODE, which would make every measured start compile the sources again.
    """
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass
class Measured:
    started: float  # time.monotonic(), the emulator's clock
    ended: float
    peak_rss: int  # bytes

    @property
    def wall(self) -> float:
        return self.ended - self.started


def run_measured(command: list[str], cwd: Path) -> Measured:
    """Start, end and peak RSS of one child process."""
    with tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=child_env()
        )
        # wait4 reports this child's own resource use; ru_maxrss is in KiB on Linux.
        _, status, usage = os.wait4(process.pid, 0)
        ended = time.monotonic()
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited {process.returncode}:\n{err.read()}")
        return Measured(started, ended, usage.ru_maxrss * 1024)


def phases(run: Measured, records: list) -> dict[str, float]:
    """Split a run's wall time by the emulator's request log (both on time.monotonic()).

    start-up: process start to its first request; sign-in: from there (OIDC discovery, token)
    to the first Graph request; mail: from there to the last answer; finish: on to the exit.
    """
    first = min(r.started for r in records)
    last = max(r.finished for r in records)
    mail_start = min((r.started for r in records if r.target not in SIGN_IN), default=last)
    return {
        "start-up": first - run.started,
        "sign-in": mail_start - first,
        "mail": last - mail_start,
        "finish": run.ended - last,
    }


class Bench:
    def __init__(self, latency: float, exe: Path | None) -> None:
        self.latency = latency
        self.exe = exe
        self.outcomes: list[Outcome] = []

    @contextmanager
    def _scenario(self, name: str) -> Iterator[tuple[Path, GraphEmulator, Path]]:
        """A work folder and a running emulator, both gone afterwards (150 MB in one case)."""
        workdir = Path(tempfile.mkdtemp(prefix=f"fm-bench-{name}-"))
        graph = GraphEmulator(tls_dir=workdir / "tls").start()
        try:
            os.environ["REQUESTS_CA_BUNDLE"] = str(graph.tls.ca_cert)
            yield workdir, graph, graph.write_env(workdir / ".env", workdir / "data")
        finally:
            graph.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    def measure(
        self,
        name: str,
        graph: GraphEmulator,
        command: list[str],
        cwd: Path,
        messages: int,
        downloads: int,
        targets,
    ) -> Outcome:
        graph.reset_log()
        graph.latency = self.latency
        run = run_measured(command, cwd)
        records = graph.records()
        counts = Counter(r.target for r in records)
        payload = sum(p.stat().st_size for p in (cwd / "data").glob("*/attach/*"))
        outcome = Outcome(
            name,
            messages,
            downloads,
            max(1, math.ceil(messages / 1000)),
            counts,
            run.wall,
            run.peak_rss,
            payload,
            self.latency,
            graph.max_in_flight,
            phases(run, records),
            [],
        )
        outcome.targets = [(label, check(outcome)) for label, check in targets]
        self.outcomes.append(outcome)
        graph.latency = 0
        return outcome

    # -- scenarios -------------------------------------------------------------------------
    def idle(self) -> None:
        with self._scenario("idle") as (workdir, graph, env):
            graph.mailbox.add_message(datetime.now(UTC) - timedelta(hours=1))
            once = [str(BIN / "fund_mail_once"), "--env-file", str(env), "--quiet"]
            run_measured(once, workdir)  # the baseline, which also compiles the bytecode
            self.measure(
                "idle cycle (no new mail)",
                graph,
                once,
                workdir,
                0,
                0,
                [
                    ("at most 3 HTTP requests", lambda o: o.graph_requests <= 3),
                ],
            )

    def burst(self) -> None:
        with self._scenario("burst") as (workdir, graph, env):
            once = [str(BIN / "fund_mail_once"), "--env-file", str(env), "--quiet"]
            run_measured(once, workdir)
            rng = random.Random(1000)
            now = datetime.now(UTC).replace(microsecond=0)
            downloads = 0
            with_files = set(rng.sample(range(1000), 300))
            for i in range(1000):
                count = rng.randint(1, 3) if i in with_files else 0
                downloads += count
                graph.mailbox.add_message(
                    now + timedelta(seconds=i % 60),
                    subject=f"burst {i}",
                    body_html="<p>" + "Fund report paragraph. " * 40 + "</p>",
                    attachments=[
                        file_attachment(f"r{i}-{n}.pdf", synthetic_size=60_000)
                        for n in range(count)
                    ],
                )
            self.measure(
                "1,000 new messages, 300 with 1-3 attachments",
                graph,
                once,
                workdir,
                1000,
                downloads,
                [
                    ("no per-message requests", lambda o: o.requests["message"] == 0),
                    ("within 1.5x of the floor", lambda o: o.wall <= 1.5 * o.floor_seconds),
                ],
            )

    def day(self) -> None:
        with self._scenario("day") as (workdir, graph, env):
            seoul = ZoneInfo("Asia/Seoul")
            start = datetime(2025, 6, 30, 0, 0, 1, tzinfo=seoul)
            for i in range(5000):
                graph.mailbox.add_message(
                    start + timedelta(seconds=i * 17),
                    subject=f"d{i}",
                    body_html="<p>" + "Daily mail. " * 40 + "</p>",
                )
            command = [str(BIN / "fund_mail_one_day"), "--env-file", str(env), "--quiet"]
            run_measured(command + ["--date", "2025-06-29"], workdir)  # compiles the bytecode
            command += ["--date", date(2025, 6, 30).isoformat()]
            self.measure(
                "one_day over 5,000 messages",
                graph,
                command,
                workdir,
                5000,
                0,
                [
                    # Offset-free paging re-reads each page's boundary second: one page more.
                    ("at most 6 list pages", lambda o: o.requests["list"] <= 6),
                    ("within 1.5x of the floor", lambda o: o.wall <= 1.5 * o.floor_seconds),
                ],
            )

    def audit(self) -> None:
        """fund_mail_one_day --audit of a complete 5,000-message day: ids only, nothing missing."""
        with self._scenario("audit") as (workdir, graph, env):
            seoul = ZoneInfo("Asia/Seoul")
            start = datetime(2025, 6, 30, 0, 0, 1, tzinfo=seoul)
            for i in range(5000):
                graph.mailbox.add_message(
                    start + timedelta(seconds=i * 17),
                    subject=f"a{i}",
                    body_html="<p>" + "Daily mail. " * 40 + "</p>",
                )
            day = [str(BIN / "fund_mail_one_day"), "--env-file", str(env), "--quiet"]
            run_measured(day + ["--date", "2025-06-30"], workdir)  # archives the day first
            command = day + ["--audit", "--date", "2025-06-30"]
            self.measure(
                "audit of a complete 5,000-message day",
                graph,
                command,
                workdir,
                5000,
                0,
                [
                    ("id pages only", lambda o: set(o.requests) <= {"list", *SIGN_IN}),
                    ("at most 6 list pages", lambda o: o.requests["list"] <= 6),
                ],
            )

    def big(self) -> None:
        with self._scenario("big") as (workdir, graph, env):
            once = [str(BIN / "fund_mail_once"), "--env-file", str(env), "--quiet"]
            run_measured(once, workdir)
            graph.mailbox.add_message(
                datetime.now(UTC),
                subject="150 MB",
                attachments=[file_attachment("fund_data.zip", synthetic_size=150 * MB)],
            )
            self.measure(
                "one 150 MB attachment",
                graph,
                once,
                workdir,
                1,
                1,
                [
                    ("peak RSS under 150 MB", lambda o: o.peak_rss < 150 * MB),
                    ("file complete", lambda o: o.payload == 150 * MB),
                ],
            )

    def exe_idle(self) -> None:
        if self.exe is None:
            return
        with self._scenario("exe") as (workdir, graph, env):
            graph.mailbox.add_message(datetime.now(UTC) - timedelta(hours=1))
            command = [str(self.exe), "--env-file", str(env), "--quiet"]
            run_measured(command, workdir)
            self.measure(
                "built exe, idle cycle",
                graph,
                command,
                workdir,
                0,
                0,
                [
                    ("starts and finishes in under 2 s", lambda o: o.wall < 2.0),
                    ("at most 3 HTTP requests", lambda o: o.graph_requests <= 3),
                ],
            )

    # -- report ----------------------------------------------------------------------------
    def report(self) -> str:
        lines = [
            f"latency per request: {self.latency * 1000:.0f} ms; Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} cores",
            "",
            "| scenario | requests (floor) | wall s (floor s) | msgs/s | MB/s | peak RSS MB | "
            "max in flight | targets |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for o in self.outcomes:
            rate = o.messages / o.wall if o.messages else 0
            mbps = o.payload / MB / o.wall
            targets = "; ".join(f"{'PASS' if ok else 'MISS'} {label}" for label, ok in o.targets)
            lines.append(
                f"| {o.name} | {o.graph_requests} ({o.floor_requests}{o.beyond_floor}) | "
                f"{o.wall:.2f} ({o.floor_seconds:.2f}) | {rate:.0f} | {mbps:.1f} | "
                f"{o.peak_rss / MB:.0f} | {o.max_in_flight} | {targets} |"
            )
        lines += [
            "",
            "where the wall time goes (s):",
            "",
            "| scenario | start-up | sign-in | mail (floor) | finish | mail / floor |",
            "|---|---|---|---|---|---|",
        ]
        for o in self.outcomes:
            p = o.phases
            ratio = f"{p['mail'] / o.floor_seconds:.2f}x" if o.floor_seconds else "-"
            lines.append(
                f"| {o.name} | {p['start-up']:.2f} | {p['sign-in']:.2f} | "
                f"{p['mail']:.2f} ({o.floor_seconds:.2f}) | {p['finish']:.2f} | {ratio} |"
            )
        lines.append("")
        lines.append(
            "requests by kind: "
            + "; ".join(f"{o.name}: {dict(sorted(o.requests.items()))}" for o in self.outcomes)
        )
        return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument(
        "--only",
        default="idle,burst,day,audit,big,exe",
        help="comma-separated scenarios: idle, burst, day, audit, big, exe",
    )
    parser.add_argument(
        "--exe",
        type=Path,
        default=ROOT / "dist" / "fund_mail_once",
        help="the built executable for the exe scenario (skipped if missing)",
    )
    args = parser.parse_args()
    exe = args.exe if args.exe.exists() else None
    bench = Bench(args.latency, exe)
    chosen = args.only.split(",")
    for name in ("idle", "burst", "day", "audit", "big", "exe"):
        if name in chosen:
            getattr(bench, "exe_idle" if name == "exe" else name)()
    print(bench.report())
    if "exe" in chosen and exe is None:
        print(f"\n(exe scenario skipped: {args.exe} not built; run ./make_exe.sh)")
    missed = [f"{o.name}: {label}" for o in bench.outcomes for label, ok in o.targets if not ok]
    if missed:
        print("\nMissed targets (exit code 1):\n  " + "\n  ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
