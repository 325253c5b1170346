"""Payload size and reconstruction error of every codec mode on ../shared/data/asr (docs/codec.md).

    python benchmarks/codec_sizes.py [--preset whisper] [--limit N]

Sizes are whole containers (header, chunk framing and checksums included),
one container per clip, summed over clips and divided by the audio duration.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

import amser_dsp

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "asr"

MODES: list[tuple[str, dict]] = [
    ("raw float32", {"codec": {"codec": "raw", "dtype": "float32"}}),
    ("raw float16", {"codec": {"codec": "raw", "dtype": "float16"}}),
    *[
        (
            f"svd ratio {r} float16 (paper: 0.125)" if r == 0.125 else f"svd ratio {r} float16",
            {"ratio": r, "factor_dtype": "float16"},
        )
        for r in (0.0625, 0.125, 0.25, 0.5)
    ],
    *[(f"svd ratio {r} int8", {"ratio": r, "factor_dtype": "int8"}) for r in (0.0625, 0.125, 0.25, 0.5)],
    ("svd ratio 0.125 int8 zstd", {"ratio": 0.125, "factor_dtype": "int8", "entropy": "zstd"}),
    ("svd ratio 0.125 float16 no entropy", {"ratio": 0.125, "factor_dtype": "float16", "entropy": None}),
    ("svd rank 14 int8 (the default before kltdct)", {"rank": 14, "factor_dtype": "int8"}),
    ("svd rank 20 int8", {"rank": 20, "factor_dtype": "int8"}),
    ("svd energy 0.999 int8", {"energy": 0.999, "factor_dtype": "int8"}),
    ("svd full rank float32", {"ratio": 1.0, "factor_dtype": "float32"}),
    *[(f"kltdct step {i}", {"codec": {"codec": "kltdct", "step": i}}) for i in (-24, -16, -8, 0, 8, 16)],
    ("kltdct step -4 (default)", {}),
    *[(f"kltdct kbps={k}", {"kbps": k}) for k in (2.0, 4.0, 8.0)],
    ("kltdct quality=0.07", {"quality": 0.07}),
]

#: Streaming: seconds of audio per container chunk (the added latency) for the kltdct codec.
CHUNK_SECONDS = (0.16, 0.32, 0.5, 1.0, 2.0, 5.0, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="whisper")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--streaming", action="store_true", help="kltdct size against chunk length (latency) instead")
    args = parser.parse_args(argv)
    with (DATA / "manifest.tsv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))[: args.limit]
    audio = [amser_dsp.load_audio(DATA / r["path"]) for r in rows]
    seconds = sum(len(a) for a in audio) / 16000
    if args.streaming:
        return streaming(audio, seconds)
    feats = [amser_dsp.features(a, 16000, args.preset) for a in audio]
    print(f"{len(rows)} clips, {seconds / 60:.1f} min, preset {args.preset}; 16-bit 16 kHz PCM is 256 kbps\n")
    print("| mode | bytes per audio-s | kbps | % of PCM | RMSE | relative error |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, kwargs in MODES:
        try:
            blobs = [amser_dsp.encode(f, config=args.preset, **kwargs) for f in feats]
        except amser_dsp.CodecError as exc:  # e.g. zstd not installed
            print(f"| {name} | skipped: {str(exc).split(';')[0]} | | | | |")
            continue
        n = sum(len(b) for b in blobs)
        err = sum(float(((amser_dsp.decode(b) - f) ** 2).sum()) for b, f in zip(blobs, feats, strict=True))
        energy = sum(float((f.astype(np.float64) ** 2).sum()) for f in feats)
        count = sum(f.size for f in feats)
        print(
            f"| {name} | {n / seconds:,.0f} | {n * 8 / seconds / 1000:.2f} | {100 * n / (32000 * seconds):.2f} | "
            f"{math.sqrt(err / count):.4f} | {math.sqrt(err / energy):.4f} |"
        )
    return 0


def streaming(audio: list[np.ndarray], seconds: float) -> int:
    """kltdct container size when streamed in chunks of N seconds (the latency the chunking adds)."""
    print(f"{len(audio)} clips, {seconds / 60:.1f} min, whisper preset, kltdct\n")
    print("| chunk (added latency) | step 0 kbps | kbps=4 target: kbps | RMSE step 0 |")
    print("|---|---:|---:|---:|")
    for chunk in CHUNK_SECONDS:
        sizes, err, count = [], 0.0, 0
        for params in ({"codec": {"codec": "kltdct", "step": 0}}, {"kbps": 4.0}):
            blobs = [amser_dsp.encode_audio(a, "whisper", chunk_seconds=chunk, **params) for a in audio]
            sizes.append(sum(len(b) for b in blobs) * 8 / seconds / 1000)
            if len(sizes) == 1:
                for a, b in zip(audio, blobs, strict=True):
                    ref = amser_dsp.encode_audio(
                        a, "whisper", chunk_seconds=chunk, codec={"codec": "raw", "dtype": "float32"}
                    )
                    err += float(((amser_dsp.decode(b) - amser_dsp.decode(ref)) ** 2).sum())
                    count += amser_dsp.decode(ref).size
        label = "whole clip" if chunk is None else f"{chunk * 1000:.0f} ms"
        print(f"| {label} | {sizes[0]:.2f} | {sizes[1]:.2f} | {math.sqrt(err / count):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
