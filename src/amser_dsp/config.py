"""Feature configurations: presets are data, not code paths.

A :class:`FeatureConfig` says everything about how log-Mel features are made.
It is frozen and hashable, validated on construction, and round-trips through
:meth:`FeatureConfig.to_dict` / :meth:`FeatureConfig.from_dict` exactly, so it
can travel inside a container and a decoder never needs the local preset table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from .errors import ConfigError
from .filterbank import mel_filterbank_for

__all__ = ["CONFIG_VERSION", "DEFAULT_PRESET", "PRESETS", "FeatureConfig", "frames_for_seconds", "get_preset"]

#: Version of the ``to_dict`` layout.  Bump when a field changes meaning.
CONFIG_VERSION = 1

WINDOWS = ("hamming", "hann", "povey", "rectangular")
PADDINGS = ("snip", "center")
PAD_MODES = ("reflect", "constant", "edge")
PREEMPHASIS_SCOPES = ("signal", "frame")
MEL_SCALES = ("htk", "slaney")
MEL_TRIANGLES = ("hz", "mel")
MEL_NORMS = ("slaney",)
LOGS = ("ln", "log10")

# Upper bounds that keep a config from a hostile container from asking for
# absurd allocations (a 2**31-point FFT, a million Mel bands).
MAX_SAMPLE_RATE = 384_000
MAX_FFT = 1 << 16
MAX_MELS = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureConfig:
    """Everything that defines a log-Mel filter-bank feature matrix.

    The pipeline is ``input_scale`` → signal pre-emphasis (``preemphasis_scope
    == "signal"``) → framing (``padding``) → per-frame DC removal → per-frame
    pre-emphasis (``preemphasis_scope == "frame"``) → window → ``|rfft|**power``
    → Mel filter bank → log with floor → dynamic-range clamp → ``(x + log_offset)
    * log_scale``.  The output is ``(n_mels, n_frames)``.

    Parameters
    ----------
    sample_rate : int
        Sample rate in Hz the audio must have.
    frame_length : int
        Samples per analysis frame (25 ms at 16 kHz is 400).
    hop_length : int
        Samples between frame starts (10 ms at 16 kHz is 160).
    n_fft : int
        FFT size; frames are zero-padded to it.  Must be >= ``frame_length``.
    window : {"hamming", "hann", "povey", "rectangular"}
        Analysis window.  ``povey`` is Kaldi's ``hann ** 0.85``.
    periodic_window : bool
        ``True`` for the periodic (DFT-even) form, ``False`` for the symmetric one.
    preemphasis : float
        Coefficient ``c`` of ``y[n] = x[n] - c * x[n-1]``; 0 disables it.
    preemphasis_scope : {"signal", "frame"}
        ``signal``: applied once to the whole signal before framing (the sample
        before the first one is taken as 0).  ``frame``: applied inside every
        frame after DC removal, with ``y[0] = x[0] - c * x[0]`` (Kaldi).
    remove_dc : bool
        Subtract each frame's mean before pre-emphasis and windowing (Kaldi).
    input_scale : float
        Multiplies the samples first (Kaldi works on 16-bit integer values: 32768).
    trailing_silence : int
        Samples of digital silence appended to the signal before anything else,
        as openai-whisper's ``transcribe`` appends 30 s of zeros: with
        ``frame_length`` of them, every frame that overlaps the audio is
        computed from zeros beyond its end, exactly as Whisper sees it.
    padding : {"snip", "center"}
        ``snip``: frames lie wholly inside the signal, ``1 + (n - frame_length)
        // hop_length`` of them.  ``center``: the signal is padded by
        ``frame_length // 2`` on both sides with ``pad_mode`` and frame ``t`` is
        centred on sample ``t * hop_length``.
    pad_mode : {"reflect", "constant", "edge"}
        How ``center`` padding fills (``numpy.pad`` modes).
    drop_last_frame : bool
        Drop the final frame (openai-whisper does, after ``torch.stft``).
    n_mels : int
        Number of Mel bands.
    f_min, f_max : float
        Band edges in Hz; ``f_max=None`` means the Nyquist frequency.
    mel_scale : {"htk", "slaney"}
        ``htk``: ``2595 log10(1 + f / 700)``.  ``slaney``: linear below 1 kHz,
        logarithmic above (librosa's default, Whisper's).
    mel_triangles : {"hz", "mel"}
        Whether the filters are triangles linear in Hz (librosa, Whisper) or
        linear in Mel (Kaldi).
    mel_norm : {"slaney", None}
        ``slaney`` scales each filter to unit area; ``None`` leaves peaks at 1.
    power : float
        Exponent of the spectral magnitude: 2 for power, 1 for magnitude.
    log : {"ln", "log10"}
        Logarithm base.
    log_floor : float
        Mel energies are clamped to at least this before the log.
    dynamic_range : float or None
        If set, each utterance is clamped to ``max - dynamic_range`` after the log.
    log_offset, log_scale : float
        Final affine map ``(x + log_offset) * log_scale``.
    """

    sample_rate: int = 16_000
    frame_length: int = 400
    hop_length: int = 160
    n_fft: int = 512
    window: Literal["hamming", "hann", "povey", "rectangular"] = "hamming"
    periodic_window: bool = False
    preemphasis: float = 0.97
    preemphasis_scope: Literal["signal", "frame"] = "signal"
    remove_dc: bool = False
    input_scale: float = 1.0
    trailing_silence: int = 0
    padding: Literal["snip", "center"] = "snip"
    pad_mode: Literal["reflect", "constant", "edge"] = "reflect"
    drop_last_frame: bool = False
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: Literal["htk", "slaney"] = "htk"
    mel_triangles: Literal["hz", "mel"] = "hz"
    mel_norm: Literal["slaney"] | None = None
    power: float = 2.0
    log: Literal["ln", "log10"] = "ln"
    log_floor: float = 1e-10
    dynamic_range: float | None = None
    log_offset: float = 0.0
    log_scale: float = 1.0

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------ derived
    @property
    def frame_rate(self) -> float:
        """Frames per second of audio, ``sample_rate / hop_length``."""
        return self.sample_rate / self.hop_length

    @property
    def n_bins(self) -> int:
        """Number of one-sided FFT bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def nyquist(self) -> float:
        """Half the sample rate, in Hz."""
        return self.sample_rate / 2

    @property
    def upper_frequency(self) -> float:
        """``f_max`` with ``None`` resolved to the Nyquist frequency."""
        return self.nyquist if self.f_max is None else float(self.f_max)

    @property
    def center_pad(self) -> int:
        """Samples of padding on each side in ``center`` mode (0 in ``snip`` mode)."""
        return self.frame_length // 2 if self.padding == "center" else 0

    @property
    def min_samples(self) -> int:
        """Fewest samples that give at least one frame.

        Shorter non-empty audio gives zero frames in ``snip`` mode.  In
        ``center`` mode with ``reflect`` padding, audio must also be longer
        than the padding (reflection is undefined otherwise), and shorter audio
        raises :class:`~amser_dsp.AudioError`.
        """
        n = 1
        while self.num_frames(n) < 1:
            # num_frames is monotone; the loop runs at most frame_length times.
            n += 1
        if self.padding == "center" and self.pad_mode == "reflect":
            n = max(n, self.center_pad + 1 - self.trailing_silence)
        return n

    def num_frames(self, n_samples: int) -> int:
        """Number of frames this config makes from ``n_samples`` samples.

        Parameters
        ----------
        n_samples : int
            Length of the signal (non-negative).

        Returns
        -------
        int
            ``max(0, 1 + (n + trailing + 2 * pad - frame_length) // hop_length - drop)``
            where ``trailing`` is :attr:`trailing_silence`, ``pad`` is
            :attr:`center_pad` and ``drop`` is 1 when ``drop_last_frame`` is set
            (0 for empty input).
        """
        if n_samples < 0:
            raise ConfigError(f"n_samples must be >= 0, got {n_samples}")
        padded = n_samples + self.trailing_silence + 2 * self.center_pad
        if n_samples == 0 or padded < self.frame_length:
            return 0
        frames = 1 + (padded - self.frame_length) // self.hop_length
        return max(0, frames - int(self.drop_last_frame))

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field plus ``"version"``."""
        out: dict[str, Any] = {"version": CONFIG_VERSION}
        for field in dataclasses.fields(self):
            out[field.name] = getattr(self, field.name)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
        """Build a config from :meth:`to_dict` output.

        Raises
        ------
        ConfigError
            If the version is missing or unknown, a key is unknown, or a value
            is invalid.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        version = data.get("version")
        if version != CONFIG_VERSION:
            raise ConfigError(f"config version {version!r} is not supported; expected {CONFIG_VERSION}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"version"})
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(names)}")
        return cls(**{k: v for k, v in data.items() if k != "version"})

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces) of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """SHA-256 hex digest of :meth:`to_json`: equal digests mean equal features."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def replace(self, **changes: Any) -> FeatureConfig:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------- validation
def _fail(name: str, value: Any, expected: str) -> ConfigError:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "..."  # a container may hold anything
    return ConfigError(f"FeatureConfig.{name}={shown} is invalid: expected {expected}")


def _check_int(cfg: FeatureConfig, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(name, value, f"an integer in [{lo}, {hi}]")


def _check_real(cfg: FeatureConfig, name: str, lo: float, hi: float, *, open_lo: bool = False) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        try:
            ok = math.isfinite(value)
        except OverflowError:  # an integer too large for a float (from a container's JSON)
            ok = False
    if ok:
        ok = (lo < value if open_lo else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if open_lo else "["
        raise _fail(name, value, f"a finite number in {bracket}{lo}, {hi}]")


def _check_choice(cfg: FeatureConfig, name: str, choices: tuple[Any, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
        raise _fail(name, value, f"one of {list(choices)}")


def _check_bool(cfg: FeatureConfig, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, bool):
        raise _fail(name, value, "True or False")


def _validate(cfg: FeatureConfig) -> None:
    _check_int(cfg, "sample_rate", 1000, MAX_SAMPLE_RATE)
    _check_int(cfg, "frame_length", 2, MAX_FFT)
    _check_int(cfg, "hop_length", 1, MAX_FFT)
    _check_int(cfg, "n_fft", 2, MAX_FFT)
    if cfg.n_fft < cfg.frame_length:
        raise _fail("n_fft", cfg.n_fft, f"at least frame_length={cfg.frame_length}")
    _check_choice(cfg, "window", WINDOWS)
    for name in ("periodic_window", "remove_dc", "drop_last_frame"):
        _check_bool(cfg, name)
    _check_real(cfg, "preemphasis", 0.0, 1.0)
    _check_choice(cfg, "preemphasis_scope", PREEMPHASIS_SCOPES)
    _check_real(cfg, "input_scale", 0.0, 1e9, open_lo=True)
    _check_int(cfg, "trailing_silence", 0, MAX_FFT)
    _check_choice(cfg, "padding", PADDINGS)
    _check_choice(cfg, "pad_mode", PAD_MODES)
    _check_int(cfg, "n_mels", 1, MAX_MELS)
    _check_real(cfg, "f_min", 0.0, cfg.nyquist)
    if cfg.f_max is not None:
        _check_real(cfg, "f_max", 0.0, cfg.nyquist, open_lo=True)
        if cfg.f_max <= cfg.f_min:
            raise _fail("f_max", cfg.f_max, f"greater than f_min={cfg.f_min}")
    elif cfg.f_min >= cfg.nyquist:
        raise _fail("f_min", cfg.f_min, f"below the Nyquist frequency {cfg.nyquist}")
    _check_choice(cfg, "mel_scale", MEL_SCALES)
    _check_choice(cfg, "mel_triangles", MEL_TRIANGLES)
    if cfg.mel_norm is not None:
        _check_choice(cfg, "mel_norm", MEL_NORMS)
    if cfg.power not in (1.0, 2.0) or isinstance(cfg.power, bool):
        raise _fail("power", cfg.power, "1.0 (magnitude) or 2.0 (power)")
    _check_choice(cfg, "log", LOGS)
    _check_real(cfg, "log_floor", 0.0, 1.0, open_lo=True)
    if cfg.dynamic_range is not None:
        _check_real(cfg, "dynamic_range", 0.0, 1e6, open_lo=True)
    _check_real(cfg, "log_offset", -1e6, 1e6)
    _check_real(cfg, "log_scale", -1e6, 1e6)
    if cfg.log_scale == 0:
        raise _fail("log_scale", cfg.log_scale, "a non-zero number")
    # Every Mel band must receive at least one FFT bin; the filter bank is
    # cached, so the decoder and the extractor reuse this computation.
    weights = mel_filterbank_for(cfg)
    empty = np.flatnonzero(~weights.any(axis=1)).tolist()
    if empty:
        raise _fail(
            "n_mels",
            cfg.n_mels,
            f"a number of bands that each get an FFT bin; bands {empty[:5]} are empty with "
            f"n_fft={cfg.n_fft} between {cfg.f_min} and {cfg.upper_frequency} Hz "
            "(use fewer Mel bands, a larger n_fft, or a wider frequency range)",
        )


# ------------------------------------------------------------------- presets
#: The named presets.  Read-only; build others with ``FeatureConfig(...)``.
PRESETS: Mapping[str, FeatureConfig] = MappingProxyType(
    {
        # The AMSER paper's Fbank: pre-emphasis, 25 ms Hamming frames every
        # 10 ms, 512-point FFT, 80 HTK-Mel bands, natural log.
        "amser": FeatureConfig(),
        # openai-whisper's input: log_mel_spectrogram (torch.stft with center=True,
        # reflect padding, periodic Hann; last frame dropped; Slaney Mel) of the
        # audio followed by zeros, as transcribe() pads it (400 zeros give the
        # same frames as its 30 s).
        "whisper": FeatureConfig(
            frame_length=400,
            hop_length=160,
            n_fft=400,
            window="hann",
            periodic_window=True,
            preemphasis=0.0,
            trailing_silence=400,
            padding="center",
            pad_mode="reflect",
            drop_last_frame=True,
            mel_scale="slaney",
            mel_norm="slaney",
            log="log10",
            log_floor=1e-10,
            dynamic_range=8.0,
            log_offset=4.0,
            log_scale=0.25,
        ),
        # Kaldi compute-fbank-feats defaults with dither 0, as kaldi-native-fbank
        # computes them on 16-bit sample values.
        "kaldi": FeatureConfig(
            window="povey",
            periodic_window=False,
            preemphasis=0.97,
            preemphasis_scope="frame",
            remove_dc=True,
            input_scale=32768.0,
            f_min=20.0,
            mel_scale="htk",
            mel_triangles="mel",
            log_floor=float.fromhex("0x1p-23"),  # FLT_EPSILON, Kaldi's energy floor
        ),
    }
)


#: The preset every entry point uses when none is given (``features``, ``encode_audio``,
#: ``StreamEncoder``, ``OnlineFeatures``, the CLI): Whisper's input, what the server reads
#: and what the shipped kltdct tables were trained on.
DEFAULT_PRESET = "whisper"


def get_preset(name: str | FeatureConfig) -> FeatureConfig:
    """Return the preset called ``name`` (a config is returned unchanged).

    Raises
    ------
    ConfigError
        If no preset has that name.
    """
    if isinstance(name, FeatureConfig):
        return name
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown preset {name!r}; available presets: {sorted(PRESETS)}") from None


def frames_for_seconds(seconds: float, configs: Iterable[FeatureConfig] | None = None) -> int:
    """The most frames ``seconds`` of audio make under ``configs`` (default: every preset).

    A limit stated in seconds of audio is a frame count through this: not
    ``100 * seconds``, since centre padding and trailing silence add frames
    (600 s make 60,002 frames of the ``whisper`` preset).

    Raises
    ------
    ConfigError
        If ``seconds`` is not a finite non-negative number.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < float("inf"):
        raise ConfigError(f"seconds={seconds!r} is invalid: expected a finite number >= 0")
    chosen = list(PRESETS.values()) if configs is None else list(configs)
    return max((c.num_frames(round(seconds * c.sample_rate)) for c in chosen), default=0)
