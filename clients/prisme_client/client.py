"""`PrismeClient`: a typed asyncio client for `prisme.v1.EventService`.

    async with PrismeClient("127.0.0.1:50051", token=None) as client:
        await client.send_pageview(page_url=..., origin=..., user_agent=...)
        await client.send_custom_event("purchase", {"amount": 12.5}, page_url=..., ...)

Every call has a deadline, a request id (``x-request-id`` metadata), and is retried with
exponential backoff while the service answers UNAVAILABLE. Retrying is safe: each event gets
an event id (a fresh UUID unless you pass one), and the service stores an event id once.
Refusals raise `PrismeError` with the gRPC ``code`` and the stable ``reason``.

Events that happened earlier (an offline queue, a backend's log) carry ``timestamp=``, an
aware `datetime` by the sender's clock; every request says when it was sent (``sent_at``),
so the service corrects the sender's clock (DESIGN §13).

Without a token the service treats the caller like a browser (its own address is the client
IP: mobile SDKs). With the service token it may pass ``client_ip`` for an end user
(server-side tracking).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.api import annotations_pb2, http_pb2
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme.v1 import stats_service_pb2 as stats_pb
from prisme.v1 import stats_service_pb2_grpc as stats_grpc

from prisme_client.errors import PrismeError, error_from_rpc, error_from_status

T = TypeVar("T")
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True, slots=True)
class PageView:
    """A page view, for `PrismeClient.send_events`."""

    page_url: str
    origin: str
    user_agent: str
    client_ip: str | None = None
    document_referrer: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: int | None = None
    """The page's HTTP status (100-599); None means 200."""
    visitor_id: str | None = None
    """The site's own visitor id, if it has one (1-128 printable ASCII characters)."""
    timestamp: datetime | None = None
    """When it happened, if earlier than it is sent."""


@dataclass(frozen=True, slots=True)
class CustomEvent:
    """A custom event, for `PrismeClient.send_events`."""

    name: str
    properties: Mapping[str, Any] | None
    page_url: str
    origin: str
    user_agent: str
    client_ip: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class Click:
    """A click on ``url`` from the page at ``page_url``."""

    url: str
    page_url: str
    origin: str
    user_agent: str
    client_ip: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: datetime | None = None

    def event(self, event_id: str) -> pb.Event:
        context = _context(self.page_url, self.origin, self.user_agent, self.client_ip, None)
        if isinstance(self, OutboundLink):
            link = pb.SendOutboundLinkRequest(context=context, link=self.url, event_id=event_id)
            return pb.Event(outbound_link=_timed(link, self.timestamp))
        download = pb.SendFileDownloadRequest(context=context, url=self.url, event_id=event_id)
        return pb.Event(file_download=_timed(download, self.timestamp))


@dataclass(frozen=True, slots=True)
class OutboundLink(Click):
    """A click on a link to another site, for `PrismeClient.send_events`."""


@dataclass(frozen=True, slots=True)
class FileDownload(Click):
    """A click on a file to download, for `PrismeClient.send_events`."""


@dataclass(frozen=True, slots=True)
class Engagement:
    """A report of a page view's engagement since its last report: ``engaged_ms`` of time on
    the page (0 to 1,800,000) and the deepest ``scroll_depth`` (0 to 100), for the page view
    whose event id is ``pageview_id``."""

    pageview_id: str
    engaged_ms: int
    scroll_depth: int
    page_url: str
    origin: str
    user_agent: str
    client_ip: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: datetime | None = None

    def request(self) -> pb.SendEngagementRequest:
        context = _context(self.page_url, self.origin, self.user_agent, self.client_ip, None)
        request = pb.SendEngagementRequest(
            context=context,
            pageview_id=self.pageview_id,
            engaged_ms=self.engaged_ms,
            scroll_depth=self.scroll_depth,
            event_id=self.event_id,
        )
        return _timed(request, self.timestamp)


Event = PageView | CustomEvent | OutboundLink | FileDownload | Engagement


@dataclass(frozen=True, slots=True)
class Stats:
    """A stats answer: the range (Unix seconds), the keys (bucket starts in Unix ms for a
    time series, the dimension's values for a ranked list, paths for time on page and scroll
    depth) and their values; for those two, each path's figures and the overall ones."""

    start: int
    end: int
    keys: list[int] | list[str]
    values: list[int] | list[float]
    totals: stats_pb.StatsTotals | None = None
    pages: list[stats_pb.EngagementFigures] = field(default_factory=list)
    overall: stats_pb.EngagementFigures | None = None


def _metrics_of(rpc: str) -> frozenset[str]:
    """The metrics whose routes the proto binds to ``rpc`` (``{metric=visitors}``, ...)."""
    method = stats_pb.DESCRIPTOR.services_by_name["StatsService"].methods_by_name[rpc]
    rule: http_pb2.HttpRule = method.GetOptions().Extensions[annotations_pb2.http]  # type: ignore[index]
    paths = [rule.get, *(binding.get for binding in rule.additional_bindings)]
    return frozenset(path.rsplit("=", 1)[1].rstrip("}") for path in paths)


TIMESERIES = _metrics_of("GetTimeseries")
TOP = _metrics_of("GetTop")
ENGAGEMENT = _metrics_of("GetEngagement")
QUERY_FIELDS = frozenset(stats_pb.StatsQuery.DESCRIPTOR.fields_by_name) - {"unknown"}


class PrismeClient:
    def __init__(
        self,
        target: str,
        token: str | None = None,
        *,
        stats_token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._target = target
        self._token = token
        self._stats_token = stats_token
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.EventServiceAsyncStub | None = None
        self._stats: stats_grpc.StatsServiceAsyncStub | None = None

    async def __aenter__(self) -> PrismeClient:
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(self._target)
        else:
            self._channel = grpc.aio.secure_channel(self._target, self._credentials)
        self._stub = pb_grpc.EventServiceStub(self._channel)
        self._stats = stats_grpc.StatsServiceStub(self._channel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = self._stats = None

    async def send_pageview(
        self,
        *,
        page_url: str,
        origin: str,
        user_agent: str,
        client_ip: str | None = None,
        document_referrer: str | None = None,
        event_id: str | None = None,
        status: int | None = None,
        visitor_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Records a page view; returns once it is stored."""
        event = PageView(page_url, origin, user_agent, client_ip, document_referrer,
                         status=status, visitor_id=visitor_id, timestamp=timestamp)  # fmt: skip
        request = _pageview_request(event, event_id or event.event_id)
        await self._call(lambda stub, meta: stub.SendPageView(_sent(request), **meta))

    async def send_custom_event(
        self,
        name: str,
        properties: Mapping[str, Any] | None = None,
        *,
        page_url: str,
        origin: str,
        user_agent: str,
        client_ip: str | None = None,
        event_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Records a custom event whose visitor has a live session; returns once stored."""
        event = CustomEvent(name, properties, page_url, origin, user_agent, client_ip,
                            timestamp=timestamp)  # fmt: skip
        request = _custom_request(event, event_id or event.event_id)
        await self._call(lambda stub, meta: stub.SendCustomEvent(_sent(request), **meta))

    async def send_click(self, click: Click) -> None:
        """Records an `OutboundLink` or a `FileDownload` click; returns once stored."""
        event = click.event(click.event_id)
        if isinstance(click, OutboundLink):
            link = event.outbound_link
            await self._call(lambda stub, meta: stub.SendOutboundLink(_sent(link), **meta))
        else:
            download = event.file_download
            await self._call(lambda stub, meta: stub.SendFileDownload(_sent(download), **meta))

    async def send_engagement(self, report: Engagement) -> None:
        """Records an engagement report; returns once it is stored."""
        request = report.request()
        await self._call(lambda stub, meta: stub.SendEngagement(_sent(request), **meta))

    async def send_events(self, events: Sequence[Event]) -> list[PrismeError | None]:
        """Records many events (at most 1,000) in one call: None for each stored event, else
        its error. Events answered UNAVAILABLE are sent again, alone, with backoff and their
        own event ids (stored once however often they are sent); the others are not."""
        results: list[PrismeError | None] = [None] * len(events)
        waiting = list(range(len(events)))
        messages = [_event(event) for event in events]
        for attempt in range(self._retries + 1):
            request = pb.SendEventsRequest(events=[messages[i] for i in waiting])
            send = lambda stub, meta, sent=request: stub.SendEvents(_sent(sent), **meta)  # noqa: E731
            response = await self._call(send)
            for index, status in zip(waiting, response.results, strict=True):
                results[index] = error_from_status(status)
            waiting = [i for i in waiting if (e := results[i]) is not None and e.code in RETRYABLE]
            if not waiting or attempt == self._retries:
                break
            await self._pause(attempt)
        return results

    async def check_health(self) -> float:
        """The store's ping time in milliseconds; raises `PrismeError` when unhealthy."""
        request = pb.CheckHealthRequest()
        response = await self._call(lambda stub, meta: stub.CheckHealth(request, **meta))
        return response.store_ping_ms

    async def stats(
        self,
        metric: str,
        start: str,
        end: str,
        *,
        limit: int | None = None,
        totals: bool = False,
        interval: str | None = None,
        tz: str | None = None,
        **filters: str,
    ) -> Stats:
        """Reads one stats route (``visitors``, ``top-pages``, ...) with the stats token:
        ``start`` and ``end`` in Prisme's grammar (``now-7d``, ``2024-01-31``, RFC 3339),
        ``filters`` by their field names (``domain``, ``entry_path``, ``utm_source``, ...),
        each value a comma-separated list."""
        if self._stats is None:
            raise RuntimeError("use PrismeClient as an async context manager")
        query = stats_pb.StatsQuery()
        for name, values in filters.items():
            if name not in QUERY_FIELDS:
                raise TypeError(f"no stats filter {name!r}")
            setattr(query, name, values)
        setattr(query, "from", start)
        query.to, query.totals = end, "true" if totals else ""
        query.limit = "" if limit is None else str(limit)
        query.interval, query.tz = interval or "", tz or ""
        stub, options = self._stats, self._options(self._stats_token)
        pages: list[stats_pb.EngagementFigures] = []
        overall = None
        if metric in TOP:
            top = stats_pb.GetTopRequest(metric=metric, query=query)
            answer: Any = await self._retried(lambda: stub.GetTop(top, **options))
        elif metric in ENGAGEMENT:
            read = stats_pb.GetEngagementRequest(metric=metric, query=query)
            answer = await self._retried(lambda: stub.GetEngagement(read, **options))
            pages, overall = list(answer.pages), answer.overall
        else:
            series = stats_pb.GetTimeseriesRequest(metric=metric, query=query)
            answer = await self._retried(lambda: stub.GetTimeseries(series, **options))
        answered = answer.totals if answer.HasField("totals") else None
        return Stats(getattr(answer, "from"), answer.to, list(answer.keys), list(answer.values),
                     answered, pages, overall)  # fmt: skip

    def _options(self, token: str | None) -> dict[str, Any]:
        metadata = [("x-request-id", uuid.uuid4().hex), *bearer(token)]
        return {"metadata": metadata, "timeout": self._timeout}

    async def _call(
        self, send: Callable[[pb_grpc.EventServiceAsyncStub, dict[str, Any]], Awaitable[T]]
    ) -> T:
        stub = self._stub
        if stub is None:
            raise RuntimeError("use PrismeClient as an async context manager")
        options = self._options(self._token)
        return await self._retried(lambda: send(stub, options))

    async def _retried(self, send: Callable[[], Awaitable[T]]) -> T:
        """``send``, again with backoff while the service answers UNAVAILABLE."""
        for attempt in range(self._retries + 1):
            try:
                return await send()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or attempt == self._retries:
                    raise error_from_rpc(exc) from exc
            await self._pause(attempt)
        raise AssertionError("unreachable")

    async def _pause(self, attempt: int) -> None:
        """Exponential backoff with jitter before retry ``attempt + 1``."""
        delay = self._backoff * 2**attempt
        await asyncio.sleep(delay + random.uniform(0, delay))


def _context(
    page_url: str, origin: str, user_agent: str, client_ip: str | None, referrer: str | None
) -> pb.ClientContext:
    return pb.ClientContext(
        origin=origin,
        page_url=page_url,
        document_referrer=referrer or "",
        user_agent=user_agent,
        client_ip=client_ip or "",
    )


def _pageview_request(event: PageView, event_id: str) -> pb.SendPageViewRequest:
    context = _context(
        event.page_url, event.origin, event.user_agent, event.client_ip, event.document_referrer
    )
    status = "" if event.status is None else str(event.status)
    request = pb.SendPageViewRequest(
        context=context, event_id=event_id, status=status, visitor_id=event.visitor_id or ""
    )
    return _timed(request, event.timestamp)


def _custom_request(event: CustomEvent, event_id: str) -> pb.SendCustomEventRequest:
    context = _context(event.page_url, event.origin, event.user_agent, event.client_ip, None)
    request = pb.SendCustomEventRequest(context=context, name=event.name, event_id=event_id)
    if event.properties:
        request.body.content_type = "application/json"
        request.body.data = json.dumps(dict(event.properties), allow_nan=False).encode()
    return _timed(request, event.timestamp)


Timed = TypeVar(
    "Timed",
    pb.SendEngagementRequest,
    pb.SendPageViewRequest,
    pb.SendCustomEventRequest,
    pb.SendOutboundLinkRequest,
    pb.SendFileDownloadRequest,
)


def _timed(request: Timed, timestamp: datetime | None) -> Timed:
    """``request`` with when its event happened (a naive `datetime` is taken as UTC)."""
    if timestamp is not None:
        request.timestamp.FromDatetime(timestamp)
    return request


Sent = TypeVar(
    "Sent",
    pb.SendEventsRequest,
    pb.SendEngagementRequest,
    pb.SendPageViewRequest,
    pb.SendCustomEventRequest,
    pb.SendOutboundLinkRequest,
    pb.SendFileDownloadRequest,
)


def _sent(request: Sent) -> Sent:
    """``request`` saying it is sent now, by this machine's clock (set on every attempt)."""
    request.sent_at.FromDatetime(datetime.now(UTC))
    return request


def _event(event: Event) -> pb.Event:
    if isinstance(event, PageView):
        return pb.Event(page_view=_pageview_request(event, event.event_id))
    if isinstance(event, Click):
        return event.event(event.event_id)
    if isinstance(event, Engagement):
        return pb.Event(engagement=event.request())
    return pb.Event(custom_event=_custom_request(event, event.event_id))


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata that presents ``token`` (none without one)."""
    return (("authorization", f"Bearer {token}"),) if token else ()
