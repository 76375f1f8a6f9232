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
import dataclasses
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web
from prisme_core.settings import Settings
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
    if settings.grpc_token is None:
        settings = dataclasses.replace(settings, grpc_token=secrets.token_urlsafe(32))
    host, port = settings.grpc_hostport
    if port == 0:
        settings = dataclasses.replace(settings, grpc_hostport=(host, free_port(host)))
    embedded: EmbeddedStore | None = None
    core: subprocess.Popen[bytes] | None = None
    try:
        if settings.mongodb_uri is None:
            embedded = EmbeddedStore(Path(settings.data_dir))
            settings = dataclasses.replace(
                settings, mongodb_uri=embedded.start(die_with_parent=True)
            )
        metrics_port = free_port("127.0.0.1")
        # Started before this process has any gRPC thread: children are forked safely.
        core = _start_core(settings, metrics_port)
        runtime.run(_serve(settings, core, metrics_port))
    finally:
        if core is not None:
            terminate(core, settings.shutdown_timeout / 2, "the core")
        if embedded is not None:
            embedded.stop()


def _start_core(settings: Settings, metrics_port: int) -> subprocess.Popen[bytes]:
    assert settings.mongodb_uri is not None
    assert settings.grpc_token is not None
    host, port = settings.grpc_hostport
    env = os.environ | {
        "PRISME_MONGODB_URI": settings.mongodb_uri,
        "PRISME_GRPC_TOKEN": settings.grpc_token,
        "PRISME_GRPC_HOSTPORT": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
    }
    core = subprocess.Popen(
        [sys.executable, "-m", "prisme_cli.main", "core", "--metrics-port", str(metrics_port)],
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=exit_with_parent,
        process_group=0,  # a terminal's Ctrl-C reaches only `serve`, which stops the core
    )
    target = _core_host(settings)
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
    host = settings.grpc_hostport[0]
    if host in {"0.0.0.0", ""}:
        return "127.0.0.1"
    return "::1" if host == "::" else host


def _core_target(settings: Settings) -> str:
    host, port = _core_host(settings), settings.grpc_hostport[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _serve(settings: Settings, core: subprocess.Popen[bytes], metrics_port: int) -> None:
    config = FacadeConfig(
        core_target=_core_target(settings),
        core_tls_root=_read(settings.grpc_tls_cert),
        token=settings.grpc_token,
        event_timeout=settings.mongodb_timeout + settings.api_events_timeout + 1.0,
        pageview_timeout=settings.mongodb_timeout + 0.5,
        read_timeout=settings.http_read_timeout,
        idle_timeout=settings.http_idle_timeout,
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
    admin = web.AppRunner(
        create_admin_app(also=f"http://127.0.0.1:{metrics_port}/metrics"), access_log=None
    )
    await runner.setup()
    await admin.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        logger.info("HTTP façade listening on http://%s:%d", settings.host, settings.port)
        admin_host, admin_port = settings.admin_hostport
        await web.TCPSite(admin, admin_host, admin_port).start()
        logger.info("metrics on http://%s:%d/metrics", admin_host, admin_port)
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
