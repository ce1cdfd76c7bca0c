"""The file-system rules every writer shares: one atomic write, fsync, and one lock type.

A file is written to a partial name beside its destination, fsynced, then renamed onto it, so
the destination is either absent or complete. Partial names follow one pattern, so a sweep can
remove exactly the partial files this tool left and nothing else.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from fund_mail.errors import LockedError

log = logging.getLogger(__name__)

# .<name>.<pid>-<thread>.fmpart: the only shape of partial file this tool writes locally.
PARTIAL_RE = re.compile(r"^\..+\.\d+-\d+\.fmpart$")
REPLACE_ATTEMPTS = 6  # Windows refuses a rename onto a file another process holds open
REPLACE_BACKOFF = 0.2


def partial_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}-{threading.get_ident()}.fmpart")


def is_partial(name: str) -> bool:
    return PARTIAL_RE.match(name) is not None


def sweep_partials(folder: Path) -> int:
    """Remove partial files that killed writers left in folder; returns how many."""
    removed = 0
    if folder.is_dir():
        for leftover in folder.iterdir():
            if leftover.is_file() and is_partial(leftover.name):
                leftover.unlink(missing_ok=True)
                removed += 1
    return removed


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory so that a rename in it survives a power cut (POSIX only)."""
    if path.is_dir():
        if os.name == "nt":
            return  # Windows cannot open a directory for fsync; NTFS journals renames itself.
        fd = os.open(path, os.O_RDONLY)
    else:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def same_content(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and file_sha256(a) == file_sha256(b)
    except OSError:
        return False


def replace_into_place(partial: Path, dest: Path) -> None:
    """Rename a finished partial file onto dest.

    On Windows the rename fails while another process (an antivirus scan, a second command
    writing the same attachment name) holds dest open. When dest already holds the same bytes
    it is kept; otherwise the rename is retried with a short backoff before it fails.
    """
    for attempt in range(1, REPLACE_ATTEMPTS + 1):
        try:
            os.replace(partial, dest)
            return
        except PermissionError:
            if same_content(partial, dest):
                partial.unlink(missing_ok=True)
                return
            if attempt == REPLACE_ATTEMPTS:
                raise
            log.info("%s is held open by another process; retrying the rename", dest.name)
            time.sleep(REPLACE_BACKOFF * attempt)


@contextmanager
def atomic_writer(dest: Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a partial file for writing; on a clean exit it is fsynced and renamed onto dest."""
    partial = partial_path(dest)
    try:
        with open(partial, mode, encoding=encoding) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        replace_into_place(partial, dest)
        fsync_path(dest.parent)
    finally:
        partial.unlink(missing_ok=True)


def write_atomic(dest: Path, data: bytes | str) -> None:
    """Replace dest with data in one step: absent-or-complete, never half written."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_writer(dest) as out:
        out.write(data)


class RunLock:
    """An OS file lock: released by the OS even when the process is killed, so never stale.

    The lock file holds the holder's PID and start time, which --status shows. With wait > 0
    the lock is polled for up to that many seconds, for locks held only for short sections.
    """

    def __init__(self, path: Path, command: str, wait: float = 0.0) -> None:
        self.path = path
        self.command = command
        self.wait = wait
        self._file: IO[str] | None = None

    def _try_lock(self, handle: IO[str]) -> None:
        deadline = time.monotonic() + self.wait
        while True:
            try:
                _lock(handle)
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="ascii")
        try:
            self._try_lock(handle)
        except OSError as e:
            handle.close()
            raise LockedError(
                f"Another {self.command} run is in progress (lock {self.path} is held); "
                "this run exits without doing anything. If no other run exists, the lock is "
                "released automatically when that process ends."
            ) from e
        # Byte 0 carries the lock on Windows; the holder's details follow it.
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {int(time.time())}")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            _unlock(self._file)
            self._file.close()
            self._file = None


if os.name == "nt":
    import msvcrt

    def _lock(handle: IO[str]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(handle: IO[str]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(handle: IO[str]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(handle: IO[str]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
