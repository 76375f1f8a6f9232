"""`EventServicer`: the gRPC edge of the core.

It turns protobuf requests into `prisme_core.model` values, decides how far to trust the
caller, runs the pipeline, and turns `CoreError`s into rich gRPC statuses
(`prisme_core.status`). Protobuf types go no further in than this module.

Every event takes the same steps, whichever RPC carries it (a JSON batch is read into the
same messages first, `prisme_core.json_batch`): it counts against its client's rate limit
first, then its fields are bounded, its client timestamps read (`timing`), and the pipeline
decides. `start` begins one
event and returns its outcome: a refusal at once, or a future that resolves once the event is
stored (or fails); `answer` turns an outcome into the event's status, counting it.

Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import google.rpc.status_pb2 as status_pb2
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_status import rpc_status
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_client.request_id import valid_request_id

from prisme_core.errors import CoreError, InvalidInput, Reason, Unauthenticated
from prisme_core.health import RecentHealth
from prisme_core.json_batch import MAX_BATCH, InvalidEvent, read_batch, read_engagement
from prisme_core.model import (
    ON_ARRIVAL,
    ClickInput,
    ClickKind,
    ClientContext,
    CustomEventInput,
    EngagementInput,
    PageViewInput,
    Timing,
)
from prisme_core.outcomes import Outcome, failure
from prisme_core.peers import GrpcProxies, peer_ip
from prisme_core.pipeline import Pipeline
from prisme_core.refusals import count_event
from prisme_core.request_id import REQUEST_ID
from prisme_core.status import rich_status
from prisme_core.validate import bounded, validate_context

Context = grpc.aio.ServicerContext[Any, Any]
KINDS = {
    "page_view": "pageview",
    "custom_event": "custom",
    "outbound_link": "outbound_link",
    "file_download": "file_download",
    "engagement": "engagement",
    "refused": "refused",
}
OK = status_pb2.Status(code=grpc.StatusCode.OK.value[0])

EventRequest = (
    pb.SendPageViewRequest
    | pb.SendCustomEventRequest
    | pb.SendOutboundLinkRequest
    | pb.SendFileDownloadRequest
    | pb.SendEngagementRequest
)
BatchedRequest = EventRequest | pb.RefusedEvent
Batched = pb.Event | InvalidEvent
"""An event of a batch, or one of a JSON batch refused as it was read."""


def too_many_events(events: Sequence[Batched], per: str) -> InvalidInput | None:
    """The refusal of a batch over `MAX_BATCH` events (one ``per`` call, or stream batch)."""
    if len(events) <= MAX_BATCH:
        return None
    return InvalidInput(
        Reason.TOO_MANY_EVENTS, f"at most {MAX_BATCH} events per {per}", field="events"
    )


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls: with the service token (trusted) or not, and from which address (the peer,
    or the client a trusted proxy names)."""

    trusted: bool
    address: str | None

    def client_ip(self, given: str) -> str:
        """The client IP an event counts against: only a trusted caller chooses it."""
        return given if self.trusted and given else self.address or ""


def client_context(request: EventRequest, caller: Caller) -> ClientContext:
    """The request's browser context, each field bounded."""
    if not request.HasField("context"):
        raise InvalidInput(Reason.MISSING_CONTEXT, "context is required", field="context")
    given = request.context
    return validate_context(
        origin=given.origin,
        page_url=given.page_url,
        document_referrer=given.document_referrer,
        user_agent=given.user_agent,
        client_ip=caller.client_ip(given.client_ip),
        ch_ua_platform=given.ch_ua_platform,
        ch_ua_model=given.ch_ua_model,
    )


def timing(request: EventRequest, sent_at: Timestamp | None) -> Timing:
    """When the request says its event happened, and when it was sent (its own ``sent_at``,
    else its batch's), by the client's clock."""
    if not request.HasField("timestamp"):
        return ON_ARRIVAL
    sent = request.sent_at if request.HasField("sent_at") else sent_at
    happened = _datetime(request.timestamp, "timestamp")
    return Timing(happened, None if sent is None else _datetime(sent, "sent_at"))


def _datetime(stamp: Timestamp, field: str) -> datetime:
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        message = f"{field} must be a time from year 1 to 9999"
        raise InvalidInput(Reason.INVALID_TIMESTAMP, message, field=field) from exc


def click_input(
    request: pb.SendOutboundLinkRequest | pb.SendFileDownloadRequest,
    caller: Caller,
    sent_at: Timestamp | None,
) -> ClickInput:
    if isinstance(request, pb.SendOutboundLinkRequest):
        kind, target = ClickKind.OUTBOUND_LINK, request.link
    else:
        kind, target = ClickKind.FILE_DOWNLOAD, request.url
    return ClickInput(
        kind=kind,
        context=client_context(request, caller),
        target=bounded(target, "link"),
        ping_from=bounded(request.ping_from, "ping_from"),
        ping_to=bounded(request.ping_to, "ping_to"),
        event_id=request.event_id,
        timing=timing(request, sent_at),
    )


class EventServicer(pb_grpc.EventServiceServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        token: str | None,
        proxies: GrpcProxies | None = None,
        max_body_bytes: int = 64 * 1024,
    ) -> None:
        self._pipeline = pipeline
        self._max_body_bytes = max_body_bytes
        self._token = token.encode() if token else None
        self._proxies = proxies or GrpcProxies(())
        self._health = RecentHealth(pipeline.check_health)

    async def SendPageView(
        self, request: pb.SendPageViewRequest, context: Context
    ) -> pb.SendPageViewResponse:
        await self._one(context, "page_view", request)
        return pb.SendPageViewResponse()

    async def SendCustomEvent(
        self, request: pb.SendCustomEventRequest, context: Context
    ) -> pb.SendCustomEventResponse:
        await self._one(context, "custom_event", request)
        return pb.SendCustomEventResponse()

    async def SendOutboundLink(
        self, request: pb.SendOutboundLinkRequest, context: Context
    ) -> pb.SendOutboundLinkResponse:
        await self._one(context, "outbound_link", request)
        return pb.SendOutboundLinkResponse()

    async def SendFileDownload(
        self, request: pb.SendFileDownloadRequest, context: Context
    ) -> pb.SendFileDownloadResponse:
        await self._one(context, "file_download", request)
        return pb.SendFileDownloadResponse()

    async def SendEngagement(
        self, request: pb.SendEngagementRequest, context: Context
    ) -> pb.SendEngagementResponse:
        await self._one(context, "engagement", request)
        return pb.SendEngagementResponse()

    async def CheckHealth(
        self, request: pb.CheckHealthRequest, context: Context
    ) -> pb.CheckHealthResponse:
        try:
            self.identify(context)  # a wrong token is refused here too
            ping_ms = await self._health.check()
        except CoreError as error:
            refuse(context, rich_status(error))
            return pb.CheckHealthResponse()
        return pb.CheckHealthResponse(store_ping_ms=ping_ms)

    async def SendEvents(
        self, request: pb.SendEventsRequest, context: Context
    ) -> pb.SendEventsResponse:
        try:
            caller = self.identify(context)
        except CoreError as refused:
            refuse(context, rich_status(refused))
            return pb.SendEventsResponse()
        sent_at = request.sent_at if request.HasField("sent_at") else None
        events: Sequence[Batched] = request.events
        try:
            if request.HasField("body"):
                events, sent_at = self._read_body(request)
            if (error := too_many_events(events, "call")) is not None:
                raise error
        except CoreError as refused:  # counted as one event, as the façade counts its own
            refuse(context, rich_status(self._counted(refused, caller, request.context)))
            return pb.SendEventsResponse()
        return pb.SendEventsResponse(results=await self.send_all(events, caller, sent_at))

    def _read_body(self, request: pb.SendEventsRequest) -> tuple[list[Batched], Timestamp | None]:
        """The events of a JSON batch, each with the request's context."""
        if request.events:
            message = "a batch has its events in events or in body, not in both"
            raise InvalidInput(Reason.INVALID_BATCH, message, field="events")
        batch = read_batch(request.body, request.context, self._max_body_bytes)
        given = request.sent_at if request.HasField("sent_at") else None
        return batch.events, batch.sent_at or given

    def _counted(self, refused: CoreError, caller: Caller, given: pb.ClientContext) -> CoreError:
        """A call refused as a whole counts as one event: past the limit, it is refused as
        rate limited."""
        try:
            self._pipeline.count(caller.client_ip(given.client_ip))
        except CoreError as limited:
            return limited.with_traceback(None)
        return refused

    def identify(self, context: Context) -> Caller:
        """Who calls; a wrong token raises `Unauthenticated`."""
        metadata = _metadata(context)
        trusted = self._is_trusted(metadata.get("authorization"))
        peer = peer_ip(context.peer())
        if peer is not None and self._proxies.networks:
            peer = self._proxies.client(peer, metadata.get("x-forwarded-for", ""))
        return Caller(trusted=trusted, address=peer)

    async def send_all(
        self, events: Sequence[Batched], caller: Caller, sent_at: Timestamp | None = None
    ) -> list[status_pb2.Status]:
        """Starts every event at once, in order, then answers all of them together: events
        that need no waiting join their group commits right away (one deadline for all of
        them), the others decide in tasks that keep their own deadlines."""
        outcomes = [self.start(event, caller, sent_at) for event in events]
        pending = [o for o in outcomes if not isinstance(o, CoreError)]
        queued = [p.future for p in pending if not p.keeps_own_deadline]
        deciding = [p.future for p in pending if p.keeps_own_deadline]
        try:
            if queued:
                await asyncio.wait(queued, timeout=self._pipeline.store_deadline)
            if deciding:
                await asyncio.wait(deciding)
        finally:  # past the deadline, or the call was cancelled: what is still queued stays so
            for late in (p for p in pending if not p.future.done()):
                late.withdraw()
        return [self.answer(e, o) for e, o in zip(events, outcomes, strict=True)]

    def start(self, event: Batched, caller: Caller, sent_at: Timestamp | None = None) -> Outcome:
        """Begins one event of a batch (sent at ``sent_at`` by the client's clock)."""
        if isinstance(event, InvalidEvent):
            return self._counted(event.error, caller, pb.ClientContext(client_ip=event.client_ip))
        with _RequestId(event):  # logs and tasks of this event carry its id
            kind = event.WhichOneof("kind")
            request = getattr(event, kind) if kind is not None else None
            return self._start(request, caller, sent_at)

    def answer(self, event: Batched, outcome: Outcome) -> status_pb2.Status:
        """The status of a started event whose outcome is known, counted."""
        error = failure(outcome)
        if isinstance(event, InvalidEvent):
            count_event("unknown", error)
            return rich_status(error or event.error)
        kind = KINDS.get(event.WhichOneof("kind") or "", "unknown")
        if error is None:
            count_event(kind, None)
            return OK
        with _RequestId(event):  # the refusal is logged with the event's id
            count_event(kind, error)
        return rich_status(error)

    def _start(
        self, request: BatchedRequest | None, caller: Caller, sent_at: Timestamp | None
    ) -> Outcome:
        try:
            self._pipeline.count(caller.client_ip(_given_ip(request)))  # before any other rule
            if isinstance(request, pb.SendPageViewRequest):
                context = client_context(request, caller)
                view = PageViewInput(context, request.event_id, request.status,
                                     request.visitor_id, timing(request, sent_at))  # fmt: skip
                return self._pipeline.pageview(view)
            if isinstance(request, pb.SendCustomEventRequest):
                event = CustomEventInput(
                    context=client_context(request, caller),
                    name=request.name,
                    content_type=request.body.content_type,
                    body=request.body.data,
                    event_id=request.event_id,
                    query_properties=request.query_properties,
                    timing=timing(request, sent_at),
                )
                return self._pipeline.custom_event(event)
            if isinstance(request, pb.SendOutboundLinkRequest | pb.SendFileDownloadRequest):
                return self._pipeline.click(click_input(request, caller, sent_at))
            if isinstance(request, pb.SendEngagementRequest):
                return self._pipeline.engagement(self._engagement(request, caller, sent_at))
            if isinstance(request, pb.RefusedEvent):
                raise InvalidInput(
                    Reason.REFUSED_BY_SENDER, "refused by its sender; counted", field="events"
                )
            raise InvalidInput(Reason.EMPTY_EVENT, "event has no kind", field="events")
        except CoreError as error:
            # Not the traceback: its frames hold the request, whose fields may be megabytes.
            return error.with_traceback(None)

    def _engagement(
        self, request: pb.SendEngagementRequest, caller: Caller, sent_at: Timestamp | None
    ) -> EngagementInput:
        if request.HasField("body"):
            read_engagement(request, self._max_body_bytes)
        return EngagementInput(
            context=client_context(request, caller),
            pageview_id=request.pageview_id,
            engaged_ms=request.engaged_ms,
            scroll_depth=request.scroll_depth,
            event_id=request.event_id,
            timing=timing(request, sent_at),
        )

    async def _one(self, context: Context, kind: str, request: EventRequest) -> None:
        """A single-event RPC: the event as a batch of one, refused as a call (the method
        returns its empty response, which the refusal's status replaces)."""
        try:
            caller = self.identify(context)
        except CoreError as error:
            refuse(context, rich_status(error))
            return
        event = pb.Event()
        getattr(event, kind).CopyFrom(request)
        (status,) = await self.send_all([event], caller)
        if status.code != OK.code:
            refuse(context, status)

    def _is_trusted(self, authorization: str | None) -> bool:
        """True for a caller with the service token; a wrong token is refused outright."""
        if authorization is None:
            return False
        if not presents(authorization, self._token):
            raise Unauthenticated()
        return True


def presents(authorization: str, token: bytes | None) -> bool:
    """Whether ``authorization`` metadata is ``Bearer <token>`` (compared in constant time)."""
    scheme, _, presented = authorization.partition(" ")
    return (
        token is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(presented.strip().encode(), token)
    )


def _given_ip(request: BatchedRequest | None) -> str:
    """The client IP the request names (honoured for trusted callers only)."""
    if request is None:
        return ""
    if isinstance(request, pb.RefusedEvent):
        return request.client_ip
    return request.context.client_ip


def _metadata(context: Context) -> dict[str, str]:
    return {key: str(value) for key, value in context.invocation_metadata() or ()}


def refuse(context: Context, status: status_pb2.Status) -> None:
    """Ends the call with ``status`` once the method returns. Not `context.abort`: its exception
    and traceback form a cycle with the call's frames, which would keep the request (up to
    megabytes) alive until a full garbage collection."""
    refusal = rpc_status.to_status(status)
    context.set_code(refusal.code)
    context.set_details(refusal.details)
    context.set_trailing_metadata(refusal.trailing_metadata)


class _RequestId:
    """Within it, logs and tasks carry the event's request id (else the call's). A class: a
    generator's context manager costs several times as much, once per event."""

    __slots__ = ("_id", "_token")

    def __init__(self, event: pb.Event) -> None:
        self._id = valid_request_id(event.request_id) or REQUEST_ID.get()

    def __enter__(self) -> None:
        self._token = REQUEST_ID.set(self._id)

    def __exit__(self, *_: object) -> None:
        REQUEST_ID.reset(self._token)
