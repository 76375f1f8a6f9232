"""``prisme serve``: the gRPC core and the HTTP façade in one process, until SIGTERM or Ctrl-C.

When no ``PRISME_MONGODB_URI`` is given, the embedded store runs as a child process under
``PRISME_DATA_DIR`` and stops with the service. The façade calls the core as a trusted caller
with the service token (a random one when ``PRISME_GRPC_TOKEN`` is unset).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import signal
import time
from pathlib import Path

from aiohttp import web
from prisme_core.server import CoreDeps, CoreServer, create_server
from prisme_core.settings import Settings
from prisme_http.admin import create_admin_app
from prisme_http.app import create_app
from prisme_http.config import FacadeConfig
from prisme_http.runner import FacadeRunner

from prisme_cli.embedded import EmbeddedStore

logger = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    """Runs the service in the foreground; returns after a clean shutdown."""
    if settings.grpc_token is None:
        settings = dataclasses.replace(settings, grpc_token=secrets.token_urlsafe(32))
    embedded: EmbeddedStore | None = None
    if settings.mongodb_uri is None:
        # Started before any gRPC thread exists, so the child can be set to die with us.
        embedded = EmbeddedStore(Path(settings.data_dir))
        settings = dataclasses.replace(settings, mongodb_uri=embedded.start(die_with_parent=True))
    try:
        asyncio.run(_serve(settings))
    finally:
        if embedded is not None:
            embedded.stop()


async def _serve(settings: Settings) -> None:
    core = create_server(settings, CoreDeps.from_settings(settings))
    await core.start()
    grpc_host = settings.grpc_hostport[0]
    core_host = "127.0.0.1" if grpc_host in {"0.0.0.0", "::", ""} else grpc_host
    config = FacadeConfig(
        core_target=f"{core_host}:{core.port}",
        token=settings.grpc_token,
        event_timeout=settings.mongodb_timeout + settings.api_events_timeout + 1.0,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        cors_max_age=settings.cors_max_age,
        trust_proxy=settings.trust_proxy,
        proxy_header=settings.proxy_header,
        trusted_proxies=settings.trusted_proxies,
    )
    runner = FacadeRunner(
        create_app(config), access_log=None, shutdown_timeout=settings.shutdown_timeout / 2
    )
    admin = web.AppRunner(create_admin_app(), access_log=None)
    await runner.setup()
    await admin.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        logger.info("HTTP façade listening on http://%s:%d", settings.host, settings.port)
        admin_host, admin_port = settings.admin_hostport
        await web.TCPSite(admin, admin_host, admin_port).start()
        logger.info("metrics on http://%s:%d/metrics", admin_host, admin_port)
        await _until_stopped()
        logger.info("shutting down: finishing requests in flight and storing what they carry")
    finally:
        await _shut_down(runner, admin, core, settings.shutdown_timeout)


async def _shut_down(
    runner: web.AppRunner, admin: web.AppRunner, core: CoreServer, within: float
) -> None:
    """Stops accepting, lets requests in flight finish (half the time), then the core's calls
    (a quarter), then stores what they were promised; all of it bounded by ``within``."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            await runner.cleanup()
            await admin.cleanup()
            await core.stop(grace=within / 4)
    except TimeoutError:
        logger.error("shutdown took over %.0fs; stopping anyway", within)
    logger.info("stopped in %.2fs", time.monotonic() - started)


async def _until_stopped() -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
