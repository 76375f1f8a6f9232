"""``prisme core``: the gRPC core alone, in its own process, until SIGTERM.

`prisme serve` runs ``PRISME_WORKERS`` of them as children, so each core and each HTTP façade
has a CPU core's worth of Python to itself. Every core listens on ``PRISME_GRPC_HOSTPORT``
(``SO_REUSEPORT``: the kernel spreads backends' connections among them) and on a ``unix:``
socket of its own, which the façades dial to reach the core a client IP maps to. Its
Prometheus metrics are served on a loopback port of the supervisor's choosing, and merged
into the admin endpoint by the supervisor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from prisme_core.server import CoreDeps, create_server
from prisme_core.settings import Settings
from prisme_core.writes import WriteCount
from prometheus_client import start_http_server

from prisme_cli import runtime

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CorePlace:
    """Where one core of a service runs: its own socket, and its slot of the shared count."""

    private: str
    """The ``unix:`` address the façades dial."""
    writes: Path
    slot: int
    slots: int


def run_core(settings: Settings, metrics_port: int | None, place: CorePlace | None) -> None:
    runtime.tune_allocator()
    if metrics_port is not None:
        start_http_server(metrics_port, addr="127.0.0.1")
    runtime.run(_core(settings, place))


async def _core(settings: Settings, place: CorePlace | None) -> None:
    stopped = runtime.stop_signals()
    writes = private = None
    if place is not None:
        writes = WriteCount(place.writes, place.slot, place.slots)
        private = place.private
    core = create_server(settings, CoreDeps.from_settings(settings, writes), private=private)
    await core.start()
    runtime.settle_gc()
    await stopped.wait()
    logger.info("core stopping: finishing calls in flight and storing what they carry")
    await core.stop(grace=settings.shutdown_timeout / 4)
