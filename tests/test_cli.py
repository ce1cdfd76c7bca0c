"""Argument parsing of fund_mail_once: modes that cannot go together are refused up front."""

import itertools

import pytest

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
