"""The core's gRPC server factory: `EventService`, the façade's link (`FacadeLinkService`),
standard health, and server reflection (``grpc.reflection.v1`` and ``v1alpha``).

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

from prisme_core.adapters.maxmind import MaxMindDbLocator, NoGeoLocator
from prisme_core.adapters.mongo import MongoEventStore
from prisme_core.adapters.useragents import UserAgentsParser
from prisme_core.health import StoreMonitor
from prisme_core.link import FacadeLinkServicer
from prisme_core.peers import GrpcProxies
from prisme_core.pipeline import Enrichers, Pipeline, PipelineConfig
from prisme_core.ports import Clock, EventStore, GeoLocator, SystemClock, UserAgentParser
from prisme_core.request_id import RequestIdInterceptor
from prisme_core.servicer import EventServicer
from prisme_core.settings import Settings

logger = logging.getLogger(__name__)

HEALTH_INTERVAL = 2.0
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


@dataclass(frozen=True, slots=True)
class CoreDeps:
    store: EventStore
    geo: GeoLocator = field(default_factory=NoGeoLocator)
    agents: UserAgentParser = field(default_factory=UserAgentsParser)
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def from_settings(cls, settings: Settings) -> CoreDeps:
        """The production adapters: MongoDB, and the GeoIP database when one is configured."""
        if settings.mongodb_uri is None:
            raise ValueError("PRISME_MONGODB_URI is not set")
        store = MongoEventStore.from_uri(
            settings.mongodb_uri, settings.mongodb_database, settings.mongodb_timeout
        )
        if settings.geoip_db is None:
            logger.warning("PRISME_GEOIP_DB is not set: every country will be XX")
            return cls(store=store)
        return cls(store=store, geo=MaxMindDbLocator(settings.geoip_db))


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

    async def stop(self, grace: float = 5.0) -> None:
        self.link.close()  # the façade's stream ends once its batches are answered
        await self.server.stop(grace)
        await self.pipeline.close()
        await self.monitor.stop()
        await self.deps.store.close()
        self.deps.geo.close()


def pipeline_config(settings: Settings) -> PipelineConfig:
    return PipelineConfig(
        origins=settings.origins,
        session_inactive_ttl=settings.session_inactive_ttl,
        session_flush_interval=settings.session_flush_interval,
        batch_max_size=settings.batch_max_size,
        batch_max_timeout=settings.batch_max_timeout,
        api_events_timeout=settings.api_events_timeout,
        max_body_bytes=settings.max_body_bytes,
        rate_limit_per_minute=settings.rate_limit_per_minute,
        store_deadline=settings.mongodb_timeout,
        max_pending=settings.batch_max_queue,
    )


def create_server(settings: Settings, deps: CoreDeps, address: str | None = None) -> CoreServer:
    """Builds the core on ``address`` (default: ``PRISME_GRPC_HOSTPORT``); nothing runs yet."""
    if address is None:
        host, port = settings.grpc_hostport
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    pipeline = Pipeline(
        pipeline_config(settings), deps.store, deps.clock, Enrichers(deps.geo, deps.agents)
    )
    monitor = StoreMonitor(deps.store, HEALTH_INTERVAL)
    server = grpc.aio.server(
        interceptors=[RequestIdInterceptor()],
        options=[
            ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
            ("grpc.max_concurrent_streams", settings.grpc_max_streams),
        ],
    )
    events = EventServicer(
        pipeline, settings.grpc_token, GrpcProxies(settings.grpc_trusted_proxies)
    )
    link = FacadeLinkServicer(events, settings.mongodb_timeout)
    pb_grpc.add_EventServiceServicer_to_server(events, server)
    link_pb_grpc.add_FacadeLinkServiceServicer_to_server(link, server)
    health_pb2_grpc.add_HealthServicer_to_server(monitor.health, server)
    service_names = (
        pb.DESCRIPTOR.services_by_name["EventService"].full_name,
        link_pb.DESCRIPTOR.services_by_name["FacadeLinkService"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        REFLECTION_V1,
        reflection.SERVICE_NAME,
    )
    _enable_reflection(service_names, server)
    bound = _bind(server, address, settings)
    if bound == 0:
        raise OSError(f"cannot bind the gRPC core to {address}")
    return CoreServer(
        server=server, port=bound, pipeline=pipeline, monitor=monitor, deps=deps, link=link
    )


def _enable_reflection(service_names: tuple[str, ...], server: grpc.aio.Server) -> None:
    """Both reflection versions: ``v1`` has the messages of ``v1alpha`` under another name,
    so the one servicer answers both."""
    servicer = reflection.aio.ReflectionServicer(service_names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb.ServerReflectionResponse.SerializeToString,
    )
    for name in (REFLECTION_V1, reflection.SERVICE_NAME):
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler}),)
        )


def _bind(server: grpc.aio.Server, address: str, settings: Settings) -> int:
    if settings.grpc_tls_cert is None or settings.grpc_tls_key is None:
        return server.add_insecure_port(address)
    with open(settings.grpc_tls_key, "rb") as key, open(settings.grpc_tls_cert, "rb") as cert:
        credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
    return server.add_secure_port(address, credentials)
