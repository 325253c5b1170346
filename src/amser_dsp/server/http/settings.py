"""The service's settings: limits, access control, recogniser options (``amser serve`` options or ``AMSER_*``).

Light on purpose (no CTranslate2, no FastAPI): the ``amser`` command reads its defaults for ``--help``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from .. import DEFAULT_BEAM_SIZE

__all__ = ["DEFAULT_BEAM_SIZE", "ServiceSettings", "read_api_keys"]


def read_api_keys(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The keys of a key file, one per line (blank lines and ``#`` comments ignored).

    Raises
    ------
    ConfigError
        If the file cannot be read or holds no key: a service asked to check
        keys must never start with authentication silently off.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc}") from None
    keys = tuple(s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#"))
    if not keys:
        raise ConfigError(f"the API key file {path} holds no key (one key per line); refusing to start without auth")
    return keys


def env_api_key() -> str:
    """The key of ``AMSER_API_KEY``, read as a key file's line is (surrounding white space dropped).

    Raises
    ------
    ConfigError
        If the variable is set but holds no key: like an empty key file, it must never start an open service.
    """
    key = os.environ.get("AMSER_API_KEY", "").strip()
    if not key:
        raise ConfigError("AMSER_API_KEY is set but empty; set a key, or unset it to run without authentication")
    return key


@dataclass(frozen=True)
class ServiceSettings:
    """Limits and access control of the service (``amser serve`` options, or :meth:`from_env`)."""

    max_body_bytes: int = 4 << 20
    max_audio_seconds: float = 600.0
    request_timeout: float = 60.0
    queue_size: int = 8
    workers: int = 1
    #: CPU threads of each recogniser call (CTranslate2's intra-op threads; 2 on a 2-core server of its own).
    threads: int = 1
    retry_after: int = 1
    #: Seconds a WebSocket stream may stay silent before it is closed.
    idle_timeout: float = 30.0
    #: WebSocket streams open at once.
    max_streams: int = 8
    #: Longest WebSocket stream, in seconds of audio.
    max_stream_seconds: float = 3600.0
    #: Seconds without a request after which the allocator's free memory goes back to the system (0: never).
    trim_idle: float = 1.0
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    beam_size: int = DEFAULT_BEAM_SIZE
    #: Whisper model: ``tiny.en`` (None: the packaged default), ``base``, or a CTranslate2 Whisper directory.
    model: str | None = None
    #: What a multilingual model is asked to transcribe (Whisper's language code).
    language: str = "en"
    #: Emotion checkpoint for ``/v1/analyze``: None for the packaged one (if the
    #: ``emotion`` extra is installed), ``"none"`` to run without emotion.
    emotion_model: str | None = None
    #: How kltdct containers are decoded for the recogniser: None or ``"auto"`` for the learned decoder shipped
    #: for the model (if torch is installed), ``"off"`` for the plain inverse transform, or a decoder file.
    decoder: str | None = None
    #: False: a benchmark mode that receives, checks and decodes every file but does not transcribe it
    #: (``amser serve --no-recognise``; ``/v1/info`` says so; texts are empty).
    recognise: bool = True
    #: Seconds a client may take to send a request's head (request line and headers).
    head_timeout: float = 10.0
    #: Bytes per second a request body must keep up on average, after ``head_timeout`` seconds of grace.
    min_upload_rate: float = 1000.0
    #: Seconds of audio a WebSocket stream must send per second it is open, after ``idle_timeout`` of grace.
    min_stream_rate: float = 0.5
    #: Seconds a drain (SIGTERM) waits for the requests and live streams under way before it stops.
    drain_seconds: float = 30.0
    #: True: ``GET /metrics`` answers without an API key (for a scraper inside the operator's network).
    metrics_public: bool = False

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "queue_size", "workers", "threads", "beam_size", "max_streams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"service setting {name}={value!r} is invalid: expected a positive integer")
        for name in (
            "max_audio_seconds",
            "request_timeout",
            "idle_timeout",
            "max_stream_seconds",
            "head_timeout",
            "min_upload_rate",
            "min_stream_rate",
            "drain_seconds",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"service setting {name}={value!r} is invalid: expected a positive number")
        if isinstance(self.trim_idle, bool) or not isinstance(self.trim_idle, (int, float)) or not self.trim_idle >= 0:
            raise ConfigError(f"service setting trim_idle={self.trim_idle!r} is invalid: expected seconds >= 0")
        if any(not isinstance(k, str) or not k for k in self.api_keys):
            raise ConfigError("API keys must be non-empty strings")

    @classmethod
    def from_env(cls, **overrides: Any) -> ServiceSettings:
        """Settings from ``AMSER_*`` variables (``AMSER_API_KEY``, ``AMSER_API_KEY_FILE``, ``AMSER_QUEUE_SIZE``, ...).

        ``overrides`` (``None`` values ignored) win over the environment;
        ``api_key_file`` adds the keys of a file (:func:`read_api_keys`).
        """
        keys = [env_api_key()] if "AMSER_API_KEY" in os.environ else []
        key_file = overrides.pop("api_key_file", None) or os.environ.get("AMSER_API_KEY_FILE")
        if key_file:
            keys += read_api_keys(key_file)
        types = {
            f.name: f.type
            for f in fields(cls)
            if f.name
            not in ("api_keys", "model", "language", "emotion_model", "decoder", "recognise", "metrics_public")
        }
        values: dict[str, Any] = {}
        for name, kind in types.items():
            raw = os.environ.get(f"AMSER_{name.upper()}")
            if raw is not None:
                try:
                    values[name] = float(raw) if kind == "float" else int(raw)
                except ValueError:
                    raise ConfigError(f"AMSER_{name.upper()}={raw!r} is not a {kind}") from None
        if os.environ.get("AMSER_METRICS_PUBLIC"):
            flag = os.environ["AMSER_METRICS_PUBLIC"].strip().lower()
            if flag not in ("0", "1", "true", "false"):
                raise ConfigError(f"AMSER_METRICS_PUBLIC={flag!r}: expected 1, 0, true or false")
            values["metrics_public"] = flag in ("1", "true")
        for name in ("model", "language", "emotion_model", "decoder"):
            if os.environ.get(f"AMSER_{name.upper()}"):
                values[name] = os.environ[f"AMSER_{name.upper()}"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(api_keys=tuple(keys), **values)

    def public(self) -> dict[str, Any]:
        """The settings a client may see: no keys, and no path on the server's disk (the models are named by
        ``/v1/info``'s ``model`` and ``emotion`` entries)."""
        out = asdict(self)
        for private in ("api_keys", "model", "emotion_model", "decoder"):
            out.pop(private)
        out["auth"] = "api-key" if self.api_keys else "none"
        return out
