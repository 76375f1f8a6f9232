"""Prisme's time expressions: ``now-7d``, ``now-1M/M``, ``2024-01-31``, RFC 3339 times.

    expr     := base (offset)* ("/" unit)?      whitespace allowed between tokens
    base     := "now" | a date (YYYY-MM-DD, midnight UTC) | an RFC 3339 time
    offset   := ("+" | "-") digits unit         y Q M w d h m s (Q = 3 months, w = 7 days)

A rounding floors the time to the start of its unit for ``from`` and moves it to the unit's
last millisecond for ``to``. Weeks start on Sunday and quarters are calendar quarters
(Jan-Mar, ...), both in UTC. Month offsets clamp to the month's last day (``now-1M`` on 31
March is 28 or 29 February). Anything else is `BadTime`.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

UNITS = "yQMwdhms"
_TOKEN = re.compile(
    r"\s*(?:(?P<now>now)|(?P<offset>[+-]\d+[yQMwdhms])|/(?P<round>[yQMwdhms])\s*$"
    r"|(?P<date>\d{4}-\d{2}-\d{2}(?:[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2}))?))"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_OFFSET = 100_000
"""Largest count in one offset: far past any range the store can hold."""


class BadTime(ValueError):
    """A time expression that does not parse."""


def parse_time(text: str, now: datetime, *, end: bool) -> datetime:
    """The time ``text`` names, as of ``now`` (UTC); ``end`` rounds up (for ``to``)."""
    position, base, rounding = 0, None, None
    offsets: list[tuple[int, str]] = []
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise BadTime(f"cannot read {text[position:]!r}")
        position = match.end()
        if match["now"] or match["date"]:
            if base is not None or offsets:
                raise BadTime("a time has one base, first")
            base = now if match["now"] else _absolute(match["date"])
        elif match["offset"]:
            if base is None:
                raise BadTime("an offset needs a base before it")
            count = int(match["offset"][:-1])
            if abs(count) > MAX_OFFSET:
                raise BadTime(f"offset {match['offset']} is too large")
            offsets.append((count, match["offset"][-1]))
        else:
            rounding = match["round"]
    if base is None:
        raise BadTime("no time given")
    at = base
    for count, unit in offsets:
        at = shift(at, count, unit)
    if rounding is not None:
        at = ceil(at, rounding) if end else floor(at, rounding)
    return at


def _absolute(text: str) -> datetime:
    if _DATE.fullmatch(text):
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError as exc:
            raise BadTime(f"{text!r} is not a date") from exc
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise BadTime(f"{text!r} is not an RFC 3339 time") from exc
    if parsed.tzinfo is None or "T" not in text.upper():
        raise BadTime(f"{text!r} needs a time zone (Z or ±hh:mm)")
    return parsed.astimezone(UTC)


def shift(at: datetime, count: int, unit: str) -> datetime:
    """``at`` moved by ``count`` units."""
    if unit in "yQM":
        months = count * {"y": 12, "Q": 3, "M": 1}[unit]
        return _add_months(at, months)
    seconds = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}[unit]
    try:
        return at + timedelta(seconds=count * seconds)
    except OverflowError as exc:
        raise BadTime("the time is out of range") from exc


def _add_months(at: datetime, months: int) -> datetime:
    index = at.year * 12 + at.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise BadTime("the time is out of range")
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)


def floor(at: datetime, unit: str) -> datetime:
    """The start of ``at``'s ``unit`` (UTC)."""
    at = at.astimezone(UTC)
    if unit == "s":
        return at.replace(microsecond=0)
    if unit == "m":
        return at.replace(second=0, microsecond=0)
    if unit == "h":
        return at.replace(minute=0, second=0, microsecond=0)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        return day
    if unit == "w":
        return day - timedelta(days=(day.weekday() + 1) % 7)  # weeks start on Sunday
    if unit == "M":
        return day.replace(day=1)
    if unit == "Q":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def ceil(at: datetime, unit: str) -> datetime:
    """The last millisecond of ``at``'s ``unit``."""
    start = floor(at, unit)
    if unit in "yQM":
        following = _add_months(start, {"y": 12, "Q": 3, "M": 1}[unit])
    else:
        following = shift(start, 1, unit)
    return following - timedelta(milliseconds=1)
