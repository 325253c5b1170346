"""The ``amser`` commands of the server extras, registered through the ``amser_dsp.commands`` entry points.

:mod:`.recognition` (transcribe, send, stream, serve, eval-asr, train-codec), :mod:`.emotion` (analyze,
train-emotion, eval-emotion).  Only argument definitions load with ``amser``; the work loads when a command runs.
"""
