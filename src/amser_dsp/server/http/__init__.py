"""The HTTP/WebSocket service (``amser serve``; docs/streaming.md, docs/web.md, docs/soak.md).

:mod:`.settings` (limits and options; light, so ``amser --help`` reads its defaults without FastAPI),
:mod:`.auth` (API keys: bearer, ``X-API-Key``, the page's cookie), :mod:`.service` (bodies, decoding,
admission), :mod:`.uploads` (audio files uploaded instead of features), :mod:`.streams` (``WS /v1/stream``),
:mod:`.files` (``WS /v1/files``), :mod:`.page` (the web page's routes), :mod:`.memory` (RSS, the idle trim),
:mod:`.app` (the routes only), :mod:`.local` (a local server in a child process, for tests and demos).
The modules that need FastAPI check for it on import.
"""
