"""The ingestion pipeline: a short list of verb-named steps per event kind.

`Pipeline` receives plain `prisme_core.model` values from the servicer, applies every rule,
and stores the result through the `EventStore` port. It raises `CoreError`s only.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

from dataclasses import dataclass

from prisme_core.model import ClientContext, CustomEvent, CustomEventInput, PageView
from prisme_core.ports import Clock, EventStore
from prisme_core.validate import (
    validate_event_name,
    validate_origin,
    validate_page_url,
    validate_properties,
)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    origins: frozenset[str]


class Pipeline:
    def __init__(self, config: PipelineConfig, store: EventStore, clock: Clock) -> None:
        self._config = config
        self._store = store
        self._clock = clock

    async def record_pageview(self, context: ClientContext) -> None:
        validate_origin(context.origin, self._config.origins)
        page = validate_page_url(context.page_url)
        pageview = PageView(timestamp=self._clock.now(), domain=page.host, path=page.path)
        await self._store.insert_pageviews([pageview])

    async def record_custom_event(self, event: CustomEventInput) -> None:
        validate_origin(event.context.origin, self._config.origins)
        page = validate_page_url(event.context.page_url)
        name = validate_event_name(event.name)
        properties = validate_properties(event.content_type, event.body)
        custom = CustomEvent(
            timestamp=self._clock.now(),
            domain=page.host,
            path=page.path,
            name=name,
            properties=properties,
        )
        await self._store.insert_custom_events([custom])

    async def check_health(self) -> None:
        await self._store.ping()
