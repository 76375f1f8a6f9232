"""Pipeline rules as pure unit tests, on the in-memory store behind the port."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prisme_core.adapters.memory import InMemoryEventStore
from prisme_core.errors import InvalidInput, OriginNotRegistered, Reason, StoreUnavailable
from prisme_core.model import ClientContext, CustomEventInput
from prisme_core.pipeline import Pipeline, PipelineConfig
from prisme_core.validate import origin_host

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW


def _context(
    origin: str = "https://example.com", page_url: str = "https://example.com/a"
) -> ClientContext:
    return ClientContext(
        origin=origin, page_url=page_url, document_referrer="", user_agent="UA", client_ip=None
    )


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def pipeline(store: InMemoryEventStore) -> Pipeline:
    return Pipeline(PipelineConfig(origins=frozenset({"example.com"})), store, FixedClock())


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


async def test_pageview_is_stored_with_host_and_path(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    await pipeline.record_pageview(_context(page_url="https://Example.com:8443/a/b?x=1"))
    [pageview] = store.pageviews
    assert (pageview.timestamp, pageview.domain, pageview.path) == (
        NOW,
        "example.com:8443",
        "/a/b",
    )


async def test_unregistered_origin_is_refused(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    with pytest.raises(OriginNotRegistered):
        await pipeline.record_pageview(_context(origin="https://other.org"))
    assert store.pageviews == []


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("", id="missing"),
        pytest.param("/relative", id="relative"),
        pytest.param("example.com/a", id="no-scheme"),
        pytest.param("http://", id="no-host"),
        pytest.param("http://host:port/", id="bad-port"),
    ],
)
async def test_invalid_page_url_is_refused(
    pipeline: Pipeline, store: InMemoryEventStore, url: str
) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        await pipeline.record_pageview(_context(page_url=url))
    assert excinfo.value.reason == Reason.INVALID_PAGE_URL
    assert store.pageviews == []


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        pytest.param("text/plain", b"{}", Reason.INVALID_CONTENT_TYPE, id="content-type"),
        pytest.param("application/json", b"{", Reason.INVALID_JSON, id="malformed"),
        pytest.param("application/json", b"[1]", Reason.INVALID_JSON, id="array"),
        pytest.param("application/json", b"\xff", Reason.INVALID_JSON, id="not-utf8"),
    ],
)
async def test_invalid_custom_body_is_refused(
    pipeline: Pipeline, store: InMemoryEventStore, content_type: str, body: bytes, reason: Reason
) -> None:
    event = CustomEventInput(_context(), name="click", content_type=content_type, body=body)
    with pytest.raises(InvalidInput) as excinfo:
        await pipeline.record_custom_event(event)
    assert excinfo.value.reason == reason
    assert store.custom_events == []


async def test_empty_custom_body_is_an_empty_object(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    await pipeline.record_custom_event(CustomEventInput(_context(), "click", "", b""))
    assert store.custom_events[0].properties == {}


async def test_store_failure_reaches_the_caller(
    pipeline: Pipeline, store: InMemoryEventStore
) -> None:
    store.available = False
    with pytest.raises(StoreUnavailable):
        await pipeline.record_pageview(_context())
