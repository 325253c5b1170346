"""The server side: features in, transcripts and emotions out.

One subpackage per job, layered bottom up (docs/architecture.md):

- :mod:`.recognition`: Whisper on decoded features (CTranslate2), the batcher that decodes many requests
  together, the live transcript's state machine, the transcript cache;
- :mod:`.evaluation`: word error rates of every way of getting features to the recogniser (``amser eval-asr``);
- :mod:`.emotion`: the fusion network, its checkpoint and inference, the text encoder, training data,
  training and evaluation;
- :mod:`.analysis`: the one pipeline (transcript, then emotion) that the service and every command use;
- :mod:`.http`: the HTTP/WebSocket service (``amser serve``);
- :mod:`.commands`: the ``amser`` commands of these extras.

Needs the ``server`` extra (``pip install 'amser-dsp[server]'``; the emotion model also ``[emotion]``).
This package imports nothing heavy itself: import the subpackage you need.
"""

from __future__ import annotations

from ..extras import require_extra

__all__ = ["DEFAULT_BEAM_SIZE", "require_extra"]

#: Whisper's beam width wherever none is given (openai-whisper's and faster-whisper's default).
DEFAULT_BEAM_SIZE = 5
