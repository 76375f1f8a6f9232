"""`create_admin_app`: the admin endpoint, Prometheus ``GET /metrics``.

Served on ``PRISME_ADMIN_HOSTPORT`` (loopback by default): it is for the operator's scraper,
not for the public. It shows this process's metrics and the ``prisme_*`` metrics of the
service's other processes (its cores, its other façades), fetched from each at every scrape.
Every ``prisme_*`` sample carries a ``process`` label (``facade-0``, ``core-1``...), so the
same series of two processes stay apart; sum them across ``process`` for the service's total.

Must not import prisme_core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

OWN_PREFIX = "prisme_"


class _Families:
    """A collector of families already gathered."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merged(texts: Mapping[str, str]) -> bytes:
    """The ``prisme_*`` families of each process's exposition ``texts``, by process name, as
    one exposition with a ``process`` label on every sample."""
    families: dict[str, Metric] = {}
    for process, text in texts.items():
        for family in text_string_to_metric_families(text):
            if not family.name.startswith(OWN_PREFIX):
                continue
            into = families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type)
            )
            into.samples.extend(
                sample._replace(labels={**sample.labels, "process": process})
                for sample in family.samples
            )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families.values()))
    return generate_latest(registry)


def _runtime_families(text: str) -> str:
    """This process's families other than ``prisme_*`` (its Python runtime, its CPU)."""
    kept = []
    for line in text.splitlines():
        name = line.split(" ", 3)[2] if line.startswith("# ") else line
        if not name.startswith(OWN_PREFIX):
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


async def _fetch(http: aiohttp.ClientSession, url: str) -> str:
    try:
        async with http.get(url) as answer:
            return await answer.text()
    except (aiohttp.ClientError, TimeoutError):
        return ""  # that process's metrics are missing from this scrape, not the others'


def create_admin_app(name: str, others: Mapping[str, str]) -> web.Application:
    """The endpoint of the process called ``name``, with the metrics of ``others`` (process
    name → its metrics URL)."""

    async def metrics(request: web.Request) -> web.Response:
        own = generate_latest(REGISTRY).decode()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            fetched = await asyncio.gather(*(_fetch(http, url) for url in others.values()))
        texts = {name: own} | dict(zip(others, fetched, strict=True))
        body = _runtime_families(own).encode() + merged(texts)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
