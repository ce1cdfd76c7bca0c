"""RFC 822 bytes to the message shape archive/rows.py reads. Pure: no network, no disk.

A fetched message is turned into the dict Graph would have returned for it (subject, sender,
from, recipients, receivedDateTime, body, parentFolderId), so archive/rows.message_row stays
the one rule for a row. Attachments come from the MIME with the standard library's `email`:
every leaf part that is not the body, inline images included (Graph lists those as file
attachments too), and an attached `message/rfc822` as an `.eml`, as Graph's item attachments are.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import cast

from fund_mail.archive.rows import FILE_ATTACHMENT, ITEM_ATTACHMENT, phy_file_name

# Tried in order for 8-bit header bytes that name no charset: UTF-8, then the charset of the
# message's own body, then cp949 (a superset of EUC-KR, what Korean mail clients send).
FALLBACK_CHARSETS = ("utf-8", "cp949")
BODY_TYPES = {"html": ("html", "plain"), "text": ("plain", "html")}


@dataclass
class MimeAttachment:
    part_id: str  # the part's position in the MIME tree, e.g. "2.1": stable for the same bytes
    name: str
    content: bytes
    kind: str  # FILE_ATTACHMENT or ITEM_ATTACHMENT, as Graph's @odata.type

    def phy_file_name(self, email_id: str) -> str:
        return phy_file_name(email_id, self.part_id, self.name, self.kind)


@dataclass
class ParsedMessage:
    message: dict  # the Graph-shaped dict archive/rows.message_row takes
    attachments: list[MimeAttachment]
    notes: list[str]


def parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(raw)


def _has_raw_bytes(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def _decode_bytes(data: bytes, charsets: tuple[str, ...]) -> str:
    for charset in charsets:
        try:
            return data.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("latin-1")


def _charsets(msg: Message) -> tuple[str, ...]:
    own = [c for c in msg.get_charsets() if c]
    return tuple(dict.fromkeys([FALLBACK_CHARSETS[0], *own, *FALLBACK_CHARSETS[1:]]))


def _unfold_encoded_words(text: str) -> str:
    """RFC 2047 encoded words (any charset Python knows, ks_c_5601-1987 included) to text."""
    try:
        return str(make_header(decode_header(text)))
    except (UnicodeDecodeError, LookupError, ValueError):
        return text


def header_text(msg: Message, name: str) -> str:
    """A header's text, whether it is 8-bit (raw EUC-KR or UTF-8) or RFC 2047 encoded."""
    raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    if raw is None:
        return ""
    if _has_raw_bytes(raw):
        raw = _decode_bytes(raw.encode("ascii", "surrogateescape"), _charsets(msg))
    text = " ".join(line.strip() for line in raw.splitlines())
    return _unfold_encoded_words(text).strip()


def _recipients(msg: Message, name: str) -> list[dict]:
    text = header_text(msg, name)
    return [
        {"emailAddress": {"address": address, "name": _unfold_encoded_words(display)}}
        for display, address in getaddresses([text])
        if address
    ]


def header_date(msg: Message) -> datetime | None:
    """The Date header in UTC, or None when it is missing or unreadable."""
    try:
        moment = parsedate_to_datetime(header_text(msg, "Date"))
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def message_id(msg: Message) -> str:
    return header_text(msg, "Message-ID")


def fingerprint(msg_id: str, date: datetime | None, size: int) -> str:
    """Message-ID + date + size: how a message is recognised again under new IMAP UIDs."""
    when = date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if date else ""
    text = f"{msg_id.strip().lower()}\x00{when}\x00{size}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _text_of(part: Message) -> str:
    payload = cast(bytes, part.get_payload(decode=True) or b"")
    charset = part.get_content_charset() or ""
    return _decode_bytes(payload, tuple(c for c in (charset, *FALLBACK_CHARSETS) if c))


def _body(msg: EmailMessage, body_type: str) -> tuple[Message | None, str, str]:
    """The body part, its text, and Graph's contentType for it (html or text)."""
    part = msg.get_body(preferencelist=BODY_TYPES[body_type])
    if part is None:
        return None, "", body_type
    kind = "html" if part.get_content_subtype() == "html" else "text"
    return part, _text_of(part), kind


def _part_name(part: Message, part_id: str) -> str:
    name = part.get_filename()
    if name:
        if _has_raw_bytes(name):
            name = _decode_bytes(name.encode("ascii", "surrogateescape"), FALLBACK_CHARSETS)
        return _unfold_encoded_words(name)
    extension = mimetypes.guess_extension(part.get_content_type()) or ""
    return f"part-{part_id}{extension}"


def _is_body_text(part: Message) -> bool:
    return (
        part.get_content_type() in ("text/plain", "text/html")
        and part.get_content_disposition() != "attachment"
        and not part.get_filename()
    )


def attachments(msg: Message, body: Message | None) -> list[MimeAttachment]:
    """Every part but the body: files, inline images, and attached messages as .eml."""
    found: list[MimeAttachment] = []

    def walk(part: Message, part_id: str) -> None:
        if part.get_content_type() == "message/rfc822" and part is not msg:
            inner = cast(Message, part.get_payload(0)) if part.is_multipart() else None
            content = inner.as_bytes(policy=policy.compat32) if inner is not None else b""
            name = header_text(inner, "Subject") if inner is not None else ""
            found.append(MimeAttachment(part_id, name or "(no subject)", content, ITEM_ATTACHMENT))
            return
        if part.is_multipart():
            for number, child in enumerate(cast(list[Message], part.get_payload()), start=1):
                walk(child, f"{part_id}.{number}" if part_id else str(number))
            return
        if part is body or _is_body_text(part):
            return
        content = cast(bytes, part.get_payload(decode=True) or b"")
        found.append(MimeAttachment(part_id, _part_name(part, part_id), content, FILE_ATTACHMENT))

    walk(msg, "")
    return found


def graph_shape(
    raw: bytes,
    *,
    email_id: str,
    folder: str,
    received: datetime,
    body_type: str = "html",
) -> ParsedMessage:
    """A fetched message as the dict archive/rows.message_row reads, with its attachments."""
    msg = parse(raw)
    body_part, content, content_type = _body(msg, body_type)
    from_ = _recipients(msg, "From")
    sender = _recipients(msg, "Sender") or from_
    notes = []
    if msg.defects:
        notes.append(f"MIME defects: {', '.join(type(d).__name__ for d in msg.defects[:3])}")
    message = {
        "id": email_id,
        "subject": header_text(msg, "Subject"),
        "sender": sender[0] if sender else None,
        "from": from_[0] if from_ else None,
        "toRecipients": _recipients(msg, "To"),
        "ccRecipients": _recipients(msg, "Cc"),
        "receivedDateTime": received.astimezone(UTC).isoformat(),
        "body": {"contentType": content_type, "content": content},
        "parentFolderId": folder,
        "internetMessageId": message_id(msg),
    }
    return ParsedMessage(message, attachments(msg, body_part), notes)
