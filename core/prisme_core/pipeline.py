"""The ingestion pipeline: a short list of verb-named steps per event kind.

`Pipeline` receives plain `prisme_core.model` values from the servicer, applies every rule,
and stores the result through the `EventStore` port, group-committed. It raises `CoreError`s
only, and returns only once the event is stored.

Every event first counts against its client's rate limit (`count`, called by the servicer
before any other rule).

Page view: validate origin, page URL and document referrer; drop bots; find the device's live
session for an internal navigation, else begin a new one (user agent, country, UTMs, referrer
domain, visitor id); store the page view with the session's attributes.

Custom event: validate origin, page URL, name and properties; drop bots; find the device's live
session, waiting a little for one whose page view is still in flight; store the event with the
session's domain, visitor id and session id. Custom events never change their session.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from prisme_core.batching import GroupCommit
from prisme_core.errors import Dropped, SessionNotFound, StoreUnavailable
from prisme_core.idempotency import RecentEvents
from prisme_core.identity import Identities
from prisme_core.model import (
    ClientContext,
    ClientInfo,
    CustomEvent,
    CustomEventInput,
    PageView,
    SessionAttributes,
    SessionStart,
)
from prisme_core.ports import Clock, EventStore, GeoLocator, UserAgentParser
from prisme_core.properties import parse_properties
from prisme_core.ratelimit import RateLimiter, rate_key
from prisme_core.sessions import LiveSession, SessionTracker
from prisme_core.urls import Url, utm_of
from prisme_core.validate import (
    drop_bot,
    validate_document_referrer,
    validate_event_id,
    validate_event_name,
    validate_origin,
    validate_page_url,
)

T = TypeVar("T")

PAGEVIEW = "pageview"
CUSTOM = "custom"
"""Event kinds, as `RecentEvents` keeps their ids apart."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    origins: frozenset[str]
    session_inactive_ttl: float = 24 * 3600.0
    session_flush_interval: float = 10.0
    batch_max_size: int = 512
    batch_max_timeout: float = 0.001
    max_pending: int = 10_000
    api_events_timeout: float = 3.0
    max_body_bytes: int = 64 * 1024
    rate_limit_per_minute: int = 60
    store_deadline: float = 5.0
    """Longest wait for the store on one event before answering 503."""


@dataclass(frozen=True, slots=True)
class Enrichers:
    geo: GeoLocator
    agents: UserAgentParser


def uuid7(at: datetime) -> uuid.UUID:
    """A UUIDv7 (RFC 9562) whose embedded time is ``at``, to the millisecond."""
    milliseconds = int(at.timestamp() * 1000) & ((1 << 48) - 1)
    value = milliseconds << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | 0x7 << 76
    value = (value & ~(0x3 << 62)) | 0x2 << 62
    return uuid.UUID(int=value)


def _to_milliseconds(at: datetime) -> datetime:
    """BSON keeps milliseconds: cut to them, so what is stored is what was computed."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class _Admitted:
    """A page view that passed every rule, on its way to the store."""

    context: ClientContext
    client: ClientInfo
    page: Url
    referrer: Url | None
    key: uuid.UUID | None
    now: datetime

    @property
    def internal(self) -> bool:
        """A navigation within the site: it continues the device's live session, if any."""
        return self.referrer is not None and self.referrer.host == self.page.host


@dataclass(frozen=True, slots=True)
class PendingEvent:
    future: asyncio.Future[None]
    """Resolves once the event is stored; fails with a `CoreError` if it could not be."""
    _withdraw: Callable[[], None] | None

    def withdraw(self) -> None:
        """The caller stops waiting: an event still queued is not written (503 means not
        stored); one already being written stays."""
        if self._withdraw is not None:
            self._withdraw()
        else:
            self.future.cancel()


def _after_both(
    written: asyncio.Future[None], persisted: asyncio.Future[None]
) -> asyncio.Future[None]:
    """Resolves once the page view and its session are stored; fails as soon as either fails."""
    if persisted.done() and not persisted.cancelled() and persisted.exception() is None:
        return written
    both = written.get_loop().create_future()

    def settle(_: asyncio.Future[None]) -> None:
        if both.done():
            return
        for part in (written, persisted):
            if part.done() and (part.cancelled() or part.exception() is not None):
                failure = part.exception() if not part.cancelled() else None
                both.set_exception(failure or StoreUnavailable("the write was withdrawn"))
                both.exception()  # nobody may be waiting any more: not to be logged as lost
                return
        if written.done() and persisted.done():
            both.set_result(None)

    written.add_done_callback(settle)
    persisted.add_done_callback(settle)
    return both


async def _stored(session: LiveSession) -> None:
    """Returns once the session's document is stored; raises if it could not be."""
    if session.persisted.done():
        session.persisted.result()
    else:
        await asyncio.shield(session.persisted)  # shared: one waiter's deadline is not all's


def store_late() -> StoreUnavailable:
    """Past the store deadline of an event: 503 rather than a longer wait."""
    return StoreUnavailable("the event store did not answer in time")


class Pipeline:
    def __init__(
        self, config: PipelineConfig, store: EventStore, clock: Clock, enrichers: Enrichers
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._enrichers = enrichers
        self._ids = Identities(store)
        self._limiter = RateLimiter(config.rate_limit_per_minute, time.monotonic)
        self._recent = RecentEvents()
        self._store_writes = asyncio.Lock()
        self._sessions = SessionTracker(
            store,
            clock,
            config.session_inactive_ttl,
            config.session_flush_interval,
            write_lock=self._store_writes,
        )
        self._pageviews = self._writer("pageviews", store.insert_pageviews)
        self._session_starts = self._writer("sessions", store.insert_sessions)
        self._custom_events = self._writer("events_custom", store.insert_custom_events)

    def _writer(self, name: str, write: Callable[[Sequence[T]], Awaitable[None]]) -> GroupCommit[T]:
        config = self._config

        return GroupCommit(
            name,
            write,
            config.batch_max_size,
            config.batch_max_timeout,
            config.max_pending,
            turn=self._store_writes,
        )

    @property
    def store_deadline(self) -> float:
        """Longest wait for the store on one event before answering 503."""
        return self._config.store_deadline

    def start(self) -> None:
        for writer in (self._pageviews, self._session_starts, self._custom_events):
            writer.start()
        self._sessions.start()

    async def close(self) -> None:
        """Stores everything accepted so far: queued events first, then session progress."""
        for writer in (self._session_starts, self._pageviews, self._custom_events):
            await writer.close()
        await self._sessions.close()

    async def record_pageview(self, context: ClientContext, event_id: str = "") -> None:
        await self._record(self._admit(context, event_id))

    def start_pageview(self, context: ClientContext, event_id: str = "") -> PendingEvent:
        """`record_pageview` for a caller with many events at once (`SendEvents`): every rule
        that needs no waiting runs now, and a refusal raises now. The page view is then stored
        when ``future`` resolves; past the store deadline, the caller calls ``withdraw``.

        Most page views need no waiting at all (keys in memory, session cached or new), and
        take no task and no lock: deciding without a suspension point is already atomic. The
        others take the path of `record_pageview`, in a task that keeps its own deadline."""
        admitted = self._admit(context, event_id)
        pending = self._store_now(admitted)
        if pending is None:
            return PendingEvent(asyncio.ensure_future(self._record(admitted)), None)
        return pending

    def count(self, client_ip: str) -> None:
        """Counts one event against its client's rate limit; raises `RateLimited` past it."""
        self._limiter.check(rate_key(client_ip))

    def _admit(self, context: ClientContext, event_id: str) -> _Admitted:
        validate_origin(context.origin, self._config.origins)
        page = validate_page_url(context.page_url)
        referrer = validate_document_referrer(context.document_referrer)
        key = validate_event_id(event_id)
        client = self._enrichers.agents.parse(context.user_agent)
        if (reason := drop_bot(client)) is not None:
            raise Dropped(reason, "bots are not recorded")
        now = _to_milliseconds(self._clock.now())
        return _Admitted(context, client, page, referrer, key, now)

    async def _record(self, admitted: _Admitted) -> None:
        async with self._store_deadline():
            await self._recent.once(PAGEVIEW, admitted.key, lambda: self._store_pageview(admitted))

    @contextlib.asynccontextmanager
    async def _store_deadline(self) -> AsyncIterator[None]:
        """Bounds the store part of one event: past it, 503 instead of a longer wait."""
        try:
            async with asyncio.timeout(self._config.store_deadline):
                yield
        except TimeoutError as exc:
            raise store_late() from exc

    def _store_now(self, admitted: _Admitted) -> PendingEvent | None:
        """`_store_pageview` when nothing has to be waited for; None when something has."""
        context, page = admitted.context, admitted.page
        if admitted.key is not None and self._recent.knows(admitted.key):
            return None
        client_ip = context.client_ip or ""
        device_id = self._ids.known_device_id(
            context.user_agent, client_ip, page.host, admitted.now
        )
        if device_id is None or self._sessions.busy(device_id):
            return None
        if admitted.internal:
            session = self._sessions.cached_live(device_id, admitted.now)
            if session is None:
                return None
            starting = None
        else:
            visitor_id = self._ids.known_visitor_id(
                context.user_agent, client_ip, page.host, admitted.now
            )
            if visitor_id is None:
                return None
            session, starting = self._begin_session(device_id, admitted, visitor_id)
        pageview = PageView(admitted.now, page.path, session.start.attributes, admitted.key)
        written = self._pageviews.submit(pageview)
        stored = _after_both(written, session.persisted)
        if starting is None:  # the session moves once the page view is stored, not before
            stored.add_done_callback(self._advance_when_stored(session, page.path, admitted.now))
        if admitted.key is not None:
            self._recent.track(PAGEVIEW, admitted.key, stored)
        return PendingEvent(stored, lambda: self._withdraw(written, starting))

    def _withdraw(
        self, written: asyncio.Future[None], starting: asyncio.Future[None] | None
    ) -> None:
        """A page view given up while queued is not written, nor the session it began."""
        self._pageviews.withdraw(written)
        if starting is not None:
            self._session_starts.withdraw(starting)

    def _advance_when_stored(
        self, session: LiveSession, path: str, at: datetime
    ) -> Callable[[asyncio.Future[None]], None]:
        def advance(stored: asyncio.Future[None]) -> None:
            if not stored.cancelled() and stored.exception() is None:
                self._sessions.advance(session, path, at)

        return advance

    async def _store_pageview(self, admitted: _Admitted) -> None:
        context, page, now = admitted.context, admitted.page, admitted.now
        client_ip = context.client_ip or ""
        device_id = await self._ids.device_id(context.user_agent, client_ip, page.host, now)
        async with self._sessions.lock(device_id):
            session = (
                await self._live(context, page.host, device_id, now) if admitted.internal else None
            )
            continued = session is not None
            if session is None:
                visitor_id = await self._ids.visitor_id(
                    context.user_agent, client_ip, page.host, now
                )
                session, _ = self._begin_session(device_id, admitted, visitor_id)
        pageview = PageView(now, page.path, session.start.attributes, admitted.key)
        await self._pageviews.write(pageview)
        await _stored(session)  # stored with its session, or not acknowledged
        if continued:  # the session moves once the page view is stored, not before
            self._sessions.advance(session, page.path, now)

    async def _live(
        self, context: ClientContext, host: str, device_id: str, now: datetime
    ) -> LiveSession | None:
        """The device's live session, found under the day's device key or, begun before
        midnight, under the previous day's (then kept under the day's in this process)."""
        session = await self._sessions.live(device_id, now)
        if session is not None:
            return session
        ip = context.client_ip or ""
        before = await self._ids.device_id(context.user_agent, ip, host, now, days_back=1)
        session = await self._sessions.live(before, now)
        if session is not None:
            self._sessions.alias(session, device_id)
        return session

    def _begin_session(
        self, device_id: str, admitted: _Admitted, visitor_id: str
    ) -> tuple[LiveSession, asyncio.Future[None]]:
        """The new session, and the write of its document."""
        context, client, page, referrer = (
            admitted.context,
            admitted.client,
            admitted.page,
            admitted.referrer,
        )
        utm = utm_of(page.query)
        attributes = SessionAttributes(
            session_uuid=uuid7(admitted.now),
            domain=page.host,
            visitor_id=visitor_id,
            operating_system=client.operating_system,
            browser_family=client.browser_family,
            device=client.device,
            referrer_domain=referrer.host if referrer is not None else "direct",
            country_code=self._enrichers.geo.country(context.client_ip),
            utm_source=utm.source,
            utm_medium=utm.medium,
            utm_campaign=utm.campaign,
            utm_term=utm.term,
            utm_content=utm.content,
        )
        start = SessionStart(
            device_id=device_id,
            entry_path=page.path,
            entry_timestamp=admitted.now,
            attributes=attributes,
        )
        write = self._session_starts.submit(start)
        return self._sessions.begin(start, write), write

    async def record_custom_event(self, event: CustomEventInput) -> None:
        context = event.context
        validate_origin(context.origin, self._config.origins)
        page = validate_page_url(context.page_url)
        name = validate_event_name(event.name)
        properties = parse_properties(event.content_type, event.body, self._config.max_body_bytes)
        key = validate_event_id(event.event_id)
        if (reason := drop_bot(self._enrichers.agents.parse(context.user_agent))) is not None:
            raise Dropped(reason, "bots are not recorded")
        received = _to_milliseconds(self._clock.now())
        client_ip = context.client_ip or ""
        device_id = await self._ids.device_id(context.user_agent, client_ip, page.host, received)
        waited = self._config.api_events_timeout
        session = await self._live(context, page.host, device_id, received)
        if session is None:
            session = await self._sessions.wait_live(device_id, within=waited)
        if session is None:
            raise SessionNotFound(waited)
        attributes = session.start.attributes
        custom = CustomEvent(
            timestamp=received,
            domain=attributes.domain,
            path=page.path,
            visitor_id=attributes.visitor_id,
            session_uuid=attributes.session_uuid,
            name=name,
            properties=properties,
            event_id=key,
        )
        async with self._store_deadline():
            await _stored(session)
            await self._recent.once(CUSTOM, key, lambda: self._custom_events.write(custom))

    async def forget_ended_devices(self) -> None:
        """Removes the lookup key of sessions that ended (the hourly sweep, at once)."""
        await self._sessions.forget_ended()

    async def check_health(self) -> None:
        await self._store.ping()
