"""gRPC peers: the caller's address as `context.peer()` gives it, and the client that a
trusted proxy in front of the core names in its ``x-forwarded-for`` metadata.

gRPC writes peers as ``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5`` or, percent-encoded,
``ipv6:%5B::1%5D:5``; ``unix:`` and anything else is unknown. A peer inside
``PRISME_GRPC_TRUSTED_PROXIES`` may name the client, by the same rightmost-untrusted rule as
HTTP (`prisme_client.forwarded`).

Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from urllib.parse import unquote

from prisme_client.forwarded import TrustedProxies, parse_address

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=4096)
def peer_ip(peer: str) -> str | None:
    """The IP address of a gRPC peer string; unix and unknown peers give None."""
    kind, _, address = peer.partition(":")
    if kind not in {"ipv4", "ipv6"}:
        return None
    parsed = parse_address(unquote(address))
    return None if parsed is None else str(parsed)


class GrpcProxies:
    """The proxies in front of the core whose ``x-forwarded-for`` metadata is believed."""

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self._proxies = TrustedProxies(networks)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return self._proxies.networks

    def client(self, peer: str, forwarded: str) -> str:
        """The client behind ``peer``: named by ``forwarded`` if ``peer`` is a trusted proxy."""
        if not forwarded or not self._proxies.peer(peer)[1]:
            return peer
        return self._proxies.client(peer, (forwarded,))
