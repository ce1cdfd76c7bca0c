"""fsutil: the rename onto a file that Windows reports as held open by another process."""

import os

import pytest

from fund_mail.archive import fsutil


@pytest.fixture
def refusing_replace(monkeypatch):
    """os.replace raising PermissionError as Windows does while dest is open elsewhere."""
    monkeypatch.setattr(fsutil, "REPLACE_BACKOFF", 0)
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
    assert refusing_replace["n"] == fsutil.REPLACE_ATTEMPTS
    assert dest.read_bytes() == b"other bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["a.pdf"], "no partial left behind"
