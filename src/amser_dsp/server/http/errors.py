"""The service's error envelope and request ids: what every route, stream and file answer shares.

Every error is JSON ``{"error": {"code", "message", "request_id"}}`` with an HTTP status (on a WebSocket,
a close code of docs/streaming.md); every request carries an ``X-Request-ID``, the client's or a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["ServiceError", "error_body", "request_id_from"]


class ServiceError(Exception):
    """An error answered as ``{"error": {"code", "message", "request_id"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    """The JSON envelope of an error."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def request_id_from(headers: Mapping[str, str]) -> str:
    """The request's id: the client's ``X-Request-ID``, or a new random one (16 hex digits)."""
    return headers.get("x-request-id") or uuid.uuid4().hex[:16]
