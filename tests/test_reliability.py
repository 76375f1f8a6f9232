"""Nothing acknowledged is ever lost: `prisme serve` under concurrent load while the store goes
away, the service is stopped with SIGTERM or killed with SIGKILL, and across restarts. Each
test counts the event ids answered 200 and looks every one of them up in the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prisme_cli.embedded import EmbeddedStore
from pymongo import AsyncMongoClient

from tests.service import Load, Service, start_service
from tests.support import Document, until

pytestmark = pytest.mark.timeout(120)

RELIABLE = {
    "PRISME_TRUST_PROXY": "true",
    "PRISME_RATE_LIMIT_PER_MINUTE": "1000000",
    "PRISME_MONGODB_DATABASE": "reliability",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    """A store of the test's own, so it can be stopped and started again."""
    store = EmbeddedStore(tmp_path / "store", cache_size="64M")
    store.start()
    yield store
    store.stop()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        if service.process.poll() is None:
            service.kill()


def _start(services: list[Service], store: EmbeddedStore, tmp_path: Path, **env: str) -> Service:
    service = start_service(tmp_path / "serve.log", PRISME_MONGODB_URI=store.uri, **RELIABLE, **env)
    services.append(service)
    return service


async def _stored_ids(store: EmbeddedStore) -> set[str]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(store.uri, uuidRepresentation="standard")
    try:
        docs = await client.reliability.pageviews.find({}, {"event_id": 1}).to_list()
    finally:
        await client.close()
    return {str(doc["event_id"]) for doc in docs}


async def _under_load(service: Service, acknowledged: int) -> tuple[Load, asyncio.Task[None]]:
    """A load running against ``service``, once it has had ``acknowledged`` page views stored."""
    load = Load(service.base)
    task = asyncio.create_task(load.run(concurrency=16))
    await until(lambda: len(load.acknowledged) >= acknowledged, within=30, what="load running")
    return load, task


async def test_sigterm_under_load_loses_nothing(
    store: EmbeddedStore, services: list[Service], tmp_path: Path
) -> None:
    service = _start(services, store, tmp_path)
    load, task = await _under_load(service, 100)
    started = time.monotonic()
    code = await asyncio.to_thread(service.stop)
    stopped_in = time.monotonic() - started
    load.stopped.set()
    await task
    assert code == 0, service.log.read_text()[-3000:]
    assert stopped_in < 10.0
    assert len(load.acknowledged) > 50
    assert 500 not in load.statuses
    assert load.acknowledged <= await _stored_ids(store)


async def test_sigkill_under_load_loses_nothing(
    store: EmbeddedStore, services: list[Service], tmp_path: Path
) -> None:
    service = _start(services, store, tmp_path)
    load, task = await _under_load(service, 100)
    await asyncio.to_thread(service.kill)
    load.stopped.set()
    await task
    assert len(load.acknowledged) > 50
    assert load.acknowledged <= await _stored_ids(store)


async def test_store_outage_is_503_within_the_deadline_and_recovers(
    store: EmbeddedStore, services: list[Service], tmp_path: Path
) -> None:
    deadline = 2.0
    service = _start(services, store, tmp_path, PRISME_MONGODB_TIMEOUT=f"{deadline}s")
    load, task = await _under_load(service, 50)
    await asyncio.to_thread(store.stop)
    outage = len(load.statuses)
    await until(lambda: 503 in load.statuses[outage:], within=deadline * 3, what="503s")
    assert not await _wait_healthy(service.base, within=deadline * 3, healthy=False)
    during = load.statuses[outage:]
    await asyncio.to_thread(store.start)
    recovered = await _wait_healthy(service.base, within=20)
    load.stopped.set()
    await task
    assert recovered
    assert 503 in during
    assert 500 not in load.statuses
    assert max(load.latencies) < deadline + 2.0  # nobody waited past the deadline (+ slack)
    after = Load(service.base)
    await after.run(concurrency=4, limit=20)
    assert set(after.statuses) == {200}  # the service recovered by itself
    stored = await _stored_ids(store)
    assert load.acknowledged <= stored
    assert after.acknowledged <= stored


async def _wait_healthy(base: str, within: float, healthy: bool = True) -> bool:
    """Polls the healthcheck until it says ``healthy`` (or ``within`` passed); the last answer."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{base}/api/v1/healthcheck") as health:
                if (health.status == 200) == healthy or time.monotonic() > deadline:
                    return health.status == 200
            await asyncio.sleep(0.2)


async def test_sessions_continue_across_a_restart_under_load(
    store: EmbeddedStore, services: list[Service], tmp_path: Path
) -> None:
    visitors = [f"{n}.7" for n in range(40)]
    first = _start(services, store, tmp_path)
    await _visit_all(first.base, visitors, path="/landing")
    assert await asyncio.to_thread(first.stop) == 0
    second = _start(services, store, tmp_path)
    await _visit_all(second.base, visitors, path="/next", referrer="http://localhost/landing")
    await _visit_all(second.base, visitors[:1], path="/again")  # a new session, same day
    assert await asyncio.to_thread(second.stop) == 0
    client: AsyncMongoClient[Document] = AsyncMongoClient(store.uri, uuidRepresentation="standard")
    try:
        pageviews = await client.reliability.pageviews.find({}).to_list()
        sessions = await client.reliability.sessions.find({}).to_list()
    finally:
        await client.close()
    continued = [s for s in sessions if s["entry_path"] == "/landing"]
    assert len(pageviews) == 2 * len(visitors) + 1
    assert len(continued) == len(visitors)  # every second page view continued its session
    assert {s["pageviews"] for s in continued} == {2}
    assert {s["exit_path"] for s in continued} == {"/next"}
    [again] = [s for s in sessions if s["entry_path"] == "/again"]
    [before] = [s for s in continued if s["device_id"] == again["device_id"]]
    assert again["visitor_id"] == before["visitor_id"]  # the day's salt survived the restart


async def _visit_all(base: str, visitors: list[str], path: str, referrer: str = "") -> None:
    load = Load(base)
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(
            *(load.one(http, visitor=v, path=path, referrer=referrer) for v in visitors)
        )
    assert set(load.statuses) == {200}
