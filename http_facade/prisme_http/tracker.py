"""``GET /static/m.js``: the tracker script, with caching headers and conditional requests.

Must not import prisme_core.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

from aiohttp import web

TRACKER_PATH = "/static/m.js"
SCRIPT = files("prisme_http").joinpath("static", "m.js").read_bytes()
ETAG = '"' + hashlib.sha256(SCRIPT).hexdigest()[:16] + '"'
HEADERS = {
    "Content-Type": "text/javascript",
    "Cache-Control": "public, max-age=3600",
    "ETag": ETAG,
}


async def tracker(request: web.Request) -> web.Response:
    if ETAG in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={k: HEADERS[k] for k in ("Cache-Control", "ETag")})
    return web.Response(body=SCRIPT, headers=HEADERS)
