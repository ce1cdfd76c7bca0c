"""Crash consistency: fund_mail_once killed with SIGKILL again and again while mail keeps
arriving, at named points and at random moments, then one clean run. Nothing may be lost or
duplicated on the SFTP server. Reproduce: uv run pytest tests/reliability -s -q"""

import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from fund_mail import crashpoints
from fund_mail.emulator import file_attachment
from tests.helpers import BIN, wait_until

SEED = 20261122
ITERATIONS = 75  # fixed, so the seed fixes the mail and the plan of kills

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def delivered(root: Path) -> tuple[list[str], list[tuple[Path, dict]]]:
    """email_ids of every DB on the server, and every attachment row with its DB."""
    ids, attachments = [], []
    for db in sorted(root.glob("archive/*/fm_*.db")):
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            ids += [r["email_id"] for r in conn.execute("SELECT email_id FROM fund_mail")]
            attachments += [(db, dict(r)) for r in conn.execute("SELECT * FROM fund_mail_attach")]
    return ids, attachments


def random_moment(rng, graph, sftp_server, added_files: int, added_bytes: int):
    """A condition that becomes true at a random point of the next run, while it still has work
    to do: its k-th Graph request has arrived, or b bytes of its uploads have.

    The run makes at least 3 + added_files + 1 requests when mail has arrived (sign-in, list,
    Sent Items, each attachment), and uploads each DB after its attachments, so either
    condition leaves the run something to do when it becomes true.
    """
    if added_bytes and rng.random() < 0.5:
        start, goal = sftp_server.switches.bytes_written, rng.randint(1, added_bytes)
        return lambda: sftp_server.switches.bytes_written - start >= goal
    start, goal = len(graph.records()), rng.randint(1, 2 + added_files)
    return lambda: len(graph.records()) - start >= goal


def test_sigkill_loop_loses_and_duplicates_nothing(graph, sftp_server, data_dir, tmp_path, now):
    # A small PUBLISH_EVERY makes a run after a few kills a catch-up that publishes in chunks,
    # so the kill between two chunks (chunk-published) is reached too.
    values = graph.env_values(data_dir, RETRY_BACKOFF="0.01", PUBLISH_EVERY="5")
    values.update(sftp_server.env(tmp_path / "known_hosts"))
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    command = [str(BIN / "fund_mail_once"), "--env-file", str(env_file), "--quiet"]
    assert subprocess.run(command, capture_output=True).returncode == 0  # the baseline

    rng = random.Random(SEED)
    graph.latency = 0.005  # long enough for a timed kill to land inside a run
    expected: list[str] = []
    kills = Counter()
    runs = 0
    second = 0
    for _ in range(ITERATIONS):
        added_files = added_bytes = 0
        for _ in range(rng.randint(0, 8)):
            second += 1
            attachments = [
                file_attachment(f"f{second}-{n}.bin", os.urandom(rng.randint(0, 90_000)))
                for n in range(rng.choice((0, 0, 1, 2)))
            ]
            added_files += len(attachments)
            added_bytes += sum(a.byte_size for a in attachments)
            expected.append(
                graph.mailbox.add_message(
                    now + timedelta(seconds=second), attachments=attachments
                ).immutable_id
            )
        runs += 1
        choice = rng.random()
        if choice < 0.6:
            point = rng.choice(crashpoints.POINTS)
            result = subprocess.run(
                command, capture_output=True, env={**os.environ, "FUND_MAIL_CRASH_AT": point}
            )
            if result.returncode == -signal.SIGKILL:
                kills[point] += 1
            else:
                assert result.returncode == 0, result.stderr
        elif choice < 0.9:
            moment = random_moment(rng, graph, sftp_server, added_files, added_bytes)
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            wait_until(
                lambda p=process, m=moment: p.poll() is not None or m(),
                "the run to reach the chosen moment or end",
            )
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills["random moment"] += 1
            process.wait()
        else:
            assert subprocess.run(command, capture_output=True).returncode == 0

    assert set(kills) == {*crashpoints.POINTS, "random moment"}, "every kind of kill happened"
    graph.latency = 0
    final = subprocess.run(command, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr

    ids, attachments = delivered(sftp_server.root)
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    lost = set(expected) - set(ids)
    assert not duplicates, f"{len(duplicates)} email_ids delivered twice"
    assert not lost, f"{len(lost)} messages lost"
    assert set(ids) == set(expected), "the server holds exactly the mail after the baseline"
    for db, row in attachments:
        remote = sftp_server.root / "archive" / row["save_folder"] / row["phy_file_name"]
        assert remote.stat().st_size == row["file_size"], f"{remote} from {db.name}"
    leftovers = [p.name for p in sftp_server.root.rglob("*.part")]
    assert not leftovers, "the last clean run sweeps the .part files that kills left"
    print(
        f"\ncrash loop: seed {SEED}, {runs} runs, {sum(kills.values())} SIGKILLs survived "
        f"({', '.join(f'{k} {v}' for k, v in sorted(kills.items()))}), {len(expected)} "
        f"messages, {len(attachments)} attachments delivered, lost {len(lost)}, duplicates "
        f"{len(duplicates)}, stray .part files on the server {len(leftovers)}"
    )
