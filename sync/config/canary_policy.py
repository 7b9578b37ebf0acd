"""The ``canary`` field of a sync definition: how many records a run starts with, and what
happens when they are done (``sync.safety.canary`` carries it out).

``{"records": N}`` or ``{"percent": X}`` (of the run's planned records, known once its plan is
complete), ``"then": "approve"`` (the default: the run waits for ``sync approve RUN``) or
``"auto"`` (it goes on when the canary's failure rate, dead letters over records done, is at or
under ``max_failure_rate``, else the definition is paused), ``max_failure_rate`` (default 0.02).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from sync.failures.errors import ConfigError

Then = Literal["approve", "auto"]
DEFAULT_MAX_FAILURE_RATE: Final = 0.02
_KEYS: Final = frozenset({"records", "percent", "then", "max_failure_rate"})
_WHERE: Final = "SYNC_DEFINITION.canary"


@dataclass(frozen=True, slots=True)
class CanaryPolicy:
    """A canary: ``records`` or ``percent`` (one of them), then approval or an automatic check."""

    records: int | None = None
    percent: float | None = None
    then: Then = "approve"
    max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE

    def limit(self, planned: int | None) -> int | None:
        """How many records the canary admits; None while a percentage waits for the plan's
        total (``planned`` None: the plan is still paging)."""
        if self.records is not None:
            return self.records if planned is None else min(self.records, planned)
        if planned is None or self.percent is None:
            return None
        return min(planned, math.ceil(planned * self.percent / 100))

    def passes(self, done: int, dead_lettered: int) -> bool:
        """Whether the canary's failure rate is at or under the threshold."""
        return done > 0 and dead_lettered / done <= self.max_failure_rate


def parse_canary(value: Any) -> CanaryPolicy | None:
    """The canary from the definition's JSON value; None (or absent) for none."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{_WHERE} must be an object such as {{\"records\": 100}}")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise ConfigError(f"{_WHERE} has unknown fields: {', '.join(unknown)}")
    if ("records" in value) == ("percent" in value):
        raise ConfigError(f"{_WHERE} needs exactly one of records or percent")
    return CanaryPolicy(records=_records(value.get("records")),
                        percent=_percent(value.get("percent")), then=_then(value.get("then")),
                        max_failure_rate=_rate(value.get("max_failure_rate")))


def _records(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{_WHERE}.records must be a whole number of at least 1")
    return value


def _percent(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
        raise ConfigError(f"{_WHERE}.percent must be more than 0 and at most 100")
    return float(value)


def _then(value: Any) -> Then:
    if value is None or value == "approve":
        return "approve"
    if value == "auto":
        return "auto"
    raise ConfigError(f"{_WHERE}.then must be \"approve\" or \"auto\"")


def _rate(value: Any) -> float:
    if value is None:
        return DEFAULT_MAX_FAILURE_RATE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{_WHERE}.max_failure_rate must be between 0 and 1")
    return float(value)
