"""`edge`: what every façade response goes through, whatever route or error produced it.

In order: a request id; oversized headers (431) and declared bodies (413) refused before any
work (on an events route, counted against the client's rate limit all the same); CORS
preflights on the events routes answered at once (no quota spent); aiohttp's own
404/405 and any unexpected failure turned into the short JSON error body; the request id and,
on events routes, ``Access-Control-Allow-Origin: *`` added (on the stats routes, only for the
origins listed in ``PRISME_API_STATS_ALLOW_ORIGINS``); then the metrics and one JSON-lines
access-log record (request id, route, method, status, duration; client IP and user agent only
at DEBUG).

Must not import prisme_core.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping

from aiohttp import web
from aiohttp.typedefs import Middleware
from prisme_client.forwarded import client_ip
from prometheus_client import Counter, Histogram

from prisme_http.access_log import ACCESS_LOGGER, AccessLog
from prisme_http.config import FacadeConfig
from prisme_http.errors import body_too_large, json_error
from prisme_http.metrics import DURATION, IN_FLIGHT, REQUESTS
from prisme_http.noscript import NO_STORE
from prisme_http.request_id import REQUEST_ID, choose_request_id
from prisme_http.routes import NOSCRIPT_PREFIX

logger = logging.getLogger(__name__)

EVENTS_PREFIX = "/api/v1/events/"
STATS_PREFIX = "/api/v1/stats/"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
EXPOSED = "X-Prisme-Request-Id, Retry-After"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


Counter_ = Callable[[web.Request, web.Response, str], Awaitable[web.Response]]
"""Counts a refused event against its client's rate limit, answering 429 past it."""


def make_edge(config: FacadeConfig, lines: AccessLog, count: Counter_) -> Middleware:
    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = choose_request_id(
            request.headers.get("X-Request-Id"), trusted=_from_trusted_proxy(request, config)
        )
        token = REQUEST_ID.set(request_id)
        IN_FLIGHT.inc()
        try:
            response = await _respond(request, handler, config, count)
            response.headers["X-Prisme-Request-Id"] = request_id
            response.headers["Server"] = "prisme"
            if request.path.startswith(EVENTS_PREFIX) or request.path.startswith(NOSCRIPT_PREFIX):
                response.headers["Access-Control-Allow-Origin"] = "*"
                response.headers["Access-Control-Expose-Headers"] = EXPOSED
            if request.path.startswith(NOSCRIPT_PREFIX):
                response.headers["Cache-Control"] = NO_STORE
            if request.path.startswith(STATS_PREFIX):
                _allow_stats_reader(request, response.headers, config)
            _record(request, response.status, time.perf_counter() - started, config, lines)
            return response
        finally:
            IN_FLIGHT.dec()
            REQUEST_ID.reset(token)

    return edge


async def _respond(
    request: web.Request, handler: Handler, config: FacadeConfig, count: Counter_
) -> web.StreamResponse:
    refusal = _refuse_oversized(request, config)
    if refusal is not None:
        if request.method == "POST" and request.path.startswith(EVENTS_PREFIX):
            return await count(request, refusal, request_client_ip(request, config))
        return refusal
    if _is_preflight(request, EVENTS_PREFIX):
        return _preflight(request, config)
    if _is_preflight(request, STATS_PREFIX):
        return _stats_preflight(config)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return json_error(exc.status, exc.reason.upper().replace(" ", "_"), exc.reason,
                          {k: v for k, v in exc.headers.items() if k in {"Allow"}})  # fmt: skip
    except Exception:
        logger.exception("unexpected failure")
        return json_error(500, "INTERNAL", "internal error")


def _refuse_oversized(request: web.Request, config: FacadeConfig) -> web.Response | None:
    raw = request.raw_headers
    header_bytes = sum(len(name) + len(value) + 4 for name, value in raw)
    if header_bytes > config.max_header_bytes:
        return json_error(
            431,
            "REQUEST_HEADER_FIELDS_TOO_LARGE",
            f"request headers are over {config.max_header_bytes} bytes",
        )
    if request.content_length is not None and request.content_length > config.max_body_bytes:
        return body_too_large(config.max_body_bytes)
    return None


def request_client_ip(request: web.Request, config: FacadeConfig) -> str:
    """The request's client IP: the peer, or whom a trusted proxy names ("" if unknown)."""
    return client_ip(
        request.remote,
        request.headers.getall(config.proxy_header, ()),
        trust_proxy=config.trust_proxy,
        trusted_proxies=config.proxies,
    )


def _is_preflight(request: web.Request, prefix: str) -> bool:
    return (
        request.method == "OPTIONS"
        and request.path.startswith(prefix)
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def _preflight(request: web.Request, config: FacadeConfig) -> web.Response:
    headers = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Max-Age": str(config.cors_max_age),
        "Vary": "Access-Control-Request-Method, Access-Control-Request-Headers, Origin",
    }
    if requested := request.headers.get("Access-Control-Request-Headers"):
        headers["Access-Control-Allow-Headers"] = requested
    return web.Response(status=204, headers=headers)


def _stats_preflight(config: FacadeConfig) -> web.Response:
    """A stats preflight needs no token; whether its origin may read is said by the edge."""
    headers = {
        "Access-Control-Allow-Methods": "GET",
        "Access-Control-Allow-Headers": "authorization",
        "Access-Control-Max-Age": str(config.cors_max_age),
    }
    return web.Response(status=204, headers=headers)


def _allow_stats_reader(
    request: web.Request, headers: MutableMapping[str, str], config: FacadeConfig
) -> None:
    """Lets a listed origin's page read the answer (``*`` lets any); others get no
    ``Access-Control-Allow-Origin``."""
    headers["Vary"] = "Origin"
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if origin in config.stats_origins:
        headers["Access-Control-Allow-Origin"] = origin
    elif "*" in config.stats_origins:
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        return
    headers["Access-Control-Expose-Headers"] = EXPOSED


def _from_trusted_proxy(request: web.Request, config: FacadeConfig) -> bool:
    if not config.trust_proxy or not request.remote:
        return False
    return config.proxies.peer(request.remote)[1]


@functools.cache
def _series(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """The metric series of one route, method and status (a bounded set: routes are ours)."""
    return REQUESTS.labels(route, method, str(status)), DURATION.labels(route, method)


def _record(
    request: web.Request, status: int, seconds: float, config: FacadeConfig, lines: AccessLog
) -> None:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    method = request.method if request.method in KNOWN_METHODS else "OTHER"
    requests, duration = _series(route, method, status)
    requests.inc()
    duration.observe(seconds)
    if lines.enabled():
        lines.add(
            {
                "request_id": REQUEST_ID.get(),
                "method": method,
                "route": route,
                "path": request.path[:200],
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            }
        )
    if ACCESS_LOGGER.isEnabledFor(logging.DEBUG):
        ip = request_client_ip(request, config)
        client = {"client_ip": ip, "user_agent": request.headers.get("User-Agent", "")}
        ACCESS_LOGGER.debug("client", extra={"fields": client})
