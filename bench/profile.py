"""`make profile`: where the service's CPU goes, per process, under the service-ceiling load.

    .venv/bin/python bench/profile.py [--duration SECONDS] [--workers N]

`prisme serve` runs with its store in memory (``PRISME_BENCH_MEMORY_STORE``, as in `make bench`)
under the bench's wrk load. py-spy samples every service process while it holds the GIL
(``--gil``: time the process spends waiting is not counted), and each process's CPU time is
read from ``/proc``. Each sample is put in the first category its stack matches, from the
innermost frame out, and each category's share of a process's samples is given as its share
of that process's CPU per page view. The raw profiles stay in the work directory (py-spy's
``raw`` format, one stack and count per line) for flame graphs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import _cpu_table, _is_facade, free_port, serve_env, wait_port, wrk

SPY = str(Path(sys.executable).with_name("py-spy"))
RATE = 200
"""Samples per second per process."""

CategoryRule = tuple[str, tuple[str, ...]]
FACADE: tuple[CategoryRule, ...] = (
    ("access log line", ("prisme_http/access_log.py", "prisme_cli/logs.py", "logging/")),
    ("metrics", ("prometheus_client/",)),
    ("transcoding headers into the event", ("prisme_http/transcode.py",)),
    ("client IP", ("prisme_client/forwarded.py", "request_client_ip")),
    ("request id", ("request_id.py",)),
    (
        "link to the core: queue, protobuf, gRPC stream",
        ("prisme_http/link.py", "grpc/", "protobuf"),
    ),
    ("edge: limits, CORS and id headers", ("prisme_http/middleware.py",)),
    ("event handler and answer", ("prisme_http/app.py", "prisme_http/errors.py")),
    ("aiohttp: parse, route, respond, write", ("aiohttp/",)),
)
CORE: tuple[CategoryRule, ...] = (
    ("user agent", ("useragents.py", "ua_parser", "user_agents")),
    ("country", ("maxmind.py", "maxminddb", "geoip2")),
    ("visitor and device ids", ("prisme_core/identity.py", "hashlib")),
    ("validation and URLs", ("prisme_core/validate.py", "prisme_core/urls.py", "ipaddress")),
    ("metrics", ("prometheus_client/",)),
    ("rate limit, bounds, retried ids", ("admission.py", "ratelimit.py", "idempotency.py")),
    ("session rule and cache", ("prisme_core/sessions.py",)),
    ("group commit and the in-memory store", ("batching.py", "adapters/memory.py")),
    (
        "pipeline: event objects, times, outcomes",
        (
            "prisme_core/pipeline.py",
            "prisme_core/enrich.py",
            "prisme_core/outcomes.py",
            "prisme_core/model.py",
            "<string>",
            "ports.py",
            "uuid.py",
            "datetime",
        ),
    ),
    (
        "link: protobuf, gRPC stream, answers",
        (
            "prisme_core/link.py",
            "prisme_core/servicer.py",
            "prisme_core/status.py",
            "grpc/",
            "request_id.py",
        ),
    ),
)
OTHER = "event loop, gRPC's C core, the rest"


def _category(stack: list[str], rules: tuple[CategoryRule, ...]) -> str:
    for frame in reversed(stack):
        for name, marks in rules:
            if any(mark in frame for mark in marks):
                return name
    return OTHER


def shares(raw: Path, rules: tuple[CategoryRule, ...]) -> Counter[str]:
    counted: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            counted[_category(stack.split(";"), rules)] += int(count)
    return counted


def _service(root: int) -> dict[int, str]:
    """pid → ``facade`` or ``core``, for ``root`` and its children."""
    table = _cpu_table()
    children = [pid for pid, (ppid, _) in table.items() if ppid == root]
    roles = {root: "facade"}
    for pid in children:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"core" in cmdline or _is_facade(pid):
            roles[pid] = "core" if b"core" in cmdline else "facade"
    return roles


def _spy(pid: int, into: Path, seconds: float) -> subprocess.Popen[bytes]:
    command = [SPY, "record", "--gil", "--nonblocking", "-r", str(RATE), "-f", "raw",
               "-d", str(int(seconds)), "-o", str(into), "-p", str(pid)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="prisme-profile-"))
    port = free_port()
    env = serve_env(None, port) | {"PRISME_WORKERS": str(args.workers)}
    with (work / "serve.log").open("w") as log:
        process = subprocess.Popen([str(Path(sys.executable).with_name("prisme")), "serve"],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_port(port, process=process)
        wrk(port, 3, args.connections)
        roles = _service(process.pid)
        spies = [_spy(pid, work / f"{role}-{pid}.txt", args.duration + 2)
                 for pid, role in roles.items()]  # fmt: skip
        time.sleep(1)  # py-spy attached
        before = _cpu_table()
        result = wrk(port, args.duration, args.connections)
        after = _cpu_table()
        for spy in spies:
            spy.wait()
    finally:
        process.terminate()
        process.wait(timeout=60)
    events = max(result.acknowledged, 1)
    print(
        f"{result.rps:,.0f} page views/s under py-spy, {args.workers} workers; profiles in {work}"
    )
    total = 0.0
    for role, rules in (("facade", FACADE), ("core", CORE)):
        pids = [pid for pid, r in roles.items() if r == role]
        cpu_us = sum(after[pid][1] - before[pid][1] for pid in pids) * 1e6 / events
        total += cpu_us
        counted: Counter[str] = Counter()
        for pid in pids:
            counted += shares(work / f"{role}-{pid}.txt", rules)
        samples = sum(counted.values()) or 1
        print(f"\n{role}: {cpu_us:.0f} µs CPU per page view")
        for name, count in counted.most_common():
            print(f"  {cpu_us * count / samples:6.1f} µs  {count / samples:5.1%}  {name}")
    print(f"\nservice: {total:.0f} µs CPU per page view")


if __name__ == "__main__":
    main()
