"""The client IP behind proxies: the peer, or, when the peer is a trusted proxy, the rightmost
address of its forwarding header (HTTP) or ``x-forwarded-for`` metadata (gRPC) that is not
itself a trusted proxy. The HTTP façade and the gRPC core share this one rule.

The leftmost entry is never believed while an untrusted one stands to its right: a client
writes whatever it likes there. Garbage in the walked part of the header gives the peer, so
it can never pool clients into one rate-limit bucket.

Pure functions; must not import prisme_core or prisme_http.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
CACHED_HEADER_CHARS = 256
MAX_ADDRESS_CHARS = 128  # the longest IPv6 text with zone, brackets, port and quotes is ~70


def parse_address(text: str) -> IPAddress | None:
    """One address as proxies and sockets write it: quotes, ``[v6]:port``, ``v4:port`` and
    ``%zone`` removed, IPv4-mapped IPv6 unwrapped; None when it is not an address."""
    if len(text) > MAX_ADDRESS_CHARS:  # not an address, and not to be kept in the cache
        return None
    return _parse_address(text)


@functools.lru_cache(maxsize=65536)
def _parse_address(text: str) -> IPAddress | None:
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The proxies whose header is believed, with the answers for addresses already seen: a
    service sees the same few proxies (or the same clients) again and again."""

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self.networks = tuple(networks)
        self.peer = functools.lru_cache(maxsize=65536)(self._peer)
        self.trusts = functools.lru_cache(maxsize=65536)(self._trusts)
        self._cached_client = functools.lru_cache(maxsize=65536)(self._client)

    def _trusts(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)

    def client(self, peer_text: str, forwarded: tuple[str, ...]) -> str:
        """The client that the header lines ``forwarded`` of the trusted proxy ``peer_text``
        name (cached, unless the lines are long: a client may send anything there)."""
        if sum(map(len, forwarded)) > CACHED_HEADER_CHARS:
            return self._client(peer_text, forwarded)
        return self._cached_client(peer_text, forwarded)

    def _client(self, peer_text: str, forwarded: tuple[str, ...]) -> str:
        entries = [entry for line in forwarded for entry in line.split(",") if entry.strip()]
        if not entries:
            return peer_text
        leftmost: IPAddress | None = None
        for entry in reversed(entries):
            address = parse_address(entry)
            if address is None:
                return peer_text
            if not self.trusts(address):
                return str(address)
            leftmost = address
        return str(leftmost)

    def _peer(self, peer: str) -> tuple[str, bool]:
        """The peer's address as text ("" if unknown) and whether it is a trusted proxy."""
        address = parse_address(peer)
        if address is None:
            return "", False
        return str(address), self.trusts(address)


def client_ip(
    peer: str | None,
    forwarded: Iterable[str],
    *,
    trust_proxy: bool,
    trusted_proxies: TrustedProxies,
) -> str:
    """``forwarded`` are the proxy header's lines in order; "" when the peer is unknown."""
    peer_text, peer_is_proxy = trusted_proxies.peer(peer) if peer else ("", False)
    if not peer_text:
        return ""
    if not trust_proxy or not peer_is_proxy:
        return peer_text
    return trusted_proxies.client(peer_text, tuple(forwarded))
