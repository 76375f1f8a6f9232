"""What the stats store answers beyond keys and values: the range's totals, and how page views
were read (`Reading`).

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

QUARTER: Final = 25
QUARTERS: Final = tuple(QUARTER * n for n in range(1, 5))
"""The scroll depths (percent) whose share of page views is reported: 25, 50, 75, 100."""


@dataclass(frozen=True, slots=True)
class Totals:
    visitors: int
    sessions: int
    pageviews: int
    bounces: int
    session_duration: float
    """Mean seconds over every session (a bounce is 0 s): wall time from entry to exit, not
    engaged time (the engagement routes have that)."""
    live_visitors: int


@dataclass(frozen=True, slots=True)
class Reading:
    """The page views with engagement reports in a range, each one's reports summed first (its
    engaged time, its deepest scroll)."""

    pageviews: int
    mean_seconds: float
    median_seconds: float
    """The middle page view's engaged time; for an even count, the mean of the middle two."""
    mean_scroll_depth: float
    reached_25: float
    """The share (0 to 1) of the page views whose deepest scroll reached 25 %, and so on."""
    reached_50: float
    reached_75: float
    reached_100: float


UNREAD: Final = Reading(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
"""No page view has a report."""
