"""Prisme's time expressions (reference stats §2.1), with its rounding bugs fixed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prisme_core.stats.timexpr import BadTime, parse_time

NOW = datetime(2025, 3, 31, 14, 25, 36, 123000, tzinfo=UTC)  # a Monday


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("now", NOW, NOW),
        ("now-7d", at("2025-03-24T14:25:36.123"), at("2025-03-24T14:25:36.123")),
        ("now-1d+2h", at("2025-03-30T16:25:36.123"), at("2025-03-30T16:25:36.123")),
        (" now -7d", at("2025-03-24T14:25:36.123"), at("2025-03-24T14:25:36.123")),
        ("now/d", at("2025-03-31"), at("2025-03-31T23:59:59.999")),
        ("now/h", at("2025-03-31T14:00"), at("2025-03-31T14:59:59.999")),
        ("now/m", at("2025-03-31T14:25"), at("2025-03-31T14:25:59.999")),
        ("now/s", at("2025-03-31T14:25:36"), at("2025-03-31T14:25:36.999")),
        ("now/w", at("2025-03-30"), at("2025-04-05T23:59:59.999")),  # Sunday to Saturday
        ("now/M", at("2025-03-01"), at("2025-03-31T23:59:59.999")),
        ("now-1M/M", at("2025-02-01"), at("2025-02-28T23:59:59.999")),
        ("now/Q", at("2025-01-01"), at("2025-03-31T23:59:59.999")),  # calendar quarters
        ("now+1Q/Q", at("2025-04-01"), at("2025-06-30T23:59:59.999")),
        ("now/y", at("2025-01-01"), at("2025-12-31T23:59:59.999")),
        ("now-1y", at("2024-03-31T14:25:36.123"), at("2024-03-31T14:25:36.123")),
        ("now-2w", at("2025-03-17T14:25:36.123"), at("2025-03-17T14:25:36.123")),
        ("2024-01-31", at("2024-01-31"), at("2024-01-31")),  # midnight, for `to` too
        ("2024-01-31/d", at("2024-01-31"), at("2024-01-31T23:59:59.999")),
        ("2024-01-31T10:00:00Z", at("2024-01-31T10:00"), at("2024-01-31T10:00")),
        ("2024-01-31T10:00:00.5Z", at("2024-01-31T10:00:00.5"), at("2024-01-31T10:00:00.5")),
        ("2024-01-31T10:00:00-02:00", at("2024-01-31T12:00"), at("2024-01-31T12:00")),
        ("2024-01-31T10:00:00+02:00", at("2024-01-31T08:00"), at("2024-01-31T08:00")),
        ("2024-01-31T10:00:00Z-1h", at("2024-01-31T09:00"), at("2024-01-31T09:00")),
    ],
)
def test_a_time_floors_for_from_and_ceils_for_to(text: str, start: datetime, end: datetime) -> None:
    assert parse_time(text, NOW, end=False) == start
    assert parse_time(text, NOW, end=True) == end


def test_a_month_back_from_the_31st_clamps_to_the_month_s_end() -> None:
    assert parse_time("now-1M", NOW, end=False) == at("2025-02-28T14:25:36.123")


@pytest.mark.parametrize(
    "text",
    ["", " ", "yesterday", "now - 7d", "now-7D", "now-7", "now/d-1d", "now now", "-7d",
     "now/fQ", "2024-02-30", "2024-01-31T10:00:00", "now-1x", "now-99999999d", "7d",
     "now/d/d", "2024-1-31"],
)  # fmt: skip
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(BadTime):
        parse_time(text, NOW, end=False)
