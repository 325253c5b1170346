"""Audio input through soundfile, resampled with scipy.

Audio files come from users and from the network, so everything a header
declares is checked before it costs anything: the sample rate against
:data:`MIN_SAMPLE_RATE` .. :data:`MAX_SAMPLE_RATE` (the resampler's filter grows
with the rate), the duration against a caller's ``max_seconds``, and the
samples are read in blocks, so a header that claims more than the file holds
allocates nothing beyond what is there.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from typing import Any, BinaryIO

import numpy as np

from .errors import AmserWarning, AudioError, TooLongError

__all__ = [
    "AUDIO_SUFFIXES",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "AudioHeader",
    "audio_header",
    "load_audio",
    "resample_factors",
    "resampled_length",
]

#: The file names the commands take as audio when they list a folder (what libsndfile reads).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".mp3")
#: Lowest sample rate accepted from a file (narrow-band telephone speech), Hz.
MIN_SAMPLE_RATE = 8_000
#: Highest sample rate accepted from a file or as a target (studio audio), Hz.  Resampling from a rate
#: ``r`` builds a filter of about ``20 r / gcd(r, 16000)`` taps: 3.8 M taps (31 MB) at 192 kHz, but 20 G
#: (and a ``MemoryError``) for a header that declares 1 GHz.
MAX_SAMPLE_RATE = 192_000
#: Largest up or down factor of the polyphase resampler.  Its filter has about 20 times that many taps:
#: every common rate stays exact (44.1 kHz: 160 / 441, 11.025 kHz: 640 / 441), while 191,999 Hz (16,000 /
#: 191,999) took 1.5 s of CPU and 290 MB for a tenth of a second of audio.  Other rates are resampled by the
#: nearest ratio within the bound: at most 0.05% off (to 16 kHz), under a cent of pitch, which no feature resolves.
MAX_RESAMPLE_FACTOR = 1000
#: Samples read (and mixed down) per block: a header that claims more frames than the file holds costs
#: at most one block beyond the samples present.
BLOCK_SAMPLES = 1 << 20
#: A WAV data chunk at least this long is a streaming writer's placeholder (``arecord``
#: on a pipe writes 0x7fffff00, others 0xffffffff): the writer could not go back to fill in the length.
_UNKNOWN_LENGTH = 0x7FFF0000
#: Formats whose header states the exact frame count (FLAC's STREAMINFO); libsndfile caps a
#: WAV's count at the bytes present, so WAV is checked from its data chunk instead.
_EXACT_LENGTH = frozenset({"FLAC"})


@dataclass(frozen=True)
class AudioHeader:
    """What an audio file's header declares: sample rate (Hz), channels, frames (samples per channel)."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def _name(source: str | os.PathLike[str] | BinaryIO) -> str | None:
    """The file's name for messages (None for a file object without one: the caller names it)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else None


def _reason(exc: Exception) -> str:
    """libsndfile's own words, without soundfile's prefix (which repeats the file object's repr)."""
    return str(getattr(exc, "error_string", None) or exc)


class _Guarded:
    """A file object for libsndfile's virtual I/O whose calls never raise.

    libsndfile asks a hostile file for impossible seeks (before its start);
    ``BytesIO`` raises, and an exception inside soundfile's C callbacks is
    printed by Python as "Exception ignored from cffi callback" noise on
    stderr.  A seek or read that fails here leaves the position where it was
    and reads nothing, as a failed ``fseek`` / ``fread`` would.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._fh.seek(offset, whence)
        except (OSError, ValueError, OverflowError):
            return self._fh.tell()

    def tell(self) -> int:
        return self._fh.tell()

    def read(self, n: int = -1) -> bytes:
        try:
            return self._fh.read(n)
        except (OSError, ValueError, OverflowError):
            return b""


@contextmanager
def _opened(source: str | os.PathLike[str] | BinaryIO) -> Iterator[tuple[Any, AudioHeader]]:
    """The open ``soundfile.SoundFile`` and its checked header."""
    import soundfile as sf

    name = _name(source)
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise AudioError(f"audio file not found: {name}")
    try:
        fh = sf.SoundFile(source if isinstance(source, (str, os.PathLike)) else _Guarded(source))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(
            f"cannot read audio{f' from {name}' if name else ''}: {_reason(exc)} "
            "(expected WAV, FLAC, Ogg Vorbis/Opus, AIFF, ...)"
        ) from None
    with fh:
        header = AudioHeader(int(fh.samplerate), int(fh.channels), max(0, int(fh.frames)))
        if not MIN_SAMPLE_RATE <= header.sample_rate <= MAX_SAMPLE_RATE:
            raise AudioError(
                f"{name or 'the audio'} declares a sample rate of {header.sample_rate} Hz; "
                f"accepted are {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz"
            )
        if header.channels < 1:
            raise AudioError(f"{name or 'the audio'} declares {header.channels} channels")
        yield fh, header


def audio_header(source: str | os.PathLike[str] | BinaryIO) -> AudioHeader:
    """Read and check an audio file's header without decoding its samples.

    Raises
    ------
    AudioError
        If the file is missing, not audio libsndfile reads, or declares a
        sample rate outside :data:`MIN_SAMPLE_RATE` .. :data:`MAX_SAMPLE_RATE`.
    """
    with _opened(source) as (_, header):
        return header


def _wav_data_bytes(source: str | os.PathLike[str] | BinaryIO) -> tuple[int, int]:
    """Bytes a WAV file's data chunk declares and bytes present after its start ((0, 0) if not a WAV).

    libsndfile quietly reads what is there when the two disagree; the caller
    warns.  A streaming writer's placeholder length counts as no declaration.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fh:
            return _riff_data_bytes(fh)
    seekable = getattr(source, "seekable", None)
    if seekable is None or not seekable():
        return 0, 0
    pos = source.tell()
    try:
        source.seek(0)
        return _riff_data_bytes(source)
    finally:
        source.seek(pos)


def _riff_data_bytes(fh: BinaryIO) -> tuple[int, int]:
    head = fh.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return 0, 0
    order = "<" if head[:4] == b"RIFF" else ">"
    for _ in range(64):  # the chunks before the data (fmt, fact, LIST, ...): a few in real files
        chunk = fh.read(8)
        if len(chunk) < 8:
            return 0, 0
        (size,) = struct.unpack(order + "I", chunk[4:])
        if chunk[:4] == b"data":
            if size >= _UNKNOWN_LENGTH:
                return 0, 0
            start = fh.tell()
            return size, fh.seek(0, os.SEEK_END) - start
        fh.seek(size + (size & 1), os.SEEK_CUR)
    return 0, 0


def load_audio(
    source: str | os.PathLike[str] | BinaryIO,
    sample_rate: int | None = 16_000,
    *,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Read an audio file as mono float32 samples at ``sample_rate``.

    Parameters
    ----------
    source : path or binary file object
        Anything libsndfile reads: WAV, FLAC, OGG/Vorbis, OGG/Opus, AIFF, ...
    sample_rate : int or None
        Target rate in Hz (at most :data:`MAX_SAMPLE_RATE`); the file is
        resampled with :func:`scipy.signal.resample_poly` if it differs.
        ``None`` keeps the file's own rate.
    max_seconds : float, optional
        Refuse audio longer than this, from its header before decoding (and
        while reading, whatever the header says).  Default: no limit.

    Returns
    -------
    ndarray
        1-D float32.  Integer PCM is scaled to [-1, 1) (divided by 2**15 for
        16-bit); several channels are averaged to one.

    Raises
    ------
    AudioError
        If the file is missing, unreadable, not audio, holds no samples, or its
        header declares a sample rate outside :data:`MIN_SAMPLE_RATE` ..
        :data:`MAX_SAMPLE_RATE` (checked before anything is decoded).
    LimitExceededError
        If the audio lasts longer than ``max_seconds``.

    Warns
    -----
    AmserWarning
        If the header declares more samples than the file holds (a recording
        cut short: a full disk, an interrupted copy): the samples present are
        returned.  Streaming writers' placeholder lengths (``arecord`` on a
        pipe) are not warned about.
    """
    import soundfile as sf

    if sample_rate is not None and (
        isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 0 < sample_rate <= MAX_SAMPLE_RATE
    ):
        raise AudioError(
            f"sample_rate must be a positive integer in Hz (at most {MAX_SAMPLE_RATE}) or None, got {sample_rate!r}"
        )
    if max_seconds is not None and not max_seconds > 0:
        raise AudioError(f"max_seconds must be positive or None, got {max_seconds!r}")
    name = _name(source) or "the audio"
    with _opened(source) as (fh, header):
        exact_length = fh.format in _EXACT_LENGTH
        limit = None if max_seconds is None else int(max_seconds * header.sample_rate)
        if limit is not None and header.frames > limit:
            raise TooLongError(f"{name} lasts {header.seconds:.1f} s; the limit is {max_seconds:g} s")
        block = max(1, BLOCK_SAMPLES // header.channels)
        parts: list[np.ndarray] = []
        n_read = 0
        while True:
            try:
                data = fh.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                raise AudioError(f"cannot decode the samples of {name}: {_reason(exc)}") from None
            if data.shape[0]:
                parts.append(data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0].copy())
                n_read += data.shape[0]
            if limit is not None and n_read > limit:
                raise TooLongError(f"{name} lasts more than the limit of {max_seconds:g} s")
            if data.shape[0] < block:
                break
    if n_read == 0:
        raise AudioError(f"{name} holds no samples")
    declared = header.frames if exact_length else n_read
    data_bytes, present_bytes = _wav_data_bytes(source)
    if data_bytes > present_bytes > 0:
        declared = max(declared, round(n_read * data_bytes / present_bytes))
    if declared > n_read:
        rate = header.sample_rate
        warnings.warn(
            f"its header declares {declared / rate:.2f} s of audio but the file holds {n_read / rate:.2f} s "
            "(cut short?): using what is there",
            AmserWarning,
            stacklevel=2,
        )
    samples = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if sample_rate is not None and header.sample_rate != sample_rate:
        from scipy.signal import resample_poly

        up, down = resample_factors(header.sample_rate, sample_rate)
        samples = resample_poly(samples, up, down).astype(np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


def resample_factors(file_rate: int, sample_rate: int) -> tuple[int, int]:
    """The up and down factors :func:`load_audio` resamples with (both at most :data:`MAX_RESAMPLE_FACTOR`)."""
    g = gcd(file_rate, sample_rate)
    up, down = sample_rate // g, file_rate // g
    if max(up, down) <= MAX_RESAMPLE_FACTOR:
        return up, down
    exact = Fraction(sample_rate, file_rate)
    limit = MAX_RESAMPLE_FACTOR if exact <= 1 else max(1, int(MAX_RESAMPLE_FACTOR / exact))
    while True:  # limit_denominator bounds the denominator only: lower it until the numerator fits too
        ratio = exact.limit_denominator(limit)
        if ratio.numerator <= MAX_RESAMPLE_FACTOR:
            return ratio.numerator, ratio.denominator
        limit -= 1


def resampled_length(n_samples: int, file_rate: int, sample_rate: int | None) -> int:
    """Samples :func:`load_audio` returns for ``n_samples`` at ``file_rate`` (resample_poly's output length)."""
    if sample_rate is None or file_rate == sample_rate:
        return n_samples
    up, down = resample_factors(file_rate, sample_rate)
    return -(-n_samples * up // down)
