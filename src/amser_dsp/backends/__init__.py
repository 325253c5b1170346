"""Back-end registry: pick the arithmetic that computes the front end.

Back ends differ only in arithmetic: they receive the same config, the same
cached window and Mel filter bank, and must match the NumPy reference
(:mod:`amser_dsp.frontend`) to a stated tolerance.

Selection order for :func:`resolve`: an explicit name, then the innermost
:func:`use_backend` block (a :mod:`contextvars` variable, so threads and
asyncio tasks do not see each other's choices), then the ``AMSER_DSP_BACKEND``
environment variable, then the highest-priority back end that is installed.

Third-party back ends register through the entry-point group
``amser_dsp.backends``; each entry point names a zero-argument callable that
returns a :class:`Backend`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint

from ..errors import BackendUnavailableError, UnknownBackendError
from .base import Backend

__all__ = [
    "ENV_VAR",
    "Backend",
    "available",
    "current",
    "get",
    "names",
    "register",
    "resolve",
    "use_backend",
]

ENV_VAR = "AMSER_DSP_BACKEND"
ENTRY_POINT_GROUP = "amser_dsp.backends"


@dataclass(frozen=True)
class _Entry:
    factory: Callable[[], Backend]
    priority: int
    requires: tuple[str, ...]  # importable modules it needs
    extra: str | None  # pip extra that installs them


_entries: dict[str, _Entry] = {}
_instances: dict[str, Backend] = {}
_lock = threading.Lock()
_entry_points_loaded = False
_selected: contextvars.ContextVar[str | None] = contextvars.ContextVar("amser_dsp_backend", default=None)


def register(
    name: str,
    factory: Callable[[], Backend],
    *,
    priority: int = 0,
    requires: tuple[str, ...] = (),
    extra: str | None = None,
    replace: bool = False,
) -> None:
    """Register a back end under ``name``.

    Parameters
    ----------
    name : str
        Name users select it by.
    factory : callable
        Zero-argument callable returning the :class:`Backend`; called once, on
        first use, so heavy imports stay lazy.
    priority : int
        The default back end is the installed one with the highest priority.
    requires : tuple of str
        Modules that must be importable for the back end to be available.
    extra : str, optional
        The ``amser-dsp[extra]`` that installs ``requires`` (named in errors).
    replace : bool
        Allow replacing an existing registration.
    """
    if not isinstance(name, str) or not name:
        raise UnknownBackendError(f"back-end name must be a non-empty string, got {name!r}")
    with _lock:
        if name in _entries and not replace:
            raise UnknownBackendError(f"back end {name!r} is already registered (pass replace=True)")
        _entries[name] = _Entry(factory, priority, tuple(requires), extra)
        _instances.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _entries:
            register(ep.name, functools.partial(_from_entry_point, ep), priority=-1)


def _from_entry_point(ep: EntryPoint) -> Backend:
    """The back end an ``amser_dsp.backends`` entry point names (loaded when first used)."""
    return ep.load()()


def names() -> list[str]:
    """Every registered back-end name, installed or not."""
    _load_entry_points()
    return sorted(_entries)


def _installed(entry: _Entry) -> bool:
    return all(importlib.util.find_spec(mod) is not None for mod in entry.requires)


def available() -> list[str]:
    """Names of the back ends whose dependencies are installed, fastest first."""
    _load_entry_points()
    usable = [(e.priority, n) for n, e in _entries.items() if _installed(e)]
    return [n for _, n in sorted(usable, key=lambda pn: (-pn[0], pn[1]))]


def get(name: str) -> Backend:
    """Return the back end called ``name``, creating it on first use.

    Raises
    ------
    UnknownBackendError
        If no back end has that name.
    BackendUnavailableError
        If it is registered but its optional dependency is missing.
    """
    if name in _instances:
        return _instances[name]
    _load_entry_points()
    entry = _entries.get(name)
    if entry is None:
        raise UnknownBackendError(f"unknown back end {name!r}; registered back ends: {sorted(_entries)}")
    if not _installed(entry):
        hint = f"pip install 'amser-dsp[{entry.extra}]'" if entry.extra else f"install {', '.join(entry.requires)}"
        raise BackendUnavailableError(
            f"back end {name!r} needs {', '.join(entry.requires)}, which is not installed; {hint}"
        )
    with _lock:
        if name not in _instances:
            try:
                _instances[name] = entry.factory()
            except ImportError as exc:
                raise BackendUnavailableError(f"back end {name!r} failed to import: {exc}") from exc
        return _instances[name]


def current() -> str:
    """Name of the back end :func:`resolve` would pick with no argument."""
    chosen = _selected.get() or os.environ.get(ENV_VAR) or None
    if chosen:
        return chosen
    ranked = available()
    return ranked[0] if ranked else "numpy"


def resolve(name: str | None = None) -> Backend:
    """The back end to use: ``name`` if given, else :func:`current`."""
    return get(name or current())


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Use back end ``name`` inside a ``with`` block (this thread/task only).

    The back end is looked up on entry, so a bad name fails at the ``with``
    line.  The previous choice is restored on exit, exceptions included.
    """
    backend = get(name)
    token = _selected.set(name)
    try:
        yield backend
    finally:
        _selected.reset(token)


def _numpy_backend() -> Backend:
    from .numpy_backend import NumpyBackend

    return NumpyBackend()


register("numpy", _numpy_backend, priority=10, requires=("numpy", "scipy"))


def _numba_backend() -> Backend:
    # Imported here, on first use: `import amser_dsp` must not pay for Numba.
    from .numba_backend import NumbaBackend

    return NumbaBackend()


register("numba", _numba_backend, priority=20, requires=("numba",), extra="numba")
