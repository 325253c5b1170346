"""Exceptions (and the warnings) raised by amser_dsp.

Every error the library raises on purpose derives from :class:`AmserError`, so
``except amser_dsp.AmserError`` catches them all.  Each concrete class also
inherits the builtin exception it stands in for, so code written against the
builtins (``except ValueError``) keeps working.
"""

from __future__ import annotations

__all__ = [
    "AmserError",
    "AmserWarning",
    "AudioError",
    "BackendError",
    "BackendUnavailableError",
    "CheckpointError",
    "CodecError",
    "ConfigError",
    "ContainerError",
    "CorruptContainerError",
    "LimitExceededError",
    "ModelError",
    "ModelNotInstalledError",
    "SampleRateError",
    "TargetNotMetWarning",
    "TooLongError",
    "UnknownBackendError",
    "UnknownTablesError",
    "UnsupportedVersionError",
]


class AmserError(Exception):
    """Root of every exception raised by amser_dsp."""


class ConfigError(AmserError, ValueError):
    """A :class:`~amser_dsp.FeatureConfig` (or a preset name) is invalid."""


class AudioError(AmserError, ValueError):
    """Audio input is unusable: empty, non-finite, wrong dtype or layout, unreadable."""


class SampleRateError(AudioError):
    """The audio's sample rate does not match the one the config expects."""


class BackendError(AmserError, RuntimeError):
    """A compute back end failed or was misused."""


class UnknownBackendError(AmserError, LookupError):
    """No back end is registered under the requested name."""


class BackendUnavailableError(AmserError, ImportError):
    """A back end is known but its optional dependency is not installed."""


class CodecError(AmserError, ValueError):
    """Encoding parameters are invalid or the features cannot be encoded."""


class ContainerError(AmserError, ValueError):
    """A container (``.amser`` bytes) is malformed or cannot be read."""


class CorruptContainerError(ContainerError):
    """A container failed a checksum or structural check: it is damaged."""


class UnsupportedVersionError(ContainerError):
    """A container declares a format major version (or a codec) this library cannot read."""


class UnknownTablesError(CodecError, UnsupportedVersionError):
    """Codec tables (named by a caller or a container) are not available, or differ from the ones named."""


class LimitExceededError(ContainerError):
    """A container (or an audio file) declares a size beyond a configured safety limit."""


class TooLongError(LimitExceededError):
    """The audio (or the features of a container) lasts longer than the limit allows: shorter input would pass."""


class CheckpointError(AmserError, ValueError):
    """A model checkpoint is damaged, of another format, or made for other inputs (labels, preset, encoders)."""


class ModelError(AmserError, ValueError):
    """A recogniser model is unknown, not a Whisper model, incomplete, or fails its checksum."""


class ModelNotInstalledError(ModelError, ImportError):
    """A model named by ``--model`` comes from packages that are not installed (the message names the extra)."""


class AmserWarning(UserWarning):
    """Root of the warnings amser_dsp issues: it did what was asked as well as it could."""


class TargetNotMetWarning(AmserWarning):
    """A rate or quality target could not be met; the codec used its nearest setting (the message says which)."""
