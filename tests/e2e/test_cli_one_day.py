"""fund_mail_one_day and run_one_day.sh as an operator runs them."""

import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fund_mail.emulator import file_attachment
from tests.helpers import BIN, archived_rows, run_cli

SEOUL = ZoneInfo("Asia/Seoul")
ROOT = Path(__file__).resolve().parents[2]


def one_day(env_file, *args, **kw):
    return run_cli("fund_mail_one_day", "--env-file", str(env_file), *args, **kw)


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SEOUL)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2025-13-01"], "--date '2025-13-01' is not a date"),
        (["--date", "30/06/2025"], "use YYYY-MM-DD"),
        (["--date", "20250630"], "use YYYY-MM-DD"),
        (["--from", "2025-03-01", "--to", "2025-01-01"], "is after --to"),
        (["--from", "2025-03-01"], "--from and --to go together"),
        (
            ["--date", "2025-01-01", "--from", "2025-01-01", "--to", "2025-01-02"],
            "argument --from: not allowed with argument --date",
        ),
        (["--date", "2025-01-01", "--to", "2025-01-02"], "not both"),
        (["--date", "2999-01-01"], "is in the future"),
        (["--from", "2025-01-01", "--to", "2999-01-01"], "is in the future"),
    ],
)
def test_bad_dates_exit_2_with_the_fix(env_file, graph, args, message):
    result = one_day(env_file, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert graph.records() == [], "nothing was asked of Graph"


def test_a_single_day(env_file, graph, data_dir):
    day = date(2025, 6, 30)
    graph.mailbox.add_message(at(day, 9), attachments=[file_attachment("a.pdf", b"123")])
    result = one_day(env_file, "--date", "2025-06-30")
    assert result.returncode == 0, result.stderr
    assert "fund_mail_one_day 2025-06-30: 1 messages, 1 attachments, 3 bytes" in result.stdout
    assert "2025-06-30: 1 messages listed so far" in result.stderr, "plain log lines without a tty"
    assert not (data_dir / "LAST_TIME.json").exists()


def test_an_empty_day_exits_0_without_a_db(env_file, graph, data_dir):
    result = one_day(env_file, "--date", "2025-06-30")
    assert result.returncode == 0 and "no DB written" in result.stdout
    assert list(data_dir.glob("*/fm_*.db")) == []


def test_a_range_with_one_failing_day_goes_on_and_reports_it(env_file, graph, data_dir):
    days = [date(2025, 6, 28) + timedelta(days=n) for n in range(4)]
    for day in days:
        graph.mailbox.add_message(at(day, 12), subject=str(day))
    # Every list request for June 29 fails: 503 until the retries run out.
    graph.add_fault(
        "unavailable",
        target="list",
        times=None,
        query_contains="receivedDateTime ge 2025-06-28T15:00:00Z",
    )
    result = one_day(env_file, "--from", "2025-06-28", "--to", "2025-07-01")
    assert result.returncode == 1
    assert "1 day(s) failed: 2025-06-29" in result.stderr
    assert "4 day(s) from 2025-06-28 to 2025-07-01, 3 messages" in result.stdout
    folders = sorted(p.parent.name for p in data_dir.glob("*/fm_*.db"))
    assert folders == ["2025_06_28", "2025_06_30", "2025_07_01"]


def test_one_day_and_once_at_the_same_time(env_file, graph, data_dir):
    # The baseline of an empty mailbox archives whatever arrives later, whatever its date; so
    # the mail can sit on a fixed past day, and the test never straddles a midnight in TIMEZONE.
    assert run_cli("fund_mail_once", "--env-file", str(env_file)).returncode == 0  # baseline
    day = date(2025, 6, 30)
    fresh = [
        graph.mailbox.add_message(
            at(day, 9) + timedelta(seconds=i), attachments=[file_attachment("x.bin", b"7" * 50)]
        )
        for i in range(40)
    ]
    graph.latency = 0.15  # long enough for the two runs to overlap
    once = subprocess.Popen(
        [str(BIN / "fund_mail_once"), "--env-file", str(env_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    day_run = one_day(env_file, "--date", str(day), timeout=120)
    once_out, once_err = once.communicate(timeout=120)
    assert (once.returncode, day_run.returncode) == (0, 0), once_err + day_run.stderr
    rows = archived_rows(data_dir)
    fresh_ids = {m.immutable_id for m in fresh}
    # The day's DB holds the whole day. fund_mail_once leaves out whatever the day's DB
    # recorded first, so no message is in two DBs because of the race (it may have none).
    day_db = next(p for p in data_dir.glob("*/fm_*.db") if p.name in day_run.stdout)
    day_ids = [r["email_id"] for r in rows if r["_db"] == day_db]
    once_ids = [r["email_id"] for r in rows if r["_db"] != day_db]
    assert fresh_ids <= set(day_ids) | set(once_ids)
    assert len(once_ids) == len(set(once_ids))
    # The attachment files they share are whole.
    for row in archived_rows(data_dir, "fund_mail_attach"):
        assert (data_dir / row["save_folder"] / row["phy_file_name"]).stat().st_size == 50


def run_script(*args, env=None):
    return subprocess.run(
        ["bash", str(ROOT / "run_one_day.sh"), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        env={**__import__("os").environ, "PATH": f"{BIN}:/usr/bin:/bin", **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "usage:"),
        (["2025-01-01"], "usage:"),
        (["2025-1-1", "2025-01-02"], "is not a date"),
        (["2025-02-01", "2025-01-01"], "is after TO"),
    ],
)
def test_run_one_day_sh_validates_its_arguments(args, message):
    result = run_script(*args)
    assert result.returncode == 2 and message in result.stderr


def test_run_one_day_sh_needs_y_without_a_terminal(env_file):
    result = run_script("2025-06-28", "2025-06-29", "--env-file", str(env_file))
    assert result.returncode == 2 and "pass -y" in result.stderr


def test_run_one_day_sh_backfills_a_range(env_file, graph, data_dir):
    for n in range(3):
        graph.mailbox.add_message(at(date(2025, 6, 28) + timedelta(days=n), 8))
    result = run_script("-y", "2025-06-28", "2025-06-30", "--env-file", str(env_file))
    assert result.returncode == 0, result.stderr
    assert "run_one_day: 2025-06-28 to 2025-06-30 done" in result.stdout
    assert len(list(data_dir.glob("*/fm_*.db"))) == 3


def test_progress_bar_on_a_terminal(env_file, graph):
    import fcntl
    import os
    import pty
    import struct
    import termios

    for n in range(2):
        graph.mailbox.add_message(at(date(2025, 6, 28) + timedelta(days=n), 8))
    main, secondary = pty.openpty()
    # A fresh pty is 0x0; give it the size of an ordinary console window.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen(
        [
            str(BIN / "fund_mail_one_day"),
            "--env-file",
            str(env_file),
            "--from",
            "2025-06-28",
            "--to",
            "2025-06-29",
        ],
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(60) == 0
    text = output.decode(errors="replace")
    assert "2/2" in text and "day" in text, text
    assert "messages listed so far" not in text, "a bar replaces the log lines"
