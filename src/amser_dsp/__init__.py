"""amser_dsp: log-Mel speech features on the device, compact containers on the wire.

The public API is flat::

    import amser_dsp
    x = amser_dsp.load_audio("speech.flac")          # float32, 16 kHz mono
    f = amser_dsp.features(x, 16000)                  # (n_mels, n_frames), the whisper preset
    blob = amser_dsp.encode(f, config="whisper")     # a checksummed container (docs/format.md)

Importing this package loads NumPy and the core only; SciPy's signal module,
Numba and the server extra load on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from . import backends
from .api import features
from .backends import use_backend
from .codec import (
    DEFAULT_CODEC,
    Decoded,
    Info,
    StreamDecoder,
    StreamEncoder,
    decode,
    decode_container,
    encode,
    encode_audio,
    inspect,
    make_codec,
)
from .config import DEFAULT_PRESET, PRESETS, FeatureConfig, get_preset
from .container import Limits
from .data import sample_path, sample_transcript
from .errors import (
    AmserError,
    AmserWarning,
    AudioError,
    BackendError,
    BackendUnavailableError,
    CheckpointError,
    CodecError,
    ConfigError,
    ContainerError,
    CorruptContainerError,
    LimitExceededError,
    ModelError,
    ModelNotInstalledError,
    SampleRateError,
    TargetNotMetWarning,
    TooLongError,
    UnknownBackendError,
    UnknownTablesError,
    UnsupportedVersionError,
)
from .frontend import OnlineFeatures
from .io import load_audio

try:  # one version, pyproject.toml's, as the installed package's metadata says
    __version__ = _version("amser-dsp")
except _PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_CODEC",
    "DEFAULT_PRESET",
    "PRESETS",
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
    "Decoded",
    "FeatureConfig",
    "Info",
    "LimitExceededError",
    "Limits",
    "ModelError",
    "ModelNotInstalledError",
    "OnlineFeatures",
    "SampleRateError",
    "StreamDecoder",
    "StreamEncoder",
    "TargetNotMetWarning",
    "TooLongError",
    "UnknownBackendError",
    "UnknownTablesError",
    "UnsupportedVersionError",
    "__version__",
    "backends",
    "decode",
    "decode_container",
    "encode",
    "encode_audio",
    "features",
    "get_preset",
    "inspect",
    "load_audio",
    "make_codec",
    "sample_path",
    "sample_transcript",
    "use_backend",
]
