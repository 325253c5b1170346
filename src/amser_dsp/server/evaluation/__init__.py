"""Word error rates of Whisper on compressed features against audio codecs (``amser eval-asr``).

:mod:`.scoring` (normaliser, word errors, bootstrap intervals), :mod:`.modes` (the ways of getting features
to the recogniser), :mod:`.report` (rows, tables, plot), :mod:`.run` (the command).
"""

from __future__ import annotations

from .. import require_extra

require_extra("ctranslate2", "tokenizers")
