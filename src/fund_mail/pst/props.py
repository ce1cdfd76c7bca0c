"""MAPI property ids ([MS-OXPROPS]) and access to the properties of PST items read with libpff.

Pure apart from the pypff objects it is given: no disk, no network.
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

PR_MESSAGE_CLASS = 0x001A
PR_SUBJECT = 0x0037
PR_CLIENT_SUBMIT_TIME = 0x0039
PR_SENT_REPRESENTING_NAME = 0x0042
PR_SENT_REPRESENTING_EMAIL = 0x0065
PR_TRANSPORT_HEADERS = 0x007D
PR_SENDER_ADDRTYPE = 0x0C1E
PR_SENDER_NAME = 0x0C1A
PR_SENDER_EMAIL = 0x0C1F
PR_RECIPIENT_TYPE = 0x0C15
PR_DISPLAY_CC = 0x0E03
PR_DISPLAY_TO = 0x0E04
PR_MESSAGE_DELIVERY_TIME = 0x0E06
PR_MESSAGE_FLAGS = 0x0E07
PR_PRIMARY_SEND_ACCOUNT = 0x0E28
PR_NEXT_SEND_ACCT = 0x0E29
PR_BODY = 0x1000
PR_HTML = 0x1013
PR_INTERNET_MESSAGE_ID = 0x1035
PR_DISPLAY_NAME = 0x3001
PR_EMAIL_ADDRESS = 0x3003
PR_CREATION_TIME = 0x3007
PR_ATTACH_DATA = 0x3701
PR_ATTACH_FILENAME = 0x3704
PR_ATTACH_METHOD = 0x3705
PR_ATTACH_LONG_FILENAME = 0x3707
PR_ATTACH_MIME_TAG = 0x370E
PR_SMTP_ADDRESS = 0x39FE
PR_INTERNET_CPID = 0x3FDE
PR_SENDER_SMTP = 0x5D01
PR_SENT_REPRESENTING_SMTP = 0x5D02
PR_IPM_SUBTREE_ENTRYID = 0x35E0
PR_IPM_SENTMAIL_ENTRYID = 0x35E4

# Named properties ([MS-OXPROPS] 1.3.2): (property set, long id) -> the id this PST maps it to.
PSETID_COMMON = "00062008-0000-0000-c000-000000000046"
LID_INTERNET_ACCOUNT_NAME = 0x8580  # PidLidInternetAccountName: the account's SMTP address
PS_MAPI = "00020328-0000-0000-c000-000000000046"
PS_PUBLIC_STRINGS = "00020329-0000-0000-c000-000000000046"

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


def entry_node_id(entry_id: bytes) -> int | None:
    """The node id at the end of a PST entry id (flags, provider UID, node id)."""
    return struct.unpack_from("<I", entry_id, 20)[0] if entry_id and len(entry_id) >= 24 else None


def filetime(raw: bytes) -> datetime | None:
    if len(raw) != 8:
        return None
    ticks = struct.unpack("<Q", raw)[0]
    return FILETIME_EPOCH + timedelta(microseconds=ticks // 10) if ticks else None


def moment(props: dict[int, Any], prop: int) -> datetime | None:
    """A PT_SYSTIME property as an aware UTC datetime; None when absent, unreadable or zero."""
    entry = props.get(prop)
    if entry is None:
        return None
    try:
        value = entry.get_data_as_datetime()
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(value, datetime) or value.year <= 1601:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def parse_name_map(guids: bytes, entries: bytes, strings: bytes) -> dict[tuple[str, Any], int]:
    """{(property set GUID, long id or name): property id} from the three streams of the PST's
    name-to-id map ([MS-PST] 2.4.7): its GUID, entry and string streams."""
    sets = [str(uuid.UUID(bytes_le=guids[i : i + 16])) for i in range(0, len(guids) - 15, 16)]
    found: dict[tuple[str, Any], int] = {}
    for offset in range(0, len(entries) - 7, 8):
        key, flags, index = struct.unpack_from("<IHH", entries, offset)
        guid_index = flags >> 1
        if guid_index == 1:
            guid = PS_MAPI
        elif guid_index == 2:
            guid = PS_PUBLIC_STRINGS
        elif 3 <= guid_index < len(sets) + 3:
            guid = sets[guid_index - 3]
        else:
            continue
        name: Any = key
        if flags & 1:  # a string name, at offset key of the string stream
            if key + 4 > len(strings):
                continue
            length = struct.unpack_from("<I", strings, key)[0]
            name = strings[key + 4 : key + 4 + length].decode("utf-16-le", errors="replace")
        found[(guid, name)] = 0x8000 + index
    return found


def named_property_ids(pst: Any) -> dict[tuple[str, Any], int]:
    """The name-to-id map of an open pypff file; empty when it cannot be read."""
    try:
        props = entries(pst.name_to_id_map)
        streams = [props[k].data or b"" for k in (0x0002, 0x0003, 0x0004)]
    except (OSError, AttributeError, KeyError):
        return {}
    return parse_name_map(*streams)
