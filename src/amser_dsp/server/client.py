"""Client of the amser service: encode locally with what the server asks for, send, retry when busy.

from amser_dsp.server.client import Client
with Client("http://127.0.0.1:8000") as client:
    print(client.transcribe_file("speech.flac")["text"])
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import encode_audio, load_audio
from ..errors import AmserError
from . import require_extra

require_extra("httpx")

import httpx  # noqa: E402

__all__ = ["Client", "ServiceUnavailableError"]


class ServiceUnavailableError(AmserError, ConnectionError):
    """The service stayed busy (503) or unreachable through every retry, or answered an error."""


class Client:
    """One kept-alive HTTP/1.1 connection to the service for many requests.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8000``.
    api_key : str, optional
        Sent as ``Authorization: Bearer``; default ``AMSER_API_KEY``.
    retries : int
        Attempts after a 503 (honouring ``Retry-After``) or a connection error, with exponential back-off.
    timeout : float
        Seconds per request.
    """

    def __init__(
        self, url: str, *, api_key: str | None = None, retries: int = 5, timeout: float = 120.0, backoff: float = 0.5
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("AMSER_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.retries, self.backoff = retries, backoff
        self._info: dict[str, Any] | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ServiceUnavailableError(f"cannot reach {self.http.base_url}: {exc}") from None
            else:
                if response.status_code != 503:
                    if response.status_code >= 400:
                        try:
                            message = response.json()["error"]["message"]
                        except (ValueError, KeyError, TypeError):
                            message = response.text[:200]
                        raise ServiceUnavailableError(f"service answered {response.status_code}: {message}")
                    return response
                if attempt == self.retries:
                    raise ServiceUnavailableError(f"service busy after {self.retries + 1} attempts")
                retry_after = response.headers.get("Retry-After", "")
                delay = max(delay, float(retry_after)) if retry_after.isdigit() else delay
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def info(self) -> dict[str, Any]:
        """The service's ``/v1/info`` (cached): model, presets, default codec, limits."""
        if self._info is None:
            self._info = self._request("GET", "/v1/info").json()
        return self._info

    def encode(self, audio: np.ndarray, **codec_params: Any) -> bytes:
        """A container of ``audio`` with the preset the service reads and its default codec (or ``codec_params``)."""
        info = self.info()
        params = codec_params or {"codec": info["default_codec"]}
        return encode_audio(audio, info["presets"][0], **params)

    def transcribe(self, blob: bytes, *, analyze: bool = False) -> dict[str, Any]:
        """Send a container; return the service's JSON answer."""
        path = "/v1/analyze" if analyze else "/v1/transcribe"
        return self._request("POST", path, content=blob, headers={"Content-Type": "application/octet-stream"}).json()

    def transcribe_file(self, path: str | os.PathLike[str], **codec_params: Any) -> dict[str, Any]:
        """Load, encode and send one audio file."""
        blob = self.encode(load_audio(Path(path)), **codec_params)
        return {**self.transcribe(blob), "path": str(path)}
