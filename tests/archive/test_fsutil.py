"""fsutil: the rename onto a file that Windows reports as held open by another process."""

import dataclasses
import os
import time

import pytest

from fund_mail.archive import fsutil


@pytest.fixture
def refusing_replace(monkeypatch):
    """os.replace raising PermissionError as Windows does while dest is open elsewhere."""
    monkeypatch.setattr(fsutil, "RENAME_RETRY", dataclasses.replace(fsutil.RENAME_RETRY, backoff=0))
    calls = {"n": 0, "refuse": 10**6}
    real = os.replace

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] <= calls["refuse"]:
            raise PermissionError(13, "Access is denied", str(dst))
        return real(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", replace)
    return calls


def test_an_identical_existing_file_is_kept(tmp_path, refusing_replace):
    dest = tmp_path / "a.pdf"
    dest.write_bytes(b"same bytes")
    fsutil.write_atomic(dest, b"same bytes")
    assert dest.read_bytes() == b"same bytes" and refusing_replace["n"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.pdf"], "the partial is removed"


def test_a_busy_file_is_retried_until_it_is_free(tmp_path, refusing_replace):
    dest = tmp_path / "a.pdf"
    dest.write_bytes(b"old")
    refusing_replace["refuse"] = 2
    fsutil.write_atomic(dest, b"new bytes")
    assert dest.read_bytes() == b"new bytes" and refusing_replace["n"] == 3


def test_a_file_that_stays_busy_fails_after_the_retries(tmp_path, refusing_replace):
    dest = tmp_path / "a.pdf"
    dest.write_bytes(b"other bytes")
    with pytest.raises(PermissionError):
        fsutil.write_atomic(dest, b"new bytes")
    assert refusing_replace["n"] == fsutil.RENAME_RETRY.attempts
    assert dest.read_bytes() == b"other bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["a.pdf"], "no partial left behind"


def test_the_sweep_removes_only_our_stale_partials(tmp_path):
    """A partial younger than an hour may belong to a command still writing it."""
    attach = tmp_path / "2025_06_30" / "attach"
    attach.mkdir(parents=True)
    old = time.time() - 2 * 3600
    stale = [tmp_path / ".LAST_TIME.json.12-34.fmpart", attach / ".ab12.pdf.12-34.fmpart"]
    fresh = attach / ".cd34.pdf.56-78.fmpart"
    foreign = [attach / "notes.fmpart", attach / ".x.pdf.part", tmp_path / ".y.12-34.fmpart.bak"]
    for path in [*stale, fresh, *foreign]:
        path.write_text("x")
        if path is not fresh:
            os.utime(path, (old, old))
    assert fsutil.sweep_stale_partials(tmp_path) == 2
    assert not any(p.exists() for p in stale)
    assert fresh.exists() and all(p.exists() for p in foreign)


def test_written_files_are_private(tmp_path):
    dest = tmp_path / "x.json"
    fsutil.write_atomic(dest, "{}")
    assert dest.stat().st_mode & 0o777 == 0o600
