"""The Python client and the gRPC trust model, against the real core and `prisme serve`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import google.rpc.status_pb2 as status_pb2
import grpc
import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_client import (
    CustomEvent,
    Engagement,
    FileDownload,
    OutboundLink,
    PageView,
    PrismeClient,
    PrismeError,
)
from prisme_core.server import create_server
from prisme_core.settings import Settings
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import core_deps
from tests.service import Service, free_port, start_service
from tests.support import FIREFOX, Document
from tests.transports import TOKEN

SECRET = "s3cret-token-never-logged"
SITE = "http://localhost"


@pytest.fixture
def service(
    mongo_uri: str, database_name: str, tmp_path: Path, mongo: AsyncDatabase[Document]
) -> Iterator[tuple[Service, int]]:
    grpc_port = free_port()
    service = start_service(
        tmp_path / "serve.log",
        PRISME_MONGODB_URI=mongo_uri,
        PRISME_MONGODB_DATABASE=database_name,
        PRISME_GRPC_HOSTPORT=f"127.0.0.1:{grpc_port}",
        PRISME_ORIGIN_REGISTRY_ORIGINS="example.com,localhost",
        PRISME_GRPC_TOKEN=SECRET,
    )
    yield service, grpc_port
    if service.process.poll() is None:
        service.stop()


@pytest.mark.timeout(60)
async def test_the_design_snippet_works_as_written(
    service: tuple[Service, int], mongo: AsyncDatabase[Document]
) -> None:
    _, port = service
    async with PrismeClient(f"127.0.0.1:{port}", token=None) as client:
        await client.send_pageview(page_url="https://example.com/pricing", origin="https://example.com",
                                   user_agent=FIREFOX, client_ip=None,
                                   document_referrer=None)  # fmt: skip
        await client.send_custom_event("purchase", {"amount": 12.5}, page_url="https://example.com/pricing",
                                       origin="https://example.com", user_agent=FIREFOX,
                                       client_ip=None)  # fmt: skip
    [event] = await mongo.events_custom.find({}).to_list()
    assert (event["name"], event["properties"]) == ("purchase", {"amount": 12.5})
    assert await mongo.pageviews.count_documents({}) == 1


@pytest.mark.timeout(60)
async def test_failures_raise_prisme_error_with_code_and_reason(
    service: tuple[Service, int],
) -> None:
    _, port = service
    async with PrismeClient(f"127.0.0.1:{port}") as client:
        with pytest.raises(PrismeError) as excinfo:
            await client.send_pageview(
                page_url="https://example.com/", origin="https://evil.example", user_agent=FIREFOX
            )
    assert excinfo.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "ORIGIN" in excinfo.value.reason


@pytest.mark.timeout(60)
async def test_token_never_appears_in_logs(service: tuple[Service, int]) -> None:
    process, port = service
    async with PrismeClient(f"127.0.0.1:{port}", token=SECRET) as client:
        await client.send_pageview(
            page_url="https://example.com/", origin="https://example.com",
            user_agent=FIREFOX, client_ip="8.8.8.8",
        )  # fmt: skip
    async with PrismeClient(f"127.0.0.1:{port}", token=SECRET + "-wrong") as client:
        with pytest.raises(PrismeError) as excinfo:
            await client.check_health()
    assert excinfo.value.code == grpc.StatusCode.UNAUTHENTICATED
    process.stop()
    assert "s3cret" not in process.log.read_text()


async def test_untrusted_caller_cannot_choose_its_ip_and_trusted_can(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    for token, page in ((None, "/untrusted"), (TOKEN, "/trusted")):
        async with PrismeClient(core_target, token=token) as client:
            await client.send_pageview(
                page_url=f"http://localhost{page}", origin="http://localhost",
                user_agent=FIREFOX, client_ip="8.8.8.8",
            )  # fmt: skip
    countries = {
        doc["entry_path"]: doc["country_code"] for doc in await mongo.sessions.find({}).to_list()
    }
    assert countries == {"/untrusted": "XX", "/trusted": "US"}  # 127.0.0.1 vs the given 8.8.8.8


async def test_wrong_token_is_refused_clearly(core_target: str) -> None:
    async with PrismeClient(core_target, token="wrong") as client:
        with pytest.raises(PrismeError) as excinfo:
            await client.check_health()
        with pytest.raises(PrismeError) as batch:
            await client.send_events([])
    assert (excinfo.value.code, excinfo.value.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "UNAUTHENTICATED",
    )
    assert batch.value.code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.timeout(90)
async def test_a_batch_of_1000_is_stored_with_a_result_each(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    events: list[PageView | CustomEvent] = []
    for i in range(1000):
        ip = f"81.2.{i // 250}.{i % 250 + 1}"
        if i % 100 == 7:
            events.append(PageView("http://localhost/x", "https://evil.example", FIREFOX, ip))
        elif i % 100 == 8:
            events.append(PageView("/relative", "http://localhost", FIREFOX, ip))
        else:
            events.append(PageView(f"http://localhost/p{i}", "http://localhost", FIREFOX, ip))
    async with PrismeClient(core_target, token=TOKEN, timeout=60) as client:
        results = await client.send_events(events)
    assert len(results) == 1000
    refused = {i: error.reason for i, error in enumerate(results) if error is not None}
    assert refused == {
        i: "ORIGIN_NOT_REGISTERED" if i % 100 == 7 else "INVALID_PAGE_URL"
        for i in range(1000)
        if i % 100 in (7, 8)
    }
    assert await mongo.pageviews.count_documents({}) == 980


async def test_the_client_sends_the_status_and_the_sites_visitor_id(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    page: dict[str, Any] = {
        "origin": "http://localhost",
        "user_agent": FIREFOX,
        "client_ip": "81.2.3.4",
    }
    async with PrismeClient(core_target, token=TOKEN) as client:
        await client.send_pageview(page_url="http://localhost/gone", status=404,
                                   visitor_id="user-1", **page)  # fmt: skip
        view = PageView("http://localhost/b", status=500, visitor_id="user-2", **page)
        assert await client.send_events([view]) == [None]
        with pytest.raises(PrismeError) as refused:
            await client.send_pageview(page_url="http://localhost/", status=42, **page)
    assert refused.value.reason == "INVALID_STATUS"
    stored = await mongo.pageviews.find({}, {"status": 1, "visitor_id": 1, "_id": 0}).to_list()
    assert sorted(stored, key=lambda p: p["status"]) == [
        {"status": 404, "visitor_id": "user-1"},
        {"status": 500, "visitor_id": "user-2"},
    ]


async def test_the_client_sends_clicks_alone_and_in_batches(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    page: dict[str, Any] = {"page_url": "http://localhost/docs", "origin": "http://localhost",
                            "user_agent": FIREFOX, "client_ip": "81.2.3.9"}  # fmt: skip
    async with PrismeClient(core_target, token=TOKEN) as client:
        await client.send_pageview(**page)
        await client.send_click(OutboundLink("https://github.com/x", **page))
        await client.send_click(FileDownload("http://localhost/a.pdf", **page))
        results = await client.send_events(
            [OutboundLink("https://b.example/", **page),
             FileDownload("https://c.example/z", **page),
             OutboundLink("http://localhost/own", **page)]
        )  # fmt: skip
    assert [error.reason if error else None for error in results] == [None, None, "INTERNAL_LINK"]
    links = sorted(d["link"] for d in await mongo.outbound_link_clicks.find({}).to_list())
    files = sorted(d["url"] for d in await mongo.file_downloads.find({}).to_list())
    assert links == ["https://b.example/", "https://github.com/x"]
    assert files == ["http://localhost/a.pdf", "https://c.example/z"]


async def test_batch_mixes_kinds_and_reports_each(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    ip = "84.200.69.80"
    async with PrismeClient(core_target, token=TOKEN) as client:
        await client.send_pageview(page_url="http://localhost/a", origin="http://localhost",
                                   user_agent=FIREFOX, client_ip=ip)  # fmt: skip
        results = await client.send_events(
            [
                CustomEvent("signup", {"plan": "pro"}, "http://localhost/a", "http://localhost",
                            FIREFOX, ip),
                CustomEvent("bad", {"$x": 1}, "http://localhost/a", "http://localhost", FIREFOX,
                            ip),
                PageView("http://localhost/b", "http://localhost", "curl/8.5.0", ip),
            ]
        )  # fmt: skip
    assert [None if r is None else r.reason for r in results] == [
        None,
        "INVALID_PROPERTY_KEY",
        "BOT",
    ]
    assert await mongo.events_custom.count_documents({"name": "signup"}) == 1


async def test_retries_wait_for_an_unavailable_service(
    settings: Settings, user_agents: Any, mongo: AsyncDatabase[Document]
) -> None:
    port = free_port()
    server = create_server(settings, core_deps(settings, user_agents), f"127.0.0.1:{port}")

    async def start_late() -> None:
        await asyncio.sleep(0.4)
        await server.start()

    starting = asyncio.create_task(start_late())
    event_id = str(uuid.uuid4())
    try:
        async with PrismeClient(f"127.0.0.1:{port}", retries=6, backoff=0.1) as client:
            await client.send_pageview(
                page_url="http://localhost/", origin="http://localhost", user_agent=FIREFOX,
                event_id=event_id,
            )  # fmt: skip
    finally:
        await starting
        await server.stop(grace=0)
    assert await mongo.pageviews.count_documents({"event_id": uuid.UUID(event_id)}) == 1


async def test_no_retries_give_up_at_once() -> None:
    async with PrismeClient(f"127.0.0.1:{free_port()}", retries=0, timeout=2) as client:
        with pytest.raises(PrismeError) as excinfo:
            await client.check_health()
    assert excinfo.value.code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.timeout(60)
def test_server_side_tracking_example_runs(service: tuple[Service, int], repo_root: Path) -> None:
    _, port = service
    result = subprocess.run(
        [sys.executable, str(repo_root / "examples" / "server_side_tracking.py"),
         f"127.0.0.1:{port}"],
        env=os.environ | {"PRISME_GRPC_TOKEN": SECRET},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["stored", "refused: ORIGIN_NOT_REGISTERED"]


class FlakyService(pb_grpc.EventServiceServicer):
    """A gRPC server that answers each event UNAVAILABLE the first ``flaky`` times it sees
    its id, and records every batch it gets: to watch the client retry."""

    def __init__(self, flaky: dict[str, int]) -> None:
        self.flaky = flaky
        self.batches: list[list[str]] = []
        self.sent_at: list[datetime] = []

    async def SendEvents(  # noqa: N802 (the RPC's name)
        self, request: pb.SendEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SendEventsResponse:
        ids = [getattr(e, e.WhichOneof("kind") or "page_view").event_id for e in request.events]
        self.batches.append(ids)
        self.sent_at.append(request.sent_at.ToDatetime(UTC))
        results = []
        for event_id in ids:
            failing = self.flaky.get(event_id, 0)
            self.flaky[event_id] = failing - 1
            code = grpc.StatusCode.UNAVAILABLE if failing > 0 else grpc.StatusCode.OK
            results.append(status_pb2.Status(code=code.value[0]))
        return pb.SendEventsResponse(results=results)


async def test_send_events_retries_only_the_events_that_failed_with_their_ids() -> None:
    server = grpc.aio.server()
    views = [PageView(f"http://localhost/{i}", "http://localhost", FIREFOX) for i in range(4)]
    flaky = FlakyService({views[1].event_id: 2, views[3].event_id: 1})  # type: ignore[abstract]
    pb_grpc.add_EventServiceServicer_to_server(flaky, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with PrismeClient(f"127.0.0.1:{port}", backoff=0.001) as client:
            assert await client.send_events(views) == [None] * 4
    finally:
        await server.stop(None)
    ids = [view.event_id for view in views]
    assert flaky.batches == [ids, [ids[1], ids[3]], [ids[1]]]
    assert flaky.sent_at == sorted(flaky.sent_at)  # each attempt says when it is sent


async def test_timestamps_are_sent_with_when_they_are_sent(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    happened = datetime.now(UTC) - timedelta(hours=1)
    page: dict[str, Any] = {"origin": "http://localhost", "user_agent": FIREFOX}
    async with PrismeClient(core_target, token=TOKEN) as client:
        await client.send_pageview(page_url="http://localhost/a", timestamp=happened, **page)
        later = PageView("http://localhost/b", **page, timestamp=happened + timedelta(minutes=1))
        assert await client.send_events([later]) == [None]
        old = happened - timedelta(days=4)
        with pytest.raises(PrismeError) as refused:
            await client.send_custom_event(
                "x", page_url="http://localhost/a", timestamp=old, **page
            )
    assert refused.value.reason == "TOO_OLD"
    stored = [
        v["timestamp"].replace(tzinfo=UTC) async for v in mongo.pageviews.find({}).sort("path")
    ]
    # Stored at when they happened, to the clocks' agreement (the same machine's, here).
    wanted = [happened, happened + timedelta(minutes=1)]
    assert all(abs(s - h) < timedelta(seconds=1) for s, h in zip(stored, wanted, strict=True))
    sessions = await mongo.sessions.find({}).to_list()
    assert len(sessions) == 2  # a direct page view a minute later in another page: its own


async def test_the_client_sends_engagement_alone_and_in_batches(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    page: dict[str, Any] = {"origin": SITE, "user_agent": FIREFOX, "client_ip": "81.2.3.9"}
    view = PageView(f"{SITE}/read", **page)
    async with PrismeClient(core_target, token=TOKEN) as client:
        assert await client.send_events([view]) == [None]
        await client.send_engagement(Engagement(view.event_id, 2500, 60, f"{SITE}/read", **page))
        late = Engagement(view.event_id, 100_000_000, 60, f"{SITE}/read", **page)
        (refused,) = await client.send_events([late])
    assert refused is not None
    assert refused.reason == "INVALID_ENGAGED_MS"
    (stored,) = await mongo.engagements.find({}).to_list()
    assert (stored["pageview_id"], stored["engaged_ms"], stored["scroll_depth"]) == (
        uuid.UUID(view.event_id),
        2500,
        60,
    )
