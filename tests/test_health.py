"""Health through HTTP and gRPC, reflection, and answers while the store or core is down."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_cli.embedded import EmbeddedStore
from prisme_core.adapters.mongo import MongoEventStore
from prisme_core.server import CoreDeps, CoreServer, create_server
from prisme_core.settings import Settings, StoreSettings
from prisme_http.app import create_app

from tests.conftest import facade_config
from tests.support import LEAKS_REFUSED_SOCKETS, AiohttpClient, HttpClient

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_http_healthcheck_is_200_when_all_answer(http: HttpClient) -> None:
    response = await http.get("/api/v1/healthcheck")
    assert response.status == 200
    assert (await response.json())["storePingMs"] >= 0


async def test_grpc_check_health_answers(core_target: str) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        response = await pb_grpc.EventServiceStub(channel).CheckHealth(pb.CheckHealthRequest())
    assert response.store_ping_ms >= 0


@pytest.mark.parametrize("service", ["", "prisme.v1.EventService"])
async def test_standard_health_service_is_serving(core_target: str, service: str) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    assert response.status == SERVING


async def test_reflection_lists_the_event_service(core_target: str) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="prisme.v1.EventService"),
        ]
        responses = [response async for response in stub.ServerReflectionInfo(iter(requests))]
    services = {s.name for s in responses[0].list_services_response.service}
    assert {"prisme.v1.EventService", "grpc.health.v1.Health"} <= services
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in responses[1].file_descriptor_response.file_descriptor_proto
    ]
    methods = {
        method.name
        for file in files
        for service in file.service
        if service.name == "EventService"
        for method in service.method
    }
    assert methods == {
        "SendPageView", "SendCustomEvent", "SendOutboundLink", "SendFileDownload", "CheckHealth",
        "SendEvents", "SendEngagement",
    }  # fmt: skip


async def test_healthcheck_is_503_fast_when_core_is_down(aiohttp_client: AiohttpClient) -> None:
    config = dataclasses.replace(facade_config("127.0.0.1:1"), health_timeout=2.0)
    client = await aiohttp_client(create_app(config))
    started = time.monotonic()
    response = await client.get("/api/v1/healthcheck")
    assert response.status == 503
    assert time.monotonic() - started < 2.5
    assert (await response.json())["error"] == "unavailable"


@pytest.fixture
async def own_store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    """A store of this test's own, so it can be stopped and started again."""
    store = EmbeddedStore(tmp_path, cache_size="64M")
    await asyncio.to_thread(store.start)
    yield store
    await asyncio.to_thread(store.stop)


@pytest.fixture
async def core_on_own_store(own_store: EmbeddedStore) -> AsyncIterator[CoreServer]:
    settings = Settings(store=StoreSettings(timeout=1.0))
    store = MongoEventStore.from_uri(own_store.uri, "health", settings.store.timeout)
    server = create_server(settings, CoreDeps(store=store), address="127.0.0.1:0")
    await server.start()
    yield server
    await server.stop(grace=0)
    gc.collect()  # the driver's refused sockets (see LEAKS_REFUSED_SOCKETS) are this test's


@LEAKS_REFUSED_SOCKETS
@pytest.mark.timeout(90)
async def test_store_outage_gives_503_fast_and_recovers(
    aiohttp_client: AiohttpClient, own_store: EmbeddedStore, core_on_own_store: CoreServer
) -> None:
    target = f"127.0.0.1:{core_on_own_store.port}"
    config = facade_config(target, Settings())  # no token, as its core
    client = await aiohttp_client(create_app(config))
    assert (await client.get("/api/v1/healthcheck")).status == 200

    await asyncio.to_thread(own_store.stop)
    started = time.monotonic()
    # The store's health is reused for up to a second; then the ping's own timeout (1 s).
    while (response := await client.get("/api/v1/healthcheck")).status == 200:
        assert time.monotonic() - started < 1.5
    assert response.status == 503
    assert time.monotonic() - started < 3.0
    assert (await response.json())["error"] == "store unavailable"
    await _wait_for_health(target, NOT_SERVING)

    await asyncio.to_thread(own_store.start)
    await _wait_for_health(target, SERVING)
    assert (await client.get("/api/v1/healthcheck")).status == 200


async def _wait_for_health(target: str, expected: int, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            response = await stub.Check(health_pb2.HealthCheckRequest())
            if response.status == expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert response.status == expected
