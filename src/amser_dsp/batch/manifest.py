"""Outputs that can be trusted: atomic writes, digests, the manifest, and the failures file.

Every output is written under a hidden temporary name in its own folder and
renamed into place, so a reader (or a resumed run) sees either the whole file
or none: a worker killed mid-write leaves only a temporary file, which the run
removes.  The manifest (``amser-manifest.jsonl`` in the output root) has one
JSON record per output: its source's path, size and modification time, the
settings digest, and the output's size and SHA-256.  A resumed run skips an
output only if all of them still match and the output checks (a container's
own checksums, a JSON file's syntax).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import AmserError

__all__ = [
    "FAILURES_NAME",
    "MANIFEST_NAME",
    "TEMP_MARK",
    "Manifest",
    "atomic_write",
    "digest_bytes",
    "remove_stale_temporaries",
    "run_lock",
    "settings_digest",
    "verify_output",
    "write_failures",
]

MANIFEST_NAME = "amser-manifest.jsonl"
FAILURES_NAME = "amser-failures.tsv"
LOCK_NAME = ".amser-batch.lock"
#: Part of every temporary output's name (hidden: listings skip it).
TEMP_MARK = ".amser-tmp-"


def digest_bytes(data: bytes) -> str:
    """SHA-256 hex digest."""
    return hashlib.sha256(data).hexdigest()


def settings_digest(settings: dict[str, Any]) -> str:
    """Digest of the canonical JSON of what decides an output's content (kind, config, codec, model)."""
    return digest_bytes(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode())[:16]


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` under a temporary name in the same folder, then rename it into place.

    The rename is atomic on POSIX file systems (and NFS): a crash or a killed
    process leaves the old file or the new one, never a part.  No fsync: this
    protects against dying processes, not against power loss.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}{TEMP_MARK}{uuid.uuid4().hex[:12]}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def verify_output(path: str | os.PathLike[str], record: dict[str, Any] | None) -> str | None:
    """Why the output at ``path`` cannot be trusted against its manifest ``record`` (None: it can).

    Checks size, SHA-256, then the content itself: an ``.amser`` container's
    framing and checksums (:func:`amser_dsp.inspect`), a ``.json`` file's syntax.
    """
    if record is None:
        return "not in the manifest"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if len(data) != record.get("bytes"):
        return f"size {len(data)} != manifest {record.get('bytes')}"
    if digest_bytes(data) != record.get("sha256"):
        return "SHA-256 differs from the manifest"
    try:
        if os.fspath(path).endswith(".amser"):
            from ..codec import inspect

            inspect(data)
        elif os.fspath(path).endswith(".json"):
            json.loads(data)
    except (AmserError, ValueError) as exc:
        return f"content does not check: {exc}"
    return None


class Manifest:
    """The output root's manifest: read on start, appended as results arrive, compacted at the end.

    Records are keyed by the source's relative path (``rel``); a later record
    replaces an earlier one, so appending is safe after a crash and
    :meth:`compact` leaves exactly one line per output.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.path = Path(out_dir) / MANIFEST_NAME
        self.records: dict[str, dict[str, Any]] = {}
        self._fh: BinaryIO | None = None
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                self.records[rec["rel"]] = rec
            except (ValueError, KeyError, TypeError):
                if n < len(lines):  # only the last line can be cut short by a crash (its output is redone)
                    raise AmserError(f"{self.path} line {n} is not a manifest record") from None
                self.compact()  # drop the cut line before anything is appended after it

    def get(self, rel: str) -> dict[str, Any] | None:
        return self.records.get(rel)

    def add(self, record: dict[str, Any]) -> None:
        """Record an output (appended to the file at once: a crash loses nothing already written)."""
        self.records[record["rel"]] = record
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 (kept open for the run; closed by compact/close)
        self._fh.write(json.dumps(record, sort_keys=True).encode() + b"\n")

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def compact(self) -> None:
        """Rewrite the manifest with one record per output, in path order (atomically)."""
        self.close()
        lines = (json.dumps(self.records[k], sort_keys=True) for k in sorted(self.records))
        atomic_write(self.path, "".join(line + "\n" for line in lines).encode())


def write_failures(out_dir: str | os.PathLike[str], failures: list[tuple[str, str]]) -> Path:
    """Write ``source<TAB>reason`` lines (a header first) to the failures file; return its path."""
    path = Path(out_dir) / FAILURES_NAME
    rows = ["source\treason"] + [f"{src}\t{' '.join(reason.split())}" for src, reason in failures]
    atomic_write(path, ("\n".join(rows) + "\n").encode())
    return path


def remove_stale_temporaries(folders: set[str]) -> int:
    """Delete temporary outputs left in ``folders`` by killed workers; return how many."""
    removed = 0
    for folder in folders:
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if TEMP_MARK in entry.name and entry.name.startswith("."):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                        removed += 1
    return removed


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on the output root: two runs writing one tree would corrupt the manifest."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, LOCK_NAME), "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AmserError(f"another amser batch run is writing to {out_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
