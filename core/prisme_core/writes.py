"""`WriteCount`: how many store writes the service has begun, for answers kept while nothing
was written (`prisme_core.adapters.shared.Shared`).

One core counts its own. The cores of one `prisme serve` share a small file, mapped into each:
core ``slot`` writes its count at its own 8 bytes, and the total is read across all of them,
so a stats answer kept by one core is not served again after another core wrote. A read that
races a write sees the old count or the new one; either way the total only grows.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

SLOT = struct.Struct("<Q")


class WriteCount:
    def __init__(self, shared: Path | None = None, slot: int = 0, slots: int = 1) -> None:
        self._own = 0
        self._slots = struct.Struct(f"<{slots}Q")
        self._offset = slot * SLOT.size
        self._map: mmap.mmap | None = None
        if shared is not None:
            with shared.open("r+b") as file:
                self._map = mmap.mmap(file.fileno(), self._slots.size)

    @staticmethod
    def create(shared: Path, slots: int) -> None:
        """The file the cores of one service share, every count at 0."""
        shared.write_bytes(bytes(SLOT.size * slots))

    def add(self) -> None:
        self._own += 1
        if self._map is not None:
            SLOT.pack_into(self._map, self._offset, self._own)

    def total(self) -> int:
        if self._map is None:
            return self._own
        return sum(self._slots.unpack_from(self._map))
