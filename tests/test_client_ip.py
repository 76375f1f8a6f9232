"""Client IP: the peer, or the rightmost untrusted proxy-header address (DESIGN §4)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prisme_client.forwarded import TrustedProxies, client_ip, parse_address

PROXIES = TrustedProxies(
    [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ]
)


def _resolve(peer: str | None, *lines: str, trust: bool = True) -> str:
    return client_ip(peer, lines, trust_proxy=trust, trusted_proxies=PROXIES)


@pytest.mark.parametrize(
    ("peer", "lines", "trust", "expected"),
    [
        pytest.param("203.0.113.5", ("8.8.8.8",), False, "203.0.113.5", id="trust-off"),
        pytest.param("203.0.113.5", ("8.8.8.8",), True, "203.0.113.5", id="peer-not-a-proxy"),
        pytest.param("127.0.0.1", ("8.8.8.8",), True, "8.8.8.8", id="one-hop"),
        pytest.param("127.0.0.1", ("6.6.6.6, 8.8.8.8",), True, "8.8.8.8", id="rightmost"),
        pytest.param(
            "127.0.0.1", ("6.6.6.6, 8.8.8.8, 10.0.0.2",), True, "8.8.8.8", id="skips-trusted"
        ),
        pytest.param("127.0.0.1", ("6.6.6.6", "8.8.8.8"), True, "8.8.8.8", id="lines-joined"),
        pytest.param(
            "127.0.0.1", ("10.0.0.3, 10.0.0.2",), True, "10.0.0.3", id="all-trusted-leftmost"
        ),
        pytest.param("127.0.0.1", (), True, "127.0.0.1", id="absent-header"),
        pytest.param("127.0.0.1", ("garbage",), True, "127.0.0.1", id="garbage-is-peer"),
        pytest.param(
            "127.0.0.1", ("8.8.8.8, garbage",), True, "127.0.0.1", id="garbage-stops-walk"
        ),
        pytest.param(
            "127.0.0.1", ("garbage, 8.8.8.8",), True, "8.8.8.8", id="garbage-left-not-reached"
        ),
        pytest.param("127.0.0.1", ("[2001:4860::1]:443",), True, "2001:4860::1", id="v6-port"),
        pytest.param("127.0.0.1", ("8.8.8.8:5678",), True, "8.8.8.8", id="v4-port"),
        pytest.param("127.0.0.1", ('"8.8.8.8"',), True, "8.8.8.8", id="quoted"),
        pytest.param("::ffff:127.0.0.1", ("::ffff:8.8.8.8",), True, "8.8.8.8", id="mapped"),
        pytest.param("::1", ("8.8.4.4",), True, "8.8.4.4", id="v6-peer"),
        pytest.param(None, ("8.8.8.8",), True, "", id="unknown-peer"),
        pytest.param(
            "127.0.0.1",
            ("6.6.6.6, " * 40 + "8.8.8.8, 10.0.0.2",),
            True,
            "8.8.8.8",
            id="long-header",
        ),
        pytest.param("127.0.0.1", ("8" * 200,), True, "127.0.0.1", id="over-long-entry"),
    ],
)
def test_client_ip(peer: str | None, lines: tuple[str, ...], trust: bool, expected: str) -> None:
    assert _resolve(peer, *lines, trust=trust) == expected


def test_zone_ids_are_dropped() -> None:
    assert parse_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")


@given(st.lists(st.text(max_size=40), max_size=4), st.booleans())
def test_any_header_gives_the_peer_or_a_real_address_from_it(lines: list[str], trust: bool) -> None:
    result = _resolve("127.0.0.1", *lines, trust=trust)
    assert result == "127.0.0.1" or ipaddress.ip_address(result)
    if not trust:
        assert result == "127.0.0.1"


@given(st.lists(st.ip_addresses(), min_size=1, max_size=5))
def test_untrusted_peer_is_never_overridden(addresses: list[object]) -> None:
    header = ", ".join(str(a) for a in addresses)
    assert _resolve("198.51.100.7", header) == "198.51.100.7"
