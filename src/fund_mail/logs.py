"""Logging: a rotating file in LOG_DIR, the console, and a filter that masks every secret."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
log = logging.getLogger("fund_mail")


class RedactSecrets(logging.Filter):
    """Replaces known secret values (client secret, SFTP password, access tokens) with ***.

    Secrets are registered as they become known, so a token acquired mid-run is masked too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *secrets: str) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


REDACTOR = RedactSecrets()

_current = threading.local()


@contextmanager
def mailbox_label(address: str) -> Iterator[None]:
    """While several mailboxes run side by side, each thread's lines name its mailbox."""
    _current.mailbox = address
    try:
        yield
    finally:
        _current.mailbox = ""


def label(text: str) -> str:
    mailbox = getattr(_current, "mailbox", "")
    return f"[{mailbox}] {text}" if mailbox else text


class MailboxLabel(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(_current, "mailbox", ""):
            record.msg = label(record.getMessage())
            record.args = None
        return True


MAILBOX_LABEL = MailboxLabel()


def ensure_console() -> None:
    """Make print, progress bars and logging safe without a console.

    Under Task Scheduler or pythonw, stdout and stderr can be None or closed; output then goes
    to os.devnull. A console whose code page cannot show a character (Korean on cp437) gets an
    escape instead of an exception.
    """
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or getattr(stream, "closed", False):
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
        elif hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


class TolerantRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Rotation that survives another process holding the log open.

    Windows refuses to rename an open file; the plain handler then drops the record and tries
    again on every line. Here the file keeps growing and rotation is retried a minute later.
    """

    RETRY_AFTER = 60.0
    _failed_at: float | None = None

    def shouldRollover(self, record: logging.LogRecord) -> int:  # noqa: N802 - logging's name
        if self._failed_at is not None and time.monotonic() - self._failed_at < self.RETRY_AFTER:
            return 0
        return super().shouldRollover(record)

    def doRollover(self) -> None:  # noqa: N802 - logging's name
        try:
            super().doRollover()
            self._failed_at = None
        except OSError:
            self._failed_at = time.monotonic()
            if self.stream is None:
                self.stream = self._open()


def setup_logging(
    log_dir: Path | None, verbose: bool = False, quiet: bool = False, name: str = "fund_mail"
) -> None:
    """Console at INFO (-v DEBUG, --quiet WARNING); file at DEBUG, 5 x 5 MB."""
    root = logging.getLogger("fund_mail")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)
    root.propagate = False
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    console.addFilter(MAILBOX_LABEL)
    console.addFilter(REDACTOR)
    root.addHandler(console)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = TolerantRotatingFileHandler(
            log_dir / f"{name}.log", maxBytes=5 * 1024 * 1024, backupCount=5, encoding="utf-8"
        )
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        file_handler.addFilter(MAILBOX_LABEL)
        file_handler.addFilter(REDACTOR)
        root.addHandler(file_handler)
