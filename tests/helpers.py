"""Helpers for tests: run the real CLI, read what the archive holds."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    """CI sets CI=true: there a test must run, not skip (see tests/conftest.py)."""
    return os.environ.get("CI", "").lower() == "true"


def run_cli(
    command: str, *args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run an installed console script as a user would, in a separate process."""
    return subprocess.run(
        [str(BIN / command), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def archived_rows(data_dir: Path, table: str = "fund_mail") -> list[dict]:
    """Every row of every archive DB under data_dir, with the DB's path."""
    rows = []
    for db in sorted(data_dir.glob("*/fm_*.db")):
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            for row in conn.execute(f"SELECT * FROM {table}"):
                rows.append({**dict(row), "_db": db})
    return rows


def archived_ids(data_dir: Path) -> list[str]:
    return [r["email_id"] for r in archived_rows(data_dir)]


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll condition until it holds; fail the test with `what` if the deadline passes first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.002)
