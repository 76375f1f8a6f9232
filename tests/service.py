"""`prisme serve` as a subprocess, and a load generator, for tests that stop, kill and restart
the whole service."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from prisme_cli.embedded import free_port as embedded_free_port

from tests.support import BROWSER_HEADERS

PRISME = str(Path(sys.executable).with_name("prisme"))


def free_port() -> int:
    return embedded_free_port("127.0.0.1")


def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISME_")}
    return (
        env
        | {
            "PRISME_HOST": "127.0.0.1",
            "PRISME_GRPC_HOSTPORT": "127.0.0.1:0",
            "PRISME_ADMIN_HOSTPORT": f"127.0.0.1:{free_port()}",
            "PRISME_ORIGIN_REGISTRY_ORIGINS": "localhost",
            "PRISME_WORKERS": "1",  # tests of several set their own
        }
        | extra
    )


@dataclass
class Service:
    process: subprocess.Popen[str]
    base: str
    log: Path

    def stop(self, timeout: float = 20) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def start_service(log: Path, **env: str) -> Service:
    port = free_port()
    with log.open("a") as out:
        process = subprocess.Popen(
            [PRISME, "serve"],
            env=service_env(PRISME_PORT=str(port), **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    service = Service(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while not _healthy(port):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    return service


def _healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(
                b"GET /api/v1/healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@dataclass
class Load:
    """Page views from many visitors, each with an event id; remembers what was answered."""

    base: str
    acknowledged: set[str] = field(default_factory=set)
    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, concurrency: int = 16, limit: int | None = None) -> None:
        sent = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:

            async def worker(number: int) -> None:
                nonlocal sent
                while not self.stopped.is_set() and (limit is None or sent < limit):
                    sent += 1
                    await self.one(http, visitor=f"{number}.{sent}")

            await asyncio.gather(*(worker(n) for n in range(concurrency)))

    async def one(
        self, http: aiohttp.ClientSession, visitor: str, path: str = "/p", referrer: str = ""
    ) -> None:
        event_id = str(uuid.uuid4())
        octets = [int(part) % 250 + 1 for part in [*visitor.split("."), "0", "0"][:2]]
        headers = BROWSER_HEADERS | {
            "X-Prisme-Referrer": f"http://localhost{path}",
            "X-Prisme-Event-Id": event_id,
            "X-Forwarded-For": f"81.2.{octets[0]}.{octets[1]}",
        }
        if referrer:
            headers["X-Prisme-Document-Referrer"] = referrer
        started = time.monotonic()
        try:
            async with http.post(f"{self.base}/api/v1/events/pageviews", headers=headers) as answer:
                await answer.read()
                status = answer.status
        except (TimeoutError, aiohttp.ClientError):
            status = 0  # the service is gone: nothing was promised
            await asyncio.sleep(0.01)
        self.latencies.append(time.monotonic() - started)
        self.statuses.append(status)
        if status == 200:
            self.acknowledged.add(event_id)
