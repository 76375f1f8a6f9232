"""``GET /static/wa.js`` (and ``/static/m.js``, the same script, for sites that still name it
so): the tracker, with caching headers and conditional requests. Its source is
``http_facade/tracker/wa.js``, minified by ``make tracker``.

Its answers ask for the client hints the service reads (`Accept-CH`): the ``Sec-CH-*``
headers the proto binds, so the list cannot drift from what the core is given.

Must not import prisme_core.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

from aiohttp import web

from prisme_http.routes import routes_of

TRACKER_PATHS = ("/static/wa.js", "/static/m.js")
SCRIPT = files("prisme_http").joinpath("static", "wa.js").read_bytes()
ETAG = '"' + hashlib.sha256(SCRIPT).hexdigest()[:16] + '"'
CLIENT_HINTS = sorted(
    {
        header
        for route in routes_of()
        for binding in route.headers
        for header in binding.headers
        if header.lower().startswith("sec-ch-")
    }
)
HEADERS = {
    "Content-Type": "text/javascript",
    "Cache-Control": "public, max-age=3600",
    "ETag": ETAG,
    "Accept-CH": ", ".join(CLIENT_HINTS),
}


async def tracker(request: web.Request) -> web.Response:
    if ETAG in request.headers.get("If-None-Match", ""):
        kept = ("Cache-Control", "ETag", "Accept-CH")
        return web.Response(status=304, headers={k: HEADERS[k] for k in kept})
    return web.Response(body=SCRIPT, headers=HEADERS)
