"""`SessionTracker`: live sessions, cached in process and durable in the store.

A session is looked up by device id. The cache answers most page views; on a miss (a restart,
a crash, another instance started the session) the store answers, with the exit state rebuilt
from the session's page views. A new session's document is written together with its first
page view; later progress (exit path and time, page view count) is written behind, coalesced
to one update per session per flush, at most ``flush_interval`` late, and flushed on close.

Callers hold `lock(device_id)` while deciding, so one device's page views are decided one at a
time in this process.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import UUID

from prisme_core.errors import CoreError
from prisme_core.metrics import ACTIVE_SESSIONS, AWAITING_SESSION
from prisme_core.model import SessionAttributes, SessionProgress, SessionStart, StoredSession
from prisme_core.ports import Clock, EventStore

logger = logging.getLogger(__name__)

UPDATE_CHUNK = 5
"""Session updates per store call: small, because an event batch that comes after a chunk
waits for all of it; smaller chunks pay the per-command cost too often (measured in
docs/performance.md, "Measured choices")."""
FLUSH_STEPS = 10
"""Flushes per interval: each writes the sessions whose progress would be late by the next,
so updates spread evenly instead of arriving as one burst per interval."""
SWEEP_INTERVAL = 3600.0
"""How often ended sessions lose their lookup key (one store update over them all)."""
STORE_POLL = 0.25
"""How often a waiting custom event asks the store for a session another instance began."""


@dataclass(eq=False, slots=True)
class LiveSession:
    start: SessionStart
    exit_path: str
    exit_timestamp: datetime
    pageviews: int
    recorded: int
    """Page views the session document already counts."""
    persisted: asyncio.Future[None] = field(repr=False)
    """Resolves once the session document is stored."""
    rekeyed: str | None = None
    """A device id under the day's key, for the next progress write to store."""
    reidentified: str | None = None
    """A visitor id the site gave in place of the session's, for the next progress write."""
    attributes: SessionAttributes = field(init=False)
    """What the session's events repeat: its start's, with the visitor id the site gave last."""

    def __post_init__(self) -> None:
        self.attributes = self.start.attributes

    @property
    def key(self) -> UUID:
        return self.start.attributes.session_uuid

    @property
    def is_stored(self) -> bool:
        persisted = self.persisted
        return persisted.done() and not persisted.cancelled() and persisted.exception() is None

    async def stored(self) -> None:
        """Returns once the session's document is stored; raises if it could not be."""
        if self.persisted.done():
            self.persisted.result()
        else:
            await asyncio.shield(self.persisted)  # shared: one waiter's deadline is not all's


class SessionTracker:
    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        inactive_ttl: float,
        flush_interval: float,
        max_cached: int = 200_000,
        write_lock: asyncio.Lock | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl = timedelta(seconds=inactive_ttl)
        self._flush_interval = flush_interval
        self._max_cached = max_cached
        self._write_lock = write_lock or asyncio.Lock()
        self._cache: OrderedDict[str, LiveSession] = OrderedDict()
        self._dirty: dict[UUID, tuple[LiveSession, float]] = {}
        """Sessions with progress to write, by session id, and since when (monotonic), oldest
        first."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._arrivals: dict[str, tuple[asyncio.Event, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL
        self._sweeping: asyncio.Task[None] | None = None

    def lock(self, device_id: str) -> asyncio.Lock:
        """The device's lock; locks nobody holds or awaits are dropped with expired sessions."""
        lock = self._locks.get(device_id)
        if lock is None:
            lock = self._locks[device_id] = asyncio.Lock()
        return lock

    def busy(self, device_id: str) -> bool:
        """Whether a page view of the device is being decided (its lock is held)."""
        lock = self._locks.get(device_id)
        return lock is not None and lock.locked()

    def cached_live(self, device_id: str, now: datetime) -> LiveSession | None:
        """The device's live session if the cache has it, else None (`live` asks the store)."""
        session = self._cache.get(device_id)
        if session is None or session.exit_timestamp + self._ttl <= now:
            return None
        self._cache.move_to_end(device_id)
        return session

    async def live(self, device_id: str, now: datetime) -> LiveSession | None:
        """The device's live session: from the cache, else from the store; None if none."""
        if (live := self.cached_live(device_id, now)) is not None:
            return live
        session = self._cache.get(device_id)
        stored = await self._store.find_session(device_id)
        if stored is None or stored.exit_timestamp + self._ttl <= now:
            return None
        if session is not None and session.key == stored.start.attributes.session_uuid:
            # Another instance extended our session: take its exit, keep our own accounting.
            if stored.exit_timestamp > session.exit_timestamp:
                session.exit_path, session.exit_timestamp = stored.exit_path, stored.exit_timestamp
            return self._remember(session)
        return self._remember(_from_store(stored))

    async def wait_live(
        self, device_id: str, within: float, poll: float = STORE_POLL
    ) -> LiveSession | None:
        """The device's live session, waiting up to ``within`` seconds for one to begin: here
        (woken at once) or on another instance (seen by polling the store)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        arrived, waiters = self._arrivals.get(device_id, (asyncio.Event(), 0))
        self._arrivals[device_id] = (arrived, waiters + 1)
        AWAITING_SESSION.inc()
        try:
            while (session := await self.live(device_id, self._clock.now())) is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), min(remaining, poll))
                    arrived.clear()  # woken: every waiter looks again; the next wait is fresh
            return session
        finally:
            AWAITING_SESSION.dec()
            arrived, waiters = self._arrivals[device_id]
            if waiters == 1:
                del self._arrivals[device_id]
            else:
                self._arrivals[device_id] = (arrived, waiters - 1)

    def begin(self, start: SessionStart, write: asyncio.Future[None]) -> LiveSession:
        """Tracks a new session whose document ``write`` is storing."""
        session = LiveSession(
            start=start,
            exit_path=start.entry_path,
            exit_timestamp=start.entry_timestamp,
            pageviews=1,
            recorded=1,
            persisted=write,
        )
        write.add_done_callback(lambda done: self._forget_if_failed(session, done))
        if (arrival := self._arrivals.get(start.device_id)) is not None:
            arrival[0].set()
        return self._remember(session)

    def alias(self, session: LiveSession, device_id: str) -> None:
        """Finds ``session`` under ``device_id`` (the day's device key) from now on: at once
        in this process, and in the store with its next progress write."""
        self._cache[device_id] = session
        self._cache.move_to_end(device_id)
        session.rekeyed = device_id
        self._mark_dirty(session)

    def identify(self, session: LiveSession, visitor_id: str) -> None:
        """The session's visitor id is ``visitor_id`` from now on: here at once, in the store
        with its next progress write."""
        session.attributes = replace(session.attributes, visitor_id=visitor_id)
        session.reidentified = visitor_id
        self._mark_dirty(session)

    def advance(self, session: LiveSession, path: str, at: datetime) -> None:
        session.pageviews += 1
        if at >= session.exit_timestamp:
            session.exit_path, session.exit_timestamp = path, at
        self._mark_dirty(session)

    def _mark_dirty(self, session: LiveSession) -> None:
        """The session has progress to write; it keeps its place if it already had."""
        if session.key not in self._dirty:
            self._dirty[session.key] = (session, time.monotonic())

    def advance_when_stored(
        self, session: LiveSession, path: str, at: datetime
    ) -> Callable[[asyncio.Future[None]], None]:
        """`advance`, once the page view whose stored future this is given to is stored."""

        def advance(stored: asyncio.Future[None]) -> None:
            if not stored.cancelled() and stored.exception() is None:
                self.advance(session, path, at)

        return advance

    def _remember(self, session: LiveSession) -> LiveSession:
        device_id = session.start.device_id
        self._cache[device_id] = session
        self._cache.move_to_end(device_id)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)  # a dirty session stays in _dirty until flushed
        return session

    def _forget_if_failed(self, session: LiveSession, write: asyncio.Future[None]) -> None:
        if write.cancelled() or write.exception() is not None:
            device_id = session.start.device_id
            if self._cache.get(device_id) is session:
                del self._cache[device_id]
            self._dirty.pop(session.key, None)

    def start(self) -> None:
        ACTIVE_SESSIONS.set_function(lambda: len(self._cache))
        self._task = asyncio.create_task(self._run(), name="session-flush")

    async def _run(self) -> None:
        step = self._flush_interval / FLUSH_STEPS
        while True:
            for _ in range(FLUSH_STEPS):
                await asyncio.sleep(step)
                await self.flush(older_than=self._flush_interval - step)
            self._drop_expired()

    async def flush(self, older_than: float = 0.0) -> None:
        """Writes the progress of every changed session whose document is stored, or of those
        changed more than ``older_than`` seconds ago."""
        horizon = time.monotonic() - older_than
        ready = []
        for session, since in self._dirty.values():
            if since > horizon:
                break  # oldest first: the rest are younger
            if session.persisted.done():
                ready.append(session)
        for first in range(0, len(ready), UPDATE_CHUNK):
            chunk = ready[first : first + UPDATE_CHUNK]
            progress = [
                SessionProgress(
                    session_uuid=s.key,
                    exit_path=s.exit_path,
                    exit_timestamp=s.exit_timestamp,
                    added=s.pageviews - s.recorded,
                    device_id=s.rekeyed,
                    visitor_id=s.reidentified,
                )
                for s in chunk
            ]
            try:
                async with self._write_lock:
                    await self._store.update_sessions(progress)
            except CoreError as error:
                logger.warning("session flush failed, will retry: %s", error)
                return
            for session, written in zip(chunk, progress, strict=True):
                session.recorded += written.added
                if session.rekeyed == written.device_id:
                    session.rekeyed = None
                if session.reidentified == written.visitor_id:
                    session.reidentified = None
                self._dirty.pop(written.session_uuid, None)
                if session.recorded != session.pageviews:  # advanced while being written
                    self._dirty[written.session_uuid] = (session, time.monotonic())

    def _drop_expired(self) -> None:
        self._locks = {d: lock for d, lock in self._locks.items() if lock.locked()}
        horizon = self._clock.now() - self._ttl
        expired = [d for d, s in self._cache.items() if s.exit_timestamp <= horizon]
        for device_id in expired:
            if self._cache[device_id].key not in self._dirty:
                del self._cache[device_id]
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_INTERVAL
            self._sweeping = asyncio.create_task(self.forget_ended(), name="session-sweep")

    async def forget_ended(self) -> None:
        """Removes the lookup key from sessions that ended (past the inactivity limit, and the
        write-behind delay): nothing is left to find them by."""
        horizon = self._clock.now() - self._ttl - timedelta(seconds=self._flush_interval)
        try:
            async with self._write_lock:
                await self._store.forget_devices(ended_before=horizon)
        except CoreError as error:
            logger.warning("forgetting ended sessions' device ids failed: %s", error)

    async def close(self) -> None:
        """Stops the periodic flush and writes what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        if self._dirty:
            logger.error("%d sessions could not be flushed at shutdown", len(self._dirty))


def _from_store(stored: StoredSession) -> LiveSession:
    persisted = asyncio.get_running_loop().create_future()
    persisted.set_result(None)
    return LiveSession(
        start=stored.start,
        exit_path=stored.exit_path,
        exit_timestamp=stored.exit_timestamp,
        pageviews=stored.pageviews,
        recorded=stored.recorded_pageviews,
        persisted=persisted,
    )
