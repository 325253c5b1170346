"""Structure-aware fuzzing of every decoding entry point, checksums recomputed.

    python -m tests.fuzz.fuzz_structured --runs 1000000 --seed 1 --report out/fuzz.json

A plain-Python mutator (no coverage guidance, nothing to install): it starts from valid containers in every
codec mode, mutates bytes inside records or the record structure itself (chunks swapped, dropped,
duplicated, spliced from another container; huge length and count fields; nested, huge or wrongly typed
JSON in the header; other format versions and flags), then, in most cases, recomputes every checksum as
docs/format.md specifies (tests/containers.py, written from the spec), so the mutant reaches the parts
behind the checksums.  Each mutant goes through ``decode``, ``inspect`` and a ``StreamDecoder`` fed in
random sizes, under the default limits.

A finding is any exception other than an ``AmserError``, a call that takes more than ``--max-seconds`` of
CPU time, a decoded array larger than the limits allow, or (checked at the end) a peak RSS over
``--max-rss-mb``.  Findings are written to ``--findings`` with their traceback.  Exit status 1 if any.
"""

from __future__ import annotations

import json
import random
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

import amser_dsp
from amser_dsp import container as fmt

from .. import containers
from .harness import arguments, call_checked, drive, report

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


# -------------------------------------------------------------------- seeds
def seeds() -> list[bytes]:
    """Valid containers in every codec mode, preset, chunking and format version (91 of them)."""
    audio = amser_dsp.load_audio(amser_dsp.sample_path())
    out = [p.read_bytes() for p in sorted(FIXTURES.glob("v*.amser"))]
    modes: list[dict] = [
        {"codec": "raw", "dtype": "float16"},
        {"codec": "raw", "dtype": "float32"},
        {"step": -20},
        {"step": 0},
        {"step": 63},
        {"kbps": 2.0},
        {"quality": 0.1},
    ]
    for dtype in ("float32", "float16", "int8"):
        for entropy in ("zlib", "zstd", None):
            modes.append({"rank": 4, "factor_dtype": dtype, "entropy": entropy})
    modes.append({"ratio": 0.125})
    modes.append({"energy": 0.9, "factor_dtype": "int8"})
    for preset in ("whisper", "amser", "kaldi"):
        feats = amser_dsp.features(audio[:24000], 16000, preset)
        for mode in modes:
            if preset != "whisper" and ("step" in mode or "kbps" in mode or "quality" in mode):
                continue  # the kltdct tables belong to the whisper preset
            if mode.get("entropy") == "zstd" and not _has_zstd():
                continue
            for chunk_frames in (None, 40):
                out.append(amser_dsp.encode(feats, config=preset, chunk_frames=chunk_frames, **mode))
    return out


def _has_zstd() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- mutations
def _flip(rng: random.Random, body: bytes) -> bytes:
    b = bytearray(body)
    for _ in range(rng.choice((1, 1, 2, 4, 16))):
        i = rng.randrange(len(b))
        b[i] = rng.randrange(256) if rng.random() < 0.5 else b[i] ^ (1 << rng.randrange(8))
    return bytes(b)


def _resize(rng: random.Random, body: bytes) -> bytes:
    i = rng.randrange(len(body) + 1)
    if rng.random() < 0.5 and len(body) > 1:
        return body[:i] + body[i + rng.randint(1, 16) :]
    return body[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + body[i:]


def _set_u32(body: bytes, offset: int, value: int) -> bytes:
    return body[:offset] + struct.pack("<I", value & 0xFFFFFFFF) + body[offset + 4 :]


HUGE = (0, 1, 2**16, 2**20 - 1, 2**24, 2**31 - 1, 2**31, 2**32 - 1)


def _json_field(rng: random.Random) -> bytes:
    """Hostile JSON text for a header field."""
    choice = rng.randrange(8)
    if choice == 0:
        depth = rng.choice((50, 1000, 5000, 20000))
        return b'{"x":' + b"[" * depth + b"]" * depth + b"}"
    if choice == 1:
        return b'{"n_fft":' + b"9" * rng.choice((300, 4301, 20000)) + b"}"
    if choice == 2:
        return (
            amser_dsp.get_preset("whisper")
            .to_json()
            .encode()
            .replace(b'"log_floor":1e-10', b'"log_floor":1' + b"0" * 400)
        )
    if choice == 3:
        return json.dumps({"codec": "kltdct", "tables": "x" * rng.choice((255, 4096, 50000)), "step": 0}).encode()
    if choice == 4:
        return json.dumps(
            {
                "codec": rng.choice(["svd", "raw", "kltdct"]),
                "rank": rng.choice([None, -1, 2**70, "4", 1.5]),
                "factor_dtype": rng.choice(["int8", "float64", None, 3]),
                "entropy": rng.choice(["zlib", "zstd", "lzma", None]),
                "step": rng.choice([0, 200, -200, "0", None]),
                "dtype": rng.choice(["float16", "int8"]),
            }
        ).encode()
    if choice == 5:
        return b'"' + b"a" * 60000 + b'"'
    if choice == 6:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    cfg = amser_dsp.get_preset(rng.choice(["whisper", "amser", "kaldi"])).to_dict()
    key = rng.choice(sorted(cfg))
    cfg[key] = rng.choice([None, True, -1, 0, 1e308, float("1e-320"), "x", [1], {"a": 1}, 2**64])
    return json.dumps(cfg).encode()


def _deflate(text: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=fmt.HEADER_DICTIONARY)
    return comp.compress(text) + comp.flush()


def _mutate_header(rng: random.Random, header: bytes) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:  # version, flags
        b = bytearray(header)
        b[rng.choice((4, 5, 6, 7))] = rng.choice((0, 1, 2, 255, rng.randrange(256)))
        return bytes(b)
    if choice == 1:  # the field-area length
        return _set_u32(header, 8, rng.choice(HUGE))
    if choice in (2, 3):  # a JSON field replaced (and now and then the band count)
        fields = _fields(header)
        fields[1 if choice == 2 else 2] = _deflate(_json_field(rng))
        if rng.random() < 0.2:
            fields[3] = struct.pack("<H", rng.choice((0, 1, 1025, 65535)))
        body = b"".join(struct.pack("<BI", tag, len(value)) + value for tag, value in sorted(fields.items()))
        return header[:8] + struct.pack("<I", len(body)) + body
    return _flip(rng, header)


def _fields(header: bytes) -> dict[int, bytes]:
    out, pos = {}, 12
    while pos + 5 <= len(header):
        tag, size = struct.unpack_from("<BI", header, pos)
        out[tag] = header[pos + 5 : pos + 5 + size]
        pos += 5 + size
    return out


def _mutate_chunk(rng: random.Random, body: bytes) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return _set_u32(body, 1, rng.choice(HUGE))  # n_frames
    if choice == 1:
        return _set_u32(body, 5, rng.choice(HUGE))  # payload length
    if choice == 2:
        return _resize(rng, body)
    return _flip(rng, body)


def mutate(rng: random.Random, pool: list[bytes]) -> tuple[bytes, str]:
    """One mutant of a random seed and the name of what was done."""
    blob = rng.choice(pool)
    parsed = containers.split(blob)
    if parsed is None:
        return _flip(rng, blob), "bytes"
    header, records = parsed
    chunks, end = records[:-1], records[-1]
    kind = rng.choice(
        ("header", "chunk", "chunk", "payload", "end", "swap", "drop", "duplicate", "splice", "reverse", "raw")
    )
    if kind == "header":
        header = _mutate_header(rng, header)
    elif kind in ("chunk", "payload") and chunks:
        i = rng.randrange(len(chunks))
        chunks[i] = (
            _mutate_chunk(rng, chunks[i]) if kind == "chunk" else chunks[i][:9] + _flip(rng, chunks[i][9:] or b"\x00")
        )
    elif kind == "end":
        end = (
            _set_u32(end, 1, rng.choice(HUGE))
            if rng.random() < 0.5
            else end[:5] + struct.pack("<Q", rng.choice(HUGE) * rng.choice((1, 2**32)))
        )
    elif kind == "swap" and len(chunks) > 1:
        i, j = rng.sample(range(len(chunks)), 2)
        chunks[i], chunks[j] = chunks[j], chunks[i]
    elif kind == "drop" and chunks:
        del chunks[rng.randrange(len(chunks))]
    elif kind == "duplicate" and chunks:
        i = rng.randrange(len(chunks))
        chunks.insert(i, chunks[i])
        if rng.random() < 0.5 and len(chunks) > 2:
            del chunks[rng.randrange(len(chunks))]
    elif kind == "splice":
        other = containers.split(rng.choice(pool))
        if other and other[1][:-1]:
            chunks[rng.randrange(len(chunks) + 1) if chunks else 0 :] = other[1][:-1][: rng.randint(1, 3)]
    elif kind == "reverse":
        chunks.reverse()
    elif kind == "raw":
        return _flip(rng, blob), kind
    if rng.random() < 0.74:  # checksums recomputed: the mutant reaches what they guard
        if rng.random() < 0.5:
            frames = sum(struct.unpack_from("<BII", c)[1] for c in chunks if len(c) >= 9)
            end = containers.end_body(len(chunks), frames)
        return containers.assemble(header, [*chunks, end], chained=rng.random() < 0.9), kind + "+crc"
    out = header + struct.pack("<I", zlib.crc32(header))
    for body in [*chunks, end]:
        out += body + struct.pack("<I", zlib.crc32(body))
    return out, kind


# ----------------------------------------------------------------- the checks
def _entry_points(rng: random.Random) -> list[tuple[str, Callable[[bytes], object]]]:
    def stream(blob: bytes) -> object:
        dec = amser_dsp.StreamDecoder()
        pos, out = 0, []
        while pos < len(blob):
            n = rng.choice((1, 3, 13, 100, 4096, len(blob)))
            out += dec.feed(blob[pos : pos + n])
            pos += n
        dec.close()
        return out

    return [("decode", amser_dsp.decode), ("inspect", amser_dsp.inspect), ("stream", stream)]


def check(blob: bytes, rng: random.Random, max_seconds: float) -> list[str]:
    """Problems of one mutant (empty when every entry point behaved)."""
    problems: list[str] = []
    limit = fmt.DEFAULT_LIMITS.max_decoded_bytes
    for name, run in _entry_points(rng):
        result = call_checked(name, lambda run=run: run(blob), max_seconds, problems)  # type: ignore[misc]
        arrays = result if isinstance(result, list) else [result]
        size = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
        if size > limit:
            problems.append(f"{name}: decoded {size} bytes, over the limit {limit}")
    return problems


def run(runs: int, seed: int, max_seconds: float, findings: Path | None, progress: bool = True) -> dict:
    rng = random.Random(seed)
    pool = seeds()
    # A numeric warning on hostile input (overflow in a check, say) is a spot to fix: count it as a finding.
    warnings.simplefilter("error", RuntimeWarning)
    summary = drive(
        runs,
        lambda: mutate(rng, pool),
        lambda blob: check(blob, rng, max_seconds),
        findings,
        suffix=".amser",
        progress=progress,
    )
    kinds = summary["mutations"]
    return {
        **summary,
        "seed": seed,
        "seeds": len(pool),
        "max_cpu_seconds_per_call": max_seconds,
        "checksums_recomputed": sum(v for k, v in kinds.items() if k.endswith("+crc")) / max(runs, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, "out/fuzz-findings").parse_args(argv)
    summary = run(args.runs, args.seed, args.max_seconds, args.findings)
    return report(summary, args, summary["peak_rss_mb"])


if __name__ == "__main__":
    raise SystemExit(main())
