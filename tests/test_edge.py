"""Edge policies of the HTTP façade and the core: rate limit, CORS, request ids, HTTP hygiene,
metrics and the access log."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_client.request_id import RequestIdFilter
from prisme_core.refusals import REFUSALS
from prisme_core.request_id import REQUEST_ID as CORE_REQUEST_ID
from prisme_core.server import CoreServer, create_server
from prisme_core.settings import Settings
from prisme_http.admin import create_admin_app, merged
from prisme_http.app import create_app
from prisme_http.request_id import REQUEST_ID as FACADE_REQUEST_ID
from prometheus_client import REGISTRY

from tests.conftest import changed, core_deps, facade_config
from tests.support import AiohttpClient, HttpClient, access_lines
from tests.transports import Custom, Visit, send_custom_http, send_grpc, send_http

# --- rate limit ---------------------------------------------------------------------------


@pytest.fixture
async def limited_core(settings: Settings, user_agents: Any) -> AsyncIterator[CoreServer]:
    limited = changed(settings, "limits", rate_limit_per_minute=60)
    core = create_server(limited, core_deps(limited, user_agents), address="127.0.0.1:0")
    await core.start()
    yield core
    await core.stop(grace=0)


@pytest.fixture
async def limited_http(aiohttp_client: AiohttpClient, limited_core: CoreServer) -> HttpClient:
    return await aiohttp_client(create_app(facade_config(f"127.0.0.1:{limited_core.port}")))


async def test_sixty_accepted_then_429_with_retry_after(limited_http: HttpClient) -> None:
    visit = Visit(client_ip="8.8.8.8")
    answers = await asyncio.gather(*(send_http(limited_http, visit) for _ in range(60)))
    assert all(answer.ok for answer in answers)
    response = await limited_http.post("/api/v1/events/pageviews", headers=visit.headers())
    assert response.status == 429
    assert (await response.json())["error"] == "rate limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert (await send_http(limited_http, Visit(client_ip="84.200.69.80"))).ok  # others go on


async def test_refused_requests_count_too(limited_http: HttpClient) -> None:
    bad = Visit(client_ip="8.8.8.8", origin="https://evil.example")
    await asyncio.gather(*(send_http(limited_http, bad) for _ in range(60)))
    answer = await send_http(limited_http, Visit(client_ip="8.8.8.8"))
    assert answer.http_status == 429


async def test_preflights_spend_no_quota(limited_http: HttpClient) -> None:
    for _ in range(70):
        response = await limited_http.options(
            "/api/v1/events/pageviews",
            headers={"Origin": "http://localhost", "Access-Control-Request-Method": "POST"},
        )
        assert response.status == 204
    assert (await send_http(limited_http, Visit(client_ip="8.8.8.8"))).ok


async def test_grpc_callers_are_limited_the_same_way(limited_core: CoreServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{limited_core.port}") as channel:
        stub = pb_grpc.EventServiceStub(channel)
        visit = Visit(client_ip="81.2.69.142")  # trusted caller: the end user's address counts
        answers = [await send_grpc(stub, visit) for _ in range(61)]
        assert all(answer.ok for answer in answers[:60])
        assert (answers[60].grpc_code, answers[60].reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
        )
        untrusted = pb_grpc.EventServiceStub(channel)
        request = visit.context()
        statuses = []
        for _ in range(61):  # no token: its own peer address is limited
            try:
                await untrusted.SendPageView(pb.SendPageViewRequest(context=request))
                statuses.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                statuses.append(exc.code())
        assert statuses[:60] == [grpc.StatusCode.OK] * 60
        assert statuses[60] == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- CORS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/events/pageviews", "/api/v1/events/custom/x",
                                  "/api/v1/events/anything"])  # fmt: skip
async def test_preflight_is_answered_with_max_age(http: HttpClient, path: str) -> None:
    response = await http.options(
        path,
        headers={
            "Origin": "https://example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-prisme-referrer",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    assert response.headers["Access-Control-Allow-Headers"] == "content-type, x-prisme-referrer"
    assert response.headers["Access-Control-Max-Age"] == "86400"


async def test_options_without_preflight_headers_is_405(http: HttpClient) -> None:
    response = await http.options("/api/v1/events/pageviews")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize("origin", ["http://localhost", "https://evil.example"])
async def test_event_responses_allow_any_origin(http: HttpClient, origin: str) -> None:
    response = await http.post("/api/v1/events/pageviews", headers=Visit(origin=origin).headers())
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Prisme-Request-Id" in response.headers["Access-Control-Expose-Headers"]


# --- request ids --------------------------------------------------------------------------


async def test_every_response_has_a_request_id(http: HttpClient) -> None:
    ids = set()
    for path in ("/api/v1/healthcheck", "/nowhere", "/api/v1/events/pageviews"):
        response = await http.get(path)
        ids.add(response.headers["X-Prisme-Request-Id"])
    assert len(ids) == 3


async def test_trusted_proxy_request_id_is_kept_and_reaches_the_core_log(
    http: HttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    REFUSALS.close_window()  # the refusal is the first of its window: logged, not summed up
    caplog.set_level(logging.INFO)
    headers = Visit(origin="https://evil.example").headers() | {"X-Request-Id": "req-42.abc"}
    with _request_id_filters():
        response = await http.post("/api/v1/events/pageviews", headers=headers)
    assert response.headers["X-Prisme-Request-Id"] == "req-42.abc"
    core_records = [r for r in caplog.records if r.name == "prisme_core.refusals"]
    assert [r.request_id for r in core_records] == ["req-42.abc"]  # type: ignore[attr-defined]
    assert [line["request_id"] for line in _access_lines(http, caplog)] == ["req-42.abc"]


@pytest.mark.parametrize("incoming", ["x" * 200, "bad id", "<script>", ""])
async def test_invalid_request_ids_are_replaced(http: HttpClient, incoming: str) -> None:
    response = await http.get("/api/v1/healthcheck", headers={"X-Request-Id": incoming})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Prisme-Request-Id"])


async def test_untrusted_peer_cannot_choose_its_request_id(
    aiohttp_client: AiohttpClient, core_target: str
) -> None:
    untrusting = create_app(dataclasses.replace(facade_config(core_target), trust_proxy=False))
    client = await aiohttp_client(untrusting)
    response = await client.get("/api/v1/healthcheck", headers={"X-Request-Id": "mine"})
    assert response.headers["X-Prisme-Request-Id"] != "mine"


async def test_grpc_answers_carry_a_request_id(core_target: str) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        call = pb_grpc.EventServiceStub(channel).CheckHealth(
            pb.CheckHealthRequest(), metadata=(("x-request-id", "grpc-7"),)
        )
        await call
        metadata = dict(await call.initial_metadata() or ())
    assert metadata["x-request-id"] == "grpc-7"


async def test_grpc_callers_without_a_request_id_get_none_back(core_target: str) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        call = pb_grpc.EventServiceStub(channel).CheckHealth(pb.CheckHealthRequest())
        await call
        metadata = dict(await call.initial_metadata() or ())
    assert "x-request-id" not in metadata


def _access_lines(http: HttpClient, caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    assert http.app is not None
    return access_lines(http.app, caplog)


@contextlib.contextmanager
def _request_id_filters() -> Iterator[None]:
    """The façade's and core's request-id filters, as `prisme serve` installs them."""
    filters = [RequestIdFilter(FACADE_REQUEST_ID), RequestIdFilter(CORE_REQUEST_ID)]
    loggers = [logging.getLogger(name) for name in ("prisme_core.refusals", "prisme.access")]
    for logger in loggers:
        for log_filter in filters:
            logger.addFilter(log_filter)
    try:
        yield
    finally:
        for logger in loggers:
            for log_filter in filters:
                logger.removeFilter(log_filter)


# --- HTTP hygiene -------------------------------------------------------------------------


async def raw_request(port: int, data: bytes) -> tuple[int, bytes]:
    """Sends ``data`` as is and returns the status and the body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
        return status, body
    finally:
        writer.close()


def _request(path: str = "/api/v1/healthcheck", *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", *headers, "", ""]
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(_request("/api/v1/healthcheck", "X-Big: " + "a" * 9000), 431,
                     id="header-line-over-8k"),
        pytest.param(_request("/api/v1/healthcheck?" + "a" * 9000), 431,
                     id="request-line-over-8k"),
        pytest.param(_request("/api/v1/healthcheck", *[f"X-H{i}: {'b' * 4000}" for i in range(9)]),
                     431, id="headers-over-32k"),
        pytest.param(_request("/", *[f"X-H{i}: 1" for i in range(200)]), 431,
                     id="too-many-headers"),
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="malformed-request-line"),
        pytest.param(_request("/api/v1/healthcheck", "Bad Header Name: x"), 400,
                     id="malformed-header"),
    ],
)  # fmt: skip
async def test_bad_requests_get_json_errors(facade_port: int, data: bytes, status: int) -> None:
    answer_status, body = await raw_request(facade_port, data)
    assert answer_status == status
    assert b'"error"' in body


async def test_declared_oversized_body_is_413_even_where_the_body_is_ignored(
    facade_port: int,
) -> None:
    data = _request(
        "/api/v1/events/pageviews", "Content-Length: 70000", "Origin: http://localhost",
        method="POST",
    ) + b"x" * 70000  # fmt: skip
    status, body = await raw_request(facade_port, data)
    assert (status, b"body too large" in body) == (413, True)


async def test_chunked_oversized_custom_body_is_413(http: HttpClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 4096

    response = await http.post(
        "/api/v1/events/custom/x",
        headers=Visit().headers() | {"Content-Type": "application/json"},
        data=chunks(),
    )
    assert response.status == 413
    assert (await response.json())["error"] == "body too large"


async def test_wrong_method_and_unknown_path_are_json(http: HttpClient) -> None:
    response = await http.delete("/api/v1/events/custom/x")
    assert (response.status, response.headers["Allow"]) == (405, "POST")
    assert (await response.json())["error"] == "method not allowed"
    response = await http.get("/nope")
    assert response.status == 404
    assert (await response.json())["error"] == "not found"


# --- metrics and access log ---------------------------------------------------------------


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_move(http: HttpClient, aiohttp_client: AiohttpClient) -> None:
    route = {"route": "/api/v1/events/pageviews", "method": "POST", "status": "200"}
    before = {
        "requests": _sample("prisme_http_requests_total", route),
        "accepted": _sample("prisme_events_total", {"kind": "pageview", "outcome": "accepted"}),
        "origin": _sample(
            "prisme_events_total", {"kind": "pageview", "outcome": "origin_not_registered"}
        ),
        "batches": _sample("prisme_store_batch_size_count", {"collection": "pageviews"}),
    }
    assert (await send_http(http, Visit())).ok
    assert not (await send_http(http, Visit(origin="https://evil.example"))).ok
    admin = await aiohttp_client(create_admin_app())
    text = await (await admin.get("/metrics")).text()
    assert 'prisme_http_request_duration_seconds_bucket{le="0.001",method="POST"' in text
    assert "\nprisme_sessions_active " in text
    assert "python_gc_objects_collected_total" in text  # the process's own runtime
    assert _sample("prisme_http_requests_total", route) == before["requests"] + 1
    assert (
        _sample("prisme_events_total", {"kind": "pageview", "outcome": "accepted"})
        == before["accepted"] + 1
    )
    assert (
        _sample("prisme_events_total", {"kind": "pageview", "outcome": "origin_not_registered"})
        == before["origin"] + 1
    )
    assert _sample("prisme_store_batch_size_count", {"collection": "pageviews"}) > before["batches"]
    assert _sample("prisme_sessions_active", {}) >= 1


def test_the_admin_endpoint_sums_the_processes_series() -> None:
    core = (
        "# HELP prisme_events_total Events.\n# TYPE prisme_events_total counter\n"
        'prisme_events_total{kind="pageview",outcome="accepted"} 3.0\n'
        'prisme_events_created{kind="pageview",outcome="accepted"} 20.0\n'
        "# HELP prisme_sessions_active Live.\n# TYPE prisme_sessions_active gauge\n"
        "prisme_sessions_active 2.0\n"
    )
    other = core.replace("3.0", "4.0").replace("20.0", "10.0").replace("2.0", "5.0")
    text = merged(
        [core, other, "# HELP python_info x\n# TYPE python_info gauge\npython_info 1.0\n"]
    )
    lines = text.decode().splitlines()
    assert 'prisme_events_total{kind="pageview",outcome="accepted"} 7.0' in lines
    assert 'prisme_events_created{kind="pageview",outcome="accepted"} 10.0' in lines
    assert "prisme_sessions_active 7.0" in lines
    assert text.decode().count("# TYPE prisme_events_total counter") == 1
    assert "python_info" not in text.decode()  # another process's runtime is not ours


async def test_access_log_has_no_ip_or_user_agent_above_debug(
    http: HttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="prisme.access")
    await send_http(http, Visit(client_ip="8.8.8.8"))
    [fields] = _access_lines(http, caplog)
    assert fields["route"] == "/api/v1/events/pageviews"
    assert fields["status"] == 200
    assert fields["duration_ms"] > 0
    assert "8.8.8.8" not in str(fields)
    assert "Firefox" not in str(fields)
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="prisme.access")
    await send_http(http, Visit(client_ip="8.8.8.8"))
    debug = [r.fields for r in caplog.records if r.levelno == logging.DEBUG]  # type: ignore[attr-defined]
    assert debug == [{"client_ip": "8.8.8.8", "user_agent": Visit().user_agent}]


async def test_custom_event_refusal_is_counted_by_reason(http: HttpClient) -> None:
    labels = {"kind": "custom", "outcome": "session_not_found"}
    before = _sample("prisme_events_total", labels)
    assert not (await send_custom_http(http, Custom("x"))).ok
    assert _sample("prisme_events_total", labels) == before + 1
