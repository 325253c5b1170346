"""The web page's routes (docs/web.md): ``/`` and ``/static/``, served from the package's ``web/`` folder.

The page needs no key to load (it asks for one); its responses allow its own files only (no CDN), the
service's API and WebSocket.  The key it is given reaches the WebSocket handshakes through the cookie of
:mod:`.auth`.
"""

from __future__ import annotations

from typing import Any

from ...web import web_root

__all__ = ["CONTENT_SECURITY_POLICY", "mount_page"]

#: What the page's responses allow: its own files only (no CDN), the service's API and WebSocket.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self' ws: wss:; media-src 'self' blob:; worker-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def mount_page(app: Any) -> None:
    """Serve the page at ``/`` and its files at ``/static/`` (no key needed: the page asks for one)."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(web_root() / "index.html", media_type="text/html; charset=utf-8", headers=headers)

    app.mount("/static", StaticFiles(directory=web_root()), name="static")
