"""The service loop on Linux: schedule decisions, a hung cycle killed while the next still
starts, a stop request during a cycle, never killing a cycle mid-publish, and real cycles."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from fund_mail.archive.index import ArchiveIndex
from fund_mail.config import config_from_values
from fund_mail.service import (
    Outcome,
    ServiceLoop,
    cycle_argv,
    next_start,
    record_outcome,
    should_end,
)

DEADLINE = 30.0


def wait_for(condition, what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("previous", "now", "expected"),
    [
        (None, 100.0, 100.0),  # the first cycle starts at once
        (100.0, 150.0, 400.0),  # then one interval after the previous start
        (100.0, 700.0, 700.0),  # a long cycle is followed at once, without a backlog
    ],
)
def test_next_start(previous, now, expected):
    assert next_start(previous, 300.0, now) == expected


@pytest.mark.parametrize(
    ("now", "stop", "expected"),
    [(5.0, False, None), (10.0, False, "timeout"), (5.0, True, "stop"), (10.0, True, "stop")],
)
def test_should_end(now, stop, expected):
    assert should_end(now, 10.0, stop) == expected


def child(tmp_path: Path, body: str) -> list[str]:
    """A child process running body, with `here` (the test folder) and a per-start counter."""
    script = tmp_path / "child.py"
    script.write_text(
        "import sys, time\nfrom pathlib import Path\n"
        f"here = Path({str(tmp_path)!r})\n"
        "runs = here / 'runs'\nruns.mkdir(exist_ok=True)\n"
        "n = len(list(runs.iterdir())) + 1\n(runs / str(n)).write_text('started')\n" + body,
        encoding="utf-8",
    )
    return [sys.executable, str(script)]


HANG_FIRST = """
if n == 1:
    while True:
        time.sleep(1)
"""


class Running:
    """A ServiceLoop on a thread, with its outcomes collected."""

    def __init__(self, tmp_path: Path, argv: list[str], interval=0.05, timeout=60.0) -> None:
        self.outcomes: list[Outcome] = []
        self.loop = ServiceLoop(
            tmp_path, argv, interval=interval, timeout=timeout, on_outcome=self.outcomes.append
        )
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive()


def test_a_hung_cycle_is_killed_and_the_next_one_still_starts(tmp_path):
    running = Running(tmp_path, child(tmp_path, HANG_FIRST), timeout=1.0)
    try:
        wait_for(lambda: len(running.outcomes) >= 2, "two cycles")
    finally:
        running.stop()
    assert running.outcomes[0].ended_by == "timeout" and running.outcomes[0].exit_code is None
    assert running.outcomes[1] == Outcome(0, "", running.outcomes[1].seconds)


def test_a_stop_request_during_a_cycle_ends_it_within_5_seconds(tmp_path):
    running = Running(tmp_path, child(tmp_path, HANG_FIRST))
    wait_for(lambda: (tmp_path / "runs" / "1").exists(), "the cycle to start")
    process = running.loop.child
    assert process is not None
    running.loop.stop()
    running.thread.join(5)
    assert not running.thread.is_alive(), "the service must stop within 5 seconds"
    assert process.poll() is not None, "the hung cycle was ended"
    assert running.outcomes == [Outcome(None, "stop", running.outcomes[0].seconds)]


PUBLISHING = """
from fund_mail.archive.fsutil import RunLock
from fund_mail.archive.index import PUBLISH_LOCK
with RunLock(here / PUBLISH_LOCK, "publish"):
    (here / "publishing").write_text("")
    while not (here / "release").exists():
        time.sleep(0.01)
    (here / "published").write_text("")
while True:
    time.sleep(1)
"""


def test_a_stop_never_kills_a_cycle_in_the_middle_of_a_publish(tmp_path):
    running = Running(tmp_path, child(tmp_path, PUBLISHING))
    wait_for(lambda: (tmp_path / "publishing").exists(), "the publish to begin")
    running.loop.stop()
    wait_for(running.loop.stopping.is_set, "the stop to wait for the publish")
    process = running.loop.child
    assert process is not None and process.poll() is None, "killed in the middle of a publish"
    (tmp_path / "release").write_text("")
    running.thread.join(DEADLINE)
    assert not running.thread.is_alive()
    assert (tmp_path / "published").exists(), "the publish was allowed to finish"
    assert process.poll() is not None


def test_a_timed_out_cycle_counts_as_a_failed_run(config):
    config.data_dir.mkdir(parents=True)
    record_outcome(config, Outcome(None, "timeout", 3600.0))
    record_outcome(config, Outcome(None, "stop", 1.0))  # a requested stop is no failure
    index = ArchiveIndex(config.data_dir)
    try:
        runs = index.recent_runs("fund_mail_once", 10)
    finally:
        index.close()
    assert [r.exit_code for r in runs] == [1]
    assert "CYCLE_TIMEOUT_MINUTES=60" in runs[0].error


def test_real_cycles_archive_through_the_child_process(graph, data_dir, env_file, now):
    config = config_from_values(graph.env_values(data_dir, RETRY_BACKOFF="0.05"))
    argv = cycle_argv(str(env_file))
    outcomes: list[Outcome] = []
    loop = ServiceLoop(data_dir, argv, interval=0.05, timeout=120.0, on_outcome=outcomes.append)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(outcomes) >= 1, "the baseline cycle")
        graph.mailbox.add_message(now, subject="through the service")
        wait_for(lambda: list(data_dir.glob("*/fm_*.db")), "a cycle to archive the new mail")
    finally:
        loop.stop()
        thread.join(DEADLINE)
    assert outcomes[0].exit_code == 0
    index = ArchiveIndex(config.data_dir)
    try:
        assert index.recent_runs("fund_mail_once", 1)[0].exit_code == 0
    finally:
        index.close()
