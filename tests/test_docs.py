"""The README's documented commands and queries work as written."""

import re
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from fund_mail.cli import once_parser, one_day_parser, pst_parser
from fund_mail.emulator import file_attachment, reference_attachment
from fund_mail.engine import run_once

README = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")


def test_quick_start_is_two_commands():
    block = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["uv run fund_mail_once --demo", "uv run pytest"]


def test_the_demo_ends_with_a_complete_audited_day():
    demo = subprocess.run(
        [str(Path(sys.executable).parent / "fund_mail_once"), "--demo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.splitlines()
    audits = [line.strip() for line in lines if "in the mailbox" in line]
    assert len(audits) == 2
    assert audits[0].endswith("1 missing, 1 repaired: complete")
    assert audits[1].endswith("0 missing, 0 repaired: complete")


def test_example_queries_run_on_a_real_archive(config, graph, now):
    run_once(config)
    graph.mailbox.add_message(
        now + timedelta(minutes=1),
        from_=("Kim", "minjun.kim@partner-am.example"),
        attachments=[file_attachment("a.pdf", b"123"), reference_attachment("l.docx", "https://x")],
    )
    db = run_once(config).db_path
    sql = README.split("```sql", 1)[1].split("```", 1)[0]
    statements = [s.strip() for s in sql.split(";") if s.strip()]
    assert len(statements) == 3
    with sqlite3.connect(db) as conn:
        results = [conn.execute(statement).fetchall() for statement in statements]
    assert [len(r) for r in results] == [1, 1, 1]


def test_every_documented_option_exists():
    options = {
        action
        for parser in (once_parser(), one_day_parser(), pst_parser())
        for a in parser._actions
        for action in a.option_strings
    }
    # Spans like `fund_mail_once --status` or `--since`; not other tools' (`uv sync --extra`).
    spans = re.findall(r"`((?:fund_mail_\w+(?:\.exe)? |--)[^`]*)`", README)
    documented = {o for span in spans for o in re.findall(r"(?<![\w-])--[a-z][a-z-]+", span)}
    assert len(documented) >= 10
    assert documented <= options, documented - options


def test_the_documented_benchmark_command_runs():
    """A smoke test of the benchmark's plumbing (counts only: timing stays out of the suite)."""
    root = Path(__file__).resolve().parents[1]
    block = (root / "BENCHMARKS.md").read_text("utf-8").split("```bash", 1)[1].split("```", 1)[0]
    command = block.split("#")[0].split()
    assert command == ["uv", "run", "python", "benchmarks/bench.py"]
    finished = subprocess.run(
        [sys.executable, command[-1], "--only", "idle", "--latency", "0"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "| idle cycle (no new mail) | 3 (1 + 2 sign-in) |" in finished.stdout
    assert "PASS at most 3 HTTP requests" in finished.stdout
