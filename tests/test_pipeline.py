"""Pipeline rules as pure unit tests, on the in-memory store behind the port."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prisme_core.adapters.maxmind import StaticGeoLocator
from prisme_core.adapters.memory import InMemoryEventStore
from prisme_core.adapters.useragents import UserAgentsParser
from prisme_core.enrich import Enrichers, uuid7
from prisme_core.errors import (
    CoreError,
    Dropped,
    InvalidInput,
    OriginNotRegistered,
    Reason,
    SessionNotFound,
    StoreUnavailable,
)
from prisme_core.model import ClientContext, CustomEventInput, PageViewInput
from prisme_core.outcomes import Outcome
from prisme_core.pipeline import Pipeline
from prisme_core.ports import FixedClock
from prisme_core.settings import LimitSettings, SessionSettings, StoreSettings
from prisme_core.validate import origin_host

from tests.support import FIREFOX, awaiting_session, until

START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
AGENTS = UserAgentsParser()


GEO = StaticGeoLocator({"84.200.69.80": "DE"})


def _context(
    page_url: str = "https://example.com/a",
    referrer: str = "",
    origin: str = "https://example.com",
    user_agent: str = FIREFOX,
    ip: str = "84.200.69.80",
) -> ClientContext:
    return ClientContext(
        origin=origin,
        page_url=page_url,
        document_referrer=referrer,
        user_agent=user_agent,
        client_ip=ip,
    )


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


def _pipeline(store: InMemoryEventStore, clock: FixedClock, **overrides: float) -> Pipeline:
    sessions = SessionSettings(
        inactive_ttl=3600,
        flush_interval=overrides.get("session_flush_interval", 3600),
        events_timeout=overrides.get("api_events_timeout", 1.0),
    )
    limits = LimitSettings(origins=frozenset({"example.com"}))
    stored = StoreSettings(batch_max_timeout=0.001)
    return Pipeline(limits, sessions, stored, store, clock, Enrichers(GEO, AGENTS))


async def record_pageview(pipeline: Pipeline, context: ClientContext) -> None:
    """The page view's outcome: returns once it is stored, raises its refusal."""
    await _settled(pipeline.pageview(PageViewInput(context)))


async def record_custom_event(pipeline: Pipeline, event: CustomEventInput) -> None:
    await _settled(pipeline.custom_event(event))


async def _settled(outcome: Outcome) -> None:
    if isinstance(outcome, CoreError):
        raise outcome
    await outcome.future


@pytest.fixture
async def pipeline(store: InMemoryEventStore, clock: FixedClock) -> AsyncIterator[Pipeline]:
    pipeline = _pipeline(store, clock)
    pipeline.start()
    yield pipeline
    await pipeline.close()


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        pytest.param("https://example.com", "example.com", id="https"),
        pytest.param("http://example.com:8080", "example.com", id="port"),
        pytest.param("example.com", "example.com", id="bare"),
        pytest.param("http://[::1]:8080", "[::1]", id="ipv6-port"),
        pytest.param("http://[::1]", "[::1]", id="ipv6"),
        pytest.param("", "", id="missing"),
        pytest.param("null", "null", id="null"),
    ],
)
def test_origin_host_drops_scheme_and_port(origin: str, host: str) -> None:
    assert origin_host(origin) == host


def test_uuid7_embeds_the_time_to_the_millisecond() -> None:
    value = uuid7(START)
    assert value.version == 7
    assert int.from_bytes(value.bytes[:6], "big") == int(START.timestamp() * 1000)


async def test_direct_visit_starts_an_enriched_session(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    await record_pageview(
        pipeline, _context(page_url="https://Example.com/a/?utm_medium=mail&ref=news")
    )
    [pageview] = store.pageviews
    session = pageview.session
    assert (pageview.timestamp, pageview.path) == (START, "/a")
    assert session.domain == "example.com"
    assert re.fullmatch(r"prisme_[0-9A-F]{16}", session.visitor_id)
    assert (session.browser_family, session.operating_system) == ("Firefox", "Linux")
    assert (session.referrer_domain, session.country_code) == ("direct", "DE")
    assert (session.utm_source, session.utm_medium) == ("news", "mail")
    assert session.session_uuid.version == 7
    [stored] = store.sessions.values()
    assert (stored.start.entry_path, stored.pageviews) == ("/a", 1)


async def test_internal_navigation_continues_the_session(
    pipeline: Pipeline, store: InMemoryEventStore, clock: FixedClock
) -> None:
    await record_pageview(pipeline, _context(page_url="https://example.com/a?utm_source=x"))
    clock.advance(seconds=30)
    await record_pageview(
        pipeline,
        _context(page_url="https://example.com/b?utm_source=y", referrer="https://example.com/a"),
    )
    first, second = store.pageviews
    assert second.session == first.session  # attributes, UTMs included, are the session's
    assert second.timestamp == START + timedelta(seconds=30)
    await pipeline.close()
    [stored] = store.sessions.values()
    assert (stored.exit_path, stored.exit_timestamp, stored.pageviews) == (
        "/b",
        START + timedelta(seconds=30),
        2,
    )


async def test_session_progress_is_written_behind_within_the_flush_interval(
    store: InMemoryEventStore, clock: FixedClock
) -> None:
    pipeline = _pipeline(store, clock, session_flush_interval=0.5)
    pipeline.start()
    try:
        await record_pageview(pipeline, _context())
        await record_pageview(
            pipeline, _context(page_url="https://example.com/b", referrer="https://example.com/a")
        )
        changed = time.monotonic()
        [stored] = store.sessions.values()
        assert stored.pageviews == 1  # written behind, not at once
        while store.sessions[stored.start.attributes.session_uuid].pageviews != 2:
            assert time.monotonic() - changed < 0.75, "progress later than the flush interval"
            await asyncio.sleep(0.01)
        assert time.monotonic() - changed > 0.3  # coalesced over the interval, not per event
    finally:
        await pipeline.close()


async def test_a_device_s_new_session_keeps_the_old_one_s_progress(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    await record_pageview(pipeline, _context())
    await record_pageview(
        pipeline, _context(page_url="https://example.com/b", referrer="https://example.com/a")
    )
    await record_pageview(pipeline, _context(page_url="https://example.com/c"))  # a direct visit
    await record_pageview(
        pipeline, _context(page_url="https://example.com/d", referrer="https://example.com/c")
    )
    await pipeline.close()
    progress = sorted(
        (s.start.entry_path, s.exit_path, s.pageviews) for s in store.sessions.values()
    )
    assert progress == [("/a", "/b", 2), ("/c", "/d", 2)]


async def test_external_referrer_starts_a_new_session(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    await record_pageview(pipeline, _context())
    external = _context(page_url="https://example.com/b", referrer="https://www.search.example/")
    await record_pageview(pipeline, external)
    first, second = store.pageviews
    assert second.session.session_uuid != first.session.session_uuid
    assert second.session.referrer_domain == "www.search.example"


async def test_subdomain_is_external(pipeline: Pipeline, store: InMemoryEventStore) -> None:
    await record_pageview(pipeline, _context())
    await record_pageview(
        pipeline, _context(page_url="https://example.com/b", referrer="https://www.example.com/a")
    )
    assert len(store.sessions) == 2


async def test_internal_navigation_without_session_starts_one(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    await record_pageview(pipeline, _context(referrer="https://example.com/earlier"))
    [pageview] = store.pageviews
    assert pageview.session.referrer_domain == "example.com"


async def test_other_devices_have_their_own_sessions(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    await record_pageview(pipeline, _context())
    await record_pageview(pipeline, _context(ip="8.8.8.8", referrer="https://example.com/a"))
    first, second = store.pageviews
    assert first.session.session_uuid != second.session.session_uuid
    assert first.session.visitor_id != second.session.visitor_id


async def test_inactive_session_expires(
    pipeline: Pipeline, store: InMemoryEventStore, clock: FixedClock
) -> None:
    await record_pageview(pipeline, _context())
    clock.advance(seconds=3600)
    await record_pageview(pipeline, _context(referrer="https://example.com/a"))
    assert len({p.session.session_uuid for p in store.pageviews}) == 2


async def test_session_continues_across_midnight_with_its_visitor_id(
    pipeline: Pipeline, store: InMemoryEventStore, clock: FixedClock
) -> None:
    clock.at = datetime(2026, 11, 26, 23, 59, 50, tzinfo=UTC)
    await record_pageview(pipeline, _context())
    clock.advance(seconds=20)
    await record_pageview(pipeline, _context(referrer="https://example.com/a"))
    await record_pageview(pipeline, _context(page_url="https://example.com/b"))  # a new session
    before, continued, fresh = store.pageviews
    assert continued.session == before.session
    assert fresh.session.visitor_id != before.session.visitor_id


async def test_session_survives_a_restart(store: InMemoryEventStore, clock: FixedClock) -> None:
    first = _pipeline(store, clock)
    first.start()
    await record_pageview(first, _context())
    clock.advance(seconds=5)
    await record_pageview(
        first, _context(page_url="https://example.com/b", referrer="https://example.com/a")
    )
    await first.close()
    clock.advance(seconds=5)
    second = _pipeline(store, clock)
    second.start()
    await record_pageview(
        second, _context(page_url="https://example.com/c", referrer="https://example.com/b")
    )
    await second.close()
    assert len({p.session.session_uuid for p in store.pageviews}) == 1
    [stored] = store.sessions.values()
    assert (stored.exit_path, stored.pageviews) == ("/c", 3)


async def test_session_count_is_rebuilt_after_a_crash(
    store: InMemoryEventStore, clock: FixedClock
) -> None:
    crashed = _pipeline(store, clock)
    crashed.start()
    await record_pageview(crashed, _context())
    clock.advance(seconds=5)
    await record_pageview(
        crashed, _context(page_url="https://example.com/b", referrer="https://example.com/a")
    )
    # No close(): the write-behind progress of the crashed process is lost.
    second = _pipeline(store, clock)
    second.start()
    await record_pageview(
        second, _context(page_url="https://example.com/c", referrer="https://example.com/b")
    )
    await second.close()
    [stored] = store.sessions.values()
    assert (stored.exit_path, stored.pageviews) == ("/c", 3)
    await crashed.close()


async def test_bots_are_dropped(pipeline: Pipeline, store: InMemoryEventStore) -> None:
    with pytest.raises(Dropped) as excinfo:
        await record_pageview(pipeline, _context(user_agent="curl/8.5.0"))
    assert excinfo.value.reason == Reason.BOT
    assert (store.pageviews, store.sessions) == ([], {})


async def test_unregistered_origin_is_refused(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    with pytest.raises(OriginNotRegistered):
        await record_pageview(pipeline, _context(origin="https://other.org"))
    assert store.pageviews == []


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        pytest.param("page_url", "", Reason.INVALID_PAGE_URL, id="missing-url"),
        pytest.param("page_url", "/relative", Reason.INVALID_PAGE_URL, id="relative-url"),
        pytest.param("referrer", "not a url", Reason.INVALID_DOCUMENT_REFERRER, id="referrer"),
    ],
)
async def test_invalid_urls_are_refused(
    pipeline: Pipeline, store: InMemoryEventStore, field: str, value: str, reason: Reason
) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        await record_pageview(pipeline, _context(**{field: value}))
    assert excinfo.value.reason == reason
    assert store.pageviews == []


async def test_store_failure_reaches_the_caller_and_forgets_the_session(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    store.available = False
    with pytest.raises(StoreUnavailable):
        await record_pageview(pipeline, _context())
    store.available = True
    await record_pageview(pipeline, _context(referrer="https://example.com/a"))
    [pageview] = store.pageviews
    assert pageview.session.referrer_domain == "example.com"  # a new session, not a ghost


def _event(body: bytes = b"{}", **context: str) -> CustomEventInput:
    return CustomEventInput(_context(**context), "click", "application/json", body)


async def test_custom_event_joins_the_live_session(
    pipeline: Pipeline, store: InMemoryEventStore, clock: FixedClock
) -> None:
    await record_pageview(pipeline, _context())
    clock.advance(seconds=3)
    await record_custom_event(pipeline, _event(b'{"n": 1}', page_url="https://example.com/x"))
    [pageview], [event] = store.pageviews, store.custom_events
    assert (event.session_uuid, event.visitor_id) == (
        pageview.session.session_uuid,
        pageview.session.visitor_id,
    )
    assert (event.domain, event.path, event.timestamp) == ("example.com", "/x", clock.at)
    assert event.properties == {"n": 1}


async def test_custom_event_waits_for_a_session_in_flight(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    before = awaiting_session()
    waiting = asyncio.create_task(record_custom_event(pipeline, _event()))
    await until(lambda: awaiting_session() > before, what="the event waits for its session")
    await record_pageview(pipeline, _context())
    await asyncio.wait_for(waiting, 1.0)
    assert store.custom_events[0].session_uuid == store.pageviews[0].session.session_uuid


async def test_custom_event_without_session_is_refused_after_the_timeout(
    store: InMemoryEventStore, clock: FixedClock
) -> None:
    pipeline = _pipeline(store, clock, api_events_timeout=0.2)
    pipeline.start()
    started = time.monotonic()
    with pytest.raises(SessionNotFound):
        await record_custom_event(pipeline, _event())
    assert 0.2 <= time.monotonic() - started < 1.0
    await pipeline.close()
    assert store.custom_events == []


async def test_custom_event_does_not_touch_its_session(
    pipeline: Pipeline, store: InMemoryEventStore, clock: FixedClock
) -> None:
    await record_pageview(pipeline, _context())
    clock.advance(seconds=10)
    await record_custom_event(pipeline, _event(page_url="https://example.com/elsewhere"))
    await pipeline.close()
    [stored] = store.sessions.values()
    assert (stored.exit_path, stored.exit_timestamp, stored.pageviews) == ("/a", START, 1)
