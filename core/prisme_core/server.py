"""The core's gRPC server factory: `EventService`, the façade's link (`FacadeLinkService`),
`StatsService`, standard health, and server reflection (``grpc.reflection.v1`` and ``v1alpha``).

The server bounds what one caller can make it hold: a message at most
``PRISME_GRPC_MAX_MESSAGE_BYTES`` (4 MiB), and ``PRISME_GRPC_MAX_STREAMS`` concurrent calls per
connection. With ``PRISME_GRPC_TLS_CERT`` and ``PRISME_GRPC_TLS_KEY`` it serves TLS.

`create_server` wires the pipeline to its adapters and binds the address (port 0 picks a free
port, as tests do). The caller owns the returned `CoreServer`: `start()`, then `stop()`, which
finishes the calls in flight and stores everything they were promised.

Must not import aiohttp.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as reflection_pb
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme.v1 import facade_link_pb2 as link_pb
from prisme.v1 import facade_link_pb2_grpc as link_pb_grpc
from prisme.v1 import stats_service_pb2 as stats_pb
from prisme.v1 import stats_service_pb2_grpc as stats_pb_grpc

from prisme_core.adapters.maxmind import MaxMindDbLocator, NoGeoLocator
from prisme_core.adapters.memory import InMemoryEventStore
from prisme_core.adapters.mongo import MongoEventStore
from prisme_core.adapters.mongo_stats import MongoStats
from prisme_core.adapters.useragents import UserAgentsParser
from prisme_core.enrich import Enrichers
from prisme_core.health import StoreMonitor
from prisme_core.link import FacadeLinkServicer
from prisme_core.peers import GrpcProxies
from prisme_core.pipeline import Pipeline
from prisme_core.ports import Clock, EventStore, GeoLocator, SystemClock, UserAgentParser
from prisme_core.request_id import RequestIdInterceptor
from prisme_core.servicer import EventServicer
from prisme_core.settings import GrpcSettings, Settings
from prisme_core.stats.servicer import StatsServicer, StatsStore
from prisme_core.writes import WriteCount

logger = logging.getLogger(__name__)

HEALTH_INTERVAL = 2.0
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


@dataclass(frozen=True, slots=True)
class CoreDeps:
    store: EventStore
    geo: GeoLocator = field(default_factory=NoGeoLocator)
    agents: UserAgentParser = field(default_factory=UserAgentsParser)
    clock: Clock = field(default_factory=SystemClock)
    stats: StatsStore | None = None
    """Where the stats API reads; without one, `StatsService` is not served."""

    @classmethod
    def from_settings(cls, settings: Settings, writes: WriteCount | None = None) -> CoreDeps:
        """The production adapters: MongoDB, and the GeoIP database when one is configured.
        With ``PRISME_BENCH_MEMORY_STORE``, the store is in memory and the stats are not
        served. ``writes`` counts the store's writes (shared by the cores of one service)."""
        stored = settings.store
        geo: GeoLocator = NoGeoLocator()
        if settings.geoip_db is None:
            logger.warning("PRISME_GEOIP_DB is not set: every country will be XX")
        else:
            geo = MaxMindDbLocator(settings.geoip_db)
        if stored.bench_memory:
            logger.warning(
                "PRISME_BENCH_MEMORY_STORE: events are kept in memory and lost at stop (for the "
                "bench only); the stats API is not served"
            )
            return cls(store=InMemoryEventStore(), geo=geo)
        if stored.mongodb_uri is None:
            raise ValueError("PRISME_MONGODB_URI is not set")
        store = MongoEventStore.from_uri(
            stored.mongodb_uri, stored.database, stored.timeout, writes
        )
        stats = MongoStats(store.database, settings.stats.timeout, store.writes.total)
        return cls(store=store, geo=geo, stats=stats)


@dataclass(slots=True)
class CoreServer:
    server: grpc.aio.Server
    port: int
    pipeline: Pipeline
    monitor: StoreMonitor
    deps: CoreDeps
    link: FacadeLinkServicer

    async def start(self) -> None:
        self.pipeline.start()
        await self.monitor.check_once()
        await self.server.start()
        self.monitor.start()
        logger.info("gRPC core listening on port %d", self.port)

    async def flush(self) -> None:
        """Stores now everything accepted so far, session progress included (for tests and
        tools that read the store)."""
        await self.pipeline.flush()

    async def forget_ended_devices(self) -> None:
        """Runs the hourly sweep of ended sessions' device ids now."""
        await self.pipeline.forget_ended_devices()

    async def stop(self, grace: float = 5.0) -> None:
        self.link.close()  # the façade's stream ends once its batches are answered
        await self.server.stop(grace)
        await self.pipeline.close()
        await self.monitor.stop()
        if self.deps.stats is not None:
            await self.deps.stats.close()
        await self.deps.store.close()
        self.deps.geo.close()


def create_server(
    settings: Settings, deps: CoreDeps, address: str | None = None, private: str | None = None
) -> CoreServer:
    """Builds the core on ``address`` (default: ``PRISME_GRPC_HOSTPORT``), and also on
    ``private`` without TLS when given (the ``unix:`` socket its service's façades dial);
    nothing runs yet."""
    grpc_settings = settings.grpc
    pipeline = Pipeline(
        settings.limits,
        settings.sessions,
        settings.store,
        deps.store,
        deps.clock,
        Enrichers(deps.geo, deps.agents),
    )
    monitor = StoreMonitor(deps.store, HEALTH_INTERVAL)
    server = grpc.aio.server(
        interceptors=[RequestIdInterceptor()],
        options=[
            ("grpc.max_receive_message_length", grpc_settings.max_message_bytes),
            ("grpc.max_concurrent_streams", grpc_settings.max_streams),
        ],
    )
    events = EventServicer(
        pipeline,
        grpc_settings.token,
        GrpcProxies(grpc_settings.trusted_proxies),
        settings.limits.max_body_bytes,
    )
    link = FacadeLinkServicer(events, pipeline.store_deadline)
    pb_grpc.add_EventServiceServicer_to_server(events, server)
    link_pb_grpc.add_FacadeLinkServiceServicer_to_server(link, server)
    health_pb2_grpc.add_HealthServicer_to_server(monitor.health, server)
    if deps.stats is not None:
        stats = StatsServicer(deps.stats, settings.stats.token, settings.stats.timeout, deps.clock)
        stats_pb_grpc.add_StatsServiceServicer_to_server(stats, server)
    _enable_reflection(server)
    address = address or grpc_settings.address
    bound = _bind(server, address, grpc_settings)
    if bound == 0:
        raise OSError(f"cannot bind the gRPC core to {address}")
    if private is not None and server.add_insecure_port(private) == 0:
        raise OSError(f"cannot bind the gRPC core to {private}")
    return CoreServer(
        server=server, port=bound, pipeline=pipeline, monitor=monitor, deps=deps, link=link
    )


SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["EventService"].full_name,
    link_pb.DESCRIPTOR.services_by_name["FacadeLinkService"].full_name,
    stats_pb.DESCRIPTOR.services_by_name["StatsService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    REFLECTION_V1,
    reflection.SERVICE_NAME,
)
"""What reflection lists."""


def _enable_reflection(server: grpc.aio.Server) -> None:
    """Both reflection versions: ``v1`` has the messages of ``v1alpha`` under another name,
    so the one servicer answers both."""
    servicer = reflection.aio.ReflectionServicer(SERVICE_NAMES)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb.ServerReflectionResponse.SerializeToString,
    )
    for name in (REFLECTION_V1, reflection.SERVICE_NAME):
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler}),)
        )


def _bind(server: grpc.aio.Server, address: str, settings: GrpcSettings) -> int:
    if settings.tls_cert is None or settings.tls_key is None:
        return server.add_insecure_port(address)
    with open(settings.tls_key, "rb") as key, open(settings.tls_cert, "rb") as cert:
        credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
    return server.add_secure_port(address, credentials)
