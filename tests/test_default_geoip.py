"""The default country database that `make run` fetches resolves real addresses.

`make test` fetches it and names it in ``PRISME_DEFAULT_GEOIP_DB``; a bare ``pytest`` run
without it skips these tests.
"""

from __future__ import annotations

import os

import pytest
from prisme_core.adapters.maxmind import MaxMindDbLocator

DEFAULT_DB = os.environ.get("PRISME_DEFAULT_GEOIP_DB")

pytestmark = pytest.mark.skipif(not DEFAULT_DB, reason="run through `make test` to fetch it")


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        pytest.param("8.8.8.8", "US", id="v4-us"),
        pytest.param("2001:4860:4860::8888", "US", id="v6-us"),
        pytest.param("84.200.69.80", "DE", id="v4-de"),
        pytest.param("2001:1608:10:25::1c04:b12f", "DE", id="v6-de"),
        pytest.param("81.2.69.142", "GB", id="gb"),
        # This database maps these private ranges to AU: they must never be looked up.
        pytest.param("192.168.1.253", "XX", id="private"),
        pytest.param("172.16.1.10", "XX", id="private-172"),
    ],
)
def test_default_database_resolves(ip: str, country: str) -> None:
    assert DEFAULT_DB is not None
    assert MaxMindDbLocator(DEFAULT_DB).country(ip) == country
