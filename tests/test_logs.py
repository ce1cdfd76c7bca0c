"""Logging: rotation survives a log file that another process holds open (as on Windows)."""

import logging
import os

from fund_mail.logs import setup_logging


def test_rotation_refused_by_windows_loses_no_line(tmp_path, monkeypatch, capsys):
    setup_logging(tmp_path, name="fund_mail_once")
    log = logging.getLogger("fund_mail.test")
    handler = next(h for h in logging.getLogger("fund_mail").handlers if hasattr(h, "maxBytes"))
    handler.maxBytes = 2000

    def refuse(src, dst):
        raise PermissionError(32, "The process cannot access the file", src)

    monkeypatch.setattr(os, "rename", refuse)
    for n in range(100):
        log.info("line %03d %s", n, "x" * 50)
    for h in logging.getLogger("fund_mail").handlers:
        h.flush()
    text = (tmp_path / "fund_mail_once.log").read_text()
    assert all(f"line {n:03d}" in text for n in range(100))
    assert "Logging error" not in capsys.readouterr().err
    monkeypatch.undo()
    handler._failed_at = None  # the minute has passed: rotation works again
    log.info("after")
    assert (tmp_path / "fund_mail_once.log.1").exists()
    setup_logging(None)
