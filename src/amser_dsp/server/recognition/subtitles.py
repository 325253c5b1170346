"""Transcript segments as subtitle files: SubRip (``.srt``) and WebVTT (``.vtt``), as Whisper's own CLI writes them."""

from __future__ import annotations

from collections.abc import Sequence

from .longform import Segment

__all__ = ["srt", "timestamp", "vtt"]


def timestamp(seconds: float, decimal: str) -> str:
    """``HH:MM:SS,mmm`` (SubRip, ``decimal=","``) or ``HH:MM:SS.mmm`` (WebVTT, ``"."``); never negative."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _cues(segments: Sequence[Segment], decimal: str) -> list[str]:
    cues = []
    for s in segments:
        text = " ".join(s.text.split())  # a line break would end the cue
        if text:
            cues.append(f"{timestamp(s.start, decimal)} --> {timestamp(max(s.end, s.start), decimal)}\n{text}\n")
    return cues


def srt(segments: Sequence[Segment]) -> str:
    """A SubRip document: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    return "\n".join(f"{i}\n{cue}" for i, cue in enumerate(_cues(segments, ","), 1))


def vtt(segments: Sequence[Segment]) -> str:
    """A WebVTT document: the ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``."""
    return "\n".join(["WEBVTT\n", *_cues(segments, ".")])
