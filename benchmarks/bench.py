"""Benchmark fund_mail against the emulator with an injected per-request latency.

    uv run python benchmarks/bench.py                 # all scenarios, 50 ms latency
    uv run python benchmarks/bench.py --only idle,big --latency 0.1

Each scenario drives the real CLI in a separate process, exactly as Task Scheduler would, and
reports the Graph requests it made beside the request floor, the wall time beside floor c
(BENCHMARKS.md, "The floor") and the literal floor (list pages only, one after another), and
the process's peak RSS. It also splits each wall time into start-up, sign-in, mail and finish,
from the emulator's request log, and reports the emulator's own time per list page. The
emulator runs in this process, so its own memory is not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sqlite3
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
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fund_mail.archive.rows import SOURCE_MESSAGE_NAME
from fund_mail.archive.store import SCHEMA_SQL
from fund_mail.emulator import GraphEmulator, file_attachment
from fund_mail.emulator.mailbox import REFERENCE, Message
from fund_mail.graph.client import ATTACHMENT_EXPAND, ID_FIELDS, MESSAGE_FIELDS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MB = 1024 * 1024
SIGN_IN = ("discovery", "token")
SCENARIOS = ("idle", "burst", "day", "attach_day", "range", "audit", "big", "mime", "exe")
SLOTS = 4  # Graph's requests in flight per mailbox
PAGE = 1000
PREFER = 'IdType="ImmutableId", outlook.body-content-type="html"'  # fund_mail's default
FOLDERS = 2  # sentitems (which names the root too), then Inbox: once per process


@dataclass
class Outcome:
    name: str
    messages: int
    downloads: int
    pages: int  # list pages the floor allows: ceil(N/1000) per day
    folders: int  # folder lookups the floor allows
    sign_in: int  # sign-in requests the floor allows: the token, and discovery when not cached
    requests: Counter
    wall: float
    peak_rss: int  # bytes
    payload: int  # attachment bytes written
    latency: float
    interpreter: float  # the interpreter's own start and exit, measured in this run
    transfer: float  # the emulator's time sending attachment bytes beyond the latency
    max_in_flight: int
    phases: dict[str, float]  # start-up, sign-in, mail, finish: they add up to wall
    page_work: list[float]  # the emulator's own seconds per list page
    targets: list[tuple[str, bool]]
    reference: float = 0.0  # the reference client's wall time for the same requests
    days: int = 1

    @property
    def reference_ratio(self) -> float:
        return self.wall / self.reference if self.reference else 0.0

    @property
    def graph_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def floor_requests(self) -> int:
        return self.sign_in + self.pages + self.folders + self.downloads

    @property
    def keyset_floor_requests(self) -> int:
        """The request floor for a listing that asks for each next page by time, as the paging
        issue requires, not by $skip: with the messages a second or more apart, every page
        after the first re-reads the one message of the second where the page before ended.
        A time slice could list exactly a page only with its count known first, and a count
        is a request of its own."""
        per_day = math.ceil(self.messages / self.days) if self.messages else 0
        return self.sign_in + self.days * keyset_pages(per_day) + self.folders + self.downloads

    @property
    def floor_c(self) -> float:
        """Start the interpreter, sign in, then the list pages and folder lookups sharing the 4
        slots (time slices, the days of a range), then the downloads over the 4 slots, each a
        round trip plus its transfer."""
        lookups = math.ceil((self.pages + self.folders) / SLOTS) if self.pages else 0
        downloads = (self.downloads * self.latency + self.transfer) / SLOTS
        return self.interpreter + self.latency * (self.sign_in + lookups) + downloads

    @property
    def literal_floor(self) -> float:
        """List pages only, one after another: the floor of the earlier benchmark issue."""
        return self.latency * self.pages

    @property
    def ratio(self) -> float:
        return self.wall / self.floor_c

    @property
    def request_ratio(self) -> float:
        return self.graph_requests / self.floor_requests if self.floor_requests else 1.0

    def cause(self) -> str:
        """Where the wall time beyond floor c went, from the measured phases."""
        p = self.phases
        lookups = math.ceil((self.pages + self.folders) / SLOTS) if self.pages else 0
        mail_floor = self.latency * lookups + (self.downloads * self.latency + self.transfer) / 4
        work = max(self.page_work, default=0.0)
        return (
            f"start-up {p['start-up']:.2f} s against the interpreter's {self.interpreter:.2f} s; "
            f"sign-in {p['sign-in']:.2f} s for {self.sign_in} request(s) of "
            f"{self.latency:.2f} s; mail {p['mail']:.2f} s against {mail_floor:.2f} s; "
            f"finish {p['finish']:.2f} s; the emulator's slowest page {work * 1000:.0f} ms"
        )


REQUESTS_GOAL = ("requests within 1.05x of the floor", lambda o: o.request_ratio <= 1.05)
# The request goal read against the floor of a listing by time (Outcome.keyset_floor_requests).
KEYSET_REQUESTS_GOAL = (
    "requests within 1.05x of the floor of a listing by time",
    lambda o: o.graph_requests <= 1.05 * o.keyset_floor_requests,
)


def keyset_pages(messages: int) -> int:
    """List pages one after another by time, a message a second: the first page holds PAGE,
    each later one PAGE - 1 new (it re-reads the second the page before it ended in)."""
    if messages <= PAGE:
        return 1
    return 1 + math.ceil((messages - PAGE) / (PAGE - 1))


# The attachment workloads' goal as the issue wrote it, and its reading against the reference
# client, which counts the work every Python client does here (BENCHMARKS.md, "The floor").
WITHIN_FLOOR_C = ("within 1.05x of floor c", lambda o: o.ratio <= 1.05)
WITHIN_REFERENCE = ("within 1.05x of the reference client", lambda o: o.reference_ratio <= 1.05)


def day_of_mail(graph: GraphEmulator, day: date, count: int, with_files: int) -> list[Message]:
    """count messages spread over a Seoul day, the first with_files of every count carrying
    one 60 kB attachment each (spread evenly)."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo("Asia/Seoul"))
    step = 86_000 // count
    return [
        graph.mailbox.add_message(
            start + timedelta(seconds=1 + i * step),
            subject=f"{day} {i}",
            body_html="<p>" + "Daily mail. " * 40 + "</p>",
            attachments=[file_attachment(f"r{i}.pdf", synthetic_size=60_000)]
            if i * with_files // count != (i + 1) * with_files // count
            else [],
        )
        for i in range(count)
    ]


def interpreter_time() -> float:
    """The interpreter alone starting and exiting (median of 3), in the benchmark's own run."""
    times = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=child_env())
        times.append(time.monotonic() - started)
    return sorted(times)[1]


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


# Runs in a small process started before any emulator fills up: a child forked from the big
# benchmark process would inherit its memory high-water mark, which wait4 then reports as the
# child's peak RSS. Each line in: a JSON [command, cwd, env]; each line out: a JSON result.
LAUNCHER = r"""
import json, os, subprocess, sys, tempfile, time
for line in sys.stdin:
    command, cwd, env = json.loads(line)
    with tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        ended = time.monotonic()
        err.seek(0)
        result = [started, ended, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status), err.read()]
    print(json.dumps(result), flush=True)
"""
_launcher: subprocess.Popen | None = None


def run_measured(command: list[str], cwd: Path) -> Measured:
    """Start, end (on this process's time.monotonic(), which is system-wide) and peak RSS of
    one child process, started by the launcher."""
    global _launcher
    if _launcher is None:
        _launcher = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
    _launcher.stdin.write(json.dumps([command, str(cwd), child_env()]) + "\n")
    _launcher.stdin.flush()
    started, ended, peak_rss, code, err = json.loads(_launcher.stdout.readline())
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}:\n{err}")
    return Measured(started, ended, peak_rss)


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


def archive_problems(data_dir: Path, expected: list[Message], keep_mime: bool = False) -> list[str]:
    """How the archive under data_dir differs from the mail the measured run had to archive:
    every expected message exactly once, an attachment row per attachment (plus, with
    KEEP_MIME, one original-MIME row per message), and each row's file on disk with its size.
    Empty when they match."""
    ids: Counter = Counter()
    attachments: list[tuple[str, str, int]] = []
    originals = 0
    for db in sorted(data_dir.glob("*/fm_*.db")):
        with sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True) as conn:
            ids.update(row[0] for row in conn.execute("SELECT email_id FROM fund_mail"))
            for folder, name, size, original in conn.execute(
                "SELECT save_folder, phy_file_name, file_size, org_file_name = ? "
                "FROM fund_mail_attach",
                (SOURCE_MESSAGE_NAME,),
            ):
                if original:
                    originals += 1
                    if not (data_dir / folder / name).is_file():
                        attachments.append((folder, name, size))  # reported as missing below
                else:
                    attachments.append((folder, name, size))
    wanted = Counter(m.immutable_id for m in expected)
    files = [a for m in expected for a in m.attachments if a.kind != REFERENCE]
    problems = []
    if ids != wanted:
        problems.append(
            f"{sum(ids.values())} rows for {len(ids)} email_ids, expected {len(wanted)} messages "
            f"once each: missing {len(wanted - ids)}, unexpected or repeated {len(ids - wanted)}"
        )
    if len(attachments) != len(files):
        problems.append(f"{len(attachments)} attachment rows, expected {len(files)}")
    if originals != (len(expected) if keep_mime else 0):
        problems.append(f"{originals} original-MIME rows with KEEP_MIME={int(keep_mime)}")
    on_disk = {
        p.relative_to(data_dir).as_posix(): p.stat().st_size
        for p in data_dir.glob("*/attach/*")
        if not keep_mime or p.suffix != ".eml"
    }
    if len(on_disk) != len({(folder, name) for folder, name, _ in attachments}):
        problems.append(f"{len(on_disk)} attachment files on disk for {len(attachments)} rows")
    wrong = [f"{f}/{n}" for f, n, size in attachments if on_disk.get(f"{f}/{n}") != size]
    if wrong:
        problems.append(f"{len(wrong)} attachment files missing or of the wrong size: {wrong[:3]}")
    if sorted(size for *_, size in attachments) != sorted(a.value_length() for a in files):
        problems.append("attachment sizes differ from the mailbox's")
    return problems


def reference_command(graph: GraphEmulator, cwd: Path, records: list) -> list[str]:
    """The command that runs the reference client on the Graph GETs of a measured run; its
    plan and output go to cwd/reference, made anew."""
    registration = graph.registration
    host, port = graph.url.removeprefix("https://").split(":")
    first_look = min((r.finished for r in records if r.target == "list"), default=0.0)
    work = cwd / "reference"
    plan = {
        "host": host,
        "port": int(port),
        "ca": str(graph.tls.ca_cert),
        "token_path": f"/{registration.tenant_id}/oauth2/v2.0/token",
        "form": {
            "client_id": registration.client_id,
            "client_secret": registration.client_secret,
            "scope": "https://graph.microsoft.com/.default",
            "grant_type": "client_credentials",
        },
        "headers": {"Prefer": PREFER},
        # [kind, target, later]: later is what the run asked only after its first list
        # answer, which the reference too holds back until its own first list answer.
        "gets": [
            [
                r.target,
                r.path + ("?" + urlencode(r.query, quote_via=quote) if r.query else ""),
                r.started >= first_look,
            ]
            for r in sorted(records, key=lambda r: r.started)
            if r.method == "GET" and r.target not in SIGN_IN
        ],
        "schema": SCHEMA_SQL,
        "db": str(work / "reference.db"),
        "out": str(work / "files"),
    }
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    return [
        sys.executable,
        str(ROOT / "benchmarks" / "reference_client.py"),
        str(work / "plan.json"),
    ]


class Bench:
    def __init__(self, latency: float, exe: Path | None, repeat: int = 3) -> None:
        self.latency = latency
        self.repeat = repeat
        self.exe = exe
        self.outcomes: list[Outcome] = []
        run_measured([sys.executable, "-c", "pass"], ROOT)  # starts the launcher while small
        self.interpreter = interpreter_time()

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
        expected: list[Message],
        downloads: int,
        targets,
        *,
        days: int = 1,
        folders: int = FOLDERS,
        sign_in: int = 1,
        keep_mime: bool = False,
    ) -> Outcome:
        """sign_in: 1 when the run before cached the discovery answer (every scenario here)."""
        # Pages of the mail as the client will ask for it are rendered before the clock starts.
        if "--audit" in command:
            graph.prerender(ID_FIELDS)
        else:
            graph.prerender(MESSAGE_FIELDS, ATTACHMENT_EXPAND)
        # Each repeat starts from the same DATA_DIR: the one the unmeasured run left.
        data, before = cwd / "data", cwd / "data-before"
        shutil.copytree(data, before, symlinks=True)
        runs, references = [], []
        for _ in range(self.repeat):
            shutil.rmtree(data)
            shutil.copytree(before, data, symlinks=True)
            graph.reset_log()
            graph.latency = self.latency
            run = run_measured(command, cwd)
            graph.latency = 0
            # A figure is only worth reporting for a run that archived what it was asked to.
            problems = archive_problems(data, expected, keep_mime)
            if problems:
                raise SystemExit(
                    f"{name}: the archive does not match the emulator's mailbox, so no figure "
                    "is reported:\n  " + "\n  ".join(problems)
                )
            records = graph.records()
            max_in_flight = graph.max_in_flight
            # The reference right after each run, not after all of them: this machine's speed
            # drifts within minutes, and pairs keep the ratio to the reference side by side.
            references.append(self.reference(graph, cwd, records))
            runs.append((run.wall, run, records, max_in_flight))
        shutil.rmtree(before)
        # The median run by wall time, whole: its requests, phases and memory go together.
        _, run, records, max_in_flight = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        messages = len(expected)
        counts = Counter(r.target for r in records)
        payload = sum(p.stat().st_size for p in (cwd / "data").glob("*/attach/*"))
        per_day = math.ceil(len(expected) / days) if expected else 0
        outcome = Outcome(
            name,
            messages,
            downloads,
            days * max(1, math.ceil(per_day / PAGE)),
            folders,
            sign_in,
            counts,
            run.wall,
            run.peak_rss,
            payload,
            self.latency,
            self.interpreter,
            sum(
                max(0.0, r.finished - r.started - self.latency)
                for r in records
                if r.target == "attachment"
            ),
            max_in_flight,
            phases(run, records),
            [r.work for r in records if r.target == "list"],
            [],
            days=days,
        )
        outcome.reference = sorted(references)[len(references) // 2]
        outcome.targets = [(label, check(outcome)) for label, check in targets]
        self.outcomes.append(outcome)
        return outcome

    def reference(self, graph: GraphEmulator, cwd: Path, records: list) -> float:
        """The reference client's wall time for the Graph GETs of a measured run, replayed in
        the order it made them (benchmarks/reference_client.py)."""
        command = reference_command(graph, cwd, records)
        graph.latency = self.latency
        wall = run_measured(command, cwd).wall
        graph.latency = 0
        shutil.rmtree(cwd / "reference", ignore_errors=True)
        return wall

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
                [],
                0,
                [
                    (
                        "2 requests with the cached discovery answer",
                        lambda o: o.graph_requests <= 2,
                    ),
                ],
                folders=0,
            )

    def burst(self) -> None:
        with self._scenario("burst") as (workdir, graph, env):
            once = [str(BIN / "fund_mail_once"), "--env-file", str(env), "--quiet"]
            run_measured(once, workdir)
            rng = random.Random(1000)
            now = datetime.now(UTC).replace(microsecond=0)
            downloads = 0
            with_files = set(rng.sample(range(1000), 300))
            fresh = []
            for i in range(1000):
                count = rng.randint(1, 3) if i in with_files else 0
                downloads += count
                message = graph.mailbox.add_message(
                    now + timedelta(seconds=i % 60),
                    subject=f"burst {i}",
                    body_html="<p>" + "Fund report paragraph. " * 40 + "</p>",
                    attachments=[
                        file_attachment(f"r{i}-{n}.pdf", synthetic_size=60_000)
                        for n in range(count)
                    ],
                )
                fresh.append(message)
            self.measure(
                "1,000 new messages, 300 with 1-3 attachments",
                graph,
                once,
                workdir,
                fresh,
                downloads,
                [
                    ("no per-message requests", lambda o: o.requests["message"] == 0),
                    REQUESTS_GOAL,
                    WITHIN_FLOOR_C,
                    WITHIN_REFERENCE,
                ],
            )

    def day(self) -> None:
        with self._scenario("day") as (workdir, graph, env):
            day_mail = day_of_mail(graph, date(2025, 6, 30), 5000, 0)  # 17 s apart
            command = [str(BIN / "fund_mail_one_day"), "--env-file", str(env), "--quiet"]
            run_measured(command + ["--date", "2025-06-29"], workdir)  # compiles the bytecode
            command += ["--date", date(2025, 6, 30).isoformat()]
            self.measure(
                "one_day over 5,000 messages",
                graph,
                command,
                workdir,
                day_mail,
                0,
                [
                    REQUESTS_GOAL,
                    KEYSET_REQUESTS_GOAL,
                    ("within 1.3x of floor c", lambda o: o.ratio <= 1.3),
                    ("within 1.3x of the reference client", lambda o: o.reference_ratio <= 1.3),
                ],
            )

    def attach_day(self) -> None:
        """fund_mail_one_day of 1,000 messages, 600 of them with a 60 kB attachment."""
        with self._scenario("attach_day") as (workdir, graph, env):
            mail = day_of_mail(graph, date(2025, 6, 30), 1000, 600)
            command = [str(BIN / "fund_mail_one_day"), "--env-file", str(env), "--quiet"]
            run_measured(command + ["--date", "2025-06-29"], workdir)  # compiles the bytecode
            self.measure(
                "one_day, 1,000 messages with 600 attachments",
                graph,
                command + ["--date", "2025-06-30"],
                workdir,
                mail,
                600,
                [REQUESTS_GOAL, WITHIN_FLOOR_C, WITHIN_REFERENCE],
            )

    def range(self) -> None:
        """fund_mail_one_day --from --to over 7 days of 1,000 messages and 600 attachments."""
        with self._scenario("range") as (workdir, graph, env):
            first = date(2025, 6, 23)
            mail = [
                m
                for n in range(7)
                for m in day_of_mail(graph, first + timedelta(days=n), 1000, 600)
            ]
            command = [str(BIN / "fund_mail_one_day"), "--env-file", str(env), "--quiet"]
            run_measured(command + ["--date", "2025-06-22"], workdir)  # compiles the bytecode
            self.measure(
                "--from --to over 7 days of 1,000 messages and 600 attachments",
                graph,
                command + ["--from", "2025-06-23", "--to", "2025-06-29"],
                workdir,
                mail,
                4200,
                [REQUESTS_GOAL, WITHIN_FLOOR_C, WITHIN_REFERENCE],
                days=7,
            )

    def mime(self) -> None:
        """KEEP_MIME's cost: the same 500 new messages archived without and with the option."""
        for keep in ("0", "1"):
            with self._scenario(f"mime{keep}") as (workdir, graph, env):
                graph.write_env(env, workdir / "data", KEEP_MIME=keep)
                once = [str(BIN / "fund_mail_once"), "--env-file", str(env), "--quiet"]
                run_measured(once, workdir)
                now = datetime.now(UTC).replace(microsecond=0)
                messages = [
                    graph.mailbox.add_message(
                        now + timedelta(seconds=i % 60),
                        subject=f"mime {i}",
                        body_html="<p>" + "Fund report paragraph. " * 40 + "</p>",
                        attachments=[file_attachment(f"m{i}.pdf", synthetic_size=60_000)]
                        if i % 5 == 0
                        else [],
                    )
                    for i in range(500)
                ]
                per_message = 500 if keep == "1" else 0
                self.measure(
                    f"500 new messages, 100 with a file, KEEP_MIME={keep}",
                    graph,
                    once,
                    workdir,
                    messages,
                    100 + per_message,
                    [
                        (
                            f"{per_message} message $value requests",
                            lambda o, n=per_message: o.requests["message"] == n,
                        ),
                    ],
                    keep_mime=keep == "1",
                )

    def audit(self) -> None:
        """fund_mail_one_day --audit of a complete 5,000-message day: ids only, nothing missing."""
        with self._scenario("audit") as (workdir, graph, env):
            day_mail = day_of_mail(graph, date(2025, 6, 30), 5000, 0)  # 17 s apart
            day = [str(BIN / "fund_mail_one_day"), "--env-file", str(env), "--quiet"]
            run_measured(day + ["--date", "2025-06-30"], workdir)  # archives the day first
            command = day + ["--audit", "--date", "2025-06-30"]
            self.measure(
                "audit of a complete 5,000-message day",
                graph,
                command,
                workdir,
                day_mail,  # archived by the run before; the audit must leave it whole
                0,
                [
                    ("id pages only", lambda o: set(o.requests) <= {"list", *SIGN_IN}),
                    ("at most 6 list pages", lambda o: o.requests["list"] <= 6),
                ],
                folders=0,
            )

    def big(self) -> None:
        with self._scenario("big") as (workdir, graph, env):
            once = [str(BIN / "fund_mail_once"), "--env-file", str(env), "--quiet"]
            run_measured(once, workdir)
            big = graph.mailbox.add_message(
                datetime.now(UTC),
                subject="150 MB",
                attachments=[file_attachment("fund_data.zip", synthetic_size=150 * MB)],
            )
            self.measure(
                "one 150 MB attachment",
                graph,
                once,
                workdir,
                [big],
                1,
                [
                    ("peak RSS under 100 MB", lambda o: o.peak_rss < 100 * MB),
                    ("file complete", lambda o: o.payload == 150 * MB),
                ],
            )

    def exe_idle(self) -> None:
        if self.exe is None:
            return  # main() decided it may be left out, and said so
        with self._scenario("exe") as (workdir, graph, env):
            graph.mailbox.add_message(datetime.now(UTC) - timedelta(hours=1))
            command = [str(self.exe), "--env-file", str(env), "--quiet"]
            run_measured(command, workdir)
            self.measure(
                "built exe, idle cycle",
                graph,
                command,
                workdir,
                [],
                0,
                [
                    ("starts and finishes in under 2 s", lambda o: o.wall < 2.0),
                    (
                        "2 requests with the cached discovery answer",
                        lambda o: o.graph_requests <= 2,
                    ),
                ],
                folders=0,
            )

    # -- report ----------------------------------------------------------------------------
    def report(self) -> str:
        lines = [
            f"latency per request: {self.latency * 1000:.0f} ms; each figure the median of "
            f"{self.repeat} runs; Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} cores; the interpreter alone starts and exits in "
            f"{self.interpreter:.3f} s",
            "",
            "| workload | requests | floor requests | wall s | floor c s | ratio | literal floor s "
            "| peak RSS MB | reference s | ratio to reference |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for o in self.outcomes:
            lines.append(
                f"| {o.name} | {o.graph_requests} | {o.floor_requests} | {o.wall:.2f} | "
                f"{o.floor_c:.2f} | {o.ratio:.2f}x | {o.literal_floor:.2f} | "
                f"{o.peak_rss / MB:.0f} | {o.reference:.2f} | {o.reference_ratio:.2f}x |"
            )
        lines += [
            "",
            "where the wall time goes (s), and the emulator's own time per list page:",
            "",
            "| workload | start-up | sign-in | mail | finish | emulator ms/page (median, max) "
            "| max in flight |",
            "|---|---|---|---|---|---|---|",
        ]
        for o in self.outcomes:
            p = o.phases
            work = sorted(o.page_work) or [0.0]
            lines.append(
                f"| {o.name} | {p['start-up']:.2f} | {p['sign-in']:.2f} | {p['mail']:.2f} | "
                f"{p['finish']:.2f} | {work[len(work) // 2] * 1000:.0f}, {work[-1] * 1000:.0f} "
                f"| {o.max_in_flight} |"
            )
        lines += ["", "goals:", ""]
        for o in self.outcomes:
            for label, ok in o.targets:
                lines.append(f"- {'PASS' if ok else 'MISS'} {o.name}: {label}")
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
        help=f"comma-separated scenarios: {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--exe",
        type=Path,
        default=ROOT / "dist" / "fund_mail_once" / "fund_mail_once",
        help="the built executable for the exe scenario (left out if missing, unless named "
        "in --only or run in CI)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="measured runs per scenario; the median is reported"
    )
    args = parser.parse_args()
    chosen = (args.only or ",".join(SCENARIOS)).split(",")
    exe = args.exe if args.exe.exists() else None
    if "exe" in chosen and exe is None:
        if args.only or os.environ.get("CI", "").lower() == "true":
            print(
                f"The exe scenario needs {args.exe}: build it with ./make_exe.sh", file=sys.stderr
            )
            return 1
        print(f"(exe scenario left out: {args.exe} not built; run ./make_exe.sh)")
    bench = Bench(args.latency, exe, args.repeat)
    for name in SCENARIOS:
        if name in chosen:
            getattr(bench, "exe_idle" if name == "exe" else name)()
    print(bench.report())
    missed = [
        f"{o.name}: {label}\n    measured: {o.cause()}; {o.graph_requests} requests for a floor "
        f"of {o.floor_requests}: {dict(sorted(o.requests.items()))}"
        for o in bench.outcomes
        for label, ok in o.targets
        if not ok
    ]
    if missed:
        print(
            "\nMissed goals (exit code 1), each with its measured cause:\n  " + "\n  ".join(missed)
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
