"""The command line: modes that cannot go together are refused up front, the command a
program's name picks, and running without a console."""

import io
import itertools
import os
import sys

import pytest

from fund_mail import cli
from fund_mail.cli import once_main, once_parser

MODES = {
    "--since": ["--since", "2025-06-30T09:00"],
    "--upload-only": ["--upload-only"],
    "--check": ["--check"],
    "--status": ["--status"],
    "--print-task-xml": ["--print-task-xml"],
    "--demo": ["--demo"],
}


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(MODES, 2)))
def test_two_modes_exit_2_naming_both(first, second, capsys, tmp_path):
    with pytest.raises(SystemExit) as caught:
        once_main(["--env-file", str(tmp_path / "none.env"), *MODES[first], *MODES[second]])
    assert caught.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"fund_mail_once: error: argument {second}: not allowed with argument {first}"


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_alone_is_accepted(mode):
    args = once_parser().parse_args(MODES[mode])
    chosen = {m for m in MODES if getattr(args, m[2:].replace("-", "_")) not in (None, False)}
    assert chosen == {mode}


def test_upload_only_with_no_upload_exits_2(capsys):
    with pytest.raises(SystemExit) as caught:
        once_main(["--upload-only", "--no-upload"])
    assert caught.value.code == 2
    assert (
        "argument --no-upload: not allowed with argument --upload-only" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "2025-06-30", "--no-upload"],
        ["--print-task-xml", "x.xml", "--install-dir", "d:\\fm"],
    ],
)
def test_options_that_go_with_a_mode_are_accepted(args):
    once_parser().parse_args(args)


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


@pytest.mark.parametrize(
    ("main", "argv"),
    [
        (once_main, ["--env-file", "missing.env"]),
        (cli.one_day_main, ["--env-file", "missing.env", "--date", "2025-06-30"]),
        (cli.pst_main, ["missing.pst", "--target", "out"]),
    ],
)
def test_a_command_collects_garbage_in_fewer_larger_passes(main, argv, tmp_path, monkeypatch):
    import gc

    monkeypatch.chdir(tmp_path)
    gc.set_threshold(700)
    assert main(argv) != 0  # nothing to run with: the threshold is set before anything else
    assert gc.get_threshold()[0] == cli.YOUNG_GENERATION_THRESHOLD
