"""What emotion adds to a request: ``/v1/analyze`` against ``/v1/transcribe`` on the same container.

    flock /work/.bench.lock python benchmarks/analyze_cost.py [--rounds 30] [--clip PATH]

Starts one ``amser serve`` process on 127.0.0.1 (a free port, one worker),
checks both answers (same transcript; analyze carries a label and four
probabilities summing to 1), then posts the container to the two endpoints
alternately, ``--rounds`` times each after two warm-up rounds, one request in
flight at a time.  Prints median wall time per endpoint and the median of the
per-round ratios analyze / transcribe (the target is at most 1.15: the Whisper
encoder runs once per window and feeds both the transcript and the emotion
network; a model that mixes every encoder layer runs the torch encoder on the clip's own frames beside it,
about a tenth of a 30-s window's work for a 3-s clip).  Only loopback traffic; bounded in count.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import amser_dsp


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clip", help="audio file (default: the bundled clip)")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--emotion-model", help="emotion checkpoint the service loads (default: the packaged one)")
    args = parser.parse_args(argv)
    import httpx

    from amser_dsp.server.http.local import LocalServer

    audio = amser_dsp.load_audio(args.clip or amser_dsp.sample_path())
    blob = amser_dsp.encode_audio(audio, "whisper")
    extra = ["--emotion-model", args.emotion_model] if args.emotion_model else []
    server = LocalServer(["--workers", "1", "--beam", str(args.beam), *extra])
    with server as url, httpx.Client(base_url=url, timeout=120) as http:
        first = http.post("/v1/transcribe", content=blob).json()
        analysed = http.post("/v1/analyze", content=blob).json()
        emotion = analysed["emotion"]
        assert emotion is not None, "the service has no emotion model"
        assert analysed["text"] == first["text"], (analysed["text"], first["text"])
        assert abs(sum(emotion["probabilities"].values()) - 1) < 1e-6
        times: dict[str, list[float]] = {"transcribe": [], "analyze": []}
        for r in range(args.rounds + 2):
            order = ("transcribe", "analyze") if r % 2 else ("analyze", "transcribe")
            for name in order:
                t0 = time.perf_counter()
                response = http.post(f"/v1/{name}", content=blob)
                elapsed = time.perf_counter() - t0
                response.raise_for_status()
                if r >= 2:
                    times[name].append(elapsed)
    t, a = np.array(times["transcribe"]), np.array(times["analyze"])
    print(
        f"CPU: {cpu_model()}; clip {audio.size / 16000:.2f} s; {blob.__len__()} bytes; {args.rounds} rounds, beam {args.beam}"
    )
    print(f"/v1/transcribe median {1000 * np.median(t):.1f} ms; /v1/analyze median {1000 * np.median(a):.1f} ms")
    print(
        f"analyze / transcribe: median of per-round ratios {np.median(a / t):.3f} (ratio of medians {np.median(a) / np.median(t):.3f})"
    )
    print(f"emotion: {emotion['label']} {emotion['probabilities']}; timings {analysed['timings']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
