"""The emotion model: the fusion network, its checkpoint and inference, its data, training and evaluation.

:mod:`.network` (the network, checkpoints, :class:`~.network.EmotionRecogniser`), :mod:`.text` (the
sentence encoder), :mod:`.augment` (training-time audio augmentation), :mod:`.data` (manifest, speaker
splits and folds, cached recogniser outputs), :mod:`.train` (``amser train-emotion``), :mod:`.evaluate`
(``amser eval-emotion``).  Needs the ``emotion`` extra (torch).
"""

from __future__ import annotations

from .. import require_extra

require_extra("torch", "ctranslate2", "tokenizers", extra="emotion")
