"""The main job on bundled defaults: ``python -m amser_dsp.demo``.

Loads the bundled LibriSpeech clip, computes features with every preset on
every installed back end (shapes and timings), writes a PNG of the ``amser``
spectrogram, then runs the whole system: the device side encodes the clip, a
local server (started here, on 127.0.0.1) receives the container and
transcribes it, and the demo prints the transcript, the bytes sent against
16-bit PCM and the time of each stage.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import PRESETS, backends, features, load_audio, sample_path, sample_transcript


def _median_ms(fn: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def save_spectrogram_png(feats: np.ndarray, path: Path, title: str) -> bool:
    """Write ``feats`` (n_mels, n_frames) as a PNG; returns False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    image = ax.imshow(feats, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    ax.set(title=title, xlabel="frame (10 ms)", ylabel="Mel band")
    fig.colorbar(image, ax=ax, label="log energy")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amser_dsp.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for the PNG (default: out/)")
    args = parser.parse_args(argv)

    path = sample_path()
    audio = load_audio(path)
    seconds = audio.size / 16_000
    print(f"clip: {path.name}, {seconds:.2f} s, transcript: {sample_transcript()!r}")
    print(f"back ends installed: {', '.join(backends.available())} (default: {backends.current()})")
    for name in backends.available():
        for preset in PRESETS:
            feats = features(audio, 16_000, preset, backend=name)  # first call: warm-up/JIT load
            ms = _median_ms(functools.partial(features, audio, 16_000, preset, backend=name))
            print(
                f"  {name:6s} {preset:8s} shape {feats.shape} {feats.dtype}  "
                f"range [{feats.min():7.2f}, {feats.max():6.2f}]  {ms:6.2f} ms  "
                f"({1000 * ms / seconds:5.0f} us per audio second)"
            )
    from . import encode, inspect

    whisper_feats = features(audio, 16_000, "whisper")
    print("containers of the whisper features (docs/codec.md):")
    for label, kwargs in (
        ("paper: rank 10 of 80, float16", {"ratio": 0.125, "factor_dtype": "float16"}),
        ("rank 10 of 80, int8", {"ratio": 0.125, "factor_dtype": "int8"}),
        ("rank 14, int8", {"rank": 14, "factor_dtype": "int8"}),
        ("kltdct kbps=2", {"kbps": 2.0}),
        ("kltdct step -4 (default)", {}),
    ):
        info = inspect(encode(whisper_feats, config="whisper", **kwargs))
        print(
            f"  {label:32s} {info.n_bytes:6d} bytes  {info.kbps:6.2f} kbps  {info.percent_of_pcm:5.2f}% of 16-bit PCM"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "spectrogram.png"
    if save_spectrogram_png(features(audio, 16_000, "amser"), png, f"amser preset: {path.name}"):
        print(f"wrote {png}")
    else:
        print("matplotlib is not installed: no PNG (pip install 'amser-dsp[plot]')")
    return run_pipeline(audio)


def run_pipeline(audio: np.ndarray) -> int:
    """Device encodes, a local server transcribes; print transcript, bytes and stage timings."""
    try:
        from .client import Client
        from .server.http.local import LocalServer
    except ImportError as exc:
        print(f"the server side is not installed ({exc}); the whole pipeline needs: pip install 'amser-dsp[server]'")
        return 0
    from . import encode_audio, inspect

    print("\nstarting a local server on 127.0.0.1 (loads Whisper once) ...")
    started = time.perf_counter()
    with LocalServer() as url, Client(url) as client:
        info = client.info()
        ready = time.perf_counter() - started
        encode_audio(audio[:16_000], info["presets"][0], codec=info["default_codec"])  # warm caches
        t1 = time.perf_counter()
        blob = encode_audio(audio, info["presets"][0], codec=info["default_codec"])
        t2 = time.perf_counter()
        answer = client.transcribe(blob, analyze=True)  # /v1/analyze: transcript and emotion
        t3 = time.perf_counter()
    seconds = audio.size / 16_000
    pcm = 2 * audio.size
    meta = inspect(blob)
    print(f"server at {url} ready in {ready:.1f} s; model {info['model']}; codec {info['default_codec']}")
    print(f"transcript:  {answer['text']!r}")
    print(f"reference:   {sample_transcript()!r}")
    emotion = answer.get("emotion")
    if emotion:
        probs = ", ".join(f"{k} {v:.2f}" for k, v in emotion["probabilities"].items())
        caution = " (packaged model trained on RAVDESS: non-commercial use only)"
        print(f"emotion:     {emotion['label']} ({probs}){caution}")
    else:
        status = info.get("emotion", {}).get("status", "no emotion model")
        print(f"emotion:     none ({status}; pip install 'amser-dsp[emotion]')")
    print(
        f"sent {len(blob)} bytes for {seconds:.2f} s of audio: {meta.kbps:.2f} kbps, "
        f"{100 * len(blob) / pcm:.2f}% of 16-bit PCM ({pcm} bytes)"
    )
    tm = answer["timings"]
    print(
        "stage timings (ms): "
        f"device features + encode {1000 * (t2 - t1):.1f} ({meta.n_mels} x {meta.n_frames}), "
        f"server decode {tm['decode_ms']:.1f}, server Whisper {tm['asr_ms']:.1f}, "
        + (f"server emotion {tm['emotion_ms']:.1f}, " if tm.get("emotion_ms") is not None else "")
        + f"round trip {1000 * (t3 - t2):.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
