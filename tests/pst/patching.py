"""Copies of a PST fixture with one property changed, for the cases no public fixture holds (a
store without its IPM-subtree and Sent ids, a draft, a mail without delivery time).

It finds the node's property-context block with pst/ndb.py, decodes it, edits one record of
its B-tree on heap, encodes it again and recomputes the block's CRC ([MS-PST] 5.3), so libpff
reads the copy as a real PST. The fixture itself is never written.
"""

from __future__ import annotations

import struct
from pathlib import Path

from fund_mail.pst import ndb
from fund_mail.pst.crypt import DECODE, block_crc

ENCODE = bytes(DECODE.index(i) for i in range(256))
NID_MESSAGE_STORE = 0x21


class PatchedPst:
    def __init__(self, source: Path) -> None:
        self.source = source
        self.data = bytearray(source.read_bytes())

    def change(self, nid: int, prop: int, *, new_id: int | None = None, value: int | None = None):
        """Rename property prop of node nid to new_id, or set its 4-byte inline value."""
        with ndb.PstFile(self.source) as pst:
            bid = pst.node(nid).data_bid
            assert not bid & 2, "a property context in one block"
            entry = pst._search(pst.bbt_root, bid)
            offset = pst._uint(entry, pst.layout.id_size)
            length = struct.unpack_from("<H", entry, 2 * pst.layout.id_size)[0]
            encoded = pst.crypt == 1
        block = bytearray(self.data[offset : offset + length])
        if encoded:
            block = bytearray(bytes(block).translate(DECODE))
        heap = ndb.Heap([bytes(block)])
        header = heap.get(heap.user_root)
        records_hid = struct.unpack_from("<I", header, 4)[0]
        index = (records_hid >> 5) & 0x7FF
        start, end = heap.maps[0][index - 1], heap.maps[0][index]
        for at in range(start, end, 8):
            if struct.unpack_from("<H", block, at)[0] == prop:
                if new_id is not None:
                    struct.pack_into("<H", block, at, new_id)
                if value is not None:
                    struct.pack_into("<I", block, at + 4, value)
                break
        else:
            raise AssertionError(f"property {prop:#x} is not in node {nid:#x}")
        if encoded:
            block = bytearray(bytes(block).translate(ENCODE))
        self.data[offset : offset + length] = block
        trailer = offset + (length + 16 + 63) // 64 * 64 - 16  # Unicode block trailer
        struct.pack_into("<I", self.data, trailer + 4, block_crc(bytes(block)))
        return self

    def write(self, path: Path) -> Path:
        path.write_bytes(self.data)
        return path
