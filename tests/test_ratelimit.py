"""The rate limiter on its own: window, refusal, other clients, bounded memory."""

from __future__ import annotations

import itertools

import pytest
from prisme_core.errors import RateLimited
from prisme_core.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limit_per_window_then_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock)
    for _ in range(60):
        limiter.check("a")
    clock.now += 20.5
    with pytest.raises(RateLimited) as excinfo:
        limiter.check("a")
    assert excinfo.value.retry_after == 40
    limiter.check("b")  # others are unaffected


def test_window_reopens_after_60_seconds() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock)
    limiter.check("a")
    limiter.check("a")
    clock.now += 59.9
    with pytest.raises(RateLimited):
        limiter.check("a")
    clock.now += 0.1
    limiter.check("a")
    limiter.check("a")


def test_no_sixty_second_span_exceeds_the_limit_within_a_window() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock)
    accepted = []
    for step in range(200):
        clock.now = 1000.0 + step * 0.5
        try:
            limiter.check("a")
        except RateLimited:
            continue
        accepted.append(clock.now)
    # Fixed windows starting at the first event: each 60 s window holds at most 3.
    starts = [accepted[i] for i in range(0, len(accepted), 3)]
    assert all(b - a >= 60 for a, b in itertools.pairwise(starts))


def test_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock, max_clients=1000)
    for i in range(100_000):
        limiter.check(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")
    assert len(limiter) == 1000
    clock.now += 61
    limiter.check("x")
    assert len(limiter) == 1
