"""Who may use the service: API keys as ``Authorization: Bearer``, ``X-API-Key``, or the page's cookie.

With no key configured the service is open.  Keys are compared in constant time, every key whatever
matches.  HTTP routes take the key from their headers only (so no cross-site request can use a browser's
cookie); a WebSocket handshake may also carry it in :data:`KEY_COOKIE`, because a browser cannot set
headers on a WebSocket, and then only from a page of this service's own origin.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http.cookies import CookieError, SimpleCookie
from urllib.parse import unquote, urlsplit

from .. import require_extra

require_extra("fastapi")

from fastapi import Security  # noqa: E402
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer  # noqa: E402

from .errors import ServiceError  # noqa: E402

__all__ = ["KEY_COOKIE", "Keys", "bearer_token", "websocket_key"]

# The two ways a route takes a key, as the OpenAPI document describes them.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="or X-API-Key: KEY")

#: The cookie that carries the API key of the page's WebSocket handshakes (path /v1/stream, SameSite=Strict).
KEY_COOKIE = "amser_api_key"


def bearer_token(authorization: str | None) -> str:
    """The credentials of an ``Authorization: Bearer`` header (the scheme is case-insensitive, RFC 9110)."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def http_key(headers: Mapping[str, str]) -> str | None:
    """The API key of an HTTP request: ``X-API-Key`` or ``Authorization: Bearer``."""
    return headers.get("x-api-key") or bearer_token(headers.get("authorization")) or None


def websocket_key(headers: Mapping[str, str]) -> str | None:
    """The API key of a WebSocket handshake: ``X-API-Key``, ``Authorization: Bearer``, or the page's cookie.

    The cookie is honoured only on a handshake whose ``Origin`` is this service's own host (a page of the
    service), so another site's page cannot use a visitor's key (cross-site WebSocket hijacking).
    """
    key = http_key(headers)
    if key:
        return key
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or not host or urlsplit(origin).netloc.lower() != host.lower():
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(headers.get("cookie") or "")
    except CookieError:
        return None
    morsel = cookies.get(KEY_COOKIE)
    return unquote(morsel.value) if morsel is not None and morsel.value else None


class Keys:
    """The configured API keys and the checks of HTTP requests and WebSocket handshakes against them."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(k.encode() for k in keys)

    @property
    def open(self) -> bool:
        """True when no key is configured: every request is allowed."""
        return not self.keys

    def check(self, given_key: str | None) -> None:
        """Raise 401 unless ``given_key`` is a configured key (no keys configured: open)."""
        if not self.keys:
            return
        given = (given_key or "").encode()
        ok = False
        for key in self.keys:  # every key compared, in constant time, whatever matches
            ok |= hmac.compare_digest(given, key)
        if not ok:
            raise ServiceError(
                401,
                "unauthorized",
                "a valid API key is required (Authorization: Bearer KEY)",
                {"WWW-Authenticate": "Bearer"},
            )

    def check_http(self, headers: Mapping[str, str]) -> None:
        """Raise 401 unless the request's headers carry a configured key."""
        self.check(http_key(headers))

    def check_websocket(self, headers: Mapping[str, str]) -> None:
        """Raise 401 unless the handshake carries a configured key (headers, or the page's cookie)."""
        self.check(websocket_key(headers))

    def dependency(self) -> Callable[..., Awaitable[None]]:
        """The routes' FastAPI dependency (``dependencies=[Depends(keys.dependency())]``).

        It runs after routing, so unknown paths are 404 and wrong methods 405 whatever the key.
        """

        async def authorised(
            bearer: HTTPAuthorizationCredentials | None = Security(_bearer),  # noqa: B008
            api_key: str | None = Security(_api_key),
        ) -> None:
            self.check(api_key or (bearer.credentials if bearer else None))

        return authorised
