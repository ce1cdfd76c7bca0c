"""The archive DB files: the pst-utils schema, written in one transaction at a temporary path.

A DB only takes its final name through ArchiveIndex.publish, which records it first; see
ARCHITECTURE.md for why the order matters.
"""

from __future__ import annotations

import os
import re
import sqlite3
from importlib.resources import files
from pathlib import Path, PureWindowsPath
from urllib.parse import quote

from fund_mail.archive.fsutil import fsync_path
from fund_mail.archive.rows import ATTACH_COLUMNS, MAIL_COLUMNS, AttachRow, MailRow
from fund_mail.errors import UnsafePath, UsageError

SCHEMA_SQL = files("fund_mail.archive").joinpath("schema.sql").read_text(encoding="utf-8")
_INSERT_ATTACH = (
    f"INSERT INTO fund_mail_attach ({', '.join(ATTACH_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ATTACH_COLUMNS))})"
)


def readonly_uri(path: Path | str) -> str:
    """A SQLite file: URI for a read-only open, escaped so that #, ?, % and spaces in a folder
    name stay part of the path. The authority is always empty: c:\\x becomes file:///c:/x and
    \\\\server\\share\\x becomes file:////server/share/x, the forms SQLite's Windows VFS reads."""
    text = str(path)
    windows = PureWindowsPath(text)
    if windows.drive:
        text = "/" + windows.as_posix().lstrip("/") if ":" in windows.drive else windows.as_posix()
    else:
        text = os.path.abspath(text)
    return f"file://{quote(text, safe='/:')}?mode=ro"


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing DB without ever creating or changing it."""
    return sqlite3.connect(readonly_uri(path), uri=True)


def insert_message(conn: sqlite3.Connection, row: MailRow, attachments: list[AttachRow]) -> int:
    """One fund_mail row and its fund_mail_attach rows; returns the message's row id."""
    cursor = conn.execute(
        f"INSERT INTO fund_mail ({', '.join(MAIL_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(MAIL_COLUMNS))})",
        row,
    )
    parent_id = cursor.lastrowid
    if parent_id is None:
        raise sqlite3.DatabaseError("the archive DB gave no row id for an inserted message")
    for attachment in attachments:
        conn.execute(_INSERT_ATTACH, (parent_id, row.email_id, *attachment))
    return parent_id


def remove_messages(path: Path, email_ids: set[str]) -> tuple[int, int]:
    """Take messages (and their attachment rows) out of a finished, unpublished DB.

    Returns (messages, attachment rows) removed. The attachment files stay: their names are
    deterministic, so the DB that keeps the message references the same files.
    """
    ids = sorted(email_ids)
    messages = attachments = 0
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            attachments += conn.execute(
                f"DELETE FROM fund_mail_attach WHERE email_id IN ({marks})", chunk
            ).rowcount
            messages += conn.execute(
                f"DELETE FROM fund_mail WHERE email_id IN ({marks})", chunk
            ).rowcount
        conn.execute("COMMIT")
    finally:
        conn.close()
    fsync_path(path)
    return messages, attachments


class ArchiveDb:
    """One archive DB under construction. Rows go in one transaction, committed by finish()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so the whole DB, its schema
        # included, is one transaction (one journal sync instead of one per CREATE). A full DB
        # is finished on the publisher's thread: one thread at a time, never two at once.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.executescript(f"BEGIN;\n{SCHEMA_SQL}")
        self.messages = 0
        self.attachments = 0

    def add(self, row: MailRow, attachments: list[AttachRow]) -> int:
        parent_id = insert_message(self._conn, row, attachments)
        self.messages += 1
        self.attachments += len(attachments)
        return parent_id

    def add_many(self, rows: list[tuple[MailRow, list[AttachRow]]]) -> None:
        """Many messages and their attachment rows in two executemany calls.

        The ids are given, not left to AUTOINCREMENT, so an attachment row can name its parent
        without a lastrowid per message; they are the ids AUTOINCREMENT would have chosen, since
        this DB is new and written by this object alone.
        """
        first = self._conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM fund_mail").fetchone()[0]
        messages, attachments = [], []
        for parent_id, (row, attached) in enumerate(rows, start=first):
            messages.append((parent_id, *row))
            attachments += [(parent_id, row.email_id, *a) for a in attached]
        self._conn.executemany(
            f"INSERT INTO fund_mail (id, {', '.join(MAIL_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (len(MAIL_COLUMNS) + 1))})",
            messages,
        )
        self._conn.executemany(_INSERT_ATTACH, attachments)
        self.messages += len(messages)
        self.attachments += len(attachments)

    def finish(self) -> None:
        """Commit, close and fsync: after this the file is complete on disk."""
        self._conn.execute("COMMIT")
        self._conn.close()
        fsync_path(self.path)

    def discard(self) -> None:
        try:
            self._conn.close()
        finally:
            self.path.unlink(missing_ok=True)
            Path(f"{self.path}-journal").unlink(missing_ok=True)


def inside_data_dir(data_dir: Path, relative: object, db_relative: str) -> Path:
    """The local file a path read back from the index or an archive DB names, refused when it
    could point outside DATA_DIR (.., absolute, a drive letter, a backslash) on any system."""
    text = relative if isinstance(relative, str) else ""
    parts = text.split("/")
    if (
        not text
        or re.search(r"[\\:\x00]", text)
        or text.startswith("/")
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise UnsafePath(
            f"{db_relative} names the file {relative!r}, which points outside DATA_DIR: "
            "refused, nothing of this DB was sent. The DB may have been edited by hand; "
            "restore it from a backup or remove it from the outbox."
        )
    return data_dir.joinpath(*parts)


def files_of(data_dir: Path, db_relative: str) -> list[tuple[Path, str]]:
    """(local path, path relative to DATA_DIR) for each attachment of a DB, then the DB.

    Nothing read from a DB is trusted: a path that leads outside DATA_DIR raises UnsafePath.
    """
    db_path = inside_data_dir(data_dir, db_relative, db_relative)
    with open_readonly(db_path) as conn:
        rows = conn.execute(
            "SELECT DISTINCT save_folder, phy_file_name FROM fund_mail_attach ORDER BY id"
        ).fetchall()
    files = []
    for folder, name in rows:
        relative = f"{folder}/{name}" if isinstance(folder, str) and isinstance(name, str) else None
        files.append((inside_data_dir(data_dir, relative, db_relative), str(relative)))
    return files + [(db_path, db_relative)]


class ResumableDb:
    """An archive DB filled in committed batches and resumed in place (fund_mail_pst).

    Unlike ArchiveDb it is never published whole: a rerun opens it again, and `known` holds the
    email_ids it already has, so nothing is imported twice.
    """

    def __init__(self, path: Path, batch: int) -> None:
        self.path = path
        self.batch = batch
        fresh = not path.exists()
        self.conn = sqlite3.connect(path, isolation_level=None)
        if fresh:
            self.conn.executescript(SCHEMA_SQL)
        else:
            tables = {
                r[0]
                for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if not {"fund_mail", "fund_mail_attach"} <= tables:
                self.conn.close()
                raise UsageError(f"{path} exists and is not a fund_mail archive DB")
        self.known = {r[0] for r in self.conn.execute("SELECT email_id FROM fund_mail")}
        self.pending = 0
        self.conn.execute("BEGIN")

    def add(self, row: MailRow, attachments: list[AttachRow]) -> None:
        insert_message(self.conn, row, attachments)
        self.known.add(row.email_id)
        self.pending += 1
        if self.pending >= self.batch:
            self.commit()

    def commit(self) -> None:
        self.conn.execute("COMMIT")
        self.pending = 0
        self.conn.execute("BEGIN")

    def close(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()
        fsync_path(self.path)


def messages_with_files(db_path: Path) -> list[tuple]:
    """kst_time, msg_kind, folder_path, subject, note and a one-line list of the attachment
    files, of every message in a DB, oldest first (the demo prints them)."""
    with open_readonly(db_path) as conn:
        return conn.execute(
            "SELECT m.kst_time, m.msg_kind, m.folder_path, m.subject, m.note, "
            "(SELECT group_concat(org_file_name || ' -> ' || save_folder || '/' || phy_file_name"
            " || ' (' || file_size || ' B)', '; ') FROM fund_mail_attach a "
            "WHERE a.parent_id = m.id) FROM fund_mail m ORDER BY m.email_time"
        ).fetchall()
