"""MAPI property access for PST items read with libpff, and a reader for the property
context that pypff hands back, as raw bytes, for an embedded message.

Pure apart from the pypff objects it is given: no disk, no network. The MS-PST heap layout
(HN, BTH, PC) is described in [MS-PST] 2.3.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

PR_MESSAGE_CLASS = 0x001A
PR_SUBJECT = 0x0037
PR_CLIENT_SUBMIT_TIME = 0x0039
PR_SENT_REPRESENTING_NAME = 0x0042
PR_SENT_REPRESENTING_EMAIL = 0x0065
PR_TRANSPORT_HEADERS = 0x007D
PR_SENDER_NAME = 0x0C1A
PR_SENDER_EMAIL = 0x0C1F
PR_RECIPIENT_TYPE = 0x0C15
PR_DISPLAY_TO = 0x0E04
PR_MESSAGE_DELIVERY_TIME = 0x0E06
PR_MESSAGE_FLAGS = 0x0E07
PR_BODY = 0x1000
PR_DISPLAY_NAME = 0x3001
PR_EMAIL_ADDRESS = 0x3003
PR_CREATION_TIME = 0x3007
PR_ATTACH_FILENAME = 0x3704
PR_ATTACH_METHOD = 0x3705
PR_ATTACH_LONG_FILENAME = 0x3707
PR_SMTP_ADDRESS = 0x39FE
PR_INTERNET_CPID = 0x3FDE
PR_SENDER_SMTP = 0x5D01
PR_SENT_REPRESENTING_SMTP = 0x5D02
PR_IPM_SUBTREE_ENTRYID = 0x35E0
PR_IPM_SENTMAIL_ENTRYID = 0x35E4

MSGFLAG_FROMME = 0x20
ATTACH_EMBEDDED_MSG = 5
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def entries(item: Any) -> dict[int, Any]:
    """{property id: pypff record entry} of an item's first record set."""
    found: dict[int, Any] = {}
    try:
        if not item.number_of_record_sets:
            return found
        for entry in item.get_record_set(0).entries:
            found.setdefault(entry.entry_type, entry)
    except (OSError, AttributeError):
        pass
    return found


def text(props: dict[int, Any], *ids: int) -> str:
    """The first of the properties that holds a non-empty string."""
    for prop in ids:
        entry = props.get(prop)
        if entry is None:
            continue
        try:
            value = entry.get_data_as_string()
        except (OSError, ValueError):
            continue
        if value:
            return strip_subject_prefix(value) if prop == PR_SUBJECT else value
    return ""


def number(props: dict[int, Any], prop: int) -> int | None:
    entry = props.get(prop)
    if entry is None:
        return None
    try:
        return entry.get_data_as_integer()
    except (OSError, ValueError):
        return None


def strip_subject_prefix(subject: str) -> str:
    """A stored subject may start with \\x01 and a length byte that marks its prefix."""
    return subject[2:] if subject.startswith("\x01") and len(subject) >= 2 else subject


def smtp_or_address(address: str) -> str:
    """Exchange-internal (X.500) addresses are not mail addresses; leave them out."""
    return "" if address.upper().startswith("/O=") else address


def entry_node_id(entry_id: bytes) -> int | None:
    """The node id at the end of a PST entry id (flags, provider UID, node id)."""
    return struct.unpack_from("<I", entry_id, 20)[0] if entry_id and len(entry_id) >= 24 else None


def filetime(raw: bytes) -> datetime | None:
    if len(raw) != 8:
        return None
    ticks = struct.unpack("<Q", raw)[0]
    return FILETIME_EPOCH + timedelta(microseconds=ticks // 10) if ticks else None


class HeapError(ValueError):
    """The bytes are not a property context this reader can follow."""


def read_property_context(buffer: bytes, codepage: str = "cp1252") -> dict[int, tuple[int, Any]]:
    """{property id: (type, value)} from a PC heap held in one block.

    Strings come back as str, times as datetime, binaries as bytes, small numbers as int. A value
    kept in a sub-node (large bodies, transport headers) is not in these bytes: None.
    """
    if len(buffer) < 12:
        raise HeapError("too short")
    page_map, signature, client, user_root = struct.unpack_from("<HBBI", buffer, 0)
    if signature != 0xEC or client != 0xBC or page_map + 4 > len(buffer):
        raise HeapError("not a property context")
    allocations, _ = struct.unpack_from("<HH", buffer, page_map)
    offsets = struct.unpack_from(f"<{allocations + 1}H", buffer, page_map + 4)

    def allocation(hid: int) -> bytes:
        index, block = (hid >> 5) & 0x7FF, hid >> 16
        if hid & 0x1F or block or not 1 <= index <= allocations:
            raise HeapError(f"heap id {hid:#x} is outside the first block")
        return buffer[offsets[index - 1] : offsets[index]]

    header = allocation(user_root)
    kind, key_size, entry_size, levels, records_hid = struct.unpack_from("<BBBBI", header, 0)
    if kind != 0xB5 or key_size != 2 or entry_size != 6 or levels != 0:
        raise HeapError("unexpected B-tree layout")
    records = allocation(records_hid) if records_hid else b""
    values: dict[int, tuple[int, Any]] = {}
    for start in range(0, len(records) - 7, 8):
        prop, value_type, raw = struct.unpack_from("<HHI", records, start)
        value: Any = raw
        if value_type in (0x1F, 0x1E, 0x102, 0x40, 0x14, 0x05):
            if raw & 0x1F:  # a node id: the value lives in a sub-node
                value = None
            else:
                data = allocation(raw) if raw else b""
                if value_type == 0x1F:
                    value = data.decode("utf-16-le", errors="replace")
                elif value_type == 0x1E:
                    value = data.rstrip(b"\x00").decode(codepage, errors="replace")
                elif value_type == 0x40:
                    value = filetime(data)
                else:
                    value = data
        values[prop] = (value_type, value)
    return values
