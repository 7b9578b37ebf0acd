"""The ceiling each row is measured against: the emulator's own proven ceiling (the ``ceiling``
of its ``/_emulator/stats``: the most records/s any whole window admits, per write mode and
``overall``, the minimum over the request, execution-time and concurrency facets per server,
times the servers), within the enrichment API's limit.

A row's rate is read over its steady window (``bench.figures.steady_span``: whole windows), so
its ceiling is what any client could have written over that span (``RowLimits``): the
emulator's ceiling (a bound for every whole window), and the enrichment API's rate plus its
bucket's burst over the span's length (a client that left the bucket to fill, waiting on
Dataverse or a Retry-After, spends it at once: a one-second bucket over one 10 s window is
10% more than the rate).

``dataverse_ceiling`` is the one place that reads the emulator's figure; ``enrichment_ceiling``
reads the enrichment emulator's (its ``ceiling_per_s``: the configured rate, the steady state
after its burst) and caps every mode by it, as the emulator's own
``ceiling(config, enrichment_rate_per_s=...)`` caps ``overall``; tests/test_bench_ceiling.py
holds the two to agree for every scenario. Each is proven by its probes (bench/runprobe.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from bench.scenarios import GROWTH, MODES, SCENARIOS, USER_BOUND

SCENARIOS_BY_NAME: Final = {s.name: s for s in (*SCENARIOS, GROWTH, USER_BOUND)}

OVERALL = "overall"


@dataclass(frozen=True, slots=True)
class Ceiling:
    """Records/s per write mode (and ``overall``: any mix of modes) for Dataverse alone, and
    the enrichment API's rate."""

    dataverse_per_s: dict[str, float]
    enrichment_per_s: float

    def mode_per_s(self, mode: str) -> float:
        """A mode's ceiling: its Dataverse bound or the enrichment API's, whichever is lower."""
        return min(self.dataverse_per_s[mode], self.enrichment_per_s)

    @property
    def overall_per_s(self) -> float:
        """What the environment allows at most, any mix of modes (at least the best mode's)."""
        dataverse = self.dataverse_per_s.get(OVERALL, max(self.dataverse_per_s[m] for m in MODES))
        return min(dataverse, self.enrichment_per_s)

    def as_dict(self) -> dict[str, Any]:
        return {"dataverse_per_s": self.dataverse_per_s,
                "enrichment_per_s": self.enrichment_per_s,
                "mode_per_s": {mode: self.mode_per_s(mode) for mode in MODES},
                "overall_per_s": self.overall_per_s}


def dataverse_ceiling(stats: dict[str, Any]) -> dict[str, float]:
    """Records/s per write mode and overall from the emulator's stats (``stats["ceiling"]``)."""
    found = stats["ceiling"]
    return {name: float(found[name]) for name in (*MODES, OVERALL)}


def enrichment_ceiling(stats: dict[str, Any]) -> float:
    """Calls/s the enrichment emulator admits after its burst (``stats["ceiling_per_s"]``)."""
    return float(stats["ceiling_per_s"])


def ceiling_of(stats: dict[str, Any], enrichment_rate_per_s: float) -> Ceiling:
    return Ceiling(dataverse_ceiling(stats), enrichment_rate_per_s)


@dataclass(frozen=True, slots=True)
class RowLimits:
    """What bounds a row's records over a span of whole windows: its steady ceiling (records/s:
    the emulator's for any whole window, or the enrichment API's rate), and the enrichment
    API's burst when that rate is what binds the row."""

    steady_per_s: float
    burst: float = 0.0

    def per_s(self, span_s: float) -> float:
        """The most records/s over ``span_s`` seconds of whole windows (``math.inf``: the
        steady ceiling, the burst spread over forever)."""
        return self.steady_per_s + (self.burst / span_s if span_s > 0 else math.inf)


def row_limits(scenario: str, steady_per_s: float) -> RowLimits:
    """A row's limits: its steady ceiling (``Result.ceiling_per_s``, the lower of Dataverse's
    and the enrichment API's), plus the burst of its scenario's enrichment API when that API's
    rate is the ceiling (the probes of Dataverse alone have Dataverse's, far below it). Where
    Dataverse's ceiling lies within a burst of that rate this reads high by less than the
    burst over the span; no scenario of the bench is so."""
    found = SCENARIOS_BY_NAME.get(scenario)
    if found is None or steady_per_s < found.enrichment_rate_per_s:
        return RowLimits(steady_per_s)
    return RowLimits(steady_per_s, float(found.enrichment_burst))
