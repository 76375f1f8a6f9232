"""`EventServicer`: the gRPC edge of the core.

It turns protobuf requests into `prisme_core.model` values, decides how far to trust the
caller, runs the pipeline, and turns `CoreError`s into rich gRPC statuses
(`prisme_core.status`). Protobuf types go no further in than this module.

Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import google.rpc.status_pb2 as status_pb2
import grpc
from grpc_status import rpc_status
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prometheus_client import Counter

from prisme_core.errors import CoreError, InvalidInput, Reason, Unauthenticated
from prisme_core.metrics import EVENTS
from prisme_core.model import ClientContext, CustomEventInput
from prisme_core.pipeline import PendingEvent, Pipeline, store_late
from prisme_core.request_id import REQUEST_ID, valid_request_id
from prisme_core.status import rich_status

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
MAX_BATCH = 1000
KINDS = {"page_view": "pageview", "custom_event": "custom"}
OK = status_pb2.Status(code=grpc.StatusCode.OK.value[0])


def too_many_events(events: Sequence[pb.Event], per: str) -> InvalidInput | None:
    """The refusal of a batch over `MAX_BATCH` events (one ``per`` call, or stream batch)."""
    if len(events) <= MAX_BATCH:
        return None
    return InvalidInput(
        Reason.TOO_MANY_EVENTS, f"at most {MAX_BATCH} events per {per}", field="events"
    )


@functools.lru_cache(maxsize=4096)
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


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls: with the service token (trusted) or not, and from which address."""

    trusted: bool
    peer_ip: str | None


def client_context(
    request: pb.SendPageViewRequest | pb.SendCustomEventRequest, caller: Caller
) -> ClientContext:
    """The request's browser context; only a trusted caller chooses the client IP."""
    if not request.HasField("context"):
        raise InvalidInput(Reason.MISSING_CONTEXT, "context is required", field="context")
    given = request.context
    client_ip = given.client_ip if caller.trusted and given.client_ip else caller.peer_ip
    return ClientContext(
        origin=given.origin,
        page_url=given.page_url,
        document_referrer=given.document_referrer,
        user_agent=given.user_agent,
        client_ip=client_ip,
    )


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
        await _run(context, None, self._check_health(context))
        started = time.perf_counter()
        await _run(context, None, self._pipeline.check_health())
        return pb.CheckHealthResponse(store_ping_ms=(time.perf_counter() - started) * 1000)

    async def SendEvents(
        self, request: pb.SendEventsRequest, context: Context
    ) -> pb.SendEventsResponse:
        if (error := too_many_events(request.events, "call")) is not None:
            await _run(context, None, _raise(error))
        caller = await self.identify(context)
        return pb.SendEventsResponse(results=await self.send_all(request.events, caller))

    async def identify(self, context: Context) -> Caller:
        """Who calls; a wrong token aborts the call with UNAUTHENTICATED."""
        callers: list[Caller] = []
        await _run(context, None, self._identify(context, callers))
        return callers[0]

    async def send_all(self, events: Sequence[pb.Event], caller: Caller) -> list[status_pb2.Status]:
        """Starts every event at once, then waits for all: page views that need no waiting
        join their group commits right away (one deadline for all of them), the others run as
        tasks that keep their own deadlines."""
        outcomes: list[CoreError | PendingEvent | asyncio.Task[None] | None] = []
        call = object()  # this call's documents are written together (see GroupCommit)
        for event in events:
            with _request_id(event):  # logs and tasks of this event carry its id
                outcomes.append(self._start_one(event, caller, call))
        pending = [o for o in outcomes if isinstance(o, PendingEvent)]
        tasks = [o for o in outcomes if isinstance(o, asyncio.Task)]
        try:
            if pending:
                deadline = self._pipeline.store_deadline
                await asyncio.wait([p.future for p in pending], timeout=deadline)
            if tasks:
                await asyncio.wait(tasks)
        finally:  # past the deadline, or the call was cancelled: what is still queued stays so
            for late in (p for p in pending if not p.future.done()):
                late.withdraw()
            for task in tasks:
                task.cancel()
        results = []
        for event, outcome in zip(events, outcomes, strict=True):
            error = _failure(outcome)
            kind = KINDS.get(event.WhichOneof("kind") or "", "unknown")
            if error is None:
                _count(kind, None)
                results.append(OK)
            else:
                with _request_id(event):  # the refusal is logged with the event's id
                    _count(kind, error)
                results.append(rich_status(error))
        return results

    def _start_one(
        self, event: pb.Event, caller: Caller, call: object
    ) -> CoreError | PendingEvent | asyncio.Task[None]:
        kind = event.WhichOneof("kind")
        try:
            if kind == "page_view":
                request = event.page_view
                return self._pipeline.start_pageview(
                    client_context(request, caller), request.event_id, call
                )
            if kind == "custom_event":
                return asyncio.ensure_future(self._record_custom_event(event.custom_event, caller))
            raise InvalidInput(Reason.EMPTY_EVENT, "event has no kind", field="events")
        except CoreError as error:
            return error

    async def _send_pageview(self, request: pb.SendPageViewRequest, context: Context) -> None:
        await self._record_pageview(request, self._caller(context))

    async def _send_custom_event(
        self, request: pb.SendCustomEventRequest, context: Context
    ) -> None:
        await self._record_custom_event(request, self._caller(context))

    async def _record_pageview(self, request: pb.SendPageViewRequest, caller: Caller) -> None:
        await self._pipeline.record_pageview(client_context(request, caller), request.event_id)

    async def _record_custom_event(
        self, request: pb.SendCustomEventRequest, caller: Caller
    ) -> None:
        event = CustomEventInput(
            context=client_context(request, caller),
            name=request.name,
            content_type=request.body.content_type,
            body=request.body.data,
            event_id=request.event_id,
        )
        await self._pipeline.record_custom_event(event)

    async def _check_health(self, context: Context) -> None:
        self._caller(context)  # a wrong token is refused here too

    async def _identify(self, context: Context, into: list[Caller]) -> None:
        into.append(self._caller(context))

    def _caller(self, context: Context) -> Caller:
        return Caller(trusted=self._is_trusted(context), peer_ip=peer_ip(context.peer()))

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


@contextlib.contextmanager
def _request_id(event: pb.Event) -> Iterator[None]:
    token = REQUEST_ID.set(valid_request_id(event.request_id) or REQUEST_ID.get())
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


def _failure(outcome: CoreError | PendingEvent | asyncio.Future[None] | None) -> CoreError | None:
    """Why an event was not stored, or None if it was."""
    if isinstance(outcome, PendingEvent):
        outcome = outcome.future
    if outcome is None or isinstance(outcome, CoreError):
        return outcome
    if not outcome.done() or outcome.cancelled():  # withdrawn at the deadline
        return store_late()
    error = outcome.exception()
    if error is None:
        return None
    if isinstance(error, CoreError):
        return error
    raise error  # a defect: the call fails as a whole, as an unexpected error would


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
        _events(kind, "accepted").inc()
        return
    _events(kind, error.reason.lower()).inc()
    logger.info("%s refused: %s (%s)", kind, error.reason, error.message)


@functools.cache
def _events(kind: str, outcome: str) -> Counter:
    """The series of one kind and outcome (a bounded set: both are ours)."""
    return EVENTS.labels(kind, outcome)


async def _raise(error: CoreError) -> None:
    raise error
