"""`MongoEventStore` against the real store daemon: documents, sessions, keys, failures."""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from prisme_core.adapters.mongo import MongoEventStore
from prisme_core.errors import StoreUnavailable
from prisme_core.model import (
    CustomEvent,
    PageView,
    SessionAttributes,
    SessionProgress,
    SessionStart,
)
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import LEAKS_REFUSED_SOCKETS, Document

AT = datetime(2026, 11, 26, 12, 30, 15, 123000, tzinfo=UTC)
PAGEVIEW_FIELDS = {
    "timestamp", "domain", "path", "status", "visitor_id", "session_uuid", "operating_system",
    "browser_family", "device", "referrer_domain", "country_code", "utm_source", "utm_medium",
    "utm_campaign", "utm_term", "utm_content",
}  # fmt: skip
SESSION_FIELDS = (PAGEVIEW_FIELDS - {"timestamp", "path", "status"}) | {
    "entry_path", "exit_path", "entry_timestamp", "exit_timestamp", "pageviews", "device_id",
}  # fmt: skip


def _attributes(**overrides: object) -> SessionAttributes:
    values: dict[str, object] = {
        "session_uuid": uuid.uuid4(),
        "domain": "example.com",
        "visitor_id": "prisme_0123456789ABCDEF",
        "operating_system": "Linux",
        "browser_family": "Firefox",
        "device": "Other",
        "referrer_domain": "direct",
        "country_code": "DE",
        "utm_source": "news",
        "utm_medium": "",
        "utm_campaign": "",
        "utm_term": "",
        "utm_content": "",
    }
    return SessionAttributes(**(values | overrides))  # type: ignore[arg-type]


def _start(device_id: str = "D1", at: datetime = AT, **overrides: object) -> SessionStart:
    return SessionStart(
        device_id=device_id,
        entry_path="/a",
        entry_timestamp=at,
        attributes=_attributes(**overrides),
    )


@pytest.fixture
async def store(mongo_uri: str, database_name: str) -> AsyncIterator[MongoEventStore]:
    store = MongoEventStore.from_uri(mongo_uri, database_name, timeout=2.0)
    await store.ensure_schema()
    yield store
    await store.close()


async def test_ensure_schema_is_idempotent(
    store: MongoEventStore, mongo: AsyncDatabase[Document]
) -> None:
    await store.ensure_schema()
    indexes = {
        collection: {index["name"]: index async for index in await mongo[collection].list_indexes()}
        for collection in ("pageviews", "events_custom", "sessions", "keys")
    }
    # Events are stored once through their _id (their event id), not through an index of theirs.
    assert set(indexes["pageviews"]) == {"_id_", "domain_ts", "session_ts"}
    assert set(indexes["events_custom"]) == {"_id_", "domain_ts"}
    assert indexes["pageviews"]["domain_ts"]["key"] == {"domain": 1, "timestamp": 1}
    assert indexes["pageviews"]["session_ts"]["key"] == {"session_uuid": 1, "timestamp": 1}
    assert indexes["events_custom"]["domain_ts"]["key"] == {"domain": 1, "timestamp": 1}
    assert set(indexes["sessions"]) == {"_id_", "device", "domain_exit"}  # _id: session_uuid
    assert indexes["sessions"]["device"]["key"] == {"device_id": 1, "entry_timestamp": -1}
    assert indexes["sessions"]["domain_exit"]["key"] == {"domain": 1, "exit_timestamp": 1}
    assert indexes["keys"]["expiry"]["expireAfterSeconds"] == 0


async def test_pageview_documents_have_exactly_the_contract_fields(
    store: MongoEventStore, mongo: AsyncDatabase[Document]
) -> None:
    attributes = _attributes()
    await store.insert_pageviews([PageView(timestamp=AT, path="/p", session=attributes)])
    doc = await mongo.pageviews.find_one({}, {"_id": 0})
    assert doc is not None
    assert set(doc) == PAGEVIEW_FIELDS  # sent without an event id
    assert (doc["timestamp"], doc["path"], doc["session_uuid"]) == (
        AT,
        "/p",
        attributes.session_uuid,
    )
    assert isinstance(doc["session_uuid"], uuid.UUID)


async def test_an_event_id_is_the_document_key_and_is_stored_once(
    store: MongoEventStore, mongo: AsyncDatabase[Document]
) -> None:
    event_id = uuid.uuid4()
    first = PageView(timestamp=AT, path="/p", session=_attributes(), event_id=event_id)
    other = PageView(timestamp=AT, path="/q", session=_attributes())
    await store.insert_pageviews([first])
    await store.insert_pageviews([first, other])  # a retry alongside a new one: both "stored"
    docs = await mongo.pageviews.find({}).sort("path").to_list()
    assert [(doc["path"], doc["_id"] == doc.get("event_id")) for doc in docs] == [
        ("/p", True),
        ("/q", False),
    ]
    assert docs[0]["event_id"] == event_id


async def test_a_repeat_counts_as_stored_against_the_event_id_index_of_older_databases(
    store: MongoEventStore, mongo: AsyncDatabase[Document]
) -> None:
    await mongo.pageviews.create_index(
        "event_id", unique=True, partialFilterExpression={"event_id": {"$exists": True}}
    )
    event_id = uuid.uuid4()
    await mongo.pageviews.insert_one({"path": "/old", "event_id": event_id})  # an ObjectId _id
    await store.insert_pageviews(
        [PageView(timestamp=AT, path="/p", session=_attributes(), event_id=event_id)]
    )
    assert await mongo.pageviews.count_documents({"event_id": event_id}) == 1


async def test_a_session_uuid_is_stored_once_and_a_collision_is_a_failure(
    store: MongoEventStore, mongo: AsyncDatabase[Document]
) -> None:
    start = _start()
    await store.insert_sessions([start])
    again = _start(device_id="D2", session_uuid=start.attributes.session_uuid)
    with pytest.raises(StoreUnavailable):
        await store.insert_sessions([again])
    uid = start.attributes.session_uuid
    assert await mongo.sessions.count_documents({"session_uuid": uid}) == 1


async def test_session_documents_have_exactly_the_contract_fields(
    store: MongoEventStore, mongo: AsyncDatabase[Document]
) -> None:
    start = _start()
    await store.insert_sessions([start])
    doc = await mongo.sessions.find_one({})
    assert doc is not None
    assert doc.pop("_id") == start.attributes.session_uuid  # updates find it by primary key
    assert set(doc) == SESSION_FIELDS
    assert (doc["entry_path"], doc["exit_path"], doc["pageviews"]) == ("/a", "/a", 1)
    assert doc["entry_timestamp"] == doc["exit_timestamp"] == AT


async def test_progress_adds_pageviews_and_only_moves_the_exit_forward(
    store: MongoEventStore, mongo: AsyncDatabase[Document]
) -> None:
    start = _start()
    uid = start.attributes.session_uuid
    await store.insert_sessions([start])
    later, earlier = AT + timedelta(seconds=20), AT + timedelta(seconds=10)
    await store.update_sessions([SessionProgress(uid, "/late", later, added=2)])
    await store.update_sessions([SessionProgress(uid, "/early", earlier, added=1)])
    doc = await mongo.sessions.find_one({"session_uuid": uid})
    assert doc is not None
    assert (doc["exit_path"], doc["exit_timestamp"], doc["pageviews"]) == ("/late", later, 4)


async def test_find_sessions_rebuilds_each_exit_from_pageviews(store: MongoEventStore) -> None:
    older, start = _start(at=AT - timedelta(hours=1)), _start()
    ended = _start(at=AT - timedelta(days=3))
    await store.insert_sessions([older, start, ended, _start("D2")])
    views = [
        PageView(timestamp=AT + timedelta(seconds=i), path=f"/p{i}", session=start.attributes)
        for i in range(3)
    ]
    await store.insert_pageviews(views)
    found = await store.find_sessions(["D1", "unknown"], AT - timedelta(days=1), per_device=64)
    assert list(found) == ["D1"]  # a device with none is absent; D2 was not asked about
    newest, earlier = found["D1"]  # most recently begun first; the ended one is not live
    assert (newest.start, earlier.start) == (start, older)
    assert (newest.exit_path, newest.exit_timestamp) == ("/p2", AT + timedelta(seconds=2))
    assert (newest.pageviews, newest.recorded_pageviews) == (3, 1)
    assert (earlier.exit_path, earlier.pageviews) == ("/a", 1)


async def test_active_devices_are_those_of_sessions_that_exit_after_a_time(
    store: MongoEventStore,
) -> None:
    await store.insert_sessions([_start("D1"), _start("D2", at=AT - timedelta(hours=1))])
    assert await store.active_devices(AT - timedelta(minutes=30)) == {"D1"}
    await store.forget_devices(ended_before=AT + timedelta(seconds=1))
    assert await store.active_devices(AT - timedelta(days=1)) == set()  # nothing to find them by


async def test_find_sessions_keeps_each_device_to_its_limit(store: MongoEventStore) -> None:
    """A device with many sessions neither exceeds the limit nor crowds out another's."""
    crowded = [_start("D1", at=AT - timedelta(minutes=i)) for i in range(5)]
    await store.insert_sessions([*crowded, _start("D2", at=AT - timedelta(hours=2))])
    found = await store.find_sessions(["D1", "D2"], AT - timedelta(days=1), per_device=2)
    assert [s.start for s in found["D1"]] == crowded[:2]
    assert len(found["D2"]) == 1


async def test_keys_are_created_once_and_shared(mongo_uri: str, database_name: str) -> None:
    stores = [MongoEventStore.from_uri(mongo_uri, database_name, timeout=2.0) for _ in range(2)]
    expires = AT + timedelta(days=2)
    first = await stores[0].key("salt:2026-11-26", expires)
    assert len(first) == 16
    assert await stores[1].key("salt:2026-11-26", expires) == first
    assert await stores[1].key("salt:2026-11-27", expires) != first
    for store in stores:
        await store.close()


async def test_custom_event_properties_keep_their_types(
    store: MongoEventStore, mongo: AsyncDatabase[Document]
) -> None:
    properties = {"n": 1, "x": 1.5, "s": "é", "z": None, "l": [1, {"a": True}]}
    await store.insert_custom_events(
        [
            CustomEvent(
                timestamp=AT,
                path="/",
                session=_attributes(),
                name="click",
                properties=properties,
            )
        ]
    )
    event = await mongo.events_custom.find_one({}, {"_id": 0})
    assert event is not None
    assert event["properties"] == properties
    assert type(event["properties"]["n"]) is int


async def test_ping_answers_and_a_closed_store_does_not(store: MongoEventStore) -> None:
    started = time.monotonic()
    await store.ping()
    assert time.monotonic() - started < 2.0  # within the store's timeout
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()


OPERATIONS: dict[str, Callable[[MongoEventStore], Awaitable[object]]] = {
    "ping": lambda store: store.ping(),
    "ensure_schema": lambda store: store.ensure_schema(),
    "insert": lambda store: store.insert_sessions([_start()]),
    "find_sessions": lambda store: store.find_sessions(["D1"], AT, per_device=64),
    "active_devices": lambda store: store.active_devices(AT),
    "key": lambda store: store.key("device", None),
}


@LEAKS_REFUSED_SOCKETS
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_unreachable_store_fails_within_the_timeout(operation: str) -> None:
    store = MongoEventStore.from_uri("mongodb://127.0.0.1:1/?retryWrites=false", "x", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await OPERATIONS[operation](store)
    assert time.monotonic() - started < 2.0
    await store.close()
    gc.collect()
