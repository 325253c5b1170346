"""The ``.amser`` byte format of ``docs/format.md``: framing, header, checksums, limits.

No numerics here: chunk payloads are opaque bytes that the codec produces and
consumes.  The reader is incremental (:class:`ContainerReader.feed`), so the
same code parses a file, a socket and WebSocket messages, and it checks every
declared size against the bytes present and against :class:`Limits` before it
allocates anything.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from .errors import ContainerError, CorruptContainerError, LimitExceededError, UnsupportedVersionError

__all__ = [
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "MAGIC",
    "ChunkRecord",
    "ContainerReader",
    "EndRecord",
    "Limits",
    "chunk_record",
    "end_record",
    "preamble_and_header",
]

MAGIC = b"\x89AMSER\r\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0

_PREAMBLE = struct.Struct("<8sBBH")  # magic, major, minor, reserved
_U32 = struct.Struct("<I")
_CHUNK_HEAD = struct.Struct("<BII")  # tag, n_frames, payload_len
_END = struct.Struct("<BIQ")  # tag, n_chunks, total_frames
TAG_CHUNK = 0x43
TAG_END = 0x45


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Safety limits a reader enforces before allocating.

    Parameters
    ----------
    max_header_bytes : int
        Largest header JSON accepted.
    max_chunk_bytes : int
        Largest chunk payload accepted (compressed and decompressed).
    max_frames : int
        Most frames in a whole container.
    max_n_mels : int
        Most Mel bands.
    max_decoded_bytes : int
        Most float32 output bytes over the whole container.
    """

    max_header_bytes: int = 64 * 1024
    max_chunk_bytes: int = 64 * 1024 * 1024
    max_frames: int = 10_000_000
    max_n_mels: int = 1024
    max_decoded_bytes: int = 2 * 1024**3

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_chunk_bytes", "max_frames", "max_n_mels", "max_decoded_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ContainerError(f"Limits.{name}={value!r} is invalid: expected a positive integer")


DEFAULT_LIMITS = Limits()


def canonical_json(obj: Any) -> bytes:
    """Canonical UTF-8 JSON: sorted keys, no spaces, no NaN (equal objects give equal bytes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def preamble_and_header(header: dict[str, Any]) -> bytes:
    """Bytes of the preamble, the header JSON and its checksum."""
    text = canonical_json(header)
    if len(text) > DEFAULT_LIMITS.max_header_bytes:
        raise ContainerError(f"header is {len(text)} bytes; at most {DEFAULT_LIMITS.max_header_bytes} allowed")
    # Deflated: the full FeatureConfig is ~700 bytes of JSON, ~380 deflated, which
    # matters on short utterances (0.1-0.3% of 16-bit PCM).
    body = zlib.compress(text, 9)
    head = _PREAMBLE.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, 0) + _U32.pack(len(body)) + body
    return head + _U32.pack(zlib.crc32(head))


def chunk_record(n_frames: int, payload: bytes) -> bytes:
    """Bytes of one chunk record (its frame count, payload and checksum)."""
    head = _CHUNK_HEAD.pack(TAG_CHUNK, n_frames, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + payload + _U32.pack(crc)


def end_record(n_chunks: int, total_frames: int) -> bytes:
    """Bytes of the end record."""
    body = _END.pack(TAG_END, n_chunks, total_frames)
    return body + _U32.pack(zlib.crc32(body))


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """A checked chunk: its frame count, its payload and its byte offset in the container."""

    n_frames: int
    payload: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class EndRecord:
    """The end record: chunk and frame totals."""

    n_chunks: int
    total_frames: int


def _check_header(header: Any, limits: Limits) -> dict[str, Any]:
    """Structural checks of the decoded header JSON (types and limits of the fields we use)."""
    if not isinstance(header, dict):
        raise CorruptContainerError(f"header must be a JSON object, got {type(header).__name__}")
    n_mels = header.get("n_mels")
    if isinstance(n_mels, bool) or not isinstance(n_mels, int) or n_mels < 1:
        raise CorruptContainerError(f"header n_mels={n_mels!r} is invalid: expected a positive integer")
    if n_mels > limits.max_n_mels:
        raise LimitExceededError(f"header n_mels={n_mels} exceeds the limit max_n_mels={limits.max_n_mels}")
    for key in ("sample_rate", "hop_length", "chunk_frames"):
        value = header.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise CorruptContainerError(f"header {key}={value!r} is invalid: expected a positive integer or null")
    codec = header.get("codec")
    if not isinstance(codec, dict) or not isinstance(codec.get("id"), str):
        raise CorruptContainerError(f"header codec={codec!r} is invalid: expected an object with a string 'id'")
    cfg = header.get("feature_config")
    if cfg is not None and not isinstance(cfg, dict):
        raise CorruptContainerError(f"header feature_config={cfg!r} is invalid: expected an object or null")
    return header


class ContainerReader:
    """Incremental, validating reader of container bytes.

    Feed it bytes in any pieces; it returns the records completed so far. The
    header is available as :attr:`header` once parsed.

    Parameters
    ----------
    limits : Limits, optional
        Safety limits (default :class:`Limits`).
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self.header: dict[str, Any] | None = None
        self.header_bytes = 0
        self.end: EndRecord | None = None
        self.n_chunks = 0
        self.total_frames = 0
        self.payload_bytes = 0
        self._buf = bytearray()
        self._offset = 0  # bytes consumed so far

    @property
    def finished(self) -> bool:
        """True once the end record has been read."""
        return self.end is not None

    def feed(self, data: bytes) -> list[ChunkRecord]:
        """Add bytes; return the chunk records they complete.

        Raises
        ------
        CorruptContainerError, UnsupportedVersionError, LimitExceededError
        """
        if data:
            if self.end is not None:
                raise CorruptContainerError("bytes follow the end record")
            self._buf += data
        out: list[ChunkRecord] = []
        while True:
            if self.header is None:
                if not self._parse_header():
                    return out
                continue
            if self.end is not None:
                if self._buf:
                    raise CorruptContainerError(f"{len(self._buf)} bytes follow the end record")
                return out
            rec = self._parse_record()
            if rec is None:
                if self.end is not None:
                    continue  # check for bytes after the end record
                return out
            out.append(rec)

    def close(self) -> None:
        """Declare the input finished: raise if the container is incomplete."""
        if self.header is None:
            raise CorruptContainerError(
                f"container truncated in its header ({len(self._buf)} bytes; expected magic {MAGIC!r} and a header)"
            )
        if self.end is None:
            raise CorruptContainerError(
                f"container truncated after {self.n_chunks} chunk(s): no end record ({len(self._buf)} stray bytes)"
            )

    def _take(self, n: int) -> bytes:
        piece = bytes(self._buf[:n])
        del self._buf[:n]
        self._offset += n
        return piece

    def _parse_header(self) -> bool:
        buf = self._buf
        # Check the magic and version on the bytes we have, so garbage fails fast.
        k = min(len(buf), len(MAGIC))
        if buf[:k] != MAGIC[:k]:
            raise CorruptContainerError(f"not an .amser container: magic {bytes(buf[:8])!r}, expected {MAGIC!r}")
        if len(buf) < _PREAMBLE.size + 4:
            return False
        _, major, minor, reserved = _PREAMBLE.unpack_from(buf)
        if major != FORMAT_MAJOR:
            raise UnsupportedVersionError(
                f"container format version {major}.{minor} is not supported; this library reads "
                f"major version {FORMAT_MAJOR}"
            )
        if reserved != 0:
            raise CorruptContainerError(f"reserved preamble field is {reserved}, expected 0")
        (hlen,) = _U32.unpack_from(buf, _PREAMBLE.size)
        if hlen > self.limits.max_header_bytes:
            raise LimitExceededError(
                f"header length {hlen} exceeds the limit max_header_bytes={self.limits.max_header_bytes}"
            )
        total = _PREAMBLE.size + 4 + hlen + 4
        if len(buf) < total:
            return False
        (crc,) = _U32.unpack_from(buf, total - 4)
        if zlib.crc32(memoryview(buf)[: total - 4]) != crc:
            raise CorruptContainerError("header checksum mismatch: the container is damaged")
        raw = self._take(total)
        d = zlib.decompressobj()
        try:
            text = d.decompress(raw[_PREAMBLE.size + 4 : -4], self.limits.max_header_bytes)
        except zlib.error as exc:
            raise CorruptContainerError(f"header is not a valid deflate stream: {exc}") from None
        if d.unconsumed_tail or not d.eof or d.unused_data:
            raise LimitExceededError(
                f"header does not inflate cleanly within the limit max_header_bytes={self.limits.max_header_bytes}"
            )
        try:
            header = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CorruptContainerError(f"header is not valid UTF-8 JSON: {exc}") from None
        self.header = _check_header(header, self.limits)
        self.header_bytes = total
        return True

    def _parse_record(self) -> ChunkRecord | None:
        buf = self._buf
        if not buf:
            return None
        tag = buf[0]
        if tag == TAG_END:
            if len(buf) < _END.size + 4:
                return None
            _, n_chunks, total = _END.unpack_from(buf)
            (crc,) = _U32.unpack_from(buf, _END.size)
            if zlib.crc32(memoryview(buf)[: _END.size]) != crc:
                raise CorruptContainerError("end record checksum mismatch: the container is damaged")
            if n_chunks != self.n_chunks or total != self.total_frames:
                raise CorruptContainerError(
                    f"end record says {n_chunks} chunks / {total} frames, but {self.n_chunks} chunks / "
                    f"{self.total_frames} frames were read"
                )
            self._take(_END.size + 4)
            self.end = EndRecord(n_chunks, total)
            return None
        if tag != TAG_CHUNK:
            raise CorruptContainerError(f"unknown record tag 0x{tag:02x} at byte {self._offset}; expected 0x43 or 0x45")
        if len(buf) < _CHUNK_HEAD.size:
            return None
        _, n_frames, plen = _CHUNK_HEAD.unpack_from(buf)
        lim = self.limits
        if plen > lim.max_chunk_bytes:
            raise LimitExceededError(f"chunk payload of {plen} bytes exceeds the limit max_chunk_bytes={lim.max_chunk_bytes}")
        if self.total_frames + n_frames > lim.max_frames:
            raise LimitExceededError(
                f"container declares {self.total_frames + n_frames} frames; the limit max_frames={lim.max_frames}"
            )
        assert self.header is not None
        decoded = 4 * (self.total_frames + n_frames) * self.header["n_mels"]
        if decoded > lim.max_decoded_bytes:
            raise LimitExceededError(
                f"container would decode to {decoded} bytes; the limit max_decoded_bytes={lim.max_decoded_bytes}"
            )
        total = _CHUNK_HEAD.size + plen + 4
        if len(buf) < total:
            return None
        (crc,) = _U32.unpack_from(buf, total - 4)
        if zlib.crc32(memoryview(buf)[: total - 4]) != crc:
            raise CorruptContainerError(f"checksum mismatch in chunk {self.n_chunks} at byte {self._offset}")
        offset = self._offset
        raw = self._take(total)
        self.n_chunks += 1
        self.total_frames += n_frames
        self.payload_bytes += plen
        return ChunkRecord(n_frames, raw[_CHUNK_HEAD.size : -4], offset)
