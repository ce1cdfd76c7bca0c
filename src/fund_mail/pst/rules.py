"""The decisions of the PST import, as pure functions: which folder is the mailbox's top, which
items are mail, whether a mail was sent, which address and which time a row gets.

No libpff and no disk here, so every rule has a table-driven test. Each decision that is not
the obvious one comes back with the words the row's `note` records.
"""

from __future__ import annotations

import email.utils
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

MSGFLAG_UNSENT = 0x08
MSGFLAG_FROMME = 0x20

# Folders at the root of a store that are Outlook's own machinery, never the mailbox's top.
SYSTEM_FOLDERS = {
    "search root", "spam search folder 2", "ipm_views", "ipm_common_views", "freebusy data",
    "reminders", "to-do search", "itemprocsearch", "tracked mail processing", "finder",
    "deferred action", "common views", "views", "schedule", "shortcuts", "spooler queue",
}  # fmt: skip

# Well-known names of the Sent folder, lower case: English (Outlook and IMAP stores), Korean,
# French, German, Italian, Spanish, Portuguese, Dutch.
SENT_FOLDER_NAMES = {
    "sent items", "sent messages", "sent mail", "sent", "[gmail]/sent mail",
    "보낸 편지함", "보낸편지함", "보낸 메일함", "보낸메일함",
    "éléments envoyés", "messages envoyés", "envoyés",
    "gesendete elemente", "gesendete objekte", "gesendet",
    "posta inviata", "elementi inviati", "inviati",
    "elementos enviados", "correo enviado", "enviados", "itens enviados",
    "verzonden items", "verzonden",
}  # fmt: skip

ARCHIVED_CLASSES = ("IPM.NOTE", "IPM.SCHEDULE.MEETING.", "REPORT.IPM.NOTE.")


# -- folders -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FolderInfo:
    identifier: int
    name: str
    sub_folders: int


def mailbox_top(
    root_children: Sequence[FolderInfo],
    subtree_id: int | None,
    grandchildren: Mapping[int, Sequence[FolderInfo]],
) -> tuple[int | None, str]:
    """(identifier, how it was found) of the folder that paths are relative to.

    The store's IPM-subtree entry id when it names a child of the root; else a folder named
    IPM_SUBTREE under the root or one level further down (Exchange OST: Root - Mailbox /
    IPM_SUBTREE); else the root's single child that is not Outlook machinery. None: the root.
    """
    if subtree_id is not None and any(c.identifier == subtree_id for c in root_children):
        return subtree_id, "the store's IPM subtree id"
    for level in [root_children, *grandchildren.values()]:
        for child in level:
            if child.name.upper() == "IPM_SUBTREE":
                return child.identifier, "a folder named IPM_SUBTREE"
    mail = [c for c in root_children if c.name.lower() not in SYSTEM_FOLDERS]
    if len(mail) == 1:
        return mail[0].identifier, "the root's single mail folder"
    return None, "no mail subtree: paths start at the root"


def is_sent_folder_name(path: str) -> bool:
    """A folder path whose top folder has a well-known Sent name."""
    top = path.split("/", 1)[0].strip().lower()
    return top in SENT_FOLDER_NAMES


# -- item classes --------------------------------------------------------------------------------
def classify(message_class: str, flags: int) -> str | None:
    """None when the item becomes a row; otherwise the reason it is left out (a report key)."""
    upper = message_class.upper()
    archived = upper == "IPM.NOTE" or any(upper.startswith(p) for p in ARCHIVED_CLASSES)
    if not archived:
        return message_class or "(no message class)"
    if flags & MSGFLAG_UNSENT:
        return f"draft ({message_class})"
    return None


# -- sent or received ------------------------------------------------------------------------------
def sent_rule(
    *,
    in_sent_folder_by_id: bool,
    flags: int,
    folder_path: str,
    sender: str,
    owners: Iterable[str],
) -> str | None:
    """The rule that makes a mail `sent`, in words for the note; None when it was received."""
    if in_sent_folder_by_id:
        return "sent: in the store's Sent Items folder"
    if flags & MSGFLAG_FROMME:
        return "sent: flagged MSGFLAG_FROMME"
    if is_sent_folder_name(folder_path):
        return f"sent: in a folder named {folder_path.split('/', 1)[0]!r}"
    owner = {o.lower() for o in owners if o}
    if sender and sender.lower() in owner:
        return f"sent: the sender {sender} is the store owner"
    return None


def store_owner(sent_folder_senders: Iterable[str]) -> str | None:
    """The most frequent sender address of the sent-like folders, if any."""
    counts = Counter(s.lower() for s in sent_folder_senders if s and "@" in s)
    return counts.most_common(1)[0][0] if counts else None


# -- addresses ------------------------------------------------------------------------------------
def is_smtp(address: str) -> bool:
    return "@" in address and not address.upper().startswith("/O=")


def directory_pairs(recipients: Iterable[tuple[str, str]]) -> dict[str, str]:
    """{EX DN (upper case): SMTP} from (PR_EMAIL_ADDRESS, PR_SMTP_ADDRESS) of recipients."""
    return {
        dn.upper(): smtp
        for dn, smtp in recipients
        if dn.upper().startswith("/O=") and is_smtp(smtp)
    }


def send_account_pairs(values: Iterable[str]) -> dict[str, str]:
    """{EX DN (upper case): SMTP} from PR_PRIMARY_SEND_ACCOUNT / PR_NEXT_SEND_ACCT values,
    which read `<id>\\x01<DN>\\x01<SMTP>`."""
    pairs: dict[str, str] = {}
    for value in values:
        parts = (value or "").split("\x01")
        if len(parts) >= 3 and parts[1].upper().startswith("/O=") and is_smtp(parts[2]):
            pairs[parts[1].upper()] = parts[2]
    return pairs


def header_addresses(headers: str, *names: str) -> list[tuple[str, str]]:
    """(display name, address) of the first of the named transport headers that has one."""
    if not headers:
        return []
    message = email.message_from_string(headers)
    for name in names:
        values = message.get_all(name) or []
        found = [(n, a) for n, a in email.utils.getaddresses([str(v) for v in values]) if a]
        if found:
            return found
    return []


@dataclass(frozen=True)
class Resolved:
    address: str
    note: str = ""  # set when the address is not an SMTP address read from its own property


def resolve_address(
    role: str,
    *,
    smtp: Sequence[str],
    address: str,
    name: str,
    accounts: dict[str, str],
    headers: Sequence[tuple[str, str]],
    directory: dict[str, str] | None = None,
) -> Resolved:
    """The SMTP address of a sender, author or recipient.

    In order: the SMTP properties (0x5D01, 0x5D02, 0x39FE), the address itself when it is
    SMTP, the message's send account that pairs its Exchange DN with an SMTP address, the
    store's directory of such pairs (learnt from the Sent folders), the transport headers
    (matched by display name when there are several). Failing all, the EX DN, noted.
    """
    for candidate in smtp:
        if candidate and is_smtp(candidate):
            return Resolved(candidate)
    if is_smtp(address):
        return Resolved(address)
    if address and address.upper() in accounts:
        return Resolved(accounts[address.upper()], f"{role} address from the send account")
    if address and directory and address.upper() in directory:
        return Resolved(
            directory[address.upper()], f"{role} address from the Sent folders' recipients"
        )
    by_name = [a for n, a in headers if name and n.strip().lower() == name.strip().lower()]
    if len(headers) == 1 or by_name:
        found = by_name[0] if by_name else headers[0][1]
        return Resolved(found, f"{role} address from the transport headers")
    if address:
        return Resolved(address, f"{role} address is an Exchange DN with no SMTP address")
    return Resolved("")


# -- dates -----------------------------------------------------------------------------------------
def header_date(headers: str) -> datetime | None:
    if not headers:
        return None
    value = email.message_from_string(headers).get("Date")
    try:
        return email.utils.parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError):
        return None


def choose_time(
    delivery: datetime | None,
    submit: datetime | None,
    headers_date: datetime | None,
    creation: datetime | None,
) -> tuple[datetime | None, str]:
    """(time, note): delivery, then submit, then the headers' Date, then creation time."""
    for moment, source in (
        (delivery, ""),
        (submit, "date from the submit time (no delivery time)"),
        (headers_date, "date from the transport headers (no delivery or submit time)"),
        (creation, "date from the creation time (no delivery, submit or header date)"),
    ):
        if moment is not None and moment.year > 1601:
            return moment, source
    return None, "no delivery, submit, header or creation time in the PST"
