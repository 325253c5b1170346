"""Speech recognition on decoded features: Whisper through CTranslate2.

:mod:`.whisper` (windows, the :class:`~.whisper.Transcriber`, the live recogniser), :mod:`.batcher` (requests
decoded together), :mod:`.live` (the live transcript's LocalAgreement state machine, no model inside),
:mod:`.transcripts` (a cache keyed by exactly what the recogniser saw).
"""

from __future__ import annotations

from .. import require_extra

require_extra("ctranslate2", "tokenizers")
