"""Client timestamps (DESIGN §13): the time an event is stored by, the JSON batch's reading,
and the counted hours a backdated page view makes stale. Pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.api.httpbody_pb2 import HttpBody
from prisme.v1 import event_service_pb2 as pb
from prisme_core.adapters.hours import HOUR_MS, marker, to_ms, uncounted
from prisme_core.errors import InvalidInput, Reason
from prisme_core.json_batch import MAX_BATCH, InvalidEvent, read_batch
from prisme_core.model import ON_ARRIVAL, Timing
from prisme_core.validate import event_time

ARRIVED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(hours=72)
MINUTE = timedelta(minutes=1)


def test_without_a_timestamp_an_event_happened_when_it_arrived() -> None:
    assert event_time(ARRIVED, ON_ARRIVAL, MAX_AGE) == ARRIVED
    assert event_time(ARRIVED, Timing(sent_at=ARRIVED - MINUTE), MAX_AGE) == ARRIVED


def test_the_clients_clock_is_corrected_by_when_it_sent() -> None:
    # The client's clock is two hours behind; it held the event for ten minutes.
    sent = ARRIVED - timedelta(hours=2)
    timing = Timing(timestamp=sent - 10 * MINUTE, sent_at=sent)
    assert event_time(ARRIVED, timing, MAX_AGE) == ARRIVED - 10 * MINUTE
    ahead = ARRIVED + timedelta(hours=5)  # and ahead, by five hours
    assert event_time(ARRIVED, Timing(ahead - MINUTE, ahead), MAX_AGE) == ARRIVED - MINUTE


def test_without_sent_at_the_timestamp_is_taken_as_it_is() -> None:
    assert event_time(ARRIVED, Timing(timestamp=ARRIVED - MINUTE), MAX_AGE) == ARRIVED - MINUTE


@pytest.mark.parametrize(
    "timing",
    [
        Timing(timestamp=ARRIVED + timedelta(days=1)),  # a clock ahead, no sent_at
        Timing(timestamp=ARRIVED + MINUTE, sent_at=ARRIVED),  # after it was sent
    ],
)
def test_an_event_is_never_stored_in_the_future(timing: Timing) -> None:
    assert event_time(ARRIVED, timing, MAX_AGE) == ARRIVED


@pytest.mark.parametrize(
    "timing",
    [
        Timing(timestamp=ARRIVED - MAX_AGE - timedelta(milliseconds=1)),
        Timing(timestamp=ARRIVED - MAX_AGE - MINUTE, sent_at=ARRIVED - MINUTE / 2),
        Timing(timestamp=datetime(1, 1, 1, tzinfo=UTC), sent_at=datetime(9999, 1, 1, tzinfo=UTC)),
    ],
)
def test_an_event_older_than_the_max_age_is_too_old(timing: Timing) -> None:
    with pytest.raises(InvalidInput) as refused:
        event_time(ARRIVED, timing, MAX_AGE)
    assert refused.value.reason is Reason.TOO_OLD
    assert event_time(ARRIVED, Timing(timestamp=ARRIVED - MAX_AGE), MAX_AGE) == ARRIVED - MAX_AGE


CONTEXT = pb.ClientContext(
    origin="https://a.example", page_url="https://a.example/", user_agent="UA", client_ip="1.2.3.4"
)


def _read(text: str) -> list[pb.Event | InvalidEvent]:
    body = HttpBody(content_type="application/json; charset=utf-8", data=text.encode())
    return read_batch(body, CONTEXT, 1 << 20).events


def test_a_json_batch_reads_into_the_rpcs_messages() -> None:
    (view, custom, link, download) = _read("""{"sent_at": "2026-12-01T10:00:00+01:00", "events": [
        {"kind": "pageview", "page_url": "https://a.example/p", "status": 404,
         "document_referrer": "https://b.example/", "visitor_id": "u1",
         "timestamp": "2026-12-01T08:59:00Z", "event_id": "e1"},
        {"kind": "custom", "name": "buy", "properties": {"n": 12, "x": 1.5}},
        {"kind": "outbound_link", "link": "https://b.example/"},
        {"kind": "file_download", "url": "https://a.example/f.pdf", "page_url": "https://a.example/d"}
    ]}""")  # fmt: skip
    assert isinstance(view, pb.Event)
    assert view.page_view.status == "404"
    assert view.page_view.context.page_url == "https://a.example/p"
    assert view.page_view.context.document_referrer == "https://b.example/"
    assert view.page_view.context.user_agent == "UA"  # the request's context
    assert view.page_view.timestamp.ToDatetime(UTC) == datetime(2026, 12, 1, 8, 59, tzinfo=UTC)
    assert (view.page_view.visitor_id, view.page_view.event_id) == ("u1", "e1")
    assert isinstance(custom, pb.Event)
    assert custom.custom_event.name == "buy"
    assert custom.custom_event.context.page_url == "https://a.example/"  # the request's
    assert custom.custom_event.body.data == b'{"n": 12, "x": 1.5}'
    assert not custom.custom_event.HasField("timestamp")
    assert isinstance(link, pb.Event)
    assert link.outbound_link.link == "https://b.example/"
    assert isinstance(download, pb.Event)
    assert download.file_download.url.endswith("f.pdf")
    assert download.file_download.context.page_url == "https://a.example/d"


@pytest.mark.parametrize(
    ("event", "reason", "field"),
    [
        ("[]", Reason.INVALID_EVENT, "events[0]"),
        ('{"page_url": "x"}', Reason.INVALID_EVENT, "events[0].kind"),
        ('{"kind": "bogus"}', Reason.INVALID_EVENT, "events[0].kind"),
        ('{"kind": "pageview", "name": "x"}', Reason.INVALID_EVENT, "events[0].name"),
        ('{"kind": "pageview", "page_url": 3}', Reason.INVALID_EVENT, "events[0].page_url"),
        ('{"kind": "pageview", "status": true}', Reason.INVALID_EVENT, "events[0].status"),
        ('{"kind": "custom", "name": "a", "properties": [1]}', Reason.INVALID_JSON,
         "events[0].properties"),
        ('{"kind": "custom", "timestamp": "yesterday"}', Reason.INVALID_TIMESTAMP,
         "events[0].timestamp"),
        ('{"kind": "custom", "timestamp": "2026-12-01T10:00:00"}', Reason.INVALID_TIMESTAMP,
         "events[0].timestamp"),  # no offset
    ],
)  # fmt: skip
def test_a_malformed_event_is_refused_on_its_own(event: str, reason: Reason, field: str) -> None:
    bad, good = _read(f'{{"events": [{event}, {{"kind": "pageview"}}]}}')
    assert isinstance(bad, InvalidEvent)
    assert isinstance(good, pb.Event)
    assert (bad.error.reason, bad.error.field) == (reason, field)
    assert bad.client_ip == "1.2.3.4"  # it counts against the request's client


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", Reason.INVALID_JSON),
        ("{", Reason.INVALID_JSON),
        ("[]", Reason.INVALID_JSON),
        ('{"events": {}}', Reason.INVALID_BATCH),
        ('{"events": [], "extra": 1}', Reason.INVALID_BATCH),
        ('{"events": [], "sent_at": "soon"}', Reason.INVALID_TIMESTAMP),
        ('{"events": [' + ",".join(["{}"] * (MAX_BATCH + 1)) + "]}", Reason.TOO_MANY_EVENTS),
        ('{"events": [{"kind": "custom", "properties": {"a": 1e999999}}]}', Reason.INVALID_JSON),
    ],
)
def test_what_concerns_the_whole_batch_refuses_it(body: str, reason: Reason) -> None:
    with pytest.raises(InvalidInput) as refused:
        _read(body)
    assert refused.value.reason is reason


def test_a_batch_needs_its_content_type_and_its_size() -> None:
    beacon = HttpBody(content_type="text/plain;charset=UTF-8", data=b'{"events": [{}]}')
    assert len(read_batch(beacon, CONTEXT, 100).events) == 1  # what sendBeacon sends
    with pytest.raises(InvalidInput) as refused:
        read_batch(HttpBody(content_type="text/html", data=b'{"events": []}'), CONTEXT, 100)
    assert refused.value.reason is Reason.INVALID_CONTENT_TYPE
    with pytest.raises(InvalidInput) as refused:
        read_batch(HttpBody(content_type="application/json", data=b" " * 101), CONTEXT, 100)
    assert refused.value.reason is Reason.BODY_TOO_LARGE


def test_a_backdated_page_view_uncounts_its_hour_once_sealed() -> None:
    now = datetime(2026, 12, 1, 10, 1, tzinfo=UTC)
    hour_9, hour_8 = to_ms(datetime(2026, 12, 1, 9, tzinfo=UTC)), to_ms(now) // HOUR_MS - 2
    assert uncounted([("a", datetime(2026, 12, 1, 9, 59, tzinfo=UTC))], now) == []  # not sealed
    later = now + MINUTE  # hour 9 ended two minutes ago: sealed
    assert uncounted([("a", datetime(2026, 12, 1, 9, 59, tzinfo=UTC))], later) == [
        marker("a", hour_9)
    ]
    views = [("a", datetime(2026, 12, 1, 8, m, tzinfo=UTC)) for m in (1, 59)]
    views += [("b", datetime(2026, 12, 1, 10, tzinfo=UTC))]  # this hour: never counted yet
    assert uncounted(views, now) == [marker("a", hour_8 * HOUR_MS)]
