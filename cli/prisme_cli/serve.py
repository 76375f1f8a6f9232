"""``prisme serve``: the HTTP façades, the gRPC cores and, if needed, the store, until SIGTERM.

``PRISME_WORKERS`` (default: the usable cores, at most 16) sets how many of each. This
process is the first façade and the supervisor; the cores (``prisme core``) and the other
façades (``prisme facade``) are its children, so each has a CPU core's worth of Python:

- every façade listens on the HTTP port (``SO_REUSEPORT`` with more than one), and sends each
  event to the core its client IP maps to, over that core's ``unix:`` socket in a private
  directory; so a client's rate limit, live sessions and retried event ids are all in one core;
- every core listens on ``PRISME_GRPC_HOSTPORT`` too (one port, ``SO_REUSEPORT``), so backends
  and SDKs need one address; the kernel gives each of their connections to one core;
- the cores count their store writes in one shared file, so a stats answer one of them keeps
  is not served again after another wrote.

The façades call the cores as trusted callers with the service token (a random one when
``PRISME_GRPC_TOKEN`` is unset). When no ``PRISME_MONGODB_URI`` is given, the embedded store
runs as another child under ``PRISME_DATA_DIR``. A core or façade that dies is started again
(a dead core's events are answered 503 meanwhile); children die with this process, even when
it is killed. On SIGTERM or Ctrl-C: the façades stop accepting and finish their requests, then
the cores finish their calls and store what they carry, then the store stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import tempfile
from dataclasses import replace
from pathlib import Path

from aiohttp import web
from prisme_core.settings import Settings, default_workers
from prisme_core.writes import WriteCount
from prisme_http.admin import create_admin_app

from prisme_cli import runtime
from prisme_cli.children import Child, ChildError, command, stop_all
from prisme_cli.embedded import EmbeddedStore, free_port
from prisme_cli.facade import facade_config, serving

logger = logging.getLogger(__name__)

__all__ = ["facade_config", "serve"]


def serve(settings: Settings) -> None:
    """Runs the service in the foreground; returns after a clean shutdown."""
    settings = _with_core_address(settings)
    workers = settings.workers or default_workers()
    if workers > 1:
        _refuse_taken(settings)
    embedded: EmbeddedStore | None = None
    cores: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="prisme-") as private:
        try:
            if settings.store.mongodb_uri is None and not settings.store.bench_memory:
                embedded = EmbeddedStore(Path(settings.store.data_dir))
                uri = embedded.start(die_with_parent=True)
                settings = replace(settings, store=replace(settings.store, mongodb_uri=uri))
            ports = _Ports(settings)
            cores, targets = _cores(settings, workers, Path(private), ports)
            facades = _facades(settings, workers, targets, ports)
            runtime.run(_serve(settings, targets, cores, facades, workers))
        finally:
            stop_all(cores, settings.shutdown_timeout / 2)
            if embedded is not None:
                embedded.stop()


def _with_core_address(settings: Settings) -> Settings:
    """The settings with what the façades and the cores must agree on chosen: a service token
    (random when unset) and the cores' port (a free one for port 0)."""
    grpc, stats = settings.grpc, settings.stats
    if grpc.token is None:
        grpc = replace(grpc, token=secrets.token_urlsafe(32))
    if stats.token is None:
        stats = replace(stats, token=secrets.token_urlsafe(32))
    host, port = grpc.hostport
    if port == 0:
        grpc = replace(grpc, hostport=(host, free_port(host)))
    return replace(settings, grpc=grpc, stats=stats)


def _refuse_taken(settings: Settings) -> None:
    """Fails if the HTTP or the gRPC port is taken: shared ports would otherwise join whatever
    else holds them with ``SO_REUSEPORT``."""
    for what, (host, port) in (
        ("PRISME_PORT", (settings.edge.host, settings.edge.port)),
        ("PRISME_GRPC_HOSTPORT", settings.grpc.hostport),
    ):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the servers bind: a port with only closed connections lingering is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ChildError(f"{what}: cannot listen on {host}:{port}: {exc}") from exc


def _children_env(settings: Settings) -> dict[str, str]:
    """The environment of every child: this one's, with the tokens chosen at start."""
    assert settings.grpc.token is not None
    assert settings.stats.token is not None
    tokens = {"PRISME_GRPC_TOKEN": settings.grpc.token, "PRISME_STATS_TOKEN": settings.stats.token}
    return dict(os.environ) | tokens


class _Ports:
    """Loopback ports for the children's metrics, none of them a port the service uses."""

    def __init__(self, settings: Settings) -> None:
        edge = settings.edge
        self._taken = {settings.grpc.hostport[1], edge.port, edge.admin_hostport[1]}

    def next(self) -> int:
        port = free_port("127.0.0.1", self._taken)
        self._taken.add(port)
        return port


def _cores(
    settings: Settings, workers: int, private: Path, ports: _Ports
) -> tuple[list[Child], list[str]]:
    """The cores, and the addresses the façades dial them at."""
    env = _children_env(settings) | {"PRISME_GRPC_HOSTPORT": settings.grpc.address}
    if settings.store.mongodb_uri is not None:
        env["PRISME_MONGODB_URI"] = settings.store.mongodb_uri
    writes = private / "writes"
    WriteCount.create(writes, workers)
    cores, targets = [], []
    for slot in range(workers):
        path, port = private / f"core-{slot}.sock", ports.next()
        argv = command(
            "core", "--name", f"core-{slot}", "--parent", str(os.getpid()),
            "--metrics-port", str(port),
            "--private", f"unix:{path}", "--writes", str(writes),
            "--slot", str(slot), "--slots", str(workers),
        )  # fmt: skip
        cores.append(
            Child(
                f"core-{slot}",
                argv,
                env,
                ready=functools.partial(_accepts, path),
                metrics=_metrics_url(port),
                before_start=functools.partial(path.unlink, missing_ok=True),
            )
        )
        targets.append(f"unix:{path}")
    return cores, targets


def _facades(settings: Settings, workers: int, targets: list[str], ports: _Ports) -> list[Child]:
    """The façades besides this process's."""
    env = _children_env(settings)
    facades = []
    for n in range(1, workers):
        port = ports.next()
        cores = [part for target in targets for part in ("--core", target)]
        argv = command("facade", "--name", f"facade-{n}", "--parent", str(os.getpid()),
                       "--metrics-port", str(port), *cores)  # fmt: skip
        ready = functools.partial(_accepts_tcp, port)
        facades.append(Child(f"facade-{n}", argv, env, ready=ready, metrics=_metrics_url(port)))
    return facades


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def _accepts_tcp(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _metrics_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics"


async def _serve(
    settings: Settings,
    targets: list[str],
    cores: list[Child],
    facades: list[Child],
    workers: int,
) -> None:
    stopped = runtime.stop_signals()
    sources = [child.metrics for child in (*cores, *facades)]
    admin = web.AppRunner(create_admin_app(sources), access_log=None)
    await admin.setup()
    kept: list[asyncio.Task[None]] = []
    try:
        admin_host, admin_port = settings.edge.admin_hostport
        await web.TCPSite(admin, admin_host, admin_port).start()
        logger.info("metrics on http://%s:%d/metrics", admin_host, admin_port)
        for children in (cores, facades):  # the façades dial the cores
            for child in children:
                child.start()
            for child in children:
                await child.until_ready()
        logger.info("%d façade and %d core processes", workers, workers)
        _announce_stats(settings)
        # This one listens last: once it answers, the whole service does.
        async with serving(settings, targets, shared=workers > 1):
            kept = [asyncio.create_task(child.keep()) for child in (*cores, *facades)]
            runtime.settle_gc()
            await stopped.wait()
            for task in kept:
                task.cancel()
            for facade in facades:
                facade.signal_stop()  # they finish their requests as this one does
    finally:
        for task in kept:
            task.cancel()
        await asyncio.to_thread(stop_all, facades, settings.shutdown_timeout / 2)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                await admin.cleanup()


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
