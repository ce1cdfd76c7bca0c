"""The benchmark checks what it timed: a run that did not archive the mailbox gets no figure."""

import importlib.util
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from fund_mail.emulator import file_attachment, inner_message, item_attachment
from fund_mail.engine import run_once

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["bench"]


@pytest.fixture
def archived(config, graph, now):
    """A baseline, then one run that archives three messages with two attachments."""
    run_once(config)
    messages = [
        graph.mailbox.add_message(
            now + timedelta(minutes=1),
            attachments=[
                file_attachment("a.pdf", b"%PDF" * 50),
                item_attachment("fwd", inner_message("Re: x", ("A", "a@x.kr"), "<p>x</p>")),
            ],
        ),
        graph.mailbox.add_message(now + timedelta(minutes=2)),
        graph.mailbox.add_message(now + timedelta(minutes=3)),
    ]
    assert run_once(config).messages == 3
    return messages


def test_an_archive_that_matches_the_mailbox_passes(bench, config, archived):
    assert bench.archive_problems(config.data_dir, archived) == []


def test_a_message_missing_from_the_archive_is_reported(bench, config, graph, now, archived):
    unarchived = graph.mailbox.add_message(now + timedelta(minutes=4))
    problems = bench.archive_problems(config.data_dir, [*archived, unarchived])
    assert problems == [
        "3 rows for 3 email_ids, expected 4 messages once each: missing 1, unexpected or repeated 0"
    ]


def test_a_message_archived_that_was_not_asked_for_is_reported(bench, config, archived):
    problems = bench.archive_problems(config.data_dir, archived[:1])
    assert problems == [
        "3 rows for 3 email_ids, expected 1 messages once each: missing 0, unexpected or repeated 2"
    ]


def test_a_missing_or_short_attachment_file_is_reported(bench, config, archived):
    files = sorted(config.data_dir.glob("*/attach/*"))
    assert len(files) == 2
    files[0].write_bytes(b"short")
    files[1].unlink()
    problems = bench.archive_problems(config.data_dir, archived)
    assert "1 attachment files on disk for 2 rows" in problems
    assert any(p.startswith("2 attachment files missing or of the wrong size") for p in problems)


def test_the_exe_scenario_fails_when_the_exe_is_missing(tmp_path):
    finished = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--only", "exe", "--exe", str(tmp_path / "none")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 1
    assert "The exe scenario needs" in finished.stderr and "make_exe.sh" in finished.stderr


def test_a_scenario_reports_no_figure_for_a_wrong_archive(bench, monkeypatch):
    monkeypatch.setattr(bench, "archive_problems", lambda *args: ["1 row missing"])
    # The scenario points REQUESTS_CA_BUNDLE at its own emulator; put it back afterwards.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", os.environ.get("REQUESTS_CA_BUNDLE", ""))
    run = bench.Bench(latency=0, exe=None)
    with pytest.raises(
        SystemExit, match="(?s)does not match the emulator.s mailbox.*1 row missing"
    ):
        run.idle()
    assert run.outcomes == []


@pytest.mark.parametrize(
    ("messages", "pages"), [(0, 1), (1, 1), (1000, 1), (1001, 2), (1999, 2), (2000, 3), (5000, 6)]
)
def test_a_listing_by_time_re_reads_the_second_each_page_ended_in(bench, messages, pages):
    assert bench.keyset_pages(messages) == pages


def test_the_keyset_floor_of_a_5000_message_day_is_the_floor_and_one_page(bench):
    requests = Counter(list=6, folder=2, token=1)
    day = bench.Outcome(
        "day", 5000, 0, 5, 2, 1, requests, 0.6, 0, 0, 0.05, 0.013, 0.0, 4, {}, [], []
    )
    assert (day.floor_requests, day.keyset_floor_requests) == (8, 9)
    assert not bench.REQUESTS_GOAL[1](day)  # 9 > 1.05 x 8
    assert bench.KEYSET_REQUESTS_GOAL[1](day)
    day.requests["list"] += 1
    assert not bench.KEYSET_REQUESTS_GOAL[1](day)


def test_an_instruction_count_repeats_and_grows_with_the_work(tmp_path):
    """benchmarks/instructions.py: callgrind's count is the same for the same work, so a change
    of a few percent shows where wall times on this machine swing by tens of percent."""
    spec = importlib.util.spec_from_file_location(
        "instructions", ROOT / "benchmarks" / "instructions.py"
    )
    instructions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(instructions)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def count(n: int) -> int:
        return instructions.counted([sys.executable, "-c", f"sum(range({n}))"], tmp_path, env)

    small, again, large = count(10**5), count(10**5), count(10**6)
    assert abs(small - again) < 0.01 * small  # about 56 M each here, 0.05% apart
    assert large > 2 * small  # 900,000 more additions: about 160 M more
