"""Which optional extra brings which third-party module, and the check every optional module makes on import."""

from __future__ import annotations

import importlib.util

__all__ = ["require_extra"]


def require_extra(*modules: str, extra: str = "server") -> None:
    """Raise an ImportError naming the ``extra`` to install if any of ``modules`` is missing.

    Parameters
    ----------
    *modules : str
        Top-level module names the caller needs (default: CTranslate2 and tokenizers, the server's core).
    extra : str
        The ``amser-dsp[...]`` extra that installs them.
    """
    missing = [m for m in (modules or ("ctranslate2", "tokenizers")) if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"amser_dsp needs {', '.join(missing)} here: pip install 'amser-dsp[{extra}]'",
            name=missing[0],
        )
