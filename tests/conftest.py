"""Shared fixtures: the real store daemon, a database per test, the core and the façade.

The SecantusDB daemon runs once per test session as a child process on a free port (or the
server at ``PRISME_MONGODB_URI`` is used when set); each test gets its own database, dropped
afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prisme_cli.embedded import EmbeddedStore
from prisme_core.adapters.mongo import MongoEventStore
from prisme_core.server import CoreDeps, CoreServer, create_server
from prisme_core.settings import Settings
from prisme_http.app import create_app
from prisme_http.config import FacadeConfig
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import AiohttpClient, Document, HttpClient

TOKEN = "test-token"
ORIGINS = frozenset({"localhost", "example.com"})


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


@pytest.fixture
def settings(mongo_uri: str, database_name: str) -> Settings:
    return Settings(
        origins=ORIGINS,
        grpc_token=TOKEN,
        mongodb_uri=mongo_uri,
        mongodb_database=database_name,
        mongodb_timeout=2.0,
    )


@pytest.fixture
async def core(settings: Settings) -> AsyncIterator[CoreServer]:
    """The real gRPC core on a free port, with the real store."""
    assert settings.mongodb_uri is not None
    store = MongoEventStore.from_uri(
        settings.mongodb_uri, settings.mongodb_database, settings.mongodb_timeout
    )
    server = create_server(settings, CoreDeps(store=store), address="127.0.0.1:0")
    await server.start()
    yield server
    await server.stop(grace=0)


@pytest.fixture
def core_target(core: CoreServer) -> str:
    return f"127.0.0.1:{core.port}"


@pytest.fixture
async def http(aiohttp_client: AiohttpClient, core_target: str) -> HttpClient:
    """A real aiohttp server running the façade, wired to the real core."""
    config = FacadeConfig(core_target=core_target, token=TOKEN, event_timeout=5.0)
    return await aiohttp_client(create_app(config))


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
