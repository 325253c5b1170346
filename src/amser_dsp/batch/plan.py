"""What a batch run has to do: the listing of the sources, cut into tasks of bounded size.

The listing is a generator (``os.scandir``, each folder sorted), so a tree of
millions of files is never held as one list, and tasks are made as the runner
asks for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import AmserError

__all__ = ["Item", "group_items", "list_items"]


@dataclass(frozen=True)
class Item:
    """One source file and where its output goes.

    Attributes
    ----------
    src : str
        The source file.
    rel : str
        Its path relative to the source root (POSIX separators): the manifest key.
    dst : str
        The output file.
    size, mtime_ns : int
        The source's size and modification time when listed: a resumed run
        redoes an output whose source changed since.
    refused : str or None
        Why the file is not done (another source would write the same output):
        it fails with this reason, and nothing is written for it.
    """

    src: str
    rel: str
    dst: str
    size: int
    mtime_ns: int
    refused: str | None = None


def _walk(root: str, suffixes: tuple[str, ...]) -> Iterator[tuple[str, list[str] | None]]:
    """Matching files under ``root``, each with the files of its folder sharing its stem (None if it has none)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise AmserError(f"cannot list {root}: {exc.strerror or exc}") from None
    # Outputs are named by stem, and only files of one folder share a stem: a folder's entries are listed
    # already, so finding the clashes costs nothing beyond them however large the tree.
    files = [e for e in entries if not e.name.startswith(".") and e.is_file() and e.name.lower().endswith(suffixes)]
    by_stem: dict[str, list[str]] = {}
    for e in files:
        by_stem.setdefault(os.path.splitext(e.name)[0], []).append(e.path)
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files and our own temporary outputs
        if entry.is_dir():
            yield from _walk(entry.path, suffixes)
        elif entry.is_file() and entry.name.lower().endswith(suffixes):
            same = by_stem[os.path.splitext(entry.name)[0]]
            yield entry.path, same if len(same) > 1 else None


def list_items(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    suffixes: Iterable[str],
    out_suffix: str,
    *,
    root: str | os.PathLike[str] | None = None,
    unique_outputs: bool = True,
) -> Iterator[Item]:
    """Yield an :class:`Item` per source file, outputs mirrored under ``out_dir``.

    Parameters
    ----------
    sources : folder, or iterable of files
        A folder is walked recursively (hidden entries skipped, each folder in
        name order); files are taken as given.
    out_dir : path
        Output root; ``rel`` with its suffix replaced by ``out_suffix`` below it.
    suffixes : iterable of str
        Source suffixes to take from folders (lower case, with the dot).
    root : path, optional
        What ``rel`` is relative to for a list of files (default: their
        common folder, or the folder itself).
    unique_outputs : bool
        Sources that would write one output (``a.flac`` and ``a.wav`` to
        ``a.amser``) are refused, both named (:attr:`Item.refused`), as the
        ``amser`` commands refuse them.  False when outputs are not files named
        by the source (the feature store).
    """
    from ..cli import clash_reason

    sfx = tuple(s.lower() for s in suffixes)
    out = os.fspath(out_dir)
    walked = False
    if isinstance(sources, (str, os.PathLike)):
        base = os.fspath(sources)
        if not os.path.exists(base):
            raise AmserError(f"input not found: {base}")
        if os.path.isdir(base):
            top = os.fspath(root) if root is not None else base
            files: Iterable[tuple[str, list[str] | None]] = _walk(base, sfx)
            walked = root is None
        else:
            top = os.fspath(root) if root is not None else os.path.dirname(base) or "."
            files = [(base, None)]
    else:
        given = [os.fspath(p) for p in sources]
        if not given:
            raise AmserError("no input files given")
        top = os.fspath(root) if root is not None else os.path.commonpath([os.path.dirname(f) or "." for f in given])
        # A list is in memory already: its clashes (across folders too, with root=) are found over all of it.
        stems = [os.path.splitext(os.path.relpath(f, top))[0] for f in given]
        by_stem: dict[str, list[str]] = {}
        for f, stem in zip(given, stems, strict=True):
            by_stem.setdefault(stem, []).append(f)
        files = [(f, by_stem[stem] if len(by_stem[stem]) > 1 else None) for f, stem in zip(given, stems, strict=True)]
    prefix = os.path.join(top, "")
    for path, same in files:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise AmserError(f"input not found: {path} ({exc.strerror})") from None
        # A walked path is its root joined with names: slicing is exact and costs far less than relpath.
        rel = path[len(prefix) :] if walked else os.path.relpath(path, top)
        rel = rel.replace(os.sep, "/")
        if rel.startswith("../"):
            raise AmserError(f"{path} is not under {top}: give root= to name outputs")
        dst = os.path.join(out, os.path.splitext(rel)[0] + out_suffix)
        refused = clash_reason(same, dst) if same and unique_outputs else None
        yield Item(path, rel, dst, st.st_size, st.st_mtime_ns, refused)


def group_items(items: Iterable[Item], *, max_files: int, max_bytes: int) -> Iterator[list[Item]]:
    """Cut the listing into tasks of at most ``max_files`` files and about ``max_bytes`` of input.

    Grouping keeps the scheduler's per-task cost small against the work (a
    2-second clip encodes in milliseconds), while one long file still gets a
    task to itself.
    """
    group: list[Item] = []
    size = 0
    for item in items:
        if group and (len(group) >= max_files or size + item.size > max_bytes):
            yield group
            group, size = [], 0
        group.append(item)
        size += item.size
    if group:
        yield group
