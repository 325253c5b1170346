"""``amser batch features``: a corpus of audio to one Zarr store of coded features (layout in amser_dsp.zarrstore).

The run has three steps.  The driver reads each file's header (soundfile) to
know its frame count, and plans: files in listing order, cut into tasks whose
regions of the feature array start on a chunk boundary.  Workers compute the
features of their task's files and write the region (Zarr encodes its chunks
with the amser codec there).  The driver records each file in the manifest as
results arrive and writes the ``ok`` index at the end.  Bookkeeping lives beside
the store, in ``<store>.amser-batch/`` (manifest, failures, lock), because Zarr
warns about foreign files inside a hierarchy.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..cli import amser_warnings
from ..config import FeatureConfig, get_preset
from ..errors import AmserError
from .manifest import MANIFEST_NAME, Manifest, settings_digest
from .plan import Item, group_items, list_items
from .report import Summary
from .run import run_batch

__all__ = ["DEFAULT_CHUNK_FRAMES", "features", "sidecar"]

#: Frames per Zarr chunk: 10.24 s at 100 frames/s, a multiple of the kltdct block (16).
DEFAULT_CHUNK_FRAMES = 1024


@dataclasses.dataclass(frozen=True)
class Planned(Item):
    """A file with its place in the store: utterance ``index`` at frames ``[start, start + length)``."""

    index: int = 0
    start: int = 0
    length: int = 0
    seconds: float = 0.0
    region_end: int = 0  # end of its task's chunk-aligned region (set on the task's first item)


def sidecar(store: str | os.PathLike[str]) -> Path:
    """The folder beside ``store`` holding the run's manifest, failures file and lock."""
    p = Path(store)
    return p.with_name(p.name + ".amser-batch")


def _plan(
    items: list[tuple[Item, int, float]], chunk_frames: int, files_per_task: int, bytes_per_task: int
) -> tuple[list[list[Planned]], int]:
    """Regions: each task's files end to end from a chunk boundary; returns the groups and the total frames."""
    groups: list[list[Planned]] = []
    pos = 0
    index = 0
    info = {id(it): (n, s) for it, n, s in items}
    for group in group_items([it for it, _, _ in items], max_files=files_per_task, max_bytes=bytes_per_task):
        start = -(-pos // chunk_frames) * chunk_frames
        planned = []
        at = start
        for it in group:
            n, secs = info[id(it)]
            planned.append(Planned(**dataclasses.asdict(it), index=index, start=at, length=n, seconds=secs))
            at += n
            index += 1
        end = -(-at // chunk_frames) * chunk_frames
        planned[0] = dataclasses.replace(planned[0], region_end=end)
        groups.append(planned)
        pos = end
    return groups, pos


@functools.lru_cache(maxsize=4)
def _features_array(store: str, plan: str) -> Any:
    import zarr

    arr = zarr.open_array(store, path="features", mode="r+")
    return arr


def write_region(
    group: list[Planned],
    records: list[dict[str, Any] | None],
    *,
    store: str,
    plan: str,
    config: dict[str, Any],
    backend: str | None,
    force: bool,
) -> list[dict[str, Any]]:
    """Compute and write one task's region of the feature array (or verify it and skip)."""
    from .. import features, load_audio

    arr = _features_array(store, plan)
    a, b = group[0].start, group[0].region_end
    base = {"src_bytes": 0, "dst_dir": ""}
    if not force and all(r is not None and r.get("settings") == plan for r in records):
        region = arr[:, a:b]
        if np.isfinite(region).all():  # every chunk present and checksummed (missing ones read as NaN)
            return [
                {**base, "rel": it.rel, "src": it.src, "src_bytes": it.size, "status": "skipped", "seconds": it.seconds}
                for it in group
            ]
    cfg = FeatureConfig.from_dict(config)
    region = np.zeros((cfg.n_mels, b - a), np.float32)
    results = []
    last = a
    for it in group:
        res: dict[str, Any] = {**base, "rel": it.rel, "src": it.src, "src_bytes": it.size}
        try:
            with amser_warnings() as said:
                audio = load_audio(it.src, sample_rate=cfg.sample_rate)
            res["warnings"] = said
            feats = features(audio, cfg.sample_rate, cfg, backend=backend)
            if feats.shape[1] != it.length:
                raise AmserError(f"gave {feats.shape[1]} frames, its header promised {it.length}")
            region[:, it.start - a : it.start - a + it.length] = feats
            last = it.start + it.length
            record = {"rel": it.rel, "output": "features", "index": it.index, "start": it.start}
            record |= {"length": it.length, "seconds": it.seconds, "settings": plan}
            record |= {"source_bytes": it.size, "source_mtime_ns": it.mtime_ns}
            res |= {"status": "done", "seconds": it.seconds, "record": record}
        except Exception as exc:  # a batch names each failure and goes on
            res |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        results.append(res)
    if last > a and last < b:
        region[:, last - a :] = region[:, last - a - 1 : last - a]  # repeat the last frame: codes to almost nothing
    with amser_warnings() as said:  # the codec's, as Zarr encodes the region's chunks: the task's first file says them
        arr[:, a:b] = region
    if said and results:
        results[0]["warnings"] = results[0].get("warnings", []) + said
    return results


def features(
    paths: Any,
    store: str | os.PathLike[str],
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool | None = None,
    preset: str = "whisper",
    codec: Any = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    backend: str | None = None,
    root: str | os.PathLike[str] | None = None,
    **codec_params: Any,
) -> Summary:
    """Write the features of every audio file of ``paths`` into one Zarr store (read it with :func:`open_corpus`).

    Parameters as :func:`amser_dsp.batch.encode`, plus ``chunk_frames`` (frames
    per Zarr chunk, default 1,024) and ``backend``.  Running again with the
    same listing and settings resumes (regions that read back whole are
    skipped); a different listing needs ``force=True``, which rebuilds the store.
    """
    from ..codec import make_codec
    from ..io import AUDIO_SUFFIXES
    from ..zarrstore import LAYOUT, create_corpus, expected_frames

    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise AmserError(f"chunk_frames={chunk_frames!r} is invalid: expected a positive integer")
    cfg = get_preset(preset)
    codec_config = make_codec(codec, config=cfg, **codec_params).get_config()
    store_path = os.path.abspath(store)
    side = sidecar(store_path)

    scanned: list[tuple[Item, int, float]] = []
    unreadable: list[tuple[Item, str]] = []
    for it in list_items(paths, store_path, AUDIO_SUFFIXES, "", root=root, unique_outputs=False):
        try:
            n, secs = expected_frames(it.src, cfg)
            scanned.append((it, n, secs))
        except AmserError as exc:
            unreadable.append((it, str(exc)))
    if not scanned:
        raise AmserError(f"no readable audio files in {paths}")
    groups, total = _plan(scanned, chunk_frames, files_per_task=64, bytes_per_task=8_000_000)
    settings = {"kind": "features", "config": cfg.to_dict(), "codec": codec_config, "chunk_frames": chunk_frames}
    listing = hashlib.sha256()
    for it, n, _ in scanned:
        listing.update(json.dumps([it.rel, it.size, it.mtime_ns, n]).encode())
    plan = settings_digest({**settings, "listing": listing.hexdigest()})

    _prepare_store(store_path, side, plan, force, LAYOUT)
    if not os.path.exists(os.path.join(store_path, "zarr.json")):
        flat = [p for g in groups for p in g]
        create_corpus(
            store_path,
            lengths=[p.length for p in flat],
            paths=[p.rel for p in flat],
            seconds=[p.seconds for p in flat],
            starts=[p.start for p in flat],
            total_frames=total,
            config=cfg,
            codec=codec_config,
            chunk_frames=chunk_frames,
            plan=plan,
        )
    task = functools.partial(
        write_region, store=store_path, plan=plan, config=cfg.to_dict(), backend=backend, force=force
    )

    def counted() -> Iterator[Item]:
        yield from (p for g in groups for p in g)

    def planned() -> Iterator[list[Item]]:
        for g in groups:
            yield list(g)

    summary = run_batch(
        "features",
        counted,
        task,
        side,
        groups=planned,
        client=client,
        scheduler=scheduler,
        workers=workers,
        progress=progress,
        prefailed=[(it, reason) for it, reason in unreadable],
    )
    _write_ok(store_path, side, plan, len([p for g in groups for p in g]))
    summary.out_bytes = sum(f.stat().st_size for f in Path(store_path).rglob("*") if f.is_file())
    return summary


def _prepare_store(store: str, side: Path, plan: str, force: bool, layout: str) -> None:
    import zarr

    if not os.path.exists(store):
        return
    try:
        meta = zarr.open_group(store, mode="r").attrs.get("amser")
    except Exception:  # not a Zarr group at all
        meta = None
    if not isinstance(meta, dict) or meta.get("layout") != layout:
        if os.listdir(store):
            raise AmserError(f"{store} exists and is not an amser feature store: refusing to overwrite it")
        return
    if meta.get("plan") != plan and not force:
        raise AmserError(
            f"{store} was written from another listing or other settings: give --force to rebuild it, "
            "or choose a new store"
        )
    if force:
        import shutil

        shutil.rmtree(store)
        (side / MANIFEST_NAME).unlink(missing_ok=True)


def _write_ok(store: str, side: Path, plan: str, n: int) -> None:
    import zarr

    manifest = Manifest(side)
    ok = np.zeros(n, bool)
    for rec in manifest.records.values():
        if rec.get("settings") == plan and 0 <= rec.get("index", -1) < n:
            ok[rec["index"]] = True
    zarr.open_array(store, path="ok", mode="r+")[:] = ok
