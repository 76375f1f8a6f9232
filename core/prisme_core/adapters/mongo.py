"""`MongoEventStore`: the `EventStore` port on PyMongo's native asyncio client.

Every operation is bounded by the configured timeout (PyMongo's client-side operation timeout,
``timeoutMS``), so a dead or slow server gives `StoreUnavailable` within that bound instead of
the driver's 30 s server selection. PyMongo exceptions never leave this module.

Must not import grpc or aiohttp.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.errors import PyMongoError

from prisme_core.errors import StoreUnavailable
from prisme_core.model import CustomEvent, PageView

logger = logging.getLogger(__name__)

PAGEVIEWS: Final = "pageviews"
EVENTS_CUSTOM: Final = "events_custom"
SESSIONS: Final = "sessions"

INDEXES: Final[dict[str, list[IndexModel]]] = {
    PAGEVIEWS: [IndexModel([("domain", ASCENDING), ("timestamp", ASCENDING)], name="domain_ts")],
    EVENTS_CUSTOM: [
        IndexModel([("domain", ASCENDING), ("timestamp", ASCENDING)], name="domain_ts")
    ],
    SESSIONS: [IndexModel([("session_uuid", ASCENDING)], name="session_uuid", unique=True)],
}

Document = dict[str, Any]


def to_document(event: PageView | CustomEvent) -> Document:
    """The BSON document of ``event``: its dataclass fields, by name."""
    return {field.name: getattr(event, field.name) for field in dataclasses.fields(event)}


@contextmanager
def map_pymongo_errors(operation: str) -> Iterator[None]:
    """Turns any PyMongo failure into `StoreUnavailable`, keeping the cause."""
    try:
        yield
    except PyMongoError as exc:
        logger.warning("store %s failed: %s", operation, exc)
        raise StoreUnavailable(f"the event store failed to {operation}") from exc


class MongoEventStore:
    """Stores events in one MongoDB database."""

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self._client = client
        self._db = client[database]

    @classmethod
    def from_uri(cls, uri: str, database: str, timeout: float) -> MongoEventStore:
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
        return cls(client, database)

    async def ensure_schema(self) -> None:
        with map_pymongo_errors("create indexes"):
            for collection, indexes in INDEXES.items():
                await self._db[collection].create_indexes(indexes)

    async def insert_pageviews(self, pageviews: Sequence[PageView]) -> None:
        await self._insert(PAGEVIEWS, pageviews)

    async def insert_custom_events(self, events: Sequence[CustomEvent]) -> None:
        await self._insert(EVENTS_CUSTOM, events)

    async def _insert(self, collection: str, events: Sequence[PageView | CustomEvent]) -> None:
        if not events:
            return
        with map_pymongo_errors(f"insert into {collection}"):
            await self._db[collection].insert_many(
                [to_document(event) for event in events], ordered=False
            )

    async def ping(self) -> None:
        with map_pymongo_errors("answer ping"):
            await self._db.command("ping")

    async def close(self) -> None:
        await self._client.close()
