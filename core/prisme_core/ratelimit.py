"""`RateLimiter`: at most ``limit`` events per client in a fixed 60-second window.

A client is an IPv4 address, or an IPv6 /64 (`rate_key`): one subscriber's prefix, within
which an IPv6 client can pick a new address for every request.

A window opens at a client's first event and closes 60 s later; the event that would exceed
the limit is refused with the seconds left until the window closes. Events are counted as they
arrive, refused ones included, so an abusive client cannot probe for free.

Memory stays bounded: windows are kept in the order they opened, closed ones are dropped from
the front as time passes, and past ``max_clients`` open windows the oldest is forgotten (that
client starts afresh) rather than growing without limit.

The limit is per instance: sharing it across instances would cost a store write per event.
Behind a load balancer, route by client IP or divide the limit by the number of instances.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable

from prisme_core.errors import RateLimited

WINDOW = 60.0
IPV6_PREFIX = 64


MAX_KEY_LENGTH = 64
"""Longer than any IP address text: longer client texts are cut, never cached whole."""


def rate_key(client_ip: str) -> str:
    """The bucket of a client IP ("" when unknown): the IPv4 address (IPv4-mapped IPv6
    unwrapped), or the IPv6 address's /64. Text that is no address is a bucket of its own."""
    return _rate_key(client_ip[:MAX_KEY_LENGTH])


@functools.lru_cache(maxsize=65536)
def _rate_key(client_ip: str) -> str:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))


class RateLimiter:
    def __init__(
        self, limit: int, clock: Callable[[], float], max_clients: int = 1_000_000
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._max_clients = max_clients
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def check(self, client: str) -> None:
        """Counts one event for ``client``; raises `RateLimited` past the limit."""
        now = self._clock()
        self._drop_closed(now)
        opened, count = self._windows.get(client, (now, 0))
        if count >= self._limit:
            raise RateLimited(retry_after=max(1, math.ceil(opened + WINDOW - now)))
        if count == 0:
            self._windows.pop(client, None)
            if len(self._windows) >= self._max_clients:
                self._windows.popitem(last=False)
        self._windows[client] = (opened, count + 1)

    def _drop_closed(self, now: float) -> None:
        while self._windows:
            client, (opened, _) = next(iter(self._windows.items()))
            if opened + WINDOW > now:
                return
            del self._windows[client]
