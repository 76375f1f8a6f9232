"""`create_app`: the aiohttp application of the HTTP façade.

One generic handler per `Route` read from the proto: transcode the request, call the core over
a gRPC channel (opened and closed in ``cleanup_ctx``), and answer with the response message as
JSON, or with the mapped HTTP status and a short JSON reason. Events go over the `CoreLink`
(batches of concurrent requests over one long-lived stream); other calls are unary.

With several cores, each call goes to the core its client IP maps to (`core_of`), the same
from every façade process: what a core keeps per client (its rate-limit window, its live
sessions, the event ids it has seen) sees all of that client's events.

Must not import prisme_core.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
from aiohttp import web
from prisme.v1 import event_service_pb2 as pb
from prisme_client import PrismeError, error_from_rpc
from prisme_client.client import bearer

from prisme_http import dashboard, noscript
from prisme_http.access_log import AccessLog
from prisme_http.config import FacadeConfig
from prisme_http.encodings import (
    InvalidEncoding,
    TooLarge,
    UnsupportedEncoding,
    decoded,
    decoders,
)
from prisme_http.errors import body_too_large, event_result, json_error
from prisme_http.link import GATHER_TURNS, CoreLink, count_refused
from prisme_http.middleware import make_edge, request_client_ip
from prisme_http.openapi import openapi_document
from prisme_http.render import json_of
from prisme_http.request_id import REQUEST_ID
from prisme_http.routes import Route, routes_of
from prisme_http.status import http_status
from prisme_http.tracker import TRACKER_PATHS, tracker
from prisme_http.transcode import NotUtf8, to_message

logger = logging.getLogger(__name__)

CONFIG = web.AppKey("config", FacadeConfig)


@dataclass(frozen=True, slots=True)
class Core:
    """One core, as the façade reaches it: a channel, and the event link over it."""

    channel: grpc.aio.Channel
    link: CoreLink


CORES = web.AppKey("cores", tuple[Core, ...])
ACCESS_LOG = web.AppKey("access_log", AccessLog)
# Which field of a batched `Event` carries each single-event request type.
EVENT_FIELDS = {
    field.message_type.full_name: field.name
    for field in pb.Event.DESCRIPTOR.oneofs_by_name["kind"].fields
    if field.message_type is not None
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(config: FacadeConfig) -> web.Application:
    lines = AccessLog()
    app = web.Application(
        client_max_size=config.max_body_bytes, middlewares=[make_edge(config, lines, counted)]
    )
    app[CONFIG] = config
    app[ACCESS_LOG] = lines
    app.on_cleanup.append(_flush)
    app.cleanup_ctx.append(_channel)
    for route in routes_of():
        app.router.add_route(route.http_method, route.path, _handler(route))
    app.router.add_get(OPENAPI_PATH, _openapi)
    for path in TRACKER_PATHS:
        app.router.add_get(path, tracker)
    dashboard.add_routes(app)
    return app


OPENAPI_PATH = "/api/v1/openapi.json"


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def _flush(app: web.Application) -> None:
    app[ACCESS_LOG].flush()


CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
"""A core that restarts is reached again within a second of listening (gRPC's default backoff
grows to two minutes)."""


async def _channel(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    cores = []
    gather = GATHER_TURNS * len(config.core_targets)  # each link has 1/N of the events
    for target in config.core_targets:
        if config.core_tls_root is None or target.startswith("unix:"):
            channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=config.core_tls_root)
            channel = grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
        cores.append(Core(channel, CoreLink(channel, bearer(config.token), gather)))
    app[CORES] = tuple(cores)
    yield
    for core in cores:
        await core.link.close()
        await core.channel.close()


def core_index(client_ip: str, cores: int) -> int:
    """Which of ``cores`` handles ``client_ip``: the same in every façade process (CRC-32 of
    the address as the façade reads it, not Python's `hash`, which differs between processes)."""
    return zlib.crc32(client_ip.encode()) % cores if cores > 1 else 0


def core_of(request: web.Request, client_ip: str) -> Core:
    cores = request.app[CORES]
    return cores[core_index(client_ip, len(cores))]


def _handler(route: Route) -> Handler:
    """Events go over the link, each with its own answer; other calls are unary."""
    event_field = EVENT_FIELDS.get(route.request_type.DESCRIPTOR.full_name)
    if event_field is not None:
        return _event_handler(route, event_field)
    return _call_handler(route)


def _event_handler(route: Route, event_field: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        config = request.app[CONFIG]
        ip = request_client_ip(request, config)
        target = noscript.redirect_target(route, request)
        if isinstance(target, web.Response):
            return await counted(request, target, ip)
        body = await _read_body(request, route, config)
        if isinstance(body, web.Response):
            return await counted(request, body, ip)
        try:
            error = await _send_event(request, route, event_field, body, ip)
        except NotUtf8 as exc:
            return await counted(request, _not_utf8(exc), ip)
        return noscript.answer(route, error, target) or _event_answer(error)

    return handle


def _call_handler(route: Route) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        config = request.app[CONFIG]
        body = await _read_body(request, route, config)
        if isinstance(body, web.Response):
            return body
        try:
            return await _call(request, route, body, request_client_ip(request, config))
        except NotUtf8 as exc:
            return _not_utf8(exc)

    return handle


def _not_utf8(exc: NotUtf8) -> web.Response:
    return json_error(400, "INVALID_ENCODING", str(exc))


async def _read_body(
    request: web.Request, route: Route, config: FacadeConfig
) -> bytes | web.Response:
    """The body, read within the read timeout and decoded within the size limit; else the
    refusal (408, 413, 415 for an encoding not known, 400 for a body not in its encoding).
    A route that reads no body still refuses an unknown encoding."""
    encoding = request.headers.get("Content-Encoding", "")
    try:
        if not route.body_field:
            if route.http_method == "POST":
                decoders(encoding)
            return b""
        async with asyncio.timeout(config.read_timeout):
            body = await request.read()
        return decoded(body, encoding, config.max_body_bytes) if encoding else body
    except (web.HTTPRequestEntityTooLarge, TooLarge):
        return body_too_large(config.max_body_bytes)
    except UnsupportedEncoding as exc:
        return json_error(415, "UNSUPPORTED_CONTENT_ENCODING", str(exc))
    except InvalidEncoding as exc:
        return json_error(400, "INVALID_CONTENT_ENCODING", str(exc))
    except TimeoutError:
        late = json_error(408, "REQUEST_TIMEOUT", f"body not read in {config.read_timeout:g}s")
        late.force_close()
        return late


async def counted(request: web.Request, refusal: web.Response, ip: str) -> web.Response:
    """``refusal`` of an event, counted against its client's rate limit: a 429 instead when
    the client is over it."""
    config = request.app[CONFIG]
    limited = await count_refused(core_of(request, ip).link, ip, config.pageview_timeout)
    return _error_response(limited) if limited is not None else refusal


async def _send_event(
    request: web.Request, route: Route, event_field: str, body: bytes, ip: str
) -> PrismeError | None:
    """The event, sent to the core over the link: None once stored, else why not."""
    config = request.app[CONFIG]
    event = pb.Event(request_id=REQUEST_ID.get() or "")
    to_message(route, request.headers, request.match_info, body, client_ip=ip,
               into=getattr(event, event_field), query=request.query)  # fmt: skip
    within = config.pageview_timeout if event_field == "page_view" else config.event_timeout
    return await core_of(request, ip).link.send(event, within)


def _event_answer(error: PrismeError | None) -> web.Response:
    if error is None:
        return web.Response(body=b"{}", content_type="application/json")
    return _error_response(error)


async def _call(request: web.Request, route: Route, body: bytes, ip: str) -> web.Response:
    config = request.app[CONFIG]
    message = to_message(
        route, request.headers, request.match_info, body, client_ip=ip, query=request.query
    )
    call = core_of(request, ip).channel.unary_unary(
        route.rpc_path,
        request_serializer=route.request_type.SerializeToString,
        response_deserializer=route.response_type.FromString,
    )
    metadata = [("x-request-id", REQUEST_ID.get() or ""), *_authorization(request, route, config)]
    timeout = _deadline(config, route)
    try:
        response = await call(message, metadata=metadata, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return _error_response(error_from_rpc(exc))
    if isinstance(response, pb.SendEventsResponse):
        return web.json_response({"results": [event_result(r) for r in response.results]})
    return web.json_response(json_of(response))


def _authorization(
    request: web.Request, route: Route, config: FacadeConfig
) -> tuple[tuple[str, str], ...]:
    """The façade's service token, or for a route that reads with the caller's own token
    (the stats), the request's ``Authorization``."""
    if not route.caller_authorization:
        return bearer(config.token)
    given = request.headers.get("Authorization", "")
    return (("authorization", given),) if given.isascii() and given.isprintable() else ()


def _deadline(config: FacadeConfig, route: Route) -> float:
    """How long a unary call waits for the core: the healthcheck briefly, the stats for
    their own timeout, others as events."""
    if route.request_type is pb.CheckHealthRequest:
        return config.health_timeout
    if route.caller_authorization:
        return config.stats_timeout
    return config.event_timeout


def _error_response(error: PrismeError) -> web.Response:
    status = http_status(error.code, error.reason)
    if status >= 500:
        logger.warning("core call failed: %s", error)
    headers = {"Retry-After": str(round(error.retry_after))} if error.retry_after else {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    named = error.field if error.reason == "INVALID_QUERY_PARAMETER" else None
    return json_error(status, error.reason, error.message, headers, parameter=named)
