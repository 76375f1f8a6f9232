"""Engagement reports (DESIGN §14) through both doors against the real store: one small
document each, joined to the page view's session and never changing it; every rule refused
with its reason and nothing stored."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.api.httpbody_pb2 import HttpBody
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_client import error_from_rpc
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import BASE_SETTINGS
from tests.support import Document, HttpClient
from tests.transports import TRUSTED, Answer, Visit, send_batch_http, send_http, why

SITE = "http://localhost"
Report = Callable[[Visit, dict[str, Any]], Awaitable[Answer]]


async def _http(http: HttpClient, visit: Visit, report: dict[str, Any]) -> Answer:
    headers = visit.headers() | {"Content-Type": "application/json"}
    response = await http.post(
        "/api/v1/events/engagement", headers=headers, data=json.dumps(report)
    )
    body = await response.json()
    return Answer(ok=response.status == 200, http_status=response.status, error=body.get("error"))


async def _grpc(
    stub: pb_grpc.EventServiceAsyncStub, visit: Visit, report: dict[str, Any]
) -> Answer:
    request = pb.SendEngagementRequest(context=visit.context())
    try:
        request.pageview_id = report.get("pageview_id", "")
        request.engaged_ms = report.get("engaged_ms", 0)
        request.scroll_depth = report.get("scroll_depth", 0)
    except (TypeError, ValueError):  # a typed field cannot hold it: the JSON form then
        request.body.CopyFrom(
            HttpBody(content_type="application/json", data=json.dumps(report).encode())
        )
        request.pageview_id, request.engaged_ms, request.scroll_depth = "", 0, 0
    try:
        await stub.SendEngagement(request, metadata=TRUSTED)
    except grpc.aio.AioRpcError as exc:
        error = error_from_rpc(exc)
        return Answer(ok=False, grpc_code=error.code, reason=error.reason)
    return Answer(ok=True, grpc_code=grpc.StatusCode.OK)


@pytest.fixture(params=["http", "grpc"])
def report(
    request: pytest.FixtureRequest, http: HttpClient, stub: pb_grpc.EventServiceAsyncStub
) -> Report:
    if request.param == "http":
        return lambda visit, body: _http(http, visit, body)
    return lambda visit, body: _grpc(stub, visit, body)


def _visitor() -> Visit:
    return Visit(client_ip=f"84.200.7.{uuid.uuid4().int % 250 + 1}", page_url=f"{SITE}/article")


async def test_a_report_is_one_document_in_the_page_views_session(
    report: Report, http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    visit, pageview_id = _visitor(), str(uuid.uuid4())
    headers = visit.headers() | {"X-Prisme-Event-Id": pageview_id}
    assert (await http.post("/api/v1/events/pageviews", headers=headers)).status == 200
    before = await mongo.sessions.find_one({})
    answer = await report(
        visit, {"pageview_id": pageview_id, "engaged_ms": 3200, "scroll_depth": 100}
    )
    assert answer.ok, answer
    view = await mongo.pageviews.find_one({})
    assert view is not None
    (stored,) = await mongo.engagements.find({}, {"_id": 0}).to_list()
    assert stored == {
        "timestamp": stored["timestamp"],
        "domain": "localhost",
        "path": "/article",
        "visitor_id": view["visitor_id"],
        "session_uuid": view["session_uuid"],
        "pageview_id": uuid.UUID(pageview_id),
        "engaged_ms": 3200,
        "scroll_depth": 100,
    }
    assert stored["timestamp"] >= view["timestamp"]
    assert await mongo.sessions.find_one({}) == before  # it changed nothing of the session
    assert await mongo.pageviews.count_documents({}) == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"engaged_ms": 10, "scroll_depth": 10}, "INVALID_PAGEVIEW_ID"),
        ({"pageview_id": "not-a-uuid", "engaged_ms": 10, "scroll_depth": 10},
         "INVALID_PAGEVIEW_ID"),
        ({"engaged_ms": -1, "scroll_depth": 10}, "INVALID_ENGAGED_MS"),
        ({"engaged_ms": 1_800_001, "scroll_depth": 10}, "INVALID_ENGAGED_MS"),
        ({"engaged_ms": 1.5, "scroll_depth": 10}, "INVALID_ENGAGED_MS"),
        ({"engaged_ms": 10, "scroll_depth": -1}, "INVALID_SCROLL_DEPTH"),
        ({"engaged_ms": 10, "scroll_depth": 101}, "INVALID_SCROLL_DEPTH"),
        ({"engaged_ms": 10, "scroll_depth": 2**40}, "INVALID_SCROLL_DEPTH"),
        ({"engaged_ms": 10, "scroll_depth": "50"}, "INVALID_SCROLL_DEPTH"),
    ],
)  # fmt: skip
async def test_every_rule_is_refused_with_its_reason_and_nothing_stored(
    report: Report, http: HttpClient, mongo: AsyncDatabase[Document],
    fields: dict[str, Any], reason: str,
) -> None:  # fmt: skip
    visit = _visitor()
    assert (await send_http(http, visit)).ok  # a live session: only the report is wrong
    body = {"pageview_id": str(uuid.uuid4())} | fields
    if "pageview_id" not in fields and reason == "INVALID_PAGEVIEW_ID":
        del body["pageview_id"]
    answer = await report(visit, body)
    assert why(answer) == reason
    assert answer.http_status in {None, 400}
    assert await mongo.engagements.count_documents({}) == 0


async def test_the_limits_themselves_are_accepted(
    report: Report, http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    visit = _visitor()
    assert (await send_http(http, visit)).ok
    for engaged_ms, depth in ((0, 0), (1_800_000, 100)):
        body = {"pageview_id": str(uuid.uuid4()), "engaged_ms": engaged_ms, "scroll_depth": depth}
        assert (await report(visit, body)).ok
    assert await mongo.engagements.count_documents({}) == 2


async def test_without_a_session_it_is_refused_at_once(
    report: Report, mongo: AsyncDatabase[Document]
) -> None:
    started = time.monotonic()
    body = {"pageview_id": str(uuid.uuid4()), "engaged_ms": 10, "scroll_depth": 10}
    answer = await report(_visitor(), body)
    assert why(answer) == "SESSION_NOT_FOUND"
    # A custom event would wait PRISME_API_EVENTS_TIMEOUT for its page view: this does not.
    assert time.monotonic() - started < BASE_SETTINGS.sessions.events_timeout
    assert await mongo.sessions.count_documents({}) == 0  # nor did it begin one
    assert await mongo.engagements.count_documents({}) == 0


async def test_an_http_report_has_only_its_three_fields(http: HttpClient) -> None:
    visit = _visitor()
    assert (await send_http(http, visit)).ok
    body = {"pageview_id": str(uuid.uuid4()), "engaged_ms": 1, "scroll_depth": 1, "extra": 1}
    assert why(await _http(http, visit, body)) == "INVALID_EVENT"
    headers = visit.headers() | {"Content-Type": "text/plain"}  # what sendBeacon sends
    del body["extra"]
    response = await http.post("/api/v1/events/engagement", headers=headers, data=json.dumps(body))
    assert response.status == 200


async def test_grpc_takes_the_fields_or_the_body_not_both(
    stub: pb_grpc.EventServiceAsyncStub, http: HttpClient
) -> None:
    visit = _visitor()
    assert (await send_http(http, visit)).ok
    request = pb.SendEngagementRequest(context=visit.context(), pageview_id=str(uuid.uuid4()),
                                       engaged_ms=5, body=HttpBody(data=b"{}"))  # fmt: skip
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SendEngagement(request, metadata=TRUSTED)
    assert error_from_rpc(refused.value).reason == "INVALID_EVENT"


async def test_a_batch_carries_engagements(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    visit, pageview_id = _visitor(), str(uuid.uuid4())
    answers = await send_batch_http(http, [
        {"kind": "pageview", "page_url": f"{SITE}/a", "event_id": pageview_id},
        {"kind": "engagement", "page_url": f"{SITE}/a", "pageview_id": pageview_id,
         "engaged_ms": 1500, "scroll_depth": 40},
        {"kind": "engagement", "page_url": f"{SITE}/a", "pageview_id": pageview_id,
         "engaged_ms": 1500, "scroll_depth": 140},
    ], visit)  # fmt: skip
    assert [why(a) for a in answers] == [None, None, "INVALID_SCROLL_DEPTH"]
    (stored,) = await mongo.engagements.find({}).to_list()
    assert (stored["path"], stored["engaged_ms"], stored["scroll_depth"]) == ("/a", 1500, 40)
