"""Graph message dicts to pst-utils rows. Pure: no network, no disk, no clock."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
ITEM_ATTACHMENT = "#microsoft.graph.itemAttachment"
REFERENCE_ATTACHMENT = "#microsoft.graph.referenceAttachment"

# KEEP_MIME: the message's original MIME is kept as one more fund_mail_attach row, marked by
# this org_file_name, under a phy_file_name derived like an attachment's from this id.
SOURCE_MESSAGE_NAME = "(original message).eml"
SOURCE_MESSAGE_ID = "(original message)"

WINDOWS_RESERVED = {
    "CON", "PRN", "AUX", "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}  # fmt: skip


def parse_graph_time(value: str) -> datetime:
    """'2025-06-30T04:47:45Z' (or with a fraction or offset) to an aware UTC datetime."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _seconds(moment: datetime, sep: str) -> str:
    # The date and the time to the second, as isoformat writes them. Runs twice for every
    # message: strftime is several times dearer, and an aware datetime's own isoformat also
    # formats its offset, which would be cut off again; date() and time() carry no zone.
    return f"{moment.date()}{sep}{moment.time().isoformat('seconds')}"


def graph_time(moment: datetime) -> str:
    """The form Graph's $filter takes: UTC, whole seconds, Z."""
    return _seconds(moment.astimezone(UTC), "T") + "Z"


def email_time(moment: datetime) -> str:
    """UTC as 'YYYY-MM-DD HH:MM:SS', with '.ffffff' only when the fraction is not zero."""
    moment = moment.astimezone(UTC)
    text = _seconds(moment, " ")
    return f"{text}.{moment.microsecond:06d}" if moment.microsecond else text


def local_time(moment: datetime, tz: ZoneInfo) -> str:
    return _seconds(moment.astimezone(tz), " ")


def received_time(message: dict) -> datetime | None:
    """A message's receivedDateTime, None when it is missing or not a usable time."""
    value = message.get("receivedDateTime")
    if not isinstance(value, str):
        return None
    try:
        return parse_graph_time(value)
    except (ValueError, OverflowError):
        return None


def received_text(row: MailRow) -> str:
    """The index's received_utc of a row: receivedDateTime in graph_time form, '' when it is
    missing. Read off the row's email_time (UTC, to the second first), so that a day of mail
    parses each receivedDateTime once."""
    text = row.email_time
    return f"{text[:10]}T{text[11:19]}Z" if text else ""


def unstorable_reason(message: Any) -> str | None:
    """Why a listed item cannot become a row at all (no id to store or de-duplicate by)."""
    if not isinstance(message, dict):
        return f"not a JSON object but {type(message).__name__}"
    if not isinstance(message.get("id"), str) or not message["id"]:
        return "it has no id"
    attachments = message.get("attachments")
    if attachments is not None and not (
        isinstance(attachments, list)
        and all(isinstance(a, dict) and isinstance(a.get("id"), str) for a in attachments)
    ):
        return "its attachments list is malformed"
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _address(recipient: Any) -> tuple[str, str]:
    email = recipient.get("emailAddress") if isinstance(recipient, dict) else None
    if not isinstance(email, dict):
        return ("", "")
    return (_text(email.get("address")), _text(email.get("name")))


def _addresses(recipients: Any) -> str:
    if not recipients or not isinstance(recipients, list):
        return ""
    return ", ".join(a for a, _ in map(_address, recipients) if a)


def _missing(
    from_address: str, sender_address: str, received: datetime | None, subject: Any, content: Any
) -> list[str]:
    """The fields a well-formed message has that this one lacks (null, absent or malformed)."""
    if from_address and sender_address and received and type(subject) is type(content) is str:
        return []  # the usual case, checked without building the list below
    checks = (
        ("from", from_address),
        ("sender", sender_address),
        ("receivedDateTime", received),
        ("subject", isinstance(subject, str)),
        ("body", isinstance(content, str)),
    )
    return [name for name, present in checks if not present]


def is_sent(
    message: dict, mailbox: str, sent_folder_id: str | None, authors: tuple[str, ...] = ()
) -> bool:
    """Sent when it sits in Sent Items or the mailbox itself is the author.

    authors: the from and sender addresses when the caller has them already."""
    if sent_folder_id and message.get("parentFolderId") == sent_folder_id:
        return True
    mailbox = mailbox.lower()
    authors = authors or tuple(_address(message.get(k))[0] for k in ("from", "sender"))
    return any(a.lower() == mailbox for a in authors)


def attachment_note(attachment: dict) -> str:
    """What the note column says about an attachment that has no file."""
    name = attachment.get("name") or "(no name)"
    return f"link-only attachment (not downloadable): {name}"


class MailRow(NamedTuple):
    """One row of fund_mail (without its id), as Graph, IMAP and PST imports all produce it.

    A named tuple, not a dataclass: a day of mail builds thousands of them, and a tuple is built
    in one C call and is itself the column values, in MAIL_COLUMNS order, that an INSERT takes."""

    email_id: str
    subject: str
    sender_address: str
    sender_name: str
    from_address: str
    from_name: str
    to_recipients: str
    cc_recipients: str
    email_time: str
    kst_time: str
    content: str
    msg_kind: str  # "sent" or "receive"
    folder_path: str
    note: str


class AttachRow(NamedTuple):
    """One row of fund_mail_attach (without its ids): where the file is and what it was."""

    save_folder: str
    org_file_name: str
    phy_file_name: str
    file_size: int


MAIL_COLUMNS = MailRow._fields
ATTACH_COLUMNS = ("parent_id", "email_id", *AttachRow._fields)


def message_row(
    message: dict[str, Any],
    *,
    folder_path: str,
    mailbox: str,
    sent_folder_id: str | None,
    tz: ZoneInfo,
    notes: Sequence[str] = (),
) -> MailRow:
    """One fund_mail row (without id) from a Graph message dict.

    A field that is null, absent or malformed is stored empty and named in the note, so one odd
    message never blocks the mailbox (only a message without an id cannot be stored).
    """
    received = received_time(message)
    sender_address, sender_name = _address(message.get("sender"))
    from_address, from_name = _address(message.get("from"))
    subject = message.get("subject")
    body = message.get("body")
    content = body.get("content") if isinstance(body, dict) else None
    missing = _missing(from_address, sender_address, received, subject, content)
    if missing:
        notes = [*notes, f"missing in Graph's answer: {', '.join(missing)}"]
    sent = is_sent(message, mailbox, sent_folder_id, (from_address, sender_address))
    # Positional, in MAIL_COLUMNS order: a named tuple's keywords are matched one by one in
    # Python, which cost a 5,000-message day about 4% of its row-writing instructions.
    return MailRow(
        message["id"],  # email_id
        _text(subject),  # subject
        sender_address,
        sender_name,
        from_address,
        from_name,
        _addresses(message.get("toRecipients")),  # to_recipients
        _addresses(message.get("ccRecipients")),  # cc_recipients
        email_time(received) if received else "",  # email_time
        local_time(received, tz) if received else "",  # kst_time
        _text(content),  # content
        "sent" if sent else "receive",  # msg_kind
        folder_path,
        "; ".join(notes),  # note
    )


def safe_extension(name: str, attachment_type: str) -> str:
    """A short, Windows-safe extension: '.eml' for an attached message, else the original's."""
    if attachment_type == ITEM_ATTACHMENT:
        return ".eml"
    stem, dot, ext = (name or "").rpartition(".")
    if not dot or not stem.strip():
        return ""
    ext = unicodedata.normalize("NFKC", ext).lower()
    return f".{ext}" if re.fullmatch(r"[a-z0-9]{1,10}", ext) else ""


def phy_file_name(email_id: str, attachment_id: str, name: str, attachment_type: str) -> str:
    """The file name on disk: a hash of the message and attachment ids plus a safe extension.

    Deterministic (a re-run overwrites the same file instead of making a copy), collision-free in
    practice (80 bits), short, and made of [0-9a-f.] so no Windows rule can trip on it.
    """
    digest = hashlib.sha256(f"{email_id}\x00{attachment_id}".encode()).hexdigest()[:20]
    return f"{digest}{safe_extension(name, attachment_type)}"


def is_windows_safe(file_name: str) -> bool:
    """True when a name is usable on Windows (used by tests and the PST importer's checks)."""
    if not file_name or len(file_name) > 255 or file_name.endswith((" ", ".")):
        return False
    if re.search(r'[<>:"/\\|?*\x00-\x1f]', file_name):
        return False
    return file_name.split(".")[0].upper() not in WINDOWS_RESERVED


def parse_datetime_arg(value: str, tz: ZoneInfo) -> datetime:
    """A command-line date or date-time; a naive value is read in TIMEZONE."""
    parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def source_message_file_name(email_id: str) -> str:
    """The phy_file_name of a message's original MIME (KEEP_MIME=1), always `<hash>.eml`."""
    return phy_file_name(email_id, SOURCE_MESSAGE_ID, SOURCE_MESSAGE_NAME, ITEM_ATTACHMENT)
