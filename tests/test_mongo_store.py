"""`MongoEventStore` against the real store daemon."""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from prisme_core.adapters.mongo import MongoEventStore
from prisme_core.errors import StoreUnavailable
from prisme_core.model import CustomEvent, PageView
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import Document


@pytest.fixture
async def store(mongo_uri: str, database_name: str) -> MongoEventStore:
    return MongoEventStore.from_uri(mongo_uri, database_name, timeout=2.0)


async def test_ensure_schema_is_idempotent(
    store: MongoEventStore, mongo: AsyncDatabase[Document]
) -> None:
    await store.ensure_schema()
    await store.ensure_schema()
    indexes = {
        collection: {index["name"]: index async for index in await mongo[collection].list_indexes()}
        for collection in ("pageviews", "events_custom", "sessions")
    }
    assert indexes["pageviews"]["domain_ts"]["key"] == {"domain": 1, "timestamp": 1}
    assert indexes["events_custom"]["domain_ts"]["key"] == {"domain": 1, "timestamp": 1}
    assert indexes["sessions"]["session_uuid"]["unique"] is True
    await store.close()


async def test_inserted_events_round_trip(
    store: MongoEventStore, mongo: AsyncDatabase[Document]
) -> None:
    at = datetime(2026, 11, 26, 12, 30, 15, 123000, tzinfo=UTC)
    await store.insert_pageviews(
        [PageView(timestamp=at, domain="example.com", path=f"/p{i}") for i in range(3)]
    )
    await store.insert_custom_events(
        [
            CustomEvent(
                timestamp=at,
                domain="example.com",
                path="/",
                name="click",
                properties={"n": 1, "x": 1.5, "s": "é", "z": None, "l": [1, {"a": True}]},
            )
        ]
    )
    pageviews = await mongo.pageviews.find({}, {"_id": 0}).sort("path").to_list()
    assert pageviews == [
        {"timestamp": at, "domain": "example.com", "path": f"/p{i}"} for i in range(3)
    ]
    event = await mongo.events_custom.find_one({}, {"_id": 0})
    assert event is not None
    assert event["properties"] == {"n": 1, "x": 1.5, "s": "é", "z": None, "l": [1, {"a": True}]}
    assert type(event["properties"]["n"]) is int
    await store.close()


async def test_ping_answers(store: MongoEventStore) -> None:
    await store.ping()
    await store.close()


OPERATIONS: dict[str, Callable[[MongoEventStore], Awaitable[None]]] = {
    "ping": lambda store: store.ping(),
    "ensure_schema": lambda store: store.ensure_schema(),
    "insert": lambda store: store.insert_pageviews(
        [PageView(timestamp=datetime.now(UTC), domain="d", path="/")]
    ),
}


# PyMongo's asyncio client leaves the socket of a refused connection to the garbage collector
# (mongodb/mongo-python-driver PYTHON-3923); collect it here so the warning is this test's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_unreachable_store_fails_within_the_timeout(operation: str) -> None:
    store = MongoEventStore.from_uri("mongodb://127.0.0.1:1/?retryWrites=false", "x", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await OPERATIONS[operation](store)
    assert time.monotonic() - started < 2.0
    await store.close()
    gc.collect()
