"""Where the shared PST fixtures are: FUND_MAIL_PST_FIXTURES, or ../shared/fixtures/pst next to
the repository. Missing fixtures skip on a developer machine and fail in CI (CI=true)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("FUND_MAIL_PST_FIXTURES") or REPO.parent / "shared/fixtures/pst")
FILES = ("Outlook.pst", "testPST.pst", "dist-list.pst")


def fixture(name: str) -> Path:
    """The path of one fixture; skips (developer) or fails (CI) when it is missing."""
    path = FIXTURES / name
    if not path.is_file():
        reason = f"PST fixtures not found at {FIXTURES} (set FUND_MAIL_PST_FIXTURES)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
