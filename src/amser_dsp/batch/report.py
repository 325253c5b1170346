"""Progress on the terminal while a batch runs, and the summary after it."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

__all__ = ["BatchProgress", "Summary"]


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


@dataclass
class Summary:
    """What a batch run did.  ``ok`` is true when every file is done or verified and nothing was interrupted."""

    kind: str
    out_dir: Path
    total: int = 0
    total_bytes: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    src_bytes: int = 0
    out_bytes: int = 0
    wall: float = 0.0
    startup: float = 0.0
    workers: int = 0
    workers_lost: int = 0
    redone_after_loss: int = 0
    stale_removed: int = 0
    interrupted: bool = False
    dashboard: str | None = None
    manifest: Path | None = None
    failures_file: Path | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (source, message): a rate target not met, ...

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.interrupted

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.failed

    def table(self) -> str:
        """The summary as aligned text lines."""
        rate = self.finished / self.wall if self.wall else 0.0
        rows = [
            (
                "files",
                f"{self.total}: {self.done} done, {self.skipped} verified and skipped, {self.failed} failed"
                + (f", {self.total - self.finished} not reached (interrupted)" if self.interrupted else ""),
            ),
            ("audio", f"{self.seconds / 3600:.3f} h"),
            ("input", _size(self.src_bytes) + (f", output {_size(self.out_bytes)}" if self.out_bytes else "")),
            (
                "time",
                f"{self.wall:.1f} s (+{self.startup:.1f} s cluster start), {rate:.1f} files/s"
                + (f", {self.seconds / self.wall:.0f} x real time" if self.wall else ""),
            ),
            (
                "workers",
                f"{self.workers}"
                + (
                    f"; {self.workers_lost} lost mid-run: the {self.redone_after_loss} files of their running tasks "
                    f"were redone elsewhere, {self.stale_removed} temporary files removed, no output lost"
                    if self.workers_lost
                    else ""
                ),
            ),
        ]
        if self.warnings:
            rows.append(("warnings", f"{len(self.warnings)} (a target not met, audio cut short: see above)"))
        if self.dashboard:
            rows.append(("dashboard", self.dashboard))
        if self.manifest:
            rows.append(("manifest", str(self.manifest)))
        if self.failures_file:
            rows.append(("failures", f"{self.failures_file} ({self.failed})"))
        width = max(len(k) for k, _ in rows)
        return "\n".join([f"amser batch {self.kind}: summary"] + [f"  {k:<{width}}  {v}" for k, v in rows])


class BatchProgress:
    """One status line: files, audio hours, throughput and ETA (redrawn on a terminal, logged every 15 s elsewhere).

    The ETA extrapolates from input bytes done, which follow audio duration
    more closely than file counts do.
    """

    def __init__(self, summary: Summary, *, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.summary = summary
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.enabled = self.tty if enabled is None else enabled
        self.start = time.perf_counter()
        self.last = 0.0
        self.interval = 0.5 if self.tty else 15.0
        self._logged: tuple[int, int, int] | None = None  # the counts of the last line logged (not a terminal)

    def _counts(self) -> tuple[int, int, int]:
        s = self.summary
        return s.finished, s.failed, s.workers_lost

    def line(self) -> str:
        s = self.summary
        elapsed = time.perf_counter() - self.start
        pct = 100 * s.finished / s.total if s.total else 100.0
        rate = s.finished / elapsed if elapsed else 0.0
        text = (
            f"{s.kind}: {s.finished}/{s.total} files ({pct:.1f}%), {s.seconds / 3600:.2f} h audio, "
            f"{rate:.1f} files/s, {s.seconds / elapsed if elapsed else 0:.0f} x real time"
        )
        if s.total_bytes and 0 < s.src_bytes < s.total_bytes:
            text += f", ETA {_clock(elapsed * (s.total_bytes - s.src_bytes) / s.src_bytes)}"
        if s.failed:
            text += f", {s.failed} failed"
        if s.workers_lost:
            text += f", {s.workers_lost} worker(s) lost"
        return text

    def update(self, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < self.interval):
            return
        self.last = now
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
            self._logged = self._counts()
        self.stream.flush()

    def close(self) -> None:
        """The final state: redrawn on a terminal; logged elsewhere unless the last line logged says it already."""
        if not self.enabled:
            return
        if self.tty:
            self.update(force=True)
            self.stream.write("\n")
        elif self._logged != self._counts():
            self.update(force=True)
        self.stream.flush()

    def say(self, text: str) -> None:
        """A message on its own line (the dashboard address, a lost worker), when progress is shown."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
