"""The one retry loop: service faults retried with jittered exponential back-off on the clock.

Configuration faults are not retried (the answer will not change) and nor is anything else: a
throttle is the governor's business, a record fault is final. When the retries run out the
fault is raised for the caller to defer the work, never to dead-letter it.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sync.clock import SYSTEM_CLOCK, Clock
from sync.failures.errors import ConfigFault, ServiceFault

T = TypeVar("T")
RetryHook = Callable[[ServiceFault, int], None]
"""Told of each fault that will be retried, with the retry's number (1-based)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry inside one invocation."""

    max_retries: int
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError(f"impossible retry policy {self}")

    def backoff_s(self, attempt: int, rand: float) -> float:
        """Delay before retry number ``attempt`` (1-based): half to all of an exponential cap.

        ``rand`` is a uniform draw in [0, 1), passed in so the arithmetic is testable.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be at least 1, got {attempt}")
        cap_s = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        return cap_s * (0.5 + rand / 2)


async def retrying(call: Callable[[], Awaitable[T]], policy: RetryPolicy, *,
                   clock: Clock = SYSTEM_CLOCK, on_retry: RetryHook | None = None,
                   rand: Callable[[], float] = random.random,
                   retryable: Callable[[ServiceFault], bool] = lambda _: True) -> T:
    """Await ``call()``; retry a ServiceFault up to ``policy.max_retries`` times, then raise it.

    ``retryable`` may decline a fault (raised at once), e.g. an ambiguous one that the caller
    answers by splitting its request instead."""
    attempt = 0
    while True:
        try:
            return await call()
        except ConfigFault:
            raise
        except ServiceFault as fault:
            attempt += 1
            if attempt > policy.max_retries or not retryable(fault):
                raise
            if on_retry is not None:
                on_retry(fault, attempt)
            await clock.sleep(policy.backoff_s(attempt, rand()))
