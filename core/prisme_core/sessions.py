"""`SessionTracker`: live sessions, cached in process and durable in the store.

A device (a user agent at an address, on one site) has up to `MAX_SESSIONS_PER_DEVICE` live
sessions at once, one per tab, kept as a `Device`. Which one a page view continues, or an
event joins, is decided by `SessionTracker.continued` and `SessionTracker.joined` (DESIGN
§11). The cache answers most events; on a miss (a new device, a restart, a crash, another
instance began the sessions) the store answers, with the exit state rebuilt from the
sessions' page views, looking up every device that missed meanwhile in one query. A new
session's document is written together with its first page view; later progress (exit path
and time, page view count) is written behind, coalesced to one update per session per flush,
at most ``flush_interval`` late, and flushed on close.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prisme_core.batching import Batcher
from prisme_core.errors import CoreError
from prisme_core.metrics import ACTIVE_SESSIONS, AWAITING_SESSION
from prisme_core.model import SessionAttributes, SessionProgress, SessionStart, StoredSession
from prisme_core.ports import Clock, EventStore
from prisme_core.settings import SessionSettings

logger = logging.getLogger(__name__)

MAX_SESSIONS_PER_DEVICE = 64
"""Live sessions (tabs) kept per device; past it the least recently active is forgotten."""
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
ARRIVAL_SLACK = timedelta(seconds=5)
"""How much earlier than a session's first page view an event may be and still continue or
join it (with the wait for a session that is still to begin): a sender's clock, corrected,
and the order its events arrive in are this close to the service's."""


@dataclass(eq=False, slots=True)
class LiveSession:
    start: SessionStart
    exit_path: str
    exit_timestamp: datetime
    """The exit of the page views stored: what the next progress write says."""
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
    latest_path: str = field(init=False)
    """The page of its latest page view, stored or on its way: where its tab is now."""
    active_at: datetime = field(init=False)
    """When its latest page view arrived; it is live for the inactivity limit after."""

    def __post_init__(self) -> None:
        self.attributes = self.start.attributes
        self.latest_path, self.active_at = self.exit_path, self.exit_timestamp

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


class Device:
    """One device's live sessions (its tabs), least recently active first."""

    __slots__ = ("sessions",)

    def __init__(self) -> None:
        self.sessions: OrderedDict[UUID, LiveSession] = OrderedDict()

    def at(self, path: str, active_after: datetime, begun_by: datetime) -> LiveSession | None:
        """The most recently active session showing ``path``, active after ``active_after``,
        that began by ``begun_by``."""
        for session in reversed(self.sessions.values()):
            if (
                session.latest_path == path
                and session.active_at > active_after
                and session.start.entry_timestamp <= begun_by
            ):
                return session
        return None

    def latest(
        self, active_after: datetime, begun_by: datetime | None = None
    ) -> LiveSession | None:
        """The most recently active session (that began by ``begun_by``), if active after
        ``active_after``."""
        for session in reversed(self.sessions.values()):
            if session.active_at <= active_after:
                return None
            if begun_by is None or session.start.entry_timestamp <= begun_by:
                return session
        return None

    def add(self, session: LiveSession) -> int:
        """Keeps ``session`` in its place by activity (the most recently active last),
        forgetting the least recently active past the limit; returns how many more sessions
        the device has."""
        sessions, before = self.sessions, len(self.sessions)
        last = next(reversed(sessions.values()), None)
        sessions[session.key] = session
        sessions.move_to_end(session.key)
        if last is not None and last.active_at > session.active_at:  # a backdated event
            for key in sorted(sessions, key=lambda k: sessions[k].active_at):
                sessions.move_to_end(key)
        while len(sessions) > MAX_SESSIONS_PER_DEVICE:
            sessions.popitem(last=False)  # a dirty one stays in _dirty until flushed
        return len(sessions) - before


@dataclass(eq=False, slots=True)
class _Lookup:
    """The devices (under the day's key and the day before's) one cache miss asks about."""

    device_ids: tuple[str, ...]
    found: dict[str, list[StoredSession]] = field(default_factory=dict)


class SessionTracker:
    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        settings: SessionSettings,
        batch: Batcher,
        write_lock: asyncio.Lock,
        max_cached: int = 500_000,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl = timedelta(seconds=settings.inactive_ttl)
        self._reload_window = timedelta(seconds=settings.reload_window)
        self._join_slack = ARRIVAL_SLACK + timedelta(seconds=settings.events_timeout)
        """A joining event waits this long for its session to begin."""
        self._flush_interval = settings.flush_interval
        self._max_cached = max_cached
        """Sessions kept in memory, over every device."""
        self._write_lock = write_lock
        self._devices: OrderedDict[str, Device] = OrderedDict()
        """Cached devices, least recently used first."""
        self._cached = 0
        """Sessions in ``_devices``."""
        self._lookups = batch("session_lookups", self._find)
        self._elsewhere: dict[str, datetime] | None = None
        """Devices whose sessions the store may hold and this process does not, each until a
        reload can no longer continue them: those active in the reload window before this
        process started, and those it forgot since. None until the store said."""
        self._known_since = datetime.max.replace(tzinfo=UTC)
        """Since when ``_elsewhere`` knows the devices a reload could continue."""
        self._learning: asyncio.Task[None] | None = None
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

    def continued(
        self, device: Device, path: str, internal_from: str | None, now: datetime
    ) -> LiveSession | None:
        """The session a page view of ``path`` continues, if any. A navigation within the
        site (``internal_from``, the referrer's path) continues the session whose tab shows
        the page it came from, else one showing its own page (a reload, a duplicated tab).
        A direct or external page view continues a session showing its page only as a
        reload: within the reload window. ``now`` is when the page view happened: only a
        session that was live then (begun before, active since) is continued."""
        live, begun = now - self._ttl, now + ARRIVAL_SLACK
        if internal_from is not None:
            return device.at(internal_from, live, begun) or device.at(path, live, begun)
        return device.at(path, max(live, now - self._reload_window), begun)

    def joined(self, device: Device, path: str, now: datetime) -> LiveSession | None:
        """The session an event on ``path`` that happened at ``now`` joins: the one showing
        its page, else the most recently active, of those live then."""
        live, begun = now - self._ttl, now + self._join_slack
        return device.at(path, live, begun) or device.latest(live, begun)

    def unseen(self, at: datetime, *device_ids: str) -> bool:
        """Whether this process knows every session of these devices that a reload at ``at``
        could continue, and has none: then a direct page view of theirs begins a session
        without asking the store. (A session another instance began meanwhile is not known:
        route by client IP.)"""
        elsewhere = self._elsewhere
        if elsewhere is None or at < self._known_since:
            return False
        return not any(d in self._devices or d in elsewhere for d in device_ids)

    @property
    def knows_elsewhere(self) -> bool:
        """Whether the store said which devices were active before this process started."""
        return self._elsewhere is not None

    async def _learn_elsewhere(self) -> None:
        now = self._clock.now()
        slack = self._reload_window + timedelta(seconds=self._flush_interval)
        try:
            active = await self._store.active_devices(now - slack)
        except CoreError as error:
            logger.warning("new devices will be looked up in the store: %s", error)
            return
        until = now + self._reload_window
        self._elsewhere, self._known_since = dict.fromkeys(active, until), now

    def cached(self, device_id: str, now: datetime) -> Device | None:
        """The device's sessions if the cache has a live one, else None (`load` asks the
        store)."""
        device = self._devices.get(device_id)
        if device is None or device.latest(now - self._ttl) is None:
            return None
        self._devices.move_to_end(device_id)
        return device

    async def load(self, device_id: str, earlier_id: str, now: datetime) -> Device:
        """The device's sessions: from the cache if it has a live one, else from the store,
        with those begun under the previous day's key (``earlier_id``), found under the day's
        from now on."""
        if (device := self.cached(device_id, now)) is not None:
            return device
        lookup = _Lookup((device_id, earlier_id))
        await self._lookups.write(lookup)
        known = {
            session.key: session
            for cached in map(self._devices.get, lookup.device_ids)
            if cached is not None
            for session in cached.sessions.values()
        }
        found = [s for stored in lookup.found.values() for s in stored]
        for stored in sorted(found, key=lambda s: s.exit_timestamp):
            session = known.pop(stored.start.attributes.session_uuid, None)
            if session is None:
                session = _from_store(stored)
            elif stored.exit_timestamp > session.active_at:  # another instance extended it
                session.latest_path = session.exit_path = stored.exit_path
                session.active_at = session.exit_timestamp = stored.exit_timestamp
            known[session.key] = session
        device = Device()
        for session in sorted(known.values(), key=lambda s: s.active_at):
            if session.start.device_id != device_id and session.rekeyed != device_id:
                session.rekeyed = device_id
                self._mark_dirty(session)
            device.add(session)
        self._forget(earlier_id)
        self._forget(device_id)
        if self._elsewhere is not None:
            self._elsewhere.pop(earlier_id, None)
            self._elsewhere.pop(device_id, None)
        return self._remember(device_id, device)

    async def _find(self, lookups: Sequence[_Lookup]) -> None:
        """Asks the store about every device of ``lookups`` at once."""
        device_ids = list(dict.fromkeys(d for lookup in lookups for d in lookup.device_ids))
        active_after = self._clock.now() - self._ttl - timedelta(seconds=self._flush_interval)
        found = await self._store.find_sessions(device_ids, active_after, MAX_SESSIONS_PER_DEVICE)
        for lookup in lookups:
            lookup.found = {d: found[d] for d in lookup.device_ids if d in found}

    async def wait_live(
        self,
        device_id: str,
        earlier_id: str,
        at: datetime,
        within: float,
        poll: float = STORE_POLL,
    ) -> Device | None:
        """The device's sessions once it has one live at ``at``, waiting up to ``within``
        seconds for one to begin: here (woken at once) or on another instance (seen by polling
        the store)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        arrived, waiters = self._arrivals.get(device_id, (asyncio.Event(), 0))
        self._arrivals[device_id] = (arrived, waiters + 1)
        AWAITING_SESSION.inc()
        try:
            while True:
                device = await self.load(device_id, earlier_id, at)
                if device.latest(at - self._ttl) is not None:
                    return device
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), min(remaining, poll))
                    arrived.clear()  # woken: every waiter looks again; the next wait is fresh
        finally:
            AWAITING_SESSION.dec()
            arrived, waiters = self._arrivals[device_id]
            if waiters == 1:
                del self._arrivals[device_id]
            else:
                self._arrivals[device_id] = (arrived, waiters - 1)

    def begin(self, start: SessionStart, write: asyncio.Future[None]) -> LiveSession:
        """Tracks a new session whose document ``write`` is storing, as its device's most
        recently active."""
        session = LiveSession(
            start=start,
            exit_path=start.entry_path,
            exit_timestamp=start.entry_timestamp,
            pageviews=1,
            recorded=1,
            persisted=write,
        )
        write.add_done_callback(lambda done: self._forget_if_failed(session, done))
        device_id = start.device_id
        device = self._devices.get(device_id)
        if device is None:
            device = self._remember(device_id, Device())
        self._cached += device.add(session)
        self._trim()
        if (arrival := self._arrivals.get(device_id)) is not None:
            arrival[0].set()
        return session

    def touch(self, device: Device, session: LiveSession, path: str, at: datetime) -> None:
        """A page view of ``path`` at ``at`` continues ``session``: its tab shows ``path``
        from now on, unless the session was active later than that (a backdated page view)."""
        if at >= session.active_at:
            session.latest_path, session.active_at = path, at
        self._cached += device.add(session)

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

    def _remember(self, device_id: str, device: Device) -> Device:
        self._devices[device_id] = device
        self._devices.move_to_end(device_id)
        self._cached += len(device.sessions)
        self._trim()
        return device

    def _forget(self, device_id: str) -> None:
        device = self._devices.pop(device_id, None)
        if device is not None:
            self._cached -= len(device.sessions)

    def _trim(self) -> None:
        """Forgets the least recently used devices while the cache holds too many sessions;
        their progress stays in ``_dirty`` until flushed, and the store finds them again."""
        while self._cached > self._max_cached and len(self._devices) > 1:
            device_id, device = self._devices.popitem(last=False)
            self._cached -= len(device.sessions)
            latest = device.latest(self._clock.now() - self._reload_window)
            if latest is not None and self._elsewhere is not None:
                self._elsewhere[device_id] = latest.active_at + self._reload_window

    def _forget_if_failed(self, session: LiveSession, write: asyncio.Future[None]) -> None:
        if write.cancelled() or write.exception() is not None:
            device = self._devices.get(session.start.device_id)
            if device is not None and device.sessions.get(session.key) is session:
                del device.sessions[session.key]
                self._cached -= 1
            self._dirty.pop(session.key, None)

    def start(self) -> None:
        ACTIVE_SESSIONS.set_function(lambda: self._cached)
        self._lookups.start()
        self._learning = asyncio.create_task(self._learn_elsewhere(), name="session-elsewhere")
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
        now = self._clock.now()
        if self._elsewhere is not None:
            self._elsewhere = {d: until for d, until in self._elsewhere.items() if until > now}
        # Devices are kept least recently used first, and each device's sessions least
        # recently active first: the sweep ends at the first device with a live session, so
        # it costs what it drops, not what the cache holds. A session that ends before others
        # used before it (a backdated event's) goes with them, or at the cache's limit.
        horizon, devices = now - self._ttl, self._devices
        while devices:
            device_id, device = next(iter(devices.items()))
            sessions = device.sessions
            while sessions and next(iter(sessions.values())).active_at <= horizon:
                sessions.popitem(last=False)  # a dirty one stays in _dirty until flushed
                self._cached -= 1
            if sessions:
                break
            del devices[device_id]
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
        if self._learning is not None:
            self._learning.cancel()
        await self._lookups.close()
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
