"""An independent reading of docs/format.md for tests and fuzzing.

Splits a container into its records and builds containers back from records, recomputing every checksum as
the specification says (header from 0; in minor 1 and later each chunk and the end record continue from the
previous record's CRC; in minor 0 each starts from 0).  Written from the spec, not from amser_dsp.container,
so the two check each other.
"""

from __future__ import annotations

import struct
import zlib

PREFIX = struct.Struct("<4sBBHI")
CHUNK_HEAD = struct.Struct("<BII")
END = struct.Struct("<BIQ")
KIND_CHUNK, KIND_END = 0x43, 0x45


def split(blob: bytes) -> tuple[bytes, list[bytes]] | None:
    """(header body, [record bodies]) without their CRCs, or None if the framing does not parse."""
    if len(blob) < PREFIX.size:
        return None
    length = PREFIX.unpack_from(blob)[4]
    pos = PREFIX.size + length
    header = blob[:pos]
    pos += 4
    records = []
    while pos < len(blob):
        kind = blob[pos]
        if kind == KIND_CHUNK and pos + CHUNK_HEAD.size <= len(blob):
            size = CHUNK_HEAD.size + CHUNK_HEAD.unpack_from(blob, pos)[2]
        elif kind == KIND_END:
            size = END.size
        else:
            return None
        if pos + size + 4 > len(blob):
            return None
        records.append(blob[pos : pos + size])
        pos += size + 4
    return header, records


def minor(header_body: bytes) -> int:
    return header_body[5]


def assemble(header_body: bytes, records: list[bytes], *, chained: bool | None = None) -> bytes:
    """A container of these bodies with every CRC recomputed (chained as the header's minor says, or as told)."""
    chained = minor(header_body) >= 1 if chained is None else chained
    crc = zlib.crc32(header_body)
    out = [header_body, struct.pack("<I", crc)]
    for body in records:
        crc = zlib.crc32(body, crc if chained else 0)
        out += [body, struct.pack("<I", crc)]
    return b"".join(out)


def chunk_body(n_frames: int, payload: bytes) -> bytes:
    return CHUNK_HEAD.pack(KIND_CHUNK, n_frames, len(payload)) + payload


def end_body(n_chunks: int, n_frames: int) -> bytes:
    return END.pack(KIND_END, n_chunks, n_frames)


def with_end(header_body: bytes, chunks: list[bytes]) -> bytes:
    """A container of these chunk bodies and the end record that counts them, CRCs recomputed."""
    frames = sum(CHUNK_HEAD.unpack_from(c)[1] for c in chunks)
    return assemble(header_body, [*chunks, end_body(len(chunks), frames)])
