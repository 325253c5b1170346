"""Measure the payload size and error of every codec mode on a directory of audio.

Usage::

    python -m amser_dsp.tools.codec_sizes [DATA_DIR] [--presets whisper amser] [--markdown]

Every audio file under ``DATA_DIR`` (default ``../shared/data/asr``) is loaded at
16 kHz, turned into features with each preset, encoded as one container per
clip with each mode, and decoded.  Sizes are whole container bytes (header and
framing included) over total audio seconds; errors are the RMSE and the
relative Frobenius error of the decoded features over all clips.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import amser_dsp

PCM_KBPS = 256.0
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3")

#: (label, encode keyword arguments)
MODES: list[tuple[str, dict]] = [
    ("ratio 0.125 float32 none", {"ratio": 0.125, "factor_dtype": "float32", "entropy": None}),
    ("ratio 0.125 float32 zlib", {"ratio": 0.125, "factor_dtype": "float32", "entropy": "zlib"}),
    ("ratio 0.125 float16 none", {"ratio": 0.125, "factor_dtype": "float16", "entropy": None}),
    ("ratio 0.125 float16 zlib", {"ratio": 0.125, "factor_dtype": "float16", "entropy": "zlib"}),
    ("ratio 0.125 float16 zstd", {"ratio": 0.125, "factor_dtype": "float16", "entropy": "zstd"}),
    ("ratio 0.125 int8 none", {"ratio": 0.125, "factor_dtype": "int8", "entropy": None}),
    ("ratio 0.125 int8 zlib", {"ratio": 0.125, "factor_dtype": "int8", "entropy": "zlib"}),
    ("ratio 0.125 int8 zstd", {"ratio": 0.125, "factor_dtype": "int8", "entropy": "zstd"}),
    ("rank 20 int8 zstd", {"rank": 20, "factor_dtype": "int8", "entropy": "zstd"}),
    ("rank 20 float16 zlib", {"rank": 20, "factor_dtype": "float16", "entropy": "zlib"}),
    ("energy 0.99 int8 zlib", {"energy": 0.99, "factor_dtype": "int8", "entropy": "zlib"}),
    ("full rank float32 zlib", {"ratio": 1.0, "factor_dtype": "float32", "entropy": "zlib"}),
]


def measure(data_dir: Path, presets: list[str]) -> list[dict]:
    """Rows of measurements, one per (preset, mode)."""
    files = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise SystemExit(f"no audio files under {data_dir}")
    audio = [amser_dsp.load_audio(p) for p in files]
    seconds = sum(a.size for a in audio) / 16000
    rows = []
    for preset in presets:
        feats = [amser_dsp.features(a, 16000, preset, backend="numpy") for a in audio]
        ref_sq = sum(float(np.sum(f.astype(np.float64) ** 2)) for f in feats)
        n_values = sum(f.size for f in feats)
        for label, kwargs in MODES:
            total = 0
            err_sq = 0.0
            t0 = time.perf_counter()
            for f in feats:
                blob = amser_dsp.encode(f, config=preset, **kwargs)
                total += len(blob)
                d = amser_dsp.decode(blob)
                err_sq += float(np.sum((d.astype(np.float64) - f) ** 2))
            kbps = total * 8 / seconds / 1000
            rows.append(
                {
                    "preset": preset,
                    "mode": label,
                    "clips": len(files),
                    "seconds": seconds,
                    "bytes_per_s": total / seconds,
                    "kbps": kbps,
                    "pcm_percent": 100 * kbps / PCM_KBPS,
                    "rmse": (err_sq / n_values) ** 0.5,
                    "rel_frobenius": (err_sq / ref_sq) ** 0.5,
                    "codec_seconds": time.perf_counter() - t0,
                }
            )
            print(f"{preset:8s} {label:26s} {rows[-1]['pcm_percent']:6.2f}%", file=sys.stderr)
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| preset | mode | bytes/audio-s | kbps | % of 16-bit PCM | RMSE | rel. Frobenius |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['mode']} | {r['bytes_per_s']:.0f} | {r['kbps']:.2f} | "
            f"{r['pcm_percent']:.2f}% | {r['rmse']:.4f} | {r['rel_frobenius']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", default="../shared/data/asr", type=Path)
    parser.add_argument("--presets", nargs="+", default=["whisper", "amser"])
    args = parser.parse_args(argv)
    rows = measure(args.data_dir, args.presets)
    print(f"{rows[0]['clips']} clips, {rows[0]['seconds']:.1f} s of audio; paper: 6.25% of PCM (16 kbps)\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
