"""The ingestion pipeline: one entry point per event kind, each a short list of named steps.

`Pipeline` receives plain `prisme_core.model` values from the servicer, applies every rule,
and stores the result through the `EventStore` port, group-committed. Each entry point returns
the event's `Outcome` at once: a refusal (a value, never raised), or a `PendingEvent` whose
future resolves once the event is stored.

Every kind first takes the admission steps (`prisme_core.admission`: rate limit, origin,
URLs, event id, bot). Then:

- Page view: the session rule (`_decide`, by `SessionTracker.continued`): the page view
  continues one of the device's live sessions (its tab) or begins a new one, enriched by the
  ``put_*`` steps of `prisme_core.enrich`; the page view is stored with the session's
  attributes, and the session advances once it is stored.
- Custom event, outbound-link click, file download, engagement (events that join their
  session): one of the device's live sessions (`SessionTracker.joined`), waited for a little
  when its page view may still be in flight (not for an engagement, which is sent after its
  page view's answer); stored with the session's domain, visitor id and session id, and the
  event's own page. They never change their session.

Most events need nothing from the store (keys and the session are in memory) and are decided
at once, without a task or a lock. The others first load what is missing, in a task that
keeps its own deadline, then are decided by the same steps.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from prisme_core.admission import (
    Admission,
    Admitted,
    AdmittedCustomEvent,
    AdmittedEngagement,
    AdmittedPageView,
    JoiningEvent,
)
from prisme_core.batching import GroupCommit
from prisme_core.enrich import Enrichers, session_attributes
from prisme_core.errors import CoreError, Dropped, SessionNotFound
from prisme_core.idempotency import RecentEvents
from prisme_core.identity import Identities
from prisme_core.model import (
    Click,
    ClickInput,
    ClickKind,
    CustomEvent,
    CustomEventInput,
    Engagement,
    EngagementInput,
    PageView,
    PageViewInput,
    SessionStart,
)
from prisme_core.outcomes import Outcome, PendingEvent, after_both, settled, store_deadline
from prisme_core.ports import Clock, EventStore
from prisme_core.ratelimit import RateLimiter, rate_key
from prisme_core.sessions import LiveSession, SessionTracker
from prisme_core.settings import LimitSettings, SessionSettings, StoreSettings

T = TypeVar("T")
E = TypeVar("E")
G = TypeVar("G")


class Pipeline:
    def __init__(
        self,
        limits: LimitSettings,
        sessions: SessionSettings,
        stored: StoreSettings,
        store: EventStore,
        clock: Clock,
        enrichers: Enrichers,
    ) -> None:
        self._session_wait = sessions.events_timeout
        self._deadline = stored.timeout
        self._store = store
        self._geo = enrichers.geo
        self._admission = Admission.of(limits, enrichers.agents, clock)
        self._ids = Identities(store)
        self._limiter = RateLimiter(limits.rate_limit_per_minute, time.monotonic)
        self._recent = RecentEvents()
        turn = asyncio.Lock()
        """One store call at a time: a batch waits for the store, not in its queue."""

        def writer(name: str, write: Callable[[Sequence[T]], Awaitable[None]]) -> GroupCommit[T]:
            size, delay = stored.batch_max_size, stored.batch_max_timeout
            return GroupCommit(name, write, size, delay, stored.batch_max_queue, turn=turn)

        self._sessions = SessionTracker(store, clock, sessions, writer, write_lock=turn)
        self._pageviews = writer("pageviews", store.insert_pageviews)
        self._session_starts = writer("sessions", store.insert_sessions)
        self._custom_events = writer("events_custom", store.insert_custom_events)
        self._engagements = writer("engagements", store.insert_engagements)
        self._clicks = {
            ClickKind.OUTBOUND_LINK: writer("outbound_link_clicks", store.insert_outbound_links),
            ClickKind.FILE_DOWNLOAD: writer("file_downloads", store.insert_file_downloads),
        }

    @property
    def knows_sessions_elsewhere(self) -> bool:
        """Whether a new device's first page view is decided without asking the store."""
        return self._sessions.knows_elsewhere

    @property
    def store_deadline(self) -> float:
        """Longest wait for the store on one event before answering 503."""
        return self._deadline

    @property
    def _writers(self) -> tuple[GroupCommit[Any], ...]:
        return (self._session_starts, self._pageviews, self._custom_events, self._engagements,
                *self._clicks.values())  # fmt: skip

    def start(self) -> None:
        for writer in self._writers:
            writer.start()
        self._sessions.start()

    async def close(self) -> None:
        """Stores everything accepted so far: queued events first, then session progress."""
        for writer in self._writers:
            await writer.close()
        await self._sessions.close()

    async def flush(self) -> None:
        """Writes now what is queued, then every session's progress (written behind until
        then), as the service would over the next flush interval."""
        for writer in self._writers:
            await writer.flush()
        await self._sessions.flush()

    def count(self, client_ip: str) -> None:
        """Counts one event against its client's rate limit; raises `RateLimited` past it."""
        self._limiter.check(rate_key(client_ip))

    def pageview(self, event: PageViewInput) -> Outcome:
        admit = self._admission.pageview
        return self._enter(admit, event, self._pageview_now, self._pageview_later)

    def custom_event(self, event: CustomEventInput) -> Outcome:
        admit = self._admission.custom_event
        return self._enter(admit, event, self._joined_now, self._joined_later)

    def click(self, event: ClickInput) -> Outcome:
        """An outbound-link click or a file download."""
        return self._enter(self._admission.click, event, self._joined_now, self._joined_later)

    def engagement(self, event: EngagementInput) -> Outcome:
        """A report of a page view's engagement: it joins the session, without waiting."""
        admit = self._admission.engagement
        return self._enter(admit, event, self._joined_now, self._joined_later)

    def _enter(
        self,
        admit: Callable[[G], E | Dropped],
        given: G,
        now: Callable[[E], PendingEvent | None],
        later: Callable[[E], Awaitable[None]],
    ) -> Outcome:
        """One event: admitted, then decided at once, or in a task of its own that loads what
        it waits for first."""
        try:
            event = admit(given)
            if isinstance(event, Dropped):
                return event
            return now(event) or PendingEvent(asyncio.ensure_future(later(event)))
        except CoreError as refused:
            return refused.with_traceback(None)  # its frames hold the request

    def _pageview_now(self, visit: AdmittedPageView) -> PendingEvent | None:
        """The page view decided from memory; None if something must be loaded first (a key,
        a session only the store knows), its device is being decided, or it is a retry."""
        admitted = visit.admitted
        if admitted.key is not None and self._recent.knows(admitted.key):
            return None
        device_id = self._ids.known_device_id(*admitted.device, admitted.now)
        if device_id is None or self._sessions.busy(device_id):
            return None
        pending = self._decide(visit, device_id, loaded=False)
        if pending is not None and admitted.key is not None:
            self._recent.track(visit.kind, admitted.key, pending.future)
        return pending

    async def _pageview_later(self, visit: AdmittedPageView) -> None:
        """Loads what the session rule reads (the day's keys, the live session), then decides."""
        key = visit.admitted.key
        async with store_deadline(self._deadline):
            await self._recent.once(visit.kind, key, lambda: self._load_and_decide(visit))

    async def _load_and_decide(self, visit: AdmittedPageView) -> None:
        admitted = visit.admitted
        device_id, before = await self._device_ids(admitted)
        async with self._sessions.lock(device_id):
            await self._sessions.load(device_id, before, admitted.at)
            await self._ids.visitor_id(*admitted.device, admitted.now)
            pending = self._decide(visit, device_id, loaded=True)
        if pending is None:
            raise RuntimeError("a page view undecided after loading what it needs")
        await settled(pending)

    def _decide(self, visit: AdmittedPageView, device_id: str, loaded: bool) -> PendingEvent | None:
        """The session rule (`SessionTracker.continued`): the page view continues one of the
        device's live sessions, or begins one, enriched. Decided from memory: None when
        memory cannot tell, unless everything was ``loaded`` first. Decided by the time the
        page view happened; the visitor id of a new session is the day's it arrived on."""
        admitted, at = visit.admitted, visit.admitted.at
        device = self._sessions.cached(device_id, at)
        if device is None and not loaded and not self._unseen(admitted, device_id):
            return None  # the store may know sessions this process does not
        path, referrer = admitted.page.path, admitted.referrer
        came_from = referrer.path if admitted.internal and referrer is not None else None
        live = None if device is None else self._sessions.continued(device, path, came_from, at)
        if device is not None and live is not None:
            self._sessions.touch(device, live, path, at)
            if visit.visitor_id is not None and visit.visitor_id != live.attributes.visitor_id:
                self._sessions.identify(live, visit.visitor_id)
            return self._store_pageview(visit, live, None)
        visitor_id = visit.visitor_id or self._ids.known_visitor_id(*admitted.device, admitted.now)
        if visitor_id is None:
            return None
        start = SessionStart(
            device_id=device_id,
            entry_path=path,
            entry_timestamp=at,
            attributes=session_attributes(admitted, visitor_id, self._geo),
        )
        starting = self._session_starts.submit(start)
        return self._store_pageview(visit, self._sessions.begin(start, starting), starting)

    def _unseen(self, admitted: Admitted, device_id: str) -> bool:
        """A direct or external page view of a device none of whose sessions a reload could
        continue, here or (as far as this process knows) in the store."""
        if admitted.internal:
            return False  # a tab begun before this process started may still be live
        before = self._ids.known_device_id(*admitted.device, admitted.now, days_back=1)
        return before is not None and self._sessions.unseen(admitted.at, device_id, before)

    def _store_pageview(
        self, visit: AdmittedPageView, session: LiveSession, starting: asyncio.Future[None] | None
    ) -> PendingEvent:
        """Queues the page view; it is stored once its session is too. A page view that
        continues its session advances it once stored, not before."""
        admitted = visit.admitted
        path, at = admitted.page.path, admitted.at
        view = PageView(at, path, session.attributes, admitted.key, visit.status)
        written = self._pageviews.submit(view)
        stored = after_both(written, session.persisted)
        if starting is None:
            stored.add_done_callback(self._sessions.advance_when_stored(session, path, at))
        return PendingEvent(stored, lambda: self._withdraw(written, starting))

    def _withdraw(
        self, written: asyncio.Future[None], starting: asyncio.Future[None] | None
    ) -> None:
        """A page view given up while queued is not written, nor the session it began."""
        self._pageviews.withdraw(written)
        if starting is not None:
            self._session_starts.withdraw(starting)

    async def _device_ids(self, admitted: Admitted) -> tuple[str, str]:
        """The device's id under the day's key, and under the previous day's (its sessions
        begun before midnight)."""
        device_id = await self._ids.device_id(*admitted.device, admitted.now)
        return device_id, await self._ids.device_id(*admitted.device, admitted.now, days_back=1)

    def _joined_now(self, event: JoiningEvent) -> PendingEvent | None:
        """An event that joins its session (a custom event, a click), stored at once if the
        session is in memory and stored; else None."""
        admitted = event.admitted
        if admitted.key is not None and self._recent.knows(admitted.key):
            return None
        device_id = self._ids.known_device_id(*admitted.device, admitted.now)
        device = None if device_id is None else self._sessions.cached(device_id, admitted.at)
        path = admitted.page.path
        session = None if device is None else self._sessions.joined(device, path, admitted.at)
        if session is None or not session.is_stored:
            return None
        pending = self._store_joined(event, session)
        if admitted.key is not None:
            self._recent.track(event.kind, admitted.key, pending.future)
        return pending

    async def _joined_later(self, event: JoiningEvent) -> None:
        """Waits for the event's session (its page view may still be in flight), then stores."""
        admitted, path, at = event.admitted, event.admitted.page.path, event.admitted.at
        device_id, before = await self._device_ids(admitted)
        device = await self._sessions.load(device_id, before, at)
        session = self._sessions.joined(device, path, at)
        if session is None and not event.waits and self._sessions.busy(device_id):
            async with self._sessions.lock(device_id):  # its page view, in the same batch
                pass
            device = await self._sessions.load(device_id, before, at)
            session = self._sessions.joined(device, path, at)
        if session is None and event.waits:
            waited = await self._sessions.wait_live(device_id, before, at, self._session_wait)
            if waited is not None:
                session = self._sessions.joined(waited, path, at)
        if session is None:
            raise SessionNotFound(self._session_wait if event.waits else 0)
        async with store_deadline(self._deadline):
            await session.stored()
            pending = lambda: settled(self._store_joined(event, session))  # noqa: E731
            await self._recent.once(event.kind, admitted.key, pending)

    def _store_joined(self, event: JoiningEvent, session: LiveSession) -> PendingEvent:
        """Queues the event with its session's domain, visitor id and session id; its own page."""
        admitted, attributes = event.admitted, session.attributes
        at, path, key = admitted.at, admitted.page.path, admitted.key
        if isinstance(event, AdmittedCustomEvent):
            custom = CustomEvent(at, path, attributes, event.name, event.properties, key)
            written = self._custom_events.submit(custom)
            return PendingEvent(written, lambda: self._custom_events.withdraw(written))
        if isinstance(event, AdmittedEngagement):
            report = Engagement(at, path, attributes, event.pageview_id, event.engaged_ms,
                                event.scroll_depth, key)  # fmt: skip
            written = self._engagements.submit(report)
            return PendingEvent(written, lambda: self._engagements.withdraw(written))
        clicks = self._clicks[event.click]
        written = clicks.submit(Click(at, path, attributes, event.target, key))
        return PendingEvent(written, lambda: clicks.withdraw(written))

    async def forget_ended_devices(self) -> None:
        """Removes the lookup key of sessions that ended (the hourly sweep, at once)."""
        await self._sessions.forget_ended()

    async def check_health(self) -> None:
        await self._store.ping()
