"""The ``.amser`` byte format (docs/format.md): write, read, validate.  No numerics here.

Reading is incremental (:class:`Reader`), so one parser serves whole blobs,
files and sockets; every size is checked against the bytes present and against
:class:`Limits` before anything is allocated.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from .errors import ContainerError, CorruptContainerError, LimitExceededError, TooLongError, UnsupportedVersionError

__all__ = [
    "CONTAINER_SUFFIX",
    "HEADER_DICTIONARY",
    "MAGIC",
    "MAJOR",
    "MINOR",
    "Chunk",
    "End",
    "Header",
    "Limits",
    "Reader",
    "Writer",
    "chunk_bytes",
    "compress_json",
    "end_bytes",
    "header_bytes",
    "read_all",
]

#: The file name ending of a container on disk.
CONTAINER_SUFFIX = ".amser"

MAGIC = b"AMSR"
MAJOR = 1
MINOR = 1
#: The first minor version whose chunk and end-record checksums are chained (docs/format.md).
CHAINED_MINOR = 1

TAG_CONFIG = 0x01
TAG_CODEC = 0x02
TAG_N_MELS = 0x03
_REQUIRED_TAGS = (TAG_CONFIG, TAG_CODEC, TAG_N_MELS)
_OPTIONAL_TAG_MIN = 0x80

KIND_CHUNK = 0x43  # "C"
KIND_END = 0x45  # "E"

_PREFIX = struct.Struct("<4sBBHI")  # magic, major, minor, flags, field-area length
_CRC = struct.Struct("<I")
_FIELD = struct.Struct("<BI")  # tag, size
_CHUNK = struct.Struct("<BII")  # kind, n_frames, payload length
_END = struct.Struct("<BIQ")  # kind, n_chunks, n_frames

#: Preset dictionary for the header's compressed JSON (part of format 1.0;
#: the canonical JSON of the v1 ``amser``, ``whisper`` and ``kaldi`` presets and
#: a typical codec config).  Never derive it at run time: it must not change.
HEADER_DICTIONARY = (
    b'{"drop_last_frame":false,"dynamic_range":null,"f_max":null,"f_min":0.0,"frame_length":400,"hop_lengt'
    b'h":160,"input_scale":1.0,"log":"ln","log_floor":1e-10,"log_offset":0.0,"log_scale":1.0,"mel_norm":nu'
    b'll,"mel_scale":"htk","mel_triangles":"hz","n_fft":512,"n_mels":80,"pad_mode":"reflect","padding":"sn'
    b'ip","periodic_window":false,"power":2.0,"preemphasis":0.97,"preemphasis_scope":"signal","remove_dc":'
    b'false,"sample_rate":16000,"trailing_silence":0,"version":1,"window":"hamming"}{"drop_last_frame":tru'
    b'e,"dynamic_range":8.0,"f_max":null,"f_min":0.0,"frame_length":400,"hop_length":160,"input_scale":1.0'
    b',"log":"log10","log_floor":1e-10,"log_offset":4.0,"log_scale":0.25,"mel_norm":"slaney","mel_scale":"'
    b'slaney","mel_triangles":"hz","n_fft":400,"n_mels":80,"pad_mode":"reflect","padding":"center","period'
    b'ic_window":true,"power":2.0,"preemphasis":0.0,"preemphasis_scope":"signal","remove_dc":false,"sample'
    b'_rate":16000,"trailing_silence":400,"version":1,"window":"hann"}{"drop_last_frame":false,"dynamic_ra'
    b'nge":null,"f_max":null,"f_min":20.0,"frame_length":400,"hop_length":160,"input_scale":32768.0,"log":'
    b'"ln","log_floor":1.1920928955078125e-07,"log_offset":0.0,"log_scale":1.0,"mel_norm":null,"mel_scale"'
    b':"htk","mel_triangles":"mel","n_fft":512,"n_mels":80,"pad_mode":"reflect","padding":"snip","periodic'
    b'_window":false,"power":2.0,"preemphasis":0.97,"preemphasis_scope":"frame","remove_dc":true,"sample_r'
    b'ate":16000,"trailing_silence":0,"version":1,"window":"povey"}'
    b'{"codec":"svd","entropy":"zlib","factor_dtype":"float16","rank":null,"ratio":null,"energy":null}'
)


@dataclass(frozen=True)
class Limits:
    """Safety limits a reader enforces before allocating (docs/format.md, "Limits").

    The defaults let a phone or a server decode any container that passes them in well under 300 MB:
    the features of at most 1 h of audio (360,002 frames, 115 MB at 80 bands) in chunks of at most 5 min.
    Raise them for longer audio (:meth:`for_seconds`).  ``max_expansion`` bounds the bytes a chunk decodes
    to per payload byte (a chunk may always decode to 1 MiB).
    """

    max_header_bytes: int = 64 << 10
    max_chunk_bytes: int = 16 << 20
    max_chunk_frames: int = 30_000
    # frames_for_seconds(3600): 1 h of audio, counted as the presets count it (the whisper preset's centre
    # padding and trailing silence add two frames to 100 per second).
    max_total_frames: int = 360_002
    max_chunks: int = 100_000
    max_decoded_bytes: int = 128 << 20
    max_n_mels: int = 1024
    max_expansion: int = 1 << 20

    @classmethod
    def for_seconds(cls, seconds: float, **changes: Any) -> Limits:
        """Limits admitting the features of ``seconds`` of audio under any preset (as one chunk, too).

        ``changes`` set other fields.  Limits in seconds go through here, so a
        limit of 600 s admits exactly 600 s of audio (60,002 ``whisper`` frames).
        """
        from .config import frames_for_seconds

        frames = frames_for_seconds(seconds)
        return cls(**{"max_total_frames": frames, "max_chunk_frames": frames, **changes})


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Header:
    """A parsed header: the config and codec dicts as stored, and the band count."""

    config: dict[str, Any] | None
    codec: dict[str, Any]
    n_mels: int
    minor: int = MINOR
    size: int = 0  # bytes the header occupies in the container
    skipped: tuple[int, ...] = field(default=())  # optional field tags this reader does not know


@dataclass(frozen=True)
class Chunk:
    n_frames: int
    payload: bytes
    size: int  # bytes the chunk occupies, framing included


@dataclass(frozen=True)
class End:
    n_chunks: int
    n_frames: int


# ------------------------------------------------------------------- writing
def compress_json(obj: Any) -> bytes:
    """Canonical JSON, raw-deflated with :data:`HEADER_DICTIONARY`."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    comp = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=HEADER_DICTIONARY)
    return comp.compress(text) + comp.flush()


def _field(tag: int, value: bytes) -> bytes:
    return _FIELD.pack(tag, len(value)) + value


def header_bytes(config: dict[str, Any] | None, codec: dict[str, Any], n_mels: int) -> bytes:
    """The header record for these dicts (both JSON-serialisable) and band count."""
    fields = (
        _field(TAG_CONFIG, compress_json(config))
        + _field(TAG_CODEC, compress_json(codec))
        + _field(TAG_N_MELS, struct.pack("<H", n_mels))
    )
    body = _PREFIX.pack(MAGIC, MAJOR, MINOR, 0, len(fields)) + fields
    return body + _CRC.pack(zlib.crc32(body))


def chunk_bytes(n_frames: int, payload: bytes, previous: int = 0) -> bytes:
    """One chunk record; ``previous`` is the CRC of the record before it (0: unchained, as in minor 0)."""
    body = _CHUNK.pack(KIND_CHUNK, n_frames, len(payload)) + payload
    return body + _CRC.pack(zlib.crc32(body, previous))


def end_bytes(n_chunks: int, n_frames: int, previous: int = 0) -> bytes:
    """The end record; ``previous`` is the CRC of the record before it (0: unchained, as in minor 0)."""
    body = _END.pack(KIND_END, n_chunks, n_frames)
    return body + _CRC.pack(zlib.crc32(body, previous))


def record_crc(record: bytes) -> int:
    """The CRC stored at the end of a record (the next record's chain value)."""
    return _CRC.unpack_from(record, len(record) - _CRC.size)[0]


class Writer:
    """Writes one container record by record, keeping the counts the end record needs.

    ``write(n_frames, payload)`` returns the bytes of one chunk record (the
    header record first, unless :meth:`start` already returned it); ``close()``
    returns the end record (and the header if nothing was written).  Every encoder (whole features,
    whole audio, streaming) writes through this class, so the framing is made in
    one place.
    """

    def __init__(self, config: dict[str, Any] | None, codec: dict[str, Any], n_mels: int) -> None:
        self._header: bytes | None = header_bytes(config, codec, n_mels)
        self._chain = record_crc(self._header)  # each record's CRC continues from the one before
        self.n_chunks = 0
        self.n_frames = 0
        self.n_bytes = 0  # written so far
        self.payload_bytes = 0  # of which chunk payloads
        self.closed = False

    def start(self) -> bytes:
        """The header record if it has not been written yet, else ``b""`` (a stream sends it at once)."""
        header, self._header = self._header or b"", None
        self.n_bytes += len(header)
        return header

    def write(self, n_frames: int, payload: bytes) -> bytes:
        """The record of one chunk of ``n_frames`` frames (preceded by the header the first time).

        Raises
        ------
        LimitExceededError
            If the chunk has more frames than a reader accepts under the default
            limits: the container would be unreadable by this package.
        """
        if self.closed:
            raise ContainerError("write() after close(): the end record is already written")
        if not 1 <= n_frames <= DEFAULT_LIMITS.max_chunk_frames:
            raise LimitExceededError(
                f"a chunk of {n_frames} frames; readers accept 1 to {DEFAULT_LIMITS.max_chunk_frames} per chunk"
            )
        record = chunk_bytes(n_frames, payload, self._chain)
        self._chain = record_crc(record)
        self.n_chunks += 1
        self.n_frames += n_frames
        self.n_bytes += len(record)
        self.payload_bytes += len(payload)
        return self.start() + record

    def close(self) -> bytes:
        """The end record (preceded by the header if nothing was written); empty when already closed."""
        if self.closed:
            return b""
        self.closed = True
        header, end = self.start(), end_bytes(self.n_chunks, self.n_frames, self._chain)
        self.n_bytes += len(end)
        return header + end


# ------------------------------------------------------------------- reading
_SCALARS = (str, int, float, bool, type(None))


def _decompress_json(data: bytes, what: str, limit: int) -> Any:
    dec = zlib.decompressobj(-15, zdict=HEADER_DICTIONARY)
    try:
        text = dec.decompress(data, limit)
    except zlib.error as exc:
        raise CorruptContainerError(f"header {what} field does not inflate: {exc}") from None
    if dec.unconsumed_tail:
        raise LimitExceededError(f"header {what} field inflates to more than {limit} bytes")
    if not dec.eof or dec.unused_data:
        raise CorruptContainerError(f"header {what} field is not one complete deflate stream")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, an over-long integer, deep nesting
        raise CorruptContainerError(f"header {what} field is not valid JSON: {str(exc)[:200]}") from None
    if isinstance(value, dict) and not all(isinstance(v, _SCALARS) for v in value.values()):
        raise CorruptContainerError(f"header {what} field holds nested values; expected an object of scalars")
    return value


def _parse_fields(area: bytes, limits: Limits) -> tuple[dict[int, bytes], tuple[int, ...]]:
    fields: dict[int, bytes] = {}
    skipped: list[int] = []
    pos = 0
    while pos < len(area):
        if len(area) - pos < _FIELD.size:
            raise CorruptContainerError("header field area ends inside a field")
        tag, size = _FIELD.unpack_from(area, pos)
        pos += _FIELD.size
        if size > len(area) - pos:
            raise CorruptContainerError(f"header field 0x{tag:02x} declares {size} bytes, {len(area) - pos} remain")
        if tag in fields or tag in skipped:
            raise CorruptContainerError(f"header field 0x{tag:02x} appears twice")
        if tag in _REQUIRED_TAGS:
            fields[tag] = area[pos : pos + size]
        elif tag >= _OPTIONAL_TAG_MIN:
            skipped.append(tag)
        else:
            raise UnsupportedVersionError(f"header field 0x{tag:02x} is required but unknown to this reader")
        pos += size
    missing = [f"0x{t:02x}" for t in _REQUIRED_TAGS if t not in fields]
    if missing:
        raise CorruptContainerError(f"header lacks required field(s) {missing}")
    return fields, tuple(skipped)


class Reader:
    """Incremental container parser: feed bytes, get records.

    ``feed(data)`` returns the records completed by ``data``: first a
    :class:`Header`, then :class:`Chunk` s, then one :class:`End`.  Bytes after
    the end record, counts that disagree, checksum failures and sizes beyond
    the limits raise :class:`ContainerError` subclasses.  Memory is bounded by
    the largest record the limits allow.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self.header: Header | None = None
        self.ended = False
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf already consumed (compacted after each feed)
        self._chunks = 0
        self._frames = 0
        self._offset = 0  # container bytes consumed before _buf[0]
        self._chain = 0  # initial CRC of the next record: the previous record's CRC from minor 1 on

    def feed(self, data: bytes) -> list[Header | Chunk | End]:
        """Parse more bytes; return the records they complete.

        Raises
        ------
        ContainerError
            (or a subclass) for anything wrong; any other exception while parsing is a bug, turned into a
            :class:`CorruptContainerError` that names the record, so no builtin escapes to a caller.
        """
        if data and self.ended:
            raise CorruptContainerError("bytes after the end record")
        out: list[Header | Chunk | End] = []
        try:
            self._buf += data
            while (record := self._next()) is not None:
                out.append(record)
        except ContainerError:
            raise
        except Exception as exc:
            where = "the header" if self.header is None else f"record {self._chunks + 1}"
            raise CorruptContainerError(
                f"{where} at byte {self._offset + self._pos} could not be read ({type(exc).__name__}: {exc})"
            ) from exc
        finally:
            self._offset += self._pos
            del self._buf[: self._pos]
            self._pos = 0
        return out

    def _pending(self) -> int:
        return len(self._buf) - self._pos

    def _peek(self, n: int) -> bytes:
        with memoryview(self._buf) as view:  # one copy (slicing the bytearray first would make two)
            return bytes(view[self._pos : self._pos + n])

    def close(self) -> None:
        """Declare the input finished; raises if the container is incomplete."""
        if self._pending() and not self.ended:
            raise CorruptContainerError(f"container truncated: {self._pending()} bytes of an incomplete record")
        if self.header is None:
            raise CorruptContainerError("container truncated: no complete header")
        if not self.ended:
            raise CorruptContainerError("container truncated: no end record")

    def _take(self, n: int) -> bytes:
        data = self._peek(n)
        self._pos += n
        return data

    def _next(self) -> Header | Chunk | End | None:
        if self.ended:
            if self._pending():
                raise CorruptContainerError("bytes after the end record")
            return None
        if self.header is None:
            return self._read_header()
        if not self._pending():
            return None
        kind = self._buf[self._pos]
        if kind == KIND_CHUNK:
            return self._read_chunk()
        if kind == KIND_END:
            return self._read_end()
        raise CorruptContainerError(f"unknown record kind 0x{kind:02x}; expected a chunk (0x43) or the end (0x45)")

    def _read_header(self) -> Header | None:
        lim = self.limits
        head = self._peek(min(4, self._pending()))
        if head != MAGIC[: len(head)]:
            raise ContainerError(f"not an amser container: it starts with {head!r}, expected {MAGIC!r}")
        if self._pending() < _PREFIX.size:
            return None
        _, major, minor, flags, length = _PREFIX.unpack_from(self._buf, self._pos)
        if major != MAJOR:
            raise UnsupportedVersionError(
                f"container format {major}.{minor} is not supported; this reader reads {MAJOR}.x"
            )
        if flags:
            raise CorruptContainerError(f"header flags 0x{flags:04x} are reserved and must be 0")
        if length > lim.max_header_bytes:
            raise LimitExceededError(f"header declares {length} bytes, over the limit of {lim.max_header_bytes}")
        total = _PREFIX.size + length + _CRC.size
        if self._pending() < total:
            return None
        raw = self._take(total)
        (crc,) = _CRC.unpack_from(raw, total - _CRC.size)
        if zlib.crc32(raw[: total - _CRC.size]) != crc:
            raise CorruptContainerError("header checksum mismatch: the header is damaged")
        self._chain = crc if minor >= CHAINED_MINOR else 0
        fields, skipped = _parse_fields(raw[_PREFIX.size : total - _CRC.size], lim)
        config = _decompress_json(fields[TAG_CONFIG], "config", lim.max_header_bytes)
        codec = _decompress_json(fields[TAG_CODEC], "codec", lim.max_header_bytes)
        if config is not None and not isinstance(config, dict):
            raise CorruptContainerError("header config field is neither an object nor null")
        if not isinstance(codec, dict) or not isinstance(codec.get("codec"), str):
            raise CorruptContainerError("header codec field is not an object with a 'codec' name")
        if len(fields[TAG_N_MELS]) != 2:
            raise CorruptContainerError("header n_mels field is not 2 bytes")
        (n_mels,) = struct.unpack("<H", fields[TAG_N_MELS])
        if n_mels == 0:
            raise CorruptContainerError("header declares 0 Mel bands; features have at least 1")
        if n_mels > lim.max_n_mels:
            raise LimitExceededError(f"header declares {n_mels} Mel bands; allowed 1 to {lim.max_n_mels}")
        self.header = Header(config=config, codec=codec, n_mels=n_mels, minor=minor, size=total, skipped=skipped)
        return self.header

    def _read_chunk(self) -> Chunk | None:
        lim = self.limits
        if self._pending() < _CHUNK.size:
            return None
        _, n_frames, length = _CHUNK.unpack_from(self._buf, self._pos)
        if length > lim.max_chunk_bytes:
            raise LimitExceededError(f"chunk declares {length} payload bytes, over the limit of {lim.max_chunk_bytes}")
        if n_frames == 0:
            raise CorruptContainerError("chunk declares 0 frames; a chunk holds at least 1")
        if self._frames + n_frames > lim.max_total_frames:
            raise TooLongError(f"container has more than {lim.max_total_frames} frames")
        if n_frames > lim.max_chunk_frames:
            raise LimitExceededError(f"chunk declares {n_frames} frames; allowed 1 to {lim.max_chunk_frames}")
        if self._chunks + 1 > lim.max_chunks:
            raise LimitExceededError(f"container has more than {lim.max_chunks} chunks")
        assert self.header is not None  # chunks come after the header
        decoded = 4 * self.header.n_mels * n_frames
        if 4 * self.header.n_mels * (self._frames + n_frames) > lim.max_decoded_bytes:
            raise TooLongError(
                f"container decodes to more than {lim.max_decoded_bytes} bytes (limit max_decoded_bytes)"
            )
        if decoded > max(1 << 20, lim.max_expansion * length):
            raise LimitExceededError(
                f"chunk {self._chunks} of {length} payload bytes claims {n_frames} frames ({decoded} bytes decoded): "
                f"over the expansion limit of {lim.max_expansion} per byte"
            )
        total = _CHUNK.size + length + _CRC.size
        if self._pending() < total:
            return None
        raw = self._take(total)
        (crc,) = _CRC.unpack_from(raw, total - _CRC.size)
        if zlib.crc32(memoryview(raw)[: total - _CRC.size], self._chain) != crc:
            raise CorruptContainerError(f"chunk {self._chunks} checksum mismatch: {self._damage()}")
        self._chain = crc if self._chain_on() else 0
        self._chunks += 1
        self._frames += n_frames
        return Chunk(n_frames=n_frames, payload=raw[_CHUNK.size : total - _CRC.size], size=total)

    def _chain_on(self) -> bool:
        return self.header is not None and self.header.minor >= CHAINED_MINOR

    def _damage(self) -> str:
        if self._chain_on():
            return (
                "the record is damaged, or out of order (a chunk moved, dropped, duplicated or from another container)"
            )
        return "the record is damaged"

    def _read_end(self) -> End | None:
        if self._pending() < _END.size + _CRC.size:
            return None
        raw = self._take(_END.size + _CRC.size)
        (crc,) = _CRC.unpack_from(raw, _END.size)
        if zlib.crc32(raw[: _END.size], self._chain) != crc:
            raise CorruptContainerError(f"end record checksum mismatch: {self._damage()}")
        _, n_chunks, n_frames = _END.unpack_from(raw)
        if (n_chunks, n_frames) != (self._chunks, self._frames):
            raise CorruptContainerError(
                f"end record says {n_chunks} chunks / {n_frames} frames, read {self._chunks} / {self._frames}"
            )
        self.ended = True
        if self._pending():
            raise CorruptContainerError("bytes after the end record")
        return End(n_chunks=n_chunks, n_frames=n_frames)


def read_all(blob: bytes, limits: Limits | None = None) -> tuple[Header, list[Chunk], End]:
    """Parse a complete container held in memory."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ContainerError(f"container must be bytes, got {type(blob).__name__}")
    reader = Reader(limits)
    records = reader.feed(bytes(blob))
    reader.close()
    header, end = records[0], records[-1]
    if not isinstance(header, Header) or not isinstance(end, End):  # close() guarantees both
        raise CorruptContainerError("container is incomplete")
    return header, [r for r in records if isinstance(r, Chunk)], end
