"""The archive index: fund_mail's own bookkeeping, kept apart from the archive DBs.

DATA_DIR/fund_mail_index.sqlite3 records which email_ids are archived (for de-duplication), which
DB files are being published, the upload outbox, and a history of runs. Publishing a DB and
recording its messages happen in one transaction, which is what makes a crash at any point safe.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from fund_mail import crashpoints
from fund_mail.archive.fsutil import RunLock, fsync_path
from fund_mail.archive.store import open_readonly, remove_messages
from fund_mail.errors import StateError

log = logging.getLogger(__name__)

INDEX_NAME = "fund_mail_index.sqlite3"
BASELINE = "(baseline)"  # db_file of ids known at the baseline: never archived by fund_mail_once
INDEX_VERSION = 2  # 2: archived.command, one_day ids recorded, audits
# Commands whose ids define where fund_mail_once stands (a lost cursor is rebuilt from them).
INCREMENTAL = ("once", "baseline")

SCHEMA = """
CREATE TABLE IF NOT EXISTS archived (
    email_id TEXT PRIMARY KEY,
    received_utc TEXT NOT NULL,
    db_file TEXT NOT NULL,
    archived_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS publishing (
    final_path TEXT PRIMARY KEY,
    tmp_path TEXT NOT NULL,
    command TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    db_path TEXT NOT NULL UNIQUE,
    queued_at TEXT NOT NULL,
    delivered_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS audits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    day TEXT NOT NULL,
    audited_at TEXT NOT NULL,
    trigger TEXT NOT NULL,
    in_mailbox INTEGER NOT NULL,
    archived INTEGER NOT NULL,
    missing INTEGER NOT NULL,
    repaired INTEGER NOT NULL,
    dry_run INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS finished_days (
    range_key TEXT NOT NULL,
    day TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (range_key, day)
);
CREATE TABLE IF NOT EXISTS imap_folders (
    folder TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS imap_baseline (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    floor_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fingerprints (
    fingerprint TEXT PRIMARY KEY,
    email_id TEXT NOT NULL,
    db_file TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    exit_code INTEGER,
    messages INTEGER NOT NULL DEFAULT 0,
    attachments INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    db_file TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT ''
);
-- One SHA-256 per archived file, taken once after publishing. The manifest lists it, delivery
-- marks it delivered once the server holds the same size, and retention trusts nothing else.
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    hashed_at TEXT NOT NULL,
    delivered_at TEXT
);
-- The manifest chain: the SHA-256 of each day's manifest as written and as delivered.
-- pending: files were hashed for the day, and its manifest is not rewritten yet.
CREATE TABLE IF NOT EXISTS manifests (
    day TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    delivered_sha256 TEXT NOT NULL DEFAULT '',
    removed_at TEXT,
    pending INTEGER NOT NULL DEFAULT 0
);
"""
PUBLISH_LOCK = "fund_mail_publish.lock"  # held from the commit point to the rename


class FileRecord(NamedTuple):
    path: str
    size: int
    mtime_ns: int
    sha256: str
    delivered_at: str | None


class ManifestRecord(NamedTuple):
    day: str
    sha256: str
    delivered_sha256: str
    removed_at: str | None


class RunRecord(NamedTuple):
    started_at: str
    finished_at: str
    exit_code: int
    error: str


def _record_archived(
    conn: sqlite3.Connection,
    archived: list[tuple[str, str]],
    relative: str,
    command: str,
    exclusive: bool,
) -> None:
    """Record a DB's (email_id, received_utc) pairs in `archived`, in the caller's transaction.

    They go in as one JSON array, in one statement: SQLite then reads them all without taking
    the interpreter lock back once per row, which lets a publish run on a thread of its own
    beside the writer (engine/publisher.py). JSON text cannot carry a NUL character through
    SQLite, so ids with one (never Graph's, whose ids are base64url) go in row by row.
    """
    verb = "INSERT" if exclusive else "INSERT OR IGNORE"
    columns = "archived (email_id, received_utc, db_file, archived_at, command)"
    now = utc_now_text()
    if any("\x00" in email_id or "\x00" in received for email_id, received in archived):
        conn.executemany(
            f"{verb} INTO {columns} VALUES (?, ?, ?, ?, ?)",
            [(i, r, relative, now, command) for i, r in archived],
        )
        return
    conn.execute(
        f"{verb} INTO {columns} SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
        "?, ?, ? FROM json_each(?)",
        (relative, now, command, json.dumps(archived, ensure_ascii=False)),
    )


def utc_now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditCounts(NamedTuple):
    in_mailbox: int = 0
    archived: int = 0  # already archived before this audit
    missing: int = 0
    repaired: int = 0
    dry_run: bool = False


class AuditRecord(NamedTuple):
    day: str
    audited_at: str
    trigger: str
    in_mailbox: int
    archived: int
    missing: int
    repaired: int
    dry_run: int
    error: str

    @property
    def complete(self) -> bool:
        return not self.error and self.missing == self.repaired


class StatusFacts(NamedTuple):
    """What --status shows from the index, read without creating or changing anything."""

    last_good_run: tuple[str, int, str] | None  # finished_at, messages, db_file
    today: tuple[int, int]  # messages and runs since local midnight
    queued: list[tuple[str, int, str]]  # db_path, attempts, last_error; oldest first
    last_failure: tuple[str, str, int, str] | None  # finished_at, command, exit code, error


def status_facts(data_dir: Path, since_utc: str) -> StatusFacts | None:
    """None when there is no index yet."""
    path = data_dir / INDEX_NAME
    if not path.exists():
        return None
    with open_readonly(path) as conn:
        last_ok = conn.execute(
            "SELECT finished_at, messages, db_file FROM runs WHERE command = "
            "'fund_mail_once' AND exit_code = 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        today = conn.execute(
            "SELECT coalesce(sum(messages), 0), count(*) FROM runs WHERE started_at >= ?",
            (since_utc,),
        ).fetchone()
        queued = conn.execute(
            "SELECT db_path, attempts, last_error FROM outbox WHERE delivered_at IS NULL "
            "ORDER BY id"
        ).fetchall()
        failed = conn.execute(
            "SELECT finished_at, command, exit_code, error FROM runs "
            "WHERE exit_code <> 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
    return StatusFacts(last_ok, tuple(today), queued, failed)


def audit_history(data_dir: Path, days: Iterable[str]) -> dict[str, AuditRecord]:
    """The newest audit of each day, read-only; {} when the index has no audits yet."""
    path = data_dir / INDEX_NAME
    if not path.exists():
        return {}
    conn = open_readonly(path)
    try:
        latest = {}
        for day in days:
            row = conn.execute(
                "SELECT day, audited_at, trigger, in_mailbox, archived, missing, repaired, "
                "dry_run, error FROM audits WHERE day = ? ORDER BY id DESC LIMIT 1",
                (day,),
            ).fetchone()
            if row:
                latest[day] = AuditRecord(*row)
        return latest
    except sqlite3.OperationalError:
        return {}  # an index written before audits existed
    finally:
        conn.close()


def imap_state(data_dir: Path) -> tuple[str | None, list[tuple[str, int, int, str]]]:
    """The IMAP baseline time and each folder's (folder, UIDVALIDITY, last UID, updated at),
    read-only; (None, []) before the first IMAP run."""
    path = data_dir / INDEX_NAME
    if not path.exists():
        return None, []
    conn = open_readonly(path)
    try:
        floor = conn.execute("SELECT floor_utc FROM imap_baseline").fetchone()
        folders = conn.execute(
            "SELECT folder, uidvalidity, last_uid, updated_at FROM imap_folders ORDER BY folder"
        ).fetchall()
        return (floor[0] if floor else None), folders
    except sqlite3.OperationalError:
        return None, []  # an index written before the IMAP source existed
    finally:
        conn.close()


def _ids_in_db(path: Path) -> list[tuple[str, str]]:
    """(email_id, received_utc) of every message in an archive DB; [] when it is unreadable."""
    if not path.is_file():
        return []
    try:
        conn = open_readonly(path)
        try:
            rows = conn.execute("SELECT email_id, email_time FROM fund_mail").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        log.warning("Could not read the ids of %s (%s)", path, e)
        return []
    return [(i, t[:19].replace(" ", "T") + "Z") for i, t in rows]


class Published(NamedTuple):
    path: Path
    relative: str
    dropped_messages: int = 0  # archived meanwhile by another command, left out
    dropped_attachments: int = 0


class ArchiveIndex:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / INDEX_NAME
        try:
            self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StateError(
                f"The archive index {self.path} cannot be read ({e}). Move it aside and run "
                "again with --since set to the last time you know was archived; already "
                "delivered DBs on the server are not affected."
            ) from e

    def close(self) -> None:
        self._conn.close()

    def _migrate(self) -> None:
        """Bring an index written by an earlier version up to INDEX_VERSION, once."""
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= INDEX_VERSION:
            return
        with self.transaction() as conn:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(archived)")}
            if "command" not in columns:
                conn.execute("ALTER TABLE archived ADD COLUMN command TEXT NOT NULL DEFAULT 'once'")
                conn.execute(
                    "UPDATE archived SET command = 'baseline' WHERE db_file = ?", (BASELINE,)
                )
            # Earlier versions did not record the ids of fund_mail_one_day DBs. The audit compares
            # the mailbox with everything ever archived, so read them from those DBs once.
            unrecorded = conn.execute(
                "SELECT db_path FROM outbox WHERE db_path NOT IN (SELECT db_file FROM archived)"
            ).fetchall()
            for (relative,) in unrecorded:
                conn.executemany(
                    "INSERT OR IGNORE INTO archived (email_id, received_utc, db_file, archived_at, "
                    "command) VALUES (?, ?, ?, ?, 'day')",
                    [
                        (i, r, relative, utc_now_text())
                        for i, r in _ids_in_db(self.data_dir / relative)
                    ],
                )
            conn.execute(f"PRAGMA user_version = {INDEX_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so concurrent commands queue instead of failing.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def relative(self, path: Path) -> str:
        return path.relative_to(self.data_dir).as_posix()

    # -- de-duplication --------------------------------------------------------------------
    def known_ids(self, email_ids: Iterable[str]) -> set[str]:
        return self._known(self._conn, list(email_ids))

    @staticmethod
    def _known(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
        return ArchiveIndex._present(conn, "archived", "email_id", ids)

    @staticmethod
    def _present(conn: sqlite3.Connection, table: str, column: str, values: list[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            rows = conn.execute(
                f"SELECT {column} FROM {table} WHERE {column} IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            known.update(r[0] for r in rows)
        return known

    def known_fingerprints(self, fingerprints: Iterable[str]) -> set[str]:
        """Which message fingerprints (IMAP: Message-ID + date + size) are archived already."""
        return self._present(self._conn, "fingerprints", "fingerprint", list(fingerprints))

    # -- IMAP folder state -----------------------------------------------------------------
    def imap_folder_states(self) -> dict[str, tuple[int, int]]:
        """folder -> (UIDVALIDITY, highest UID read) as of the last finished run."""
        rows = self._conn.execute("SELECT folder, uidvalidity, last_uid FROM imap_folders")
        return {folder: (uidvalidity, last_uid) for folder, uidvalidity, last_uid in rows}

    def set_imap_folder_states(self, states: dict[str, tuple[int, int]]) -> None:
        now = utc_now_text()
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO imap_folders VALUES (?, ?, ?, ?)",
                [(f, validity, uid, now) for f, (validity, uid) in states.items()],
            )

    def imap_floor(self) -> str | None:
        """When the IMAP baseline was taken: mail that arrived before it is not archived."""
        row = self._conn.execute("SELECT floor_utc FROM imap_baseline").fetchone()
        return row[0] if row else None

    def record_imap_baseline(self, floor_utc: str, states: dict[str, tuple[int, int]]) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO imap_baseline VALUES (1, ?)", (floor_utc,))
        self.set_imap_folder_states(states)

    def has_archived(self) -> bool:
        """Whether fund_mail_once has a baseline or archived anything (backfills do not count)."""
        row = self._conn.execute(
            "SELECT 1 FROM archived WHERE command IN (?, ?) LIMIT 1", INCREMENTAL
        ).fetchone()
        return row is not None

    def newest_archived(self) -> tuple[str, str] | None:
        """(email_id, received_utc) of the newest message fund_mail_once archived, to rebuild a
        lost cursor."""
        return self._conn.execute(
            "SELECT email_id, received_utc FROM archived WHERE command IN (?, ?) "
            "ORDER BY received_utc DESC LIMIT 1",
            INCREMENTAL,
        ).fetchone()

    def baseline_time(self) -> str | None:
        """When the baseline was taken (the receivedDateTime of the ids known then)."""
        row = self._conn.execute(
            "SELECT min(received_utc) FROM archived WHERE db_file = ?", (BASELINE,)
        ).fetchone()
        return row[0] if row else None

    def record_baseline(self, ids_received: Iterable[tuple[str, str]]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO archived (email_id, received_utc, db_file, archived_at, "
                "command) VALUES (?, ?, ?, ?, 'baseline')",
                [(i, r, BASELINE, utc_now_text()) for i, r in ids_received],
            )

    # -- publishing ------------------------------------------------------------------------
    def publish(
        self,
        tmp_path: Path,
        day_dir: Path,
        stem: str,
        command: str,
        archived: list[tuple[str, str]],
        source: str | None = None,
        exclusive: bool = True,
        fingerprints: Sequence[tuple[str, str]] = (),
    ) -> Published | None:
        """Give a finished temporary DB its final name, recording it (and its ids) first.

        The name is chosen inside the transaction, so fund_mail_once and fund_mail_one_day never
        pick the same one; a clash with an existing file gets a suffix (_2, _3, ...).
        exclusive: ids that another command archived since this run checked are taken out of
        the DB first, under the index's write lock, so that no id ends up in two DBs; None when
        nothing is left. A backfill is not exclusive: it writes whole days on request, and the
        first DB stays the id's record. fingerprints: (fingerprint, email_id) of the IMAP source,
        recorded with the ids. The publish lock is held from the commit point to the rename, so
        that the service can stop a cycle without killing it mid-publish.
        """
        with self.publish_lock():
            with self.transaction() as conn:
                dropped = (0, 0)
                if exclusive:
                    taken = self._known(conn, [i for i, _ in archived])
                    if taken:
                        log.info(
                            "%d message(s) were archived by another command meanwhile; "
                            "leaving them out of this DB",
                            len(taken),
                        )
                        dropped = remove_messages(tmp_path, taken)
                        archived = [(i, r) for i, r in archived if i not in taken]
                        if not archived:
                            tmp_path.unlink(missing_ok=True)
                            return None
                final = day_dir / f"{stem}.db"
                suffix = 2
                while final.exists() or self._name_taken(conn, self.relative(final)):
                    final = day_dir / f"{stem}_{suffix}.db"
                    suffix += 1
                relative = self.relative(final)
                _record_archived(conn, archived, relative, source or command, exclusive)
                if fingerprints:
                    kept = {i for i, _ in archived}
                    conn.executemany(
                        "INSERT OR IGNORE INTO fingerprints VALUES (?, ?, ?)",
                        [(f, i, relative) for f, i in fingerprints if i in kept],
                    )
                conn.execute(
                    "INSERT INTO publishing VALUES (?, ?, ?)",
                    (relative, self.relative(tmp_path), command),
                )
                conn.execute(
                    "INSERT INTO outbox (db_path, queued_at) VALUES (?, ?)",
                    (relative, utc_now_text()),
                )
            crashpoints.reached("index-committed")
            self._finish_publish(relative, tmp_path, final)
            return Published(final, relative, *dropped)

    def publish_lock(self) -> RunLock:
        return RunLock(self.data_dir / PUBLISH_LOCK, "publish", wait=60)

    def _name_taken(self, conn: sqlite3.Connection, relative: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM publishing WHERE final_path = ? UNION ALL "
            "SELECT 1 FROM outbox WHERE db_path = ?",
            (relative, relative),
        ).fetchone()
        return row is not None

    def _finish_publish(self, relative: str, tmp_path: Path, final: Path) -> None:
        os.replace(tmp_path, final)
        fsync_path(final.parent)
        with self.transaction() as conn:
            conn.execute("DELETE FROM publishing WHERE final_path = ?", (relative,))

    def recover(self, command: str) -> None:
        """Finish or undo publishes that a killed run of `command` left half done."""
        rows = self._conn.execute(
            "SELECT final_path, tmp_path FROM publishing WHERE command = ?", (command,)
        ).fetchall()
        for relative, tmp_relative in rows:
            final, tmp_path = self.data_dir / relative, self.data_dir / tmp_relative
            if tmp_path.exists():
                log.warning(
                    "Finishing the publish of %s that an earlier run left half done", relative
                )
                with self.publish_lock():
                    self._finish_publish(relative, tmp_path, final)
            elif final.exists():
                with self.transaction() as conn:
                    conn.execute("DELETE FROM publishing WHERE final_path = ?", (relative,))
            else:
                # The DB is gone: forget its ids so that the next scan archives them again.
                log.warning(
                    "%s was recorded but never written; its mail will be archived again", relative
                )
                with self.transaction() as conn:
                    conn.execute("DELETE FROM archived WHERE db_file = ?", (relative,))
                    conn.execute("DELETE FROM fingerprints WHERE db_file = ?", (relative,))
                    conn.execute("DELETE FROM outbox WHERE db_path = ?", (relative,))
                    conn.execute("DELETE FROM publishing WHERE final_path = ?", (relative,))
        # Temporary DBs (and their journals) of runs killed before they recorded anything.
        for leftover in self.data_dir.glob(f"*/.{command}-*"):
            log.info("Removing %s left by an interrupted run", leftover.name)
            leftover.unlink(missing_ok=True)

    # -- outbox ----------------------------------------------------------------------------
    def queued(self) -> list[str]:
        """DB files (relative to DATA_DIR) waiting for delivery, oldest first."""
        rows = self._conn.execute(
            "SELECT db_path FROM outbox WHERE delivered_at IS NULL AND db_path NOT IN "
            "(SELECT final_path FROM publishing) ORDER BY id"
        )
        return [r[0] for r in rows]

    def mark_delivered(self, relative: str, files: Iterable[tuple[str, int, int]] = ()) -> None:
        """The DB left the outbox; each (path, size, mtime_ns) landed with that size.

        A file counts as delivered only while it is still the file that was hashed (same size
        and modification time), so the recorded SHA-256 is the SHA-256 of what was sent.
        """
        now = utc_now_text()
        with self.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = '' "
                "WHERE db_path = ?",
                (now, relative),
            )
            conn.executemany(
                "UPDATE file_hashes SET delivered_at = ? WHERE path = ? AND size = ? "
                "AND mtime_ns = ?",
                [(now, path, size, mtime_ns) for path, size, mtime_ns in files],
            )

    def confirm_files(self, paths: Iterable[str]) -> None:
        """Files whose server copy was read back with the recorded size and SHA-256."""
        now = utc_now_text()
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE file_hashes SET delivered_at = ? WHERE path = ? AND delivered_at IS NULL",
                [(now, path) for path in paths],
            )

    def mark_failed(self, relative: str, error: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE db_path = ?",
                (error[:500], relative),
            )

    # -- audits ----------------------------------------------------------------------------
    def record_audit(
        self, day: str, trigger: str, counts: AuditCounts, error: str = "", at: str = ""
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO audits (day, audited_at, trigger, in_mailbox, archived, missing, "
                "repaired, dry_run, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    day,
                    at or utc_now_text(),
                    trigger,
                    counts.in_mailbox,
                    counts.archived,
                    counts.missing,
                    counts.repaired,
                    int(counts.dry_run),
                    error[:1000],
                ),
            )

    def audited_complete_since(self, since_utc: str, days: Iterable[str]) -> set[str]:
        """The days among `days` that an audit (not a dry run) found or made complete at or
        after since_utc."""
        done = set()
        for day in days:
            row = self._conn.execute(
                "SELECT 1 FROM audits WHERE day = ? AND audited_at >= ? AND dry_run = 0 "
                "AND error = '' AND missing = repaired LIMIT 1",
                (day, since_utc),
            ).fetchone()
            if row:
                done.add(day)
        return done

    # -- run history -----------------------------------------------------------------------
    # -- ranges that resume ----------------------------------------------------------------
    def record_finished_day(self, range_key: str, day: str) -> None:
        """A day of a fund_mail_one_day range is archived and published in full."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO finished_days (range_key, day, finished_at) "
                "VALUES (?, ?, ?)",
                (range_key, day, utc_now_text()),
            )

    def finished_days(self, range_key: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT day FROM finished_days WHERE range_key = ?", (range_key,)
        ).fetchall()
        return [day for (day,) in rows]

    def forget_finished_days(self, range_key: str) -> None:
        """The range ended with every day done: running it again archives it all again."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM finished_days WHERE range_key = ?", (range_key,))

    def record_run(
        self,
        command: str,
        started_at: str,
        exit_code: int,
        error: str = "",
        messages: int = 0,
        attachments: int = 0,
        size: int = 0,
        db_file: str = "",
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO runs (command, started_at, finished_at, exit_code, messages, "
                "attachments, bytes, db_file, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    command,
                    started_at,
                    utc_now_text(),
                    exit_code,
                    messages,
                    attachments,
                    size,
                    db_file,
                    error[:1000],
                ),
            )

    def recent_runs(self, command: str, limit: int) -> list[RunRecord]:
        """The command's latest runs, newest first; runs that found the lock held are left out."""
        rows = self._conn.execute(
            "SELECT started_at, coalesce(finished_at, started_at), exit_code, error FROM runs "
            "WHERE command = ? AND exit_code <> 3 ORDER BY id DESC LIMIT ?",
            (command, limit),
        )
        return [RunRecord(*row) for row in rows]

    def last_success(self, command: str) -> str | None:
        row = self._conn.execute(
            "SELECT max(finished_at) FROM runs WHERE command = ? AND exit_code = 0", (command,)
        ).fetchone()
        return row[0] if row else None

    def first_run(self, command: str) -> str | None:
        row = self._conn.execute(
            "SELECT min(started_at) FROM runs WHERE command = ?", (command,)
        ).fetchone()
        return row[0] if row else None

    def oldest_queued(self) -> tuple[int, str | None]:
        """How many DBs wait for delivery, and since when the oldest has waited."""
        row = self._conn.execute(
            "SELECT count(*), min(queued_at) FROM outbox WHERE delivered_at IS NULL"
        ).fetchone()
        return row[0], row[1]

    # -- file hashes and the manifest chain ------------------------------------------------
    def unhashed_dbs(self) -> list[str]:
        """Published DBs whose files have no recorded hash yet (the newest work, or a crash)."""
        rows = self._conn.execute(
            "SELECT db_path FROM outbox WHERE db_path NOT IN (SELECT path FROM file_hashes) "
            "AND db_path NOT IN (SELECT final_path FROM publishing) ORDER BY id"
        )
        return [r[0] for r in rows]

    def file_records(self, day: str) -> dict[str, FileRecord]:
        rows = self._conn.execute(
            "SELECT path, size, mtime_ns, sha256, delivered_at FROM file_hashes "
            "WHERE path LIKE ? ORDER BY path",
            (f"{day}/%",),
        )
        return {row[0]: FileRecord(*row) for row in rows}

    def hashed_among(self, paths: list[str]) -> set[str]:
        """The paths among these that already have a recorded hash."""
        found: set[str] = set()
        for start in range(0, len(paths), 500):  # SQLite's limit on bound parameters
            part = paths[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._conn.execute(f"SELECT path FROM file_hashes WHERE path IN ({marks})", part)
            found.update(r[0] for r in rows)
        return found

    def record_hashes(self, files: list[tuple[str, int, int, str]]) -> None:
        """(path, size, mtime_ns, sha256) of files, in one transaction. The first hash of a file
        is the one kept: a later change must show up, not replace it."""
        now = utc_now_text()
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO file_hashes (path, size, mtime_ns, sha256, hashed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(*file, now) for file in files],
            )

    def hashed_days(self, since: str) -> list[str]:
        """Days from since on that have hashed files (a range scan of the primary key)."""
        rows = self._conn.execute(
            "SELECT DISTINCT substr(path, 1, instr(path, '/') - 1) AS day FROM file_hashes "
            "WHERE path >= ? ORDER BY day",
            (since,),
        )
        return [r[0] for r in rows]

    def mark_pending(self, day: str) -> None:
        """Before a day's new files are hashed: its manifest must be rewritten."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO manifests (day, sha256, pending) VALUES (?, '', 1) "
                "ON CONFLICT (day) DO UPDATE SET pending = 1",
                (day,),
            )

    def pending_days(self) -> set[str]:
        rows = self._conn.execute("SELECT day FROM manifests WHERE pending = 1")
        return {r[0] for r in rows}

    def manifests(self) -> dict[str, ManifestRecord]:
        """Days with a written manifest, in order."""
        rows = self._conn.execute(
            "SELECT day, sha256, delivered_sha256, removed_at FROM manifests "
            "WHERE sha256 <> '' ORDER BY day"
        )
        return {row[0]: ManifestRecord(*row) for row in rows}

    def record_manifest(self, day: str, sha256: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO manifests (day, sha256) VALUES (?, ?) "
                "ON CONFLICT (day) DO UPDATE SET sha256 = excluded.sha256, pending = 0",
                (day, sha256),
            )

    def mark_manifest_delivered(self, day: str, sha256: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE manifests SET delivered_sha256 = ? WHERE day = ?", (sha256, day))

    def mark_day_removed(self, day: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE manifests SET removed_at = coalesce(removed_at, ?) WHERE day = ?",
                (utc_now_text(), day),
            )

    def queued_days(self) -> set[str]:
        rows = self._conn.execute("SELECT db_path FROM outbox WHERE delivered_at IS NULL")
        return {r[0].split("/", 1)[0] for r in rows}
