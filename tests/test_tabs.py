"""Several live sessions per device (tabs), DESIGN §11: which session a page view continues
and an event joins, as pure unit tests of the pipeline on the in-memory store. The same
rules over HTTP and gRPC against the real store are in tests/test_current_prisme.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from prisme_core.adapters.memory import InMemoryEventStore
from prisme_core.batching import Batcher, GroupCommit
from prisme_core.errors import SessionNotFound
from prisme_core.model import (
    ClickInput,
    ClickKind,
    CustomEventInput,
    PageViewInput,
    SessionStart,
)
from prisme_core.pipeline import Pipeline
from prisme_core.ports import FixedClock
from prisme_core.sessions import MAX_SESSIONS_PER_DEVICE, Device, LiveSession, SessionTracker
from prisme_core.settings import SessionSettings
from prometheus_client import REGISTRY

from tests.support import until
from tests.test_mongo_store import _attributes
from tests.test_pipeline import _context, _pipeline, _settled, record_pageview

START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SITE = "https://example.com"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
async def pipeline(store: InMemoryEventStore, clock: FixedClock) -> AsyncIterator[Pipeline]:
    pipeline = _pipeline(store, clock, api_events_timeout=0.05)
    pipeline.start()
    yield pipeline
    await pipeline.close()


Browse = Callable[..., Awaitable[UUID]]


def browsing(pipeline: Pipeline, clock: FixedClock, store: InMemoryEventStore) -> Browse:
    async def view(page: str, came_from: str = "") -> UUID:
        """Records a page view of ``page`` a second after the last (``came_from``: the
        document referrer, a path on the site or an absolute URL); returns its session id."""
        clock.advance(seconds=1)
        referrer = SITE + came_from if came_from.startswith("/") else came_from
        await record_pageview(pipeline, _context(page_url=SITE + page, referrer=referrer))
        return store.pageviews[-1].session.session_uuid

    return view


@pytest.fixture
def view(pipeline: Pipeline, clock: FixedClock, store: InMemoryEventStore) -> Browse:
    return browsing(pipeline, clock, store)


def counts(store: InMemoryEventStore) -> dict[UUID, int]:
    """Page views stored per session."""
    found: dict[UUID, int] = {}
    for pageview in store.pageviews:
        key = pageview.session.session_uuid
        found[key] = found.get(key, 0) + 1
    return found


async def test_a_visit_through_the_site_is_one_session_and_a_direct_one_another(
    view: Browse, pipeline: Pipeline, clock: FixedClock, store: InMemoryEventStore
) -> None:
    """Prisme's "multiple page view session": p1; p2←p1; p3←p2; p4 direct."""
    first = await view("/p1")
    assert await view("/p2", "/p1") == first
    assert await view("/p3", "/p2") == first
    second = await view("/p4")
    assert second != first
    await pipeline.flush()
    assert store.sessions[first].pageviews == 3
    visitors = {p.session.visitor_id for p in store.pageviews}
    assert len(visitors) == 1  # the same visitor, two sessions


async def test_two_tabs_are_two_sessions_each_continued_by_its_own_navigation(
    view: Browse, pipeline: Pipeline, clock: FixedClock, store: InMemoryEventStore
) -> None:
    """Prisme's "sessions join": two direct entries, then the same page from each."""
    left = await view("/left")
    right = await view("/right")
    assert left != right
    assert await view("/p2", "/left") == left
    assert await view("/p2", "/right") == right
    assert await view("/p3", "/p2") == right  # the most recently active
    await pipeline.flush()
    assert (store.sessions[left].exit_path, store.sessions[right].exit_path) == ("/p2", "/p3")


async def test_a_fork_whose_page_no_tab_shows_begins_a_session_from_the_site(
    view: Browse, pipeline: Pipeline, clock: FixedClock, store: InMemoryEventStore
) -> None:
    """Prisme's "session fork": p1; p2←p1; fork0←p2; fork1←p2."""
    first = await view("/p1")
    await view("/p2", "/p1")
    assert await view("/fork0", "/p2") == first
    fork = await view("/fork1", "/p2")
    assert fork != first
    assert store.pageviews[-1].session.referrer_domain == "example.com"


async def test_a_reload_is_a_page_view_of_its_session(
    view: Browse, pipeline: Pipeline, clock: FixedClock, store: InMemoryEventStore
) -> None:
    """A direct reload of an entry page and an internal reload (the referrer kept) both
    continue the session and are counted; Prisme stores neither and clones the session."""
    first = await view("/p1")
    assert await view("/p1") == first  # reload of the entry page
    assert await view("/p2", "/p1") == first
    assert await view("/p2", "/p1") == first  # reload: no tab shows /p1
    await pipeline.flush()
    assert len(store.sessions) == 1
    assert store.sessions[first].pageviews == 4
    assert counts(store) == {first: 4}


async def test_a_direct_page_view_is_a_reload_only_within_the_reload_window(
    view: Browse, pipeline: Pipeline, clock: FixedClock
) -> None:
    first = await view("/p1")
    clock.advance(minutes=29, seconds=58)
    assert await view("/p1") == first  # 29 min 59 s after: a reload
    clock.advance(minutes=30)
    later = await view("/p1")  # 30 min 1 s after: a new visit
    assert later != first
    external = await view("/p1", "https://search.example/")
    assert external == later  # an external referrer is a reload too, within the window


async def test_an_internal_page_view_continues_a_tab_however_old_while_it_lives(
    view: Browse, pipeline: Pipeline, clock: FixedClock
) -> None:
    first = await view("/p1")
    clock.advance(minutes=59)  # past the reload window, within the inactivity limit (1 h)
    assert await view("/p2", "/p1") == first
    clock.advance(hours=1)
    assert await view("/p3", "/p2") != first  # ended


async def test_a_device_keeps_its_most_recently_active_sessions(
    view: Browse, pipeline: Pipeline, clock: FixedClock, store: InMemoryEventStore
) -> None:
    sessions = [await view(f"/tab{i}") for i in range(MAX_SESSIONS_PER_DEVICE)]
    assert await view("/next", "/tab0") == sessions[0]  # now the most recent
    newest = await view("/one-more")  # the 65th: /tab1's is forgotten
    assert await view("/b", "/tab1") not in {sessions[1], newest}  # begins one: /tab2's goes
    assert await view("/b3", "/tab3") == sessions[3]
    await pipeline.flush()
    stored = {p.session.session_uuid for p in store.pageviews}
    assert stored <= set(store.sessions)  # never a page view whose session is not stored


async def test_events_join_the_tab_that_shows_their_page_else_the_most_recent(
    view: Browse, pipeline: Pipeline, clock: FixedClock, store: InMemoryEventStore
) -> None:
    left = await view("/left")
    right = await view("/right")
    for page in ("/left", "/right", "/elsewhere"):
        context = _context(page_url=SITE + page)
        await _settled(pipeline.custom_event(CustomEventInput(context, "e", "", b"")))
        await _settled(
            pipeline.click(ClickInput(ClickKind.OUTBOUND_LINK, context, "https://x.example/"))
        )
    joined = [e.session_uuid for e in store.custom_events]
    assert joined == [left, right, right]
    assert [c.session.session_uuid for c in store.outbound_links] == [left, right, right]
    assert [e.path for e in store.custom_events] == ["/left", "/right", "/elsewhere"]
    await pipeline.flush()
    assert store.sessions[left].pageviews == store.sessions[right].pageviews == 1


async def test_an_event_of_a_device_with_no_live_session_is_refused(
    view: Browse, pipeline: Pipeline, clock: FixedClock, store: InMemoryEventStore
) -> None:
    await view("/p1")
    clock.advance(hours=2)
    event = CustomEventInput(_context(page_url=SITE + "/p1"), "e", "", b"")
    with pytest.raises(SessionNotFound):
        await _settled(pipeline.custom_event(event))
    assert store.custom_events == []


async def test_tabs_continue_after_a_restart(store: InMemoryEventStore, clock: FixedClock) -> None:
    first = _pipeline(store, clock)
    first.start()
    first_view = browsing(first, clock, store)
    left = await first_view("/left")
    right = await first_view("/right")
    await first_view("/left2", "/left")
    await first.close()
    second = _pipeline(store, clock)
    second.start()
    second_view = browsing(second, clock, store)
    assert await second_view("/left3", "/left2") == left
    assert await second_view("/right") == right  # a reload, found in the store
    assert await second_view("/right2", "/right") == right
    await second.close()
    assert store.sessions[left].pageviews == store.sessions[right].pageviews == 3


async def test_tabs_continue_across_midnight(
    view: Browse, pipeline: Pipeline, clock: FixedClock, store: InMemoryEventStore
) -> None:
    clock.at = datetime(2026, 11, 26, 23, 59, 50, tzinfo=UTC)
    left = await view("/left")
    right = await view("/right")
    clock.advance(seconds=20)
    assert await view("/left2", "/left") == left
    assert await view("/right2", "/right") == right
    await pipeline.flush()
    assert {store.sessions[left].start.device_id} == {store.sessions[right].start.device_id}


async def test_a_page_view_still_being_stored_moves_its_tab_at_once(
    store: InMemoryEventStore, clock: FixedClock
) -> None:
    """The next navigation of a tab finds it by the page just viewed, before that page view
    is stored."""
    pipeline = _pipeline(store, clock)
    pipeline.start()
    first = await browsing(pipeline, clock, store)("/p1")
    clock.advance(seconds=1)
    context = _context(page_url=SITE + "/p2", referrer=SITE + "/p1")
    pending = pipeline.pageview(PageViewInput(context))
    clock.advance(seconds=1)
    then = pipeline.pageview(PageViewInput(_context(page_url=SITE + "/p3", referrer=SITE + "/p2")))
    await _settled(pending)
    await _settled(then)
    await pipeline.close()
    assert {p.session.session_uuid for p in store.pageviews} == {first}


async def test_a_new_device_s_direct_page_view_asks_the_store_nothing_once_it_said_enough(
    view: Browse, pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    """Once the store said which devices were active within the reload window before this
    process started, a device seen by neither begins its session without a lookup."""
    await until(lambda: pipeline.knows_sessions_elsewhere)
    await view("/first")  # the day's keys are loaded by the first lookup
    asked = store.lookups
    for ip in ("84.200.69.81", "84.200.69.82"):
        await record_pageview(pipeline, _context(page_url=SITE + "/p1", ip=ip))
    assert store.lookups == asked
    internal = _context(page_url=SITE + "/p2", referrer=SITE + "/p1", ip="84.200.69.83")
    await record_pageview(pipeline, internal)  # an older tab could be live: asked
    assert store.lookups == asked + 1
    assert len(store.sessions) == 4


async def test_a_reload_after_a_restart_finds_its_tab_in_the_store(
    store: InMemoryEventStore, clock: FixedClock
) -> None:
    first = _pipeline(store, clock)
    first.start()
    tab = await browsing(first, clock, store)("/tab")
    await first.close()
    second = _pipeline(store, clock)
    second.start()
    await until(lambda: second.knows_sessions_elsewhere)
    assert await browsing(second, clock, store)("/tab") == tab
    await second.close()


async def test_a_device_forgotten_by_the_cache_is_looked_up_again(clock: FixedClock) -> None:
    store = InMemoryEventStore()
    batch: Batcher = lambda name, write: GroupCommit(name, write, 10, 0.001, 100)  # noqa: E731
    tracker = SessionTracker(store, clock, SessionSettings(), batch, asyncio.Lock(), max_cached=1)
    tracker.start()
    try:
        await until(lambda: tracker.knows_elsewhere)
        for device_id in ("D1", "D2"):
            start = SessionStart(device_id, "/a", clock.now(), _attributes())
            written = asyncio.get_running_loop().create_future()
            written.set_result(None)
            tracker.begin(start, written)
        now = clock.now()
        assert tracker.unseen(now, "D3")
        assert not tracker.unseen(now, "D2")  # cached
        assert not tracker.unseen(now, "D1")  # forgotten here: the store may have it
        # A page view from before the store said: a reload of a session it ended then.
        assert not tracker.unseen(now - timedelta(seconds=1), "D3")
    finally:
        await tracker.close()


async def test_a_backdated_session_takes_its_place_by_activity(clock: FixedClock) -> None:
    """A session a late page view began is older than the device's others: the most recent
    stays the one events join, and the backdated one is the first forgotten."""
    now, device = clock.now(), Device()
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)

    def session(at: datetime) -> LiveSession:
        start = SessionStart("D", "/a", at, replace(_attributes(), session_uuid=uuid.uuid4()))
        return LiveSession(start, "/a", at, 1, 1, done)

    live, backdated = session(now), session(now - timedelta(hours=3))
    device.add(live)
    device.add(backdated)
    assert list(device.sessions.values()) == [backdated, live]
    assert device.latest(now - timedelta(hours=24)) is live
    # Only a session begun by an event's time is the one it continues or joins.
    assert device.at("/a", now - timedelta(hours=24), now - timedelta(hours=1)) is backdated
    assert device.latest(now - timedelta(hours=24), now - timedelta(hours=4)) is None


async def test_ended_sessions_leave_the_cache_least_recently_used_first(
    clock: FixedClock,
) -> None:
    """The sweep drops what ended, from the least recently used device on, and ends at the
    first device with a live session."""
    store = InMemoryEventStore()
    batch: Batcher = lambda name, write: GroupCommit(name, write, 10, 0.001, 100)  # noqa: E731
    settings = SessionSettings(inactive_ttl=60, flush_interval=0.05)
    tracker = SessionTracker(store, clock, settings, batch, asyncio.Lock())
    written = asyncio.get_running_loop().create_future()
    written.set_result(None)

    def begin(device_id: str) -> None:
        start = SessionStart(
            device_id, "/a", clock.now(), replace(_attributes(), session_uuid=uuid.uuid4())
        )
        tracker.begin(start, written)

    def cached() -> float | None:
        return REGISTRY.get_sample_value("prisme_sessions_active")

    tracker.start()
    try:
        begin("D1")
        begin("D2")
        clock.advance(seconds=50)
        begin("D3")
        assert cached() == 3
        clock.advance(seconds=20)  # D1's and D2's sessions ended, D3's is live
        await until(lambda: cached() == 1)
        assert tracker.cached("D3", clock.now()) is not None
        begin("D1")  # used again: now the most recently used
        clock.advance(seconds=50)  # D3's session ended; D1's, used after it, is live
        await until(lambda: cached() == 1)
        assert tracker.cached("D1", clock.now()) is not None
        assert tracker.cached("D3", clock.now()) is None
    finally:
        await tracker.close()
