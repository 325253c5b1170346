"""What a worker does with one task: a few files, each verified and skipped, or done and written atomically.

These functions run inside Dask worker processes (or in the caller's process
with ``client=False``).  Models are loaded once per process and kept
(:func:`transcriber`), whichever cluster the worker belongs to.  A file's
failure is caught and reported with its reason; the other files of the task go on.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from ..cli import amser_warnings
from ..container import CONTAINER_SUFFIX
from ..errors import AmserError
from .manifest import atomic_write, digest_bytes, verify_output
from .plan import Item

__all__ = ["KINDS", "run_task", "transcriber"]

#: Kinds of batch work and the source suffixes each takes from folders.
KINDS = ("encode", "transcribe", "analyze")


@functools.lru_cache(maxsize=2)
def transcriber(model: str | None, beam: int, language: str = "en", threads: int = 1) -> Any:
    """This process's Whisper model (loaded on first use, then kept for every later task)."""
    from ..server.recognition.whisper import Transcriber  # the server extra, needed only by these kinds

    return Transcriber(model=model, beam_size=beam, language=language, threads=threads)


@functools.lru_cache(maxsize=2)
def analyzer(model: str | None, beam: int, language: str, checkpoint: str | None) -> Any:
    """This process's Whisper plus emotion model (the server's ``Analyzer``), loaded once."""
    from ..server.analysis import Analyzer  # the emotion model: needs the emotion extra

    return Analyzer.load(transcriber(model, beam, language), checkpoint)


def _skip_reason(item: Item, record: dict[str, Any] | None, digest: str) -> str | None:
    """None if the existing output is verified for this source and these settings, else why not."""
    if record is None:
        return "not in the manifest"
    if record.get("settings") != digest:
        return "made with other settings"
    if (record.get("source_bytes"), record.get("source_mtime_ns")) != (item.size, item.mtime_ns):
        return "source changed"
    return verify_output(item.dst, record)


def _load_features(item: Item, settings: dict[str, Any]) -> tuple[Any, float, int]:
    """Features, audio seconds and container bytes of a source: audio is encoded and decoded, containers decoded."""
    from .. import decode, decode_container, encode_audio, load_audio
    from ..config import FeatureConfig

    cfg = FeatureConfig.from_dict(settings["config"])
    if item.src.lower().endswith(CONTAINER_SUFFIX):
        with open(item.src, "rb") as fh:
            blob = fh.read()
        decoded = decode_container(blob)
        if decoded.config != cfg:
            raise AmserError("the container's features were not made with the whisper preset Whisper needs")
        return decoded.features, decoded.info.seconds or 0.0, len(blob)
    audio = load_audio(item.src, sample_rate=cfg.sample_rate)
    blob = encode_audio(audio, cfg, chunk_seconds=settings.get("chunk_seconds"), codec=settings["codec"])
    return decode(blob), audio.size / cfg.sample_rate, len(blob)


def _record(item: Item, data: bytes, digest: str, seconds: float, out_root: str) -> dict[str, Any]:
    return {
        "rel": item.rel,
        "output": os.path.relpath(item.dst, out_root),
        "source_bytes": item.size,
        "source_mtime_ns": item.mtime_ns,
        "settings": digest,
        "bytes": len(data),
        "sha256": digest_bytes(data),
        "seconds": round(seconds, 4),
    }


#: What the work on one file gives: the output's bytes, the audio's seconds, the library's warnings (or the error).
Output = tuple[bytes, float, list[str]] | BaseException


def _encode(items: list[Item], settings: dict[str, Any]) -> list[Output]:
    from .. import encode_audio, load_audio
    from ..config import FeatureConfig

    cfg = FeatureConfig.from_dict(settings["config"])
    out: list[Output] = []
    for item in items:
        with amser_warnings() as said:
            try:
                audio = load_audio(item.src, sample_rate=cfg.sample_rate)
                blob = encode_audio(audio, cfg, chunk_seconds=settings.get("chunk_seconds"), codec=settings["codec"])
            except Exception as exc:  # a batch names each failure and goes on
                out.append(exc)
                continue
        out.append((blob, audio.size / cfg.sample_rate, said))
    return out


def _transcribe(items: list[Item], settings: dict[str, Any]) -> list[Output]:
    """Transcripts (and with ``settings["kind"] == "analyze"`` the emotion) as one JSON document per file."""
    loaded: list[tuple[Any, float, int] | BaseException] = []
    said: list[list[str]] = []
    for item in items:
        with amser_warnings() as found:
            try:
                loaded.append(_load_features(item, settings))
            except Exception as exc:
                loaded.append(exc)
        said.append(found)
    analyze = settings["kind"] == "analyze"
    if analyze:
        model = analyzer(
            settings.get("model"), settings["beam"], settings.get("language", "en"), settings.get("emotion_model")
        )
    else:
        model = transcriber(settings.get("model"), settings["beam"], settings.get("language", "en"))
    out: list[Output] = []
    for item, x, found in zip(items, loaded, said, strict=True):
        if isinstance(x, BaseException):
            out.append(x)
            continue
        feats, seconds, n_bytes = x
        try:
            # One file per call: batching windows saves nothing on one CPU thread and costs about 15% more
            # CPU at beam 5 (every hypothesis runs to the longest), measured on ../shared/data/asr.
            if analyze:
                found = model.analyze([feats])[0]
                text, emotion = found["text"], {"label": found["label"], "probabilities": found["probabilities"]}
                segments = found["segments"]
            else:
                decoded = model.decode([feats])[0]
                text, emotion, segments = decoded.text, {}, [s.to_dict() for s in decoded.segments]
        except Exception as exc:  # a batch names each failure and goes on
            out.append(exc)
            continue
        doc = {
            "source": item.rel,
            "text": text,
            **emotion,
            "segments": segments,
            "seconds": round(seconds, 4),
            "container_bytes": n_bytes,
            "kbps": round(n_bytes * 8 / seconds / 1000, 4) if seconds else None,
            "codec": settings["codec"],
            "model": settings.get("model_name"),
        }
        out.append(((json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode(), seconds, found))
    return out


_WORK = {"encode": _encode, "transcribe": _transcribe, "analyze": _transcribe}


def run_task(
    kind: str,
    items: list[Item],
    records: list[dict[str, Any] | None],
    *,
    settings: dict[str, Any],
    digest: str,
    out_root: str,
    force: bool,
) -> list[dict[str, Any]]:
    """Do (or verify and skip) each file of one task; one result dict per file.

    A result has ``rel``, ``status`` (``done``, ``skipped`` or ``failed``),
    ``seconds`` of audio, ``src_bytes``, and ``record`` (the manifest record of
    a done file) or ``error`` (the reason a file failed); ``warnings`` lists
    the library's warnings about a done file (a rate target not met).
    """
    results: dict[int, dict[str, Any]] = {}  # by the item's index
    todo: list[int] = []
    for i, (item, record) in enumerate(zip(items, records, strict=True)):
        if item.refused:
            results[i] = {"rel": item.rel, "status": "failed", "error": item.refused}
        elif not force and record is not None and _skip_reason(item, record, digest) is None:
            results[i] = {"rel": item.rel, "status": "skipped", "seconds": record.get("seconds", 0.0)}
        else:
            todo.append(i)
    if todo:
        outputs = _WORK[kind]([items[i] for i in todo], settings)
        for i, out in zip(todo, outputs, strict=True):
            item = items[i]
            if isinstance(out, BaseException):
                results[i] = {"rel": item.rel, "status": "failed", "error": f"{type(out).__name__}: {out}"}
                continue
            data, seconds, said = out
            try:
                atomic_write(item.dst, data)
            except OSError as exc:
                results[i] = {"rel": item.rel, "status": "failed", "error": f"cannot write {item.dst}: {exc}"}
                continue
            results[i] = {
                "rel": item.rel,
                "status": "done",
                "seconds": seconds,
                "record": _record(item, data, digest, seconds, out_root),
                "warnings": said,
            }
    return [
        {**results[i], "src_bytes": item.size, "src": item.src, "dst_dir": os.path.dirname(item.dst)}
        for i, item in enumerate(items)
    ]
