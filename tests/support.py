"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prisme_http.app import ACCESS_LOG
from prometheus_client import REGISTRY

Document = dict[str, Any]
HttpClient = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application | TestServer], Awaitable[HttpClient]]

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


POLL = 0.005


async def until(condition: Callable[[], object], within: float = 10.0, what: str = "") -> None:
    """Polls ``condition`` until it is true, for up to ``within`` seconds: for facts that
    raise no event of their own (a metric, a log line, a row in the store)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not in {within:g}s: {what or condition}")
        await asyncio.sleep(POLL)


def metric(name: str, **labels: str) -> float:
    """The current value of one of this process's Prometheus samples (0 if never set)."""
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


def awaiting_session() -> float:
    """Custom events of this process waiting for their session right now."""
    return metric("prisme_events_awaiting_session")


@contextlib.asynccontextmanager
async def serving_pages(
    page: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[int]:
    """A web site whose every path ``page`` answers, on a free port of 127.0.0.1: its port.
    Browsers reach it as ``localhost``, another origin than the service's ``127.0.0.1``."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
