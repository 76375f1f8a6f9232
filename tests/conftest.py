"""Shared fixtures: the real store daemon, a database per test, the core and the façade.

The SecantusDB daemon runs once per test session as a child process on a free port (or the
server at ``PRISME_MONGODB_URI`` is used when set); each test gets its own database, dropped
afterwards.
"""

from __future__ import annotations

import ipaddress
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import grpc
import hypothesis
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_cli import serve
from prisme_cli.embedded import EmbeddedStore
from prisme_core.adapters.useragents import UserAgentsParser
from prisme_core.ports import Clock
from prisme_core.server import CoreDeps, CoreServer, create_server
from prisme_core.settings import (
    EdgeSettings,
    GrpcSettings,
    LimitSettings,
    SessionSettings,
    Settings,
    StatsSettings,
    StoreSettings,
)
from prisme_core.writes import WriteCount
from prisme_http.app import create_app
from prisme_http.config import FacadeConfig
from prisme_http.runner import FacadeRunner
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.geodb import write_country_db
from tests.support import AiohttpClient, Document, HttpClient
from tests.transports import TOKEN

ORIGINS = frozenset({"localhost", "example.com"})
STATS_TOKEN = "stats-test-token"

# Reproducible property tests: the same examples on every run and machine, no example database.
hypothesis.settings.register_profile("repeatable", derandomize=True, database=None, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("PRISME_MONGODB_URI")
    if given:
        yield given
        return
    store = EmbeddedStore(tmp_path_factory.mktemp("store"), cache_size="128M")
    try:
        yield store.start()
    finally:
        store.stop()


@pytest.fixture(scope="session")
def geoip_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_country_db(tmp_path_factory.mktemp("geoip") / "country.mmdb")


@pytest.fixture(scope="session")
def user_agents() -> UserAgentsParser:
    return UserAgentsParser()


@pytest.fixture
def database_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def mongo(mongo_uri: str, database_name: str) -> AsyncIterator[AsyncDatabase[Document]]:
    """Direct access to the test's database, to check what the service stored."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        mongo_uri, uuidRepresentation="standard", tz_aware=True
    )
    yield client[database_name]
    await client.drop_database(database_name)
    await client.close()


BASE_SETTINGS = Settings(
    edge=EdgeSettings(trust_proxy=True, trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),)),
    grpc=GrpcSettings(token=TOKEN),
    store=StoreSettings(timeout=2.0, batch_max_timeout=0.002),
    sessions=SessionSettings(events_timeout=0.5),
    limits=LimitSettings(
        origins=ORIGINS,
        rate_limit_per_minute=1_000_000,  # the rate-limit tests set their own
    ),
    stats=StatsSettings(token=STATS_TOKEN, allow_origins=frozenset({"https://app.example.com"})),
)
"""The tests' service: short deadlines, the loopback test client trusted as a proxy."""


@pytest.fixture
def settings(mongo_uri: str, database_name: str, geoip_db: Path) -> Settings:
    store = replace(BASE_SETTINGS.store, mongodb_uri=mongo_uri, database=database_name)
    return replace(BASE_SETTINGS, store=store, geoip_db=str(geoip_db))


def changed(settings: Settings, section: str, **changes: Any) -> Settings:
    """``settings`` with some fields of one section changed: ``changed(s, "store", timeout=1)``."""
    return replace(settings, **{section: replace(getattr(settings, section), **changes)})


def core_deps(
    settings: Settings, user_agents: UserAgentsParser, writes: WriteCount | None = None
) -> CoreDeps:
    """The production adapters, sharing the session's user-agent parser."""
    return replace(CoreDeps.from_settings(settings, writes), agents=user_agents)


CORES = int(os.environ.get("PRISME_TEST_CORES", "1"))
"""Cores behind the tests' façade (the `core` and `http` fixtures). ``PRISME_TEST_CORES=2``
runs every test with each client IP sent to one of two cores sharing one store, as
`prisme serve` does with ``PRISME_WORKERS=2``."""


class _Cores:
    """Several cores, seen as the first one, except that `flush`, `forget_ended_devices` and
    `stop` reach them all."""

    def __init__(self, servers: list[CoreServer]) -> None:
        self.servers = servers

    def __getattr__(self, name: str) -> Any:
        return getattr(self.servers[0], name)

    async def flush(self) -> None:
        for server in self.servers:
            await server.flush()

    async def forget_ended_devices(self) -> None:
        for server in self.servers:
            await server.forget_ended_devices()

    async def stop(self, grace: float = 5.0) -> None:
        for server in self.servers:
            await server.stop(grace)


@pytest.fixture
def core_clock() -> Clock | None:
    """The core's clock: its own, unless a test module gives it one (a `FixedClock`)."""
    return None


@pytest.fixture
async def core(
    settings: Settings, user_agents: UserAgentsParser, core_clock: Clock | None, tmp_path: Path
) -> AsyncIterator[CoreServer]:
    """The real gRPC core on a free port, with the real store and a test GeoIP database (or
    `CORES` of them, sharing their write count as `prisme serve`'s do)."""
    servers = []
    if CORES > 1:
        WriteCount.create(tmp_path / "writes", CORES)
    for slot in range(CORES):
        writes = WriteCount(tmp_path / "writes", slot, CORES) if CORES > 1 else None
        deps = core_deps(settings, user_agents, writes)
        if core_clock is not None:
            deps = replace(deps, clock=core_clock)
        servers.append(create_server(settings, deps, address="127.0.0.1:0"))
        await servers[-1].start()
    yield servers[0] if CORES == 1 else cast(CoreServer, _Cores(servers))
    for server in servers:
        await server.stop(grace=1)


@pytest.fixture
def core_target(core: CoreServer) -> str:
    return f"127.0.0.1:{core.port}"


@pytest.fixture
def core_targets(core: CoreServer) -> tuple[str, ...]:
    """Every core's address, in the order the façade routes client IPs to them."""
    return tuple(f"127.0.0.1:{server.port}" for server in getattr(core, "servers", [core]))


def routed(core_targets: tuple[str, ...]) -> FacadeConfig:
    """The tests' façade, sending each client IP to one of ``core_targets``."""
    return replace(facade_config(core_targets[0]), core_targets=core_targets)


@pytest.fixture
async def http(aiohttp_client: AiohttpClient, core_targets: tuple[str, ...]) -> HttpClient:
    """A real aiohttp server running the façade, wired to the real core; as `FacadeRunner`
    does, it leaves request bodies encoded for the façade to decode."""
    return await aiohttp_client(FacadeTestServer(create_app(routed(core_targets))))


class FacadeTestServer(TestServer):
    """aiohttp's test server behind the façade's own runner."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return FacadeRunner(self.app, **kwargs)


@pytest.fixture
def facade_app(core_targets: tuple[str, ...]) -> web.Application:
    return create_app(routed(core_targets))


@pytest.fixture
async def facade_port(facade_app: web.Application) -> AsyncIterator[int]:
    """The façade behind its real runner on a real port: for browsers and raw sockets."""
    runner = FacadeRunner(facade_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield runner.addresses[0][1]
    await runner.cleanup()


@pytest.fixture
async def stub(core_target: str) -> AsyncIterator[pb_grpc.EventServiceAsyncStub]:
    """A gRPC stub on the real core."""
    async with grpc.aio.insecure_channel(core_target) as channel:
        yield pb_grpc.EventServiceStub(channel)


def facade_config(core_target: str, settings: Settings = BASE_SETTINGS) -> FacadeConfig:
    """The façade as `prisme serve` wires it to a core with ``settings``."""
    return serve.facade_config(settings, core_target)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
