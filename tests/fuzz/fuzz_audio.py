"""Structure-aware fuzzing of the audio readers: WAV and FLAC headers mutated, rates and sizes at their extremes.

    python -m tests.fuzz.fuzz_audio --runs 200000 --seed 20261207 --report out/fuzz-audio.json
    python -m tests.fuzz.fuzz_audio --service --runs 5000 --max-seconds 5   # the service's audio endpoint

A plain-Python mutator, as tests/fuzz/fuzz_structured.py is for containers: it starts from small valid
files (WAV: 8/16/24/32-bit integer, float, u-law, IMA ADPCM, one to six channels, 8 to 192 kHz; FLAC: 16 and
24 bit, mono and stereo; one AIFF and one Ogg Vorbis for raw flips) and mutates the fields that size and
describe the audio: a WAV's format tag, channels, sample rate, byte rate, block alignment, bits per sample,
the data chunk's and the RIFF chunk's lengths, chunks before the data (huge, odd, repeated); a FLAC's
STREAMINFO (block sizes, frame sizes, sample rate, channels, bits per sample, total samples, the metadata
block's length and last flag) and its first frame header; then truncates, extends or flips bytes.  Each
mutant goes through ``load_audio`` (at 16 kHz, and at the file's own rate) and ``audio_header``.

A finding is any exception other than an ``AmserError``, a ``RuntimeWarning``, a call using more than
``--max-seconds`` of CPU (thread time), an output of more samples than ``--max-samples``, or a mutant whose
checks raise the peak RSS by more than ``--max-rss-mb``.  Findings are written to ``--findings``.  Exit status 1 if any.
"""

from __future__ import annotations

import io
import random
import struct
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import amser_dsp
from amser_dsp.io import audio_header, load_audio

from .fuzz_structured import _flip, _resize
from .harness import arguments, call_checked, drive, report

#: Extreme values for 32-bit fields, and for 16-bit ones.
HUGE32 = (0, 1, 2, 7999, 8000, 192_000, 192_001, 1_000_003, 2**16, 2**24, 2**31 - 1, 2**31, 2**32 - 1)
HUGE16 = (0, 1, 2, 3, 7, 8, 9, 12, 16, 24, 32, 33, 64, 255, 256, 1024, 2**15, 2**16 - 1)
#: WAV format tags: PCM, IEEE float, A-law, u-law, IMA ADPCM, MS ADPCM, GSM 6.10, MPEG, extensible, unknown.
FORMAT_TAGS = (0, 1, 2, 3, 6, 7, 0x11, 0x31, 0x50, 0x55, 0xFFFE, 0x1234)


# -------------------------------------------------------------------- seeds
def seeds() -> list[bytes]:
    """Small valid audio files of every layout the mutator knows (about 40 of them)."""
    import soundfile as sf

    rng = np.random.default_rng(20261207)
    out = []

    def write(n: int, channels: int, rate: int, fmt: str, subtype: str) -> None:
        x = (0.3 * rng.standard_normal((n, channels))).clip(-1, 1).astype(np.float32)
        buf = io.BytesIO()
        sf.write(buf, x, rate, format=fmt, subtype=subtype)
        out.append(buf.getvalue())

    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "IMA_ADPCM"):
        write(800, 1, 16000, "WAV", subtype)
    for channels in (2, 6):
        write(600, channels, 16000, "WAV", "PCM_16")
    for rate in (8000, 11025, 44100, 48000, 192_000):
        write(700, 1, rate, "WAV", "PCM_16")
    for subtype in ("PCM_16", "PCM_24"):
        for channels in (1, 2):
            for rate in (16000, 44100):
                write(5000, channels, rate, "FLAC", subtype)
    write(800, 1, 16000, "AIFF", "PCM_16")
    write(4000, 1, 16000, "OGG", "VORBIS")
    return out


# ---------------------------------------------------------------- mutations
def _riff_chunks(blob: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, id, size) of each chunk after the RIFF header, as far as they parse."""
    out, pos = [], 12
    while pos + 8 <= len(blob) and len(out) < 32:
        cid, size = blob[pos : pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        out.append((pos, cid, size))
        pos += 8 + size + (size & 1)
    return out


def _put(blob: bytes, offset: int, fmt: str, value: int) -> bytes:
    size = struct.calcsize(fmt)
    if offset + size > len(blob):
        return blob
    mask = (1 << (8 * size)) - 1
    return blob[:offset] + struct.pack(fmt, value & mask) + blob[offset + size :]


def _mutate_wav(rng: random.Random, blob: bytes) -> tuple[bytes, str]:
    chunks = _riff_chunks(blob)
    fmt = next((c for c in chunks if c[1] == b"fmt "), None)
    data = next((c for c in chunks if c[1] == b"data"), None)
    choice = rng.randrange(9)
    if choice == 0 and fmt:  # format tag
        return _put(blob, fmt[0] + 8, "<H", rng.choice(FORMAT_TAGS)), "wav-format"
    if choice == 1 and fmt:  # channels
        return _put(blob, fmt[0] + 10, "<H", rng.choice(HUGE16)), "wav-channels"
    if choice == 2 and fmt:  # sample rate (and now and then the byte rate to match)
        rate = rng.choice(HUGE32) if rng.random() < 0.7 else rng.randrange(1, 2**32)
        out = _put(blob, fmt[0] + 12, "<I", rate)
        if rng.random() < 0.5:
            out = _put(out, fmt[0] + 16, "<I", rate * 2)
        return out, "wav-rate"
    if choice == 3 and fmt:  # byte rate, block alignment, bits per sample
        field, form = rng.choice(((16, "<I"), (20, "<H"), (22, "<H")))
        return _put(blob, fmt[0] + 8 + field, form, rng.choice(HUGE32 if form == "<I" else HUGE16)), "wav-sizes"
    if choice == 4 and data:  # the data chunk's length
        present = len(blob) - data[0] - 8
        value = rng.choice((*HUGE32, present - 1, present + 1, present * 2, 0x7FFFFF00))
        return _put(blob, data[0] + 4, "<I", value), "wav-data-length"
    if choice == 5:  # the RIFF length
        return _put(blob, 4, "<I", rng.choice((*HUGE32, len(blob) - 8, len(blob) * 4))), "riff-length"
    if choice == 6 and fmt:  # the fmt chunk's own length
        return _put(blob, fmt[0] + 4, "<I", rng.choice((0, 2, 14, 16, 18, 40, 2**31, 2**32 - 1))), "wav-fmt-length"
    if choice == 7:  # a chunk before the data: huge, odd-sized, or a second fmt
        junk = rng.choice((b"LIST", b"fact", b"fmt ", b"data", b"\x00\x00\x00\x00"))
        size = rng.choice((0, 1, 3, 4, 2**31, 2**32 - 1))
        body = bytes(rng.randrange(256) for _ in range(min(size, rng.choice((0, 1, 4, 16)))))
        return blob[:12] + junk + struct.pack("<I", size) + body + blob[12:], "wav-extra-chunk"
    return _flip(rng, blob[:64]) + blob[64:], "wav-header-bytes"


def _mutate_flac(rng: random.Random, blob: bytes) -> tuple[bytes, str]:
    b = bytearray(blob)
    si = 8  # STREAMINFO's body, after "fLaC" and its 4-byte block header
    choice = rng.randrange(8)
    if choice == 0:  # min/max block size (16 bits each)
        off = si + rng.choice((0, 2))
        b[off : off + 2] = struct.pack(">H", rng.choice(HUGE16))
        return bytes(b), "flac-blocksize"
    if choice == 1:  # min/max frame size (24 bits each)
        off = si + rng.choice((4, 7))
        b[off : off + 3] = rng.choice((0, 1, 2**24 - 1, rng.randrange(2**24))).to_bytes(3, "big")
        return bytes(b), "flac-framesize"
    packed = int.from_bytes(b[si + 10 : si + 18], "big")  # rate 20, channels-1 3, bps-1 5, total 36 bits
    if choice == 2:
        rate = rng.choice((0, 1, 7999, 8000, 192_000, 192_001, 655_350, 2**20 - 1))
        packed = (packed & ~(((1 << 20) - 1) << 44)) | (rate << 44)
        kind = "flac-rate"
    elif choice == 3:
        packed = (packed & ~(0b111 << 41)) | (rng.randrange(8) << 41)
        kind = "flac-channels"
    elif choice == 4:
        packed = (packed & ~(0b11111 << 36)) | (rng.randrange(32) << 36)
        kind = "flac-bits"
    elif choice == 5:
        total = rng.choice((0, 1, 2, 2**20, 2**32, 2**36 - 1, rng.randrange(2**36)))
        packed = (packed & ~((1 << 36) - 1)) | total
        kind = "flac-total-samples"
    elif choice == 6:  # the metadata block header: last flag, type, length
        b[4] = rng.choice((0x00, 0x80, 0x7F, 0xFF, rng.randrange(256)))
        b[5:8] = rng.choice((0, 1, 33, 34, 35, 2**24 - 1)).to_bytes(3, "big")
        return bytes(b), "flac-block-header"
    else:  # the first frame header (sync code, block size and rate codes, CRC-8)
        frame = blob.find(b"\xff\xf8", 8 + 34)
        if frame < 0:
            return _flip(rng, blob), "flac-bytes"
        return blob[:frame] + _flip(rng, blob[frame : frame + 16]) + blob[frame + 16 :], "flac-frame-header"
    b[si + 10 : si + 18] = packed.to_bytes(8, "big")
    return bytes(b), kind


def mutate(rng: random.Random, pool: list[bytes]) -> tuple[bytes, str]:
    """One mutant of a random seed and the name of what was done."""
    blob = rng.choice(pool)
    if rng.random() < 0.15:
        blob, kind = _flip(rng, blob), "bytes"
    elif blob[:4] == b"RIFF":
        blob, kind = _mutate_wav(rng, blob)
    elif blob[:4] == b"fLaC":
        blob, kind = _mutate_flac(rng, blob)
    else:
        blob, kind = _flip(rng, blob), "bytes"
    r = rng.random()
    if r < 0.15:  # cut short: at any point, the header included
        blob, kind = blob[: rng.randrange(len(blob) + 1)], kind + "+cut"
    elif r < 0.25:
        blob, kind = _resize(rng, blob), kind + "+resize"
    elif r < 0.3:  # a second mutation
        more, second = mutate(rng, [blob])
        blob, kind = more, f"{kind}+{second}"
    return blob, kind


# ----------------------------------------------------------------- the checks
def check(blob: bytes, max_seconds: float, max_samples: int) -> list[str]:
    """Problems of one mutant (empty when every entry point behaved)."""
    problems: list[str] = []
    # An exception inside soundfile's C callbacks is not raised but printed ("Exception ignored from cffi
    # callback"): noise on a user's terminal, and a sign the reader saw something it did not handle.
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: problems.append(f"unraisable: {u.exc_type.__name__}: {u.exc_value}")
    try:
        _check_calls(blob, max_seconds, max_samples, problems)
    finally:
        sys.unraisablehook = hook
    return problems


def _check_calls(blob: bytes, max_seconds: float, max_samples: int, problems: list[str]) -> None:
    calls = (
        ("load_audio", lambda: load_audio(io.BytesIO(blob))),
        ("load_audio(native rate)", lambda: load_audio(io.BytesIO(blob), sample_rate=None)),
        ("audio_header", lambda: audio_header(io.BytesIO(blob))),
    )
    for name, call in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", amser_dsp.AmserWarning)  # a file cut short: said, as designed
            warnings.simplefilter("error", RuntimeWarning)
            result = call_checked(name, call, max_seconds, problems)
        if isinstance(result, np.ndarray) and result.size > max_samples:
            problems.append(f"{name}: {result.size} samples from {len(blob)} bytes")


# ------------------------------------------------------------- the service
#: Answers the audio endpoint may give a mutant: a transcript, or a refusal in the JSON envelope.
SERVICE_STATUSES = (200, 400, 413)


def server_peak_rss_mb(pid: int) -> float:
    """The peak RSS (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no VmHWM for process {pid}")


def check_service(
    client: Any, pid: int, max_wall_seconds: float, max_rss_mb: float, stats: dict[str, float]
) -> Callable[[bytes], list[str]]:
    """A check that posts each mutant to ``/v1/transcribe/audio`` of the server ``pid`` that ``client`` talks to;
    ``stats`` keeps the slowest answer and the largest growth of the server's peak RSS by one request."""

    def check(blob: bytes) -> list[str]:
        problems: list[str] = []
        peak, start = server_peak_rss_mb(pid), time.perf_counter()
        try:
            r = client.post("/v1/transcribe/audio", content=blob)
        except Exception as exc:  # a dropped connection, a timeout: the server did not answer
            return [f"no answer: {type(exc).__name__}: {exc}"]
        wall = time.perf_counter() - start
        grown = server_peak_rss_mb(pid) - peak
        stats["slowest_answer_seconds"] = max(stats["slowest_answer_seconds"], wall)
        stats["largest_server_rss_jump_mb"] = max(stats["largest_server_rss_jump_mb"], grown)
        stats[f"status_{r.status_code}"] = stats.get(f"status_{r.status_code}", 0) + 1
        if r.status_code not in SERVICE_STATUSES:
            problems.append(f"status {r.status_code}: {r.text[:300]}")
        elif r.status_code != 200:
            error = r.json().get("error", {})
            if not (error.get("code") and error.get("message") and error.get("request_id")):
                problems.append(f"status {r.status_code} without the error envelope: {r.text[:300]}")
        if wall > max_wall_seconds:
            problems.append(f"answered in {wall:.2f} s")
        if grown > max_rss_mb:
            problems.append(f"the server's peak RSS grew {grown:.0f} MB")
        return problems

    return check


def run_service(
    url: str, pid: int, runs: int, seed: int, max_wall_seconds: float, max_rss_mb: float, findings: Path | None
) -> dict[str, Any]:
    """Post ``runs`` mutants to a service whose process is ``pid``; the summary adds the server's peak RSS."""
    import httpx

    rng = random.Random(seed)
    pool = seeds()
    stats = {"slowest_answer_seconds": 0.0, "largest_server_rss_jump_mb": 0.0}
    with httpx.Client(base_url=url, timeout=120) as client:
        for blob in pool:  # the server's imports and caches load before anything is measured
            client.post("/v1/transcribe/audio", content=blob)
        before = server_peak_rss_mb(pid)
        summary = drive(
            runs,
            lambda: mutate(rng, pool),
            check_service(client, pid, max_wall_seconds, max_rss_mb, stats),
            findings,
            suffix=".bin",
            progress=False,
            kind_of=lambda kind: kind.split("+")[0],
        )
    after = server_peak_rss_mb(pid)
    return {**summary, **stats, "seed": seed, "server_peak_rss_mb": [round(before), round(after)]}


def run(
    runs: int, seed: int, max_seconds: float, max_samples: int, findings: Path | None, progress: bool = True
) -> dict:
    rng = random.Random(seed)
    pool = seeds()
    for blob in pool:  # imports and caches (scipy.signal, the resampler) load before anything is measured
        check(blob, max_seconds=60.0, max_samples=max_samples)
    summary = drive(
        runs,
        lambda: mutate(rng, pool),
        lambda blob: check(blob, max_seconds, max_samples),
        findings,
        suffix=".bin",
        progress=progress,
        kind_of=lambda kind: kind.split("+")[0],
    )
    return {**summary, "seed": seed, "seeds": len(pool), "max_cpu_seconds_per_call": max_seconds}


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, "out/fuzz-audio-findings")
    parser.add_argument("--max-samples", type=int, default=16_000_000, help="samples allowed in one output")
    parser.add_argument(
        "--service",
        action="store_true",
        help="post each mutant to /v1/transcribe/audio of a local `amser serve --no-recognise` instead; "
        "--max-seconds is then the wall time of one answer, --max-rss-mb the server's peak RSS growth per request",
    )
    args = parser.parse_args(argv)
    if args.service:
        from amser_dsp.server.http.local import LocalServer

        server = LocalServer(["--no-recognise", "--emotion-model", "none"])
        with server as url:
            assert server.process is not None
            summary = run_service(
                url, server.process.pid, args.runs, args.seed, args.max_seconds, args.max_rss_mb, args.findings
            )
        growth = summary["server_peak_rss_mb"][1] - summary["server_peak_rss_mb"][0]
        return report(summary, args, growth)
    summary = run(args.runs, args.seed, args.max_seconds, args.max_samples, args.findings)
    # Per mutant: libvorbis leaks about 5.8 KB per malformed Ogg Vorbis file it refuses (docs/fuzzing.md), so
    # the growth over a whole run grows with its length; what one file may cost is the bound.
    return report(summary, args, summary["largest_rss_jump_mb"])


if __name__ == "__main__":
    raise SystemExit(main())
