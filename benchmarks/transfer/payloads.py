"""What a device would upload for one clip, made on this CPU with its encoding time measured.

Methods (the name is the key everywhere in the benchmark):

=============  ==================================================================  ===========
name           payload                                                             server path
=============  ==================================================================  ===========
``wav``        16-bit PCM WAV, 16 kHz mono (soundfile)                             audio
``flac``       FLAC, 16-bit, 16 kHz mono (soundfile, libFLAC's default level 5)    audio
``opus16``     Ogg Opus 16 kbps, VoIP tuning (ffmpeg libopus; as ``amser eval-asr``)  audio
``opus24``     Ogg Opus 24 kbps, same                                              audio
``amser``      container, whisper preset, default codec (kltdct)                   container
``amser-2k``   container, kltdct at ``kbps=2``                                     container
``svd-paper``  container, SVD ``ratio=0.125``, float16 factors (the paper's)       container
=============  ==================================================================  ===========

The device is assumed to hold the recording as 16 kHz float samples (a
microphone buffer): encoding time is the CPU time from those samples to the
payload bytes (features included for containers), measured with
``time.process_time`` in this process, one thread.  Opus runs in an ffmpeg
child process; its CPU time (``RUSAGE_CHILDREN``) includes ffmpeg's start-up
(tens of ms), which an in-process libopus would not pay: an upper bound.
"""

from __future__ import annotations

import csv
import io
import json
import resource
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import amser_dsp
from amser_dsp import backends

__all__ = [
    "AUDIO_METHODS",
    "CONTAINER_METHODS",
    "METHODS",
    "Clip",
    "cpu_model",
    "encode",
    "encode_times",
    "prepare",
    "read_clips",
]

AUDIO_METHODS = ("wav", "flac", "opus16", "opus24")
CONTAINER_METHODS = ("amser", "amser-2k", "svd-paper")
METHODS = AUDIO_METHODS + CONTAINER_METHODS
LABELS = {
    "wav": "WAV (16-bit PCM)",
    "flac": "FLAC",
    "opus16": "Opus 16 kbps",
    "opus24": "Opus 24 kbps",
    "amser": "container, default codec",
    "amser-2k": "container, kltdct 2 kbps",
    "svd-paper": "container, SVD 0.125 float16 (paper)",
}
CODEC_PARAMS = {"amser": {}, "amser-2k": {"kbps": 2.0}, "svd-paper": {"ratio": 0.125, "factor_dtype": "float16"}}


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    seconds: float
    text: str


def read_clips(manifest: Path, limit: int | None = None, english_only: bool = False) -> list[Clip]:
    """Clips of a shared/data manifest, in its order (``english_only`` skips EmoDB's German)."""
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if english_only:
        rows = [r for r in rows if r.get("corpus", "ravdess") != "emodb"]
    clips = [Clip(r["id"], manifest.parent / r["path"], float(r["duration_s"]), r["text"]) for r in rows]
    return clips[:limit]


def _soundfile(audio: np.ndarray, fmt: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, 16000, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def _opus(audio: np.ndarray, kbps: int) -> bytes:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("the Opus baselines need ffmpeg (apt-get install ffmpeg)")
    pcm = (np.clip(audio, -1, 1 - 2**-15) * 32768).astype("<i2").tobytes()
    cmd = [
        ffmpeg,
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "s16le",
        "-ar",
        "16000",
        "-ac",
        "1",
        "-i",
        "pipe:0",
        "-c:a",
        "libopus",
        "-b:a",
        f"{kbps}k",
        "-application",
        "voip",
        "-f",
        "ogg",
        "pipe:1",
    ]
    return subprocess.run(cmd, input=pcm, capture_output=True, check=True, timeout=60).stdout


def encode(audio: np.ndarray, method: str) -> bytes:
    """The payload of ``method`` for 16 kHz float samples."""
    if method == "wav":
        return _soundfile(audio, "WAV")
    if method == "flac":
        return _soundfile(audio, "FLAC")
    if method in ("opus16", "opus24"):
        return _opus(audio, int(method[4:]))
    if method in CODEC_PARAMS:
        return amser_dsp.encode_audio(audio, "whisper", **CODEC_PARAMS[method])
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def cpu_model() -> str:
    """The CPU's name with its family and model numbers (``AMD EPYC`` alone does not say which generation)."""
    fields = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


def _cpu() -> float:
    return (
        time.process_time()
        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
    )


def prepare(clips: list[Clip], methods: tuple[str, ...], out: Path) -> dict:
    """Write every payload under ``out/<method>/<i>.bin`` and ``out/index.json`` (sizes, encode CPU seconds)."""
    out.mkdir(parents=True, exist_ok=True)
    warm = amser_dsp.load_audio(clips[0].path)
    for method in methods:  # first calls (Numba's cache, tables, ffmpeg's libraries) outside the timing
        encode(warm, method)
    index: dict = {
        "clips": [asdict(c) | {"path": str(c.path)} for c in clips],
        "methods": {},
        "backend": backends.current(),
    }
    audios = [amser_dsp.load_audio(c.path) for c in clips]
    for method in methods:
        (out / method).mkdir(exist_ok=True)
        sizes, cpu = [], []
        for i, audio in enumerate(audios):
            t0 = _cpu()
            blob = encode(audio, method)
            cpu.append(_cpu() - t0)
            (out / method / f"{i}.bin").write_bytes(blob)
            sizes.append(len(blob))
        index["methods"][method] = {"bytes": sizes, "encode_cpu_s": cpu}
    (out / "index.json").write_text(json.dumps(index))
    return index


def encode_times(clips: list[Clip], methods: tuple[str, ...]) -> dict[str, list[float]]:
    """CPU seconds per clip and method, methods interleaved clip by clip (order rotated), after a warm-up."""
    audios = [amser_dsp.load_audio(c.path) for c in clips]
    for method in methods:
        encode(audios[0], method)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for i, audio in enumerate(audios):
        shift = i % len(methods)
        for method in methods[shift:] + methods[:shift]:
            t0 = _cpu()
            encode(audio, method)
            times[method].append(_cpu() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Device encode CPU time per clip and method (one thread).")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    if any(v != "1" for v in threads.values()):
        parser.error(f"run with one BLAS/OpenMP thread (as make does): {threads}")
    clips = read_clips(args.manifest, args.count)
    times = encode_times(clips, METHODS)
    record = {
        "cpu": cpu_model(),
        "backend": backends.current(),
        "count": len(clips),
        "audio_seconds": sum(c.seconds for c in clips),
        "encode_cpu_s": times,
    }
    args.out.write_text(json.dumps(record))
    print(json.dumps({m: 1000 * float(np.median(t)) for m, t in times.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
