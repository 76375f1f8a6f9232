"""Visitor and device identifiers: keyed 64-bit hashes, no cookies, no stored IPs.

- ``visitor_id`` = ``prisme_`` + uppercase hex of a keyed hash of (user agent, client IP, page
  host) under the **day's salt**: one random key per UTC day, kept in the store so every
  instance and every restart agree, and forgotten after two days.
- ``device_id`` hashes the same inputs under a **persistent key**; sessions are looked up by
  it, so a session continues across midnight, when the visitor id of new sessions changes.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta

from prisme_core.ports import EventStore

DEVICE_KEY = "device"
SALT_LIFETIME = timedelta(days=2)


def keyed_hash(key: bytes, user_agent: str, client_ip: str, host: str) -> str:
    digest = hashlib.blake2b(digest_size=8, key=key)
    for part in (user_agent, client_ip, host):
        digest.update(part.encode("utf-8", errors="surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest().upper()


class Identities:
    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._device_key: bytes | None = None
        self._salt: tuple[date, bytes] | None = None

    async def device_id(self, user_agent: str, client_ip: str, host: str) -> str:
        if self._device_key is None:
            self._device_key = await self._store.key(DEVICE_KEY, expires_at=None)
        return keyed_hash(self._device_key, user_agent, client_ip, host)

    async def visitor_id(self, user_agent: str, client_ip: str, host: str, at: datetime) -> str:
        salt = await self._salt_of(at.astimezone(UTC).date())
        return "prisme_" + keyed_hash(salt, user_agent, client_ip, host)

    async def _salt_of(self, day: date) -> bytes:
        if self._salt is None or self._salt[0] != day:
            expires = datetime.combine(day, time(), tzinfo=UTC) + SALT_LIFETIME
            self._salt = (day, await self._store.key(f"salt:{day.isoformat()}", expires))
        return self._salt[1]
