"""`InMemoryEventStore`: the `EventStore` port in memory, for pure pipeline unit tests and for
the bench's service ceiling (``PRISME_BENCH_MEMORY_STORE``); and `GatedEventStore`, the same
with its writes held at a gate, for tests of a slow store.

It keeps the real adapter's promises: a failed call (``available = False``) raises
`StoreUnavailable` and stores nothing; sessions are found by device id with their exit
rebuilt from their page views.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from prisme_core.errors import StoreUnavailable
from prisme_core.model import (
    Click,
    CustomEvent,
    Engagement,
    PageView,
    SessionProgress,
    SessionStart,
    StoredSession,
)


class InMemoryEventStore:
    def __init__(self) -> None:
        self.pageviews: list[PageView] = []
        self._views: dict[object, list[PageView]] = {}
        """The page views of each session, by its id."""
        self.sessions: dict[object, StoredSession] = {}
        self.custom_events: list[CustomEvent] = []
        self.outbound_links: list[Click] = []
        self.file_downloads: list[Click] = []
        self.engagements: list[Engagement] = []
        self.keys: dict[str, bytes] = {}
        self.available = True
        self.lookups = 0
        """Calls of `find_sessions`."""

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable()

    async def ensure_schema(self) -> None:
        self._check()

    async def insert_pageviews(self, pageviews: Sequence[PageView]) -> None:
        self._check()
        self.pageviews.extend(pageviews)
        for pageview in pageviews:
            self._views.setdefault(pageview.session.session_uuid, []).append(pageview)

    async def insert_sessions(self, sessions: Sequence[SessionStart]) -> None:
        self._check()
        for start in sessions:
            self.sessions[start.attributes.session_uuid] = StoredSession(
                start=start,
                exit_path=start.entry_path,
                exit_timestamp=start.entry_timestamp,
                pageviews=1,
                recorded_pageviews=1,
            )

    async def update_sessions(self, progress: Sequence[SessionProgress]) -> None:
        self._check()
        for update in progress:
            stored = self.sessions.get(update.session_uuid)
            if stored is None:
                continue
            moved = update.exit_timestamp >= stored.exit_timestamp
            if update.device_id is not None:
                stored = replace(stored, start=replace(stored.start, device_id=update.device_id))
            if update.visitor_id is not None:
                attributes = replace(stored.start.attributes, visitor_id=update.visitor_id)
                stored = replace(stored, start=replace(stored.start, attributes=attributes))
            self.sessions[update.session_uuid] = replace(
                stored,
                exit_path=update.exit_path if moved else stored.exit_path,
                exit_timestamp=max(update.exit_timestamp, stored.exit_timestamp),
                pageviews=stored.pageviews + update.added,
                recorded_pageviews=stored.recorded_pageviews + update.added,
            )

    async def find_sessions(
        self, device_ids: Sequence[str], active_after: datetime, per_device: int
    ) -> dict[str, list[StoredSession]]:
        self._check()
        self.lookups += 1
        found: dict[str, list[StoredSession]] = {}
        for device_id in device_ids:
            mine = [
                s
                for s in self.sessions.values()
                if s.start.device_id == device_id and s.exit_timestamp > active_after
            ]
            mine.sort(key=lambda s: s.start.entry_timestamp, reverse=True)
            if mine:
                found[device_id] = [self._rebuilt(s) for s in mine[:per_device]]
        return found

    def _rebuilt(self, stored: StoredSession) -> StoredSession:
        uuid = stored.start.attributes.session_uuid
        views = self._views.get(uuid, [])
        last = max(views, key=lambda p: p.timestamp, default=None)
        if last is not None and last.timestamp > stored.exit_timestamp:
            stored = replace(stored, exit_path=last.path, exit_timestamp=last.timestamp)
        return replace(stored, pageviews=max(len(views), stored.recorded_pageviews))

    async def insert_custom_events(self, events: Sequence[CustomEvent]) -> None:
        self._check()
        self.custom_events.extend(events)

    async def insert_outbound_links(self, clicks: Sequence[Click]) -> None:
        self._check()
        self.outbound_links.extend(clicks)

    async def insert_file_downloads(self, clicks: Sequence[Click]) -> None:
        self._check()
        self.file_downloads.extend(clicks)

    async def insert_engagements(self, reports: Sequence[Engagement]) -> None:
        self._check()
        self.engagements.extend(reports)

    async def active_devices(self, active_after: datetime) -> set[str]:
        self._check()
        live = (s for s in self.sessions.values() if s.exit_timestamp > active_after)
        return {s.start.device_id for s in live if s.start.device_id}

    async def forget_devices(self, ended_before: datetime) -> None:
        self._check()
        for key, stored in self.sessions.items():
            if stored.exit_timestamp < ended_before:
                start = replace(stored.start, device_id="")
                self.sessions[key] = replace(stored, start=start)

    async def key(self, name: str, expires_at: datetime | None) -> bytes:
        self._check()
        return self.keys.setdefault(name, os.urandom(16))

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        return None


class GatedEventStore(InMemoryEventStore):
    """Event writes (page views, sessions, custom events) wait while ``gate`` is closed.

    `held` returns once writes wait at the closed gate, so a test waits for that event, not
    for time: "taken, and waiting for the store" is a fact, not a guess."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self._waiting = 0
        self._arrived = asyncio.Event()

    async def held(self, writes: int = 1) -> None:
        """Returns once at least ``writes`` writes wait at the gate."""
        while self._waiting < writes:
            self._arrived.clear()
            await self._arrived.wait()

    async def _pass(self) -> None:
        self._waiting += 1
        self._arrived.set()
        try:
            await self.gate.wait()
        finally:
            self._waiting -= 1

    async def insert_pageviews(self, pageviews: Sequence[PageView]) -> None:
        await self._pass()
        await super().insert_pageviews(pageviews)

    async def insert_sessions(self, sessions: Sequence[SessionStart]) -> None:
        await self._pass()
        await super().insert_sessions(sessions)

    async def insert_custom_events(self, events: Sequence[CustomEvent]) -> None:
        await self._pass()
        await super().insert_custom_events(events)
