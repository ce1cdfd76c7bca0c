"""fund_mail_one_day --audit and a long catch-up, as an operator runs them."""

import signal
import sys
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from fund_mail.emulator import file_attachment
from tests.helpers import archived_ids, archived_rows, run_cli

SEOUL = ZoneInfo("Asia/Seoul")
DAY = date(2025, 6, 30)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=SEOUL)


def one_day(env_file, *args, **kw):
    return run_cli("fund_mail_one_day", "--env-file", str(env_file), *args, **kw)


def test_audit_dry_run_then_repair_then_complete(env_file, graph, data_dir):
    for hour in (9, 10):
        graph.mailbox.add_message(at(hour))
    assert one_day(env_file, "--date", str(DAY)).returncode == 0
    restored = graph.mailbox.add_message(at(11), subject="restored")

    dry = one_day(env_file, "--audit", "--dry-run", "--date", str(DAY))
    assert dry.returncode == 7, dry.stderr
    assert f"{DAY}: 3 in the mailbox, 2 already archived, 1 missing, 0 repaired" in dry.stdout
    assert "fund_mail_one_day --audit (without --dry-run)" in dry.stderr
    assert restored.immutable_id not in archived_ids(data_dir)

    repair = one_day(env_file, "--audit", "--date", str(DAY))
    assert repair.returncode == 0, repair.stderr
    assert f"{DAY}: 3 in the mailbox, 2 already archived, 1 missing, 1 repaired" in repair.stdout
    assert Counter(archived_ids(data_dir))[restored.immutable_id] == 1

    again = one_day(env_file, "--audit", "--from", str(DAY - timedelta(days=1)), "--to", str(DAY))
    assert again.returncode == 0, again.stderr
    assert f"{DAY}: 3 in the mailbox, 3 already archived, 0 missing, 0 repaired" in again.stdout
    assert f"{DAY - timedelta(days=1)}: 0 in the mailbox" in again.stdout


def test_a_repair_that_fails_exits_1(env_file, graph):
    graph.mailbox.add_message(at(9))
    graph.add_fault("unavailable", target="message", times=None)
    result = one_day(env_file, "--audit", "--date", str(DAY))
    assert result.returncode == 1
    assert f"could not finish 1 day(s): {DAY}" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--audit", "--date", "2999-01-01"],
        ["--audit", "--date", "2025-06-31"],
        ["--audit", "--from", "2025-07-02", "--to", "2025-07-01"],
        ["--dry-run", "--date", "2025-07-01"],
    ],
)
def test_bad_audit_arguments_exit_2_and_fetch_nothing(env_file, graph, args):
    result = one_day(env_file, *args)
    assert result.returncode == 2, result.stderr
    assert graph.records() == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_catch_up_keeps_what_it_published(graph, data_dir, tmp_path, now):
    env_file = graph.write_env(
        tmp_path / ".env", data_dir, RETRY_BACKOFF="0.05", PUBLISH_EVERY="40"
    )
    assert run_cli("fund_mail_once", "--env-file", str(env_file)).returncode == 0  # baseline
    backlog = [
        graph.mailbox.add_message(
            now - timedelta(minutes=20) + timedelta(seconds=i),
            attachments=[file_attachment("b.bin", b"9" * 20)],
        )
        for i in range(100)
    ]
    killed = run_cli(
        "fund_mail_once", "--env-file", str(env_file), env={"FUND_MAIL_CRASH_AT": "chunk-published"}
    )
    assert killed.returncode == -signal.SIGKILL
    kept = archived_ids(data_dir)
    assert len(kept) == 40, "the first 40 were published before the kill"
    graph.reset_log()
    finished = run_cli("fund_mail_once", "--env-file", str(env_file))
    assert finished.returncode == 0, finished.stderr
    assert "3 DBs" not in finished.stdout and finished.stdout.count(".db") == 1
    found = archived_ids(data_dir)
    assert Counter(found).most_common(1)[0][1] == 1, "an email_id was archived twice"
    assert sorted(found) == sorted(m.immutable_id for m in backlog)
    # The published part was not downloaded again.
    assert len(graph.records("attachment")) == 60
    for row in archived_rows(data_dir, "fund_mail_attach"):
        assert (data_dir / row["save_folder"] / row["phy_file_name"]).stat().st_size == 20
