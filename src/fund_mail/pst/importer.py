"""fund_mail_pst: import a PST backup into the pst-utils schema, message by message.

- One DB per PST, DIR/<pst name>.db, with exactly the schema of the live archive; attachments
  under DIR/attach/yyyy_mm_dd/ (the message's day in TIMEZONE), named like live attachments.
- Streaming: items are read one at a time and committed in batches, so memory stays flat.
- Resumable: email_id is the PST node id; a second run skips what the DB already holds.
- Reconciled: per folder, items seen, mails written and attachments expected against written;
  every item or attachment that could not be read is listed, and noted on its row.
"""

from __future__ import annotations

import email.message
import email.utils
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fund_mail.archive.fsutil import RunLock, atomic_writer, fsync_path
from fund_mail.archive.rows import (
    FILE_ATTACHMENT,
    ITEM_ATTACHMENT,
    email_time,
    local_time,
    phy_file_name,
)
from fund_mail.archive.store import SCHEMA_SQL, insert_message
from fund_mail.errors import UsageError
from fund_mail.pst import props as p
from fund_mail.pst.rtf import rtf_to_text

log = logging.getLogger(__name__)

BATCH = 200
CHUNK = 1024 * 1024


@dataclass
class FolderTally:
    seen: int = 0
    written: int = 0
    already: int = 0
    skipped: Counter = field(default_factory=Counter)  # message class -> count
    unreadable: int = 0
    attachments_expected: int = 0
    attachments_written: int = 0


@dataclass
class Problem:
    folder: str
    item: str
    reason: str


@dataclass
class ImportReport:
    db_path: Path
    folders: dict[str, FolderTally] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def tally(self, folder: str) -> FolderTally:
        return self.folders.setdefault(folder, FolderTally())

    @property
    def written(self) -> int:
        return sum(t.written for t in self.folders.values())

    def render(self) -> str:
        header = (
            f"{'folder':<40} {'items':>6} {'mails':>6} {'before':>6} {'skipped':>8} {'attach':>13}"
        )
        lines = [f"Reconciliation for {self.db_path}:", header, "-" * len(header)]
        empty = [name for name, t in self.folders.items() if not t.seen]
        for name, t in sorted(self.folders.items()):
            if not t.seen:
                continue
            skipped = sum(t.skipped.values())
            ok = "" if t.attachments_written == t.attachments_expected else "  <-- missing"
            lines.append(
                f"{name[:40]:<40} {t.seen:>6} {t.written:>6} {t.already:>6} {skipped:>8} "
                f"{t.attachments_written:>6}/{t.attachments_expected:<6}{ok}"
            )
        skipped = Counter()
        for t in self.folders.values():
            skipped.update(t.skipped)
        totals = FolderTally()
        for t in self.folders.values():
            for name in (
                "seen",
                "written",
                "already",
                "unreadable",
                "attachments_expected",
                "attachments_written",
            ):
                setattr(totals, name, getattr(totals, name) + getattr(t, name))
        lines.append(
            f"{'total':<40} {totals.seen:>6} {totals.written:>6} {totals.already:>6} "
            f"{sum(skipped.values()):>8} {totals.attachments_written:>6}/"
            f"{totals.attachments_expected:<6}"
        )
        lines.append(
            f"({len(empty)} empty folders not shown) items: seen; mails: written now; before: "
            "already in the DB from an earlier run; attach: written/expected"
        )
        if skipped:
            lines.append(
                "Skipped (not mail): "
                + ", ".join(f"{kind} {count}" for kind, count in sorted(skipped.items()))
            )
        if self.problems:
            lines.append(f"Could not be read ({len(self.problems)}):")
            lines += [f"  {x.folder} / {x.item}: {x.reason}" for x in self.problems]
        else:
            lines.append("Every item and attachment was read.")
        return "\n".join(lines)


def open_pst(path: Path, codepage: str) -> Any:
    try:
        import pypff
    except ImportError as e:
        raise UsageError(
            "PST import needs libpff-python: install the extra with `uv sync --extra pst` "
            "(or `pip install fund-mail[pst]`)."
        ) from e
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if not pypff.check_file_signature(str(path)):
        raise UsageError(f"{path} is not a PST or OST file (its signature is missing)")
    pst = pypff.file()
    try:
        pst.set_ascii_codepage(codepage)
    except (OSError, ValueError) as e:
        raise UsageError(
            f"--codepage {codepage!r} is not a codepage libpff knows (for Korean use cp949)"
        ) from e
    try:
        pst.open(str(path))
    except OSError as e:
        detail = str(e).split(". ")[-1].strip() or str(e)
        raise UsageError(
            f"{path} cannot be opened as a PST ({detail}). Its index is damaged: repair a copy "
            "with Outlook's Inbox Repair Tool (scanpst.exe) and import the copy."
        ) from e
    return pst


class TargetDb:
    """DIR/<pst>.db: created with the archive schema, filled in committed batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
                raise UsageError(f"{path} exists and is not a fund_mail archive DB")
        self.known = {r[0] for r in self.conn.execute("SELECT email_id FROM fund_mail")}
        self.pending = 0
        self.conn.execute("BEGIN")

    def add(self, row: dict, attachments: list[dict]) -> None:
        insert_message(self.conn, row, attachments)
        self.known.add(row["email_id"])
        self.pending += 1
        if self.pending >= BATCH:
            self.commit()

    def commit(self) -> None:
        self.conn.execute("COMMIT")
        self.pending = 0
        self.conn.execute("BEGIN")

    def close(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()
        fsync_path(self.path)


class PstImporter:
    def __init__(self, pst: Any, pst_path: Path, target: Path, tz: ZoneInfo, codepage: str):
        self.pst = pst
        self.name = pst_path.stem
        self.target = target
        self.tz = tz
        self.codepage = codepage
        store = p.entries(pst.get_message_store())
        self.subtree_id = p.entry_node_id(_binary(store.get(p.PR_IPM_SUBTREE_ENTRYID)))
        self.sent_id = p.entry_node_id(_binary(store.get(p.PR_IPM_SENTMAIL_ENTRYID)))

    # -- walking ---------------------------------------------------------------------------
    def folders(self, report: ImportReport | None = None) -> Iterator[tuple[str, Any, bool]]:
        """(display path, folder, is Sent Items), paths relative to the mailbox's top folder.
        A folder that cannot be read is reported (when a report is given) and passed over."""

        def walk(folder: Any, path: str) -> Iterator[tuple[str, Any, bool]]:
            for index in range(_safe(lambda: folder.number_of_sub_folders) or 0):
                try:
                    child = folder.get_sub_folder(index)
                except OSError as e:
                    if report is not None:
                        report.problems.append(
                            Problem(
                                path or "(top)",
                                f"sub-folder {index + 1}",
                                f"unreadable, with everything in it: {e}".splitlines()[0][:200],
                            )
                        )
                    continue
                name = _safe(lambda c=child: c.name)
                if name is None and report is not None:
                    report.problems.append(
                        Problem(
                            path or "(top)",
                            f"folder {child.identifier}",
                            "its name is unreadable; its mail is filed under (folder <id>)",
                        )
                    )
                name = name or f"(folder {child.identifier})"
                child_path = (
                    ""
                    if child.identifier == self.subtree_id
                    else (f"{path}/{name}" if path else name)
                )
                yield child_path, child, child.identifier == self.sent_id
                yield from walk(child, child_path)

        yield from walk(self.pst.get_root_folder(), "")

    def total_items(self) -> int:
        return sum(_items_in(folder) for _, folder, _ in self.folders())

    def run(self, db: TargetDb, report: ImportReport, on_item: Callable[[], None]) -> None:
        for path, folder, is_sent in self.folders(report):
            tally = report.tally(path or "(top)")
            for index in range(_items_in(folder)):
                tally.seen += 1
                on_item()
                try:
                    item = folder.get_sub_message(index)
                    self._import_item(item, path, is_sent, db, tally, report)
                except (OSError, ValueError, sqlite3.DataError) as e:
                    tally.unreadable += 1
                    report.problems.append(
                        Problem(
                            path or "(top)",
                            f"item {index + 1}",
                            f"unreadable: {e}".splitlines()[0][:200],
                        )
                    )

    # -- one item --------------------------------------------------------------------------
    def _import_item(
        self,
        item: Any,
        path: str,
        is_sent: bool,
        db: TargetDb,
        tally: FolderTally,
        report: ImportReport,
    ) -> None:
        props = p.entries(item)
        kind = p.text(props, p.PR_MESSAGE_CLASS) or "(no message class)"
        if not kind.upper().startswith("IPM.NOTE"):
            tally.skipped[kind] += 1
            return
        email_id = str(item.identifier)
        if email_id in db.known:
            tally.already += 1
            tally.attachments_expected += _count_attachments(item)
            tally.attachments_written += _count_attachments(item)
            return
        moment = _first_time(item, props)
        notes: list[str] = []
        if moment is None:
            notes.append("no delivery, sent or creation time in the PST")
        day = (moment or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(self.tz)
        save_folder = f"attach/{day.strftime('%Y_%m_%d')}"
        attachments = self._save_attachments(
            item, email_id, save_folder, tally, notes, report, path, props
        )
        flags = p.number(props, p.PR_MESSAGE_FLAGS) or 0
        to, cc = _recipients(item)
        row = {
            "email_id": email_id,
            "subject": p.text(props, p.PR_SUBJECT) or _safe(lambda: item.subject) or "",
            "sender_address": p.smtp_or_address(p.text(props, p.PR_SENDER_SMTP, p.PR_SENDER_EMAIL)),
            "sender_name": p.text(props, p.PR_SENDER_NAME),
            "from_address": p.smtp_or_address(
                p.text(props, p.PR_SENT_REPRESENTING_SMTP, p.PR_SENT_REPRESENTING_EMAIL)
            ),
            "from_name": p.text(props, p.PR_SENT_REPRESENTING_NAME),
            "to_recipients": to,
            "cc_recipients": cc,
            "email_time": email_time(moment) if moment else "",
            "kst_time": local_time(moment, self.tz) if moment else "",
            "content": self._body(item, props),
            "msg_kind": "sent" if is_sent or flags & p.MSGFLAG_FROMME else "receive",
            "folder_path": path,
            "note": "; ".join(notes),
        }
        db.add(row, attachments)
        tally.written += 1

    def _body(self, item: Any, props: dict) -> str:
        """Plain text; failing that, the HTML; failing that, the RTF converted to text."""
        for attribute in ("plain_text_body", "html_body"):
            raw = _safe(lambda a=attribute: getattr(item, a))
            if raw:
                return _decode(raw, self.codepage, p.number(props, p.PR_INTERNET_CPID))
        rtf = _safe(lambda: item.rtf_body)
        if rtf:
            return rtf_to_text(_decode(rtf, self.codepage, None), self.codepage)
        return ""  # a mail may have no body at all

    def _save_attachments(
        self,
        item: Any,
        email_id: str,
        save_folder: str,
        tally: FolderTally,
        notes: list[str],
        report: ImportReport,
        path: str,
        props: dict,
    ) -> list[dict]:
        rows: list[dict] = []
        count = _count_attachments(item)
        tally.attachments_expected += count
        folder = self.target / save_folder
        subject = p.text(props, p.PR_SUBJECT) or email_id
        for index in range(count):
            try:
                attachment = item.get_attachment(index)
                a_props = p.entries(attachment)
                method = p.number(a_props, p.PR_ATTACH_METHOD)
                embedded = method == p.ATTACH_EMBEDDED_MSG
                name = (
                    _safe(lambda a=attachment: a.long_filename)
                    or p.text(
                        a_props, p.PR_ATTACH_LONG_FILENAME, p.PR_ATTACH_FILENAME, p.PR_DISPLAY_NAME
                    )
                    or ""
                )
                kind = ITEM_ATTACHMENT if embedded else FILE_ATTACHMENT
                phy = phy_file_name(f"{self.name}:{email_id}", str(index), name, kind)
                folder.mkdir(parents=True, exist_ok=True)
                if embedded:
                    size = self._write_embedded(attachment, folder / phy, notes, name)
                else:
                    size = _copy_attachment(attachment, folder / phy)
            except (OSError, ValueError) as e:
                reason = f"attachment {index + 1} could not be read: {e}".splitlines()[0][:200]
                notes.append(reason)
                report.problems.append(Problem(path or "(top)", subject, reason))
                continue
            rows.append(
                {
                    "save_folder": save_folder,
                    "org_file_name": name,
                    "phy_file_name": phy,
                    "file_size": size,
                }
            )
            tally.attachments_written += 1
        return rows

    def _write_embedded(self, attachment: Any, dest: Path, notes: list[str], name: str) -> int:
        """An attached message, saved as .eml from its own properties."""
        raw = attachment.read_buffer(attachment.size) if attachment.size else b""
        values = p.read_property_context(raw, self.codepage)

        def value(prop: int) -> Any:
            return values.get(prop, (0, None))[1]

        mail = email.message.EmailMessage()
        subject = p.strip_subject_prefix(value(p.PR_SUBJECT) or "")
        mail["Subject"] = subject
        sender = value(p.PR_SENT_REPRESENTING_EMAIL) or value(p.PR_SENDER_EMAIL) or ""
        sender_name = value(p.PR_SENT_REPRESENTING_NAME) or value(p.PR_SENDER_NAME) or ""
        if sender or sender_name:
            mail["From"] = email.utils.formataddr((sender_name, p.smtp_or_address(sender)))
        if value(p.PR_DISPLAY_TO):
            mail["To"] = value(p.PR_DISPLAY_TO)
        sent = value(p.PR_CLIENT_SUBMIT_TIME) or value(p.PR_MESSAGE_DELIVERY_TIME)
        if isinstance(sent, datetime):
            mail["Date"] = email.utils.format_datetime(sent)
        body = value(p.PR_BODY)
        if body is None:
            notes.append(
                f"embedded message {name or subject!r}: its body is stored where this "
                "reader cannot follow; saved with headers only"
            )
        mail.set_content(body or "")
        data = bytes(mail)
        _write_atomically(dest, [data])
        return len(data)


def _binary(entry: Any) -> bytes:
    try:
        return entry.data if entry is not None else b""
    except OSError:
        return b""


def _safe(read: Callable[[], Any]) -> Any:
    """libpff raises IOError for a damaged value; treat it as missing."""
    try:
        return read()
    except (OSError, ValueError, AttributeError):
        return None


def _items_in(folder: Any) -> int:
    return _safe(lambda: folder.number_of_sub_messages) or 0


def _count_attachments(item: Any) -> int:
    return _safe(lambda: item.number_of_attachments) or 0


def _first_time(item: Any, props: dict) -> datetime | None:
    for attribute in ("delivery_time", "client_submit_time", "creation_time"):
        moment = _safe(lambda a=attribute: getattr(item, a))
        if isinstance(moment, datetime) and moment.year > 1601:
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return None


def _decode(raw: bytes | str, codepage: str, internet_cpid: int | None) -> str:
    if isinstance(raw, str):
        return raw
    raw = raw.rstrip(b"\x00")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for candidate in (f"cp{internet_cpid}" if internet_cpid else None, codepage):
        if candidate:
            try:
                return raw.decode(candidate)
            except (UnicodeDecodeError, LookupError):
                continue
    return raw.decode(codepage, errors="replace")


def _recipients(item: Any) -> tuple[str, str]:
    """(to, cc) as comma-separated addresses, from the recipients table."""
    to: list[str] = []
    cc: list[str] = []
    table = _safe(lambda: item.recipients)
    if table is None:
        return "", ""
    for record_set in _safe(lambda: list(table.record_sets)) or []:
        props = {e.entry_type: e for e in record_set.entries}
        address = p.smtp_or_address(p.text(props, p.PR_SMTP_ADDRESS, p.PR_EMAIL_ADDRESS)) or p.text(
            props, p.PR_DISPLAY_NAME
        )
        kind = p.number(props, p.PR_RECIPIENT_TYPE)
        if address:
            (cc if kind == 2 else to if kind in (1, None) else []).append(address)
    return ", ".join(to), ", ".join(cc)


def _copy_attachment(attachment: Any, dest: Path) -> int:
    """Stream the attachment's bytes to dest in 1 MiB chunks."""
    size = attachment.size or 0

    def chunks() -> Iterator[bytes]:
        if size:
            attachment.seek_offset(0)
        remaining = size
        while remaining > 0:
            chunk = attachment.read_buffer(min(CHUNK, remaining))
            if not chunk:
                raise OSError(f"the attachment ended {remaining} bytes early")
            remaining -= len(chunk)
            yield chunk

    return _write_atomically(dest, chunks())


def _write_atomically(dest: Path, chunks: Any) -> int:
    written = 0
    with atomic_writer(dest) as out:
        for chunk in chunks:
            out.write(chunk)
            written += len(chunk)
    return written


def import_pst(
    pst_path: Path,
    target: Path,
    tz: ZoneInfo,
    codepage: str = "cp949",
    progress: Callable[[int], Callable[[], None]] | None = None,
) -> ImportReport:
    """Import (or resume importing) one PST into target/<pst name>.db."""
    pst = open_pst(pst_path, codepage)
    try:
        target.mkdir(parents=True, exist_ok=True)
        db_path = target / f"{pst_path.stem}.db"
        with RunLock(target / f".{pst_path.stem}.import.lock", "fund_mail_pst"):
            importer = PstImporter(pst, pst_path, target, tz, codepage)
            on_item = progress(importer.total_items()) if progress else (lambda: None)
            report = ImportReport(db_path)
            db = TargetDb(db_path)
            try:
                importer.run(db, report, on_item)
            finally:
                db.close()
            return report
    finally:
        pst.close()
