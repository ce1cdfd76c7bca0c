"""The "compressible encryption" of PST data blocks ([MS-PST] 5.1, NDB_CRYPT_PERMUTE), and the
CRC of blocks ([MS-PST] 5.3).

Each byte of a data block is substituted through a fixed 256-byte permutation; decoding uses
its inverse, below. Internal blocks (B-tree pages, data and sub-node trees) are not encoded.
"""

from __future__ import annotations

import zlib

DECODE = bytes.fromhex(
    "47f1b4e60b6a7248854e9eebe2f89453e0bba002e85a09abdbe3bac67cc310dd"
    "39059630f53760828cc9134a6b1df3fb8f2697ca911701c4322d6e3195ffd923"
    "d1005e79dc443b1a28c5615720903d83b943be67d2464276c06d5b7eb20f1629"
    "3ca903540dda5ddff6b7c762cd8d06d3695c86d614f7a56675acb1e94521700c"
    "879f74a4224c6fbf1f56aa2eb3783350b0a392bccf191ca763cb1e4d3e4b1b9b"
    "4fe7f0eead3ab55904ea40552551e57a893868527bfc27aed7bdfa07f4cc8e5f"
    "ef359c842b15d5773449b6120a7f7188fd9d18417d93d8582ccefe24afdeb836"
    "c8a180a69998a82f0e816573e4c2a28ad4e111d0088b2af2ed9a643fc16cf9ec"
)


def decode_permute(data: bytes) -> bytes:
    return data.translate(DECODE)


def block_crc(data: bytes) -> int:
    """The CRC-32 of [MS-PST] 5.3: the usual polynomial, without pre- and post-inversion."""
    return zlib.crc32(data, 0xFFFFFFFF) ^ 0xFFFFFFFF
