"""The core's gRPC server factory: `EventService`, standard health, and server reflection.

`create_server` wires the pipeline to its adapters and binds the address (port 0 picks a free
port, as tests do). The caller owns the returned `CoreServer`: `start()`, then `stop()`.

Must not import aiohttp.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc

from prisme_core.health import StoreMonitor
from prisme_core.pipeline import Pipeline, PipelineConfig
from prisme_core.ports import Clock, EventStore, SystemClock
from prisme_core.servicer import EventServicer
from prisme_core.settings import Settings

logger = logging.getLogger(__name__)

HEALTH_INTERVAL = 2.0


@dataclass(frozen=True, slots=True)
class CoreDeps:
    store: EventStore
    clock: Clock = field(default_factory=SystemClock)


@dataclass(slots=True)
class CoreServer:
    server: grpc.aio.Server
    port: int
    monitor: StoreMonitor
    store: EventStore

    async def start(self) -> None:
        await self.monitor.check_once()
        await self.server.start()
        self.monitor.start()
        logger.info("gRPC core listening on port %d", self.port)

    async def stop(self, grace: float = 5.0) -> None:
        await self.monitor.stop()
        await self.server.stop(grace)
        await self.store.close()


def create_server(settings: Settings, deps: CoreDeps, address: str | None = None) -> CoreServer:
    """Builds the core on ``address`` (default: ``PRISME_GRPC_HOSTPORT``); nothing runs yet."""
    if address is None:
        host, port = settings.grpc_hostport
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    pipeline = Pipeline(PipelineConfig(origins=settings.origins), deps.store, deps.clock)
    monitor = StoreMonitor(deps.store, HEALTH_INTERVAL)
    server = grpc.aio.server()
    pb_grpc.add_EventServiceServicer_to_server(EventServicer(pipeline, settings.grpc_token), server)
    health_pb2_grpc.add_HealthServicer_to_server(monitor.health, server)
    service_names = (
        pb.DESCRIPTOR.services_by_name["EventService"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(service_names, server)
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind the gRPC core to {address}")
    return CoreServer(server=server, port=bound, monitor=monitor, store=deps.store)
