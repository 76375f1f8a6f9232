"""`create_admin_app`: the admin endpoint, Prometheus ``GET /metrics``.

Served on ``PRISME_ADMIN_HOSTPORT`` (loopback by default): it is for the operator's scraper,
not for the public. Must not import prisme_core.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(REGISTRY))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def create_admin_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
