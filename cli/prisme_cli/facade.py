"""The HTTP façade's process. `prisme serve` runs one itself, and with ``PRISME_WORKERS`` over 1
as many more as ``prisme facade`` children: all of them listen on the HTTP port together
(``SO_REUSEPORT``: the kernel spreads new connections among them), and each sends a client's
events to the core its IP maps to (`prisme_http.app.core_of`).

On SIGTERM a façade stops accepting, finishes its requests within half of
``PRISME_SHUTDOWN_TIMEOUT``, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from prisme_core.settings import Settings, deadlines
from prisme_http.app import create_app
from prisme_http.config import FacadeConfig
from prisme_http.runner import FacadeRunner
from prometheus_client import start_http_server

from prisme_cli import runtime

logger = logging.getLogger(__name__)


def facade_config(settings: Settings, *core_targets: str) -> FacadeConfig:
    """The façade's part of the settings, its deadlines derived from the core's."""
    edge, limits, waits = settings.edge, settings.limits, deadlines(settings)
    return FacadeConfig(
        core_targets=core_targets,
        core_tls_root=_read(settings.grpc.tls_cert),
        token=settings.grpc.token,
        event_timeout=waits.custom_event,
        pageview_timeout=waits.pageview,
        health_timeout=waits.health,
        read_timeout=edge.read_timeout,
        idle_timeout=edge.idle_timeout,
        max_body_bytes=limits.max_body_bytes,
        max_header_bytes=limits.max_header_bytes,
        cors_max_age=edge.cors_max_age,
        trust_proxy=edge.trust_proxy,
        proxy_header=edge.proxy_header,
        trusted_proxies=edge.trusted_proxies,
        stats_timeout=waits.stats,
        stats_origins=settings.stats.allow_origins,
    )


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, core_targets: Sequence[str], *, shared: bool
) -> AsyncIterator[None]:
    """The façade on the HTTP port (``shared`` with other processes) while in the block; then
    its requests in flight are finished."""
    edge = settings.edge
    runner = FacadeRunner(
        create_app(facade_config(settings, *core_targets)),
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout / 2,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, edge.host, edge.port, reuse_port=shared or None).start()
        logger.info("HTTP façade listening on http://%s:%d", edge.host, edge.port)
        yield
        logger.info("shutting down: finishing requests in flight")
    finally:
        started = time.monotonic()
        try:
            async with asyncio.timeout(settings.shutdown_timeout / 2):
                await runner.cleanup()
        except TimeoutError:
            logger.error("requests still in flight after %.0fs", settings.shutdown_timeout / 2)
        logger.info("façade stopped in %.2fs", time.monotonic() - started)


def run_facade(settings: Settings, core_targets: Sequence[str], metrics_port: int) -> None:
    """``prisme facade``: one more façade on the shared HTTP port, until SIGTERM. Its metrics
    port opens once it listens (`prisme serve` waits for that)."""
    runtime.run(_facade(settings, core_targets, metrics_port))


async def _facade(settings: Settings, core_targets: Sequence[str], metrics_port: int) -> None:
    stopped = runtime.stop_signals()
    async with serving(settings, core_targets, shared=True):
        start_http_server(metrics_port, addr="127.0.0.1")
        runtime.settle_gc()
        await stopped.wait()
