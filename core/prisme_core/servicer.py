"""`EventServicer`: the gRPC edge of the core.

It turns protobuf requests into `prisme_core.model` values, decides how far to trust the
caller, runs the pipeline, and turns `CoreError`s into rich gRPC statuses
(`prisme_core.status`). Protobuf types go no further in than this module.

Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import google.rpc.status_pb2 as status_pb2
import grpc
from grpc_status import rpc_status
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc

from prisme_core.errors import CoreError, InvalidInput, Reason, Unauthenticated
from prisme_core.metrics import EVENTS
from prisme_core.model import ClientContext, CustomEventInput
from prisme_core.pipeline import Pipeline
from prisme_core.request_id import REQUEST_ID, valid_request_id
from prisme_core.status import rich_status

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
MAX_BATCH = 1000
KINDS = {"page_view": "pageview", "custom_event": "custom"}
T = TypeVar("T")


def peer_ip(peer: str) -> str | None:
    """The IP address in a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``); unix and
    unknown peers give None."""
    kind, _, address = peer.partition(":")
    if kind not in {"ipv4", "ipv6"}:
        return None
    host = address.rpartition(":")[0].strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class EventServicer(pb_grpc.EventServiceServicer):
    def __init__(self, pipeline: Pipeline, token: str | None) -> None:
        self._pipeline = pipeline
        self._token = token.encode() if token else None

    async def SendPageView(
        self, request: pb.SendPageViewRequest, context: Context
    ) -> pb.SendPageViewResponse:
        await _run(context, "pageview", self._send_pageview(request, context))
        return pb.SendPageViewResponse()

    async def SendCustomEvent(
        self, request: pb.SendCustomEventRequest, context: Context
    ) -> pb.SendCustomEventResponse:
        await _run(context, "custom", self._send_custom_event(request, context))
        return pb.SendCustomEventResponse()

    async def CheckHealth(
        self, request: pb.CheckHealthRequest, context: Context
    ) -> pb.CheckHealthResponse:
        await _run(context, None, _authenticate(self._is_trusted, context))
        started = time.perf_counter()
        await _run(context, None, self._pipeline.check_health())
        return pb.CheckHealthResponse(store_ping_ms=(time.perf_counter() - started) * 1000)

    async def SendEvents(
        self, request: pb.SendEventsRequest, context: Context
    ) -> pb.SendEventsResponse:
        if len(request.events) > MAX_BATCH:
            error = InvalidInput(
                Reason.TOO_MANY_EVENTS, f"at most {MAX_BATCH} events per call", field="events"
            )
            await _run(context, None, _raise(error))
        await _run(context, None, _authenticate(self._is_trusted, context))
        results = await asyncio.gather(
            *(self._send_one(event, context) for event in request.events)
        )
        return pb.SendEventsResponse(results=results)

    async def _send_one(self, event: pb.Event, context: Context) -> status_pb2.Status:
        kind = event.WhichOneof("kind")
        if request_id := valid_request_id(event.request_id):
            REQUEST_ID.set(request_id)  # this event's own task: its logs carry its id
        try:
            if kind == "page_view":
                await self._send_pageview(event.page_view, context)
            elif kind == "custom_event":
                await self._send_custom_event(event.custom_event, context)
            else:
                raise InvalidInput(Reason.EMPTY_EVENT, "event has no kind", field="events")
        except CoreError as error:
            _count(KINDS.get(kind or "", "unknown"), error)
            return rich_status(error)
        _count(KINDS[kind], None)
        return status_pb2.Status(code=grpc.StatusCode.OK.value[0])

    async def _send_pageview(self, request: pb.SendPageViewRequest, context: Context) -> None:
        client = self._client_context(request, context)
        await self._pipeline.record_pageview(client, request.event_id)

    async def _send_custom_event(
        self, request: pb.SendCustomEventRequest, context: Context
    ) -> None:
        event = CustomEventInput(
            context=self._client_context(request, context),
            name=request.name,
            content_type=request.body.content_type,
            body=request.body.data,
            event_id=request.event_id,
        )
        await self._pipeline.record_custom_event(event)

    def _client_context(
        self, request: pb.SendPageViewRequest | pb.SendCustomEventRequest, context: Context
    ) -> ClientContext:
        if not request.HasField("context"):
            raise InvalidInput(Reason.MISSING_CONTEXT, "context is required", field="context")
        given = request.context
        trusted = self._is_trusted(context)
        client_ip = given.client_ip if trusted and given.client_ip else peer_ip(context.peer())
        return ClientContext(
            origin=given.origin,
            page_url=given.page_url,
            document_referrer=given.document_referrer,
            user_agent=given.user_agent,
            client_ip=client_ip,
        )

    def _is_trusted(self, context: Context) -> bool:
        """True for a caller with the service token; a wrong token is refused outright."""
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        if authorization is None:
            return False
        scheme, _, presented = str(authorization).partition(" ")
        if (
            self._token is None
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(presented.strip().encode(), self._token)
        ):
            raise Unauthenticated()
        return True


async def _run(context: Context, kind: str | None, work: Awaitable[None]) -> None:
    """Awaits ``work``, counting the event of ``kind``; a `CoreError` aborts the call with its
    rich status."""
    try:
        await work
    except CoreError as error:
        if kind is not None:
            _count(kind, error)
        status = rpc_status.to_status(rich_status(error))
        await context.abort(status.code, status.details, status.trailing_metadata)
    if kind is not None:
        _count(kind, None)


def _count(kind: str, error: CoreError | None) -> None:
    if error is None:
        EVENTS.labels(kind, "accepted").inc()
        return
    EVENTS.labels(kind, error.reason.lower()).inc()
    logger.info("%s refused: %s (%s)", kind, error.reason, error.message)


async def _raise(error: CoreError) -> None:
    raise error


async def _authenticate(is_trusted: Callable[[Context], bool], context: Context) -> None:
    is_trusted(context)  # raises Unauthenticated for a wrong token
