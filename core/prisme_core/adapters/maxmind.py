"""`MaxMindDbLocator`: the country of an IP address from a MaxMind-format ``.mmdb`` file.

Both record shapes are read: GeoIP2's ``{"country": {"iso_code": "US"}}`` and the flat
``{"country_code": "US"}`` of the ip-location-db files. Private, loopback, reserved and other
non-global addresses are never looked up (some databases map private ranges to a country);
IPv4-mapped IPv6 addresses are unwrapped first. Anything unknown is ``XX``.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from typing import Final

import maxminddb

UNKNOWN: Final = "XX"


def lookup_address(ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address worth a lookup: parsed, unwrapped, global and unicast; else None."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global or address.is_multicast:
        return None
    return address


def _country_code(record: object) -> str:
    if not isinstance(record, dict):
        return UNKNOWN
    code = record.get("country_code")
    country = record.get("country")
    if code is None and isinstance(country, dict):
        code = country.get("iso_code")
    if isinstance(code, str) and len(code) == 2 and code.isalpha() and code.isascii():
        return code.upper()
    return UNKNOWN


class MaxMindDbLocator:
    def __init__(self, path: str, cache_size: int = 65536) -> None:
        self._reader = maxminddb.open_database(path, maxminddb.MODE_AUTO)
        self.country = functools.lru_cache(maxsize=cache_size)(self._country)

    def _country(self, ip: str | None) -> str:
        address = lookup_address(ip)
        if address is None:
            return UNKNOWN
        try:
            return _country_code(self._reader.get(address))
        except ValueError:  # an IPv6 address against an IPv4-only database
            return UNKNOWN

    def close(self) -> None:
        self._reader.close()


class NoGeoLocator:
    """Used when no database is configured: every country is unknown."""

    def country(self, ip: str | None) -> str:
        return UNKNOWN

    def close(self) -> None:
        return None


class StaticGeoLocator:
    """Countries from a fixed table of addresses (others unknown), for tests."""

    def __init__(self, countries: Mapping[str, str]) -> None:
        self._countries = dict(countries)

    def country(self, ip: str | None) -> str:
        return self._countries.get(ip or "", UNKNOWN)

    def close(self) -> None:
        return None
