"""fund_mail_pst: import a PST backup into the pst-utils schema, message by message.

- One DB per PST, DIR/<pst name>.db, with exactly the schema of the live archive; attachments
  under DIR/attach/yyyy_mm_dd/ (the message's day in TIMEZONE), named like live attachments.
- Faithful to the live path: the same item classes (mail, meeting requests, receipts, NDRs; no
  drafts), SMTP addresses for Exchange senders, sent detection without the store's ids, true
  dates. The decisions are the pure rules of pst/rules.py; the row's note names each one that
  is not the obvious one.
- Streaming: items are read one at a time and committed in batches, so memory stays flat.
- Resumable: email_id is the PST node id; a second run skips what the DB already holds.
- Reconciled (pst/report.py): every item or part that could not be read is listed, and noted on
  its row.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fund_mail.archive.fsutil import RunLock, atomic_writer
from fund_mail.archive.rows import (
    FILE_ATTACHMENT,
    ITEM_ATTACHMENT,
    AttachRow,
    MailRow,
    email_time,
    local_time,
    phy_file_name,
)
from fund_mail.archive.store import ResumableDb
from fund_mail.errors import UsageError
from fund_mail.pst import props as p
from fund_mail.pst import rules
from fund_mail.pst.eml import build_eml
from fund_mail.pst.ndb import NdbError, PstFile, read_embedded
from fund_mail.pst.report import FolderTally, ImportReport, Problem
from fund_mail.pst.rtf import rtf_to_text

log = logging.getLogger(__name__)

BATCH = 200
CHUNK = 1024 * 1024
OST_REFUSED = (
    "{path} is an OST (an Outlook offline cache), which fund_mail_pst does not import: its "
    "folders and senders follow the server, not a backup. Export a PST instead: in Outlook, "
    "File > Open & Export > Import/Export > Export to a file > Outlook Data File (.pst)."
)


def check_not_ost(path: Path) -> None:
    """Refuse an OST before libpff opens it ([MS-PST] 2.2.2.6: wMagicClient "SO")."""
    try:
        with open(path, "rb") as f:
            head = f.read(10)
    except OSError as e:
        raise UsageError(f"{path}: cannot be read ({e.strerror})") from e
    if head[:4] == b"!BDN" and head[8:10] == b"SO":
        raise UsageError(OST_REFUSED.format(path=path))


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
    check_not_ost(path)
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


class PstImporter:
    def __init__(self, pst: Any, pst_path: Path, target: Path, tz: ZoneInfo, codepage: str):
        self.pst = pst
        self.pst_path = pst_path
        self.name = pst_path.stem
        self.target = target
        self.tz = tz
        self.codepage = codepage
        self._ndb: PstFile | None = None
        store = p.entries(pst.get_message_store())
        self.subtree_id = p.entry_node_id(_binary(store.get(p.PR_IPM_SUBTREE_ENTRYID)))
        self.sent_id = p.entry_node_id(_binary(store.get(p.PR_IPM_SENTMAIL_ENTRYID)))
        self.top_id, self.top_rule = self._find_top()
        self.owners: set[str] = set()
        self.directory: dict[str, str] = {}  # EX DN (upper case) -> SMTP, from Sent recipients
        named = p.named_property_ids(pst)
        self.account_prop = named.get((p.PSETID_COMMON, p.LID_INTERNET_ACCOUNT_NAME))

    def close(self) -> None:
        if self._ndb is not None:
            self._ndb.close()

    @property
    def ndb(self) -> PstFile:
        if self._ndb is None:
            self._ndb = PstFile(self.pst_path)
        return self._ndb

    # -- walking ---------------------------------------------------------------------------
    def _find_top(self) -> tuple[int | None, str]:
        root = self.pst.get_root_folder()
        children = list(_sub_folders(root))
        infos = [_info(c) for c in children]
        grandchildren = {c.identifier: [_info(g) for g in _sub_folders(c)] for c in children}
        return rules.mailbox_top(infos, self.subtree_id, grandchildren)

    def folders(self, report: ImportReport | None = None) -> Iterator[tuple[str, Any, bool]]:
        """(display path, folder, is the store's Sent Items), paths relative to the mailbox's top
        folder. A folder that cannot be read is reported (when a report is given) and passed
        over."""

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
                    "" if child.identifier == self.top_id else (f"{path}/{name}" if path else name)
                )
                yield child_path, child, child.identifier == self.sent_id
                yield from walk(child, child_path)

        yield from walk(self.pst.get_root_folder(), "")

    def total_items(self) -> int:
        return sum(_items_in(folder) for _, folder, _ in self.folders())

    def learn_owner(self) -> str | None:
        """The store owner: the most frequent sender of the sent-like folders. On the way, the
        Exchange DN to SMTP pairs of their recipients, and of their senders with the account
        that sent them (PidLidInternetAccountName), for senders with no SMTP property."""
        senders: list[str] = []
        pairs: list[tuple[str, str]] = []
        for path, folder, is_sent in self.folders():
            if not (is_sent or rules.is_sent_folder_name(path)):
                continue
            for index in range(_items_in(folder)):
                item = _safe(lambda f=folder, i=index: f.get_sub_message(i))
                props = p.entries(item)
                sender = self._addresses(props)[0].address
                account = self._account(props)
                pairs.append((sender, account))
                senders.append(account if account and not rules.is_smtp(sender) else sender)
                for props in _recipient_props(item):
                    pairs.append(
                        (p.text(props, p.PR_EMAIL_ADDRESS), p.text(props, p.PR_SMTP_ADDRESS))
                    )
        self.directory = rules.directory_pairs(pairs)
        owner = rules.store_owner(senders)
        if owner:
            self.owners.add(owner)
        return owner

    def run(self, db: ResumableDb, report: ImportReport, on_item: Callable[[], None]) -> None:
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
    def _account(self, props: dict) -> str:
        """The SMTP address of the account the mail belongs to (PidLidInternetAccountName)."""
        account = p.text(props, self.account_prop) if self.account_prop else ""
        return account if rules.is_smtp(account) else ""

    def _addresses(self, props: dict) -> tuple[rules.Resolved, rules.Resolved, dict[str, str]]:
        """(sender, from, the send accounts' DN to SMTP pairs) of a message."""
        headers = p.text(props, p.PR_TRANSPORT_HEADERS)
        accounts = rules.send_account_pairs(
            [p.text(props, p.PR_PRIMARY_SEND_ACCOUNT), p.text(props, p.PR_NEXT_SEND_ACCT)]
        )
        sender = rules.resolve_address(
            "sender",
            smtp=[p.text(props, p.PR_SENDER_SMTP)],
            address=p.text(props, p.PR_SENDER_EMAIL),
            name=p.text(props, p.PR_SENDER_NAME),
            accounts=accounts,
            headers=rules.header_addresses(headers, "Sender", "From"),
            directory=self.directory,
        )
        author = rules.resolve_address(
            "from",
            smtp=[p.text(props, p.PR_SENT_REPRESENTING_SMTP)],
            address=p.text(props, p.PR_SENT_REPRESENTING_EMAIL),
            name=p.text(props, p.PR_SENT_REPRESENTING_NAME),
            accounts=accounts,
            headers=rules.header_addresses(headers, "From"),
            directory=self.directory,
        )
        if not author.address:  # no separate author: the sender wrote it, as Graph's `from`
            author = sender
        return sender, author, accounts

    def _import_item(
        self,
        item: Any,
        path: str,
        is_sent: bool,
        db: ResumableDb,
        tally: FolderTally,
        report: ImportReport,
    ) -> None:
        props = p.entries(item)
        kind = p.text(props, p.PR_MESSAGE_CLASS)
        flags = p.number(props, p.PR_MESSAGE_FLAGS) or 0
        left_out = rules.classify(kind, flags)
        if left_out:
            tally.skipped[left_out] += 1
            return
        email_id = str(item.identifier)
        if email_id in db.known:
            tally.already += 1
            tally.attachments_expected += _count_attachments(item)
            tally.attachments_written += _count_attachments(item)
            return
        headers = p.text(props, p.PR_TRANSPORT_HEADERS)
        moment, date_note = rules.choose_time(
            p.moment(props, p.PR_MESSAGE_DELIVERY_TIME),
            p.moment(props, p.PR_CLIENT_SUBMIT_TIME),
            rules.header_date(headers),
            p.moment(props, p.PR_CREATION_TIME),
        )
        sender, author, accounts = self._addresses(props)
        sent = rules.sent_rule(
            in_sent_folder_by_id=is_sent,
            flags=flags,
            folder_path=path,
            sender=sender.address or author.address,
            owners=self.owners | set(accounts.values()) | {self._account(props)},
        )
        to, cc, recipient_notes = _recipients(item, headers, self.directory)
        notes = [n for n in (sent, date_note, sender.note, author.note) if n] + recipient_notes
        day = (moment or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(self.tz)
        save_folder = f"attach/{day.strftime('%Y_%m_%d')}"
        attachments = self._save_attachments(
            item, email_id, save_folder, tally, notes, report, path, props
        )
        row = MailRow(
            email_id=email_id,
            subject=p.text(props, p.PR_SUBJECT) or _safe(lambda: item.subject) or "",
            sender_address=sender.address,
            sender_name=p.text(props, p.PR_SENDER_NAME),
            from_address=author.address,
            from_name=p.text(props, p.PR_SENT_REPRESENTING_NAME),
            to_recipients=to,
            cc_recipients=cc,
            email_time=email_time(moment) if moment else "",
            kst_time=local_time(moment, self.tz) if moment else "",
            content=self._body(item, props),
            msg_kind="sent" if sent else "receive",
            folder_path=path,
            note="; ".join(notes),
        )
        db.add(row, attachments)
        tally.written += 1
        tally.archived[kind] += 1

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
    ) -> list[AttachRow]:
        rows: list[AttachRow] = []
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
                    size, unread = self._write_embedded(item, attachment, folder / phy)
                    for part in unread:
                        reason = f"embedded message {name!r}: {part}"
                        notes.append(reason)
                        report.problems.append(Problem(path or "(top)", subject, reason))
                else:
                    size = _copy_attachment(attachment, folder / phy)
            except (OSError, ValueError, struct.error) as e:
                reason = f"attachment {index + 1} could not be read: {e}".splitlines()[0][:200]
                notes.append(reason)
                report.problems.append(Problem(path or "(top)", subject, reason))
                continue
            rows.append(AttachRow(save_folder, name, phy, size))
            tally.attachments_written += 1
        return rows

    def _write_embedded(self, item: Any, attachment: Any, dest: Path) -> tuple[int, list[str]]:
        """An attached message as a real .eml, with its own attachments, recursively.
        Returns (bytes written, the parts that could not be read)."""
        try:
            message = read_embedded(self.ndb, item.identifier, attachment.identifier, self.codepage)
        except NdbError as e:
            raise ValueError(f"the embedded message could not be read: {e}") from e
        mail, unread = build_eml(message)
        data = bytes(mail)
        _write_atomically(dest, [data])
        return len(data), unread


def _sub_folders(folder: Any) -> Iterator[Any]:
    for index in range(_safe(lambda: folder.number_of_sub_folders) or 0):
        child = _safe(lambda i=index: folder.get_sub_folder(i))
        if child is not None:
            yield child


def _info(folder: Any) -> rules.FolderInfo:
    return rules.FolderInfo(
        folder.identifier,
        _safe(lambda: folder.name) or "",
        _safe(lambda: folder.number_of_sub_folders) or 0,
    )


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


def _recipient_props(item: Any) -> Iterator[dict[int, Any]]:
    """{property id: entry} of each row of a message's recipients table."""
    table = _safe(lambda: item.recipients)
    for record_set in (_safe(lambda: list(table.record_sets)) if table else None) or []:
        yield {e.entry_type: e for e in record_set.entries}


def _recipients(item: Any, headers: str, directory: dict[str, str]) -> tuple[str, str, list[str]]:
    """(to, cc, notes): comma-separated SMTP addresses from the recipients table."""
    to: list[str] = []
    cc: list[str] = []
    notes: list[str] = []
    header_to = rules.header_addresses(headers, "To")
    header_cc = rules.header_addresses(headers, "Cc")
    for props in _recipient_props(item):
        kind = p.number(props, p.PR_RECIPIENT_TYPE)
        if kind not in (1, 2, None):
            continue  # Bcc and other kinds are not in the live columns either
        found = rules.resolve_address(
            "recipient",
            smtp=[p.text(props, p.PR_SMTP_ADDRESS)],
            address=p.text(props, p.PR_EMAIL_ADDRESS),
            name=p.text(props, p.PR_DISPLAY_NAME),
            accounts={},
            headers=header_cc if kind == 2 else header_to,
            directory=directory,
        )
        address = found.address or p.text(props, p.PR_DISPLAY_NAME)
        if found.note and found.note not in notes:
            notes.append(found.note)
        if address:
            (cc if kind == 2 else to).append(address)
    return ", ".join(to), ", ".join(cc), notes


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
            try:
                report = ImportReport(db_path)
                owner = importer.learn_owner()
                report.notes.append(f"Mailbox top: {importer.top_rule}.")
                report.notes.append(
                    f"Store owner: {owner} (most frequent sender of the Sent folders)."
                    if owner
                    else "Store owner: unknown (no sender in a Sent folder)."
                )
                on_item = progress(importer.total_items()) if progress else (lambda: None)
                db = ResumableDb(db_path, BATCH)
                try:
                    importer.run(db, report, on_item)
                finally:
                    db.close()
                return report
            finally:
                importer.close()
    finally:
        pst.close()
