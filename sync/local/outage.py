"""Storage that stops answering, as the local stack lives through it: say since when, keep
trying with a back-off, say when it came back. The Functions host keeps polling through a
storage outage of any length; so do the local host and ``sync local``'s progress poll."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from azure.core.exceptions import AzureError

from sync.clock import SYSTEM_CLOCK, Clock

STORAGE_ERRORS: Final = (AzureError, OSError)
"""What a storage call raises when the service is away: the SDK's errors, and the socket's
(a timeout is an ``OSError`` too)."""
REMIND_EVERY_S: Final = 30.0
"""While an outage lasts, it is said again this often."""
FIRST_RETRY_S: Final = 0.5
MAX_RETRY_S: Final = 5.0


def retry_delay_s(failures: int, ceiling_s: float = MAX_RETRY_S) -> float:
    """The wait before the next try after ``failures`` in a row (1-based): doubling from
    ``FIRST_RETRY_S`` up to ``ceiling_s``."""
    return min(ceiling_s, FIRST_RETRY_S * 2.0 ** max(0, failures - 1))


class Outage:
    """One storage client's view of whether storage answers, and what it said about it."""

    __slots__ = ("_clock", "_error", "_failures", "_said_s", "_say", "_since_s", "_since_wall_s")

    def __init__(self, say: Callable[[str], None], clock: Clock = SYSTEM_CLOCK) -> None:
        self._say, self._clock = say, clock
        self._failures = 0
        self._since_s = self._since_wall_s = self._said_s = 0.0
        self._error = ""

    def __repr__(self) -> str:
        return f"Outage(failures={self._failures}, error={self._error!r})"

    @property
    def failures(self) -> int:
        """Failed calls in a row (0: storage answers)."""
        return self._failures

    def line(self) -> str:
        """``storage unreachable since 12:03:04 UTC (42 s): ServiceRequestError``"""
        since = datetime.fromtimestamp(self._since_wall_s, UTC).strftime("%H:%M:%S UTC")
        away_s = self._clock.monotonic_s() - self._since_s
        return f"storage unreachable since {since} ({away_s:.0f} s): {self._error}"

    def failed(self, error: BaseException) -> float:
        """A storage call failed: the first failure says so, later ones every
        ``REMIND_EVERY_S``; answers how long to wait before trying again."""
        now_s = self._clock.monotonic_s()
        self._error = type(error).__name__
        if not self._failures:
            self._since_s, self._since_wall_s = now_s, self._clock.wall_s()
        self._failures += 1
        if self._failures == 1 or now_s - self._said_s >= REMIND_EVERY_S:
            self._said_s = now_s
            self._say(f"{self.line()}; trying again")
        return retry_delay_s(self._failures)

    def succeeded(self) -> None:
        """Storage answered: after an outage, say how long it lasted."""
        if self._failures:
            away_s = self._clock.monotonic_s() - self._since_s
            self._say(f"storage reachable again after {away_s:.0f} s")
        self._failures = 0
