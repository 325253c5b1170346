"""Long recordings made of the shared clips: the long-form set of ``amser eval-asr`` and benchmarks/longform.py.

Whisper reads 30 s at a time; every clip of the shared ASR set is shorter.  A
long recording here is consecutive clips of the manifest, in manifest order,
joined end to end (whole clips only), with the clips' reference texts joined
the same way.  The set is fixed by the manifest: the same recordings on every
machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import AmserError
from ...io import load_audio
from .modes import SAMPLE_RATE, Clip

__all__ = ["LONG_SECONDS", "LongRecording", "long_recordings", "recording_clips"]

#: Lengths of the long-form set's recordings, in seconds (each at most this, whole clips): consecutive runs
#: of 2, 3 and 5 minutes, then the first 10 minutes again as one recording.
LONG_SECONDS = (120.0, 180.0, 300.0, 600.0)


@dataclass(frozen=True)
class LongRecording:
    """Clips joined end to end: the recording's id, its clips, its reference text."""

    id: str
    clips: tuple[Clip, ...]

    @property
    def text(self) -> str:
        return " ".join(c.text for c in self.clips)

    def audio(self, cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The clips' audio joined (16 kHz mono float32); ``cache`` keeps each clip's audio between calls."""
        cache = {} if cache is None else cache
        for c in self.clips:
            if c.id not in cache:
                cache[c.id] = load_audio(c.path, sample_rate=SAMPLE_RATE)
        return np.concatenate([cache[c.id] for c in self.clips])

    @property
    def seconds(self) -> float:
        import soundfile as sf

        return sum(sf.info(str(c.path)).frames for c in self.clips) / SAMPLE_RATE


def long_recordings(clips: Sequence[Clip], lengths: Sequence[float] = LONG_SECONDS) -> list[LongRecording]:
    """Recordings of at most ``lengths[i]`` seconds each, of consecutive whole clips in manifest order.

    The recordings follow one another through the manifest; when a length is longer than
    the clips left, that recording starts again from the first clip.

    Raises
    ------
    AmserError
        If a recording would hold no clip (a length shorter than the clip at its start).
    """
    import soundfile as sf

    seconds = [sf.info(str(c.path)).frames / SAMPLE_RATE for c in clips]
    out: list[LongRecording] = []
    at = 0
    for length in lengths:
        if sum(seconds[at:]) < length:
            at = 0
        taken, total = [], 0.0
        while at < len(clips) and total + seconds[at] <= length:
            taken.append(clips[at])
            total += seconds[at]
            at += 1
        if not taken:
            raise AmserError(f"no whole clip fits a recording of {length:g} s")
        out.append(LongRecording(f"long-{len(out) + 1}-{total / 60:.1f}min", tuple(taken)))
    return out


def recording_clips(recordings: Sequence[LongRecording], folder: Path) -> list[Clip]:
    """Each recording as a :class:`Clip` of its own: its audio written once as FLAC under ``folder``.

    The evaluation (and the Opus round trip, which reads a file) then treats a recording as one clip.
    """
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    cache: dict[str, np.ndarray] = {}
    out = []
    for r in recordings:
        ids = hashlib.sha256("\n".join(c.id for c in r.clips).encode()).hexdigest()[:10]
        path = folder / f"{r.id}-{ids}.flac"  # named by its clips: another manifest never reuses it
        if not path.exists():
            tmp = path.with_name(f".{path.name}.part")
            sf.write(str(tmp), r.audio(cache), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            tmp.replace(path)
        out.append(Clip(r.id, path, r.text, "long"))
    return out
