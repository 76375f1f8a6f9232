"""`MongoEventStore`: the `EventStore` port on PyMongo's native asyncio client.

Every operation is bounded by the configured timeout (PyMongo's client-side operation timeout,
``timeoutMS``), so a dead or slow server gives `StoreUnavailable` within that bound instead of
the driver's 30 s server selection. PyMongo exceptions never leave this module.

Collections: ``pageviews``, ``sessions``, ``events_custom``, ``outbound_link_clicks``,
``file_downloads`` and ``engagements`` (the contract's documents), and
``keys`` (the daily salts and device keys, forgotten by a TTL index).

Must not import grpc or aiohttp.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from bson.binary import Binary
from pymongo import (
    ASCENDING,
    DESCENDING,
    AsyncMongoClient,
    DeleteOne,
    IndexModel,
    ReturnDocument,
    UpdateOne,
)
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from prisme_core.adapters.hours import uncounted
from prisme_core.errors import StoreUnavailable
from prisme_core.metrics import STORE_ERRORS
from prisme_core.model import (
    Click,
    CustomEvent,
    Engagement,
    PageView,
    SessionAttributes,
    SessionProgress,
    SessionStart,
    StoredSession,
)
from prisme_core.writes import WriteCount

logger = logging.getLogger(__name__)

PAGEVIEWS: Final = "pageviews"
EVENTS_CUSTOM: Final = "events_custom"
OUTBOUND_LINK_CLICKS: Final = "outbound_link_clicks"
FILE_DOWNLOADS: Final = "file_downloads"
ENGAGEMENTS: Final = "engagements"
SESSIONS: Final = "sessions"
KEYS: Final = "keys"
HOURS: Final = "pageview_hours"
HOURS_DONE: Final = "pageview_hours_done"
"""The stats' page views counted per domain, hour and path (`mongo_rollups`), written by reads."""
DUPLICATE_KEY: Final = 11000

INDEXES: Final[dict[str, list[IndexModel]]] = {
    PAGEVIEWS: [
        IndexModel([("domain", ASCENDING), ("timestamp", ASCENDING)], name="domain_ts"),
        IndexModel([("session_uuid", ASCENDING), ("timestamp", ASCENDING)], name="session_ts"),
    ],
    EVENTS_CUSTOM: [
        IndexModel([("domain", ASCENDING), ("timestamp", ASCENDING)], name="domain_ts"),
    ],
    OUTBOUND_LINK_CLICKS: [
        IndexModel([("domain", ASCENDING), ("timestamp", ASCENDING)], name="domain_ts"),
    ],
    FILE_DOWNLOADS: [
        IndexModel([("domain", ASCENDING), ("timestamp", ASCENDING)], name="domain_ts"),
    ],
    ENGAGEMENTS: [
        IndexModel([("domain", ASCENDING), ("timestamp", ASCENDING)], name="domain_ts"),
    ],
    # A session's _id is its session_uuid, so the primary key keeps it unique: a second unique
    # index would be rewritten by every progress update (docs/performance.md).
    SESSIONS: [
        IndexModel([("device_id", ASCENDING), ("entry_timestamp", DESCENDING)], name="device"),
        # the stats' sessions of a domain that overlap a range (they end after its start); the
        # stats' page views use domain_ts (docs/performance.md, "The stats API")
        IndexModel([("domain", ASCENDING), ("exit_timestamp", ASCENDING)], name="domain_exit"),
    ],
    KEYS: [IndexModel([("expires_at", ASCENDING)], name="expiry", expireAfterSeconds=0)],
    HOURS: [IndexModel([("domain", ASCENDING), ("hour", ASCENDING)], name="domain_hour")],
    HOURS_DONE: [IndexModel([("domain", ASCENDING), ("hour", ASCENDING)], name="domain_hour")],
}

Document = dict[str, Any]

ATTRIBUTE_FIELDS: Final = tuple(SessionAttributes.__dataclass_fields__)


def _attributes(attributes: SessionAttributes) -> Document:
    document = {name: getattr(attributes, name) for name in ATTRIBUTE_FIELDS}
    document["session_uuid"] = _session_key(attributes.session_uuid)
    return document


@functools.lru_cache(maxsize=65536)
def _session_key(session_uuid: UUID) -> Binary:
    """A session id as the driver writes a UUID (binary subtype 4), made once per session: the
    encoder converts a `UUID` object on every write, and copies a `Binary` as it is."""
    return Binary.from_uuid(session_uuid)


def pageview_document(pageview: PageView) -> Document:
    document = {"timestamp": pageview.timestamp, "path": pageview.path, "status": pageview.status}
    return document | _attributes(pageview.session) | _event_id(pageview.event_id)


def _event_id(event_id: UUID | None) -> Document:
    # An event's id is its document's key: the primary key stores it at most once, with no
    # index of its own (on the embedded store a unique index costs every insert about a third
    # more). Events sent without one get the driver's ObjectId.
    if event_id is None:
        return {}
    key = Binary.from_uuid(event_id)  # once for both fields (see `_session_key`)
    return {"_id": key, "event_id": key}


def session_document(start: SessionStart) -> Document:
    # Keyed by its session id: the primary key keeps session_uuid unique, and the write-behind
    # updates find the document through it.
    return (
        {"_id": _session_key(start.attributes.session_uuid)}
        | _attributes(start.attributes)
        | {
            "entry_path": start.entry_path,
            "exit_path": start.entry_path,
            "entry_timestamp": start.entry_timestamp,
            "exit_timestamp": start.entry_timestamp,
            "pageviews": 1,
            "device_id": start.device_id,
        }
    )


def custom_event_document(event: CustomEvent) -> Document:
    return {
        "timestamp": event.timestamp,
        "domain": event.domain,
        "path": event.path,
        "visitor_id": event.visitor_id,
        "session_uuid": event.session_uuid,
        "name": event.name,
        "properties": event.properties,
    } | _event_id(event.event_id)


def click_document(click: Click, field: str) -> Document:
    """A click, its target under ``field`` (``link`` or ``url``)."""
    return {
        "timestamp": click.timestamp,
        "domain": click.session.domain,
        "path": click.path,
        "visitor_id": click.session.visitor_id,
        "session_uuid": click.session.session_uuid,
        field: click.target,
    } | _event_id(click.event_id)


def engagement_document(report: Engagement) -> Document:
    return {
        "timestamp": report.timestamp,
        "domain": report.session.domain,
        "path": report.path,
        "visitor_id": report.session.visitor_id,
        "session_uuid": report.session.session_uuid,
        "pageview_id": report.pageview_id,
        "engaged_ms": report.engaged_ms,
        "scroll_depth": report.scroll_depth,
    } | _event_id(report.event_id)


def progress_update(progress: SessionProgress) -> UpdateOne:
    """Adds the page views and moves the exit forward only: safe in any order, from any
    instance."""
    later = {"$gte": [progress.exit_timestamp, "$exit_timestamp"]}
    changes: Document = {
        "pageviews": {"$add": ["$pageviews", progress.added]},
        "exit_path": {"$cond": [later, progress.exit_path, "$exit_path"]},
        "exit_timestamp": {"$max": ["$exit_timestamp", progress.exit_timestamp]},
    }
    if progress.device_id is not None:  # found under the day's device key from now on
        changes["device_id"] = {"$literal": progress.device_id}
    if progress.visitor_id is not None:  # the site's own id, given on a later page view
        changes["visitor_id"] = {"$literal": progress.visitor_id}
    return UpdateOne({"_id": progress.session_uuid}, [{"$set": changes}])


EVENT_ID_KEYS: Final = frozenset({"_id", "event_id"})
"""What a repeated event id collides on: its ``_id``, or the unique ``event_id`` index that
databases written by earlier versions still have."""


def _only_repeated_event_ids(error: BulkWriteError) -> bool:
    """Whether every failed insert is a retry of an event id the store already holds."""
    failures = error.details.get("writeErrors", [])
    return (
        bool(failures)
        and all(
            failure.get("code") == DUPLICATE_KEY
            and not EVENT_ID_KEYS.isdisjoint(failure.get("keyPattern", {}))
            for failure in failures
        )
        and not error.details.get("writeConcernErrors")
    )


@contextmanager
def map_pymongo_errors(operation: str) -> Iterator[None]:
    """Turns any PyMongo failure into `StoreUnavailable`, keeping the cause."""
    try:
        yield
    except PyMongoError as exc:
        STORE_ERRORS.labels(operation.split(" ", 1)[0]).inc()
        logger.warning("store failed to %s: %s", operation, exc)
        raise StoreUnavailable(f"the event store failed to {operation}") from exc


class MongoEventStore:
    """Stores events in one MongoDB database."""

    def __init__(
        self, client: AsyncMongoClient[Document], database: str, writes: WriteCount | None = None
    ) -> None:
        self._client = client
        self._db = client[database]
        self.writes = writes or WriteCount()
        """Writes begun (by this process, or every core sharing the count): while the total
        stays the same, what is stored did too."""

    @classmethod
    def from_uri(
        cls, uri: str, database: str, timeout: float, writes: WriteCount | None = None
    ) -> MongoEventStore:
        """Creates the store without any I/O; the client connects on first use."""
        timeout_ms = int(timeout * 1000)
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            uri,
            uuidRepresentation="standard",
            tz_aware=True,
            timeoutMS=timeout_ms,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            appname="prisme",
        )
        return cls(client, database, writes)

    @property
    def database(self) -> AsyncDatabase[Document]:
        return self._db

    async def ensure_schema(self) -> None:
        with map_pymongo_errors("create indexes"):
            for collection, indexes in INDEXES.items():
                await self._db[collection].create_indexes(indexes)

    async def insert_pageviews(self, pageviews: Sequence[PageView]) -> None:
        """Inserts the page views; the hours the stats counted that backdated ones land in
        are counted again."""
        await self._insert(PAGEVIEWS, [pageview_document(p) for p in pageviews], events=True)
        late = uncounted(((p.session.domain, p.timestamp) for p in pageviews), datetime.now(UTC))
        if late:
            with map_pymongo_errors(f"uncount {len(late)} hours"):
                await self._db[HOURS_DONE].bulk_write([DeleteOne({"_id": m}) for m in late])

    async def insert_sessions(self, sessions: Sequence[SessionStart]) -> None:
        await self._insert(SESSIONS, [session_document(s) for s in sessions], events=False)

    async def insert_custom_events(self, events: Sequence[CustomEvent]) -> None:
        await self._insert(EVENTS_CUSTOM, [custom_event_document(e) for e in events], events=True)

    async def insert_outbound_links(self, clicks: Sequence[Click]) -> None:
        documents = [click_document(c, "link") for c in clicks]
        await self._insert(OUTBOUND_LINK_CLICKS, documents, events=True)

    async def insert_file_downloads(self, clicks: Sequence[Click]) -> None:
        documents = [click_document(c, "url") for c in clicks]
        await self._insert(FILE_DOWNLOADS, documents, events=True)

    async def insert_engagements(self, reports: Sequence[Engagement]) -> None:
        documents = [engagement_document(r) for r in reports]
        await self._insert(ENGAGEMENTS, documents, events=True)

    async def _insert(self, collection: str, documents: list[Document], *, events: bool) -> None:
        """Inserts ``documents``; for ``events``, one whose event id is already stored counts
        as stored."""
        if not documents:
            return
        self.writes.add()
        with map_pymongo_errors(f"insert into {collection}"):
            try:
                await self._db[collection].insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                if not (events and _only_repeated_event_ids(exc)):
                    raise
                # The other documents were inserted; the repeated ones already were.

    async def update_sessions(self, progress: Sequence[SessionProgress]) -> None:
        if not progress:
            return
        self.writes.add()
        with map_pymongo_errors("update sessions"):
            await self._db[SESSIONS].bulk_write(
                [progress_update(p) for p in progress], ordered=False
            )

    async def active_devices(self, active_after: datetime) -> set[str]:
        with map_pymongo_errors("find active devices"):
            found = self._db[SESSIONS].find(
                {"exit_timestamp": {"$gt": active_after}, "device_id": {"$exists": True}},
                {"_id": 0, "device_id": 1},
            )
            return {doc["device_id"] async for doc in found}

    async def forget_devices(self, ended_before: datetime) -> None:
        with map_pymongo_errors("forget device ids"):
            await self._db[SESSIONS].update_many(
                {"exit_timestamp": {"$lt": ended_before}, "device_id": {"$exists": True}},
                {"$unset": {"device_id": ""}},
            )

    async def find_sessions(
        self, device_ids: Sequence[str], active_after: datetime, per_device: int
    ) -> dict[str, list[StoredSession]]:
        """One query for every device (several when one device's sessions would crowd out the
        others'), then each session's exit rebuilt from its page views."""
        live = {"exit_timestamp": {"$gt": active_after}}
        newest = [("entry_timestamp", DESCENDING)]
        limit = per_device * len(device_ids)
        with map_pymongo_errors("find sessions"):
            sessions = self._db[SESSIONS]
            docs = await sessions.find(
                {"device_id": {"$in": list(device_ids)}} | live, sort=newest, limit=limit
            ).to_list()
            if len(docs) == limit and len(device_ids) > 1:
                docs = []
                for device_id in device_ids:
                    docs += await sessions.find(
                        {"device_id": device_id} | live, sort=newest, limit=per_device
                    ).to_list()
            found: dict[str, list[StoredSession]] = {}
            for doc in docs:
                mine = found.setdefault(doc["device_id"], [])
                if len(mine) < per_device:
                    mine.append(await self._rebuilt(doc))
        return found

    async def _rebuilt(self, doc: Document) -> StoredSession:
        """The session of ``doc``, its exit and count rebuilt from its page views: progress
        is written behind, so after a crash (or from another instance) the document lags."""
        by_session = {"session_uuid": doc["session_uuid"]}
        last = await self._db[PAGEVIEWS].find_one(
            by_session, {"timestamp": 1, "path": 1}, sort=[("timestamp", DESCENDING)]
        )
        count = await self._db[PAGEVIEWS].count_documents(by_session)
        exit_path, exit_timestamp = doc["exit_path"], doc["exit_timestamp"]
        if last is not None and last["timestamp"] > exit_timestamp:
            exit_path, exit_timestamp = last["path"], last["timestamp"]
        start = SessionStart(
            device_id=doc["device_id"],
            entry_path=doc["entry_path"],
            entry_timestamp=doc["entry_timestamp"],
            attributes=SessionAttributes(**{name: doc[name] for name in ATTRIBUTE_FIELDS}),
        )
        return StoredSession(
            start=start,
            exit_path=exit_path,
            exit_timestamp=exit_timestamp,
            pageviews=max(count, doc["pageviews"]),
            recorded_pageviews=doc["pageviews"],
        )

    async def key(self, name: str, expires_at: datetime | None) -> bytes:
        fresh: Document = {"key": os.urandom(16)}
        if expires_at is not None:
            fresh["expires_at"] = expires_at
        with map_pymongo_errors(f"read key {name}"):
            try:
                doc = await self._db[KEYS].find_one_and_update(
                    {"_id": name},
                    {"$setOnInsert": fresh},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:  # another instance created it at the same moment
                doc = await self._db[KEYS].find_one({"_id": name})
        if doc is None:
            raise StoreUnavailable(f"key {name} vanished")
        return bytes(doc["key"])

    async def ping(self) -> None:
        with map_pymongo_errors("answer ping"):
            await self._db.command("ping")

    async def close(self) -> None:
        await self._client.close()
