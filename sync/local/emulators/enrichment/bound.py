"""The enrichment API's limit and what it proves: a token bucket, and the most calls it can admit.

The bucket holds ``burst`` tokens when the first call reaches it and refills at ``rate_per_s``
up to ``burst``; each admitted call takes one. So from that first call (``started_s``) to any
later admission at ``t``, it has admitted at most ``burst + rate_per_s * (t - started_s)``
calls: ``run_bound_calls``, the run's bound (the burst included). After the burst is spent the
steady rate is ``rate_per_s``: the ceiling. Both are statements from the configuration alone;
``Admissions`` records the run they are set against, on the same clock as the bucket.

Pure arithmetic on a clock passed in (``now_s``): no I/O, no sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class TokenBucket:
    """A token bucket on a clock passed in: ``take`` answers 0 or the seconds until a token."""

    __slots__ = ("_burst", "_rate_per_s", "_stamp_s", "_tokens")

    def __init__(self, rate_per_s: float, burst: int, now_s: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a bucket needs rate_per_s > 0 and burst >= 1, got {rate_per_s}, "
                             f"{burst}")
        self._rate_per_s, self._burst = rate_per_s, burst
        self._tokens, self._stamp_s = float(burst), now_s

    def __repr__(self) -> str:
        return (f"TokenBucket(rate_per_s={self._rate_per_s:g}, burst={self._burst}, "
                f"tokens={self._tokens:.2f})")

    def tokens(self, now_s: float) -> float:
        """Tokens the bucket holds at ``now_s`` (nothing taken)."""
        elapsed_s = max(0.0, now_s - self._stamp_s)
        return min(self._burst, self._tokens + elapsed_s * self._rate_per_s)

    def take(self, now_s: float) -> float:
        """Take a token at ``now_s`` (0.0), or answer the seconds until one is there."""
        elapsed_s = max(0.0, now_s - self._stamp_s)
        self._tokens = min(self._burst, self._tokens + elapsed_s * self._rate_per_s)
        self._stamp_s = max(self._stamp_s, now_s)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate_per_s


def run_bound_calls(rate_per_s: float, burst: int, run_s: float) -> float:
    """The most calls a bucket admits from its first call to ``run_s`` seconds later."""
    return burst + rate_per_s * max(0.0, run_s)


@dataclass(slots=True)
class Admissions:
    """The run the bound is set against: when the first call reached the limit, when the last
    admitted one was let through, and how many were admitted."""

    started_s: float | None = None
    last_admitted_s: float | None = None
    admitted: int = 0

    def reached(self, now_s: float) -> None:
        """A call reached the limit (the first one starts the run)."""
        if self.started_s is None:
            self.started_s = now_s

    def admit(self, now_s: float) -> None:
        self.admitted += 1
        self.last_admitted_s = now_s

    def elapsed_s(self) -> float:
        """From the first call to the last admission (0 before one)."""
        if self.started_s is None or self.last_admitted_s is None:
            return 0.0
        return self.last_admitted_s - self.started_s

    def as_json(self, rate_per_s: float, burst: int) -> dict[str, Any]:
        elapsed_s = self.elapsed_s()
        return {"elapsed_s": round(elapsed_s, 6), "admitted": self.admitted,
                "bound_calls": run_bound_calls(rate_per_s, burst, elapsed_s)}
