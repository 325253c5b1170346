"""The web page (docs/web.md): its static files, served by ``amser serve``, and the build of its tables."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["web_root"]


def web_root() -> Path:
    """The folder of the page's files inside the installed package."""
    return Path(str(files("amser_dsp").joinpath("web")))
