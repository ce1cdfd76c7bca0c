"""The README's documented commands and queries work as written."""

import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fund_mail.alerts import Facts, Settings, evaluate, plan, render
from fund_mail.archive.index import RunRecord
from fund_mail.cli import once_parser, one_day_parser, pst_parser, service_parser
from fund_mail.emulator import file_attachment, reference_attachment
from fund_mail.engine import run_once
from fund_mail.graph.auth import describe_token_error

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
        for parser in (once_parser(), one_day_parser(), pst_parser(), service_parser())
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
    assert "| idle cycle (no new mail) | 2 | 2 |" in finished.stdout
    assert "PASS idle cycle (no new mail): 2 requests with the cached discovery answer" in (
        finished.stdout
    )


README_AUTH_ERROR = describe_token_error(
    {
        "error": "invalid_client",
        "error_description": "AADSTS7000222: The provided client secret keys for app "
        "'66666666-7777-8888-9999-000000000000' are expired. Visit the Azure portal to create "
        "new keys for your app.\r\nTrace ID: 0e2b",
    }
)
README_ALERT_RUNS = [
    RunRecord(f"2025-06-30T04:{m:02d}:00Z", f"2025-06-30T04:{m:02d}:02Z", 4, README_AUTH_ERROR)
    for m in (25, 20, 15)
] + [RunRecord("2025-06-30T04:10:00Z", "2025-06-30T04:10:04Z", 0, "")]


def readme_alert_mail() -> str:
    """The alert the README shows, produced by the code: three failed runs in a row."""
    facts = Facts(README_ALERT_RUNS, "2025-06-30T04:10:04Z", "2025-06-01T00:00:00Z")
    now = datetime(2025, 6, 30, 4, 25, 2, tzinfo=UTC)
    conditions = evaluate(facts, Settings(), now)
    (notice,) = plan({}, conditions, now, timedelta(hours=12))
    subject, body = render(
        notice,
        mailbox="fund@example.com",
        host="FUNDPC01",
        last_success=facts.last_success,
        tz_name="Asia/Seoul",
        repeat_hours=12,
    )
    return f"Subject: {subject}\n\n{body}"


def test_the_readme_shows_the_alert_mail_the_code_sends():
    section = README.split("## When something goes wrong", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    assert block == readme_alert_mail()
