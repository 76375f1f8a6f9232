"""`SendEvents` as one pass over its events: deadlines, withdrawal, retries within a batch and
across the waiting and the immediate path."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from prisme_client import PageView, PrismeClient
from prisme_core.adapters.memory import GatedEventStore
from prisme_core.adapters.useragents import UserAgentsParser
from prisme_core.server import CoreDeps, CoreServer, create_server
from prisme_core.settings import Settings
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import changed
from tests.support import FIREFOX, Document
from tests.transports import TOKEN

DEADLINE = 0.5


@pytest.fixture
async def gated(
    settings: Settings, user_agents: UserAgentsParser
) -> AsyncIterator[tuple[CoreServer, GatedEventStore]]:
    store = GatedEventStore()
    settings = changed(settings, "store", timeout=DEADLINE)
    server = create_server(settings, CoreDeps(store=store, agents=user_agents), "127.0.0.1:0")
    await server.start()
    yield server, store
    store.gate.set()
    await server.stop(grace=1)


def _views(count: int, path: str) -> list[PageView]:
    return [
        PageView(f"http://localhost{path}", "http://localhost", FIREFOX, f"81.2.3.{i + 1}")
        for i in range(count)
    ]


async def test_events_queued_past_the_deadline_are_refused_and_never_written(
    gated: tuple[CoreServer, GatedEventStore],
) -> None:
    server, store = gated
    port = server.port  # no retries: the answer itself is what this test reads
    async with PrismeClient(f"127.0.0.1:{port}", token=TOKEN, timeout=10, retries=0) as client:
        assert await client.send_events(_views(2, "/warm")) == [None, None]
        store.gate.clear()
        in_flight = asyncio.create_task(client.send_events(_views(3, "/in-flight")))
        await store.held()  # that batch is being written (the gate holds it)
        started = time.monotonic()
        queued = await client.send_events(_views(4, "/queued"))
        waited = time.monotonic() - started
        store.gate.set()
        await in_flight
    assert [error.reason if error else None for error in queued] == ["STORE_UNAVAILABLE"] * 4
    assert DEADLINE - 0.05 < waited < DEADLINE + 0.5
    await server.flush()  # were they still queued, they would be written now
    assert not [p for p in store.pageviews if p.path == "/queued"]  # 503 meant not stored


async def test_repeats_of_an_event_id_in_one_batch_are_stored_once(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    event_id = str(uuid.uuid4())
    view = PageView("http://localhost/a", "http://localhost", FIREFOX, "81.2.3.4", None, event_id)
    async with PrismeClient(core_target, token=TOKEN) as client:
        assert await client.send_events([view, view, view]) == [None, None, None]
        assert await client.send_events([view]) == [None]
    assert await mongo.pageviews.count_documents({"event_id": uuid.UUID(event_id)}) == 1


async def test_a_batch_mixing_new_sessions_and_navigation_keeps_each_device_apart(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    """The first page views of a batch begin sessions that later ones in it continue."""
    views = [
        PageView("http://localhost/a", "http://localhost", FIREFOX, f"81.2.3.{device}",
                 "http://localhost/x" if step else None)
        for step in range(3)
        for device in (1, 2)
    ]  # fmt: skip
    async with PrismeClient(core_target, token=TOKEN) as client:
        assert await client.send_events(views) == [None] * 6
    sessions = await mongo.pageviews.distinct("session_uuid")
    assert len(sessions) == 2
