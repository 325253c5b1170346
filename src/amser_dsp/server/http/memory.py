"""The service's memory: the process's RSS, glibc's allocator (trim and arena statistics), an opt-in probe.

``AMSER_DEBUG_MEMORY=1`` in the server's environment (never on by default)
starts :mod:`tracemalloc` and adds ``GET /debug/memory`` (outside the OpenAPI
document, behind the API key like every route): each call answers what Python
and NumPy allocated since the previous call (tracemalloc's largest differences),
glibc's arena statistics, and the RSS before and after ``malloc_trim(0)``.
``benchmarks/soak.py --debug-memory`` calls it at every idle point: a leak shows
as traced memory that grows with the requests; allocator retention as RSS that
grows while the traced memory stays flat and that ``malloc_trim`` gives back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import re
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["IdleTrimmer", "MemoryProbe", "malloc_stats", "malloc_trim", "process_memory", "rss_by_mapping"]

_STATUS_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")


def process_memory(pid: int | str = "self") -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` (peak), ``RssAnon``, ``RssFile`` in kB and ``Threads`` of a process (Linux; else {})."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in _STATUS_FIELDS:
            out[key] = int(value.split()[0])
    return out


#: glibc reserves each thread arena's heap at a multiple of HEAP_MAX_SIZE (64 MiB on 64-bit systems).
_ARENA_ALIGN = 64 << 20


def rss_by_mapping(pid: int | str = "self") -> dict[str, int]:
    """Resident kB by kind of mapping, from /proc/PID/smaps (Linux; else {}).

    ``file`` (code and data of files, the model included), ``heap`` (glibc's
    main arena), ``arenas`` (anonymous mappings at 64 MiB boundaries: glibc's
    thread arenas), ``anon`` (other anonymous memory: large blocks glibc maps
    by themselves, Python's object arenas, jemalloc's extents), ``other``
    (stack, vdso, ...).
    """
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return {}
    out = dict.fromkeys(("file", "heap", "arenas", "anon", "other"), 0)
    kind = "other"
    for line in text.splitlines():
        head = line.split(None, 5)
        if head and "-" in head[0] and not head[0].endswith(":"):  # a mapping's header line
            name = head[5].strip() if len(head) > 5 else ""
            start = int(head[0].split("-")[0], 16)
            if name.startswith("/"):
                kind = "file"
            elif name == "[heap]":
                kind = "heap"
            elif name:
                kind = "other"
            else:
                kind = "arenas" if start % _ARENA_ALIGN == 0 else "anon"
        elif head and head[0] == "Rss:":
            out[kind] += int(head[1])
    return out


@functools.cache
def _glibc() -> Any:
    """The C library if it is glibc (malloc_trim and malloc_info are glibc's), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None  # musl, or an allocator without the glibc extensions
    return libc


def malloc_trim() -> bool | None:
    """``malloc_trim(0)``: give every arena's free pages back to the system (glibc); None if unavailable.

    Returns whether glibc released any memory.  With another allocator preloaded
    (jemalloc through ``LD_PRELOAD``) glibc's heap is unused and this does nothing;
    that allocator returns memory its own way.
    """
    libc = _glibc()
    return None if libc is None else bool(libc.malloc_trim(0))


def malloc_stats() -> dict[str, int] | None:
    """glibc's ``malloc_info``, summed: arenas, bytes taken from the system, free bytes still held, mmapped bytes."""
    libc = _glibc()
    if libc is None:
        return None
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t)]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.free.argtypes = [ctypes.c_void_p]
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return None
    try:
        libc.malloc_info(0, stream)
    finally:
        libc.fclose(stream)
    xml = ctypes.string_at(buf, size.value).decode()
    libc.free(buf)
    # The totals after the last </heap>: <total type="fast|rest" size=..>, <system type="current">, <aspace ...>.
    tail = xml[xml.rfind("</heap>") :]
    totals = {m[0]: int(m[1]) for m in re.findall(r'<total type="(\w+)" count="\d+" size="(\d+)"', tail)}
    system = re.search(r'<system type="current" size="(\d+)"', tail)
    return {
        "arenas": xml.count("<heap nr="),
        "system_bytes": int(system[1]) if system else 0,
        "free_bytes": totals.get("fast", 0) + totals.get("rest", 0),
        "mmap_bytes": totals.get("mmap", 0),
    }


class IdleTrimmer:
    """Give the allocator's free pages back to the system once the service has been idle for ``delay`` seconds.

    glibc keeps memory freed by the recogniser's large temporaries in its
    per-thread arenas: measured under the soak (docs/soak.md), about 150 MB of
    a 240 MB heap is free but held at idle, and which arena holds how much
    drifts from one idle period to the next (idle RSS steps of 50 MB).
    ``malloc_trim(0)`` returns it in a few milliseconds.  Used from the event
    loop: ``with trimmer.busy():`` around each request; the last request out
    schedules the trim, and a new request cancels it.  A no-op where
    ``malloc_trim`` does not exist (musl, macOS) or with ``delay=0``.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay if _glibc() is not None else 0.0
        self.active = 0
        self.timer: asyncio.TimerHandle | None = None
        self.trims = 0
        self.trim_seconds = 0.0

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count one request in flight; when the count falls to zero, trim after ``delay`` s of quiet."""
        self.active += 1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        try:
            yield
        finally:
            self.active -= 1
            if not self.active and self.delay > 0:
                self.timer = asyncio.get_running_loop().call_later(self.delay, self._trim)

    def _trim(self) -> None:
        self.timer = None
        if self.active:
            return
        t0 = time.perf_counter()
        malloc_trim()
        self.trims += 1
        self.trim_seconds += time.perf_counter() - t0


class MemoryProbe:
    """tracemalloc differences between calls, glibc's statistics, RSS before and after a trim.

    Parameters
    ----------
    frames : int
        Stack frames tracemalloc keeps per allocation (more: slower, better attribution).
    top : int
        Differences reported per call.
    """

    def __init__(self, frames: int = 8, top: int = 15) -> None:
        self.top = top
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
        self.previous = self._snapshot()
        self.calls = 0

    @staticmethod
    def _snapshot() -> tracemalloc.Snapshot:
        return tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])

    def report(self, trim: bool = True) -> dict[str, Any]:
        """What grew since the previous call; then ``malloc_trim(0)`` and what it gave back (``trim=True``)."""
        current = self._snapshot()
        diff = current.compare_to(self.previous, "traceback")
        self.previous, self.calls = current, self.calls + 1
        traced, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out: dict[str, Any] = {
            "call": self.calls,
            "traced_bytes": traced,
            "traced_peak_bytes": traced_peak,
            "traced_blocks": sum(s.count for s in current.statistics("filename")),
            "top_growth": [
                {
                    "size_diff": s.size_diff,
                    "count_diff": s.count_diff,
                    "size": s.size,
                    "where": [f"{f.filename}:{f.lineno}" for f in s.traceback[-4:]],
                }
                for s in diff[: self.top]
            ],
            "rss_kb": process_memory().get("VmRSS"),
            "malloc": malloc_stats(),
        }
        if trim:
            t0 = time.perf_counter()
            out["trimmed"] = malloc_trim()
            out["trim_ms"] = 1000 * (time.perf_counter() - t0)
            out["rss_after_trim_kb"] = process_memory().get("VmRSS")
            out["malloc_after_trim"] = malloc_stats()
        return out


def probe_enabled() -> bool:
    """Whether ``AMSER_DEBUG_MEMORY`` asks for the probe (``1``, ``true``, ``yes``)."""
    return os.environ.get("AMSER_DEBUG_MEMORY", "").strip().lower() in ("1", "true", "yes")
