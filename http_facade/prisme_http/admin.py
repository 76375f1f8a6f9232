"""`create_admin_app`: the admin endpoint, Prometheus ``GET /metrics``.

Served on ``PRISME_ADMIN_HOSTPORT`` (loopback by default): it is for the operator's scraper,
not for the public. It shows this process's metrics and, when the core runs in another
process, the core's ``prisme_*`` metrics fetched from it.

Must not import prisme_core.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


def _prisme_families(text: str) -> str:
    """Only the ``prisme_*`` families: the other process's runtime metrics would clash."""
    kept = []
    for line in text.splitlines():
        name = line.split(" ", 3)[2] if line.startswith("# ") else line
        if name.startswith("prisme_"):
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def create_admin_app(also: str | None = None) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        if also is not None:
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
                    http.get(also) as answer,
                ):
                    body += _prisme_families(await answer.text()).encode()
            except (aiohttp.ClientError, TimeoutError):
                pass  # the core's metrics are missing from this scrape, not the façade's
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
