"""Batches, compressed bodies and client timestamps (DESIGN §13) through both doors against
the real store: one result per event, in order; the sender's clock corrected; sessions
decided by when events happened. The core's clock is the test's."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.api.httpbody_pb2 import HttpBody
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_client import error_from_rpc
from prisme_core.ports import FixedClock
from prisme_core.server import CoreServer
from prisme_core.settings import Settings
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import STATS_TOKEN, changed
from tests.support import Document, HttpClient
from tests.transports import (
    TRUSTED,
    Answer,
    Visit,
    compress,
    send_batch_grpc,
    send_batch_http,
    why,
)

SITE = "http://localhost"
MINUTE = timedelta(minutes=1)
Send = Callable[..., Awaitable[list[Answer]]]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return changed(settings, "limits", rate_limit_per_minute=8)


@pytest.fixture
def core_clock(clock: FixedClock) -> FixedClock:
    """The core keeps the test's time."""
    return clock


@pytest.fixture(params=["http", "grpc"])
def send(
    request: pytest.FixtureRequest, http: HttpClient, stub: pb_grpc.EventServiceAsyncStub
) -> Send:
    """A batch through one door: ``send(events, visit, sent_at=None)``."""
    if request.param == "http":
        return lambda events, visit, sent_at=None: send_batch_http(http, events, visit, sent_at)
    return lambda events, visit, sent_at=None: send_batch_grpc(stub, events, visit, sent_at)


def _client(n: int) -> Visit:
    """A visitor of its own (its own rate limit and sessions)."""
    return Visit(client_ip=f"84.200.{n}.{uuid.uuid4().int % 250 + 1}")


def _at(when: datetime) -> str:
    return when.isoformat()


async def test_one_bad_event_is_refused_and_the_others_are_stored(
    send: Send, mongo: AsyncDatabase[Document]
) -> None:
    visit = _client(1)
    answers = await send([
        {"kind": "pageview", "page_url": f"{SITE}/a"},
        {"kind": "pageview", "page_url": "not a url"},
        {"kind": "custom", "page_url": f"{SITE}/a", "name": "buy", "properties": {"n": 2}},
        {"kind": "outbound_link", "page_url": f"{SITE}/a", "link": "https://elsewhere.example/"},
    ], visit)  # fmt: skip
    assert [a.ok for a in answers] == [True, False, True, True]
    assert why(answers[1]) == "INVALID_PAGE_URL"
    assert answers[1].http_status in {None, 400}
    assert await mongo.pageviews.count_documents({}) == 1
    custom = await mongo.events_custom.find_one({})
    assert custom is not None
    assert (custom["name"], custom["properties"]) == ("buy", {"n": 2})
    assert await mongo.outbound_link_clicks.count_documents({}) == 1


async def test_a_late_batch_from_a_clock_two_hours_off_is_stored_at_true_times_in_one_session(
    send: Send, clock: FixedClock, core: CoreServer, mongo: AsyncDatabase[Document]
) -> None:
    now = clock.now()
    sender_now = now - timedelta(hours=2)  # the sender's clock is two hours behind
    happened = sender_now - 10 * MINUTE  # and it queued these ten minutes ago
    answers = await send([
        {"kind": "pageview", "page_url": f"{SITE}/a", "timestamp": _at(happened)},
        {"kind": "pageview", "page_url": f"{SITE}/b", "document_referrer": f"{SITE}/a",
         "timestamp": _at(happened + MINUTE)},
        {"kind": "custom", "page_url": f"{SITE}/b", "name": "read",
         "timestamp": _at(happened + 2 * MINUTE)},
    ], _client(2), sender_now)  # fmt: skip
    assert all(a.ok for a in answers), answers
    await core.flush()
    views = await mongo.pageviews.find({}).sort("timestamp").to_list()
    assert [(v["path"], v["timestamp"].replace(tzinfo=UTC)) for v in views] == [
        ("/a", now - 10 * MINUTE),
        ("/b", now - 9 * MINUTE),
    ]
    custom = await mongo.events_custom.find_one({})
    assert custom is not None
    assert custom["timestamp"].replace(tzinfo=UTC) == now - 8 * MINUTE
    (session,) = await mongo.sessions.find({}).to_list()
    assert (
        {v["session_uuid"] for v in views} == {custom["session_uuid"]} == {session["session_uuid"]}
    )
    assert session["entry_timestamp"].replace(tzinfo=UTC) == now - 10 * MINUTE
    assert session["exit_timestamp"].replace(tzinfo=UTC) == now - 9 * MINUTE
    assert (session["entry_path"], session["exit_path"], session["pageviews"]) == ("/a", "/b", 2)


async def test_an_event_older_than_the_max_age_is_too_old_and_not_stored(
    send: Send, clock: FixedClock, mongo: AsyncDatabase[Document]
) -> None:
    old = clock.now() - timedelta(hours=72, seconds=1)
    answers = await send([
        {"kind": "pageview", "page_url": f"{SITE}/a", "timestamp": _at(old)},
        {"kind": "pageview", "page_url": f"{SITE}/a",
         "timestamp": _at(old + timedelta(seconds=2))},
    ], _client(3))  # fmt: skip
    assert [why(a) for a in answers] == ["TOO_OLD", None]
    assert answers[0].http_status in {None, 400}
    assert await mongo.pageviews.count_documents({}) == 1


async def test_an_event_is_never_stored_in_the_future(
    send: Send, clock: FixedClock, mongo: AsyncDatabase[Document]
) -> None:
    ahead = clock.now() + timedelta(days=2)
    answers = await send([{"kind": "pageview", "page_url": f"{SITE}/a", "timestamp": _at(ahead)}],
                         _client(4))  # fmt: skip
    assert answers[0].ok
    view = await mongo.pageviews.find_one({})
    assert view is not None
    assert view["timestamp"].replace(tzinfo=UTC) == clock.now()


async def test_a_backdated_page_view_begins_or_continues_a_session_by_its_own_time(
    send: Send, clock: FixedClock, core: CoreServer, mongo: AsyncDatabase[Document]
) -> None:
    visit, now = _client(5), clock.now()
    assert (await send([{"kind": "pageview", "page_url": f"{SITE}/a"}], visit))[0].ok
    earlier = now - timedelta(hours=3)  # before the live session began
    answers = await send([
        {"kind": "pageview", "page_url": f"{SITE}/a", "timestamp": _at(earlier)},
        {"kind": "pageview", "page_url": f"{SITE}/b", "document_referrer": f"{SITE}/a",
         "timestamp": _at(earlier + MINUTE)},
    ], visit)  # fmt: skip
    assert all(a.ok for a in answers)
    await core.flush()
    sessions = await mongo.sessions.find({}).sort("entry_timestamp").to_list()
    assert [(s["entry_timestamp"].replace(tzinfo=UTC), s["exit_path"], s["pageviews"])
            for s in sessions] == [(earlier, "/b", 2), (now, "/a", 1)]  # fmt: skip
    assert sessions[0]["exit_timestamp"].replace(tzinfo=UTC) == earlier + MINUTE
    # The live session still shows /a: a page view from it continues it, as before.
    answers = await send(
        [{"kind": "pageview", "page_url": f"{SITE}/c", "document_referrer": f"{SITE}/a"}], visit
    )
    assert answers[0].ok
    view = await mongo.pageviews.find_one({"path": "/c"})
    assert view is not None
    assert view["session_uuid"] == sessions[1]["session_uuid"]


async def test_every_event_of_a_batch_counts_against_the_rate_limit(
    send: Send, mongo: AsyncDatabase[Document]
) -> None:
    events: list[dict[str, Any]] = [
        {"kind": "pageview", "page_url": f"{SITE}/p{i}"} for i in range(10)
    ]
    events[3] = {"kind": "pageview", "status": 42}  # a refused one counts too
    answers = await send(events, _client(6))
    assert why(answers[3]) == "INVALID_STATUS"
    assert [a.ok for a in answers] == [True] * 3 + [False] + [True] * 4 + [False] * 2
    assert {why(a) for a in answers[8:]} == {"RATE_LIMITED"}
    assert await mongo.pageviews.count_documents({}) == 7


async def test_the_http_answer_has_one_result_per_event_with_its_reason(
    http: HttpClient,
) -> None:
    headers = _client(7).headers() | {"Content-Type": "application/json"}
    events = [{"kind": "pageview", "page_url": f"{SITE}/a"}, {"kind": "pageview", "status": 42},
              {"kind": "bogus"}, *({"kind": "pageview"} for _ in range(6))]  # fmt: skip
    response = await http.post("/api/v1/events/batch", json={"events": events}, headers=headers)
    assert response.status == 200
    results = (await response.json())["results"]
    assert results[:2] == [
        {"status": 200},
        {"status": 400, "error": "invalid status",
         "message": "status must be an HTTP status from 100 to 599"},
    ]  # fmt: skip
    assert results[2]["error"] == "invalid event"  # counted like the others: the 9th is over
    assert [r["status"] for r in results[3:]] == [200] * 5 + [429]
    assert results[-1]["status"] == 429
    assert results[-1]["error"] == "rate limited"
    assert 1 <= results[-1]["retry_after"] <= 60


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b"{", {}, 400, "invalid json"),
        (b'{"events": {}}', {}, 400, "invalid batch"),
        (json.dumps({"events": [{}] * 1001}).encode(), {}, 400, "too many events"),
        (b'{"events": []}', {"Content-Type": "text/html"}, 400, "invalid content type"),
        (b'{"events": []}', {"Content-Encoding": "compress"}, 415,
         "unsupported content encoding"),
        (b'{"events": []}', {"Content-Encoding": "gzip"}, 400, "invalid content encoding"),
        (compress(b'{"events": [], "x": "' + b"y" * 70_000 + b'"}', "gzip"),
         {"Content-Encoding": "gzip"}, 413, "body too large"),
    ],
)  # fmt: skip
async def test_what_concerns_the_whole_request_refuses_it(
    http: HttpClient, body: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    sent = _client(8).headers() | {"Content-Type": "application/json"} | headers
    response = await http.post("/api/v1/events/batch", data=body, headers=sent)
    assert (response.status, (await response.json())["error"]) == (status, error)


async def test_a_gzip_bomb_is_413_at_once_with_memory_flat(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    megabyte = bytes(1 << 20)
    bomb = compress(compress(megabyte, "gzip") * 1024, "gzip")  # 1 GB of zeros, gzip twice
    assert len(bomb) < 4096
    headers = _client(9).headers() | {"Content-Type": "application/json",
                                     "Content-Encoding": "gzip, gzip"}  # fmt: skip
    tracemalloc.start()
    try:
        response = await http.post("/api/v1/events/batch", data=bomb, headers=headers)
        _, peak = tracemalloc.get_traced_memory()  # the façade and the core run here
    finally:
        tracemalloc.stop()
    assert response.status == 413
    assert peak < 8 << 20
    assert await mongo.pageviews.count_documents({}) == 0


async def test_grpc_bodies_are_bounded_the_same_way(stub: pb_grpc.EventServiceAsyncStub) -> None:
    """gRPC's own compression is held to the receive limit (4 MiB), and a JSON body to the
    body limit."""
    huge = pb.SendEventsRequest(body=HttpBody(content_type="application/json", data=bytes(5 << 20)))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SendEvents(huge, metadata=TRUSTED, compression=grpc.Compression.Gzip)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    over = pb.SendEventsRequest(body=HttpBody(content_type="application/json", data=bytes(70_000)))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SendEvents(over, metadata=TRUSTED)
    assert error_from_rpc(refused.value).reason == "BODY_TOO_LARGE"
    both = pb.SendEventsRequest(events=[pb.Event()], body=HttpBody(data=b"{}"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SendEvents(both, metadata=TRUSTED)
    assert error_from_rpc(refused.value).reason == "INVALID_BATCH"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "br, gzip"])
async def test_every_post_route_takes_a_compressed_body(
    http: HttpClient, encoding: str, mongo: AsyncDatabase[Document]
) -> None:
    visit = _client(10)
    headers = visit.headers() | {"Content-Encoding": encoding}

    async def post(path: str, body: bytes, content_type: str) -> int:
        sent = headers | {"Content-Type": content_type}
        response = await http.post(path, data=compress(body, encoding), headers=sent)
        return response.status

    assert await post("/api/v1/events/pageviews", b"ignored", "text/plain") == 200
    assert await post("/api/v1/events/custom/buy", b'{"amount": 12}', "application/json") == 200
    link = b"https://elsewhere.example/docs"
    assert await post("/api/v1/events/outbound-links", link, "text/plain") == 200
    assert (
        await post("/api/v1/events/file-downloads", f"{SITE}/f.pdf".encode(), "text/plain") == 200
    )
    batch = json.dumps({"events": [{"kind": "custom", "name": "again"}]}).encode()
    assert await post("/api/v1/events/batch", batch, "application/json") == 200
    custom = await mongo.events_custom.find({}, {"name": 1, "properties": 1, "_id": 0}).to_list()
    assert sorted(custom, key=lambda c: c["name"]) == [
        {"name": "again", "properties": {}}, {"name": "buy", "properties": {"amount": 12}}
    ]  # fmt: skip
    assert await mongo.outbound_link_clicks.count_documents({}) == 1
    assert await mongo.file_downloads.count_documents({}) == 1


async def test_an_unknown_encoding_is_415_on_routes_that_read_no_body(http: HttpClient) -> None:
    headers = _client(11).headers() | {"Content-Encoding": "lzma"}
    response = await http.post("/api/v1/events/pageviews", headers=headers)
    assert response.status == 415


async def test_a_single_grpc_event_may_carry_its_time(
    stub: pb_grpc.EventServiceAsyncStub, clock: FixedClock, mongo: AsyncDatabase[Document]
) -> None:
    request = _client(12).request()
    request.timestamp.FromDatetime(datetime(2000, 1, 1, tzinfo=UTC))  # the sender's clock:
    request.sent_at.FromDatetime(datetime(2000, 1, 1, 0, 5, tzinfo=UTC))  # it held it 5 min
    await stub.SendPageView(request, metadata=TRUSTED)
    view = await mongo.pageviews.find_one({})
    assert view is not None
    assert view["timestamp"].replace(tzinfo=UTC) == clock.now() - 5 * MINUTE


async def test_a_backdated_page_view_is_counted_in_an_hour_the_stats_counted_already(
    send: Send, clock: FixedClock, http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    hour = clock.now().replace(minute=0, second=0) - timedelta(hours=3)
    view = {"kind": "pageview", "page_url": f"{SITE}/old", "timestamp": _at(hour + MINUTE)}
    assert (await send([view], _client(13)))[0].ok
    params = {"from": _at(hour - timedelta(hours=1)), "to": _at(hour + 2 * timedelta(hours=1)),
              "domain": "localhost"}  # fmt: skip
    auth = {"Authorization": f"Bearer {STATS_TOKEN}"}

    async def top_pages() -> dict[str, int]:
        response = await http.get("/api/v1/stats/top-pages", params=params, headers=auth)
        answer = await response.json()
        return dict(zip(answer["keys"], answer["values"], strict=True))

    assert await top_pages() == {"/old": 1}
    for _ in range(200):  # the first query set the hours counting, in the background
        if await mongo.pageview_hours_done.count_documents({}):
            break
        await asyncio.sleep(0.05)
    assert await top_pages() == {"/old": 1}  # from the counts
    assert (await send([view | {"timestamp": _at(hour + 2 * MINUTE)}], _client(14)))[0].ok
    assert await top_pages() == {"/old": 2}
