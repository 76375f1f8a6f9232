"""Tiny GeoIP databases for tests, written with mmdb-writer, in both record shapes.

Global addresses only (the service never looks up private or documentation ranges), and the
same pins Prisme's own tests use.
"""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

NETWORKS = {
    "US": ["8.8.8.0/24", "2001:4860::/32"],
    "DE": ["84.200.69.0/24", "2001:1608::/32"],
    "GB": ["81.2.69.0/24"],
    # A private range some real databases wrongly map: it must never be looked up.
    "AU": ["192.168.0.0/16", "172.16.0.0/12"],
}


def write_country_db(path: Path, *, flat: bool = False) -> Path:
    """GeoIP2 ``{"country": {"iso_code": ...}}`` records, or ``{"country_code": ...}``."""
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="country" if flat else "Test-Country",
        languages=["en"],
        description={"en": "test fixture"},
    )
    for code, networks in NETWORKS.items():
        record = {"country_code": code} if flat else {"country": {"iso_code": code}}
        writer.insert_network(IPSet(networks), record)
    writer.to_db_file(str(path))
    return path
