"""A small reader of the PST node database ([MS-PST] 2.2) and its heap-based property contexts
([MS-PST] 2.3), for what libpff-python does not expose: the message embedded in an attachment,
with its own attachments, recursively.

pypff gives an embedded message only as the raw first bytes of its property context. The
message's sub-nodes (its body when large, its attachments, their data) are reachable only
through the node and block B-trees, which this module reads straight from the file. Pure
reading: it never writes, and it raises NdbError for anything it cannot follow.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fund_mail.pst.crypt import block_crc, decode_permute

NID_TYPE_ATTACHMENT = 0x05
MAX_BLOCKS = 100_000  # a data tree larger than this is damage, not data


class NdbError(ValueError):
    """The bytes are not a PST structure this reader can follow."""


@dataclass(frozen=True)
class Layout:
    """Offsets and sizes that differ between ANSI (32-bit) and Unicode (64-bit) files."""

    unicode: bool
    id_size: int  # bytes of a BID, IB or NID key
    trailer_size: int
    nbt_root: int
    bbt_root: int
    crypt_offset: int
    crc_in_trailer: int  # offset of dwCRC in a block trailer
    page_size: int = 512

    @property
    def page_entries(self) -> int:  # offset of cEnt in a B-tree page
        return 488 if self.unicode else 496


UNICODE = Layout(True, 8, 16, 224, 240, 513, 4)
ANSI = Layout(False, 4, 12, 188, 196, 461, 8)


@dataclass(frozen=True)
class Node:
    nid: int
    data_bid: int
    sub_bid: int


class PstFile:
    """Random access to nodes and their sub-nodes in one PST file."""

    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        header = self._read(0, 564)
        if header[:4] != b"!BDN":
            raise NdbError("not a PST file")
        version = struct.unpack_from("<H", header, 10)[0]
        if version in (14, 15):
            self.layout = ANSI
        elif version == 23:
            self.layout = UNICODE
        else:
            raise NdbError(f"PST format version {version} is not supported by this reader")
        self.crypt = header[self.layout.crypt_offset]
        if self.crypt not in (0, 1):
            raise NdbError("the PST uses high encryption, which this reader does not decode")
        self.nbt_root = self._uint(header, self.layout.nbt_root)
        self.bbt_root = self._uint(header, self.layout.bbt_root)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PstFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw access ----------------------------------------------------------------------
    def _read(self, offset: int, size: int) -> bytes:
        self._file.seek(offset)
        data = self._file.read(size)
        if len(data) != size:
            raise NdbError(f"the file ends inside a structure at {offset}")
        return data

    def _uint(self, data: bytes, offset: int) -> int:
        fmt = "<Q" if self.layout.unicode else "<I"
        return struct.unpack_from(fmt, data, offset)[0]

    def _search(self, root: int, key: int) -> bytes:
        """The leaf entry for key in the B-tree whose root page is at offset root."""
        layout, offset = self.layout, root
        for _ in range(16):  # a B-tree deeper than this is a loop in a damaged file
            page = self._read(offset, layout.page_size)
            count, _, entry_size, level = page[layout.page_entries : layout.page_entries + 4]
            if not entry_size or count * entry_size > layout.page_entries:
                raise NdbError(f"damaged B-tree page at {offset}")
            entries = [page[i * entry_size : (i + 1) * entry_size] for i in range(count)]
            keys = [self._uint(e, 0) for e in entries]
            if level == 0:
                for entry, entry_key in zip(entries, keys, strict=True):
                    if entry_key == key:
                        return entry
                raise NdbError(f"id {key:#x} is not in the B-tree")
            below = [e for e, k in zip(entries, keys, strict=True) if k <= key]
            if not below:
                raise NdbError(f"id {key:#x} is not in the B-tree")
            offset = self._uint(below[-1], 2 * layout.id_size)
        raise NdbError("the B-tree is deeper than any real PST")

    def node(self, nid: int) -> Node:
        entry = self._search(self.nbt_root, nid)
        size = self.layout.id_size
        return Node(nid, self._uint(entry, size), self._uint(entry, 2 * size))

    def block(self, bid: int) -> bytes:
        """One block's bytes, checked against its CRC, and decoded when it holds data
        (internal blocks are plain)."""
        bid &= ~1  # the lowest bit is reserved, not part of the id
        layout = self.layout
        entry = self._search(self.bbt_root, bid)
        offset = self._uint(entry, layout.id_size)
        length = struct.unpack_from("<H", entry, 2 * layout.id_size)[0]
        stored = (length + layout.trailer_size + 63) // 64 * 64  # blocks fill 64-byte units
        raw = self._read(offset, stored)
        data = raw[:length]
        trailer = stored - layout.trailer_size
        if struct.unpack_from("<I", raw, trailer + layout.crc_in_trailer)[0] != block_crc(data):
            raise NdbError(f"block {bid:#x} fails its CRC check: the file is damaged there")
        if bid & 2 or self.crypt == 0:
            return data
        return decode_permute(data)

    # -- data trees and sub-nodes ------------------------------------------------------------
    def data_blocks(self, bid: int, depth: int = 0) -> list[bytes]:
        """The data blocks of a node, in order: one block, or the leaves of an XBLOCK tree."""
        if not bid:
            return []
        if not bid & 2:
            return [self.block(bid)]
        raw = self.block(bid)
        kind, level, count = struct.unpack_from("<BBH", raw, 0)
        if kind != 0x01 or level not in (1, 2) or depth > 1:
            raise NdbError(f"block {bid:#x} is not a data tree")
        size = self.layout.id_size
        children = [self._uint(raw, 8 + i * size) for i in range(count)]
        blocks: list[bytes] = []
        for child in children:
            blocks += self.data_blocks(child, depth + 1) if level == 2 else [self.block(child)]
            if len(blocks) > MAX_BLOCKS:
                raise NdbError("a data tree with more blocks than any real item")
        return blocks

    def sub_nodes(self, bid: int, depth: int = 0) -> dict[int, Node]:
        """{nid: node} of a sub-node tree (SLBLOCK, or SIBLOCK over SLBLOCKs)."""
        if not bid:
            return {}
        raw = self.block(bid)
        kind, level, count = struct.unpack_from("<BBH", raw, 0)
        if kind != 0x02 or level > 1 or depth > 1:
            raise NdbError(f"block {bid:#x} is not a sub-node tree")
        size = self.layout.id_size
        start = 8 if self.layout.unicode else 4
        found: dict[int, Node] = {}
        step = 3 * size if level == 0 else 2 * size
        for i in range(count):
            at = start + i * step
            nid = self._uint(raw, at) & 0xFFFFFFFF
            if level == 0:
                found[nid] = Node(nid, self._uint(raw, at + size), self._uint(raw, at + 2 * size))
            else:
                found.update(self.sub_nodes(self._uint(raw, at + size), depth + 1))
        return found


# -- LTP: heap, B-tree on heap, property context ------------------------------------------------
class Heap:
    """A heap-on-node ([MS-PST] 2.3.1) over a node's data blocks."""

    def __init__(self, blocks: list[bytes]) -> None:
        if not blocks or len(blocks[0]) < 12:
            raise NdbError("an empty heap")
        self.blocks = blocks
        _, signature, self.client, self.user_root = struct.unpack_from("<HBBI", blocks[0], 0)
        if signature != 0xEC:
            raise NdbError("not a heap")
        self.maps: list[tuple[int, ...]] = []
        for block in blocks:
            page_map = struct.unpack_from("<H", block, 0)[0]
            if page_map + 4 > len(block):
                raise NdbError("a heap page map outside its block")
            allocations = struct.unpack_from("<H", block, page_map)[0]
            self.maps.append(struct.unpack_from(f"<{allocations + 1}H", block, page_map + 4))

    def get(self, hid: int) -> bytes:
        if not hid:
            return b""
        index, block = (hid >> 5) & 0x7FF, hid >> 16
        if hid & 0x1F or block >= len(self.blocks) or not 1 <= index < len(self.maps[block]):
            raise NdbError(f"heap id {hid:#x} points outside the heap")
        offsets = self.maps[block]
        return self.blocks[block][offsets[index - 1] : offsets[index]]

    def tree(self, hid: int) -> list[tuple[bytes, bytes]]:
        """(key, data) of every record of the BTH whose header is at hid."""
        header = self.get(hid)
        kind, key_size, data_size, levels, root = struct.unpack_from("<BBBBI", header, 0)
        if kind != 0xB5:
            raise NdbError("not a B-tree on heap")

        if levels > 8:
            raise NdbError("a B-tree on heap deeper than any real one")

        def records(at: int, level: int) -> list[tuple[bytes, bytes]]:
            raw = self.get(at)
            if level == 0:
                size = key_size + data_size
                return [
                    (raw[i : i + key_size], raw[i + key_size : i + size])
                    for i in range(0, len(raw) - size + 1, size)
                ]
            size = key_size + 4
            out: list[tuple[bytes, bytes]] = []
            for i in range(0, len(raw) - size + 1, size):
                out += records(struct.unpack_from("<I", raw, i + key_size)[0], level - 1)
            return out

        return records(root, levels) if root else []


FIXED = {0x02: "<h", 0x03: "<i", 0x0A: "<i", 0x0B: "<?", 0x04: "<f"}
MULTI_VALUE = 0x1000


def property_context(
    blocks: list[bytes],
    sub_nodes: dict[int, Node],
    pst: PstFile | None,
    codepage: str = "cp1252",
) -> dict[int, tuple[int, Any]]:
    """{property id: (type, value)} of a property context ([MS-PST] 2.3.3).

    Strings come back as str, times as datetime, binaries and objects as bytes, numbers as int.
    A value kept in a sub-node is read through pst; without pst it is None.
    """
    from fund_mail.pst.props import filetime

    heap = Heap(blocks)
    if heap.client != 0xBC:
        raise NdbError("not a property context")
    values: dict[int, tuple[int, Any]] = {}
    for key, data in heap.tree(heap.user_root):
        prop = struct.unpack_from("<H", key, 0)[0]
        value_type, raw_value = struct.unpack_from("<HI", data, 0)
        if value_type in FIXED:
            value: Any = struct.unpack_from(FIXED[value_type], data, 2)[0]
        else:
            if raw_value & 0x1F:  # a node id: the value lives in a sub-node
                node = sub_nodes.get(raw_value)
                if node is None or pst is None:
                    values[prop] = (value_type, None)
                    continue
                raw = b"".join(pst.data_blocks(node.data_bid))
            else:
                raw = heap.get(raw_value)
            value = raw
            if value_type == 0x1F:
                value = raw.decode("utf-16-le", errors="replace").rstrip("\x00")
            elif value_type == 0x1E:
                value = raw.rstrip(b"\x00").decode(codepage, errors="replace")
            elif value_type == 0x40:
                value = filetime(raw)
            elif value_type == 0x14 and len(raw) == 8:
                value = struct.unpack("<q", raw)[0]
        values[prop] = (value_type, value)
    return values


@dataclass
class EmbeddedMessage:
    """A message stored inside an attachment: its properties, and its own attachments."""

    values: dict[int, tuple[int, Any]]
    attachments: list[EmbeddedAttachment]
    problems: list[str]

    def get(self, prop: int) -> Any:
        return self.values.get(prop, (0, None))[1]


@dataclass
class EmbeddedAttachment:
    values: dict[int, tuple[int, Any]]
    message: EmbeddedMessage | None  # set when the attachment is itself a message

    def get(self, prop: int) -> Any:
        return self.values.get(prop, (0, None))[1]


PR_ATTACH_DATA = 0x3701
MAX_DEPTH = 16


def read_embedded(
    pst: PstFile, message_nid: int, attachment_nid: int, codepage: str
) -> EmbeddedMessage:
    """The message carried by attachment_nid of the top-level message message_nid."""
    top = pst.node(message_nid)
    attachment = pst.sub_nodes(top.sub_bid).get(attachment_nid)
    if attachment is None:
        raise NdbError(f"attachment {attachment_nid:#x} is not among the message's sub-nodes")
    return _embedded_from_attachment(pst, attachment, codepage, 0)


def _embedded_from_attachment(
    pst: PstFile, attachment: Node, codepage: str, depth: int
) -> EmbeddedMessage:
    if depth > MAX_DEPTH:
        raise NdbError("messages nested deeper than any real mail")
    subs = pst.sub_nodes(attachment.sub_bid)
    values = property_context(pst.data_blocks(attachment.data_bid), subs, pst, codepage)
    value_type, raw = values.get(PR_ATTACH_DATA, (0, None))
    if value_type != 0x0D or not raw or len(raw) < 4:
        raise NdbError("the attachment holds no message object")
    nid = struct.unpack_from("<I", raw, 0)[0]
    node = subs.get(nid)
    if node is None:
        raise NdbError(f"the message object {nid:#x} is missing")
    return _message(pst, node, codepage, depth)


def _message(pst: PstFile, node: Node, codepage: str, depth: int) -> EmbeddedMessage:
    subs = pst.sub_nodes(node.sub_bid)
    values = property_context(pst.data_blocks(node.data_bid), subs, pst, codepage)
    attachments: list[EmbeddedAttachment] = []
    problems: list[str] = []
    for nid in sorted(n for n in subs if n & 0x1F == NID_TYPE_ATTACHMENT):
        sub = subs[nid]
        try:
            a_subs = pst.sub_nodes(sub.sub_bid)
            a_values = property_context(pst.data_blocks(sub.data_bid), a_subs, pst, codepage)
            inner = None
            if a_values.get(PR_ATTACH_DATA, (0, None))[0] == 0x0D:
                inner = _embedded_from_attachment(pst, sub, codepage, depth + 1)
            attachments.append(EmbeddedAttachment(a_values, inner))
        except (NdbError, struct.error, OSError) as e:
            problems.append(f"attachment {len(attachments) + len(problems) + 1}: {e}")
    return EmbeddedMessage(values, attachments, problems)
