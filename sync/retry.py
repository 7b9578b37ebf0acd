"""Bounded retries of transient failures with jittered exponential backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from sync.errors import TransientError

T = TypeVar("T")

BASE_DELAY_S: Final = 0.5
MAX_DELAY_S: Final = 8.0


def backoff_s(attempt: int, rand: float) -> float:
    """Delay before retry number ``attempt`` (1-based): full jitter over an exponential cap.

    ``rand`` is a uniform draw in [0, 1), passed in so the arithmetic is testable.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    cap_s: float = min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** (attempt - 1))
    return cap_s * (0.5 + rand / 2)


async def with_retries(call: Callable[[], Awaitable[T]], max_retries: int,
                       on_retry: Callable[[TransientError], None] | None = None) -> T:
    """Await ``call()``, retrying TransientError up to ``max_retries`` times, then re-raise."""
    attempt = 0
    while True:
        try:
            return await call()
        except TransientError as error:
            attempt += 1
            if attempt > max_retries:
                raise
            if on_retry is not None:
                on_retry(error)
            await asyncio.sleep(backoff_s(attempt, random.random()))  # noqa: S311 (jitter)
