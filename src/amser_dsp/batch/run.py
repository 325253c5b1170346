"""The Dask side of a batch run: a cluster, bounded submission, results into the manifest.

Tasks are submitted a few per worker at a time (never one graph of the whole
listing), each a group of files (:func:`~amser_dsp.batch.plan.group_items`);
as each finishes its results go into the manifest and the next task is
submitted.  A worker that dies is noticed through the scheduler's
``remove-worker`` events; Dask reruns its tasks elsewhere, and outputs are
atomic, so the rerun just writes them again.  A task that kills every worker
it runs on is split into single files so only the culprit fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import AmserError
from .manifest import Manifest, remove_stale_temporaries, run_lock, write_failures
from .plan import Item, group_items
from .report import BatchProgress, Summary

__all__ = ["dask_setup", "local_cluster_client", "run_batch"]

#: Tasks kept in flight per worker thread: enough to hide the round trip, few enough to bound memory.
IN_FLIGHT_PER_THREAD = 3


def _require_dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError("amser batch runs on Dask: pip install 'amser-dsp[batch]'", name="distributed") from None
    return distributed


def dask_setup(worker: Any) -> None:
    """Preload hook of a local cluster's workers: they ignore Ctrl-C (SIGINT).

    A terminal sends Ctrl-C to every process of its group, the cluster's
    workers included; each then printed its traceback (about a hundred lines)
    before the summary.  The driver alone stops the run and closes the cluster.
    Workers restarted by their nanny run this hook again.
    """
    with contextlib.suppress(ValueError):  # not the main thread: leave the signal alone
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """SIGINT ignored while processes are spawned (they inherit it) until their preload hook runs."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def local_cluster_client(workers: int | None = None) -> Iterator[Any]:
    """A client of a new local cluster: ``workers`` processes (default one per core), one thread each."""
    distributed = _require_dask()
    import dask

    n = workers or os.cpu_count() or 1
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers: glibc then hands every freed block over
    # 64 KiB back to the kernel and page-faults it in again on the next call; measured here, Whisper on a
    # worker took 1.47 x the CPU of the same loop in a plain process (11.8 CPU s for 16 files once unset).
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
        _interrupts_ignored(),
    ):
        cluster = distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: two runs (or another Dask) never collide on 8787
            silence_logs=logging.ERROR,
            preload=[__name__],  # dask_setup: workers leave Ctrl-C to the driver
        )
    try:
        with distributed.Client(cluster) as client:
            yield client
    finally:
        cluster.close()


@contextlib.contextmanager
def _client(client: Any, scheduler: str | None, workers: int | None) -> Iterator[Any]:
    if client is not None:
        if scheduler is not None:
            raise AmserError("give a client or a scheduler address, not both")
        yield client
        return
    if scheduler is None:
        with local_cluster_client(workers) as c:
            yield c
        return
    distributed = _require_dask()
    try:
        c = distributed.Client(scheduler, timeout="30s")
    except OSError as exc:
        raise AmserError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with c:
        if workers:
            c.wait_for_workers(workers, timeout=120)  # --workers with a scheduler: wait for that many
        yield c


def _dashboard(client: Any) -> str | None:
    """The address of the scheduler's dashboard, if it serves one (else None).

    ``client.dashboard_link`` is composed from configuration whether or not a
    dashboard runs (``dask scheduler --no-dashboard`` still answers HTTP, with
    404 on ``/status``), so the scheduler is asked: the link is given only if
    it answers there.
    """
    import urllib.request

    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        link = str(client.dashboard_link)
        with urllib.request.urlopen(link, timeout=5) as answer:
            return link if answer.status == 200 else None
    except Exception:  # no answer (404, unreachable from here, a proxy): no address worth printing
        return None


class _LossWatch:
    """Collects the scheduler's unexpected ``remove-worker`` events for this run's tasks."""

    def __init__(self, in_flight: dict[str, tuple[list[Item], Any]], since: float) -> None:
        self.in_flight, self.since = in_flight, since
        self.lost: list[tuple[str, int, int]] = []  # (worker, tasks, files) of this run that were running on it
        self.lock = threading.Lock()

    def __call__(self, event: tuple[float, dict[str, Any]]) -> None:
        stamp, msg = event
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker" or msg.get("expected"):
            return
        if stamp < self.since:
            return
        groups = [self.in_flight.get(str(k)) for k in msg.get("processing-tasks", ())]
        mine = [g for g in groups if g is not None]
        with self.lock:
            self.lost.append((str(msg.get("worker")), len(mine), sum(len(g[0]) for g in mine)))


def run_batch(
    kind: str,
    items: Callable[[], Iterable[Item]],
    task: Callable[[list[Item], list[dict[str, Any] | None]], list[dict[str, Any]]],
    out_dir: str | os.PathLike[str],
    *,
    groups: Callable[[], Iterator[list[Item]]] | None = None,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    files_per_task: int = 64,
    bytes_per_task: int = 16_000_000,
    prefailed: Sequence[tuple[Item, str]] = (),
) -> Summary:
    """Run ``task`` over every item, a group of items per Dask task, and return the :class:`Summary`.

    ``task(group, records)`` gets the group's manifest records (None where
    there is none) and returns one result per item (:func:`~amser_dsp.batch.work.run_task`).
    ``items`` is called twice: once to count the work (for the ETA), once to
    plan the tasks (``groups``, default :func:`group_items` of ``items``), so a
    listing of millions of files never sits in memory.  ``prefailed`` are
    files that failed before the run (unreadable while planning).
    """
    out = Path(out_dir)
    if groups is None:
        groups = lambda: group_items(items(), max_files=files_per_task, max_bytes=bytes_per_task)  # noqa: E731
    summary = Summary(kind=kind, out_dir=out)
    for item in items():
        summary.total += 1
        summary.total_bytes += item.size
    for item, reason in prefailed:
        summary.total += 1
        summary.total_bytes += item.size
        _fail(summary, [item], reason)
    bar = BatchProgress(summary, enabled=progress)
    with run_lock(out):
        manifest = Manifest(out)
        summary.manifest = manifest.path
        t0 = time.perf_counter()
        with _client(client, scheduler, workers) as c:
            summary.startup = time.perf_counter() - t0
            summary.workers = len(c.nthreads())
            summary.dashboard = _dashboard(c)
            if summary.dashboard:
                bar.say(f"Dask dashboard: {summary.dashboard}")
            try:
                _drive(kind, groups(), task, manifest, c, summary, bar)
            finally:
                manifest.compact()
    bar.close()
    if summary.failures:
        summary.failures_file = write_failures(out, summary.failures)
    else:
        with contextlib.suppress(FileNotFoundError):
            (out / "amser-failures.tsv").unlink()  # the last run's failures are all redone now
    return summary


def _drive(
    kind: str,
    groups: Iterator[list[Item]],
    task: Callable[..., list[dict[str, Any]]],
    manifest: Manifest,
    client: Any,
    summary: Summary,
    bar: BatchProgress,
) -> None:
    distributed = _require_dask()
    run_id = uuid.uuid4().hex[:8]
    pending: list[list[Item]] = []  # groups to (re)submit before new ones: split after a KilledWorker
    in_flight: dict[str, tuple[list[Item], Any]] = {}
    watch = _LossWatch(in_flight, since=time.time() - 1)
    client.subscribe_topic("all", watch)
    ac = distributed.as_completed()
    limit = max(1, IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))
    touched: set[str] = set()
    n_sub = 0

    def submit() -> bool:
        nonlocal n_sub
        group = next(groups, None) if not pending else pending.pop()
        if group is None:
            return False
        n_sub += 1
        key = f"amser-{kind}-{run_id}-{n_sub}"
        records = [manifest.get(i.rel) for i in group]
        fut = client.submit(task, group, records, key=key, pure=False)
        in_flight[key] = (group, fut)
        ac.add(fut)
        return True

    start = bar.start = time.perf_counter()
    try:
        while len(in_flight) < limit and submit():
            pass
        for fut in ac:
            group, _ = in_flight.pop(fut.key)
            try:
                results = fut.result()
            except distributed.KilledWorker as exc:
                if len(group) > 1:  # find the file that kills workers: retry one file per task
                    pending.extend([item] for item in reversed(group))
                else:
                    _fail(
                        summary,
                        group,
                        f"its worker died {exc.allowed_failures + 1} times running it "
                        "(a crash or memory exhaustion in this file)",
                    )
                results = []
            except Exception as exc:  # a task-level error fails its files, not the run
                _fail(summary, group, f"task failed: {type(exc).__name__}: {exc}")
                results = []
            for r in results:
                _account(summary, manifest, r)
                if r["dst_dir"]:
                    touched.add(r["dst_dir"])
            while len(in_flight) < limit and submit():
                pass
            _note_losses(summary, watch, bar)
            manifest.flush()
            summary.wall = time.perf_counter() - start
            bar.update()
    except KeyboardInterrupt:
        summary.interrupted = True
        client.cancel([f for _, f in in_flight.values()])
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic("all")
        summary.wall = time.perf_counter() - start
        _note_losses(summary, watch, bar)
        summary.stale_removed = remove_stale_temporaries(touched) if touched else 0


def _fail(summary: Summary, group: list[Item], reason: str) -> None:
    for item in group:
        summary.failed += 1
        summary.src_bytes += item.size
        summary.failures.append((item.src, reason))


def _account(summary: Summary, manifest: Manifest, r: dict[str, Any]) -> None:
    summary.src_bytes += r["src_bytes"]
    status = r["status"]
    if status == "failed":
        summary.failed += 1
        summary.failures.append((r.get("src", r["rel"]), r["error"]))
        return
    summary.seconds += r.get("seconds", 0.0)
    summary.warnings += [(r.get("src", r["rel"]), message) for message in r.get("warnings", ())]
    if status == "done":
        summary.done += 1
        manifest.add(r["record"])
        summary.out_bytes += r["record"].get("bytes", 0)
    else:
        summary.skipped += 1
        rec = manifest.get(r["rel"])
        summary.out_bytes += rec.get("bytes", 0) if rec else 0


def _note_losses(summary: Summary, watch: _LossWatch, bar: BatchProgress) -> None:
    with watch.lock:
        new, watch.lost = watch.lost, []
    for worker, tasks, files in new:
        summary.workers_lost += 1
        summary.redone_after_loss += files
        bar.say(f"worker {worker} was lost; its {tasks} running task(s) ({files} files) are redone elsewhere")
