"""The emulated mailbox: folders, messages and attachments, and how Graph renders them."""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

FILE = "#microsoft.graph.fileAttachment"
ITEM = "#microsoft.graph.itemAttachment"
REFERENCE = "#microsoft.graph.referenceAttachment"

MESSAGE_PROPERTIES = {
    "id", "subject", "sender", "from", "toRecipients", "ccRecipients", "bccRecipients",
    "receivedDateTime", "sentDateTime", "body", "bodyPreview", "parentFolderId", "isDraft",
    "internetMessageId", "hasAttachments", "importance", "isRead", "conversationId",
    "createdDateTime", "lastModifiedDateTime", "replyTo", "webLink", "changeKey", "categories",
}  # fmt: skip
ATTACHMENT_PROPERTIES = {"id", "name", "contentType", "size", "isInline", "lastModifiedDateTime"}

WELL_KNOWN = {
    "msgfolderroot": "Top of Information Store",
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "drafts": "Drafts",
    "junkemail": "Junk Email",
    "archive": "Archive",
}


def graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def opaque_id(*parts: object) -> str:
    """An id shaped like Graph's: long, url-safe base64, case-sensitive."""
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return "AAMkAD" + base64.urlsafe_b64encode(digest + digest[:12]).decode().rstrip("=") + "AAA="


def html_to_text(markup: str) -> str:
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", markup)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


@dataclass
class Folder:
    id: str
    display_name: str
    parent_id: str | None
    well_known: str = ""

    def render(self, mailbox: Mailbox) -> dict:
        children = [f for f in mailbox.folders.values() if f.parent_id == self.id]
        return {
            "id": self.id,
            "displayName": self.display_name,
            "parentFolderId": self.parent_id or opaque_id("root-of-store"),
            "childFolderCount": len(children),
            "unreadItemCount": 0,
            "totalItemCount": sum(1 for m in mailbox.visible() if m.folder_id == self.id),
            "isHidden": False,
        }


@dataclass
class Attachment:
    id: str
    name: str | None
    kind: str  # FILE, ITEM or REFERENCE
    content_type: str | None = "application/octet-stream"
    content: bytes = b""
    synthetic_size: int = 0  # > 0: content is generated on the fly (large-file tests)
    is_inline: bool = False
    source_url: str = ""  # reference attachments
    item: Message | None = None  # item attachments

    @property
    def byte_size(self) -> int:
        return self.synthetic_size or len(self.content)

    def chunks(self, size: int = 1 << 20):
        """The $value bytes, in chunks (never materialised whole for synthetic content)."""
        if self.kind == ITEM and self.item is not None:
            yield self.item.mime()
            return
        if not self.synthetic_size:
            yield self.content
            return
        block = hashlib.sha256(self.id.encode()).digest() * (size // 32)
        remaining = self.synthetic_size
        while remaining > 0:
            yield block[: min(remaining, len(block))]
            remaining -= len(block)

    def value_length(self) -> int:
        if self.kind == ITEM and self.item is not None:
            return len(self.item.mime())
        return self.byte_size

    def render(self, select: set[str] | None) -> dict:
        full = {
            "@odata.type": self.kind,
            "id": self.id,
            "name": self.name,
            "contentType": self.content_type,
            "size": self.byte_size + 200,  # Graph's size counts the whole attachment object
            "isInline": self.is_inline,
            "lastModifiedDateTime": "2025-01-01T00:00:00Z",
        }
        if self.kind == FILE and select is None:
            full["contentBytes"] = base64.b64encode(b"".join(self.chunks())).decode()
        if self.kind == REFERENCE and select is None:
            full["sourceUrl"] = self.source_url
        if select is None:
            return full
        return {k: v for k, v in full.items() if k in select or k in ("@odata.type", "id")}


@dataclass
class Message:
    immutable_id: str
    folder_id: str
    received: datetime
    subject: str | None = "(no subject)"
    from_: tuple[str, str] | None = ("Sender", "sender@example.com")
    sender: tuple[str, str] | None = None
    to: list[tuple[str, str]] = field(default_factory=list)
    cc: list[tuple[str, str]] = field(default_factory=list)
    body_html: str = "<html><body><p>Hello</p></body></html>"
    is_draft: bool = False
    attachments: list[Attachment] = field(default_factory=list)
    moves: int = 0
    visible: bool = True
    sent: datetime | None = None
    # Malformed items as a broken server might send them: field -> value as rendered
    # (None renders null, Ellipsis leaves the field out).
    broken: dict = field(default_factory=dict)
    # Rendered JSON by request shape and message state: a list page re-renders nothing that
    # has not changed, so the emulator's own time stays inside the latency it injects.
    _rendered: dict = field(default_factory=dict, repr=False, compare=False)

    def render_json(
        self,
        immutable: bool,
        select: set[str] | None,
        body_type: str,
        expand: set[str] | None,
        list_references: bool = True,
    ) -> str:
        """json.dumps(render(...)), from the cache when neither the request shape nor the
        message (any field a test may change) has changed since."""
        state = (
            self.folder_id, self.received, self.subject, self.from_, self.sender,
            tuple(self.to), tuple(self.cc), self.body_html, self.is_draft, self.moves,
            self.sent,
            tuple((a.id, a.name, a.kind, a.byte_size, a.is_inline) for a in self.attachments),
            dict(self.broken),
        )  # fmt: skip
        key = (
            immutable,
            None if select is None else frozenset(select),
            body_type,
            None if expand is None else frozenset(expand),
            list_references,
        )
        cached = self._rendered.get(key)
        if cached is None or cached[0] != state:
            text = json.dumps(
                self.render(immutable, select, body_type, expand, list_references),
                ensure_ascii=False,
            )
            cached = self._rendered[key] = (state, text)
        return cached[1]

    def rest_id(self, immutable: bool) -> str:
        # Without Prefer: IdType="ImmutableId", an id changes whenever the message moves.
        if immutable:
            return self.immutable_id
        return opaque_id("rest", self.immutable_id, self.folder_id, self.moves)

    def render(
        self,
        immutable: bool,
        select: set[str] | None,
        body_type: str,
        expand: set[str] | None,
        list_references: bool = True,
    ) -> dict:
        def person(pair: tuple[str, str] | None) -> dict | None:
            return {"emailAddress": {"name": pair[0], "address": pair[1]}} if pair else None

        content = self.body_html if body_type == "html" else html_to_text(self.body_html)
        full = {
            "@odata.etag": f'W/"{opaque_id("etag", self.immutable_id)[:24]}"',
            "id": self.rest_id(immutable),
            "createdDateTime": graph_time(self.received),
            "lastModifiedDateTime": graph_time(self.received),
            "changeKey": opaque_id("ck", self.immutable_id)[:24],
            "categories": [],
            "receivedDateTime": graph_time(self.received),
            "sentDateTime": graph_time(self.sent or self.received - timedelta(seconds=2)),
            "hasAttachments": any(not a.is_inline for a in self.attachments),
            "internetMessageId": f"<{self.immutable_id[6:20]}@example.com>",
            "subject": self.subject,
            "bodyPreview": html_to_text(self.body_html)[:255],
            "importance": "normal",
            "parentFolderId": self.folder_id,
            "conversationId": opaque_id("conv", self.subject),
            "isRead": False,
            "isDraft": self.is_draft,
            "webLink": "https://outlook.office365.com/owa/?ItemID=x",
            "body": {"contentType": body_type, "content": content},
            "sender": person(self.sender or self.from_),
            "from": person(self.from_),
            "toRecipients": [person(p) for p in self.to],
            "ccRecipients": [person(p) for p in self.cc],
            "bccRecipients": [],
            "replyTo": [],
        }
        if self.is_draft and self.from_ is None:
            full.pop("sender")
            full.pop("from")
        shown = (
            full
            if select is None
            else {k: v for k, v in full.items() if k in select or k in ("@odata.etag", "id")}
        )
        if expand is not None:
            shown["attachments"] = [
                a.render(expand or None)
                for a in self.attachments
                if a.kind != REFERENCE or list_references
            ]
        for key, value in self.broken.items():
            if value is Ellipsis:
                shown.pop(key, None)
            else:
                shown[key] = value
        return shown

    def mime(self) -> bytes:
        mail = EmailMessage()
        mail["Subject"] = self.subject or ""
        if self.from_:
            mail["From"] = f"{self.from_[0]} <{self.from_[1]}>"
        if self.to:
            mail["To"] = ", ".join(f"{n} <{a}>" for n, a in self.to)
        mail["Date"] = format_datetime(self.received)
        mail["Message-ID"] = f"<{self.immutable_id[6:20]}@example.com>"
        mail.set_content(html_to_text(self.body_html) or " ")
        mail.add_alternative(self.body_html or " ", subtype="html")
        for attachment in self.attachments:
            if attachment.kind == FILE and not attachment.synthetic_size:
                maintype, _, subtype = (
                    attachment.content_type or "application/octet-stream"
                ).partition("/")
                mail.add_attachment(
                    attachment.content,
                    maintype=maintype,
                    subtype=subtype or "octet-stream",
                    filename=attachment.name or "attachment",
                )
        return bytes(mail)


class Mailbox:
    """One user's mailbox. Thread-safe: tests add, move and delete mail while the client runs."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.lock = threading.RLock()
        self.folders: dict[str, Folder] = {}
        self.messages: dict[str, Message] = {}
        self._counter = itertools.count(1)
        root = Folder(
            opaque_id("folder", "msgfolderroot"), WELL_KNOWN["msgfolderroot"], None, "msgfolderroot"
        )
        self.folders[root.id] = root
        for name, display in WELL_KNOWN.items():
            if name != "msgfolderroot":
                self.add_folder(display, parent=root.id, well_known=name)

    # -- folders ---------------------------------------------------------------------------
    def add_folder(
        self, display_name: str, parent: str = "msgfolderroot", well_known: str = ""
    ) -> Folder:
        with self.lock:
            parent_folder = self.folder(parent)
            folder = Folder(
                opaque_id("folder", parent_folder.id, display_name),
                display_name,
                parent_folder.id,
                well_known,
            )
            self.folders[folder.id] = folder
            return folder

    def folder(self, id_or_name: str) -> Folder:
        with self.lock:
            if id_or_name in self.folders:
                return self.folders[id_or_name]
            for folder in self.folders.values():
                if folder.well_known and folder.well_known == id_or_name.lower():
                    return folder
            # A path like "Inbox/Funds" (a convenience for tests, not a Graph feature).
            current = self.folder("msgfolderroot")
            for part in id_or_name.split("/"):
                match = [
                    f
                    for f in self.folders.values()
                    if f.parent_id == current.id and f.display_name == part
                ]
                if not match:
                    raise KeyError(id_or_name)
                current = match[0]
            return current

    # -- messages --------------------------------------------------------------------------
    def add_message(
        self, received: datetime | None = None, folder: str = "inbox", **fields
    ) -> Message:
        with self.lock:
            number = next(self._counter)
            received = (received or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
            fields.setdefault("to", [("Fund Ops", self.address)])
            message = Message(
                immutable_id=opaque_id("message", self.address, number),
                folder_id=self.folder(folder).id,
                received=received,
                **fields,
            )
            for position, attachment in enumerate(message.attachments):
                if not attachment.id:
                    attachment.id = opaque_id("attachment", message.immutable_id, position)
            self.messages[message.immutable_id] = message
            return message

    def move(self, message: Message, folder: str) -> None:
        with self.lock:
            message.folder_id = self.folder(folder).id
            message.moves += 1

    def delete(self, message: Message) -> None:
        with self.lock:
            self.messages.pop(message.immutable_id, None)

    def visible(self) -> list[Message]:
        with self.lock:
            return [m for m in self.messages.values() if m.visible]

    def find(self, message_id: str) -> Message | None:
        """By immutable id, or by the current rest id (a stale rest id finds nothing)."""
        with self.lock:
            if message_id in self.messages:
                return self.messages[message_id]
            for message in self.messages.values():
                if message.rest_id(False) == message_id:
                    return message
            return None


def file_attachment(
    name: str | None,
    content: bytes = b"",
    content_type: str | None = None,
    synthetic_size: int = 0,
    is_inline: bool = False,
) -> Attachment:
    return Attachment(
        "",
        name,
        FILE,
        content_type or "application/octet-stream",
        content,
        synthetic_size,
        is_inline,
    )


def inner_message(subject: str, sender: tuple[str, str], body_html: str) -> Message:
    """A message that exists only inside an item attachment."""
    return Message(
        opaque_id("inner", subject, sender),
        "",
        datetime(2025, 1, 1, tzinfo=UTC),
        subject=subject,
        from_=sender,
        body_html=body_html,
    )


def item_attachment(name: str | None, inner: Message) -> Attachment:
    return Attachment("", name, ITEM, None, item=inner)


def reference_attachment(name: str, url: str) -> Attachment:
    return Attachment("", name, REFERENCE, None, source_url=url)
