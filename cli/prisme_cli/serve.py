"""``prisme serve``: the HTTP façade, the gRPC core and, if needed, the store, until SIGTERM.

The core runs as a child process (``prisme core``), so façade and core each have a CPU core's
worth of Python; the façade calls it as a trusted caller with the service token (a random one
when ``PRISME_GRPC_TOKEN`` is unset). When no ``PRISME_MONGODB_URI`` is given, the embedded
store runs as another child under ``PRISME_DATA_DIR``. Children die with this process, even
when it is killed, and run in process groups of their own, so a signal to this process's group
(a terminal's Ctrl-C) reaches only this process, which stops them in order. On SIGTERM or
Ctrl-C: the façade stops accepting and finishes its requests, then the core finishes its calls
and stores what they carry, then the store stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from aiohttp import web
from prisme_core.settings import EdgeSettings, Settings, deadlines, join_hostport
from prisme_http.admin import create_admin_app
from prisme_http.app import create_app
from prisme_http.config import FacadeConfig
from prisme_http.runner import FacadeRunner

from prisme_cli import runtime
from prisme_cli.embedded import EmbeddedStore, exit_with_parent, free_port, terminate

logger = logging.getLogger(__name__)


class CoreProcessError(RuntimeError):
    pass


def serve(settings: Settings) -> None:
    """Runs the service in the foreground; returns after a clean shutdown."""
    settings = _with_core_address(settings)
    embedded: EmbeddedStore | None = None
    core: subprocess.Popen[bytes] | None = None
    try:
        if settings.store.mongodb_uri is None:
            embedded = EmbeddedStore(Path(settings.store.data_dir))
            uri = embedded.start(die_with_parent=True)
            settings = replace(settings, store=replace(settings.store, mongodb_uri=uri))
        taken = {settings.grpc.hostport[1], settings.edge.port, settings.edge.admin_hostport[1]}
        metrics_port = free_port("127.0.0.1", taken)
        # Started before this process has any gRPC thread: children are forked safely.
        core = _start_core(settings, metrics_port)
        runtime.run(_serve(settings, core, metrics_port))
    finally:
        if core is not None:
            terminate(core, settings.shutdown_timeout / 2, "the core")
        if embedded is not None:
            embedded.stop()


def _with_core_address(settings: Settings) -> Settings:
    """The settings with what the façade and the core must agree on chosen: a service token
    (random when unset) and the core's port (a free one for port 0)."""
    grpc, stats = settings.grpc, settings.stats
    if grpc.token is None:
        grpc = replace(grpc, token=secrets.token_urlsafe(32))
    if stats.token is None:
        stats = replace(stats, token=secrets.token_urlsafe(32))
    host, port = grpc.hostport
    if port == 0:
        grpc = replace(grpc, hostport=(host, free_port(host)))
    return replace(settings, grpc=grpc, stats=stats)


def _start_core(settings: Settings, metrics_port: int) -> subprocess.Popen[bytes]:
    assert settings.store.mongodb_uri is not None
    assert settings.grpc.token is not None
    assert settings.stats.token is not None
    env = os.environ | {
        "PRISME_MONGODB_URI": settings.store.mongodb_uri,
        "PRISME_GRPC_TOKEN": settings.grpc.token,
        "PRISME_STATS_TOKEN": settings.stats.token,
        "PRISME_GRPC_HOSTPORT": settings.grpc.address,
    }
    core = subprocess.Popen(
        [sys.executable, "-m", "prisme_cli.main", "core", "--metrics-port", str(metrics_port)],
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=exit_with_parent,
        process_group=0,  # a terminal's Ctrl-C reaches only `serve`, which stops the core
    )
    target, port = _core_host(settings), settings.grpc.hostport[1]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if core.poll() is not None:
            raise CoreProcessError(f"the core exited with {core.returncode} at start")
        try:
            socket.create_connection((target, port), timeout=0.5).close()
            return core
        except OSError:
            time.sleep(0.05)
    core.kill()
    raise CoreProcessError("the core did not start within 30s")


def _core_host(settings: Settings) -> str:
    """The address the façade dials: the core's, or loopback when the core listens on all."""
    host = settings.grpc.hostport[0]
    if host in {"0.0.0.0", ""}:
        return "127.0.0.1"
    return "::1" if host == "::" else host


def facade_config(settings: Settings, core_target: str) -> FacadeConfig:
    """The façade's part of the settings, its deadlines derived from the core's."""
    edge, limits, waits = settings.edge, settings.limits, deadlines(settings)
    return FacadeConfig(
        core_target=core_target,
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


async def _serve(settings: Settings, core: subprocess.Popen[bytes], metrics_port: int) -> None:
    target = join_hostport(_core_host(settings), settings.grpc.hostport[1])
    runner = FacadeRunner(
        create_app(facade_config(settings, target)),
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout / 2,
    )
    admin = web.AppRunner(
        create_admin_app(also=f"http://127.0.0.1:{metrics_port}/metrics"), access_log=None
    )
    await runner.setup()
    await admin.setup()
    try:
        await _listen(settings.edge, runner, admin)
        _announce_stats(settings)
        runtime.settle_gc()
        await _until_stopped(core)
        logger.info("shutting down: finishing requests in flight")
    finally:
        started = time.monotonic()
        try:
            async with asyncio.timeout(settings.shutdown_timeout / 2):
                await runner.cleanup()
                await admin.cleanup()
        except TimeoutError:
            logger.error("requests still in flight after %.0fs", settings.shutdown_timeout / 2)
        logger.info("façade stopped in %.2fs", time.monotonic() - started)


async def _listen(edge: EdgeSettings, runner: web.AppRunner, admin: web.AppRunner) -> None:
    await web.TCPSite(runner, edge.host, edge.port).start()
    logger.info("HTTP façade listening on http://%s:%d", edge.host, edge.port)
    admin_host, admin_port = edge.admin_hostport
    await web.TCPSite(admin, admin_host, admin_port).start()
    logger.info("metrics on http://%s:%d/metrics", admin_host, admin_port)


def _announce_stats(settings: Settings) -> None:
    """Says where the stats are read and seen, with the token when it was generated at start
    (in the dashboard link's fragment, which the browser keeps to itself)."""
    base = f"http://localhost:{settings.edge.port}"
    if os.environ.get("PRISME_STATS_TOKEN"):
        logger.info("stats API on %s/api/v1/stats/", base)
        logger.info("dashboard on %s/dashboard (it asks for PRISME_STATS_TOKEN)", base)
        return
    # Printed, not logged: a generated token is for the person who started the service.
    print(
        f"stats API on {base}/api/v1/stats/ with Authorization: Bearer {settings.stats.token}\n"
        f"dashboard on {base}/dashboard#token={settings.stats.token}",
        flush=True,
    )


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


async def _until_stopped(core: subprocess.Popen[bytes]) -> None:
    """Returns on SIGTERM or Ctrl-C, or if the core process dies."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    while not stopped.is_set():
        if core.poll() is not None:
            logger.error("the core exited with %s; stopping", core.returncode)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), 0.5)
