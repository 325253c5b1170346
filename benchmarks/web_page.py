"""The page's front end and codec in headless Chromium: agreement with Python on real speech, and speed.

    python -m benchmarks.web_page agreement [--manifest ../shared/data/asr/manifest.tsv] [--limit N]
    flock /work/.bench.lock python -m benchmarks.web_page speed [--seconds 10] [--rounds 31]

``agreement``: for every clip, the page's features against the NumPy reference (largest absolute
difference), and the page's container against Python's ``encode`` of the same features (symbols that
differ, containers that are byte-identical), and against Python's whole pipeline (``encode_audio``).
``speed``: features and encode of ``--seconds`` of speech on the page (``Amser.encodeAudio``, one
chunk, the default codec), the first call in a fresh page (after the page's warm-up on one second of
noise at load, timed too) and then the median of ``--rounds`` calls;
features alone and encode alone alongside.  The CPU model is printed with the numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
from tests.web import browser as wb
from tests.web.test_page_codec import assert_same_container, page_encode_audio, page_features

import amser_dsp

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "asr" / "manifest.tsv"


def cpu_model() -> str:
    """Model name, family and model of the first CPU (the name alone can be as vague as "AMD EPYC")."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown CPU"
    return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')})"


def clips(manifest: Path, limit: int | None) -> list[Path]:
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [manifest.parent / r["path"] for r in rows[:limit]]


def agreement(page, paths: list[Path]) -> dict:
    worst = 0.0
    flips = symbols = identical = identical_pipeline = 0
    seconds = 0.0
    for path in paths:
        audio = amser_dsp.load_audio(path)
        seconds += audio.size / 16000
        ref = amser_dsp.features(audio, 16000, "whisper", backend="numpy")
        got = page_features(page, audio)
        worst = max(worst, float(np.abs(got - ref).max()))
        out = page_encode_audio(page, audio)
        counts = assert_same_container(out["container"], amser_dsp.encode(got, config="whisper"), out["chunks"])
        flips += counts["flips"]
        symbols += counts["symbols"]
        identical += counts["flips"] == 0
        identical_pipeline += out["container"] == amser_dsp.encode_audio(audio)
        print(
            f"{path.name}: max |page - python| {np.abs(got - ref).max():.2e}, symbols differing {counts['flips']}",
            file=sys.stderr,
        )
    return {
        "clips": len(paths),
        "minutes": round(seconds / 60, 2),
        "features_max_abs_diff": worst,
        "symbols": symbols,
        "symbols_differing": flips,
        "containers_identical_same_features": identical,
        "containers_identical_whole_pipeline": identical_pipeline,
    }


SPEED = """async ([a, rounds]) => {
    const amser = window.amserPage.state.amser, x = window.t.f32(a);
    const time = (f) => { const t0 = performance.now(); const r = f(); return [performance.now() - t0, r]; };
    const [first] = time(() => amser.encodeAudio(x));
    const both = [], feats = [], enc = [];
    for (let i = 0; i < rounds; i++) {
        both.push(time(() => amser.encodeAudio(x))[0]);
        const [tf, f] = time(() => amser.features(x));
        feats.push(tf);
        const e = amser.streamEncoder({});
        enc.push(time(() => e.codec.encodeChunk(f.features, f.nFrames))[0]);
    }
    return {first, both, feats, enc, warm: window.amserPage.state.warmUpMs};
}"""


def speed(page, seconds: float, rounds: int, manifest: Path) -> dict:
    parts, total = [], 0
    for path in clips(manifest, None) if manifest.exists() else [amser_dsp.sample_path()]:
        audio = amser_dsp.load_audio(path)
        parts.append(audio)
        total += audio.size
        if total >= seconds * 16000:
            break
    audio = np.concatenate(parts)
    audio = np.resize(audio, int(seconds * 16000)).astype(np.float32)  # repeats a short clip if needed
    out = page.evaluate(SPEED, [wb.b64(audio.astype("<f4")), rounds])

    def summary(values: list[float]) -> dict:
        q = statistics.quantiles(values, n=4)
        return {"median_ms": round(statistics.median(values), 2), "iqr_ms": [round(q[0], 2), round(q[2], 2)]}

    return {
        "audio_seconds": seconds,
        "rounds": rounds,
        "page_load_warm_up_ms": round(out["warm"], 2),
        "first_call_ms": round(out["first"], 2),
        "features_and_encode": summary(out["both"]),
        "features": summary(out["feats"]),
        "encode": summary(out["enc"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["agreement", "speed"])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=None, help="first N clips (agreement)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args(argv)
    if wb.chromium_path() is None:
        parser.error("needs Chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, wb.static_site() as url:
        b = wb.launch(p)
        page = wb.open_page(b, url + "/")
        version = b.version
        if args.what == "agreement":
            if not args.manifest.exists():
                parser.error(f"no manifest at {args.manifest}")
            result = agreement(page, clips(args.manifest, args.limit))
        else:
            result = speed(page, args.seconds, args.rounds, args.manifest)
        b.close()
    result.update(cpu=cpu_model(), chromium=version, command="python -m benchmarks.web_page " + " ".join(sys.argv[1:]))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
