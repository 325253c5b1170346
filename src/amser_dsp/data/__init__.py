"""Data shipped with amser_dsp: one short LibriSpeech clip for demos and tests."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["sample_path", "sample_transcript"]


def sample_path() -> Path:
    """Path of the bundled clip (LibriSpeech 1089-134686-0001, 16 kHz FLAC, CC BY 4.0)."""
    return Path(str(files(__name__).joinpath("sample.flac")))


def sample_transcript() -> str:
    """Official LibriSpeech transcript of the bundled clip (upper case, no punctuation)."""
    return files(__name__).joinpath("sample.txt").read_text(encoding="utf-8").strip()
