"""Visitor and device identifiers: keyed 64-bit hashes, no cookies, no stored IPs.

- ``visitor_id`` = ``prisme_`` + uppercase hex of a keyed hash of (user agent, client IP, page
  host) under the **day's salt**: one random key per UTC day, kept in the store so every
  instance and every restart agree, and forgotten after two days.
- ``device_id`` hashes the same inputs under the **day's device key**, rotated and forgotten
  like the salt; sessions are looked up by it, under the day's key and then the previous
  day's, so a session continues across midnight. Once a day's key is forgotten, a stored
  ``device_id`` can no longer be linked to a device (nor its IP brute-forced).

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from datetime import UTC, date, datetime, time, timedelta

from prisme_core.ports import EventStore

SALT = "salt"
DEVICE_KEY = "device"
SALT_LIFETIME = timedelta(days=2)
"""A day's keys are forgotten two days after the day began: the day, and the next."""


def keyed_hash(key: bytes, user_agent: str, client_ip: str, host: str) -> str:
    data = f"{user_agent}\x00{client_ip}\x00{host}\x00".encode("utf-8", errors="surrogatepass")
    return hashlib.blake2b(data, digest_size=8, key=key).hexdigest().upper()


def _day_key(kind: str, at: datetime, days_back: int = 0) -> tuple[str, datetime]:
    """The name of the ``kind`` key of ``at``'s UTC day (or of a day before), and when it
    expires."""
    return _key_of_day(kind, at.astimezone(UTC).date(), days_back)


@functools.lru_cache(maxsize=64)
def _key_of_day(kind: str, day: date, days_back: int) -> tuple[str, datetime]:
    day -= timedelta(days=days_back)
    return f"{kind}:{day.isoformat()}", datetime.combine(day, time(), tzinfo=UTC) + SALT_LIFETIME


class Identities:
    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._keys: dict[str, bytes] = {}
        self._fetching: dict[str, asyncio.Future[bytes]] = {}

    async def device_id(
        self, user_agent: str, client_ip: str, host: str, at: datetime, days_back: int = 0
    ) -> str:
        """The device id under the key of ``at``'s day (or of ``days_back`` days before)."""
        name, expires = _day_key(DEVICE_KEY, at, days_back)
        return keyed_hash(await self._key(name, expires), user_agent, client_ip, host)

    def known_device_id(
        self, user_agent: str, client_ip: str, host: str, at: datetime, days_back: int = 0
    ) -> str | None:
        """`device_id` if the day's key (or that of ``days_back`` days before) is in memory,
        else None."""
        key = self._keys.get(_day_key(DEVICE_KEY, at, days_back)[0])
        return None if key is None else keyed_hash(key, user_agent, client_ip, host)

    async def visitor_id(self, user_agent: str, client_ip: str, host: str, at: datetime) -> str:
        name, expires = _day_key(SALT, at)
        salt = await self._key(name, expires)
        return "prisme_" + keyed_hash(salt, user_agent, client_ip, host)

    def known_visitor_id(
        self, user_agent: str, client_ip: str, host: str, at: datetime
    ) -> str | None:
        """`visitor_id` if the day's salt is in memory, else None."""
        salt = self._keys.get(_day_key(SALT, at)[0])
        return None if salt is None else "prisme_" + keyed_hash(salt, user_agent, client_ip, host)

    async def _key(self, name: str, expires_at: datetime | None) -> bytes:
        """The key from memory; else fetched once, however many events ask at the same time."""
        if (key := self._keys.get(name)) is not None:
            return key
        fetching = self._fetching.get(name)
        if fetching is None:
            fetching = asyncio.ensure_future(self._store.key(name, expires_at))
            self._fetching[name] = fetching
            fetching.add_done_callback(lambda done: self._fetched(name, done))
        return await asyncio.shield(fetching)

    def _fetched(self, name: str, done: asyncio.Future[bytes]) -> None:
        del self._fetching[name]
        if not done.cancelled() and done.exception() is None:
            self._keys[name] = done.result()
            # Two days of keys at most in memory: the newest day's and the day before.
            newest = max(k.partition(":")[2] for k in self._keys)
            horizon = (date.fromisoformat(newest) - timedelta(days=1)).isoformat()
            self._keys = {k: v for k, v in self._keys.items() if k.partition(":")[2] >= horizon}
