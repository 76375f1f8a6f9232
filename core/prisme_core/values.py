"""`value`: the decorator of the values made for every event (its input, what admission and
enrichment make of it, what is stored).

They are immutable as far as the type checker is concerned (mypy refuses an assignment to a
field), and slotted, hashable dataclasses at run time. Not ``frozen=True``: a frozen
dataclass's ``__init__`` sets each field through ``object.__setattr__``, five times the cost
of a plain one (about 0.1 µs a field), and a page view makes about forty such fields.
Values kept and shared between events (a parsed URL, a parsed user agent, in caches) stay
``frozen=True``: there, immutability at run time is what makes sharing them safe.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def value(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
