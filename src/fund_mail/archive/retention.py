"""Local retention: remove day folders older than RETAIN_DAYS once the server holds them.

A folder goes only when every file in it is confirmed on the server: hashed once after
publishing (the same SHA-256 the manifest lists), delivered with the same size, and unchanged
since (same size and modification time). A file delivered before its hash was kept (an archive
older than the manifests) is confirmed by reading the server's copy back and hashing it. Anything else in the folder keeps it: an unknown
file, a queued DB, an undelivered manifest, a run still writing. The day's manifest stays, so
the local chain stays whole and `--verify` can still check it.

Removal is crash-safe. The folder is first renamed to `.retired-<day>` in one step: a crash
leaves either the whole folder, or that marker, which the next run finishes.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from fund_mail.archive.fsutil import fsync_path
from fund_mail.archive.index import ArchiveIndex, FileRecord
from fund_mail.archive.manifest import DAY_RE, manifest_name, manifest_relative

log = logging.getLogger(__name__)

RETIRED_PREFIX = ".retired-"


@dataclass
class RetentionReport:
    """The day folders retention removed, and why each other old one stays."""

    removed: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # day -> why it stays


def day_date(day: str) -> date:
    return datetime.strptime(day, "%Y_%m_%d").date()


def due_days(days: list[str], today: date, retain_days: int) -> list[str]:
    """Day folders older than the retention period (today and the last retain_days stay)."""
    cutoff = today - timedelta(days=retain_days)
    return sorted(d for d in days if DAY_RE.match(d) and day_date(d) < cutoff)


def unconfirmed(data_dir: Path, index: ArchiveIndex, day: str) -> str | None:
    """Why the day folder may not be removed yet, or None when all of it is on the server."""
    if day in index.queued_days():
        return "a DB of this day is still queued for delivery"
    manifest = index.manifests().get(day)
    if manifest is None or day in index.pending_days():
        return "the day's manifest is not written yet"
    if manifest.delivered_sha256 != manifest.sha256:
        return "its manifest is not delivered yet"
    records = index.file_records(day)
    folder = data_dir / day
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(data_dir).as_posix()
        if relative == manifest_relative(day):
            continue
        if path.name.startswith("."):
            return f"{relative} is a file in progress"
        record = records.get(relative)
        if record is None:
            return f"{relative} is not a recorded archive file"
        if record.delivered_at is None:
            return f"{relative} is not confirmed on the server"
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (record.size, record.mtime_ns):
            return f"{relative} changed after it was hashed"
    return None


def finish_interrupted(data_dir: Path, index: ArchiveIndex) -> list[str]:
    """Finish removals that a crash interrupted (their `.retired-<day>` marker is left)."""
    finished = []
    for marker in sorted(data_dir.glob(f"{RETIRED_PREFIX}*")):
        day = marker.name[len(RETIRED_PREFIX) :]
        if marker.is_dir() and DAY_RE.match(day):
            log.warning("Finishing the removal of %s that an earlier run left half done", day)
            _finish(data_dir, index, day)
            finished.append(day)
    return finished


def remove_day(data_dir: Path, index: ArchiveIndex, day: str) -> None:
    os.replace(data_dir / day, data_dir / f"{RETIRED_PREFIX}{day}")
    fsync_path(data_dir)
    _finish(data_dir, index, day)


def _finish(data_dir: Path, index: ArchiveIndex, day: str) -> None:
    """Move the manifest back into a fresh day folder, record the removal, delete the rest."""
    retired = data_dir / f"{RETIRED_PREFIX}{day}"
    folder = data_dir / day
    folder.mkdir(exist_ok=True)
    manifest = retired / manifest_name(day)
    if manifest.exists():
        os.replace(manifest, folder / manifest_name(day))
        fsync_path(folder)
    index.mark_day_removed(day)
    shutil.rmtree(retired)


# Reads the server's copies of a day's files back; returns the paths whose copy has the
# recorded size and SHA-256.
ReadBack = Callable[[list[FileRecord]], set[str]]


def confirm_by_reading_back(
    data_dir: Path, index: ArchiveIndex, day: str, read_back: ReadBack
) -> None:
    """Files hashed but never marked delivered (archived before hashes were kept, or marked
    while changed) are confirmed by reading the server's copy back, if the local file is
    still the one that was hashed."""
    waiting = []
    for record in index.file_records(day).values():
        local = data_dir / record.path
        if record.delivered_at is None and local.is_file():
            info = local.stat()
            if (info.st_size, info.st_mtime_ns) == (record.size, record.mtime_ns):
                waiting.append(record)
    if waiting:
        confirmed = read_back(waiting)
        if confirmed:
            index.confirm_files(confirmed)
            log.info("%s: %d file(s) confirmed by reading the server's copy", day, len(confirmed))


def apply_retention(
    data_dir: Path,
    index: ArchiveIndex,
    retain_days: int,
    today: date,
    read_back: ReadBack | None = None,
) -> RetentionReport:
    report = RetentionReport()
    finish_interrupted(data_dir, index)
    removed_before = {d for d, m in index.manifests().items() if m.removed_at is not None}
    candidates = [p.name for p in data_dir.iterdir() if p.is_dir()] if data_dir.is_dir() else []
    for day in due_days(candidates, today, retain_days):
        if day in removed_before and _only_manifest(data_dir, day):
            continue
        if read_back is not None and day not in index.queued_days():
            confirm_by_reading_back(data_dir, index, day, read_back)
        reason = unconfirmed(data_dir, index, day)
        if reason is not None:
            report.kept[day] = reason
            log.info("Keeping %s past RETAIN_DAYS: %s", day, reason)
            continue
        remove_day(data_dir, index, day)
        report.removed.append(day)
        log.info("Removed %s locally: every file is confirmed on the server", day)
    return report


def _only_manifest(data_dir: Path, day: str) -> bool:
    return [p.name for p in (data_dir / day).iterdir()] == [manifest_name(day)]
