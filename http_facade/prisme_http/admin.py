"""`create_admin_app`: the admin endpoint, Prometheus ``GET /metrics``.

Served on ``PRISME_ADMIN_HOSTPORT`` (loopback by default): it is for the operator's scraper,
not for the public. It shows this process's metrics and the ``prisme_*`` metrics of the
service's other processes (its cores, its other façades), fetched from each at every scrape,
as the service's totals: a series that several processes have (each core's count of accepted
page views, each façade's requests in flight) is their sum, so the endpoint reads the same
with one worker or sixteen. Each process also serves its own on a loopback port.

Must not import prisme_core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence

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


def merged(texts: Iterable[str]) -> bytes:
    """The ``prisme_*`` families of several processes' expositions as one: each series the
    sum of the processes' (the earliest, for a ``_created`` time)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if not family.name.startswith(OWN_PREFIX):
                continue
            families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            series = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in series:
                    series[key] = sample.value
                elif sample.name.endswith("_created"):
                    series[key] = min(series[key], sample.value)
                else:
                    series[key] += sample.value
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
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


def create_admin_app(others: Sequence[str] = ()) -> web.Application:
    """The endpoint of this process, with the metrics of the processes at ``others`` (their
    metrics URLs)."""

    async def metrics(request: web.Request) -> web.Response:
        own = generate_latest(REGISTRY).decode()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            fetched = await asyncio.gather(*(_fetch(http, url) for url in others))
        body = _runtime_families(own).encode() + merged([own, *fetched])
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
