"""Small helpers shared by the tests."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prisme_http.app import ACCESS_LOG

Document = dict[str, Any]
HttpClient = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[HttpClient]]

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"

BROWSER_HEADERS = {
    "Origin": "http://localhost",
    "X-Prisme-Referrer": "http://localhost/hello",
    "User-Agent": FIREFOX,
}

# PyMongo's asyncio client leaves the socket of a refused connection to the garbage collector
# (mongodb/mongo-python-driver PYTHON-3923). Tests that point it at a stopped store mark
# themselves with this and collect garbage before they end, so the warnings are theirs.
LEAKS_REFUSED_SOCKETS = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning"
)


def access_lines(app: web.Application, caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The façade's access-log lines so far (it hands them to logging in batches)."""
    app[ACCESS_LOG].flush()
    batches = [r for r in caplog.records if r.name == "prisme.access" and r.levelno == logging.INFO]
    return [line for record in batches for line in record.access_lines]  # type: ignore[attr-defined]
