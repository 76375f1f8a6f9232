"""`make bench`: the full stack against its ceilings, in one run, under one HTTP load.

    .venv/bin/python bench/run.py [--duration SECONDS] [--connections N]

1. The store's own ceiling: the documents this workload must write (page views, plus a session
   for each new session), written with batched ``insert_many`` and nothing else, into the same
   indexed collections.
2. The front door's ceiling: a bare aiohttp handler on the same route, under the same wrk load.
3. The service's ceiling: ``prisme serve`` with its store in memory
   (``PRISME_BENCH_MEMORY_STORE``, refused outside the bench and the tests), under the same
   wrk load: page views per second and the CPU time of every service process per page view,
   without the store's cost.
4. The full stack: ``prisme serve`` (façades, cores, group commit) in front of the same store
   daemon, under the same wrk load, with the CPU time of every service process per event;
   afterwards every acknowledged event is looked up in the store.

5. Batches: the full stack again, under requests of `BATCH_SIZE` page views each (one
   visitor's session, gzip-compressed, with client timestamps and ``sent_at``, as an SDK's
   offline queue sends them): ``bench-batch:`` gives page views per second and service CPU per
   page view beside the single-event figures.

With ``--hol``, the full stack runs again beside a slow client (a custom event with no session
about once a second, each waiting for one): ``bench-hol:`` gives the others' throughput, its
share of the first run's, and their p99.

It ends with the line ``bench: e2e_rps=... store_rps=... ratio=... bare_rps=...
cpu_us_per_event=... p50_ms=... p99_ms=... errors=... lost=... service_rps=... service_cpu_us=...
workers=...``; ``PRISME_WORKERS`` sets the workers of every run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prisme_cli.embedded import EmbeddedStore
from prisme_cli.embedded import free_port as embedded_free_port
from prisme_core.adapters.mongo import (
    PAGEVIEWS,
    SESSIONS,
    MongoEventStore,
    pageview_document,
    session_document,
)
from prisme_core.enrich import uuid7
from prisme_core.model import PageView, SessionAttributes, SessionStart
from prisme_core.settings import Settings, default_workers
from pymongo import AsyncMongoClient

HERE = Path(__file__).resolve().parent
LUA = HERE / "pageviews.lua"
BATCH_LUA = HERE / "batches.lua"
BATCH_SIZE = 50
BATCH_CONNECTIONS = 16
"""Requests in flight in the batched run: 800 page views, as 64 single ones are 64."""
BATCH_BODIES = 3000
"""Bodies written per batched run: more than it sends (each a request, its ids new)."""
PAGES = ("/", "/pricing", "/blog", "/blog/launch", "/docs", "/docs/install", "/about")
NEW_SHARE = float(os.environ.get("BENCH_NEW_SHARE", "0.3"))  # as bench/pageviews.lua reads them
VISITORS = int(os.environ.get("BENCH_VISITORS", "2000"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SLOW_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"

BARE_APP = """
import sys
from aiohttp import web
async def handle(request):
    return web.json_response({})
app = web.Application()
app.router.add_post("/api/v1/events/pageviews", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


@dataclass
class WrkResult:
    requests: int
    acknowledged: int
    errors: int
    p50_ms: float
    p99_ms: float
    seconds: float

    @property
    def rps(self) -> float:
        return self.acknowledged / self.seconds


def free_port() -> int:
    return embedded_free_port("127.0.0.1")


def wait_port(
    port: int, within: float = 30, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


def wrk(
    port: int,
    seconds: float,
    connections: int,
    script: Path = LUA,
    env: dict[str, str] | None = None,
) -> WrkResult:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True, env=os.environ | (env or {}),
    ).stdout  # fmt: skip
    line = re.search(r"bench-wrk: (.*)", output)
    if line is None:
        raise RuntimeError(output)
    fields = dict(pair.split("=") for pair in line.group(1).split())
    return WrkResult(
        requests=int(fields["requests"]),
        acknowledged=int(fields["acknowledged"]),
        errors=int(fields["non2xx"]) + int(fields["socket_errors"]),
        p50_ms=int(fields["p50_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        seconds=int(fields["duration_us"]) / 1e6,
    )


def _cpu_table() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, user + system CPU seconds), for every process."""
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return table


def process_cpu(root: int) -> tuple[float, float]:
    """CPU seconds of the façades under ``root`` (``root`` itself and its ``prisme facade``
    children), and of ``root`` with all its descendants."""
    table = _cpu_table()
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in table.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    facades = {root} | {pid for pid in tree if _is_facade(pid)}
    own = sum(table[pid][1] for pid in facades if pid in table)
    return own, sum(table[pid][1] for pid in tree if pid in table)


def _is_facade(pid: int) -> bool:
    try:
        return b"facade" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


async def store_ceiling(uri: str, events: int) -> float:
    """Page view events per second when only their documents are written, in big batches."""
    store = MongoEventStore.from_uri(uri, "ceiling", timeout=60)
    await store.ensure_schema()
    await store.close()
    now = datetime.now(UTC)
    # The visitors of bench/pageviews.lua: a visitor's first page view, and 30 % of the
    # others, begin a session; the rest continue the visitor's current one.
    current: dict[int, SessionAttributes] = {}
    pageviews, starts = [], []
    for _ in range(events):
        visitor = random.randint(1, VISITORS)
        attributes = current.get(visitor)
        if attributes is None or random.random() < NEW_SHARE:
            attributes = SessionAttributes(
                uuid7(now), "localhost",
                f"prisme_{visitor:016X}", "Windows", "Chrome", "Other", "direct", "GB", "bench",
                "", "", "", "",
            )  # fmt: skip
            current[visitor] = attributes
            starts.append(session_document(SessionStart(f"{visitor:016X}", "/", now, attributes)))
        page = PageView(now, "/pricing", attributes, uuid.uuid4())
        pageviews.append(pageview_document(page))
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        uri, uuidRepresentation="standard"
    )
    database = client.ceiling
    started = time.perf_counter()
    for first in range(0, len(pageviews), 1000):
        await database[PAGEVIEWS].insert_many(pageviews[first : first + 1000], ordered=False)
    for first in range(0, len(starts), 1000):
        await database[SESSIONS].insert_many(starts[first : first + 1000], ordered=False)
    elapsed = time.perf_counter() - started
    await client.close()
    return events / elapsed


def bare_front_door(seconds: float, connections: int) -> tuple[float, float]:
    """Requests per second of a bare aiohttp handler, and its CPU per request (µs)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    try:
        wait_port(port)
        before = process_cpu(process.pid)[1]
        result = wrk(port, seconds, connections)
        cpu = process_cpu(process.pid)[1] - before
        return result.rps, cpu / max(result.requests, 1) * 1e6
    finally:
        process.terminate()
        process.wait()


async def stored_pageviews(uri: str) -> int:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
    count = await client.bench.pageviews.count_documents({})
    await client.close()
    return count


def slow_client(port: int, stop: threading.Event, sent: list[int]) -> None:
    """One client sending a custom event with no session about once a second: each waits for
    a session up to PRISME_API_EVENTS_TIMEOUT (3 s), then gets 400, well within its rate
    limit. Three threads, a second apart."""

    def loop(offset: float) -> None:
        stop.wait(offset)
        while not stop.is_set():
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/events/custom/waits",
                method="POST",
                headers={
                    "Origin": "http://localhost",
                    "X-Prisme-Referrer": "http://localhost/nowhere",
                    "User-Agent": SLOW_AGENT,
                    "X-Forwarded-For": "198.51.100.9",
                },
            )
            with contextlib.suppress(urllib.error.URLError, OSError):
                urllib.request.urlopen(request, timeout=30).close()
            sent.append(1)

    for offset in (0.0, 1.0, 2.0):
        threading.Thread(target=loop, args=(offset,), daemon=True).start()


def write_batches(folder: Path, count: int) -> dict[str, str]:
    """``count`` gzip-compressed batch bodies in ``folder`` (``1.gz``...), each one visitor's
    session of `BATCH_SIZE` page views 50 ms apart, sent just after the last; the environment
    that points bench/batches.lua at them."""
    folder.mkdir()
    for n in range(1, count + 1):
        sent = datetime.now(UTC)
        events, previous = [], ""
        for i in range(BATCH_SIZE):
            page = random.choice(PAGES)
            happened = sent - timedelta(milliseconds=50 * (BATCH_SIZE - i))
            events.append({"kind": "pageview", "page_url": f"http://localhost{page}",
                           "document_referrer": previous, "event_id": str(uuid.uuid4()),
                           "timestamp": happened.isoformat()})  # fmt: skip
            previous = f"http://localhost{page}"
        body = json.dumps({"sent_at": sent.isoformat(), "events": events}).encode()
        (folder / f"{n}.gz").write_bytes(gzip.compress(body))
    return {"BENCH_BATCH_DIR": str(folder), "BENCH_BATCH_COUNT": str(count)}


def serve_env(uri: str | None, port: int) -> dict[str, str]:
    """``prisme serve``'s environment for the bench; the caller's ``PRISME_*`` win. Without
    ``uri``, the store is in memory (``PRISME_BENCH_MEMORY_STORE``)."""
    store = (
        {"PRISME_MONGODB_URI": uri}
        if uri is not None
        else {"PRISME_BENCH_MEMORY_STORE": "true", "PRISME_BENCH": "1"}
    )
    return (
        {k: v for k, v in os.environ.items() if not k.startswith("PRISME_")}
        | store
        | {
            "PRISME_MONGODB_DATABASE": "bench",
            "PRISME_PORT": str(port),
            "PRISME_HOST": "127.0.0.1",
            "PRISME_GRPC_HOSTPORT": "127.0.0.1:0",
            "PRISME_ADMIN_HOSTPORT": f"127.0.0.1:{free_port()}",
            "PRISME_ORIGIN_REGISTRY_ORIGINS": "localhost",
            "PRISME_TRUST_PROXY": "true",
            "PRISME_RATE_LIMIT_PER_MINUTE": "1000000",
        }
        | {k: v for k, v in os.environ.items() if k.startswith("PRISME_")}
    )


def full_stack(
    uri: str | None,
    seconds: float,
    connections: int,
    work: Path,
    store_pid: int | None,
    hol: bool = False,
    batches: int = 0,
) -> tuple[WrkResult, float, int]:
    """``prisme serve`` under wrk: single page views, or with ``batches``, that many batch
    bodies for the run (and as many for its warm-up). Without ``uri`` and ``store_pid``, the
    service ceiling: its store in memory."""
    port = free_port()
    env = serve_env(uri, port)
    log = (work / "serve.log").open("w")
    process = subprocess.Popen([str(Path(sys.executable).with_name("prisme")), "serve"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        try:
            wait_port(port, process=process)
        except (RuntimeError, TimeoutError):
            print((work / "serve.log").read_text()[-2000:], file=sys.stderr)
            raise
        script, warm_env, run_env = LUA, {}, {}
        if batches:
            script = BATCH_LUA
            warm_env = write_batches(work / f"warm-{port}", batches) | {"BENCH_BATCH_NET": "82"}
            run_env = write_batches(work / f"run-{port}", batches) | {"BENCH_BATCH_NET": "83"}
        warm = wrk(port, 3, connections, script, warm_env)
        stop, slow_sent = threading.Event(), list[int]()
        if hol:
            slow_client(port, stop, slow_sent)
        facade_before, cpu_before = process_cpu(process.pid)
        store_before = process_cpu(store_pid)[1] if store_pid else 0.0
        result = wrk(port, seconds, connections, script, run_env)
        stop.set()
        if hol:
            print(f"slow client: {len(slow_sent)} custom events waited for a session", flush=True)
        facade_after, cpu_after = process_cpu(process.pid)
        cpu, facade_cpu = cpu_after - cpu_before, facade_after - facade_before
        per_event = 1e6 / max(result.acknowledged, 1)
        split = (f"service CPU: façade {facade_cpu * per_event:.0f} µs + core "
                 f"{(cpu - facade_cpu) * per_event:.0f} µs per event")  # fmt: skip
        if store_pid:
            store_cpu = process_cpu(store_pid)[1] - store_before
            split += (f"; store {store_cpu * per_event:.0f} µs per event "
                      f"({store_cpu / result.seconds * 100:.0f} % of a core)")  # fmt: skip
        else:
            split += " (store in memory, bench only)"
        print(split, flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
    acknowledged = warm.acknowledged + result.acknowledged
    return result, cpu / max(result.acknowledged, 1) * 1e6, acknowledged


def workers_of(env: Mapping[str, str]) -> int:
    """The façade and core processes `prisme serve` runs with ``env``."""
    return Settings.from_env(env).workers or default_workers()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--ceiling-events", type=int, default=20_000)
    parser.add_argument(
        "--hol",
        action="store_true",
        help="also run the full stack with a slow client beside the load (head-of-line check)",
    )
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    workers = workers_of(os.environ)
    work = Path(tempfile.mkdtemp(prefix="prisme-bench-"))
    store = EmbeddedStore(work / "store", cache_size="512M")
    uri = store.start()
    try:
        store_rps = asyncio.run(store_ceiling(uri, args.ceiling_events))
        print(f"store ceiling: {store_rps:,.0f} page views/s (insert_many only)", flush=True)
        bare_rps, bare_cpu_us = bare_front_door(args.duration / 2, args.connections)
        print(f"bare aiohttp: {bare_rps:,.0f} requests/s, {bare_cpu_us:.0f} µs CPU per request",
              flush=True)  # fmt: skip
        assert store.pid is not None
        ceiling, ceiling_cpu_us, _ = full_stack(None, args.duration, args.connections, work, None)
        print(
            f"service ceiling (in-memory store, bench only): {ceiling.rps:,.0f} page views/s, "
            f"{ceiling_cpu_us:.0f} µs service CPU per page view, {workers} workers",
            flush=True,
        )
        result, cpu_us, acknowledged = full_stack(
            uri, args.duration, args.connections, work, store.pid
        )
        if args.hol:
            held, _, held_acknowledged = full_stack(
                uri, args.duration, args.connections, work, store.pid, hol=True
            )
            acknowledged += held_acknowledged
        batched, batch_cpu_us, batch_acknowledged = full_stack(
            uri, args.duration, BATCH_CONNECTIONS, work, store.pid, batches=BATCH_BODIES
        )
        acknowledged += batch_acknowledged
        stored = asyncio.run(stored_pageviews(uri))
    finally:
        store.stop()
    lost = max(0, acknowledged - stored)
    print(
        f"full stack: {result.rps:,.0f} page views/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, {cpu_us:.0f} µs CPU per event, "
        f"{acknowledged} acknowledged, {stored} stored"
    )
    if args.hol:
        print(
            f"bench-hol: e2e_rps={held.rps:.0f} p99_ms={held.p99_ms:.1f} "
            f"share={held.rps / result.rps:.2f} errors={held.errors}"
        )
    print(
        f"bench-batch: e2e_rps={batched.rps:.0f} cpu_us_per_event={batch_cpu_us:.0f} "
        f"p50_ms={batched.p50_ms:.1f} p99_ms={batched.p99_ms:.1f} events_per_request={BATCH_SIZE} "
        f"encoding=gzip errors={batched.errors} (single: e2e_rps={result.rps:.0f} "
        f"cpu_us_per_event={cpu_us:.0f})"
    )
    print(
        f"bench: e2e_rps={result.rps:.0f} store_rps={store_rps:.0f} "
        f"ratio={result.rps / store_rps:.2f} bare_rps={bare_rps:.0f} "
        f"cpu_us_per_event={cpu_us:.0f} p50_ms={result.p50_ms:.1f} p99_ms={result.p99_ms:.1f} "
        f"errors={result.errors} lost={lost} service_rps={ceiling.rps:.0f} "
        f"service_cpu_us={ceiling_cpu_us:.0f} workers={workers}"
    )


if __name__ == "__main__":
    main()
