"""``prisme core``: the gRPC core alone, in its own process, until SIGTERM.

`prisme serve` runs it as a child, so the core and the HTTP façade each have a CPU core's worth
of Python to themselves. Its Prometheus metrics are served on a loopback port of the
supervisor's choosing, and merged into the admin endpoint by the façade's process.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from prisme_core.server import CoreDeps, create_server
from prisme_core.settings import Settings
from prometheus_client import start_http_server

from prisme_cli import runtime

logger = logging.getLogger(__name__)


def run_core(settings: Settings, metrics_port: int | None) -> None:
    runtime.tune_allocator()
    if metrics_port is not None:
        start_http_server(metrics_port, addr="127.0.0.1")
    runtime.run(_core(settings))


async def _core(settings: Settings) -> None:
    core = create_server(settings, CoreDeps.from_settings(settings))
    await core.start()
    runtime.settle_gc()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    logger.info("core stopping: finishing calls in flight and storing what they carry")
    await core.stop(grace=settings.shutdown_timeout / 4)
