"""The file-system rules every writer shares: one atomic write, fsync, and one lock type.

A file is written to a partial name beside its destination, fsynced, then renamed onto it, so
the destination is either absent or complete. A partial name starts with a dot and carries the
writer's process and thread, so two writers of the same file never share one.
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
from fund_mail.retry import RetryPolicy

log = logging.getLogger(__name__)

# .<name>.<pid>-<thread>.fmpart: the only shape of partial file this tool writes locally.
PARTIAL_RE = re.compile(r"^\..+\.\d+-\d+\.fmpart$")
# Windows refuses a rename onto a file another process holds open; a scan ends within seconds.
RENAME_RETRY = RetryPolicy(attempts=6, backoff=0.1)


def partial_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}-{threading.get_ident()}.fmpart")


def is_partial(name: str) -> bool:
    return PARTIAL_RE.match(name) is not None


# A partial file this old was left by a killed writer: no write of ours takes an hour between
# two chunks, so a younger one may belong to a command that is still running.
STALE_AFTER = 3600.0


def sweep_partials(folder: Path, older_than: float = STALE_AFTER) -> int:
    """Remove partial files that killed writers left in folder; returns how many.

    Only names of PARTIAL_RE's exact shape, and only when not modified for older_than seconds:
    fund_mail_once and fund_mail_one_day write into the same folders at the same time.
    """
    removed = 0
    if folder.is_dir():
        cutoff = time.time() - older_than
        for leftover in folder.iterdir():
            try:
                stale = leftover.is_file() and leftover.stat().st_mtime < cutoff
            except OSError:
                continue
            if stale and is_partial(leftover.name):
                leftover.unlink(missing_ok=True)
                removed += 1
    return removed


SWEEP_RECENT = 7 * 24 * 3600.0


def sweep_stale_partials(data_dir: Path) -> int:
    """sweep_partials over the folders the tool writes in: DATA_DIR, its day folders and their
    attach/ folders, quarantine/.

    Only folders changed in the last week are listed: creating a partial file changes its
    folder, and listing years of attachment folders every 5 minutes would cost more than an
    old hidden leftover ever could.
    """
    recent = time.time() - SWEEP_RECENT
    folders = [data_dir]
    for folder in [*data_dir.glob("*/"), *data_dir.glob("*/attach/")]:
        try:
            if folder.stat().st_mtime >= recent:
                folders.append(folder)
        except OSError:
            continue
    return sum(sweep_partials(folder) for folder in folders)


def private_files() -> None:
    """Files 0600 and folders 0700 for everything this process creates (POSIX): the archive
    holds mail, the .env secrets."""
    if os.name == "posix":
        os.umask(0o077)


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


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

    def rename() -> None:
        try:
            os.replace(partial, dest)
        except PermissionError:
            if not same_content(partial, dest):
                raise
            partial.unlink(missing_ok=True)

    RENAME_RETRY.call(rename, PermissionError, f"Renaming onto {dest.name} (held open?)")


@contextmanager
def atomic_writer(dest: Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a partial file for writing; on a clean exit it is fsynced and renamed onto dest."""
    partial = partial_path(dest)
    try:
        with open(partial, mode, encoding=encoding, opener=_private_opener) as out:
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


# Windows locks a byte range, and a locked range cannot be read by others: the lock sits well
# past the holder's details, so --status can read them while the lock is held.
LOCK_BYTE = 4096


class RunLock:
    """An OS file lock: released by the OS even when the process is killed, so never stale.

    The lock file holds "<pid> <unix start time>" while held, which --status shows; it is
    emptied on a clean release. With wait > 0 the lock is polled for up to that many seconds,
    for locks held only for short sections.
    """

    def __init__(self, path: Path, command: str, wait: float = 0.0) -> None:
        self.path = path
        self.command = command
        self.wait = wait
        self._file: IO[bytes] | None = None

    def _try_lock(self, handle: IO[bytes]) -> None:
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
        handle = open(self.path, "a+b")  # noqa: SIM115 - held until __exit__
        try:
            self._try_lock(handle)
        except OSError as e:
            handle.close()
            raise LockedError(
                f"Another {self.command} run is in progress (lock {self.path} is held); "
                "this run exits without doing anything. If no other run exists, the lock is "
                "released automatically when that process ends."
            ) from e
        handle.truncate(0)
        handle.write(f"{os.getpid()} {int(time.time())}".encode("ascii"))
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._file is not None:
            self._file.truncate(0)
            self._file.flush()
            _unlock(self._file)
            self._file.close()
            self._file = None


def command_lock(data_dir: Path, name: str) -> Path:
    """The lock file of a command (fund_mail_once, fund_mail_one_day, fund_mail_delivery): the
    one place that names it, for the command itself, retention, --status and the sign-in."""
    return data_dir / f"{name}.lock"


def lock_holder(path: Path) -> tuple[int, int] | None:
    """(pid, unix start time) of the process holding the lock at path; None when it is free.

    Reads only. An empty file is free; otherwise a brief non-blocking lock attempt tells a
    live holder from one that was killed (the OS released its lock, its details remain).
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return None
    with handle:
        text = handle.read(64).decode("ascii", "replace").split()
        if len(text) != 2 or not all(part.isdigit() for part in text):
            return None
        try:
            _lock(handle)
        except OSError:
            return int(text[0]), int(text[1])
        _unlock(handle)
        return None


if os.name == "nt":
    import msvcrt

    def _lock(handle: IO[bytes]) -> None:
        handle.seek(LOCK_BYTE)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(handle: IO[bytes]) -> None:
        handle.seek(LOCK_BYTE)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
