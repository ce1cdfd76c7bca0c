"""The tamper-evident manifest chain: one manifest_yyyy_mm_dd.json per day folder.

A manifest lists every DB and attachment of its day with its size and SHA-256, and names the
previous day's manifest by its SHA-256, so the days form a chain: altering a byte, removing a
file or removing a whole day breaks it somewhere. Each file is hashed once, right after it is
published; the hash lives in the archive index, where delivery and retention read it too.

A manifest is built from the index, never from a folder listing, so it says what was taken
from the mailbox, not what happens to lie on disk. It carries no timestamp: the same files give
the same bytes, so rewriting an unchanged day changes nothing downstream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fund_mail.archive.fsutil import RunLock, file_sha256, write_atomic
from fund_mail.archive.index import ArchiveIndex, ManifestRecord
from fund_mail.archive.store import files_of

log = logging.getLogger(__name__)

FORMAT = "fund_mail manifest 1"
DAY_RE = re.compile(r"^\d{4}_\d{2}_\d{2}$")
MANIFEST_LOCK = "fund_mail_manifest.lock"


def manifest_name(day: str) -> str:
    return f"manifest_{day}.json"


def manifest_relative(day: str) -> str:
    return f"{day}/{manifest_name(day)}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def render(day: str, files: list[tuple[str, int, str]], previous: tuple[str, str] | None) -> bytes:
    """The manifest's exact bytes. files: (path relative to DATA_DIR, size, sha256)."""
    document = {
        "format": FORMAT,
        "day": day,
        "previous": (
            {"day": previous[0], "manifest": manifest_name(previous[0]), "sha256": previous[1]}
            if previous
            else None
        ),
        "files": [
            {"path": path.split("/", 1)[1], "size": size, "sha256": sha}
            for path, size, sha in sorted(files)
        ],
    }
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


# -- writing -------------------------------------------------------------------------------
def hash_new_files(data_dir: Path, index: ArchiveIndex) -> set[str]:
    """Hash the files of every published DB that has no hash yet; returns their days.

    A DB's files are recorded together, the DB among them, in one transaction: a run killed
    half way hashes that DB's files again, and nothing is hashed twice once recorded.
    """
    days: set[str] = set()
    for db_relative in index.unhashed_dbs():
        if not (data_dir / db_relative).is_file():
            continue  # removed locally before hashes existed: nothing left to hash
        day = db_relative.split("/", 1)[0]
        if day not in days:
            index.mark_pending(day)  # a crash from here on still rewrites the manifest
        files = files_of(data_dir, db_relative)
        known = index.hashed_among([relative for _, relative in files])
        hashes = []
        for local, relative in files:
            if relative in known or not local.is_file():
                continue
            stat = local.stat()
            hashes.append((relative, stat.st_size, stat.st_mtime_ns, file_sha256(local)))
        index.record_hashes(hashes)
        days.add(day)
    return days


def write_chain(data_dir: Path, index: ArchiveIndex, days: set[str]) -> list[str]:
    """Rewrite the manifests of days, and every later one whose previous link changed.

    Returns the days whose manifest changed. Serialised by a lock, because fund_mail_once and
    fund_mail_one_day may both add files at the same time.
    """
    changed: list[str] = []
    with RunLock(data_dir / MANIFEST_LOCK, "manifest", wait=60):
        known = index.manifests()
        from_day = min(days)
        earlier = [d for d in known if d < from_day]
        previous = (earlier[-1], known[earlier[-1]].sha256) if earlier else None
        for day in index.hashed_days(from_day):
            records = index.file_records(day)
            content = render(day, [(r.path, r.size, r.sha256) for r in records.values()], previous)
            sha = sha256_bytes(content)
            target = data_dir / manifest_relative(day)
            unchanged = day in known and known[day].sha256 == sha and target.is_file()
            if unchanged and not any(d >= day for d in days):
                break  # every later link is unchanged too
            if not unchanged:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(target, content)
                changed.append(day)
            index.record_manifest(day, sha)
            previous = (day, sha)
    return changed


def update_manifests(data_dir: Path, index: ArchiveIndex) -> list[str]:
    """Bring the manifests up to date with what has been published; returns changed days."""
    hash_new_files(data_dir, index)
    todo = index.pending_days()  # also those a killed run hashed but did not write
    if not todo:
        return []
    changed = write_chain(data_dir, index, todo)
    if changed:
        log.info("Manifest updated for %s", ", ".join(changed))
    return changed


# -- verifying -----------------------------------------------------------------------------
class Tree(Protocol):
    """A copy of the archive to verify: the local DATA_DIR or the SFTP server's base dir."""

    def days(self) -> list[str]: ...

    def files(self, day: str) -> dict[str, int]:
        """Every file under the day folder (path relative to the root -> size); hidden
        in-progress files (a leading dot) are left out."""
        ...

    def read(self, relative: str) -> bytes: ...

    def sha256(self, relative: str) -> str: ...


class LocalTree:
    def __init__(self, root: Path) -> None:
        self.root = root

    def days(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and DAY_RE.match(p.name))

    def files(self, day: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for path in _walk(self.root / day):
            found[path.relative_to(self.root).as_posix()] = path.stat().st_size
        return found

    def read(self, relative: str) -> bytes:
        return (self.root / relative).read_bytes()

    def sha256(self, relative: str) -> str:
        return file_sha256(self.root / relative)


def _walk(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(entry)
        elif entry.is_file():
            yield entry


@dataclass
class Verification:
    """What --verify checked of one copy of the archive, and every problem it found."""

    days_checked: int = 0
    files_checked: int = 0
    server_only: int = 0  # files of days whose local copy retention removed
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def render(self, where: str) -> str:
        lines = list(self.problems)
        verdict = "INTACT" if self.intact else f"NOT INTACT: {len(self.problems)} problem(s)"
        extra = f", {self.server_only} file(s) kept on the server only" if self.server_only else ""
        lines.append(
            f"{where}: {verdict}; {self.days_checked} day(s), {self.files_checked} file(s) "
            f"checked{extra}"
        )
        return "\n".join(lines)


def verify(
    tree: Tree,
    expected: dict[str, ManifestRecord],
    remote: bool,
    first: str = "",
    last: str = "9999_99_99",
) -> Verification:
    """Check a copy against the chain and the index; every problem becomes one line.

    expected is the index's record of each day's manifest. Locally, a day that retention
    removed keeps only its manifest; on the server only delivered manifests are expected.
    """
    result = Verification()
    present = set(tree.days())

    def known_sha(day: str) -> str:
        record = expected.get(day)
        if record is None:
            return ""
        return record.delivered_sha256 if remote else record.sha256

    expected_days = {d for d in expected if known_sha(d)}
    in_range = sorted(d for d in expected_days | present if first <= d <= last)
    manifest_sha: dict[str, str] = {}

    def sha_of_manifest(day: str) -> str | None:
        if day not in manifest_sha:
            relative = manifest_relative(day)
            if day in present and relative in tree.files(day):
                manifest_sha[day] = sha256_bytes(tree.read(relative))
            else:
                return None
        return manifest_sha[day]

    for day in in_range:
        result.days_checked += 1
        if day not in present:
            result.problems.append(f"{day}: MISSING DAY: the folder is gone")
            continue
        files = tree.files(day)
        relative = manifest_relative(day)
        if relative not in files:
            result.problems.append(f"{day}: MISSING MANIFEST: {relative}")
            continue
        raw = tree.read(relative)
        sha = sha256_bytes(raw)
        manifest_sha[day] = sha
        if known_sha(day) and known_sha(day) != sha:
            result.problems.append(
                f"{day}: ALTERED MANIFEST: {relative} has SHA-256 {sha[:16]}..., the index "
                f"recorded {known_sha(day)[:16]}..."
            )
        try:
            document = json.loads(raw)
            listed = {
                f"{day}/{f['path']}": (int(f["size"]), str(f["sha256"])) for f in document["files"]
            }
            previous = document["previous"]
        except (ValueError, KeyError, TypeError) as e:
            result.problems.append(f"{day}: UNREADABLE MANIFEST: {relative} ({e})")
            continue
        removed_locally = not remote and (expected.get(day) or _NOT_REMOVED).removed_at is not None
        for path, (size, digest) in sorted(listed.items()):
            if path not in files:
                if removed_locally:
                    result.server_only += 1
                else:
                    result.problems.append(f"{day}: MISSING FILE: {path}")
                continue
            result.files_checked += 1
            if files[path] != size:
                result.problems.append(
                    f"{day}: ALTERED FILE: {path} is {files[path]} bytes, the manifest says {size}"
                )
            elif tree.sha256(path) != digest:
                result.problems.append(f"{day}: ALTERED FILE: {path} does not match its SHA-256")
        for path in sorted(set(files) - set(listed) - {relative}):
            result.problems.append(f"{day}: EXTRA FILE: {path} is not in the manifest")
        _check_link(day, previous, expected_days, sha_of_manifest, known_sha, result)
    return result


_NOT_REMOVED = ManifestRecord("", "", "", None)


def _check_link(day, previous, expected_days, sha_of_manifest, known_sha, result) -> None:
    earlier = [d for d in sorted(expected_days) if d < day]
    if previous is None:
        if earlier:
            result.problems.append(
                f"{day}: BROKEN CHAIN: the manifest names no previous day, but {earlier[-1]} "
                "came before it"
            )
        return
    prev_day, prev_sha = str(previous.get("day")), str(previous.get("sha256"))
    if earlier and earlier[-1] != prev_day:
        result.problems.append(
            f"{day}: BROKEN CHAIN: the manifest follows {prev_day}, the index has {earlier[-1]}"
        )
    actual = sha_of_manifest(prev_day)
    if actual is None:
        result.problems.append(
            f"{day}: BROKEN CHAIN: the previous day {prev_day} (or its manifest) is missing"
        )
    elif actual != prev_sha:
        result.problems.append(
            f"{day}: BROKEN CHAIN: the manifest of {prev_day} is not the one this day was "
            "chained to"
        )
