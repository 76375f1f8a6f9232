"""Limits, trust and privacy (DESIGN §10), each through the real gRPC server, façade and store:
no event waits for another, bounded input, every event counted first, IPv6 peers, the locked
link, UTF-8 headers, slow clients, event ids per kind, the rotating device key, proxies in
front of gRPC, and the smaller items."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import logging
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from grpc_reflection.v1alpha import reflection_pb2 as reflection_pb
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme.v1 import facade_link_pb2 as link_pb
from prisme.v1 import facade_link_pb2_grpc as link_grpc
from prisme_client import error_from_rpc, error_from_status
from prisme_core.adapters.memory import GatedEventStore, InMemoryEventStore
from prisme_core.adapters.useragents import UserAgentsParser
from prisme_core.peers import peer_ip
from prisme_core.refusals import REFUSALS
from prisme_core.server import CoreDeps, CoreServer, create_server
from prisme_core.settings import Settings
from prisme_http.app import create_app
from prisme_http.runner import FacadeRunner
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import changed, core_deps, facade_config
from tests.support import FIREFOX, AiohttpClient, Document, HttpClient, metric, until
from tests.test_edge import raw_request
from tests.transports import TRUSTED, Custom, Visit, send_custom_http, send_http


async def _core(
    settings: Settings, user_agents: UserAgentsParser, address: str = "127.0.0.1:0"
) -> CoreServer:
    server = create_server(settings, core_deps(settings, user_agents), address=address)
    await server.start()
    return server


def _view(visit: Visit, event_id: str = "") -> pb.SendPageViewRequest:
    return pb.SendPageViewRequest(context=visit.context(), event_id=event_id)


# --- 1. no event waits for another ---------------------------------------------------------


def _in_flight() -> float:
    return metric("prisme_link_batches_in_flight")


def _more_in_flight_than(count: float) -> bool:
    return _in_flight() > count


@pytest.fixture
async def waiting_core(settings: Settings, user_agents: UserAgentsParser) -> AsyncIterator[str]:
    server = await _core(changed(settings, "sessions", events_timeout=20.0), user_agents)
    yield f"127.0.0.1:{server.port}"
    await server.stop(grace=0)


async def test_events_waiting_for_a_session_hold_up_no_other_event(
    aiohttp_client: AiohttpClient, waiting_core: str, mongo: AsyncDatabase[Document]
) -> None:
    config = dataclasses.replace(facade_config(waiting_core), event_timeout=30.0)
    http = await aiohttp_client(create_app(config))
    # Custom events with no session wait for one (up to 20 s here), each sent on its own.
    waiting = []
    for n in range(1, 5):
        taken = _in_flight()
        custom = Custom(visit=Visit(client_ip=f"81.2.9.{n}"))
        waiting.append(asyncio.create_task(send_custom_http(http, custom)))
        await until(functools.partial(_more_in_flight_than, taken))  # the core has it
    view = Visit(client_ip="81.2.3.4", page_url="http://localhost/hol")
    try:  # the bound only keeps a failure short: answered, it takes milliseconds
        answer = await asyncio.wait_for(send_http(http, view), 10)
        assert answer.ok
        assert not any(task.done() for task in waiting)  # still waiting, each on its own
    finally:
        for task in waiting:
            task.cancel()
    assert await mongo.pageviews.count_documents({"path": "/hol"}) == 1


# --- 2. bounded input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["origin", "page_url", "document_referrer", "user_agent", "client_ip"]
)
async def test_every_context_field_is_bounded(
    stub: pb_grpc.EventServiceAsyncStub, field: str
) -> None:
    visit = dataclasses.replace(Visit(), **{field: "x" * (8 * 1024 + 1)})  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SendPageView(_view(visit), metadata=TRUSTED)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(refused.value).reason == "FIELD_TOO_LONG"


async def test_a_field_of_8_kib_is_accepted(stub: pb_grpc.EventServiceAsyncStub) -> None:
    page = "http://localhost/" + "a" * (8 * 1024 - len("http://localhost/"))
    await stub.SendPageView(_view(Visit(page_url=page)), metadata=TRUSTED)


@pytest.mark.parametrize(
    ("name", "event_id", "reason"),
    [
        pytest.param("n" * 257, "", "INVALID_EVENT_NAME", id="long-name"),
        pytest.param("click", "0" * 65, "INVALID_EVENT_ID", id="long-event-id"),
    ],
)
async def test_names_and_event_ids_are_bounded(
    stub: pb_grpc.EventServiceAsyncStub, name: str, event_id: str, reason: str
) -> None:
    request = pb.SendCustomEventRequest(context=Visit().context(), name=name, event_id=event_id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SendCustomEvent(request, metadata=TRUSTED)
    assert error_from_rpc(refused.value).reason == reason


async def test_messages_over_the_receive_limit_are_refused(
    stub: pb_grpc.EventServiceAsyncStub,
) -> None:
    huge = Visit(page_url="http://localhost/" + "a" * (5 * 1024 * 1024))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SendPageView(_view(huge))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- 3. refusals count, and are logged sampled --------------------------------------------


async def test_every_event_counts_first_and_refusals_are_logged_sampled(
    settings: Settings, user_agents: UserAgentsParser, caplog: pytest.LogCaptureFixture
) -> None:
    server = await _core(changed(settings, "limits", rate_limit_per_minute=60), user_agents)
    REFUSALS.close_window()
    caplog.set_level(logging.INFO, logger="prisme_core")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.EventServiceStub(channel)
            empty = pb.SendEventsRequest(events=[pb.Event() for _ in range(1000)])
            results = (await stub.SendEvents(empty)).results
            reasons = [error_from_status(status).reason for status in results]  # type: ignore[union-attr]
            assert reasons.count("EMPTY_EVENT") == 60
            assert reasons.count("RATE_LIMITED") == 940
            with pytest.raises(grpc.aio.AioRpcError) as limited:
                await stub.SendPageView(_view(Visit()))
            assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await server.stop(grace=0)
    refusal_lines = [r for r in caplog.records if r.name == "prisme_core.refusals"]
    assert 1 <= len(refusal_lines) <= 3
    REFUSALS.close_window()
    summary = [r.getMessage() for r in caplog.records if r.name == "prisme_core.refusals"]
    assert any("unknown/EMPTY_EVENT=59" in line for line in summary)


# --- 4. IPv6 peers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        pytest.param("ipv4:81.2.3.4:5000", "81.2.3.4", id="ipv4"),
        pytest.param("ipv6:[::1]:5000", "::1", id="ipv6-brackets"),
        pytest.param("ipv6:%5B2001:db8::1%5D:5000", "2001:db8::1", id="ipv6-percent-encoded"),
        pytest.param("ipv6:%5B::ffff:81.2.3.4%5D:5000", "81.2.3.4", id="ipv4-mapped"),
        pytest.param("unix:/tmp/socket", None, id="unix"),
        pytest.param("garbage", None, id="unknown"),
    ],
)
def test_grpc_peers_parse(peer: str, address: str | None) -> None:
    assert peer_ip(peer) == address


async def test_an_ipv6_caller_is_known_by_its_address(
    settings: Settings, user_agents: UserAgentsParser, mongo: AsyncDatabase[Document]
) -> None:
    server = await _core(settings, user_agents, address="[::1]:0")
    try:
        async with grpc.aio.insecure_channel(f"[::1]:{server.port}") as channel:
            stub = pb_grpc.EventServiceStub(channel)
            await stub.SendPageView(_view(Visit(page_url="http://localhost/untrusted")))
            named = Visit(page_url="http://localhost/named", client_ip="::1")
            await stub.SendPageView(_view(named), metadata=TRUSTED)
    finally:
        await server.stop(grace=0)
    views = {v["path"]: v["visitor_id"] async for v in mongo.pageviews.find()}
    assert views["/untrusted"] == views["/named"]  # the same visitor: its address is known


async def test_ipv6_clients_are_limited_by_their_64(
    settings: Settings, user_agents: UserAgentsParser
) -> None:
    server = await _core(changed(settings, "limits", rate_limit_per_minute=60), user_agents)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.EventServiceStub(channel)
            for n in range(60):  # a new address of the same /64 every time
                await stub.SendPageView(
                    _view(Visit(client_ip=f"2001:db8::{n:x}")), metadata=TRUSTED
                )
            visit = Visit(client_ip="2001:db8::ffff:1")
            with pytest.raises(grpc.aio.AioRpcError) as limited:
                await stub.SendPageView(_view(visit), metadata=TRUSTED)
            assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            other = Visit(client_ip="2001:db8:0:1::1")  # another /64
            await stub.SendPageView(_view(other), metadata=TRUSTED)
    finally:
        await server.stop(grace=0)


# --- 5. the link is locked and bounded ---------------------------------------------------


async def test_the_link_needs_the_service_token(core_target: str) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        stream = link_grpc.FacadeLinkServiceStub(channel).Exchange()
        await stream.write(link_pb.ExchangeRequest(first_id=1, events=[pb.Event()]))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stream.read()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_link_reads_a_bounded_number_of_batches_ahead(
    settings: Settings, user_agents: UserAgentsParser
) -> None:
    server = await _core(changed(settings, "sessions", events_timeout=0.3), user_agents)
    custom = pb.SendCustomEventRequest(context=Visit().context(), name="waits")
    batch = link_pb.ExchangeRequest(events=[pb.Event(custom_event=custom)])
    answered, high_water = 0, 0.0
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stream = link_grpc.FacadeLinkServiceStub(channel).Exchange(metadata=TRUSTED)

            async def pipeline() -> None:
                for n in range(300):
                    batch.first_id = n
                    await stream.write(batch)
                await stream.done_writing()

            writing = asyncio.create_task(pipeline())
            while (answer := await stream.read()) is not grpc.aio.EOF:
                assert isinstance(answer, link_pb.ExchangeResponse)
                answered += len(answer.ids)
                high_water = max(high_water, _in_flight())
            await writing
    finally:
        await server.stop(grace=0)
    assert answered == 300
    assert 1 <= high_water <= 64


# --- 6. header bytes that are not UTF-8 ---------------------------------------------------


@pytest.mark.parametrize("header", [b"Origin", b"User-Agent", b"X-Prisme-Referrer"])
async def test_header_bytes_that_are_not_utf8_get_400(facade_port: int, header: bytes) -> None:
    headers = {
        b"Origin": b"http://localhost",
        b"X-Prisme-Referrer": b"http://localhost/x",
        b"User-Agent": FIREFOX.encode(),
        header: b"http://localhost/\xff\xfe",
    }
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers.items())
    request = b"POST /api/v1/events/pageviews HTTP/1.1\r\nHost: x\r\n" + lines
    status, body = await raw_request(facade_port, request + b"Content-Length: 0\r\n\r\n")
    assert status == 400
    assert b"not valid UTF-8" in body


# --- 7. slow clients ----------------------------------------------------------------------


async def _facade(core_target: str, read: float, idle: float) -> tuple[FacadeRunner, int]:
    config = dataclasses.replace(facade_config(core_target), read_timeout=read, idle_timeout=idle)
    runner = FacadeRunner(create_app(config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def strict_port(core_target: str) -> AsyncIterator[int]:
    """A façade that reads heads and bodies for 0.5 s, and keeps idle connections for 60 s."""
    runner, port = await _facade(core_target, read=0.5, idle=60.0)
    yield port
    await runner.cleanup()


@pytest.fixture
async def impatient_port(core_target: str) -> AsyncIterator[int]:
    """A façade that keeps idle connections for 0.5 s, and reads for 60 s."""
    runner, port = await _facade(core_target, read=60.0, idle=0.5)
    yield port
    await runner.cleanup()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    return await asyncio.wait_for(reader.read(), seconds)


async def test_a_request_head_sent_slowly_is_cut_off(strict_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", strict_port)
    writer.write(b"POST /api/v1/events/pageviews HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    assert await _closed_within(reader, 5) == b""  # closed by the service, well before 5 s
    writer.close()


async def test_a_body_sent_slowly_gets_408(strict_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", strict_port)
    writer.write(
        b"POST /api/v1/events/custom/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    answer = await _closed_within(reader, 5)
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(impatient_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient_port)
    writer.write(b"GET /api/v1/healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    rest = await _closed_within(reader, 5)  # the body, then the service closes the idle line
    assert b"}" in rest
    writer.close()


# --- 8. event ids per kind -----------------------------------------------------------------


async def test_an_event_id_reused_for_another_kind_is_refused(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    event_id = str(uuid.uuid4())
    ids = {"X-Prisme-Event-Id": event_id}
    assert (await send_http(http, Visit(extra_headers=ids))).ok
    answer = await send_custom_http(http, Custom(visit=Visit(extra_headers=ids)))
    assert answer.http_status == 400
    assert answer.error == "event id reused"
    assert await mongo.events_custom.count_documents({}) == 0
    assert (await send_http(http, Visit(extra_headers=ids))).ok  # a retry of the page view
    assert await mongo.pageviews.count_documents({}) == 1


async def test_an_event_id_of_another_kind_unknown_here_is_stored_in_its_own_collection(
    settings: Settings, user_agents: UserAgentsParser, mongo: AsyncDatabase[Document]
) -> None:
    event_id = uuid.uuid4()
    for request_kind in ("page_view", "custom_event"):  # a fresh instance each time
        server = await _core(settings, user_agents)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = pb_grpc.EventServiceStub(channel)
                if request_kind == "page_view":
                    await stub.SendPageView(_view(Visit(), str(event_id)), metadata=TRUSTED)
                else:
                    custom = pb.SendCustomEventRequest(
                        context=Visit().context(), name="x", event_id=str(event_id)
                    )
                    await stub.SendCustomEvent(custom, metadata=TRUSTED)
        finally:
            await server.stop(grace=0)
    assert await mongo.pageviews.count_documents({"event_id": event_id}) == 1
    assert await mongo.events_custom.count_documents({"event_id": event_id}) == 1


# --- 9. the device key rotates -------------------------------------------------------------


class SteppedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


async def test_the_device_key_rotates_and_sessions_continue_across_midnight(
    settings: Settings, user_agents: UserAgentsParser, mongo: AsyncDatabase[Document]
) -> None:
    clock = SteppedClock(datetime(2026, 3, 1, 23, 50, tzinfo=UTC))

    async def visit(path: str, referrer: str) -> None:
        deps = dataclasses.replace(core_deps(settings, user_agents), clock=clock)
        server = create_server(settings, deps, address="127.0.0.1:0")  # no cache: the store's
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                view = Visit(page_url=f"http://localhost{path}", document_referrer=referrer)
                await pb_grpc.EventServiceStub(channel).SendPageView(_view(view), metadata=TRUSTED)
        finally:
            await server.stop(grace=0)

    await visit("/before-midnight", "")
    clock.at += timedelta(minutes=20)  # past midnight: a new device key
    await visit("/after-midnight", "http://localhost/before-midnight")
    clock.at += timedelta(hours=23, minutes=55)  # and past the next (found only if rekeyed)
    await visit("/next-midnight", "http://localhost/after-midnight")
    clock.at += timedelta(days=2)
    await visit("/days-later", "")
    sessions = [s async for s in mongo.sessions.find().sort("entry_timestamp", 1)]
    assert [s["pageviews"] for s in sessions] == [3, 1]  # continued across two midnights
    assert sessions[0]["device_id"] != sessions[1]["device_id"]  # same device, another key
    keys = {k["_id"]: k async for k in mongo["keys"].find({"_id": {"$regex": "^device:"}})}
    # each day's key, and the day before's: a miss looks there for sessions begun before midnight
    assert set(keys) == {
        "device:2026-02-28", "device:2026-03-01", "device:2026-03-02", "device:2026-03-03",
        "device:2026-03-04", "device:2026-03-05",
    }  # fmt: skip
    for name, key in keys.items():  # forgotten by the TTL index two days after its day
        day = datetime.fromisoformat(name.partition(":")[2]).replace(tzinfo=UTC)
        assert key["expires_at"] == day + timedelta(days=2)


async def test_ended_sessions_lose_their_lookup_key(
    core: CoreServer, stub: pb_grpc.EventServiceAsyncStub, mongo: AsyncDatabase[Document]
) -> None:
    await stub.SendPageView(_view(Visit()), metadata=TRUSTED)
    await mongo.sessions.update_one({}, {"$set": {"exit_timestamp": datetime(2020, 1, 1)}})
    await core.forget_ended_devices()
    session = await mongo.sessions.find_one({})
    assert session is not None
    assert "device_id" not in session


# --- 10. gRPC behind a load balancer: TLS, and trusted proxies ------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key (PEM files)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


async def test_grpc_is_served_over_tls(
    settings: Settings, user_agents: UserAgentsParser, certificate: tuple[str, str]
) -> None:
    cert, key = certificate
    server = await _core(changed(settings, "grpc", tls_cert=cert, tls_key=key), user_agents)
    target = f"127.0.0.1:{server.port}"
    try:
        root = await asyncio.to_thread(Path(cert).read_bytes)
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
        async with grpc.aio.secure_channel(target, credentials) as channel:
            await pb_grpc.EventServiceStub(channel).SendPageView(_view(Visit()), metadata=TRUSTED)
        async with grpc.aio.insecure_channel(target) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pb_grpc.EventServiceStub(plain).SendPageView(_view(Visit()), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(grace=0)


async def _visitor_of(target: str, mongo: AsyncDatabase[Document], path: str, **call: Any) -> str:
    async with grpc.aio.insecure_channel(target) as channel:
        view = _view(Visit(page_url=f"http://localhost{path}"))
        await pb_grpc.EventServiceStub(channel).SendPageView(view, **call)
    stored = await mongo.pageviews.find_one({"path": path})
    assert stored is not None
    return str(stored["visitor_id"])


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "untrusted-peer"])
async def test_a_trusted_grpc_proxy_names_the_client(
    settings: Settings,
    user_agents: UserAgentsParser,
    mongo: AsyncDatabase[Document],
    trusted: bool,
) -> None:
    networks = (ipaddress.ip_network("127.0.0.0/8"),) if trusted else ()
    server = await _core(changed(settings, "grpc", trusted_proxies=networks), user_agents)
    target = f"127.0.0.1:{server.port}"
    forwarded = (("x-forwarded-for", "198.51.100.1, 203.0.113.7"),)
    try:
        behind = await _visitor_of(target, mongo, "/behind", metadata=forwarded)
        named = Visit(page_url="http://localhost/named", client_ip="203.0.113.7")
        async with grpc.aio.insecure_channel(target) as channel:
            await pb_grpc.EventServiceStub(channel).SendPageView(_view(named), metadata=TRUSTED)
        stored = await mongo.pageviews.find_one({"path": "/named"})
        assert stored is not None
    finally:
        await server.stop(grace=0)
    assert (behind == stored["visitor_id"]) is trusted  # the rightmost untrusted entry


# --- 12. the smaller items -----------------------------------------------------------------


async def test_an_oversized_origin_is_not_echoed_whole(http: HttpClient) -> None:
    answer = await http.post(
        "/api/v1/events/pageviews", headers=Visit(origin="http://" + "o" * 7000).headers()
    )
    body = await answer.json()
    assert body["error"] == "origin not registered"
    assert len(body["message"]) < 300


async def test_malformed_requests_are_not_logged_at_error_with_their_user_agent(
    facade_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    request = b"POST /x HTTP/1.1\r\nHost: x\r\nUser-Agent: secret-agent\r\nBad Header\r\n\r\n"
    status, _ = await raw_request(facade_port, request)
    assert status == 400
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert not any(r.levelno >= logging.ERROR for r in loud)
    assert not any("secret-agent" in r.getMessage() for r in loud)


@pytest.mark.parametrize("number", [b"1e999999", b"-1e999999", b"9" * 5000])
async def test_numbers_beyond_a_double_are_refused(http: HttpClient, number: bytes) -> None:
    answer = await send_custom_http(http, Custom(body=b'{"amount": ' + number + b"}"))
    assert answer.http_status == 400
    assert answer.error == "invalid json"


async def test_the_healthcheck_reuses_the_stores_health(
    settings: Settings, user_agents: UserAgentsParser
) -> None:
    store = CountingPings()
    server = create_server(settings, CoreDeps(store=store, agents=user_agents), "127.0.0.1:0")
    await server.start()
    try:
        before = store.pings
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.EventServiceStub(channel)
            for _ in range(20):
                await stub.CheckHealth(pb.CheckHealthRequest())
    finally:
        await server.stop(grace=0)
    assert store.pings - before <= 2  # once, or twice if a second passed meanwhile


class CountingPings(InMemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        await super().ping()


async def test_a_page_view_answered_503_does_not_advance_its_session(
    settings: Settings, user_agents: UserAgentsParser
) -> None:
    store = GatedEventStore()
    short = changed(settings, "store", timeout=0.3)
    server = create_server(short, CoreDeps(store=store, agents=user_agents), "127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.EventServiceStub(channel)
            await stub.SendPageView(_view(Visit()), metadata=TRUSTED)
            store.gate.clear()  # the store stops answering page views
            inside = Visit(
                page_url="http://localhost/lost", document_referrer="http://localhost/hello"
            )
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await stub.SendPageView(_view(inside), metadata=TRUSTED)
            assert late.value.code() == grpc.StatusCode.UNAVAILABLE
            store.gate.set()
    finally:
        await server.stop(grace=1)
    [session] = store.sessions.values()
    assert session.pageviews == 1
    assert session.exit_path == "/hello"


async def test_reflection_v1_lists_the_services(core_target: str) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        call = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb.ServerReflectionResponse.FromString,
        )
        stream = call()
        await stream.write(reflection_pb.ServerReflectionRequest(list_services=""))
        answer = await stream.read()
        await stream.done_writing()
    assert isinstance(answer, reflection_pb.ServerReflectionResponse)
    names = {service.name for service in answer.list_services_response.service}
    assert {"prisme.v1.EventService", "grpc.reflection.v1.ServerReflection"} <= names


def test_caches_hold_only_bounded_keys(user_agents: UserAgentsParser) -> None:
    from prisme_core import urls

    before = urls._cached_parse_url.cache_info().currsize
    for n in range(50):
        urls.parse_url(f"http://localhost/{n}/" + "a" * 8000)
    assert urls._cached_parse_url.cache_info().currsize == before  # long URLs are not kept
    parser = UserAgentsParser(cache_size=16)
    for n in range(50):  # 8 KiB agents that differ past what is parsed: one entry of 512
        parser.parse(FIREFOX + " " * 600 + str(n))
    assert parser._cached.cache_info().currsize == 1


# --- 3b. refusals at the façade count too ----------------------------------------------------


@pytest.fixture
async def limited_facade(settings: Settings, user_agents: UserAgentsParser) -> AsyncIterator[int]:
    server = await _core(changed(settings, "limits", rate_limit_per_minute=60), user_agents)
    config = dataclasses.replace(facade_config(f"127.0.0.1:{server.port}"), max_body_bytes=100)
    runner = FacadeRunner(create_app(config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield runner.addresses[0][1]
    await runner.cleanup()
    await server.stop(grace=0)


def _post(path: bytes, headers: dict[bytes, bytes], body: bytes = b"") -> bytes:
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers.items())
    head = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 81.2.69.142\r\n" + lines
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize(
    ("refused", "status"),
    [
        pytest.param(_post(b"/api/v1/events/pageviews", {b"User-Agent": b"\xff\xfe"}), 400,
                     id="not-utf8"),
        pytest.param(_post(b"/api/v1/events/custom/x", {b"Content-Type": b"application/json"},
                           b"{}" + b" " * 200), 413, id="declared-too-large"),
    ],
)  # fmt: skip
async def test_events_the_facade_refuses_count_against_the_limit(
    limited_facade: int, refused: bytes, status: int
) -> None:
    for _ in range(60):
        assert (await raw_request(limited_facade, refused))[0] == status
    headers = {b"Origin": b"http://localhost", b"X-Prisme-Referrer": b"http://localhost/",
               b"User-Agent": FIREFOX.encode()}  # fmt: skip
    valid = _post(b"/api/v1/events/pageviews", headers)
    assert (await raw_request(limited_facade, valid))[0] == 429
    assert (await raw_request(limited_facade, refused))[0] == 429
