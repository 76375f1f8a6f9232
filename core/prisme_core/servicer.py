"""`EventServicer`: the gRPC edge of the core.

It turns protobuf requests into `prisme_core.model` values, decides how far to trust the
caller, runs the pipeline, and turns `CoreError`s into rich gRPC statuses
(`prisme_core.status`). Protobuf types go no further in than this module.

Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
from grpc_status import rpc_status
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc

from prisme_core.errors import CoreError, InvalidInput, Reason, Unauthenticated
from prisme_core.metrics import EVENTS
from prisme_core.model import ClientContext, CustomEventInput
from prisme_core.pipeline import Pipeline
from prisme_core.status import rich_status

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
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
        started = time.perf_counter()
        await _run(context, None, self._pipeline.check_health())
        return pb.CheckHealthResponse(store_ping_ms=(time.perf_counter() - started) * 1000)

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
            EVENTS.labels(kind, error.reason.lower()).inc()
            logger.info("%s refused: %s (%s)", kind, error.reason, error.message)
        status = rpc_status.to_status(rich_status(error))
        await context.abort(status.code, status.details, status.trailing_metadata)
    if kind is not None:
        EVENTS.labels(kind, "accepted").inc()
