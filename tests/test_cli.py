"""The command line: which command a program's name picks, and running without a console."""

import io
import os
import sys

import pytest

from fund_mail import cli


@pytest.fixture(autouse=True)
def keep_umask():
    """The entry points make this process's files private; the test process keeps its own."""
    mask = os.umask(0o022)
    os.umask(mask)
    yield
    os.umask(mask)


@pytest.mark.parametrize(
    ("argv0", "command"),
    [
        ("c:\\fund_mail\\fund_mail_once.exe", "fund_mail_once"),
        ("c:\\fund_mail\\fund_mail_once (1).exe", "fund_mail_once"),
        ("C:\\FUND_MAIL\\FUND_MAIL_ONCE.EXE", "fund_mail_once"),
        ("c:\\x\\Fund_Mail_One_Day - Copy.exe", "fund_mail_one_day"),
        ("/opt/fund_mail/fund_mail_one_day", "fund_mail_one_day"),
        ("fund_mail_pst.exe", "fund_mail_pst"),
        ("fund_mail_pst(2).exe", "fund_mail_pst"),
        ("fund_mail.exe", None),
        ("fund_mail_onceX.exe", None),
        ("archive.exe", None),
        ("cli.py", None),
    ],
)
def test_program_command(argv0, command):
    assert cli.program_command(argv0) == command


def test_an_unknown_name_is_refused_not_run_as_once(monkeypatch, capsys):
    ran = []
    monkeypatch.setitem(cli.ENTRY_POINTS, "fund_mail_once", lambda: ran.append(1) or 0)
    monkeypatch.setattr(sys, "argv", ["c:\\fund_mail\\archiver.exe", "--status"])
    assert cli.main_for_program() == 2
    assert ran == [] and "rename it to fund_mail_once.exe" in capsys.readouterr().err


def test_a_renamed_copy_runs_its_command(monkeypatch):
    ran = []
    monkeypatch.setitem(cli.ENTRY_POINTS, "fund_mail_one_day", lambda: ran.append("day") or 0)
    monkeypatch.setattr(sys, "argv", ["c:\\fund_mail\\fund_mail_one_day (1).exe"])
    assert cli.main_for_program() == 0 and ran == ["day"]


def _closed() -> io.StringIO:
    stream = io.StringIO()
    stream.close()
    return stream


@pytest.mark.parametrize("stream", [None, "closed"])
def test_check_without_a_console(env_file, monkeypatch, stream):
    """Task Scheduler without a console: stdout and stderr None or closed."""
    monkeypatch.setattr(sys, "stdout", _closed() if stream else None)
    monkeypatch.setattr(sys, "stderr", _closed() if stream else None)
    assert cli.once_main(["--check", "--env-file", str(env_file)]) == 0


def test_one_day_progress_without_a_console(env_file, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", _closed())
    assert cli.one_day_main(["--env-file", str(env_file), "--date", "2025-06-30"]) == 0
